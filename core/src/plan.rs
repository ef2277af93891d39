//! The planner: from a policy and what was observed, the exact changes to make.
//!
//! Pure and deterministic: no I/O, no clock, sorted output. Every decision of a
//! pass is made here; the executor only carries the plan out.
//!
//! For each security group it answers, per exposure in scope (a protocol and port):
//! - which ingress rules admit it from a source the policy revokes (by default one
//!   that holds a globally reachable address, never a trusted one): revoked by rule
//!   id; a wider port range is narrowed (the rest of the range is authorized again
//!   for the same source); an all-traffic rule is refused, or split into tcp, udp and
//!   icmp rules that keep every other port;
//! - which trusted ranges must be authorized for it (before any revoke);
//! - which sources stay, and why (private ranges, other groups, prefix lists);
//! - or why the group is refused instead: another policy claims the port, a prefix
//!   list lets the Internet in, the group is used by too many interfaces (or they
//!   were not counted: a pass counts them only for the groups
//!   [`interfaces_to_count`] names), the rule quota, an all-traffic rule.
//!
//! An exposure is in scope for a group when a finding names it for an instance
//! using the group and the group exposes it, or when the policy watches it there
//! (the group's watch tag, written when the operator converged it): how a
//! converged group stays under watch for drift, with no state kept elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::address_space::is_public;
use super::cidr::{Cidr, Family, covered_by};
use super::finding::{Finding, ReportOnly, Triage, triage};
use super::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use super::policy::{AllTrafficRules, Mode, Policy};
use super::security_group::{
    Exposure, IngressRule, Instance, PortRange, Protocol, SecurityGroup, Source, Traffic,
};
use super::watch::{MAX_TAG_VALUE, parse_watch_value, watch_value};

/// Everything a pass read from AWS, in domain terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The account the credentials belong to; findings of other accounts are
    /// reported, never acted on. `None` when unknown (every finding is taken as ours).
    pub account_id: Option<String>,
    /// The region the pass reads.
    pub region: String,
    /// The findings the policy selects.
    pub findings: Vec<Finding>,
    /// The instances those findings name, as they are now.
    pub instances: BTreeMap<InstanceId, Instance>,
    /// The groups of those instances and every group the policy watches.
    pub groups: BTreeMap<SecurityGroupId, SecurityGroup>,
    /// The entries of the managed prefix lists [`prefix_lists_to_read`] names.
    pub prefix_lists: BTreeMap<String, PrefixListEntries>,
}

/// What a managed prefix list holds, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixListEntries {
    Read(Vec<Cidr>),
    Unreadable(String),
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
        .filter_map(|f| match triage_in(policy, account_id, f) {
            Triage::Close { instance, .. } => Some(instance),
            Triage::Report(_) => None,
        })
        .collect()
}

/// [`triage`] under the policy: a finding of another account is only reported, and
/// only the ports the policy remediates are kept.
fn triage_in(policy: &Policy, account_id: Option<&str>, finding: &Finding) -> Triage {
    match (triage(finding), account_id) {
        (Triage::Close { .. }, Some(ours)) if finding.account_id != ours => {
            let account = finding.account_id.clone();
            Triage::Report(match &policy.member_accounts {
                Some(members) if !members.allows(&account) => {
                    ReportOnly::AccountNotAllowed { account }
                }
                _ => ReportOnly::OtherAccount { account },
            })
        }
        (
            Triage::Close {
                instance,
                exposures,
            },
            _,
        ) => {
            let ports: Vec<u16> = exposures.iter().map(|e| e.port).collect();
            let kept: Vec<Exposure> = exposures
                .into_iter()
                .filter(|e| policy.remediates_port(e.port))
                .collect();
            if !kept.is_empty() {
                Triage::Close {
                    instance,
                    exposures: kept,
                }
            } else if ports.iter().all(|p| policy.public_ports.contains(p)) {
                Triage::Report(ReportOnly::PublicPorts { ports })
            } else {
                Triage::Report(ReportOnly::PortsNotRemediated { ports })
            }
        }
        (triaged, _) => triaged,
    }
}

