//! One pass's alerting, shared by the command line and the controller:
//! build the channels (secrets read now, so a rotated secret is used at once),
//! decide the alerts (pure, [`plan_alerts`]), deliver them, and move the record for
//! each delivered alert only.
//!
//! Channels are delivered concurrently, a channel's alerts in order (highest severity
//! first). A failed attempt that is worth retrying (throttled, 5xx, no answer) is
//! retried with jittered exponential backoff, honouring `Retry-After`; when a channel still
//! fails, or cannot be used at all (a missing secret, 401/403), its remaining alerts of
//! the pass are skipped: they stay due and go out on the next pass. A broken channel
//! never holds up another.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use super::email::EmailChannel;
use super::jira::JiraChannel;
use super::pagerduty::PagerDutyChannel;
use super::secrets::SecretStore;
use super::servicenow::ServiceNowChannel;
use super::slack::SlackChannel;
use super::sms::SmsChannel;
use super::{Notifier, NotifyError};
use crate::domain::alert::{
    Alert, AlertEvent, AlertLimits, AlertRecord, Listing, Route, plan_alerts,
};
use crate::domain::ids::FindingId;
use crate::domain::outcome::{Category, PassReport};
use crate::domain::response::finding_responses;
use crate::domain::time::Timestamp;
use crate::spec::notifications::{ChannelSpec, ValidNotification};

/// One channel of the policy, ready to deliver, or why it cannot.
pub struct Channel {
    pub route: Route,
    /// `slack`, `pagerDuty`, … (the manifest's block name).
    pub kind: &'static str,
    pub notifier: Result<Box<dyn Notifier>, NotifyError>,
}

/// The AWS clients the Email (SES) and SMS (SNS) channels use.
#[derive(Debug, Clone)]
pub struct AlertClients {
    pub ses: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
}

/// Builds every channel: secrets are read now; a channel that cannot be built is
/// kept with its error, so its alerts are reported as failed, not silently dropped.
pub async fn build_channels(
    notifications: &[ValidNotification],
    secrets: &dyn SecretStore,
    aws: &AlertClients,
    http: &reqwest::Client,
) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(notifications.len());
    for notification in notifications {
        channels.push(Channel {
            route: notification.route.clone(),
            kind: notification.channel.kind(),
            notifier: build_notifier(&notification.channel, secrets, aws, http).await,
        });
    }
    channels
}

async fn build_notifier(
    spec: &ChannelSpec,
    secrets: &dyn SecretStore,
    aws: &AlertClients,
    http: &reqwest::Client,
) -> Result<Box<dyn Notifier>, NotifyError> {
    let secret = |name: &str, key: &str| {
        let (name, key) = (name.to_string(), key.to_string());
        async move { secrets.get(&name, &key).await.map_err(NotifyError::Setup) }
    };
    // A credentials Secret: the key `user`, and the key of the password or token.
    let login = |name: &str, password_key: &'static str| {
        let name = name.to_string();
        async move {
            Ok::<_, NotifyError>((
                secret(&name, "user").await?,
                secret(&name, password_key).await?,
            ))
        }
    };
    Ok(match spec {
        ChannelSpec::Slack(slack) => {
            let r = &slack.webhook_url_secret_ref;
            Box::new(SlackChannel::new(
                secret(&r.name, &r.key).await?,
                http.clone(),
            )?)
        }
        ChannelSpec::PagerDuty(pager_duty) => {
            let r = &pager_duty.routing_key_secret_ref;
            Box::new(PagerDutyChannel::new(
                secret(&r.name, &r.key).await?,
                pager_duty.events_url.as_deref(),
                http.clone(),
            )?)
        }
        ChannelSpec::Jira(jira) => {
            let (user, token) = login(&jira.credentials_secret_ref.name, "token").await?;
            Box::new(JiraChannel::new(jira, user, token, http.clone())?)
        }
        ChannelSpec::ServiceNow(service_now) => {
            let (user, password) =
                login(&service_now.credentials_secret_ref.name, "password").await?;
            Box::new(ServiceNowChannel::new(
                service_now,
                user,
                password,
                http.clone(),
            )?)
        }
        ChannelSpec::Email(email) => match &email.smtp {
            None => Box::new(EmailChannel::ses(email, aws.ses.clone())?),
            Some(smtp) => {
                let credentials = match &smtp.credentials_secret_ref {
                    Some(r) => Some(login(&r.name, "password").await?),
                    None => None,
                };
                Box::new(EmailChannel::smtp(email, smtp, credentials)?)
            }
        },
        ChannelSpec::Sms(sms) => Box::new(SmsChannel::new(sms, aws.sns.clone())?),
    })
}

