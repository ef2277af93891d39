//! The command line as a user runs it: exit statuses, messages that name the
//! field or the step, and the JSON document, through the real binary.

use crate::common::cli::*;
use crate::common::*;

fn policy_file(dir: &tempfile::TempDir, region: &str, mode: &str, trusted: &str) -> String {
    named_policy_file(dir, "test", region, mode, trusted)
}

/// `policy.yaml` in `dir` for policy `default/NAME` (the owner a `World::owned` expects).
fn named_policy_file(
    dir: &tempfile::TempDir,
    name: &str,
    region: &str,
    mode: &str,
    trusted: &str,
) -> String {
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: guardduty.security.dev/v1alpha1\nkind: GuardDutyPolicy\nmetadata:\n  name: {name}\n\
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

#[test]
fn validate_checks_a_policy_offline_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let good = policy_file(&dir, "us-east-1", "Enforce", "10.0.0.0/8");
    // No AWS endpoint answers: validate makes no call.
    let output = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["validate", "--policy", &good],
    )
    .output()
    .unwrap();
    assert_eq!(status(&output), 0, "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("policy default/test is valid: mode Enforce"),
        "{}",
        text(&output.stdout)
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: guardduty.security.dev/v1alpha1\nkind: GuardDutyPolicy\nmetadata:\n  name: bad\n\
         spec:\n  region: us-east\n  trustedCidrs: [0.0.0.0/0]\n  interval: 1s\n",
    )
    .unwrap();
    let output = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["validate", "--policy", bad.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(status(&output), 2);
    let stderr = text(&output.stderr);
    for field in ["spec.region:", "spec.trustedCidrs[0]:", "spec.interval:"] {
        assert!(stderr.contains(field), "{field} in {stderr}");
    }
}

#[test]
fn version_names_the_git_revision_and_help_lists_the_exit_statuses() {
    let version = command("http://127.0.0.1:9", "http://127.0.0.1:9", &["--version"])
        .output()
        .unwrap();
    let text_out = text(&version.stdout);
    assert!(
        text_out.starts_with(&format!(
            "guardduty-operator {} (",
            env!("CARGO_PKG_VERSION")
        )),
        "{text_out}"
    );
    let help = command("http://127.0.0.1:9", "http://127.0.0.1:9", &["--help"])
        .output()
        .unwrap();
    assert!(
        text(&help.stdout).contains("3 a --fail-on condition holds; 4 an alert was not delivered"),
        "{}",
        text(&help.stdout)
    );
}

#[tokio::test]
async fn csv_to_a_file_and_fail_on_make_a_ci_job_fail_while_exposure_remains() {
    let world = World::owned("ca-west-1", "default/cli-ci").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "c1000000000000000000000000000001",
        7.5,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let policy = &named_policy_file(&dir, "cli-ci", &world.region, "DryRun", "10.0.0.0/8");
    let path = std::path::Path::new(policy);
    let csv = dir.path().join("findings.csv");
    let output = run(command(
        &moto_url(),
        &world.guardduty_url,
        &[
            "audit",
            "--policy",
            policy,
            "--output",
            "csv",
            "--output-file",
            csv.to_str().unwrap(),
            "--fail-on",
            "exposed,pending",
        ],
    ))
    .await;
    assert_eq!(status(&output), 3, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "the report went to the file");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "--fail-on exposed: 1 finding(s) still exposed: c1000000000000000000000000000001"
        ),
        "{stderr}"
    );
    let table = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows[0],
        "finding,type,severity,account,region,instance,ports,remote_ips,response,detail"
    );
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[1].starts_with(
            "c1000000000000000000000000000001,Recon:EC2/PortProbeUnprotectedPort,7.5,"
        ),
        "{}",
        rows[1]
    );
    assert!(rows[1].contains(",planned,"), "{}", rows[1]);

    // Without --fail-on the same pass succeeds; enforced, nothing is left exposed.
    let plain = run(command(
        &moto_url(),
        &world.guardduty_url,
        &["audit", "--policy", policy],
    ))
    .await;
    assert_eq!(status(&plain), 0, "{}", text(&plain.stderr));
    let enforce = std::fs::read_to_string(path)
        .unwrap()
        .replace("mode: DryRun", "mode: Enforce");
    std::fs::write(path, enforce).unwrap();
    let fixed = run(command(
        &moto_url(),
        &world.guardduty_url,
        &[
            "remediate",
            "--policy",
            policy,
            "--fail-on",
            "exposed,pending,refused",
        ],
    ))
    .await;
    assert_eq!(status(&fixed), 0, "{}", text(&fixed.stderr));
}

#[test]
fn completions_print_a_script_for_the_shell() {
    let output = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["completions", "bash"],
    )
    .output()
    .unwrap();
    assert_eq!(status(&output), 0);
    let script = text(&output.stdout);
    for word in ["guardduty-operator", "remediate", "validate", "--fail-on"] {
        assert!(script.contains(word), "{word} in the bash completions");
    }
    let usage = command(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &["completions", "tcsh"],
    )
    .output()
    .unwrap();
    assert_eq!(status(&usage), 2, "an unknown shell is a usage error");
}