/// What the pass does about one finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum FindingDecision {
    /// Close these exposures in these groups (the instance's groups now).
    #[serde(rename_all = "camelCase")]
    Remediate {
        instance: InstanceId,
        exposures: Vec<Exposure>,
        security_groups: Vec<SecurityGroupId>,
        /// Ports the finding names that serve everyone by design, left open.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        public_ports: Vec<u16>,
    },
    Report(ReportOnly),
}

/// An IP protocol of a rule the operator adds or removes, as EC2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpProtocol {
    /// `-1`: every protocol.
    All,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl IpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            IpProtocol::All => "-1",
            IpProtocol::Tcp => "tcp",
            IpProtocol::Udp => "udp",
            IpProtocol::Icmp => "icmp",
            IpProtocol::Icmpv6 => "icmpv6",
        }
    }

    pub fn parse(text: &str) -> Option<IpProtocol> {
        Some(match text {
            "-1" | "all" => IpProtocol::All,
            "tcp" | "6" => IpProtocol::Tcp,
            "udp" | "17" => IpProtocol::Udp,
            "icmp" | "1" => IpProtocol::Icmp,
            "icmpv6" | "58" => IpProtocol::Icmpv6,
            _ => return None,
        })
    }

    /// The protocol and ports of a rule's traffic, when the operator can write it.
    pub fn of(traffic: &Traffic) -> Option<(IpProtocol, PortRange)> {
        match traffic {
            Traffic::All => Some((IpProtocol::All, PortRange::ALL)),
            Traffic::Tcp(range) => Some((IpProtocol::Tcp, *range)),
            Traffic::Udp(range) => Some((IpProtocol::Udp, *range)),
            Traffic::Other { protocol } => match IpProtocol::parse(protocol)? {
                p @ (IpProtocol::Icmp | IpProtocol::Icmpv6) => Some((p, PortRange::ALL)),
                _ => None,
            },
        }
    }

    /// The traffic a rule of this protocol and these ports admits.
    pub fn traffic(self, ports: PortRange) -> Traffic {
        match self {
            IpProtocol::All => Traffic::All,
            IpProtocol::Tcp => Traffic::Tcp(ports),
            IpProtocol::Udp => Traffic::Udp(ports),
            IpProtocol::Icmp | IpProtocol::Icmpv6 => Traffic::Other {
                protocol: self.as_str().to_string(),
            },
        }
    }

    /// `tcp/22`, `udp/0-52`, `icmp`, `all traffic`: for people.
    pub fn describe(self, ports: PortRange) -> String {
        match self {
            IpProtocol::All => "all traffic".to_string(),
            IpProtocol::Tcp | IpProtocol::Udp => format!("{}/{ports}", self.as_str()),
            IpProtocol::Icmp | IpProtocol::Icmpv6 => self.as_str().to_string(),
        }
    }
}

impl serde::Serialize for IpProtocol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a trusted, narrowed or split rule is authorized.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "purpose", rename_all = "camelCase")]
pub enum Purpose {
    /// Keeps the trusted range's access to the port.
    Trusted,
    /// Keeps the other ports of a revoked wider rule open to the same source.
    Narrowed { replaces: RuleId },
    /// Keeps the other ports and ICMP of a revoked all-traffic rule open to the
    /// same source (`allTrafficRules: Split`).
    Split { replaces: RuleId },
}

/// One ingress rule to add, from a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub source: Cidr,
    pub protocol: IpProtocol,
    pub ports: PortRange,
    #[serde(flatten)]
    pub purpose: Purpose,
}

impl Authorization {
    pub fn traffic(&self) -> Traffic {
        self.protocol.traffic(self.ports)
    }

    /// `tcp/22`, `icmp`: what the rule admits.
    pub fn what(&self) -> String {
        self.protocol.describe(self.ports)
    }

