//! MLflow's rules for the keys and values every entity family shares (tags, params, metric
//! keys), enforced so clients get the errors they would get from MLflow.

use crate::error::Invalid;
use crate::StoreError;

pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
pub const MAX_TAG_VALUE_LEN: usize = 8000;

/// A tag, param or metric key: what MLflow accepts as a name (it becomes a file name in
/// MLflow's file store, hence the path rules).
pub(crate) fn validate_key(what: &'static str, key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.len() > MAX_KEY_LEN
        || key.starts_with('/')
        || key.split('/').any(|s| s == ".." || s == ".")
        || !key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':'));
    if bad {
        return Err(Invalid::Key {
            what,
            key: key.to_string(),
            max: MAX_KEY_LEN,
        }
        .into());
    }
    Ok(())
}

/// A value no longer than `max` bytes.
pub(crate) fn validate_len(
    what: &'static str,
    key: &str,
    value: &str,
    max: usize,
) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(Invalid::TooLong {
            what,
            key: key.to_string(),
            length: value.len(),
            max,
        }
        .into());
    }
    Ok(())
}
