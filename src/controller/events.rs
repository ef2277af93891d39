//! The Kubernetes Events a reconcile records on its `GuardDutyPolicy`: only on
//! transitions (a rule revoked, a step newly failing, Ready back to True), never on a
//! quiet pass; reasons in PascalCase.
//!
//! ```text
//!  previous status ─┐
//!  next status ─────┼─ transitions (pure) ─┐
//!  PassReport ──────┘                      ├─ bounded ─> EventPublisher::publish (I/O)
//!  channel failures ─ notification_events ─┘           (events.k8s.io/v1, best effort)
//! ```
//!
//! | reason               | type    | when                                                          |
//! |----------------------|---------|---------------------------------------------------------------|
//! | `RuleRevoked`        | Normal  | a group's exposing rules were revoked (trusted access kept)   |
//! | `RuleAuthorized`     | Normal  | a group only gained trusted rules                             |
//! | `DriftRemediated`    | Normal  | access reopened on a group the operator already manages was closed again |
//! | `RemediationFailed`  | Warning | a group's authorize or revoke step newly failed               |
//! | `RemediationRefused` | Warning | a group is newly refused (all-traffic rule, rule quota)       |
//! | `PassFailed`         | Warning | a step of the pass failed, or AWS could not be set up, and Ready did not already say so |
//! | `Recovered`          | Normal  | Ready went from False to True                                 |
//! | `InvalidSpec`        | Warning | Ready became False with reason InvalidSpec (or a new message) |
//! | `NamespaceNotAllowed`| Warning | the policy's namespace is not honoured (nothing done in AWS)  |
//! | `NotificationFailed` | Warning | a notification channel newly failing ([`notification_events`]) |
//! | `EventsTruncated`    | either  | more than [`MAX_EVENTS_PER_PASS`] events: the rest, counted   |
//!
//! One change event per changed group (not one per rule): a group can have many
//! rules, and the rules are in `status.recentActions` already.
//!
//! "Newly" failing or refused compares the statuses: an entry of `recentActions` of
//! kind `Failed` or `Refused` in the next status that the previous status does not
//! hold (ignoring time) was made by this pass and is new; the same failure on the
//! next retry repeats an entry and records no event.
//!
//! Drift: the report does not mark it, so it is derived. A group changed this pass
//! whose revoke step succeeded counts as drift when it was already managed: the
//! planner brought it in without a finding (only a group holding the operator's
//! rules is watched without one), or the previous status's `recentActions` show the
//! operator authorizing or revoking in it before.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};

use crate::controller::outcome::Outcome;
use crate::controller::status::{ConditionStatus, READY};
use crate::domain::outcome::{GroupOutcome, PassReport, StepResult};
use crate::domain::plan::{ChangeSet, GroupPlan, Verdict};
use crate::domain::security_group::exposures_text;
use crate::spec::{ActionKind, GuardDutyPolicyStatus, RecentAction};

/// The most events one pass records; beyond it, one [`reason::EVENTS_TRUNCATED`]
/// event counts the rest.
pub const MAX_EVENTS_PER_PASS: usize = 10;
/// The Events API's limit on `note`.
pub const MAX_NOTE_BYTES: usize = 1024;
/// The most rules a change event's note lists per step.
const MAX_RULES_IN_NOTE: usize = 5;
/// The reporting controller of every event.
pub const REPORTING_CONTROLLER: &str = "guardduty-operator";

/// The events' reasons (PascalCase, as `kubectl describe` shows them).
pub mod reason {
    pub const RULE_REVOKED: &str = "RuleRevoked";
    pub const RULE_AUTHORIZED: &str = "RuleAuthorized";
    pub const DRIFT_REMEDIATED: &str = "DriftRemediated";
    pub const REMEDIATION_FAILED: &str = "RemediationFailed";
    pub const REMEDIATION_REFUSED: &str = "RemediationRefused";
    pub const PASS_FAILED: &str = "PassFailed";
    pub const RECOVERED: &str = "Recovered";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    pub const NOTIFICATION_FAILED: &str = "NotificationFailed";
    pub const EVENTS_TRUNCATED: &str = "EventsTruncated";
}

/// The events' actions: what the operator was doing.
pub mod action {
    pub const REMEDIATE: &str = "Remediate";
    pub const RECONCILE: &str = "Reconcile";
    pub const VALIDATE: &str = "Validate";
    pub const NOTIFY: &str = "Notify";
}

/// An event's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// One event to record on the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    /// At most [`MAX_NOTE_BYTES`], URLs reduced to their host.
    pub note: String,
}

impl EventSpec {
    fn new(type_: EventType, reason: &'static str, action: &'static str, note: &str) -> Self {
        EventSpec {
            type_,
            reason,
            action,
            note: bounded_note(note),
        }
    }

    fn normal(reason: &'static str, action: &'static str, note: &str) -> Self {
        EventSpec::new(EventType::Normal, reason, action, note)
    }

    fn warning(reason: &'static str, action: &'static str, note: &str) -> Self {
        EventSpec::new(EventType::Warning, reason, action, note)
    }
}