    /// The rule description written to AWS (at most 255 characters of AWS's
    /// allowed set), so a person looking at the group knows where it came from.
    pub fn description(&self) -> String {
        match &self.purpose {
            Purpose::Trusted => format!("guardduty-operator: trusted access to {}", self.what()),
            Purpose::Narrowed { replaces } => {
                format!("guardduty-operator: {} kept from {replaces}", self.what())
            }
            Purpose::Split { replaces } => format!(
                "guardduty-operator: {} kept from all-traffic rule {replaces}",
                self.what()
            ),
        }
    }
}

/// One ingress rule to remove, by id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub rule: RuleId,
    pub source: Cidr,
    pub protocol: IpProtocol,
    /// The rule's whole port range.
    pub ports: PortRange,
    /// The exposures in scope it admitted from a revoked source.
    pub exposed: Vec<Exposure>,
    /// The rule's description, kept so that a revert can put the rule back as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Revocation {
    /// `tcp/0-65535`, `all traffic`: what the rule admitted.
    pub fn what(&self) -> String {
        self.protocol.describe(self.ports)
    }
}

/// The changes to one group: authorizations first, then revocations.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSet {
    /// The policy making the change, written on the rules it adds.
    #[serde(skip)]
    pub owner: String,
    pub authorize: Vec<Authorization>,
    pub revoke: Vec<Revocation>,
    /// The exposures the operator closes and keeps closed in this group.
    pub protected: Vec<Exposure>,
    /// The group's watch tag value to write first, when it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// What a split of an all-traffic rule drops (its other IP protocols).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
}

/// Why a source that admits a port in scope stays.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum KeptReason {
    /// Not globally reachable (a private, shared or documentation range) and
    /// `revoke: Public`.
    NotPublic,
    /// Another security group: never touched.
    SecurityGroup,
    /// A managed prefix list without a public entry: never touched.
    PrefixList,
    /// A private all-traffic rule: only `allTrafficRules: Split` narrows it.
    AllTrafficNotSplit,
}

impl fmt::Display for KeptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeptReason::NotPublic => "not globally reachable (revoke: Public keeps private ranges)",
            KeptReason::SecurityGroup => "another security group: never changed",
            KeptReason::PrefixList => "a prefix list without a public entry: never changed",
            KeptReason::AllTrafficNotSplit => {
                "a private all-traffic rule: set remediation.allTrafficRules: Split to narrow it"
            }
        })
    }
}

/// A rule that admits an exposure in scope and stays.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub rule: RuleId,
    /// The source, as people read it (`172.31.0.0/16`, `group sg-…`, `prefix list pl-…`).
    pub source: String,
    #[serde(flatten)]
    pub reason: KeptReason,
}

