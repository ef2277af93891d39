//! Examples and property tests of the planner's safety invariants (DESIGN.md).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::address_space::is_public;
use super::cidr::{Cidr, Family};
use super::finding::{Action, Direction, Finding, ReportOnly};
use super::fixtures::TEST_OWNER;
use super::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use super::plan::*;
use super::policy::{Mode, Policy};
use super::security_group::*;

// ---- fixtures -------------------------------------------------------------

const OTHER_OWNER: &str = "team-b/ssh";

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn sg(id: &str) -> SecurityGroupId {
    SecurityGroupId::parse(id).unwrap()
}

fn tcp(from: u16, to: u16) -> Traffic {
    Traffic::Tcp(PortRange::new(from, to))
}

fn udp(from: u16, to: u16) -> Traffic {
    Traffic::Udp(PortRange::new(from, to))
}

/// A group in a builder style: `GroupBuilder::new("sg-1").allow("sgr-1", tcp(22, 22), "0.0.0.0/0")`.
struct GroupBuilder(SecurityGroup);

impl GroupBuilder {
    fn new(id: &str) -> Self {
        GroupBuilder(SecurityGroup {
            id: sg(id),
            name: format!("{id}-name"),
            vpc_id: Some("vpc-1".into()),
            tags: BTreeMap::new(),
            ingress: Vec::new(),
            network_interfaces: Some(1),
            watches: BTreeMap::new(),
        })
    }

    fn rule(mut self, rule: &str, traffic: Traffic, source: Source, owner: Option<&str>) -> Self {
        self.0.ingress.push(IngressRule {
            id: RuleId::parse(rule).unwrap(),
            traffic,
            source,
            description: None,
            owner: owner.map(str::to_string),
        });
        self
    }

    fn allow(self, rule: &str, traffic: Traffic, source: &str) -> Self {
        self.rule(rule, traffic, Source::Cidr(cidr(source)), None)
    }

    /// A rule `owner` added.
    fn owned(self, rule: &str, traffic: Traffic, source: &str, owner: &str) -> Self {
        self.rule(rule, traffic, Source::Cidr(cidr(source)), Some(owner))
    }

    fn allow_group(self, rule: &str, traffic: Traffic, group: &str) -> Self {
        self.rule(rule, traffic, Source::SecurityGroup(group.into()), None)
    }

    fn allow_list(self, rule: &str, traffic: Traffic, list: &str) -> Self {
        self.rule(rule, traffic, Source::PrefixList(list.into()), None)
    }

    fn watched_by(mut self, owner: &str, exposures: &[Exposure]) -> Self {
        self.0
            .watches
            .insert(owner.into(), exposures.iter().copied().collect());
        self
    }

    fn tagged(mut self, key: &str) -> Self {
        self.0.tags.insert(key.into(), String::new());
        self
    }

    fn interfaces(mut self, count: usize) -> Self {
        self.0.network_interfaces = Some(count);
        self
    }

    fn build(self) -> SecurityGroup {
        self.0
    }
}

fn probe(id: &str, instance: &str, ports: &[u16]) -> Finding {
    Finding::probe(id, instance, ports)
}

fn connection(
    id: &str,
    instance: &str,
    port: u16,
    direction: Direction,
    protocol: &str,
) -> Finding {
    Finding {
        finding_type: "UnauthorizedAccess:EC2/RDPBruteForce".into(),
        action: Action::NetworkConnection {
            direction,
            protocol: Some(protocol.into()),
            local_port: Some(port),
            remote_ip: Some("198.51.100.7".parse().unwrap()),
        },
        ..probe(id, instance, &[])
    }
}

fn brute_force(id: &str, instance: &str, port: u16, direction: Direction) -> Finding {
    Finding {
        finding_type: "UnauthorizedAccess:EC2/SSHBruteForce".into(),
        ..connection(id, instance, port, direction, "TCP")
    }
}

fn observe(
    findings: Vec<Finding>,
    instance_groups: &[(&str, &[&str])],
    groups: Vec<SecurityGroup>,
) -> Observation {
    Observation {
        account_id: Some("123456789012".into()),
        region: "us-east-1".into(),
        findings,
        instances: instance_groups
            .iter()
            .map(|(id, groups)| {
                let id = InstanceId::parse(id).unwrap();
                (
                    id.clone(),
                    Instance {
                        id,
                        state: InstanceState::Running,
                        security_groups: groups.iter().map(|g| sg(g)).collect(),
                    },
                )
            })
            .collect(),
        groups: groups.into_iter().map(|g| (g.id.clone(), g)).collect(),
        prefix_lists: BTreeMap::new(),
    }
}

/// One finding on i-1 probing `ports`, i-1 in `group` alone.
fn one_group(ports: &[u16], group: SecurityGroup) -> Observation {
    let id = group.id.to_string();
    observe(
        vec![probe("f1", "i-1", ports)],
        &[("i-1", &[id.as_str()])],
        vec![group],
    )
}

fn only_change(plan: &Plan) -> &ChangeSet {
    let changes: Vec<_> = plan.changes().collect();
    assert_eq!(changes.len(), 1, "expected one changed group in {plan:#?}");
    changes[0].1
}

fn authorized(change: &ChangeSet) -> Vec<String> {
    change
        .authorize
        .iter()
        .map(|a| format!("{} {}", a.source, a.what()))
        .collect()
}

fn revoked(change: &ChangeSet) -> Vec<&str> {
    change.revoke.iter().map(|r| r.rule.as_str()).collect()
}

fn refusal(plan: &Plan) -> &Refusal {
    match &plan.groups[0].verdict {
        Verdict::Refused(refusal) => refusal,
        other => panic!("expected a refusal, got {other:#?}"),
    }
}

