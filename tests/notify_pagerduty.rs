//! The PagerDuty channel against a local receiver standing in for the Events API v2:
//! the events it sends for each kind of alert, their JSON, and how answers are read.

use std::time::Duration;

use crate::common::alerts::{FINDING_ID, alert, remediated, resolved, with_severity};
use crate::common::channel_checks::{
    assert_http_error, assert_none_contains, assert_unexpected_answer, assert_unreachable,
    closed_port, delivery_error, escalated, refused_naming, shown_texts,
};
use crate::common::receiver::{Answer, Receiver};
use guardduty_operator::domain::alert::{Alert, AlertEvent, Response};
use guardduty_operator::notify::pagerduty::PagerDutyChannel;
use guardduty_operator::notify::{Notifier, SecretValue, http};
use serde_json::{Value, json};

const ROUTING_KEY: &str = "R0UT1NGK3Y0123456789abcdefABCDEF";
const EVENTS_PATH: &str = "/v2/enqueue";

fn accepted() -> Answer {
    Answer::json(
        202,
        json!({ "status": "success", "message": "Event processed", "dedup_key": FINDING_ID }),
    )
}

fn channel(receiver: &Receiver) -> PagerDutyChannel {
    PagerDutyChannel::new(
        SecretValue::new(ROUTING_KEY),
        Some(&format!("{}{EVENTS_PATH}", receiver.url)),
        http::client(),
    )
    .expect("a loopback events URL is accepted")
}

/// Delivers `alert` to a PagerDuty that accepts everything; the events it received.
async fn sent(alert: &Alert) -> Vec<Value> {
    let receiver = Receiver::start(vec![accepted()]).await;
    channel(&receiver)
        .deliver(alert)
        .await
        .expect("PagerDuty accepted the events");
    receiver
        .received()
        .iter()
        .map(|request| {
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, EVENTS_PATH);
            assert_eq!(request.query, None, "nothing travels in the URL");
            assert_eq!(request.header("content-type"), Some("application/json"));
            request.json()
        })
        .collect()
}

fn actions(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["event_action"].as_str().unwrap())
        .collect()
}

fn resolve_event() -> Value {
    json!({ "routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": FINDING_ID })
}

#[tokio::test]
async fn a_new_finding_triggers_an_incident_keyed_by_the_finding_id() {
    let alert = alert("oncall");
    let events = sent(&alert).await;

    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0],
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": FINDING_ID,
            "payload": {
                "summary": alert.subject(),
                "source": "i-0123456789abcdef0",
                "severity": "error",
                "timestamp": "2026-11-29T04:00:00.000Z",
                "component": "sg-0123456789abcdef0",
                "group": "123456789012",
                "class": "Recon:EC2/PortProbeUnprotectedPort",
                "custom_details": {
                    "finding_id": FINDING_ID,
                    "type": "Recon:EC2/PortProbeUnprotectedPort",
                    "title": "Unprotected port on EC2 instance i-0123456789abcdef0 is being probed.",
                    "severity": 8.0,
                    "severity_band": "HIGH",
                    "account_id": "123456789012",
                    "region": "us-east-1",
                    "instance": "i-0123456789abcdef0",
                    "security_groups": ["sg-0123456789abcdef0"],
                    "ports": [22],
                    "remote_ips": ["198.51.100.7"],
                    "first_seen": "2026-11-28T10:00:00.000Z",
                    "last_seen": "2026-11-29T04:00:00.000Z",
                    "count": 14,
                    "sample": false,
                    "alert": "first seen",
                    "operator_response": alert.response.to_string(),
                    "channel": "oncall",
                },
            },
            "links": [{
                "href": alert.finding.console_url(),
                "text": "Finding in the GuardDuty console",
            }],
            "client": "guardduty-operator",
        })
    );
}

#[tokio::test]
async fn severity_bands_become_pagerduty_severities() {
    for (severity, expected) in [
        (9.5, "critical"),
        (8.0, "error"),
        (5.0, "warning"),
        (2.0, "info"),
    ] {
        let events = sent(&with_severity(alert("oncall"), severity)).await;
        assert_eq!(events[0]["payload"]["severity"], expected, "{severity}");
        assert_eq!(events[0]["payload"]["custom_details"]["severity"], severity);
    }
}

