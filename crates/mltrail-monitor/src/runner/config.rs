//! What a monitor is told: its `config` (drift share, alert rules, webhooks, excluded and
//! sensitive columns),
//! what it compares with ([`ReferenceSpec`]), and how windows line up.

use mltrail_store::datasets::VersionRef;
use serde::{Deserialize, Serialize};

use crate::rules::Rule;

/// What a monitor's `config` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    /// Alert rules as written (`drift_share >= 0.3 for 2`).
    #[serde(default)]
    pub alerts: Vec<String>,
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Input columns left out of feature drift (ids, timestamps).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Input columns whose groups each window's fairness is measured across (each alone, and
    /// crossed when there are several).
    #[serde(default)]
    pub sensitive: Vec<String>,
    /// A business metric monitor's baseline (`None` for a deployment's monitor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seasonal: Option<SeasonalSettings>,
    /// A ranking monitor's settings: its windows compare what a ranking deployment served
    /// with what the front end reported it displayed (`crate::ranking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<RankingSettings>,
}

/// How a ranking monitor measures its windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingSettings {
    /// The cut-off of top-k overlap and nDCG@k, and the top items repeats compare (default
    /// 10).
    #[serde(default = "default_k")]
    pub k: usize,
    /// How far back an impression for the same request key counts as the one before, in
    /// milliseconds (default: the window's length). The window reads this much of the log
    /// before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_lookback_ms: Option<i64>,
}

fn default_k() -> usize {
    10
}

impl Default for RankingSettings {
    fn default() -> Self {
        RankingSettings {
            k: default_k(),
            repeat_lookback_ms: None,
        }
    }
}

/// The largest cut-off a ranking monitor takes.
const MAX_K: usize = 1000;

/// The furthest a ranking monitor looks back for repeats: each window reads that much log.
const MAX_REPEAT_LOOKBACK_MS: i64 = 31 * 86_400_000;

/// What kind of values a monitor's windows have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    Business,
    Ranking,
}

/// How a business metric monitor learns its baseline ([`crate::seasonal`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeasonalSettings {
    /// The season: points this far apart are the same moment (default a week, which holds the
    /// daily pattern too).
    #[serde(default = "default_season_ms")]
    pub season_ms: i64,
    /// Past seasons whose median is a point's baseline (default 3).
    #[serde(default = "default_seasons")]
    pub seasons: usize,
    /// Robust spreads a point may stray before it is a drop or a spike (default 4).
    #[serde(default = "default_z")]
    pub z: f64,
    /// How many seasons back a baseline may reach past annotated periods (default 8).
    #[serde(default = "default_horizon")]
    pub horizon: usize,
}

fn default_season_ms() -> i64 {
    crate::seasonal::SeasonalConfig::default().period_ms
}
fn default_seasons() -> usize {
    crate::seasonal::SeasonalConfig::default().seasons
}
fn default_z() -> f64 {
    crate::seasonal::SeasonalConfig::default().z
}
fn default_horizon() -> usize {
    crate::seasonal::SeasonalConfig::default().horizon
}

impl Default for SeasonalSettings {
    fn default() -> Self {
        SeasonalSettings {
            season_ms: default_season_ms(),
            seasons: default_seasons(),
            z: default_z(),
            horizon: default_horizon(),
        }
    }
}

/// The longest season: a year, leap day included.
const MAX_SEASON_MS: i64 = 366 * 86_400_000;

impl SeasonalSettings {
    pub fn config(&self) -> crate::seasonal::SeasonalConfig {
        crate::seasonal::SeasonalConfig {
            period_ms: self.season_ms,
            seasons: self.seasons,
            z: self.z,
            horizon: self.horizon,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError { field, message });
        if !(60_000..=MAX_SEASON_MS).contains(&self.season_ms) {
            return invalid(
                "season",
                format!("must be 1m to 366d, got {} ms", self.season_ms),
            );
        }
        if !(2..=20).contains(&self.seasons) {
            return invalid("seasons", format!("must be 2 to 20, got {}", self.seasons));
        }
        if !(self.z.is_finite() && self.z > 0.0) {
            return invalid("z", format!("must be a positive number, got {}", self.z));
        }
        if !(self.seasons..=60).contains(&self.horizon) {
            return invalid(
                "horizon",
                format!(
                    "must be {} (seasons) to 60, got {}",
                    self.seasons, self.horizon
                ),
            );
        }
        Ok(())
    }
}

