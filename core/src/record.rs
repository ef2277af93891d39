//! The change record: what the operator changed in AWS for a policy (kept in its
//! status, or in the command line's `--state` file), and the plan that undoes it
//! (`deletionPolicy: Revert`), all pure.
//!
//! ```text
//!  previous record ─ settle (against the groups as observed) ─┐
//!  plan ─ intent ─> record with the intent pending ─ written before any AWS call
//!  outcomes ─> record after the pass (done steps recorded; failed ones still pending)
//!  record ─> revert_plan ─> per group: restore the revoked rules, then remove the added ones
//! ```
//!
//! Crash safety: before the first mutating call of a pass, the whole intent (every
//! rule it will add and revoke) is written as `pending`. A pass killed between any two
//! calls leaves that intent behind; the next pass settles it against what AWS holds
//! (an intended rule that exists with the operator's tag was added; an intended
//! revocation whose rule is gone was made), so the record is complete and nothing the
//! operator did is ever lost to a Revert.
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
//! Rules are identified by group, protocol, CIDR and port range: AWS holds at most one
//! such rule per group, and the operator only records rules from CIDRs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::ids::{RuleId, SecurityGroupId};
use crate::outcome::{Category, GroupOutcome, Step, StepResult};
use crate::plan::{ChangeSet, GroupPlan, IpProtocol, Plan};
use crate::security_group::{PortRange, SecurityGroup, Source};
use crate::time::Timestamp;

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
    /// Changes asked of AWS whose outcome is not known yet (a pass in flight, killed
    /// or failed part-way): settled against AWS by the next pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Intent>,
}

/// The changes a pass asks of AWS, written before it asks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    /// Rules to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECORDED_RULES))]
    pub added: Vec<RecordedRule>,
    /// Rules to revoke, as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECORDED_RULES))]
    pub revoked: Vec<RecordedRule>,
}

impl Intent {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.revoked.is_empty()
    }
}

fn tcp() -> String {
    "tcp".to_string()
}

fn is_tcp(protocol: &str) -> bool {
    protocol == "tcp"
}

