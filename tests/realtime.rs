//! Real time, every region, every account, on moto (EC2, SQS, STS AssumeRole) and the
//! GuardDuty emulator: an event on SQS converges its group without waiting for a
//! periodic pass (and a malformed message neither crashes the intake nor blocks the
//! next one); `watch` stops cleanly on SIGTERM; a periodic pass after the first lists
//! only what was updated; one policy converges two regions; a member account's group
//! is fixed through its assumed role, and a disallowed account is left alone.

use std::io::BufRead as _;
use std::time::Duration;

use crate::common::cli::*;
use crate::common::*;
use guardduty_operator::aws::clients::member_config;
use guardduty_operator::domain::alert::Response;
use guardduty_operator::domain::finding::ReportOnly;
use guardduty_operator::domain::known::KnownFindings;
use guardduty_operator::domain::plan::{FindingDecision, Verdict};
use guardduty_operator::domain::policy::{MemberAccounts, Mode};
use guardduty_operator::domain::response::finding_responses;
use guardduty_operator::domain::time::Timestamp;
use guardduty_operator::pass::{FindingsInput, PassOptions, revert_everywhere, run_pass};
use guardduty_operator::ports::NoJournal;
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp(1_800_000_000);

fn sqs(world: &World) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&world.config)
}

/// An EventBridge event carrying `finding` as its detail, as a rule delivers it.
fn event(finding: &Value) -> String {
    json!({
        "version": "0",
        "id": "6f4a0c1e-0000-4000-8000-000000000001",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": ACCOUNT,
        "time": "2026-12-01T10:00:00Z",
        "region": finding["region"],
        "resources": [],
        "detail": finding,
    })
    .to_string()
}

/// Lines of a child's stdout, as they come.
fn lines_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

fn next_line(
    lines: &std::sync::mpsc::Receiver<String>,
    what: &str,
    log: &std::path::Path,
) -> Value {
    let line = lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "no report of {what} within 60s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{what}: not one JSON line ({e}): {line}"))
}

// Several threads: the test blocks on the child's stdout while the in-process GuardDuty
// emulator serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_converges_a_group_on_its_event_skips_a_malformed_message_and_stops_on_sigterm() {
    let world = World::owned("ca-west-1", "default/realtime").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    let queue = sqs(&world)
        .create_queue()
        .queue_name(format!("guardduty-findings-{}", std::process::id()))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .expect("create the queue in moto")
        .queue_url
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: guardduty.security.dev/v1alpha1\nkind: GuardDutyPolicy\nmetadata:\n  \
             name: realtime\nspec:\n  region: {}\n  trustedCidrs: [10.0.0.0/8]\n  \
             remediation:\n    mode: Enforce\n  interval: 24h\n",
            world.region
        ),
    )
    .unwrap();
    let state = dir.path().join("state.json");
    let mut cmd = command(
        &moto_url(),
        &world.guardduty_url,
        &[
            "watch",
            "--policy",
            policy.to_str().unwrap(),
            "--queue-url",
            &queue,
            "--output",
            "json",
            "--state",
            state.to_str().unwrap(),
        ],
    );
    let log = std::fs::File::create(dir.path().join("watch.log")).unwrap();
    cmd.env("AWS_ENDPOINT_URL_SQS", moto_url())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    let mut child = cmd.spawn().expect("start watch");
    let lines = lines_of(child.stdout.take().unwrap());
    // The first pass, at once: GuardDuty holds no finding yet.
    let log = dir.path().join("watch.log");
    let first = next_line(&lines, "the first pass", &log);
    assert_eq!(first["findings"], json!([]), "{first}");
    assert_eq!(world.ingress(&web).await, ["tcp 22-22 0.0.0.0/0"]);

    // A malformed message, then the finding's event (GuardDuty's listing never has it).
    let id = "e0000000000000000000000000000001";
    let mut finding = port_probe(id, 8.0, &instance, &[&web], &[22]);
    finding["region"] = Value::String(world.region.clone());
    for body in ["{\"not\": \"an event\"", &event(&finding)] {
        sqs(&world)
            .send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .expect("send a message");
    }
    let targeted = next_line(&lines, "the event's pass", &log);
    assert_eq!(targeted["findings"][0]["id"], id, "{targeted}");
    assert_eq!(
        targeted["outcomes"][0]["revoke"]["result"], "done",
        "{targeted}"
    );
    assert_eq!(
        world.ingress(&web).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"],
        "converged by the event, with no periodic pass due for a day"
    );

    // SIGTERM: the watch stops, exit status 0.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut status = None;
    for _ in 0..200 {
        if let Some(exit) = child.try_wait().unwrap() {
            status = Some(exit);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("watch did not stop within 20s of SIGTERM")
    });
    assert_eq!(status.code(), Some(0));

    // The event's message was deleted; the malformed one is left to the redrive policy.
    let mut left = Vec::new();
    for _ in 0..5 {
        let received = sqs(&world)
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        left.extend(
            received
                .messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
        if !left.is_empty() {
            break;
        }
    }
    assert_eq!(left, ["{\"not\": \"an event\""]);
}

