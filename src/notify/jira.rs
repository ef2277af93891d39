//! The Jira channel (REST API v2): one issue per finding, commented when the
//! operator's response changes, the severity rises or the finding is resolved.
//!
//! An issue is found again by its label `guardduty-<finding id>` (labels cannot hold
//! spaces; the finding id has none), so the channel keeps no state of its own and
//! never opens a second issue for a finding, even after the operator lost its record:
//!
//! ```text
//!  Alert ─> search: project = "SEC" AND labels = "guardduty-<id>"
//!             ├─ none  ─> POST /rest/api/2/issue           (summary, description, labels, priority)
//!             └─ found ─> POST /rest/api/2/issue/{key}/comment   (what changed)
//! ```
//!
//! Decisions worth knowing:
//! - Search: `GET /rest/api/2/search/jql`, the only search left on Jira Cloud (the
//!   older `/rest/api/2/search` answers 410 Gone there since 2025). Jira Data Center
//!   and Server have no `/search/jql` and answer 404: the channel then searches with
//!   `/rest/api/2/search` and keeps doing so. Both answers carry `issues[].key`.
//!   Cloud's new search is eventually consistent: an issue created a few seconds
//!   earlier may not be listed yet. Alerts about one finding come passes apart, so
//!   this only matters when a create's answer was lost and the caller retries at once.
//! - Priority: set from the severity band (CRITICAL Highest, HIGH High, MEDIUM
//!   Medium, LOW Low). A site whose create screen lacks Priority answers 400 with
//!   `errors.priority`: the create is sent again at once without it, a warning is
//!   logged, and later creates leave it out.
//! - Text: the description and comments are wiki markup in API v2; the characters
//!   that open links, macros, images and tables (`[ ] { } ! |`) are escaped so a
//!   finding's text shows as written (`[SAMPLE]` is not a link).
//! - The issue is never transitioned: workflows differ per site, so a resolved
//!   finding is a comment and a person closes the issue.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;

use super::http::{check, cut, endpoint, send_with_basic_auth, shorten, site_url, unreachable};
use super::{Notifier, NotifyError, SecretValue};
use crate::domain::alert::Alert;
use crate::domain::ids::FindingId;
use crate::domain::severity::SeverityBand;
use crate::spec::notifications::JiraSpec;

/// The service's name in errors and logs.
const SERVICE: &str = "Jira";
/// The longest summary Jira accepts.
const SUMMARY_LIMIT: usize = 255;
/// The label every issue of the operator carries, besides its finding's own label.
const OPERATOR_LABEL: &str = "guardduty";

const SEARCH_JQL_PATH: [&str; 5] = ["rest", "api", "2", "search", "jql"];
const SEARCH_LEGACY_PATH: [&str; 4] = ["rest", "api", "2", "search"];

/// A Jira project that receives one issue per finding.
#[derive(Debug)]
pub struct JiraChannel {
    site: Url,
    project: String,
    issue_type: String,
    user: SecretValue,
    token: SecretValue,
    http: reqwest::Client,
    /// The site has no `/search/jql` (Data Center or Server): use `/search`.
    legacy_search: AtomicBool,
    /// The site refused `priority` on create once: leave it out from then on.
    priority_refused: AtomicBool,
}

impl JiraChannel {
    /// A channel for `spec`, with the `user` and `token` of its Secret. The site must
    /// be https (http only to a loopback address, for tests).
    pub fn new(
        spec: &JiraSpec,
        user: SecretValue,
        token: SecretValue,
        http: reqwest::Client,
    ) -> Result<JiraChannel, NotifyError> {
        Ok(JiraChannel {
            site: site_url("jira.url", "https://example.atlassian.net", &spec.url)?,
            project: spec.project.clone(),
            issue_type: spec.issue_type.clone(),
            user,
            token,
            http,
            legacy_search: AtomicBool::new(false),
            priority_refused: AtomicBool::new(false),
        })
    }

    async fn deliver_alert(&self, alert: &Alert) -> Result<(), NotifyError> {
        let label = finding_label(&alert.finding.id);
        match self.find_issue(&label).await? {
            Some(issue) => self.comment(&issue, alert).await,
            None => self.create_issue(alert, &label).await,
        }
    }

