//! Who may use the store through the servers: users (MLflow's basic-auth users, with argon2id
//! password hashes) and service tokens (scoped, stored as a digest of the secret). Creating,
//! changing and deleting either is an audit event; each entity's audited state includes a
//! digest of its stored hash, so a password or token swapped in the database by hand fails
//! `audit verify`.

pub mod password;
pub mod permissions;
pub mod tokens;
pub mod users;

/// Shortest password accepted: MLflow 3.17's minimum, so a password it takes is taken here.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// A user or token name is shown in every audit event: printable, bounded, and without `:`,
/// which separates a principal's kind from its name.
pub(crate) fn valid_username(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=256).contains(&chars) && !name.chars().any(|c| c == ':' || c.is_control())
}