/// Applies every change of the plan to the observed groups, as AWS would.
fn apply(observed: &mut Observation, plan: &Plan) {
    let mut counter = 0u32;
    for (group_plan, change) in plan.changes() {
        let group = observed.groups.get_mut(&group_plan.group).unwrap();
        apply_change(group, change, || {
            counter += 1;
            RuleId::parse(&format!("sgr-ffff{counter:04x}")).unwrap()
        });
    }
}

// ---- examples -------------------------------------------------------------

#[test]
fn world_open_ssh_rule_is_replaced_by_trusted_ranges() {
    let policy = Policy::test()
        .enforce()
        .trusting(&["10.0.0.0/8", "2001:db8::/32"]);
    let mut observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .allow("sgr-2", tcp(22, 22), "::/0")
            .allow("sgr-3", tcp(443, 443), "0.0.0.0/0")
            .build(),
    );
    let plan = plan(&policy, &observed);
    let change = only_change(&plan);
    assert_eq!(
        authorized(change),
        ["10.0.0.0/8 tcp/22", "2001:db8::/32 tcp/22"]
    );
    assert_eq!(revoked(change), ["sgr-1", "sgr-2"]);
    assert_eq!(change.protected, [Exposure::tcp(22)]);
    assert_eq!(change.watch.as_deref(), Some("tcp:22"));

    apply(&mut observed, &plan);
    let again = super::plan::plan(&policy, &observed);
    assert!(
        again.is_empty(),
        "second pass should change nothing: {again:#?}"
    );
    assert_eq!(again.groups[0].verdict, Verdict::Converged);
}

#[test]
fn wide_world_rule_is_narrowed_around_the_probed_ports() {
    let policy = Policy::test().enforce();
    let observed = one_group(
        &[3389, 22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(0, 65535), "0.0.0.0/0")
            .build(),
    );
    let change = only_change(&plan(&policy, &observed)).clone();
    assert_eq!(
        authorized(&change),
        [
            "0.0.0.0/0 tcp/0-21",
            "0.0.0.0/0 tcp/23-3388",
            "0.0.0.0/0 tcp/3390-65535",
            "10.0.0.0/8 tcp/22",
            "10.0.0.0/8 tcp/3389",
        ]
    );
    assert_eq!(revoked(&change), ["sgr-1"]);
}

#[test]
fn trusted_rules_groups_references_udp_and_other_ports_are_left_alone() {
    let policy = Policy::test().enforce();
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "10.1.0.0/16")
            .allow("sgr-2", udp(22, 22), "0.0.0.0/0")
            .allow("sgr-3", tcp(80, 80), "0.0.0.0/0")
            .allow_group("sgr-4", tcp(22, 22), "sg-9")
            .allow("sgr-5", tcp(22, 22), "93.184.216.0/24")
            .build(),
    );
    let plan = plan(&policy, &observed);
    let change = only_change(&plan).clone();
    assert_eq!(revoked(&change), ["sgr-5"]);
    // 10.1.0.0/16 is inside the trusted range but does not cover all of it.
    assert_eq!(authorized(&change), ["10.0.0.0/8 tcp/22"]);
    assert_eq!(
        plan.groups[0].kept,
        [Kept {
            rule: RuleId::parse("sgr-4").unwrap(),
            source: "group sg-9".into(),
            reason: KeptReason::SecurityGroup,
        }]
    );
}

#[test]
fn private_sources_stay_under_revoke_public_and_are_listed_as_kept() {
    // A peered VPC, a CGNAT health checker and a documentation range keep tcp/22;
    // the world does not.
    let group = GroupBuilder::new("sg-1")
        .allow("sgr-1", tcp(22, 22), "172.31.0.0/16")
        .allow("sgr-2", tcp(22, 22), "100.64.0.0/10")
        .allow("sgr-3", tcp(22, 22), "198.51.100.7/32")
        .allow("sgr-4", tcp(22, 22), "0.0.0.0/0")
        .build();
    let plan = plan(&Policy::test().enforce(), &one_group(&[22], group.clone()));
    let change = only_change(&plan);
    assert_eq!(revoked(change), ["sgr-4"]);
    let kept: Vec<(&str, &KeptReason)> = plan.groups[0]
        .kept
        .iter()
        .map(|k| (k.rule.as_str(), &k.reason))
        .collect();
    assert_eq!(
        kept,
        [
            ("sgr-1", &KeptReason::NotPublic),
            ("sgr-2", &KeptReason::NotPublic),
            ("sgr-3", &KeptReason::NotPublic)
        ]
    );
    // revoke: Untrusted keeps the old behaviour: everything outside the trusted ranges.
    let untrusted = super::plan::plan(
        &Policy::test().enforce().revoking_untrusted(),
        &one_group(&[22], group),
    );
    assert_eq!(
        revoked(only_change(&untrusted)),
        ["sgr-1", "sgr-2", "sgr-3", "sgr-4"]
    );
}

#[test]
fn a_private_all_traffic_rule_does_not_block_the_public_rule_beside_it() {
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", Traffic::All, "172.31.0.0/16")
            .allow("sgr-2", tcp(22, 22), "0.0.0.0/0")
            .build(),
    );
    for policy in [
        Policy::test().enforce(),
        Policy::test().enforce().revoking_untrusted(),
    ] {
        let plan = plan(&policy, &observed);
        assert_eq!(revoked(only_change(&plan)), ["sgr-2"], "{policy:?}");
        assert_eq!(plan.groups[0].kept[0].rule.as_str(), "sgr-1");
    }
}