fn default_drift_share() -> f64 {
    0.5
}

/// The rule every monitor has when it was given none: tell when the dataset drifts.
pub const DEFAULT_ALERT: &str = "dataset_drift == 1";

/// The rule every business metric monitor has when it was given none: tell of any drop or
/// spike.
pub const DEFAULT_METRIC_ALERT: &str = "anomalies >= 1";

/// The rule every ranking monitor has when it was given none: tell when fewer than nine in ten
/// impressions are displayed in the served order.
pub const DEFAULT_RANKING_ALERT: &str = "ranking.agreement < 0.9";

/// A config field that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl MonitorConfig {
    /// A config without drift settings (a business metric's or a ranking monitor's), to be
    /// completed with its kind's settings.
    pub fn without_drift(alerts: Vec<String>, webhooks: Vec<String>) -> Self {
        MonitorConfig {
            drift_share: default_drift_share(),
            alerts,
            webhooks,
            exclude: Vec::new(),
            sensitive: Vec::new(),
            seasonal: None,
            ranking: None,
        }
    }

    /// Checks what a user asked for; the error names the offending field.
    pub fn validate(&mut self) -> Result<Vec<Rule>, ConfigError> {
        let invalid = |field, message| ConfigError { field, message };
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            return Err(invalid(
                "drift_share",
                format!("drift_share must be in (0, 1], got {}", self.drift_share),
            ));
        }
        if let Some(seasonal) = &self.seasonal {
            seasonal.validate()?;
        }
        if let Some(ranking) = &self.ranking {
            if !(1..=MAX_K).contains(&ranking.k) {
                return Err(invalid(
                    "ranking.k",
                    format!("must be 1 to {MAX_K}, got {}", ranking.k),
                ));
            }
            if let Some(lookback) = ranking.repeat_lookback_ms {
                if !(1000..=MAX_REPEAT_LOOKBACK_MS).contains(&lookback) {
                    return Err(invalid(
                        "ranking.repeat_lookback",
                        format!("must be 1s to 31d, got {lookback} ms"),
                    ));
                }
            }
        }
        let kind = match (&self.seasonal, &self.ranking) {
            (Some(_), None) => Kind::Business,
            (None, Some(_)) => Kind::Ranking,
            (None, None) => Kind::Deployment,
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "ranking",
                    "a monitor watches a business metric or a deployment's rankings, not both"
                        .into(),
                ))
            }
        };
        if self.alerts.is_empty() {
            self.alerts.push(
                match kind {
                    Kind::Business => DEFAULT_METRIC_ALERT,
                    Kind::Ranking => DEFAULT_RANKING_ALERT,
                    Kind::Deployment => DEFAULT_ALERT,
                }
                .into(),
            );
        }
        let rules = self
            .alerts
            .iter()
            .map(|a| Rule::parse(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("alerts", e))?;
        // A rule on another kind's values would never hold.
        let kind_of = |metric: &str| {
            if crate::rules::BUSINESS_METRICS.contains(&metric) {
                Kind::Business
            } else if crate::rules::is_ranking_metric(metric) {
                Kind::Ranking
            } else {
                Kind::Deployment
            }
        };
        if let Some(rule) = rules.iter().find(|r| kind_of(&r.metric) != kind) {
            return Err(invalid(
                "alerts",
                format!(
                    "`{}` is not a value of a {} monitor's windows ({})",
                    rule.metric,
                    match kind {
                        Kind::Business => "business metric",
                        Kind::Ranking => "ranking",
                        Kind::Deployment => "deployment",
                    },
                    match kind {
                        Kind::Business =>
                            format!("those are: {}", crate::rules::BUSINESS_METRICS.join(", ")),
                        Kind::Ranking => format!(
                            "those are: {}, ranking.sorted.<key>",
                            crate::rules::RANKING_METRICS.join(", ")
                        ),
                        Kind::Deployment => "see docs/monitoring.md, Alert rules".to_string(),
                    }
                ),
            ));
        }
        for url in &self.webhooks {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(invalid(
                    "webhooks",
                    format!("webhook `{url}` is not an http:// or https:// URL"),
                ));
            }
        }
        Ok(rules)
    }
}

