//! Who acts and what a service token may do: the principal every audit event names, and the
//! scopes a token carries.

use std::fmt;

/// Who made a request or ran a command, as the audit trail records it (`actor`).
///
/// Spelled `user:NAME` (HTTP Basic, password checked), `token:NAME` (a bearer service token),
/// `local:NAME` (a CLI command that opened the store itself: whoever can open the file is
/// trusted, and the OS user is named), `unverified:NAME` (auth off, a Basic user name taken
/// unchecked) or `anonymous` (auth off, no name). Events written before authentication
/// existed hold a bare name or `anonymous`; [`Principal::parse`] reads those as unverified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Anonymous,
    User(String),
    Token(String),
    Local(String),
    Unverified(String),
}

impl Principal {
    /// The name without how it was established (`anonymous` for no one).
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(n)
            | Principal::Token(n)
            | Principal::Local(n)
            | Principal::Unverified(n) => n,
        }
    }

    /// Reads an `actor` as [`fmt::Display`] spells it; a bare name (older events) is unverified.
    pub fn parse(actor: &str) -> Principal {
        match actor.split_once(':') {
            _ if actor == "anonymous" => Principal::Anonymous,
            Some(("user", n)) => Principal::User(n.to_string()),
            Some(("token", n)) => Principal::Token(n.to_string()),
            Some(("local", n)) => Principal::Local(n.to_string()),
            Some(("unverified", n)) => Principal::Unverified(n.to_string()),
            _ => Principal::Unverified(actor.to_string()),
        }
    }

    /// Every stored `actor` that `who` names: `who` as given (a whole spelling such as
    /// `token:ci`, or a bare name as events from before authentication hold), and each kind of
    /// principal with `who` as its name (`user:ci`, `token:ci`, …).
    pub fn spellings(who: &str) -> [String; 5] {
        let name = || who.to_string();
        [
            name(),
            Principal::User(name()).to_string(),
            Principal::Token(name()).to_string(),
            Principal::Local(name()).to_string(),
            Principal::Unverified(name()).to_string(),
        ]
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::User(n) => write!(f, "user:{n}"),
            Principal::Token(n) => write!(f, "token:{n}"),
            Principal::Local(n) => write!(f, "local:{n}"),
            Principal::Unverified(n) => write!(f, "unverified:{n}"),
        }
    }
}

/// What a service token may do. A token holds a set of these; users are governed by their
/// permissions and roles instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read experiments, runs, metrics, artifacts, the registry and deployments' state.
    Read,
    /// Create and change experiments and runs: log metrics, params, tags, artifacts.
    RunsWrite,
    /// Register models and model versions, change their tags and descriptions.
    ModelsRegister,
    /// Move a registered model's aliases (what a deployment follows).
    AliasesMove,
    /// Report and change deployments.
    Deployments,
    /// Ask a deployment for predictions.
    Predict,
    /// Send feedback (labels, rewards) on predictions.
    Feedback,
    /// Read stored predictions, whose inputs may be personal data.
    PredictionsRead,
    /// Create, change and read monitors and their alerts.
    Monitors,
    /// Read the audit trail.
    AuditRead,
    /// Everything, including users, tokens and permissions.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 11] = [
        Scope::Read,
        Scope::RunsWrite,
        Scope::ModelsRegister,
        Scope::AliasesMove,
        Scope::Deployments,
        Scope::Predict,
        Scope::Feedback,
        Scope::PredictionsRead,
        Scope::Monitors,
        Scope::AuditRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::RunsWrite => "runs:write",
            Scope::ModelsRegister => "models:register",
            Scope::AliasesMove => "aliases:move",
            Scope::Deployments => "deployments",
            Scope::Predict => "predict",
            Scope::Feedback => "feedback",
            Scope::PredictionsRead => "predictions:read",
            Scope::Monitors => "monitors",
            Scope::AuditRead => "audit:read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A comma-separated list (`runs:write,models:register`); the unknown entry on failure.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = Scope::parse(part).ok_or_else(|| part.to_string())?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort();
        Ok(scopes)
    }

    /// The list as [`Scope::parse_list`] reads it.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's level on one experiment or registered model, as MLflow's basic-auth app names it.
