//! Anomalies in a business metric (revenue, orders, request volume) against a seasonal baseline
//! that leaves out annotated periods.
//!
//! Each point is expected to be the median of the same moment in the last `seasons` periods (a
//! week by default, which holds the daily pattern too), taking only points outside annotated
//! periods and reaching further back past them. How far a point may stray is learned from the
//! recent history's own deviations from their baselines, as a robust spread (1.4826 × the
//! median absolute deviation of relative deviations, so a level that grows keeps its scale). A
//! point deviating by more than `z` spreads is a drop or a spike.
//!
//! Medians and the MAD make the baseline robust to outliers: one bad day moves neither. What
//! they do not survive is a long period of another regime, which is what an annotation is for:
//! a two-week campaign is half of a four-week baseline, and the weeks after it would look like
//! drops (the test below shows both).

use serde::Serialize;

/// How the baseline is learned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalConfig {
    /// The season's length: points this far apart are the same moment.
    pub period_ms: i64,
    /// How many past seasons make a point's baseline (their median).
    pub seasons: usize,
    /// How many deviations (robust spreads) make an anomaly.
    pub z: f64,
    /// How far back a baseline may reach, in seasons, to find `seasons` points outside
    /// annotated periods.
    pub horizon: usize,
}

/// The smallest spread (of relative deviations) a baseline is given: a history that never
/// strayed would otherwise divide by zero.
pub const MIN_SPREAD: f64 = 1e-9;

/// A week, the default season.
pub const WEEK_MS: i64 = 7 * 86_400_000;

impl Default for SeasonalConfig {
    fn default() -> Self {
        SeasonalConfig {
            period_ms: WEEK_MS,
            seasons: 3,
            z: 4.0,
            horizon: 8,
        }
    }
}

impl SeasonalConfig {
    /// How much history before a window the baseline and its spread may read: the spread is
    /// learned over the last `seasons` periods, each of whose points reaches back `horizon`.
    pub fn history_ms(&self) -> i64 {
        self.period_ms
            .saturating_mul(i64::try_from(self.seasons + self.horizon).unwrap_or(i64::MAX))
    }

    /// At least two past seasons: one is a copy, not a baseline.
    const MIN_SEASONS: usize = 2;
}

/// A period whose points the baseline leaves out (an annotation), `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    pub name: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Excluded {
    fn holds(&self, time_ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&time_ms)
    }
}

/// Which way a point strayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Drop,
    Spike,
}

/// One point of the window, judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub time_ms: i64,
    pub value: f64,
    pub expected: f64,
    /// The range within `z` spreads of `expected`.
    pub lower: f64,
    pub upper: f64,
    /// Relative deviation from `expected` in spreads.
    pub z: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Direction>,
}

/// What the baseline was learned from, said with every window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedFrom {
    pub season_ms: i64,
    pub seasons: usize,
    /// History points read (before the window), and how many of them annotations left out.
    pub points: usize,
    pub excluded_points: usize,
    /// The annotated periods left out, with how many history points each held.
    pub excluded: Vec<(Excluded, usize)>,
    /// The robust spread of relative deviations (`None` without enough history).
    pub spread: Option<f64>,
    /// History points whose own baseline made the spread.
    pub spread_points: usize,
}

/// One window of a metric, judged against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub points: Vec<Judged>,
    /// Window points inside annotated periods: not judged (the annotation says why they differ).
    pub annotated: usize,
    /// Window points without enough history to judge.
    pub unjudged: usize,
    pub learned_from: LearnedFrom,
}

impl Assessment {
    pub fn count(&self, direction: Direction) -> usize {
        self.points
            .iter()
            .filter(|p| p.anomaly == Some(direction))
            .count()
    }

    /// The window's values for alert rules: `points` judged, `anomalies`, `drops`, `spikes`,
    /// and, when a point was judged, `observed` and `expected` (their means) and `deviation`
    /// (observed / expected − 1).
    pub fn values(&self) -> Vec<(&'static str, f64)> {
        let (drops, spikes) = (self.count(Direction::Drop), self.count(Direction::Spike));
        let mut values = vec![
            ("points", self.points.len() as f64),
            ("anomalies", (drops + spikes) as f64),
            ("drops", drops as f64),
            ("spikes", spikes as f64),
            ("annotated_points", self.annotated as f64),
            ("unjudged_points", self.unjudged as f64),
        ];
        if !self.points.is_empty() {
            let n = self.points.len() as f64;
            let observed = self.points.iter().map(|p| p.value).sum::<f64>() / n;
            let expected = self.points.iter().map(|p| p.expected).sum::<f64>() / n;
            values.push(("observed", observed));
            values.push(("expected", expected));
            if expected != 0.0 {
                values.push(("deviation", observed / expected - 1.0));
            }
        }
        values
    }
}

