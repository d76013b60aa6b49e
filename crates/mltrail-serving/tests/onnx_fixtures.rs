//! The native runtime against onnxruntime's answers on the committed fixtures
//! (`tests/fixtures/onnx/`, made by `make_fixtures.py`): every score within 1e-5 (absolute, or
//! relative above 1.0), labels exact.

use std::path::PathBuf;

use mltrail_serving::runtime::{Graph, MapKeys, RuntimeError, Tensor, TensorData, Value};
use serde_json::Value as Json;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

fn load(name: &str) -> (Graph, Json) {
    let dir = fixtures();
    let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).expect("fixture model");
    let spec: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("fixture json"),
    )
    .expect("json");
    (
        Graph::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")),
        spec,
    )
}

fn tensor_from_json(v: &Json) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"].as_array().unwrap();
    let num = |d: &Json| d.as_f64().unwrap_or(f64::NAN);
    let data = match v["dtype"].as_str().unwrap() {
        "float" => TensorData::Float(data.iter().map(|d| num(d) as f32).collect()),
        "double" => TensorData::Double(data.iter().map(num).collect()),
        "int64" => TensorData::Int64(data.iter().map(|d| d.as_i64().unwrap()).collect()),
        "string" => TensorData::String(
            data.iter()
                .map(|d| d.as_str().unwrap().to_string())
                .collect(),
        ),
        other => panic!("dtype {other}"),
    };
    Tensor::new(shape, data).unwrap()
}

fn run_fixture(name: &str) -> (Vec<Value>, Json, Graph) {
    let (graph, spec) = load(name);
    let inputs = graph
        .inputs()
        .iter()
        .map(|i| tensor_from_json(&spec["inputs"][&i.name]))
        .collect();
    let outputs = graph.run(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
    (outputs, spec, graph)
}

fn check(name: &str) {
    let (outputs, spec, graph) = run_fixture(name);
    let mut worst = 0.0f64;
    for (out, value) in graph.outputs().iter().zip(&outputs) {
        let expected = &spec["outputs"][&out.name];
        match (expected["kind"].as_str().unwrap(), value) {
            ("tensor", Value::Tensor(t)) => {
                let want = tensor_from_json(expected);
                assert_eq!(t.shape, want.shape, "{name}/{}: shape", out.name);
                match (&t.data, &want.data) {
                    (TensorData::Float(a), TensorData::Float(b)) => {
                        for (i, (x, y)) in a.iter().zip(b).enumerate() {
                            // 1e-5 absolute; for regression outputs in the hundreds that is below one
                            // float32 step, so there it is 1e-5 relative (we sum in f64, onnxruntime in f32).
                            let d =
                                (f64::from(*x) - f64::from(*y)).abs() / f64::from(y.abs()).max(1.0);
                            worst = worst.max(d);
                            assert!(
                                d <= 1e-5 || (x.is_nan() && y.is_nan()),
                                "{name}/{}[{i}]: {x} vs onnxruntime {y}",
                                out.name
                            );
                        }
                    }
                    (a, b) => assert_eq!(a, b, "{name}/{}", out.name),
                }
            }
            ("maps", Value::Maps(m)) => {
                let rows = expected["data"].as_array().unwrap();
                assert_eq!(m.rows(), rows.len(), "{name}: map rows");
                let keys: Vec<String> = match &m.keys {
                    MapKeys::Int64(k) => k.iter().map(|k| k.to_string()).collect(),
                    MapKeys::String(k) => k.clone(),
                };
                for (r, row) in rows.iter().enumerate() {
                    for (k, key) in keys.iter().enumerate() {
                        let want = row[key].as_f64().unwrap();
                        let got = f64::from(m.values[r * keys.len() + k]);
                        worst = worst.max((got - want).abs());
                        assert!(
                            (got - want).abs() <= 1e-5,
                            "{name}: row {r} key {key}: {got} vs {want}"
                        );
                    }
                }
            }
            (kind, other) => panic!("{name}/{}: expected {kind}, got {other:?}", out.name),
        }
    }
    eprintln!("{name}: max difference {worst:.2e}");
}

macro_rules! fixture_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] fn $test() { check($name); })*
    };
}

