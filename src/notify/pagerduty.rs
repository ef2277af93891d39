//! PagerDuty: one incident per finding through the Events API v2.
//!
//! Owns which events an alert becomes and their JSON. The finding's id is the
//! `dedup_key`, so every alert about a finding lands on the same incident:
//!
//! | alert                                         | events             |
//! | --------------------------------------------- | ------------------ |
//! | opened, not remediated                        | trigger            |
//! | opened, already remediated (`Closed`)         | trigger, resolve   |
//! | escalated or updated, not remediated          | trigger (updates)  |
//! | escalated or updated to `Closed`              | resolve            |
//! | resolved (no longer listed)                   | resolve            |
//!
//! The API answers `202 {"status":"success",…}`; `400` with `message` and `errors`
//! for an invalid event; `429` (not always with `Retry-After`) and `5xx` are worth a
//! retry. The routing key travels only in the request body: never in a URL, an
//! error, a log line or this channel's `Debug` output.

use std::fmt;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Notifier, NotifyError, SecretValue, http};
use crate::domain::alert::{Alert, AlertEvent, FindingSummary, Response, ResponseKind};
use crate::domain::severity::SeverityBand;
use crate::spec::notifications::PAGERDUTY_EVENTS_URL;

/// The service's name in errors.
const SERVICE: &str = "PagerDuty";
/// Events API v2 limits: `payload.summary` and `dedup_key` lengths.
const SUMMARY_LIMIT: usize = 1024;
const DEDUP_KEY_LIMIT: usize = 255;
/// `client`: who sent the event, as the incident shows it.
const CLIENT: &str = "guardduty-operator";
const CONSOLE_LINK_TEXT: &str = "Finding in the GuardDuty console";

/// An Events API v2 integration.
pub struct PagerDutyChannel {
    routing_key: SecretValue,
    events_url: reqwest::Url,
    http: reqwest::Client,
}

impl PagerDutyChannel {
    /// A channel sending to the integration of `routing_key`, at `events_url`
    /// (default [`PAGERDUTY_EVENTS_URL`]), which must be https (plain http only to a
    /// loopback address).
    pub fn new(
        routing_key: SecretValue,
        events_url: Option<&str>,
        http: reqwest::Client,
    ) -> Result<PagerDutyChannel, NotifyError> {
        // A key read from a file often ends in a newline.
        let key = routing_key.expose().trim();
        if key.is_empty() {
            return Err(NotifyError::Setup(
                "the PagerDuty routing key is empty".into(),
            ));
        }
        if key.chars().any(char::is_control) {
            return Err(NotifyError::Setup(
                "the PagerDuty routing key contains control characters".into(),
            ));
        }
        let events_url = http::service_url(
            "the PagerDuty events URL",
            PAGERDUTY_EVENTS_URL,
            events_url.unwrap_or(PAGERDUTY_EVENTS_URL),
        )?;
        Ok(PagerDutyChannel {
            routing_key: SecretValue::new(key),
            events_url,
            http,
        })
    }

    /// The events that tell PagerDuty about `alert`, in order.
    fn events(&self, alert: &Alert) -> Vec<Value> {
        let remediated_or_gone = alert.event == AlertEvent::Resolved
            || matches!(
                alert.response,
                Response::Closed { .. } | Response::NoLongerListed
            );
        match (remediated_or_gone, alert.event) {
            (false, _) => vec![self.trigger(alert)],
            // The on-call sees that it happened, and that it is already fixed.
            (true, AlertEvent::Opened) => vec![self.trigger(alert), self.resolve(alert)],
            (true, _) => vec![self.resolve(alert)],
        }
    }

    fn trigger(&self, alert: &Alert) -> Value {
        let finding = &alert.finding;
        json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": dedup_key(finding),
            "payload": payload(alert),
            "links": [{ "href": finding.console_url(), "text": CONSOLE_LINK_TEXT }],
            "client": CLIENT,
        })
    }

    fn resolve(&self, alert: &Alert) -> Value {
        json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": dedup_key(&alert.finding),
        })
    }

    async fn send(&self, event: &Value) -> Result<(), NotifyError> {
        // Past a 2xx the event is enqueued: nothing from here on is worth a retry.
        let body = http::post_json(SERVICE, &self.http, &self.events_url, event, |error| {
            self.explained(error)
        })
        .await?;
        let status = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|answer| answer.get("status")?.as_str().map(str::to_string));
        match status.as_deref() {
            Some("success") => Ok(()),
            _ => Err(NotifyError::UnexpectedAnswer {
                service: SERVICE,
                reason: format!(
                    "expected {{\"status\":\"success\"}}, got {:?}",
                    http::shorten(&self.without_secret(&String::from_utf8_lossy(&body)))
                ),
            }),
        }
    }

    /// An error answer with PagerDuty's own words (`message: error; error`) when its
    /// body is the documented error object, and never the routing key.
    fn explained(&self, error: NotifyError) -> NotifyError {
        error.map_detail(|detail| {
            let detail = error_text(&detail).unwrap_or(detail);
            http::shorten(&self.without_secret(&detail))
        })
    }

    fn without_secret(&self, text: &str) -> String {
        text.replace(self.routing_key.expose(), "<routing key>")
    }
}

impl fmt::Debug for PagerDutyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDutyChannel")
            .field("events_url", &self.events_url.as_str())
            .field("routing_key", &self.routing_key)
            .finish()
    }
}

impl Notifier for PagerDutyChannel {
    fn kind(&self) -> &'static str {
        "pagerDuty"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            // In order, and stop at the first failure: a resolve must not overtake
            // its trigger. Sending both again on a retry is harmless (same dedup_key).
            for event in self.events(alert) {
                self.send(&event).await?;
            }
            Ok(())
        })
    }
}

