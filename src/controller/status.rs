//! The status a reconcile writes, computed from its [`Outcome`]: every condition at
//! once, from values, never by reading a status back.
//!
//! Pure and deterministic: no async, no I/O, no clock (`now` is an argument).
//!
//! ```text
//!  previous status ─┐
//!  Outcome ─────────┼─ compute_status ─> status ─ needs_patch(old, new)? ─> patch (I/O)
//!  generation, now ─┘                             (compared ignoring time)
//! ```
//!
//! - Conditions (`metav1.Condition`, sorted by type): `FindingsSynced`,
//!   `SecurityGroupsConverged`, `NotificationsDelivered` (with channels), and `Ready`
//!   (True only when every other one is). A condition's `lastTransitionTime` moves
//!   only when its status does.
//! - Counts of findings per severity band and of security groups managed, converged
//!   and pending; kept from the previous status when the pass stopped before knowing.
//! - `recentActions`: what the pass changed, refused or failed to do, newest first,
//!   bounded; `pendingPlan`: in DryRun, what Enforce would change, bounded;
//!   `changes`: the change record; `alerts`: the alert record.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::controller::outcome::Outcome;
use crate::domain::alert::{AlertRecord, Delivered, ResponseKind};
use crate::domain::compliance::FrameworkState;
use crate::domain::finding::Finding;
use crate::domain::ids::FindingId;
use crate::domain::outcome::{
    Category, Failure, GroupOutcome, PassReport, Service, Step, StepResult,
};
use crate::domain::plan::{ChangeSet, GroupPlan, IpProtocol, Plan, Purpose, Refusal, Verdict};
use crate::domain::policy::Mode;
use crate::domain::security_group::exposures_text;
use crate::domain::severity::SeverityBand;
use crate::notify::dispatch::NotifyReport;
use crate::ports::AwsSetupError;
use crate::spec::{
    ActionKind, AlertsStatus, DeliveredAlert, FindingCounts, GuardDutyPolicyStatus,
    MAX_PENDING_GROUPS, MAX_PENDING_RULES, MAX_RECENT_ACTIONS, PendingGroup, PendingPlan,
    RecentAction, SecurityGroupCounts,
};

/// The conditions of a policy's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConditionType {
    /// Every other condition is True.
    Ready,
    /// The findings were read from GuardDuty (and remediated ones archived).
    FindingsSynced,
    /// Every security group the findings concern admits their ports from trusted
    /// ranges only.
    SecurityGroupsConverged,
    /// Every alert due was delivered (only with notification channels).
    NotificationsDelivered,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => READY,
            ConditionType::FindingsSynced => FINDINGS_SYNCED,
            ConditionType::SecurityGroupsConverged => SECURITY_GROUPS_CONVERGED,
            ConditionType::NotificationsDelivered => NOTIFICATIONS_DELIVERED,
        }
    }
}

pub const READY: &str = "Ready";
pub const FINDINGS_SYNCED: &str = "FindingsSynced";
pub const SECURITY_GROUPS_CONVERGED: &str = "SecurityGroupsConverged";
pub const NOTIFICATIONS_DELIVERED: &str = "NotificationsDelivered";

/// A condition's status, as `metav1.Condition` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// Reads a condition's status as the API server returned it.
    pub fn of(condition: &Condition) -> ConditionStatus {
        match condition.status.as_str() {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `Ready` reason of a refused spec.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// The status to write after a reconcile.
pub fn compute_status(
    generation: Option<i64>,
    previous: Option<&GuardDutyPolicyStatus>,
    outcome: &Outcome,
    now: Time,
) -> GuardDutyPolicyStatus {
    let previous = previous.cloned().unwrap_or_default();
    match outcome {
        Outcome::Invalid(invalid) => {
            let message = invalid
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            invalid_status(generation, previous, &message, now)
        }
        Outcome::SetupFailed(error) => setup_failed_status(generation, previous, error, now),
        Outcome::NamespaceNotAllowed { namespace, allowed } => {
            not_allowed_status(generation, previous, namespace, allowed, now)
        }
        Outcome::Passed {
            report,
            alerts,
            compliance,
        } => passed_status(
            generation,
            previous,
            report,
            alerts.as_ref(),
            compliance,
            now,
        ),
    }
}

/// True when `new` differs from `old` in more than timestamps (`lastSyncTime`,
/// conditions' `lastTransitionTime`, actions' `time`).
pub fn status_changed(old: &GuardDutyPolicyStatus, new: &GuardDutyPolicyStatus) -> bool {
    without_times(old) != without_times(new)
}

/// How old `lastSyncTime` may grow on quiet passes before it is written anyway, so
/// that the `Last sync` column says the operator is alive.
pub const SYNC_REFRESH: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Whether the patch is worth sending: something other than a timestamp changed, or
/// the recorded `lastSyncTime` is more than [`SYNC_REFRESH`] behind the new one.
pub fn needs_patch(old: &GuardDutyPolicyStatus, new: &GuardDutyPolicyStatus) -> bool {
    let stale = match (&old.last_sync_time, &new.last_sync_time) {
        (Some(old), Some(new)) => new
            .0
            .duration_since(old.0)
            .try_into()
            .is_ok_and(|age: std::time::Duration| age > SYNC_REFRESH),
        (None, Some(_)) => true,
        _ => false,
    };
    stale || status_changed(old, new)
}

/// An invalid spec changes `Ready` and `observedGeneration` only: the rest still
/// describes the last pass (its conditions keep their older `observedGeneration`).
fn invalid_status(
    generation: Option<i64>,
    previous: GuardDutyPolicyStatus,
    message: &str,
    now: Time,
) -> GuardDutyPolicyStatus {
    let ready = Decided::falsy(
        ConditionType::Ready,
        INVALID_SPEC,
        format!(
            "the spec is invalid, so no pass ran: {message}. Fix the spec; the operator \
             retries when it changes"
        ),
    );
    GuardDutyPolicyStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, vec![ready], generation, &now),
        // No pass of this spec: no control is claimed.
        compliance: Vec::new(),
        ..previous
    }
}

/// The `Ready` reason of a policy in a namespace the operator does not honour.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";

/// A policy the operator does not honour: `Ready` says why and who decides.
fn not_allowed_status(
    generation: Option<i64>,
    previous: GuardDutyPolicyStatus,
    namespace: &str,
    allowed: &str,
    now: Time,
) -> GuardDutyPolicyStatus {
    let ready = Decided::falsy(
        ConditionType::Ready,
        NAMESPACE_NOT_ALLOWED,
        format!(
            "policies in namespace {namespace} are not honoured, so nothing is done in AWS: a \
             policy acts on the whole AWS account, and the operator honours only {allowed} \
             (--policy-namespace; chart value policyNamespaces)"
        ),
    );
    GuardDutyPolicyStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, vec![ready], generation, &now),
        // No pass of this spec: no control is claimed.
        compliance: Vec::new(),
        ..previous
    }
}

/// No pass ran because AWS could not be set up: the findings are not synced (the
/// counts still describe the last pass that ran), and `Ready` says why.
fn setup_failed_status(
    generation: Option<i64>,
    previous: GuardDutyPolicyStatus,
    error: &AwsSetupError,
    now: Time,
) -> GuardDutyPolicyStatus {
    let synced = Decided::falsy(
        ConditionType::FindingsSynced,
        error.reason(),
        format!("{error}; the operator retries with backoff"),
    );
    let ready = ready(&[&synced]);
    GuardDutyPolicyStatus {
        observed_generation: generation,
        conditions: merge_conditions(&previous.conditions, vec![synced, ready], generation, &now),
        // No pass ran: no control is claimed.
        compliance: Vec::new(),
        ..previous
    }
}

