//! mltrail's explanations against shap 0.51 on models the tests make themselves
//! (`tests/fixtures/shap/make_shap_fixtures.py`): interventional TreeSHAP on a LightGBM and an
//! XGBoost export (onnxmltools), and sampling on an MLP run through onnxruntime, within three
//! of its standard errors of shap's PermutationExplainer. Both sides explain against the same
//! 50 background rows.

use std::path::PathBuf;

use mltrail_explain::{Method, ModelExplainer};
use mltrail_serving::runtime::Model;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/shap")
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

struct Case {
    model: Model,
    background: Vec<f64>,
    rows: Vec<Vec<f64>>,
    want: Vec<Vec<f64>>,
    spec: Value,
}

fn case(name: &str) -> Case {
    let bytes = std::fs::read(dir().join(format!("{name}.onnx"))).expect("model");
    let model = Model::load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(dir().join(format!("{name}.shap.json"))).expect("spec"),
    )
    .expect("json");
    Case {
        model,
        background: matrix(&spec["background"]).concat(),
        rows: matrix(&spec["rows"]),
        want: matrix(&spec["shap_values"]),
        spec,
    }
}

fn trees_equal_shap(name: &str) {
    let c = case(name);
    let explainer = ModelExplainer::new(&c.model, &c.background, Method::Interventional, 100)
        .expect("explainer");
    assert_eq!(explainer.method(), "tree_interventional", "{name}");
    let explained = explainer
        .explain(&c.model, &c.rows.concat())
        .expect("explain");
    let mut worst = 0.0f64;
    for (r, (e, want)) in explained.iter().zip(&c.want).enumerate() {
        for (j, (got, want)) in e.values.iter().zip(want).enumerate() {
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() < 1e-6,
                "{name} row {r} column {j}: {got} vs shap {want}"
            );
        }
    }
    eprintln!("{name}: largest difference from shap {worst:e}");
}

#[test]
fn interventional_tree_shap_on_a_lightgbm_export_equals_shap() {
    trees_equal_shap("lightgbm");
}

#[test]
fn interventional_tree_shap_on_an_xgboost_export_equals_shap() {
    trees_equal_shap("xgboost");
}

/// Graphs outside the native set run through onnxruntime, from the project's venv.
fn use_the_venvs_onnxruntime() {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    if std::env::var_os("ORT_DYLIB_PATH").is_none() && venv.exists() {
        std::env::set_var("VIRTUAL_ENV", venv.canonicalize().expect("venv"));
    }
}

#[test]
fn sampled_values_on_an_mlp_are_within_three_standard_errors_of_shaps_permutation_explainer() {
    use_the_venvs_onnxruntime();
    let c = case("mlp");
    assert_eq!(c.model.engine_name(), "onnxruntime");
    let explainer = ModelExplainer::new(&c.model, &c.background, Method::Interventional, 100)
        .expect("explainer");
    assert_eq!(explainer.method(), "sampling");
    // The MLP's outputs are the two class probabilities; shap explained class 1's.
    let class_one = explainer
        .outputs()
        .iter()
        .position(|o| o.label == "1")
        .expect("an output for class 1");
    let base = c.spec["base_value"].as_f64().expect("base");
    assert!(
        (explainer.base_value()[class_one] - base).abs() < 1e-6,
        "the same background"
    );
    let explained = explainer
        .explain(&c.model, &c.rows.concat())
        .expect("explain");
    let d = c.rows[0].len();
    let (mut checked, mut beyond_two) = (0, 0);
    for (r, (e, want)) in explained.iter().zip(&c.want).enumerate() {
        let values = &e.values[class_one * d..(class_one + 1) * d];
        let errors = &e.standard_error.as_ref().expect("standard errors")
            [class_one * d..(class_one + 1) * d];
        for j in 0..d {
            let gap = (values[j] - want[j]).abs();
            // shap's own estimate has an error too; 1e-4 covers it where ours is near zero.
            assert!(
                gap <= 3.0 * errors[j] + 1e-4,
                "row {r} column {j}: {} vs shap {} (se {})",
                values[j],
                want[j],
                errors[j]
            );
            checked += 1;
            beyond_two += usize::from(gap > 2.0 * errors[j] + 1e-4);
        }
    }
    // Errors that mean something: about 5 % of values fall past two of them, not most; and
    // they are a fraction of the values (about a sixth with 100 permutation pairs), so "within
    // three" says something.
    assert!(
        beyond_two * 5 < checked,
        "{beyond_two} of {checked} past two standard errors"
    );
    let (mut errors, mut sizes) = (0.0, 0.0);
    for (e, want) in explained.iter().zip(&c.want) {
        let se = e.standard_error.as_ref().expect("standard errors");
        errors += se[class_one * d..(class_one + 1) * d].iter().sum::<f64>();
        sizes += want.iter().map(|v| v.abs()).sum::<f64>();
    }
    eprintln!(
        "mlp: mean standard error {:e}, mean |value| {:e}",
        errors / checked as f64,
        sizes / checked as f64
    );
    assert!(
        errors < 0.25 * sizes,
        "standard errors {errors} against values {sizes}"
    );
}
