//! The planner: from a policy and what was observed, the exact changes to make.
//!
//! Pure and deterministic: no I/O, no clock, sorted output. Every decision of a
//! pass is made here; the executor only carries the plan out.
//!
//! For each security group it answers, per TCP port in scope:
//! - which ingress rules admit the port from a source that is not trusted
//!   (revoked by rule id; a wider port range is narrowed: the rest of the range is
//!   authorized again for the same source);
//! - which trusted ranges must be authorized for the port (before any revoke).
//!
//! A port is in scope for a group when a finding names it for an instance using
//! the group and the group admits it from an untrusted source, or when the
//! operator already manages rules for it there (its tag says so), which is how a
//! converged group stays under watch for drift.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::cidr::{Cidr, Family};
use super::finding::{Finding, ReportOnly, Triage, triage};
use super::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use super::policy::{Mode, Policy};
use super::security_group::{IngressRule, Instance, PortRange, SecurityGroup, Source, Traffic};

/// Everything a pass read from AWS, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The account the credentials belong to; findings of other accounts are
    /// reported, never acted on. `None` when unknown (every finding is taken as ours).
    pub account_id: Option<String>,
    /// The findings the policy selects.
    pub findings: Vec<Finding>,
    /// The instances those findings name, as they are now.
    pub instances: BTreeMap<InstanceId, Instance>,
    /// The groups of those instances and every group holding rules the operator
    /// manages.
    pub groups: BTreeMap<SecurityGroupId, SecurityGroup>,
}

/// The instances whose current groups must be read for these findings.
pub fn instances_to_describe(
    policy: &Policy,
    account_id: Option<&str>,
    findings: &[Finding],
) -> BTreeSet<InstanceId> {
    if policy.mode == Mode::Off {
        return BTreeSet::new();
    }
    findings
        .iter()
        .filter_map(|f| match triage_in(account_id, f) {
            Triage::Close { instance, .. } => Some(instance),
            Triage::Report(_) => None,
        })
        .collect()
}

/// [`triage`], and a finding of another account is only reported.
fn triage_in(account_id: Option<&str>, finding: &Finding) -> Triage {
    match (triage(finding), account_id) {
        (Triage::Close { .. }, Some(ours)) if finding.account_id != ours => {
            Triage::Report(ReportOnly::OtherAccount {
                account: finding.account_id.clone(),
            })
        }
        (triaged, _) => triaged,
    }
}

/// What the pass does about one finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum FindingDecision {
    /// Close these ports in these groups (the instance's groups now).
    #[serde(rename_all = "camelCase")]
    Remediate {
        instance: InstanceId,
        ports: Vec<u16>,
        security_groups: Vec<SecurityGroupId>,
    },
    Report(ReportOnly),
}

/// Why a trusted or narrowed rule is authorized.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "purpose", rename_all = "camelCase")]
pub enum Purpose {
    /// Keeps the trusted range's access to the port.
    Trusted,
    /// Keeps the other ports of a revoked wider rule open to the same source.
    Narrowed { replaces: RuleId },
}

/// One ingress rule to add: TCP ports from a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub source: Cidr,
    pub ports: PortRange,
    #[serde(flatten)]
    pub purpose: Purpose,
}

impl Authorization {
    /// The rule description written to AWS (at most 255 characters of AWS's
    /// allowed set), so a person looking at the group knows where it came from.
    pub fn description(&self) -> String {
        match &self.purpose {
            Purpose::Trusted => format!("guardduty-operator: trusted access to tcp/{}", self.ports),
            Purpose::Narrowed { replaces } => {
                format!(
                    "guardduty-operator: tcp/{} kept from {replaces}",
                    self.ports
                )
            }
        }
    }
}

/// One ingress rule to remove, by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub rule: RuleId,
    pub source: Cidr,
    /// The rule's whole port range.
    pub ports: PortRange,
    /// The ports in scope it admitted from an untrusted source.
    pub exposed_ports: Vec<u16>,
    /// The rule's description, kept so that a revert can put the rule back as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The changes to one group: authorizations first, then revocations.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSet {
    pub authorize: Vec<Authorization>,
    pub revoke: Vec<Revocation>,
    /// The TCP ports the operator protects in this group, recorded in a tag on the
    /// rules it creates.
    pub protected_ports: Vec<u16>,
}

/// Why a group that needs a change is left as it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Refusal {
    /// A rule admits every protocol from an untrusted source: narrowing it would
    /// take a rule per IP protocol, so a person must split it.
    #[serde(rename_all = "camelCase")]
    AllTrafficRule { rule: RuleId, source: Cidr },
    /// Adding the trusted rules (before the revokes) would exceed the quota.
    #[serde(rename_all = "camelCase")]
    RuleQuota {
        family: Family,
        existing: usize,
        adding: usize,
        quota: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AllTrafficRule { rule, source } => write!(
                f,
                "rule {rule} allows all traffic from {source}; split it into per-protocol rules, \
                 then the operator can narrow the TCP part"
            ),
            Refusal::RuleQuota {
                family,
                existing,
                adding,
                quota,
            } => write!(
                f,
                "{family} inbound rules would reach {} while the change is applied ({existing} \
                 existing + {adding} new), over the quota of {quota}; remove unused rules or raise \
                 remediation.maxRulesPerGroup after raising the AWS quota",
                existing + adding
            ),
        }
    }
}

