//! The ServiceNow channel against a local receiver standing in for an instance's
//! Table API: every request is checked for method, path, query, credentials and
//! body, and the receiver answers as the Table API documents it (`{"result": …}`,
//! 201 creates, `{"error": {…}, "status": "failure"}`, 429 with Retry-After).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::alerts::{FINDING_ID, alert, remediated, resolved, with_severity};
use crate::common::channel_checks::{
    assert_credentials, assert_http_error, assert_none_contains, assert_unexpected_answer,
    assert_unreachable, delivery_error, escalated, failed_deliveries, query_pairs, refused_naming,
    request_lines, shown_texts,
};
use crate::common::receiver::{Answer, Received, Receiver};
use guardduty_operator::notify::servicenow::ServiceNowChannel;
use guardduty_operator::notify::{Notifier, NotifyError, SecretValue, http};
use guardduty_operator::spec::notifications::{SecretRef, ServiceNowSpec};
use serde_json::{Value, json};

const USER: &str = "snow.integration";
const PASSWORD: &str = "snow-pa55word-s3cr3t";
/// `Basic ` and the base64 of `snow.integration:snow-pa55word-s3cr3t`.
const AUTHORIZATION: &str = "Basic c25vdy5pbnRlZ3JhdGlvbjpzbm93LXBhNTV3b3JkLXMzY3IzdA==";
const TABLE: &str = "/api/now/table/incident";
const SYS_ID: &str = "46e18c0fa9fe19810066a0083f76bd56";

fn spec(url: &str) -> ServiceNowSpec {
    ServiceNowSpec {
        instance_url: url.to_string(),
        credentials_secret_ref: SecretRef {
            name: "servicenow-credentials".into(),
        },
    }
}

fn channel(receiver: &Receiver) -> ServiceNowChannel {
    ServiceNowChannel::new(
        &spec(&receiver.url),
        SecretValue::new(USER),
        SecretValue::new(PASSWORD),
        http::client(),
    )
    .expect("a loopback http instance is accepted")
}

fn no_incident() -> Answer {
    Answer::json(200, json!({ "result": [] }))
}

fn existing_incident() -> Answer {
    Answer::json(
        200,
        json!({ "result": [{ "sys_id": SYS_ID, "number": "INC0010042", "correlation_id": FINDING_ID }] }),
    )
}

fn created() -> Answer {
    Answer::json(
        201,
        json!({ "result": { "sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010043" } }),
    )
}

fn updated() -> Answer {
    Answer::json(
        200,
        json!({ "result": { "sys_id": SYS_ID, "number": "INC0010042" } }),
    )
}

fn pairs(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expect_lookup(request: &Received) {
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", TABLE)
    );
    let raw = request.query.clone().unwrap_or_default();
    assert!(
        raw.contains(&format!("sysparm_query=correlation_id%3D{FINDING_ID}%5E")),
        "the encoded query is URL-encoded: {raw}"
    );
    assert_eq!(
        query_pairs(request),
        pairs(&[
            (
                "sysparm_query",
                &format!("correlation_id={FINDING_ID}^ORDERBYsys_created_on")
            ),
            ("sysparm_limit", "1"),
            ("sysparm_fields", "sys_id,number,correlation_id"),
        ])
    );
    assert_credentials(request, AUTHORIZATION);
}

fn expect_json(request: &Received, method: &str, path: &str) -> Value {
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        (method, path)
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        query_pairs(request),
        pairs(&[("sysparm_fields", "sys_id,number")])
    );
    assert_credentials(request, AUTHORIZATION);
    request.json()
}

fn incident_path() -> String {
    format!("{TABLE}/{SYS_ID}")
}

#[tokio::test]
async fn first_alert_looks_up_the_correlation_id_then_creates_an_incident() {
    let receiver = Receiver::start(vec![no_incident(), created()]).await;
    let servicenow = channel(&receiver);
    let alert = alert("security-snow");

    servicenow.deliver(&alert).await.expect("delivered");

    let requests = receiver.received();
    assert_eq!(requests.len(), 2, "{:?}", request_lines(&receiver));
    expect_lookup(&requests[0]);
    let body = expect_json(&requests[1], "POST", TABLE);
    assert_eq!(
        body,
        json!({
            "short_description": alert.subject(),
            "description": alert.text(),
            "correlation_id": FINDING_ID,
            "correlation_display": "GuardDuty",
            "urgency": "1",
            "impact": "2",
        })
    );
    assert_eq!(servicenow.kind(), "serviceNow");
}

