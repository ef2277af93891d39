//! A `guardduty-operator watch` process under measure: started with `--output json`
//! and JSON logs, its report lines stamped the moment they arrive, its memory and CPU
//! read from `/proc`, its log read back afterwards, and SIGTERM to stop it. Dropping a
//! [`Watch`] that is still running kills it, so no operator outlives the benchmark.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// What a watch is started with.
pub struct WatchSetup<'a> {
    pub operator: &'a Path,
    pub policy: &'a Path,
    /// `--queue-url`, and the SQS endpoint (moto) it is read through.
    pub queue: Option<(&'a str, &'a str)>,
    pub state: &'a Path,
    /// Where its stderr (JSON logs) goes.
    pub log: &'a Path,
}

/// One report line of `--output json`: one pass.
pub struct ReportLine {
    /// When the benchmark read it.
    pub at: Instant,
    pub report: Value,
}

pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<ReportLine>,
    log: PathBuf,
}

impl Watch {
    pub fn spawn(setup: &WatchSetup<'_>) -> anyhow::Result<Watch> {
        let log = std::fs::File::create(setup.log)
            .with_context(|| format!("failed to create {}", setup.log.display()))?;
        let mut command = Command::new(setup.operator);
        command
            .args([
                "--log-format",
                "json",
                "watch",
                "--output",
                "json",
                "--policy",
            ])
            .arg(setup.policy)
            .arg("--state")
            .arg(setup.state)
            // The pass and intake lines the measures read, whatever the caller's RUST_LOG.
            .env("RUST_LOG", "warn,guardduty_operator=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some((url, endpoint)) = setup.queue {
            command
                .arg("--queue-url")
                .arg(url)
                .env("AWS_ENDPOINT_URL_SQS", endpoint);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("failed to start {}", setup.operator.display()))?;
        let stdout = child.stdout.take().context("the watch has no stdout")?;
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let at = Instant::now();
                let report = serde_json::from_str(&line).unwrap_or(Value::Null);
                if send.send(ReportLine { at, report }).is_err() {
                    break;
                }
            }
        });
        Ok(Watch {
            child,
            lines,
            log: setup.log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next report line, waiting at most `timeout`; `None` when none came.
    pub fn next_line(&mut self, timeout: Duration) -> anyhow::Result<Option<ReportLine>> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(Some(line)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                bail!(
                    "the watch exited ({}); the end of its log:\n{}",
                    status.map_or("unknown status".into(), |s| s.to_string()),
                    self.log_tail()
                )
            }
        }
    }

    /// The next report line, or an error naming `what` after `timeout`.
    pub fn expect_line(&mut self, timeout: Duration, what: &str) -> anyhow::Result<ReportLine> {
        match self.next_line(timeout)? {
            Some(line) => Ok(line),
            None => bail!(
                "no report of {what} within {} s; the end of the watch's log:\n{}",
                timeout.as_secs(),
                self.log_tail()
            ),
        }
    }

    /// SIGTERM, then up to 20 s to exit (killed after that); its exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("failed to run kill")?;
        if !signalled.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let status = self.child.wait()?;
        bail!("the watch did not stop within 20 s of SIGTERM (killed: {status})")
    }

    /// Everything the watch logged, parsed (call after [`Watch::stop`]).
    pub fn log_events(&self) -> anyhow::Result<Vec<LogEvent>> {
        let text = std::fs::read_to_string(&self.log)
            .with_context(|| format!("failed to read {}", self.log.display()))?;
        Ok(text.lines().filter_map(LogEvent::parse).collect())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One line of the operator's JSON log.
pub struct LogEvent {
    /// When it was logged, by the operator's clock (the machine's wall clock).
    pub at: SystemTime,
    pub message: String,
    pub fields: Value,
}

impl LogEvent {
    fn parse(line: &str) -> Option<LogEvent> {
        let value: Value = serde_json::from_str(line).ok()?;
        let stamp: k8s_openapi::jiff::Timestamp = value["timestamp"].as_str()?.parse().ok()?;
        let at = SystemTime::from(stamp);
        let fields = value["fields"].clone();
        Some(LogEvent {
            at,
            message: fields["message"].as_str()?.to_string(),
            fields,
        })
    }
}

/// The PASS/FAIL line for how the watch ended: exit status 0 on SIGTERM.
pub fn check_stopped(stopped: &anyhow::Result<ExitStatus>) -> bool {
    super::check(
        matches!(stopped, Ok(status) if status.success()),
        &format!(
            "the watch stopped on SIGTERM with exit status 0 ({})",
            match stopped {
                Ok(status) => status.to_string(),
                Err(error) => format!("{error:#}"),
            }
        ),
    )
}

/// The start and end of each pass, in order, from the log's "starting a pass" and
/// "pass finished" lines.
pub fn pass_times(events: &[LogEvent]) -> Vec<(SystemTime, Option<SystemTime>)> {
    let mut passes: Vec<(SystemTime, Option<SystemTime>)> = Vec::new();
    for event in events {
        match event.message.as_str() {
            "starting a pass" => passes.push((event.at, None)),
            "pass finished" => {
                if let Some(last) = passes.last_mut().filter(|p| p.1.is_none()) {
                    last.1 = Some(event.at);
                }
            }
            _ => {}
        }
    }
    passes
}

/// A process's memory and CPU, from `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Resident memory now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident memory so far (VmHWM).
    pub peak_kib: u64,
    /// User and system CPU time so far.
    pub cpu_seconds: f64,
}

