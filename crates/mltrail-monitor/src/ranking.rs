//! What the user was shown against what the model served: agreement between a served ranking
//! and the order a front end displayed (Kendall τ, same order, top-k overlap), nDCG@k of either
//! order from the clicks, and which known sort key the displayed order follows (a front end that
//! re-sorts alphabetically shows up as "alphabetical in 97 % of impressions").
//!
//! Items are ids (strings); a list never holds an id twice (callers refuse such lists).

use std::collections::HashMap;

use serde::Serialize;

/// Kendall's τ between two orders of the items both hold (τ-a: lists of distinct ids have no
/// ties, where it equals scipy's τ-b); `None` with fewer than two items in common.
pub fn kendall_tau(served: &[&str], displayed: &[&str]) -> Option<f64> {
    let position = |list: &[&str], item: &str| list.iter().position(|x| *x == item);
    let common: Vec<(usize, usize)> = displayed
        .iter()
        .filter_map(|item| Some((position(served, item)?, position(displayed, item)?)))
        .collect();
    let n = common.len();
    if n < 2 {
        return None;
    }
    let mut score: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            let a = common[i].0.cmp(&common[j].0);
            let b = common[i].1.cmp(&common[j].1);
            score += if a == b { 1 } else { -1 };
        }
    }
    Some(score as f64 / (n * (n - 1) / 2) as f64)
}

/// Whether every displayed item was served and they appear in the served order (a front end
/// may show fewer items than it got, never others or in another order).
pub fn in_served_order(served: &[&str], displayed: &[&str]) -> bool {
    let mut last = None;
    for item in displayed {
        match served.iter().position(|x| x == item) {
            Some(p) if last.is_none_or(|l| p > l) => last = Some(p),
            _ => return false,
        }
    }
    true
}

/// The share of the first `k` served items (all of them when fewer) among the first `k`
/// displayed ones.
pub fn top_k_overlap(served: &[&str], displayed: &[&str], k: usize) -> Option<f64> {
    let top = &served[..k.min(served.len())];
    if top.is_empty() {
        return None;
    }
    let shown = &displayed[..k.min(displayed.len())];
    Some(shown.iter().filter(|i| top.contains(i)).count() as f64 / top.len() as f64)
}

/// nDCG@k of `order` with the clicked items as relevant (1) and the rest not (0):
/// Σ rel / log2(rank + 1) over the first k, over the same for the ideal order; `None` when no
/// clicked item is in `order`.
pub fn ndcg_at_k(order: &[&str], clicked: &[&str], k: usize) -> Option<f64> {
    let relevant = order.iter().filter(|i| clicked.contains(i)).count();
    if relevant == 0 || k == 0 {
        return None;
    }
    let gain = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let dcg: f64 = order
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, i)| clicked.contains(i))
        .map(|(r, _)| gain(r))
        .sum();
    let ideal: f64 = (0..relevant.min(k)).map(gain).sum();
    Some(dcg / ideal)
}