/// Why a group that needs a change is left as it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Refusal {
    /// A rule admits every protocol from a source the policy revokes: narrowing it
    /// takes a rule per IP protocol (`allTrafficRules: Split`).
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
    /// Another policy converged this port of the group, or added a rule that admits
    /// it: only that policy changes it.
    #[serde(rename_all = "camelCase")]
    ClaimedByOtherPolicy { owner: String, exposure: Exposure },
    /// The group is used by more network interfaces than the policy allows a change
    /// to reach.
    #[serde(rename_all = "camelCase")]
    TooManyInterfaces { interfaces: usize, max: usize },
    /// The group's network interfaces were not counted, so how far a change would
    /// reach is unknown. A pass counts them for every group its plan would change
    /// and plans again; this stays only where counting failed or was skipped.
    InterfacesNotRead,
    /// A managed prefix list on the port holds a public source; the operator never
    /// changes prefix lists.
    #[serde(rename_all = "camelCase")]
    PrefixListExposes {
        list: String,
        entry: Cidr,
        exposure: Exposure,
    },
    /// A managed prefix list on the port could not be read, so the port may be open.
    #[serde(rename_all = "camelCase")]
    PrefixListUnreadable { list: String, error: String },
    /// The ports to remember do not fit in one tag value.
    #[serde(rename_all = "camelCase")]
    WatchTooLong { length: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AllTrafficRule { rule, source } => write!(
                f,
                "rule {rule} allows all traffic from {source}; split it into per-protocol rules \
                 (or set remediation.allTrafficRules: Split), then the operator can narrow it"
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
            Refusal::ClaimedByOtherPolicy { owner, exposure } => write!(
                f,
                "{exposure} of this group is managed by policy {owner}: only that policy changes \
                 it; remove the port from one of the two policies"
            ),
            Refusal::TooManyInterfaces { interfaces, max } => write!(
                f,
                "the group is used by {interfaces} network interfaces, more than \
                 remediation.maxNetworkInterfaces ({max}): a change would reach all of them; \
                 raise the field to allow it"
            ),
            Refusal::InterfacesNotRead => write!(
                f,
                "the group's network interfaces were not read, so how many a change would \
                 reach (remediation.maxNetworkInterfaces) is unknown: allow \
                 ec2:DescribeNetworkInterfaces"
            ),
            Refusal::PrefixListExposes {
                list,
                entry,
                exposure,
            } => write!(
                f,
                "prefix list {list} admits {exposure} from the public range {entry}; the \
                 operator never changes prefix lists: remove the entry or the rule"
            ),
            Refusal::PrefixListUnreadable { list, error } => write!(
                f,
                "prefix list {list} on a port in scope could not be read ({error}), so the \
                 port may be open: allow ec2:GetManagedPrefixListEntries"
            ),
            Refusal::WatchTooLong { length } => write!(
                f,
                "the ports to keep closed need a tag value of {length} characters, over AWS's \
                 {MAX_TAG_VALUE}: remediate fewer ports (remediation.ports)"
            ),
        }
    }
}

/// The verdict on one group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    Change(ChangeSet),
    /// No exposure in scope is reachable from a source the policy revokes.
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
    /// The account the group is in (`None`: the credentials' account, unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub region: String,
    pub name: String,
    pub vpc_id: Option<String>,
    /// How many network interfaces the change reaches; `None`: not read (a group
    /// the plan leaves as it is needs no count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<usize>,
    /// The exposures in scope.
    pub ports: Vec<Exposure>,
    /// The findings that brought the group in; empty when it is only watched.
    pub findings: Vec<FindingId>,
    /// Rules admitting an exposure in scope that stay, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
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

    pub fn group(&self, id: &SecurityGroupId) -> Option<&GroupPlan> {
        self.groups.iter().find(|g| &g.group == id)
    }

    /// The plans of several accounts and regions as one: every finding's decision,
    /// every group (in the order of the plans).
    pub fn merged(mode: Mode, plans: impl IntoIterator<Item = Plan>) -> Plan {
        let mut merged = Plan {
            mode,
            findings: BTreeMap::new(),
            groups: Vec::new(),
        };
        for plan in plans {
            merged.findings.extend(plan.findings);
            merged.groups.extend(plan.groups);
        }
        merged
    }
}

/// Per group, the exposures that may be in scope and the findings that name them.
type Targets = BTreeMap<SecurityGroupId, (BTreeSet<Exposure>, BTreeSet<FindingId>)>;

/// Each finding's decision, and the groups the findings bring in.
fn decide_findings(
    policy: &Policy,
    observed: &Observation,
) -> (BTreeMap<FindingId, FindingDecision>, Targets) {
    let mut findings = BTreeMap::new();
    let mut targets = Targets::new();
    for finding in &observed.findings {
        let decision = match triage_in(policy, observed.account_id.as_deref(), finding) {
            Triage::Report(reason) => FindingDecision::Report(reason),
            Triage::Close { .. } if policy.mode == Mode::Off => {
                FindingDecision::Report(ReportOnly::RemediationOff)
            }
            Triage::Close {
                instance,
                exposures,
            } => match observed.instances.get(&instance) {
                None => FindingDecision::Report(ReportOnly::InstanceNotFound { instance }),
                Some(now) if now.state.is_gone() => {
                    FindingDecision::Report(ReportOnly::InstanceGone {
                        instance,
                        state: now.state,
                    })
                }
                Some(now) => {
                    for group in &now.security_groups {
                        let (group_exposures, group_findings) =
                            targets.entry(group.clone()).or_default();
                        group_exposures.extend(exposures.iter().copied());
                        group_findings.insert(finding.id.clone());
                    }
                    let mut public_ports: Vec<u16> = finding
                        .ports()
                        .into_iter()
                        .filter(|p| policy.public_ports.contains(p))
                        .collect();
                    public_ports.dedup();
                    FindingDecision::Remediate {
                        instance,
                        exposures,
                        security_groups: now.security_groups.clone(),
                        public_ports,
                    }
                }
            },
        };
        findings.insert(finding.id.clone(), decision);
    }
    if policy.mode != Mode::Off {
        // Groups the policy watches stay in scope for drift.
        for group in observed.groups.values() {
            let watched = watched(policy, group);
            if !watched.is_empty() {
                targets
                    .entry(group.id.clone())
                    .or_default()
                    .0
                    .extend(watched);
            }
        }
    }
    (findings, targets)
}