    /// The key (or id) of the issue carrying `label` in the project, if there is one.
    async fn find_issue(&self, label: &str) -> Result<Option<String>, NotifyError> {
        let jql = format!(
            "project = {} AND labels = {} ORDER BY created ASC",
            jql_string(&self.project),
            jql_string(label)
        );
        if !self.legacy_search.load(Ordering::Relaxed) {
            match self.search(&SEARCH_JQL_PATH, &jql).await {
                Err(NotifyError::Http { status: 404, .. }) => {
                    tracing::info!(
                        "Jira has no /rest/api/2/search/jql (Data Center or Server): \
                         searching with /rest/api/2/search"
                    );
                    self.legacy_search.store(true, Ordering::Relaxed);
                }
                answer => return answer,
            }
        }
        self.search(&SEARCH_LEGACY_PATH, &jql).await
    }

    async fn search(&self, path: &[&str], jql: &str) -> Result<Option<String>, NotifyError> {
        let request = self.http.get(self.endpoint(path)).query(&[
            ("jql", jql),
            ("maxResults", "1"),
            ("fields", "key"),
        ]);
        let response = self.send(request).await?;
        let response = check(SERVICE, response).await.map_err(explain)?;
        let answer: SearchAnswer = read_json(response, "search").await?;
        if answer.issues.is_none() && answer.is_last.is_none() && answer.total.is_none() {
            return Err(unexpected(
                "the search answer has no issues list (is the URL a Jira site?)",
            ));
        }
        match answer.issues.unwrap_or_default().into_iter().next() {
            None => Ok(None),
            Some(FoundIssue { key: Some(key), .. }) => Ok(Some(key)),
            // `/search/jql` may list ids only; an id serves as well as a key in paths.
            Some(FoundIssue { id: Some(id), .. }) => Ok(Some(id)),
            Some(_) => Err(unexpected("the search listed an issue without key or id")),
        }
    }

    async fn create_issue(&self, alert: &Alert, label: &str) -> Result<(), NotifyError> {
        let with_priority = !self.priority_refused.load(Ordering::Relaxed);
        let created = match self.post_issue(alert, label, with_priority).await {
            Err(error) if with_priority && refuses_priority(&error) => {
                self.priority_refused.store(true, Ordering::Relaxed);
                tracing::warn!(
                    project = %self.project,
                    "Jira refused the priority field (it is not on the project's create \
                     screen): creating issues without a priority; add Priority to the \
                     screen to have it set from the severity"
                );
                self.post_issue(alert, label, false).await
            }
            answer => answer,
        };
        let response = created.map_err(explain)?;
        // The issue exists once Jira answered 201; an odd body only loses the log line.
        match response.json::<CreatedIssue>().await {
            Ok(issue) => tracing::info!(
                issue = %issue.key, finding = %alert.finding.id, "created a Jira issue"
            ),
            Err(_) => tracing::warn!(
                finding = %alert.finding.id,
                "created a Jira issue, but the answer did not name it"
            ),
        }
        Ok(())
    }

    /// One create request; a refusal is returned as Jira wrote it, for
    /// [`refuses_priority`] to read.
    async fn post_issue(
        &self,
        alert: &Alert,
        label: &str,
        with_priority: bool,
    ) -> Result<reqwest::Response, NotifyError> {
        let mut fields = json!({
            "project": { "key": self.project },
            "issuetype": { "name": self.issue_type },
            "summary": cut(&alert.subject(), SUMMARY_LIMIT),
            "description": escape_wiki(&alert.text()),
            "labels": [OPERATOR_LABEL, label],
        });
        if with_priority {
            fields["priority"] = json!({ "name": priority_name(alert.finding.band()) });
        }
        let request = self
            .http
            .post(self.endpoint(&["rest", "api", "2", "issue"]))
            .json(&json!({ "fields": fields }));
        let response = self.send(request).await?;
        check(SERVICE, response).await
    }

    async fn comment(&self, issue: &str, alert: &Alert) -> Result<(), NotifyError> {
        let request = self
            .http
            .post(self.endpoint(&["rest", "api", "2", "issue", issue, "comment"]))
            .json(&json!({ "body": escape_wiki(&alert.change_note()) }));
        let response = self.send(request).await?;
        check(SERVICE, response).await.map_err(explain)?;
        tracing::info!(%issue, finding = %alert.finding.id, "commented on a Jira issue");
        Ok(())
    }

    /// Sends with the channel's credentials; no answer at all is `Unreachable`.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, NotifyError> {
        send_with_basic_auth(SERVICE, request, &self.user, &self.token).await
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        endpoint(&self.site, segments)
    }
}

