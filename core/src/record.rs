//! The change record: what the operator changed in AWS for a policy (kept in its
//! status, or in the command line's `--state` file), and the plan that undoes it
//! (`deletionPolicy: Revert`), both pure.
//!
//! ```text
//!  pass report ─> record_changes ─> ChangeRecord
//!  ChangeRecord ─> revert_plan ─> per group: restore the revoked rules, then remove the added ones
//! ```
//!
//! The record is kept *net*: it says how to get from the groups as they are back to
//! the groups as they were before the operator touched them, so one rule never
//! appears in both lists.
//! - A rule the operator revokes that it had added itself (a narrowed remainder
//!   narrowed again, a trusted range no longer trusted) cancels its `added` entry and
//!   is not recorded as revoked: it did not exist before the operator, and restoring
//!   it would leave a rule that was never there.
//! - A rule the operator adds that it had revoked before (a range trusted after its
//!   rule was revoked) cancels the `revoked` entry: the rule exists again, as it did
//!   before; removing the operator's copy would take it away.
//! - The same rule recorded twice in one list (re-added or re-revoked after drift)
//!   keeps the newest entry only.
//!
//! Rules are identified by group, CIDR and TCP port range: AWS holds at most one
//! such rule per group, and the operator only records TCP rules from CIDRs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::ids::{RuleId, SecurityGroupId};
use crate::outcome::{Category, PassReport, Step, StepResult};
use crate::security_group::{PortRange, SecurityGroup, Source, Traffic};

/// The most rules each list of the record holds.
pub const MAX_RECORDED_RULES: usize = 500;

/// The operator's changes to security groups, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// Ingress rules the operator added (trusted ranges, narrowed remainders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECORDED_RULES))]
    pub added: Vec<RecordedRule>,
    /// Ingress rules the operator revoked, as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECORDED_RULES))]
    pub revoked: Vec<RecordedRule>,
    /// True when a list reached its bound and older entries were dropped: a Revert
    /// then restores only what is recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One TCP ingress rule from a CIDR, in a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRule {
    pub group: String,
    /// The rule's id, when AWS reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub from_port: u16,
    pub to_port: u16,
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One ingress rule to put back as it was before the operator revoked it: TCP ports
/// from a CIDR, with its own description if it had one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restoration {
    pub source: Cidr,
    pub ports: PortRange,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The record after a pass: the previous record plus what the pass did (pure).
///
/// Only steps that were carried out count (`StepResult::Done`): the rules of a
/// group's authorizations when its authorize step is done, and its revocations when
/// its revoke step is done. Nothing done: the previous record, unchanged. A record
/// that nets out to nothing is `None`. Each list keeps its newest
/// [`MAX_RECORDED_RULES`] entries; dropping older ones sets `truncated` for good.
///
/// What is recorded:
/// - An added rule's id only when the group's change authorized one rule and AWS
///   reported one id: AWS may report fewer ids than rules (moto reports only the last
///   permission's) and in no particular order, so ids are not paired with rules
///   otherwise. [`revert`] then finds the rule by the operator's tag, CIDR and ports.
/// - A revoked rule's description, so a revert puts the rule back as it was.
pub fn record_changes(
    previous: Option<&ChangeRecord>,
    report: &PassReport,
) -> Option<ChangeRecord> {
    let Some(plan) = report.plan.as_ref().filter(|_| report.applied) else {
        return previous.cloned();
    };
    let mut added = Vec::new();
    let mut revoked = Vec::new();
    for outcome in &report.outcomes {
        let Some((_, change)) = plan.changes().find(|(g, _)| g.group == outcome.group) else {
            continue;
        };
        let group = outcome.group.to_string();
        if let StepResult::Done { rule_ids, .. } = &outcome.authorize {
            let rule_id = match (change.authorize.as_slice(), rule_ids.as_slice()) {
                ([_], [id]) => Some(id.to_string()),
                _ => None,
            };
            added.extend(change.authorize.iter().map(|auth| RecordedRule {
                group: group.clone(),
                rule_id: rule_id.clone(),
                from_port: auth.ports.from,
                to_port: auth.ports.to,
                cidr: auth.source.to_string(),
                description: Some(auth.description()),
            }));
        }
        if let StepResult::Done { .. } = &outcome.revoke {
            revoked.extend(change.revoke.iter().map(|revocation| RecordedRule {
                group: group.clone(),
                rule_id: Some(revocation.rule.to_string()),
                from_port: revocation.ports.from,
                to_port: revocation.ports.to,
                cidr: revocation.source.to_string(),
                description: revocation.description.clone(),
            }));
        }
    }
    if added.is_empty() && revoked.is_empty() {
        return previous.cloned();
    }
    let mut record = previous.cloned().unwrap_or_default();
    // The executor authorizes before it revokes.
    for rule in added {
        record_added(&mut record, rule);
    }
    for rule in revoked {
        record_revoked(&mut record, rule);
    }
    for list in [&mut record.added, &mut record.revoked] {
        if list.len() > MAX_RECORDED_RULES {
            list.drain(..list.len() - MAX_RECORDED_RULES);
            record.truncated = true;
        }
    }
    let empty = record.added.is_empty() && record.revoked.is_empty() && !record.truncated;
    (!empty).then_some(record)
}

