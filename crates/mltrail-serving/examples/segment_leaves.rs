//! What joining the audit trail costs when a segment is archived: the Merkle leaves of a
//! segment's records (RFC 8785 + SHA-256 each, then the root) against converting the same
//! records to Parquet, which archiving did before. Records shaped like the credit model's
//! (six inputs, a label and two probabilities).
//!
//! `cargo run --release -p mltrail-serving --example segment_leaves [RECORDS]`

use std::time::Instant;

use mltrail_serving::archive::ParquetFile;
use mltrail_serving::record::LogRecord;
use mltrail_serving::segment_tree::SegmentLeaves;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let records: Vec<LogRecord> = (0..n)
        .map(|i| {
            let x = i as f64 * 0.001;
            serde_json::from_str(&format!(
                r#"{{"type":"prediction","id":"0190a5b2-0000-7000-8000-{i:012}","time_ms":{t},"deployment":"credit","model":"credit","version":"3","digest":"f8d6b2bb6405d4dee7fb5d49ff7ff0d7696eb9ca8f3a307c534801711e67c4af","arm":null,"latency_us":41,"inputs":{{"f0":{a},"f1":{b},"f2":{c},"f3":{d},"f4":{e},"f5":{f}}},"outputs":{{"output_label":1,"output_probability":{{"0":{p},"1":{q}}}}}}}"#,
                t = 1_790_000_000_000i64 + i as i64,
                a = 1.8549633026123047 + x,
                b = -0.7444113492965698 - x,
                c = 0.5626325607299805 * x,
                d = 0.7824503183364868,
                e = -0.2071617692708969 + x,
                f = 0.7876154184341431,
                p = 0.03086698055267334,
                q = 0.9691330194473267,
            ))
            .expect("a record")
        })
        .collect();
    let started = Instant::now();
    let mut leaves = SegmentLeaves::default();
    for r in &records {
        leaves.push(r).expect("canonical form");
    }
    let summary = leaves
        .summary("predictions/credit/d/r-1.parquet", "credit")
        .expect("records");
    let hashing = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut file = ParquetFile::new().expect("parquet");
    for group in records.chunks(mltrail_serving::archive::ROWS_PER_GROUP) {
        file.write(group).expect("write");
    }
    let bytes = file.finish().expect("finish");
    let converting = started.elapsed().as_secs_f64();
    println!(
        "{n} records: leaves and root {hashing:.3} s ({:.2} µs each), Parquet {converting:.3} s ({} bytes); hashing adds {:.0} % to archiving; root {}",
        hashing / n as f64 * 1e6,
        bytes.len(),
        hashing / converting * 100.0,
        &summary.root[..16]
    );
}
