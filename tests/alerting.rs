//! Alerts end to end, through the binary: findings in the GuardDuty emulator,
//! security groups on moto, and Slack and PagerDuty as local receivers that check each
//! request against the service's published API. Routing by severity and type, exactly
//! once across runs (`--state`), resolve on remediation and when a finding leaves the
//! list, a failing channel that blocks neither remediation nor the other channels, and
//! secrets that never reach any output.

use crate::common::cli::*;
use crate::common::receiver::{Answer, Receiver};
use crate::common::*;
use serde_json::{Value, json};

const ROUTING_KEY: &str = "R0UTINGKEY0000SECRET00000000000a";
const SLACK_TOKEN: &str = "T000/B000/XXXXSECRETXXXX";

/// Secrets laid out like mounted Secrets: DIR/NAME/KEY.
fn secrets_dir(dir: &tempfile::TempDir, slack: &Receiver) -> String {
    let root = dir.path().join("secrets");
    std::fs::create_dir_all(root.join("pagerduty")).unwrap();
    std::fs::create_dir_all(root.join("slack")).unwrap();
    std::fs::write(
        root.join("pagerduty/routingKey"),
        format!("{ROUTING_KEY}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("slack/webhookUrl"),
        format!("{}/services/{SLACK_TOKEN}\n", slack.url),
    )
    .unwrap();
    root.to_string_lossy().into_owned()
}

/// A policy with two channels: PagerDuty for HIGH and above, Slack for brute force
/// of any severity.
fn policy(dir: &tempfile::TempDir, region: &str, mode: &str, pagerduty: &Receiver) -> String {
    let path = dir.path().join(format!("policy-{mode}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: guardduty.security.dev/v1alpha1
kind: GuardDutyPolicy
metadata:
  name: alerting
spec:
  region: {region}
  trustedCidrs: [10.0.0.0/8]
  remediation:
    mode: {mode}
  notifications:
    - name: oncall
      minSeverity: HIGH
      pagerDuty:
        routingKeySecretRef: {{name: pagerduty, key: routingKey}}
        eventsUrl: {}/v2/enqueue
    - name: chat
      findingTypes: [\"UnauthorizedAccess:*\"]
      slack:
        webhookUrlSecretRef: {{name: slack, key: webhookUrl}}
",
            pagerduty.url
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn pagerduty_accepts() -> Answer {
    Answer::json(
        202,
        json!({"status": "success", "message": "Event processed", "dedup_key": "x"}),
    )
}

fn slack_accepts() -> Answer {
    Answer::new(200, "ok")
}

/// The PagerDuty events received: (event_action, dedup_key), after checking each
/// request is the Events API v2 call with the routing key in the body.
fn pagerduty_events(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .received()
        .iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/v2/enqueue");
            assert_eq!(r.header("content-type"), Some("application/json"));
            let body = r.json();
            assert_eq!(body["routing_key"], ROUTING_KEY);
            (
                body["event_action"].as_str().unwrap().to_string(),
                body["dedup_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The Slack messages received (their fallback text), after checking each is a POST
/// of JSON to the webhook's path.
fn slack_messages(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| {
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, format!("/services/{SLACK_TOKEN}"));
            assert_eq!(r.header("content-type"), Some("application/json"));
            let body = r.json();
            assert!(body["blocks"].is_array(), "{body}");
            body["text"].as_str().unwrap().to_string()
        })
        .collect()
}

struct Scene {
    world: World,
    web: String,
    dir: tempfile::TempDir,
    pagerduty: Receiver,
    slack: Receiver,
    secrets: String,
    state: String,
}

const HIGH_PROBE: &str = "a1000000000000000000000000000001";
const LOW_BRUTE_FORCE: &str = "a1000000000000000000000000000002";
const MEDIUM_PROBE: &str = "a1000000000000000000000000000003";

/// A world-open SSH group on an instance, three findings about it: a HIGH port probe
/// (PagerDuty), a LOW sample SSH brute force (Slack), a MEDIUM probe (nobody).
async fn scene(region: &str) -> Scene {
    let world = World::new(region).await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![
        port_probe(HIGH_PROBE, 8.0, &instance, &[&web], &[22]),
        sample(brute_force(
            LOW_BRUTE_FORCE,
            "SSHBruteForce",
            &instance,
            &[&web],
            22,
            "INBOUND",
        )),
        port_probe(MEDIUM_PROBE, 5.0, &instance, &[&web], &[22]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let pagerduty = Receiver::start(vec![pagerduty_accepts()]).await;
    let slack = Receiver::start(vec![slack_accepts()]).await;
    let secrets = secrets_dir(&dir, &slack);
    let state = dir
        .path()
        .join("alerts.json")
        .to_string_lossy()
        .into_owned();
    Scene {
        world,
        web,
        dir,
        pagerduty,
        slack,
        secrets,
        state,
    }
}

impl Scene {
    async fn run(&self, subcommand: &str, mode: &str, extra: &[&str]) -> std::process::Output {
        let policy = policy(&self.dir, &self.world.region, mode, &self.pagerduty);
        let mut args = vec![
            subcommand,
            "--policy",
            &policy,
            "--state",
            &self.state,
            "--secrets-dir",
            &self.secrets,
        ];
        args.extend_from_slice(extra);
        let mut cmd = command(&moto_url(), &self.world.guardduty_url, &args);
        // Every log line the operator can write, so the secret check sees them all.
        cmd.env("RUST_LOG", "debug");
        run(cmd).await
    }
}

fn assert_no_secret(output: &std::process::Output) {
    for stream in [&output.stdout, &output.stderr] {
        let text = text(stream);
        assert!(
            !text.contains(ROUTING_KEY),
            "the routing key leaked:\n{text}"
        );
        assert!(
            !text.contains("SECRET"),
            "the webhook token leaked:\n{text}"
        );
    }
}

#[tokio::test]
async fn each_channel_hears_its_findings_once_and_again_when_the_operator_acts() {
    let scene = scene("eu-south-1").await;

    // First run (DryRun): PagerDuty gets the HIGH probe, Slack the sample brute force.
    let first = scene
        .run("audit", "DryRun", &["--notify", "--output", "json"])
        .await;
    assert_eq!(status(&first), 0, "{}", text(&first.stderr));
    assert_no_secret(&first);
    assert_eq!(
        pagerduty_events(&scene.pagerduty),
        [("trigger".to_string(), HIGH_PROBE.to_string())]
    );
    let slack = slack_messages(&scene.slack);
    assert_eq!(slack.len(), 1);
    assert!(slack[0].contains("[SAMPLE]"), "{}", slack[0]);
    assert!(
        slack[0].contains("UnauthorizedAccess:EC2/SSHBruteForce"),
        "{}",
        slack[0]
    );
    let doc: Value = serde_json::from_slice(&first.stdout).unwrap();
    let deliveries = doc["notifications"]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{doc:#}");
    assert!(
        deliveries.iter().all(|d| d["result"] == "delivered"),
        "{doc:#}"
    );
    assert_eq!(deliveries[0]["channel"], "oncall");
    assert_eq!(deliveries[0]["finding"], HIGH_PROBE);
    assert_eq!(deliveries[0]["event"]["kind"], "opened");

    // Second run, nothing changed: nobody hears anything.
    let second = scene.run("audit", "DryRun", &["--notify"]).await;
    assert_eq!(status(&second), 0, "{}", text(&second.stderr));
    assert_eq!(scene.pagerduty.received().len(), 1);
    assert_eq!(scene.slack.received().len(), 1);
    assert!(
        text(&second.stdout).contains("Alerts: none due"),
        "{}",
        text(&second.stdout)
    );

    // Enforced: the port is closed, so PagerDuty's incident is resolved; the sample
    // finding's response did not change (never acted on), so Slack hears nothing.
    let third = scene.run("remediate", "Enforce", &[]).await;
    assert_eq!(status(&third), 0, "{}", text(&third.stderr));
    assert_eq!(
        scene.world.ingress(&scene.web).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"]
    );
    assert_eq!(
        pagerduty_events(&scene.pagerduty),
        [
            ("trigger".to_string(), HIGH_PROBE.to_string()),
            ("resolve".to_string(), HIGH_PROBE.to_string()),
        ]
    );
    assert_eq!(scene.slack.received().len(), 1);

    // The brute force finding is archived in GuardDuty: Slack hears it is resolved.
    let mut archived = sample(brute_force(
        LOW_BRUTE_FORCE,
        "SSHBruteForce",
        "i-0123456789abcdef0",
        &[&scene.web],
        22,
        "INBOUND",
    ));
    archived["service"]["archived"] = json!(true);
    scene.world.post(vec![archived]);
    let fourth = scene.run("remediate", "Enforce", &[]).await;
    assert_eq!(status(&fourth), 0, "{}", text(&fourth.stderr));
    let slack = slack_messages(&scene.slack);
    assert_eq!(slack.len(), 2);
    assert!(slack[1].contains("resolved"), "{}", slack[1]);
    assert_no_secret(&fourth);

    // And the record says so: one entry left, PagerDuty's, closed.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&scene.state).unwrap()).unwrap();
    let mut alerts = state["alerts"].clone();
    assert!(
        alerts[0]["since"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{alerts}"
    );
    alerts[0].as_object_mut().unwrap().remove("since");
    assert_eq!(
        alerts,
        json!([{
            "channel": "oncall",
            "finding": HIGH_PROBE,
            "type": "Recon:EC2/PortProbeUnprotectedPort",
            "severity": 8.0,
            "account": ACCOUNT,
            "region": scene.world.region,
            "response": "closed"
        }])
    );
    assert_eq!(state["version"], 2);
    assert!(
        state["changes"]["revoked"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "the record of changes is kept too: {state:#}"
    );
}

#[tokio::test]
async fn a_failing_channel_blocks_neither_remediation_nor_the_others_and_is_tried_next_run() {
    let scene = scene("ap-east-1").await;
    scene
        .slack
        .answer_with(vec![Answer::new(500, "rollup_error")]);

    let first = scene.run("remediate", "Enforce", &[]).await;
    assert_eq!(status(&first), 4, "an undelivered alert fails the run");
    assert_no_secret(&first);
    let stderr = text(&first.stderr);
    assert!(
        stderr.contains(
            "error: 1 alert(s) to chat (slack) not delivered: Slack answered HTTP 500: rollup_error"
        ),
        "{stderr}"
    );
    // Three attempts with backoff, then the alert waits for the next run.
    assert_eq!(scene.slack.received().len(), 3);
    // Remediation and PagerDuty went ahead: the group is closed, the incident
    // triggered and resolved at once (it was already closed when first alerted).
    assert_eq!(
        scene.world.ingress(&scene.web).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"]
    );
    assert_eq!(
        pagerduty_events(&scene.pagerduty),
        [
            ("trigger".to_string(), HIGH_PROBE.to_string()),
            ("resolve".to_string(), HIGH_PROBE.to_string()),
        ]
    );

    scene.slack.answer_with(vec![slack_accepts()]);
    let second = scene.run("remediate", "Enforce", &[]).await;
    assert_eq!(status(&second), 0, "{}", text(&second.stderr));
    assert_eq!(slack_messages(&scene.slack).len(), 4);
    assert_eq!(
        scene.pagerduty.received().len(),
        2,
        "PagerDuty heard nothing new"
    );
}

#[tokio::test]
async fn a_missing_secret_fails_its_channel_only_and_a_dry_run_sends_nothing() {
    let scene = scene("me-south-1").await;
    std::fs::remove_file(format!("{}/slack/webhookUrl", scene.secrets)).unwrap();

    let dry_run = scene.run("audit", "DryRun", &["--dry-run"]).await;
    assert_eq!(status(&dry_run), 4, "{}", text(&dry_run.stderr));
    let stdout = text(&dry_run.stdout);
    assert!(stdout.contains("would send (not sent"), "{stdout}");
    assert!(scene.pagerduty.received().is_empty());
    assert!(
        !std::path::Path::new(&scene.state).exists(),
        "a dry run writes no state"
    );

    let output = scene.run("audit", "DryRun", &["--notify"]).await;
    assert_eq!(status(&output), 4);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("alert(s) to chat (slack) not delivered: secret slack/webhookUrl not found: create the file"),
        "{stderr}"
    );
    assert_eq!(pagerduty_events(&scene.pagerduty).len(), 1);
}

#[tokio::test]
async fn an_audit_lists_the_alerts_due_and_sends_them_only_with_notify() {
    let scene = scene("ap-southeast-2").await;
    let quiet = scene.run("audit", "DryRun", &[]).await;
    assert_eq!(status(&quiet), 0, "{}", text(&quiet.stderr));
    assert!(
        text(&quiet.stdout).contains("would send (not sent"),
        "{}",
        text(&quiet.stdout)
    );
    assert!(scene.pagerduty.received().is_empty());
    assert!(scene.slack.received().is_empty());
    let loud = scene.run("audit", "DryRun", &["--notify"]).await;
    assert_eq!(status(&loud), 0, "{}", text(&loud.stderr));
    assert_eq!(pagerduty_events(&scene.pagerduty).len(), 1);
    assert_eq!(slack_messages(&scene.slack).len(), 1);
}