/// What identifies a rule in a group.
fn same_rule(a: &RecordedRule, b: &RecordedRule) -> bool {
    (&a.group, &a.cidr, a.from_port, a.to_port) == (&b.group, &b.cidr, b.from_port, b.to_port)
}

fn record_added(record: &mut ChangeRecord, rule: RecordedRule) {
    let before = record.revoked.len();
    record.revoked.retain(|r| !same_rule(r, &rule));
    if record.revoked.len() < before {
        // The operator put back a rule it had revoked: the group holds it again,
        // as before the operator.
        return;
    }
    record.added.retain(|r| !same_rule(r, &rule));
    record.added.push(rule);
}

fn record_revoked(record: &mut ChangeRecord, rule: RecordedRule) {
    let ours = record
        .added
        .iter()
        .position(|r| same_rule(r, &rule))
        .map(|at| record.added.remove(at));
    match ours {
        // The operator revoked a rule it had added (the recorded id, when known, says
        // it is the same rule): it was never there before the operator.
        Some(added) if added.rule_id.is_none() || added.rule_id == rule.rule_id => {}
        // Another rule with the same CIDR and ports replaced the operator's (which is
        // gone: AWS holds one such rule per group): it is restored like any other.
        _ => {
            record.revoked.retain(|r| !same_rule(r, &rule));
            record.revoked.push(rule);
        }
    }
}

/// One rule the operator added, to remove on revert.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// The rule's id when AWS reported it; otherwise the rule is found by the
    /// operator's tag, its CIDR and its ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleId>,
    pub source: Cidr,
    pub ports: PortRange,
}

/// What reverting one group takes, in this order: restore (authorize, untagged) the
/// rules the operator revoked, then remove the rules it added, so that what the
/// group admitted before the operator is never missing in between (the executor's
/// authorize-before-revoke, reversed).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertSteps {
    pub restore: Vec<Restoration>,
    pub remove: Vec<Removal>,
}

/// The record as per-group steps, groups and rules sorted (pure). Only recorded
/// rules appear: a rule not in `added` is never removed. Entries that cannot be read
/// (see [`unreadable_entries`]) are left out.
pub fn revert_plan(record: &ChangeRecord) -> Vec<(SecurityGroupId, RevertSteps)> {
    let mut groups: BTreeMap<SecurityGroupId, RevertSteps> = BTreeMap::new();
    for rule in &record.revoked {
        if let Some((group, source, ports)) = read(rule) {
            groups.entry(group).or_default().restore.push(Restoration {
                source,
                ports,
                description: rule.description.clone(),
            });
        }
    }
    for rule in &record.added {
        if let Some((group, source, ports)) = read(rule) {
            let rule = rule
                .rule_id
                .as_deref()
                .and_then(|id| RuleId::parse(id).ok());
            groups.entry(group).or_default().remove.push(Removal {
                rule,
                source,
                ports,
            });
        }
    }
    groups
        .into_iter()
        .map(|(group, mut steps)| {
            steps.restore.sort();
            steps.restore.dedup();
            steps.remove.sort();
            steps.remove.dedup();
            (group, steps)
        })
        .collect()
}