#[tokio::test]
async fn a_progress_line_shows_on_a_terminal_and_never_in_a_pipe() {
    let world = World::owned("ca-west-1", "default/progress").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "c2000000000000000000000000000001",
        5.0,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: guardduty.security.dev/v1alpha1\nkind: GuardDutyPolicy\nmetadata:\n  name: progress\n\
             spec:\n  region: {}\n  trustedCidrs: [10.0.0.0/8]\n",
            world.region
        ),
    )
    .unwrap();
    let policy = path.to_str().unwrap();
    let piped = run(command(
        &moto_url(),
        &world.guardduty_url,
        &["audit", "--policy", policy],
    ))
    .await;
    assert_eq!(status(&piped), 0, "{}", text(&piped.stderr));
    assert!(
        !text(&piped.stderr).contains("AWS:"),
        "no progress line in a pipe: {}",
        text(&piped.stderr)
    );
    // On a terminal: script(1) runs the command on a pseudo-terminal.
    let transcript = dir.path().join("terminal.log");
    let audit = command(&moto_url(), &world.guardduty_url, &[]);
    let line = format!("{BIN} audit --policy {policy} > /dev/null");
    let mut on_terminal = std::process::Command::new("script");
    on_terminal.args(["-q", "-e", "-c", &line, transcript.to_str().unwrap()]);
    for (key, value) in audit.get_envs() {
        match value {
            Some(value) => on_terminal.env(key, value),
            None => on_terminal.env_remove(key),
        };
    }
    let terminal = run(on_terminal).await;
    assert_eq!(status(&terminal), 0, "{}", text(&terminal.stderr));
    let seen = std::fs::read_to_string(&transcript).unwrap_or_default();
    assert!(seen.contains("reading and changing AWS:"), "{seen}");
}

#[tokio::test]
async fn report_shows_the_history_of_the_state_file_and_changes_nothing() {
    let world = World::owned("ca-west-1", "default/cli-report").await;
    let web = world.group("web", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&web]).await;
    world.post(vec![port_probe(
        "c2000000000000000000000000000002",
        7.5,
        &instance,
        &[&web],
        &[22],
    )]);
    let dir = tempfile::tempdir().unwrap();
    let policy = &named_policy_file(&dir, "cli-report", &world.region, "Enforce", "10.0.0.0/8");
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();

    // On an Enforce policy with the port open, a report still changes nothing in AWS.
    let rules_before = world.ingress(&web).await;
    let looked = run(command(
        &moto_url(),
        &world.guardduty_url,
        &["report", "--policy", policy, "--output", "json"],
    ))
    .await;
    assert_eq!(status(&looked), 0, "{}", text(&looked.stderr));
    let open: serde_json::Value = serde_json::from_slice(&looked.stdout).unwrap();
    assert_eq!(open["summary"]["openExposures"], 1, "{open:#}");
    assert_eq!(
        world.ingress(&web).await,
        rules_before,
        "a report changed AWS"
    );
    let fixed = run(command(
        &moto_url(),
        &world.guardduty_url,
        &["remediate", "--policy", policy, "--state", state],
    ))
    .await;
    assert_eq!(status(&fixed), 0, "{}", text(&fixed.stderr));
    let state_before = std::fs::read(state).unwrap();

    let output = run(command(
        &moto_url(),
        &world.guardduty_url,
        &[
            "report", "--policy", policy, "--state", state, "--output", "json",
        ],
    ))
    .await;
    assert_eq!(status(&output), 0, "{}", text(&output.stderr));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let actions = document["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|a| a["action"] == "revoked"
            && a["group"] == web.as_str()
            && a["cidr"] == "0.0.0.0/0"),
        "the revoke the state file recorded: {actions:?}"
    );
    let remediated = document["timeToRemediate"]["findings"].as_array().unwrap();
    assert_eq!(remediated.len(), 1, "{document:#}");
    assert_eq!(remediated[0]["finding"], "c2000000000000000000000000000002");
    let compliance = document["compliance"].to_string();
    assert!(compliance.contains("IR-4(1)"), "{compliance}");
    assert!(compliance.contains("SC-7"), "{compliance}");
    assert_eq!(
        std::fs::read(state).unwrap(),
        state_before,
        "a report leaves the state file as it is"
    );

    // HTML to a file; a file that cannot be written names its path and leaves nothing.
    let page = dir.path().join("report.html");
    let html = run(command(
        &moto_url(),
        &world.guardduty_url,
        &[
            "report",
            "--policy",
            policy,
            "--state",
            state,
            "--output-file",
            page.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(status(&html), 0, "{}", text(&html.stderr));
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") || page.starts_with("<!doctype html>"));
    assert!(page.contains("c2000000000000000000000000000002"));
    let missing = dir.path().join("no-such-dir").join("report.html");
    let failed = run(command(
        &moto_url(),
        &world.guardduty_url,
        &[
            "report",
            "--policy",
            policy,
            "--output-file",
            missing.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(status(&failed), 1, "{}", text(&failed.stderr));
    assert!(
        text(&failed.stderr).contains(missing.to_str().unwrap()),
        "{}",
        text(&failed.stderr)
    );
    assert!(!dir.path().join("no-such-dir").exists());

    // A status file that is not a reconciled policy is refused before any AWS call.
    let bad = dir.path().join("gdp.json");
    std::fs::write(&bad, "{\"kind\": \"GuardDutyPolicy\"}").unwrap();
    let refused = run(command(
        &moto_url(),
        &world.guardduty_url,
        &[
            "report",
            "--policy",
            policy,
            "--status",
            bad.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(status(&refused), 1);
    assert!(
        text(&refused.stderr).contains("no `status`"),
        "{}",
        text(&refused.stderr)
    );
}
