//! Live serving panels: the metrics each `mltrail serve` replica reports (its Prometheus text,
//! every few seconds) turned into rates over time — requests and predictions per second by
//! model version, failures per second by kind, and latency percentiles from the histogram's
//! buckets — summed over a deployment's replicas.

use crate::chart::{self, Series};
use maud::{html, Markup};
use std::collections::{BTreeMap, VecDeque};

/// One report of one replica: its counters at `time_ms`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveSample {
    pub time_ms: i64,
    /// `mltrail_requests_total` by model version.
    pub requests: BTreeMap<String, f64>,
    /// `mltrail_predictions_total` (rows) by model version.
    pub predictions: BTreeMap<String, f64>,
    /// `mltrail_request_errors_total` by kind.
    pub errors: BTreeMap<String, f64>,
    /// `mltrail_request_duration_seconds` buckets summed over versions: upper bound in seconds
    /// (`+Inf` last) and cumulative count.
    pub latency: Vec<(f64, f64)>,
}

/// The value of `name="…"` in a label set written as OpenMetrics does (`\"` and `\\` escaped).
/// The samples of an OpenMetrics text, as (metric name, labels text, value): comments skipped,
/// and only finite values that are not negative (the counters, gauges and buckets the pages
/// read are never anything else, and one that is would spoil every sum over replicas).
pub(crate) fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            // `name{labels} value [timestamp]`: the value is the first field after the series
            // (label values may hold spaces, so a series with labels ends at its `}`; the last
            // one, as values may hold braces: `route="/api/v1/monitors/{id}"`).
            let (series, rest) = match line.rfind('}') {
                Some(end) => line.split_at(end + 1),
                None => line.split_once(' ').unwrap_or((line, "")),
            };
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            Some((name, labels, value))
        })
}

pub(crate) fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let mut out = String::new();
    let mut chars = labels[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

impl LiveSample {
    /// Reads the series the panels draw from a replica's `/metrics` text; other lines are
    /// ignored, and so are values no counter has (not finite, negative).
    pub fn parse(text: &str, time_ms: i64) -> LiveSample {
        let mut sample = LiveSample {
            time_ms,
            ..Default::default()
        };
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (name, labels, value) in samples(text) {
            let add = |map: &mut BTreeMap<String, f64>, key: String| {
                if map.contains_key(&key) || map.len() < MAX_SERIES {
                    *map.entry(key).or_default() += value;
                }
            };
            let version = || label(labels, "version").unwrap_or_default();
            match name {
                "mltrail_requests_total" => add(&mut sample.requests, version()),
                "mltrail_predictions_total" => add(&mut sample.predictions, version()),
                "mltrail_request_errors_total" => add(
                    &mut sample.errors,
                    label(labels, "kind").unwrap_or_default(),
                ),
                "mltrail_request_duration_seconds_bucket" => {
                    // A bound is a finite number or `+Inf`; a line with another is skipped.
                    let le = match label(labels, "le").as_deref() {
                        Some("+Inf") => f64::INFINITY,
                        Some(text) => match text.parse::<f64>() {
                            Ok(le) if le.is_finite() => le,
                            _ => continue,
                        },
                        None => continue,
                    };
                    if buckets.len() < MAX_SERIES || buckets.contains_key(&le.to_bits()) {
                        // Keyed by the bound's bits so equal bounds of several versions add up.
                        buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += value;
                    }
                }
                _ => {}
            }
        }
        let mut latency: Vec<(f64, f64)> = buckets.into_values().collect();
        latency.sort_by(|a, b| a.0.total_cmp(&b.0));
        sample.latency = latency;
        sample
    }
}

/// Reports kept per replica: an hour at the default 10-second interval.
pub const KEPT: usize = 360;
/// Versions, failure kinds or latency buckets one report may name.
const MAX_SERIES: usize = 64;
/// Replicas kept per deployment.
const MAX_REPLICAS: usize = 32;

/// The reports of one deployment's replicas, newest last, with the process each came from.
#[derive(Debug, Default)]
pub struct LiveDeployment {
    pub replicas: BTreeMap<String, VecDeque<LiveSample>>,
    boots: BTreeMap<String, String>,
}

impl LiveDeployment {
    /// Keeps a report of `replica` from process `boot`: a new process (a restart) counts from
    /// zero, so its earlier reports are dropped rather than read as one interval. Past
    /// [`MAX_REPLICAS`], the replica heard from longest ago is forgotten.
    pub fn add(&mut self, replica: &str, boot: &str, sample: LiveSample) {
        if self.boots.get(replica).is_some_and(|b| b != boot) {
            self.replicas.remove(replica);
        }
        self.boots.insert(replica.to_string(), boot.to_string());
        if !self.replicas.contains_key(replica) && self.replicas.len() >= MAX_REPLICAS {
            let stalest = self
                .replicas
                .iter()
                .min_by_key(|(_, s)| s.back().map(|s| s.time_ms))
                .map(|(name, _)| name.clone());
            if let Some(name) = stalest {
                self.replicas.remove(&name);
                self.boots.remove(&name);
            }
        }
        let kept = self.replicas.entry(replica.to_string()).or_default();
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(sample);
    }
}

/// Whether a counter of `after` is below its value in `before`: the replica restarted in
/// between (within one process id, or a report was lost), and every counter counts from zero.
fn restarted(before: &LiveSample, after: &LiveSample) -> bool {
    let fell = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
        b.iter().any(|(k, v)| a.get(k).is_some_and(|old| v < old))
    };
    fell(&before.requests, &after.requests)
        || fell(&before.predictions, &after.predictions)
        || fell(&before.errors, &after.errors)
        || after.latency.iter().any(|(le, n)| {
            before
                .latency
                .iter()
                .any(|(old_le, old)| old_le.to_bits() == le.to_bits() && n < old)
        })
}

