//! Whether a classifier treats groups of people alike: Fairlearn's `MetricFrame` numbers (per
//! group, overall, and the gaps between them) and its parity scalars, from one pass of counts.
//!
//! Every metric is a ratio of counts of a group's confusion matrix, so a group is four counts
//! and every number is computed as Fairlearn computes it (the same divisions, the same
//! subtractions), which is why they agree to the last bits. Labels and predictions are binary:
//! 1 is the positive class (Fairlearn's `pos_label=1`).

use std::borrow::Cow;
use std::collections::BTreeMap;

/// The metrics of a frame, in Fairlearn's names and the golden file's order.
pub const METRICS: [&str; 7] = [
    "selection_rate",
    "accuracy",
    "true_positive_rate",
    "false_positive_rate",
    "false_negative_rate",
    "true_negative_rate",
    "count",
];

/// A group's confusion matrix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub true_positive: u64,
    pub false_positive: u64,
    pub true_negative: u64,
    pub false_negative: u64,
}

impl Counts {
    pub fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (true, true) => self.true_positive += 1,
            (false, true) => self.false_positive += 1,
            (false, false) => self.true_negative += 1,
            (true, false) => self.false_negative += 1,
        }
    }

    fn total(&self) -> u64 {
        self.true_positive + self.false_positive + self.true_negative + self.false_negative
    }

    /// The metric named `name` (one of [`METRICS`]). A rate whose denominator is zero (a TPR
    /// in a group without positives) is 0, as Fairlearn reports it: its rates come from
    /// scikit-learn's normalized confusion matrix, which turns 0/0 into 0.
    pub fn metric(&self, name: &str) -> f64 {
        let ratio = |a: u64, b: u64| {
            if b == 0 {
                0.0
            } else {
                a as f64 / b as f64
            }
        };
        let positives = self.true_positive + self.false_negative;
        let negatives = self.false_positive + self.true_negative;
        match name {
            "selection_rate" => ratio(self.true_positive + self.false_positive, self.total()),
            "accuracy" => ratio(self.true_positive + self.true_negative, self.total()),
            "true_positive_rate" => ratio(self.true_positive, positives),
            "false_positive_rate" => ratio(self.false_positive, negatives),
            "false_negative_rate" => ratio(self.false_negative, positives),
            "true_negative_rate" => ratio(self.true_negative, negatives),
            "count" => self.total() as f64,
            _ => f64::NAN,
        }
    }
}

/// One way of grouping rows (a sensitive column, or several crossed): each group's counts,
/// groups in sorted order (as pandas groups them), and the counts of all rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFrame {
    pub overall: Counts,
    pub groups: Vec<(String, Counts)>,
}

impl MetricFrame {
    /// Counts rows by group: `groups[i]` is row i's group key (`None`: the row is left out),
    /// `truth`/`predicted` its label and prediction.
    pub fn new(groups: &[Option<String>], truth: &[bool], predicted: &[bool]) -> Self {
        let mut by: BTreeMap<&str, Counts> = BTreeMap::new();
        let mut overall = Counts::default();
        for ((g, t), p) in groups.iter().zip(truth).zip(predicted) {
            let Some(g) = g else { continue };
            by.entry(g.as_str()).or_default().add(*t, *p);
            overall.add(*t, *p);
        }
        MetricFrame {
            overall,
            groups: by.into_iter().map(|(g, c)| (g.to_string(), c)).collect(),
        }
    }

    fn values(&self, metric: &str) -> Vec<f64> {
        self.groups.iter().map(|(_, c)| c.metric(metric)).collect()
    }

    pub fn group_min(&self, metric: &str) -> f64 {
        nan_fold(&self.values(metric), f64::min)
    }

    pub fn group_max(&self, metric: &str) -> f64 {
        nan_fold(&self.values(metric), f64::max)
    }

    /// `group_max - group_min`.
    pub fn difference_between_groups(&self, metric: &str) -> f64 {
        self.group_max(metric) - self.group_min(metric)
    }

    /// The largest `|group - overall|`.
    pub fn difference_to_overall(&self, metric: &str) -> f64 {
        let overall = self.overall.metric(metric);
        let gaps: Vec<f64> = self
            .values(metric)
            .iter()
            .map(|v| (v - overall).abs())
            .collect();
        nan_fold(&gaps, f64::max)
    }

    /// `group_min / group_max`.
    pub fn ratio_between_groups(&self, metric: &str) -> f64 {
        self.group_min(metric) / self.group_max(metric)
    }

