//! The reconcile loop: one `GuardDutyPolicy` → validate, one pass, status.
//!
//! ```text
//!  watch ─> finalizer ─┬─ Apply ─> validate (pure) ─ invalid ─> status (pure) ─> patch (I/O) ─> await change
//!                      │                  └─ valid ─> pass: observe, plan, execute (I/O)
//!                      │                              ─> alerts (I/O) ─> status, events (pure)
//!                      │                              ─> patch if changed, events (I/O) ─> requeue
//!                      └─ Cleanup ─> Retain: AWS is left as it is; the finalizer goes
//!                                 Revert: the recorded changes undone (I/O), then the finalizer goes
//! ```
//!
//! After the pass, the alerts that are due go out ([`crate::notify::dispatch`]), their
//! record kept on the status; events are recorded on transitions only
//! ([`crate::controller::events`]). Failures are retried with exponential backoff per
//! policy. Every reconcile is counted and timed, its pass's findings, actions, alerts
//! and AWS calls recorded ([`Metrics`]); [`run`] serves them with `/healthz` and
//! `/readyz` ([`crate::controller::server`]) and reconciles only while this replica
//! holds the leader Lease ([`crate::controller::leader`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource as _, ResourceExt as _};
use tokio::sync::{oneshot, watch};

use crate::controller::events::{self, EventPublisher};
use crate::controller::leader::{
    LEASE_NAME, LeaderElector, LeaseTimings, identity_from_env, namespace_from_env,
};
use crate::controller::metrics::Metrics;
use crate::controller::outcome::Outcome;
use crate::controller::server::{self, Endpoints};
use crate::controller::status::{alert_record, compute_status, needs_patch};
use crate::domain::alert::AlertLimits;
use crate::domain::known::KnownFindings;
use crate::domain::outcome::Category;
use crate::domain::record::ChangeRecord;
use crate::domain::record::RevertError;
use crate::notify::dispatch::{NotifyOptions, RetryPolicy, build_channels, notify};
use crate::notify::secrets::KubeSecrets;
use crate::pass::{FindingsInput, PassOptions, revert_everywhere, run_pass};
use crate::ports::{AwsFactory, AwsSetupError, Journal, JournalError};
use crate::spec::record::DeletionPolicy;
use crate::spec::{
    API_VERSION, GuardDutyPolicy, GuardDutyPolicyStatus, KIND, MAX_ALERT_RECORD, PolicyOwner,
    ValidSpec,
};

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "guardduty-operator";
/// Held on every policy while the operator may have changed AWS on its behalf.
pub const FINALIZER: &str = "guardduty.security.dev/cleanup";
/// How soon a failed reconcile, or a pass that failed part-way, is first tried again
/// (a shorter `spec.interval` wins for a failed pass); doubled on each failure in a
/// row up to [`MAX_BACKOFF`], with jitter ([`requeue_wait`]).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest wait between attempts after failures in a row.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// At most this many alerts per channel in one pass; the rest go out on the next.
pub const ALERTS_PER_CHANNEL: usize = 50;

/// The namespaces whose policies the operator honours: a policy carries authority
/// over the whole AWS account, so only namespaces the installer names may hold one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedNamespaces {
    /// Every namespace (`--policy-namespace '*'`).
    All,
    Only(BTreeSet<String>),
}

impl AllowedNamespaces {
    /// From the `--policy-namespace` values: `*` alone means every namespace; none
    /// means `fallback` (the operator's own namespace).
    pub fn from_flags(values: &[String], fallback: &str) -> AllowedNamespaces {
        if values.iter().any(|v| v == "*") {
            AllowedNamespaces::All
        } else if values.is_empty() {
            AllowedNamespaces::Only(BTreeSet::from([fallback.to_string()]))
        } else {
            AllowedNamespaces::Only(values.iter().cloned().collect())
        }
    }

    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            AllowedNamespaces::All => true,
            AllowedNamespaces::Only(namespaces) => namespaces.contains(namespace),
        }
    }
}