/// The exposures the policy watches in the group and still remediates.
fn watched(policy: &Policy, group: &SecurityGroup) -> BTreeSet<Exposure> {
    group
        .watches
        .get(&policy.owner)
        .into_iter()
        .flatten()
        .copied()
        .filter(|e| policy.remediates_port(e.port))
        .collect()
}

/// The prefix lists whose entries the plan needs: those a rule references that admits
/// an exposure a group may be in scope for (pure; read them before [`plan`]).
pub fn prefix_lists_to_read(policy: &Policy, observed: &Observation) -> BTreeSet<String> {
    let (_, targets) = decide_findings(policy, observed);
    let mut lists = BTreeSet::new();
    for (id, (exposures, _)) in &targets {
        let Some(group) = observed.groups.get(id) else {
            continue;
        };
        for rule in &group.ingress {
            if let Source::PrefixList(list) = &rule.source
                && exposures.iter().any(|e| rule.traffic.admits(*e))
            {
                lists.insert(list.clone());
            }
        }
    }
    lists
}

/// The groups whose network interfaces the plan needs counted (pure; count them,
/// then [`plan`] again): those it would change but refuses only for want of the
/// count. A group left as it is (converged, exempt, refused for another reason)
/// needs none, so a converged pass reads no interface at all.
pub fn interfaces_to_count(policy: &Policy, observed: &Observation) -> BTreeSet<SecurityGroupId> {
    plan(policy, observed)
        .groups
        .into_iter()
        .filter(|g| g.verdict == Verdict::Refused(Refusal::InterfacesNotRead))
        .map(|g| g.group)
        .collect()
}

/// Plans one pass.
pub fn plan(policy: &Policy, observed: &Observation) -> Plan {
    let (findings, targets) = decide_findings(policy, observed);
    let groups = targets
        .into_iter()
        .map(|(id, (exposures, finding_ids))| {
            let findings: Vec<FindingId> = finding_ids.into_iter().collect();
            match observed.groups.get(&id) {
                None => GroupPlan {
                    group: id,
                    account: observed.account_id.clone(),
                    region: observed.region.clone(),
                    name: String::new(),
                    vpc_id: None,
                    network_interfaces: None,
                    ports: exposures.into_iter().collect(),
                    findings,
                    kept: Vec::new(),
                    verdict: Verdict::NotFound,
                },
                Some(group) => plan_group(policy, observed, group, &exposures, findings),
            }
        })
        .collect();
    Plan {
        mode: policy.mode,
        findings,
        groups,
    }
}

/// Does the rule's source count against the policy on a port in scope: one it
/// revokes, or an untrusted one on a rule the policy added itself?
fn revoked_source(policy: &Policy, rule: &IngressRule, source: &Cidr) -> bool {
    policy.revokes(source) || (rule.owned_by(&policy.owner) && !policy.trusted.covers(source))
}

/// A prefix list's first entry that lets the Internet in (public and untrusted).
fn public_entry<'a>(policy: &Policy, entries: &'a [Cidr]) -> Option<&'a Cidr> {
    entries
        .iter()
        .find(|entry| is_public(entry) && !policy.trusted.covers(entry))
}