// ── transitions (pure) ───────────────────────────────────────────────────────

/// The events of one reconcile: `previous` and `next` are the statuses before and
/// after it, `outcome` what it got to. Empty for a quiet pass. Ordered: the spec, the
/// pass, then per group in group id order (failures, refusals, changes), bounded by
/// [`MAX_EVENTS_PER_PASS`]; then the newly failing notification channels, bounded
/// apart.
pub fn transitions(
    previous: Option<&GuardDutyPolicyStatus>,
    next: &GuardDutyPolicyStatus,
    outcome: &Outcome,
) -> Vec<EventSpec> {
    let before = previous.and_then(|status| condition(status, READY));
    let after = condition(next, READY);
    // Ready says something new (another status, reason or message).
    let ready_moved = after.is_none_or(|after| !same_condition(before, after));
    let mut events = Vec::new();

    match outcome {
        Outcome::Invalid(_) => {
            if let Some(after) = after.filter(|_| ready_moved) {
                events.push(EventSpec::warning(
                    reason::INVALID_SPEC,
                    action::VALIDATE,
                    &after.message,
                ));
            }
        }
        // No pass ran and the spec is fine: AWS could not be set up (no region, the
        // account unknown); Ready says why.
        Outcome::SetupFailed(_) => {
            if let Some(after) = after.filter(|_| ready_moved) {
                events.push(EventSpec::warning(
                    reason::PASS_FAILED,
                    action::RECONCILE,
                    &format!("no pass ran ({}): {}", after.reason, after.message),
                ));
            }
        }
        Outcome::NamespaceNotAllowed { .. } => {
            if let Some(after) = after.filter(|_| ready_moved) {
                events.push(EventSpec::warning(
                    reason::NAMESPACE_NOT_ALLOWED,
                    action::VALIDATE,
                    &after.message,
                ));
            }
        }
        Outcome::Passed { report, .. } => {
            if let Some(failure) = report.failure().filter(|_| ready_moved) {
                events.push(EventSpec::warning(
                    reason::PASS_FAILED,
                    action::RECONCILE,
                    &format!("{failure} ({})", failure.category),
                ));
            }
        }
    }

    if let (Some(before), Some(after)) = (before, after)
        && ConditionStatus::of(before) == ConditionStatus::False
        && ConditionStatus::of(after) == ConditionStatus::True
    {
        events.push(EventSpec::normal(
            reason::RECOVERED,
            action::RECONCILE,
            &format!(
                "Ready again (was {}: {}): {}",
                before.reason, before.message, after.message
            ),
        ));
    }

    if let Some(report) = outcome.report() {
        let previous_actions = previous.map_or(&[][..], |status| &status.recent_actions[..]);
        for group in report.plan.iter().flat_map(|plan| &plan.groups) {
            events.extend(group_events(group, report, previous_actions, next));
        }
    }

    let mut events = bounded(events, action::RECONCILE);
    if outcome.alerts().is_some() {
        let failing: Vec<(String, String)> = outcome
            .alert_failures()
            .into_iter()
            .map(|f| (f.channel, f.error))
            .collect();
        let before = previous
            .and_then(|p| p.alerts.as_ref())
            .map(|a| a.failing_channels.clone())
            .unwrap_or_default();
        events.extend(notification_events(&failing, &before));
    }
    events
}

/// `NotificationFailed` for every channel in `failures` (channel, error text) that
/// is not among `previous_failing`; a channel named twice is reported once. Bounded
/// by [`MAX_EVENTS_PER_PASS`].
pub fn notification_events(
    failures: &[(String, String)],
    previous_failing: &[String],
) -> Vec<EventSpec> {
    let mut seen: Vec<&str> = Vec::new();
    let mut events = Vec::new();
    for (channel, error) in failures {
        if previous_failing.contains(channel) || seen.contains(&channel.as_str()) {
            continue;
        }
        seen.push(channel);
        events.push(EventSpec::warning(
            reason::NOTIFICATION_FAILED,
            action::NOTIFY,
            &format!("failed to deliver to notification channel {channel}: {error}"),
        ));
    }
    bounded(events, action::NOTIFY)
}

/// One group's events: its newly failed steps and refusal, then what it changed.
fn group_events(
    group: &GroupPlan,
    report: &PassReport,
    previous_actions: &[RecentAction],
    next: &GuardDutyPolicyStatus,
) -> Vec<EventSpec> {
    let mut events = Vec::new();
    let id = group.group.as_str();
    let label = group_label(group);
    let new_entries = next.recent_actions.iter().filter(|entry| {
        entry.group == id && !previous_actions.iter().any(|old| same_entry(old, entry))
    });
    for entry in new_entries {
        let (type_reason, default) = match entry.kind {
            ActionKind::Failed => (reason::REMEDIATION_FAILED, "a change failed"),
            ActionKind::Refused => (reason::REMEDIATION_REFUSED, "the change was refused"),
            ActionKind::Authorized | ActionKind::Revoked => continue,
        };
        let message = entry.message.as_deref().unwrap_or(default);
        events.push(EventSpec::warning(
            type_reason,
            action::REMEDIATE,
            &format!("{label}: {message}"),
        ));
    }
    if let Verdict::Change(change) = &group.verdict
        && report.applied
        && let Some(outcome) = report.outcome(&group.group)
        && let Some(event) = change_event(group, &label, change, outcome, previous_actions)
    {
        events.push(event);
    }
    events
}

