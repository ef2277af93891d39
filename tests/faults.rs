//! Crashes and faults, through the real binary with a fault-injecting proxy in front
//! of moto: a run killed between any two AWS calls converges on the next run with a
//! complete change record and one alert; throttling and 5xx are retried with backoff,
//! then reported; a one-by-one fallback that stops part-way is recorded and settled.

use crate::common::cli::*;
use crate::common::proxy::{Fault, Proxy};
use crate::common::receiver::{Answer, Receiver};
use crate::common::*;
use serde_json::Value;
use std::time::Duration;

/// A policy `default/NAME` enforcing on SSH with one Slack channel for every finding.
fn policy_file(dir: &tempfile::TempDir, name: &str, region: &str, trusted: &str) -> String {
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: guardduty.security.dev/v1alpha1
kind: GuardDutyPolicy
metadata:
  name: {name}
spec:
  region: {region}
  trustedCidrs: [{trusted}]
  remediation:
    mode: Enforce
  notifications:
    - name: chat
      slack:
        webhookUrlSecretRef: {{name: slack, key: webhookUrl}}
"
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn secrets_dir(dir: &tempfile::TempDir, slack: &Receiver) -> String {
    let root = dir.path().join("secrets");
    std::fs::create_dir_all(root.join("slack")).unwrap();
    std::fs::write(
        root.join("slack/webhookUrl"),
        format!("{}/services/T000/B000/XXXX\n", slack.url),
    )
    .unwrap();
    root.to_string_lossy().into_owned()
}

fn state(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the state file exists"))
        .expect("the state file is JSON")
}

/// A run of `remediate` with EC2 (and STS) behind `ec2`.
fn remediate(
    ec2: &str,
    world: &World,
    policy: &str,
    state: &str,
    secrets: &str,
) -> std::process::Command {
    let mut cmd = command_with_sts(
        &moto_url(),
        ec2,
        &world.guardduty_url,
        &[
            "remediate",
            "--policy",
            policy,
            "--state",
            state,
            "--secrets-dir",
            secrets,
            "--output",
            "json",
        ],
    );
    // Retries as configured by default (5 attempts), with short waits for the test.
    cmd.env_remove("AWS_MAX_ATTEMPTS")
        .env("GDO_AWS_RETRY_BACKOFF_MS", "10");
    cmd
}

#[tokio::test]
async fn a_run_killed_between_two_aws_calls_converges_next_run_with_a_complete_record_and_one_alert()
 {
    for (round, held) in [
        "CreateTags",
        "AuthorizeSecurityGroupIngress",
        "RevokeSecurityGroupIngress",
    ]
    .into_iter()
    .enumerate()
    {
        // A fresh account each round (its own findings), in the same region.
        let world = World::new("us-gov-west-1").await;
        let web = world
            .group(&format!("web-{round}"), &[("tcp", 22, 22, "0.0.0.0/0")])
            .await;
        let instance = world.instance(&[&web]).await;
        world.post(vec![port_probe(
            &format!("fa00000000000000000000000000000{round}"),
            8.0,
            &instance,
            &[&web],
            &[22],
        )]);
        let dir = tempfile::tempdir().unwrap();
        let slack = Receiver::start(vec![Answer::new(200, "ok")]).await;
        let secrets = secrets_dir(&dir, &slack);
        let name = format!("kill-{round}");
        let policy = policy_file(&dir, &name, &world.region, "10.0.0.0/8");
        let state_path = dir.path().join("state.json").to_string_lossy().into_owned();

        let proxy = Proxy::start(&moto_url()).await;
        proxy.fault(held, 0, usize::MAX, Fault::Hold);
        let mut child = remediate(&proxy.url, &world, &policy, &state_path, &secrets)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the binary");
        proxy.until_held(Duration::from_secs(60)).await;
        child.kill().expect("kill the run");
        child.wait().unwrap();
        assert!(
            slack.received().is_empty(),
            "{held}: no alert before the pass ends"
        );
        let written = state(&state_path);
        assert!(
            written["changes"]["pending"]["added"].is_array(),
            "{held}: the intent was written before the first change: {written}"
        );

        let output = run(remediate(
            &moto_url(),
            &world,
            &policy,
            &state_path,
            &secrets,
        ))
        .await;
        assert_eq!(status(&output), 0, "{held}: {}", text(&output.stderr));
        let owner = format!("default/{name}");
        assert_eq!(
            world.owners(&web).await,
            [format!("tcp 22-22 10.0.0.0/8 by {owner}")],
            "{held}"
        );
        let changes = &state(&state_path)["changes"];
        assert_eq!(
            changes["pending"],
            Value::Null,
            "{held}: settled: {changes}"
        );
        let added = changes["added"].as_array().unwrap();
        assert_eq!(added.len(), 1, "{held}: {changes}");
        assert_eq!(added[0]["cidr"], "10.0.0.0/8");
        assert!(
            added[0]["ruleId"]
                .as_str()
                .is_some_and(|id| id.starts_with("sgr-")),
            "{held}: the added rule is recorded with its id, so Revert can remove it: {changes}"
        );
        let revoked = changes["revoked"].as_array().unwrap();
        assert_eq!(revoked.len(), 1, "{held}: {changes}");
        assert_eq!(revoked[0]["cidr"], "0.0.0.0/0");
        assert_eq!(
            slack.received().len(),
            1,
            "{held}: one alert across the killed run and the next"
        );

        let again = run(remediate(
            &moto_url(),
            &world,
            &policy,
            &state_path,
            &secrets,
        ))
        .await;
        assert_eq!(status(&again), 0);
        let doc: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(doc["outcomes"], serde_json::json!([]), "{held}: converged");
        assert_eq!(slack.received().len(), 1, "{held}: still one alert");
    }
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_five_times_then_reported() {
    let world = World::new("us-gov-east-1").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "fa000000000000000000000000000010",
        8.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let slack = Receiver::start(vec![Answer::new(200, "ok")]).await;
    let secrets = secrets_dir(&dir, &slack);
    let policy = policy_file(&dir, "retry", &world.region, "10.0.0.0/8");
    let state_path = dir.path().join("state.json").to_string_lossy().into_owned();

    // Four throttled answers, then AWS answers: the fifth attempt goes through.
    let proxy = Proxy::start(&moto_url()).await;
    proxy.fault("AuthorizeSecurityGroupIngress", 0, 4, Fault::throttled());
    proxy.fault(
        "RevokeSecurityGroupIngress",
        0,
        2,
        Fault::ec2_error(500, "InternalError", "An internal error has occurred"),
    );
    let output = run(remediate(
        &proxy.url,
        &world,
        &policy,
        &state_path,
        &secrets,
    ))
    .await;
    assert_eq!(status(&output), 0, "{}", text(&output.stderr));
    assert_eq!(proxy.count("AuthorizeSecurityGroupIngress"), 5);
    assert_eq!(proxy.count("RevokeSecurityGroupIngress"), 3);
    assert_eq!(
        world.owners(&web).await,
        ["tcp 22-22 10.0.0.0/8 by default/retry"]
    );

    // Never an answer: five attempts, then the step is reported and the run fails.
    let failing = Proxy::start(&moto_url()).await;
    failing.fault(
        "DescribeInstances",
        0,
        usize::MAX,
        Fault::ec2_error(503, "Unavailable", "The service is unavailable"),
    );
    let output = run(remediate(
        &failing.url,
        &world,
        &policy,
        &state_path,
        &secrets,
    ))
    .await;
    assert_eq!(status(&output), 1, "{}", text(&output.stderr));
    assert_eq!(failing.count("DescribeInstances"), 5);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("failed to describe instances"), "{stderr}");
}

#[tokio::test]
async fn a_one_by_one_fallback_stopped_part_way_is_recorded_and_settled_next_run() {
    let world = World::new("cn-north-1").await;
    let web = world
        .group(
            "web",
            &[("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 22, 22, "::/0")],
        )
        .await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "fa000000000000000000000000000020",
        8.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let slack = Receiver::start(vec![Answer::new(200, "ok")]).await;
    let secrets = secrets_dir(&dir, &slack);
    let policy = policy_file(
        &dir,
        "partial",
        &world.region,
        "10.0.0.0/8, \"2001:db8::/32\"",
    );
    let state_path = dir.path().join("state.json").to_string_lossy().into_owned();

    // The batch is refused as a duplicate (someone added a rule meanwhile), the first
    // rule alone goes through, the second is denied.
    let proxy = Proxy::start(&moto_url()).await;
    proxy.fault(
        "AuthorizeSecurityGroupIngress",
        0,
        1,
        Fault::ec2_error(
            400,
            "InvalidPermission.Duplicate",
            "the rule already exists",
        ),
    );
    proxy.fault(
        "AuthorizeSecurityGroupIngress",
        2,
        1,
        Fault::ec2_error(403, "UnauthorizedOperation", "You are not authorized"),
    );
    let output = run(remediate(
        &proxy.url,
        &world,
        &policy,
        &state_path,
        &secrets,
    ))
    .await;
    assert_eq!(status(&output), 1, "{}", text(&output.stderr));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = doc["outcomes"][0]["authorize"]["error"].as_str().unwrap();
    assert!(
        error.contains("after adding 1 of 2 rules one by one"),
        "{error}"
    );
    assert_eq!(doc["outcomes"][0]["revoke"]["result"], "notRun");
    let owned: Vec<String> = world
        .owners(&web)
        .await
        .into_iter()
        .filter(|l| l.contains(" by "))
        .collect();
    assert_eq!(owned.len(), 1, "one trusted rule was added: {owned:?}");
    let pending = &state(&state_path)["changes"]["pending"];
    assert_eq!(
        pending["added"].as_array().map(Vec::len),
        Some(2),
        "what the fallback may have done is recorded: {pending}"
    );

    let output = run(remediate(
        &moto_url(),
        &world,
        &policy,
        &state_path,
        &secrets,
    ))
    .await;
    assert_eq!(status(&output), 0, "{}", text(&output.stderr));
    assert_eq!(
        world.owners(&web).await,
        [
            "tcp 22-22 10.0.0.0/8 by default/partial",
            "tcp 22-22 2001:db8::/32 by default/partial",
        ]
    );
    let changes = &state(&state_path)["changes"];
    assert_eq!(changes["pending"], Value::Null, "{changes}");
    let added = changes["added"].as_array().unwrap();
    assert_eq!(added.len(), 2, "{changes}");
    assert!(
        added.iter().all(|r| r["ruleId"].is_string()),
        "both added rules recorded with their ids: {changes}"
    );
    assert_eq!(changes["revoked"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_second_run_on_the_same_state_file_waits_then_exits_2_and_the_finding_is_alerted_once() {
    let world = World::new("cn-northwest-1").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "fa000000000000000000000000000030",
        8.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let slack = Receiver::start(vec![Answer::new(200, "ok")]).await;
    let secrets = secrets_dir(&dir, &slack);
    let policy = policy_file(&dir, "locked", &world.region, "10.0.0.0/8");
    let state_path = dir.path().join("state.json").to_string_lossy().into_owned();

    // The first run is stopped in the middle of its pass, holding the lock.
    let proxy = Proxy::start(&moto_url()).await;
    proxy.fault("AuthorizeSecurityGroupIngress", 0, usize::MAX, Fault::Hold);
    let mut first = remediate(&proxy.url, &world, &policy, &state_path, &secrets)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the first run");
    proxy.until_held(Duration::from_secs(60)).await;

    let mut second = remediate(&moto_url(), &world, &policy, &state_path, &secrets);
    second.args(["--lock-timeout", "1"]);
    let output = run(second).await;
    assert_eq!(status(&output), 2, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("another run holds the state file") && stderr.contains("--lock-timeout"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "the second run did no pass");
    assert!(slack.received().is_empty());
    assert_eq!(world.ingress(&web).await, ["tcp 22-22 0.0.0.0/0"]);

    first.kill().unwrap();
    first.wait().unwrap();
    let output = run(remediate(
        &moto_url(),
        &world,
        &policy,
        &state_path,
        &secrets,
    ))
    .await;
    assert_eq!(status(&output), 0, "{}", text(&output.stderr));
    assert_eq!(
        world.owners(&web).await,
        ["tcp 22-22 10.0.0.0/8 by default/locked"]
    );
    assert_eq!(slack.received().len(), 1, "alerted once");
}
