//! The SMS channel against Amazon SNS on moto (region ap-northeast-3). moto records
//! every SMS published to a phone number (`SMS` models) and every publish to a topic
//! (`Topic.sent_notifications`); both are read back from `/moto-api/data.json`.

use aws_config::{BehaviorVersion, Region};
use guardduty_operator::domain::alert::Response;
use guardduty_operator::notify::sms::{self, MAX_SEPTETS, SmsChannel};
use guardduty_operator::notify::{Notifier, NotifyError};
use guardduty_operator::spec::notifications::SmsSpec;
use serde_json::Value;

use crate::common::alerts::{alert, remediated, resolved};
use crate::common::channel_checks::assert_none_contains;
use crate::common::moto_state;

const REGION: &str = "ap-northeast-3";

/// Seven digits unique to this run, so texts of earlier runs on the same moto do not count.
fn nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    ((nanos / 1000) as u64 + u64::from(std::process::id())) % 9_000_000 + 1_000_000
}

fn numbers(spec: &[String]) -> SmsSpec {
    SmsSpec {
        phone_numbers: spec.to_vec(),
        topic_arn: None,
    }
}

async fn sns() -> aws_sdk_sns::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(crate::common::moto_url())
        .load()
        .await;
    aws_sdk_sns::Client::new(&config)
}

/// The texts moto's SNS sent to `number`.
async fn texts_to(number: &str) -> Vec<String> {
    moto_state().await["sns"]["SMS"]
        .as_array()
        .expect("moto lists SMS messages")
        .iter()
        .filter(|m| m["phone_number"] == number)
        .map(|m| m["message"].as_str().expect("a text").to_string())
        .collect()
}

#[tokio::test]
async fn an_alert_is_texted_once_to_every_phone_number() {
    let run = nonce();
    let first = format!("+1555{run}");
    let second = format!("+4479{run}");
    // The same number twice is texted once.
    let spec = numbers(&[first.clone(), second.clone(), first.clone()]);
    let channel = SmsChannel::new(&spec, sns().await).unwrap();
    assert_eq!(channel.kind(), "sms");
    let alert = remediated(alert("oncall"));

    channel
        .deliver(&alert)
        .await
        .expect("SNS accepts the texts");

    let expected = sms::text(&alert);
    assert_eq!(texts_to(&first).await, std::slice::from_ref(&expected));
    assert_eq!(texts_to(&second).await, std::slice::from_ref(&expected));
    assert_eq!(
        expected,
        "GuardDuty HIGH 8.0 Recon:EC2/PortProbeUnprotectedPort i-0123456789abcdef0 port 22. \
         Remediated: revoked tcp/22 from 0.0.0.0/0 in sg-0123456789abcdef0, authorized \
         10.0.0.0/8. https://us-east-1.console.aws.amazon.com/guardduty/home?region=us-east-1\
         #/findings?macros=current&fId=a1b2c3d4e5f60718293a4b5c6d7e8f90"
    );
}

#[tokio::test]
async fn an_alert_is_published_to_the_topic_without_a_subject() {
    let client = sns().await;
    let name = format!("secops-sms-{}", nonce());
    let topic = client
        .create_topic()
        .name(&name)
        .send()
        .await
        .expect("create a topic in moto")
        .topic_arn
        .expect("a topic ARN");
    client
        .subscribe()
        .topic_arn(&topic)
        .protocol("sms")
        .endpoint(format!("+1555{}", nonce()))
        .send()
        .await
        .expect("subscribe a phone");
    let spec = SmsSpec {
        phone_numbers: Vec::new(),
        topic_arn: Some(topic.clone()),
    };
    let channel = SmsChannel::new(&spec, client).unwrap();
    let alert = resolved(alert("oncall"));

    channel
        .deliver(&alert)
        .await
        .expect("SNS accepts the publish");

    let state = moto_state().await;
    let topics = state["sns"]["Topic"].as_array().expect("moto lists topics");
    let recorded = topics
        .iter()
        .find(|t| t["arn"] == topic.as_str())
        .expect("moto knows the topic");
    let sent = recorded["sent_notifications"]
        .as_array()
        .expect("the topic's notifications");
    assert_eq!(sent.len(), 1, "{sent:?}");
    // [message id, message, subject, attributes, group id]
    assert_eq!(sent[0][1], sms::text(&alert).as_str());
    assert_eq!(sent[0][2], Value::Null);
    assert!(
        sms::text(&alert).contains("Resolved: the finding is no longer listed"),
        "{}",
        sms::text(&alert)
    );
}

