//! Quality metrics of a model version on labelled data, computed as scikit-learn 1.9 computes
//! them: `accuracy_score`, `precision_score` / `recall_score` / `f1_score` (the positive class
//! for two classes, `average="macro"` for more, `zero_division=0`), `roc_auc_score`,
//! `log_loss` (probabilities clipped to [ε, 1 − ε], ε the double's epsilon), `brier_score_loss`,
//! `calibration_curve(n_bins=10, strategy="uniform")`, `roc_curve`, and for regression
//! `root_mean_squared_error`, `mean_absolute_error` and `r2_score`.

use serde::Serialize;

/// Bins of the calibration curve.
pub const CALIBRATION_BINS: usize = 10;

/// What a classifier said about one row: its label and, when it gives them, a probability per
/// class (in [`Classification::classes`] order).
#[derive(Debug, Clone)]
pub struct Scored {
    pub predicted: String,
    pub probabilities: Option<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub example_count: usize,
    /// Every class seen in the labels or predictions (or named by the probabilities), sorted.
    pub classes: Vec<String>,
    /// The class precision, recall and F1 are about when there are two (`1`/`true`/`yes` when
    /// present, else the greater name); `None` for macro averages over more.
    pub positive_class: Option<String>,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Needs probabilities; ROC AUC and the curves only for two classes.
    pub roc_auc: Option<f64>,
    pub log_loss: Option<f64>,
    pub brier: Option<f64>,
    pub roc_curve: Option<RocCurve>,
    pub calibration: Option<Calibration>,
    /// `confusion_matrix[i][j]`: rows whose label is `classes[i]` predicted `classes[j]`.
    pub confusion_matrix: Vec<Vec<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// `calibration_curve`'s non-empty bins: the fraction of positives and the mean probability in
/// each, and how many rows fell in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub prob_true: Vec<f64>,
    pub prob_pred: Vec<f64>,
    pub count: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    pub example_count: usize,
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
}

/// The positive class of two: `1`, `true` or `yes` when present, else the greater name.
pub fn positive_class(classes: &[String]) -> Option<&String> {
    if classes.len() != 2 {
        return None;
    }
    classes
        .iter()
        .find(|c| matches!(c.as_str(), "1" | "true" | "True" | "yes"))
        .or_else(|| classes.iter().max())
}

