//! The prediction log's segment reader and recovery: segments with torn, corrupted or foreign
//! frames open without a panic or an error; recovery keeps the valid prefix of each segment;
//! every prediction that reads back from the segments is found by id (through the in-memory or
//! the spilled index); and a record appended after recovery survives a reopen.
//!
//! Input: the first byte chooses the mode and the id budget; the rest is up to three segments
//! separated by `SEG|`. In framed mode each segment's payloads (separated by NUL) get valid
//! frames, so the fuzzer reaches the record decoder rather than stopping at the checksum.

use mltrail_serving::predlog::{
    frame, Durability, Entry, EntryKind, LogConfig, LogError, PredictionLog,
};
use mltrail_serving::record::LogRecord;

fn split<'a>(mut data: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(at) = data.windows(separator.len()).position(|w| w == separator) {
        parts.push(&data[..at]);
        data = &data[at + separator.len()..];
    }
    parts.push(data);
    parts
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framed = mode & 1 == 1;
    let torn = mode & 2 == 2;
    let budget = 1 + usize::from((mode >> 2) & 3);
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (i, segment) in split(rest, b"SEG|").into_iter().take(3).enumerate() {
        let bytes = if framed {
            let mut out = Vec::new();
            for payload in segment.split(|b| *b == 0) {
                frame(payload, &mut out);
            }
            if torn && out.len() > 3 {
                out.truncate(out.len() - 3);
            }
            out
        } else {
            segment.to_vec()
        };
        let path = dir.path().join(format!("segment-{:012}.log", i + 1));
        std::fs::write(path, bytes).expect("write a segment");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let config = || {
        let mut c = LogConfig::new(dir.path(), Durability::Default);
        c.index_entries = budget;
        c
    };
    let log = PredictionLog::open(config()).expect("any segments open");
    let recovered = log.recovery().records;
    let records = PredictionLog::records(dir.path()).expect("segments read back");
    assert!(records.len() <= recovered);
    for record in &records {
        if let LogRecord::Prediction(p) = record {
            match log.get(p.id.as_u128()) {
                Ok(Some((found, _))) => assert_eq!(found.id, p.id),
                // Another frame claimed the same id and is not a whole record.
                Err(LogError::Record(_)) => {}
                Ok(None) => panic!("prediction {} is in a segment but not found", p.id),
                Err(other) => panic!("lookup of {} failed: {other}", p.id),
            }
        }
    }
    let id = u128::MAX - 7;
    let payload = serde_json::to_vec(&serde_json::json!({"type": "prediction",
        "id": uuid::Uuid::from_u128(id), "time_ms": 1, "latency_us": 1, "inputs": {}, "outputs": {}}))
    .expect("json");
    runtime
        .block_on(log.append(vec![Entry {
            id,
            kind: EntryKind::Prediction,
            payload,
        }]))
        .expect("append after recovery");
    log.close();
    drop(log);
    let reopened = PredictionLog::open(config()).expect("reopen");
    assert_eq!(
        reopened.recovery().truncated_bytes,
        0,
        "recovery left a torn tail"
    );
    assert_eq!(reopened.recovery().records, recovered + 1);
    assert!(matches!(reopened.get(id), Ok(Some(_))));
}