impl std::fmt::Display for AllowedNamespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowedNamespaces::All => f.write_str("every namespace"),
            AllowedNamespaces::Only(namespaces) => {
                let names: Vec<&str> = namespaces.iter().map(String::as_str).collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

/// What the controller remembers of a policy's last pass: the generation it ran
/// for, when the next pass is due, the status it computed (kept even when the patch
/// failed, so the next pass neither loses the change record nor alerts again), and the
/// open findings it knows of, so the next pass lists only what changed.
#[derive(Debug, Clone)]
struct Memo {
    generation: Option<i64>,
    due: Instant,
    status: GuardDutyPolicyStatus,
    known: KnownFindings,
}

/// What every reconcile shares.
pub struct Context<F> {
    pub client: Client,
    pub aws: F,
    pub metrics: Arc<Metrics>,
    pub events: EventPublisher,
    /// The HTTP client of the Slack, PagerDuty, Jira and ServiceNow channels.
    pub http: reqwest::Client,
    /// How each alert is retried within a pass.
    pub retry: RetryPolicy,
    /// The namespaces whose policies are honoured.
    pub allowed: AllowedNamespaces,
    /// Consecutive failures per policy (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The last pass of each policy, by uid.
    memos: Mutex<HashMap<String, Memo>>,
    /// Finding events waiting for each policy's pass (`--events-queue-url`).
    pub inbox: Option<Arc<crate::events::Inbox>>,
}

impl<F: AwsFactory> Context<F> {
    /// A context with metrics of its own, honouring policies in every namespace.
    pub fn new(client: Client, aws: F) -> Self {
        Context {
            events: EventPublisher::new(client.clone(), events::reporter(identity_from_env())),
            client,
            aws,
            metrics: Arc::default(),
            http: crate::notify::http::client(),
            retry: RetryPolicy::default(),
            allowed: AllowedNamespaces::All,
            failures: Mutex::default(),
            memos: Mutex::default(),
            inbox: None,
        }
    }

    /// The same context, taking finding events from `inbox`.
    pub fn with_inbox(mut self, inbox: Arc<crate::events::Inbox>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The same context, honouring policies only in these namespaces.
    pub fn allowing(mut self, allowed: AllowedNamespaces) -> Self {
        self.allowed = allowed;
        self
    }

    fn memo(&self, uid: &str) -> Option<Memo> {
        self.memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned()
    }

    fn remember(&self, uid: &str, memo: Memo) {
        self.memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string(), memo);
    }

    fn forget(&self, uid: &str) {
        self.memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// How long to wait after one more failure of `policy`: [`requeue_wait`] of the
    /// failures in a row (throttling counts one more).
    fn backoff(&self, policy: &str, throttled: bool) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(policy.to_string()).or_default();
        *count = count.saturating_add(1);
        requeue_wait(*count - 1 + u32::from(throttled), None)
    }

    fn succeeded(&self, policy: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(policy);
    }
}

/// The wait before retrying a policy after `doublings + 1` failures in a row: up to
/// [`RETRY_AFTER`] doubled `doublings` times, at most [`MAX_BACKOFF`], jittered down to
/// as little as half of that (whole seconds), so that the policies an outage failed
/// together do not all retry at the same moment. `seed` fixes the jitter (tests).
pub fn requeue_wait(doublings: u32, seed: Option<u64>) -> Duration {
    // backon's jitter adds up to the delay itself: [d, 2d) for d from half the ceiling.
    let mut schedule = backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_AFTER / 2)
        .with_max_delay(MAX_BACKOFF / 2)
        .without_max_times()
        .with_jitter();
    if let Some(seed) = seed {
        schedule = schedule.with_jitter_seed(seed);
    }
    let wait = backon::BackoffBuilder::build(schedule)
        .nth(doublings.min(16) as usize)
        .unwrap_or(MAX_BACKOFF);
    Duration::from_secs(wait.as_secs().clamp(1, MAX_BACKOFF.as_secs()))
}

