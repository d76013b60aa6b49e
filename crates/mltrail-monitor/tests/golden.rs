//! Every statistic, p-value and verdict in `tests/golden/golden/drift.json` (scipy and
//! Evidently 0.7.23 on the golden credit data), to a relative tolerance of 1e-9.

use std::path::PathBuf;

use mltrail_monitor::drift::{self, Method, Sample};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_csv(name: &str) -> Table {
    let text = std::fs::read_to_string(golden_dir().join("data").join(name)).expect("golden csv");
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    Table { header, rows }
}

fn sample(t: &Table, column: &str, numeric: bool, limit: usize) -> Sample {
    let i = t.header.iter().position(|h| h == column).unwrap();
    let cells = t.rows.iter().take(limit).map(|r| r[i].clone());
    if numeric {
        Sample::Numeric(cells.map(|c| c.parse::<f64>().unwrap()).collect())
    } else {
        Sample::categorical(cells)
    }
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    if want == 0.0 {
        return got.abs() < 1e-300;
    }
    ((got - want) / want).abs() <= tol
}

fn check_results(results: &[Value], limit: usize) -> usize {
    let (reference, current) = (read_csv("reference.csv"), read_csv("current.csv"));
    let mut checked = 0;
    for r in results {
        let column = r["column"].as_str().unwrap();
        let numeric = r["column_type"] == "numerical";
        let (rs, cs) = (
            sample(&reference, column, numeric, limit),
            sample(&current, column, numeric, limit),
        );
        let method = r["method"].as_str().unwrap();
        let want = r["statistic"].as_f64();
        let want_p = r["p_value"].as_f64();
        let (got, got_p): (f64, Option<f64>) = match method {
            "ks" => {
                let (Sample::Numeric(a), Sample::Numeric(b)) = (&rs, &cs) else {
                    panic!()
                };
                let res = drift::ks(a, b);
                if let Some(asymp) = r["p_value_asymp"].as_f64() {
                    // scipy's asymptotic branch: same regimes, our own smirnov/Pelz-Good sums.
                    assert!(
                        close(res.p_value_asymp, asymp, 1e-6),
                        "{column} ks asymp: {} vs {asymp}",
                        res.p_value_asymp
                    );
                }
                (res.statistic, Some(res.p_value))
            }
            "wasserstein" => {
                let (Sample::Numeric(a), Sample::Numeric(b)) = (&rs, &cs) else {
                    panic!()
                };
                (drift::wasserstein(a, b), None)
            }
            "wasserstein_normed" => {
                let (Sample::Numeric(a), Sample::Numeric(b)) = (&rs, &cs) else {
                    panic!()
                };
                (drift::wasserstein_normed(a, b), None)
            }
            "jensenshannon" => (drift::jensen_shannon(&rs, &cs), None),
            "psi" => (drift::psi(&rs, &cs), None),
            "chisquare" => {
                let (s, p) = drift::chisquare(&rs, &cs);
                (s, Some(p))
            }
            "chi2_contingency" => {
                let (s, p) = drift::chi2_contingency(&rs, &cs);
                (s, Some(p))
            }
            "z" => {
                let (s, p) = drift::z_test(&rs, &cs);
                (s, Some(p))
            }
            other => panic!("unknown method {other}"),
        };
        if let Some(want) = want {
            assert!(
                close(got, want, 1e-9),
                "{column} {method} statistic: {got} vs golden {want}"
            );
        }
        if let Some(want_p) = want_p {
            let got_p = got_p.unwrap();
            assert!(
                close(got_p, want_p, 1e-9),
                "{column} {method} p-value: {got_p:e} vs golden {want_p:e}"
            );
        }
        if let (Some(drifted), Some(m)) = (
            r["drifted"].as_bool(),
            Method::parse(if method == "wasserstein_normed" {
                "wasserstein"
            } else {
                method
            }),
        ) {
            let threshold = r["threshold"].as_f64().unwrap();
            assert_eq!(
                m.drifted(got, got_p, threshold),
                drifted,
                "{column} {method} verdict"
            );
        }
        checked += 1;
    }
    checked
}

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join("golden/drift.json")).unwrap())
        .unwrap()
}

#[test]
fn every_statistic_on_5000_rows_matches_the_golden_values() {
    let g = golden();
    assert_eq!(
        check_results(g["results"].as_array().unwrap(), usize::MAX),
        63
    );
}

#[test]
fn every_statistic_on_the_first_1000_rows_matches_the_golden_values() {
    let g = golden();
    let n = check_results(g["results_first1000"].as_array().unwrap(), 1000);
    assert_eq!(n, g["results_first1000"].as_array().unwrap().len());
}

/// Evidently's DataDriftPreset: the test it picks per column, its value and verdict, and the
/// dataset verdict, on all rows and on the first 1,000 (small-sample rules).
#[test]
fn default_tests_and_dataset_verdict_match_evidently() {
    let g = golden();
    let (reference, current) = (read_csv("reference.csv"), read_csv("current.csv"));
    for (key, limit) in [
        ("evidently_default_5000", usize::MAX),
        ("evidently_default_1000", 1000),
    ] {
        let preset = &g[key];
        let mut columns = Vec::new();
        for c in preset["columns"].as_array().unwrap() {
            let name = c["column"].as_str().unwrap();
            let numeric = c["column_type"] == "numerical";
            let (rs, cs) = (
                sample(&reference, name, numeric, limit),
                sample(&current, name, numeric, limit),
            );
            let got = drift::column_drift(name, &rs, &cs, None, None).unwrap();
            assert_eq!(
                got.method.name(),
                c["method"].as_str().unwrap(),
                "{key} {name}: method"
            );
            let value = if got.method.is_test() {
                got.p_value.unwrap()
            } else {
                got.statistic
            };
            let want = c["p_value"].as_f64().or(c["statistic"].as_f64()).unwrap();
            assert!(close(value, want, 1e-9), "{key} {name}: {value} vs {want}");
            assert_eq!(
                got.drifted,
                c["drifted"].as_bool().unwrap(),
                "{key} {name}: verdict"
            );
            columns.push(got);
        }
        let verdict = drift::dataset_drift(&columns, 0.5);
        let d = &preset["dataset"];
        assert_eq!(
            verdict.drifted_columns as u64,
            d["number_of_drifted_columns"].as_u64().unwrap(),
            "{key}"
        );
        assert!(close(
            verdict.share,
            d["share_of_drifted_columns"].as_f64().unwrap(),
            1e-12
        ));
        assert_eq!(
            verdict.drift,
            d["dataset_drift"].as_bool().unwrap(),
            "{key}"
        );
    }
}
