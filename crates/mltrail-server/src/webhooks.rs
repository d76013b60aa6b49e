//! Alert delivery to webhooks: one background task per (alert, URL), retried with exponential
//! backoff, each outcome an audit event. Nothing here can hold up monitoring: `notify` only
//! spawns.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::time::Duration;

use mltrail_monitor::runner::AlertSink;
use mltrail_store::monitors::{self, Alert};
use mltrail_store::MetaStore;
use serde_json::json;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each failure, at most a minute.
    pub first_backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct WebhookSink {
    client: reqwest::Client,
    store: MetaStore,
    policy: RetryPolicy,
    counters: WebhookCounters,
}

impl WebhookSink {
    pub fn new(store: MetaStore, policy: RetryPolicy) -> Self {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .user_agent(concat!("mltrail/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        WebhookSink {
            client,
            store,
            policy,
            counters: WebhookCounters::default(),
        }
    }

    /// The delivery counters `/metrics` reports.
    pub fn counters(&self) -> &WebhookCounters {
        &self.counters
    }
}

/// What a webhook receives: the alert, plus a `text` line chat tools display as it is.
fn payload(alert: &Alert) -> serde_json::Value {
    json!({
        "text": alert.details["message"],
        "alert": alert,
    })
}

impl AlertSink for WebhookSink {
    fn notify(&self, alert: &Alert, webhooks: &[String]) {
        let body = payload(alert);
        for url in webhooks {
            let (client, store, policy, counters) = (
                self.client.clone(),
                self.store.clone(),
                self.policy,
                self.counters.clone(),
            );
            let (url, body, alert_id) = (url.clone(), body.clone(), alert.id.clone());
            tokio::spawn(async move {
                let mut backoff = policy.first_backoff;
                let mut attempt = 0;
                let delivered = loop {
                    attempt += 1;
                    counters.attempts.inc();
                    let outcome = client.post(&url).json(&body).send().await;
                    let error = match outcome {
                        Ok(r) if r.status().is_success() => break true,
                        Ok(r) => format!("HTTP {}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    if attempt >= policy.attempts {
                        tracing::error!(alert = %alert_id, url = %url, attempts = attempt, error = %error, "webhook gave up: the alert was not delivered");
                        break false;
                    }
                    tracing::warn!(alert = %alert_id, url = %url, attempt, error = %error, retry_in_ms = backoff.as_millis() as u64, "webhook failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                };
                if delivered {
                    counters.delivered();
                    tracing::info!(alert = %alert_id, url = %url, attempts = attempt, "alert delivered to webhook");
                } else {
                    counters.failed();
                }
                if let Err(e) =
                    monitors::record_delivery(&store, &alert_id, &url, delivered, attempt).await
                {
                    tracing::warn!(alert = %alert_id, error = %e, "could not record the webhook outcome");
                }
            });
        }
    }
}

/// The webhook delivery counters, kept by the sink for the server's life.
#[derive(Clone, Default)]
pub struct WebhookCounters {
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub attempts: Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

impl WebhookCounters {
    pub fn delivered(&self) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                outcome: "delivered",
            })
            .inc();
    }

    pub fn failed(&self) {
        self.deliveries
            .get_or_create(&OutcomeLabels { outcome: "failed" })
            .inc();
    }

    /// Adds the counters to the registry `/metrics` encodes.
    pub fn register(&self, registry: &mut Registry) {
        // Both outcomes are shown from the start, at zero.
        for outcome in ["delivered", "failed"] {
            let _ = self.deliveries.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "mltrail_webhook_deliveries",
            "Alerts delivered to webhooks, or given up on after every attempt failed.",
            self.deliveries.clone(),
        );
        registry.register(
            "mltrail_webhook_attempts",
            "HTTP requests made to webhooks.",
            self.attempts.clone(),
        );
    }
}
