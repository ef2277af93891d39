//! Examples and property tests of the planner's safety invariants (DESIGN.md).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::cidr::Cidr;
use super::finding::{Action, Direction, Finding, ReportOnly};
use super::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use super::plan::*;
use super::policy::Policy;
use super::security_group::*;

// ---- fixtures -------------------------------------------------------------

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn sg(id: &str) -> SecurityGroupId {
    SecurityGroupId::parse(id).unwrap()
}

fn tcp(from: u16, to: u16) -> Traffic {
    Traffic::Tcp(PortRange::new(from, to))
}

/// A group in a builder style: `Group::new("sg-1").allow("sgr-1", tcp(22, 22), "0.0.0.0/0")`.
struct GroupBuilder(SecurityGroup);

impl GroupBuilder {
    fn new(id: &str) -> Self {
        GroupBuilder(SecurityGroup {
            id: sg(id),
            name: format!("{id}-name"),
            vpc_id: Some("vpc-1".into()),
            tags: BTreeMap::new(),
            ingress: Vec::new(),
            network_interfaces: 1,
        })
    }

    fn allow(mut self, rule: &str, traffic: Traffic, source: &str) -> Self {
        self.0.ingress.push(IngressRule {
            id: RuleId::parse(rule).unwrap(),
            traffic,
            source: Source::Cidr(cidr(source)),
            description: None,
            managed_ports: None,
        });
        self
    }

    fn allow_group(mut self, rule: &str, traffic: Traffic, group: &str) -> Self {
        self.0.ingress.push(IngressRule {
            id: RuleId::parse(rule).unwrap(),
            traffic,
            source: Source::SecurityGroup(group.into()),
            description: None,
            managed_ports: None,
        });
        self
    }

    fn tagged(mut self, key: &str) -> Self {
        self.0.tags.insert(key.into(), String::new());
        self
    }

    fn build(self) -> SecurityGroup {
        self.0
    }
}

fn probe(id: &str, instance: &str, ports: &[u16]) -> Finding {
    Finding::probe(id, instance, ports)
}

fn brute_force(id: &str, instance: &str, port: u16, direction: Direction) -> Finding {
    Finding {
        finding_type: "UnauthorizedAccess:EC2/SSHBruteForce".into(),
        action: Action::NetworkConnection {
            direction,
            protocol: Some("TCP".into()),
            local_port: Some(port),
            remote_ip: Some("198.51.100.7".parse().unwrap()),
        },
        ..probe(id, instance, &[])
    }
}

fn observe(
    findings: Vec<Finding>,
    instance_groups: &[(&str, &[&str])],
    groups: Vec<SecurityGroup>,
) -> Observation {
    Observation {
        account_id: Some("123456789012".into()),
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
    }
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
        .map(|a| format!("{} tcp/{}", a.source, a.ports))
        .collect()
}

fn revoked(change: &ChangeSet) -> Vec<&str> {
    change.revoke.iter().map(|r| r.rule.as_str()).collect()
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
    let mut observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .allow("sgr-2", tcp(22, 22), "::/0")
                .allow("sgr-3", tcp(443, 443), "0.0.0.0/0")
                .build(),
        ],
    );
    let plan = plan(&policy, &observed);
    let change = only_change(&plan);
    assert_eq!(
        authorized(change),
        ["10.0.0.0/8 tcp/22", "2001:db8::/32 tcp/22"]
    );
    assert_eq!(revoked(change), ["sgr-1", "sgr-2"]);
    assert_eq!(change.protected_ports, [22]);

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
    let observed = observe(
        vec![probe("f1", "i-1", &[3389, 22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(0, 65535), "0.0.0.0/0")
                .build(),
        ],
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
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "10.1.0.0/16")
                .allow("sgr-2", Traffic::Udp(PortRange::new(22, 22)), "0.0.0.0/0")
                .allow("sgr-3", tcp(80, 80), "0.0.0.0/0")
                .allow_group("sgr-4", tcp(22, 22), "sg-9")
                .allow("sgr-5", tcp(22, 22), "198.51.100.0/24")
                .build(),
        ],
    );
    let change = only_change(&plan(&policy, &observed)).clone();
    assert_eq!(revoked(&change), ["sgr-5"]);
    // 10.1.0.0/16 is inside the trusted range but does not cover all of it.
    assert_eq!(authorized(&change), ["10.0.0.0/8 tcp/22"]);
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
    let untouched = plan.groups.iter().find(|g| g.group == sg("sg-2")).unwrap();
    assert_eq!(untouched.verdict, Verdict::Converged);
    assert!(untouched.ports.is_empty());
}

#[test]
fn exempt_group_is_never_changed() {
    let policy = Policy::test().enforce();
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .tagged("guardduty-operator/exempt")
                .build(),
        ],
    );
    let plan = plan(&policy, &observed);
    assert!(plan.is_empty());
    assert_eq!(plan.groups[0].verdict, Verdict::Exempt);
}

