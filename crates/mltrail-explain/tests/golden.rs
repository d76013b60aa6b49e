//! Our SHAP values against shap 0.51's on the golden credit data (`tests/golden/`): TreeSHAP on
//! scikit-learn's own trees and on their ONNX export (covers recounted from the training data),
//! interventional TreeSHAP, and linear SHAP.

use std::path::PathBuf;

use mltrail_explain::linear::LinearShap;
use mltrail_explain::tree::{Forest, Node, PathDependent, ShapTree, Split};
use mltrail_explain::{Method, ModelExplainer};
use mltrail_serving::runtime::{LinearTerms, Model, NodeMode, OutputSpace, RawOutput};
use serde_json::Value;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(golden().join("golden").join(name)).expect("golden file");
    serde_json::from_str(&text).expect("json")
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect()
        })
        .collect()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// The 9 numeric columns of a golden CSV, row-major.
fn numeric_rows(file: &str, names: &[String]) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(golden().join("data").join(file)).expect("csv");
    let header = reader.headers().expect("header").clone();
    let index: Vec<usize> = names
        .iter()
        .map(|n| header.iter().position(|h| h == n).expect("column"))
        .collect();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.expect("record");
        out.extend(
            index
                .iter()
                .map(|i| record[*i].parse::<f64>().expect("number")),
        );
    }
    out
}

