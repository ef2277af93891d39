//! Slack: one message per alert through an incoming webhook, laid out in Block Kit.
//!
//! Owns the message layout (a header, the finding's facts as fields, what the
//! operator did, a link to the console), the `mrkdwn` escaping and the Block Kit
//! length limits, and the reading of the webhook's answers: `200 ok`, or a status
//! with a short error string (`400 invalid_payload`, `403 action_prohibited`,
//! `404 channel_not_found`, `410 channel_is_archived`, `429` with `Retry-After`,
//! `500 rollup_error`).
//!
//! The webhook URL is the credential: it never appears in an error, a log line or
//! this channel's `Debug` output.

use std::fmt;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Notifier, NotifyError, SecretValue, http};
use crate::domain::alert::{Alert, FindingSummary};

/// The service's name in errors.
const SERVICE: &str = "Slack";

/// Block Kit limits (docs.slack.dev/reference/block-kit/blocks): a header's
/// plain text, one field of a section, a section's text, and the fields of one section.
const HEADER_TEXT_LIMIT: usize = 150;
const FIELD_TEXT_LIMIT: usize = 2000;
const SECTION_TEXT_LIMIT: usize = 3000;
const FIELDS_PER_SECTION: usize = 10;

/// The body of a webhook's success answer.
const SUCCESS_BODY: &str = "ok";

/// A Slack incoming webhook.
pub struct SlackChannel {
    webhook_url: reqwest::Url,
    http: reqwest::Client,
}

impl SlackChannel {
    /// A channel posting to `webhook_url` (`https://hooks.slack.com/services/…`),
    /// which must be https (plain http only to a loopback address), see
    /// [`http::service_url`].
    pub fn new(
        webhook_url: SecretValue,
        http: reqwest::Client,
    ) -> Result<SlackChannel, NotifyError> {
        let webhook_url = http::service_url(
            "the Slack webhook URL",
            "https://hooks.slack.com/services/…",
            webhook_url.expose(),
        )?;
        Ok(SlackChannel { webhook_url, http })
    }

    /// Removes the webhook URL, and its path (which holds the token), from a text the
    /// service sent back.
    fn without_secret(&self, text: &str) -> String {
        let path = self.webhook_url.path();
        let mut text = text.replace(self.webhook_url.as_str(), "<webhook URL>");
        if path.len() > 1 {
            text = text.replace(path, "<webhook path>");
        }
        text
    }

    async fn post(&self, message: &Value) -> Result<(), NotifyError> {
        // Past a 2xx the message is posted: nothing from here on is worth a retry,
        // which would post it twice.
        let body = http::post_json(SERVICE, &self.http, &self.webhook_url, message, |error| {
            error.map_detail(|detail| self.without_secret(&detail))
        })
        .await?;
        let body = String::from_utf8_lossy(&body);
        if body.trim() == SUCCESS_BODY {
            Ok(())
        } else {
            Err(NotifyError::UnexpectedAnswer {
                service: SERVICE,
                reason: format!(
                    "expected the body \"ok\", got {:?}",
                    http::shorten(&self.without_secret(body.trim()))
                ),
            })
        }
    }
}

impl fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackChannel")
            .field("webhook_host", &self.webhook_url.host_str().unwrap_or(""))
            .field("webhook_url", &"<redacted>")
            .finish()
    }
}

impl Notifier for SlackChannel {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move { self.post(&message(alert)).await })
    }
}

/// The webhook's JSON: `text` is the notification and fallback text, `blocks` the
/// message as people see it.
fn message(alert: &Alert) -> Value {
    let finding = &alert.finding;
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": http::cut(&alert.subject(), HEADER_TEXT_LIMIT) },
    })];
    if finding.sample {
        blocks.push(section(
            "*[SAMPLE]* A sample finding (CreateSampleFindings): nothing in AWS is changed for it.",
        ));
    }
    if !finding.title.is_empty() {
        blocks.push(section(&escape_within(&finding.title, SECTION_TEXT_LIMIT)));
    }
    let fields: Vec<Value> = facts(finding)
        .into_iter()
        .take(FIELDS_PER_SECTION)
        .map(|(label, value)| mrkdwn(&labelled(label, &value, FIELD_TEXT_LIMIT)))
        .collect();
    blocks.push(json!({ "type": "section", "fields": fields }));
    blocks.push(section(&labelled(
        "What the operator did",
        &alert.response.to_string(),
        SECTION_TEXT_LIMIT,
    )));
    blocks.push(json!({
        "type": "context",
        "elements": [mrkdwn(&format!(
            "Finding `{}` · <{}|Open in the GuardDuty console>",
            escape(&finding.id.to_string()),
            escape(&finding.console_url()),
        ))],
    }));
    json!({ "text": escape(&alert.subject()), "blocks": blocks })
}

/// The finding's facts as (label, value), without the empty ones: at most
/// [`FIELDS_PER_SECTION`].
fn facts(finding: &FindingSummary) -> Vec<(&'static str, String)> {
    fn joined<T: ToString>(items: &[T]) -> String {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
    let account_region = [finding.account_id.as_str(), finding.region.as_str()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    let facts = [
        (
            "Severity",
            format!("{} {}", finding.band(), finding.severity),
        ),
        ("Type", finding.finding_type.clone()),
        ("Account / region", account_region),
        ("Instance", finding.instance.clone().unwrap_or_default()),
        ("Security groups", finding.security_groups.join(", ")),
        ("Ports", joined(&finding.ports)),
        ("Remote IPs", joined(&finding.remote_ips)),
        ("First seen", finding.first_seen.clone().unwrap_or_default()),
        ("Last seen", finding.last_seen.clone().unwrap_or_default()),
        (
            "Count",
            finding.count.map(|c| c.to_string()).unwrap_or_default(),
        ),
    ];
    facts
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect()
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": mrkdwn(text) })
}

fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": text })
}

/// `*label*` on one line and the escaped value below, within `limit` characters.
fn labelled(label: &str, value: &str, limit: usize) -> String {
    let head = format!("*{label}*\n");
    let room = limit.saturating_sub(head.chars().count());
    head + &escape_within(value, room)
}

/// The three characters Slack reads as control characters in `mrkdwn` and `text`,
/// as its formatting reference asks: `&`, `<` and `>` (nothing else is encoded).
fn escape(text: &str) -> String {
    escape_within(text, usize::MAX)
}

/// [`escape`], cut to at most `limit` characters (counted after escaping) with a
/// trailing `…`, never in the middle of an escape.
fn escape_within(text: &str, limit: usize) -> String {
    let width = |c: char| entity(c).map_or(1, str::len);
    let escaped_len: usize = text.chars().map(width).sum();
    let budget = if escaped_len <= limit {
        limit
    } else {
        limit.saturating_sub(1)
    };
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + width(c) > budget {
            out.push('…');
            break;
        }
        match entity(c) {
            Some(entity) => out.push_str(entity),
            None => out.push(c),
        }
        used += width(c);
    }
    out
}

/// The entity Slack wants for one of its control characters.
fn entity(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}