/// Entries of the record whose group, CIDR or ports do not parse (the operator writes
/// only readable ones; a hand-edited status may not be): a revert skips them.
pub fn unreadable_entries(record: &ChangeRecord) -> Vec<&RecordedRule> {
    record
        .added
        .iter()
        .chain(&record.revoked)
        .filter(|rule| read(rule).is_none())
        .collect()
}

fn read(rule: &RecordedRule) -> Option<(SecurityGroupId, Cidr, PortRange)> {
    let group = SecurityGroupId::parse(&rule.group).ok()?;
    let source = Cidr::parse_normalising(&rule.cidr).ok()?;
    (rule.from_port <= rule.to_port)
        .then(|| (group, source, PortRange::new(rule.from_port, rule.to_port)))
}

/// The restorations the group does not hold yet, whoever's the rule that holds it (pure).
pub fn missing(group: &SecurityGroup, restore: &[Restoration]) -> Vec<Restoration> {
    restore
        .iter()
        .filter(|r| {
            !group.ingress.iter().any(|rule| {
                rule.traffic == Traffic::Tcp(r.ports) && rule.source == Source::Cidr(r.source)
            })
        })
        .cloned()
        .collect()
}

/// The group's rules to remove for these removals (pure): only the operator's rules
/// (its tag), with the recorded CIDR and ports, and the recorded id when there is one.
/// A recorded rule already gone matches nothing.
pub fn present_removals(group: &SecurityGroup, remove: &[Removal]) -> Vec<RuleId> {
    let mut ids: Vec<RuleId> = group
        .ingress
        .iter()
        .filter(|rule| {
            rule.managed_ports.is_some()
                && remove.iter().any(|r| {
                    rule.traffic == Traffic::Tcp(r.ports)
                        && rule.source == Source::Cidr(r.source)
                        && r.rule.as_ref().is_none_or(|id| *id == rule.id)
                })
        })
        .map(|rule| rule.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// What a revert did to one group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum GroupRevert {
    /// Done: how many rules were restored and removed; the other recorded rules were
    /// already as they were before the operator.
    #[serde(rename_all = "camelCase")]
    Reverted {
        group: SecurityGroupId,
        restored: usize,
        removed: usize,
        already_reverted: usize,
    },
    /// The group no longer exists: nothing to revert.
    GroupGone { group: SecurityGroupId },
    /// A step failed; when restoring failed, nothing was removed.
    Failed {
        group: SecurityGroupId,
        step: Step,
        category: Category,
        error: String,
    },
}

impl GroupRevert {
    pub fn group(&self) -> &SecurityGroupId {
        match self {
            GroupRevert::Reverted { group, .. }
            | GroupRevert::GroupGone { group }
            | GroupRevert::Failed { group, .. } => group,
        }
    }
}

/// Everything a revert did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertReport {
    /// Per recorded group, sorted.
    pub groups: Vec<GroupRevert>,
    /// Describing the groups failed: nothing was changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<RevertError>,
    /// Record entries skipped because they could not be read.
    pub unreadable: usize,
    /// The record had dropped older entries: what they changed stays as it is.
    pub truncated: bool,
}

impl RevertReport {
    /// Every group reverted or gone. A revert that did not complete can be run again:
    /// what is already reverted is left as it is.
    pub fn completed(&self) -> bool {
        self.check().is_ok()
    }

