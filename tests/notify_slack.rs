//! The Slack channel against a local receiver standing in for an incoming webhook:
//! the request it makes, the Block Kit message, and how each answer is read.

use std::time::Duration;

use crate::common::alerts::{FINDING_ID, alert, resolved};
use crate::common::channel_checks::{
    assert_http_error, assert_none_contains, assert_unexpected_answer, assert_unreachable,
    closed_port, delivery_error, refused_naming, shown_texts,
};
use crate::common::receiver::{Answer, Receiver};
use guardduty_operator::notify::slack::SlackChannel;
use guardduty_operator::notify::{Notifier, SecretValue, http};
use serde_json::{Value, json};

/// The webhook path as Slack issues it; its last segment is the token.
const WEBHOOK_PATH: &str = "/services/T0001/B0002/s3cr3tW3bh00kT0k3n";
const TOKEN: &str = "s3cr3tW3bh00kT0k3n";

fn channel(receiver: &Receiver) -> SlackChannel {
    SlackChannel::new(
        SecretValue::new(format!("{}{WEBHOOK_PATH}", receiver.url)),
        http::client(),
    )
    .expect("a loopback webhook URL is accepted")
}

async fn ok_receiver() -> Receiver {
    Receiver::start(vec![Answer::new(200, "ok")]).await
}

/// Delivers `alert` and returns the one JSON body the webhook received.
async fn posted(alert: &guardduty_operator::domain::alert::Alert) -> Value {
    let receiver = ok_receiver().await;
    channel(&receiver)
        .deliver(alert)
        .await
        .expect("the webhook answered ok");
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one request per alert");
    received[0].json()
}

fn block_types(message: &Value) -> Vec<&str> {
    message["blocks"]
        .as_array()
        .expect("blocks is an array")
        .iter()
        .map(|block| block["type"].as_str().expect("each block has a type"))
        .collect()
}

