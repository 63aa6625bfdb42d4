//! Newtype identifiers. Every id is a UUIDv7 (time-ordered, so primary-key inserts stay
//! append-mostly), and ids of different kinds cannot be confused at compile time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The input was not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id")]
pub struct IdParseError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            pub const KIND: &'static str = $kind;

            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the canonical hyphenated form only; anything else is rejected.
            pub fn parse(value: &str) -> Result<Self, IdParseError> {
                if value.len() != 36 {
                    return Err(IdParseError { kind: $kind, value: truncate(value) });
                }
                Uuid::try_parse(value)
                    .map(Self)
                    .map_err(|_| IdParseError { kind: $kind, value: truncate(value) })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

fn truncate(value: &str) -> String {
    value.chars().take(64).collect()
}

id_type!(/// A tenant.
    EnvironmentId, "environment");
id_type!(/// A person (or service account) that can sign in.
    IdentityId, "identity");
id_type!(ProjectId, "project");
id_type!(DocumentId, "document");
id_type!(/// A custom role defined inside one environment.
    RoleId, "role");
id_type!(ApiTokenId, "api token");
id_type!(/// An operator API token: reads the platform audit scope, belongs to no environment.
    OperatorTokenId, "operator token");
id_type!(SessionId, "session");
id_type!(InvitationId, "invitation");
id_type!(AuditId, "audit entry");
id_type!(IntegrationId, "integration");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = EnvironmentId::new();
        assert_eq!(EnvironmentId::parse(&id.to_string()), Ok(id));
        assert!(EnvironmentId::parse("not-a-uuid").is_err());
        // Simple (unhyphenated) and braced forms are refused: one canonical spelling only.
        assert!(EnvironmentId::parse(&id.as_uuid().simple().to_string()).is_err());
        assert!(EnvironmentId::parse(&format!("{{{id}}}")).is_err());
        let err = ProjectId::parse("x").unwrap_err();
        assert_eq!(err.to_string(), "`x` is not a valid project id");
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = DocumentId::new();
        let b = DocumentId::new();
        assert!(a < b);
    }
}