fn feature_names(tree: &Value) -> Vec<String> {
    tree["meta"]["feature_names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().expect("name").to_string())
        .collect()
}

fn worst(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// scikit-learn's arrays as TreeSHAP arenas: left is `x <= threshold` on float32(x).
fn sklearn_forest(trees: &Value) -> Forest {
    let lr = trees["learning_rate"].as_f64().expect("learning rate");
    let mut out = Vec::new();
    for t in trees["trees"].as_array().expect("trees") {
        let left = numbers(&t["children_left"]);
        let right = numbers(&t["children_right"]);
        let feature = numbers(&t["feature"]);
        let threshold = numbers(&t["threshold"]);
        let value = numbers(&t["value"]);
        let covers = numbers(&t["weighted_n_node_samples"]);
        let mut nodes = Vec::new();
        let mut values = Vec::new();
        for i in 0..left.len() {
            if left[i] < 0.0 {
                nodes.push(Node {
                    split: None,
                    true_child: 0,
                    false_child: 0,
                });
                values.push(lr * value[i]);
            } else {
                nodes.push(Node {
                    split: Some(Split {
                        feature: feature[i] as u32,
                        threshold: threshold[i],
                        mode: NodeMode::Leq,
                        missing_goes_true: false,
                    }),
                    true_child: left[i] as u32,
                    false_child: right[i] as u32,
                });
                values.push(0.0);
            }
        }
        out.push(ShapTree::new(nodes, values, covers, 1).expect("tree"));
    }
    Forest::new(out, vec![trees["init_raw"].as_f64().expect("init")], 9).expect("forest")
}

/// Explains each row of `x` (9 features, one output) with `explain(row index, row, phi)` and
/// checks every value is within `tolerance` of shap's `want`.
fn each_row_within(
    x: &[Vec<f64>],
    want: &[Vec<f64>],
    tolerance: f64,
    mut explain: impl FnMut(usize, &[f64], &mut [f64]),
) {
    let mut largest = 0.0f64;
    for (r, row) in x.iter().enumerate() {
        let mut phi = vec![0.0; 9];
        explain(r, row, &mut phi);
        let err = worst(&phi, &want[r]);
        largest = largest.max(err);
        assert!(err < tolerance, "row {r}: off by {err}");
    }
    eprintln!("largest difference from shap: {largest:e}");
}

fn float32(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| r.iter().map(|v| f64::from(*v as f32)).collect())
        .collect()
}

#[test]
fn path_dependent_tree_shap_on_sklearns_trees_equals_shap_to_1e_12() {
    let golden = json("shap_tree.json");
    let expected = &golden["variants"]["tree_path_dependent"];
    let forest = sklearn_forest(&json("gbc_trees.json"));
    // Every way of computing it: region tables, leaf tables and the per-row walk (deep trees).
    for explainer in [
        PathDependent::new(forest.clone()),
        PathDependent::by_leaf_tables(forest.clone()),
        PathDependent::walking(forest),
    ] {
        let base = expected["base_value"].as_f64().expect("base");
        assert!((explainer.base_value()[0] - base).abs() < 1e-12);
        let x = float32(&matrix(&golden["X"]));
        let want = matrix(&expected["shap_values"]);
        let raw = numbers(&golden["raw_prediction"]);
        each_row_within(&x, &want, 1e-12, |r, row, phi| {
            explainer.explain(row, phi);
            let total = base + phi.iter().sum::<f64>();
            assert!((total - raw[r]).abs() < 1e-12, "row {r}: additivity");
        });
    }
}

fn onnx_model() -> Model {
    let bytes = std::fs::read(golden().join("models/gbc.onnx")).expect("model");
    Model::load(&bytes).expect("load")
}

#[test]
fn path_dependent_tree_shap_on_the_onnx_export_with_covers_from_the_training_data() {
    let golden = json("shap_tree.json");
    let names = feature_names(&golden);
    let training = numeric_rows("reference.csv", &names);
    let model = onnx_model();
    let explainer =
        ModelExplainer::new(&model, &training, Method::PathDependent, 100).expect("explainer");
    assert_eq!(explainer.method(), "tree_path_dependent");
    assert_eq!(explainer.fallback_reason(), None);
    assert_eq!(
        explainer.outputs(),
        &[RawOutput {
            label: "1".into(),
            space: OutputSpace::LogOdds
        }]
    );
    let expected = &golden["variants"]["tree_path_dependent"];
    // ONNX keeps leaf weights as float32: agreement is to their rounding, not to 1e-12.
    let base = expected["base_value"].as_f64().expect("base");
    assert!((explainer.base_value()[0] - base).abs() < 1e-6);
    let x: Vec<f64> = matrix(&golden["X"]).concat();
    let want = matrix(&expected["shap_values"]);
    let raw = numbers(&golden["raw_prediction"]);
    let mut largest = 0.0f64;
    for (r, e) in explainer
        .explain(&model, &x)
        .expect("explain")
        .iter()
        .enumerate()
    {
        let err = worst(&e.values, &want[r]);
        largest = largest.max(err);
        assert!(err < 1e-6, "row {r}: off by {err}");
        assert!((e.output[0] - raw[r]).abs() < 1e-6);
        let total = explainer.base_value()[0] + e.values.iter().sum::<f64>();
        assert!((total - e.output[0]).abs() < 1e-9, "row {r}: additivity");
    }
    eprintln!("largest difference from shap: {largest:e}");
}

#[test]
fn interventional_tree_shap_against_the_first_100_training_rows_equals_shap() {
    let golden = json("shap_tree.json");
    let names = feature_names(&golden);
    let training = numeric_rows("reference.csv", &names);
    let model = onnx_model();
    // A background of N rows from a dataset of N rows is exactly that dataset.
    let explainer = ModelExplainer::new(&model, &training[..100 * 9], Method::Interventional, 100)
        .expect("explainer");
    assert_eq!(explainer.method(), "tree_interventional");
    let expected = &golden["variants"]["interventional"];
    assert_eq!(
        matrix(&expected["background"]).concat(),
        training[..100 * 9].to_vec()
    );
    let base = expected["base_value"].as_f64().expect("base");
    assert!((explainer.base_value()[0] - base).abs() < 1e-6);
    let x: Vec<f64> = matrix(&golden["X"]).concat();
    let want = matrix(&expected["shap_values"]);
    let mut largest = 0.0f64;
    for (r, e) in explainer
        .explain(&model, &x)
        .expect("explain")
        .iter()
        .enumerate()
    {
        // shap's interventional kernel computes in float32.
        let err = worst(&e.values, &want[r]);
        largest = largest.max(err);
        assert!(err < 1e-6, "row {r}: off by {err}");
        let total = explainer.base_value()[0] + e.values.iter().sum::<f64>();
        assert!((total - e.output[0]).abs() < 1e-9, "row {r}: additivity");
    }
    eprintln!("largest difference from shap: {largest:e}");
}

#[test]
fn linear_shap_equals_shaps_linear_explainer_to_1e_12() {
    let golden = json("shap_linear.json");
    let names = feature_names(&golden);
    let background = numeric_rows("reference.csv", &names)[..100 * 9].to_vec();
    let terms = LinearTerms {
        outputs: vec![RawOutput {
            label: "1".into(),
            space: OutputSpace::LogOdds,
        }],
        coefficients: numbers(&golden["coef_raw"]),
        intercepts: vec![golden["intercept_raw"].as_f64().expect("intercept")],
        features: 9,
    };
    let explainer = LinearShap::new(terms, &background).expect("explainer");
    let base = golden["base_value"].as_f64().expect("base");
    assert!((explainer.base_value()[0] - base).abs() < 1e-12);
    let want = matrix(&golden["shap_values"]);
    each_row_within(&matrix(&golden["X"]), &want, 1e-12, |_, row, phi| {
        explainer.explain(row, phi)
    });
}

#[test]
fn interventional_tree_shap_by_region_tables_leaf_tables_and_walking_all_equal_shap() {
    use mltrail_explain::tree::Interventional;
    let golden = json("shap_tree.json");
    let expected = &golden["variants"]["interventional"];
    let background: Vec<f64> = float32(&matrix(&expected["background"])).concat();
    let forest = sklearn_forest(&json("gbc_trees.json"));
    let want = matrix(&expected["shap_values"]);
    let x = float32(&matrix(&golden["X"]));
    for explainer in [
        Interventional::new(forest.clone(), &background).expect("regions"),
        Interventional::by_leaf_tables(forest.clone(), &background).expect("tables"),
        Interventional::walking(forest.clone(), &background).expect("walk"),
    ] {
        let base = expected["base_value"].as_f64().expect("base");
        assert!((explainer.base_value()[0] - base).abs() < 1e-6);
        each_row_within(&x, &want, 1e-6, |_, row, phi| explainer.explain(row, phi));
    }
}

#[test]
fn fairness_equals_fairlearns_metric_frames_and_parity_scalars_to_1e_12() {
    use mltrail_explain::fairness::FairnessReport;
    let golden = json("fairness.json");
    let mut reader =
        csv::Reader::from_path(golden_path("data/predictions.csv")).expect("predictions");
    let (mut truth, mut predicted, mut sex, mut age) = (vec![], vec![], vec![], vec![]);
    for record in reader.records() {
        let r = record.expect("row");
        truth.push(&r[0] == "1");
        predicted.push(&r[1] == "1");
        sex.push(Some(r[3].to_string()));
        age.push(Some(r[4].to_string()));
    }
    let report = FairnessReport::new(
        &[("sex".to_string(), sex), ("age_group".to_string(), age)],
        &truth,
        &predicted,
    )
    .to_json();
    let mut compared = 0;
    let mut largest = 0.0f64;
    let mut walk = vec![(
        String::new(),
        &golden["metric_frames"],
        &report["metric_frames"],
    )];
    walk.push((String::new(), &golden["scalar"], &report["scalar"]));
    while let Some((at, want, got)) = walk.pop() {
        match want {
            Value::Object(map) => {
                for (k, v) in map {
                    walk.push((format!("{at}.{k}"), v, &got[k]));
                }
            }
            Value::Number(n) => {
                let (w, g) = (n.as_f64().unwrap(), got.as_f64().unwrap_or(f64::NAN));
                assert!((w - g).abs() <= 1e-12, "{at}: {g} vs fairlearn's {w}");
                largest = largest.max((w - g).abs());
                compared += 1;
            }
            other => panic!("{at}: unexpected {other}"),
        }
    }
    // 3 groupings: 7 metrics × (overall, groups, 6 views) and 2 × 8 scalars each.
    assert_eq!(compared, 272);
    eprintln!("{compared} numbers, largest difference from fairlearn: {largest:e}");
}

fn golden_path(rel: &str) -> PathBuf {
    golden().join(rel)
}
