//! MLflow's rules for the keys and values every entity family shares (tags, params, metric
//! keys), enforced so clients get the errors they would get from MLflow. Lengths are counted in
//! characters, as MLflow (Python's `len`) counts them, not in UTF-8 bytes.

use crate::error::Invalid;
use crate::StoreError;

pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
pub const MAX_TAG_VALUE_LEN: usize = 8000;

/// A tag, param or metric key: what MLflow accepts as a name (it becomes a file name in
/// MLflow's file store, hence the path rules).
pub(crate) fn validate_key(what: &'static str, key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || chars(key) > MAX_KEY_LEN
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

/// The length of `text` as MLflow measures it: Unicode characters (code points).
pub(crate) fn chars(text: &str) -> usize {
    text.chars().count()
}

/// A value no longer than `max` characters.
pub(crate) fn validate_len(
    what: &'static str,
    key: &str,
    value: &str,
    max: usize,
) -> Result<(), StoreError> {
    // Bytes bound characters from above: most values are short enough to skip the count.
    if value.len() > max && chars(value) > max {
        return Err(Invalid::TooLong {
            what,
            key: key.to_string(),
            length: chars(value),
            max,
        }
        .into());
    }
    Ok(())
}
