//! The ServiceNow channel (Table API): one incident per finding, with work notes
//! when the operator's response changes, the severity rises or the finding is
//! resolved.
//!
//! An incident is found again by its `correlation_id`, which holds the finding id, so
//! the channel keeps no state of its own and never opens a second incident for a
//! finding, even after the operator lost its record:
//!
//! ```text
//!  Alert ─> GET /api/now/table/incident?sysparm_query=correlation_id=<id>
//!             ├─ none  ─> POST  /api/now/table/incident            (the incident)
//!             └─ found ─> PATCH /api/now/table/incident/{sys_id}   (work_notes; on
//!                                                                  escalation urgency, impact)
//! ```
//!
//! Decisions worth knowing:
//! - Urgency and impact from the severity band, so the base system's priority
//!   lookup gives: CRITICAL 1/1 (1 - Critical), HIGH urgency 1 and impact 2
//!   (2 - High: a probed or exposed instance needs action now, but it is one
//!   resource, not the business), MEDIUM 2/2 (3 - Moderate), LOW 3/3 (5 - Planning).
//! - Only fields of the base `incident` table are written: `short_description`
//!   (cut to its 160 characters), `description`, `correlation_id`,
//!   `correlation_display` (`GuardDuty`), `urgency`, `impact`. No `category`: the
//!   base choices (inquiry, software, hardware, network, database) have nothing for
//!   security, and sites that add one name it differently.
//! - The lookup also returns `correlation_id` and checks it: an instance ignores the
//!   parts of a query it cannot read and would then return any incident.
//! - The incident is never resolved or closed by the channel: most instances require
//!   resolution codes and notes, so a resolved finding is a work note and a person
//!   closes the incident.

use futures_util::future::BoxFuture;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;

use super::http::{check, cut, endpoint, send_with_basic_auth, shorten, site_url, unreachable};
use super::{Notifier, NotifyError, SecretValue};
use crate::domain::alert::{Alert, AlertEvent};
use crate::domain::severity::SeverityBand;
use crate::spec::notifications::ServiceNowSpec;

/// The service's name in errors and logs.
const SERVICE: &str = "ServiceNow";
/// The length of `incident.short_description` in the base system.
const SHORT_DESCRIPTION_LIMIT: usize = 160;
/// What `correlation_display` shows: the system the incident came from.
const CORRELATION_DISPLAY: &str = "GuardDuty";

const INCIDENT_TABLE: [&str; 4] = ["api", "now", "table", "incident"];

/// A ServiceNow instance that receives one incident per finding.
#[derive(Debug)]
pub struct ServiceNowChannel {
    instance: Url,
    user: SecretValue,
    password: SecretValue,
    http: reqwest::Client,
}

/// An incident's `urgency` and `impact` (1 high, 2 medium, 3 low).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrgencyImpact {
    pub urgency: u8,
    pub impact: u8,
}

impl ServiceNowChannel {
    /// A channel for `spec`, with the `user` and `password` of its Secret. The
    /// instance must be https (http only to a loopback address, for tests).
    pub fn new(
        spec: &ServiceNowSpec,
        user: SecretValue,
        password: SecretValue,
        http: reqwest::Client,
    ) -> Result<ServiceNowChannel, NotifyError> {
        Ok(ServiceNowChannel {
            instance: site_url(
                "serviceNow.instanceUrl",
                "https://example.service-now.com",
                &spec.instance_url,
            )?,
            user,
            password,
            http,
        })
    }

    async fn deliver_alert(&self, alert: &Alert) -> Result<(), NotifyError> {
        match self.find_incident(alert).await? {
            Some(incident) => self.add_work_notes(&incident, alert).await,
            None => self.create_incident(alert).await,
        }
    }

    /// The incident whose `correlation_id` is the finding id, oldest first.
    async fn find_incident(&self, alert: &Alert) -> Result<Option<Incident>, NotifyError> {
        let finding = alert.finding.id.as_str();
        let query = format!("correlation_id={finding}^ORDERBYsys_created_on");
        let request = self
            .http
            .get(endpoint(&self.instance, &INCIDENT_TABLE))
            .query(&[
                ("sysparm_query", query.as_str()),
                ("sysparm_limit", "1"),
                ("sysparm_fields", "sys_id,number,correlation_id"),
            ]);
        let response = self.send(request).await?;
        let answer: Found = read_result(response, "incident lookup").await?;
        match answer.result.into_iter().next() {
            None => Ok(None),
            Some(incident) => match &incident.correlation_id {
                Some(listed) if listed != finding => Err(unexpected(format!(
                    "the lookup for correlation_id {finding} listed {} with another \
                     correlation_id",
                    incident.number
                ))),
                _ => Ok(Some(incident)),
            },
        }
    }

