//! The Jira channel against a local receiver standing in for a Jira site: every
//! request is checked for method, path, query, credentials and body, and the
//! receiver answers as Jira documents it (search results, 201 creates, error bodies,
//! 429 with Retry-After).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::alerts::{FINDING_ID, alert, remediated, resolved, with_severity};
use crate::common::channel_checks::{
    assert_credentials, assert_http_error, assert_none_contains, assert_unexpected_answer,
    assert_unreachable, delivery_error, escalated, failed_deliveries, query_pairs, refused_naming,
    request_lines, shown_texts,
};
use crate::common::receiver::{Answer, Received, Receiver};
use guardduty_operator::domain::alert::{Alert, AlertEvent, Response};
use guardduty_operator::notify::jira::JiraChannel;
use guardduty_operator::notify::{Notifier, SecretValue, http};
use guardduty_operator::spec::notifications::{JiraSpec, SecretRef};
use serde_json::{Value, json};

const USER: &str = "jira-bot@example.com";
const TOKEN: &str = "jira-token-s3cr3t";
/// `Basic ` and the base64 of `jira-bot@example.com:jira-token-s3cr3t`.
const AUTHORIZATION: &str = "Basic amlyYS1ib3RAZXhhbXBsZS5jb206amlyYS10b2tlbi1zM2NyM3Q=";
const LABEL: &str = "guardduty-a1b2c3d4e5f60718293a4b5c6d7e8f90";
const SEARCH: &str = "/rest/api/2/search/jql";
const CREATE: &str = "/rest/api/2/issue";

fn spec(url: &str) -> JiraSpec {
    JiraSpec {
        url: url.to_string(),
        project: "SEC".into(),
        issue_type: "Task".into(),
        credentials_secret_ref: SecretRef {
            name: "jira-credentials".into(),
        },
    }
}

fn channel(receiver: &Receiver) -> JiraChannel {
    JiraChannel::new(
        &spec(&receiver.url),
        SecretValue::new(USER),
        SecretValue::new(TOKEN),
        http::client(),
    )
    .expect("a loopback http site is accepted")
}

fn no_issue() -> Answer {
    Answer::json(200, json!({ "issues": [], "isLast": true }))
}

fn existing_issue() -> Answer {
    Answer::json(
        200,
        json!({
            "issues": [{ "id": "10042", "key": "SEC-42", "self": "https://example.atlassian.net/rest/api/2/issue/10042" }],
            "isLast": true
        }),
    )
}

fn created() -> Answer {
    Answer::json(
        201,
        json!({ "id": "10043", "key": "SEC-43", "self": "https://example.atlassian.net/rest/api/2/issue/10043" }),
    )
}

fn commented() -> Answer {
    Answer::json(201, json!({ "id": "10100", "body": "noted" }))
}

