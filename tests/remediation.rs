//! Audit and remediation passes against real AWS APIs, emulated on loopback:
//! EC2 on moto, GuardDuty on the project's emulator. Each test asserts the
//! security groups afterwards, then runs again and asserts nothing else changed.

use crate::common::*;
use guardduty_operator::domain::finding::ReportOnly;
use guardduty_operator::domain::outcome::StepResult;
use guardduty_operator::domain::plan::{FindingDecision, Refusal, Verdict};
use guardduty_operator::domain::policy::Mode;

const TRUSTED: [&str; 2] = ["10.0.0.0/8", "2001:db8::/32"];

#[tokio::test]
async fn world_open_ssh_is_reachable_from_trusted_ranges_only_and_a_second_pass_changes_nothing() {
    let world = World::new("us-east-2").await;
    let web = world
        .group(
            "web",
            &[
                ("tcp", 22, 22, "0.0.0.0/0"),
                ("tcp", 22, 22, "::/0"),
                ("tcp", 443, 443, "0.0.0.0/0"),
            ],
        )
        .await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000001",
        5.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let policy = policy(Mode::Enforce, &TRUSTED);

    let (report, calls) = world.pass(&policy, true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(report.outcomes.len(), 1);
    assert!(matches!(
        report.outcomes[0].authorize,
        StepResult::Done { .. }
    ));
    assert!(matches!(report.outcomes[0].revoke, StepResult::Done { .. }));
    assert_eq!(
        world.ingress(&web).await,
        [
            "tcp 22-22 10.0.0.0/8 [managed]",
            "tcp 22-22 2001:db8::/32 [managed]",
            "tcp 443-443 0.0.0.0/0",
        ]
    );
    assert_eq!(
        mutating_calls(&calls),
        2,
        "one authorize and one revoke: {calls:?}"
    );

    let (again, calls) = world.pass(&policy, true).await;
    assert!(again.plan.as_ref().unwrap().is_empty(), "{again:#?}");
    assert!(again.outcomes.is_empty());
    assert_eq!(
        mutating_calls(&calls),
        0,
        "a converged pass mutates nothing: {calls:?}"
    );
    assert_eq!(world.ingress(&web).await.len(), 3);
}

#[tokio::test]
async fn rdp_brute_force_narrows_an_all_ports_world_rule() {
    let world = World::new("us-west-1").await;
    let rdp = world.group("rdp", &[("tcp", 0, 65535, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&rdp]).await;
    world.post(vec![brute_force(
        "f0000000000000000000000000000002",
        "RDPBruteForce",
        &instance,
        &[&rdp],
        3389,
        "INBOUND",
    )]);
    let policy = policy(Mode::Enforce, &["10.0.0.0/8"]);

    let (report, _) = world.pass(&policy, true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(
        world.ingress(&rdp).await,
        [
            "tcp 0-3388 0.0.0.0/0 [managed]",
            "tcp 3389-3389 10.0.0.0/8 [managed]",
            "tcp 3390-65535 0.0.0.0/0 [managed]",
        ]
    );
    let (again, calls) = world.pass(&policy, true).await;
    assert!(again.plan.unwrap().is_empty());
    assert_eq!(mutating_calls(&calls), 0);
}

#[tokio::test]
async fn audit_and_dry_run_change_nothing_but_show_the_plan() {
    let world = World::new("us-west-2").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000003",
        2.0,
        &instance,
        &[&web],
        &[22],
    )]);

    let (audit, calls) = world.pass(&policy(Mode::Enforce, &TRUSTED), false).await;
    assert_eq!(audit.plan.as_ref().unwrap().changes().count(), 1);
    assert!(!audit.applied);
    assert_eq!(mutating_calls(&calls), 0);

    let (dry_run, calls) = world.pass(&policy(Mode::DryRun, &TRUSTED), true).await;
    assert_eq!(dry_run.plan.as_ref().unwrap().changes().count(), 1);
    assert!(!dry_run.applied);
    assert_eq!(mutating_calls(&calls), 0);

    let (off, _) = world.pass(&policy(Mode::Off, &TRUSTED), true).await;
    assert!(off.plan.as_ref().unwrap().groups.is_empty());
    assert_eq!(world.ingress(&web).await, ["tcp 22-22 0.0.0.0/0"]);
}