#[test]
fn off_mode_plans_nothing_and_says_why() {
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
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
fn all_traffic_world_rule_is_refused_with_a_reason() {
    let observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", Traffic::All, "0.0.0.0/0")
                .build(),
        ],
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    assert!(plan.is_empty());
    assert!(matches!(
        plan.groups[0].verdict,
        Verdict::Refused(Refusal::AllTrafficRule { .. })
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
            family: super::cidr::Family::V4,
            existing: 5,
            adding: 1,
            quota: 5
        })
    );
    assert!(matches!(plan.groups[1].verdict, Verdict::Change(_)));
}

#[test]
fn reopened_port_in_a_managed_group_is_closed_again_without_a_finding() {
    let policy = Policy::test().enforce();
    let mut observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
    );
    let first = plan(&policy, &observed);
    apply(&mut observed, &first);
    // The finding is archived; then someone opens SSH to the world again.
    observed.findings.clear();
    let group = observed.groups.get_mut(&sg("sg-1")).unwrap();
    group.ingress.push(IngressRule {
        id: RuleId::parse("sgr-9").unwrap(),
        traffic: tcp(22, 22),
        source: Source::Cidr(cidr("0.0.0.0/0")),
        description: None,
        managed_ports: None,
    });
    let drift = plan(&policy, &observed);
    assert_eq!(revoked(only_change(&drift)), ["sgr-9"]);
    assert!(drift.groups[0].findings.is_empty());
}

#[test]
fn dropped_trusted_range_loses_the_rule_the_operator_added() {
    let mut observed = observe(
        vec![probe("f1", "i-1", &[22])],
        &[("i-1", &["sg-1"])],
        vec![
            GroupBuilder::new("sg-1")
                .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
                .build(),
        ],
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
    let mut group = GroupBuilder::new("sg-1")
        .allow("sgr-1", tcp(22, 22), "0.0.0.0/0")
        .build();
    group.network_interfaces = 7;
    let observed = observe(
        vec![probe("f1", "i-1", &[22]), probe("f2", "i-2", &[22])],
        &[("i-1", &["sg-1"]), ("i-2", &["sg-1"])],
        vec![group],
    );
    let plan = plan(&Policy::test().enforce(), &observed);
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].network_interfaces, 7);
    assert_eq!(plan.groups[0].findings.len(), 2);
}

// ---- properties -----------------------------------------------------------

const SOURCES: [&str; 9] = [
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.0.0.0/7",
    "192.168.0.0/16",
    "198.51.100.0/24",
    "2001:db8::/32",
    "2001:db8:1::/48",
];
const TRUSTED: [&str; 5] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "192.168.0.0/16",
    "2001:db8::/32",
    "172.16.0.0/12",
];
const PORTS: [u16; 4] = [22, 80, 3389, 65535];

fn traffic() -> impl Strategy<Value = Traffic> {
    let port = prop::sample::select(vec![0u16, 21, 22, 23, 80, 3389, 65535]);
    prop_oneof![
        1 => Just(Traffic::All),
        6 => (port.clone(), port.clone()).prop_map(|(a, b)| tcp(a.min(b), a.max(b))),
        1 => (port.clone(), port).prop_map(|(a, b)| Traffic::Udp(PortRange::new(a.min(b), a.max(b)))),
        1 => Just(Traffic::Other { protocol: "icmp".into() }),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        8 => prop::sample::select(SOURCES.to_vec()).prop_map(|s| Source::Cidr(cidr(s))),
        1 => Just(Source::SecurityGroup("sg-0ther".into())),
        1 => Just(Source::PrefixList("pl-1234".into())),
    ]
}

fn rules() -> impl Strategy<Value = Vec<IngressRule>> {
    prop::collection::vec(
        (
            traffic(),
            source(),
            prop::option::weighted(0.2, prop::sample::subsequence(PORTS.to_vec(), 1..=2)),
        ),
        0..8,
    )
    .prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, (traffic, source, managed_ports))| IngressRule {
                id: RuleId::parse(&format!("sgr-{i:x}")).unwrap(),
                traffic,
                source,
                description: None,
                managed_ports,
            })
            .collect()
    })
}

prop_compose! {
    fn scenario()(
        trusted in prop::sample::subsequence(TRUSTED.to_vec(), 1..=3),
        rules_1 in rules(),
        rules_2 in rules(),
        exempt_2 in any::<bool>(),
        ports in prop::sample::subsequence(PORTS.to_vec(), 1..=3),
        quota in prop::sample::select(vec![3usize, 60]),
    ) -> (Policy, Observation) {
        let policy = Policy::test().enforce().trusting(&trusted).quota(quota);
        let mut g1 = GroupBuilder::new("sg-1").build();
        g1.ingress = rules_1;
        let mut g2 = GroupBuilder::new("sg-2").build();
        g2.ingress = rules_2;
        if exempt_2 {
            g2.tags.insert("guardduty-operator/exempt".into(), "yes".into());
        }
        let observed = observe(vec![probe("f1", "i-1", &ports)], &[("i-1", &["sg-1", "sg-2"])], vec![g1, g2]);
        (policy, observed)
    }
}