/// One ingress rule from a CIDR, in a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRule {
    pub group: String,
    /// The account of the group, when it is not the credentials' own (a member
    /// account) or was recorded with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The region of the group (`None`: the policy's only region, as recorded before
    /// policies covered several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The rule's id, when AWS reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// `tcp` (the default), `udp`, `icmp`, `icmpv6` or `-1` (all traffic).
    #[serde(default = "tcp", skip_serializing_if = "is_tcp")]
    pub protocol: String,
    pub from_port: u16,
    pub to_port: u16,
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The GuardDuty finding that brought the change in (the first one; none for a
    /// drift fix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// When the change was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// One ingress rule to put back as it was before the operator revoked it, with its
/// own description if it had one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restoration {
    pub source: Cidr,
    pub protocol: IpProtocol,
    pub ports: PortRange,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ChangeRecord {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.revoked.is_empty()
            && !self.truncated
            && self.pending.is_none()
    }

    /// The groups whose current rules settling the pending intent needs.
    pub fn pending_groups(&self) -> Vec<SecurityGroupId> {
        let mut groups: Vec<SecurityGroupId> = self
            .pending
            .iter()
            .flat_map(|p| p.added.iter().chain(&p.revoked))
            .filter_map(|r| SecurityGroupId::parse(&r.group).ok())
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// The record with its pending intent settled against the groups as they are
    /// now (`owner`'s tag on the rules it added): an intended rule present is
    /// recorded as added, with its id; an intended revocation whose rule is gone is
    /// recorded as revoked; the rest did not happen. Intents of groups not in `groups`
    /// (deleted since) are dropped.
    pub fn settled(
        &self,
        groups: &BTreeMap<SecurityGroupId, SecurityGroup>,
        owner: &str,
    ) -> ChangeRecord {
        self.settled_where(groups, owner, |_| true)
    }

    /// [`settled`](Self::settled), for the intents `read` says the pass read the groups
    /// of (its account and region); the others stay pending, for a pass that reads them.
    pub fn settled_where(
        &self,
        groups: &BTreeMap<SecurityGroupId, SecurityGroup>,
        owner: &str,
        was_read: impl Fn(&RecordedRule) -> bool,
    ) -> ChangeRecord {
        let mut record = ChangeRecord {
            pending: None,
            ..self.clone()
        };
        let Some(intent) = &self.pending else {
            return record;
        };
        let unread = Intent {
            added: intent
                .added
                .iter()
                .filter(|r| !was_read(r))
                .cloned()
                .collect(),
            revoked: intent
                .revoked
                .iter()
                .filter(|r| !was_read(r))
                .cloned()
                .collect(),
        };
        for rule in intent.added.iter().filter(|r| was_read(r)) {
            let Some((group, source, protocol, ports)) = read(rule) else {
                continue;
            };
            let Some(found) = groups.get(&group).and_then(|g| {
                g.ingress.iter().find(|r| {
                    r.owned_by(owner)
                        && r.source == Source::Cidr(source)
                        && r.traffic == protocol.traffic(ports)
                })
            }) else {
                continue;
            };
            record_added(
                &mut record,
                RecordedRule {
                    rule_id: Some(found.id.to_string()),
                    ..rule.clone()
                },
            );
        }
        for rule in intent.revoked.iter().filter(|r| was_read(r)) {
            let Some(group) = SecurityGroupId::parse(&rule.group)
                .ok()
                .and_then(|g| groups.get(&g))
            else {
                continue;
            };
            let gone = rule
                .rule_id
                .as_deref()
                .is_some_and(|id| !group.ingress.iter().any(|r| r.id.as_str() == id));
            if gone {
                record_revoked(&mut record, rule.clone());
            }
        }
        bound(&mut record);
        record.pending = (!unread.is_empty()).then_some(unread);
        record
    }

    /// The record split by where its rules are: per region (`default_region` for a
    /// rule recorded without one) and account (`None`: recorded without one, the
    /// credentials' own). Each part keeps the `truncated` flag.
    pub fn by_place(
        &self,
        default_region: &str,
    ) -> BTreeMap<(String, Option<String>), ChangeRecord> {
        let mut parts: BTreeMap<(String, Option<String>), ChangeRecord> = BTreeMap::new();
        let place = |rule: &RecordedRule| {
            (
                rule.region
                    .clone()
                    .unwrap_or_else(|| default_region.to_string()),
                rule.account.clone(),
            )
        };
        for rule in &self.added {
            entry(&mut parts, place(rule), self.truncated)
                .added
                .push(rule.clone());
        }
        for rule in &self.revoked {
            entry(&mut parts, place(rule), self.truncated)
                .revoked
                .push(rule.clone());
        }
        if let Some(pending) = &self.pending {
            for rule in &pending.added {
                let intent = entry(&mut parts, place(rule), self.truncated)
                    .pending
                    .get_or_insert_with(Intent::default);
                intent.added.push(rule.clone());
            }
            for rule in &pending.revoked {
                let intent = entry(&mut parts, place(rule), self.truncated)
                    .pending
                    .get_or_insert_with(Intent::default);
                intent.revoked.push(rule.clone());
            }
        }
        parts
    }

    /// The record with `intent` pending too (beside what is still pending from
    /// regions this pass did not read): what is written before the pass's calls.
    pub fn with_intent(&self, intent: Intent) -> ChangeRecord {
        let mut pending = self.pending.clone().unwrap_or_default();
        pending.added.extend(intent.added);
        pending.revoked.extend(intent.revoked);
        ChangeRecord {
            pending: (!pending.is_empty()).then_some(pending),
            ..self.clone()
        }
    }

    /// The record after a pass's changes (`self` settled, without an intent): the
    /// steps done are recorded; a failed step (one that may have done part of its
    /// work, as a one-by-one fallback stopped half-way) stays pending, settled by the
    /// next pass.
    pub fn after(&self, plan: &Plan, outcomes: &[GroupOutcome], now: Timestamp) -> ChangeRecord {
        let mut record = ChangeRecord {
            pending: None,
            ..self.clone()
        };
        // What is still pending from regions this pass did not read stays pending.
        let mut pending = self.pending.clone().unwrap_or_default();
        for outcome in outcomes {
            let Some((group_plan, change)) = plan.changes().find(|(g, _)| g.group == outcome.group)
            else {
                continue;
            };
            let (added, revoked) = rules_of(group_plan, change, now);
            match &outcome.authorize {
                StepResult::Done { rule_ids, .. } => {
                    // Ids are paired with rules only when AWS reported one per rule
                    // of a one-rule change: AWS may report fewer, in any order.
                    let one_id = match (added.as_slice(), rule_ids.as_slice()) {
                        ([_], [id]) => Some(id.to_string()),
                        _ => None,
                    };
                    for rule in added {
                        record_added(
                            &mut record,
                            RecordedRule {
                                rule_id: one_id.clone(),
                                ..rule
                            },
                        );
                    }
                }
                StepResult::Failed { .. } => pending.added.extend(added),
                StepResult::NotNeeded | StepResult::NotRun { .. } => {}
            }
            match &outcome.revoke {
                StepResult::Done { .. } => {
                    for rule in revoked {
                        record_revoked(&mut record, rule);
                    }
                }
                StepResult::Failed { .. } => pending.revoked.extend(revoked),
                StepResult::NotNeeded | StepResult::NotRun { .. } => {}
            }
        }
        bound(&mut record);
        record.pending = (!pending.is_empty()).then_some(pending);
        record
    }
}

/// Everything a plan will ask of AWS, as records (pure): its intent.
pub fn intent_of(plan: &Plan, now: Timestamp) -> Intent {
    let mut intent = Intent::default();
    for (group, change) in plan.changes() {
        let (added, revoked) = rules_of(group, change, now);
        intent.added.extend(added);
        intent.revoked.extend(revoked);
    }
    intent
}

/// A change set's rules as records: what it adds and what it revokes.
fn rules_of(
    group: &GroupPlan,
    change: &ChangeSet,
    now: Timestamp,
) -> (Vec<RecordedRule>, Vec<RecordedRule>) {
    let at = Some(now.to_string());
    let finding = group.findings.first().map(ToString::to_string);
    let added = change
        .authorize
        .iter()
        .map(|auth| RecordedRule {
            group: group.group.to_string(),
            account: group.account.clone(),
            region: Some(group.region.clone()),
            rule_id: None,
            protocol: auth.protocol.as_str().to_string(),
            from_port: auth.ports.from,
            to_port: auth.ports.to,
            cidr: auth.source.to_string(),
            description: Some(auth.description()),
            finding: finding.clone(),
            at: at.clone(),
        })
        .collect();
    let revoked = change
        .revoke
        .iter()
        .map(|revocation| RecordedRule {
            group: group.group.to_string(),
            account: group.account.clone(),
            region: Some(group.region.clone()),
            rule_id: Some(revocation.rule.to_string()),
            protocol: revocation.protocol.as_str().to_string(),
            from_port: revocation.ports.from,
            to_port: revocation.ports.to,
            cidr: revocation.source.to_string(),
            description: revocation.description.clone(),
            finding: finding.clone(),
            at: at.clone(),
        })
        .collect();
    (added, revoked)
}

/// The part of [`ChangeRecord::by_place`] at `place`, created empty.
fn entry(
    parts: &mut BTreeMap<(String, Option<String>), ChangeRecord>,
    place: (String, Option<String>),
    truncated: bool,
) -> &mut ChangeRecord {
    parts.entry(place).or_insert_with(|| ChangeRecord {
        truncated,
        ..ChangeRecord::default()
    })
}

/// Each list keeps its newest [`MAX_RECORDED_RULES`] entries; dropping older ones
/// sets `truncated` for good.
fn bound(record: &mut ChangeRecord) {
    for list in [&mut record.added, &mut record.revoked] {
        if list.len() > MAX_RECORDED_RULES {
            list.drain(..list.len() - MAX_RECORDED_RULES);
            record.truncated = true;
        }
    }
}

/// What identifies a rule in a group.
fn same_rule(a: &RecordedRule, b: &RecordedRule) -> bool {
    (&a.group, &a.protocol, &a.cidr, a.from_port, a.to_port)
        == (&b.group, &b.protocol, &b.cidr, b.from_port, b.to_port)
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
    /// operator's tag, its protocol, CIDR and ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleId>,
    pub source: Cidr,
    pub protocol: IpProtocol,
    pub ports: PortRange,
}

/// What reverting one group takes, in this order: restore (authorize, untagged) the
/// rules the operator revoked, then remove the rules it added, so that what the
/// group admitted before the operator is never missing in between (the executor's
/// authorize-before-revoke, reversed); then forget the group's watch.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertSteps {
    /// The group's account, as recorded (`None`: the credentials' own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The group's region, as recorded (`None`: the policy's only region).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub restore: Vec<Restoration>,
    pub remove: Vec<Removal>,
}

