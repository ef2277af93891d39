//! The SMS channel: a short text per alert through Amazon SNS `Publish`, to each of
//! `sms.phoneNumbers` or to `sms.topicArn` (whose subscribers may be phones, email or
//! anything else SNS delivers to).
//!
//! The text ([`text`]) fits in three concatenated GSM-7 segments: the finding in one
//! line, what the operator did, and the console link, which is never cut. Phone
//! numbers are personal data: they are parsed when the channel is built and appear in
//! errors and `Debug` only masked to their last four digits.

use std::fmt;

use futures_util::future::BoxFuture;

use super::{Notifier, NotifyError};
use crate::domain::alert::{Alert, AlertEvent};
use crate::ports::AwsError;
use crate::spec::notifications::SmsSpec;

/// The longest text sent, in GSM-7 septets: three segments of a concatenated SMS
/// (153 septets each once the concatenation header is counted).
pub const MAX_SEPTETS: usize = 3 * 153;

/// SNS's own limit on `sms.phoneNumbers` per notification, as the manifest's schema says.
pub const MAX_PHONE_NUMBERS: usize = 20;

const PHONE_OPERATION: &str = "send an SMS with Amazon SNS";
const TOPIC_OPERATION: &str = "publish an SMS alert to the Amazon SNS topic";

/// The SMS channel of one notification.
pub struct SmsChannel {
    client: aws_sdk_sns::Client,
    target: Target,
    sms_type: aws_sdk_sns::types::MessageAttributeValue,
}

enum Target {
    PhoneNumbers(Vec<PhoneNumber>),
    Topic(String),
}

/// An E.164 number (`+` and 2 to 15 digits, the first not 0); `Debug` and
/// [`PhoneNumber::masked`] show only its last digits.
#[derive(Clone, PartialEq, Eq)]
struct PhoneNumber(String);

impl PhoneNumber {
    fn parse(number: &str) -> Option<PhoneNumber> {
        let digits = number.strip_prefix('+')?;
        let valid = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        valid.then(|| PhoneNumber(number.to_string()))
    }

    /// `…0100`: enough to tell a person's numbers apart, not enough to call them.
    fn masked(&self) -> String {
        let digits = &self.0[1..];
        if digits.len() > 6 {
            format!("…{}", &digits[digits.len() - 4..])
        } else {
            "…".to_string()
        }
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl SmsChannel {
    /// SMS through SNS, to `spec.phoneNumbers` or `spec.topicArn` (exactly one).
    pub fn new(spec: &SmsSpec, client: aws_sdk_sns::Client) -> Result<SmsChannel, NotifyError> {
        let target = match (&spec.topic_arn, spec.phone_numbers.as_slice()) {
            (Some(_), [_, ..]) => {
                return Err(NotifyError::Setup(
                    "sms takes phoneNumbers or topicArn, not both".into(),
                ));
            }
            (None, []) => {
                return Err(NotifyError::Setup(
                    "sms needs phoneNumbers or a topicArn".into(),
                ));
            }
            (Some(arn), []) => Target::Topic(topic_arn(arn)?),
            (None, numbers) => Target::PhoneNumbers(phone_numbers(numbers)?),
        };
        // Transactional: alerts are time-critical, and SNS gives them the more
        // reliable routes (and bypasses quiet hours where the law allows).
        let sms_type = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value("Transactional")
            .build()
            .map_err(|e| NotifyError::Setup(format!("failed to build the SMS attributes: {e}")))?;
        Ok(SmsChannel {
            client,
            target,
            sms_type,
        })
    }

    async fn send(&self, alert: &Alert) -> Result<(), NotifyError> {
        let message = text(alert);
        match &self.target {
            Target::Topic(arn) => self
                .publish(message)
                .topic_arn(arn)
                .send()
                .await
                .map(drop)
                .map_err(|e| NotifyError::Aws {
                    operation: TOPIC_OPERATION,
                    source: AwsError::of_sdk(e),
                }),
            Target::PhoneNumbers(numbers) => {
                // Sequentially (at most 20), and on to the next number after a
                // failure, so one bad number does not silence the others.
                let mut failures = Vec::new();
                for number in numbers {
                    if let Err(e) = self
                        .publish(message.clone())
                        .phone_number(&number.0)
                        .send()
                        .await
                    {
                        failures.push((number, AwsError::of_sdk(e)));
                    }
                }
                match partial_failure(numbers.len(), failures) {
                    None => Ok(()),
                    Some(source) => Err(NotifyError::Aws {
                        operation: PHONE_OPERATION,
                        source,
                    }),
                }
            }
        }
    }

    fn publish(
        &self,
        message: String,
    ) -> aws_sdk_sns::operation::publish::builders::PublishFluentBuilder {
        self.client
            .publish()
            .message(message)
            .message_attributes("AWS.SNS.SMS.SMSType", self.sms_type.clone())
    }
}

impl Notifier for SmsChannel {
    fn kind(&self) -> &'static str {
        "sms"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.send(alert))
    }
}