/// How hard one alert is tried within a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per alert, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; doubled before each next one.
    pub backoff: Duration,
    /// The longest wait honoured, `Retry-After` included: a service asking for more
    /// gets the alert on the next pass instead.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// What became of one alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub channel: String,
    pub kind: &'static str,
    pub finding: FindingId,
    pub event: AlertEvent,
    #[serde(flatten)]
    pub result: DeliveryResult,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum DeliveryResult {
    Delivered {
        attempts: u32,
    },
    Failed {
        category: Category,
        error: String,
        attempts: u32,
    },
    /// Not attempted: the channel failed earlier in this pass; due again next pass.
    Skipped {
        reason: String,
    },
    /// A dry run: what would be sent.
    WouldSend,
}

impl Delivery {
    fn of(alert: &Alert, kind: &'static str, result: DeliveryResult) -> Delivery {
        Delivery {
            channel: alert.channel.clone(),
            kind,
            finding: alert.finding.id.clone(),
            event: alert.event,
            result,
        }
    }
}

impl DeliveryResult {
    fn failed(error: &NotifyError, attempts: u32) -> DeliveryResult {
        DeliveryResult::Failed {
            category: error.category(),
            error: error.to_string(),
            attempts,
        }
    }
}

/// A pass's alerting: every alert's fate, what was held back, and the record to keep.
#[derive(Debug, Clone, Default)]
pub struct NotifyReport {
    pub deliveries: Vec<Delivery>,
    /// Alerts held back for later passes (per-pass limit), per channel.
    pub deferred: BTreeMap<String, usize>,
    /// Alerts withheld because the record is full of findings at least as severe.
    pub withheld: BTreeMap<String, usize>,
    pub record: AlertRecord,
    /// The alerts themselves, in delivery order (for a dry run's listing).
    pub alerts: Vec<Alert>,
}

/// One channel that failed in a pass: its first failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFailure {
    pub channel: String,
    pub kind: &'static str,
    /// `None` when the alerts were skipped after an earlier failure of the channel.
    pub category: Option<Category>,
    pub error: String,
    /// Alerts not delivered (failed or skipped).
    pub undelivered: usize,
}

impl NotifyReport {
    pub fn delivered(&self) -> usize {
        self.deliveries
            .iter()
            .filter(|d| matches!(d.result, DeliveryResult::Delivered { .. }))
            .count()
    }

    /// The channels with an alert not delivered, each with its first error, in
    /// channel order.
    pub fn failures(&self) -> Vec<ChannelFailure> {
        let mut failures: Vec<ChannelFailure> = Vec::new();
        for delivery in &self.deliveries {
            let (category, error) = match &delivery.result {
                DeliveryResult::Failed {
                    category, error, ..
                } => (Some(*category), error.clone()),
                DeliveryResult::Skipped { reason } => (None, reason.clone()),
                DeliveryResult::Delivered { .. } | DeliveryResult::WouldSend => continue,
            };
            match failures.iter_mut().find(|f| f.channel == delivery.channel) {
                Some(failure) => failure.undelivered += 1,
                None => failures.push(ChannelFailure {
                    channel: delivery.channel.clone(),
                    kind: delivery.kind,
                    category,
                    error,
                    undelivered: 1,
                }),
            }
        }
        failures
    }
}

/// What a pass's alerting needs besides the channels.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    pub limits: AlertLimits,
    pub retry: RetryPolicy,
    /// The account and region the findings are from (for resolved alerts).
    pub account_id: String,
    pub region: String,
    /// Decide and list the alerts, deliver none, keep the record as it was.
    pub dry_run: bool,
    /// Now, for the record of when a channel was first told.
    pub now: Timestamp,
}

