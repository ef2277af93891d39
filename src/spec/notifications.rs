//! `spec.notifications`: the alert channels of a policy, as the manifest writes them.
//!
//! Each entry routes findings by severity and type to exactly one channel block.
//! Secrets are never in the manifest: each `*SecretRef` names a Secret in the
//! policy's namespace (on the command line, a directory laid out like a mounted
//! Secret: `DIR/NAME/KEY`).

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use super::validate::Problems;
use super::{MAX_NOTIFICATION_CHANNELS, SeverityThreshold};
use crate::domain::alert::{Route, TypePattern};
use crate::notify::http::{UrlProblem, url_problem};

/// One alert channel: a unique name, which findings it hears about, and exactly one
/// of `email`, `sms`, `slack`, `jira`, `pagerDuty` or `serviceNow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "(has(self.email) ? 1 : 0) + (has(self.sms) ? 1 : 0) + (has(self.slack) ? 1 : 0) + \
     (has(self.jira) ? 1 : 0) + (has(self.pagerDuty) ? 1 : 0) + (has(self.serviceNow) ? 1 : 0) == 1"
).message("each notification needs exactly one channel: email, sms, slack, jira, pagerDuty or serviceNow"))]
pub struct NotificationSpec {
    /// The channel's name, unique in the policy: letters, digits and `-`, at most 63
    /// characters, such as `oncall`. Alerts, status and metrics name the channel by it.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("a notification name must be lower-case letters, digits and '-', such as oncall"))]
    pub name: String,

    /// The lowest severity this channel hears about: `LOW`, `MEDIUM`, `HIGH`,
    /// `CRITICAL` or a number from 1.0 to 10.0. Default `LOW`: every finding.
    #[serde(default)]
    pub min_severity: SeverityThreshold,

    /// Glob patterns of finding types this channel hears about, such as
    /// `UnauthorizedAccess:*` (`*` matches any characters, `?` one). Empty or absent
    /// means every type. At most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "type_patterns_schema")]
    pub finding_types: Vec<String>,

    /// Email, through Amazon SES v2 (SendEmail) or, with `smtp`, an SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSpec>,

    /// SMS through Amazon SNS: a message to each phone number, or to a topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsSpec>,

    /// A Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSpec>,

    /// A Jira issue per finding, commented when the operator acts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jira: Option<JiraSpec>,

    /// A PagerDuty incident per finding (Events API v2), resolved when the finding is
    /// remediated or no longer listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pager_duty: Option<PagerDutySpec>,

    /// A ServiceNow incident per finding (Table API), with work notes when the
    /// operator acts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_now: Option<ServiceNowSpec>,
}

/// One key of a Secret in the policy's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub name: String,
    /// The key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(SECRET_KEY_RULE).message(SECRET_KEY_MESSAGE))]
    pub key: String,
}

/// A Secret in the policy's namespace whose keys the channel documents
/// (`user` and `token`, or `user` and `password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message(SECRET_NAME_MESSAGE))]
    pub name: String,
}

/// Email: SES v2 by default, or an SMTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSpec {
    /// The sender address, such as `guardduty@example.com`; with SES it must be a
    /// verified identity.
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = Rule::new(EMAIL_RULE).message("email.from must be an address such as guardduty@example.com"))]
    pub from: String,
    /// The recipients: 1 to 50 addresses.
    #[schemars(schema_with = "recipients_schema")]
    pub to: Vec<String>,
    /// Send through this SMTP server instead of Amazon SES.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSpec>,
}

/// An SMTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpSpec {
    /// The server's host name or address, without a scheme or port.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9.:_-]+$')")
        .message("smtp.host must be a host name or address such as smtp.example.com, without scheme or port"))]
    pub host: String,
    /// The server's port. Default 587 (submission with STARTTLS).
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// `StartTls` (the default): upgrade the connection, and refuse a server that
    /// cannot; `Tls`: TLS from the first byte (port 465); `None`: plain text, only
    /// for a relay on a trusted network.
    #[serde(default)]
    pub tls: SmtpTls,
    /// A Secret with the keys `user` and `password`; absent: no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

