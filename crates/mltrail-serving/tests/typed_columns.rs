//! Reference data goes into a model through typed columns (`request::tensors_from_columns`)
//! instead of a JSON request: the two paths must give the model the same tensors, and refuse the
//! same cells with the same messages.

use std::path::PathBuf;

use mltrail_serving::request::{decode, tensors_from_columns, ColumnCells, MISSING_CODE};
use mltrail_serving::response::{json_keys, row_json, row_object};
use mltrail_serving::runtime::{Model, Tensor, TensorData};
use mltrail_serving::signature::Signature;
use serde_json::{json, Value as Json};

fn fixture(name: &str) -> (Model, Json) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
    let model = Model::load(&std::fs::read(dir.join(format!("{name}.onnx"))).unwrap()).unwrap();
    let spec =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    (model, spec)
}

fn same_tensors(a: &[Tensor], b: &[Tensor]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.shape, y.shape);
        match (&x.data, &y.data) {
            (TensorData::Float(p), TensorData::Float(q)) => {
                assert!(p.iter().zip(q).all(|(u, v)| u.to_bits() == v.to_bits()))
            }
            (p, q) => assert_eq!(format!("{p:?}"), format!("{q:?}")),
        }
    }
}

#[test]
fn a_tensor_model_gets_the_same_input_and_gives_the_same_rows() {
    let (model, spec) = fixture("logreg");
    let signature = Signature::from_model(&model, None).unwrap();
    let data: Vec<f64> = spec["inputs"]["input"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let width = 6;
    let rows = data.len() / width;
    let columns: Vec<Vec<f64>> = (0..width)
        .map(|c| (0..rows).map(|r| data[r * width + c]).collect())
        .collect();
    let cells: Vec<ColumnCells<'_>> = columns
        .iter()
        .map(|values| ColumnCells::Numbers {
            values,
            integer: false,
        })
        .collect();
    let typed = tensors_from_columns(&model, &signature, &cells, 0..rows).unwrap();
    let body = json!({"instances": (0..rows)
        .map(|r| data[r * width..(r + 1) * width].to_vec())
        .collect::<Vec<_>>()});
    let decoded = decode(body, &model, &signature, None).unwrap();
    same_tensors(&typed, &decoded.tensors);

    let outputs = model.run(typed).unwrap();
    let names = model.output_names();
    let keys = json_keys(&names);
    // The values the log writes, exactly: compared as text, because parsing 17-digit doubles
    // back (serde_json without `float_roundtrip`) may land one ulp off.
    for r in 0..rows {
        let mut text = Vec::new();
        row_json(&keys, &outputs, r, rows, &mut text);
        let object = serde_json::to_vec(&row_object(&names, &outputs, r, rows)).unwrap();
        assert_eq!(
            String::from_utf8(object).unwrap(),
            String::from_utf8(text).unwrap(),
            "row {r}"
        );
    }
}

#[test]
fn a_column_model_refuses_the_same_cells_the_same_way() {
    let (model, _) = fixture("columns_onehot");
    let signature = Signature::from_model(&model, None).unwrap();
    let names = signature.column_names();
    assert_eq!(names, ["region", "income", "age"]);
    let labels = vec!["west".to_string(), "east".to_string()];
    let region = ColumnCells::Text {
        labels: &labels,
        codes: &[0, 1],
    };
    let (income, age) = ([48.5, 61.0], [70.0, 42.0]);
    let numbers = |values| ColumnCells::Numbers {
        values,
        integer: false,
    };
    let typed = tensors_from_columns(
        &model,
        &signature,
        &[region, numbers(&income), numbers(&age)],
        0..2,
    )
    .unwrap();
    let decoded = decode(
        json!({"dataframe_split": {"columns": names, "data": [["west", 48.5, 70.0], ["east", 61.0, 42.0]]}}),
        &model,
        &signature,
        None,
    )
    .unwrap();
    same_tensors(&typed, &decoded.tensors);

    // A missing region and a number where text belongs: refused as the request path refuses them.
    let missing = ColumnCells::Text {
        labels: &labels,
        codes: &[0, MISSING_CODE],
    };
    let typed_err = tensors_from_columns(
        &model,
        &signature,
        &[missing, numbers(&income), numbers(&age)],
        0..2,
    )
    .unwrap_err();
    let request_err = decode(
        json!({"dataframe_split": {"columns": names, "data": [["west", 48.5, 70.0], [null, 61.0, 42.0]]}}),
        &model,
        &signature,
        None,
    )
    .err()
    .unwrap();
    assert_eq!(typed_err, request_err);
    let typed_err = tensors_from_columns(
        &model,
        &signature,
        &[numbers(&income), numbers(&income), numbers(&age)],
        0..2,
    )
    .unwrap_err();
    assert_eq!(
        typed_err.to_string(),
        "column `region`, row 0: expected a string, got 48.5"
    );
}