/// Alerts about one pass: decides them from the report and the record, delivers them,
/// and returns the record moved by what was delivered.
pub async fn notify(
    channels: &[Channel],
    report: &PassReport,
    mut record: AlertRecord,
    options: &NotifyOptions,
) -> NotifyReport {
    let routes: Vec<Route> = channels.iter().map(|c| c.route.clone()).collect();
    record.retain_channels(&routes);
    // A region's findings are all here when the pass listed them (not for an event's
    // findings, nor when reading them failed).
    let listing = Listing {
        complete: report.listed.keys().cloned().collect(),
        account_id: options.account_id.clone(),
        region: options.region.clone(),
    };
    let seen = finding_responses(report);
    let plan = plan_alerts(&routes, &seen, &record, &listing, options.limits);

    let deliveries: Vec<Delivery> = if options.dry_run {
        // Nothing is sent, but a channel that could not be built is said so now.
        plan.alerts
            .iter()
            .map(|alert| {
                let channel = channels.iter().find(|c| c.route.channel == alert.channel);
                let result = match channel.map(|c| &c.notifier) {
                    Some(Err(error)) => DeliveryResult::failed(error, 0),
                    _ => DeliveryResult::WouldSend,
                };
                Delivery::of(alert, channel.map_or("unknown", |c| c.kind), result)
            })
            .collect()
    } else {
        let per_channel = channels.iter().map(|channel| {
            let alerts: Vec<&Alert> = plan
                .alerts
                .iter()
                .filter(|a| a.channel == channel.route.channel)
                .collect();
            deliver_channel(channel, alerts, options.retry)
        });
        join_all(per_channel).await.into_iter().flatten().collect()
    };
    for delivery in &deliveries {
        if matches!(delivery.result, DeliveryResult::Delivered { .. })
            && let Some(alert) = plan
                .alerts
                .iter()
                .find(|a| a.channel == delivery.channel && a.finding.id == delivery.finding)
        {
            record.delivered(alert, options.now);
        }
    }
    NotifyReport {
        deliveries,
        deferred: plan.deferred,
        withheld: plan.withheld,
        record,
        alerts: plan.alerts,
    }
}

/// A channel's alerts, in order; after a failure that will not pass by itself within
/// the pass, the rest are skipped.
async fn deliver_channel(
    channel: &Channel,
    alerts: Vec<&Alert>,
    retry: RetryPolicy,
) -> Vec<Delivery> {
    let mut deliveries = Vec::with_capacity(alerts.len());
    let mut broken: Option<String> = None;
    for alert in alerts {
        let result = match (&channel.notifier, &broken) {
            (Err(error), _) => DeliveryResult::failed(error, 0),
            (Ok(_), Some(reason)) => DeliveryResult::Skipped {
                reason: reason.clone(),
            },
            (Ok(notifier), None) => {
                let (result, attempts) = deliver_with_retry(notifier.as_ref(), alert, retry).await;
                match result {
                    Ok(()) => DeliveryResult::Delivered { attempts },
                    Err(error) => {
                        if breaks_channel(&error) {
                            broken = Some(format!(
                                "{} failed earlier in this pass ({}); due again next pass",
                                channel.route.channel,
                                error.category()
                            ));
                        }
                        DeliveryResult::failed(&error, attempts)
                    }
                }
            }
        };
        deliveries.push(Delivery::of(alert, channel.kind, result));
    }
    deliveries
}

/// After this error, the channel's next alerts would fail the same way.
fn breaks_channel(error: &NotifyError) -> bool {
    error.is_retryable()
        || matches!(
            error.category(),
            Category::AccessDenied | Category::Setup | Category::Unreachable | Category::Throttled
        )
}

/// The waits between one alert's attempts: exponential from `retry.backoff`, each
/// with random jitter (within half of it either side of three quarters), so channels
/// that failed together in an outage do not retry in lock-step; never above
/// `retry.max_wait`; `retry.attempts - 1` of them.
fn backoff(retry: RetryPolicy) -> backon::ExponentialBuilder {
    // backon's jitter adds up to the delay itself: [d, 2d) for d from backoff / 2.
    backon::ExponentialBuilder::default()
        .with_min_delay(retry.backoff / 2)
        .with_max_delay(retry.max_wait / 2)
        .with_max_times(retry.attempts.saturating_sub(1) as usize)
        .with_jitter()
}

/// One alert: attempts with jittered exponential backoff while the error is
/// retryable; a `Retry-After` is waited for instead, and one longer than the policy's
/// `max_wait` ends the attempts for this pass.
async fn deliver_with_retry(
    notifier: &dyn Notifier,
    alert: &Alert,
    retry: RetryPolicy,
) -> (Result<(), NotifyError>, u32) {
    use backon::Retryable;
    let mut attempts = 0;
    let result = (|| {
        attempts += 1;
        notifier.deliver(alert)
    })
    .retry(backoff(retry))
    .sleep(tokio::time::sleep)
    .when(NotifyError::is_retryable)
    // `wait` is None once the attempts are spent: Retry-After does not add one.
    .adjust(|error, wait| match (error.retry_after(), wait) {
        (_, None) => None,
        (Some(asked), Some(_)) if asked > retry.max_wait => None,
        (Some(asked), Some(_)) => Some(asked),
        (None, wait) => wait,
    })
    .notify(|error, wait| {
        tracing::debug!(
            channel = %alert.channel,
            category = %error.category(),
            wait_ms = wait.as_millis() as u64,
            "alert not delivered; trying again"
        );
    })
    .await;
    (result, attempts)
}

