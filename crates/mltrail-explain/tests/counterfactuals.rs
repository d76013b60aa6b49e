//! Counterfactuals on the golden credit model (`tests/golden/models/gbc.onnx`, a scikit-learn
//! GradientBoostingClassifier exported to ONNX): every one found flips the runtime's decision,
//! changes only the features acted on and keeps them in their ranges; a certified one has no
//! flip strictly closer along the way back to the row; ranges that cannot flip the decision
//! give none, certified.

use std::path::PathBuf;

use mltrail_explain::robustness::counterfactual::{search, Request};
use mltrail_serving::runtime::{Model, Tensor, TensorData, Value};

const COLUMNS: [&str; 9] = [
    "income",
    "age",
    "debt_ratio",
    "num_accounts",
    "credit_history_months",
    "loan_amount",
    "utilization",
    "num_dependents",
    "savings",
];

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

fn rows() -> Vec<Vec<f64>> {
    let mut reader = csv::Reader::from_path(golden().join("data/reference.csv")).expect("csv");
    let header = reader.headers().expect("header").clone();
    let index: Vec<usize> = COLUMNS
        .iter()
        .map(|n| header.iter().position(|h| h == *n).expect("column"))
        .collect();
    reader
        .records()
        .take(400)
        .map(|r| {
            let r = r.expect("record");
            index
                .iter()
                .map(|i| r[*i].parse::<f64>().expect("number"))
                .collect()
        })
        .collect()
}

fn label(model: &Model, row: &[f64]) -> String {
    let data = TensorData::Float(row.iter().map(|v| *v as f32).collect());
    let outputs = model
        .run(vec![Tensor::new(vec![1, row.len()], data).expect("tensor")])
        .expect("run");
    match &outputs[0] {
        Value::Tensor(t) => match &t.data {
            TensorData::Int64(v) => v[0].to_string(),
            TensorData::String(v) => v[0].clone(),
            other => panic!("label output {other:?}"),
        },
        Value::Maps(_) => panic!("label output is a map"),
    }
}

fn std_of(rows: &[Vec<f64>], j: usize) -> f64 {
    let n = rows.len() as f64;
    let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n;
    (rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn counterfactuals_flip_respect_ranges_and_are_minimal_when_certified() {
    let model = Model::load(&std::fs::read(golden().join("models/gbc.onnx")).expect("model"))
        .expect("load");
    let data = rows();
    let scale: Vec<f64> = (0..COLUMNS.len()).map(|j| std_of(&data, j)).collect();
    // Act on debt_ratio and savings only, within what the data holds.
    let acting = [2usize, 8];
    let (mut found, mut certified, mut none) = (0, 0, 0);
    for row in data.iter().take(60) {
        let row: Vec<f64> = row.iter().map(|v| f64::from(*v as f32)).collect();
        let mut lo = row.clone();
        let mut hi = row.clone();
        for &j in &acting {
            lo[j] = data.iter().map(|r| r[j]).fold(f64::INFINITY, f64::min);
            hi[j] = data.iter().map(|r| r[j]).fold(f64::NEG_INFINITY, f64::max);
        }
        let request = Request {
            row: &row,
            lo: &lo,
            hi: &hi,
            scale: &scale,
            seed: 7,
        };
        let answer = search(&model, COLUMNS.len(), &request).expect("search");
        assert_eq!(answer.original, label(&model, &row));
        let Some((x, decided)) = &answer.found else {
            none += 1;
            continue;
        };
        found += 1;
        // It flips, as the runtime answers it...
        assert_eq!(decided, &label(&model, x));
        assert_ne!(decided, &answer.original);
        // ...changing only what may change, inside the ranges.
        for j in 0..COLUMNS.len() {
            if acting.contains(&j) {
                assert!(
                    x[j] == row[j] || (lo[j] <= x[j] && x[j] <= hi[j]),
                    "{j}: {} outside",
                    x[j]
                );
            } else {
                assert_eq!(x[j], row[j], "feature {j} changed");
            }
        }
        if answer.certified {
            certified += 1;
            // Nothing strictly closer flips: points between the row and the counterfactual,
            // each feature moved the same share of the way, keep the decision.
            for share in [0.25, 0.5, 0.9, 0.99] {
                let between: Vec<f64> = row
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a + share * (b - a))
                    .collect();
                assert_eq!(label(&model, &between), answer.original, "share {share}");
            }
        }
    }
    assert!(found >= 20, "found {found} of 60");
    assert!(
        certified * 10 >= found * 8,
        "certified {certified} of {found}"
    );

    // Ranges that hold each feature to a sliver around its value cannot flip a confident row.
    let row: Vec<f64> = data[0].iter().map(|v| f64::from(*v as f32)).collect();
    let mut lo = row.clone();
    let mut hi = row.clone();
    lo[2] = row[2] - 1e-6;
    hi[2] = row[2] + 1e-6;
    let request = Request {
        row: &row,
        lo: &lo,
        hi: &hi,
        scale: &scale,
        seed: 7,
    };
    let answer = search(&model, COLUMNS.len(), &request).expect("search");
    assert!(answer.found.is_none() && answer.certified, "{answer:?}");
    eprintln!(
        "{found} found ({certified} certified minimal), {none} with none in the data's ranges"
    );
}