/// `{"message": …, "errors": […]}` as `message: error; error`.
fn error_text(body: &str) -> Option<String> {
    let answer: Value = serde_json::from_str(body).ok()?;
    let message = answer.get("message")?.as_str()?;
    let errors: Vec<&str> = answer
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(if errors.is_empty() {
        message.to_string()
    } else {
        format!("{message}: {}", errors.join("; "))
    })
}

/// The finding's id (GuardDuty's are 32 characters; the API takes up to 255).
fn dedup_key(finding: &FindingSummary) -> String {
    finding
        .id
        .to_string()
        .chars()
        .take(DEDUP_KEY_LIMIT)
        .collect()
}

fn severity(band: SeverityBand) -> &'static str {
    match band {
        SeverityBand::Critical => "critical",
        SeverityBand::High => "error",
        SeverityBand::Medium => "warning",
        SeverityBand::Low => "info",
    }
}

/// The trigger's `payload`: what the incident shows.
fn payload(alert: &Alert) -> Value {
    let finding = &alert.finding;
    let mut payload = Map::new();
    payload.insert(
        "summary".into(),
        http::cut(&alert.subject(), SUMMARY_LIMIT).into(),
    );
    payload.insert("source".into(), source(finding).into());
    payload.insert("severity".into(), severity(finding.band()).into());
    if let Some(last_seen) = finding.last_seen.as_deref().filter(|t| is_iso8601(t)) {
        payload.insert("timestamp".into(), last_seen.into());
    }
    if !finding.security_groups.is_empty() {
        payload.insert(
            "component".into(),
            finding.security_groups.join(", ").into(),
        );
    }
    if !finding.account_id.is_empty() {
        payload.insert("group".into(), finding.account_id.clone().into());
    }
    payload.insert("class".into(), finding.finding_type.clone().into());
    payload.insert("custom_details".into(), custom_details(alert));
    Value::Object(payload)
}

/// The affected system: the instance, else the account and region.
fn source(finding: &FindingSummary) -> String {
    match &finding.instance {
        Some(instance) if !instance.is_empty() => instance.clone(),
        _ => format!("{}/{}", finding.account_id, finding.region),
    }
}

/// Every fact the alert has, what the operator did, and why it is sent now.
fn custom_details(alert: &Alert) -> Value {
    let finding = &alert.finding;
    let mut details = Map::new();
    details.insert("finding_id".into(), finding.id.to_string().into());
    details.insert("type".into(), finding.finding_type.clone().into());
    if !finding.title.is_empty() {
        details.insert("title".into(), finding.title.clone().into());
    }
    details.insert("severity".into(), finding.severity.value().into());
    details.insert("severity_band".into(), finding.band().to_string().into());
    details.insert("account_id".into(), finding.account_id.clone().into());
    details.insert("region".into(), finding.region.clone().into());
    if let Some(instance) = &finding.instance {
        details.insert("instance".into(), instance.clone().into());
    }
    if !finding.security_groups.is_empty() {
        details.insert("security_groups".into(), json!(finding.security_groups));
    }
    if !finding.ports.is_empty() {
        details.insert("ports".into(), json!(finding.ports));
    }
    if !finding.remote_ips.is_empty() {
        let ips: Vec<String> = finding.remote_ips.iter().map(ToString::to_string).collect();
        details.insert("remote_ips".into(), json!(ips));
    }
    if let Some(first_seen) = &finding.first_seen {
        details.insert("first_seen".into(), first_seen.clone().into());
    }
    if let Some(last_seen) = &finding.last_seen {
        details.insert("last_seen".into(), last_seen.clone().into());
    }
    if let Some(count) = finding.count {
        details.insert("count".into(), count.into());
    }
    details.insert("sample".into(), finding.sample.into());
    details.insert("alert".into(), why(alert.event).into());
    details.insert(
        "operator_response".into(),
        alert.response.to_string().into(),
    );
    details.insert("channel".into(), alert.channel.clone().into());
    Value::Object(details)
}

/// Why this alert is sent now, in words.
fn why(event: AlertEvent) -> String {
    match event {
        AlertEvent::Opened => "first seen".into(),
        AlertEvent::Escalated { from } => format!("severity up from {from}"),
        AlertEvent::Updated { from } => {
            format!(
                "the operator's response changed (was {})",
                response_word(from)
            )
        }
        AlertEvent::Resolved => "no longer listed".into(),
    }
}

fn response_word(kind: ResponseKind) -> &'static str {
    match kind {
        ResponseKind::Reported => "reported",
        ResponseKind::Planned => "planned",
        ResponseKind::Closed => "remediated",
        ResponseKind::Refused => "refused",
        ResponseKind::Failed => "failed",
        ResponseKind::NoLongerListed => "no longer listed",
    }
}

/// The shape of an ISO 8601 date-time as GuardDuty writes it
/// (`2026-11-29T04:00:00.000Z`, or with an offset): `timestamp` is sent only then.
fn is_iso8601(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let zone = text.get(19..).unwrap_or("");
    let zone = zone
        .strip_prefix('.')
        .map(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or(zone);
    let offset = zone.as_bytes();
    let zone_ok = zone == "Z"
        || (offset.len() == 6
            && matches!(offset[0], b'+' | b'-')
            && offset[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| offset[i].is_ascii_digit()));
    digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10)
        && bytes.get(10) == Some(&b'T')
        && digits(11..13)
        && bytes.get(13) == Some(&b':')
        && digits(14..16)
        && bytes.get(16) == Some(&b':')
        && digits(17..19)
        && zone_ok
}
