//! The permission catalogue. A permission is a fine-grained capability (`documents.write`);
//! roles are sets of permissions. The same names are stored in the database and passed to
//! row-level-security policies, so renaming one is a migration, never an edit here alone.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! permissions {
    ($($variant:ident = $bit:literal, $name:literal, $scope:ident, $doc:literal;)*) => {
        /// One capability. `scope` says whether a project grant may confer it.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Permission {
            $(#[doc = $doc] $variant = $bit,)*
        }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            pub const fn name(self) -> &'static str {
                match self { $(Permission::$variant => $name,)* }
            }

            pub const fn description(self) -> &'static str {
                match self { $(Permission::$variant => $doc,)* }
            }

            /// Whether a project-level grant can confer this permission (R3). Environment-wide
            /// capabilities such as managing members can only come from the environment role.
            pub const fn project_scoped(self) -> bool {
                match self { $(Permission::$variant => matches!(Scope::$scope, Scope::Project),)* }
            }

            pub fn parse(name: &str) -> Option<Permission> {
                match name { $($name => Some(Permission::$variant),)* _ => None }
            }
        }
    };
}

enum Scope {
    Environment,
    Project,
}

permissions! {
    EnvironmentRead = 0, "environment.read", Environment, "See the environment's name, region and settings.";
    EnvironmentManage = 1, "environment.manage", Environment, "Rename the environment and change its settings.";
    EnvironmentDelete = 2, "environment.delete", Environment, "Delete the environment and everything in it.";
    OwnershipTransfer = 3, "ownership.transfer", Environment, "Hand the single owner seat to another member.";
    MembersRead = 4, "members.read", Environment, "List members and their roles.";
    MembersManage = 5, "members.manage", Environment, "Invite, remove and change the role of members.";
    RolesManage = 6, "roles.manage", Environment, "Create, change and delete custom roles.";
    TokensManage = 7, "tokens.manage", Environment, "Create, list and revoke API tokens.";
    AuditRead = 8, "audit.read", Environment, "Read and export the audit log.";
    ProjectsRead = 9, "projects.read", Project, "See projects and their grants.";
    ProjectsManage = 10, "projects.manage", Environment, "Create and delete projects and manage project grants.";
    DocumentsRead = 11, "documents.read", Project, "Read documents.";
    DocumentsWrite = 12, "documents.write", Project, "Create and edit documents.";
    DocumentsDelete = 13, "documents.delete", Project, "Delete documents.";
    ApprovalsDecide = 14, "approvals.decide", Project, "Approve or reject pending agent actions.";
    KeysManage = 15, "keys.manage", Environment, "Rotate encryption keys, switch to a customer-managed key, set the model-provider key.";
    IntegrationsRead = 16, "integrations.read", Environment, "List integrations (names and credential hints, never the credentials).";
    IntegrationsManage = 17, "integrations.manage", Environment, "Create, replace and delete integration credentials.";
    ModelsInvoke = 18, "models.invoke", Environment, "Call models through the gateway, paid by the environment's own model key or its platform trial (the key itself stays sealed).";
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Permission::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown permission `{name}`")))
    }
}

/// A set of permissions, as a bit set (the catalogue has fewer than 64 entries).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u64);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub const fn of(perms: &[Permission]) -> PermissionSet {
        let mut bits = 0u64;
        let mut i = 0;
        while i < perms.len() {
            bits |= 1 << (perms[i] as u8);
            i += 1;
        }
        PermissionSet(bits)
    }

    pub fn all() -> PermissionSet {
        PermissionSet::of(Permission::ALL)
    }

    pub const fn contains(self, p: Permission) -> bool {
        self.0 & (1 << (p as u8)) != 0
    }

    pub const fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    pub const fn intersection(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }

    pub const fn difference(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & !other.0)
    }

    pub const fn is_subset_of(self, other: PermissionSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn insert(&mut self, p: Permission) {
        self.0 |= 1 << (p as u8);
    }

    /// Only the permissions a project grant is allowed to confer.
    pub fn project_scoped(self) -> PermissionSet {
        self.iter().filter(|p| p.project_scoped()).collect()
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::name).collect()
    }

    /// Parses a list of permission names; unknown names are reported, never ignored.
    pub fn parse_names<S: AsRef<str>>(names: &[S]) -> Result<PermissionSet, String> {
        let mut set = PermissionSet::EMPTY;
        for n in names {
            match Permission::parse(n.as_ref()) {
                Some(p) => set.insert(p),
                None => return Err(n.as_ref().to_owned()),
            }
        }
        Ok(set)
    }

    /// The comma-separated form handed to the database as a transaction-local setting.
    pub fn to_setting(self) -> String {
        self.names().join(",")
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let perms = Vec::<Permission>::deserialize(d)?;
        Ok(perms.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bits_are_unique() {
        let mut seen = 0u64;
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()), Some(*p));
            let bit = 1u64 << (*p as u8);
            assert_eq!(seen & bit, 0, "duplicate bit for {p}");
            seen |= bit;
        }
        assert_eq!(Permission::parse("documents.admin"), None);
    }

    #[test]
    fn parse_names_reports_unknown() {
        assert_eq!(
            PermissionSet::parse_names(&["documents.read", "nope"]),
            Err("nope".to_owned())
        );
    }

    #[test]
    fn subset_logic() {
        let small = PermissionSet::of(&[Permission::DocumentsRead]);
        let big = PermissionSet::of(&[Permission::DocumentsRead, Permission::DocumentsWrite]);
        assert!(small.is_subset_of(big));
        assert!(!big.is_subset_of(small));
        assert!(PermissionSet::EMPTY.is_subset_of(small));
    }
}
