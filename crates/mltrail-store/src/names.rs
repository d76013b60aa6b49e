//! MLflow's rules for the keys and values every entity family shares (tags, params, metric
//! keys), enforced so clients get the errors they would get from MLflow.

use crate::StoreError;

pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
pub const MAX_TAG_VALUE_LEN: usize = 8000;

/// A tag, param or metric key: what MLflow accepts as a name (it becomes a file name in
/// MLflow's file store, hence the path rules).
pub(crate) fn validate_key(what: &str, key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.len() > MAX_KEY_LEN
        || key.starts_with('/')
        || key.split('/').any(|s| s == ".." || s == ".")
        || !key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':'));
    if bad {
        return Err(StoreError::InvalidParameter(format!(
            "Invalid {what} name: '{key}'. Names may be up to {MAX_KEY_LEN} characters of alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/), and may not be or contain '..' path segments."
        )));
    }
    Ok(())
}

/// A value no longer than `max` bytes.
pub(crate) fn validate_len(
    what: &str,
    key: &str,
    value: &str,
    max: usize,
) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(StoreError::InvalidParameter(format!(
            "{what} '{key}' had length {}, which exceeded length limit of {max}",
            value.len()
        )));
    }
    Ok(())
}