fn passed_status(
    generation: Option<i64>,
    previous: GuardDutyPolicyStatus,
    report: &PassReport,
    alerts: Option<&NotifyReport>,
    compliance: &[FrameworkState],
    now: Time,
) -> GuardDutyPolicyStatus {
    let read = report.findings_read();
    let tally = report
        .plan
        .as_ref()
        .map(|plan| GroupTally::of(plan, report));
    let synced = findings_synced(report);
    let converged = groups_converged(report, tally.as_ref());
    let delivered = alerts.map(notifications_delivered);
    let mut decided = vec![synced, converged];
    decided.extend(delivered);
    let ready = ready(&decided.iter().collect::<Vec<_>>());
    decided.push(ready);
    let mut conditions = merge_conditions(&previous.conditions, decided, generation, &now);
    if alerts.is_none() {
        // Without channels the condition goes, with the record.
        conditions.retain(|c| c.type_ != NOTIFICATIONS_DELIVERED);
    }
    let new_actions = actions(report, &now);
    if report.targeted {
        // A pass about an event's findings: what it did joins the status; the
        // picture of every finding and group stays the last full pass's, unless the
        // pass failed, which shows at once.
        return GuardDutyPolicyStatus {
            observed_generation: generation,
            conditions: if report.failed() {
                conditions
            } else {
                previous.conditions.clone()
            },
            recent_actions: merge_actions(new_actions, previous.recent_actions),
            changes: (!report.record.is_empty()).then(|| report.record.clone()),
            alerts: alerts.map(alerts_status).or(previous.alerts),
            ..previous
        };
    }
    GuardDutyPolicyStatus {
        observed_generation: generation,
        conditions,
        last_sync_time: if read {
            Some(now.clone())
        } else {
            previous.last_sync_time
        },
        findings: if read {
            Some(count_findings(&report.findings))
        } else {
            previous.findings
        },
        security_groups: tally
            .as_ref()
            .map(GroupTally::counts)
            .or(previous.security_groups),
        recent_actions: merge_actions(new_actions, previous.recent_actions),
        pending_plan: match &report.plan {
            _ if report.applied => None,
            Some(plan) => pending_plan(plan),
            None => previous.pending_plan,
        },
        changes: (!report.record.is_empty()).then(|| report.record.clone()),
        alerts: alerts.map(alerts_status),
        compliance: compliance.to_vec(),
    }
}

// ── alerts ───────────────────────────────────────────────────────────────────

/// The alert record the last pass left on the status.
pub fn alert_record(status: Option<&GuardDutyPolicyStatus>) -> AlertRecord {
    let entries = status
        .and_then(|s| s.alerts.as_ref())
        .map(|alerts| alerts.delivered.as_slice())
        .unwrap_or_default();
    AlertRecord::from_entries(entries.iter().filter_map(|entry| {
        Some(Delivered {
            channel: entry.channel.clone(),
            finding: FindingId::parse(&entry.finding).ok()?,
            finding_type: entry.finding_type.clone(),
            severity: entry.severity,
            response: response_kind(&entry.response)?,
            since: entry.since.clone(),
            account: entry.account.clone(),
            region: entry.region.clone(),
        })
    }))
}

fn response_kind(text: &str) -> Option<ResponseKind> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

fn response_text(kind: ResponseKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The record and the failing channels of a pass's alerting.
fn alerts_status(notify: &NotifyReport) -> AlertsStatus {
    AlertsStatus {
        delivered: notify
            .record
            .entries()
            .map(|d| DeliveredAlert {
                channel: d.channel.clone(),
                finding: d.finding.to_string(),
                finding_type: d.finding_type.clone(),
                severity: d.severity,
                response: response_text(d.response),
                since: d.since.clone(),
                account: d.account.clone(),
                region: d.region.clone(),
            })
            .collect(),
        failing_channels: notify
            .failures()
            .iter()
            .map(|f| f.channel.clone())
            .collect(),
    }
}

fn notifications_delivered(notify: &NotifyReport) -> Decided {
    let failures = notify.failures();
    let deferred: usize = notify.deferred.values().sum();
    let withheld: usize = notify.withheld.values().sum();
    let held = if deferred > 0 {
        format!(
            "; {} held for later passes (per-pass limit or a full record)",
            plural(deferred, "alert")
        )
    } else {
        String::new()
    };
    if withheld > 0 && failures.is_empty() {
        let channels: Vec<&str> = notify.withheld.keys().map(String::as_str).collect();
        return Decided::falsy(
            ConditionType::NotificationsDelivered,
            "RecordFull",
            format!(
                "{} withheld: the alert record of {} is full of findings at least as severe \
                 (at most {} entries); they go out as findings are resolved{held}",
                plural(withheld, "alert"),
                channels.join(", "),
                crate::spec::MAX_ALERT_RECORD
            ),
        );
    }
    if failures.is_empty() {
        Decided::truthy(
            ConditionType::NotificationsDelivered,
            "Delivered",
            // The same words whether or not this pass had alerts to send, so a quiet
            // pass changes nothing.
            format!("every alert due was delivered{held}"),
        )
    } else {
        let channels: Vec<String> = failures
            .iter()
            .map(|f| format!("{} ({}): {}", f.channel, f.kind, f.error))
            .collect();
        let undelivered: usize = failures.iter().map(|f| f.undelivered).sum();
        Decided::falsy(
            ConditionType::NotificationsDelivered,
            "DeliveryFailed",
            format!(
                "{} not delivered, tried again next pass: {}{held}",
                plural(undelivered, "alert"),
                channels.join("; ")
            ),
        )
    }
}

// ── conditions ───────────────────────────────────────────────────────────────

/// A condition as this pass decides it, before its times are set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decided {
    type_: ConditionType,
    status: ConditionStatus,
    reason: String,
    message: String,
}

impl Decided {
    fn truthy(type_: ConditionType, reason: &str, message: String) -> Decided {
        Decided {
            type_,
            status: ConditionStatus::True,
            reason: reason.to_string(),
            message,
        }
    }

    fn falsy(type_: ConditionType, reason: &str, message: String) -> Decided {
        Decided {
            status: ConditionStatus::False,
            ..Decided::truthy(type_, reason, message)
        }
    }

    fn unknown(type_: ConditionType, reason: &str, message: String) -> Decided {
        Decided {
            status: ConditionStatus::Unknown,
            ..Decided::truthy(type_, reason, message)
        }
    }
}

/// The new conditions over the previous ones: `lastTransitionTime` kept when the
/// status is the same, `now` otherwise; conditions this pass does not decide are
/// kept as they were; sorted by type.
fn merge_conditions(
    previous: &[Condition],
    decided: Vec<Decided>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|old| !decided.iter().any(|d| d.type_.as_str() == old.type_))
        .cloned()
        .collect();
    for verdict in decided {
        let last_transition_time = previous
            .iter()
            .find(|old| {
                old.type_ == verdict.type_.as_str() && ConditionStatus::of(old) == verdict.status
            })
            .map_or_else(|| now.clone(), |old| old.last_transition_time.clone());
        conditions.push(Condition {
            type_: verdict.type_.as_str().to_string(),
            status: verdict.status.as_str().to_string(),
            reason: verdict.reason,
            message: verdict.message,
            last_transition_time,
            observed_generation: generation,
        });
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    conditions
}

fn findings_synced(report: &PassReport) -> Decided {
    let guardduty = report
        .failures
        .iter()
        .find(|f| f.step.service() == Service::GuardDuty || f.step.reads_findings());
    match guardduty {
        Some(failure) => Decided::falsy(
            ConditionType::FindingsSynced,
            &failure_reason(failure),
            failure_message(failure),
        ),
        None => Decided::truthy(
            ConditionType::FindingsSynced,
            "FindingsRead",
            format!(
                "read {} from GuardDuty {}",
                plural(report.findings.len(), "finding"),
                detectors_text(report)
            ),
        ),
    }
}