#[test]
fn all_traffic_world_rule_is_refused_with_a_reason() {
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", Traffic::All, "0.0.0.0/0")
            .build(),
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    assert!(plan.is_empty());
    assert!(matches!(refusal(&plan), Refusal::AllTrafficRule { .. }));
}

#[test]
fn split_keeps_every_other_port_and_icmp_and_names_what_it_drops() {
    let mut observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", Traffic::All, "0.0.0.0/0")
            .build(),
    );
    let policy = Policy::test().enforce().splitting();
    let plan = plan(&policy, &observed);
    let change = only_change(&plan);
    assert_eq!(revoked(change), ["sgr-1"]);
    assert_eq!(
        authorized(change),
        [
            "0.0.0.0/0 tcp/0-21",
            "0.0.0.0/0 tcp/23-65535",
            "0.0.0.0/0 udp/0-65535",
            "0.0.0.0/0 icmp",
            "10.0.0.0/8 tcp/22",
        ]
    );
    assert_eq!(
        change.dropped,
        ["every IP protocol but tcp, udp and icmp from 0.0.0.0/0 (all-traffic rule sgr-1)"]
    );
    apply(&mut observed, &plan);
    assert!(super::plan::plan(&policy, &observed).is_empty());
}

#[test]
fn group_that_does_not_expose_the_port_is_not_opened_to_trusted_ranges() {
    let policy = Policy::test().enforce();
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1", "sg-2"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
            GroupBuilder::new("sg-2")
                .allow("sgr-2", tcp(443, 443), "0.0.0.0/0")
                .build(),
        ],
    );
    let plan = plan(&policy, &observed);
    assert_eq!(plan.changes().count(), 1);
    let untouched = plan.group(&sg("sg-2")).unwrap();
    assert_eq!(untouched.verdict, Verdict::Converged);
    assert!(untouched.ports.is_empty());
}

#[test]
fn a_probe_on_a_public_port_is_reported_and_never_remediated() {
    let observed = one_group(
        &[443],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(443, 443), "0.0.0.0/0")
            .build(),
    );
    let public = plan(&Policy::test().enforce(), &observed);
    assert!(public.groups.is_empty());
    assert_eq!(
        public.findings.values().next().unwrap(),
        &FindingDecision::Report(ReportOnly::PublicPorts { ports: vec![443] })
    );
    // A probe of 22 and 443: 22 is closed, 443 left open and named.
    let observed = one_group(
        &[22, 443],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(0, 65535), "0.0.0.0/0")
            .build(),
    );
    let mixed = plan(&Policy::test().enforce(), &observed);
    assert_eq!(mixed.groups[0].ports, [Exposure::tcp(22)]);
    assert!(matches!(
        mixed.findings.values().next().unwrap(),
        FindingDecision::Remediate { public_ports, .. } if public_ports == &[443]
    ));
}

#[test]
fn remediation_ports_limit_what_is_closed() {
    let mut policy = Policy::test().enforce();
    policy.ports = [3389].into();
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .build(),
    );
    let plan = plan(&policy, &observed);
    assert!(plan.groups.is_empty());
    assert_eq!(
        plan.findings.values().next().unwrap(),
        &FindingDecision::Report(ReportOnly::PortsNotRemediated { ports: vec![22] })
    );
}

#[test]
fn a_group_used_by_too_many_interfaces_is_refused_with_the_count_and_the_field() {
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .interfaces(300)
            .build(),
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    let refusal = refusal(&plan);
    assert_eq!(
        refusal,
        &Refusal::TooManyInterfaces {
            interfaces: 300,
            max: 50
        }
    );
    assert!(
        refusal
            .to_string()
            .contains("remediation.maxNetworkInterfaces")
    );
}

#[test]
fn a_udp_connection_is_closed_on_udp_rules() {
    let observed = observe(
        vec![connection("f1", "i-1", 3389, Direction::Inbound, "UDP")],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(3389, 3389), "10.0.0.0/8")
                .allow("sgr-2", udp(3389, 3389), "0.0.0.0/0")
                .build(),
        ],
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    let change = only_change(&plan);
    assert_eq!(revoked(change), ["sgr-2"]);
    assert_eq!(authorized(change), ["10.0.0.0/8 udp/3389"]);
    assert_eq!(change.protected, [Exposure::udp(3389)]);
}

#[test]
fn a_public_prefix_list_on_the_port_refuses_the_group() {
    let group = GroupBuilder::new("sg-1")
        .allow_list("sgr-1", tcp(22, 22), "pl-1")
        .build();
    let mut observed = one_group(&[22], group);
    let policy = Policy::test().enforce();
    assert_eq!(
        prefix_lists_to_read(&policy, &observed),
        BTreeSet::from(["pl-1".to_string()])
    );
    // Not read: the port may be open, so the group is refused, never converged.
    assert!(matches!(
        refusal(&plan(&policy, &observed)),
        Refusal::PrefixListUnreadable { .. }
    ));
    observed.prefix_lists.insert(
        "pl-1".into(),
        PrefixListEntries::Read(vec![cidr("10.0.0.0/8"), cidr("0.0.0.0/0")]),
    );
    assert_eq!(
        refusal(&plan(&policy, &observed)),
        &Refusal::PrefixListExposes {
            list: "pl-1".into(),
            entry: cidr("0.0.0.0/0"),
            exposure: Exposure::tcp(22),
        }
    );
    observed.prefix_lists.insert(
        "pl-1".into(),
        PrefixListEntries::Read(vec![cidr("172.16.0.0/12")]),
    );
    let plan = plan(&policy, &observed);
    assert!(
        plan.groups[0].ports.is_empty(),
        "a private list exposes nothing"
    );
}