/// The `q` quantile of latency from bucket counts that grew in one interval (cumulative,
/// ascending bounds), interpolated within its bucket as Prometheus's `histogram_quantile`.
pub(crate) fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
            return Some(lower.0 + (bound - lower.0) * within);
        }
        lower = (bound, count);
    }
    None
}

/// Rates over time, summed over replicas in steps of the replicas' reporting interval.
#[derive(Debug, Default)]
pub struct Rates {
    pub requests: BTreeMap<String, Vec<(f64, f64)>>,
    pub predictions: BTreeMap<String, Vec<(f64, f64)>>,
    pub errors: BTreeMap<String, Vec<(f64, f64)>>,
    /// p50, p95 and p99 in milliseconds.
    pub latency: [Vec<(f64, f64)>; 3],
}

impl LiveDeployment {
    /// The step rates are summed in: the median gap between two reports of a replica.
    fn step_ms(&self) -> i64 {
        let mut gaps: Vec<i64> = self
            .replicas
            .values()
            .flat_map(|s| {
                s.iter()
                    .zip(s.iter().skip(1))
                    .map(|(a, b)| b.time_ms - a.time_ms)
            })
            .filter(|g| *g > 0)
            .collect();
        gaps.sort_unstable();
        gaps.get(gaps.len() / 2).copied().unwrap_or(10_000).max(100)
    }