///
/// The order of the variants that grant something is the order of what they allow: each
/// allows what the one before does, and more. `NoPermissions` is what a default may be (a
/// server where users see only what they are granted), and what the mlflow 2.x per-resource
/// routes may store; `Deny` is an explicit veto that no other grant and no default lifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Deny,
    NoPermissions,
    Read,
    Use,
    Edit,
    Manage,
}

/// What a request does to a resource, in the order of what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// View, list, download.
    Read,
    /// Create runs, log, tag, rename, create model versions, upload artifacts, move aliases.
    Update,
    /// Delete and restore.
    Delete,
    /// Grant and revoke permissions on it (and delete proxied artifacts, as MLflow).
    Manage,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Use,
        Permission::Edit,
        Permission::Manage,
        Permission::NoPermissions,
        Permission::Deny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Deny => "DENY",
            Permission::NoPermissions => "NO_PERMISSIONS",
            Permission::Read => "READ",
            Permission::Use => "USE",
            Permission::Edit => "EDIT",
            Permission::Manage => "MANAGE",
        }
    }

    /// The name as MLflow spells it (upper case, exactly).
    pub fn parse(text: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// How much it allows: the order [`Permission::resolve`] takes the highest of.
    fn rank(self) -> u8 {
        match self {
            Permission::Deny => 0,
            Permission::NoPermissions => 1,
            Permission::Read => 2,
            Permission::Use => 3,
            Permission::Edit => 4,
            Permission::Manage => 5,
        }
    }

    pub fn allows(self, action: Action) -> bool {
        let needed = match action {
            Action::Read => Permission::Read,
            Action::Update => Permission::Edit,
            Action::Delete | Action::Manage => Permission::Manage,
        };
        self.rank() >= needed.rank()
    }

    /// MLflow's `allowed` in `users/permissions/get`: whether the level reaches USE.
    pub fn can_use(self) -> bool {
        self.rank() >= Permission::Use.rank()
    }

    /// Whether the grant routes of MLflow 3 accept it (`NO_PERMISSIONS` is a default only).
    pub fn grantable(self) -> bool {
        self != Permission::NoPermissions
    }

    /// The level that `grants` (every grant that names one resource, or `*` for its kind) give
    /// on top of `default`, as MLflow 3.17 resolves it: no grant leaves the default; any `DENY`
    /// denies; otherwise the highest grant, never below the default (a grant raises a user,
    /// it does not restrict). A `NO_PERMISSIONS` grant (only the 2.x routes store one) is the
    /// 2.x meaning: that user has nothing on it unless another grant gives more.
    pub fn resolve(
        grants: impl IntoIterator<Item = Permission>,
        default: Permission,
    ) -> Permission {
        let mut best: Option<Permission> = None;
        for grant in grants {
            if grant == Permission::Deny {
                return Permission::Deny;
            }
            best = Some(match best {
                Some(b) if b.rank() >= grant.rank() => b,
                _ => grant,
            });
        }
        match best {
            None => default,
            Some(Permission::NoPermissions) => Permission::NoPermissions,
            Some(grant) if grant.rank() >= default.rank() => grant,
            Some(_) => default,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of resource a permission names (MLflow's `resource_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Experiment,
    RegisteredModel,
}

impl ResourceType {
    pub const ALL: [ResourceType; 2] = [ResourceType::Experiment, ResourceType::RegisteredModel];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Experiment => "experiment",
            ResourceType::RegisteredModel => "registered_model",
        }
    }

    pub fn parse(text: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl serde::Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user may do in a release, beside the permissions on resources: MLflow has no such
/// roles. Release gates ask for `Approver`; `Deployer` reports and changes deployments;
/// `Auditor` reads the audit trail and stored predictions (whose inputs may be personal data)
/// and gains no right to change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReleaseRole {
    Approver,
    Deployer,
    Auditor,
}

impl ReleaseRole {
    pub const ALL: [ReleaseRole; 3] = [
        ReleaseRole::Approver,
        ReleaseRole::Deployer,
        ReleaseRole::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseRole::Approver => "approver",
            ReleaseRole::Deployer => "deployer",
            ReleaseRole::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<ReleaseRole> {
        ReleaseRole::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// A comma-separated list, sorted and without repeats; the unknown entry on failure.
    pub fn parse_list(text: &str) -> Result<Vec<ReleaseRole>, String> {
        let mut roles = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            roles.push(ReleaseRole::parse(part).ok_or_else(|| part.to_string())?);
        }
        roles.sort();
        roles.dedup();
        Ok(roles)
    }

    /// The token scopes a role stands for on the servers, beside reading.
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            ReleaseRole::Approver => &[],
            ReleaseRole::Deployer => &[Scope::Deployments],
            ReleaseRole::Auditor => &[Scope::AuditRead, Scope::PredictionsRead],
        }
    }
}

impl fmt::Display for ReleaseRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ReleaseRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Compares two byte strings in time that depends only on their lengths, not on where they
/// first differ, so a caller timing refusals learns nothing about a stored secret's digest.
/// Every byte pair is visited and folded with OR; there is no early return inside the loop.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut difference = 0u8;
    for (x, y) in a.iter().zip(b) {
        difference |= x ^ y;
    }
    // Keeps the optimizer from turning the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_round_trip_through_their_spelling() {
        for p in [
            Principal::Anonymous,
            Principal::User("alice".into()),
            Principal::Token("ci-pipeline".into()),
            Principal::Local("root".into()),
            Principal::Unverified("bob".into()),
            Principal::User("name:with:colons".into()),
        ] {
            assert_eq!(Principal::parse(&p.to_string()), p);
        }
        // Events from before authentication: a bare Basic user name.
        assert_eq!(
            Principal::parse("alice"),
            Principal::Unverified("alice".into())
        );
        let token = Principal::Token("ci".into()).to_string();
        assert!(Principal::spellings("ci").contains(&token));
        assert!(Principal::spellings("token:ci").contains(&token));
        assert!(!Principal::spellings("user:ci").contains(&token));
    }

    #[test]
    fn scope_lists_parse_and_refuse_unknown_names() {
        assert_eq!(
            Scope::parse_list("models:register, runs:write,runs:write").unwrap(),
            vec![Scope::RunsWrite, Scope::ModelsRegister]
        );
        assert_eq!(Scope::parse_list("runs:write,root").unwrap_err(), "root");
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn permissions_resolve_as_mlflow_3_does() {
        use Permission::*;
        // No grant: the default.
        assert_eq!(Permission::resolve([], Read), Read);
        assert_eq!(Permission::resolve([], NoPermissions), NoPermissions);
        // A grant below the default is raised to it; above, it stands.
        assert_eq!(Permission::resolve([Read], Edit), Edit);
        assert_eq!(Permission::resolve([Manage, Read], Read), Manage);
        // DENY wins over every grant and the default.
        assert_eq!(Permission::resolve([Manage, Deny], Manage), Deny);
        // A 2.x NO_PERMISSIONS row takes away the default, unless another grant gives more.
        assert_eq!(Permission::resolve([NoPermissions], Read), NoPermissions);
        assert_eq!(Permission::resolve([NoPermissions, Edit], Read), Edit);
        assert!(Read.allows(Action::Read) && !Read.allows(Action::Update));
        assert!(Edit.allows(Action::Update) && !Edit.allows(Action::Delete));
        assert!(Manage.allows(Action::Manage));
        assert!(!Deny.allows(Action::Read) && !NoPermissions.allows(Action::Read));
        assert!(!Read.can_use() && Use.can_use());
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse("read"), None);
    }

    #[test]
    fn constant_time_comparison_visits_every_byte() {
        // By construction: no branch depends on the bytes, only on the lengths. What can be
        // checked is the answer for a first, middle and last differing byte, and lengths.
        let secret = [7u8; 32];
        for at in [0, 16, 31] {
            let mut other = secret;
            other[at] ^= 1;
            assert!(!constant_time_eq(&secret, &other));
        }
        assert!(constant_time_eq(&secret, &secret));
        assert!(!constant_time_eq(&secret, &secret[..31]));
    }
}