fn fields(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|block| block.get("fields"))
        .expect("a section with fields")
        .as_array()
        .unwrap()
        .iter()
        .map(|field| {
            assert_eq!(field["type"], "mrkdwn");
            field["text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn section_texts(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|block| block["type"] == "section" && block.get("text").is_some())
        .map(|block| {
            assert_eq!(block["text"]["type"], "mrkdwn");
            block["text"]["text"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn an_alert_is_one_json_post_to_the_webhook_with_the_subject_as_fallback_text() {
    let receiver = ok_receiver().await;
    let alert = alert("chat");
    channel(&receiver).deliver(&alert).await.unwrap();

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, WEBHOOK_PATH);
    assert_eq!(request.query, None);
    assert_eq!(request.header("content-type"), Some("application/json"));
    let message = request.json();
    assert_eq!(message["text"], json!(alert.subject()));
    let mut keys: Vec<&String> = message.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["blocks", "text"]);
}

#[tokio::test]
async fn the_message_shows_a_header_the_facts_what_the_operator_did_and_a_console_link() {
    let alert = alert("chat");
    let message = posted(&alert).await;

    assert_eq!(
        block_types(&message),
        ["header", "section", "section", "section", "context"]
    );
    let header = &message["blocks"][0];
    assert_eq!(
        header["text"],
        json!({ "type": "plain_text", "text": alert.subject() })
    );
    assert_eq!(
        fields(&message),
        [
            "*Severity*\nHIGH 8.0",
            "*Type*\nRecon:EC2/PortProbeUnprotectedPort",
            "*Account / region*\n123456789012 / us-east-1",
            "*Instance*\ni-0123456789abcdef0",
            "*Security groups*\nsg-0123456789abcdef0",
            "*Ports*\n22",
            "*Remote IPs*\n198.51.100.7",
            "*First seen*\n2026-11-28T10:00:00.000Z",
            "*Last seen*\n2026-11-29T04:00:00.000Z",
            "*Count*\n14",
        ]
    );
    assert_eq!(
        section_texts(&message),
        [
            "Unprotected port on EC2 instance i-0123456789abcdef0 is being probed.".to_string(),
            format!("*What the operator did*\n{}", alert.response),
        ]
    );
    let console = alert.finding.console_url().replace('&', "&amp;");
    assert_eq!(
        message["blocks"][4]["elements"],
        json!([{
            "type": "mrkdwn",
            "text": format!("Finding `{FINDING_ID}` · <{console}|Open in the GuardDuty console>"),
        }])
    );
}

#[tokio::test]
async fn facts_the_finding_does_not_have_are_left_out() {
    let mut alert = resolved(alert("chat"));
    let finding = &mut alert.finding;
    finding.title.clear();
    finding.instance = None;
    finding.security_groups.clear();
    finding.ports.clear();
    finding.remote_ips.clear();
    finding.first_seen = None;
    finding.last_seen = None;
    finding.count = None;
    let message = posted(&alert).await;

    assert_eq!(
        block_types(&message),
        ["header", "section", "section", "context"],
        "no title section without a title"
    );
    assert_eq!(
        fields(&message),
        [
            "*Severity*\nHIGH 8.0",
            "*Type*\nRecon:EC2/PortProbeUnprotectedPort",
            "*Account / region*\n123456789012 / us-east-1",
        ]
    );
    assert_eq!(
        section_texts(&message),
        [format!(
            "*What the operator did*\n{}",
            guardduty_operator::domain::alert::Response::NoLongerListed
        )]
    );
}

#[tokio::test]
async fn ampersands_and_angle_brackets_from_the_finding_are_escaped_for_mrkdwn() {
    let mut alert = alert("chat");
    alert.finding.title = "Probe <!channel> from <https://evil.example|here> & more".into();
    alert.finding.finding_type = "Custom:EC2/A&B<C>".into();
    let message = posted(&alert).await;

    assert_eq!(
        section_texts(&message)[0],
        "Probe &lt;!channel&gt; from &lt;https://evil.example|here&gt; &amp; more"
    );
    assert!(fields(&message).contains(&"*Type*\nCustom:EC2/A&amp;B&lt;C&gt;".to_string()));
    assert_eq!(
        message["text"],
        json!(
            alert
                .subject()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        ),
        "the fallback text is read as mrkdwn too"
    );
    assert_eq!(
        message["blocks"][0]["text"]["text"],
        json!(alert.subject()),
        "plain_text is shown as sent"
    );
}

#[tokio::test]
async fn a_sample_finding_is_marked_as_a_sample() {
    let mut alert = alert("chat");
    alert.finding.sample = true;
    let message = posted(&alert).await;

    let header = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(header.contains("[SAMPLE]"), "{header}");
    assert!(message["text"].as_str().unwrap().contains("[SAMPLE]"));
    assert_eq!(
        section_texts(&message)[0],
        "*[SAMPLE]* A sample finding (CreateSampleFindings): nothing in AWS is changed for it."
    );

    let real = posted(&crate::common::alerts::alert("chat")).await;
    assert!(!real.to_string().contains("SAMPLE"));
}

#[tokio::test]
async fn long_texts_are_cut_to_the_block_kit_limits() {
    let mut alert = alert("chat");
    alert.finding.finding_type = format!("Custom:EC2/{}", "&".repeat(2500));
    alert.finding.title = "<".repeat(4000);
    alert.finding.security_groups = (0..400).map(|i| format!("sg-{i:017x}")).collect();
    alert.response = guardduty_operator::domain::alert::Response::Failed {
        error: "x".repeat(5000),
    };
    let message = posted(&alert).await;

    let header = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(header.chars().count(), 150);
    assert!(header.ends_with('…'));
    let fields = fields(&message);
    assert!(fields.len() <= 10);
    for field in &fields {
        assert!(
            field.chars().count() <= 2000,
            "{} characters",
            field.chars().count()
        );
    }
    let type_field = fields.iter().find(|f| f.starts_with("*Type*")).unwrap();
    assert!(
        type_field.ends_with("&amp;…"),
        "cut between escapes, never inside one"
    );
    for text in section_texts(&message) {
        assert!(
            text.chars().count() <= 3000,
            "{} characters",
            text.chars().count()
        );
        assert!(text.ends_with('…'));
    }
}

#[tokio::test]
async fn slack_error_answers_become_errors_the_caller_can_act_on() {
    // (status, body, retry-after seconds, category, retryable)
    let cases = [
        (400, "invalid_payload", None, "rejected", false),
        (403, "action_prohibited", None, "access-denied", false),
        (404, "channel_not_found", None, "rejected", false),
        (410, "channel_is_archived", None, "rejected", false),
        (429, "rate_limited", Some(1), "throttled", true),
        (500, "rollup_error", None, "server-error", true),
    ];
    for (status, body, retry_after, category, retryable) in cases {
        let mut answer = Answer::new(status, body);
        if let Some(seconds) = retry_after {
            answer = answer.header("retry-after", &seconds.to_string());
        }
        let (error, receiver) = delivery_error(channel, vec![answer], &alert("chat")).await;

        // Slack's error string is kept as the detail.
        let retry_after = retry_after.map(Duration::from_secs);
        assert_http_error(
            &error,
            "Slack",
            status,
            retry_after,
            body,
            category,
            retryable,
        );
        assert_eq!(
            error.to_string(),
            format!("Slack answered HTTP {status}: {body}")
        );
        assert_eq!(receiver.received().len(), 1, "one attempt per delivery");
    }
}

#[tokio::test]
async fn a_success_status_without_ok_is_an_unexpected_answer_not_worth_a_retry() {
    let answer = Answer::new(200, "<html>portal</html>");
    let (error, _receiver) = delivery_error(channel, vec![answer], &alert("chat")).await;

    // Not retryable: a retry could post the message twice.
    assert_unexpected_answer(&error, "Slack");
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_is_unreachable_and_worth_a_retry() {
    let slack = SlackChannel::new(
        SecretValue::new(format!("http://127.0.0.1:{}{WEBHOOK_PATH}", closed_port())),
        http::client(),
    )
    .unwrap();
    let error = slack.deliver(&alert("chat")).await.unwrap_err();

    assert_unreachable(&error, "Slack");
}

#[tokio::test]
async fn the_webhook_url_never_appears_in_errors_or_debug_output() {
    // A service that echoes the URL it was called on.
    let receiver = Receiver::start(vec![Answer::new(404, "placeholder")]).await;
    let url = format!("{}{WEBHOOK_PATH}", receiver.url);
    receiver.answer_with(vec![Answer::new(
        404,
        format!("channel_not_found for {url} ({WEBHOOK_PATH})"),
    )]);
    let slack = channel(&receiver);
    let rejected = slack.deliver(&alert("chat")).await.unwrap_err();

    let unreachable = SlackChannel::new(
        SecretValue::new(format!("http://127.0.0.1:{}{WEBHOOK_PATH}", closed_port())),
        http::client(),
    )
    .unwrap()
    .deliver(&alert("chat"))
    .await
    .unwrap_err();

    let refused = SlackChannel::new(
        SecretValue::new(format!("http://hooks.slack.com{WEBHOOK_PATH}")),
        http::client(),
    )
    .unwrap_err();

    // Neither the token nor the webhook path.
    assert_none_contains(
        &shown_texts([&rejected, &unreachable, &refused], &slack),
        &[TOKEN, "B0002"],
    );
    assert!(format!("{rejected}").contains("channel_not_found"));
}

#[tokio::test]
async fn a_webhook_url_must_be_https_unless_it_is_loopback() {
    let accepted = [
        "https://hooks.slack.com/services/T0001/B0002/token",
        "http://127.0.0.1:8080/services/T0001/B0002/token",
        "http://localhost:8080/services/T0001/B0002/token",
        "http://[::1]:8080/services/T0001/B0002/token",
        " https://hooks.slack.com/services/T0001/B0002/token\n",
    ];
    for url in accepted {
        let slack = SlackChannel::new(SecretValue::new(url), http::client());
        assert!(slack.is_ok(), "{url:?} is refused: {:?}", slack.err());
    }

    let refused = [
        (
            "http://hooks.slack.com/services/T0001/B0002/token",
            "must be an https URL such as https://hooks.slack.com/services/… (http only to \
             127.0.0.1, ::1 or localhost), not http://",
        ),
        (
            "http://10.0.0.1/services/T0001/B0002/token",
            "must be an https URL such as https://hooks.slack.com/services/… (http only to \
             127.0.0.1, ::1 or localhost), not http://",
        ),
        (
            "ftp://hooks.slack.com/services/T0001/B0002/token",
            "https URL",
        ),
        ("hooks.slack.com/services/T0001/B0002/token", "is not a URL"),
        ("", "is not a URL"),
        (
            "https://me:token@hooks.slack.com/services/T0001/B0002/token",
            "must not carry a user or password",
        ),
    ];
    for (url, problem) in refused {
        let text = refused_naming(
            SlackChannel::new(SecretValue::new(url), http::client()),
            url,
            "the Slack webhook URL ",
            &["token"],
        );
        assert!(text.contains(problem), "{url:?}: {text}");
    }
}

#[tokio::test]
async fn the_channel_kind_is_slack() {
    let receiver = ok_receiver().await;
    assert_eq!(channel(&receiver).kind(), "slack");
}
