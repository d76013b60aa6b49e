//! A deployment routing rows between two versions: a request whose rows go to both arms comes
//! back in its own order, each row answered by its arm's model; a canary whose monitor fires
//! is rolled back by its keeper's next round.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mltrail_serving::deployment::follower::{DeploymentEvent, DeploymentJournal};
use mltrail_serving::deployment::policy_keeper::{Keeper, PolicyInForce, PolicyStore};
use mltrail_serving::deployment::{
    BodyFormat, BoxFuture, Deployment, Listed, LoadedModel, ModelRef, ModelSource, SourceError,
    SourceVersion,
};
use mltrail_serving::predlog::{Durability, LogConfig, PredictionLog};
use mltrail_serving::routing::{Policy, RoutingState};
use mltrail_serving::runtime::{Model, Tensor, TensorData, Value};
use mltrail_serving::signature::Signature;
use serde_json::{json, Value as Json};

fn fixture(name: &str) -> Model {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/onnx")
        .join(format!("{name}.onnx"));
    Model::load(&std::fs::read(path).expect("fixture")).expect("fixture loads")
}

const COLUMNS: [&str; 6] = ["c0", "c1", "c2", "c3", "c4", "c5"];

fn loaded(fixture_name: &str, version: &str) -> LoadedModel {
    let model = fixture(fixture_name);
    let signature = Signature::from_model(&model, Some(COLUMNS.map(String::from).to_vec()))
        .expect("a signature");
    LoadedModel::new(
        "m".into(),
        version.into(),
        format!("digest-{fixture_name}"),
        model,
        signature,
    )
}

fn deployment(dir: &std::path::Path) -> Deployment {
    let log = PredictionLog::open(LogConfig::new(dir.join("log"), Durability::Default))
        .expect("a prediction log");
    Deployment::new("d".into(), loaded("logreg_nozipmap", "1"), Arc::new(log))
}

fn rows(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            (0..6)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 / 3.0 - 1.5)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn rows_routed_to_different_arms_come_back_in_request_order() {
    let dir = tempfile::tempdir().unwrap();
    let dep = deployment(dir.path());
    let policy = Arc::new(
        Policy::from_json(&json!({"kind": "split", "arms": ["m/1", "m/2"], "key": "user"}))
            .unwrap(),
    );
    dep.route(
        policy,
        vec![loaded("logreg_nozipmap", "1"), loaded("gbc_nozipmap", "2")],
        None,
    )
    .unwrap();
    let data = rows(40);
    let mut columns: Vec<&str> = COLUMNS.to_vec();
    columns.push("user");
    let body = json!({"dataframe_split": {"columns": columns, "data": data.iter().enumerate().map(|(i, r)| {
        let mut cells: Vec<Json> = r.iter().map(|v| json!(v)).collect();
        cells.push(json!(format!("user-{i}")));
        cells
    }).collect::<Vec<_>>()}});
    let scored = dep
        .score(
            BodyFormat::Json,
            body.to_string().as_bytes(),
            Instant::now(),
        )
        .await
        .expect("scored");
    let routed = scored.routed.as_ref().expect("routed");
    let arms: Vec<&str> = (0..40).map(|r| routed.arm(r)).collect();
    assert!(arms.contains(&"m/1") && arms.contains(&"m/2"));
    // Each arm's own answer on the whole batch, row by row.
    let batch = Tensor::new(
        vec![40, 6],
        TensorData::Float(data.iter().flatten().copied().collect()),
    )
    .unwrap();
    let own = |name: &str| fixture(name).run(vec![batch.clone()]).expect("runs");
    let (first, second) = (own("logreg_nozipmap"), own("gbc_nozipmap"));
    let outputs = scored.outputs.as_ref().expect("one array per output");
    let (Value::Tensor(labels), Value::Tensor(probabilities)) = (&outputs[0], &outputs[1]) else {
        panic!("tensors")
    };
    for (r, &arm) in arms.iter().enumerate() {
        let expected = if arm == "m/1" { &first } else { &second };
        let (Value::Tensor(l), Value::Tensor(p)) = (&expected[0], &expected[1]) else {
            panic!("tensors")
        };
        assert_eq!(
            labels.data.gather(std::iter::once(r), 1),
            l.data.gather(std::iter::once(r), 1),
            "row {r}"
        );
        assert_eq!(
            probabilities.data.gather(std::iter::once(r), 2),
            p.data.gather(std::iter::once(r), 2),
            "row {r}"
        );
        let row: Json = serde_json::from_slice(&scored.rows[r]).unwrap();
        assert_eq!(routed.version(r).version, &arm[2..]);
        assert_eq!(
            row["label"],
            json!(match &l.data {
                TensorData::Int64(v) => v[r],
                other => panic!("{other:?}"),
            })
        );
    }
    // The same key lands on the same arm again.
    let again = dep
        .score(
            BodyFormat::Json,
            body.to_string().as_bytes(),
            Instant::now(),
        )
        .await
        .unwrap();
    let again = again.routed.unwrap();
    assert!((0..40).all(|r| again.arm(r) == arms[r]));
}