    /// `Ok` when the revert completed; otherwise the first failure, with how many
    /// groups failed.
    pub fn check(&self) -> Result<(), RevertError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let failed: Vec<_> = self
            .groups
            .iter()
            .filter_map(|g| match g {
                GroupRevert::Failed {
                    group,
                    step,
                    category,
                    error,
                } => Some((group, *step, *category, error)),
                _ => None,
            })
            .collect();
        let Some((group, step, category, error)) = failed.first() else {
            return Ok(());
        };
        let more = match failed.len() {
            1 => String::new(),
            n => format!(" (and {} more groups)", n - 1),
        };
        Err(RevertError {
            step: *step,
            category: *category,
            error: format!("{group}: {error}{more}"),
        })
    }

    /// Rules restored, rules removed, groups gone: for logs.
    pub fn counts(&self) -> (usize, usize, usize) {
        self.groups
            .iter()
            .fold((0, 0, 0), |(restored, removed, gone), g| match g {
                GroupRevert::Reverted {
                    restored: r,
                    removed: m,
                    ..
                } => (restored + r, removed + m, gone),
                GroupRevert::GroupGone { .. } => (restored, removed, gone + 1),
                GroupRevert::Failed { .. } => (restored, removed, gone),
            })
    }
}

/// Why a revert did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("failed to {step}: {error}")]
pub struct RevertError {
    pub step: Step,
    pub category: Category,
    pub error: String,
}