#[tokio::test]
async fn a_remediated_alert_adds_work_notes_and_never_creates() {
    let receiver = Receiver::start(vec![no_incident(), created()]).await;
    let servicenow = channel(&receiver);
    let first = alert("security-snow");
    servicenow.deliver(&first).await.expect("created");

    receiver.answer_with(vec![existing_incident(), updated()]);
    servicenow
        .deliver(&remediated(first))
        .await
        .expect("work notes added");

    assert_eq!(
        request_lines(&receiver),
        [
            format!("GET {TABLE}"),
            format!("POST {TABLE}"),
            format!("GET {TABLE}"),
            format!("PATCH {}", incident_path()),
        ]
    );
    let requests = receiver.received();
    expect_lookup(&requests[2]);
    let update = expect_json(&requests[3], "PATCH", &incident_path());
    assert_eq!(
        update
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["work_notes".to_string()])
    );
    let notes = update["work_notes"].as_str().unwrap();
    assert!(
        notes.starts_with("The operator's response changed from fix planned to remediated."),
        "{notes}"
    );
    assert!(
        notes.contains("Remediated: revoked tcp/22 from 0.0.0.0/0"),
        "{notes}"
    );
    assert!(notes.contains(&format!("Finding: {FINDING_ID}")), "{notes}");
}

#[tokio::test]
async fn an_opened_alert_whose_incident_already_exists_adds_work_notes_instead_of_creating() {
    let receiver = Receiver::start(vec![existing_incident(), updated()]).await;

    channel(&receiver)
        .deliver(&alert("security-snow"))
        .await
        .expect("work notes added");

    assert_eq!(
        request_lines(&receiver),
        [format!("GET {TABLE}"), format!("PATCH {}", incident_path())]
    );
    let update = receiver.received()[1].json();
    assert!(
        update["work_notes"]
            .as_str()
            .unwrap()
            .starts_with("GuardDuty reports this finding again.")
    );
}

#[tokio::test]
async fn an_escalation_raises_urgency_and_impact_along_with_its_work_notes() {
    let receiver = Receiver::start(vec![existing_incident(), updated()]).await;

    channel(&receiver)
        .deliver(&escalated(alert("security-snow"), 8.0, 9.5))
        .await
        .expect("updated");

    let update = expect_json(&receiver.received()[1], "PATCH", &incident_path());
    assert_eq!(update["urgency"], "1");
    assert_eq!(update["impact"], "1");
    assert!(
        update["work_notes"]
            .as_str()
            .unwrap()
            .starts_with("Severity rose from 8.0 to 9.5 (CRITICAL).")
    );
}

#[tokio::test]
async fn a_resolved_finding_adds_a_work_note_and_leaves_the_incident_state_alone() {
    let receiver = Receiver::start(vec![existing_incident(), updated()]).await;

    channel(&receiver)
        .deliver(&resolved(alert("security-snow")))
        .await
        .expect("updated");

    let update = expect_json(&receiver.received()[1], "PATCH", &incident_path());
    assert_eq!(update.as_object().map(|o| o.len()), Some(1), "{update}");
    let notes = update["work_notes"].as_str().unwrap();
    assert!(notes.starts_with("The finding is resolved."), "{notes}");
    assert!(notes.contains("no longer listed"), "{notes}");
}

#[tokio::test]
async fn urgency_and_impact_follow_the_severity_band_for_all_four_bands() {
    let receiver = Receiver::start(vec![no_incident()]).await;
    let servicenow = channel(&receiver);
    for (severity, urgency, impact) in [
        (9.5, "1", "1"),
        (8.0, "1", "2"),
        (5.0, "2", "2"),
        (2.0, "3", "3"),
    ] {
        receiver.answer_with(vec![no_incident(), created()]);
        servicenow
            .deliver(&with_severity(alert("security-snow"), severity))
            .await
            .expect("created");
        let body = receiver.received().last().unwrap().json();
        assert_eq!(
            (body["urgency"].as_str(), body["impact"].as_str()),
            (Some(urgency), Some(impact)),
            "severity {severity}"
        );
    }
}

#[tokio::test]
async fn a_long_short_description_is_cut_to_160_characters() {
    let receiver = Receiver::start(vec![no_incident(), created()]).await;
    let mut alert = alert("security-snow");
    alert.finding.finding_type = format!("Recon:EC2/{}", "PortProbe".repeat(30));

    channel(&receiver).deliver(&alert).await.expect("created");

    let body = receiver.received()[1].json();
    let short = body["short_description"].as_str().unwrap();
    assert_eq!(short.chars().count(), 160);
    assert!(short.ends_with('…'));
    assert_eq!(body["description"], alert.text());
}