#[tokio::test]
async fn a_periodic_pass_after_the_first_lists_only_what_was_updated_since() {
    let world = World::new("ap-southeast-6").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    let id = "e0000000000000000000000000000002";
    world.post(vec![port_probe(id, 5.0, &instance, &[&web], &[22])]);
    let policy = policy(Mode::DryRun, &["10.0.0.0/8"]);
    let aws = WorldAws::of(&[&world]);
    let mut known = KnownFindings::default();
    let pass = async |known: &KnownFindings, now: Timestamp| {
        let before = aws.counter.snapshot();
        let report = run_pass(
            &aws,
            &policy,
            &PassOptions {
                regions: vec![world.region.clone()],
                now,
                findings: FindingsInput::Known {
                    known: known.clone(),
                    full_resync_seconds: 3600,
                },
                ..PassOptions::default()
            },
            &NoJournal,
        )
        .await;
        let after = aws.counter.snapshot();
        let calls =
            |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
        (
            report,
            calls("GuardDuty.ListFindings"),
            calls("GuardDuty.GetFindings"),
        )
    };

    let (first, lists, gets) = pass(&known, NOW).await;
    assert_eq!((lists, gets), (1, 1), "the first pass lists in full");
    known.learn(&first, NOW);

    let later = Timestamp(NOW.0 + 300);
    let (quiet, lists, gets) = pass(&known, later).await;
    assert_eq!(
        (lists, gets),
        (1, 0),
        "a quiet account: one ListFindings page (updatedAt since the last pass), no GetFindings"
    );
    assert_eq!(
        quiet.findings.len(),
        1,
        "the finding is still open, from what was known"
    );
    assert_eq!(quiet.plan.as_ref().unwrap().changes().count(), 1);
    known.learn(&quiet, later);

    // GuardDuty archives it (updatedAt moves): the next pass lists it and drops it.
    let mut archived = world.emulator.emulator.finding(id).unwrap();
    archived["service"]["archived"] = json!(true);
    archived["updatedAt"] = json!("2027-01-15T08:30:00.000Z");
    world
        .emulator
        .emulator
        .upsert_findings(vec![archived])
        .unwrap();
    let (gone, lists, gets) = pass(&known, Timestamp(later.0 + 300)).await;
    assert_eq!((lists, gets), (1, 1));
    assert!(gone.findings.is_empty(), "{:?}", gone.findings);

    // After fullResyncInterval, in full again.
    let (_, lists, _) = pass(&known, Timestamp(NOW.0 + 3600)).await;
    assert_eq!(lists, 1);
}