    /// Rates per step: each replica's intervals ending in a step are averaged (reports do not
    /// fall one per step), then the replicas' averages are summed; latency buckets add up.
    pub fn rates(&self) -> Rates {
        let step = self.step_ms();
        type Sums = BTreeMap<i64, BTreeMap<String, f64>>;
        let (mut requests, mut predictions, mut errors): (Sums, Sums, Sums) = Default::default();
        let mut latency: BTreeMap<i64, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
        let zero = BTreeMap::new();
        for samples in self.replicas.values() {
            // Per step: this replica's summed rates by series, and how many intervals gave them.
            let mut mine: BTreeMap<i64, ([BTreeMap<String, f64>; 3], u32)> = BTreeMap::new();
            for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
                let seconds = (b.time_ms - a.time_ms) as f64 / 1000.0;
                if seconds <= 0.0 {
                    continue;
                }
                // After a restart every counter counts from zero.
                let start = (!restarted(a, b)).then_some(a);
                let slot = b.time_ms.div_euclid(step) * step;
                let (sums, intervals) = mine.entry(slot).or_default();
                *intervals += 1;
                let pairs = [
                    (start.map_or(&zero, |a| &a.requests), &b.requests),
                    (start.map_or(&zero, |a| &a.predictions), &b.predictions),
                    (start.map_or(&zero, |a| &a.errors), &b.errors),
                ];
                for (into, (before, after)) in sums.iter_mut().zip(pairs) {
                    for (key, value) in after {
                        let grew = value - before.get(key).copied().unwrap_or(0.0);
                        *into.entry(key.clone()).or_default() += grew / seconds;
                    }
                }
                let slot_buckets = latency.entry(slot).or_default();
                for &(bound, count) in &b.latency {
                    let before = start
                        .and_then(|a| {
                            a.latency
                                .iter()
                                .find(|(le, _)| le.to_bits() == bound.to_bits())
                        })
                        .map_or(0.0, |x| x.1);
                    slot_buckets
                        .entry(bound.to_bits())
                        .or_insert((bound, 0.0))
                        .1 += count - before;
                }
            }
            for (slot, (sums, intervals)) in mine {
                for (into, from) in [&mut requests, &mut predictions, &mut errors]
                    .into_iter()
                    .zip(sums)
                {
                    for (key, rate) in from {
                        *into.entry(slot).or_default().entry(key).or_default() +=
                            rate / f64::from(intervals);
                    }
                }
            }
        }
        let series = |sums: Sums| {
            let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for (slot, values) in sums {
                for (key, rate) in values {
                    out.entry(key).or_default().push((slot as f64, rate));
                }
            }
            out
        };
        let mut rates = Rates {
            requests: series(requests),
            predictions: series(predictions),
            errors: series(errors),
            latency: Default::default(),
        };
        for (slot, buckets) in latency {
            let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Cumulative counts never fall as the bound grows (whatever one report said).
            let mut most: f64 = 0.0;
            for bucket in &mut buckets {
                most = most.max(bucket.1);
                bucket.1 = most;
            }
            for (i, q) in [0.5, 0.95, 0.99].iter().enumerate() {
                if let Some(seconds) = quantile(&buckets, *q) {
                    rates.latency[i].push((slot as f64, seconds * 1000.0));
                }
            }
        }
        rates
    }
}

fn to_series(
    by_key: &BTreeMap<String, Vec<(f64, f64)>>,
    name: impl Fn(&str) -> String,
) -> Vec<Series> {
    by_key
        .iter()
        .map(|(k, points)| Series {
            label: name(k),
            points: points.clone(),
        })
        .collect()
}