/// Why a reconcile failed; the controller logs it and retries after [`requeue_wait`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to reconcile a GuardDutyPolicy without a namespace")]
    NoNamespace,
    #[error("failed to set up AWS")]
    AwsSetup(#[source] AwsSetupError),
    #[error("failed to patch the status of {name}")]
    PatchStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to {}", finalizer_step(.0))]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error(
        "failed to keep the leader lease: stopping so that Kubernetes restarts this replica as a follower"
    )]
    LostLease,
    #[error("failed to revert the policy's changes in AWS (deletionPolicy: Revert)")]
    Revert(#[source] RevertError),
    #[error("failed to list GuardDutyPolicies (is the CRD installed? kubectl apply -f crds/)")]
    ListPolicies(#[source] kube::Error),
    #[error("failed to listen on {addr} for the health and metrics endpoints")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn finalizer_step(error: &finalizer::Error<Error>) -> &'static str {
    match error {
        finalizer::Error::ApplyFailed(_) => "apply the policy",
        finalizer::Error::CleanupFailed(_) => "clean up the policy",
        finalizer::Error::AddFinalizer(_) => "add the finalizer",
        finalizer::Error::RemoveFinalizer(_) => "remove the finalizer",
        _ => "handle the finalizer",
    }
}

impl Error {
    /// AWS throttled the step that failed (the backoff then starts higher).
    pub fn throttled(&self) -> bool {
        match self {
            Error::Revert(error) => error.category() == Category::Throttled,
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.throttled()
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// A short label for logs, metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no-namespace",
            Error::AwsSetup(error) => error.category(),
            Error::PatchStatus { .. } => "patch-status",
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.category()
                }
                _ => "finalizer",
            },
            Error::ListPolicies(_) => "list-policies",
            Error::LostLease => "lost-lease",
            Error::Revert(error) => error.category().as_str(),
            Error::Listen { .. } => "listen",
        }
    }
}

/// Reconciles one policy: the finalizer first, then [`apply`] or [`cleanup`]; counted
/// and timed whatever the result.
pub async fn reconcile<F: AwsFactory>(
    policy: Arc<GuardDutyPolicy>,
    ctx: Arc<Context<F>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let metrics = ctx.metrics.clone();
    let result = reconcile_policy(policy, ctx.clone()).await;
    metrics.reconciled(started.elapsed());
    metrics.set_aws_calls(ctx.aws.call_outcomes());
    result
}