/// A time series kept by time, for lookups of "the point nearest this moment".
struct Series<'a> {
    points: &'a [(i64, f64)],
    /// Half the typical spacing: how far from a moment a point still counts as at it.
    tolerance: i64,
}

impl<'a> Series<'a> {
    /// `points` sorted by time; moments a `period` apart never share a point (the tolerance
    /// stays below half a period), so no point stands for two seasons, or for itself.
    fn new(points: &'a [(i64, f64)], period_ms: i64) -> Self {
        let mut gaps: Vec<i64> = points
            .windows(2)
            .map(|w| w[1].0.saturating_sub(w[0].0))
            .filter(|g| *g > 0)
            .collect();
        gaps.sort_unstable();
        let tolerance = gaps
            .get(gaps.len() / 2)
            .map_or(0, |g| g / 2)
            .min((period_ms - 1) / 2);
        Series { points, tolerance }
    }

    /// The typical spacing of the points (0 for fewer than two).
    fn spacing(&self) -> i64 {
        self.tolerance.saturating_mul(2)
    }

    fn near(&self, time_ms: i64) -> Option<(i64, f64)> {
        let (from, to) = (
            time_ms.checked_sub(self.tolerance)?,
            time_ms.checked_add(self.tolerance)?,
        );
        let at = self.points.partition_point(|p| p.0 < from);
        self.points[at..]
            .iter()
            .take_while(|p| p.0 <= to)
            .min_by_key(|p| p.0.abs_diff(time_ms))
            .copied()
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The baseline at `time_ms`: the median of the same moment in the last `seasons` periods
/// outside `excluded`, looking back at most `horizon` periods.
fn baseline(
    history: &Series<'_>,
    time_ms: i64,
    excluded: &[Excluded],
    config: &SeasonalConfig,
) -> Option<f64> {
    let mut found = Vec::with_capacity(config.seasons);
    for k in 1..=config.horizon as i64 {
        if found.len() == config.seasons {
            break;
        }
        let Some(moment) = k
            .checked_mul(config.period_ms)
            .and_then(|back| time_ms.checked_sub(back))
        else {
            break;
        };
        let Some((t, v)) = history.near(moment) else {
            continue;
        };
        if !excluded.iter().any(|e| e.holds(t)) {
            found.push(v);
        }
    }
    if found.len() < SeasonalConfig::MIN_SEASONS {
        return None;
    }
    median(&mut found)
}

/// Judges `window`'s points against the baseline `history` (every point before the window the
/// config's [`SeasonalConfig::history_ms`] reaches) gives, leaving `excluded` periods out of
/// both. Points must be finite; both lists sorted by time.
pub fn assess(
    history: &[(i64, f64)],
    window: &[(i64, f64)],
    excluded: &[Excluded],
    config: &SeasonalConfig,
) -> Assessment {
    let series = Series::new(history, config.period_ms);
    // The spread: the relative deviation of each of the newest history points outside
    // annotations from its own baseline, as many points as `seasons` periods hold (reaching
    // back past annotated periods as the baselines do).
    let seasons = i64::try_from(config.seasons).unwrap_or(i64::MAX);
    let wanted = match series.spacing() {
        0 => usize::MAX,
        gap => {
            usize::try_from(config.period_ms.saturating_mul(seasons) / gap).unwrap_or(usize::MAX)
        }
    };
    let mut deviations: Vec<f64> = history
        .iter()
        .rev()
        .filter(|(t, _)| !excluded.iter().any(|e| e.holds(*t)))
        .take(wanted)
        .filter_map(|&(t, v)| {
            let expected = baseline(&series, t, excluded, config)?;
            (expected != 0.0).then(|| (v - expected) / expected.abs())
        })
        .collect();
    let spread_points = deviations.len();
    let spread = median(&mut deviations).map(|center| {
        let mut absolute: Vec<f64> = deviations.iter().map(|d| (d - center).abs()).collect();
        // A history that never strayed (a constant metric) has no spread: any deviation
        // beyond this floor is then an anomaly, rather than nothing ever being judged.
        median(&mut absolute).map_or(MIN_SPREAD, |mad| (1.4826 * mad).max(MIN_SPREAD))
    });
    let mut judged = Vec::new();
    let (mut annotated, mut unjudged) = (0, 0);
    for &(t, value) in window {
        if excluded.iter().any(|e| e.holds(t)) {
            annotated += 1;
            continue;
        }
        let (Some(expected), Some(spread)) = (baseline(&series, t, excluded, config), spread)
        else {
            unjudged += 1;
            continue;
        };
        if expected == 0.0 {
            unjudged += 1;
            continue;
        }
        let z = (value - expected) / expected.abs() / spread;
        let reach = config.z * spread * expected.abs();
        judged.push(Judged {
            time_ms: t,
            value,
            expected,
            lower: expected - reach,
            upper: expected + reach,
            z,
            anomaly: if z < -config.z {
                Some(Direction::Drop)
            } else if z > config.z {
                Some(Direction::Spike)
            } else {
                None
            },
        });
    }
    let excluded_list: Vec<(Excluded, usize)> = excluded
        .iter()
        .map(|e| {
            let held = history.iter().filter(|(t, _)| e.holds(*t)).count();
            (e.clone(), held)
        })
        .collect();
    Assessment {
        points: judged,
        annotated,
        unjudged,
        learned_from: LearnedFrom {
            season_ms: config.period_ms,
            seasons: config.seasons,
            points: history.len(),
            excluded_points: history
                .iter()
                .filter(|(t, _)| excluded.iter().any(|e| e.holds(*t)))
                .count(),
            excluded: excluded_list,
            spread,
            spread_points,
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    /// Hourly revenue over `weeks` weeks from Monday 2026-01-05: a daily and a weekly pattern,
    /// 2 % noise (seeded), +60 % during the campaign weeks, and −20 % from `drop_at` on.
    pub(crate) fn revenue(
        weeks: i64,
        campaign: std::ops::Range<i64>,
        drop_at: i64,
    ) -> Vec<(i64, f64)> {
        let start = 1_767_571_200_000; // 2026-01-05T00:00:00Z, a Monday
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut noise = || {
            // Box–Muller over splitmix64.
            let mut next = || {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
            };
            let (u, v) = (next().max(1e-12), next());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        (0..weeks * 7 * 24)
            .map(|h| {
                let t = start + h * HOUR;
                let hour = (h % 24) as f64;
                let weekday = (h / 24) % 7;
                let daily = 1.0 + 0.5 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos();
                let weekly = if weekday >= 5 { 1.3 } else { 1.0 };
                let mut v = 1000.0 * daily * weekly * (1.0 + 0.02 * noise());
                if campaign.contains(&t) {
                    v *= 1.6;
                }
                if t >= drop_at {
                    v *= 0.8;
                }
                (t, v)
            })
            .collect()
    }

    /// Judges every 6-hour window from `from` to the series' end, as a monitor would: each
    /// window with the history before it. Returns, per window, (start, drops, spikes).
    pub(crate) fn windows(
        series: &[(i64, f64)],
        from: i64,
        excluded: &[Excluded],
    ) -> Vec<(i64, usize, usize)> {
        let config = SeasonalConfig::default();
        let end = series.last().unwrap().0 + HOUR;
        let mut out = Vec::new();
        let mut start = from;
        while start < end {
            let history: Vec<(i64, f64)> = series
                .iter()
                .copied()
                .filter(|(t, _)| *t < start && *t >= start - config.history_ms())
                .collect();
            let window: Vec<(i64, f64)> = series
                .iter()
                .copied()
                .filter(|(t, _)| (start..start + 6 * HOUR).contains(t))
                .collect();
            let a = assess(&history, &window, excluded, &config);
            out.push((start, a.count(Direction::Drop), a.count(Direction::Spike)));
            start += 6 * HOUR;
        }
        out
    }

    #[test]
    fn a_campaign_learned_as_normal_fires_false_drops_and_an_annotated_one_does_not() {
        let start = 1_767_571_200_000;
        // Four normal weeks, a two-week campaign, three normal weeks, then a real 20 % drop.
        let campaign = start + 4 * 7 * DAY..start + 6 * 7 * DAY;
        let drop_at = start + 9 * 7 * DAY + 2 * DAY;
        let series = revenue(10, campaign.clone(), drop_at);
        let after = campaign.end;
        let plain = windows(&series, after, &[]);
        let annotation = Excluded {
            name: "spring campaign".into(),
            from_ms: campaign.start,
            to_ms: campaign.end,
        };
        let annotated = windows(&series, after, std::slice::from_ref(&annotation));
        let before_drop = |w: &&(i64, usize, usize)| w.0 + 6 * HOUR <= drop_at;
        // Without the annotation the baseline learned the campaign: the two weeks after it are
        // full of drops that are not.
        let false_plain = plain.iter().filter(before_drop).filter(|w| w.1 > 0).count();
        assert!(false_plain >= 40, "{false_plain} windows with false drops");
        // With it, none before the real drop, and no spike either.
        let false_annotated: Vec<_> = annotated
            .iter()
            .filter(before_drop)
            .filter(|w| w.1 + w.2 > 0)
            .collect();
        assert!(false_annotated.is_empty(), "{false_annotated:?}");
        // The real drop is caught in its first window, and in every window after it.
        let first = annotated.iter().find(|w| w.0 >= drop_at).unwrap();
        assert_eq!(first.0, drop_at);
        assert_eq!(first.1, 6, "every hour of the first window is a drop");
        let dropped: Vec<_> = annotated.iter().filter(|w| w.0 >= drop_at).collect();
        assert!(dropped.iter().all(|w| w.1 > 0), "{dropped:?}");
        // Without it, the campaign also widened what the baseline calls normal: the real drop
        // goes mostly unseen (this seed: 2 windows of 20).
        let seen_plain = plain.iter().filter(|w| w.0 >= drop_at && w.1 > 0).count();
        assert!(
            seen_plain * 2 < dropped.len(),
            "{seen_plain} of {}",
            dropped.len()
        );
    }

    #[test]
    fn a_metric_that_never_strayed_is_still_judged() {
        let hour = 3_600_000;
        let history: Vec<(i64, f64)> = (0..3 * 24).map(|h| (h * hour, 100.0)).collect();
        let config = SeasonalConfig {
            period_ms: 24 * hour,
            ..SeasonalConfig::default()
        };
        let window = [(72 * hour, 100.0), (73 * hour, 100.5)];
        let a = assess(&history, &window, &[], &config);
        assert_eq!(a.learned_from.spread, Some(MIN_SPREAD));
        assert_eq!(a.points[0].anomaly, None);
        assert_eq!(a.points[1].anomaly, Some(Direction::Spike));
        // A moment whose past seasons are missing (a day without points) has no baseline.
        let gappy: Vec<(i64, f64)> = history
            .iter()
            .copied()
            .filter(|(t, _)| *t >= 48 * hour)
            .collect();
        let a = assess(&gappy, &[(72 * hour, 100.0)], &[], &config);
        assert_eq!((a.points.len(), a.unjudged), (0, 1));
    }

    #[test]
    fn it_says_what_it_learned_from_and_what_it_cannot_judge() {
        let start = 1_767_571_200_000;
        let series = revenue(5, 0..0, i64::MAX);
        let window_start = start + 4 * 7 * DAY;
        let (history, window): (Vec<_>, Vec<_>) =
            series.iter().partition(|(t, _)| *t < window_start);
        let annotation = Excluded {
            name: "outage".into(),
            from_ms: start + 3 * 7 * DAY,
            to_ms: start + 3 * 7 * DAY + DAY,
        };
        let a = assess(
            &history,
            &window[..6],
            std::slice::from_ref(&annotation),
            &SeasonalConfig::default(),
        );
        assert_eq!(a.learned_from.points, 4 * 7 * 24);
        assert_eq!(a.learned_from.excluded_points, 24);
        assert_eq!(a.learned_from.excluded, vec![(annotation, 24)]);
        assert!(a.learned_from.spread.is_some_and(|s| s > 0.02 && s < 0.06));
        assert_eq!(a.points.len(), 6);
        assert!(a
            .points
            .iter()
            .all(|p| p.lower < p.value && p.value < p.upper));
        // One week of history is no baseline.
        let a = assess(
            &history[history.len() - 7 * 24..],
            &window[..6],
            &[],
            &SeasonalConfig::default(),
        );
        assert_eq!((a.points.len(), a.unjudged), (0, 6));
    }
}