#[tokio::test]
async fn the_summary_is_cut_to_1024_characters() {
    let mut alert = alert("oncall");
    alert.finding.finding_type = format!("Custom:EC2/{}", "é".repeat(3000));
    let events = sent(&alert).await;

    let summary = events[0]["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with('…'));
    assert!(alert.subject().starts_with(summary.trim_end_matches('…')));
}

#[tokio::test]
async fn without_an_instance_or_times_the_source_is_the_account_and_region() {
    let mut alert = alert("oncall");
    alert.finding.instance = None;
    alert.finding.security_groups.clear();
    alert.finding.first_seen = None;
    alert.finding.last_seen = None;
    alert.finding.sample = true;
    let events = sent(&alert).await;

    let payload = events[0]["payload"].as_object().unwrap();
    assert_eq!(payload["source"], "123456789012/us-east-1");
    assert!(!payload.contains_key("timestamp"), "no time, no timestamp");
    assert!(!payload.contains_key("component"));
    let details = payload["custom_details"].as_object().unwrap();
    for absent in ["instance", "security_groups", "first_seen", "last_seen"] {
        assert!(!details.contains_key(absent), "{absent} is left out");
    }
    assert_eq!(details["sample"], true);
    assert!(payload["summary"].as_str().unwrap().contains("[SAMPLE]"));
}

#[tokio::test]
async fn a_last_seen_that_is_not_an_iso_time_is_not_sent_as_the_timestamp() {
    let mut alert = alert("oncall");
    alert.finding.last_seen = Some("yesterday".into());
    let events = sent(&alert).await;

    let payload = events[0]["payload"].as_object().unwrap();
    assert!(!payload.contains_key("timestamp"));
    assert_eq!(payload["custom_details"]["last_seen"], "yesterday");
}

#[tokio::test]
async fn a_finding_already_remediated_when_first_seen_triggers_then_resolves() {
    let mut alert = alert("oncall");
    alert.response = Response::Closed {
        summary: "revoked tcp/22 from 0.0.0.0/0 in sg-0123456789abcdef0".into(),
    };
    let events = sent(&alert).await;

    assert_eq!(actions(&events), ["trigger", "resolve"]);
    assert_eq!(events[0]["dedup_key"], FINDING_ID);
    assert_eq!(events[1], resolve_event());
}

#[tokio::test]
async fn a_remediation_after_the_first_alert_only_resolves() {
    let events = sent(&remediated(alert("oncall"))).await;
    assert_eq!(events, [resolve_event()]);
}

#[tokio::test]
async fn a_finding_no_longer_listed_only_resolves() {
    let events = sent(&resolved(alert("oncall"))).await;
    assert_eq!(events, [resolve_event()]);
}

#[tokio::test]
async fn an_escalation_triggers_again_on_the_same_incident() {
    let events = sent(&escalated(alert("oncall"), 8.0, 9.2)).await;

    assert_eq!(actions(&events), ["trigger"]);
    assert_eq!(events[0]["dedup_key"], FINDING_ID);
    assert_eq!(events[0]["payload"]["severity"], "critical");
    assert_eq!(
        events[0]["payload"]["custom_details"]["alert"],
        "severity up from 8.0"
    );
}

#[tokio::test]
async fn a_failed_remediation_triggers_again_on_the_same_incident() {
    let mut alert = remediated(alert("oncall"));
    alert.event = AlertEvent::Updated {
        from: alert.response.kind(),
    };
    alert.response = Response::Failed {
        error: "UnauthorizedOperation".into(),
    };
    let events = sent(&alert).await;

    assert_eq!(actions(&events), ["trigger"]);
    assert_eq!(events[0]["dedup_key"], FINDING_ID);
    assert_eq!(
        events[0]["payload"]["custom_details"]["alert"],
        "the operator's response changed (was remediated)"
    );
}

#[tokio::test]
async fn a_rejected_trigger_is_not_followed_by_its_resolve() {
    let mut alert = alert("oncall");
    alert.response = Response::Closed {
        summary: "revoked".into(),
    };
    let (error, receiver) = delivery_error(channel, vec![Answer::new(500, "")], &alert).await;

    assert_eq!(error.category().as_str(), "server-error");
    assert_eq!(actions(&[receiver.received()[0].json()]), ["trigger"]);
    assert_eq!(
        receiver.received().len(),
        1,
        "the resolve waits for the retry"
    );
}

#[tokio::test]
async fn pagerduty_error_answers_become_errors_the_caller_can_act_on() {
    let invalid = json!({
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"],
    });
    // (answer, status, retry-after, detail, category, retryable)
    let cases = [
        (
            Answer::json(400, invalid),
            400,
            None,
            "Event object is invalid: Length of 'routing_key' is incorrect (should be 32 characters)",
            "rejected",
            false,
        ),
        (
            Answer::new(403, "Forbidden"),
            403,
            None,
            "Forbidden",
            "access-denied",
            false,
        ),
        (
            Answer::new(404, "Not Found"),
            404,
            None,
            "Not Found",
            "rejected",
            false,
        ),
        (Answer::new(429, ""), 429, None, "", "throttled", true),
        (
            Answer::new(429, "").header("retry-after", "2"),
            429,
            Some(Duration::from_secs(2)),
            "",
            "throttled",
            true,
        ),
        (
            Answer::json(
                503,
                json!({ "status": "unavailable", "message": "Try again later" }),
            ),
            503,
            None,
            "Try again later",
            "server-error",
            true,
        ),
    ];
    for (answer, status, retry_after, detail, category, retryable) in cases {
        let (error, receiver) = delivery_error(channel, vec![answer], &alert("oncall")).await;

        assert_http_error(
            &error,
            "PagerDuty",
            status,
            retry_after,
            detail,
            category,
            retryable,
        );
        assert_eq!(receiver.received().len(), 1, "one attempt per delivery");
    }
}

#[tokio::test]
async fn an_accepted_status_without_success_is_an_unexpected_answer() {
    for answer in [
        Answer::new(202, "ok"),
        Answer::json(202, json!({ "status": "queued?" })),
    ] {
        let (error, _receiver) = delivery_error(channel, vec![answer], &alert("oncall")).await;

        // Not retryable: a retry could not undo an enqueued event.
        assert_unexpected_answer(&error, "PagerDuty");
    }
}

#[tokio::test]
async fn the_routing_key_never_appears_in_urls_errors_or_debug_output() {
    // A service that echoes the key it was sent.
    let receiver = Receiver::start(vec![Answer::json(
        400,
        json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [format!("Routing key {ROUTING_KEY} is not enabled")],
        }),
    )])
    .await;
    let pagerduty = channel(&receiver);
    let rejected = pagerduty.deliver(&alert("oncall")).await.unwrap_err();
    let request = &receiver.received()[0];
    assert!(!request.path.contains(ROUTING_KEY));
    assert_eq!(
        request.json()["routing_key"],
        ROUTING_KEY,
        "only in the body"
    );

    let unreachable = PagerDutyChannel::new(
        SecretValue::new(ROUTING_KEY),
        Some(&format!("http://127.0.0.1:{}{EVENTS_PATH}", closed_port())),
        http::client(),
    )
    .unwrap()
    .deliver(&alert("oncall"))
    .await
    .unwrap_err();
    assert_unreachable(&unreachable, "PagerDuty");

    assert_none_contains(
        &shown_texts([&rejected, &unreachable], &pagerduty),
        &[ROUTING_KEY],
    );
    assert_eq!(
        rejected.to_string(),
        "PagerDuty answered HTTP 400: Event object is invalid: Routing key <routing key> is not enabled"
    );
}