async fn reconcile_policy<F: AwsFactory>(
    policy: Arc<GuardDutyPolicy>,
    ctx: Arc<Context<F>>,
) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<GuardDutyPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    // A policy in a namespace not allowed gets no finalizer and no pass: only a
    // status that says so (a deletion goes through the finalizer, which it may still
    // hold from when it was allowed, and changes nothing in AWS).
    let deleting = policy.meta().deletion_timestamp.is_some();
    if !ctx.allowed.allows(&namespace) && !deleting {
        return disallowed(&policy, &ctx, &api).await;
    }
    let (ctx, api_ref) = (&ctx, &api);
    finalizer(&api, FINALIZER, policy, |event| async move {
        match event {
            Event::Apply(policy) => apply(&policy, ctx, api_ref).await,
            Event::Cleanup(policy) => cleanup(&policy, ctx).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// One pass for a policy that holds the finalizer, and its status: one straight line,
/// one tail.
async fn apply<F: AwsFactory>(
    policy: &GuardDutyPolicy,
    ctx: &Context<F>,
    api: &Api<GuardDutyPolicy>,
) -> Result<Action, Error> {
    let key = policy_key(policy);
    let uid = policy.uid().unwrap_or_else(|| key.clone());
    let generation = policy.meta().generation;
    let memo = ctx.memo(&uid);
    // Status writes (the operator's own included) change no generation: they do not
    // make a pass. The next pass comes at its time, or with a change of the spec, or
    // with finding events: those alone make a pass of their findings only.
    let periodic_wait = memo
        .as_ref()
        .filter(|memo| memo.generation == generation)
        .and_then(|memo| memo.due.checked_duration_since(Instant::now()))
        .filter(|wait| !wait.is_zero());
    let queued = ctx.inbox.as_ref().map(|i| i.take(&key)).unwrap_or_default();
    if let (Some(wait), true) = (periodic_wait, queued.is_empty()) {
        return Ok(Action::requeue(wait));
    }
    let targeted = periodic_wait.is_some();
    // What this operator last computed, even if its patch failed; else the object's.
    let mut known = memo.as_ref().map(|m| m.known.clone()).unwrap_or_default();
    let previous = memo.map(|m| m.status).or_else(|| policy.status.clone());
    let previous = previous.as_ref();

    // 1. Validate (pure), then 2. the pass and its alerts (I/O): what this reconcile
    //    got to.
    let started = domain_now();
    let (outcome, interval) = match policy.spec.validate(&owner_of(policy)) {
        Err(invalid) => (Outcome::Invalid(invalid), None),
        Ok(valid) => {
            if !valid.regions.is_empty() {
                known.retain_regions(&valid.regions);
            }
            let input = if targeted {
                FindingsInput::Given(crate::events::coalesce(&queued))
            } else {
                // A periodic pass takes the events in too, should GuardDuty's listing
                // not show them yet.
                for delivery in &queued {
                    known.heard(&delivery.finding, valid.policy.selects(&delivery.finding));
                }
                FindingsInput::Known {
                    known: known.clone(),
                    full_resync_seconds: valid.full_resync_interval.as_secs() as i64,
                }
            };
            let outcome = run_pass_and_alerts(policy, previous, &valid, ctx, api, input).await;
            if let Outcome::Passed { report, .. } = &outcome {
                known.learn(report, started);
            }
            (outcome, Some(valid.interval))
        }
    };
    // The events are handled when the pass completed; a failed one leaves their
    // messages to come back.
    if let Some(inbox) = &ctx.inbox {
        let handled = match &outcome {
            Outcome::Passed { report, .. } => !report.failed(),
            Outcome::Invalid(_) | Outcome::NamespaceNotAllowed { .. } => true,
            Outcome::SetupFailed(_) => false,
        };
        inbox.settle(&queued, handled);
    }
    log_outcome(policy, &outcome);

    // 3. Status and 4. events (pure), from the outcome and the previous status.
    let status = compute_status(generation, previous, &outcome, now());
    let events = events::transitions(previous, &status, &outcome);

    // 6. When to come back (pure): decided before the patch, so that the memo says so.
    let wait = match interval {
        // An invalid spec waits for the next change: no pass, no retry loop.
        None => None,
        Some(interval) if outcome.needs_retry() => {
            let backoff = ctx.backoff(&key, outcome.throttled());
            Some(match outcome {
                // No pass ran: the backoff alone decides.
                Outcome::SetupFailed(_) => backoff,
                _ => interval.min(backoff),
            })
        }
        Some(interval) => {
            ctx.succeeded(&key);
            Some(interval)
        }
    };
    // A pass of events only keeps the periodic pass when it was due.
    let wait = match periodic_wait {
        Some(periodic) if targeted => Some(wait.map_or(periodic, |w| w.min(periodic))),
        _ => wait,
    };
    let action = wait.map_or_else(Action::await_change, Action::requeue);
    let due = Instant::now() + wait.unwrap_or_default();
    ctx.remember(
        &uid,
        Memo {
            generation,
            // Not yet due until the patch worked: a failed patch is retried.
            due: Instant::now(),
            status: status.clone(),
            known: known.clone(),
        },
    );

    // 5. Patch (I/O), only when something other than a timestamp changed; then the
    //    events, so a failed patch (retried) does not record them twice.
    patch_status_if_changed(api, policy, status.clone()).await?;
    ctx.metrics.policy(&key, &status, interval);
    ctx.remember(
        &uid,
        Memo {
            generation,
            due,
            status,
            known,
        },
    );
    publish(ctx, policy, &events).await;
    ctx.metrics.record(&key, &outcome);
    Ok(action)
}

/// A policy in a namespace the operator does not honour: Ready=False, nothing done.
async fn disallowed<F: AwsFactory>(
    policy: &GuardDutyPolicy,
    ctx: &Context<F>,
    api: &Api<GuardDutyPolicy>,
) -> Result<Action, Error> {
    let previous = policy.status.as_ref();
    let outcome = Outcome::NamespaceNotAllowed {
        namespace: policy.namespace().unwrap_or_default(),
        allowed: ctx.allowed.to_string(),
    };
    let status = compute_status(policy.meta().generation, previous, &outcome, now());
    let events = events::transitions(previous, &status, &outcome);
    patch_status_if_changed(api, policy, status).await?;
    publish(ctx, policy, &events).await;
    Ok(Action::await_change())
}

/// The policy's owner: `namespace/name`.
fn owner_of(policy: &GuardDutyPolicy) -> PolicyOwner {
    PolicyOwner::new(policy.namespace().as_deref(), &policy.name_any())
}

/// The AWS clients, the pass (whose mode decides whether the plan is applied) and the
/// alerts that are due (I/O). Secrets are read from the policy's namespace now, so a
/// rotated secret is used at once.
async fn run_pass_and_alerts<F: AwsFactory>(
    policy: &GuardDutyPolicy,
    previous: Option<&GuardDutyPolicyStatus>,
    valid: &ValidSpec,
    ctx: &Context<F>,
    api: &Api<GuardDutyPolicy>,
    findings: FindingsInput,
) -> Outcome {
    // The first region's clients: the account, and SES/SNS for the alert channels.
    let aws = match ctx
        .aws
        .clients(valid.regions.first().map(String::as_str))
        .await
    {
        Ok(aws) => aws,
        Err(error) => return Outcome::SetupFailed(error),
    };
    let options = PassOptions {
        regions: valid.regions.clone(),
        detector: valid.detector_id.clone(),
        apply: true,
        record: previous.and_then(|s| s.changes.clone()).unwrap_or_default(),
        now: domain_now(),
        findings,
    };
    let journal = StatusJournal {
        api,
        policy,
        previous,
    };
    let report = run_pass(&ctx.aws, &valid.policy, &options, &journal).await;
    let alerts = if valid.notifications.is_empty() {
        None
    } else {
        let namespace = policy.namespace().unwrap_or_default();
        let secrets = KubeSecrets::new(ctx.client.clone(), &namespace);
        let channels = build_channels(&valid.notifications, &secrets, &aws.alerts, &ctx.http).await;
        let options = NotifyOptions {
            limits: AlertLimits {
                per_channel: ALERTS_PER_CHANNEL,
                record_capacity: MAX_ALERT_RECORD,
            },
            retry: ctx.retry,
            account_id: aws.account_id.clone().unwrap_or_default(),
            region: aws.region.clone(),
            dry_run: false,
            now: domain_now(),
        };
        let record = alert_record(previous);
        Some(notify(&channels, &report, record, &options).await)
    };
    let alert_failed = alerts.as_ref().is_some_and(|a| !a.failures().is_empty());
    let compliance = valid.compliance(&report, alert_failed);
    Outcome::Passed {
        report,
        alerts,
        compliance,
    }
}

/// The status as the journal of a pass: before the pass's first change, the status
/// so far with the intent pending in its change record.
struct StatusJournal<'a> {
    api: &'a Api<GuardDutyPolicy>,
    policy: &'a GuardDutyPolicy,
    previous: Option<&'a GuardDutyPolicyStatus>,
}

impl Journal for StatusJournal<'_> {
    async fn write_ahead(&self, record: &ChangeRecord) -> Result<(), JournalError> {
        let status = GuardDutyPolicyStatus {
            changes: Some(record.clone()),
            ..self.previous.cloned().unwrap_or_default()
        };
        apply_status(self.api, self.policy, &status)
            .await
            .map_err(|error| JournalError(crate::ports::error_chain(&error)))
    }
}

/// What went wrong, in the operator's log.
fn log_outcome(policy: &GuardDutyPolicy, outcome: &Outcome) {
    let name = policy.name_any();
    match outcome {
        Outcome::Invalid(invalid) => {
            let message = invalid.to_string().replace('\n', "; ");
            tracing::warn!(policy = %name, %message, "invalid spec");
        }
        Outcome::SetupFailed(error) => {
            tracing::warn!(policy = %name, message = %error, "AWS setup failed");
        }
        Outcome::NamespaceNotAllowed { namespace, allowed } => {
            tracing::warn!(policy = %name, %namespace, %allowed, "namespace not allowed");
        }
        Outcome::Passed { report, .. } => {
            for failure in &report.failures {
                tracing::warn!(
                    policy = %name,
                    step = %failure.step,
                    category = %failure.category,
                    error = %failure.error,
                    "pass failed"
                );
            }
            for failure in outcome.alert_failures() {
                tracing::warn!(
                    policy = %name,
                    channel = %failure.channel,
                    kind = failure.kind,
                    error = %failure.error,
                    undelivered = failure.undelivered,
                    "alerts not delivered"
                );
            }
        }
    }
}

/// Records the events of a reconcile; a failure to record them is logged and counted,
/// never fails the reconcile.
async fn publish<F>(ctx: &Context<F>, policy: &GuardDutyPolicy, events: &[events::EventSpec]) {
    if events.is_empty() {
        return;
    }
    if let Err(error) = ctx.events.publish(&policy.object_ref(&()), events).await {
        ctx.metrics.failed(error.category());
        tracing::warn!(
            policy = %policy.name_any(),
            error = %crate::ports::error_chain(&error),
            "failed to record events"
        );
    }
}

/// Deletion. `Retain` (the default): AWS is left as it is and the finalizer goes.
/// `Revert`: the changes recorded in `status.changes` are undone first (the revoked
/// rules restored, then the operator's rules removed); the finalizer goes only once
/// that completed, so a failure is retried. A policy that never changed AWS (no
/// record) goes at once; groups deleted meanwhile are skipped.
async fn cleanup<F: AwsFactory>(
    policy: &GuardDutyPolicy,
    ctx: &Context<F>,
) -> Result<Action, Error> {
    let name = policy.name_any();
    let namespace = policy.namespace().unwrap_or_default();
    if !ctx.allowed.allows(&namespace) {
        tracing::warn!(
            policy = %name,
            %namespace,
            "policy deleted in a namespace not allowed: nothing is done in AWS"
        );
        return Ok(Action::await_change());
    }
    // What this operator last computed, even if its patch failed; else the object's.
    let memo = policy.uid().and_then(|uid| ctx.memo(&uid));
    let status = memo.map(|m| m.status).or_else(|| policy.status.clone());
    let record = status.as_ref().and_then(|s| s.changes.as_ref());
    match (policy.spec.deletion_policy, record) {
        (DeletionPolicy::Retain, _) => tracing::info!(
            policy = %name,
            "policy deleted: security groups are left as they are (Retain)"
        ),
        (DeletionPolicy::Revert, None) => tracing::info!(
            policy = %name,
            "policy deleted: it changed nothing in AWS, nothing to revert"
        ),
        (DeletionPolicy::Revert, Some(record)) => {
            // The regions and member role the passes used, read raw: an unrelated
            // invalid field must not send the revert elsewhere. None is the SDK's own.
            let regions: Vec<String> = if policy.spec.regions.is_empty() {
                policy
                    .spec
                    .region
                    .iter()
                    .filter(|r| !r.is_empty())
                    .cloned()
                    .collect()
            } else {
                policy.spec.regions.clone()
            };
            let members = policy.spec.member_accounts.as_ref().map(|m| m.to_domain());
            // Revert (I/O; revert_plan decided, pure): restore, then remove, per group,
            // in every region and account the record names.
            let report = revert_everywhere(
                &ctx.aws,
                record,
                &owner_of(policy).to_string(),
                &regions,
                members.as_ref(),
            )
            .await;
            // A failure keeps the finalizer: error_policy logs and counts it, and the
            // deletion is retried; what was reverted already is left as it is.
            report.check().map_err(Error::Revert)?;
            let (restored, removed, groups_gone) = report.counts();
            tracing::info!(
                policy = %name,
                restored,
                removed,
                groups_gone,
                "policy deleted: the operator's changes were reverted (Revert)"
            );
            if report.truncated || report.unreadable > 0 {
                tracing::warn!(
                    policy = %name,
                    truncated = report.truncated,
                    unreadable = report.unreadable,
                    "the record of changes was incomplete: older changes were left as they are"
                );
            }
        }
    }
    ctx.metrics.forget(&policy_key(policy));
    if let Some(uid) = policy.uid() {
        ctx.forget(&uid);
    }
    Ok(Action::await_change())
}

/// Writes `status` by server-side apply on the status subresource, unless it equals
/// the current status but for timestamps and the last sync on record is recent
/// ([`needs_patch`]).
async fn patch_status_if_changed(
    api: &Api<GuardDutyPolicy>,
    policy: &GuardDutyPolicy,
    status: GuardDutyPolicyStatus,
) -> Result<(), Error> {
    let unchanged = policy
        .status
        .as_ref()
        .is_some_and(|old| !needs_patch(old, &status));
    if unchanged {
        return Ok(());
    }
    apply_status(api, policy, &status).await
}

/// Writes `status` by server-side apply on the status subresource.
async fn apply_status(
    api: &Api<GuardDutyPolicy>,
    policy: &GuardDutyPolicy,
    status: &GuardDutyPolicyStatus,
) -> Result<(), Error> {
    let name = policy.name_any();
    let patch = Patch::Apply(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    }));
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
        .await
        .map_err(|source| Error::PatchStatus { name, source })?;
    Ok(())
}

