//! Checks every channel test makes the same way: how an answer the service refused
//! becomes a `NotifyError` (its fields, `category()`, `is_retryable()`), that a channel
//! refuses a URL by naming the field, and that no secret shows in anything an operator
//! can read (errors' Display and Debug, the channel's Debug). Also the few helpers
//! those tests share to get there: a failed delivery, a closed port, the requests a
//! receiver got, an escalated alert.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use guardduty_operator::domain::alert::{Alert, AlertEvent};
use guardduty_operator::domain::severity::Severity;
use guardduty_operator::notify::{Notifier, NotifyError};

use super::alerts::with_severity;
use super::receiver::{Answer, Received, Receiver};

/// `alert` again, its severity risen from `from` to `to`: the alert of an escalation.
pub fn escalated(alert: Alert, from: f64, to: f64) -> Alert {
    let mut alert = with_severity(alert, to);
    alert.event = AlertEvent::Escalated {
        from: Severity::of_finding(from).unwrap(),
    };
    alert
}

/// Delivers `alert` through the channel `channel` makes for a receiver answering
/// `answers`: the error the delivery must end in, and the receiver, for what it got.
pub async fn delivery_error<C: Notifier>(
    channel: impl Fn(&Receiver) -> C,
    answers: Vec<Answer>,
    alert: &Alert,
) -> (NotifyError, Receiver) {
    let receiver = Receiver::start(answers).await;
    let error = channel(&receiver)
        .deliver(alert)
        .await
        .expect_err("the delivery fails");
    (error, receiver)
}

/// The errors of three deliveries of `alert` through `channel`, which `receiver`
/// serves: refused (401), throttled (429 with Retry-After), and not answered at all
/// (the receiver is dropped).
pub async fn failed_deliveries(
    channel: &dyn Notifier,
    receiver: Receiver,
    alert: &Alert,
) -> Vec<NotifyError> {
    let mut errors = Vec::new();
    for answer in [
        Answer::new(401, "Unauthorized"),
        Answer::new(429, "slow down").header("retry-after", "1"),
    ] {
        receiver.answer_with(vec![answer]);
        errors.push(channel.deliver(alert).await.expect_err("an error status"));
    }
    drop(receiver);
    errors.push(channel.deliver(alert).await.expect_err("no answer"));
    errors
}

/// `METHOD path` of every request `receiver` got, in order.
pub fn request_lines(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The request's query parameters, decoded.
pub fn query_pairs(request: &Received) -> BTreeMap<String, String> {
    let raw = request.query.clone().unwrap_or_default();
    reqwest::Url::parse(&format!("http://query.invalid/?{raw}"))
        .expect("a query string")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The request carries `authorization` and asks for JSON.
#[track_caller]
pub fn assert_credentials(request: &Received, authorization: &str) {
    assert_eq!(request.header("authorization"), Some(authorization));
    assert_eq!(request.header("accept"), Some("application/json"));
}

/// A port on 127.0.0.1 that nobody listens on: bound, then let go.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `error` is `service` answering HTTP `status`, with this Retry-After and this
/// text of the service's own (`detail`), and reads as `category`, retryable or not.
#[track_caller]
pub fn assert_http_error(
    error: &NotifyError,
    service: &str,
    status: u16,
    retry_after: Option<Duration>,
    detail: &str,
    category: &str,
    retryable: bool,
) {
    match error {
        NotifyError::Http {
            service: got_service,
            status: got_status,
            retry_after: got_retry_after,
            detail: got_detail,
        } => {
            assert_eq!((*got_service, *got_status), (service, status), "{error:?}");
            assert_eq!(*got_retry_after, retry_after, "{status}: Retry-After");
            assert_eq!(got_detail, detail, "{status}: the service's error text");
        }
        other => panic!("{status}: expected an HTTP error from {service}, got {other:?}"),
    }
    assert_eq!(error.retry_after(), retry_after, "{status}");
    assert_eq!(error.category().as_str(), category, "{status}");
    assert_eq!(error.is_retryable(), retryable, "{status}");
}

/// `error` says `service` did not answer, which is worth a retry.
#[track_caller]
pub fn assert_unreachable(error: &NotifyError, service: &str) {
    assert!(
        matches!(error, NotifyError::Unreachable { service: got, .. } if *got == service),
        "expected {service} to be unreachable, got {error:?}"
    );
    assert_eq!(error.category().as_str(), "unreachable");
    assert!(error.is_retryable(), "{error:?}");
}

/// `error` says `service` answered a success that is not what its API documents;
/// not worth a retry, which could repeat what the answer did.
#[track_caller]
pub fn assert_unexpected_answer(error: &NotifyError, service: &str) {
    assert!(
        matches!(error, NotifyError::UnexpectedAnswer { service: got, .. } if *got == service),
        "expected an unexpected answer from {service}, got {error:?}"
    );
    assert_eq!(error.category().as_str(), "unexpected-answer");
    assert!(!error.is_retryable(), "{error:?}");
}

/// A channel refused at setup, for `url`: a setup error whose message starts with
/// `field` (the field to fix) and shows none of `secrets`. The message.
#[track_caller]
pub fn refused_naming<C: Debug>(
    made: Result<C, NotifyError>,
    url: &str,
    field: &str,
    secrets: &[&str],
) -> String {
    let error = match made {
        Err(error @ NotifyError::Setup(_)) => error,
        other => panic!("{url:?} was not refused: {other:?}"),
    };
    assert_eq!(error.category().as_str(), "setup");
    let message = error.to_string();
    assert!(message.starts_with(field), "{url:?}: {message}");
    assert_none_contains(std::slice::from_ref(&message), secrets);
    message
}

/// Everything an operator can read: each error's Display and Debug, then the
/// channel's Debug.
pub fn shown_texts<'a>(
    errors: impl IntoIterator<Item = &'a NotifyError>,
    channel: &dyn Debug,
) -> Vec<String> {
    let mut texts: Vec<String> = errors
        .into_iter()
        .flat_map(|error| [error.to_string(), format!("{error:?}")])
        .collect();
    texts.push(format!("{channel:?}"));
    texts
}

/// None of `secrets` shows in any of `texts`.
#[track_caller]
pub fn assert_none_contains(texts: &[impl AsRef<str>], secrets: &[&str]) {
    for text in texts {
        let text = text.as_ref();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shows in {text}");
        }
    }
}
