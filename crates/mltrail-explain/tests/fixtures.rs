//! Every model family the runtime serves gets the method meant for it, and its explanations add
//! up: base value plus contributions equals the explained output, which the explainer has
//! itself checked against the runtime's answers (probabilities or values).

use std::path::PathBuf;

use mltrail_explain::{Method, ModelExplainer};
use mltrail_serving::runtime::{Model, OutputSpace};

fn fixture(name: &str) -> (Model, Vec<f64>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
    let model = Model::load(&std::fs::read(dir.join(format!("{name}.onnx"))).expect("model"))
        .expect("load");
    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("case"),
    )
    .expect("json");
    let rows = case["inputs"]["input"]["data"]
        .as_array()
        .expect("data")
        .iter()
        // `null` is a missing value.
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    (model, rows)
}

fn check(name: &str, method: Method, expected: &str, space: OutputSpace, outputs: usize) {
    let (model, rows) = fixture(name);
    let explainer = ModelExplainer::new(&model, &rows, method, 100).expect("explainer");
    assert_eq!(
        explainer.method(),
        expected,
        "{name}: {:?}",
        explainer.fallback_reason()
    );
    assert_eq!(explainer.outputs().len(), outputs, "{name}");
    assert!(
        explainer.outputs().iter().all(|o| o.space == space),
        "{name}"
    );
    let explained = explainer.explain(&model, &rows).expect("explain");
    assert_eq!(explained.len() * model_width(&model), rows.len());
    for (r, e) in explained.iter().enumerate() {
        let d = e.values.len() / outputs;
        for o in 0..outputs {
            let total =
                explainer.base_value()[o] + e.values[o * d..(o + 1) * d].iter().sum::<f64>();
            assert!(
                (total - e.output[o]).abs() < 1e-9 * (1.0 + e.output[o].abs()),
                "{name} row {r} output {o}: {total} vs {}",
                e.output[o]
            );
        }
        assert_eq!(e.standard_error.is_some(), expected == "sampling");
    }
}

fn model_width(model: &Model) -> usize {
    model.inputs()[0]
        .shape
        .last()
        .copied()
        .flatten()
        .expect("width")
}

#[test]
fn tree_ensembles_get_tree_shap_in_their_raw_score_space() {
    for method in [Method::Interventional, Method::PathDependent] {
        let name = match method {
            Method::Interventional => "tree_interventional",
            Method::PathDependent => "tree_path_dependent",
        };
        check("gbc", method, name, OutputSpace::LogOdds, 1);
        check("gbc_nozipmap", method, name, OutputSpace::LogOdds, 1);
        check("lightgbm", method, name, OutputSpace::LogOdds, 1);
        check("gbc_3class", method, name, OutputSpace::Margin, 3);
        check("rf", method, name, OutputSpace::Probability, 1);
        check("rf_nozipmap", method, name, OutputSpace::Probability, 1);
        check("rf_3class", method, name, OutputSpace::Probability, 3);
        check("gbr", method, name, OutputSpace::Value, 1);
        check("rfr", method, name, OutputSpace::Value, 1);
    }
}

#[test]
fn linear_models_get_exact_linear_shap_through_column_wise_scaling() {
    check(
        "logreg",
        Method::default(),
        "linear",
        OutputSpace::LogOdds,
        1,
    );
    check(
        "logreg_nozipmap",
        Method::default(),
        "linear",
        OutputSpace::LogOdds,
        1,
    );
    check("linreg", Method::default(), "linear", OutputSpace::Value, 1);
    check(
        "scaler_logreg_3class",
        Method::default(),
        "linear",
        OutputSpace::Margin,
        3,
    );
}

#[test]
fn a_model_that_mixes_columns_before_its_estimator_is_sampled() {
    // A row-wise Normalizer feeds the linear model: no exact method applies.
    let (model, rows) = fixture("imputer_normalizer_binarizer");
    let explainer = ModelExplainer::new(&model, &rows, Method::default(), 100).expect("explainer");
    assert_eq!(explainer.method(), "sampling");
    assert!(explainer.fallback_reason().is_some());
    check(
        "imputer_normalizer_binarizer",
        Method::default(),
        "sampling",
        OutputSpace::Probability,
        2,
    );
}

#[test]
fn training_rows_with_missing_values_are_no_reference_for_a_model_that_refuses_them() {
    let (model, rows) = fixture("linreg");
    let mut training = rows.clone();
    training[0] = f64::NAN;
    let explainer =
        ModelExplainer::new(&model, &training, Method::default(), 100).expect("explainer");
    assert_eq!(explainer.method(), "linear");
    assert!(explainer.base_value().iter().all(|b| b.is_finite()));
    for e in explainer.explain(&model, &rows).expect("explain") {
        assert!(e.values.iter().all(|v| v.is_finite()), "{:?}", e.values);
    }
}