#[tokio::test]
async fn exempt_groups_samples_outbound_attackers_and_terminated_instances_are_left_alone() {
    let world = World::new("eu-west-1").await;
    let exempt = world
        .group_tagged(
            "bastion",
            &[("tcp", 22, 22, "0.0.0.0/0")],
            &[("guardduty-operator/exempt", "bastion")],
        )
        .await;
    let attacker = world
        .group("attacker", &[("tcp", 22, 22, "0.0.0.0/0")])
        .await;
    let sampled = world
        .group("sampled", &[("tcp", 22, 22, "0.0.0.0/0")])
        .await;
    let gone = world.group("gone", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let i_exempt = world.instance(&[&exempt]).await;
    let i_attacker = world.instance(&[&attacker]).await;
    let i_sampled = world.instance(&[&sampled]).await;
    let i_gone = world.instance(&[&gone]).await;
    world
        .ec2
        .terminate_instances()
        .instance_ids(&i_gone)
        .send()
        .await
        .unwrap();
    world.post(vec![
        port_probe(
            "f0000000000000000000000000000004",
            5.0,
            &i_exempt,
            &[&exempt],
            &[22],
        ),
        brute_force(
            "f0000000000000000000000000000005",
            "SSHBruteForce",
            &i_attacker,
            &[&attacker],
            22,
            "OUTBOUND",
        ),
        sample(port_probe(
            "f0000000000000000000000000000006",
            5.0,
            &i_sampled,
            &[&sampled],
            &[22],
        )),
        port_probe(
            "f0000000000000000000000000000007",
            5.0,
            &i_gone,
            &[&gone],
            &[22],
        ),
    ]);

    let (report, calls) = world.pass(&policy(Mode::Enforce, &TRUSTED), true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(mutating_calls(&calls), 0, "{calls:?}");
    for group in [&exempt, &attacker, &sampled, &gone] {
        assert_eq!(
            world.ingress(group).await,
            ["tcp 22-22 0.0.0.0/0"],
            "{group} changed"
        );
    }
    let plan = report.plan.unwrap();
    let decisions: Vec<String> = plan
        .findings
        .values()
        .map(|d| match d {
            FindingDecision::Report(reason) => format!("{reason}"),
            FindingDecision::Remediate { .. } => "remediate".into(),
        })
        .collect();
    assert_eq!(decisions[0], "remediate");
    assert!(matches!(
        plan.findings.values().nth(1),
        Some(FindingDecision::Report(ReportOnly::InstanceIsTheActor))
    ));
    assert!(matches!(
        plan.findings.values().nth(2),
        Some(FindingDecision::Report(ReportOnly::Sample))
    ));
    assert!(matches!(
        plan.findings.values().nth(3),
        Some(FindingDecision::Report(ReportOnly::InstanceGone { .. }))
    ));
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.groups[0].verdict, Verdict::Exempt);
}

#[tokio::test]
async fn a_group_over_the_rule_quota_is_refused_and_the_others_still_converge() {
    let world = World::new("eu-west-2").await;
    let mut rules: Vec<(String, i32)> = (0..59)
        .map(|i| (format!("10.{i}.0.0/16"), 8000 + i))
        .collect();
    rules.push(("0.0.0.0/0".into(), 22));
    let seeded: Vec<Rule> = rules
        .iter()
        .map(|(cidr, port)| ("tcp", *port, *port, cidr.as_str()))
        .collect();
    let full = world.group("full", &seeded).await;
    let small = world.group("small", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&full, &small]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000008",
        5.0,
        &instance,
        &[&full, &small],
        &[22],
    )]);

    let (report, _) = world
        .pass(&policy(Mode::Enforce, &["192.168.0.0/16"]), true)
        .await;
    assert!(!report.failed(), "{report:#?}");
    let plan = report.plan.unwrap();
    let refused = plan
        .groups
        .iter()
        .find(|g| g.group.as_str() == full)
        .unwrap();
    assert!(matches!(
        refused.verdict,
        Verdict::Refused(Refusal::RuleQuota {
            existing: 60,
            adding: 1,
            quota: 60,
            ..
        })
    ));
    assert_eq!(
        world.ingress(&full).await.len(),
        60,
        "the refused group is untouched"
    );
    assert_eq!(
        world.ingress(&small).await,
        ["tcp 22-22 192.168.0.0/16 [managed]"]
    );
}

#[tokio::test]
async fn rules_from_trusted_sources_other_groups_and_other_ports_are_untouched() {
    let world = World::new("eu-central-1").await;
    let peer = world.group("peer", &[]).await;
    let app = world
        .group(
            "app",
            &[
                ("tcp", 22, 22, "10.1.0.0/16"),
                ("udp", 22, 22, "0.0.0.0/0"),
                ("tcp", 80, 80, "0.0.0.0/0"),
                ("tcp", 22, 22, "93.184.216.0/24"),
            ],
        )
        .await;
    world.open_to_group(&app, 22, &peer).await;
    let instance = world.instance(&[&app]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000009",
        5.0,
        &instance,
        &[&app],
        &[22],
    )]);

    let (report, _) = world
        .pass(&policy(Mode::Enforce, &["10.0.0.0/8"]), true)
        .await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(
        world.ingress(&app).await,
        [
            "tcp 22-22 10.0.0.0/8 [managed]".to_string(),
            "tcp 22-22 10.1.0.0/16".to_string(),
            format!("tcp 22-22 group {peer}"),
            "tcp 80-80 0.0.0.0/0".to_string(),
            "udp 22-22 0.0.0.0/0".to_string(),
        ]
    );
}