#[test]
fn a_rule_of_another_policy_is_never_revoked_and_its_port_is_refused() {
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .owned("sgr-2", tcp(22, 22), "192.168.0.0/16", OTHER_OWNER)
            .build(),
    );
    let plan = plan(&Policy::test().enforce().revoking_untrusted(), &observed);
    assert!(plan.is_empty());
    let refusal = refusal(&plan);
    assert_eq!(
        refusal,
        &Refusal::ClaimedByOtherPolicy {
            owner: OTHER_OWNER.into(),
            exposure: Exposure::tcp(22)
        }
    );
    assert!(refusal.to_string().contains(OTHER_OWNER));
}

#[test]
fn a_port_another_policy_watches_is_refused_naming_it() {
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .watched_by(OTHER_OWNER, &[Exposure::tcp(22)])
            .build(),
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    assert!(matches!(
        refusal(&plan),
        Refusal::ClaimedByOtherPolicy { owner, .. } if owner == OTHER_OWNER
    ));
    // Another port of the same group is still this policy's to fix.
    let observed = one_group(
        &[3389],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(3389, 3389), "0.0.0.0/0")
            .watched_by(OTHER_OWNER, &[Exposure::tcp(22)])
            .build(),
    );
    assert_eq!(revoked(only_change(&plan_of(&observed))), ["sgr-1"]);
}

fn plan_of(observed: &Observation) -> Plan {
    plan(&Policy::test().enforce(), observed)
}

#[test]
fn two_policies_in_the_same_second_keep_both_trusted_rules_and_then_refuse_each_other() {
    let a = Policy::test()
        .enforce()
        .owned_by("team-a/ssh")
        .trusting(&["10.0.0.0/8"]);
    let b = Policy::test()
        .enforce()
        .owned_by("team-b/ssh")
        .trusting(&["192.168.0.0/16"]);
    let mut observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .build(),
    );
    // Both plan from the same state, then both apply.
    let plan_a = plan(&a, &observed);
    let plan_b = plan(&b, &observed);
    apply(&mut observed, &plan_a);
    apply(&mut observed, &plan_b);
    let group = &observed.groups[&sg("sg-1")];
    let sources: BTreeSet<String> = group.ingress.iter().map(|r| r.source.to_string()).collect();
    assert_eq!(
        sources,
        BTreeSet::from(["10.0.0.0/8".to_string(), "192.168.0.0/16".to_string()]),
        "neither trusted rule is lost, the world is out"
    );
    // From then on each refuses, naming the other, and changes nothing.
    for (policy, other) in [(&a, "team-b/ssh"), (&b, "team-a/ssh")] {
        let again = plan(policy, &observed);
        assert!(again.is_empty());
        assert!(matches!(
            refusal(&again),
            Refusal::ClaimedByOtherPolicy { owner, .. } if owner == other
        ));
    }
}

#[test]
fn exempt_group_is_never_changed() {
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .tagged("guardduty-operator/exempt")
            .build(),
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    assert!(plan.is_empty());
    assert_eq!(plan.groups[0].verdict, Verdict::Exempt);
}

#[test]
fn off_mode_plans_nothing_and_says_why() {
    let observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .build(),
    );
    let plan = plan(&Policy::test().off(), &observed);
    assert!(plan.groups.is_empty());
    assert_eq!(
        plan.findings.values().next().unwrap(),
        &FindingDecision::Report(ReportOnly::RemediationOff)
    );
}

