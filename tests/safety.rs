//! The safety promises of DESIGN.md on real AWS APIs (EC2 on moto, GuardDuty on the
//! emulator): two policies in one account never take each other's access away,
//! private sources stay, public ports stay open, a crowded group is refused, drift
//! after a revoke-only fix is closed, UDP and prefix-list exposures are honoured, and
//! nothing is reported Remediated while a public path to the port remains.

use crate::common::*;
use guardduty_operator::domain::alert::Response;
use guardduty_operator::domain::plan::{FindingDecision, KeptReason, Refusal, Verdict};
use guardduty_operator::domain::policy::{Mode, Policy};
use guardduty_operator::domain::response::finding_responses;

fn enforcing(owner: &str, trusted: &[&str]) -> Policy {
    Policy {
        owner: owner.to_string(),
        ..policy(Mode::Enforce, trusted)
    }
}

fn responses(report: &guardduty_operator::domain::outcome::PassReport) -> Vec<Response> {
    finding_responses(report)
        .into_iter()
        .map(|seen| seen.response)
        .collect()
}

#[tokio::test]
async fn a_second_policy_on_the_same_port_is_refused_naming_the_first_and_changes_nothing() {
    let world = World::new("eu-north-1").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "5a000000000000000000000000000001",
        5.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let a = enforcing("security/office", &["10.0.0.0/8"]);
    // Even revoking every untrusted source, B never touches A's rule.
    let b = enforcing("platform/vpn", &["192.168.0.0/16"]).revoking_untrusted();

    let (first, _) = world.pass(&a, true).await;
    assert!(!first.failed(), "{first:#?}");
    assert_eq!(
        world.owners(&web).await,
        ["tcp 22-22 10.0.0.0/8 by security/office"]
    );

    for round in 0..2 {
        let (second, calls) = world.pass(&b, true).await;
        assert_eq!(mutating_calls(&calls), 0, "round {round}: {calls:?}");
        assert_eq!(calls.get("EC2.CreateTags"), None, "round {round}");
        let plan = second.plan.as_ref().unwrap();
        let Verdict::Refused(refusal) = &plan.groups[0].verdict else {
            panic!("B must be refused: {plan:#?}");
        };
        assert!(
            matches!(refusal, Refusal::ClaimedByOtherPolicy { owner, .. } if owner == "security/office"),
            "{refusal:?}"
        );
        assert_eq!(
            refusal.to_string(),
            "tcp/22 of this group is managed by policy security/office: only that policy \
             changes it; remove the port from one of the two policies"
        );
        assert!(
            matches!(&responses(&second)[0], Response::Refused { reason } if reason.contains("security/office")),
            "{:?}",
            responses(&second)
        );
        // A still converges, and sees nothing to change.
        let (again, calls) = world.pass(&a, true).await;
        assert!(again.plan.unwrap().is_empty());
        assert_eq!(mutating_calls(&calls), 0);
    }
    assert_eq!(
        world.owners(&web).await,
        ["tcp 22-22 10.0.0.0/8 by security/office"]
    );
}

#[tokio::test]
async fn two_policies_passing_at_the_same_moment_never_close_the_port_to_everyone() {
    let world = World::new("ap-east-2").await;
    let a = enforcing("security/office", &["10.0.0.0/8"]).revoking_untrusted();
    let b = enforcing("platform/vpn", &["192.168.0.0/16"]).revoking_untrusted();
    for round in 0..3 {
        let web = world
            .group(&format!("race-{round}"), &[("tcp", 22, 22, "0.0.0.0/0")])
            .await;
        let instance = world.instance(&[&web]).await;
        world.post(vec![port_probe(
            &format!("5a00000000000000000000000000010{round}"),
            5.0,
            &instance,
            &[&web],
            &[22],
        )]);
        let ((ra, _), (rb, _)) = tokio::join!(world.pass(&a, true), world.pass(&b, true));
        let lines = world.owners(&web).await;
        assert!(
            !lines.iter().any(|l| l.contains("0.0.0.0/0")),
            "round {round}: the world rule is revoked: {lines:?}"
        );
        // Whichever policy changed the group kept its trusted rule: nobody revoked it.
        for (report, rule) in [
            (&ra, "tcp 22-22 10.0.0.0/8 by security/office"),
            (&rb, "tcp 22-22 192.168.0.0/16 by platform/vpn"),
        ] {
            if report.outcomes.iter().any(|o| o.authorize.is_ok()) {
                assert!(
                    lines.contains(&rule.to_string()),
                    "round {round}: {rule} was revoked: {lines:?}"
                );
            }
        }
        assert!(
            lines.iter().any(|l| l.contains(" by ")),
            "round {round}: some trusted range keeps access: {lines:?}"
        );
        // The next passes change nothing: whoever got there second is refused.
        for policy in [&a, &b] {
            let (_, calls) = world.pass(policy, true).await;
            assert_eq!(mutating_calls(&calls), 0, "round {round}: {calls:?}");
        }
        assert_eq!(world.owners(&web).await, lines, "round {round}");
    }
}