/// `namespace/name`, the `policy` label of the metrics.
fn policy_key(policy: &GuardDutyPolicy) -> String {
    format!(
        "{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    )
}

/// Logs and counts the error and retries later: AWS and API-server errors are usually
/// transient.
pub fn error_policy<F: AwsFactory>(
    policy: Arc<GuardDutyPolicy>,
    error: &Error,
    ctx: Arc<Context<F>>,
) -> Action {
    ctx.metrics.failed(error.category());
    let wait = ctx.backoff(&policy_key(&policy), error.throttled());
    tracing::warn!(
        policy = %policy.name_any(),
        namespace = policy.namespace().as_deref().unwrap_or(""),
        category = error.category(),
        error = %crate::ports::error_chain(error),
        "reconcile failed; retrying in {}s",
        wait.as_secs()
    );
    Action::requeue(wait)
}

/// Runs the controller on every `GuardDutyPolicy` in the cluster until SIGTERM or
/// Ctrl-C, letting running reconciles finish, with `/healthz`, `/readyz` and `/metrics`
/// served on `metrics_addr` (ready once the watch has synced).
/// How the controller is run (its command-line flags).
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Where to serve `/healthz`, `/readyz` and `/metrics`.
    pub metrics_addr: SocketAddr,
    /// The Lease the replicas elect a leader on (in the operator's namespace).
    pub lease_name: String,
    pub lease_timings: LeaseTimings,
    /// `--policy-namespace` values: `*` for every namespace; none for the operator's own.
    pub policy_namespaces: Vec<String>,
    /// `--events-queue-url`: the SQS queue of GuardDuty finding events, if any.
    pub events_queue_url: Option<String>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            lease_name: LEASE_NAME.to_string(),
            lease_timings: LeaseTimings::default(),
            policy_namespaces: Vec::new(),
            events_queue_url: None,
        }
    }
}