/// What a group's change did, if any step of it succeeded.
fn change_event(
    group: &GroupPlan,
    label: &str,
    change: &ChangeSet,
    outcome: &GroupOutcome,
    previous_actions: &[RecentAction],
) -> Option<EventSpec> {
    let authorized = matches!(outcome.authorize, StepResult::Done { .. });
    let revoked = matches!(outcome.revoke, StepResult::Done { .. });
    let mut parts = Vec::new();
    if revoked {
        let closed = listed(change.revoke.iter().map(|r| {
            format!(
                "{} to {} (rule {})",
                exposures_text(&r.exposed),
                r.source,
                r.rule
            )
        }));
        parts.push(format!("closed {closed}"));
    }
    if authorized {
        let opened = listed(
            change
                .authorize
                .iter()
                .map(|a| format!("{} {}", a.source, a.what())),
        );
        parts.push(format!("authorized {opened}"));
    }
    if parts.is_empty() {
        return None;
    }
    let mut what = parts.join("; ");
    if let Some(first) = group.findings.first() {
        let more = group.findings.len() - 1;
        what.push_str(&format!("; finding {first}"));
        if more > 0 {
            what.push_str(&format!(" (and {more} more)"));
        }
    }
    let already_managed = group.findings.is_empty()
        || previous_actions.iter().any(|entry| {
            entry.group == group.group.as_str()
                && matches!(entry.kind, ActionKind::Authorized | ActionKind::Revoked)
        });
    Some(if revoked && already_managed {
        EventSpec::normal(
            reason::DRIFT_REMEDIATED,
            action::REMEDIATE,
            &format!("{label} was opened again after the operator converged it: {what}"),
        )
    } else if revoked {
        EventSpec::normal(
            reason::RULE_REVOKED,
            action::REMEDIATE,
            &format!("{label}: {what}"),
        )
    } else {
        EventSpec::normal(
            reason::RULE_AUTHORIZED,
            action::REMEDIATE,
            &format!("{label}: {what}"),
        )
    })
}

/// `sg-… (name)`, or the id alone when the name says nothing more.
fn group_label(group: &GroupPlan) -> String {
    let id = group.group.as_str();
    if group.name.is_empty() || group.name == id {
        id.to_string()
    } else {
        format!("{id} ({})", group.name)
    }
}

/// The first [`MAX_RULES_IN_NOTE`] items, comma-separated, and how many more.
fn listed(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut text = items.take(MAX_RULES_IN_NOTE).collect::<Vec<_>>().join(", ");
    if total > MAX_RULES_IN_NOTE {
        text.push_str(&format!(" and {} more", total - MAX_RULES_IN_NOTE));
    }
    text
}

fn condition<'a>(status: &'a GuardDutyPolicyStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The condition says the same as before (status, reason and message).
fn same_condition(before: Option<&Condition>, after: &Condition) -> bool {
    before.is_some_and(|before| {
        before.status == after.status
            && before.reason == after.reason
            && before.message == after.message
    })
}

/// Equal but for the time.
fn same_entry(a: &RecentAction, b: &RecentAction) -> bool {
    a.kind == b.kind
        && a.group == b.group
        && a.rule == b.rule
        && a.source == b.source
        && a.protocol == b.protocol
        && a.ports == b.ports
        && a.finding_id == b.finding_id
        && a.message == b.message
}

/// At most [`MAX_EVENTS_PER_PASS`]: the first ones, then one that counts the rest by
/// reason (a Warning if any of them is).
fn bounded(mut events: Vec<EventSpec>, summary_action: &'static str) -> Vec<EventSpec> {
    if events.len() <= MAX_EVENTS_PER_PASS {
        return events;
    }
    let rest = events.split_off(MAX_EVENTS_PER_PASS - 1);
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &rest {
        *by_reason.entry(event.reason).or_default() += 1;
    }
    let counted: Vec<String> = by_reason
        .iter()
        .map(|(reason, n)| format!("{reason} x{n}"))
        .collect();
    let type_ = if rest.iter().any(|e| e.type_ == EventType::Warning) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    events.push(EventSpec::new(
        type_,
        reason::EVENTS_TRUNCATED,
        summary_action,
        &format!(
            "and {} more events this pass ({}); see status.recentActions and the operator's log",
            rest.len(),
            counted.join(", ")
        ),
    ));
    events
}

