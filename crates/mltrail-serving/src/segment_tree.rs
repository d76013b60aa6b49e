//! Archived prediction-log segments join the audit trail without a per-prediction cost in it:
//! each archived segment becomes one audit event whose digest covers a Merkle tree of its
//! records (RFC 9162, the same tree as the trail's). A prediction then has a proof in two
//! steps: its record is leaf `i` of its segment's tree, and the segment's summary
//! ([`ArchivedSegment`]) is an event of the trail, itself in the trail's tree.
//!
//! A record's leaf is `SHA-256(0x00 ‖ RFC 8785(record as JSON))`, with the record as
//! [`LogRecord`] serializes it, so the leaf follows from the record and not from how a segment
//! or a Parquet file happened to store it. Leaves are in the order of the archived file's rows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use mltrail_core::merkle::{self, Hash};

use crate::record::LogRecord;

/// The audit event of an archived segment: its action and entity type. The entity id is the
/// archive file's artifact path.
pub use mltrail_store::segments::{ARCHIVE_ACTION, SEGMENT_KIND};

/// What the trail records of one archived segment; the event's digest is the BLAKE3 of its
/// canonical JSON (`state_digest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchivedSegment {
    /// The Parquet file's artifact path, `predictions/<deployment>/<day>/<replica>-<seq>.parquet`.
    pub artifact: String,
    pub deployment: String,
    /// How many records (rows) the file holds.
    pub records: u64,
    /// The smallest and largest record id (UUIDv7, so also the time range).
    #[schema(value_type = String, format = "uuid")]
    pub first_id: uuid::Uuid,
    #[schema(value_type = String, format = "uuid")]
    pub last_id: uuid::Uuid,
    /// The Merkle root of the records' leaves, lowercase hex.
    pub root: String,
}

impl ArchivedSegment {
    pub fn state(&self) -> Value {
        serde_json::json!({
            "artifact": self.artifact,
            "deployment": self.deployment,
            "records": self.records,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "root": self.root,
        })
    }

    /// Whether the file's name carries the start of this summary's root, as replicas name
    /// their files (`<replica>-<seq>-<first 16 hex of root>.parquet`): a summary recorded for a
    /// file must be the one its name announces, so a path cannot be taken with another root
    /// (finding records whose root shares 64 bits is out of reach). Names of the earlier form
    /// (`<replica>-<seq>.parquet`) announce nothing and pass.
    pub fn named_by_root(&self) -> bool {
        let stem = self
            .artifact
            .rsplit('/')
            .next()
            .and_then(|name| name.strip_suffix(".parquet"))
            .unwrap_or("");
        let parts: Vec<&str> = stem.split('-').collect();
        match parts[..] {
            [_, _, announced] => self.root.get(..16) == Some(announced),
            _ => true,
        }
    }

    /// The digest its audit event carries.
    pub fn state_digest(&self) -> String {
        mltrail_core::audit::state_digest(&self.state())
    }

    /// Whether this summary could describe a segment of `deployment`: its path is under the
    /// deployment's archive folder, its root is a SHA-256 in hex and its id range is ordered.
    pub fn check(&self) -> Result<(), &'static str> {
        let folder = format!("predictions/{}/", self.deployment);
        if self.deployment.is_empty() || self.deployment.contains('/') {
            return Err("deployment");
        }
        if !self.artifact.starts_with(&folder)
            || !self.artifact.ends_with(".parquet")
            || self.artifact.split('/').any(|p| p.is_empty() || p == "..")
        {
            return Err("artifact");
        }
        if self.records == 0 {
            return Err("records");
        }
        if self.first_id > self.last_id {
            return Err("first_id");
        }
        if self.root.len() != 64
            || !self
                .root
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err("root");
        }
        Ok(())
    }
}