#[tokio::test]
async fn private_sources_stay_and_a_private_all_traffic_rule_does_not_block_the_fix() {
    let world = World::new("me-central-1").await;
    let web = world
        .group(
            "web",
            &[
                ("tcp", 22, 22, "0.0.0.0/0"),
                ("tcp", 22, 22, "172.31.0.0/16"),
                ("tcp", 22, 22, "100.64.0.0/10"),
                ("tcp", 22, 22, "8.8.8.8/32"),
                // The VPC's own range on every protocol.
                ("-1", -1, -1, "10.20.0.0/16"),
            ],
        )
        .await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "5a000000000000000000000000000002",
        5.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let policy = policy(Mode::Enforce, &["192.168.0.0/16"]);

    let (report, _) = world.pass(&policy, true).await;
    assert!(!report.failed(), "{report:#?}");
    let plan = report.plan.as_ref().unwrap();
    let mut kept: Vec<(String, KeptReason)> = plan.groups[0]
        .kept
        .iter()
        .map(|k| (k.source.clone(), k.reason.clone()))
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kept,
        [
            ("10.20.0.0/16".to_string(), KeptReason::NotPublic),
            ("100.64.0.0/10".to_string(), KeptReason::NotPublic),
            ("172.31.0.0/16".to_string(), KeptReason::NotPublic),
        ]
    );
    assert_eq!(
        world.owners(&web).await,
        [
            "-1 -1--1 10.20.0.0/16",
            "tcp 22-22 100.64.0.0/10",
            "tcp 22-22 172.31.0.0/16",
            "tcp 22-22 192.168.0.0/16 by default/test",
        ],
        "the world and the public /32 are revoked; the private ranges stay"
    );
    assert!(matches!(&responses(&report)[0], Response::Closed { .. }));
    let (again, calls) = world.pass(&policy, true).await;
    assert!(again.plan.unwrap().is_empty());
    assert_eq!(mutating_calls(&calls), 0);
}