    /// The smallest `min(group / overall, overall / group)`.
    pub fn ratio_to_overall(&self, metric: &str) -> f64 {
        let overall = self.overall.metric(metric);
        let ratios: Vec<f64> = self
            .values(metric)
            .iter()
            .map(|v| (v / overall).min(overall / v))
            .collect();
        nan_fold(&ratios, f64::min)
    }

    /// A metric's gap by `method`.
    pub fn difference(&self, metric: &str, method: Method) -> f64 {
        match method {
            Method::BetweenGroups => self.difference_between_groups(metric),
            Method::ToOverall => self.difference_to_overall(metric),
        }
    }

    /// A metric's ratio by `method`.
    pub fn ratio(&self, metric: &str, method: Method) -> f64 {
        match method {
            Method::BetweenGroups => self.ratio_between_groups(metric),
            Method::ToOverall => self.ratio_to_overall(metric),
        }
    }

    /// Fairlearn's parity scalars by `method`, in its names.
    pub fn scalars(&self, method: Method) -> Vec<(&'static str, f64)> {
        let tpr = "true_positive_rate";
        let fpr = "false_positive_rate";
        let (d_tpr, d_fpr) = (self.difference(tpr, method), self.difference(fpr, method));
        let (r_tpr, r_fpr) = (self.ratio(tpr, method), self.ratio(fpr, method));
        vec![
            (
                "demographic_parity_difference",
                self.difference("selection_rate", method),
            ),
            (
                "demographic_parity_ratio",
                self.ratio("selection_rate", method),
            ),
            ("equalized_odds_difference", d_tpr.max(d_fpr)),
            ("equalized_odds_difference_agg_mean", (d_tpr + d_fpr) / 2.0),
            ("equalized_odds_ratio", r_tpr.min(r_fpr)),
            ("equalized_odds_ratio_agg_mean", (r_tpr + r_fpr) / 2.0),
            ("equal_opportunity_difference", d_tpr),
            ("equal_opportunity_ratio", r_tpr),
        ]
    }
}

/// How a gap is measured: between the best and worst group, or from the whole population.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    BetweenGroups,
    ToOverall,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::BetweenGroups => "between_groups",
            Method::ToOverall => "to_overall",
        }
    }
}

/// pandas' `min`/`max` skip NaN; all NaN gives NaN.
fn nan_fold(values: &[f64], pick: fn(f64, f64) -> f64) -> f64 {
    values
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .reduce(pick)
        .unwrap_or(f64::NAN)
}

/// A sensitive column (or several crossed): its name and each row's group (`None`: the row has
/// no value).
pub type Grouping = (String, Vec<Option<String>>);

/// Each sensitive column alone, then, when there are several, all of them crossed (named
/// `A_x_B`, groups `a & b`, as Fairlearn names them; a row missing any value has no crossed
/// group).
pub fn groupings(sensitive: &[Grouping]) -> Vec<(String, Cow<'_, [Option<String>]>)> {
    // The columns' own groups are borrowed: copying a million group names costs more than the
    // counting.
    let mut out: Vec<(String, Cow<'_, [Option<String>]>)> = sensitive
        .iter()
        .map(|(name, groups)| (name.clone(), Cow::Borrowed(&groups[..])))
        .collect();
    if sensitive.len() > 1 {
        let name = sensitive
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join("_x_");
        let rows = sensitive.iter().map(|(_, g)| g.len()).min().unwrap_or(0);
        let crossed = (0..rows)
            .map(|r| {
                sensitive
                    .iter()
                    .map(|(_, g)| g[r].as_deref())
                    .collect::<Option<Vec<&str>>>()
                    .map(|parts| parts.join(" & "))
            })
            .collect();
        out.push((name, Cow::Owned(crossed)));
    }
    out
}

/// A report over several groupings: each sensitive column alone, and all of them crossed
/// ([`groupings`]), as Fairlearn's `MetricFrame` gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct FairnessReport {
    pub frames: Vec<(String, MetricFrame)>,
}

impl FairnessReport {
    /// `sensitive` holds, per sensitive column, its name and each row's group.
    pub fn new(sensitive: &[Grouping], truth: &[bool], predicted: &[bool]) -> Self {
        FairnessReport {
            frames: groupings(sensitive)
                .into_iter()
                .map(|(name, groups)| (name, MetricFrame::new(&groups, truth, predicted)))
                .collect(),
        }
    }