/// Classification metrics of `scored` against `truth`. `probability_classes` names the
/// columns of each row's probabilities.
pub fn classification(
    truth: &[String],
    scored: &[Scored],
    probability_classes: &[String],
) -> Classification {
    let n = truth.len().min(scored.len());
    // scikit-learn's labels are those of the truth and the predictions (`unique_labels`); a
    // class that only has a probability column counts in neither the confusion matrix nor the
    // macro averages.
    let mut classes: Vec<String> = truth[..n]
        .iter()
        .cloned()
        .chain(scored[..n].iter().map(|s| s.predicted.clone()))
        .collect();
    classes.sort();
    classes.dedup();
    let index = |c: &String| classes.binary_search(c).unwrap_or(0);
    // Probability columns: the labels and every class the model gives a probability for.
    let mut columns: Vec<String> = classes.iter().chain(probability_classes).cloned().collect();
    columns.sort();
    columns.dedup();
    let column = |c: &String| columns.binary_search(c).unwrap_or(0);
    let mut confusion = vec![vec![0u64; classes.len()]; classes.len()];
    for (t, s) in truth[..n].iter().zip(&scored[..n]) {
        confusion[index(t)][index(&s.predicted)] += 1;
    }
    let correct: u64 = (0..classes.len()).map(|i| confusion[i][i]).sum();
    let rate = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
    let per_class = |i: usize| {
        let tp = confusion[i][i] as f64;
        let predicted: u64 = confusion.iter().map(|row| row[i]).sum();
        let actual: u64 = confusion[i].iter().sum();
        let (p, r) = (rate(tp, predicted as f64), rate(tp, actual as f64));
        let f1 = rate(2.0 * p * r, p + r);
        (p, r, f1)
    };
    // With one label present, a two-class model still has its positive class (then, as in
    // scikit-learn, a positive never seen scores 0).
    let positive = positive_class(&classes)
        .or_else(|| {
            (classes.len() < 2)
                .then(|| positive_class(&columns))
                .flatten()
        })
        .cloned();
    let (precision, recall, f1) = match &positive {
        Some(p) => match classes.binary_search(p) {
            Ok(i) => per_class(i),
            Err(_) => (0.0, 0.0, 0.0),
        },
        None => {
            let k = classes.len().max(1) as f64;
            let all: Vec<_> = (0..classes.len()).map(per_class).collect();
            (
                all.iter().map(|x| x.0).sum::<f64>() / k,
                all.iter().map(|x| x.1).sum::<f64>() / k,
                all.iter().map(|x| x.2).sum::<f64>() / k,
            )
        }
    };
    // Probabilities in `classes` order, when every row has them.
    let probabilities: Option<Vec<Vec<f64>>> = scored[..n]
        .iter()
        .map(|s| {
            let p = s.probabilities.as_ref()?;
            let mut row = vec![0.0; columns.len()];
            for (class, value) in probability_classes.iter().zip(p) {
                row[column(class)] = *value;
            }
            Some(row)
        })
        .collect();
    let probabilities = probabilities.filter(|p| !p.is_empty() && !probability_classes.is_empty());
    let truth_index: Vec<usize> = truth[..n].iter().map(column).collect();
    let log_loss = probabilities.as_ref().map(|p| {
        let eps = f64::EPSILON;
        let total: f64 = p
            .iter()
            .zip(&truth_index)
            .map(|(row, &t)| -row[t].clamp(eps, 1.0 - eps).ln())
            .sum();
        total / n as f64
    });
    let brier = probabilities.as_ref().map(|p| {
        let total: f64 = p
            .iter()
            .zip(&truth_index)
            .map(|(row, &t)| match &positive {
                Some(pos) => {
                    let y = f64::from(u8::from(t == column(pos)));
                    (y - row[column(pos)]).powi(2)
                }
                None => row
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (f64::from(u8::from(k == t)) - v).powi(2))
                    .sum(),
            })
            .sum();
        total / n as f64
    });
    let binary = positive
        .as_ref()
        .zip(probabilities.as_ref())
        .map(|(pos, p)| {
            let k = column(pos);
            let scores: Vec<f64> = p.iter().map(|row| row[k]).collect();
            let truths: Vec<bool> = truth_index.iter().map(|&t| t == k).collect();
            (scores, truths)
        });
    let roc_auc = binary
        .as_ref()
        .map(|(s, t)| crate::fairness::roc_auc(t, s))
        .filter(|a| !a.is_nan());
    Classification {
        example_count: n,
        positive_class: positive,
        accuracy: rate(correct as f64, n as f64),
        precision,
        recall,
        f1,
        roc_auc,
        log_loss,
        brier,
        roc_curve: binary.as_ref().map(|(s, t)| roc_curve(t, s)),
        calibration: binary.as_ref().map(|(s, t)| calibration(t, s)),
        confusion_matrix: confusion,
        classes,
    }
}

/// `roc_curve(drop_intermediate=True)`: thresholds at the distinct scores, highest first,
/// preceded by +∞ (written as the largest double, JSON having no infinity); collinear
/// intermediate points dropped as scikit-learn drops them.
pub fn roc_curve(truth: &[bool], scores: &[f64]) -> RocCurve {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tps, mut fps, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    for (i, &r) in order.iter().enumerate() {
        if truth[r] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_score = order
            .get(i + 1)
            .is_none_or(|&next| scores[next] != scores[r]);
        if last_of_score {
            tps.push(tp);
            fps.push(fp);
            thresholds.push(scores[r]);
        }
    }
    // Drop points where the curve does not bend (second differences of both are zero).
    if tps.len() > 2 {
        let mut keep = vec![true; tps.len()];
        for i in 1..tps.len() - 1 {
            let d2_fp = fps[i - 1] - 2.0 * fps[i] + fps[i + 1];
            let d2_tp = tps[i - 1] - 2.0 * tps[i] + tps[i + 1];
            keep[i] = d2_fp != 0.0 || d2_tp != 0.0;
        }
        let pick = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| *x)
                .collect()
        };
        (tps, fps, thresholds) = (pick(&tps), pick(&fps), pick(&thresholds));
    }
    let (p, f) = (tp, fp);
    let mut out = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::MAX],
    };
    for ((t, x), th) in tps.iter().zip(&fps).zip(&thresholds) {
        out.tpr.push(if p > 0.0 { t / p } else { f64::NAN });
        out.fpr.push(if f > 0.0 { x / f } else { f64::NAN });
        out.thresholds.push(*th);
    }
    out
}

