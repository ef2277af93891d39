//! Alert delivery: the channels of `spec.notifications` behind one [`Notifier`] port.
//!
//! ```text
//!  PassReport ─ domain::alert (pure: routes, record) ─> [Alert] ─> Notifier per channel ─> deliveries
//!                                                                  (one attempt per call;
//!                                                                   retries and backoff here)
//! ```
//!
//! Each channel speaks its service's published API: [`slack`] (incoming webhook, Block
//! Kit), [`pagerduty`] (Events API v2), [`jira`] (REST API v2), [`servicenow`] (Table
//! API), [`email`] (SES v2 or SMTP) and [`sms`] (SNS Publish). Secrets arrive as
//! [`SecretValue`]s, which never print.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::domain::alert::Alert;
use crate::domain::outcome::Category;
use crate::ports::AwsError;

pub mod dispatch;
pub mod email;
pub mod http;
pub mod jira;
pub mod pagerduty;
pub mod secrets;
pub mod servicenow;
pub mod slack;
pub mod sms;

/// A secret's value: it never appears in logs, errors, status or output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// One alert channel.
pub trait Notifier: Send + Sync {
    /// The channel's kind for metric labels and messages: `slack`, `pagerDuty`,
    /// `jira`, `serviceNow`, `email`, `sms`.
    fn kind(&self) -> &'static str;

    /// Delivers one alert: one attempt (which may take several requests, such as a
    /// search before a create); the caller retries what is retryable. Delivering the
    /// same alert twice must not create a second incident or issue.
    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// Why an alert was not delivered. Display never contains a secret: no webhook URL,
/// no routing key, no password, no Authorization header.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The service answered with an error status.
    #[error("{service} answered HTTP {status}{}", detail_suffix(.detail))]
    Http {
        service: &'static str,
        status: u16,
        /// `Retry-After`, when the service sent one (429, 503).
        retry_after: Option<Duration>,
        /// The service's own error text, shortened, without secrets.
        detail: String,
    },
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("failed to reach {service}: {reason}")]
    Unreachable {
        service: &'static str,
        reason: String,
    },
    /// The service answered 2xx but not what its API documents.
    #[error("{service} answered something unexpected: {reason}")]
    UnexpectedAnswer {
        service: &'static str,
        reason: String,
    },
    /// An AWS call (SES, SNS) failed.
    #[error("failed to {operation}")]
    Aws {
        operation: &'static str,
        #[source]
        source: AwsError,
    },
    /// The SMTP server refused or failed; `permanent` for 5xx replies.
    #[error("SMTP server {server}: {reason}")]
    Smtp {
        server: String,
        reason: String,
        permanent: bool,
    },
    /// The channel cannot be used as configured (a secret missing, a bad address).
    #[error("{0}")]
    Setup(String),
}

/// The service's reason as the status, events and output show it: a short sanitised
/// reason (an error page or a raw document is left out: never a response body).
fn detail_suffix(detail: &str) -> String {
    let reason = http::reason(detail);
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl NotifyError {
    /// A label for metrics and event reasons.
    pub fn category(&self) -> Category {
        match self {
            NotifyError::Http { status: 429, .. } => Category::Throttled,
            NotifyError::Http {
                status: 401 | 403, ..
            } => Category::AccessDenied,
            NotifyError::Http { status, .. } if *status >= 500 => Category::ServerError,
            NotifyError::Http { .. } => Category::Rejected,
            NotifyError::Unreachable { .. } => Category::Unreachable,
            NotifyError::UnexpectedAnswer { .. } => Category::UnexpectedAnswer,
            NotifyError::Aws { source, .. } => source.category(),
            NotifyError::Smtp {
                permanent: true, ..
            } => Category::Rejected,
            NotifyError::Smtp { .. } => Category::SmtpError,
            NotifyError::Setup(_) => Category::Setup,
        }
    }

    /// Worth another attempt in this pass: throttling, server errors, no answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Http { status, .. } => *status == 429 || *status >= 500,
            NotifyError::Unreachable { .. } => true,
            NotifyError::Aws { source, .. } => {
                matches!(
                    source.category(),
                    Category::Throttled | Category::Unreachable
                )
            }
            NotifyError::Smtp { permanent, .. } => !permanent,
            NotifyError::UnexpectedAnswer { .. } | NotifyError::Setup(_) => false,
        }
    }

    /// The same error with the service's text of an `Http` error rewritten (in the
    /// service's own words, without a secret); any other error unchanged.
    pub fn map_detail(self, rewrite: impl FnOnce(String) -> String) -> NotifyError {
        match self {
            NotifyError::Http {
                service,
                status,
                retry_after,
                detail,
            } => NotifyError::Http {
                service,
                status,
                retry_after,
                detail: rewrite(detail),
            },
            other => other,
        }
    }

    /// How long the service asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
