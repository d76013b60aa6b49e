//! Requests to a version that seals personal data: the subject may be a model column or come
//! beside them, every sealed cell opens to exactly what was sent, and requests that name no
//! subject are refused before anything is logged.

use std::path::PathBuf;
use std::sync::Arc;

use mltrail_core::privacy::{DataKey, PrivacySpec};
use mltrail_serving::privacy::{open_inputs, Erased};
use mltrail_serving::request::{decode, RequestError, RowInputs, SealPlan, SealPlanError};
use mltrail_serving::runtime::Model;
use mltrail_serving::signature::Signature;
use serde_json::{json, Value as Json};

fn model() -> (Model, Signature) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
    let model = Model::load(&std::fs::read(dir.join("columns_onehot.onnx")).unwrap()).unwrap();
    let signature = Signature::from_model(&model, None).unwrap();
    (model, signature)
}

fn plan(subject: &str, pii: &[&str], signature: &Signature) -> Arc<SealPlan> {
    let spec =
        PrivacySpec::new(subject.into(), pii.iter().map(|c| c.to_string()).collect()).unwrap();
    Arc::new(SealPlan::new(spec, signature).unwrap())
}

#[test]
fn sealed_cells_open_to_what_was_sent_wherever_the_subject_is() {
    let (model, signature) = model();
    let key = DataKey::generate().unwrap();
    let ids = [uuid::Uuid::now_v7(), uuid::Uuid::now_v7()];
    // The subject beside the model's columns, and the subject among them.
    for (plan, body, subject) in [
        (
            plan("customer", &["income"], &signature),
            json!({"dataframe_split": {"columns": ["customer", "region", "income", "age"], "data": [["C-1", "west", 48.5, 70.0], [7, "east", 0.1, 42.0]]}}),
            ("C-1", "7"),
        ),
        (
            plan("region", &["age"], &signature),
            json!({"dataframe_records": [{"region": "west", "income": 48.5, "age": 70.0}, {"region": "east", "income": 0.1, "age": 42.0}]}),
            ("west", "east"),
        ),
    ] {
        let sent = body.clone();
        let decoded = decode(body, &model, &signature, Some(&plan)).unwrap();
        let RowInputs::Sealed(private) = &decoded.inputs else {
            panic!("a sealing version's rows are sealed")
        };
        assert_eq!(private.subjects(), [subject.0, subject.1]);
        let rows = private.write(&ids, &[&key, &key]).unwrap();
        let sealed: Vec<String> = serde_json::from_slice(plan.sealed_json()).unwrap();
        for (r, row) in rows.iter().enumerate() {
            let open_text = std::str::from_utf8(&row.open).unwrap();
            let stored: Json = serde_json::from_str(open_text).unwrap();
            for column in &sealed {
                assert!(
                    stored.get(column).is_none(),
                    "{column} left open: {open_text}"
                );
            }
            let sealed_text = std::str::from_utf8(&row.sealed).unwrap();
            assert!(sealed_text.starts_with("pii1:"), "{sealed_text}");
            let opened: Json = serde_json::from_str(&open_inputs(
                open_text,
                &ids[r],
                || sealed.clone(),
                Some(sealed_text),
                Some(&key),
                Erased::Shown,
            ))
            .unwrap();
            let want = match &sent.get("dataframe_split") {
                Some(split) => {
                    let columns = split["columns"].as_array().unwrap();
                    columns
                        .iter()
                        .zip(split["data"][r].as_array().unwrap())
                        .map(|(c, v)| (c.as_str().unwrap().to_string(), v.clone()))
                        .collect::<serde_json::Map<_, _>>()
                }
                None => sent["dataframe_records"][r].as_object().unwrap().clone(),
            };
            assert_eq!(opened, Json::Object(want));
        }
    }
}

#[test]
fn a_request_that_names_no_subject_is_refused() {
    let (model, signature) = model();
    let beside = plan("customer", &["income"], &signature);
    let missing = decode(
        json!({"dataframe_records": [{"region": "west", "income": 48.5, "age": 70.0}]}),
        &model,
        &signature,
        Some(&beside),
    );
    assert_eq!(
        missing.err(),
        Some(RequestError::MissingColumn {
            column: "customer".into()
        })
    );
    let positional = decode(
        json!({"instances": [["west", 48.5, 70.0]]}),
        &model,
        &signature,
        Some(&beside),
    );
    assert!(matches!(positional.err(), Some(RequestError::Format(m)) if m.contains("`customer`")));
    let empty = decode(
        json!({"dataframe_records": [{"customer": "", "region": "west", "income": 48.5, "age": 70.0}]}),
        &model,
        &signature,
        Some(&beside),
    );
    assert!(
        matches!(empty.err(), Some(RequestError::Cell { column, row: 0, .. }) if column == "customer")
    );
    // Without a plan the subject column is an unexpected one, as before.
    let plain = decode(
        json!({"dataframe_records": [{"customer": "C-1", "region": "west", "income": 48.5, "age": 70.0}]}),
        &model,
        &signature,
        None,
    );
    assert!(matches!(
        plain.err(),
        Some(RequestError::ExtraColumn { .. })
    ));
}

#[test]
fn a_plan_names_only_columns_the_model_takes() {
    let (_, signature) = model();
    let spec = PrivacySpec::new("customer".into(), vec!["email".into()]).unwrap();
    assert_eq!(
        SealPlan::new(spec, &signature).err(),
        Some(SealPlanError::NotAColumn {
            column: "email".into(),
            takes: "region, income, age".into()
        })
    );
}
