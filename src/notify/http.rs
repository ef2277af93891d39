//! What the HTTP channels (Slack, PagerDuty, Jira, ServiceNow) share: one client with
//! bounded timeouts, and the mapping of an answer to a [`NotifyError`] that carries
//! the status, `Retry-After` and the service's error text, never the URL (a Slack
//! webhook URL is a credential).

use std::time::Duration;

use super::NotifyError;

/// The longest a request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an error body is kept in a message.
const DETAIL_LIMIT: usize = 300;

/// The HTTP client every channel uses (cheap to clone: it shares one pool).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("guardduty-operator/", env!("CARGO_PKG_VERSION")))
        // A redirect could carry credentials to another host: follow none.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client's settings are valid")
}

/// A request that got no answer, without its URL.
pub fn unreachable(service: &'static str, error: reqwest::Error) -> NotifyError {
    let error = error.without_url();
    let reason = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "connection failed".to_string()
    } else {
        crate::ports::error_chain(&error)
    };
    NotifyError::Unreachable { service, reason }
}

/// The response if its status is 2xx; otherwise the error it stands for, with
/// `Retry-After` (seconds or an HTTP date is read as seconds only; a date is ignored)
/// and the start of the body.
pub async fn check(
    service: &'static str,
    response: reqwest::Response,
) -> Result<reqwest::Response, NotifyError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.unwrap_or_default();
    Err(NotifyError::Http {
        service,
        status: status.as_u16(),
        retry_after,
        detail: shorten(body.trim()),
    })
}

/// At most [`DETAIL_LIMIT`] characters, on one line.
pub fn shorten(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= DETAIL_LIMIT {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(DETAIL_LIMIT).collect();
        cut.push('…');
        cut
    }
}
