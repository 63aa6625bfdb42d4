//! Built-in roles (R1) and the rules for assigning roles (R2-R4).
//!
//! docs/ROLES.md is generated from [`BuiltinRole::ALL`] and a test keeps the two in agreement.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::RoleId;
use crate::permissions::{Permission as P, PermissionSet};

/// A role every environment has. `Owner` is held by exactly one member.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinRole {
    Owner,
    Admin,
    Contributor,
    Reviewer,
    Viewer,
    Auditor,
    Guest,
}

const READ_CONTENT: &[P] = &[
    P::EnvironmentRead,
    P::MembersRead,
    P::ProjectsRead,
    P::DocumentsRead,
];

impl BuiltinRole {
    pub const ALL: &'static [BuiltinRole] = &[
        BuiltinRole::Owner,
        BuiltinRole::Admin,
        BuiltinRole::Contributor,
        BuiltinRole::Reviewer,
        BuiltinRole::Viewer,
        BuiltinRole::Auditor,
        BuiltinRole::Guest,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            BuiltinRole::Owner => "owner",
            BuiltinRole::Admin => "admin",
            BuiltinRole::Contributor => "contributor",
            BuiltinRole::Reviewer => "reviewer",
            BuiltinRole::Viewer => "viewer",
            BuiltinRole::Auditor => "auditor",
            BuiltinRole::Guest => "guest",
        }
    }

    pub fn parse(name: &str) -> Option<BuiltinRole> {
        BuiltinRole::ALL.iter().copied().find(|r| r.name() == name)
    }

    pub const fn description(self) -> &'static str {
        match self {
            BuiltinRole::Owner => "The single accountable member: everything, including deleting the environment and transferring ownership.",
            BuiltinRole::Admin => "Runs the environment day to day: members, roles, projects, tokens, content and the audit log; cannot delete the environment or take ownership.",
            BuiltinRole::Contributor => "Reads and writes content in every project; calls models through the gateway.",
            BuiltinRole::Reviewer => "Reads content and decides pending agent actions.",
            BuiltinRole::Viewer => "Reads content in every project.",
            BuiltinRole::Auditor => "External, read-only access to the audit log; sees no customer content.",
            BuiltinRole::Guest => "Sees the environment only; reaches projects solely through project grants.",
        }
    }

    pub fn permissions(self) -> PermissionSet {
        match self {
            BuiltinRole::Owner => PermissionSet::all(),
            BuiltinRole::Admin => PermissionSet::all().difference(PermissionSet::of(&[
                P::EnvironmentDelete,
                P::OwnershipTransfer,
            ])),
            BuiltinRole::Contributor => {
                PermissionSet::of(READ_CONTENT).union(PermissionSet::of(&[
                    P::DocumentsWrite,
                    P::DocumentsDelete,
                    P::ModelsInvoke,
                ]))
            }
            BuiltinRole::Reviewer => {
                PermissionSet::of(READ_CONTENT).union(PermissionSet::of(&[P::ApprovalsDecide]))
            }
            BuiltinRole::Viewer => PermissionSet::of(READ_CONTENT),
            BuiltinRole::Auditor => PermissionSet::of(&[P::EnvironmentRead, P::AuditRead]),
            BuiltinRole::Guest => PermissionSet::of(&[P::EnvironmentRead]),
        }
    }

    /// Roles that may be conferred by a project grant: only those whose permissions are all
    /// project-scoped once environment-wide ones are stripped.
    pub const GRANTABLE_ON_PROJECTS: &'static [BuiltinRole] = &[
        BuiltinRole::Contributor,
        BuiltinRole::Reviewer,
        BuiltinRole::Viewer,
    ];
}

impl fmt::Display for BuiltinRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for BuiltinRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The role/permission matrix as Markdown, the source of docs/ROLES.md.
pub fn markdown_matrix() -> String {
    use crate::permissions::Permission;
    let mut out = String::from("| permission | ");
    out.push_str(
        &BuiltinRole::ALL
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" | project-grantable | meaning |\n|---|");
    out.push_str(&"---|".repeat(BuiltinRole::ALL.len() + 2));
    out.push('\n');
    for p in Permission::ALL {
        out.push_str(&format!("| `{}` | ", p.name()));
        for r in BuiltinRole::ALL {
            out.push_str(if r.permissions().contains(*p) {
                "yes | "
            } else {
                " | "
            });
        }
        out.push_str(if p.project_scoped() { "yes | " } else { " | " });
        out.push_str(p.description());
        out.push_str(" |\n");
    }
    out.push_str("\n| role | description |\n|---|---|\n");
    for r in BuiltinRole::ALL {
        out.push_str(&format!("| `{}` | {} |\n", r.name(), r.description()));
    }
    out
}

