//! The `guardduty-emulator` binary: loads `--findings` files, prints its URL, serves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::common::{DETECTOR, FindingJson, client, port_probe_finding};

/// Kills the emulator process when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_loads_findings_files_and_prints_its_url() {
    let directory =
        std::env::temp_dir().join(format!("guardduty-emulator-test-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let first = directory.join("first.json");
    let second = directory.join("second.json");
    std::fs::write(
        &first,
        json!({ "findings": [port_probe_finding("probe-1"), FindingJson::new("ssh-1").json()] })
            .to_string(),
    )
    .expect("write");
    std::fs::write(
        &second,
        json!({ "findings": [FindingJson::new("ssh-1").severity(8.0).json()] }).to_string(),
    )
    .expect("write");

    let mut child = Command::new(env!("CARGO_BIN_EXE_guardduty-emulator"))
        .args(["--listen", "127.0.0.1:0", "--findings"])
        .arg(&first)
        .arg("--findings")
        .arg(&second)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the emulator starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let running = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("the reader completes")
    .expect("one line on stdout");

    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("`listening on URL`")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let client = client(&url).await;
    let listed = client
        .list_findings()
        .detector_id(DETECTOR)
        .send()
        .await
        .expect("ListFindings succeeds");
    assert_eq!(listed.finding_ids(), ["probe-1", "ssh-1"]);
    let output = client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("ssh-1")
        .send()
        .await
        .expect("GetFindings succeeds");
    assert_eq!(
        output.findings()[0].severity(),
        Some(8.0),
        "the later file replaces the finding"
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test]
async fn the_binary_refuses_an_invalid_findings_file() {
    let path = std::env::temp_dir().join(format!(
        "guardduty-emulator-invalid-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, r#"{"findings": [{"id": "x"}]}"#).expect("write");

    let output = Command::new(env!("CARGO_BIN_EXE_guardduty-emulator"))
        .arg("--findings")
        .arg(&path)
        .output()
        .expect("the emulator runs");

    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no URL is announced");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("findings[0].type"), "{stderr}");
    let _ = std::fs::remove_file(&path);
}