fn default_smtp_port() -> u16 {
    587
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum SmtpTls {
    None,
    #[default]
    StartTls,
    Tls,
}

/// SMS through Amazon SNS: phone numbers, or a topic (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(has(self.phoneNumbers) && size(self.phoneNumbers) > 0) != has(self.topicArn)")
    .message("sms needs exactly one of phoneNumbers or topicArn"))]
pub struct SmsSpec {
    /// E.164 phone numbers such as `+15555550100`: 1 to 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "phone_numbers_schema")]
    pub phone_numbers: Vec<String>,
    /// An SNS topic ARN to publish to instead, such as
    /// `arn:aws:sns:us-east-1:123456789012:secops-sms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new(format!("self.matches('{TOPIC_ARN_PATTERN}')"))
        .message("topicArn must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:secops-sms"))]
    pub topic_arn: Option<String>,
}

/// A Slack incoming webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackSpec {
    /// The key of a Secret holding the webhook URL
    /// (`https://hooks.slack.com/services/…`): the URL is the credential.
    pub webhook_url_secret_ref: SecretKeyRef,
}

/// PagerDuty Events API v2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagerDutySpec {
    /// The key of a Secret holding the integration's routing key.
    pub routing_key_secret_ref: SecretKeyRef,
    /// The Events API endpoint. Default `https://events.pagerduty.com/v2/enqueue`;
    /// EU accounts use `https://events.eu.pagerduty.com/v2/enqueue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(METADATA_RULE).message(METADATA_MESSAGE))]
    #[x_kube(validation = Rule::new(URL_RULE).message("eventsUrl must be an https:// URL (http:// only to 127.0.0.1 or localhost)"))]
    pub events_url: Option<String>,
}

/// The PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Jira (Cloud or Data Center) REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JiraSpec {
    /// The site, such as `https://example.atlassian.net`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(METADATA_RULE).message(METADATA_MESSAGE))]
    #[x_kube(validation = Rule::new(URL_RULE).message("jira.url must be an https:// URL such as https://example.atlassian.net (http:// only to 127.0.0.1 or localhost)"))]
    pub url: String,
    /// The project key, such as `SEC`.
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9_]*$')")
        .message("jira.project must be a project key such as SEC: a letter, then letters, digits or _"))]
    pub project: String,
    /// The issue type to create. Default `Task`.
    #[serde(default = "default_issue_type")]
    #[schemars(length(min = 1, max = 255))]
    pub issue_type: String,
    /// A Secret with the keys `user` (the account's email) and `token` (an API token).
    pub credentials_secret_ref: SecretRef,
}

fn default_issue_type() -> String {
    "Task".to_string()
}

/// ServiceNow Table API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceNowSpec {
    /// The instance, such as `https://example.service-now.com`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(METADATA_RULE).message(METADATA_MESSAGE))]
    #[x_kube(validation = Rule::new(URL_RULE).message("serviceNow.instanceUrl must be an https:// URL such as https://example.service-now.com (http:// only to 127.0.0.1 or localhost)"))]
    pub instance_url: String,
    /// A Secret with the keys `user` and `password`.
    pub credentials_secret_ref: SecretRef,
}

/// An https URL, or http to this machine (a local relay, the tests): a credential
/// never crosses a network in clear text.
pub const URL_RULE: &str = r"self.matches('^https://[^/?#@\\s]+') || self.matches('^http://(127[.]0[.]0[.]1|localhost|\\[::1\\])(:[0-9]+)?(/|$)')";
/// Not a link-local or instance-metadata host, where the operator's own credentials
/// can be read (the controller checks resolved addresses too).
pub const METADATA_RULE: &str = r"!self.lowerAscii().matches('^https?://(169[.]254[.]|\\[(fe[89ab][0-9a-f]:|fd00:ec2::254\\])|(instance-data([.]ec2[.]internal)?|metadata|metadata[.]google[.]internal)[.]?(:|/|$))')";
const METADATA_MESSAGE: &str = "a channel URL must not point at a link-local or instance-metadata address such as 169.254.169.254";
/// A Kubernetes object name (DNS subdomain).
const SECRET_NAME_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')";
const SECRET_NAME_MESSAGE: &str =
    "a Secret name must be lower-case letters, digits, '-' and '.', such as slack-webhook";
