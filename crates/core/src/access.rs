//! Who may do what: project roles, the actions they allow, and the one
//! decision every endpoint takes. Pure; the API applies it.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ValidationError;

/// A user's role in one project. Each role includes the ones before it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads instances, their service events and the project's audit log.
    Viewer,
    /// Also creates, changes and deletes instances, reads and rotates credentials.
    Editor,
    /// Also manages the project's members.
    Owner,
}

/// Something a caller asks to do inside a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// List and get instances, read their service events.
    InstanceRead,
    InstanceCreate,
    InstanceUpdate,
    InstanceDelete,
    CredentialsRead,
    CredentialsRotate,
    /// Read the project's audit log.
    AuditRead,
    /// List, add, change and remove members.
    MembersManage,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::InstanceRead,
        Action::InstanceCreate,
        Action::InstanceUpdate,
        Action::InstanceDelete,
        Action::CredentialsRead,
        Action::CredentialsRotate,
        Action::AuditRead,
        Action::MembersManage,
    ];

    /// The least role that allows this action.
    pub fn least_role(self) -> Role {
        match self {
            Action::InstanceRead | Action::AuditRead => Role::Viewer,
            Action::InstanceCreate
            | Action::InstanceUpdate
            | Action::InstanceDelete
            | Action::CredentialsRead
            | Action::CredentialsRotate => Role::Editor,
            Action::MembersManage => Role::Owner,
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Owner];

    pub fn allows(self, action: Action) -> bool {
        self >= action.least_role()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    /// Parses `viewer`, `editor` or `owner`; the error names no field.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ValidationError::field("", "must be viewer, editor or owner"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller gets when it names a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The caller sees the project but its role is too small (403).
    Forbidden,
    /// The caller has no access: answer as if the project did not exist (404).
    Hidden,
}

/// The authorisation rule: platform admins may do everything; everyone else
/// needs a role in the project, and a big enough one.
pub fn decide(platform_admin: bool, role: Option<Role>, action: Action) -> Decision {
    if platform_admin {
        return Decision::Allow;
    }
    match role {
        None => Decision::Hidden,
        Some(r) if r.allows(action) => Decision::Allow,
        Some(_) => Decision::Forbidden,
    }
}

/// What a credential lets its bearer do, on top of the user's own rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything the user may do: a password sign-in, or a token of an
    /// external issuer together with the roles its claims grant.
    Full {
        /// Roles granted by the token's claims, per project name.
        granted: Vec<(String, Role)>,
        /// The token's claims make the caller a platform admin.
        granted_admin: bool,
    },
    /// A personal access token: one project, at most one role, never
    /// platform-wide rights.
    Project { project: String, role: Role },
}

impl Scope {
    /// A password sign-in: the user's own rights, nothing more.
    pub fn full() -> Self {
        Scope::Full {
            granted: Vec::new(),
            granted_admin: false,
        }
    }

    /// Whether the caller acts as platform admin.
    pub fn platform_admin(&self, user_admin: bool) -> bool {
        match self {
            Scope::Full { granted_admin, .. } => user_admin || *granted_admin,
            Scope::Project { .. } => false,
        }
    }

    /// The caller's role in `project` given the user's membership there:
    /// the larger of membership and granted role for a full scope; for a
    /// project token the smaller of the token's role and what the user
    /// (an admin counts as owner) still has — a token never outgrows its user.
    pub fn role_in(
        &self,
        user_admin: bool,
        membership: Option<Role>,
        project: &str,
    ) -> Option<Role> {
        match self {
            Scope::Full { granted, .. } => {
                let granted = granted
                    .iter()
                    .filter(|(p, _)| p == project)
                    .map(|(_, r)| *r)
                    .max();
                membership.max(granted)
            }
            Scope::Project {
                project: scoped,
                role,
            } => {
                if scoped != project {
                    return None;
                }
                let own = if user_admin {
                    Some(Role::Owner)
                } else {
                    membership
                };
                own.map(|r| r.min(*role))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_only_reads() {
        for a in Action::ALL {
            let expected = matches!(a, Action::InstanceRead | Action::AuditRead);
            assert_eq!(Role::Viewer.allows(a), expected, "{a:?}");
        }
    }

    #[test]
    fn editor_changes_instances_and_credentials_but_not_members() {
        for a in Action::ALL {
            assert_eq!(Role::Editor.allows(a), a != Action::MembersManage, "{a:?}");
        }
    }

    #[test]
    fn owner_does_everything_in_its_project() {
        assert!(Action::ALL.into_iter().all(|a| Role::Owner.allows(a)));
    }

    #[test]
    fn decisions_hide_projects_without_a_role() {
        for a in Action::ALL {
            assert_eq!(decide(true, None, a), Decision::Allow);
            assert_eq!(decide(false, None, a), Decision::Hidden);
            assert_eq!(decide(false, Some(Role::Owner), a), Decision::Allow);
        }
        assert_eq!(
            decide(false, Some(Role::Viewer), Action::InstanceDelete),
            Decision::Forbidden
        );
        assert_eq!(
            decide(false, Some(Role::Viewer), Action::CredentialsRead),
            Decision::Forbidden
        );
        assert_eq!(
            decide(false, Some(Role::Editor), Action::MembersManage),
            Decision::Forbidden
        );
    }

    #[test]
    fn roles_parse_and_print() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap_or_default(),
                format!("\"{r}\"")
            );
        }
        assert!(Role::parse("admin").is_err());
        assert!(Role::parse("Owner").is_err());
    }

    #[test]
    fn full_scopes_take_the_larger_of_membership_and_grant() {
        let s = Scope::Full {
            granted: vec![("a".into(), Role::Editor), ("b".into(), Role::Viewer)],
            granted_admin: false,
        };
        assert_eq!(s.role_in(false, None, "a"), Some(Role::Editor));
        assert_eq!(s.role_in(false, Some(Role::Owner), "a"), Some(Role::Owner));
        assert_eq!(
            s.role_in(false, Some(Role::Viewer), "a"),
            Some(Role::Editor)
        );
        assert_eq!(s.role_in(false, None, "c"), None);
        assert!(!s.platform_admin(false));
        assert!(s.platform_admin(true));
        let admin = Scope::Full {
            granted: Vec::new(),
            granted_admin: true,
        };
        assert!(admin.platform_admin(false));
        assert_eq!(
            Scope::full().role_in(false, Some(Role::Viewer), "a"),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn project_tokens_never_outgrow_their_project_or_user() {
        let s = Scope::Project {
            project: "a".into(),
            role: Role::Editor,
        };
        assert_eq!(s.role_in(false, Some(Role::Owner), "a"), Some(Role::Editor));
        assert_eq!(
            s.role_in(false, Some(Role::Viewer), "a"),
            Some(Role::Viewer)
        );
        assert_eq!(s.role_in(false, None, "a"), None, "membership gone");
        assert_eq!(
            s.role_in(false, Some(Role::Owner), "b"),
            None,
            "other project"
        );
        assert_eq!(s.role_in(true, None, "a"), Some(Role::Editor), "admin user");
        assert_eq!(s.role_in(true, None, "b"), None);
        assert!(!s.platform_admin(true), "a project token is never admin");
    }
}