/// A sort key a front end might apply instead of the served order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    Served,
    ReverseServed,
    Alphabetical,
    ReverseAlphabetical,
    Numeric,
    ReverseNumeric,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Served,
        SortKey::ReverseServed,
        SortKey::Alphabetical,
        SortKey::ReverseAlphabetical,
        SortKey::Numeric,
        SortKey::ReverseNumeric,
    ];

    /// The key's name in window values (`ranking.sorted.<name>`) and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Served => "served",
            SortKey::ReverseServed => "reverse_served",
            SortKey::Alphabetical => "alphabetical",
            SortKey::ReverseAlphabetical => "reverse_alphabetical",
            SortKey::Numeric => "numeric",
            SortKey::ReverseNumeric => "reverse_numeric",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            SortKey::Served => "the served order",
            SortKey::ReverseServed => "the served order reversed",
            SortKey::Alphabetical => "alphabetical order of item ids",
            SortKey::ReverseAlphabetical => "reverse alphabetical order of item ids",
            SortKey::Numeric => "ascending numeric order of item ids",
            SortKey::ReverseNumeric => "descending numeric order of item ids",
        }
    }

    /// Whether `displayed` (at least two items) is in this key's order.
    pub fn holds(self, served: &[&str], displayed: &[&str]) -> bool {
        if displayed.len() < 2 {
            return false;
        }
        let numbers = || -> Option<Vec<f64>> {
            displayed
                .iter()
                .map(|i| i.trim().parse::<f64>().ok())
                .collect()
        };
        match self {
            SortKey::Served => in_served_order(served, displayed),
            SortKey::ReverseServed => {
                let reversed: Vec<&str> = served.iter().rev().copied().collect();
                in_served_order(&reversed, displayed)
            }
            SortKey::Alphabetical => displayed.windows(2).all(|w| w[0] <= w[1]),
            SortKey::ReverseAlphabetical => displayed.windows(2).all(|w| w[0] >= w[1]),
            SortKey::Numeric => numbers().is_some_and(|n| n.windows(2).all(|w| w[0] <= w[1])),
            SortKey::ReverseNumeric => {
                numbers().is_some_and(|n| n.windows(2).all(|w| w[0] >= w[1]))
            }
        }
    }
}

/// One impression: what was served and what was displayed, with the clicks.
#[derive(Debug, Clone, PartialEq)]
pub struct Impression<'a> {
    pub served: Vec<&'a str>,
    pub displayed: Vec<&'a str>,
    pub clicked: Vec<&'a str>,
}

/// How a set of impressions was displayed against how it was served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub impressions: usize,
    /// Share displayed in the served order.
    pub agreement: f64,
    /// Mean Kendall τ over impressions with two items in common.
    pub kendall_tau: Option<f64>,
    pub top_k_overlap: Option<f64>,
    pub k: usize,
    /// Mean nDCG@k of the served and of the displayed order, over impressions with a click.
    pub ndcg_served: Option<f64>,
    pub ndcg_displayed: Option<f64>,
    /// Each sort key with the share of impressions (of two displayed items or more) whose
    /// displayed order it explains, most first.
    pub signature: Vec<(SortKey, f64)>,
}

impl Agreement {
    /// The sort key other than the served order that explains most displays, with its share,
    /// when it explains more than the served order does.
    pub fn resorted_by(&self) -> Option<(SortKey, f64)> {
        let served = self
            .signature
            .iter()
            .find(|(k, _)| *k == SortKey::Served)
            .map_or(0.0, |s| s.1);
        self.signature
            .iter()
            .find(|(k, share)| *k != SortKey::Served && *share > served)
            .copied()
    }
}

impl Agreement {
    /// The values a monitor window reports (`ranking.agreement`, `ranking.sorted.alphabetical`,
    /// …); a mean over no impression is left out, so no rule reads it.
    pub fn values(&self) -> Vec<(String, f64)> {
        let mut values = vec![("ranking.agreement".to_string(), self.agreement)];
        for (name, value) in [
            ("ranking.kendall_tau", self.kendall_tau),
            ("ranking.top_k_overlap", self.top_k_overlap),
            ("ranking.ndcg_served", self.ndcg_served),
            ("ranking.ndcg_displayed", self.ndcg_displayed),
        ] {
            if let Some(v) = value {
                values.push((name.to_string(), v));
            }
        }
        for (key, share) in &self.signature {
            values.push((format!("ranking.sorted.{}", key.name()), *share));
        }
        values
    }