/// The tracking server as the keeper sees it: a canary in force whose monitor fired.
struct Server {
    policy: Json,
    rolled_back: Mutex<Option<Json>>,
}

impl PolicyStore for Server {
    fn policy<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<PolicyInForce>, SourceError>> {
        Box::pin(async move {
            Ok(Some(PolicyInForce {
                document: self.policy.clone(),
                since_ms: mltrail_core::now_millis() - 1000,
                rolled_back: self.rolled_back.lock().unwrap().is_some(),
            }))
        })
    }
    fn fired_since<'a>(
        &'a self,
        monitor: &'a str,
        _: i64,
    ) -> BoxFuture<'a, Result<Option<Json>, SourceError>> {
        Box::pin(async move {
            Ok((monitor == "drift-monitor")
                .then(|| json!({"rule": "drift_share >= 0.3", "state": "firing"})))
        })
    }
    fn roll_back<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        verdict: &'a Json,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            *self.rolled_back.lock().unwrap() = Some(verdict.clone());
            Ok(())
        })
    }
    fn learned<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<RoutingState>, SourceError>> {
        Box::pin(async move { Ok(None) })
    }
    fn report<'a>(
        &'a self,
        _: &'a str,
        _: uuid::Uuid,
        delta: &'a RoutingState,
    ) -> BoxFuture<'a, Result<RoutingState, SourceError>> {
        Box::pin(async move { Ok(delta.clone()) })
    }
}

/// The keeper loads nothing here: the policy is in force already.
struct NoModels;

impl ModelSource for NoModels {
    fn version<'a>(&'a self, _: &'a ModelRef) -> BoxFuture<'a, Result<SourceVersion, SourceError>> {
        Box::pin(async move { Err(SourceError::unavailable("a model", "not in this test")) })
    }
    fn root<'a>(&'a self, _: &'a SourceVersion) -> BoxFuture<'a, Result<String, SourceError>> {
        Box::pin(async move { Err(SourceError::unavailable("a model", "not in this test")) })
    }
    fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<Listed>, SourceError>> {
        Box::pin(async move { Err(SourceError::unavailable("a model", "not in this test")) })
    }
    fn read<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<u8>, SourceError>> {
        Box::pin(async move { Err(SourceError::unavailable("a model", "not in this test")) })
    }
}

impl DeploymentJournal for NoModels {
    fn record<'a>(&'a self, _: &'a DeploymentEvent) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move { Ok(()) })
    }
}

#[tokio::test]
async fn a_canary_whose_monitor_fires_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let dep = deployment(dir.path());
    let document = json!({"kind": "canary", "arms": ["m/1", "m/2"], "steps": [50, 100],
                          "step_seconds": 3600, "monitors": ["quiet-monitor", "drift-monitor"]});
    let routing = dep
        .route(
            Arc::new(Policy::from_json(&document).unwrap()),
            vec![loaded("logreg_nozipmap", "1"), loaded("gbc_nozipmap", "2")],
            None,
        )
        .unwrap();
    assert_eq!(routing.router().canary_share(), 0.5);
    let server = Server {
        policy: document,
        rolled_back: Mutex::new(None),
    };
    Keeper::default()
        .round(&dep, &NoModels, &server, &NoModels)
        .await
        .expect("a round");
    let verdict = server
        .rolled_back
        .lock()
        .unwrap()
        .clone()
        .expect("rolled back");
    assert_eq!(verdict["rule"], "monitor");
    assert_eq!(verdict["monitor"], "drift-monitor");
    assert_eq!(verdict["candidate_arm"], "m/2");
    assert_eq!(routing.router().canary_share(), 0.0);
    // The next round reads the rollback from the server and keeps the candidate at 0.
    Keeper::default()
        .round(&dep, &NoModels, &server, &NoModels)
        .await
        .unwrap();
    assert_eq!(routing.router().canary_share(), 0.0);
}