fixture_tests! {
    logistic_regression => "logreg",
    logistic_regression_without_zipmap => "logreg_nozipmap",
    scaler_and_logistic_regression_three_classes => "scaler_logreg_3class",
    scaler_and_logistic_regression_without_zipmap => "scaler_logreg_3class_nozipmap",
    gradient_boosting_binary => "gbc",
    gradient_boosting_binary_without_zipmap => "gbc_nozipmap",
    gradient_boosting_three_classes => "gbc_3class",
    random_forest_binary => "rf",
    random_forest_binary_without_zipmap => "rf_nozipmap",
    random_forest_three_classes => "rf_3class",
    gradient_boosting_regressor => "gbr",
    random_forest_regressor_average => "rfr",
    linear_regression => "linreg",
    imputer_normalizer_binarizer_with_nan_rows => "imputer_normalizer_binarizer",
    lightgbm_with_missing_value_tracks => "lightgbm",
    column_inputs_with_one_hot_strings => "columns_onehot",
    label_encoder_and_feature_extractor => "label_encoder",
}

#[test]
fn a_graph_outside_the_native_set_is_refused_by_operator_name() {
    let bytes = std::fs::read(fixtures().join("mlp.onnx")).unwrap();
    match Graph::from_bytes(&bytes) {
        Err(RuntimeError::Unsupported { domain, op }) => {
            assert_eq!(domain, "ai.onnx");
            assert!(
                ["MatMul", "Tanh", "Sigmoid", "ArgMax"].contains(&op.as_str()),
                "{op}"
            );
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("the MLP must not compile natively"),
    }
}

#[test]
fn garbage_bytes_are_not_a_model() {
    assert!(matches!(
        Graph::from_bytes(b"not a model at all"),
        Err(RuntimeError::Model(_))
    ));
}

#[test]
fn tree_structure_is_exposed_for_explanations() {
    let (graph, _) = load("gbc_nozipmap");
    let ensembles = graph.tree_ensembles();
    assert_eq!(ensembles.len(), 1);
    assert_eq!(ensembles[0].trees().len(), 50);
    let leaf = ensembles[0].leaf(ensembles[0].trees()[0], &[0.0; 6]);
    assert_eq!(ensembles[0].leaf_votes(leaf).len(), 1);
}

/// Graphs outside the native set run through onnxruntime (the wheel's shared library, found via
/// ORT_DYLIB_PATH or the project's venv, which `scripts/setup.sh` installs).
#[test]
fn a_graph_outside_the_native_set_runs_through_onnxruntime() {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    if std::env::var_os("ORT_DYLIB_PATH").is_none() && venv.exists() {
        std::env::set_var("VIRTUAL_ENV", venv.canonicalize().unwrap());
    }
    let bytes = std::fs::read(fixtures().join("mlp.onnx")).unwrap();
    let model = mltrail_serving::runtime::Model::load(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.engine_name(), "onnxruntime");
    let spec: Json =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("mlp.json")).unwrap())
            .unwrap();
    let inputs = model
        .inputs()
        .iter()
        .map(|i| tensor_from_json(&spec["inputs"][&i.name]))
        .collect();
    let outputs = model.run(inputs).unwrap();
    let Value::Tensor(probabilities) = &outputs[1] else {
        panic!("tensor")
    };
    let want = tensor_from_json(&spec["outputs"]["probabilities"]);
    let (TensorData::Float(a), TensorData::Float(b)) = (&probabilities.data, &want.data) else {
        panic!("floats")
    };
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-6,
        "onnxruntime through ort differs from onnxruntime-python by {worst}"
    );
    let native =
        mltrail_serving::runtime::Model::load(&std::fs::read(fixtures().join("gbc.onnx")).unwrap())
            .unwrap();
    assert_eq!(native.engine_name(), "native");
}

/// Fuzzing found tree ensembles whose branches lead back up their tree: scoring one row never
/// ended. They must be refused at load, saying which node is wrong.
#[test]
fn a_tree_with_a_cycle_is_refused_at_load() {
    let seeds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/onnx_model");
    for name in ["tree-cycle-1", "tree-cycle-2"] {
        let bytes = std::fs::read(seeds.join(name)).expect("fuzz seed");
        let error = Graph::from_bytes(&bytes)
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"))
            .to_string();
        assert!(
            error.contains("nodes_truenodeids")
                && (error.contains("one parent") || error.contains("leads back")),
            "{name}: {error}"
        );
    }
}