#[tokio::test]
async fn one_policy_converges_two_regions_each_with_its_own_detector() {
    let owner = "default/two-regions";
    let east = World::owned("ap-southeast-7", owner).await;
    let west = World::owned("ca-west-1", owner).await;
    let mut groups = Vec::new();
    for (n, world) in [&east, &west].into_iter().enumerate() {
        let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
        let instance = world.instance(&[&web]).await;
        world.post(vec![port_probe(
            &format!("e000000000000000000000000000001{n}"),
            5.0,
            &instance,
            &[&web],
            &[22],
        )]);
        groups.push(web);
    }
    let aws = WorldAws::of(&[&east, &west]);
    let regions = vec![east.region.clone(), west.region.clone()];
    let policy = guardduty_operator::domain::policy::Policy {
        owner: owner.into(),
        ..policy(Mode::Enforce, &["10.0.0.0/8"])
    };
    let report = run_pass(
        &aws,
        &policy,
        &PassOptions {
            regions: regions.clone(),
            apply: true,
            now: NOW,
            ..PassOptions::default()
        },
        &NoJournal,
    )
    .await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(report.regions, regions);
    assert_eq!(report.detectors.len(), 2);
    assert_eq!(report.outcomes.len(), 2);
    let placed: Vec<&str> = report
        .plan
        .as_ref()
        .unwrap()
        .groups
        .iter()
        .map(|g| g.region.as_str())
        .collect();
    assert_eq!(placed.len(), 2);
    assert!(placed.contains(&east.region.as_str()) && placed.contains(&west.region.as_str()));
    for (world, group) in [(&east, &groups[0]), (&west, &groups[1])] {
        assert_eq!(
            world.ingress(group).await,
            ["tcp 22-22 10.0.0.0/8 [managed]"],
            "{}",
            world.region
        );
    }
    let regions_recorded: std::collections::BTreeSet<_> = report
        .record
        .added
        .iter()
        .filter_map(|r| r.region.clone())
        .collect();
    assert_eq!(
        regions_recorded.len(),
        2,
        "the record says where each change is"
    );
}

/// A member account's VPC, subnet, and a group opening SSH to the world on an
/// instance, through the account's assumed role; the group and the instance.
async fn member_exposure(world: &World, ec2: &aws_sdk_ec2::Client) -> (String, String) {
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.30.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.30.1.0/24")
        .send()
        .await
        .unwrap()
        .subnet
        .unwrap()
        .subnet_id
        .unwrap();
    let group = ec2
        .create_security_group()
        .group_name("member-web")
        .description("member web")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    ec2.authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let image = world.ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    let instance = ec2
        .run_instances()
        .image_id(image)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet)
        .security_group_ids(&group)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    (group, instance)
}