#[tokio::test]
async fn an_events_url_must_be_https_unless_it_is_loopback() {
    let default = PagerDutyChannel::new(SecretValue::new(ROUTING_KEY), None, http::client())
        .expect("the default endpoint is accepted");
    assert!(
        format!("{default:?}").contains("https://events.pagerduty.com/v2/enqueue"),
        "{default:?}"
    );
    PagerDutyChannel::new(
        SecretValue::new(ROUTING_KEY),
        Some("https://events.eu.pagerduty.com/v2/enqueue"),
        http::client(),
    )
    .expect("the EU endpoint is accepted");

    for (url, problem) in [
        (
            "http://events.pagerduty.com/v2/enqueue",
            "must be an https URL such as https://events.pagerduty.com/v2/enqueue (http only \
             to 127.0.0.1, ::1 or localhost), not http://events.pagerduty.com",
        ),
        ("ftp://events.pagerduty.com/v2/enqueue", "https URL"),
        ("events.pagerduty.com/v2/enqueue", "is not a URL"),
    ] {
        let text = refused_naming(
            PagerDutyChannel::new(SecretValue::new(ROUTING_KEY), Some(url), http::client()),
            url,
            "the PagerDuty events URL ",
            &[ROUTING_KEY],
        );
        assert!(text.contains(problem), "{url}: {text}");
    }
}

#[tokio::test]
async fn an_empty_routing_key_is_refused_and_a_trailing_newline_is_dropped() {
    let error = PagerDutyChannel::new(SecretValue::new(" \n"), None, http::client()).unwrap_err();
    assert_eq!(error.to_string(), "the PagerDuty routing key is empty");
    assert_eq!(error.category().as_str(), "setup");

    let receiver = Receiver::start(vec![accepted()]).await;
    let pagerduty = PagerDutyChannel::new(
        SecretValue::new(format!("{ROUTING_KEY}\n")),
        Some(&format!("{}{EVENTS_PATH}", receiver.url)),
        http::client(),
    )
    .unwrap();
    pagerduty.deliver(&alert("oncall")).await.unwrap();
    assert_eq!(receiver.received()[0].json()["routing_key"], ROUTING_KEY);
}

#[tokio::test]
async fn the_channel_kind_is_pagerduty() {
    let receiver = Receiver::start(vec![accepted()]).await;
    assert_eq!(channel(&receiver).kind(), "pagerDuty");
}