/// The live panels of a deployment, or what to do when no replica reports.
pub fn panels(live: Option<&LiveDeployment>) -> Markup {
    let Some(live) = live.filter(|l| l.replicas.values().any(|s| s.len() > 1)) else {
        return html! {
            p.empty { "No replica has reported metrics to this server yet: " code { "mltrail serve" }
                " sends them every " code { "--report-interval-ms" } " (10 s) to the tracking server it names." }
        };
    };
    let rates = live.rates();
    let latency: Vec<Series> = ["p50", "p95", "p99"]
        .iter()
        .zip(&rates.latency)
        .map(|(name, points)| Series {
            label: (*name).to_string(),
            points: points.clone(),
        })
        .collect();
    html! {
        p.muted { "Reported by " (live.replicas.len()) " replica(s): "
            @for (replica, samples) in &live.replicas {
                code.badge { (replica) } " last at " (samples.back().map(|s| crate::layout::time(s.time_ms)).unwrap_or_default()) " "
            }
            "— summed over replicas; this page reloads every 10 s." }
        div.charts {
            figure.chart { h3 { "Requests per second" }
                (chart::time_chart("Requests per second by model version", "req/s", &to_series(&rates.requests, |v| format!("version {v}")), &[])) }
            figure.chart { h3 { "Rows scored per second" }
                (chart::time_chart("Rows scored per second by model version", "rows/s", &to_series(&rates.predictions, |v| format!("version {v}")), &[])) }
            figure.chart { h3 { "Latency" }
                (chart::time_chart("Request latency percentiles in milliseconds", "ms", &latency, &[])) }
            figure.chart { h3 { "Failures per second" }
                @if rates.errors.values().flatten().all(|p| p.1 == 0.0) { p.empty { "No failed request." } }
                @else { (chart::time_chart("Failed requests per second by kind", "failures/s", &to_series(&rates.errors, str::to_string), &[])) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP mltrail_requests_total Scoring requests.
# TYPE mltrail_requests_total counter
mltrail_requests_total{deployment="d",model="m",version="1"} 10
mltrail_requests_total{deployment="d",model="m",version="2"} 4
mltrail_predictions_total{deployment="d",model="m",version="1"} 100
mltrail_request_errors_total{deployment="d",model="m",version="1",kind="bad_request"} 2
mltrail_request_duration_seconds_bucket{deployment="d",model="m",version="1",le="0.001"} 6
mltrail_request_duration_seconds_bucket{deployment="d",model="m",version="1",le="0.01"} 10
mltrail_request_duration_seconds_bucket{deployment="d",model="m",version="1",le="+Inf"} 10
mltrail_request_duration_seconds_bucket{deployment="d",model="m",version="2",le="0.001"} 4
mltrail_request_duration_seconds_bucket{deployment="d",model="m",version="2",le="0.01"} 4
mltrail_request_duration_seconds_bucket{deployment="d",model="m",version="2",le="+Inf"} 4
# EOF
"#;

    #[test]
    fn values_that_no_counter_has_are_left_out() {
        let text = "mltrail_requests_total{version=\"1\"} NaN\n\
                    mltrail_requests_total{version=\"2\"} -3\n\
                    mltrail_predictions_total{version=\"1\"} 7 1733300000000\n\
                    mltrail_request_duration_seconds_bucket{version=\"1\",le=\"NaN\"} 5\n\
                    mltrail_request_duration_seconds_bucket{version=\"1\",le=\"+Inf\"} 5\n";
        let s = LiveSample::parse(text, 0);
        assert!(s.requests.is_empty());
        assert_eq!(
            s.predictions["1"], 7.0,
            "a trailing timestamp is not the value"
        );
        assert_eq!(s.latency, vec![(f64::INFINITY, 5.0)]);
    }

    #[test]
    fn a_report_is_read_by_version_kind_and_bucket() {
        let s = LiveSample::parse(TEXT, 1_000);
        assert_eq!(s.requests["1"], 10.0);
        assert_eq!(s.requests["2"], 4.0);
        assert_eq!(s.predictions["1"], 100.0);
        assert_eq!(s.errors["bad_request"], 2.0);
        assert_eq!(
            s.latency,
            vec![(0.001, 10.0), (0.01, 14.0), (f64::INFINITY, 14.0)]
        );
    }

    #[test]
    fn rates_are_growth_per_second_and_survive_a_restart() {
        let mut live = LiveDeployment::default();
        let at = |t: i64, n: f64| LiveSample {
            time_ms: t,
            requests: [("1".to_string(), n)].into(),
            latency: vec![(0.001, n), (f64::INFINITY, n)],
            ..Default::default()
        };
        live.add("r", "boot-1", at(0, 0.0));
        live.add("r", "boot-1", at(10_000, 50.0));
        live.add("r", "boot-1", at(20_000, 20.0)); // restarted: 20 since then
        let first = live.rates();
        assert_eq!(first.requests["1"], vec![(10_000.0, 5.0), (20_000.0, 2.0)]);
        // Two reports of one replica inside one step are averaged, not added.
        let mut uneven = LiveDeployment::default();
        for t in [0, 10_000, 19_990, 20_010, 30_000] {
            uneven.add("r", "boot-1", at(t, t as f64 / 100.0));
        }
        let rates = uneven.rates().requests["1"].clone();
        assert!(
            rates.iter().all(|(_, r)| (r - 10.0).abs() < 1e-9),
            "{rates:?}"
        );
        // A new process of the replica starts its reports over.
        uneven.add("r", "boot-2", at(40_000, 1.0));
        assert_eq!(uneven.replicas["r"].len(), 1);
        // Every request under 1 ms: the median is interpolated inside the first bucket.
        assert_eq!(first.latency[0][0], (10_000.0, 0.5));
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets = [(0.001, 50.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.001));
        assert!((quantile(&buckets, 0.75).unwrap() - 0.0055).abs() < 1e-12);
        assert_eq!(quantile(&[(f64::INFINITY, 0.0)], 0.5), None);
    }
}
