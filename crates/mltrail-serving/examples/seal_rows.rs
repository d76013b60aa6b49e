//! The CPU a request to a sealing deployment costs beyond a plain one, without the log's I/O:
//! decoding 100 rows, finding their subjects' keys in the serving cache, and writing their
//! inputs (sealed or not). `cargo run --release -p mltrail-serving --example seal_rows`.
//! Model: the 6-column gbc fixture; sealed: f1, f2 and a `customer` column beside them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mltrail_core::privacy::{DataKey, MasterKey, PrivacySpec, SubjectHash};
use mltrail_serving::deployment::BoxFuture;
use mltrail_serving::privacy::{KeyCache, KeyError, SubjectKey, SubjectKeys};
use mltrail_serving::request::{decode, RowInputs, SealPlan};
use mltrail_serving::runtime::Model;
use mltrail_serving::signature::Signature;
use serde_json::json;

/// Keys made in memory: the cache answers every lookup after the first request.
struct Memory(MasterKey);

impl SubjectKeys for Memory {
    fn for_subjects<'a>(
        &'a self,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<SubjectKey>, KeyError>> {
        let keys = subjects
            .iter()
            .map(|s| {
                SubjectKey::new(
                    self.0.subject_hash(s),
                    Arc::new(DataKey::generate().expect("key")),
                )
            })
            .collect();
        Box::pin(async move { Ok(keys) })
    }

    fn for_hashes<'a>(
        &'a self,
        hashes: &'a [SubjectHash],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<DataKey>>>, KeyError>> {
        Box::pin(async move { Ok(vec![None; hashes.len()]) })
    }
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
    let model = Model::load(&std::fs::read(dir.join("gbc.onnx")).expect("fixture")).expect("model");
    let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let signature = Signature::from_model(&model, Some(names.clone())).expect("signature");
    let spec = PrivacySpec::new("customer".into(), vec!["f1".into(), "f2".into()]).expect("spec");
    let plan = Arc::new(SealPlan::new(spec, &signature).expect("plan"));
    let rows = 100;
    let row = |r: usize| {
        let mut cells: Vec<serde_json::Value> = (0..6)
            .map(|c| json!(0.123_456_789_012_345_f64 * (r * 7 + c) as f64))
            .collect();
        cells.push(json!(format!("customer-{r}")));
        cells
    };
    let mut columns: Vec<String> = names.clone();
    columns.push("customer".into());
    let sealed_body = json!({"dataframe_split": {"columns": columns, "data": (0..rows).map(row).collect::<Vec<_>>()}});
    let plain_body = json!({"dataframe_split": {"columns": names, "data": (0..rows).map(|r| row(r)[..6].to_vec()).collect::<Vec<_>>()}});
    let cache = KeyCache::new(Arc::new(Memory(
        MasterKey::from_text(&"ab".repeat(32)).expect("master"),
    )));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ids: Vec<uuid::Uuid> = (0..rows).map(|_| uuid::Uuid::now_v7()).collect();
    let turns = 5_000;

    let started = Instant::now();
    for _ in 0..turns {
        let decoded = decode(plain_body.clone(), &model, &signature, None).expect("decode");
        std::hint::black_box(decoded.inputs);
    }
    let plain = started.elapsed().as_secs_f64() / turns as f64 * 1e6;

    let started = Instant::now();
    for _ in 0..turns {
        let decoded = decode(sealed_body.clone(), &model, &signature, Some(&plan)).expect("decode");
        let RowInputs::Sealed(private) = decoded.inputs else {
            panic!("sealed rows")
        };
        let keys = runtime
            .block_on(cache.for_subjects(private.subjects()))
            .expect("keys");
        let data_keys: Vec<&DataKey> = keys.iter().map(|k| k.key.as_ref()).collect();
        std::hint::black_box(private.write(&ids, &data_keys).expect("seal"));
    }
    let sealed = started.elapsed().as_secs_f64() / turns as f64 * 1e6;
    println!(
        "{rows} rows: plain {plain:.1} µs, sealed {sealed:.1} µs per request (+{:.2} µs per row)",
        (sealed - plain) / rows as f64
    );
}