impl fmt::Debug for SmsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SmsChannel");
        match &self.target {
            Target::PhoneNumbers(numbers) => debug.field("phone_numbers", numbers),
            Target::Topic(arn) => debug.field("topic_arn", arn),
        };
        debug.finish_non_exhaustive()
    }
}

fn phone_numbers(numbers: &[String]) -> Result<Vec<PhoneNumber>, NotifyError> {
    if numbers.len() > MAX_PHONE_NUMBERS {
        return Err(NotifyError::Setup(format!(
            "sms.phoneNumbers has {} numbers; at most {MAX_PHONE_NUMBERS} are allowed",
            numbers.len()
        )));
    }
    let mut parsed: Vec<PhoneNumber> = Vec::with_capacity(numbers.len());
    for (i, number) in numbers.iter().enumerate() {
        let number = PhoneNumber::parse(number.trim()).ok_or_else(|| {
            NotifyError::Setup(format!(
                "sms.phoneNumbers[{i}] is not an E.164 number such as +15555550100"
            ))
        })?;
        // The same person listed twice gets one text.
        if !parsed.contains(&number) {
            parsed.push(number);
        }
    }
    Ok(parsed)
}

fn topic_arn(arn: &str) -> Result<String, NotifyError> {
    let arn = arn.trim();
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _partition, "sns", region, account, name]
            if !region.is_empty() && !account.is_empty() && !name.is_empty() =>
        {
            Ok(arn.to_string())
        }
        _ => Err(NotifyError::Setup(
            "sms.topicArn is not an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:secops-sms"
                .into(),
        )),
    }
}

/// The error of a delivery where some numbers failed, or `None` when none did. It
/// reports a retryable failure when there is one (so the caller tries again, at the
/// price of a second text to the numbers that got the first), and names numbers only
/// masked, also inside the service's own message.
fn partial_failure(total: usize, failures: Vec<(&PhoneNumber, AwsError)>) -> Option<AwsError> {
    let count = failures.len();
    let retryable = |e: &AwsError| {
        matches!(
            e.category(),
            crate::domain::outcome::Category::Throttled
                | crate::domain::outcome::Category::Unreachable
        )
    };
    let index = failures.iter().position(|(_, e)| retryable(e)).unwrap_or(0);
    let (number, error) = failures.into_iter().nth(index)?;
    let masked = number.masked();
    let service_message = error
        .message
        .replace(&number.0, &masked)
        .replace(&number.0[1..], &masked);
    Some(AwsError {
        code: error.code,
        message: format!(
            "{count} of {total} numbers failed; the number ending {masked}: {service_message}"
        ),
    })
}

/// The SMS for an alert: `[SAMPLE] GuardDuty HIGH 8.0 Recon:EC2/PortProbeUnprotectedPort
/// i-0abc port 22. Remediated: revoked …. https://…console…`, in GSM-7 characters
/// (anything else becomes `?`, which keeps the message out of 70-character UCS-2
/// segments) and at most [`MAX_SEPTETS`] septets. When too long, the operator's
/// response is shortened with `...`; the console link is kept whole.
pub fn text(alert: &Alert) -> String {
    let finding = &alert.finding;
    let mut body = String::new();
    if finding.sample {
        body.push_str("[SAMPLE] ");
    }
    body.push_str(&format!(
        "GuardDuty {} {} {}",
        finding.band(),
        finding.severity,
        finding.finding_type
    ));
    if let Some(instance) = &finding.instance {
        body.push(' ');
        body.push_str(instance);
    }
    match finding.ports.as_slice() {
        [] => {}
        [port] => body.push_str(&format!(" port {port}")),
        ports => {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            body.push_str(&format!(" ports {}", ports.join(",")));
        }
    }
    if let AlertEvent::Escalated { from } = alert.event {
        body.push_str(&format!(" (up from {from})"));
    }
    body.push_str(". ");
    body.push_str(&alert.response.to_string());
    let body = gsm7(&body);

    let url = gsm7(&finding.console_url());
    let url_cost = septets(&url) + 1;
    // A link that would leave little room for the finding is left out.
    let (room, url) = if url_cost <= MAX_SEPTETS / 2 {
        (MAX_SEPTETS - url_cost, Some(url))
    } else {
        (MAX_SEPTETS, None)
    };
    let mut text = shorten(&body, room);
    if let Some(url) = url {
        text.push(' ');
        text.push_str(&url);
    }
    text
}