pub fn usage(pid: u32, ticks_per_second: f64) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("failed to read /proc/{pid}/status"))?;
    let kib = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no {name}"))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("failed to read /proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces), from field 3 (state):
    // utime and stime are fields 14 and 15, in clock ticks.
    let after_name: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        after_name
            .get(index)
            .and_then(|t| t.parse::<f64>().ok())
            .with_context(|| format!("/proc/{pid}/stat is not as expected: {stat}"))
    };
    Ok(Usage {
        rss_kib: kib("VmRSS:")?,
        peak_kib: kib("VmHWM:")?,
        cpu_seconds: (ticks(11)? + ticks(12)?) / ticks_per_second,
    })
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The policy file `watch` runs: `extra` is YAML indented under `spec:`.
pub fn write_policy(
    path: &Path,
    region: &str,
    detector: &str,
    mode: &str,
    interval: &str,
    extra: &str,
) -> anyhow::Result<()> {
    std::fs::write(
        path,
        format!(
            "apiVersion: guardduty.security.dev/v1alpha1\nkind: GuardDutyPolicy\nmetadata:\n  \
             name: bench\nspec:\n  region: {region}\n  detectorId: {detector}\n  \
             trustedCidrs: [10.0.0.0/8, 2001:db8::/32]\n  remediation:\n    mode: {mode}\n  \
             interval: {interval}\n{extra}"
        ),
    )
    .with_context(|| format!("failed to write {}", path.display()))
}

/// API calls per operation of a report line (`apiCalls`).
pub fn api_calls(report: &Value) -> std::collections::BTreeMap<String, u64> {
    report["apiCalls"]
        .as_object()
        .map(|calls| {
            calls
                .iter()
                .map(|(op, n)| (op.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Why a report line shows a pass that did not complete, if it does.
pub fn pass_problem(report: &Value) -> Option<String> {
    if report.is_null() {
        return Some("a report line that is not JSON".into());
    }
    if let Some(failure) = report["failures"].as_array().and_then(|f| f.first()) {
        return Some(format!("a step failed: {failure}"));
    }
    let failed = report["outcomes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| {
            ["remember", "authorize", "revoke"]
                .iter()
                .any(|step| o[step]["result"] == "failed" || o[step]["result"] == "notRun")
        })
        .count();
    (failed > 0).then(|| format!("{failed} group change(s) did not complete"))
}