/// What a monitor compares with: the served version's training data, or a dataset version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceSpec {
    Training,
    Dataset(VersionRef),
}

/// A reference that is neither `training` nor a dataset version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reference `{0}` is neither `training` nor a dataset version NAME@VERSION")]
pub struct BadReference(pub String);

impl ReferenceSpec {
    pub fn parse(text: &str) -> Result<Self, BadReference> {
        if text == "training" {
            return Ok(ReferenceSpec::Training);
        }
        text.parse()
            .map(ReferenceSpec::Dataset)
            .map_err(|_| BadReference(text.to_string()))
    }
}

/// A monitor as a user asks for it; what is left out takes its default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewMonitor {
    /// The deployment watched; empty when `metric` is given.
    pub deployment: String,
    /// A business metric watched instead of a deployment.
    pub metric: Option<String>,
    /// A business metric monitor's baseline (defaults when `None`).
    pub seasonal: Option<SeasonalSettings>,
    /// Set for a monitor of a ranking deployment's served against displayed orders.
    pub ranking: Option<RankingSettings>,
    /// The window length (at least a second).
    pub window_ms: i64,
    /// How long after a window ends it is evaluated (default 10 minutes), so late records and
    /// labels are in.
    pub delay_ms: Option<i64>,
    /// `training` (the default) or a dataset version `NAME@VERSION`.
    pub reference: Option<String>,
    /// Share of drifted columns that makes the dataset drift (default 0.5).
    pub drift_share: Option<f64>,
    pub alerts: Vec<String>,
    pub webhooks: Vec<String>,
    pub exclude: Vec<String>,
    pub sensitive: Vec<String>,
    /// A past time whose window is the first evaluated (to evaluate history); default now.
    pub start: Option<i64>,
}

/// The delay a monitor waits after a window ends when it is given none.
pub const DEFAULT_DELAY_MS: i64 = 10 * 60_000;

/// The start of the window that holds `time` (windows are aligned to the epoch, so hourly
/// windows start on the hour).
pub fn window_start(time_ms: i64, window_ms: i64) -> i64 {
    time_ms.div_euclid(window_ms) * window_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::parse_duration_ms;
    use serde_json::json;

    #[test]
    fn durations_and_windows() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert!(parse_duration_ms("1w").is_err());
        assert!(parse_duration_ms("-5m").is_err());
        assert!(parse_duration_ms("").is_err());
        assert_eq!(window_start(7_250_000, 3_600_000), 7_200_000);
    }

    #[test]
    fn configs_are_checked_field_by_field() {
        let mut c: MonitorConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c.validate().unwrap().len(), 1, "the default rule");
        assert_eq!(c.alerts, [DEFAULT_ALERT]);
        let mut c: MonitorConfig =
            serde_json::from_value(json!({"webhooks": ["ftp://x"]})).unwrap();
        assert_eq!(c.validate().unwrap_err().field, "webhooks");
        let mut c: MonitorConfig = serde_json::from_value(json!({"drift_share": 0})).unwrap();
        assert_eq!(c.validate().unwrap_err().field, "drift_share");
        assert_eq!(
            ReferenceSpec::parse("training"),
            Ok(ReferenceSpec::Training)
        );
        assert_eq!(
            ReferenceSpec::parse("credit@2"),
            Ok(ReferenceSpec::Dataset(VersionRef {
                name: "credit".into(),
                version: 2
            }))
        );
        for bad in ["credit", "credit@0", "@2", "credit@x"] {
            assert!(ReferenceSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
