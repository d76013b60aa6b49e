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