    async fn create_incident(&self, alert: &Alert) -> Result<(), NotifyError> {
        let UrgencyImpact { urgency, impact } = urgency_impact(alert.finding.band());
        let request = self
            .http
            .post(endpoint(&self.instance, &INCIDENT_TABLE))
            .query(&[("sysparm_fields", "sys_id,number")])
            .json(&json!({
                "short_description": cut(&alert.subject(), SHORT_DESCRIPTION_LIMIT),
                "description": alert.text(),
                "correlation_id": alert.finding.id.as_str(),
                "correlation_display": CORRELATION_DISPLAY,
                "urgency": urgency.to_string(),
                "impact": impact.to_string(),
            }));
        let response = self.send(request).await?;
        // The incident exists once ServiceNow answered 201; an odd body only loses
        // the log line.
        match read_result::<Created>(response, "create").await {
            Ok(Created { result }) => tracing::info!(
                incident = %result.number, finding = %alert.finding.id,
                "created a ServiceNow incident"
            ),
            Err(NotifyError::UnexpectedAnswer { .. }) => tracing::warn!(
                finding = %alert.finding.id,
                "created a ServiceNow incident, but the answer did not name it"
            ),
            Err(error) => return Err(error),
        }
        Ok(())
    }

    async fn add_work_notes(&self, incident: &Incident, alert: &Alert) -> Result<(), NotifyError> {
        let mut update = json!({ "work_notes": alert.change_note() });
        if let AlertEvent::Escalated { .. } = alert.event {
            let UrgencyImpact { urgency, impact } = urgency_impact(alert.finding.band());
            update["urgency"] = json!(urgency.to_string());
            update["impact"] = json!(impact.to_string());
        }
        let request = self
            .http
            .patch(endpoint(
                &self.instance,
                &["api", "now", "table", "incident", &incident.sys_id],
            ))
            .query(&[("sysparm_fields", "sys_id,number")])
            .json(&update);
        let response = self.send(request).await?;
        check(SERVICE, response).await.map_err(explain)?;
        tracing::info!(
            incident = %incident.number, finding = %alert.finding.id,
            "added work notes to a ServiceNow incident"
        );
        Ok(())
    }

    /// Sends with the channel's credentials; no answer at all is `Unreachable`.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, NotifyError> {
        send_with_basic_auth(SERVICE, request, &self.user, &self.password).await
    }
}

impl Notifier for ServiceNowChannel {
    fn kind(&self) -> &'static str {
        "serviceNow"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver_alert(alert))
    }
}

/// The urgency and impact of an incident for a severity band.
pub fn urgency_impact(band: SeverityBand) -> UrgencyImpact {
    let (urgency, impact) = match band {
        SeverityBand::Critical => (1, 1),
        SeverityBand::High => (1, 2),
        SeverityBand::Medium => (2, 2),
        SeverityBand::Low => (3, 3),
    };
    UrgencyImpact { urgency, impact }
}

/// ServiceNow's error body: `{"error": {"message": …, "detail": …}, "status": "failure"}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorMessage,
}

#[derive(Debug, Deserialize)]
struct ErrorMessage {
    message: Option<String>,
    detail: Option<String>,
}

impl ErrorMessage {
    /// `message: detail`, leaving out what is empty.
    fn text(&self) -> String {
        [&self.message, &self.detail]
            .into_iter()
            .flatten()
            .map(|part| part.trim())
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(": ")
    }
}

/// The error with ServiceNow's message as its detail, when the body was its JSON.
fn explain(error: NotifyError) -> NotifyError {
    error.map_detail(|detail| {
        let text = serde_json::from_str::<ErrorBody>(&detail)
            .map(|body| body.error.text())
            .unwrap_or_default();
        if text.is_empty() {
            detail
        } else {
            shorten(&text)
        }
    })
}

fn unexpected(reason: String) -> NotifyError {
    NotifyError::UnexpectedAnswer {
        service: SERVICE,
        reason,
    }
}

/// A 2xx answer's `{"result": …}`, or the error the answer stands for.
async fn read_result<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, NotifyError> {
    let response = check(SERVICE, response).await.map_err(explain)?;
    let body = response
        .bytes()
        .await
        .map_err(|error| unreachable(SERVICE, error))?;
    serde_json::from_slice(&body).map_err(|error| {
        unexpected(format!(
            "the {what} answer is not the documented JSON ({error})"
        ))
    })
}

/// The lookup's answer: `{"result": [{"sys_id": …, "number": …, "correlation_id": …}]}`.
#[derive(Debug, Deserialize)]
struct Found {
    result: Vec<Incident>,
}

#[derive(Debug, Deserialize)]
struct Incident {
    sys_id: String,
    /// Empty when an ACL hides it; only logs use it.
    #[serde(default)]
    number: String,
    correlation_id: Option<String>,
}

/// The create's answer: `{"result": {"sys_id": …, "number": …}}`.
#[derive(Debug, Deserialize)]
struct Created {
    result: CreatedIncident,
}

#[derive(Debug, Deserialize)]
struct CreatedIncident {
    number: String,
}
