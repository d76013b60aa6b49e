//! A deployment's routing experiment as a panel of its page: the policy in force, each arm's
//! requests, rewards and mean reward with its interval (drawn), current propensities, the
//! regret estimate, a canary's rollback, and what the reader should know before using the logs.

use maud::{html, Markup};

use crate::chart::{self, Interval};

/// One arm, as the experiment view reports it.
pub struct ArmRow {
    pub arm: String,
    pub requests: u64,
    pub rewards: u64,
    pub mean_reward: Option<f64>,
    pub interval: Option<[f64; 2]>,
    pub propensity: Option<f64>,
}

/// What the panel shows.
pub struct ExperimentView {
    pub experiment: String,
    pub policy: String,
    pub kind: String,
    pub version: String,
    pub set_by: String,
    pub set_at: i64,
    pub arms: Vec<ArmRow>,
    pub regret: Option<f64>,
    pub warnings: Vec<String>,
    /// A canary's rollback: the failed check, as kept with the policy.
    pub rolled_back: Option<String>,
    /// The policy as set (canonical JSON).
    pub policy_json: String,
}

fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.4}"))
}

pub fn panel(view: Option<&ExperimentView>) -> Markup {
    let Some(view) = view else {
        return html! { p.empty { "No routing policy: the deployment serves its own model. Set one with " code { "mltrail serve --policy FILE.toml" } " or " code { "mltrail experiments set-policy" } "." } };
    };
    let rows: Vec<Interval> = view
        .arms
        .iter()
        .map(|a| Interval {
            label: a.arm.clone(),
            value: a.mean_reward,
            low: a.interval.map(|i| i[0]),
            high: a.interval.map(|i| i[1]),
        })
        .collect();
    html! {
        p {
            "Experiment " strong { (view.experiment) } " · policy " strong { (view.policy) } " (" code { (view.kind) } ") version " code { (view.version) }
            " · set by " (view.set_by) " at " (crate::layout::time(view.set_at))
        }
        @if let Some(why) = &view.rolled_back {
            p.error { "Canary rolled back: " code { (why) } }
        }
        @for w in &view.warnings { p { span.badge.bad { "note" } " " (w) } }
        table.experiment {
            thead { tr { th scope="col" { "Arm" } th scope="col" { "Requests" } th scope="col" { "Rewards" } th scope="col" { "Mean reward" } th scope="col" { "95% interval" } th scope="col" { "Propensity now" } } }
            tbody { @for a in &view.arms { tr {
                td { code { (a.arm) } }
                td.num { (a.requests) }
                td.num { (a.rewards) }
                td.num { (number(a.mean_reward)) }
                td.num { @if let Some([lo, hi]) = a.interval { "[" (format!("{lo:.4}")) ", " (format!("{hi:.4}")) "]" } @else { "–" } }
                td.num { (number(a.propensity)) }
            } } }
        }
        p { "Regret estimate: " (number(view.regret)) " (requests × the gap to the best-looking arm's mean)." }
        (chart::intervals(&format!("Mean reward per arm of {}", view.experiment), "mean reward (95% interval)", &rows))
        details { summary { "The policy as set" } pre { code { (view.policy_json) } } }
    }
}