#[test]
fn sample_and_outbound_findings_change_nothing() {
    let mut sample = probe("f1", "i-1", &[22]);
    sample.sample = true;
    let outbound = brute_force("f2", "i-1", 22, Direction::Outbound);
    let observed = observe(
        vec![sample, outbound],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    assert!(plan.groups.is_empty());
    let reasons: Vec<_> = plan.findings.values().cloned().collect();
    assert_eq!(
        reasons,
        [
            FindingDecision::Report(ReportOnly::Sample),
            FindingDecision::Report(ReportOnly::InstanceIsTheActor)
        ]
    );
}

#[test]
fn finding_of_another_account_is_reported_and_its_instance_not_described() {
    let mut member = probe("f1", "i-1", &[22]);
    member.account_id = "210987654321".into();
    let policy = Policy::test().enforce();
    let observed = observe(
        vec![member.clone()],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
    );
    assert!(instances_to_describe(&policy, Some("123456789012"), &[member]).is_empty());
    let plan = plan(&policy, &observed);
    assert!(plan.groups.is_empty());
    assert_eq!(
        plan.findings.values().next().unwrap(),
        &FindingDecision::Report(ReportOnly::OtherAccount {
            account: "210987654321".into()
        })
    );
}

#[test]
fn a_member_account_left_out_of_the_allow_list_is_reported_as_not_allowed() {
    let mut member = probe("f1", "i-1", &[22]);
    member.account_id = "210987654321".into();
    let policy = Policy {
        member_accounts: Some(crate::policy::MemberAccounts {
            role_name: "gdo".into(),
            external_id: None,
            accounts: ["111111111111".to_string()].into(),
        }),
        ..Policy::test().enforce()
    };
    assert!(!policy.remediates_account("210987654321", "123456789012"));
    assert!(policy.remediates_account("111111111111", "123456789012"));
    assert!(policy.remediates_account("123456789012", "123456789012"));
    let observed = observe(vec![member], &[("i-1", &["sg-1"])], Vec::new());
    assert_eq!(
        plan(&policy, &observed).findings.values().next().unwrap(),
        &FindingDecision::Report(ReportOnly::AccountNotAllowed {
            account: "210987654321".into()
        })
    );
    let every = crate::policy::MemberAccounts {
        accounts: Default::default(),
        ..policy.member_accounts.clone().unwrap()
    };
    assert!(
        every.allows("210987654321"),
        "an empty list allows every member"
    );
    assert_eq!(
        every.role_arn("210987654321", "us-gov-west-1"),
        "arn:aws-us-gov:iam::210987654321:role/gdo"
    );
}

#[test]
fn inbound_brute_force_closes_its_port() {
    let observed = observe(
        vec![brute_force("f1", "i-1", 22, Direction::Inbound)],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
    );
    let change = only_change(&plan(&Policy::test().enforce(), &observed)).clone();
    assert_eq!(revoked(&change), ["sgr-1"]);
}

#[test]
fn terminated_and_missing_instances_are_reported_not_remediated() {
    let mut observed = observe(
        vec![probe("f1", "i-1", &[22]), probe("f2", "i-2", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
    );
    observed
        .instances
        .get_mut(&InstanceId::parse("i-1").unwrap())
        .unwrap()
        .state = InstanceState::Terminated;
    let plan = plan(&Policy::test().enforce(), &observed);
    assert!(plan.groups.is_empty());
    let f1 = &plan.findings[&FindingId::parse("f1").unwrap()];
    let f2 = &plan.findings[&FindingId::parse("f2").unwrap()];
    assert!(matches!(
        f1,
        FindingDecision::Report(ReportOnly::InstanceGone { .. })
    ));
    assert!(matches!(
        f2,
        FindingDecision::Report(ReportOnly::InstanceNotFound { .. })
    ));
}

#[test]
fn plan_over_the_rule_quota_is_refused_for_that_group_only() {
    let mut full = GroupBuilder::new("sg-1").allow("sgr-1", tcp(22, 22), "0.0.0.0/0");
    for i in 0..4u16 {
        full = full.allow(&format!("sgr-a{i}"), tcp(1000 + i, 1000 + i), "10.0.0.0/8");
    }
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1", "sg-2"])],
        vec![
            full.build(),
            GroupBuilder::new("sg-2")
                .allow("sgr-2", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
    );
    let plan = plan(&Policy::test().enforce().quota(5), &observed);
    assert_eq!(
        plan.groups[0].verdict,
        Verdict::Refused(Refusal::RuleQuota {
            family: Family::V4,
            existing: 5,
            adding: 1,
            quota: 5
        })
    );
    assert!(matches!(plan.groups[1].verdict, Verdict::Change(_)));
}

#[test]
fn a_revoke_only_fix_is_remembered_and_a_reopened_port_is_closed_again() {
    let policy = Policy::test().enforce();
    // The trusted range is already there: the fix only revokes, adds no rule.
    let mut observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "10.0.0.0/8")
            .allow("sgr-2", tcp(22, 22), "0.0.0.0/0")
            .build(),
    );
    let first = plan(&policy, &observed);
    let change = only_change(&first);
    assert!(change.authorize.is_empty());
    assert_eq!(
        change.watch.as_deref(),
        Some("tcp:22"),
        "remembered on the group"
    );
    apply(&mut observed, &first);
    // The finding is archived; then someone opens SSH to the world again.
    observed.findings.clear();
    let group = observed.groups.get_mut(&sg("sg-1")).unwrap();
    group.ingress.push(IngressRule {
        id: RuleId::parse("sgr-9").unwrap(),
        traffic: tcp(22, 22),
        source: Source::Cidr(cidr("0.0.0.0/0")),
        description: None,
        owner: None,
    });
    let drift = plan(&policy, &observed);
    let change = only_change(&drift);
    assert_eq!(revoked(change), ["sgr-9"]);
    assert_eq!(change.watch, None, "already remembered");
    assert!(drift.groups[0].findings.is_empty());
}

#[test]
fn dropped_trusted_range_loses_the_rule_the_operator_added() {
    let mut observed = one_group(
        &[22],
        GroupBuilder::new("sg-1")
            .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
            .build(),
    );
    let before = Policy::test()
        .enforce()
        .trusting(&["10.0.0.0/8", "192.168.0.0/16"]);
    let first = plan(&before, &observed);
    apply(&mut observed, &first);
    let after = Policy::test().enforce().trusting(&["10.0.0.0/8"]);
    let second = plan(&after, &observed);
    let change = only_change(&second);
    assert!(change.authorize.is_empty());
    assert_eq!(change.revoke.len(), 1);
    assert_eq!(change.revoke[0].source, cidr("192.168.0.0/16"));
}

#[test]
fn group_shared_by_instances_reports_its_interfaces_and_every_finding() {
    let group = GroupBuilder::new("sg-1")
        .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
        .interfaces(7)
        .build();
    let observed = observe(
        vec![probe("f1", "i-1", &[22]), probe("f2", "i-2", &[22])],
        &[("i-1", &["sg-1"]), ("i-2", &["sg-1"])],
        vec![group],
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].network_interfaces, Some(7));
    assert_eq!(plan.groups[0].findings.len(), 2);
}

#[test]
fn a_group_to_change_whose_interfaces_were_not_read_is_refused_not_changed() {
    let mut group = GroupBuilder::new("sg-1")
        .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
        .build();
    group.network_interfaces = None;
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![group],
    );
    let policy = Policy::test().enforce();
    let plan = plan(&policy, &observed);
    assert_eq!(
        plan.groups[0].verdict,
        Verdict::Refused(Refusal::InterfacesNotRead)
    );
    assert_eq!(
        interfaces_to_count(&policy, &observed),
        BTreeSet::from([SecurityGroupId::parse("sg-1").unwrap()])
    );
}