/// Every (source, tcp port) a group admits, for the ports the tests look at.
fn tcp_reach(group: &SecurityGroup) -> BTreeSet<(Source, u16)> {
    let probe_ports = [
        0u16, 1, 20, 21, 22, 23, 24, 79, 80, 81, 3388, 3389, 3390, 65534, 65535,
    ];
    group
        .ingress
        .iter()
        .flat_map(|r| {
            probe_ports
                .iter()
                .filter(|p| r.traffic.admits_tcp(**p))
                .map(|p| (r.source.clone(), *p))
                .collect::<Vec<_>>()
        })
        .collect()
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
    fn revokes_only_tcp_rules_that_expose_a_port_in_scope((policy, observed) in scenario()) {
        let plan = plan(&policy, &observed);
        for (group_plan, change) in plan.changes() {
            let group = &observed.groups[&group_plan.group];
            for revocation in &change.revoke {
                let rule = group.ingress.iter().find(|r| r.id == revocation.rule).unwrap();
                prop_assert!(matches!(rule.traffic, Traffic::Tcp(_)));
                prop_assert!(matches!(rule.source, Source::Cidr(_)));
                prop_assert!(group_plan.ports.iter().any(|p| rule.traffic.admits_tcp(*p)));
            }
            for auth in &change.authorize {
                match &auth.purpose {
                    Purpose::Trusted => {
                        prop_assert!(auth.ports.from == auth.ports.to);
                        prop_assert!(group_plan.ports.contains(&auth.ports.from));
                        prop_assert!(policy.trusted.iter().any(|t| *t == auth.source));
                    }
                    Purpose::Narrowed { replaces } => {
                        let rule = group.ingress.iter().find(|r| &r.id == replaces).unwrap();
                        let Traffic::Tcp(range) = rule.traffic else { panic!("narrowed a non-TCP rule") };
                        prop_assert!(range.from <= auth.ports.from && auth.ports.to <= range.to);
                        prop_assert!(!group_plan.ports.iter().any(|p| auth.ports.contains(*p)));
                        prop_assert_eq!(Source::Cidr(auth.source), rule.source.clone());
                    }
                }
            }
        }
    }

    #[test]
    fn applied_plan_leaves_ports_in_scope_to_trusted_ranges_only_and_keeps_everything_else(
        (policy, mut observed) in scenario()
    ) {
        let before = observed.clone();
        let plan = plan(&policy, &observed);
        apply(&mut observed, &plan);
        for group_plan in &plan.groups {
            let old = &before.groups[&group_plan.group];
            let new = &observed.groups[&group_plan.group];
            let Verdict::Change(_) = group_plan.verdict else {
                prop_assert_eq!(old, new, "a group without a change set was changed");
                continue;
            };
            let in_scope: BTreeSet<u16> = group_plan.ports.iter().copied().collect();
            let old_reach = tcp_reach(old);
            let new_reach = tcp_reach(new);
            for (source, port) in &old_reach {
                if !in_scope.contains(port) {
                    prop_assert!(new_reach.contains(&(source.clone(), *port)),
                        "{source} lost tcp/{port}, which no finding concerns");
                }
            }
            for port in &in_scope {
                for trusted in policy.trusted.iter() {
                    prop_assert!(new.ingress.iter().any(|r| r.traffic.admits_tcp(*port)
                        && r.cidr().is_some_and(|c| c.contains(trusted))),
                        "trusted {trusted} cannot reach tcp/{port}: locked out");
                }
                for (source, p) in &new_reach {
                    if let (true, Source::Cidr(c)) = (p == port, source) {
                            prop_assert!(policy.trusted.covers(c), "{c} still reaches tcp/{port}");
                    }
                }
            }
            // Rules of other protocols, groups and prefix lists are untouched.
            for rule in &old.ingress {
                if !matches!(rule.traffic, Traffic::Tcp(_) | Traffic::All) || !matches!(rule.source, Source::Cidr(_)) {
                    prop_assert!(new.ingress.contains(rule));
                }
            }
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
    fn exempt_groups_and_off_mode_change_nothing((policy, observed) in scenario()) {
        let plan_enforced = plan(&policy, &observed);
        for group_plan in &plan_enforced.groups {
            if observed.groups[&group_plan.group].tags.contains_key("guardduty-operator/exempt") {
                prop_assert_eq!(&group_plan.verdict, &Verdict::Exempt);
            }
        }
        let off = Policy { mode: super::policy::Mode::Off, ..policy };
        prop_assert!(plan(&off, &observed).groups.is_empty());
    }

    #[test]
    fn plans_are_deterministic((policy, mut observed) in scenario()) {
        let first = plan(&policy, &observed);
        observed.findings.reverse();
        prop_assert_eq!(first, plan(&policy, &observed));
    }
}