/// Does the group let `exposure` in from a source the policy revokes (or might: a
/// prefix list not read)?
fn exposes(
    policy: &Policy,
    observed: &Observation,
    group: &SecurityGroup,
    exposure: Exposure,
) -> bool {
    group.ingress.iter().any(|rule| {
        rule.traffic.admits(exposure)
            && match &rule.source {
                Source::Cidr(source) => revoked_source(policy, rule, source),
                Source::PrefixList(list) => match observed.prefix_lists.get(list) {
                    Some(PrefixListEntries::Read(entries)) => {
                        public_entry(policy, entries).is_some()
                    }
                    Some(PrefixListEntries::Unreadable(_)) | None => true,
                },
                Source::SecurityGroup(_) => false,
            }
    })
}

fn plan_group(
    policy: &Policy,
    observed: &Observation,
    group: &SecurityGroup,
    candidates: &BTreeSet<Exposure>,
    findings: Vec<FindingId>,
) -> GroupPlan {
    let watched = watched(policy, group);
    // In scope: what the policy watches here, and finding exposures the group lets in
    // (a group that does not open the port is not opened by us).
    let in_scope: BTreeSet<Exposure> = candidates
        .iter()
        .copied()
        .filter(|e| watched.contains(e) || exposes(policy, observed, group, *e))
        .collect();
    let (verdict, kept) = if group.tags.contains_key(&policy.exempt_tag) {
        (Verdict::Exempt, Vec::new())
    } else {
        decide(policy, observed, group, &in_scope, &watched)
    };
    GroupPlan {
        group: group.id.clone(),
        account: observed.account_id.clone(),
        region: observed.region.clone(),
        name: group.name.clone(),
        vpc_id: group.vpc_id.clone(),
        network_interfaces: group.network_interfaces,
        ports: in_scope.into_iter().collect(),
        findings,
        kept,
        verdict,
    }
}

/// Another policy's claim on an exposure in scope: its watch, or a rule it added.
fn claimed_by_another(
    policy: &Policy,
    group: &SecurityGroup,
    in_scope: &BTreeSet<Exposure>,
) -> Option<Refusal> {
    for exposure in in_scope {
        for (owner, exposures) in &group.watches {
            if owner != &policy.owner && exposures.contains(exposure) {
                return Some(Refusal::ClaimedByOtherPolicy {
                    owner: owner.clone(),
                    exposure: *exposure,
                });
            }
        }
        for rule in &group.ingress {
            if let Some(owner) = rule.owner.as_ref().filter(|o| **o != policy.owner)
                && rule.traffic.admits(*exposure)
            {
                return Some(Refusal::ClaimedByOtherPolicy {
                    owner: owner.clone(),
                    exposure: *exposure,
                });
            }
        }
    }
    None
}