    /// The golden file's layout: `metric_frames` by grouping and `scalar` by grouping and
    /// method. NaN (a metric no group defines) is `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let number = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        let per_metric = |f: &dyn Fn(&str) -> f64| -> Value {
            Value::Object(
                METRICS
                    .iter()
                    .map(|m| (m.to_string(), number(f(m))))
                    .collect::<Map<String, Value>>(),
            )
        };
        let mut frames = Map::new();
        let mut scalars = Map::new();
        for (name, frame) in &self.frames {
            let by_group: Map<String, Value> = frame
                .groups
                .iter()
                .map(|(g, c)| (g.clone(), per_metric(&|m| c.metric(m))))
                .collect();
            frames.insert(
                name.clone(),
                json!({
                    "overall": per_metric(&|m| frame.overall.metric(m)),
                    "by_group": by_group,
                    "group_min": per_metric(&|m| frame.group_min(m)),
                    "group_max": per_metric(&|m| frame.group_max(m)),
                    "difference_between_groups": per_metric(&|m| frame.difference_between_groups(m)),
                    "difference_to_overall": per_metric(&|m| frame.difference_to_overall(m)),
                    "ratio_between_groups": per_metric(&|m| frame.ratio_between_groups(m)),
                    "ratio_to_overall": per_metric(&|m| frame.ratio_to_overall(m)),
                }),
            );
            let mut by_method = Map::new();
            for method in [Method::BetweenGroups, Method::ToOverall] {
                by_method.insert(
                    method.as_str().to_string(),
                    Value::Object(
                        frame
                            .scalars(method)
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), number(v)))
                            .collect(),
                    ),
                );
            }
            scalars.insert(name.clone(), Value::Object(by_method));
        }
        json!({"metric_frames": frames, "scalar": scalars})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_without_positives_has_a_true_positive_rate_of_zero_as_in_fairlearn() {
        // Fairlearn 0.15 on these rows: TPR a 1.0, b 0.0; FPR a 1.0, b 0.5; equal opportunity
        // difference 1.0 and ratio 0.0; equalized odds difference 1.0.
        let groups: Vec<Option<String>> = ["a", "a", "b", "b"]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect();
        let truth = [true, false, false, false];
        let predicted = [true, true, false, true];
        let frame = MetricFrame::new(&groups, &truth, &predicted);
        let b = &frame.groups[1].1;
        assert_eq!(b.metric("true_positive_rate"), 0.0);
        assert_eq!(b.metric("false_positive_rate"), 0.5);
        let scalars: BTreeMap<&str, f64> =
            frame.scalars(Method::BetweenGroups).into_iter().collect();
        assert_eq!(scalars["equal_opportunity_difference"], 1.0);
        assert_eq!(scalars["equal_opportunity_ratio"], 0.0);
        assert_eq!(scalars["equalized_odds_difference"], 1.0);
        assert_eq!(frame.difference_between_groups("false_positive_rate"), 0.5);
    }
}

/// The area under the ROC curve of `scores` for `truth` (scikit-learn's `roc_auc_score`: the
/// Mann–Whitney statistic, ties counted half); NaN unless both classes occur.
pub fn roc_auc(truth: &[bool], scores: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let positives = truth.iter().filter(|t| **t).count();
    let negatives = truth.len() - positives;
    if positives == 0 || negatives == 0 {
        return f64::NAN;
    }
    // Sum of the positives' ranks, with tied scores sharing their average rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average * order[i..=j].iter().filter(|r| truth[**r]).count() as f64;
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// Per group of each grouping: ROC AUC and mean score (when a score column is given).
pub fn score_metrics(sensitive: &[Grouping], truth: &[bool], scores: &[f64]) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let number = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
    let metrics = |t: &[bool], s: &[f64]| {
        json!({"roc_auc": number(roc_auc(t, s)),
               "mean_score": number(s.iter().sum::<f64>() / s.len().max(1) as f64)})
    };
    let mut out = Map::new();
    for (name, groups) in groupings(sensitive) {
        let mut by_group: BTreeMap<String, (Vec<bool>, Vec<f64>)> = BTreeMap::new();
        for ((group, t), s) in groups.iter().zip(truth).zip(scores) {
            let Some(group) = group else { continue };
            let entry = by_group.entry(group.clone()).or_default();
            entry.0.push(*t);
            entry.1.push(*s);
        }
        let groups: Map<String, Value> = by_group
            .iter()
            .map(|(g, (t, s))| (g.clone(), metrics(t, s)))
            .collect();
        out.insert(
            name,
            json!({"overall": metrics(truth, scores), "by_group": groups}),
        );
    }
    Value::Object(out)
}