/// A key of a Secret's data.
const SECRET_KEY_RULE: &str = "self.matches('^[-._a-zA-Z0-9]+$')";
const SECRET_KEY_MESSAGE: &str =
    "a Secret key must be letters, digits, '-', '_' and '.', such as webhookUrl";
/// One address, without a display name.
const EMAIL_RULE: &str = r"self.matches('^[^@\\s<>,;]+@[^@\\s<>,;]+[.][^@\\s<>,;]+$')";
/// E.164: a plus sign and 2 to 15 digits, not starting with 0.
pub const E164_PATTERN: &str = r"^[+][1-9][0-9]{1,14}$";
pub const TOPIC_ARN_PATTERN: &str =
    r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}([.]fifo)?$";
/// The characters of finding types, and the wildcards.
const TYPE_PATTERN_RULE: &str = "self.matches('^[A-Za-z0-9:/._!&*?-]+$')";

fn type_patterns_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 20,
        "items": {
            "type": "string",
            "maxLength": 256,
            "x-kubernetes-validations": [{
                "rule": TYPE_PATTERN_RULE,
                "message": "each finding type pattern must be a finding type with * or ? wildcards, such as UnauthorizedAccess:*"
            }]
        }
    })
}

fn recipients_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": 50,
        "items": {
            "type": "string",
            "maxLength": 254,
            "x-kubernetes-validations": [{
                "rule": EMAIL_RULE,
                "message": "each email.to entry must be an address such as secops@example.com"
            }]
        }
    })
}

fn phone_numbers_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 20,
        "items": {
            "type": "string",
            "maxLength": 16,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{E164_PATTERN}')"),
                "message": "each phone number must be in E.164 form, such as +15555550100"
            }]
        }
    })
}

/// A channel that passed validation: its route and its channel block.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidNotification {
    pub route: Route,
    pub channel: ChannelSpec,
}

/// The one channel block of an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelSpec {
    Email(EmailSpec),
    Sms(SmsSpec),
    Slack(SlackSpec),
    Jira(JiraSpec),
    PagerDuty(PagerDutySpec),
    ServiceNow(ServiceNowSpec),
}

impl ChannelSpec {
    /// The block's field name in the manifest.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelSpec::Email(_) => "email",
            ChannelSpec::Sms(_) => "sms",
            ChannelSpec::Slack(_) => "slack",
            ChannelSpec::Jira(_) => "jira",
            ChannelSpec::PagerDuty(_) => "pagerDuty",
            ChannelSpec::ServiceNow(_) => "serviceNow",
        }
    }
}

/// Checks every entry (the same rules as the CRD's CEL, and those CEL cannot say),
/// recording each problem at its field.
pub(super) fn check_notifications(
    entries: &[NotificationSpec],
    problems: &mut Problems,
) -> Option<Vec<ValidNotification>> {
    let before = problems.count();
    if entries.len() > MAX_NOTIFICATION_CHANNELS {
        problems.push(
            "spec.notifications",
            format!(
                "{} channels listed; at most {MAX_NOTIFICATION_CHANNELS} are allowed",
                entries.len()
            ),
        );
    }
    let mut names = BTreeSet::new();
    let mut valid = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = |field: &str| format!("spec.notifications[{index}].{field}");
        if !is_channel_name(&entry.name) {
            problems.push(
                at("name"),
                format!(
                    "{:?} is not a channel name: use lower-case letters, digits and '-' (at most 63), such as oncall",
                    entry.name
                ),
            );
        } else if !names.insert(entry.name.as_str()) {
            problems.push(
                at("name"),
                format!(
                    "{:?} is used by an earlier channel: names must be unique",
                    entry.name
                ),
            );
        }
        let min_severity = problems.check(
            &at("minSeverity"),
            entry.min_severity.to_severity().map_err(|e| e.to_string()),
        );
        if entry.finding_types.len() > MAX_TYPE_PATTERNS {
            problems.push(
                at("findingTypes"),
                format!(
                    "{} patterns listed; at most {MAX_TYPE_PATTERNS} are allowed",
                    entry.finding_types.len()
                ),
            );
        }
        let mut patterns = Vec::new();
        for (i, text) in entry.finding_types.iter().enumerate() {
            if let Some(pattern) = problems.check(
                &at(&format!("findingTypes[{i}]")),
                TypePattern::parse(text).map_err(|e| e.to_string()),
            ) {
                patterns.push(pattern);
            }
        }
        let channel = check_channel(entry, &at, problems);
        if let (Some(min_severity), Some(channel)) = (min_severity, channel) {
            valid.push(ValidNotification {
                route: Route {
                    channel: entry.name.clone(),
                    min_severity,
                    finding_types: patterns,
                },
                channel,
            });
        }
    }
    (problems.count() == before).then_some(valid)
}