#[cfg(test)]
mod tests {
    //! Delivery against in-memory channels that fail on command: outcomes are checked
    //! on what each channel received and on the record.

    use std::sync::Mutex;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::domain::finding::Finding;
    use crate::domain::policy::Mode;
    use crate::domain::severity::Severity;

    /// A channel that records what it delivered and answers from a script of errors
    /// (then succeeds).
    #[derive(Default)]
    struct FakeChannel {
        received: Mutex<Vec<(String, AlertEvent)>>,
        failures: Mutex<Vec<NotifyError>>,
    }

    impl Notifier for &'static FakeChannel {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>> {
            Box::pin(async move {
                let mut failures = self.failures.lock().unwrap();
                if !failures.is_empty() {
                    return Err(failures.remove(0));
                }
                self.received
                    .lock()
                    .unwrap()
                    .push((alert.finding.id.to_string(), alert.event));
                Ok(())
            })
        }
    }

    fn fake(failures: Vec<NotifyError>) -> &'static FakeChannel {
        Box::leak(Box::new(FakeChannel {
            received: Mutex::default(),
            failures: Mutex::new(failures),
        }))
    }

    fn channel(name: &str, notifier: Result<&'static FakeChannel, NotifyError>) -> Channel {
        Channel {
            route: Route {
                channel: name.to_string(),
                min_severity: Severity::MIN,
                finding_types: Vec::new(),
            },
            kind: "fake",
            notifier: notifier.map(|n| Box::new(n) as Box<dyn Notifier>),
        }
    }

    fn report(ids: &[&str]) -> PassReport {
        PassReport {
            mode: Mode::DryRun,
            regions: vec!["us-east-1".into()],
            listed: [("us-east-1".to_string(), crate::domain::known::Read::Full)].into(),
            targeted: false,
            feedback: Vec::new(),
            security_hub: Vec::new(),
            detectors: [("us-east-1".to_string(), "d1".to_string())].into(),
            findings: ids
                .iter()
                .map(|id| Finding::probe(id, "i-1", &[22]))
                .collect(),
            plan: None,
            applied: false,
            outcomes: Vec::new(),
            archived: Vec::new(),
            failures: Vec::new(),
            record: Default::default(),
            quiet: Vec::new(),
            settled: Vec::new(),
        }
    }

    fn options() -> NotifyOptions {
        NotifyOptions {
            limits: AlertLimits {
                per_channel: 50,
                record_capacity: 1000,
            },
            retry: RetryPolicy {
                attempts: 3,
                backoff: Duration::from_millis(1),
                max_wait: Duration::from_millis(200),
            },
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            dry_run: false,
            now: Timestamp(1_800_000_000),
        }
    }

    fn http(status: u16, retry_after: Option<Duration>) -> NotifyError {
        NotifyError::Http {
            service: "Fake",
            status,
            retry_after,
            detail: String::new(),
        }
    }

    fn received(channel: &FakeChannel) -> Vec<String> {
        channel
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    #[tokio::test]
    async fn a_broken_channel_does_not_stop_the_others_and_its_alerts_stay_due() {
        let working = fake(vec![]);
        let broken = fake(vec![http(400, None), http(400, None)]);
        let channels = [channel("chat", Ok(broken)), channel("oncall", Ok(working))];
        let report = report(&["f1", "f2"]);
        let first = notify(&channels, &report, AlertRecord::default(), &options()).await;
        assert_eq!(received(working), ["f1", "f2"]);
        assert_eq!(first.delivered(), 2);
        let failures = first.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].channel, "chat");
        assert_eq!(failures[0].category, Some(Category::Rejected));
        assert_eq!(failures[0].undelivered, 2);
        // Next pass: the chat channel works again and gets both; oncall gets nothing.
        let second = notify(&channels, &report, first.record, &options()).await;
        assert_eq!(received(broken), ["f1", "f2"]);
        assert_eq!(received(working), ["f1", "f2"]);
        assert!(second.failures().is_empty());
        let third = notify(&channels, &report, second.record, &options()).await;
        assert!(third.deliveries.is_empty());
    }

    #[tokio::test]
    async fn throttling_is_retried_after_the_time_the_service_asks_for() {
        let throttled = fake(vec![
            http(429, Some(Duration::from_millis(20))),
            http(503, None),
        ]);
        let channels = [channel("chat", Ok(throttled))];
        let started = std::time::Instant::now();
        let report = notify(
            &channels,
            &report(&["f1"]),
            AlertRecord::default(),
            &options(),
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(
            report.deliveries[0].result,
            DeliveryResult::Delivered { attempts: 3 }
        );
    }

    #[tokio::test]
    async fn a_channel_that_keeps_failing_skips_its_other_alerts_until_the_next_pass() {
        let down = fake(vec![http(500, None), http(500, None), http(500, None)]);
        let channels = [channel("chat", Ok(down))];
        let report = notify(
            &channels,
            &report(&["f1", "f2"]),
            AlertRecord::default(),
            &options(),
        )
        .await;
        assert!(matches!(
            report.deliveries[0].result,
            DeliveryResult::Failed {
                category: Category::ServerError,
                attempts: 3,
                ..
            }
        ));
        assert!(matches!(
            report.deliveries[1].result,
            DeliveryResult::Skipped { .. }
        ));
        assert!(report.record.is_empty());
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_the_pass_allows_waits_for_the_next_pass() {
        let throttled = fake(vec![http(429, Some(Duration::from_secs(3600)))]);
        let channels = [channel("chat", Ok(throttled))];
        let report = notify(
            &channels,
            &report(&["f1"]),
            AlertRecord::default(),
            &options(),
        )
        .await;
        assert!(matches!(
            report.deliveries[0].result,
            DeliveryResult::Failed {
                category: Category::Throttled,
                attempts: 1,
                ..
            }
        ));
    }

    #[test]
    fn the_waits_are_jittered_exponential_and_bounded_so_channels_do_not_retry_in_lock_step() {
        use backon::BackoffBuilder;
        let retry = RetryPolicy {
            attempts: 6,
            backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(8),
        };
        let waits = |seed: u64| -> Vec<Duration> {
            backoff(retry).with_jitter_seed(seed).build().collect()
        };
        let mut sequences = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let waits = waits(seed);
            assert_eq!(waits.len(), 5, "attempts - 1 waits: {waits:?}");
            // Each wait in [d/2, d) for d = 1 s, 2 s, 4 s, then at most max_wait.
            for (i, wait) in waits.iter().enumerate() {
                let ceiling = Duration::from_secs(1 << i.min(3));
                assert!(
                    *wait >= ceiling / 2 && *wait <= ceiling,
                    "wait {i}: {wait:?}"
                );
                assert!(*wait <= retry.max_wait);
            }
            sequences.insert(waits);
        }
        assert!(
            sequences.len() > 16,
            "jitter spreads the retries: {sequences:?}"
        );
    }

    #[tokio::test]
    async fn a_channel_that_could_not_be_built_reports_every_alert_as_failed() {
        let channels = [channel(
            "chat",
            Err(NotifyError::Setup(
                "secret slack/webhookUrl not found".into(),
            )),
        )];
        let report = notify(
            &channels,
            &report(&["f1"]),
            AlertRecord::default(),
            &options(),
        )
        .await;
        assert_eq!(
            report.failures()[0].error,
            "secret slack/webhookUrl not found"
        );
        assert!(report.record.is_empty());
    }

    #[tokio::test]
    async fn a_dry_run_lists_the_alerts_and_delivers_nothing() {
        let chat = fake(vec![]);
        let channels = [channel("chat", Ok(chat))];
        let dry_run = NotifyOptions {
            dry_run: true,
            ..options()
        };
        let report = notify(
            &channels,
            &report(&["f1"]),
            AlertRecord::default(),
            &dry_run,
        )
        .await;
        assert_eq!(report.deliveries[0].result, DeliveryResult::WouldSend);
        assert!(received(chat).is_empty());
        assert!(report.record.is_empty());
    }

    #[tokio::test]
    async fn nothing_is_resolved_when_the_findings_could_not_be_read() {
        let chat = fake(vec![]);
        let channels = [channel("chat", Ok(chat))];
        let first = notify(
            &channels,
            &report(&["f1"]),
            AlertRecord::default(),
            &options(),
        )
        .await;
        let mut unread = report(&[]);
        unread.failures = vec![
            crate::domain::outcome::Failure::new(
                crate::domain::outcome::Step::ReadFindings,
                Category::Unreachable,
                "timed out",
            )
            .in_region("us-east-1"),
        ];
        unread.listed.clear();
        let second = notify(&channels, &unread, first.record.clone(), &options()).await;
        assert!(second.deliveries.is_empty());
        assert_eq!(second.record, first.record);
        let third = notify(&channels, &report(&[]), second.record, &options()).await;
        assert_eq!(third.deliveries[0].event, AlertEvent::Resolved);
        assert!(third.record.is_empty());
    }
}