/// A self-contained HTML page: per grouping, bars of selection rate, true and false positive
/// rates by group, the parity scalars, and the group table.
pub fn html(title: &str, report: &FairnessReport) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let pct = |v: f64| {
        if v.is_finite() {
            format!("{:.1}%", v * 100.0)
        } else {
            "—".to_string()
        }
    };
    let mut page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fairness report — {t}</title><style>\
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}}\
h1{{font-size:20px;margin:0 0 4px}} .sub{{color:#666;margin-bottom:16px}}\
.card{{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 14px;margin-bottom:16px}}\
.card h2{{font-size:16px;margin:0 0 8px}} table{{border-collapse:collapse;font-size:13px;margin:8px 0}}\
td,th{{padding:2px 12px 2px 0;text-align:left}} .legend span{{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}}\
</style></head><body><h1>Fairness report</h1><div class=\"sub\">{t}</div>\
<div class=\"legend\"><span style=\"background:#4c78a8\"></span>selection rate<span style=\"background:#54a24b\"></span>true positive rate\
<span style=\"background:#e45756\"></span>false positive rate</div>",
        t = escape(title)
    );
    let bars = [
        ("selection_rate", "#4c78a8"),
        ("true_positive_rate", "#54a24b"),
        ("false_positive_rate", "#e45756"),
    ];
    for (name, frame) in &report.frames {
        let (row_h, label_w, bar_w) = (16.0, 160.0, 360.0);
        let height = frame.groups.len() as f64 * (row_h * 3.0 + 10.0) + 10.0;
        let mut svg = format!(
            "<svg width=\"{w}\" height=\"{height}\" role=\"img\" aria-label=\"rates by group\">",
            w = label_w + bar_w + 60.0
        );
        for (i, (group, counts)) in frame.groups.iter().enumerate() {
            let top = 5.0 + i as f64 * (row_h * 3.0 + 10.0);
            svg.push_str(&format!(
                "<text x=\"0\" y=\"{y}\" font-size=\"12\">{g}</text>",
                y = top + row_h * 1.8,
                g = escape(group)
            ));
            for (k, (metric, color)) in bars.iter().enumerate() {
                let v = counts.metric(metric);
                let y = top + k as f64 * row_h;
                let w = if v.is_finite() { v * bar_w } else { 0.0 };
                svg.push_str(&format!(
                    "<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{color}\"/>\
<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"11\">{p}</text>",
                    h = row_h - 3.0,
                    tx = label_w + w + 4.0,
                    ty = y + row_h - 5.0,
                    p = pct(v)
                ));
            }
        }
        svg.push_str("</svg>");
        let mut table = String::from(
            "<table><tr><th>group</th><th>count</th><th>selection rate</th><th>accuracy</th>\
<th>TPR</th><th>FPR</th><th>FNR</th><th>TNR</th></tr>",
        );
        for (group, c) in std::iter::once(("overall".to_string(), frame.overall))
            .chain(frame.groups.iter().cloned())
        {
            table.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&group),
                c.metric("count"),
                pct(c.metric("selection_rate")),
                pct(c.metric("accuracy")),
                pct(c.metric("true_positive_rate")),
                pct(c.metric("false_positive_rate")),
                pct(c.metric("false_negative_rate")),
                pct(c.metric("true_negative_rate")),
            ));
        }
        table.push_str("</table>");
        let mut scalars =
            String::from("<table><tr><th></th><th>between groups</th><th>to overall</th></tr>");
        let between = frame.scalars(Method::BetweenGroups);
        let overall = frame.scalars(Method::ToOverall);
        for ((metric, a), (_, b)) in between.iter().zip(&overall) {
            let show = |v: f64| {
                if v.is_finite() {
                    format!("{v:.4}")
                } else {
                    "—".into()
                }
            };
            scalars.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                metric.replace('_', " "),
                show(*a),
                show(*b)
            ));
        }
        scalars.push_str("</table>");
        page.push_str(&format!(
            "<div class=\"card\"><h2>{n}</h2>{svg}{scalars}{table}</div>",
            n = escape(name)
        ));
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod auc {
    use super::roc_auc;

    #[test]
    fn roc_auc_counts_pairs_ordered_right_and_ties_as_half() {
        // Positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4 half) (0.4>0.1).
        let auc = roc_auc(&[true, true, false, false], &[0.8, 0.4, 0.4, 0.1]);
        assert_eq!(auc, 3.5 / 4.0);
        assert!(roc_auc(&[true, true], &[0.1, 0.2]).is_nan());
    }
}