async fn member_ingress(ec2: &aws_sdk_ec2::Client, group: &str) -> Vec<String> {
    let rules = ec2
        .describe_security_group_rules()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .values(group)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut lines: Vec<String> = rules
        .security_group_rules()
        .iter()
        .filter(|r| r.is_egress() == Some(false))
        .map(|r| {
            format!(
                "{} {}",
                r.cidr_ipv4().unwrap_or_default(),
                r.tags()
                    .iter()
                    .find(|t| t.key() == Some("guardduty-operator/managed-by"))
                    .and_then(|t| t.value())
                    .unwrap_or("-")
            )
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_member_accounts_group_is_fixed_through_its_role_and_a_disallowed_one_is_left_alone() {
    let world = World::owned("ap-southeast-7", "default/members").await;
    const MEMBER: &str = "111111111111";
    const OTHER: &str = "222222222222";
    let members = MemberAccounts {
        role_name: "guardduty-operator-member".into(),
        external_id: Some("gdo-test".into()),
        accounts: [MEMBER.to_string()].into(),
    };
    let as_account = async |account: &str| {
        let config = member_config(
            &world.config,
            &members.role_arn(account, &world.region),
            members.external_id.as_deref(),
        )
        .await
        .expect("moto's STS assumes the role");
        aws_sdk_ec2::Client::new(&config)
    };
    let member_ec2 = as_account(MEMBER).await;
    let other_ec2 = as_account(OTHER).await;
    let (member_group, member_instance) = member_exposure(&world, &member_ec2).await;
    let (other_group, other_instance) = member_exposure(&world, &other_ec2).await;
    let mut findings = Vec::new();
    for (n, account, instance, group) in [
        (1, MEMBER, &member_instance, &member_group),
        (2, OTHER, &other_instance, &other_group),
    ] {
        let mut finding = port_probe(
            &format!("e000000000000000000000000000002{n}"),
            5.0,
            instance,
            &[group],
            &[22],
        );
        finding["accountId"] = json!(account);
        findings.push(finding);
    }
    world.post(findings);
    let policy = guardduty_operator::domain::policy::Policy {
        owner: "default/members".into(),
        member_accounts: Some(members.clone()),
        ..policy(Mode::Enforce, &["10.0.0.0/8"])
    };
    let aws = WorldAws::of(&[&world]);
    let options = PassOptions {
        regions: vec![world.region.clone()],
        apply: true,
        now: NOW,
        ..PassOptions::default()
    };
    let report = run_pass(&aws, &policy, &options, &NoJournal).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(
        member_ingress(&member_ec2, &member_group).await,
        ["10.0.0.0/8 default/members"],
        "fixed in the member account, through its role"
    );
    assert_eq!(
        member_ingress(&other_ec2, &other_group).await,
        ["0.0.0.0/0 -"],
        "a member account left out of memberAccounts.accounts is untouched"
    );
    let plan = report.plan.as_ref().unwrap();
    let group_plan = plan
        .groups
        .iter()
        .find(|g| g.group.as_str() == member_group)
        .unwrap();
    assert_eq!(group_plan.account.as_deref(), Some(MEMBER));
    assert!(matches!(group_plan.verdict, Verdict::Change(_)));
    let decisions: Vec<_> = plan.findings.values().collect();
    assert!(
        decisions.contains(&&FindingDecision::Report(ReportOnly::AccountNotAllowed {
            account: OTHER.into()
        }))
    );
    let responses: Vec<Response> = finding_responses(&report)
        .into_iter()
        .map(|s| s.response)
        .collect();
    assert!(
        responses
            .iter()
            .any(|r| matches!(r, Response::Closed { .. }))
    );
    assert!(
        report
            .record
            .added
            .iter()
            .all(|r| r.account.as_deref() == Some(MEMBER)),
        "{:?}",
        report.record.added
    );

    // Revert reaches the member account too.
    let reverted = revert_everywhere(
        &aws,
        &report.record,
        &policy.owner,
        &options.regions,
        Some(&members),
    )
    .await;
    assert!(reverted.completed(), "{reverted:#?}");
    assert_eq!(
        member_ingress(&member_ec2, &member_group).await,
        ["0.0.0.0/0 -"]
    );
}

#[tokio::test]
async fn a_remediated_finding_gets_useful_feedback_once() {
    let owner = "default/feedback";
    let world = World::owned("ca-west-1", owner).await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    let id = "e0000000000000000000000000000031";
    world.post(vec![port_probe(id, 5.0, &instance, &[&web], &[22])]);
    let policy = guardduty_operator::domain::policy::Policy {
        owner: owner.into(),
        finding_feedback: true,
        ..policy(Mode::Enforce, &["10.0.0.0/8"])
    };
    let aws = WorldAws::of(&[&world]);
    let options = PassOptions {
        regions: vec![world.region.clone()],
        apply: true,
        now: NOW,
        ..PassOptions::default()
    };
    let report = run_pass(&aws, &policy, &options, &NoJournal).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(report.feedback.len(), 1);
    let feedback = world
        .emulator
        .emulator
        .feedback(id)
        .expect("GuardDuty was told");
    assert_eq!(feedback["feedback"], "USEFUL", "{feedback}");

    // Already converged: no second feedback.
    let before = aws
        .counter
        .snapshot()
        .get("GuardDuty.UpdateFindingsFeedback")
        .copied();
    let again = run_pass(&aws, &policy, &options, &NoJournal).await;
    assert!(again.feedback.is_empty());
    assert_eq!(
        aws.counter
            .snapshot()
            .get("GuardDuty.UpdateFindingsFeedback")
            .copied(),
        before
    );
}

#[tokio::test]
async fn a_remediated_finding_is_resolved_in_security_hub_with_a_note_naming_the_change() {
    use crate::common::receiver::{Answer, Receiver};
    let owner = "default/security-hub";
    let world = World::owned("ca-west-1", owner).await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    let id = "e0000000000000000000000000000041";
    world.post(vec![port_probe(id, 5.0, &instance, &[&web], &[22])]);
    let hub = Receiver::start(vec![Answer::json(
        200,
        json!({"ProcessedFindings": [], "UnprocessedFindings": []}),
    )])
    .await;
    let policy = guardduty_operator::domain::policy::Policy {
        owner: owner.into(),
        security_hub_updates: true,
        ..policy(Mode::Enforce, &["10.0.0.0/8"])
    };
    let aws = WorldAws::of(&[&world]).security_hub_at(&hub.url);
    let options = PassOptions {
        regions: vec![world.region.clone()],
        apply: true,
        now: NOW,
        ..PassOptions::default()
    };
    let report = run_pass(&aws, &policy, &options, &NoJournal).await;
    assert!(!report.failed(), "{report:#?}");
    assert_eq!(report.security_hub.len(), 1);
    let requests = hub.received();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "PATCH");
    assert_eq!(request.path, "/findings/batchupdate");
    let body = request.json();
    assert_eq!(
        body["FindingIdentifiers"],
        json!([{
            "Id": format!("arn:aws:guardduty:{}:{ACCOUNT}:detector/{DETECTOR}/finding/{id}", world.region),
            "ProductArn": format!("arn:aws:securityhub:{}::product/aws/guardduty", world.region),
        }]),
        "{body}"
    );
    assert_eq!(body["Workflow"], json!({"Status": "RESOLVED"}));
    assert_eq!(body["Note"]["UpdatedBy"], "guardduty-operator");
    let note = body["Note"]["Text"].as_str().unwrap();
    assert!(
        note.contains(owner)
            && note.contains("revoked tcp/22 from 0.0.0.0/0")
            && note.contains(&web),
        "{note}"
    );

    // Converged: nothing new to tell. And Security Hub refusing a finding is a failure.
    let again = run_pass(&aws, &policy, &options, &NoJournal).await;
    assert!(again.security_hub.is_empty());
    assert_eq!(hub.received().len(), 1);
    let refusing = Receiver::start(vec![Answer::json(
        200,
        json!({"ProcessedFindings": [], "UnprocessedFindings": [{
            "FindingIdentifier": {"Id": "x", "ProductArn": "y"},
            "ErrorCode": "FindingNotFound", "ErrorMessage": "no such finding"
        }]}),
    )])
    .await;
    let other = world.group("other", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let second = world.instance(&[&other]).await;
    world.post(vec![port_probe(
        "e0000000000000000000000000000042",
        5.0,
        &second,
        &[&other],
        &[22],
    )]);
    let refused = run_pass(
        &WorldAws::of(&[&world]).security_hub_at(&refusing.url),
        &policy,
        &options,
        &NoJournal,
    )
    .await;
    let failure = refused.failure().expect("the refusal is reported");
    assert_eq!(
        failure.step,
        guardduty_operator::domain::outcome::Step::SecurityHub
    );
    assert!(failure.error.contains("FindingNotFound"), "{failure}");
}

#[tokio::test]
async fn a_settled_account_with_nothing_new_is_read_in_one_tag_filtered_describe() {
    let owner = "default/quiet";
    let world = World::owned("ca-west-1", owner).await;
    // Rules of every shape a digest must read as the rules read does.
    let web = world
        .group(
            "quiet-web",
            &[
                ("tcp", 22, 22, "0.0.0.0/0"),
                ("tcp", 22, 22, "::/0"),
                ("tcp", 443, 443, "0.0.0.0/0"),
                ("tcp", 443, 443, "::/0"),
                ("udp", 1000, 2000, "10.0.0.0/8"),
                ("icmp", -1, -1, "0.0.0.0/0"),
                ("-1", -1, -1, "10.20.0.0/16"),
            ],
        )
        .await;
    let peer = world.group("quiet-peer", &[]).await;
    world.open_to_group(&web, 5432, &peer).await;
    let instance = world.instance(&[&web, &peer]).await;
    let id = "e00000000000000000000000000000a1";
    world.post(vec![port_probe(id, 5.0, &instance, &[&web], &[22])]);
    let policy = guardduty_operator::domain::policy::Policy {
        owner: owner.into(),
        ..policy(Mode::Enforce, &["10.0.0.0/8"])
    };
    let aws = WorldAws::of(&[&world]);
    let mut known = KnownFindings::default();
    let mut pass = async |now: Timestamp| {
        let before = aws.counter.snapshot();
        let report = run_pass(
            &aws,
            &policy,
            &PassOptions {
                regions: vec![world.region.clone()],
                apply: true,
                now,
                findings: FindingsInput::Known {
                    known: known.clone(),
                    full_resync_seconds: 3600,
                },
                ..PassOptions::default()
            },
            &NoJournal,
        )
        .await;
        known.learn(&report, now);
        let after = aws.counter.snapshot();
        let ec2: Vec<(String, u64)> = after
            .iter()
            .filter(|(op, _)| op.starts_with("EC2."))
            .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        (report, ec2)
    };

    let (first, _) = pass(NOW).await;
    assert!(!first.failed(), "{first:#?}");
    assert_eq!(first.outcomes.len(), 1, "tcp/22 of the web group is closed");
    let (converged, reads) = pass(Timestamp(NOW.0 + 30)).await;
    assert!(converged.quiet.is_empty(), "after a change: read in full");
    assert!(converged.plan.as_ref().unwrap().is_empty());
    assert!(
        !reads
            .iter()
            .any(|(op, _)| op == "EC2.DescribeNetworkInterfaces"),
        "a converged pass counts no interface: {reads:?}"
    );
    let (quiet, reads) = pass(Timestamp(NOW.0 + 60)).await;
    assert!(!quiet.failed(), "{quiet:#?}");
    assert_eq!(
        reads,
        [
            ("EC2.DescribeInstances".to_string(), 1),
            ("EC2.DescribeSecurityGroups".to_string(), 2)
        ],
        "a quiet pass reads the instance's groups now, the watched group by its tag and the \
         instance's other group (observed, never changed, so not watched) by its id; their \
         digests from IpPermissions equal those of the rules the last pass read"
    );
    assert_eq!(quiet.quiet.len(), 1);
    assert_eq!(quiet.plan, converged.plan);

    // Someone opens tcp/22 to the world again: the digest differs, a full read closes it.
    world.open(&web, &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let (drift, reads) = pass(Timestamp(NOW.0 + 90)).await;
    assert!(drift.quiet.is_empty());
    assert!(
        reads
            .iter()
            .any(|(op, _)| op == "EC2.DescribeSecurityGroupRules")
    );
    assert_eq!(drift.outcomes.len(), 1);
    assert!(drift.outcomes[0].succeeded(), "{drift:#?}");
    let exposure = world
        .ec2
        .describe_security_group_rules()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .values(&web)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        !exposure
            .security_group_rules()
            .iter()
            .any(|r| r.is_egress() == Some(false)
                && r.cidr_ipv4() == Some("0.0.0.0/0")
                && r.from_port() == Some(22)),
        "tcp/22 is closed to the world again"
    );

    // Settled again, then a world-open group is attached to the instance: no finding
    // is updated and no watched group changes, yet the world gets in.
    let (_, _) = pass(Timestamp(NOW.0 + 120)).await;
    let (settled, _) = pass(Timestamp(NOW.0 + 150)).await;
    assert_eq!(settled.quiet.len(), 1);
    let open = world
        .group("quiet-open", &[("tcp", 22, 22, "0.0.0.0/0")])
        .await;
    world
        .ec2
        .modify_instance_attribute()
        .instance_id(&instance)
        .groups(&web)
        .groups(&peer)
        .groups(&open)
        .send()
        .await
        .expect("attach a group to the instance");
    let (moved, _) = pass(Timestamp(NOW.0 + 180)).await;
    assert!(
        moved.quiet.is_empty(),
        "the instance's groups changed: a full read"
    );
    assert_eq!(moved.outcomes.len(), 1, "{moved:#?}");
    assert_eq!(moved.outcomes[0].group.as_str(), open);
    assert!(moved.outcomes[0].succeeded());
}