#[tokio::test]
async fn a_public_all_traffic_rule_is_split_keeping_every_other_ports_access() {
    let world = World::new("mx-central-1").await;
    let open = world.group("open", &[("-1", -1, -1, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&open]).await;
    world.post(vec![port_probe(
        "5a000000000000000000000000000003",
        5.0,
        &instance,
        &[&open],
        &[22],
    )]);

    let refuse = policy(Mode::Enforce, &["10.0.0.0/8"]);
    let (refused, calls) = world.pass(&refuse, true).await;
    assert!(
        matches!(
            refused.plan.as_ref().unwrap().groups[0].verdict,
            Verdict::Refused(Refusal::AllTrafficRule { .. })
        ),
        "{refused:#?}"
    );
    assert_eq!(mutating_calls(&calls), 0);

    let split = refuse.splitting();
    let (report, _) = world.pass(&split, true).await;
    assert!(!report.failed(), "{report:#?}");
    let Verdict::Change(change) = &report.plan.as_ref().unwrap().groups[0].verdict else {
        panic!("the split is a change: {report:#?}");
    };
    assert_eq!(change.dropped.len(), 1, "{change:#?}");
    assert!(
        change.dropped[0].contains("0.0.0.0/0"),
        "the plan names what the split drops: {:?}",
        change.dropped
    );
    assert_eq!(
        world.owners(&open).await,
        [
            "icmp -1--1 0.0.0.0/0 by default/test",
            "tcp 0-21 0.0.0.0/0 by default/test",
            "tcp 22-22 10.0.0.0/8 by default/test",
            "tcp 23-65535 0.0.0.0/0 by default/test",
            "udp 0-65535 0.0.0.0/0 by default/test",
        ]
    );
    let (again, calls) = world.pass(&split, true).await;
    assert!(again.plan.unwrap().is_empty());
    assert_eq!(mutating_calls(&calls), 0);
}

#[tokio::test]
async fn a_probe_on_a_public_port_is_reported_and_a_crowded_group_is_refused() {
    let world = World::new("ap-south-2").await;
    let web = world
        .group(
            "web",
            &[("tcp", 443, 443, "0.0.0.0/0"), ("tcp", 22, 22, "0.0.0.0/0")],
        )
        .await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "5a000000000000000000000000000004",
        8.0,
        &instance,
        &[&web],
        &[443],
    )]);
    let policy = policy(Mode::Enforce, &["10.0.0.0/8"]);
    let (report, calls) = world.pass(&policy, true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(mutating_calls(&calls), 0, "{calls:?}");
    let plan = report.plan.as_ref().unwrap();
    let decision = plan.findings.values().next().unwrap();
    assert!(
        !matches!(decision, FindingDecision::Remediate { exposures, .. } if !exposures.is_empty()),
        "443 serves everyone: {decision:?}"
    );
    let response = &responses(&report)[0];
    assert!(
        matches!(response, Response::Reported { reason } if reason.contains("443") && reason.contains("publicPorts")),
        "{response:?}"
    );
    assert_eq!(
        world.ingress(&web).await,
        ["tcp 22-22 0.0.0.0/0", "tcp 443-443 0.0.0.0/0"]
    );

    // A group three instances share, with room for two.
    let shared = world.group("shared", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let first = world.instance(&[&shared]).await;
    world.instance(&[&shared]).await;
    world.instance(&[&shared]).await;
    world.post(vec![port_probe(
        "5a000000000000000000000000000005",
        8.0,
        &first,
        &[&shared],
        &[22],
    )]);
    let narrow = policy.max_interfaces(2);
    let (report, calls) = world.pass(&narrow, true).await;
    assert_eq!(mutating_calls(&calls), 0, "{calls:?}");
    let group = report
        .plan
        .as_ref()
        .unwrap()
        .groups
        .iter()
        .find(|g| g.group.as_str() == shared)
        .unwrap();
    assert_eq!(
        group.verdict,
        Verdict::Refused(Refusal::TooManyInterfaces {
            interfaces: 3,
            max: 2
        })
    );
    let Verdict::Refused(refusal) = &group.verdict else {
        unreachable!()
    };
    assert_eq!(
        refusal.to_string(),
        "the group is used by 3 network interfaces, more than \
         remediation.maxNetworkInterfaces (2): a change would reach all of them; raise the \
         field to allow it"
    );
    assert_eq!(world.ingress(&shared).await, ["tcp 22-22 0.0.0.0/0"]);
}

#[tokio::test]
async fn drift_after_a_revoke_only_fix_is_closed_even_after_the_finding_was_archived() {
    let world = World::new("ap-southeast-4").await;
    let web = world
        .group(
            "web",
            &[("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 22, 22, "10.0.0.0/8")],
        )
        .await;
    let instance = world.instance(&[&web]).await;
    let id = "5a000000000000000000000000000006";
    world.post(vec![port_probe(id, 5.0, &instance, &[&web], &[22])]);
    let mut policy = policy(Mode::Enforce, &["10.0.0.0/8"]);
    policy.archive_remediated = true;

    let (report, calls) = world.pass(&policy, true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(
        calls.get("EC2.AuthorizeSecurityGroupIngress"),
        None,
        "revoke only"
    );
    assert_eq!(world.ingress(&web).await, ["tcp 22-22 10.0.0.0/8"]);
    assert_eq!(
        world.watches(&web).await,
        [("default/test".to_string(), "tcp:22".to_string())].into()
    );
    assert_eq!(
        world.emulator.emulator.finding(id).unwrap()["service"]["archived"],
        true
    );

    world.open(&web, &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let (drift, calls) = world.pass(&policy, true).await;
    assert!(drift.findings.is_empty());
    assert!(!drift.failed(), "{drift:#?}");
    assert_eq!(mutating_calls(&calls), 1, "the revoke: {calls:?}");
    assert_eq!(world.ingress(&web).await, ["tcp 22-22 10.0.0.0/8"]);
}

#[tokio::test]
async fn udp_is_remediated_on_udp_rules_and_a_public_prefix_list_refuses_the_group() {
    let world = World::new("ap-southeast-5").await;
    let rdp = world
        .group(
            "rdp",
            &[
                ("udp", 3389, 3389, "0.0.0.0/0"),
                ("tcp", 3389, 3389, "10.0.0.0/8"),
            ],
        )
        .await;
    let instance = world.instance(&[&rdp]).await;
    let mut udp = brute_force(
        "5a000000000000000000000000000007",
        "RDPBruteForce",
        &instance,
        &[&rdp],
        3389,
        "INBOUND",
    );
    udp["service"]["action"]["networkConnectionAction"]["protocol"] = "UDP".into();
    world.post(vec![udp]);
    let mut policy = policy(Mode::Enforce, &["10.0.0.0/8"]);
    policy.archive_remediated = true;
    let (report, _) = world.pass(&policy, true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(
        world.owners(&rdp).await,
        [
            "tcp 3389-3389 10.0.0.0/8",
            "udp 3389-3389 10.0.0.0/8 by default/test",
        ]
    );
    assert_eq!(
        world.watches(&rdp).await,
        [("default/test".to_string(), "udp:3389".to_string())].into()
    );

    // SSH open to the world twice: directly, and through a prefix list holding 0.0.0.0/0.
    let list = world
        .ec2
        .create_managed_prefix_list()
        .prefix_list_name("partners")
        .address_family("IPv4")
        .max_entries(5)
        .entries(
            aws_sdk_ec2::types::AddPrefixListEntry::builder()
                .cidr("0.0.0.0/0")
                .build(),
        )
        .entries(
            aws_sdk_ec2::types::AddPrefixListEntry::builder()
                .cidr("192.168.0.0/16")
                .build(),
        )
        .send()
        .await
        .expect("create a prefix list")
        .prefix_list
        .unwrap()
        .prefix_list_id
        .unwrap();
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    world
        .ec2
        .authorize_security_group_ingress()
        .group_id(&web)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .prefix_list_ids(
                    aws_sdk_ec2::types::PrefixListId::builder()
                        .prefix_list_id(&list)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("add the prefix list rule");
    let server = world.instance(&[&web]).await;
    let id = "5a000000000000000000000000000008";
    world.post(vec![port_probe(id, 5.0, &server, &[&web], &[22])]);
    let (report, calls) = world.pass(&policy, true).await;
    assert_eq!(calls.get("EC2.GetManagedPrefixListEntries"), Some(&1));
    assert_eq!(mutating_calls(&calls), 0, "{calls:?}");
    let group = report
        .plan
        .as_ref()
        .unwrap()
        .groups
        .iter()
        .find(|g| g.group.as_str() == web)
        .unwrap();
    assert!(
        matches!(&group.verdict, Verdict::Refused(Refusal::PrefixListExposes { list: l, .. }) if *l == list),
        "{:?}",
        group.verdict
    );
    let finding = finding_responses(&report)
        .into_iter()
        .find(|s| s.finding.id.as_str() == id)
        .unwrap();
    assert!(
        matches!(&finding.response, Response::Refused { reason } if reason.contains(&list)),
        "never Closed while the prefix list admits the world: {:?}",
        finding.response
    );
    assert!(
        !report.archived.iter().any(|f| f.as_str() == id),
        "not archived"
    );
    assert_eq!(
        world.emulator.emulator.finding(id).unwrap()["service"]["archived"],
        false
    );
}
