//! Every scoring input format (MLflow's `dataframe_split`, `dataframe_records`, `instances`,
//! `inputs`, and `text/csv`) through a deployment of a committed fixture model: any body is
//! scored or refused with a `ScoreError`, never a panic; what is scored is logged as valid JSON
//! and found again by its prediction id.
//!
//! Input: the first byte picks the model (and whether its columns are named), the second the
//! format (JSON or CSV); the rest is the body.

use mltrail_serving::deployment::{BodyFormat, Deployment, LoadedModel};
use mltrail_serving::predlog::{Durability, LogConfig, PredictionLog};
use mltrail_serving::runtime::Model;
use mltrail_serving::signature::Signature;
use std::sync::{Arc, OnceLock};

const MODELS: [&str; 6] = [
    "logreg",
    "columns_onehot",
    "lightgbm",
    "imputer_normalizer_binarizer",
    "rf_3class",
    "gbr",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    deployments: Vec<Deployment>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let models =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
        let mut deployments = Vec::new();
        for name in MODELS {
            for named in [false, true] {
                let bytes =
                    std::fs::read(models.join(format!("{name}.onnx"))).expect("fixture model");
                let model = Model::load(&bytes).expect("fixture loads");
                let names = named.then(|| {
                    let inputs = model.inputs();
                    match inputs {
                        [single] => match single.shape.as_slice() {
                            [_, Some(width)] => (0..*width).map(|i| format!("c{i}")).collect(),
                            _ => vec![single.name.clone()],
                        },
                        many => many.iter().map(|i| i.name.clone()).collect(),
                    }
                });
                let signature = Signature::from_model(&model, names)
                    .or_else(|_| Signature::from_model(&model, None))
                    .expect("a signature");
                let loaded =
                    LoadedModel::new(name.into(), "1".into(), "digest".into(), model, signature);
                let log_dir = dir.path().join(format!("{name}-{named}"));
                let log = runtime
                    .block_on(async {
                        PredictionLog::open(LogConfig::new(log_dir, Durability::Default))
                    })
                    .expect("a prediction log");
                deployments.push(Deployment::new(name.into(), loaded, Arc::new(log)));
            }
        }
        Fixture {
            runtime,
            deployments,
            _dir: dir,
        }
    })
}

pub fn run(data: &[u8]) {
    let [pick, format, body @ ..] = data else {
        return;
    };
    let fixture = fixture();
    let deployment = &fixture.deployments[usize::from(*pick) % fixture.deployments.len()];
    let format = if format & 1 == 0 {
        BodyFormat::Json
    } else {
        BodyFormat::Csv
    };
    fixture.runtime.block_on(async {
        let Ok(scored) = deployment
            .score(format, body, std::time::Instant::now())
            .await
        else {
            return;
        };
        assert_eq!(scored.ids.len(), scored.rows.len());
        for row in &scored.rows {
            serde_json::from_slice::<serde_json::Value>(row).expect("a scored row is JSON");
        }
        for id in &scored.ids {
            let found = deployment.lookup(*id).await.expect("lookup");
            assert!(
                found.is_some(),
                "prediction {id} was answered but is not in the log"
            );
        }
    });
}