fn expect_search(request: &Received, path: &str) {
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", path)
    );
    let raw = request.query.clone().unwrap_or_default();
    assert!(
        !raw.contains(' ') && !raw.contains('"'),
        "the JQL is URL-encoded: {raw}"
    );
    let expected: BTreeMap<String, String> = [
        (
            "jql",
            format!("project = \"SEC\" AND labels = \"{LABEL}\" ORDER BY created ASC"),
        ),
        ("maxResults", "1".to_string()),
        ("fields", "key".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(query_pairs(request), expected);
    assert_credentials(request, AUTHORIZATION);
}

fn expect_json_post(request: &Received, path: &str) -> Value {
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", path)
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_credentials(request, AUTHORIZATION);
    request.json()
}

fn failed(mut alert: Alert) -> Alert {
    alert.event = AlertEvent::Updated {
        from: alert.response.kind(),
    };
    alert.response = Response::Failed {
        error: "failed to revoke tcp/22: UnauthorizedOperation".into(),
    };
    alert
}

#[tokio::test]
async fn first_alert_searches_by_the_finding_label_then_creates_an_issue() {
    let receiver = Receiver::start(vec![no_issue(), created()]).await;
    let jira = channel(&receiver);
    let alert = alert("security-jira");

    jira.deliver(&alert).await.expect("delivered");

    let requests = receiver.received();
    assert_eq!(requests.len(), 2, "{:?}", request_lines(&receiver));
    expect_search(&requests[0], SEARCH);
    let body = expect_json_post(&requests[1], CREATE);
    assert_eq!(
        body,
        json!({
            "fields": {
                "project": { "key": "SEC" },
                "issuetype": { "name": "Task" },
                "summary": alert.subject(),
                "description": alert.text(),
                "labels": ["guardduty", LABEL],
                "priority": { "name": "High" },
            }
        })
    );
    assert!(alert.text().contains(FINDING_ID));
    assert_eq!(jira.kind(), "jira");
}

#[tokio::test]
async fn a_remediated_alert_comments_on_the_existing_issue_and_never_creates() {
    let receiver = Receiver::start(vec![no_issue(), created()]).await;
    let jira = channel(&receiver);
    let first = alert("security-jira");
    jira.deliver(&first).await.expect("created");

    receiver.answer_with(vec![existing_issue(), commented()]);
    jira.deliver(&remediated(first)).await.expect("commented");

    let requests = receiver.received();
    assert_eq!(
        request_lines(&receiver),
        [
            format!("GET {SEARCH}"),
            format!("POST {CREATE}"),
            format!("GET {SEARCH}"),
            "POST /rest/api/2/issue/SEC-42/comment".to_string(),
        ]
    );
    expect_search(&requests[2], SEARCH);
    let comment = expect_json_post(&requests[3], "/rest/api/2/issue/SEC-42/comment");
    let text = comment["body"].as_str().expect("a plain-text body");
    assert_eq!(comment.as_object().map(|o| o.len()), Some(1), "{comment}");
    assert!(
        text.starts_with("The operator's response changed from fix planned to remediated."),
        "{text}"
    );
    assert!(
        text.contains("Remediated: revoked tcp/22 from 0.0.0.0/0"),
        "{text}"
    );
    assert!(text.contains(&format!("Finding: {FINDING_ID}")), "{text}");
    assert!(text.contains("Console: https://us-east-1.console.aws.amazon.com/guardduty/"));
}

#[tokio::test]
async fn an_opened_alert_whose_issue_already_exists_comments_instead_of_creating() {
    let receiver = Receiver::start(vec![existing_issue(), commented()]).await;
    let jira = channel(&receiver);

    jira.deliver(&alert("security-jira"))
        .await
        .expect("commented");

    assert_eq!(
        request_lines(&receiver),
        [
            format!("GET {SEARCH}"),
            "POST /rest/api/2/issue/SEC-42/comment".to_string()
        ]
    );
    let comment = receiver.received()[1].json();
    assert!(
        comment["body"]
            .as_str()
            .unwrap()
            .starts_with("GuardDuty reports this finding again.")
    );
}

#[tokio::test]
async fn comments_say_when_the_severity_rose_the_fix_failed_or_the_finding_resolved() {
    let receiver = Receiver::start(vec![existing_issue(), commented()]).await;
    let jira = channel(&receiver);
    let cases = [
        (
            escalated(alert("security-jira"), 8.0, 9.5),
            vec!["Severity rose from 8.0 to 9.5 (CRITICAL)."],
        ),
        (
            failed(alert("security-jira")),
            vec![
                "from fix planned to remediation failed.",
                "Remediation failed: failed to revoke tcp/22: UnauthorizedOperation.",
                "A person needs to look at the security group.",
            ],
        ),
        (
            resolved(alert("security-jira")),
            vec!["The finding is resolved.", "no longer listed"],
        ),
    ];
    for (alert, expected) in cases {
        receiver.answer_with(vec![existing_issue(), commented()]);
        jira.deliver(&alert).await.expect("commented");
        let requests = receiver.received();
        let comment = requests.last().unwrap();
        assert_eq!(comment.path, "/rest/api/2/issue/SEC-42/comment");
        let text = comment.json()["body"].as_str().unwrap().to_string();
        for phrase in expected {
            assert!(text.contains(phrase), "{phrase:?} is missing from {text}");
        }
    }
    assert!(
        !request_lines(&receiver).contains(&format!("POST {CREATE}")),
        "{:?}",
        request_lines(&receiver)
    );
}

#[tokio::test]
async fn the_priority_follows_the_severity_band_for_all_four_bands() {
    let receiver = Receiver::start(vec![no_issue()]).await;
    let jira = channel(&receiver);
    for (severity, priority) in [
        (9.5, "Highest"),
        (8.0, "High"),
        (5.0, "Medium"),
        (2.0, "Low"),
    ] {
        receiver.answer_with(vec![no_issue(), created()]);
        jira.deliver(&with_severity(alert("security-jira"), severity))
            .await
            .expect("created");
        let body = receiver.received().last().unwrap().json();
        assert_eq!(
            body["fields"]["priority"],
            json!({ "name": priority }),
            "severity {severity}"
        );
    }
}

#[tokio::test]
async fn a_site_that_refuses_the_priority_gets_the_issue_without_it_from_then_on() {
    let refused = Answer::json(
        400,
        json!({
            "errorMessages": [],
            "errors": { "priority": "Field 'priority' cannot be set. It is not on the appropriate screen, or unknown." }
        }),
    );
    let receiver = Receiver::start(vec![no_issue(), refused, created()]).await;
    let jira = channel(&receiver);

    jira.deliver(&alert("security-jira"))
        .await
        .expect("created on the second try");

    let requests = receiver.received();
    assert_eq!(requests.len(), 3, "{:?}", request_lines(&receiver));
    let first = expect_json_post(&requests[1], CREATE);
    let second = expect_json_post(&requests[2], CREATE);
    assert_eq!(first["fields"]["priority"], json!({ "name": "High" }));
    assert!(second["fields"].get("priority").is_none(), "{second}");
    assert_eq!(second["fields"]["labels"], json!(["guardduty", LABEL]));

    receiver.answer_with(vec![no_issue(), created()]);
    jira.deliver(&alert("security-jira"))
        .await
        .expect("created");
    let later = receiver.received();
    assert_eq!(
        later.len(),
        5,
        "one search and one create, without priority"
    );
    assert!(later[4].json()["fields"].get("priority").is_none());
}

#[tokio::test]
async fn a_rejection_of_another_field_is_not_retried_without_priority() {
    let refused = Answer::json(
        400,
        json!({ "errorMessages": [], "errors": { "issuetype": "Specify a valid issue type" } }),
    );
    let (error, receiver) =
        delivery_error(channel, vec![no_issue(), refused], &alert("security-jira")).await;

    assert_eq!(receiver.received().len(), 2);
    assert_http_error(
        &error,
        "Jira",
        400,
        None,
        "issuetype: Specify a valid issue type",
        "rejected",
        false,
    );
}

#[tokio::test]
async fn a_site_without_the_new_search_is_searched_with_the_older_endpoint() {
    let legacy_answer = Answer::json(
        200,
        json!({ "startAt": 0, "maxResults": 1, "total": 0, "issues": [] }),
    );
    let not_found = Answer::json(404, json!({ "errorMessages": ["null for uri"] }));
    let receiver = Receiver::start(vec![not_found, legacy_answer, created()]).await;
    let jira = channel(&receiver);

    jira.deliver(&alert("security-jira"))
        .await
        .expect("created");
    receiver.answer_with(vec![
        Answer::json(
            200,
            json!({ "startAt": 0, "maxResults": 1, "total": 1, "issues": [{ "id": "10042", "key": "SEC-42" }] }),
        ),
        commented(),
    ]);
    jira.deliver(&remediated(alert("security-jira")))
        .await
        .expect("commented");

    assert_eq!(
        request_lines(&receiver),
        [
            format!("GET {SEARCH}"),
            "GET /rest/api/2/search".to_string(),
            format!("POST {CREATE}"),
            "GET /rest/api/2/search".to_string(),
            "POST /rest/api/2/issue/SEC-42/comment".to_string(),
        ]
    );
    expect_search(&receiver.received()[1], "/rest/api/2/search");
}

#[tokio::test]
async fn a_search_answer_listing_only_ids_comments_on_the_issue_by_id() {
    let receiver = Receiver::start(vec![
        Answer::json(
            200,
            json!({ "issues": [{ "id": "10042" }], "isLast": true }),
        ),
        commented(),
    ])
    .await;
    let jira = channel(&receiver);

    jira.deliver(&remediated(alert("security-jira")))
        .await
        .expect("commented");

    assert_eq!(
        receiver.received()[1].path,
        "/rest/api/2/issue/10042/comment"
    );
}

#[tokio::test]
async fn a_site_under_a_context_path_keeps_it_in_every_request() {
    let receiver = Receiver::start(vec![no_issue(), created()]).await;
    let jira = JiraChannel::new(
        &spec(&format!("{}/jira/", receiver.url)),
        SecretValue::new(USER),
        SecretValue::new(TOKEN),
        http::client(),
    )
    .unwrap();

    jira.deliver(&alert("security-jira"))
        .await
        .expect("created");

    assert_eq!(
        request_lines(&receiver),
        [
            "GET /jira/rest/api/2/search/jql",
            "POST /jira/rest/api/2/issue"
        ]
    );
}

#[tokio::test]
async fn a_long_summary_is_cut_and_wiki_markup_in_the_description_is_escaped() {
    let receiver = Receiver::start(vec![no_issue(), created()]).await;
    let jira = channel(&receiver);
    let mut alert = alert("security-jira");
    alert.finding.sample = true;
    alert.finding.finding_type = format!("Trojan:EC2/DNSDataExfiltration!DNS{}", "x".repeat(300));

    jira.deliver(&alert).await.expect("created");

    let fields = receiver.received()[1].json()["fields"].clone();
    let summary = fields["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 255);
    assert!(summary.starts_with("GuardDuty [SAMPLE] HIGH 8.0 Trojan:EC2/"));
    assert!(summary.ends_with('…'));
    let description = fields["description"].as_str().unwrap();
    assert!(
        description.starts_with("GuardDuty \\[SAMPLE\\] HIGH"),
        "{description}"
    );
    assert!(description.contains("DNSDataExfiltration\\!DNS"));
}

#[tokio::test]
async fn a_rejected_search_carries_jiras_error_messages_and_is_not_retried() {
    let refused = Answer::json(
        400,
        json!({
            "errorMessages": ["The value 'SEC' does not exist for the field 'project'."],
            "errors": {}
        }),
    );
    let (error, receiver) = delivery_error(channel, vec![refused], &alert("security-jira")).await;

    assert_eq!(
        receiver.received().len(),
        1,
        "nothing is created after a failed search"
    );
    assert_http_error(
        &error,
        "Jira",
        400,
        None,
        "The value 'SEC' does not exist for the field 'project'.",
        "rejected",
        false,
    );
    assert_eq!(
        error.to_string(),
        "Jira answered HTTP 400: The value 'SEC' does not exist for the field 'project'."
    );
}

#[tokio::test]
async fn wrong_credentials_are_access_denied_and_not_retried() {
    let answer = Answer::new(401, "Client must be authenticated");
    let (error, _receiver) = delivery_error(channel, vec![answer], &alert("security-jira")).await;

    assert_http_error(
        &error,
        "Jira",
        401,
        None,
        "Client must be authenticated",
        "access-denied",
        false,
    );
}

#[tokio::test]
async fn throttling_carries_the_retry_after_and_is_retryable() {
    let throttled = Answer::json(429, json!({ "errorMessages": ["Rate limit exceeded."] }))
        .header("retry-after", "7");
    let (error, _receiver) = delivery_error(
        channel,
        vec![no_issue(), throttled],
        &alert("security-jira"),
    )
    .await;

    assert_http_error(
        &error,
        "Jira",
        429,
        Some(Duration::from_secs(7)),
        "Rate limit exceeded.",
        "throttled",
        true,
    );
}

#[tokio::test]
async fn a_server_error_is_retryable() {
    let answers = vec![existing_issue(), Answer::new(500, "Internal Server Error")];
    let (error, _receiver) =
        delivery_error(channel, answers, &remediated(alert("security-jira"))).await;

    assert_http_error(
        &error,
        "Jira",
        500,
        None,
        "Internal Server Error",
        "server-error",
        true,
    );
}

#[tokio::test]
async fn a_site_that_does_not_answer_is_unreachable_and_retryable() {
    let receiver = Receiver::start(vec![no_issue()]).await;
    let jira = channel(&receiver);
    drop(receiver);

    let error = jira.deliver(&alert("security-jira")).await.unwrap_err();

    assert_unreachable(&error, "Jira");
}

#[tokio::test]
async fn a_success_that_is_not_a_search_answer_is_unexpected_and_creates_nothing() {
    let receiver = Receiver::start(vec![
        Answer::new(200, "<html>Log in to continue</html>").header("content-type", "text/html"),
    ])
    .await;
    let jira = channel(&receiver);

    let error = jira.deliver(&alert("security-jira")).await.unwrap_err();
    assert_unexpected_answer(&error, "Jira");

    receiver.answer_with(vec![Answer::json(200, json!({ "values": [] }))]);
    let error = jira.deliver(&alert("security-jira")).await.unwrap_err();
    assert_unexpected_answer(&error, "Jira");
    assert_eq!(
        receiver.received().len(),
        2,
        "{:?}",
        request_lines(&receiver)
    );
}

#[tokio::test]
async fn secrets_never_show_in_errors_or_in_the_channels_debug() {
    let receiver = Receiver::start(vec![Answer::new(401, "Unauthorized")]).await;
    let jira = channel(&receiver);
    let errors = failed_deliveries(&jira, receiver, &alert("security-jira")).await;

    assert_none_contains(
        &shown_texts(&errors, &jira),
        &[TOKEN, &AUTHORIZATION["Basic ".len()..]],
    );
    assert!(format!("{jira:?}").contains("<redacted>"));
}

#[test]
fn a_site_that_is_not_https_or_loopback_is_refused_naming_jira_url() {
    let make = |url: &str| {
        JiraChannel::new(
            &spec(url),
            SecretValue::new(USER),
            SecretValue::new(TOKEN),
            http::client(),
        )
    };
    for refused in [
        "http://jira.example.com",
        "http://10.0.0.8:8080",
        "ftp://jira.example.com",
        "https://jira-bot:hunter2@jira.example.com",
        "https://jira.example.com/?os_authType=basic",
        "jira.example.com",
        "",
    ] {
        refused_naming(make(refused), refused, "jira.url ", &["hunter2"]);
    }
    let message = make("http://jira.example.com").unwrap_err().to_string();
    assert_eq!(
        message,
        "jira.url must be an https URL such as https://example.atlassian.net (http only to \
         127.0.0.1, ::1 or localhost), not http://jira.example.com"
    );
    for accepted in [
        "https://example.atlassian.net",
        "https://jira.example.com/jira",
        "http://localhost:8080",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
    ] {
        assert!(make(accepted).is_ok(), "{accepted} was refused");
    }
}