/// `detector d1` or `detectors d1 (us-east-1), d2 (eu-west-1)`.
fn detectors_text(report: &PassReport) -> String {
    match report.detectors.len() {
        0 => "detector (unknown)".to_string(),
        1 => format!(
            "detector {}",
            report.detectors.values().next().unwrap_or(&String::new())
        ),
        _ => format!(
            "detectors {}",
            report
                .regions
                .iter()
                .filter_map(|r| report.detectors.get(r).map(|d| format!("{d} ({r})")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A PascalCase reason from the failure's category and the service of its step.
fn failure_reason(failure: &Failure) -> String {
    let service = failure.step.service();
    match failure.category {
        Category::Unreachable => format!("{service}Unreachable"),
        Category::AccessDenied => "AccessDenied".to_string(),
        Category::Throttled => format!("{service}Throttled"),
        Category::NoDetector => "NoDetector".to_string(),
        Category::NotFound => format!("{service}NotFound"),
        Category::Quota => format!("{service}QuotaExceeded"),
        _ => format!("{service}Error"),
    }
}

/// What failed, and what a person can do about it.
fn failure_message(failure: &Failure) -> String {
    let hint = match failure.category {
        Category::AccessDenied => {
            ". Grant the operator's IAM role the permissions of the IAM policy in the README"
        }
        Category::Unreachable => {
            ". Check the network path to AWS, the region and the credentials; the operator retries"
        }
        Category::Throttled => ". AWS is throttling the operator; it retries with backoff",
        _ => "",
    };
    format!("{failure}{hint}")
}

/// How the plan's groups fared this pass.
#[derive(Debug, Default)]
struct GroupTally<'a> {
    managed: usize,
    converged: usize,
    /// Changes made this pass (Enforce), included in `converged`.
    changed: usize,
    /// Changes planned and not made (DryRun, or a pass that did not apply).
    unapplied: usize,
    failed: Vec<&'a GroupOutcome>,
    refused: Vec<(&'a GroupPlan, &'a Refusal)>,
    not_found: Vec<&'a GroupPlan>,
    mode: Mode,
}

impl<'a> GroupTally<'a> {
    fn of(plan: &'a Plan, report: &'a PassReport) -> GroupTally<'a> {
        let mut tally = GroupTally {
            managed: plan.groups.len(),
            mode: plan.mode,
            ..GroupTally::default()
        };
        for group in &plan.groups {
            match &group.verdict {
                Verdict::Converged | Verdict::Exempt => tally.converged += 1,
                Verdict::Change(_) if report.applied => match report.outcome(&group.group) {
                    Some(outcome) if outcome.succeeded() => {
                        tally.converged += 1;
                        tally.changed += 1;
                    }
                    Some(outcome) => tally.failed.push(outcome),
                    None => tally.unapplied += 1,
                },
                Verdict::Change(_) => tally.unapplied += 1,
                Verdict::Refused(refusal) => tally.refused.push((group, refusal)),
                Verdict::NotFound => tally.not_found.push(group),
            }
        }
        tally
    }

    fn counts(&self) -> SecurityGroupCounts {
        SecurityGroupCounts {
            managed: count(self.managed),
            converged: count(self.converged),
            pending: count(self.managed - self.converged),
        }
    }
}

fn groups_converged(report: &PassReport, tally: Option<&GroupTally<'_>>) -> Decided {
    let Some(tally) = tally else {
        return not_planned(report);
    };
    // A region or account whose groups could not be read, while others were planned.
    if let Some(failure) = report.failures.iter().find(|f| {
        matches!(
            f.step,
            Step::IdentifyAccount
                | Step::AssumeRole
                | Step::DescribeInstances
                | Step::FindWatchedGroups
                | Step::DescribeGroups
        )
    }) {
        return Decided::falsy(
            ConditionType::SecurityGroupsConverged,
            "ObserveFailed",
            format!(
                "some security groups were not checked: {}",
                failure_message(failure)
            ),
        );
    }
    let groups = |n| plural(n, "security group");
    if let Some(first) = tally.failed.first() {
        return Decided::falsy(
            ConditionType::SecurityGroupsConverged,
            "ChangesFailed",
            format!(
                "failed to change {}; first, {}: {}. The next pass retries",
                groups(tally.failed.len()),
                first.group,
                first.error()
            ),
        );
    }
    if let Some((group, refusal)) = tally.refused.first() {
        return Decided::falsy(
            ConditionType::SecurityGroupsConverged,
            "Refused",
            format!(
                "refused to change {}; first, {}: {refusal}",
                groups(tally.refused.len()),
                group.group
            ),
        );
    }
    if tally.unapplied > 0 {
        let why = if tally.mode == Mode::DryRun {
            "remediation.mode is DryRun, so nothing was changed: see status.pendingPlan, and \
             set spec.remediation.mode to Enforce to apply it"
        } else {
            "the pass did not apply them"
        };
        return Decided::falsy(
            ConditionType::SecurityGroupsConverged,
            "ChangesPending",
            format!(
                "{} {} changes planned; {why}",
                groups(tally.unapplied),
                if tally.unapplied == 1 { "has" } else { "have" }
            ),
        );
    }
    if let Some(first) = tally.not_found.first() {
        return Decided::falsy(
            ConditionType::SecurityGroupsConverged,
            "GroupsNotFound",
            format!(
                "{} concerned by findings no longer {} (first, {}); the next pass reads the \
                 instances' groups again",
                groups(tally.not_found.len()),
                if tally.not_found.len() == 1 {
                    "exists"
                } else {
                    "exist"
                },
                first.group
            ),
        );
    }
    converged(tally)
}

fn converged(tally: &GroupTally<'_>) -> Decided {
    if tally.mode == Mode::Off {
        return Decided::truthy(
            ConditionType::SecurityGroupsConverged,
            "RemediationOff",
            "remediation.mode is Off: findings are reported, no security group is checked or \
             changed"
                .to_string(),
        );
    }
    // What this pass changed is in recentActions; the condition says only how
    // things stand, so the pass after a fix is quiet.
    let message = match tally.managed {
        0 => "no security group is concerned by the findings".to_string(),
        managed => format!(
            "all {} admit the findings' ports from trusted ranges only",
            plural(managed, "security group")
        ),
    };
    Decided::truthy(ConditionType::SecurityGroupsConverged, "Converged", message)
}

/// The pass has no plan: it stopped before planning, or (archive failed) after
/// applying it without reporting it.
fn not_planned(report: &PassReport) -> Decided {
    let Some(failure) = report.failure() else {
        return Decided::unknown(
            ConditionType::SecurityGroupsConverged,
            "NotPlanned",
            "the pass made no plan".to_string(),
        );
    };
    if report.applied {
        let failed = report.outcomes.iter().filter(|o| !o.succeeded()).count();
        return Decided::unknown(
            ConditionType::SecurityGroupsConverged,
            "ArchiveFailed",
            format!(
                "changes were applied to {} ({failed} failed), then the pass stopped: {}",
                plural(report.outcomes.len(), "security group"),
                failure_message(failure)
            ),
        );
    }
    Decided::falsy(
        ConditionType::SecurityGroupsConverged,
        "ObserveFailed",
        format!(
            "the pass stopped before planning, so the security groups were not checked: {}",
            failure_message(failure)
        ),
    )
}

fn ready(parts: &[&Decided]) -> Decided {
    match parts
        .iter()
        .find(|part| part.status != ConditionStatus::True)
    {
        Some(failing) => Decided::falsy(
            ConditionType::Ready,
            &failing.reason,
            format!("{}: {}", failing.type_.as_str(), failing.message),
        ),
        None => Decided::truthy(
            ConditionType::Ready,
            "Ready",
            "the last pass read the findings and every security group they concern is converged"
                .to_string(),
        ),
    }
}

// ── counts ───────────────────────────────────────────────────────────────────

fn count_findings(findings: &[Finding]) -> FindingCounts {
    let mut counts = FindingCounts {
        total: count(findings.len()),
        ..FindingCounts::default()
    };
    for finding in findings {
        let band = match finding.severity.band() {
            SeverityBand::Low => &mut counts.low,
            SeverityBand::Medium => &mut counts.medium,
            SeverityBand::High => &mut counts.high,
            SeverityBand::Critical => &mut counts.critical,
        };
        *band += 1;
    }
    counts
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

// ── recent actions ───────────────────────────────────────────────────────────

/// What this pass did, most important first: failures, refusals, then changes in
/// plan order (authorize before revoke, as they were made).
fn actions(report: &PassReport, now: &Time) -> Vec<RecentAction> {
    let Some(plan) = &report.plan else {
        return Vec::new();
    };
    let mut actions = Vec::new();
    for group in &plan.groups {
        match &group.verdict {
            Verdict::Refused(refusal) => actions.push(refused(group, refusal, now)),
            Verdict::Change(change) if report.applied => {
                if let Some(outcome) = report.outcome(&group.group) {
                    actions.extend(changed(group, change, outcome, now));
                }
            }
            _ => {}
        }
    }
    actions.sort_by_key(|action| match action.kind {
        ActionKind::Failed => 0,
        ActionKind::Refused => 1,
        ActionKind::Authorized | ActionKind::Revoked => 2,
    });
    actions
}

/// New actions first, then the previous ones that the new ones do not repeat
/// (ignoring time), at most [`MAX_RECENT_ACTIONS`]: a refusal or failure seen on
/// every pass stays one entry.
fn merge_actions(new: Vec<RecentAction>, previous: Vec<RecentAction>) -> Vec<RecentAction> {
    let mut merged = new;
    let fresh = merged.len();
    for old in previous {
        if merged.len() >= MAX_RECENT_ACTIONS {
            break;
        }
        if !merged[..fresh].iter().any(|new| same_action(new, &old)) {
            merged.push(old);
        }
    }
    merged.truncate(MAX_RECENT_ACTIONS);
    merged
}

fn same_action(a: &RecentAction, b: &RecentAction) -> bool {
    RecentAction {
        time: epoch(),
        ..a.clone()
    } == RecentAction {
        time: epoch(),
        ..b.clone()
    }
}

/// An action on `group`, with its first finding; the message says when more
/// findings concern the group.
fn action(group: &GroupPlan, kind: ActionKind, message: String, now: &Time) -> RecentAction {
    let more = group.findings.len().saturating_sub(1);
    let message = if more > 0 {
        let noun = if more == 1 { "finding" } else { "findings" };
        format!("{message} (and {more} more {noun})")
    } else {
        message
    };
    RecentAction {
        time: now.clone(),
        kind,
        group: group.group.to_string(),
        rule: None,
        source: None,
        protocol: None,
        ports: None,
        finding_id: group.findings.first().map(ToString::to_string),
        message: Some(message),
    }
}

fn refused(group: &GroupPlan, refusal: &Refusal, now: &Time) -> RecentAction {
    let mut entry = action(group, ActionKind::Refused, refusal.to_string(), now);
    if let Refusal::AllTrafficRule { rule, source } = refusal {
        entry.rule = Some(rule.to_string());
        entry.source = Some(source.to_string());
    }
    entry
}

/// One entry per rule authorized and revoked, or one per failed step.
fn changed(
    group: &GroupPlan,
    change: &ChangeSet,
    outcome: &GroupOutcome,
    now: &Time,
) -> Vec<RecentAction> {
    let mut entries = Vec::new();
    match &outcome.authorize {
        StepResult::Done { rule_ids, .. } => {
            // Rule ids are matched to rules only when AWS reported one per rule.
            let ids_known = rule_ids.len() == change.authorize.len();
            for (index, auth) in change.authorize.iter().enumerate() {
                let why = match &auth.purpose {
                    Purpose::Trusted => format!("trusted access to {}", auth.what()),
                    Purpose::Narrowed { replaces } => {
                        format!("{} kept open from narrowed rule {replaces}", auth.what())
                    }
                    Purpose::Split { replaces } => format!(
                        "{} kept open from split all-traffic rule {replaces}",
                        auth.what()
                    ),
                };
                let mut entry = action(group, ActionKind::Authorized, why, now);
                entry.rule = ids_known.then(|| rule_ids[index].to_string());
                entry.source = Some(auth.source.to_string());
                entry.protocol = rule_protocol(auth.protocol);
                entry.ports = Some(auth.ports.to_string());
                entries.push(entry);
            }
        }
        StepResult::Failed { category, error } => {
            let mut message = format!(
                "failed to authorize {} ({category}): {error}",
                plural(change.authorize.len(), "rule")
            );
            if let StepResult::NotRun { reason } = &outcome.revoke {
                message.push_str(&format!("; nothing revoked: {reason}"));
            }
            entries.push(action(group, ActionKind::Failed, message, now));
        }
        StepResult::NotNeeded | StepResult::NotRun { .. } => {}
    }
    match &outcome.revoke {
        StepResult::Done { .. } => {
            for revocation in &change.revoke {
                let message = format!(
                    "closed {} to {}",
                    exposures_text(&revocation.exposed),
                    revocation.source
                );
                let mut entry = action(group, ActionKind::Revoked, message, now);
                entry.rule = Some(revocation.rule.to_string());
                entry.source = Some(revocation.source.to_string());
                entry.protocol = rule_protocol(revocation.protocol);
                entry.ports = Some(revocation.ports.to_string());
                entries.push(entry);
            }
        }
        StepResult::Failed { category, error } => {
            let message = format!(
                "failed to revoke {} ({category}): {error}; the trusted rules are in place, the \
                 next pass retries",
                plural(change.revoke.len(), "rule")
            );
            entries.push(action(group, ActionKind::Failed, message, now));
        }
        StepResult::NotNeeded | StepResult::NotRun { .. } => {}
    }
    entries
}

/// The protocol of a recorded action when it is not TCP (the default).
fn rule_protocol(protocol: IpProtocol) -> Option<String> {
    (protocol != IpProtocol::Tcp).then(|| protocol.as_str().to_string())
}

// ── pending plan ─────────────────────────────────────────────────────────────

/// The changes planned and not made, bounded; `None` when there are none.
fn pending_plan(plan: &Plan) -> Option<PendingPlan> {
    let changes: Vec<(&GroupPlan, &ChangeSet)> = plan.changes().collect();
    if changes.is_empty() {
        return None;
    }
    Some(PendingPlan {
        groups: changes
            .iter()
            .take(MAX_PENDING_GROUPS)
            .map(|(group, change)| pending_group(group, change))
            .collect(),
        truncated: count(changes.len().saturating_sub(MAX_PENDING_GROUPS)),
    })
}

fn pending_group(group: &GroupPlan, change: &ChangeSet) -> PendingGroup {
    let authorize = change
        .authorize
        .iter()
        .take(MAX_PENDING_RULES)
        .map(|a| format!("{} {}", a.source, a.what()))
        .collect();
    let revoke = change
        .revoke
        .iter()
        .take(MAX_PENDING_RULES)
        .map(|r| format!("{} {} {}", r.rule, r.source, r.what()))
        .collect();
    let omitted = change.authorize.len().saturating_sub(MAX_PENDING_RULES)
        + change.revoke.len().saturating_sub(MAX_PENDING_RULES);
    PendingGroup {
        group: group.group.to_string(),
        finding_id: group.findings.first().map(ToString::to_string),
        authorize,
        revoke,
        omitted_rules: count(omitted),
    }
}

// ── comparison ───────────────────────────────────────────────────────────────

fn epoch() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

fn without_times(status: &GuardDutyPolicyStatus) -> GuardDutyPolicyStatus {
    let mut status = status.clone();
    status.last_sync_time = None;
    for condition in &mut status.conditions {
        condition.last_transition_time = epoch();
    }
    for action in &mut status.recent_actions {
        action.time = epoch();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{World, failed_at};
    use crate::domain::outcome::Step;
    use crate::domain::policy::Policy;
    use crate::domain::security_group::{PortRange, Traffic};

    // ── fixtures ─────────────────────────────────────────────────────────────

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + second).unwrap())
    }

    fn status_after(report: &PassReport) -> GuardDutyPolicyStatus {
        compute_status(Some(1), None, &Outcome::passed(report.clone()), at(0))
    }

    fn next(
        previous: &GuardDutyPolicyStatus,
        report: &PassReport,
        now: Time,
    ) -> GuardDutyPolicyStatus {
        compute_status(
            Some(1),
            Some(previous),
            &Outcome::passed(report.clone()),
            now,
        )
    }

    fn condition<'a>(status: &'a GuardDutyPolicyStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {status:#?}"))
    }

    /// (status, reason) of a condition.
    fn state<'a>(status: &'a GuardDutyPolicyStatus, type_: &str) -> (&'a str, &'a str) {
        let c = condition(status, type_);
        (c.status.as_str(), c.reason.as_str())
    }

    // ── generation and sync time ─────────────────────────────────────────────

    #[test]
    fn observed_generation_is_the_generation_of_the_spec_the_pass_ran_for() {
        let report = World::open_ssh(1).dry_run();
        let status = compute_status(Some(7), None, &Outcome::passed(report.clone()), at(0));
        assert_eq!(status.observed_generation, Some(7));
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(7))
        );
    }

    #[test]
    fn last_sync_time_is_now_when_the_findings_were_read() {
        let world = World::open_ssh(1);
        let first = status_after(&world.enforced());
        assert_eq!(first.last_sync_time, Some(at(0)));
        let second = next(&first, &world.enforced(), at(60));
        assert_eq!(second.last_sync_time, Some(at(60)));
    }

    #[test]
    fn last_sync_time_and_counts_are_kept_when_the_findings_could_not_be_read() {
        let world = World::open_ssh(2);
        let first = status_after(&world.dry_run());
        let failed = next(
            &first,
            &failed_at(&world, Step::ReadFindings, Category::Unreachable),
            at(60),
        );
        assert_eq!(failed.last_sync_time, Some(at(0)));
        assert_eq!(failed.findings, first.findings);
        assert_eq!(failed.security_groups, first.security_groups);
        assert_eq!(failed.pending_plan, first.pending_plan);
    }

    // ── conditions ───────────────────────────────────────────────────────────

    #[test]
    fn every_condition_is_true_and_sorted_by_type_when_every_group_converged() {
        let status = status_after(&World::open_ssh(2).enforced());
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [FINDINGS_SYNCED, READY, SECURITY_GROUPS_CONVERGED]);
        assert_eq!(state(&status, FINDINGS_SYNCED), ("True", "FindingsRead"));
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("True", "Converged")
        );
        assert_eq!(state(&status, READY), ("True", "Ready"));
        assert_eq!(
            condition(&status, SECURITY_GROUPS_CONVERGED).message,
            "all 2 security groups admit the findings' ports from trusted ranges only"
        );
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.last_transition_time == at(0))
        );
    }

    #[test]
    fn unreachable_guardduty_makes_findings_synced_false_with_the_failed_step() {
        let status = status_after(&failed_at(
            &World::default(),
            Step::ReadFindings,
            Category::Unreachable,
        ));
        assert_eq!(
            state(&status, FINDINGS_SYNCED),
            ("False", "GuardDutyUnreachable")
        );
        assert!(condition(&status, FINDINGS_SYNCED).message.starts_with(
            "failed to read findings in us-east-1: connection refused. Check the network"
        ),);
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("False", "ObserveFailed")
        );
        assert_eq!(state(&status, READY), ("False", "GuardDutyUnreachable"));
        assert_eq!(status.last_sync_time, None);
    }

    #[test]
    fn access_denied_on_ec2_keeps_findings_synced_and_stops_before_planning() {
        let world = World::open_ssh(3);
        let status = status_after(&failed_at(
            &world,
            Step::DescribeInstances,
            Category::AccessDenied,
        ));
        assert_eq!(state(&status, FINDINGS_SYNCED), ("True", "FindingsRead"));
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("False", "ObserveFailed")
        );
        assert!(
            condition(&status, SECURITY_GROUPS_CONVERGED)
                .message
                .contains("failed to describe instances in us-east-1: connection refused. Grant the operator's IAM role")
        );
        assert_eq!(state(&status, READY), ("False", "ObserveFailed"));
        assert_eq!(status.findings.unwrap().total, 3);
        assert_eq!(status.security_groups, None);
    }

    #[test]
    fn missing_detector_is_named_as_the_reason() {
        let status = status_after(&failed_at(
            &World::default(),
            Step::FindDetector,
            Category::NoDetector,
        ));
        assert_eq!(state(&status, FINDINGS_SYNCED), ("False", "NoDetector"));
    }

    #[test]
    fn dry_run_changes_are_pending_with_their_count() {
        let status = status_after(&World::open_ssh(3).dry_run());
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("False", "ChangesPending")
        );
        assert_eq!(
            condition(&status, SECURITY_GROUPS_CONVERGED).message,
            "3 security groups have changes planned; remediation.mode is DryRun, so nothing was \
             changed: see status.pendingPlan, and set spec.remediation.mode to Enforce to apply it"
        );
        assert_eq!(state(&status, READY), ("False", "ChangesPending"));
    }

    #[test]
    fn failed_change_makes_groups_not_converged_with_the_error() {
        let status = status_after(&World::open_ssh(2).enforced_failing(&["sg-2"]));
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("False", "ChangesFailed")
        );
        assert_eq!(
            condition(&status, SECURITY_GROUPS_CONVERGED).message,
            "failed to change 1 security group; first, sg-2: UnauthorizedOperation: not allowed. \
             The next pass retries"
        );
    }

    #[test]
    fn refused_groups_are_counted_and_the_first_reason_is_named() {
        let report = World::open_ssh(1)
            .with_open_group("a1", Traffic::All)
            .with_finding("fa1", 5.0, "i-a1")
            .with_open_group("a2", Traffic::All)
            .with_finding("fa2", 5.0, "i-a2")
            .enforced();
        let status = status_after(&report);
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("False", "Refused")
        );
        assert_eq!(
            condition(&status, SECURITY_GROUPS_CONVERGED).message,
            "refused to change 2 security groups; first, sg-a1: rule sgr-a1 allows all traffic \
             from 0.0.0.0/0; split it into per-protocol rules (or set \
             remediation.allTrafficRules: Split), then the operator can narrow it"
        );
    }

    #[test]
    fn ready_takes_the_reason_and_message_of_the_first_failing_condition() {
        let mut report = World::open_ssh(1).enforced_failing(&["sg-1"]);
        report.failures = vec![
            crate::domain::outcome::Failure::new(
                Step::Archive,
                Category::AccessDenied,
                "AccessDeniedException: no",
            )
            .in_region("us-east-1"),
        ];
        let status = status_after(&report);
        assert_eq!(state(&status, FINDINGS_SYNCED), ("False", "AccessDenied"));
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("False", "ChangesFailed")
        );
        let ready = condition(&status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "AccessDenied")
        );
        assert!(ready.message.starts_with(
            "FindingsSynced: failed to archive remediated findings in us-east-1: AccessDeniedException: no"
        ));
    }

    #[test]
    fn a_group_that_no_longer_exists_is_pending() {
        let mut world = World::open_ssh(1);
        world.observation.groups.clear();
        let status = status_after(&world.dry_run());
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("False", "GroupsNotFound")
        );
        assert_eq!(
            condition(&status, SECURITY_GROUPS_CONVERGED).message,
            "1 security group concerned by findings no longer exists (first, sg-1); the next \
             pass reads the instances' groups again"
        );
        assert_eq!(status.security_groups.unwrap().pending, 1);
    }

    #[test]
    fn applied_changes_without_a_reported_plan_leave_convergence_unknown() {
        // A pass without a plan after applying changes (as an older pass did when archiving failed).
        let mut report = World::open_ssh(2).enforced();
        report.plan = None;
        report.failures = vec![
            crate::domain::outcome::Failure::new(
                Step::Archive,
                Category::Throttled,
                "ThrottlingException: slow down",
            )
            .in_region("us-east-1"),
        ];
        let status = status_after(&report);
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("Unknown", "ArchiveFailed")
        );
        assert_eq!(
            state(&status, FINDINGS_SYNCED),
            ("False", "GuardDutyThrottled")
        );
        assert_eq!(status.pending_plan, None);
    }

    // ── compliance ───────────────────────────────────────────────────────────

    /// The outcome of a pass whose controls were judged on `facts`.
    fn judged(report: PassReport, facts: &crate::domain::compliance::Facts) -> Outcome {
        use crate::domain::compliance::{catalogue, evaluate};
        Outcome::Passed {
            report,
            alerts: None,
            compliance: evaluate(catalogue(), facts),
        }
    }

    #[test]
    fn compliance_is_written_by_each_full_pass_and_dropped_when_no_pass_of_the_spec_ran() {
        use crate::domain::compliance::{Condition as Needs, ControlStatus, Facts};
        let world = World::open_ssh(1);
        let dry = Facts::all().with(Needs::RemediationEnforced, false);
        let first = compute_status(Some(1), None, &judged(world.dry_run(), &dry), at(0));
        let ids: Vec<&str> = first.compliance.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["apra-cps-234", "mas-trm", "nist-800-53-r5"]);
        let ir_4_1 = |status: &GuardDutyPolicyStatus| {
            status.compliance[2]
                .controls
                .iter()
                .find(|c| c.id == "IR-4(1)")
                .map(|c| c.state)
        };
        assert_eq!(ir_4_1(&first), Some(ControlStatus::NotMet));

        // The next full pass judges again: Enforce meets IR-4(1), and the status changed.
        let enforced = compute_status(
            Some(2),
            Some(&first),
            &judged(world.enforced(), &Facts::all()),
            at(60),
        );
        assert_eq!(ir_4_1(&enforced), Some(ControlStatus::Met));
        assert!(status_changed(&first, &enforced));

        // A pass of an event's findings keeps the last full pass's picture.
        let mut event = world.enforced();
        event.targeted = true;
        let targeted = compute_status(Some(2), Some(&enforced), &judged(event, &dry), at(90));
        assert_eq!(targeted.compliance, enforced.compliance);

        // An invalid spec or AWS out of reach: no pass of this spec, nothing claimed.
        let invalid = compute_status(
            Some(3),
            Some(&enforced),
            &Outcome::Invalid(crate::spec::InvalidSpec { errors: vec![] }),
            at(120),
        );
        assert!(invalid.compliance.is_empty());
        let unreachable = compute_status(
            Some(2),
            Some(&enforced),
            &Outcome::SetupFailed(AwsSetupError::NoRegion),
            at(120),
        );
        assert!(unreachable.compliance.is_empty());
        assert!(
            serde_json::to_value(&unreachable)
                .unwrap()
                .get("compliance")
                .is_none()
        );
    }

    #[test]
    fn invalid_spec_makes_ready_false_and_keeps_what_the_last_pass_reported() {
        let first = status_after(&World::open_ssh(1).enforced());
        let invalid = compute_status(
            Some(2),
            Some(&first),
            &Outcome::Invalid(crate::spec::InvalidSpec {
                errors: vec![crate::spec::FieldError {
                    field: "spec.interval".into(),
                    message: "\"10s\" is too short: use an interval from 30s to 24h".into(),
                }],
            }),
            at(60),
        );
        assert_eq!(invalid.observed_generation, Some(2));
        let ready = condition(&invalid, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(
            ready
                .message
                .contains("spec.interval: \"10s\" is too short")
        );
        assert_eq!(
            (ready.observed_generation, &ready.last_transition_time),
            (Some(2), &at(60))
        );
        assert_eq!(
            condition(&invalid, FINDINGS_SYNCED),
            condition(&first, FINDINGS_SYNCED)
        );
        assert_eq!(invalid.findings, first.findings);
        assert_eq!(invalid.last_sync_time, first.last_sync_time);
        assert_eq!(invalid.recent_actions, first.recent_actions);
    }

    #[test]
    fn transition_time_is_kept_when_the_status_stays_even_if_the_message_changes() {
        let first = status_after(&World::open_ssh(1).dry_run());
        let second = next(&first, &World::open_ssh(2).dry_run(), at(60));
        let pending = condition(&second, SECURITY_GROUPS_CONVERGED);
        assert!(pending.message.starts_with("2 security groups have"));
        assert_eq!(pending.last_transition_time, at(0));
        assert_eq!(condition(&second, READY).last_transition_time, at(0));
    }

    #[test]
    fn transition_time_is_now_when_the_status_changes() {
        let first = status_after(&World::open_ssh(1).dry_run());
        let second = next(&first, &World::open_ssh(1).enforced(), at(60));
        assert_eq!(
            condition(&second, SECURITY_GROUPS_CONVERGED).last_transition_time,
            at(60)
        );
        assert_eq!(condition(&second, READY).last_transition_time, at(60));
        assert_eq!(
            condition(&second, FINDINGS_SYNCED).last_transition_time,
            at(0)
        );
    }

    #[test]
    fn remediation_off_reports_the_findings_and_checks_no_group() {
        let world = World::open_ssh(2);
        let report = world.report(&Policy::test().off(), |_, _| None);
        let status = status_after(&report);
        assert_eq!(
            state(&status, SECURITY_GROUPS_CONVERGED),
            ("True", "RemediationOff")
        );
        assert_eq!(state(&status, READY), ("True", "Ready"));
        assert_eq!(status.findings.unwrap().total, 2);
        assert_eq!(status.pending_plan, None);
    }

    // ── counts ───────────────────────────────────────────────────────────────

    #[test]
    fn findings_are_counted_per_severity_band() {
        let report = World::default()
            .with_finding("f1", 1.0, "i-1")
            .with_finding("f2", 3.9, "i-1")
            .with_finding("f3", 4.0, "i-1")
            .with_finding("f4", 7.0, "i-1")
            .with_finding("f5", 8.9, "i-1")
            .with_finding("f6", 9.0, "i-1")
            .dry_run();
        assert_eq!(
            status_after(&report).findings,
            Some(FindingCounts {
                total: 6,
                low: 2,
                medium: 1,
                high: 2,
                critical: 1,
            })
        );
    }

    #[test]
    fn security_groups_are_counted_as_managed_converged_and_pending() {
        // sg-1 changed, sg-2 failed, sg-a1 refused.
        let world = World::open_ssh(2)
            .with_open_group("a1", Traffic::All)
            .with_finding("fa1", 5.0, "i-a1");
        assert_eq!(
            status_after(&world.enforced_failing(&["sg-2"])).security_groups,
            Some(SecurityGroupCounts {
                managed: 3,
                converged: 1,
                pending: 2,
            })
        );
        assert_eq!(
            status_after(&world.dry_run()).security_groups,
            Some(SecurityGroupCounts {
                managed: 3,
                converged: 0,
                pending: 3,
            })
        );
    }

    // ── recent actions and pending plan ──────────────────────────────────────

    #[test]
    fn enforce_records_one_action_per_rule_authorized_and_revoked() {
        let status = status_after(&World::open_ssh(1).enforced());
        assert_eq!(
            status.recent_actions,
            [
                RecentAction {
                    time: at(0),
                    kind: ActionKind::Authorized,
                    group: "sg-1".into(),
                    rule: Some("sgr-a0".into()),
                    source: Some("10.0.0.0/8".into()),
                    protocol: None,
                    ports: Some("22".into()),
                    finding_id: Some("f1".into()),
                    message: Some("trusted access to tcp/22".into()),
                },
                RecentAction {
                    time: at(0),
                    kind: ActionKind::Revoked,
                    group: "sg-1".into(),
                    rule: Some("sgr-1".into()),
                    source: Some("0.0.0.0/0".into()),
                    protocol: None,
                    ports: Some("22".into()),
                    finding_id: Some("f1".into()),
                    message: Some("closed tcp/22 to 0.0.0.0/0".into()),
                },
            ]
        );
        assert_eq!(status.pending_plan, None);
    }

    /// An action's kind, source, ports and message.
    type ActionSummary<'a> = (
        ActionKind,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    #[test]
    fn narrowed_rule_keeps_its_other_ports_and_names_every_finding() {
        let report = World::default()
            .with_open_group("1", Traffic::Tcp(PortRange::new(0, 1023)))
            .with_finding("f1", 5.0, "i-1")
            .with_finding("f2", 5.0, "i-1")
            .enforced();
        let status = status_after(&report);
        let summary: Vec<ActionSummary<'_>> = status
            .recent_actions
            .iter()
            .map(|a| {
                (
                    a.kind,
                    a.source.as_deref(),
                    a.ports.as_deref(),
                    a.message.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    ActionKind::Authorized,
                    Some("0.0.0.0/0"),
                    Some("0-21"),
                    Some("tcp/0-21 kept open from narrowed rule sgr-1 (and 1 more finding)")
                ),
                (
                    ActionKind::Authorized,
                    Some("0.0.0.0/0"),
                    Some("23-1023"),
                    Some("tcp/23-1023 kept open from narrowed rule sgr-1 (and 1 more finding)")
                ),
                (
                    ActionKind::Authorized,
                    Some("10.0.0.0/8"),
                    Some("22"),
                    Some("trusted access to tcp/22 (and 1 more finding)")
                ),
                (
                    ActionKind::Revoked,
                    Some("0.0.0.0/0"),
                    Some("0-1023"),
                    Some("closed tcp/22 to 0.0.0.0/0 (and 1 more finding)")
                ),
            ]
        );
    }

    #[test]
    fn failed_steps_are_recorded_as_failed_actions_before_the_changes() {
        let status = status_after(&World::open_ssh(2).enforced_failing(&["sg-2"]));
        let kinds: Vec<(ActionKind, &str)> = status
            .recent_actions
            .iter()
            .map(|a| (a.kind, a.group.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (ActionKind::Failed, "sg-2"),
                (ActionKind::Authorized, "sg-1"),
                (ActionKind::Revoked, "sg-1"),
            ]
        );
        assert_eq!(
            status.recent_actions[0].message.as_deref(),
            Some(
                "failed to authorize 1 rule (access-denied): UnauthorizedOperation: not allowed; \
                 nothing revoked: authorize failed"
            )
        );
    }

    #[test]
    fn a_refusal_seen_on_every_pass_is_recorded_once() {
        let world = World::default()
            .with_open_group("a1", Traffic::All)
            .with_finding("fa1", 5.0, "i-a1");
        let first = status_after(&world.dry_run());
        assert_eq!(first.recent_actions.len(), 1);
        let refusal = &first.recent_actions[0];
        assert_eq!(refusal.kind, ActionKind::Refused);
        assert_eq!(
            (refusal.rule.as_deref(), refusal.source.as_deref()),
            (Some("sgr-a1"), Some("0.0.0.0/0"))
        );
        let second = next(&first, &world.dry_run(), at(60));
        assert_eq!(second.recent_actions.len(), 1);
        assert_eq!(second.recent_actions[0].time, at(60));
    }

    #[test]
    fn dry_run_shows_the_pending_plan_bounded_to_twenty_groups() {
        let status = status_after(&World::open_ssh(25).dry_run());
        let pending = status.pending_plan.expect("a pending plan");
        assert_eq!(pending.groups.len(), MAX_PENDING_GROUPS);
        assert_eq!(pending.truncated, 5);
        assert_eq!(
            pending.groups[0],
            PendingGroup {
                group: "sg-1".into(),
                finding_id: Some("f1".into()),
                authorize: vec!["10.0.0.0/8 tcp/22".into()],
                revoke: vec!["sgr-1 0.0.0.0/0 tcp/22".into()],
                omitted_rules: 0,
            }
        );
        assert!(status.recent_actions.is_empty(), "DryRun changes nothing");
    }

    #[test]
    fn pending_rules_of_a_group_are_bounded_too() {
        let ranges: Vec<String> = (1..=12).map(|k| format!("10.{k}.0.0/16")).collect();
        let ranges: Vec<&str> = ranges.iter().map(String::as_str).collect();
        let report = World::open_ssh(1).report(&Policy::test().trusting(&ranges), |_, _| None);
        let pending = status_after(&report).pending_plan.unwrap();
        assert_eq!(pending.groups[0].authorize.len(), MAX_PENDING_RULES);
        assert_eq!(pending.groups[0].omitted_rules, 2);
    }

    #[test]
    fn recent_actions_are_newest_first_and_bounded_to_fifty() {
        let first = status_after(&World::open_ssh(20).enforced());
        assert_eq!(first.recent_actions.len(), 40);
        let later = World::default()
            .with_open_group("b1", Traffic::Tcp(PortRange::single(22)))
            .with_finding("fb1", 5.0, "i-b1")
            .enforced();
        let second = next(&first, &later, at(60));
        assert_eq!(second.recent_actions.len(), 42);
        assert_eq!(second.recent_actions[0].group, "sg-b1");
        assert_eq!(second.recent_actions[2], first.recent_actions[0]);
        let many = status_after(&World::open_ssh(100).enforced());
        assert_eq!(many.recent_actions.len(), MAX_RECENT_ACTIONS);
        let third = next(&many, &later, at(120));
        assert_eq!(third.recent_actions.len(), MAX_RECENT_ACTIONS);
        assert_eq!(third.recent_actions[0].group, "sg-b1");
    }

    #[test]
    fn status_of_ten_thousand_findings_and_a_thousand_changed_groups_stays_under_400_kib() {
        let mut world = World::open_ssh(1000);
        for k in 0..9000 {
            let instance = format!("i-{:x}", k % 1000 + 1);
            world = world.with_finding(&format!("g{k}"), 1.0 + (k % 10) as f64 * 0.9, &instance);
        }
        assert_eq!(world.observation.findings.len(), 10_000);
        let trusted = [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "2001:db8::/32",
        ];
        let policy = Policy::test().trusting(&trusted);
        for report in [
            world.report(&policy, |_, _| None),
            world.report(&policy.clone().enforce(), |g, c| {
                Some(GroupOutcome::done(g, c))
            }),
            world.report(&policy.clone().enforce(), |g, _| {
                Some(GroupOutcome::failed_authorize(g))
            }),
        ] {
            let mut status = status_after(&report);
            // The alert record full, with the longest channel names.
            status.alerts = Some(AlertsStatus {
                delivered: (0..crate::spec::MAX_ALERT_RECORD)
                    .map(|n| DeliveredAlert {
                        channel: "c".repeat(63),
                        finding: format!("{n:032x}"),
                        finding_type: "UnauthorizedAccess:EC2/SSHBruteForce".into(),
                        severity: 8.5,
                        response: "closed".into(),
                        since: Some("2026-12-01T00:00:00Z".into()),
                        account: Some("123456789012".into()),
                        region: Some("ap-southeast-2".into()),
                    })
                    .collect(),
                failing_channels: Vec::new(),
            });
            assert_eq!(status.findings.as_ref().unwrap().total, 10_000);
            assert_eq!(status.security_groups.as_ref().unwrap().managed, 1000);
            // The API server refuses objects over 1.5 MiB (etcd's limit).
            let size = serde_json::to_vec(&status).unwrap().len();
            assert!(size < 400 * 1024, "{size} bytes");
        }
    }

    // ── comparison ───────────────────────────────────────────────────────────

    #[test]
    fn an_identical_second_pass_is_not_a_change() {
        let world = World::open_ssh(2)
            .with_open_group("a1", Traffic::All)
            .with_finding("fa1", 5.0, "i-a1");
        for report in [world.dry_run(), world.enforced_failing(&["sg-2"])] {
            let first = status_after(&report);
            let second = next(&first, &report, at(300));
            assert_ne!(first, second, "times moved");
            assert!(!status_changed(&first, &second), "{first:#?}\n{second:#?}");
        }
    }

    #[test]
    fn a_new_finding_is_a_change() {
        let world = World::open_ssh(1);
        let first = status_after(&world.dry_run());
        let report = world.with_finding("f2", 9.5, "i-1").dry_run();
        let second = next(&first, &report, at(300));
        assert!(status_changed(&first, &second));
    }

    // ── alerts ───────────────────────────────────────────────────────────────

    /// The status after a pass whose alerting went as `notify` says.
    fn with_alerts(report: &PassReport, notify: &NotifyReport) -> GuardDutyPolicyStatus {
        let outcome = Outcome::Passed {
            report: report.clone(),
            alerts: Some(notify.clone()),
            compliance: Vec::new(),
        };
        compute_status(Some(1), None, &outcome, at(0))
    }

    fn notified(failed: &[(&str, &str)]) -> NotifyReport {
        use crate::domain::alert::AlertEvent;
        use crate::notify::dispatch::{Delivery, DeliveryResult};
        let finding = FindingId::parse("f1").unwrap();
        let record = AlertRecord::from_entries([Delivered {
            channel: "oncall".into(),
            finding: finding.clone(),
            finding_type: "Recon:EC2/PortProbeUnprotectedPort".into(),
            severity: 8.0,
            response: ResponseKind::Closed,
            since: None,
            account: None,
            region: None,
        }]);
        let mut deliveries = vec![Delivery {
            channel: "oncall".into(),
            kind: "pagerDuty",
            finding: finding.clone(),
            event: AlertEvent::Opened,
            result: DeliveryResult::Delivered { attempts: 1 },
        }];
        for (channel, error) in failed {
            deliveries.push(Delivery {
                channel: channel.to_string(),
                kind: "slack",
                finding: finding.clone(),
                event: AlertEvent::Opened,
                result: DeliveryResult::Failed {
                    category: Category::ServerError,
                    error: error.to_string(),
                    attempts: 3,
                },
            });
        }
        NotifyReport {
            deliveries,
            record,
            ..NotifyReport::default()
        }
    }

    #[test]
    fn delivered_alerts_keep_ready_true_and_their_record_survives_the_status() {
        let report = World::open_ssh(1).enforced();
        let notify = notified(&[]);
        let status = with_alerts(&report, &notify);
        assert_eq!(
            state(&status, NOTIFICATIONS_DELIVERED),
            ("True", "Delivered")
        );
        assert_eq!(state(&status, READY), ("True", "Ready"));
        assert_eq!(alert_record(Some(&status)), notify.record);
        assert_eq!(
            status.alerts.as_ref().unwrap().delivered[0].response,
            "closed"
        );
    }

    #[test]
    fn a_withheld_alert_makes_notifications_delivered_false_record_full() {
        let report = World::open_ssh(1).enforced();
        let mut notify = notified(&[]);
        notify.withheld.insert("oncall".into(), 2);
        let status = with_alerts(&report, &notify);
        assert_eq!(
            state(&status, NOTIFICATIONS_DELIVERED),
            ("False", "RecordFull")
        );
        assert_eq!(
            condition(&status, NOTIFICATIONS_DELIVERED).message,
            format!(
                "2 alerts withheld: the alert record of oncall is full of findings at least as \
                 severe (at most {} entries); they go out as findings are resolved",
                crate::spec::MAX_ALERT_RECORD
            )
        );
        assert_eq!(state(&status, READY).0, "False");
    }

    #[test]
    fn a_failed_channel_makes_notifications_delivered_and_ready_false_naming_it() {
        let report = World::open_ssh(1).enforced();
        let notify = notified(&[("chat", "Slack answered HTTP 500: rollup_error")]);
        let status = with_alerts(&report, &notify);
        assert_eq!(
            state(&status, NOTIFICATIONS_DELIVERED),
            ("False", "DeliveryFailed")
        );
        assert_eq!(
            condition(&status, NOTIFICATIONS_DELIVERED).message,
            "1 alert not delivered, tried again next pass: chat (slack): Slack answered HTTP \
             500: rollup_error"
        );
        assert_eq!(state(&status, READY), ("False", "DeliveryFailed"));
        assert_eq!(state(&status, SECURITY_GROUPS_CONVERGED).0, "True");
        assert_eq!(status.alerts.unwrap().failing_channels, ["chat"]);
    }

    #[test]
    fn without_channels_the_condition_and_the_record_go() {
        let report = World::open_ssh(1).enforced();
        let with = with_alerts(&report, &notified(&[]));
        let without = next(&with, &report, at(60));
        assert!(without.alerts.is_none());
        assert!(
            without
                .conditions
                .iter()
                .all(|c| c.type_ != NOTIFICATIONS_DELIVERED)
        );
    }

    #[test]
    fn an_aws_setup_failure_is_shown_on_findings_synced_and_ready() {
        let before = status_after(&World::open_ssh(1).enforced());
        let status = compute_status(
            Some(2),
            Some(&before),
            &Outcome::SetupFailed(AwsSetupError::NoRegion),
            at(60),
        );
        assert_eq!(state(&status, FINDINGS_SYNCED), ("False", "NoRegion"));
        assert_eq!(state(&status, READY), ("False", "NoRegion"));
        assert_eq!(
            condition(&status, FINDINGS_SYNCED).message,
            "failed to find an AWS region: set spec.region, or AWS_REGION in the operator's \
             environment; the operator retries with backoff"
        );
        assert_eq!(status.findings, before.findings, "the last counts are kept");
        assert_eq!(status.observed_generation, Some(2));
    }

    #[test]
    fn a_quiet_pass_is_written_only_once_the_last_sync_is_old() {
        let report = World::open_ssh(1).enforced();
        let first = status_after(&report);
        let soon = next(&first, &report, at(60));
        assert!(!needs_patch(&first, &soon));
        let later = next(&first, &report, at(16 * 60));
        assert!(needs_patch(&first, &later));
    }
}