/// A role as stored on a membership, grant, invitation or token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RoleRef {
    Builtin(BuiltinRole),
    Custom(RoleId),
}

impl RoleRef {
    /// The API spelling: a built-in role name, or `custom:<role id>`.
    pub fn parse(value: &str) -> Option<RoleRef> {
        if let Some(id) = value.strip_prefix("custom:") {
            return RoleId::parse(id).ok().map(RoleRef::Custom);
        }
        BuiltinRole::parse(value).map(RoleRef::Builtin)
    }

    pub fn is_owner(self) -> bool {
        self == RoleRef::Builtin(BuiltinRole::Owner)
    }
}

impl fmt::Display for RoleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleRef::Builtin(r) => f.write_str(r.name()),
            RoleRef::Custom(id) => write!(f, "custom:{id}"),
        }
    }
}

/// Why an assignment of permissions was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    #[error("the owner role can only be handed over by an ownership transfer")]
    OwnerNotAssignable,
    #[error("you cannot grant permissions you do not hold: {}", .0.join(", "))]
    Escalation(Vec<&'static str>),
}

/// Nobody can grant permissions they do not hold (R2/R4), and the owner seat moves only by
/// transfer. `granted` is the full permission set the target role confers.
pub fn check_assignable(
    caller: PermissionSet,
    role: RoleRef,
    granted: PermissionSet,
) -> Result<(), AssignError> {
    if role.is_owner() {
        return Err(AssignError::OwnerNotAssignable);
    }
    let missing: Vec<&'static str> = granted
        .iter()
        .filter(|p| !caller.contains(*p))
        .map(|p| p.name())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AssignError::Escalation(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control R1: the owner holds everything; every other role is strictly weaker.
    #[test]
    fn r1_owner_dominates_every_role() {
        let owner = BuiltinRole::Owner.permissions();
        for r in BuiltinRole::ALL {
            assert!(r.permissions().is_subset_of(owner), "{r}");
            if *r != BuiltinRole::Owner {
                assert_ne!(r.permissions(), owner, "{r} must be weaker than owner");
            }
        }
    }

    /// Control R1: auditors see the audit log and no customer content.
    #[test]
    fn r1_auditor_sees_no_content() {
        let a = BuiltinRole::Auditor.permissions();
        assert!(a.contains(P::AuditRead));
        assert!(!a.contains(P::DocumentsRead));
        assert!(!a.contains(P::ProjectsRead));
    }

    /// Control R2: nobody can grant what they do not hold, and owner is never assignable.
    #[test]
    fn r2_no_escalation() {
        let admin = BuiltinRole::Admin.permissions();
        assert_eq!(
            check_assignable(
                admin,
                RoleRef::Builtin(BuiltinRole::Owner),
                BuiltinRole::Owner.permissions()
            ),
            Err(AssignError::OwnerNotAssignable)
        );
        assert!(check_assignable(
            admin,
            RoleRef::Builtin(BuiltinRole::Viewer),
            BuiltinRole::Viewer.permissions()
        )
        .is_ok());
        let contributor = BuiltinRole::Contributor.permissions();
        let err = check_assignable(
            contributor,
            RoleRef::Custom(RoleId::new()),
            PermissionSet::of(&[P::DocumentsRead, P::MembersManage]),
        )
        .unwrap_err();
        assert_eq!(err, AssignError::Escalation(vec!["members.manage"]));
    }

    /// Control R1: docs/ROLES.md is the matrix the code enforces.
    #[test]
    fn r1_roles_doc_matches_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ROLES.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let matrix = markdown_matrix();
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            let start = doc.find("<!-- roles:begin -->").unwrap();
            let end = doc.find("<!-- roles:end -->").unwrap();
            let updated = format!(
                "{}<!-- roles:begin -->\n{matrix}{}",
                &doc[..start],
                &doc[end..]
            );
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert!(
            doc.contains(&format!("<!-- roles:begin -->\n{matrix}<!-- roles:end -->")),
            "docs/ROLES.md is out of date with the code; run `UPDATE_SNAPSHOTS=1 cargo test -p portcullis-core`"
        );
    }

    #[test]
    fn role_refs_parse() {
        assert_eq!(
            RoleRef::parse("viewer"),
            Some(RoleRef::Builtin(BuiltinRole::Viewer))
        );
        let id = RoleId::new();
        assert_eq!(
            RoleRef::parse(&format!("custom:{id}")),
            Some(RoleRef::Custom(id))
        );
        assert_eq!(RoleRef::parse("custom:nope"), None);
        assert_eq!(RoleRef::parse("root"), None);
    }
}