#[tokio::test]
async fn a_long_text_stays_within_three_segments_keeps_the_console_link_and_marks_samples() {
    let number = format!("+6129{}", nonce());
    let channel = SmsChannel::new(&numbers(std::slice::from_ref(&number)), sns().await).unwrap();
    let mut alert = alert("oncall");
    alert.finding.sample = true;
    alert.response = Response::Refused {
        reason: "the group — shared by 40 instances — ".repeat(30),
    };

    channel.deliver(&alert).await.expect("SNS accepts the text");

    let texts = texts_to(&number).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    let text = &texts[0];
    assert!(text.starts_with("[SAMPLE] GuardDuty HIGH 8.0 "), "{text}");
    // "[" and "]" take two septets each.
    assert!(
        text.chars().count() + 2 <= MAX_SEPTETS,
        "{} characters",
        text.len()
    );
    assert!(text.is_ascii(), "GSM-7 characters only: {text}");
    assert!(
        text.contains("Not remediated: the group ? shared by 40 instances ?"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("... {}", alert.finding.console_url())),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_topic_is_a_not_found_error_that_is_not_retried() {
    let spec = SmsSpec {
        phone_numbers: Vec::new(),
        topic_arn: Some(format!(
            "arn:aws:sns:{REGION}:123456789012:no-such-topic-{}",
            nonce()
        )),
    };
    let channel = SmsChannel::new(&spec, sns().await).unwrap();

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    let NotifyError::Aws { operation, source } = &error else {
        panic!("expected an AWS error, got {error:?}");
    };
    assert_eq!(*operation, "publish an SMS alert to the Amazon SNS topic");
    assert_eq!(source.code.as_deref(), Some("NotFound"));
    assert_eq!(error.category().as_str(), "not-found");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn numbers_that_are_not_e164_are_setup_errors_that_do_not_repeat_the_number() {
    let client = sns().await;
    let error = SmsChannel::new(
        &numbers(&["+15555550100".into(), "555-0199".into()]),
        client.clone(),
    )
    .unwrap_err();

    let NotifyError::Setup(message) = &error else {
        panic!("expected a setup error, got {error:?}");
    };
    assert_eq!(
        message,
        "sms.phoneNumbers[1] is not an E.164 number such as +15555550100"
    );
    assert_none_contains(&[message], &["0199"]);
}

#[tokio::test]
async fn sms_takes_phone_numbers_or_a_topic_but_not_both_and_not_neither() {
    let client = sns().await;
    let both = SmsSpec {
        phone_numbers: vec!["+15555550100".into()],
        topic_arn: Some("arn:aws:sns:us-east-1:123456789012:secops-sms".into()),
    };
    let neither = SmsSpec {
        phone_numbers: Vec::new(),
        topic_arn: None,
    };
    let not_a_topic = SmsSpec {
        phone_numbers: Vec::new(),
        topic_arn: Some("secops-sms".into()),
    };
    for (spec, expected) in [
        (both, "sms takes phoneNumbers or topicArn, not both"),
        (neither, "sms needs phoneNumbers or a topicArn"),
        (
            not_a_topic,
            "sms.topicArn is not an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:secops-sms",
        ),
    ] {
        match SmsChannel::new(&spec, client.clone()) {
            Err(NotifyError::Setup(message)) => assert_eq!(message, expected),
            other => panic!("expected a setup error for {spec:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_channel_shows_phone_numbers_only_masked() {
    let channel = SmsChannel::new(
        &numbers(&["+15555550100".into(), "+447700900123".into()]),
        sns().await,
    )
    .unwrap();

    let debug = format!("{channel:?}");

    assert!(
        debug.contains("…0100") && debug.contains("…0123"),
        "{debug}"
    );
    assert_none_contains(&[&debug], &["5555550100", "7700900123"]);
}