/// `calibration_curve(n_bins=10, strategy="uniform")`, with each bin's row count.
pub fn calibration(truth: &[bool], scores: &[f64]) -> Calibration {
    let bins = CALIBRATION_BINS;
    // numpy's linspace(0, 1, bins + 1): i * (1 / bins), the last edge exactly 1.
    let step = 1.0 / bins as f64;
    let inner: Vec<f64> = (1..bins).map(|i| i as f64 * step).collect();
    let (mut sums, mut trues, mut counts) = (vec![0.0; bins], vec![0.0; bins], vec![0u64; bins]);
    for (s, t) in scores.iter().zip(truth) {
        // searchsorted(side="left"): the number of inner edges strictly below the score.
        let bin = inner.partition_point(|edge| edge < s);
        sums[bin] += s;
        trues[bin] += f64::from(u8::from(*t));
        counts[bin] += 1;
    }
    let mut out = Calibration {
        prob_true: Vec::new(),
        prob_pred: Vec::new(),
        count: Vec::new(),
    };
    for b in (0..bins).filter(|&b| counts[b] > 0) {
        out.prob_true.push(trues[b] / counts[b] as f64);
        out.prob_pred.push(sums[b] / counts[b] as f64);
        out.count.push(counts[b]);
    }
    out
}