/// The note as recorded: URLs reduced to scheme and host (a webhook's path or query
/// can be its secret), then cut to [`MAX_NOTE_BYTES`] on a character boundary.
pub fn bounded_note(note: &str) -> String {
    let redacted = redact_urls(note);
    if redacted.len() <= MAX_NOTE_BYTES {
        return redacted;
    }
    const ELLIPSIS: &str = "…";
    let mut end = MAX_NOTE_BYTES - ELLIPSIS.len();
    while !redacted.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &redacted[..end])
}

/// Every `http://` or `https://` URL becomes `scheme://host/…`: no user info, path,
/// query or fragment.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["https://", "http://"]
            .iter()
            .filter_map(|scheme| rest.find(scheme).map(|at| (at, *scheme)))
            .min_by_key(|(at, _)| *at);
        let Some((at, scheme)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let url_start = at + scheme.len();
        let url_len = rest[url_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(rest.len() - url_start);
        let url = &rest[url_start..url_start + url_len];
        let authority = url.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        out.push_str(scheme);
        out.push_str(host);
        if url.len() > authority.len() || authority.contains('@') {
            out.push_str("/…");
        }
        rest = &rest[url_start + url_len..];
    }
}

// ── publishing (I/O) ─────────────────────────────────────────────────────────

/// Why some events were not recorded. Events are best effort: log it, and do not
/// fail the reconcile for it.
#[derive(Debug, thiserror::Error)]
#[error("failed to publish {failed} of {total} events")]
pub struct PublishError {
    pub failed: usize,
    pub total: usize,
    #[source]
    pub first: kube::Error,
}

impl PublishError {
    /// A short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        "publish-events"
    }
}

/// The reporter of every event: the operator, and this replica (the pod's name).
pub fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: REPORTING_CONTROLLER.to_string(),
        instance,
    }
}

