//! Properties every drift statistic must have, whatever the data, plus scipy's answers where the
//! golden file has no case (unequal sample sizes, the asymptotic branch beyond 10,000 rows).

use mltrail_monitor::drift::{self, Method, Sample};
use proptest::prelude::*;

fn series(n: usize, mul: usize, modulo: usize, scale: f64, shift: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * mul) % modulo) as f64 / scale + shift)
        .collect()
}

#[test]
fn unequal_sample_sizes_match_scipy() {
    // scipy 1.17.1: ks_2samp(a, b) and ks_2samp(a, b, method="asymp") on these series.
    let a = series(300, 7919, 1000, 100.0, 0.0);
    let b = series(470, 104_729, 997, 95.0, 0.3);
    let r = drift::ks(&a, &b);
    assert!((r.statistic - 0.075_106_382_978_723_41).abs() < 1e-12);
    assert!(
        ((r.p_value - 0.237_845_841_940_365_4) / 0.237_845_841_940_365_4).abs() < 1e-9,
        "{}",
        r.p_value
    );
    assert!(
        ((r.p_value_asymp - 0.240_901_598_669_006_3) / 0.240_901_598_669_006_3).abs() < 1e-6,
        "{}",
        r.p_value_asymp
    );
}

#[test]
fn beyond_ten_thousand_rows_the_p_value_is_scipys_asymptotic_one() {
    let a = series(12_000, 7919, 1000, 100.0, 0.0);
    let b = series(15_000, 104_729, 997, 99.0, 0.05);
    let r = drift::ks(&a, &b);
    assert!((r.statistic - 0.012_266_666_666_666_648).abs() < 1e-12);
    // Pelz–Good here, where scipy uses a Durbin matrix: agreement to 1e-3 relative.
    assert!(
        ((r.p_value - 0.266_125_656_084_385_3) / 0.266_125_656_084_385_3).abs() < 1e-3,
        "{}",
        r.p_value
    );
}

fn numeric() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1e3f64..1e3, 30..300)
}

fn categories() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d"]), 30..300)
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
}

proptest! {
    #[test]
    fn a_numeric_sample_against_itself_shows_no_drift(v in numeric()) {
        let s = Sample::Numeric(v.clone());
        prop_assert_eq!(drift::ks(&v, &v).statistic, 0.0);
        prop_assert_eq!(drift::ks(&v, &v).p_value, 1.0);
        prop_assert_eq!(drift::wasserstein(&v, &v), 0.0);
        prop_assert!(drift::jensen_shannon(&s, &s).abs() < 1e-7);
        prop_assert!(drift::psi(&s, &s).abs() < 1e-12);
        for method in [Method::Ks, Method::Wasserstein, Method::JensenShannon, Method::Psi] {
            prop_assert!(!drift::column_drift("x", &s, &s, Some(method), None).unwrap().drifted);
        }
    }

    #[test]
    fn a_categorical_sample_against_itself_shows_no_drift(v in categories()) {
        let s = Sample::categorical(v);
        let (stat, p) = drift::chisquare(&s, &s);
        prop_assert!(stat.abs() < 1e-9);
        prop_assert!(p > 0.999_999 || p.is_nan());
        prop_assert!(drift::chi2_contingency(&s, &s).1 > 0.999);
        prop_assert!(!drift::column_drift("c", &s, &s, None, None).unwrap().drifted);
    }

    #[test]
    fn statistics_do_not_depend_on_row_order(v in numeric(), w in numeric(), seed in 0u64..1000) {
        let mut shuffled = v.clone();
        let n = shuffled.len();
        for i in 0..n {
            let j = ((seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i as u64)) % n as u64) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(drift::ks(&v, &w), drift::ks(&shuffled, &w));
        let (a, b) = (drift::wasserstein(&v, &w), drift::wasserstein(&shuffled, &w));
        prop_assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0));
        let (s1, s2, t) = (Sample::Numeric(v), Sample::Numeric(shuffled), Sample::Numeric(w));
        prop_assert!((drift::jensen_shannon(&s1, &t) - drift::jensen_shannon(&s2, &t)).abs() < 1e-12);
        prop_assert!((drift::psi(&s1, &t) - drift::psi(&s2, &t)).abs() < 1e-9);
    }
}