/// Regression metrics of `predicted` against `truth` (rows where either is not finite are
/// left out).
pub fn regression(truth: &[f64], predicted: &[f64]) -> Regression {
    let pairs: Vec<(f64, f64)> = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (*t, *p))
        .filter(|(t, p)| t.is_finite() && p.is_finite())
        .collect();
    let n = pairs.len() as f64;
    let ss_res: f64 = pairs.iter().map(|(t, p)| (t - p).powi(2)).sum();
    let mean = pairs.iter().map(|(t, _)| t).sum::<f64>() / n;
    let ss_tot: f64 = pairs.iter().map(|(t, _)| (t - mean).powi(2)).sum();
    // r2_score(force_finite=True): a constant truth scores 1 when predicted exactly, else 0;
    // with fewer than two rows it is not defined (NaN, as scikit-learn gives with a warning).
    let r2 = if pairs.len() < 2 {
        f64::NAN
    } else if ss_tot == 0.0 {
        if ss_res == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - ss_res / ss_tot
    };
    Regression {
        example_count: pairs.len(),
        rmse: (ss_res / n).sqrt(),
        mae: pairs.iter().map(|(t, p)| (t - p).abs()).sum::<f64>() / n,
        r2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn scored(label: &str, p1: f64) -> Scored {
        Scored {
            predicted: label.into(),
            probabilities: Some(vec![1.0 - p1, p1]),
        }
    }

    #[test]
    fn binary_metrics_are_scikit_learns() {
        // y_true = [1, 0, 1, 0, 1], p(1) = [0.9, 0.8, 0.3, 0.2, 0.7], labels at 0.5.
        // sklearn 1.9: accuracy 0.6; precision, recall, f1, roc_auc 2/3;
        // log_loss = -(ln .9 + ln .2 + ln .3 + ln .8 + ln .7) / 5; brier = (.01+.64+.49+.04+.09)/5.
        let truth = s(&["1", "0", "1", "0", "1"]);
        let rows = [
            scored("1", 0.9),
            scored("1", 0.8),
            scored("0", 0.3),
            scored("0", 0.2),
            scored("1", 0.7),
        ];
        let m = classification(&truth, &rows, &s(&["0", "1"]));
        assert_eq!(m.positive_class.as_deref(), Some("1"));
        assert!((m.accuracy - 0.6).abs() < 1e-15);
        for v in [m.precision, m.recall, m.f1, m.roc_auc.unwrap()] {
            assert!((v - 2.0 / 3.0).abs() < 1e-15, "{v}");
        }
        let ll = -(0.9f64.ln() + 0.2f64.ln() + 0.3f64.ln() + 0.8f64.ln() + 0.7f64.ln()) / 5.0;
        assert!((m.log_loss.unwrap() - ll).abs() < 1e-15);
        assert!((m.brier.unwrap() - 1.27 / 5.0).abs() < 1e-15);
        assert_eq!(m.confusion_matrix, vec![vec![1, 1], vec![1, 2]]);
        // calibration_curve(n_bins=10): bins 2, 3, 7, 8, 9 hold one row each.
        let c = m.calibration.unwrap();
        assert_eq!(c.count, vec![1, 1, 1, 1, 1]);
        assert_eq!(c.prob_true, vec![0.0, 1.0, 1.0, 0.0, 1.0]);
        // roc_curve: thresholds [inf, .9, .8, .3, .2] (.7 lies on the line from .8 to .3).
        let r = m.roc_curve.unwrap();
        assert_eq!(r.thresholds[1..], [0.9, 0.8, 0.3, 0.2]);
        assert_eq!(r.tpr.last(), Some(&1.0));
    }

    #[test]
    fn a_score_on_a_bin_edge_goes_to_the_lower_bin_as_numpy_searchsorted_puts_it() {
        let c = calibration(&[true, false], &[0.5, 0.50000001]);
        assert_eq!(c.count, vec![1, 1]);
        assert_eq!(c.prob_pred, vec![0.5, 0.50000001]);
    }

    #[test]
    fn multiclass_uses_macro_averages_and_brier_sums_over_classes() {
        let truth = s(&["a", "a", "b", "c"]);
        let p = |v: [f64; 3]| Some(v.to_vec());
        let rows = [
            Scored {
                predicted: "a".into(),
                probabilities: p([0.8, 0.1, 0.1]),
            },
            Scored {
                predicted: "b".into(),
                probabilities: p([0.3, 0.6, 0.1]),
            },
            Scored {
                predicted: "b".into(),
                probabilities: p([0.2, 0.7, 0.1]),
            },
            Scored {
                predicted: "b".into(),
                probabilities: p([0.2, 0.5, 0.3]),
            },
        ];
        let m = classification(&truth, &rows, &s(&["a", "b", "c"]));
        assert_eq!(m.positive_class, None);
        // precision (1 + 1/3 + 0) / 3, recall (1/2 + 1 + 0) / 3.
        assert!((m.precision - 4.0 / 9.0).abs() < 1e-15);
        assert!((m.recall - 0.5).abs() < 1e-15);
        assert!(m.roc_auc.is_none() && m.calibration.is_none());
        let brier = ((0.04 + 0.01 + 0.01)
            + (0.49 + 0.36 + 0.01)
            + (0.04 + 0.09 + 0.01)
            + (0.04 + 0.25 + 0.49))
            / 4.0;
        assert!((m.brier.unwrap() - brier).abs() < 1e-15);

        // A class the model gives probabilities for but that neither the truth nor the
        // predictions hold is not one of scikit-learn's labels: the macro averages stay over
        // `a`, `b` and `c`, and the confusion matrix is 3 × 3.
        let m = classification(&truth, &rows, &s(&["a", "b", "c", "d"]));
        assert_eq!(m.classes, s(&["a", "b", "c"]));
        assert!((m.precision - 4.0 / 9.0).abs() < 1e-15);
        assert!((m.recall - 0.5).abs() < 1e-15);
        assert_eq!(m.confusion_matrix.len(), 3);
        let ll = -(0.8f64.ln() + 0.3f64.ln() + 0.7f64.ln() + 0.3f64.ln()) / 4.0;
        assert!((m.log_loss.unwrap() - ll).abs() < 1e-15);
    }

    #[test]
    fn a_two_class_model_keeps_its_positive_class_when_one_label_is_seen() {
        let m = classification(
            &s(&["1", "1"]),
            &[scored("1", 0.9), scored("1", 0.6)],
            &s(&["0", "1"]),
        );
        assert_eq!(m.positive_class.as_deref(), Some("1"));
        assert_eq!((m.precision, m.recall, m.f1), (1.0, 1.0, 1.0));
        let m = classification(
            &s(&["0", "0"]),
            &[scored("0", 0.1), scored("0", 0.2)],
            &s(&["0", "1"]),
        );
        assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn regression_metrics_are_scikit_learns() {
        let m = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]);
        // sklearn docs: mean_absolute_error 0.5, r2_score 0.9486081370449679, RMSE sqrt(0.375).
        assert_eq!(m.mae, 0.5);
        assert!((m.r2 - 0.9486081370449679).abs() < 1e-15);
        assert!((m.rmse - 0.375f64.sqrt()).abs() < 1e-15);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 1.0]).r2, 1.0);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 2.0]).r2, 0.0);
        assert!(regression(&[1.0], &[1.0]).r2.is_nan());
    }
}