/// Records events (events.k8s.io/v1) through kube-runtime's [`Recorder`].
///
/// Each event is published by a fresh `Recorder`: a shared one keys its series cache
/// on type, action and reason, not the note, so a second `RuleRevoked` (another
/// group, within 6 minutes) would only bump the count of the first, with the first
/// group's note. Events are already limited to transitions and bounded per pass, so
/// nothing is lost by giving up the series.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
}

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        EventPublisher { client, reporter }
    }

    /// Records `events` on `regarding` (the policy's `object_ref`), in order; tries
    /// every event even when one fails.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        events: &[EventSpec],
    ) -> Result<(), PublishError> {
        let mut failed = 0;
        let mut first = None;
        for spec in events {
            let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
            let event = Event {
                type_: match spec.type_ {
                    EventType::Normal => KubeEventType::Normal,
                    EventType::Warning => KubeEventType::Warning,
                },
                reason: spec.reason.to_string(),
                note: Some(bounded_note(&spec.note)),
                action: spec.action.to_string(),
                secondary: None,
            };
            if let Err(error) = recorder.publish(&event, regarding).await {
                failed += 1;
                first.get_or_insert(error);
            }
        }
        match first {
            None => Ok(()),
            Some(first) => Err(PublishError {
                failed,
                total: events.len(),
                first,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::controller::status::compute_status;
    use crate::domain::finding::Finding;
    use crate::domain::fixtures::World;
    use crate::domain::ids::RuleId;
    use crate::domain::outcome::{Category, Step};
    use crate::domain::security_group::{IngressRule, PortRange, SecurityGroup, Source, Traffic};

    // ── fixtures ─────────────────────────────────────────────────────────────

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + second).unwrap())
    }

    /// A pass that stopped at reading the findings.
    fn unreachable_guardduty() -> PassReport {
        PassReport {
            detectors: [("us-east-1".to_string(), "d1".to_string())].into(),
            findings: Vec::new(),
            plan: None,
            applied: false,
            outcomes: Vec::new(),
            failures: vec![
                crate::domain::outcome::Failure::new(
                    Step::ReadFindings,
                    Category::Unreachable,
                    "connection refused",
                )
                .in_region("us-east-1"),
            ],
            ..World::default().enforced()
        }
    }

    /// Runs `report` after `previous`, as the reconcile does: the next status, and
    /// the events between the two.
    fn pass(
        previous: Option<&GuardDutyPolicyStatus>,
        report: &PassReport,
        second: i64,
    ) -> (GuardDutyPolicyStatus, Vec<EventSpec>) {
        let outcome = Outcome::passed(report.clone());
        let next = compute_status(Some(1), previous, &outcome, at(second));
        let events = transitions(previous, &next, &outcome);
        (next, events)
    }

    fn invalid(
        previous: Option<&GuardDutyPolicyStatus>,
        message: &str,
    ) -> (GuardDutyPolicyStatus, Vec<EventSpec>) {
        let (field, message) = message.split_once(": ").unwrap();
        let outcome = Outcome::Invalid(crate::spec::InvalidSpec {
            errors: vec![crate::spec::FieldError {
                field: field.into(),
                message: message.into(),
            }],
        });
        let next = compute_status(Some(2), previous, &outcome, at(0));
        let events = transitions(previous, &next, &outcome);
        (next, events)
    }

    fn reasons(events: &[EventSpec]) -> Vec<&'static str> {
        events.iter().map(|e| e.reason).collect()
    }

    // ── quiet passes ─────────────────────────────────────────────────────────

    #[test]
    fn a_quiet_pass_records_no_event() {
        let world = World::open_ssh(2);
        let report = world.enforced();
        let (first, events) = pass(None, &report, 0);
        assert_eq!(reasons(&events), ["RuleRevoked"; 2]);
        // The groups as the change left them, the findings still active: converged.
        let converged = world.after(&report);
        let quiet = converged.enforced();
        assert!(quiet.plan.as_ref().unwrap().is_empty(), "{quiet:#?}");
        let (second, events) = pass(Some(&first), &quiet, 60);
        assert_eq!(events, []);
        let (_, events) = pass(Some(&second), &quiet, 120);
        assert_eq!(events, []);
    }

    #[test]
    fn a_dry_run_pass_records_no_event() {
        let (status, events) = pass(None, &World::open_ssh(2).dry_run(), 0);
        assert_eq!(events, []);
        let (_, events) = pass(Some(&status), &World::open_ssh(2).dry_run(), 60);
        assert_eq!(events, []);
    }

    // ── changes ──────────────────────────────────────────────────────────────

    #[test]
    fn a_remediated_group_records_one_rule_revoked_event_naming_rules_and_finding() {
        let (_, events) = pass(None, &World::open_ssh(1).enforced(), 0);
        assert_eq!(
            events,
            [EventSpec {
                type_: EventType::Normal,
                reason: "RuleRevoked",
                action: "Remediate",
                note: "sg-1: closed tcp/22 to 0.0.0.0/0 (rule sgr-1); authorized 10.0.0.0/8 \
                       tcp/22; finding f1"
                    .into(),
            }]
        );
    }

    #[test]
    fn each_changed_group_records_its_own_event_in_group_order() {
        let (_, events) = pass(None, &World::open_ssh(3).enforced(), 0);
        assert_eq!(reasons(&events), ["RuleRevoked"; 3]);
        let groups: Vec<&str> = events.iter().map(|e| &e.note[..4]).collect();
        assert_eq!(groups, ["sg-1", "sg-2", "sg-3"]);
    }

    #[test]
    fn a_group_that_only_gains_trusted_rules_records_rule_authorized() {
        // The policy watches 22 here, the trusted rule is gone, nothing is open.
        let mut sg = SecurityGroup::world_open("sg-9", Traffic::Tcp(PortRange::single(443)));
        sg.ingress[0].source = Source::Cidr("10.0.0.0/8".parse().unwrap());
        sg.watches.insert(
            crate::domain::fixtures::TEST_OWNER.into(),
            [crate::domain::security_group::Exposure::tcp(22)].into(),
        );
        let world = World::default().with_group(sg);
        let (_, events) = pass(None, &world.enforced(), 0);
        assert_eq!(
            events,
            [EventSpec::normal(
                "RuleAuthorized",
                "Remediate",
                "sg-9: authorized 10.0.0.0/8 tcp/22"
            )]
        );
    }

    #[test]
    fn access_reopened_on_a_managed_group_records_drift_remediated() {
        let (_, events) = pass(None, &World::drifted("sg-5").enforced(), 0);
        assert_eq!(
            events,
            [EventSpec::normal(
                "DriftRemediated",
                "Remediate",
                "sg-5 was opened again after the operator converged it: closed tcp/22 to \
                 0.0.0.0/0 (rule sgr-5)"
            )]
        );
    }

    #[test]
    fn a_group_the_operator_changed_before_counts_as_drift_even_with_a_finding() {
        let world = World::open_ssh(1);
        let (first, _) = pass(None, &world.enforced(), 0);
        // Someone opens port 22 again while the finding is still active.
        let (_, events) = pass(Some(&first), &world.enforced(), 60);
        assert_eq!(reasons(&events), ["DriftRemediated"]);
        assert!(events[0].note.ends_with("finding f1"), "{}", events[0].note);
    }

    #[test]
    fn a_long_change_lists_five_rules_and_counts_the_rest() {
        let mut sg = SecurityGroup::world_open("sg-a", Traffic::Tcp(PortRange::single(22)));
        sg.ingress = (0..7)
            .map(|k| IngressRule {
                id: RuleId::parse(&format!("sgr-{k}")).unwrap(),
                traffic: Traffic::Tcp(PortRange::single(22)),
                source: Source::Cidr(format!("52.94.76.{k}/32").parse().unwrap()),
                description: None,
                owner: None,
            })
            .collect();
        let mut world = World::default().with_group(sg);
        world
            .observation
            .findings
            .push(Finding::probe("f1", "i-a", &[22]));
        let (_, events) = pass(None, &world.enforced(), 0);
        assert_eq!(reasons(&events), ["RuleRevoked"]);
        assert!(
            events[0]
                .note
                .contains("(rule sgr-4) and 2 more; authorized"),
            "{}",
            events[0].note
        );
    }

    // ── failures and refusals ────────────────────────────────────────────────

    #[test]
    fn a_failed_group_step_records_remediation_failed_once() {
        let world = World::open_ssh(2);
        let (first, events) = pass(None, &world.enforced_failing(&["sg-1"]), 0);
        assert_eq!(
            events,
            [
                EventSpec::warning(
                    "RemediationFailed",
                    "Remediate",
                    "sg-1: failed to authorize 1 rule (access-denied): UnauthorizedOperation: \
                     not allowed; nothing revoked: authorize failed"
                ),
                EventSpec::normal(
                    "RuleRevoked",
                    "Remediate",
                    "sg-2: closed tcp/22 to 0.0.0.0/0 (rule sgr-2); authorized 10.0.0.0/8 \
                     tcp/22; finding f2"
                ),
            ]
        );
        // The retry fails the same way: nothing new.
        let still_open = World::open_ssh(1);
        let (_, events) = pass(Some(&first), &still_open.enforced_failing(&["sg-1"]), 30);
        assert_eq!(events, []);
    }

    #[test]
    fn a_group_refused_for_an_all_traffic_rule_records_remediation_refused_once() {
        let world = World::default().with_group(SecurityGroup::world_open("sg-b", Traffic::All));
        let mut world = world;
        world
            .observation
            .findings
            .push(Finding::probe("f1", "i-b", &[22]));
        let (first, events) = pass(None, &world.enforced(), 0);
        assert_eq!(reasons(&events), ["RemediationRefused"]);
        assert_eq!(events[0].type_, EventType::Warning);
        assert!(
            events[0]
                .note
                .starts_with("sg-b: rule sgr-b allows all traffic from 0.0.0.0/0"),
            "{}",
            events[0].note
        );
        let (_, events) = pass(Some(&first), &world.enforced(), 60);
        assert_eq!(events, []);
    }

    #[test]
    fn a_failed_pass_records_pass_failed_once_then_recovered() {
        let world = World::open_ssh(1);
        let (ready, _) = pass(None, &world.enforced(), 0);
        let (failed, events) = pass(Some(&ready), &unreachable_guardduty(), 60);
        assert_eq!(
            events,
            [EventSpec::warning(
                "PassFailed",
                "Reconcile",
                "failed to read findings in us-east-1: connection refused (unreachable)"
            )]
        );
        let (still_failed, events) = pass(Some(&failed), &unreachable_guardduty(), 90);
        assert_eq!(events, [], "the same failure again is not a transition");
        let (_, events) = pass(Some(&still_failed), &World::default().enforced(), 120);
        assert_eq!(reasons(&events), ["Recovered"]);
        assert_eq!(events[0].type_, EventType::Normal);
        assert!(
            events[0]
                .note
                .starts_with("Ready again (was GuardDutyUnreachable: "),
            "{}",
            events[0].note
        );
    }

    #[test]
    fn a_different_failure_of_the_pass_records_pass_failed_again() {
        let (failed, _) = pass(None, &unreachable_guardduty(), 0);
        let other = PassReport {
            failures: vec![
                crate::domain::outcome::Failure::new(
                    Step::FindDetector,
                    Category::NoDetector,
                    "no detector in us-east-1",
                )
                .in_region("us-east-1"),
            ],
            detectors: Default::default(),
            ..unreachable_guardduty()
        };
        let (_, events) = pass(Some(&failed), &other, 60);
        assert_eq!(reasons(&events), ["PassFailed"]);
    }

    #[test]
    fn the_first_pass_ever_records_no_recovered() {
        let (_, events) = pass(None, &World::default().enforced(), 0);
        assert_eq!(events, []);
    }

    // ── the spec ─────────────────────────────────────────────────────────────

    #[test]
    fn an_invalid_spec_records_invalid_spec_once_per_message() {
        let (ready, _) = pass(None, &World::default().enforced(), 0);
        let (invalid_status, events) = invalid(Some(&ready), "spec.trustedCidrs[0]: world range");
        assert_eq!(reasons(&events), ["InvalidSpec"]);
        assert_eq!(events[0].type_, EventType::Warning);
        assert_eq!(events[0].action, "Validate");
        assert!(
            events[0].note.contains("spec.trustedCidrs[0]: world range"),
            "{}",
            events[0].note
        );
        let (_, events) = invalid(Some(&invalid_status), "spec.trustedCidrs[0]: world range");
        assert_eq!(events, []);
        let (_, events) = invalid(Some(&invalid_status), "spec.interval: too short");
        assert_eq!(reasons(&events), ["InvalidSpec"]);
    }

    #[test]
    fn an_aws_setup_failure_records_pass_failed_once() {
        let (ready, _) = pass(None, &World::default().enforced(), 0);
        let outcome = Outcome::SetupFailed(crate::ports::AwsSetupError::NoRegion);
        let setup_failed = |previous: &GuardDutyPolicyStatus| {
            compute_status(Some(1), Some(previous), &outcome, at(60))
        };
        let failed = setup_failed(&ready);
        let events = transitions(Some(&ready), &failed, &outcome);
        assert_eq!(reasons(&events), ["PassFailed"]);
        assert!(
            events[0].note.starts_with(
                "no pass ran (NoRegion): FindingsSynced: failed to find an AWS region"
            ),
            "{}",
            events[0].note
        );
        let again = setup_failed(&failed);
        assert_eq!(transitions(Some(&failed), &again, &outcome), []);
    }

    #[test]
    fn a_fixed_spec_records_recovered() {
        let (invalid_status, _) = invalid(None, "spec.interval: too short");
        let (_, events) = pass(Some(&invalid_status), &World::default().enforced(), 60);
        assert_eq!(reasons(&events), ["Recovered"]);
    }

    // ── bounds ───────────────────────────────────────────────────────────────

    #[test]
    fn more_than_ten_events_keep_nine_and_count_the_rest() {
        let (_, events) = pass(None, &World::open_ssh(14).enforced(), 0);
        assert_eq!(events.len(), MAX_EVENTS_PER_PASS);
        assert_eq!(reasons(&events[..9]), ["RuleRevoked"; 9]);
        assert_eq!(
            events[9],
            EventSpec::normal(
                "EventsTruncated",
                "Reconcile",
                "and 5 more events this pass (RuleRevoked x5); see status.recentActions and the \
                 operator's log"
            )
        );
    }

    #[test]
    fn the_summary_is_a_warning_when_a_dropped_event_is() {
        let world = World::open_ssh(12);
        let (_, events) = pass(None, &world.enforced_failing(&["sg-c"]), 0);
        assert_eq!(events.len(), MAX_EVENTS_PER_PASS);
        assert_eq!(events[9].type_, EventType::Warning);
        assert!(
            events[9]
                .note
                .contains("RemediationFailed x1, RuleRevoked x2"),
            "{}",
            events[9].note
        );
    }

    #[test]
    fn notes_are_cut_to_1024_bytes_on_a_character_boundary() {
        let note = bounded_note(&"é".repeat(1000));
        assert!(note.len() <= MAX_NOTE_BYTES, "{}", note.len());
        assert!(note.ends_with('…'));
        let short = bounded_note("short");
        assert_eq!(short, "short");
    }

    #[test]
    fn urls_in_notes_keep_only_their_host() {
        assert_eq!(
            bounded_note(
                "POST https://hooks.slack.com/services/T0/B0/secret failed; see \
                 http://user:pw@example.com:8080?token=x and https://example.org"
            ),
            "POST https://hooks.slack.com/… failed; see http://example.com:8080/… and \
             https://example.org"
        );
    }

    // ── notifications ────────────────────────────────────────────────────────

    #[test]
    fn only_newly_failing_channels_record_notification_failed() {
        let failures = vec![
            (
                "slack".to_string(),
                "HTTP 500 from https://hooks.slack.com/services/T/B/X".to_string(),
            ),
            ("email".to_string(), "SES throttled".to_string()),
            ("slack".to_string(), "again".to_string()),
        ];
        let events = notification_events(&failures, &["email".to_string()]);
        assert_eq!(
            events,
            [EventSpec::warning(
                "NotificationFailed",
                "Notify",
                "failed to deliver to notification channel slack: HTTP 500 from \
                 https://hooks.slack.com/…"
            )]
        );
        assert_eq!(
            notification_events(&failures, &["email".into(), "slack".into()]),
            []
        );
        assert_eq!(notification_events(&[], &[]), []);
    }

    #[test]
    fn many_failing_channels_are_bounded_with_a_warning_summary() {
        let failures: Vec<(String, String)> = (0..12)
            .map(|k| (format!("channel-{k:02}"), "down".to_string()))
            .collect();
        let events = notification_events(&failures, &[]);
        assert_eq!(events.len(), MAX_EVENTS_PER_PASS);
        assert_eq!(
            events[9],
            EventSpec::warning(
                "EventsTruncated",
                "Notify",
                "and 3 more events this pass (NotificationFailed x3); see status.recentActions \
                 and the operator's log"
            )
        );
    }

    // ── publishing, against a mock API server ───────────────────────────────

    type ApiHandle = tower_test::mock::Handle<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >;

    /// Answers `count` requests, each with its own body echoed back, and hands back
    /// (method, path, body) of each.
    fn echo_server(
        mut handle: ApiHandle,
        count: usize,
    ) -> tokio::task::JoinHandle<Vec<(http::Method, String, serde_json::Value)>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for index in 0..count {
                let (request, send) = handle
                    .next_request()
                    .await
                    .unwrap_or_else(|| panic!("request {index} never came"));
                let (method, path) = (request.method().clone(), request.uri().path().to_string());
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let reply = serde_json::to_vec(&body).unwrap();
                send.send_response(
                    http::Response::builder()
                        .status(201)
                        .body(kube::client::Body::from(reply))
                        .unwrap(),
                );
                seen.push((method, path, body));
            }
            if let Ok(Some((request, _))) =
                tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request())
                    .await
            {
                panic!("unexpected request: {} {}", request.method(), request.uri());
            }
            seen
        })
    }

    fn policy_ref() -> ObjectReference {
        ObjectReference {
            api_version: Some("guardduty.security.dev/v1alpha1".into()),
            kind: Some("GuardDutyPolicy".into()),
            name: Some("web".into()),
            namespace: Some("security".into()),
            uid: Some("9b1f4c38-5d64-4c3e-9a51-1d0c0e7f2a10".into()),
            ..ObjectReference::default()
        }
    }

    fn mock_publisher() -> (EventPublisher, ApiHandle) {
        let (service, handle) = tower_test::mock::pair();
        let client = Client::new(service, "default");
        let publisher = EventPublisher::new(client, reporter(Some("operator-0".into())));
        (publisher, handle)
    }

    #[tokio::test]
    async fn an_event_is_posted_to_the_policy_namespace_with_its_reason_note_and_type() {
        let (publisher, handle) = mock_publisher();
        let server = echo_server(handle, 1);
        let event = EventSpec::warning(
            reason::REMEDIATION_FAILED,
            action::REMEDIATE,
            "sg-1: failed to authorize 1 rule",
        );

        publisher.publish(&policy_ref(), &[event]).await.unwrap();

        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("served within 5s")
            .unwrap();
        let (method, path, body) = &seen[0];
        assert_eq!(*method, http::Method::POST);
        assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/security/events");
        assert_eq!(body["reason"], "RemediationFailed");
        assert_eq!(body["note"], "sg-1: failed to authorize 1 rule");
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["action"], "Remediate");
        assert_eq!(body["reportingController"], "guardduty-operator");
        assert_eq!(body["reportingInstance"], "operator-0");
        assert_eq!(body["regarding"]["kind"], "GuardDutyPolicy");
        assert_eq!(body["regarding"]["name"], "web");
        assert_eq!(body["metadata"]["namespace"], "security");
    }

    #[tokio::test]
    async fn two_events_with_one_reason_are_two_events_each_with_its_note() {
        let (publisher, handle) = mock_publisher();
        let server = echo_server(handle, 2);
        let events = [
            EventSpec::normal(reason::RULE_REVOKED, action::REMEDIATE, "sg-1: closed"),
            EventSpec::normal(reason::RULE_REVOKED, action::REMEDIATE, "sg-2: closed"),
        ];

        publisher.publish(&policy_ref(), &events).await.unwrap();

        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("served within 5s")
            .unwrap();
        let summary: Vec<(&http::Method, &serde_json::Value)> = seen
            .iter()
            .map(|(method, _, body)| (method, &body["note"]))
            .collect();
        assert_eq!(
            summary,
            [
                (&http::Method::POST, &serde_json::json!("sg-1: closed")),
                (&http::Method::POST, &serde_json::json!("sg-2: closed")),
            ]
        );
    }

    #[tokio::test]
    async fn a_rejected_event_does_not_stop_the_others_and_is_reported() {
        let (publisher, mut handle) = mock_publisher();
        let server = tokio::spawn(async move {
            let mut notes = Vec::new();
            for status in [403, 201] {
                let (request, send) = handle.next_request().await.expect("a request");
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                notes.push(body["note"].clone());
                let reply = if status == 201 {
                    body
                } else {
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Forbidden", "code": 403, "message": "forbidden"})
                };
                send.send_response(
                    http::Response::builder()
                        .status(status)
                        .body(kube::client::Body::from(
                            serde_json::to_vec(&reply).unwrap(),
                        ))
                        .unwrap(),
                );
            }
            notes
        });
        let events = [
            EventSpec::warning(reason::PASS_FAILED, action::RECONCILE, "first"),
            EventSpec::normal(reason::RULE_REVOKED, action::REMEDIATE, "second"),
        ];

        let error = publisher.publish(&policy_ref(), &events).await.unwrap_err();

        assert_eq!(error.to_string(), "failed to publish 1 of 2 events");
        assert_eq!(error.category(), "publish-events");
        let notes = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("served within 5s")
            .unwrap();
        assert_eq!(notes, ["first", "second"]);
    }

    #[test]
    fn every_reason_is_pascal_case_and_short() {
        for reason in [
            reason::RULE_REVOKED,
            reason::RULE_AUTHORIZED,
            reason::DRIFT_REMEDIATED,
            reason::REMEDIATION_FAILED,
            reason::REMEDIATION_REFUSED,
            reason::PASS_FAILED,
            reason::RECOVERED,
            reason::INVALID_SPEC,
            reason::NOTIFICATION_FAILED,
            reason::EVENTS_TRUNCATED,
            action::REMEDIATE,
            action::RECONCILE,
            action::VALIDATE,
            action::NOTIFY,
        ] {
            assert!(reason.len() <= 128);
            assert!(
                reason.chars().next().unwrap().is_ascii_uppercase(),
                "{reason}"
            );
            assert!(
                reason.chars().all(|c| c.is_ascii_alphanumeric()),
                "{reason}"
            );
        }
    }
}