pub async fn run<F: AwsFactory>(
    client: Client,
    aws: F,
    options: ControllerOptions,
) -> Result<(), Error> {
    let metrics_addr = options.metrics_addr;
    let own_namespace = namespace_from_env(&client);
    let allowed = AllowedNamespaces::from_flags(&options.policy_namespaces, &own_namespace);
    tracing::info!(namespaces = %allowed, "honouring policies in these namespaces");
    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(|source| Error::Listen {
            addr: metrics_addr,
            source,
        })?;
    let mut context = Context::new(client.clone(), aws).allowing(allowed);
    // Finding events, when a queue is given: an inbox the passes take them from.
    let intake = options.events_queue_url.clone().map(|url| {
        let (inbox, receipts) = crate::events::Inbox::new();
        let inbox = Arc::new(inbox);
        context.inbox = Some(inbox.clone());
        Intake {
            url,
            inbox,
            receipts,
        }
    });
    let ctx = Arc::new(context);
    let endpoints = Endpoints {
        metrics: ctx.metrics.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let ready = endpoints.ready.clone();
    // Healthy from here on, so that the liveness probe passes while the API server
    // is checked, the lease is awaited and the watch syncs.
    let server = tokio::spawn(async move {
        if let Err(error) = server::serve(listener, endpoints).await {
            tracing::error!(%error, "the health and metrics endpoints stopped");
        }
    });

    // Only the holder of the Lease reconciles, so `replicaCount > 1` is safe. A
    // follower is ready (a standby, so rolling updates proceed) and waits.
    let (leading_tx, mut leading) = watch::channel(false);
    let (stop_election, election_stopped) = oneshot::channel::<()>();
    let identity = identity_from_env().unwrap_or_else(|| "guardduty-operator".to_string());
    let elector = LeaderElector::new(
        client.clone(),
        &own_namespace,
        &options.lease_name,
        identity.clone(),
        options.lease_timings,
    );
    let election = tokio::spawn(elector.run(leading_tx, async {
        let _ = election_stopped.await;
    }));
    ready.store(true, Ordering::Release);
    tracing::info!(%identity, lease = %options.lease_name, "waiting to lead");
    // `Some(leads)` once the election decided; `None` on shutdown while following.
    let led = tokio::select! {
        led = leading.wait_for(|leads| *leads) => Some(led.is_ok()),
        () = shutdown_signal() => None,
    };
    let result = match led {
        None => Ok(()),
        Some(false) => Err(Error::LostLease),
        Some(true) => {
            tracing::info!(%identity, "leading: starting the controller");
            ctx.metrics.leading(true);
            tokio::select! {
                result = control(client, ctx, ready, intake) => result,
                // Kube's Controller cannot pause: a replica that lost the lease stops,
                // and Kubernetes restarts it as a follower. A reconcile cut short is
                // safe: authorize comes before revoke, and the next leader converges
                // the rest.
                _ = leading.wait_for(|leads| !*leads) => Err(Error::LostLease),
            }
        }
    };
    // The lease goes only after the controller stopped (its reconciles finished).
    let _ = stop_election.send(());
    let _ = election.await;
    server.abort();
    result
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn control<F: AwsFactory>(
    client: Client,
    ctx: Arc<Context<F>>,
    ready: Arc<AtomicBool>,
    intake: Option<Intake>,
) -> Result<(), Error> {
    let api = Api::<GuardDutyPolicy>::all(client);
    api.list(&ListParams::default().limit(1))
        .await
        .map_err(Error::ListPolicies)?;
    // Every change of a policy triggers a reconcile, the operator's own status patches
    // included: the pass that follows a patch is quiet (no change, so no patch), which
    // bounds it to one extra pass per real change. Filtering those out needs kube's
    // `unstable-runtime` (`Controller::for_stream`), left out on purpose.
    tracing::info!("controller started");
    let controller =
        Controller::new(api, watcher::Config::default().any_semantic()).shutdown_on_signal();
    let store = controller.store();
    let synced = store.clone();
    tokio::spawn(async move {
        if synced.wait_until_ready().await.is_ok() {
            ready.store(true, Ordering::Release);
            tracing::info!("the watch of GuardDutyPolicies has synced: ready");
        }
    });
    // Finding events: each wakes the policies that select it, at once.
    let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
    let intake = match intake {
        None => None,
        Some(Intake {
            url,
            inbox,
            receipts,
        }) => {
            let router = Arc::new(StoreRouter {
                store: store.clone(),
                allowed: ctx.allowed.clone(),
                wake,
            });
            let queue = Arc::new(crate::aws::clients::event_queue(&url, None).await);
            tracing::info!(queue = %url, "reading GuardDuty finding events");
            Some(tokio::spawn(crate::events::run_intake(
                queue,
                router,
                inbox,
                receipts,
                std::future::pending(),
            )))
        }
    };
    // kube's stable API wakes every policy on a trigger (`reconcile_on`, one policy,
    // is `unstable-runtime`): those without events return at once, with no request.
    let woken = futures_util::stream::unfold(woken, |mut woken| async move {
        woken.recv().await.map(|()| ((), woken))
    });
    controller
        .reconcile_all_on(woken)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => {
                    tracing::debug!(policy = %object.name, ?action, "reconciled");
                }
                Err(error) => tracing::debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    if let Some(intake) = intake {
        intake.abort();
    }
    tracing::info!("controller stopped");
    Ok(())
}

/// The finding-event queue of a controller, and the inbox its passes take from.
struct Intake {
    url: String,
    inbox: Arc<crate::events::Inbox>,
    receipts: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Which policies of the watch's store select a finding event: in an allowed
/// namespace, not being deleted, valid, and selecting it (severity, type, region).
struct StoreRouter {
    store: kube::runtime::reflector::Store<GuardDutyPolicy>,
    allowed: AllowedNamespaces,
    wake: tokio::sync::mpsc::UnboundedSender<()>,
}

impl crate::events::Router for StoreRouter {
    fn selecting(&self, finding: &crate::domain::finding::Finding) -> Vec<String> {
        self.store
            .state()
            .iter()
            .filter(|policy| {
                policy.meta().deletion_timestamp.is_none()
                    && self.allowed.allows(&policy.namespace().unwrap_or_default())
            })
            .filter(|policy| match policy.spec.validate(&owner_of(policy)) {
                Ok(valid) => {
                    valid.policy.selects(finding)
                        && (valid.regions.is_empty() || valid.regions.contains(&finding.region))
                }
                Err(_) => false,
            })
            .map(|policy| policy_key(policy))
            .collect()
    }

    fn wake(&self, _: &str) {
        let _ = self.wake.send(());
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn domain_now() -> crate::domain::time::Timestamp {
    crate::domain::time::Timestamp(Timestamp::now().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_waits_up_to_the_doubled_ceiling_jittered_down_to_half_of_it() {
        let mut spread = std::collections::BTreeSet::new();
        for seed in 0..32 {
            for doublings in 0..14 {
                let ceiling = (RETRY_AFTER * 2u32.pow(doublings.min(10))).min(MAX_BACKOFF);
                let wait = requeue_wait(doublings, Some(seed));
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "{doublings} doublings: {wait:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
                assert_eq!(wait.subsec_nanos(), 0, "whole seconds");
            }
            spread.insert(requeue_wait(0, Some(seed)));
        }
        // Policies failing together come back at different times.
        assert!(spread.len() > 8, "{spread:?}");
    }
}