/// The bytes a record's leaf hashes: RFC 8785 of the record as JSON.
///
/// A feedback `label`, `ranking` or `clicked` that is JSON `null` hashes as if absent: Parquet keeps a
/// `null` cell as a missing one, so the archived record reads back without it, and its leaf
/// must not depend on which of the two was read.
pub fn record_entry(record: &LogRecord) -> Result<Vec<u8>, serde_json::Error> {
    let is_null = |v: &Option<Box<serde_json::value::RawValue>>| {
        v.as_deref().is_some_and(|raw| raw.get() == "null")
    };
    let text = match record {
        LogRecord::Feedback(f)
            if is_null(&f.label) || is_null(&f.ranking) || is_null(&f.clicked) =>
        {
            let mut f = f.clone();
            if is_null(&f.clicked) {
                f.clicked = None;
            }
            if is_null(&f.label) {
                f.label = None;
            }
            if is_null(&f.ranking) {
                f.ranking = None;
            }
            serde_json::to_vec(&LogRecord::Feedback(f))?
        }
        _ => serde_json::to_vec(record)?,
    };
    // The record was just written by serde_json: its text is JSON whose numbers are finite.
    mltrail_core::jcs::of_text(&text).map_err(|e| serde_json::Error::io(std::io::Error::other(e)))
}

/// A record's leaf hash in its segment's tree.
pub fn record_leaf(record: &LogRecord) -> Result<Hash, serde_json::Error> {
    Ok(merkle::leaf_hash(&record_entry(record)?))
}

/// Leaves of a segment's records as they are archived, in file order.
#[derive(Debug, Default)]
pub struct SegmentLeaves {
    leaves: Vec<Hash>,
    range: Option<(uuid::Uuid, uuid::Uuid)>,
}

impl SegmentLeaves {
    pub fn push(&mut self, record: &LogRecord) -> Result<(), serde_json::Error> {
        self.leaves.push(record_leaf(record)?);
        let id = record.id();
        self.range = Some(match self.range {
            None => (id, id),
            Some((first, last)) => (first.min(id), last.max(id)),
        });
        Ok(())
    }

    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// The summary of the file at `artifact`; `None` for no records.
    pub fn summary(&self, artifact: &str, deployment: &str) -> Option<ArchivedSegment> {
        self.summary_named(deployment, |_| artifact.to_string())
    }

    /// The summary of segment `seq` of `replica`, archived under `day` in the file whose name
    /// ends in the start of the records' root (what [`ArchivedSegment::named_by_root`] checks):
    /// `predictions/<deployment>/<day>/<replica>-<seq>-<first 16 hex of root>.parquet`.
    /// Nobody can take the path in the trail ahead of the replica without knowing what it will
    /// archive, and a copied log directory (same replica id) cannot collide.
    pub fn archive_summary(
        &self,
        deployment: &str,
        day: &str,
        replica: &str,
        seq: u64,
    ) -> Option<ArchivedSegment> {
        self.summary_named(deployment, |root| {
            format!(
                "predictions/{deployment}/{day}/{replica}-{seq:012}-{}.parquet",
                &root[..16]
            )
        })
    }

    /// The summary, the root worked out once and the file named from it.
    fn summary_named(
        &self,
        deployment: &str,
        artifact: impl FnOnce(&str) -> String,
    ) -> Option<ArchivedSegment> {
        let (first_id, last_id) = self.range?;
        let root = hex::encode(merkle::root(&self.leaves));
        Some(ArchivedSegment {
            artifact: artifact(&root),
            deployment: deployment.to_string(),
            records: self.leaves.len() as u64,
            first_id,
            last_id,
            root,
        })
    }
}

/// One record's place in its archived segment: the summary, the record's leaf index and its
/// audit path to the summary's root (RFC 9162 PATH, leaf side first).
#[derive(Debug, Clone, Serialize)]
pub struct RecordProof {
    pub segment: ArchivedSegment,
    pub leaf_index: u64,
    pub leaf_hash: String,
    pub audit_path: Vec<String>,
}