impl RevertSteps {
    /// Takes the group's account and region from one of its recorded rules.
    fn place(&mut self, rule: &RecordedRule) {
        self.account = self.account.take().or_else(|| rule.account.clone());
        self.region = self.region.take().or_else(|| rule.region.clone());
    }
}

/// The record as per-group steps, groups and rules sorted (pure). Only recorded
/// rules appear: a rule not in `added` is never removed. Entries that cannot be read
/// (see [`unreadable_entries`]) are left out.
pub fn revert_plan(record: &ChangeRecord) -> Vec<(SecurityGroupId, RevertSteps)> {
    let mut groups: BTreeMap<SecurityGroupId, RevertSteps> = BTreeMap::new();
    for rule in &record.revoked {
        if let Some((group, source, protocol, ports)) = read(rule) {
            let steps = groups.entry(group).or_default();
            steps.place(rule);
            steps.restore.push(Restoration {
                source,
                protocol,
                ports,
                description: rule.description.clone(),
            });
        }
    }
    for recorded in &record.added {
        if let Some((group, source, protocol, ports)) = read(recorded) {
            let rule = recorded
                .rule_id
                .as_deref()
                .and_then(|id| RuleId::parse(id).ok());
            let steps = groups.entry(group).or_default();
            steps.place(recorded);
            steps.remove.push(Removal {
                rule,
                source,
                protocol,
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

/// Entries of the record whose group, protocol, CIDR or ports do not parse (the
/// operator writes only readable ones; a hand-edited status may not be): a revert
/// skips them.
pub fn unreadable_entries(record: &ChangeRecord) -> Vec<&RecordedRule> {
    record
        .added
        .iter()
        .chain(&record.revoked)
        .filter(|rule| read(rule).is_none())
        .collect()
}

fn read(rule: &RecordedRule) -> Option<(SecurityGroupId, Cidr, IpProtocol, PortRange)> {
    let group = SecurityGroupId::parse(&rule.group).ok()?;
    let source = Cidr::parse_normalising(&rule.cidr).ok()?;
    let protocol = IpProtocol::parse(&rule.protocol)?;
    (rule.from_port <= rule.to_port).then(|| {
        (
            group,
            source,
            protocol,
            PortRange::new(rule.from_port, rule.to_port),
        )
    })
}

/// The restorations the group does not hold yet, whoever's the rule that holds it (pure).
pub fn missing(group: &SecurityGroup, restore: &[Restoration]) -> Vec<Restoration> {
    restore
        .iter()
        .filter(|r| {
            !group.ingress.iter().any(|rule| {
                rule.traffic == r.protocol.traffic(r.ports) && rule.source == Source::Cidr(r.source)
            })
        })
        .cloned()
        .collect()
}

/// The group's rules to remove for these removals (pure): only `owner`'s rules (its
/// tag), with the recorded protocol, CIDR and ports, and the recorded id when there
/// is one. A recorded rule already gone matches nothing.
pub fn present_removals(group: &SecurityGroup, remove: &[Removal], owner: &str) -> Vec<RuleId> {
    let mut ids: Vec<RuleId> = group
        .ingress
        .iter()
        .filter(|rule| {
            rule.owned_by(owner)
                && remove.iter().any(|r| {
                    rule.traffic == r.protocol.traffic(r.ports)
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
    use crate::fixtures::TEST_OWNER;
    use crate::outcome::{GroupOutcome, PassReport};
    use crate::plan::{Authorization, ChangeSet, GroupPlan, Plan, Purpose, Revocation, Verdict};
    use crate::policy::Mode;
    use crate::security_group::{Exposure, IngressRule, Traffic};

    const NOW: Timestamp = Timestamp(1_800_000_000);

    /// The record a pass leaves after `previous` (`None` when it records nothing).
    fn record_changes(
        previous: Option<&ChangeRecord>,
        report: &PassReport,
    ) -> Option<ChangeRecord> {
        let Some(plan) = report.plan.as_ref().filter(|_| report.applied) else {
            return previous.cloned();
        };
        let record = previous
            .cloned()
            .unwrap_or_default()
            .after(plan, &report.outcomes, NOW);
        (!record.is_empty()).then_some(record)
    }

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
            protocol: IpProtocol::Tcp,
            ports: PortRange::single(port),
            purpose: Purpose::Trusted,
        }
    }

    fn narrowed(source: &str, range: PortRange, replaces: &str) -> Authorization {
        Authorization {
            source: cidr(source),
            protocol: IpProtocol::Tcp,
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
            protocol: IpProtocol::Tcp,
            ports: range,
            exposed: vec![Exposure::tcp(22)],
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
                    account: None,
                    region: "us-east-1".into(),
                    name: (*group).into(),
                    vpc_id: None,
                    network_interfaces: Some(1),
                    ports: vec![Exposure::tcp(22)],
                    findings: Vec::new(),
                    kept: Vec::new(),
                    verdict: Verdict::Change(change.clone()),
                })
                .collect(),
        };
        PassReport {
            mode: Mode::Enforce,
            regions: vec!["us-east-1".into()],
            detectors: [("us-east-1".to_string(), "d1".to_string())].into(),
            findings: Vec::new(),
            listed: [("us-east-1".to_string(), crate::known::Read::Full)].into(),
            targeted: false,
            feedback: Vec::new(),
            security_hub: Vec::new(),
            plan: Some(plan),
            applied: true,
            outcomes: groups
                .into_iter()
                .map(|(group, _, authorize, revoke)| GroupOutcome {
                    group: sg(group),
                    remember: StepResult::NotNeeded,
                    authorize,
                    revoke,
                })
                .collect(),
            archived: Vec::new(),
            failures: Vec::new(),
            record: ChangeRecord::default(),
            quiet: Vec::new(),
            settled: Vec::new(),
        }
    }

    fn change(authorize: Vec<Authorization>, revoke: Vec<Revocation>) -> ChangeSet {
        ChangeSet {
            owner: TEST_OWNER.into(),
            authorize,
            revoke,
            protected: vec![Exposure::tcp(22)],
            watch: None,
            dropped: Vec::new(),
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
            account: None,
            region: Some("us-east-1".into()),
            rule_id: id.map(str::to_string),
            protocol: "tcp".into(),
            from_port: range.from,
            to_port: range.to,
            cidr: source.into(),
            description: None,
            finding: None,
            at: Some(NOW.to_string()),
        }
    }

    /// The record's rules as `group cidr from-to`, without ids and descriptions.
    fn keys(rules: &[RecordedRule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {} {}-{}", r.group, r.cidr, r.from_port, r.to_port))
            .collect()
    }

    /// A rule recorded in `region` of `account` (`None`: the credentials' own).
    fn placed(group: &str, account: Option<&str>, region: &str) -> RecordedRule {
        RecordedRule {
            account: account.map(str::to_string),
            region: Some(region.into()),
            ..recorded(group, None, ports(22, 22), "10.0.0.0/8")
        }
    }

    #[test]
    fn an_intent_of_a_region_not_read_stays_pending_and_the_next_intent_joins_it() {
        let record = ChangeRecord {
            pending: Some(Intent {
                added: vec![
                    placed("sg-1", None, "us-east-1"),
                    placed("sg-2", None, "eu-west-1"),
                ],
                revoked: Vec::new(),
            }),
            ..ChangeRecord::default()
        };
        // us-east-1 was read, and sg-1 does not hold the rule: it was never added.
        let groups = BTreeMap::from([(
            sg("sg-1"),
            SecurityGroup::world_open("sg-1", Traffic::Tcp(PortRange::single(22))),
        )]);
        let settled = record.settled_where(&groups, TEST_OWNER, |r| {
            r.region.as_deref() == Some("us-east-1")
        });
        assert!(settled.added.is_empty());
        let pending = settled.pending.clone().expect("eu-west-1's intent stays");
        assert_eq!(
            keys(&pending.added),
            keys(&[placed("sg-2", None, "eu-west-1")])
        );

        let next = settled.with_intent(Intent {
            added: vec![placed("sg-3", None, "us-east-1")],
            revoked: Vec::new(),
        });
        assert_eq!(next.pending.unwrap().added.len(), 2, "both are pending now");
    }

    #[test]
    fn a_record_splits_by_region_and_account_with_the_default_region_for_old_entries() {
        let old = RecordedRule {
            region: None,
            ..placed("sg-9", None, "unused")
        };
        let record = ChangeRecord {
            added: vec![
                placed("sg-1", None, "us-east-1"),
                placed("sg-2", Some("111111111111"), "us-east-1"),
                old,
            ],
            revoked: vec![placed("sg-3", None, "eu-west-1")],
            truncated: true,
            pending: Some(Intent {
                added: vec![placed("sg-4", Some("111111111111"), "us-east-1")],
                revoked: Vec::new(),
            }),
        };
        let parts = record.by_place("us-east-1");
        let places: Vec<_> = parts.keys().cloned().collect();
        assert_eq!(
            places,
            [
                ("eu-west-1".to_string(), None),
                ("us-east-1".to_string(), None),
                ("us-east-1".to_string(), Some("111111111111".to_string())),
            ]
        );
        let own = &parts[&("us-east-1".to_string(), None)];
        assert_eq!(own.added.len(), 2, "the old entry joins the default region");
        let member = &parts[&("us-east-1".to_string(), Some("111111111111".to_string()))];
        assert_eq!(member.added.len(), 1);
        assert_eq!(member.pending.as_ref().unwrap().added.len(), 1);
        assert!(parts.values().all(|p| p.truncated));
        let rules: usize = parts
            .values()
            .map(|p| p.added.len() + p.revoked.len())
            .sum();
        assert_eq!(rules, 4, "every rule in exactly one part");
    }

    #[test]
    fn revert_steps_carry_the_groups_account_and_region() {
        let record = ChangeRecord {
            added: vec![placed("sg-2", Some("111111111111"), "eu-west-1")],
            ..ChangeRecord::default()
        };
        let plan = revert_plan(&record);
        assert_eq!(plan[0].1.account.as_deref(), Some("111111111111"));
        assert_eq!(plan[0].1.region.as_deref(), Some("eu-west-1"));
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
    fn a_failed_step_stays_pending_and_a_step_not_run_records_nothing() {
        let previous = record_changes(None, &narrowing_pass()).unwrap();
        let mut failed = narrowing_pass();
        failed.outcomes[0].authorize = StepResult::Failed {
            category: Category::AccessDenied,
            error: "no".into(),
        };
        failed.outcomes[0].revoke = StepResult::NotRun {
            reason: "authorize failed".into(),
        };
        // A failed authorize may have added part of its rules (a one-by-one fallback
        // stopped half-way): it stays pending, settled against AWS by the next pass.
        let after = record_changes(Some(&previous), &failed).unwrap();
        assert_eq!(
            ChangeRecord {
                pending: None,
                ..after.clone()
            },
            previous
        );
        let pending = after.pending.unwrap();
        assert_eq!(keys(&pending.added).len(), 3);
        assert!(pending.revoked.is_empty(), "the revoke never ran");

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
            pending: None,
        };
        let plan = revert_plan(&record);
        assert_eq!(
            plan,
            [
                (
                    sg("sg-1"),
                    RevertSteps {
                        account: None,
                        region: Some("us-east-1".into()),
                        restore: vec![
                            Restoration {
                                source: cidr("0.0.0.0/0"),
                                protocol: IpProtocol::Tcp,
                                ports: ports(22, 22),
                                description: None
                            },
                            Restoration {
                                source: cidr("::/0"),
                                protocol: IpProtocol::Tcp,
                                ports: ports(22, 22),
                                description: None
                            },
                        ],
                        remove: vec![Removal {
                            rule: None,
                            source: cidr("10.0.0.0/8"),
                            protocol: IpProtocol::Tcp,
                            ports: ports(22, 22)
                        }],
                    }
                ),
                (
                    sg("sg-2"),
                    RevertSteps {
                        account: None,
                        region: Some("us-east-1".into()),
                        restore: Vec::new(),
                        remove: vec![Removal {
                            rule: Some(rule_id("sgr-5")),
                            source: cidr("10.0.0.0/8"),
                            protocol: IpProtocol::Tcp,
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
            owner: managed.then(|| TEST_OWNER.to_string()),
        }
    }

    fn group(id: &str, ingress: Vec<IngressRule>) -> SecurityGroup {
        SecurityGroup {
            id: sg(id),
            name: id.into(),
            vpc_id: None,
            tags: BTreeMap::new(),
            ingress,
            network_interfaces: Some(1),
            watches: BTreeMap::new(),
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
                protocol: IpProtocol::Tcp,
                ports: ports(22, 22),
            },
            // Someone else's rule with the recorded CIDR and ports: not the operator's.
            Removal {
                rule: None,
                source: cidr("192.0.2.0/24"),
                protocol: IpProtocol::Tcp,
                ports: ports(22, 22),
            },
            // The recorded id is gone; another rule of the operator has these ports.
            Removal {
                rule: Some(rule_id("sgr-99")),
                source: cidr("0.0.0.0/0"),
                protocol: IpProtocol::Tcp,
                ports: ports(0, 21),
            },
            Removal {
                rule: Some(rule_id("sgr-d")),
                source: cidr("0.0.0.0/0"),
                protocol: IpProtocol::Tcp,
                ports: ports(23, 65535),
            },
        ];
        assert_eq!(
            present_removals(&now, &remove, TEST_OWNER),
            [rule_id("sgr-a"), rule_id("sgr-d")]
        );
    }

    /// A pass killed after its intent was written: the next pass settles it from what
    /// AWS holds, whichever of the calls had been made.
    #[test]
    fn a_killed_pass_is_settled_from_what_aws_holds() {
        let previous = ChangeRecord::default();
        let intent = Intent {
            added: vec![recorded("sg-1", None, ports(22, 22), "10.0.0.0/8")],
            revoked: vec![
                recorded("sg-1", Some("sgr-1"), ports(22, 22), "0.0.0.0/0"),
                recorded("sg-2", Some("sgr-2"), ports(22, 22), "0.0.0.0/0"),
            ],
        };
        let written = previous.with_intent(intent);
        assert_eq!(written.pending_groups(), [sg("sg-1"), sg("sg-2")]);
        let settle = |ingress: Vec<IngressRule>| {
            written.settled(
                &BTreeMap::from([(sg("sg-1"), group("sg-1", ingress))]),
                TEST_OWNER,
            )
        };
        // Killed before any call: nothing happened, nothing is recorded.
        let untouched = settle(vec![ingress("sgr-1", ports(22, 22), "0.0.0.0/0", false)]);
        assert!(untouched.is_empty(), "{untouched:#?}");
        // Killed between the authorize and the revoke.
        let half = settle(vec![
            ingress("sgr-1", ports(22, 22), "0.0.0.0/0", false),
            ingress("sgr-a1", ports(22, 22), "10.0.0.0/8", true),
        ]);
        assert_eq!(keys(&half.added), ["sg-1 10.0.0.0/8 22-22"]);
        assert_eq!(half.added[0].rule_id.as_deref(), Some("sgr-a1"));
        assert!(half.revoked.is_empty());
        // Killed after the revoke: both recorded; sg-2 (gone) is dropped.
        let whole = settle(vec![ingress("sgr-a1", ports(22, 22), "10.0.0.0/8", true)]);
        assert_eq!(keys(&whole.revoked), ["sg-1 0.0.0.0/0 22-22"]);
        assert!(whole.pending.is_none());
        // Someone else's rule with the same CIDR and ports is not taken as ours.
        let theirs = settle(vec![
            ingress("sgr-1", ports(22, 22), "0.0.0.0/0", false),
            ingress("sgr-b1", ports(22, 22), "10.0.0.0/8", false),
        ]);
        assert!(theirs.added.is_empty());
    }
}
