//! The command line as a user runs it: exit statuses, messages that name the
//! field or the step, and the JSON document, through the real binary.

use crate::common::cli::*;
use crate::common::*;

fn policy_file(dir: &tempfile::TempDir, region: &str, mode: &str, trusted: &str) -> String {
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: guardduty.security.dev/v1alpha1\nkind: GuardDutyPolicy\nmetadata:\n  name: test\n\
             spec:\n  region: {region}\n  trustedCidrs: [{trusted}]\n  remediation:\n    mode: {mode}\n"
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn invalid_policy_exits_with_2_and_names_the_field_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir, "us-east-1", "Enforce", "10.0.0.0/8, 0.0.0.0/0");
    let output = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["audit", "--policy", &policy],
    )
    .output()
    .unwrap();
    assert_eq!(status(&output), 2, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("spec.trustedCidrs[1]"), "{stderr}");
    assert!(stderr.contains("world range"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout for an invalid policy"
    );
}

#[test]
fn a_world_equivalent_trusted_set_exits_with_2_naming_the_field_and_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    for (trusted, family, bound) in [
        ("0.0.0.0/1, 128.0.0.0/1", "IPv4", "/8"),
        ("\"2000::/4\", \"3000::/4\"", "IPv6", "/16"),
    ] {
        let policy = policy_file(&dir, "us-east-1", "Enforce", trusted);
        let output = command(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            &["remediate", "--policy", &policy],
        )
        .output()
        .unwrap();
        assert_eq!(status(&output), 2, "{trusted}: {}", text(&output.stderr));
        let stderr = text(&output.stderr);
        assert!(stderr.contains("spec.trustedCidrs:"), "{stderr}");
        assert!(
            stderr.contains(&format!("trusted {family} ranges hold"))
                && stderr.contains(&format!("more than a {bound}")),
            "{stderr}"
        );
    }
    let mapped = policy_file(&dir, "us-east-1", "Enforce", "\"::ffff:10.0.0.0/104\"");
    let output = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["audit", "--policy", &mapped],
    )
    .output()
    .unwrap();
    assert_eq!(status(&output), 2);
    assert!(
        text(&output.stderr).contains("IPv4-mapped"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn misspelt_mode_and_missing_file_and_unknown_flag_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir, "us-east-1", "Enforced", "10.0.0.0/8");
    let output = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["remediate", "--policy", &policy],
    )
    .output()
    .unwrap();
    assert_eq!(status(&output), 2);
    assert!(
        text(&output.stderr).contains("spec.remediation.mode"),
        "{}",
        text(&output.stderr)
    );

    let missing = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["audit", "--policy", "/nonexistent.yaml"],
    )
    .output()
    .unwrap();
    assert_eq!(status(&missing), 2);
    assert!(text(&missing.stderr).contains("/nonexistent.yaml"));

    let usage = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["audit", "--polcy", "x"],
    )
    .output()
    .unwrap();
    assert_eq!(status(&usage), 2);
}

#[test]
fn unreachable_aws_exits_with_1_and_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir, "us-east-1", "DryRun", "10.0.0.0/8");
    // Port 9 (discard) is closed on loopback: the connection is refused at once.
    let closed = "http://127.0.0.1:9";
    let output = command(closed, closed, &["audit", "--policy", &policy])
        .output()
        .unwrap();
    assert_eq!(status(&output), 1);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("failed to identify the AWS account"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");

    let output = command_with_sts(&moto_url(), closed, closed, &["audit", "--policy", &policy])
        .output()
        .unwrap();
    assert_eq!(status(&output), 1);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("failed to find the GuardDuty detector"),
        "{stderr}"
    );
}

#[tokio::test]
async fn failed_ec2_step_still_reports_the_findings_read_before_it() {
    let world = World::new("ca-central-1").await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000101",
        5.0,
        "i-0123456789abcdef0",
        &["sg-0123456789abcdef0"],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir, &world.region, "Enforce", "10.0.0.0/8");
    let output = run(command_with_sts(
        &moto_url(),
        "http://127.0.0.1:9",
        &world.guardduty_url,
        &["remediate", "--policy", &policy],
    ))
    .await;
    assert_eq!(status(&output), 1);
    assert!(
        text(&output.stdout).contains("f0000000"),
        "{}",
        text(&output.stdout)
    );
    assert!(
        text(&output.stderr).contains("failed to describe instances"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn json_output_holds_findings_plan_outcomes_and_api_calls_and_a_second_run_says_nothing_changes()
 {
    let world = World::new("sa-east-1").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000102",
        7.5,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir, &world.region, "Enforce", "10.0.0.0/8");
    let moto = moto_url();

    let output = run(command(
        &moto,
        &world.guardduty_url,
        &["remediate", "--policy", &policy, "--output", "json"],
    ))
    .await;
    assert_eq!(status(&output), 0, "{}", text(&output.stderr));
    let doc: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["mode"], "Enforce");
    assert_eq!(doc["region"], "sa-east-1");
    assert_eq!(doc["applied"], true);
    assert_eq!(doc["findings"][0]["id"], "f0000000000000000000000000000102");
    assert_eq!(doc["findings"][0]["severity"], 7.5);
    assert_eq!(doc["findings"][0]["action"]["kind"], "portProbe");
    assert_eq!(doc["findings"][0]["action"]["ports"][0], 22);
    assert_eq!(
        doc["findings"][0]["action"]["remoteIps"][0],
        "198.51.100.10"
    );
    assert_eq!(
        doc["plan"]["findings"]["f0000000000000000000000000000102"]["decision"],
        "remediate"
    );
    assert_eq!(doc["findings"][0]["instance"]["id"], instance.as_str());
    assert_eq!(doc["plan"]["groups"][0]["group"], web.as_str());
    assert_eq!(doc["plan"]["groups"][0]["verdict"], "change");
    assert_eq!(
        doc["plan"]["groups"][0]["authorize"][0]["source"],
        "10.0.0.0/8"
    );
    assert_eq!(
        doc["plan"]["groups"][0]["authorize"][0]["purpose"],
        "trusted"
    );
    assert_eq!(doc["outcomes"][0]["authorize"]["result"], "done");
    assert_eq!(doc["outcomes"][0]["revoke"]["result"], "done");
    assert_eq!(doc["apiCalls"]["EC2.AuthorizeSecurityGroupIngress"], 1);
    assert_eq!(doc["failure"], serde_json::Value::Null);

    let again = run(command(
        &moto,
        &world.guardduty_url,
        &["remediate", "--policy", &policy],
    ))
    .await;
    assert_eq!(status(&again), 0);
    assert!(
        text(&again.stdout).contains("Nothing to change"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(
        world.ingress(&web).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"]
    );
}

#[tokio::test]
async fn dry_run_flag_overrides_enforce() {
    let world = World::new("eu-west-3").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000103",
        5.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(&dir, &world.region, "Enforce", "10.0.0.0/8");
    let output = run(command(
        &moto_url(),
        &world.guardduty_url,
        &["remediate", "--policy", &policy, "--dry-run"],
    ))
    .await;
    assert_eq!(status(&output), 0, "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("Not applied"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(world.ingress(&web).await, ["tcp 22-22 0.0.0.0/0"]);
}
