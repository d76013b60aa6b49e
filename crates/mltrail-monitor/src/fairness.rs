//! Fairness of one monitoring window: the groups of the sensitive input columns, the model's
//! predictions, and the labels that came back as feedback, measured with mltrail-explain's
//! Fairlearn-equal numbers.
//!
//! Demographic parity needs no label, so it is measured over every prediction of the window
//! that has a group; equalized odds and equal opportunity over the labelled ones. A binary
//! problem's positive class is the one performance metrics use (`1`/`true`, else the greater
//! name); windows of other problems report no fairness.

use mltrail_data::table::Table;
use mltrail_explain::fairness::{groupings, Grouping, Method, MetricFrame};
use serde_json::{json, Map, Value as Json};

use crate::performance::{positive_class, Outcome};
use crate::rules::Values as WindowValues;

/// Each row's group in each sensitive column (`None` where the row has no value), read before
/// the inputs go to drift.
pub fn groups(inputs: &Table, sensitive: &[String]) -> Vec<Grouping> {
    sensitive
        .iter()
        .map(|name| {
            let rows = inputs
                .column(name)
                .map_or_else(|| vec![None; inputs.rows], |c| c.values.categories());
            (name.clone(), rows)
        })
        .collect()
}

/// The window's fairness: values for alert rules and gauges (`demographic_parity_difference.sex`,
/// `equalized_odds_ratio.sex_x_age_group`, …: [`crate::rules::FAIRNESS_METRICS`]) added to
/// `values`, and the per-group detail.
/// `outcomes` holds each row's prediction and label, aligned with the groups' rows.
pub fn measure(
    groups: &[Grouping],
    outcomes: &[(Option<Outcome>, Option<Outcome>)],
    values: &mut WindowValues,
) -> Json {
    let mut classes: Vec<String> = outcomes
        .iter()
        .flat_map(|(p, l)| [p.as_ref(), l.as_ref()])
        .flatten()
        .map(Outcome::as_class)
        .collect();
    classes.sort();
    classes.dedup();
    let Some(positive) = positive_class(&classes).cloned() else {
        return json!({"error": format!("fairness needs two classes; this window has {}", classes.len())});
    };
    let is_positive = |o: &Option<Outcome>| o.as_ref().is_some_and(|o| o.as_class() == positive);
    let predicted: Vec<bool> = outcomes.iter().map(|(p, _)| is_positive(p)).collect();
    let truth: Vec<bool> = outcomes.iter().map(|(_, l)| is_positive(l)).collect();
    let mut detail = Map::new();
    for (name, rows) in &groupings(groups) {
        // Every prediction with a group counts for selection rates; the labelled ones for
        // error rates. A row left out of a frame has no group in it.
        let keep = |needs_label: bool| -> Vec<Option<String>> {
            rows.iter()
                .zip(outcomes)
                .map(|(g, (p, l))| {
                    g.clone()
                        .filter(|_| p.is_some() && (!needs_label || l.is_some()))
                })
                .collect()
        };
        let (scored, labelled_groups) = (keep(false), keep(true));
        if scored.iter().all(Option::is_none) {
            continue;
        }
        let everyone = MetricFrame::new(&scored, &predicted, &predicted);
        let method = Method::BetweenGroups;
        values.insert(
            format!("demographic_parity_difference.{name}"),
            everyone.difference("selection_rate", method),
        );
        values.insert(
            format!("demographic_parity_ratio.{name}"),
            everyone.ratio("selection_rate", method),
        );
        let mut by_group = Map::new();
        for (group, counts) in &everyone.groups {
            by_group.insert(
                group.clone(),
                json!({"count": counts.metric("count"), "selection_rate": counts.metric("selection_rate")}),
            );
        }
        let labelled_rows = labelled_groups.iter().flatten().count();
        if labelled_rows > 0 {
            let labelled = MetricFrame::new(&labelled_groups, &truth, &predicted);
            for (scalar, value) in labelled.scalars(method) {
                if scalar.starts_with("equal") && !scalar.ends_with("agg_mean") {
                    values.insert(format!("{scalar}.{name}"), value);
                }
            }
            for (group, counts) in &labelled.groups {
                if let Some(Json::Object(entry)) = by_group.get_mut(group) {
                    for metric in ["true_positive_rate", "false_positive_rate", "accuracy"] {
                        let v = counts.metric(metric);
                        entry.insert(
                            metric.to_string(),
                            if v.is_finite() { json!(v) } else { Json::Null },
                        );
                    }
                    entry.insert("labelled".into(), json!(counts.metric("count")));
                }
            }
        }
        detail.insert(
            name.clone(),
            json!({"by_group": by_group, "labelled_rows": labelled_rows}),
        );
    }
    json!({"positive_class": positive, "groupings": detail})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(c: &str) -> Option<Outcome> {
        Some(Outcome::Class(c.to_string()))
    }

    #[test]
    fn parity_counts_every_prediction_and_odds_only_the_labelled_ones() {
        let some = |v: &[Option<&str>]| v.iter().map(|g| g.map(str::to_string)).collect();
        let groups = vec![
            (
                "sex".to_string(),
                some(&[
                    Some("F"),
                    Some("F"),
                    Some("F"),
                    Some("M"),
                    Some("M"),
                    Some("M"),
                    None,
                ]),
            ),
            (
                "age".to_string(),
                some(&[
                    Some("y"),
                    Some("o"),
                    Some("o"),
                    Some("y"),
                    Some("o"),
                    Some("y"),
                    Some("y"),
                ]),
            ),
        ];
        // (prediction, label): F selects 1 of 3, M selects 2 of 3; the last row has no group.
        let outcomes = vec![
            (class("1"), class("1")),
            (class("0"), class("1")),
            (class("0"), class("0")),
            (class("1"), class("0")),
            (class("1"), class("1")),
            (class("0"), None),
            (class("1"), class("1")),
        ];
        let mut values = WindowValues::new();
        let detail = measure(&groups, &outcomes, &mut values);
        assert_eq!(detail["positive_class"], "1");
        let dp = values["demographic_parity_difference.sex"];
        assert!((dp - (2.0 / 3.0 - 1.0 / 3.0)).abs() < 1e-15, "{dp}");
        assert_eq!(values["demographic_parity_ratio.sex"], 0.5);
        // Labelled: F has TPR 1/2 and FPR 0/1, M has TPR 1/1 and FPR 1/1.
        assert_eq!(values["equal_opportunity_difference.sex"], 0.5);
        assert_eq!(values["equalized_odds_difference.sex"], 1.0);
        assert_eq!(values["equalized_odds_ratio.sex"], 0.0);
        // Crossed groups leave out rows missing either value.
        assert!(values.contains_key("demographic_parity_difference.sex_x_age"));
        assert_eq!(
            detail["groupings"]["sex_x_age"]["by_group"]["F & o"]["count"],
            2.0
        );
        assert_eq!(detail["groupings"]["sex"]["labelled_rows"], 5);
        // Alert rules read these names.
        assert!(crate::rules::Rule::parse("demographic_parity_difference.sex > 0.1").is_ok());
    }

    #[test]
    fn a_regression_window_reports_no_fairness() {
        let groups = vec![("sex".to_string(), vec![Some("F".to_string())])];
        let outcomes = vec![(Some(Outcome::Number(1.5)), None)];
        let mut values = WindowValues::new();
        let detail = measure(&groups, &outcomes, &mut values);
        assert!(detail["error"].is_string());
        assert!(values.is_empty());
    }
}