/// The proof that the `index`-th of an archived file's `records` was in it.
pub fn prove_record(
    records: &[LogRecord],
    index: usize,
    artifact: &str,
    deployment: &str,
) -> Result<Option<RecordProof>, serde_json::Error> {
    let mut leaves = SegmentLeaves::default();
    for record in records {
        leaves.push(record)?;
    }
    let (Some(segment), Some(path)) = (
        leaves.summary(artifact, deployment),
        merkle::inclusion_proof(leaves.leaves(), index),
    ) else {
        return Ok(None);
    };
    Ok(Some(RecordProof {
        segment,
        leaf_index: index as u64,
        leaf_hash: hex::encode(leaves.leaves()[index]),
        audit_path: path.iter().map(hex::encode).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32, inputs: &str) -> LogRecord {
        serde_json::from_str(&format!(
            r#"{{"type":"prediction","id":"0190a5b2-0000-7000-8000-{n:012}","time_ms":{n},"deployment":"d","model":"m","version":"1","digest":"x","latency_us":1,"inputs":{inputs},"outputs":{{"label":1}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_leaf_follows_from_the_record_not_its_stored_spelling() {
        let a = record(1, r#"{"b": 1.50, "a": 1e2}"#);
        let b = record(1, r#"{"a":100,"b":1.5}"#);
        assert_eq!(record_leaf(&a).unwrap(), record_leaf(&b).unwrap());
        let entry = String::from_utf8(record_entry(&a).unwrap()).unwrap();
        assert!(entry.contains(r#""inputs":{"a":100,"b":1.5}"#), "{entry}");
        assert_ne!(
            record_leaf(&a).unwrap(),
            record_leaf(&record(2, r#"{"a":100,"b":1.5}"#)).unwrap()
        );
    }

    #[test]
    fn every_record_proves_into_the_summary_root() {
        let records: Vec<LogRecord> = [3, 1, 2, 5, 4].iter().map(|n| record(*n, "{}")).collect();
        for index in 0..records.len() {
            let proof = prove_record(&records, index, "predictions/d/2026-12-04/r-1.parquet", "d")
                .unwrap()
                .unwrap();
            assert_eq!(proof.segment.records, 5);
            assert!(proof.segment.first_id < proof.segment.last_id);
            assert_eq!(proof.segment.first_id, records[1].id());
            let hash = |h: &str| -> Hash { hex::decode(h).unwrap().try_into().unwrap() };
            let path: Vec<Hash> = proof.audit_path.iter().map(|h| hash(h)).collect();
            assert!(merkle::verify_inclusion(
                &hash(&proof.leaf_hash),
                proof.leaf_index,
                5,
                &path,
                &hash(&proof.segment.root)
            ));
            assert_eq!(proof.segment.check(), Ok(()));
        }
        assert!(prove_record(&records, 5, "a", "d").unwrap().is_none());
    }

    #[test]
    fn a_name_announces_the_start_of_its_root() {
        let mut s = prove_record(&[record(1, "{}")], 0, "predictions/d/day/r-1.parquet", "d")
            .unwrap()
            .unwrap()
            .segment;
        assert!(s.named_by_root(), "the earlier form announces nothing");
        let mut leaves = SegmentLeaves::default();
        leaves.push(&record(1, "{}")).unwrap();
        let archived = leaves.archive_summary("d", "2026-12-04", "r", 7).unwrap();
        assert!(archived.named_by_root() && archived.check().is_ok());
        assert!(archived
            .artifact
            .starts_with("predictions/d/2026-12-04/r-000000000007-"));
        s.artifact = format!("predictions/d/day/r-000000000001-{}.parquet", &s.root[..16]);
        assert!(s.named_by_root());
        s.artifact = format!(
            "predictions/d/day/r-000000000001-{}.parquet",
            "0".repeat(16)
        );
        assert!(!s.named_by_root());
    }

    #[test]
    fn a_summary_outside_its_deployment_folder_is_refused() {
        let mut s = prove_record(&[record(1, "{}")], 0, "predictions/d/day/r-1.parquet", "d")
            .unwrap()
            .unwrap()
            .segment;
        assert_eq!(s.check(), Ok(()));
        s.artifact = "predictions/other/day/r-1.parquet".into();
        assert_eq!(s.check(), Err("artifact"));
        s.artifact = "predictions/d/../x/r-1.parquet".into();
        assert_eq!(s.check(), Err("artifact"));
        s.artifact = "predictions/d/day/r-1.parquet".into();
        s.root = "AB".repeat(32);
        assert_eq!(s.check(), Err("root"));
    }
}