#[tokio::test]
async fn a_lookup_that_lists_another_correlation_id_changes_nothing() {
    let someone_elses = Answer::json(
        200,
        json!({ "result": [{ "sys_id": SYS_ID, "number": "INC0000001", "correlation_id": "someone-else" }] }),
    );

    let (error, receiver) =
        delivery_error(channel, vec![someone_elses], &alert("security-snow")).await;

    assert!(
        matches!(
            &error,
            NotifyError::UnexpectedAnswer { service: "ServiceNow", reason } if reason.contains("INC0000001")
        ),
        "{error:?}"
    );
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_rejected_request_carries_servicenows_error_message_and_is_not_retried() {
    let refused = Answer::json(
        400,
        json!({
            "error": { "message": "Operation Failed", "detail": "Data Policy Exception: Caller is mandatory" },
            "status": "failure"
        }),
    );

    let (error, _receiver) = delivery_error(
        channel,
        vec![no_incident(), refused],
        &alert("security-snow"),
    )
    .await;

    assert_http_error(
        &error,
        "ServiceNow",
        400,
        None,
        "Operation Failed: Data Policy Exception: Caller is mandatory",
        "rejected",
        false,
    );
}

#[tokio::test]
async fn wrong_credentials_are_access_denied_and_not_retried() {
    let refused = Answer::json(
        401,
        json!({
            "error": { "message": "User Not Authenticated", "detail": "Required to provide Auth information" },
            "status": "failure"
        }),
    );

    let (error, _receiver) = delivery_error(channel, vec![refused], &alert("security-snow")).await;

    assert_http_error(
        &error,
        "ServiceNow",
        401,
        None,
        "User Not Authenticated: Required to provide Auth information",
        "access-denied",
        false,
    );
    assert_eq!(
        error.to_string(),
        "ServiceNow answered HTTP 401: User Not Authenticated: Required to provide Auth information"
    );
}

#[tokio::test]
async fn throttling_carries_the_retry_after_and_is_retryable() {
    let throttled = Answer::json(
        429,
        json!({ "error": { "message": "Rate limit exceeded", "detail": null }, "status": "failure" }),
    )
    .header("retry-after", "12");

    let (error, _receiver) = delivery_error(
        channel,
        vec![existing_incident(), throttled],
        &remediated(alert("security-snow")),
    )
    .await;

    assert_http_error(
        &error,
        "ServiceNow",
        429,
        Some(Duration::from_secs(12)),
        "Rate limit exceeded",
        "throttled",
        true,
    );
}

#[tokio::test]
async fn a_server_error_is_retryable() {
    let answer = Answer::new(503, "Service Unavailable");

    let (error, _receiver) = delivery_error(channel, vec![answer], &alert("security-snow")).await;

    assert_http_error(
        &error,
        "ServiceNow",
        503,
        None,
        "Service Unavailable",
        "server-error",
        true,
    );
}

#[tokio::test]
async fn an_instance_that_does_not_answer_is_unreachable_and_retryable() {
    let receiver = Receiver::start(vec![no_incident()]).await;
    let servicenow = channel(&receiver);
    drop(receiver);

    let error = servicenow
        .deliver(&alert("security-snow"))
        .await
        .unwrap_err();

    assert_unreachable(&error, "ServiceNow");
}

#[tokio::test]
async fn a_success_that_is_not_a_table_answer_is_unexpected_and_creates_nothing() {
    let hibernating =
        Answer::new(200, "<html>Instance hibernating</html>").header("content-type", "text/html");

    let (error, receiver) =
        delivery_error(channel, vec![hibernating], &alert("security-snow")).await;

    assert_unexpected_answer(&error, "ServiceNow");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn secrets_never_show_in_errors_or_in_the_channels_debug() {
    let receiver = Receiver::start(vec![Answer::new(401, "Unauthorized")]).await;
    let servicenow = channel(&receiver);
    let errors = failed_deliveries(&servicenow, receiver, &alert("s")).await;

    assert_none_contains(
        &shown_texts(&errors, &servicenow),
        &[PASSWORD, &AUTHORIZATION["Basic ".len()..]],
    );
    assert!(format!("{servicenow:?}").contains("<redacted>"));
}

#[test]
fn an_instance_that_is_not_https_or_loopback_is_refused_naming_service_now_instance_url() {
    let make = |url: &str| {
        ServiceNowChannel::new(
            &spec(url),
            SecretValue::new(USER),
            SecretValue::new(PASSWORD),
            http::client(),
        )
    };
    for refused in [
        "http://example.service-now.com",
        "http://192.168.1.20",
        "ftp://example.service-now.com",
        "https://admin:hunter2@example.service-now.com",
        "example.service-now.com",
    ] {
        refused_naming(
            make(refused),
            refused,
            "serviceNow.instanceUrl ",
            &["hunter2"],
        );
    }
    assert_eq!(
        make("http://example.service-now.com")
            .unwrap_err()
            .to_string(),
        "serviceNow.instanceUrl must be an https URL such as https://example.service-now.com \
         (http only to 127.0.0.1, ::1 or localhost), not http://example.service-now.com"
    );
    for accepted in [
        "https://example.service-now.com",
        "https://example.service-now.com/",
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
    ] {
        assert!(make(accepted).is_ok(), "{accepted} was refused");
    }
}