/// The verdict on one group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    Change(ChangeSet),
    /// Every port in scope is reachable from trusted ranges only.
    Converged,
    /// The group carries the exempt tag.
    Exempt,
    Refused(Refusal),
    /// The group no longer exists.
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupPlan {
    pub group: SecurityGroupId,
    pub name: String,
    pub vpc_id: Option<String>,
    /// How many network interfaces the change reaches.
    pub network_interfaces: usize,
    /// The TCP ports in scope.
    pub ports: Vec<u16>,
    /// The findings that brought the group in; empty when it is only watched.
    pub findings: Vec<FindingId>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A whole pass's decisions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub mode: Mode,
    pub findings: BTreeMap<FindingId, FindingDecision>,
    pub groups: Vec<GroupPlan>,
}

impl Plan {
    /// The groups with something to change, in order.
    pub fn changes(&self) -> impl Iterator<Item = (&GroupPlan, &ChangeSet)> {
        self.groups.iter().filter_map(|g| match &g.verdict {
            Verdict::Change(change) => Some((g, change)),
            _ => None,
        })
    }

    /// True when applying the plan would change nothing.
    pub fn is_empty(&self) -> bool {
        self.changes().next().is_none()
    }
}

/// Plans one pass.
pub fn plan(policy: &Policy, observed: &Observation) -> Plan {
    let mut findings = BTreeMap::new();
    // group -> (ports named by findings, findings)
    let mut targets: BTreeMap<SecurityGroupId, (BTreeSet<u16>, BTreeSet<FindingId>)> =
        BTreeMap::new();

    for finding in &observed.findings {
        let decision = match triage_in(observed.account_id.as_deref(), finding) {
            Triage::Report(reason) => FindingDecision::Report(reason),
            Triage::Close { .. } if policy.mode == Mode::Off => {
                FindingDecision::Report(ReportOnly::RemediationOff)
            }
            Triage::Close { instance, ports } => match observed.instances.get(&instance) {
                None => FindingDecision::Report(ReportOnly::InstanceNotFound { instance }),
                Some(now) if now.state.is_gone() => {
                    FindingDecision::Report(ReportOnly::InstanceGone {
                        instance,
                        state: now.state,
                    })
                }
                Some(now) => {
                    for group in &now.security_groups {
                        let (group_ports, group_findings) =
                            targets.entry(group.clone()).or_default();
                        group_ports.extend(ports.iter().copied());
                        group_findings.insert(finding.id.clone());
                    }
                    FindingDecision::Remediate {
                        instance,
                        ports,
                        security_groups: now.security_groups.clone(),
                    }
                }
            },
        };
        findings.insert(finding.id.clone(), decision);
    }

    if policy.mode != Mode::Off {
        // Groups the operator already manages stay under watch for drift.
        for group in observed.groups.values() {
            if group.ingress.iter().any(|r| r.managed_ports.is_some()) {
                targets.entry(group.id.clone()).or_default();
            }
        }
    }

    let groups = targets
        .into_iter()
        .map(|(id, (ports, finding_ids))| {
            let ports: Vec<u16> = ports.into_iter().collect();
            let findings: Vec<FindingId> = finding_ids.into_iter().collect();
            match observed.groups.get(&id) {
                None => GroupPlan {
                    group: id,
                    name: String::new(),
                    vpc_id: None,
                    network_interfaces: 0,
                    ports,
                    findings,
                    verdict: Verdict::NotFound,
                },
                Some(group) => plan_group(policy, group, &ports, findings),
            }
        })
        .collect();

    Plan {
        mode: policy.mode,
        findings,
        groups,
    }
}

/// The ports of a group the operator protects, as recorded on its own rules.
fn managed_ports(group: &SecurityGroup) -> BTreeSet<u16> {
    group
        .ingress
        .iter()
        .filter_map(|r| r.managed_ports.as_ref())
        .flatten()
        .copied()
        .collect()
}

/// The ports this rule admits, among `ports`, from a source that is not trusted.
fn exposed_ports(policy: &Policy, rule: &IngressRule, ports: &BTreeSet<u16>) -> Vec<u16> {
    match &rule.source {
        Source::Cidr(source) if !policy.trusted.covers(source) => ports
            .iter()
            .copied()
            .filter(|p| rule.traffic.admits_tcp(*p))
            .collect(),
        // Trusted sources, other groups and prefix lists are never touched.
        _ => Vec::new(),
    }
}

