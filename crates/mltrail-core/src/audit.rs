//! The audit trail is one append-only, hash-chained log:
//! `hash_n = BLAKE3(hash_{n-1} ‖ canonical_json(event_n))`. Each event names the entity it
//! changed and a digest of that entity's state after the change, so a verifier can check both
//! that no event was edited or removed and that the stored state is still what was recorded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The hash that precedes the first event.
pub const GENESIS_HASH: ChainHash = ChainHash([0u8; 32]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(ChainHash(bytes.try_into().ok()?))
    }

    /// The next link of the chain.
    pub fn next(&self, event: &AuditEvent) -> ChainHash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.0);
        hasher.update(canonical_json(&event.to_value()).as_bytes());
        ChainHash(*hasher.finalize().as_bytes())
    }
}

/// One recorded mutation. `state_digest` is `None` when the entity no longer exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    pub time: i64,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub state_digest: Option<String>,
}

impl AuditEvent {
    fn to_value(&self) -> Value {
        serde_json::json!({
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "state_digest": self.state_digest,
        })
    }
}

/// JSON with object keys sorted and no insignificant whitespace, so equal values hash equally
/// whatever order a map was built in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                write_canonical(&map[*key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// RFC 8785 (JSON Canonicalization Scheme) bytes of any JSON value ([`crate::jcs`]). Events
/// need only [`canonical_json`], which equals this for their shape; prediction records
/// (floats, column names in any script) need the full scheme so that any JCS library rebuilds
/// their bytes.
pub fn rfc8785(value: &Value) -> Vec<u8> {
    crate::jcs::of_value(value)
}

/// BLAKE3 of the canonical JSON of an entity's state, hex-encoded.
pub fn state_digest(state: &Value) -> String {
    blake3::hash(canonical_json(state).as_bytes())
        .to_hex()
        .to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Every event mltrail writes is in RFC 8785 (JCS) canonical form, so others can
        /// rebuild its bytes with any JCS implementation: its keys are ASCII (sorted alike by
        /// bytes and by UTF-16 units), its numbers integers below 2^53, and its strings are
        /// escaped as JCS escapes them.
        #[test]
        fn events_are_rfc_8785_canonical(
            seq in 0i64..(1 << 53),
            time in 0i64..(1 << 53),
            actor in any::<String>(),
            action in "[a-z_.]{1,40}",
            entity_type in any::<String>(),
            entity_id in any::<String>(),
            digest in proptest::option::of(any::<String>()),
        ) {
            let event = AuditEvent { seq, time, actor, action, entity_type, entity_id, state_digest: digest };
            let value = event.to_value();
            prop_assert_eq!(
                canonical_json(&value),
                serde_json_canonicalizer::to_string(&value).unwrap()
            );
        }
    }

    use super::*;
    use serde_json::json;

    fn event(seq: i64, digest: &str) -> AuditEvent {
        AuditEvent {
            seq,
            time: 1,
            actor: "alice".into(),
            action: "run.create".into(),
            entity_type: "run".into(),
            entity_id: "r1".into(),
            state_digest: Some(digest.into()),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "x"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"y":1,"z":0}]},"b":1}"#
        );
    }

    #[test]
    fn chain_depends_on_every_field_and_the_previous_link() {
        let h1 = GENESIS_HASH.next(&event(1, "aa"));
        let h2 = h1.next(&event(2, "bb"));
        assert_ne!(h2, GENESIS_HASH.next(&event(2, "bb")));
        assert_ne!(h1, GENESIS_HASH.next(&event(1, "ab")));
        assert_eq!(ChainHash::from_hex(&h2.to_hex()), Some(h2));
    }
}