/// `text` with every character outside the GSM-7 alphabet's ASCII part replaced by `?`.
fn gsm7(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '`' => '?',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// Septets of a GSM-7 text: the extension characters take two.
fn septets(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '[' | ']' | '{' | '}' | '\\' | '^' | '~' | '|' => 2,
            _ => 1,
        })
        .sum()
}

/// `text` cut on a character boundary to at most `room` septets, ending in `...` when cut.
fn shorten(text: &str, room: usize) -> String {
    if septets(text) <= room {
        return text.to_string();
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        let cost = septets(c.encode_utf8(&mut [0; 4]));
        if used + cost + 3 > room {
            break;
        }
        cut.push(c);
        used += cost;
    }
    let mut cut = cut.trim_end().to_string();
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: &str) -> PhoneNumber {
        PhoneNumber::parse(n).expect("a valid number")
    }

    #[test]
    fn e164_numbers_parse_and_anything_else_does_not() {
        assert!(PhoneNumber::parse("+15555550100").is_some());
        for bad in [
            "15555550100",
            "+",
            "+0555",
            "+1 555 555 0100",
            "+1234567890123456",
            "+1555a",
        ] {
            assert!(PhoneNumber::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn phone_numbers_show_only_their_last_four_digits() {
        let n = number("+15555550100");
        assert_eq!(n.masked(), "…0100");
        assert_eq!(format!("{n:?}"), "PhoneNumber(…0100)");
        assert_eq!(number("+1234").masked(), "…");
    }

    #[test]
    fn a_partial_failure_counts_the_failures_and_masks_the_number_in_the_service_message() {
        let first = number("+15555550100");
        let second = number("+15555550199");
        let error = partial_failure(
            3,
            vec![
                (
                    &first,
                    AwsError {
                        code: Some("InvalidParameter".into()),
                        message: "Invalid parameter: PhoneNumber +15555550100".into(),
                    },
                ),
                (
                    &second,
                    AwsError {
                        code: Some("Throttling".into()),
                        message: "Rate exceeded for 15555550199".into(),
                    },
                ),
            ],
        )
        .expect("an error");
        // The retryable failure is the one reported, so the caller tries again.
        assert_eq!(error.code.as_deref(), Some("Throttling"));
        assert_eq!(
            error.message,
            "2 of 3 numbers failed; the number ending …0199: Rate exceeded for …0199"
        );
        assert!(partial_failure(3, Vec::new()).is_none());
    }

    #[test]
    fn text_outside_gsm7_becomes_question_marks_and_extension_characters_cost_two_septets() {
        assert_eq!(gsm7("a — b `c` é"), "a ? b ?c? ?");
        assert_eq!(septets("[SAMPLE]"), 10);
    }

    #[test]
    fn shortening_cuts_on_a_character_and_marks_the_cut() {
        assert_eq!(shorten("abcdef", 6), "abcdef");
        assert_eq!(shorten("abc defgh", 7), "abc...");
        assert_eq!(shorten("ab[cd", 6), "ab[cd");
        assert_eq!(shorten("ab[cd", 5), "ab...");
    }

    #[test]
    fn topic_arns_are_checked_for_their_shape() {
        assert!(topic_arn("arn:aws:sns:us-east-1:123456789012:secops-sms").is_ok());
        assert!(topic_arn("arn:aws:sqs:us-east-1:123456789012:queue").is_err());
        assert!(topic_arn("secops-sms").is_err());
    }
}