#[tokio::test]
async fn reopened_port_is_closed_again_after_the_finding_was_archived() {
    let world = World::new("ap-southeast-1").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    let id = "f000000000000000000000000000000a";
    world.post(vec![port_probe(id, 5.0, &instance, &[&web], &[22])]);
    let mut policy = policy(Mode::Enforce, &["10.0.0.0/8"]);
    policy.archive_remediated = true;

    let (report, _) = world.pass(&policy, true).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(report.archived.len(), 1);
    let stored = world.emulator.emulator.finding(id).unwrap();
    assert_eq!(stored["service"]["archived"], true);

    // Someone opens SSH to the world again; no finding names the group any more.
    world.open(&web, &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let (drift, calls) = world.pass(&policy, true).await;
    assert!(drift.findings.is_empty());
    let plan = drift.plan.unwrap();
    assert_eq!(plan.changes().count(), 1, "{plan:#?}");
    assert!(plan.groups[0].findings.is_empty());
    assert_eq!(
        mutating_calls(&calls),
        1,
        "only the revoke: the trusted rule is there"
    );
    assert_eq!(
        world.ingress(&web).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"]
    );
}

#[tokio::test]
async fn findings_below_the_threshold_or_of_other_types_are_not_read() {
    let world = World::new("ap-northeast-1").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![
        port_probe(
            "f000000000000000000000000000000b",
            2.0,
            &instance,
            &[&web],
            &[22],
        ),
        port_probe(
            "f000000000000000000000000000000c",
            7.5,
            &instance,
            &[&web],
            &[22],
        ),
    ]);
    let mut policy = policy(Mode::DryRun, &["10.0.0.0/8"]);
    policy.min_severity = guardduty_operator::domain::severity::Severity::threshold(7.2).unwrap();
    let (report, calls) = world.pass(&policy, false).await;
    let ids: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["f000000000000000000000000000000c"]);
    assert_eq!(calls.get("GuardDuty.ListFindings"), Some(&1));
    assert_eq!(calls.get("GuardDuty.GetFindings"), Some(&1));

    policy.finding_types = vec!["UnauthorizedAccess:EC2/SSHBruteForce".into()];
    let (report, _) = world.pass(&policy, false).await;
    assert!(report.findings.is_empty());
}

#[tokio::test]
async fn a_region_scan_and_id_filters_read_the_same_plan_and_converge_alike() {
    use guardduty_operator::aws::ec2::Strategy;
    use guardduty_operator::domain::policy::Policy;
    use guardduty_operator::domain::time::Timestamp;
    use guardduty_operator::pass::{PassOptions, run_pass};
    use guardduty_operator::ports::NoJournal;
    let owner = "default/reads";
    let world = World::owned("ap-southeast-7", owner).await;
    let open = world.group("open", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let private = world
        .group(
            "private",
            &[("tcp", 22, 22, "172.16.0.0/12"), ("tcp", 0, 65535, "::/0")],
        )
        .await;
    let fine = world.group("fine", &[("tcp", 22, 22, "10.0.0.0/8")]).await;
    let instance = world.instance(&[&open, &private, &fine]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000d01",
        5.0,
        &instance,
        &[&open, &private, &fine],
        &[22],
    )]);
    let run = async |strategy: Strategy, mode: Mode| {
        let policy = Policy {
            owner: owner.into(),
            ..policy(mode, &["10.0.0.0/8", "2001:db8::/32"])
        };
        run_pass(
            &WorldAws::of(&[&world]).reading(strategy),
            &policy,
            &PassOptions {
                regions: vec![world.region.clone()],
                apply: true,
                now: Timestamp(1_800_000_000),
                ..PassOptions::default()
            },
            &NoJournal,
        )
        .await
    };
    let scanned = run(Strategy::Scan, Mode::DryRun).await;
    let filtered = run(Strategy::Filter, Mode::DryRun).await;
    assert!(!scanned.failed(), "{scanned:#?}");
    assert_eq!(
        serde_json::to_value(&scanned.plan).unwrap(),
        serde_json::to_value(&filtered.plan).unwrap(),
        "a scan of the region and id filters read the same groups, rules and interfaces"
    );
    assert_eq!(scanned.plan.as_ref().unwrap().changes().count(), 2);

    let applied = run(Strategy::Scan, Mode::Enforce).await;
    assert!(!applied.failed(), "{applied:#?}");
    let again = run(Strategy::Scan, Mode::Enforce).await;
    assert!(
        again.plan.unwrap().is_empty(),
        "converged, and the watch found by the scan"
    );
    let drift = run(Strategy::Filter, Mode::Enforce).await;
    assert!(drift.plan.unwrap().is_empty());
}