fn plan_group(
    policy: &Policy,
    group: &SecurityGroup,
    finding_ports: &[u16],
    findings: Vec<FindingId>,
) -> GroupPlan {
    let managed = managed_ports(group);
    let candidates: BTreeSet<u16> = finding_ports
        .iter()
        .copied()
        .chain(managed.iter().copied())
        .collect();
    // In scope: ports the operator manages here, and finding ports the group
    // exposes (a group that does not open the port is not opened by us).
    let in_scope: BTreeSet<u16> = candidates
        .into_iter()
        .filter(|p| {
            managed.contains(p)
                || group
                    .ingress
                    .iter()
                    .any(|r| !exposed_ports(policy, r, &BTreeSet::from([*p])).is_empty())
        })
        .collect();

    let verdict = if policy.tag_exempts(group) {
        Verdict::Exempt
    } else {
        decide(policy, group, &in_scope)
    };
    GroupPlan {
        group: group.id.clone(),
        name: group.name.clone(),
        vpc_id: group.vpc_id.clone(),
        network_interfaces: group.network_interfaces,
        ports: in_scope.into_iter().collect(),
        findings,
        verdict,
    }
}

impl Policy {
    fn tag_exempts(&self, group: &SecurityGroup) -> bool {
        group.tags.contains_key(&self.exempt_tag)
    }
}

fn decide(policy: &Policy, group: &SecurityGroup, ports: &BTreeSet<u16>) -> Verdict {
    let mut revoke = Vec::new();
    for rule in &group.ingress {
        let exposed = exposed_ports(policy, rule, ports);
        if exposed.is_empty() {
            continue;
        }
        let source = *rule.cidr().expect("only CIDR rules expose ports");
        match rule.traffic {
            Traffic::Tcp(range) => revoke.push((
                rule,
                Revocation {
                    rule: rule.id.clone(),
                    source,
                    ports: range,
                    exposed_ports: exposed,
                    description: rule.description.clone(),
                },
            )),
            _ => {
                return Verdict::Refused(Refusal::AllTrafficRule {
                    rule: rule.id.clone(),
                    source,
                });
            }
        }
    }
    let revoked: BTreeSet<&RuleId> = revoke.iter().map(|(rule, _)| &rule.id).collect();
    let kept: Vec<&IngressRule> = group
        .ingress
        .iter()
        .filter(|r| !revoked.contains(&r.id))
        .collect();
    let ports_in_scope: Vec<u16> = ports.iter().copied().collect();

    // Keyed by what AWS sees as the rule, so two revoked rules of one source never
    // ask for the same piece twice.
    let mut authorize: BTreeMap<(Cidr, PortRange), Purpose> = BTreeMap::new();
    for (rule, revocation) in &revoke {
        for piece in revocation.ports.without(&ports_in_scope) {
            let already_open = kept
                .iter()
                .any(|k| k.traffic == Traffic::Tcp(piece) && k.source == rule.source);
            if !already_open {
                authorize
                    .entry((revocation.source, piece))
                    .or_insert_with(|| Purpose::Narrowed {
                        replaces: rule.id.clone(),
                    });
            }
        }
    }
    for port in &ports_in_scope {
        for trusted in policy.trusted.iter() {
            let covered = kept.iter().any(|k| {
                k.traffic.admits_tcp(*port) && k.cidr().is_some_and(|c| c.contains(trusted))
            });
            if !covered {
                authorize.insert((*trusted, PortRange::single(*port)), Purpose::Trusted);
            }
        }
    }
    let authorize: Vec<Authorization> = authorize
        .into_iter()
        .map(|((source, ports), purpose)| Authorization {
            source,
            ports,
            purpose,
        })
        .collect();

    if authorize.is_empty() && revoke.is_empty() {
        return Verdict::Converged;
    }
    // Authorizations go first, so the group briefly holds both: check the peak.
    for family in [Family::V4, Family::V6] {
        let adding = authorize
            .iter()
            .filter(|a| a.source.family() == family)
            .count();
        let existing = group
            .ingress
            .iter()
            .filter(|r| r.quota_families().contains(&family))
            .count();
        if adding > 0 && existing + adding > policy.max_rules_per_group {
            return Verdict::Refused(Refusal::RuleQuota {
                family,
                existing,
                adding,
                quota: policy.max_rules_per_group,
            });
        }
    }
    let mut revoke: Vec<Revocation> = revoke.into_iter().map(|(_, r)| r).collect();
    revoke.sort();
    Verdict::Change(ChangeSet {
        authorize,
        revoke,
        protected_ports: ports_in_scope,
    })
}

/// What AWS holds after a change set is applied: the model the executor's effect
/// is checked against (used by the in-memory store and the property tests).
pub fn apply_change(
    group: &mut SecurityGroup,
    change: &ChangeSet,
    mut next_rule_id: impl FnMut() -> RuleId,
) {
    for auth in &change.authorize {
        let traffic = Traffic::Tcp(auth.ports);
        let source = Source::Cidr(auth.source);
        if group
            .ingress
            .iter()
            .any(|r| r.traffic == traffic && r.source == source)
        {
            continue; // a duplicate authorize is a no-op
        }
        group.ingress.push(IngressRule {
            id: next_rule_id(),
            traffic,
            source,
            description: Some(auth.description()),
            managed_ports: Some(change.protected_ports.clone()),
        });
    }
    let revoked: BTreeSet<&RuleId> = change.revoke.iter().map(|r| &r.rule).collect();
    group.ingress.retain(|r| !revoked.contains(&r.id));
}