impl Notifier for JiraChannel {
    fn kind(&self) -> &'static str {
        "jira"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver_alert(alert))
    }
}

/// The label that finds a finding's issue again: `guardduty-<finding id>`.
pub fn finding_label(id: &FindingId) -> String {
    format!("{OPERATOR_LABEL}-{id}")
}

/// Jira's priority for a severity band (the names of Jira's default priority scheme).
pub fn priority_name(band: SeverityBand) -> &'static str {
    match band {
        SeverityBand::Critical => "Highest",
        SeverityBand::High => "High",
        SeverityBand::Medium => "Medium",
        SeverityBand::Low => "Low",
    }
}

/// A JQL string literal: double quotes, with `"` and `\` escaped.
fn jql_string(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Text for a wiki-markup field, with the characters that open links, macros,
/// images and tables escaped.
fn escape_wiki(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '[' | ']' | '{' | '}' | '!' | '|') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Jira's error body: `{"errorMessages": [...], "errors": {"field": "message"}}`.
#[derive(Debug, Default, Deserialize)]
struct JiraErrors {
    #[serde(default, rename = "errorMessages")]
    error_messages: Vec<String>,
    #[serde(default)]
    errors: BTreeMap<String, serde_json::Value>,
}

impl JiraErrors {
    /// The body of an `Http` error, if Jira wrote it in its documented shape.
    fn of(error: &NotifyError) -> Option<JiraErrors> {
        match error {
            NotifyError::Http { detail, .. } => serde_json::from_str(detail).ok(),
            _ => None,
        }
    }

    /// `message; message; field: message; field: message`.
    fn text(&self) -> String {
        let fields = self.errors.iter().map(|(field, message)| match message {
            serde_json::Value::String(message) => format!("{field}: {message}"),
            other => format!("{field}: {other}"),
        });
        self.error_messages
            .iter()
            .cloned()
            .chain(fields)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The error with Jira's messages as its detail, when the body was Jira's JSON.
fn explain(error: NotifyError) -> NotifyError {
    let messages = JiraErrors::of(&error)
        .map(|body| body.text())
        .unwrap_or_default();
    if messages.is_empty() {
        return error;
    }
    error.map_detail(|_| shorten(&messages))
}

/// A 400 whose `errors` name `priority`: the field is not on the create screen, or
/// the site has no such priority.
fn refuses_priority(error: &NotifyError) -> bool {
    matches!(error, NotifyError::Http { status: 400, .. })
        && JiraErrors::of(error).is_some_and(|body| body.errors.contains_key("priority"))
}

fn unexpected(reason: &str) -> NotifyError {
    NotifyError::UnexpectedAnswer {
        service: SERVICE,
        reason: reason.to_string(),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, NotifyError> {
    let body = response
        .bytes()
        .await
        .map_err(|error| unreachable(SERVICE, error))?;
    serde_json::from_slice(&body).map_err(|error| NotifyError::UnexpectedAnswer {
        service: SERVICE,
        reason: format!("the {what} answer is not the documented JSON ({error})"),
    })
}

/// The answer of `/search/jql` (`issues`, `isLast`, `nextPageToken`) or of the older
/// `/search` (`issues`, `total`, `startAt`, `maxResults`).
#[derive(Debug, Deserialize)]
struct SearchAnswer {
    issues: Option<Vec<FoundIssue>>,
    #[serde(rename = "isLast")]
    is_last: Option<bool>,
    total: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct FoundIssue {
    key: Option<String>,
    id: Option<String>,
}

/// The answer to a create: `{"id": "10000", "key": "SEC-24", "self": "…"}`.
#[derive(Debug, Deserialize)]
struct CreatedIssue {
    key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jql_strings_escape_quotes_and_backslashes() {
        assert_eq!(jql_string("SEC"), "\"SEC\"");
        assert_eq!(jql_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn wiki_markup_openers_are_escaped() {
        assert_eq!(
            escape_wiki("[SAMPLE] Trojan:EC2/DNSDataExfiltration!DNS {x} a|b"),
            "\\[SAMPLE\\] Trojan:EC2/DNSDataExfiltration\\!DNS \\{x\\} a\\|b"
        );
    }

    #[test]
    fn jira_errors_read_as_messages_then_fields() {
        let body = JiraErrors {
            error_messages: vec!["Bad JQL".into()],
            errors: BTreeMap::from([("summary".to_string(), json!("too long"))]),
        };
        assert_eq!(body.text(), "Bad JQL; summary: too long");
    }
}