#[test]
fn a_converged_group_needs_no_interface_count() {
    let mut group = GroupBuilder::new("sg-1")
        .allow("sgr-1", tcp(22, 22), "10.0.0.0/8")
        .watched_by(TEST_OWNER, &[Exposure::tcp(22)])
        .build();
    group.network_interfaces = None;
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![group],
    );
    let policy = Policy::test().enforce().trusting(&["10.0.0.0/8"]);
    assert!(interfaces_to_count(&policy, &observed).is_empty());
    let plan = plan(&policy, &observed);
    assert_eq!(plan.groups[0].verdict, Verdict::Converged);
    assert_eq!(plan.groups[0].network_interfaces, None);
}

// ---- properties -----------------------------------------------------------

const SOURCES: [&str; 11] = [
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.0.0.0/7",
    "192.168.0.0/16",
    "172.31.0.0/16",
    "93.184.216.0/24",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2600:1f18::/32",
];
const TRUSTED: [&str; 5] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "192.168.0.0/16",
    "2001:db8::/32",
    "93.184.216.0/25",
];
const PORTS: [u16; 4] = [22, 80, 3389, 65535];
const OWNERS: [&str; 2] = [TEST_OWNER, OTHER_OWNER];

fn traffic() -> impl Strategy<Value = Traffic> {
    let port = prop::sample::select(vec![0u16, 21, 22, 23, 80, 3389, 65535]);
    prop_oneof![
        1 => Just(Traffic::All),
        6 => (port.clone(), port.clone()).prop_map(|(a, b)| tcp(a.min(b), a.max(b))),
        2 => (port.clone(), port).prop_map(|(a, b)| udp(a.min(b), a.max(b))),
        1 => Just(Traffic::Other { protocol: "icmp".into() }),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        10 => prop::sample::select(SOURCES.to_vec()).prop_map(|s| Source::Cidr(cidr(s))),
        1 => Just(Source::SecurityGroup("sg-0ther".into())),
        1 => Just(Source::PrefixList("pl-public".into())),
        1 => Just(Source::PrefixList("pl-private".into())),
    ]
}

fn owner() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => Just(None),
        1 => Just(Some(TEST_OWNER.to_string())),
        1 => Just(Some(OTHER_OWNER.to_string())),
    ]
}

fn exposure() -> impl Strategy<Value = Exposure> {
    (prop::sample::select(PORTS.to_vec()), any::<bool>()).prop_map(|(port, udp)| {
        if udp {
            Exposure::udp(port)
        } else {
            Exposure::tcp(port)
        }
    })
}

fn rules() -> impl Strategy<Value = Vec<IngressRule>> {
    prop::collection::vec((traffic(), source(), owner()), 0..8).prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, (traffic, source, owner))| IngressRule {
                id: RuleId::parse(&format!("sgr-{i:x}")).unwrap(),
                traffic,
                source,
                description: None,
                owner,
            })
            .collect()
    })
}

fn watches() -> impl Strategy<Value = BTreeMap<String, BTreeSet<Exposure>>> {
    prop::collection::btree_map(
        prop::sample::select(OWNERS.to_vec()).prop_map(str::to_string),
        prop::collection::btree_set(exposure(), 1..=2),
        0..=2,
    )
}

prop_compose! {
    fn group(id: &'static str)(
        ingress in rules(),
        watches in watches(),
        interfaces in 1usize..=3,
        exempt in prop::bool::weighted(0.1),
    ) -> SecurityGroup {
        let mut group = GroupBuilder::new(id).interfaces(interfaces).build();
        group.ingress = ingress;
        group.watches = watches;
        if exempt {
            group.tags.insert("guardduty-operator/exempt".into(), "yes".into());
        }
        group
    }
}

prop_compose! {
    fn policy()(
        trusted in prop::sample::subsequence(TRUSTED.to_vec(), 1..=3),
        untrusted in any::<bool>(),
        split in any::<bool>(),
        quota in prop::sample::select(vec![3usize, 60]),
        max_interfaces in prop::sample::select(vec![2usize, 50]),
    ) -> Policy {
        let mut policy = Policy::test().enforce().trusting(&trusted).quota(quota).max_interfaces(max_interfaces);
        if untrusted {
            policy = policy.revoking_untrusted();
        }
        if split {
            policy = policy.splitting();
        }
        policy
    }
}

prop_compose! {
    fn scenario()(
        policy in policy(),
        g1 in group("sg-1"),
        g2 in group("sg-2"),
        ports in prop::sample::subsequence(PORTS.to_vec(), 1..=3),
        udp_connection in prop::option::weighted(0.3, prop::sample::select(PORTS.to_vec())),
    ) -> (Policy, Observation) {
        let mut findings = vec![probe("f1", "i-1", &ports)];
        if let Some(port) = udp_connection {
            findings.push(connection("f2", "i-1", port, Direction::Inbound, "UDP"));
        }
        let mut observed = observe(findings, &[("i-1", &["sg-1", "sg-2"])], vec![g1, g2]);
        observed.prefix_lists.insert("pl-public".into(), PrefixListEntries::Read(vec![cidr("0.0.0.0/0")]));
        observed.prefix_lists.insert("pl-private".into(), PrefixListEntries::Read(vec![cidr("172.16.0.0/12")]));
        (policy, observed)
    }
}