impl RevertError {
    /// A label for metrics and event reasons.
    pub fn category(&self) -> Category {
        self.category
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::outcome::GroupOutcome;
    use crate::plan::{Authorization, ChangeSet, GroupPlan, Plan, Purpose, Revocation, Verdict};
    use crate::policy::Mode;
    use crate::security_group::IngressRule;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn sg(id: &str) -> SecurityGroupId {
        SecurityGroupId::parse(id).unwrap()
    }

    fn rule_id(id: &str) -> RuleId {
        RuleId::parse(id).unwrap()
    }

    fn ports(from: u16, to: u16) -> PortRange {
        PortRange::new(from, to)
    }

    fn trusted(source: &str, port: u16) -> Authorization {
        Authorization {
            source: cidr(source),
            ports: PortRange::single(port),
            purpose: Purpose::Trusted,
        }
    }

    fn narrowed(source: &str, range: PortRange, replaces: &str) -> Authorization {
        Authorization {
            source: cidr(source),
            ports: range,
            purpose: Purpose::Narrowed {
                replaces: rule_id(replaces),
            },
        }
    }

    fn revocation(rule: &str, source: &str, range: PortRange) -> Revocation {
        Revocation {
            rule: rule_id(rule),
            source: cidr(source),
            ports: range,
            exposed_ports: vec![22],
            description: None,
        }
    }

    fn done(ids: &[&str]) -> StepResult {
        StepResult::Done {
            rules: ids.len(),
            rule_ids: ids.iter().map(|id| rule_id(id)).collect(),
        }
    }

    /// A report of an applied pass: per group, its change and what each step did.
    fn report(groups: Vec<(&str, ChangeSet, StepResult, StepResult)>) -> PassReport {
        let plan = Plan {
            mode: Mode::Enforce,
            findings: BTreeMap::new(),
            groups: groups
                .iter()
                .map(|(group, change, _, _)| GroupPlan {
                    group: sg(group),
                    name: (*group).into(),
                    vpc_id: None,
                    network_interfaces: 1,
                    ports: vec![22],
                    findings: Vec::new(),
                    verdict: Verdict::Change(change.clone()),
                })
                .collect(),
        };
        PassReport {
            mode: Mode::Enforce,
            detector: Some("d1".into()),
            findings: Vec::new(),
            plan: Some(plan),
            applied: true,
            outcomes: groups
                .into_iter()
                .map(|(group, _, authorize, revoke)| GroupOutcome {
                    group: sg(group),
                    authorize,
                    revoke,
                })
                .collect(),
            archived: Vec::new(),
            failure: None,
        }
    }

    fn change(authorize: Vec<Authorization>, revoke: Vec<Revocation>) -> ChangeSet {
        ChangeSet {
            authorize,
            revoke,
            protected_ports: vec![22],
        }
    }

    /// `sg-1`: 0.0.0.0/0 tcp/0-65535 (sgr-1) is narrowed around 22, and 10.0.0.0/8
    /// trusted on 22.
    fn narrowing_pass() -> PassReport {
        report(vec![(
            "sg-1",
            change(
                vec![
                    trusted("10.0.0.0/8", 22),
                    narrowed("0.0.0.0/0", ports(0, 21), "sgr-1"),
                    narrowed("0.0.0.0/0", ports(23, 65535), "sgr-1"),
                ],
                vec![Revocation {
                    description: Some("web from anywhere".into()),
                    ..revocation("sgr-1", "0.0.0.0/0", ports(0, 65535))
                }],
            ),
            done(&["sgr-a3"]),
            done(&["sgr-1"]),
        )])
    }

    fn recorded(group: &str, id: Option<&str>, range: PortRange, source: &str) -> RecordedRule {
        RecordedRule {
            group: group.into(),
            rule_id: id.map(str::to_string),
            from_port: range.from,
            to_port: range.to,
            cidr: source.into(),
            description: None,
        }
    }

    /// The record's rules as `group cidr from-to`, without ids and descriptions.
    fn keys(rules: &[RecordedRule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {} {}-{}", r.group, r.cidr, r.from_port, r.to_port))
            .collect()
    }

    #[test]
    fn a_pass_records_the_rules_it_added_and_the_rules_it_revoked() {
        let record = record_changes(None, &narrowing_pass()).unwrap();
        assert_eq!(
            keys(&record.added),
            [
                "sg-1 10.0.0.0/8 22-22",
                "sg-1 0.0.0.0/0 0-21",
                "sg-1 0.0.0.0/0 23-65535"
            ]
        );
        assert_eq!(record.added[0].rule_id, None, "3 rules, 1 id: not paired");
        assert_eq!(
            record.added[0].description.as_deref(),
            Some("guardduty-operator: trusted access to tcp/22")
        );
        assert_eq!(
            record.revoked,
            [RecordedRule {
                description: Some("web from anywhere".into()),
                ..recorded("sg-1", Some("sgr-1"), ports(0, 65535), "0.0.0.0/0")
            }],
            "the revoked rule as it was, description included, to restore it"
        );
        assert!(!record.truncated);
    }

    #[test]
    fn one_authorized_rule_with_one_reported_id_keeps_the_id() {
        let pass = report(vec![(
            "sg-2",
            change(vec![trusted("10.0.0.0/8", 22)], Vec::new()),
            done(&["sgr-77"]),
            StepResult::NotNeeded,
        )]);
        let record = record_changes(None, &pass).unwrap();
        assert_eq!(record.added[0].rule_id.as_deref(), Some("sgr-77"));
        assert!(record.revoked.is_empty());
    }

    #[test]
    fn nothing_done_leaves_the_previous_record_as_it_was() {
        let previous = record_changes(None, &narrowing_pass()).unwrap();
        let mut failed = narrowing_pass();
        failed.outcomes[0].authorize = StepResult::Failed {
            category: Category::AccessDenied,
            error: "no".into(),
        };
        failed.outcomes[0].revoke = StepResult::NotRun {
            reason: "authorize failed".into(),
        };
        assert_eq!(
            record_changes(Some(&previous), &failed),
            Some(previous.clone())
        );
        assert_eq!(record_changes(None, &failed), None);

        let mut dry_run = narrowing_pass();
        dry_run.applied = false;
        dry_run.outcomes.clear();
        assert_eq!(record_changes(Some(&previous), &dry_run), Some(previous));
        assert_eq!(record_changes(None, &dry_run), None);
    }

    #[test]
    fn a_done_authorize_is_recorded_even_when_the_revoke_failed() {
        let mut pass = narrowing_pass();
        pass.outcomes[0].revoke = StepResult::Failed {
            category: Category::Throttled,
            error: "slow down".into(),
        };
        let record = record_changes(None, &pass).unwrap();
        assert_eq!(record.added.len(), 3);
        assert!(record.revoked.is_empty());
    }

    #[test]
    fn a_remainder_narrowed_again_is_neither_added_nor_restored() {
        let first = record_changes(None, &narrowing_pass()).unwrap();
        // A later finding on 80: the operator's remainder 23-65535 (sgr-a3) is revoked
        // and narrowed around 80.
        let second = report(vec![(
            "sg-1",
            change(
                vec![
                    narrowed("0.0.0.0/0", ports(23, 79), "sgr-a3"),
                    narrowed("0.0.0.0/0", ports(81, 65535), "sgr-a3"),
                ],
                vec![revocation("sgr-a3", "0.0.0.0/0", ports(23, 65535))],
            ),
            done(&["sgr-a5"]),
            done(&["sgr-a3"]),
        )]);
        let record = record_changes(Some(&first), &second).unwrap();
        assert_eq!(
            keys(&record.added),
            [
                "sg-1 10.0.0.0/8 22-22",
                "sg-1 0.0.0.0/0 0-21",
                "sg-1 0.0.0.0/0 23-79",
                "sg-1 0.0.0.0/0 81-65535"
            ]
        );
        assert_eq!(keys(&record.revoked), ["sg-1 0.0.0.0/0 0-65535"]);
        // Reverting restores the original rule and removes every piece.
        let [(group, steps)] = revert_plan(&record).try_into().unwrap();
        assert_eq!(group, sg("sg-1"));
        assert_eq!(steps.restore.len(), 1);
        assert_eq!(steps.restore[0].ports, PortRange::ALL);
        assert_eq!(steps.remove.len(), 4);
    }

    #[test]
    fn a_revoked_rule_the_operator_adds_again_is_no_longer_restored_or_removed() {
        let revoked = report(vec![(
            "sg-1",
            change(
                Vec::new(),
                vec![revocation("sgr-1", "192.0.2.0/24", ports(22, 22))],
            ),
            StepResult::NotNeeded,
            done(&["sgr-1"]),
        )]);
        let first = record_changes(None, &revoked).unwrap();
        // 192.0.2.0/24 becomes trusted: the operator authorizes it on 22.
        let trusted_now = report(vec![(
            "sg-1",
            change(vec![trusted("192.0.2.0/24", 22)], Vec::new()),
            done(&["sgr-9"]),
            StepResult::NotNeeded,
        )]);
        assert_eq!(record_changes(Some(&first), &trusted_now), None);
    }

    #[test]
    fn a_rule_revoked_twice_is_restored_once_with_its_newest_id() {
        let revoke = |id: &str| {
            report(vec![(
                "sg-1",
                change(Vec::new(), vec![revocation(id, "0.0.0.0/0", ports(22, 22))]),
                StepResult::NotNeeded,
                done(&[id]),
            )])
        };
        let first = record_changes(None, &revoke("sgr-1")).unwrap();
        let record = record_changes(Some(&first), &revoke("sgr-2")).unwrap();
        assert_eq!(
            record.revoked,
            [recorded("sg-1", Some("sgr-2"), ports(22, 22), "0.0.0.0/0")]
        );
    }

    #[test]
    fn each_list_keeps_its_newest_entries_and_says_it_dropped_the_oldest() {
        let mut previous = ChangeRecord::default();
        for port in 0..MAX_RECORDED_RULES as u16 {
            previous
                .added
                .push(recorded("sg-1", None, ports(port, port), "10.0.0.0/8"));
        }
        let pass = report(vec![(
            "sg-2",
            change(vec![trusted("10.0.0.0/8", 22)], Vec::new()),
            done(&["sgr-77"]),
            StepResult::NotNeeded,
        )]);
        let record = record_changes(Some(&previous), &pass).unwrap();
        assert_eq!(record.added.len(), MAX_RECORDED_RULES);
        assert!(record.truncated);
        assert_eq!(record.added[0].from_port, 1, "the oldest entry went");
        assert_eq!(record.added.last().unwrap().group, "sg-2");
        // Truncated stays said.
        let again = record_changes(Some(&record), &pass).unwrap();
        assert!(again.truncated);
        assert_eq!(again.added.len(), MAX_RECORDED_RULES);
    }

    #[test]
    fn the_revert_plan_restores_before_it_removes_only_recorded_rules_per_group() {
        let record = ChangeRecord {
            added: vec![
                recorded("sg-2", Some("sgr-5"), ports(22, 22), "10.0.0.0/8"),
                recorded("sg-1", None, ports(22, 22), "10.0.0.0/8"),
                recorded("sg-1", None, ports(22, 22), "10.0.0.0/8"),
                recorded("not-a-group", None, ports(22, 22), "10.0.0.0/8"),
            ],
            revoked: vec![
                recorded("sg-1", Some("sgr-1"), ports(22, 22), "0.0.0.0/0"),
                recorded("sg-1", Some("sgr-2"), ports(22, 22), "::/0"),
                RecordedRule {
                    from_port: 30,
                    to_port: 20,
                    ..recorded("sg-3", Some("sgr-3"), ports(22, 22), "0.0.0.0/0")
                },
            ],
            truncated: false,
        };
        let plan = revert_plan(&record);
        assert_eq!(
            plan,
            [
                (
                    sg("sg-1"),
                    RevertSteps {
                        restore: vec![
                            Restoration {
                                source: cidr("0.0.0.0/0"),
                                ports: ports(22, 22),
                                description: None
                            },
                            Restoration {
                                source: cidr("::/0"),
                                ports: ports(22, 22),
                                description: None
                            },
                        ],
                        remove: vec![Removal {
                            rule: None,
                            source: cidr("10.0.0.0/8"),
                            ports: ports(22, 22)
                        }],
                    }
                ),
                (
                    sg("sg-2"),
                    RevertSteps {
                        restore: Vec::new(),
                        remove: vec![Removal {
                            rule: Some(rule_id("sgr-5")),
                            source: cidr("10.0.0.0/8"),
                            ports: ports(22, 22)
                        }],
                    }
                ),
            ]
        );
        assert_eq!(unreadable_entries(&record).len(), 2);
    }

    fn ingress(id: &str, range: PortRange, source: &str, managed: bool) -> IngressRule {
        IngressRule {
            id: rule_id(id),
            traffic: Traffic::Tcp(range),
            source: Source::Cidr(cidr(source)),
            description: None,
            managed_ports: managed.then(|| vec![22]),
        }
    }

    fn group(id: &str, ingress: Vec<IngressRule>) -> SecurityGroup {
        SecurityGroup {
            id: sg(id),
            name: id.into(),
            vpc_id: None,
            tags: BTreeMap::new(),
            ingress,
            network_interfaces: 1,
        }
    }

    #[test]
    fn only_the_operators_matching_rules_are_removed() {
        let now = group(
            "sg-1",
            vec![
                ingress("sgr-a", ports(22, 22), "10.0.0.0/8", true),
                ingress("sgr-b", ports(22, 22), "192.0.2.0/24", false),
                ingress("sgr-c", ports(0, 21), "0.0.0.0/0", true),
                ingress("sgr-d", ports(23, 65535), "0.0.0.0/0", true),
            ],
        );
        let remove = [
            Removal {
                rule: None,
                source: cidr("10.0.0.0/8"),
                ports: ports(22, 22),
            },
            // Someone else's rule with the recorded CIDR and ports: not the operator's.
            Removal {
                rule: None,
                source: cidr("192.0.2.0/24"),
                ports: ports(22, 22),
            },
            // The recorded id is gone; another rule of the operator has these ports.
            Removal {
                rule: Some(rule_id("sgr-99")),
                source: cidr("0.0.0.0/0"),
                ports: ports(0, 21),
            },
            Removal {
                rule: Some(rule_id("sgr-d")),
                source: cidr("0.0.0.0/0"),
                ports: ports(23, 65535),
            },
        ];
        assert_eq!(
            present_removals(&now, &remove),
            [rule_id("sgr-a"), rule_id("sgr-d")]
        );
    }
}