fn decide(
    policy: &Policy,
    observed: &Observation,
    group: &SecurityGroup,
    in_scope: &BTreeSet<Exposure>,
    watched: &BTreeSet<Exposure>,
) -> (Verdict, Vec<Kept>) {
    let refused = |refusal| (Verdict::Refused(refusal), Vec::new());
    if in_scope.is_empty() {
        return (Verdict::Converged, Vec::new());
    }
    if let Some(refusal) = claimed_by_another(policy, group, in_scope) {
        return refused(refusal);
    }
    let admits_in_scope = |rule: &IngressRule| -> Vec<Exposure> {
        in_scope
            .iter()
            .copied()
            .filter(|e| rule.traffic.admits(*e))
            .collect()
    };

    let mut kept = Vec::new();
    let mut revoke: Vec<(&IngressRule, Revocation)> = Vec::new();
    for rule in &group.ingress {
        let exposed = admits_in_scope(rule);
        if exposed.is_empty() {
            continue;
        }
        let source = match &rule.source {
            Source::Cidr(source) => *source,
            Source::SecurityGroup(id) => {
                kept.push(Kept {
                    rule: rule.id.clone(),
                    source: format!("group {id}"),
                    reason: KeptReason::SecurityGroup,
                });
                continue;
            }
            Source::PrefixList(list) => {
                match observed.prefix_lists.get(list) {
                    Some(PrefixListEntries::Read(entries)) => {
                        if let Some(entry) = public_entry(policy, entries) {
                            return refused(Refusal::PrefixListExposes {
                                list: list.clone(),
                                entry: *entry,
                                exposure: exposed[0],
                            });
                        }
                    }
                    Some(PrefixListEntries::Unreadable(error)) => {
                        return refused(Refusal::PrefixListUnreadable {
                            list: list.clone(),
                            error: error.clone(),
                        });
                    }
                    None => {
                        return refused(Refusal::PrefixListUnreadable {
                            list: list.clone(),
                            error: "not read".to_string(),
                        });
                    }
                }
                kept.push(Kept {
                    rule: rule.id.clone(),
                    source: format!("prefix list {list}"),
                    reason: KeptReason::PrefixList,
                });
                continue;
            }
        };
        if !revoked_source(policy, rule, &source) {
            if !policy.trusted.covers(&source) {
                kept.push(Kept {
                    rule: rule.id.clone(),
                    source: source.to_string(),
                    reason: KeptReason::NotPublic,
                });
            }
            continue;
        }
        let Some((protocol, ports)) = IpProtocol::of(&rule.traffic) else {
            continue;
        };
        if protocol == IpProtocol::All {
            match policy.all_traffic_rules {
                AllTrafficRules::Split => {}
                AllTrafficRules::Refuse if is_public(&source) => {
                    return refused(Refusal::AllTrafficRule {
                        rule: rule.id.clone(),
                        source,
                    });
                }
                AllTrafficRules::Refuse => {
                    kept.push(Kept {
                        rule: rule.id.clone(),
                        source: source.to_string(),
                        reason: KeptReason::AllTrafficNotSplit,
                    });
                    continue;
                }
            }
        }
        revoke.push((
            rule,
            Revocation {
                rule: rule.id.clone(),
                source,
                protocol,
                ports,
                exposed,
                description: rule.description.clone(),
            },
        ));
    }

    let revoked: BTreeSet<&RuleId> = revoke.iter().map(|(rule, _)| &rule.id).collect();
    let staying: Vec<&IngressRule> = group
        .ingress
        .iter()
        .filter(|r| !revoked.contains(&r.id))
        .collect();
    let in_scope_ports = |protocol: Protocol| -> Vec<u16> {
        in_scope
            .iter()
            .filter(|e| e.protocol == protocol)
            .map(|e| e.port)
            .collect()
    };
    let already_open = |traffic: &Traffic, source: &Source| {
        staying
            .iter()
            .any(|k| &k.traffic == traffic && &k.source == source)
    };

    // Keyed by what AWS sees as the rule, so two revoked rules of one source never
    // ask for the same piece twice.
    let mut authorize: BTreeMap<(Cidr, IpProtocol, PortRange), Purpose> = BTreeMap::new();
    let mut dropped = Vec::new();
    for (rule, revocation) in &revoke {
        let (pieces, purpose): (Vec<(IpProtocol, PortRange)>, Purpose) = match revocation.protocol {
            IpProtocol::Tcp => (
                revocation
                    .ports
                    .without(&in_scope_ports(Protocol::Tcp))
                    .into_iter()
                    .map(|p| (IpProtocol::Tcp, p))
                    .collect(),
                Purpose::Narrowed {
                    replaces: rule.id.clone(),
                },
            ),
            IpProtocol::Udp => (
                revocation
                    .ports
                    .without(&in_scope_ports(Protocol::Udp))
                    .into_iter()
                    .map(|p| (IpProtocol::Udp, p))
                    .collect(),
                Purpose::Narrowed {
                    replaces: rule.id.clone(),
                },
            ),
            IpProtocol::All => {
                let icmp = match revocation.source.family() {
                    Family::V4 => IpProtocol::Icmp,
                    Family::V6 => IpProtocol::Icmpv6,
                };
                dropped.push(format!(
                    "every IP protocol but tcp, udp and {} from {} (all-traffic rule {})",
                    icmp.as_str(),
                    revocation.source,
                    rule.id
                ));
                let mut pieces: Vec<(IpProtocol, PortRange)> = Vec::new();
                pieces.extend(
                    PortRange::ALL
                        .without(&in_scope_ports(Protocol::Tcp))
                        .into_iter()
                        .map(|p| (IpProtocol::Tcp, p)),
                );
                pieces.extend(
                    PortRange::ALL
                        .without(&in_scope_ports(Protocol::Udp))
                        .into_iter()
                        .map(|p| (IpProtocol::Udp, p)),
                );
                pieces.push((icmp, PortRange::ALL));
                (
                    pieces,
                    Purpose::Split {
                        replaces: rule.id.clone(),
                    },
                )
            }
            IpProtocol::Icmp | IpProtocol::Icmpv6 => (Vec::new(), Purpose::Trusted),
        };
        for (protocol, ports) in pieces {
            if !already_open(&protocol.traffic(ports), &rule.source) {
                authorize
                    .entry((revocation.source, protocol, ports))
                    .or_insert_with(|| purpose.clone());
            }
        }
    }
    for exposure in in_scope {
        let reaching: Vec<Cidr> = staying
            .iter()
            .filter(|k| k.traffic.admits(*exposure))
            .filter_map(|k| k.cidr().copied())
            .collect();
        let protocol = match exposure.protocol {
            Protocol::Tcp => IpProtocol::Tcp,
            Protocol::Udp => IpProtocol::Udp,
        };
        for trusted in policy.trusted.iter() {
            if !covered_by(reaching.iter(), trusted) {
                authorize.insert(
                    (*trusted, protocol, PortRange::single(exposure.port)),
                    Purpose::Trusted,
                );
            }
        }
    }
    let authorize: Vec<Authorization> = authorize
        .into_iter()
        .map(|((source, protocol, ports), purpose)| Authorization {
            source,
            protocol,
            ports,
            purpose,
        })
        .collect();

    if authorize.is_empty() && revoke.is_empty() {
        return (Verdict::Converged, kept);
    }
    match group.network_interfaces {
        None => return refused(Refusal::InterfacesNotRead),
        Some(interfaces) if interfaces > policy.max_network_interfaces => {
            return refused(Refusal::TooManyInterfaces {
                interfaces,
                max: policy.max_network_interfaces,
            });
        }
        Some(_) => {}
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
            return refused(Refusal::RuleQuota {
                family,
                existing,
                adding,
                quota: policy.max_rules_per_group,
            });
        }
    }
    let remembered: BTreeSet<Exposure> = watched.union(in_scope).copied().collect();
    let value = watch_value(&remembered);
    if value.len() > MAX_TAG_VALUE {
        return refused(Refusal::WatchTooLong {
            length: value.len(),
        });
    }
    let current = group.watches.get(&policy.owner);
    let watch = (current != Some(&remembered)).then_some(value);
    let mut revoke: Vec<Revocation> = revoke.into_iter().map(|(_, r)| r).collect();
    revoke.sort();
    (
        Verdict::Change(ChangeSet {
            owner: policy.owner.clone(),
            authorize,
            revoke,
            protected: in_scope.iter().copied().collect(),
            watch,
            dropped,
        }),
        kept,
    )
}

/// What AWS holds after a change set is applied: the model the executor's effect
/// is checked against (used by the in-memory account and the property tests).
pub fn apply_change(
    group: &mut SecurityGroup,
    change: &ChangeSet,
    mut next_rule_id: impl FnMut() -> RuleId,
) {
    if let Some(value) = &change.watch {
        group
            .watches
            .insert(change.owner.clone(), parse_watch_value(value));
    }
    for auth in &change.authorize {
        let traffic = auth.traffic();
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
            owner: Some(change.owner.clone()),
        });
    }
    let revoked: BTreeSet<&RuleId> = change.revoke.iter().map(|r| &r.rule).collect();
    group.ingress.retain(|r| !revoked.contains(&r.id));
}