/// Every (source, exposure) a group admits, for the ports the tests look at.
fn reach(group: &SecurityGroup) -> BTreeSet<(Source, Exposure)> {
    let probe_ports = [
        0u16, 1, 20, 21, 22, 23, 24, 79, 80, 81, 3388, 3389, 3390, 65534, 65535,
    ];
    group
        .ingress
        .iter()
        .flat_map(|r| {
            probe_ports
                .iter()
                .flat_map(|p| [Exposure::tcp(*p), Exposure::udp(*p)])
                .filter(|e| r.traffic.admits(*e))
                .map(|e| (r.source.clone(), e))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A public path the policy's trusted ranges do not cover: what a fix must leave
/// none of.
fn public_path(
    policy: &Policy,
    observed: &Observation,
    group: &SecurityGroup,
    exposure: Exposure,
) -> Option<String> {
    group.ingress.iter().find_map(|rule| {
        if !rule.traffic.admits(exposure) {
            return None;
        }
        match &rule.source {
            Source::Cidr(c) if is_public(c) && !policy.trusted.covers(c) => {
                Some(format!("{} admits {exposure} from {c}", rule.id))
            }
            Source::PrefixList(list) => match observed.prefix_lists.get(list) {
                Some(PrefixListEntries::Read(entries))
                    if entries
                        .iter()
                        .any(|e| is_public(e) && !policy.trusted.covers(e)) =>
                {
                    Some(format!("{} admits {exposure} through {list}", rule.id))
                }
                _ => None,
            },
            _ => None,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_revokes_a_rule_from_a_trusted_source((policy, observed) in scenario()) {
        let plan = plan(&policy, &observed);
        for (group_plan, change) in plan.changes() {
            let group = &observed.groups[&group_plan.group];
            for revocation in &change.revoke {
                let rule = group.ingress.iter().find(|r| r.id == revocation.rule).unwrap();
                let source = rule.cidr().expect("only CIDR rules are revoked");
                prop_assert!(!policy.trusted.covers(source), "revoked trusted {source}");
            }
        }
    }

    #[test]
    fn never_touches_a_rule_or_a_port_another_policy_owns((policy, observed) in scenario()) {
        let plan = plan(&policy, &observed);
        for (group_plan, change) in plan.changes() {
            let group = &observed.groups[&group_plan.group];
            for revocation in &change.revoke {
                let rule = group.ingress.iter().find(|r| r.id == revocation.rule).unwrap();
                prop_assert!(rule.owner.is_none() || rule.owned_by(&policy.owner),
                    "revoked {} of {:?}", rule.id, rule.owner);
            }
            for exposure in &change.protected {
                for (owner, watched) in &group.watches {
                    prop_assert!(owner == &policy.owner || !watched.contains(exposure),
                        "changed {exposure}, which {owner} watches");
                }
            }
        }
    }

    #[test]
    fn under_revoke_public_no_private_source_is_revoked_unless_the_policy_added_it(
        (policy, observed) in scenario()
    ) {
        prop_assume!(policy.revoke == super::policy::RevokeScope::Public);
        let plan = plan(&policy, &observed);
        for (group_plan, change) in plan.changes() {
            let group = &observed.groups[&group_plan.group];
            for revocation in &change.revoke {
                let rule = group.ingress.iter().find(|r| r.id == revocation.rule).unwrap();
                prop_assert!(is_public(&revocation.source) || rule.owned_by(&policy.owner),
                    "revoked the private source {}", revocation.source);
            }
        }
    }

    #[test]
    fn revokes_only_rules_that_admit_an_exposure_in_scope((policy, observed) in scenario()) {
        let plan = plan(&policy, &observed);
        for (group_plan, change) in plan.changes() {
            let group = &observed.groups[&group_plan.group];
            for revocation in &change.revoke {
                let rule = group.ingress.iter().find(|r| r.id == revocation.rule).unwrap();
                prop_assert!(matches!(rule.source, Source::Cidr(_)));
                prop_assert!(group_plan.ports.iter().any(|e| rule.traffic.admits(*e)));
                prop_assert!(!matches!(rule.traffic, Traffic::All) || policy.all_traffic_rules == super::policy::AllTrafficRules::Split);
            }
            for auth in &change.authorize {
                match &auth.purpose {
                    Purpose::Trusted => {
                        prop_assert!(auth.ports.from == auth.ports.to);
                        prop_assert!(policy.trusted.iter().any(|t| *t == auth.source));
                    }
                    Purpose::Narrowed { replaces } | Purpose::Split { replaces } => {
                        let rule = group.ingress.iter().find(|r| &r.id == replaces).unwrap();
                        prop_assert_eq!(Source::Cidr(auth.source), rule.source.clone());
                        prop_assert!(!group_plan.ports.iter().any(|e| auth.traffic().admits(*e)),
                            "{} re-opens a port in scope", auth.what());
                    }
                }
            }
        }
    }

    #[test]
    fn applied_plan_leaves_no_public_path_and_keeps_everything_else(
        (policy, mut observed) in scenario()
    ) {
        let before = observed.clone();
        let plan = plan(&policy, &observed);
        apply(&mut observed, &plan);
        for group_plan in &plan.groups {
            let old = &before.groups[&group_plan.group];
            let new = &observed.groups[&group_plan.group];
            let in_scope: BTreeSet<Exposure> = group_plan.ports.iter().copied().collect();
            match &group_plan.verdict {
                Verdict::Change(_) | Verdict::Converged => {
                    // Honest outcomes: nothing public still admits a port in scope.
                    for exposure in &in_scope {
                        let path = public_path(&policy, &observed, new, *exposure);
                        prop_assert!(path.is_none(), "{:?} after a {:?}", path, group_plan.verdict);
                    }
                }
                _ => prop_assert_eq!(old, new, "a group without a change set was changed"),
            }
            let Verdict::Change(_) = group_plan.verdict else { continue };
            let old_reach = reach(old);
            let new_reach = reach(new);
            for (source, exposure) in &old_reach {
                if !in_scope.contains(exposure) && !matches!(source, Source::Cidr(_) if false) {
                    prop_assert!(new_reach.contains(&(source.clone(), *exposure)),
                        "{source} lost {exposure}, which no finding concerns");
                }
            }
            for exposure in &in_scope {
                for trusted in policy.trusted.iter() {
                    let reaching: Vec<Cidr> = new.ingress.iter()
                        .filter(|r| r.traffic.admits(*exposure))
                        .filter_map(|r| r.cidr().copied())
                        .collect();
                    prop_assert!(super::cidr::covered_by(reaching.iter(), trusted),
                        "trusted {trusted} cannot reach {exposure}: locked out");
                }
            }
            // Rules of other protocols, groups and prefix lists are untouched.
            for rule in &old.ingress {
                if matches!(rule.traffic, Traffic::Other { .. }) || !matches!(rule.source, Source::Cidr(_)) {
                    prop_assert!(new.ingress.contains(rule));
                }
            }
        }
    }

    #[test]
    fn no_finding_port_keeps_a_public_path_through_a_group_the_plan_calls_fine(
        (policy, mut observed) in scenario()
    ) {
        let plan = plan(&policy, &observed);
        apply(&mut observed, &plan);
        for decision in plan.findings.values() {
            let FindingDecision::Remediate { exposures, security_groups, .. } = decision else { continue };
            for id in security_groups {
                let group_plan = plan.group(id).unwrap();
                if !matches!(group_plan.verdict, Verdict::Change(_) | Verdict::Converged) {
                    continue;
                }
                for exposure in exposures {
                    let path = public_path(&policy, &observed, &observed.groups[id], *exposure);
                    prop_assert!(path.is_none(), "{id}: {path:?} while the plan says {:?}", group_plan.verdict);
                }
            }
        }
    }

    #[test]
    fn counting_interfaces_only_where_the_plan_asks_decides_the_same((policy, observed) in scenario()) {
        // What a pass does: read every group without its interfaces, count those the
        // plan names, plan again. The result is the plan of a pass that counted all.
        let mut unread = observed.clone();
        for group in unread.groups.values_mut() {
            group.network_interfaces = None;
        }
        let wanted = interfaces_to_count(&policy, &unread);
        for id in &wanted {
            let group = unread.groups.get_mut(id).unwrap();
            group.network_interfaces = observed.groups[id].network_interfaces;
        }
        let counted_where_asked = plan(&policy, &unread);
        let counted_everywhere = plan(&policy, &observed);
        prop_assert_eq!(counted_where_asked.findings, counted_everywhere.findings);
        prop_assert_eq!(counted_where_asked.groups.len(), counted_everywhere.groups.len());
        for (asked, all) in counted_where_asked.groups.iter().zip(&counted_everywhere.groups) {
            prop_assert_eq!(&asked.verdict, &all.verdict);
            // Only a group that would change is counted.
            prop_assert_eq!(wanted.contains(&asked.group), asked.network_interfaces.is_some());
        }
    }

    #[test]
    fn planning_again_after_applying_changes_nothing((policy, mut observed) in scenario()) {
        let first = plan(&policy, &observed);
        apply(&mut observed, &first);
        let second = plan(&policy, &observed);
        prop_assert!(second.is_empty(), "not converged: {:#?}", second);
    }

    #[test]
    fn exempt_groups_busy_groups_and_off_mode_change_nothing((policy, observed) in scenario()) {
        let plan_enforced = plan(&policy, &observed);
        for group_plan in &plan_enforced.groups {
            let group = &observed.groups[&group_plan.group];
            if group.tags.contains_key("guardduty-operator/exempt") {
                prop_assert_eq!(&group_plan.verdict, &Verdict::Exempt);
            }
            if group.network_interfaces.is_none_or(|n| n > policy.max_network_interfaces) {
                prop_assert!(!matches!(group_plan.verdict, Verdict::Change(_)));
            }
            prop_assert!(group_plan.ports.iter().all(|e| policy.remediates_port(e.port)));
        }
        let off = Policy { mode: Mode::Off, ..policy };
        prop_assert!(plan(&off, &observed).groups.is_empty());
    }

    #[test]
    fn two_policies_never_take_away_each_others_rules_in_any_interleaving(
        (a, observed) in scenario(),
        b_trusted in prop::sample::subsequence(TRUSTED.to_vec(), 1..=2),
        a_first in any::<bool>(),
    ) {
        let a = a.owned_by("team-a/p");
        let b = Policy::test().enforce().owned_by("team-b/p").trusting(&b_trusted).revoking_untrusted();
        // Concurrent: both plan from the same state, then apply in either order.
        let mut world = observed.clone();
        let (plan_a, plan_b) = (plan(&a, &world), plan(&b, &world));
        let order: [(&Policy, &Plan); 2] = if a_first { [(&a, &plan_a), (&b, &plan_b)] } else { [(&b, &plan_b), (&a, &plan_a)] };
        for (_, p) in order {
            apply(&mut world, p);
        }
        // Then each runs again, in turn, twice: sequential passes on the result.
        for _ in 0..2 {
            for policy in [&a, &b] {
                let before = world.clone();
                let next = plan(policy, &world);
                apply(&mut world, &next);
                for (id, group) in &before.groups {
                    for rule in &group.ingress {
                        let gone = !world.groups[id].ingress.iter().any(|r| r.id == rule.id);
                        let others = rule.owner.as_ref().is_some_and(|o| o != &policy.owner);
                        prop_assert!(!(gone && others),
                            "{} removed {}'s rule {}", policy.owner, rule.owner.as_deref().unwrap_or(""), rule.id);
                    }
                }
            }
        }
    }

    #[test]
    fn plans_are_deterministic((policy, mut observed) in scenario()) {
        let first = plan(&policy, &observed);
        observed.findings.reverse();
        prop_assert_eq!(first, plan(&policy, &observed));
    }
}