    /// What the display follows, as a sentence: "displayed order equals alphabetical order of
    /// item ids in 97 % of impressions" when another key explains more displays than the
    /// served order.
    pub fn finding(&self) -> Option<String> {
        let (key, share) = self.resorted_by()?;
        Some(format!(
            "displayed order equals {} in {:.0} % of impressions",
            key.describe(),
            share * 100.0
        ))
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Agreement of `impressions`, nDCG and overlap at `k`.
pub fn agreement(impressions: &[Impression<'_>], k: usize) -> Agreement {
    let n = impressions.len();
    let agreeing = impressions
        .iter()
        .filter(|i| in_served_order(&i.served, &i.displayed))
        .count();
    let ordered: Vec<&Impression<'_>> = impressions
        .iter()
        .filter(|i| i.displayed.len() >= 2)
        .collect();
    let mut signature: Vec<(SortKey, f64)> = SortKey::ALL
        .iter()
        .map(|key| {
            let held = ordered
                .iter()
                .filter(|i| key.holds(&i.served, &i.displayed))
                .count();
            (
                *key,
                if ordered.is_empty() {
                    0.0
                } else {
                    held as f64 / ordered.len() as f64
                },
            )
        })
        .collect();
    signature.sort_by(|a, b| b.1.total_cmp(&a.1));
    Agreement {
        impressions: n,
        agreement: if n == 0 {
            0.0
        } else {
            agreeing as f64 / n as f64
        },
        kendall_tau: mean(
            impressions
                .iter()
                .filter_map(|i| kendall_tau(&i.served, &i.displayed)),
        ),
        top_k_overlap: mean(
            impressions
                .iter()
                .filter_map(|i| top_k_overlap(&i.served, &i.displayed, k)),
        ),
        k,
        ndcg_served: mean(
            impressions
                .iter()
                .filter_map(|i| ndcg_at_k(&i.served, &i.clicked, k)),
        ),
        ndcg_displayed: mean(
            impressions
                .iter()
                .filter_map(|i| ndcg_at_k(&i.displayed, &i.clicked, k)),
        ),
        signature,
    }
}

/// What a window's impressions say of the catalog their deployment checks them against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogSummary {
    /// The newest catalog version among them, and its available items.
    pub catalog: String,
    pub available: usize,
    /// Share of the items answered (or filtered) that the catalog did not hold.
    pub out_of_catalog_share: f64,
    /// Share of impressions with at least one such item.
    pub impressions_out_of_catalog: f64,
    /// Distinct catalog items served, over the catalog's available items.
    pub coverage: f64,
    /// Gini coefficient of how often each available item was served (0: all alike; near 1: a
    /// few items take every impression).
    pub gini: f64,
    /// The items out of the catalog served (or filtered) most often, with their counts.
    pub top_out_of_catalog: Vec<(String, usize)>,
}

/// The Gini coefficient of `counts` (of the same sorted ascending), 0 when all are zero.
pub fn gini(counts: &mut [u64]) -> f64 {
    counts.sort_unstable();
    let n = counts.len() as f64;
    let total: f64 = counts.iter().map(|c| *c as f64).sum();
    if counts.is_empty() || total == 0.0 {
        return 0.0;
    }
    let weighted: f64 = counts
        .iter()
        .enumerate()
        .map(|(i, c)| (i + 1) as f64 * *c as f64)
        .sum();
    2.0 * weighted / (n * total) - (n + 1.0) / n
}

/// The catalog summary of `impressions` (`None` when no catalog checked them).
/// Coverage and concentration are of the newest catalog version among them (by time), over the
/// impressions it checked.
pub fn catalog_summary(impressions: &[crate::window::ImpressionText]) -> Option<CatalogSummary> {
    let newest = impressions
        .iter()
        .filter(|i| i.catalog.is_some())
        .max_by_key(|i| i.time_ms)?
        .catalog
        .clone()?;
    let (catalog, available) = newest.clone();
    let (mut answered, mut out) = (0usize, 0usize);
    let mut with_out = 0usize;
    let mut served: HashMap<&str, u64> = HashMap::new();
    let mut outside: HashMap<&str, usize> = HashMap::new();
    for i in impressions.iter().filter(|i| i.catalog.is_some()) {
        answered += i.served.len()
            + if i.filtered {
                i.out_of_catalog.len()
            } else {
                0
            };
        out += i.out_of_catalog.len();
        with_out += usize::from(!i.out_of_catalog.is_empty());
        for item in &i.out_of_catalog {
            *outside.entry(item).or_default() += 1;
        }
        if i.catalog.as_ref() != Some(&newest) {
            continue;
        }
        for item in &i.served {
            if !i.out_of_catalog.contains(item) {
                *served.entry(item).or_default() += 1;
            }
        }
    }
    let checked = impressions.iter().filter(|i| i.catalog.is_some()).count();
    let mut counts: Vec<u64> = served.values().copied().collect();
    // Available items never served count as zeros.
    counts.resize(available.max(counts.len()), 0);
    let mut top: Vec<(String, usize)> = outside
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    Some(CatalogSummary {
        catalog,
        available,
        out_of_catalog_share: if answered == 0 {
            0.0
        } else {
            out as f64 / answered as f64
        },
        impressions_out_of_catalog: with_out as f64 / checked.max(1) as f64,
        coverage: if available == 0 {
            0.0
        } else {
            served.len() as f64 / available as f64
        },
        gini: gini(&mut counts),
        top_out_of_catalog: top,
    })
}

/// Of the impressions from `start` on that were for a key seen within `lookback` before, how
/// many served the same top `k` items (as a set) as that key's previous impression: a
/// recommender stuck on one list for its returning users. `None` when no key returned.
pub fn repeats(
    impressions: &[crate::window::ImpressionText],
    start: i64,
    lookback_ms: i64,
    k: usize,
) -> Option<(usize, usize)> {
    let mut keyed: Vec<&crate::window::ImpressionText> =
        impressions.iter().filter(|i| i.key.is_some()).collect();
    keyed.sort_by_key(|i| i.time_ms);
    let top = |i: &crate::window::ImpressionText| -> std::collections::BTreeSet<String> {
        i.served.iter().take(k).cloned().collect()
    };
    let mut last: HashMap<&str, &crate::window::ImpressionText> = HashMap::new();
    let (mut returning, mut repeated) = (0usize, 0usize);
    for i in keyed {
        let key = i.key.as_deref().unwrap_or_default();
        if let Some(previous) = last.get(key) {
            if i.time_ms >= start && i.time_ms - previous.time_ms <= lookback_ms {
                returning += 1;
                repeated += usize::from(top(previous) == top(i));
            }
        }
        last.insert(key, i);
    }
    (returning > 0).then_some((repeated, returning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impression(
        time_ms: i64,
        key: &str,
        served: &[&str],
        out: &[&str],
    ) -> crate::window::ImpressionText {
        crate::window::ImpressionText {
            time_ms,
            served: served.iter().map(|s| s.to_string()).collect(),
            displayed: None,
            clicked: Vec::new(),
            key: (!key.is_empty()).then(|| key.to_string()),
            out_of_catalog: out.iter().map(|s| s.to_string()).collect(),
            filtered: false,
            catalog: Some(("c@2".into(), 4)),
        }
    }

    #[test]
    fn gini_is_zero_for_equal_counts_and_near_one_for_one_item() {
        assert_eq!(gini(&mut [3, 3, 3]), 0.0);
        assert_eq!(gini(&mut []), 0.0);
        // One of four items takes everything: (n - 1) / n.
        assert!((gini(&mut [0, 0, 9, 0]) - 0.75).abs() < 1e-12);
        // numpy: 1 - 2 * sum((n + 1 - i) * x_(i)) / (n * sum x) for [1, 2, 3, 4] = 0.25
        assert!((gini(&mut [4, 1, 3, 2]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn catalog_shares_coverage_and_repeats() {
        let window = [
            impression(10, "u1", &["a", "b"], &[]),
            impression(20, "u1", &["a", "b"], &[]),
            impression(30, "u2", &["x", "a"], &["x"]),
            impression(40, "u2", &["a", "x"], &["x"]),
        ];
        let c = catalog_summary(&window).unwrap();
        assert_eq!(c.out_of_catalog_share, 2.0 / 8.0);
        assert_eq!(c.impressions_out_of_catalog, 0.5);
        assert_eq!(c.coverage, 0.5, "a and b of 4 available");
        assert_eq!(c.top_out_of_catalog, [("x".to_string(), 2)]);
        // a 4 times, b twice, two available items never: [0, 0, 2, 4].
        assert!((c.gini - gini(&mut [0, 0, 2, 4])).abs() < 1e-12);
        assert_eq!(
            repeats(&window, 0, 100, 2),
            Some((2, 2)),
            "u1 the same list; u2 the same set"
        );
        assert_eq!(repeats(&window, 0, 100, 1), Some((1, 2)));
        assert_eq!(
            repeats(&window, 25, 100, 2),
            Some((1, 1)),
            "only impressions from start on count"
        );
        assert_eq!(repeats(&window, 0, 5, 2), None, "too long ago to count");
    }

    #[test]
    fn tau_overlap_and_order() {
        let served = ["c", "a", "b", "d"];
        assert_eq!(kendall_tau(&served, &served), Some(1.0));
        assert_eq!(kendall_tau(&served, &["d", "b", "a", "c"]), Some(-1.0));
        // scipy.stats.kendalltau([0, 1, 2, 3], [1, 0, 2, 3]).statistic == 2/3
        assert!((kendall_tau(&served, &["a", "c", "b", "d"]).unwrap() - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(kendall_tau(&served, &["a"]), None);
        assert!(in_served_order(&served, &["c", "b"]), "fewer, in order");
        assert!(!in_served_order(&served, &["a", "c"]));
        assert!(
            !in_served_order(&served, &["c", "x"]),
            "an item never served"
        );
        assert_eq!(top_k_overlap(&served, &["a", "b", "c", "d"], 2), Some(0.5));
        assert_eq!(top_k_overlap(&served, &["d", "b", "a", "c"], 10), Some(1.0));
        assert_eq!(
            top_k_overlap(&served, &["c"], 10),
            Some(0.25),
            "one of four shown"
        );
    }

    #[test]
    fn ndcg_from_clicks() {
        // One click at rank 2 (1-based): 1/log2(3) over the ideal 1/log2(2).
        let got = ndcg_at_k(&["a", "b", "c"], &["b"], 3).unwrap();
        assert!((got - 1.0 / 3f64.log2()).abs() < 1e-15);
        // Clicks at ranks 1 and 3, ideal at 1 and 2.
        let got = ndcg_at_k(&["a", "b", "c"], &["a", "c"], 3).unwrap();
        let want = (1.0 + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert!((got - want).abs() < 1e-15);
        assert_eq!(ndcg_at_k(&["a", "b", "c"], &["c"], 2), Some(0.0));
        assert_eq!(ndcg_at_k(&["a", "b"], &[], 2), None);
    }

    #[test]
    fn a_front_end_that_sorts_alphabetically_is_named() {
        let served = [
            vec!["pear", "apple", "fig"],
            vec!["kiwi", "date", "lime"],
            vec!["plum", "apricot", "banana"],
        ];
        let alphabetical: Vec<Vec<&str>> = served
            .iter()
            .map(|s| {
                let mut d = s.clone();
                d.sort_unstable();
                d
            })
            .collect();
        let impressions: Vec<Impression<'_>> = served
            .iter()
            .zip(&alphabetical)
            .map(|(s, d)| Impression {
                served: s.clone(),
                displayed: d.clone(),
                clicked: vec![s[0]],
            })
            .collect();
        let a = agreement(&impressions, 3);
        assert_eq!(a.agreement, 0.0);
        assert_eq!(a.resorted_by(), Some((SortKey::Alphabetical, 1.0)));
        // The model's top item was clicked: served order scores 1, the displayed one less.
        assert_eq!(a.ndcg_served, Some(1.0));
        assert!(a.ndcg_displayed.unwrap() < 1.0);
        let faithful: Vec<Impression<'_>> = served
            .iter()
            .map(|s| Impression {
                served: s.clone(),
                displayed: s.clone(),
                clicked: vec![],
            })
            .collect();
        let a = agreement(&faithful, 3);
        assert_eq!((a.agreement, a.kendall_tau), (1.0, Some(1.0)));
        assert_eq!(a.resorted_by(), None);
    }
}