/// The most patterns in one channel's `findingTypes`.
const MAX_TYPE_PATTERNS: usize = 20;

fn check_channel(
    entry: &NotificationSpec,
    at: &dyn Fn(&str) -> String,
    problems: &mut Problems,
) -> Option<ChannelSpec> {
    let mut blocks = Vec::new();
    if let Some(email) = &entry.email {
        blocks.push(ChannelSpec::Email(email.clone()));
    }
    if let Some(sms) = &entry.sms {
        blocks.push(ChannelSpec::Sms(sms.clone()));
    }
    if let Some(slack) = &entry.slack {
        blocks.push(ChannelSpec::Slack(slack.clone()));
    }
    if let Some(jira) = &entry.jira {
        blocks.push(ChannelSpec::Jira(jira.clone()));
    }
    if let Some(pager_duty) = &entry.pager_duty {
        blocks.push(ChannelSpec::PagerDuty(pager_duty.clone()));
    }
    if let Some(service_now) = &entry.service_now {
        blocks.push(ChannelSpec::ServiceNow(service_now.clone()));
    }
    if blocks.len() != 1 {
        let found = if blocks.is_empty() {
            "none".to_string()
        } else {
            blocks
                .iter()
                .map(ChannelSpec::kind)
                .collect::<Vec<_>>()
                .join(", ")
        };
        problems.push(
            at("name").trim_end_matches(".name").to_string(),
            format!(
                "each notification needs exactly one channel (email, sms, slack, jira, pagerDuty or serviceNow); found {found}"
            ),
        );
        return None;
    }
    let channel = blocks.pop()?;
    let before = problems.count();
    match &channel {
        ChannelSpec::Email(email) => {
            if !is_email_address(&email.from) {
                problems.push(
                    at("email.from"),
                    format!(
                        "{:?} is not an address such as guardduty@example.com",
                        email.from
                    ),
                );
            }
            if email.to.is_empty() || email.to.len() > 50 {
                problems.push(at("email.to"), "list 1 to 50 recipients");
            }
            for (i, to) in email.to.iter().enumerate() {
                if !is_email_address(to) {
                    problems.push(
                        at(&format!("email.to[{i}]")),
                        format!("{to:?} is not an address such as secops@example.com"),
                    );
                }
            }
            if let Some(smtp) = &email.smtp {
                let host_ok = !smtp.host.is_empty()
                    && smtp.host.len() <= 253
                    && smtp
                        .host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c));
                if !host_ok {
                    problems.push(
                        at("email.smtp.host"),
                        format!(
                            "{:?} is not a host name: write it without scheme or port, such as smtp.example.com",
                            smtp.host
                        ),
                    );
                }
                if smtp.port == 0 {
                    problems.push(
                        at("email.smtp.port"),
                        "use a port from 1 to 65535, usually 587",
                    );
                }
                if let Some(secret) = &smtp.credentials_secret_ref {
                    check_secret_name(
                        &secret.name,
                        &at("email.smtp.credentialsSecretRef.name"),
                        problems,
                    );
                }
            }
        }
        ChannelSpec::Sms(sms) => {
            match (sms.phone_numbers.is_empty(), &sms.topic_arn) {
                (true, None) | (false, Some(_)) => problems.push(
                    at("sms"),
                    "give exactly one of phoneNumbers (E.164, such as +15555550100) or topicArn",
                ),
                _ => {}
            }
            if sms.phone_numbers.len() > 20 {
                problems.push(
                    at("sms.phoneNumbers"),
                    "list at most 20 phone numbers, or use a topic",
                );
            }
            for (i, number) in sms.phone_numbers.iter().enumerate() {
                if !is_e164(number) {
                    problems.push(
                        at(&format!("sms.phoneNumbers[{i}]")),
                        format!("{number:?} is not in E.164 form: a + and the country code, such as +15555550100"),
                    );
                }
            }
            if let Some(arn) = &sms.topic_arn
                && !is_topic_arn(arn)
            {
                problems.push(
                    at("sms.topicArn"),
                    format!("{arn:?} is not an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:secops-sms"),
                );
            }
        }
        ChannelSpec::Slack(slack) => {
            check_secret_key_ref(
                &slack.webhook_url_secret_ref,
                &at("slack.webhookUrlSecretRef"),
                problems,
            );
        }
        ChannelSpec::PagerDuty(pager_duty) => {
            check_secret_key_ref(
                &pager_duty.routing_key_secret_ref,
                &at("pagerDuty.routingKeySecretRef"),
                problems,
            );
            if let Some(url) = &pager_duty.events_url
                && let Err(message) = check_url(url)
            {
                problems.push(at("pagerDuty.eventsUrl"), message);
            }
        }
        ChannelSpec::Jira(jira) => {
            if let Err(message) = check_url(&jira.url) {
                problems.push(at("jira.url"), message);
            }
            let key_ok = jira.project.len() <= 255
                && jira
                    .project
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && jira
                    .project
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !key_ok {
                problems.push(
                    at("jira.project"),
                    format!("{:?} is not a project key: a letter, then letters, digits or _, such as SEC", jira.project),
                );
            }
            if jira.issue_type.trim().is_empty() {
                problems.push(
                    at("jira.issueType"),
                    "name an issue type such as Task, or leave it out",
                );
            }
            check_secret_name(
                &jira.credentials_secret_ref.name,
                &at("jira.credentialsSecretRef.name"),
                problems,
            );
        }
        ChannelSpec::ServiceNow(service_now) => {
            if let Err(message) = check_url(&service_now.instance_url) {
                problems.push(at("serviceNow.instanceUrl"), message);
            }
            check_secret_name(
                &service_now.credentials_secret_ref.name,
                &at("serviceNow.credentialsSecretRef.name"),
                problems,
            );
        }
    }
    (problems.count() == before).then_some(channel)
}

fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_email_address(text: &str) -> bool {
    let forbidden = |c: char| c.is_whitespace() || "<>,;\"".contains(c);
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && text.len() <= 254
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.chars().any(forbidden)
        }
        None => false,
    }
}

fn is_e164(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or("");
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn is_topic_arn(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    let name = parts.get(5).copied().unwrap_or("");
    let name = name.strip_suffix(".fifo").unwrap_or(name);
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// https, or http to this machine only; no credentials in the URL: the rule the
/// channels apply too ([`url_problem`]).
pub fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| format!("{text:?} is not a URL ({e}): write it as https://host/path"))?;
    match url_problem(&url) {
        None => Ok(url),
        Some(UrlProblem::Credentials) => {
            Err("put credentials in the Secret, not in the URL".to_string())
        }
        Some(UrlProblem::PlainHttp) => Err(format!(
            "{text:?} uses plain http: use https:// (plain http is allowed only to 127.0.0.1 or localhost), so credentials never cross a network in clear text"
        )),
        Some(UrlProblem::NotHttps) => Err(format!("{text:?} is not an https:// URL")),
        Some(UrlProblem::Metadata) => Err(format!(
            "{text:?} points at a link-local or instance-metadata address (such as \
             169.254.169.254): alerts are never sent there"
        )),
    }
}

fn check_secret_key_ref(secret: &SecretKeyRef, at: &str, problems: &mut Problems) {
    check_secret_name(&secret.name, &format!("{at}.name"), problems);
    let key_ok = !secret.key.is_empty()
        && secret.key.len() <= 253
        && secret
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if !key_ok {
        problems.push(
            format!("{at}.key"),
            format!("{:?}: {SECRET_KEY_MESSAGE}", secret.key),
        );
    }
}

fn check_secret_name(name: &str, at: &str, problems: &mut Problems) {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if !ok {
        problems.push(at.to_string(), format!("{name:?}: {SECRET_NAME_MESSAGE}"));
    }
}
