//! The controller's Prometheus metrics: a small registry written by reconciles and
//! rendered in the text exposition format 0.0.4 by a pure function ([`render`]).
//!
//! Label cardinality is bounded: failure categories and step results are fixed sets,
//! and the findings gauge has one series per severity band per live policy (a deleted
//! policy's series go with it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::controller::outcome::Outcome;
use crate::domain::outcome::{PassReport, StepResult};
use crate::domain::severity::SeverityBand;
use crate::notify::dispatch::{DeliveryResult, NotifyReport};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Severity bands, in the order and spelling of the `severity` label.
const BANDS: [(SeverityBand, &str); 4] = [
    (SeverityBand::Low, "low"),
    (SeverityBand::Medium, "medium"),
    (SeverityBand::High, "high"),
    (SeverityBand::Critical, "critical"),
];

/// Everything the metrics hold at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub reconciles: u64,
    /// Failures by error category.
    pub failures: BTreeMap<String, u64>,
    pub duration_sum_seconds: f64,
    pub duration_count: u64,
    /// Findings of each policy's last pass (`namespace/name`), by band (low → critical).
    pub findings: BTreeMap<String, [u64; 4]>,
    /// Group change steps by (`authorize`|`revoke`, `done`|`failed`|`not_run`).
    pub actions: BTreeMap<(&'static str, &'static str), u64>,
    /// Alerts by (channel kind, `delivered`|`failed`|`skipped`).
    pub alerts: BTreeMap<(&'static str, &'static str), u64>,
    /// AWS API calls by (`Service.Operation`, `success`|`error`), from the SDK clients.
    pub aws_calls: BTreeMap<(String, &'static str), u64>,
}

/// The shared registry; every method takes a short lock.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<Snapshot>);

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn snapshot(&self) -> Snapshot {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One reconcile, whatever its result, and how long it took.
    pub fn reconciled(&self, took: Duration) {
        self.with(|s| {
            s.reconciles += 1;
            s.duration_sum_seconds += took.as_secs_f64();
            s.duration_count += 1;
        });
    }

    /// A failed reconcile or pass, by error category.
    pub fn failed(&self, category: &str) {
        self.with(|s| *s.failures.entry(category.to_string()).or_default() += 1);
    }

    /// What one reconcile got to: its failures by category, its pass and its alerts.
    pub fn record(&self, policy: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Invalid(_) | Outcome::NamespaceNotAllowed { .. } => {}
            Outcome::SetupFailed(error) => self.failed(error.category()),
            Outcome::Passed { report, alerts } => {
                self.pass(policy, report);
                for failure in &report.failures {
                    self.failed(failure.category.as_str());
                }
                if let Some(alerts) = alerts {
                    self.alerts(alerts);
                }
            }
        }
    }

    /// What a policy's pass found and did: findings by band (when the pass read
    /// them) and the result of every authorize and revoke step.
    pub fn pass(&self, policy: &str, report: &PassReport) {
        // An event's pass sees a few findings, not the policy's whole count.
        let read_findings = report.findings_read() && !report.targeted;
        self.with(|s| {
            if read_findings {
                let mut counts = [0; 4];
                for finding in &report.findings {
                    let band = finding.severity.band();
                    if let Some(i) = BANDS.iter().position(|(b, _)| *b == band) {
                        counts[i] += 1;
                    }
                }
                s.findings.insert(policy.to_string(), counts);
            }
            for outcome in &report.outcomes {
                for (kind, result) in [
                    ("authorize", &outcome.authorize),
                    ("revoke", &outcome.revoke),
                ] {
                    let result = match result {
                        StepResult::NotNeeded => continue,
                        StepResult::Done { .. } => "done",
                        StepResult::Failed { .. } => "failed",
                        StepResult::NotRun { .. } => "not_run",
                    };
                    *s.actions.entry((kind, result)).or_default() += 1;
                }
            }
        });
    }

    /// The fate of a pass's alerts, by channel kind.
    pub fn alerts(&self, notified: &NotifyReport) {
        self.with(|s| {
            for delivery in &notified.deliveries {
                let result = match delivery.result {
                    DeliveryResult::Delivered { .. } => "delivered",
                    DeliveryResult::Failed { .. } => "failed",
                    DeliveryResult::Skipped { .. } => "skipped",
                    DeliveryResult::WouldSend => continue,
                };
                *s.alerts.entry((delivery.kind, result)).or_default() += 1;
            }
        });
    }

    /// The AWS calls counted so far (a running total, replaced whole).
    pub fn set_aws_calls(&self, calls: BTreeMap<(String, &'static str), u64>) {
        self.with(|s| s.aws_calls = calls);
    }

    /// A deleted policy: its findings series go.
    pub fn forget(&self, policy: &str) {
        self.with(|s| {
            s.findings.remove(policy);
        });
    }

    pub fn render(&self) -> String {
        render(&self.snapshot())
    }
}

/// A label value escaped per the text format: `\`, `"` and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics in the Prometheus text format 0.0.4.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let name = "guardduty_operator_reconciles_total";
    header(
        &mut out,
        name,
        "counter",
        "Reconciles of GuardDutyPolicies.",
    );
    let _ = writeln!(out, "{name} {}", s.reconciles);

    let name = "guardduty_operator_reconcile_failures_total";
    header(
        &mut out,
        name,
        "counter",
        "Failed reconciles and failed pass steps, by error category.",
    );
    for (category, n) in &s.failures {
        let _ = writeln!(out, "{name}{{category=\"{}\"}} {n}", escape(category));
    }

    let name = "guardduty_operator_reconcile_duration_seconds";
    header(&mut out, name, "summary", "Time spent in reconciles.");
    let _ = writeln!(out, "{name}_sum {}", s.duration_sum_seconds);
    let _ = writeln!(out, "{name}_count {}", s.duration_count);

    let name = "guardduty_operator_findings";
    header(
        &mut out,
        name,
        "gauge",
        "Findings the last pass of each policy read, by severity band.",
    );
    for (policy, counts) in &s.findings {
        for ((_, band), n) in BANDS.iter().zip(counts) {
            let _ = writeln!(
                out,
                "{name}{{policy=\"{}\",severity=\"{band}\"}} {n}",
                escape(policy)
            );
        }
    }

    let name = "guardduty_operator_actions_total";
    header(
        &mut out,
        name,
        "counter",
        "Security group change steps, by kind and result.",
    );
    for ((kind, result), n) in &s.actions {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\",result=\"{result}\"}} {n}");
    }

    let name = "guardduty_operator_alerts_total";
    header(
        &mut out,
        name,
        "counter",
        "Alerts by channel kind and result (delivered, failed, skipped until the next pass).",
    );
    for ((channel, result), n) in &s.alerts {
        let _ = writeln!(
            out,
            "{name}{{channel=\"{channel}\",result=\"{result}\"}} {n}"
        );
    }

    let name = "guardduty_operator_aws_api_calls_total";
    header(
        &mut out,
        name,
        "counter",
        "AWS API requests, retries included, by operation and outcome.",
    );
    for ((operation, outcome), n) in &s.aws_calls {
        let _ = writeln!(
            out,
            "{name}{{operation=\"{}\",outcome=\"{outcome}\"}} {n}",
            escape(operation)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_small_registry_exactly() {
        let mut s = Snapshot {
            reconciles: 3,
            duration_sum_seconds: 1.5,
            duration_count: 3,
            ..Snapshot::default()
        };
        s.failures.insert("throttled".into(), 2);
        s.findings.insert("ns/a\"b".into(), [1, 0, 2, 0]);
        s.actions.insert(("revoke", "done"), 4);
        s.actions.insert(("authorize", "failed"), 1);
        s.alerts.insert(("slack", "delivered"), 2);
        s.aws_calls
            .insert(("EC2.DescribeInstances".into(), "success"), 7);
        let expected = "\
# HELP guardduty_operator_reconciles_total Reconciles of GuardDutyPolicies.
# TYPE guardduty_operator_reconciles_total counter
guardduty_operator_reconciles_total 3
# HELP guardduty_operator_reconcile_failures_total Failed reconciles and failed pass steps, by error category.
# TYPE guardduty_operator_reconcile_failures_total counter
guardduty_operator_reconcile_failures_total{category=\"throttled\"} 2
# HELP guardduty_operator_reconcile_duration_seconds Time spent in reconciles.
# TYPE guardduty_operator_reconcile_duration_seconds summary
guardduty_operator_reconcile_duration_seconds_sum 1.5
guardduty_operator_reconcile_duration_seconds_count 3
# HELP guardduty_operator_findings Findings the last pass of each policy read, by severity band.
# TYPE guardduty_operator_findings gauge
guardduty_operator_findings{policy=\"ns/a\\\"b\",severity=\"low\"} 1
guardduty_operator_findings{policy=\"ns/a\\\"b\",severity=\"medium\"} 0
guardduty_operator_findings{policy=\"ns/a\\\"b\",severity=\"high\"} 2
guardduty_operator_findings{policy=\"ns/a\\\"b\",severity=\"critical\"} 0
# HELP guardduty_operator_actions_total Security group change steps, by kind and result.
# TYPE guardduty_operator_actions_total counter
guardduty_operator_actions_total{kind=\"authorize\",result=\"failed\"} 1
guardduty_operator_actions_total{kind=\"revoke\",result=\"done\"} 4
# HELP guardduty_operator_alerts_total Alerts by channel kind and result (delivered, failed, skipped until the next pass).
# TYPE guardduty_operator_alerts_total counter
guardduty_operator_alerts_total{channel=\"slack\",result=\"delivered\"} 2
# HELP guardduty_operator_aws_api_calls_total AWS API requests, retries included, by operation and outcome.
# TYPE guardduty_operator_aws_api_calls_total counter
guardduty_operator_aws_api_calls_total{operation=\"EC2.DescribeInstances\",outcome=\"success\"} 7
";
        assert_eq!(render(&s), expected);
    }

    #[test]
    fn a_pass_records_actions_and_keeps_findings_when_none_were_read() {
        use crate::domain::ids::SecurityGroupId;
        use crate::domain::outcome::{Category, GroupOutcome, Step};
        use crate::domain::policy::Mode;

        let group = SecurityGroupId::parse("sg-1").unwrap();
        let outcome = |authorize, revoke| GroupOutcome {
            group: group.clone(),
            remember: StepResult::NotNeeded,
            authorize,
            revoke,
        };
        let mut report = PassReport {
            mode: Mode::Enforce,
            regions: vec!["us-east-1".into()],
            listed: Default::default(),
            targeted: false,
            feedback: Vec::new(),
            detectors: [("us-east-1".to_string(), "d".to_string())].into(),
            findings: Vec::new(),
            plan: None,
            applied: true,
            outcomes: vec![
                outcome(
                    StepResult::NotNeeded,
                    StepResult::Done {
                        rules: 1,
                        rule_ids: Vec::new(),
                    },
                ),
                outcome(
                    StepResult::Failed {
                        category: Category::Throttled,
                        error: "slow down".into(),
                    },
                    StepResult::NotRun {
                        reason: "authorize failed".into(),
                    },
                ),
            ],
            archived: Vec::new(),
            failures: Vec::new(),
            record: Default::default(),
        };
        let m = Metrics::default();
        m.pass("ns/p", &report);
        let s = m.snapshot();
        assert_eq!(s.findings.get("ns/p"), Some(&[0, 0, 0, 0]));
        let actions: Vec<_> = s.actions.into_iter().collect();
        assert_eq!(
            actions,
            [
                (("authorize", "failed"), 1),
                (("revoke", "done"), 1),
                (("revoke", "not_run"), 1),
            ]
        );

        // A pass that could not read findings leaves the last counts alone.
        m.with(|s| {
            s.findings.insert("ns/p".into(), [1, 2, 3, 4]);
        });
        report.outcomes.clear();
        report.failures = vec![
            crate::domain::outcome::Failure::new(
                Step::ReadFindings,
                Category::Throttled,
                "slow down",
            )
            .in_region("us-east-1"),
        ];
        m.pass("ns/p", &report);
        assert_eq!(m.snapshot().findings.get("ns/p"), Some(&[1, 2, 3, 4]));
    }

    #[test]
    fn escapes_backslash_quote_and_newline() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn records_reconciles_failures_and_forgets_deleted_policies() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(500));
        m.reconciled(Duration::from_millis(250));
        m.failed("patch-status");
        m.with(|s| {
            s.findings.insert("ns/p".into(), [1, 1, 1, 1]);
        });
        m.forget("ns/p");
        let s = m.snapshot();
        assert_eq!(s.reconciles, 2);
        assert_eq!(s.duration_count, 2);
        assert!((s.duration_sum_seconds - 0.75).abs() < 1e-9);
        assert_eq!(s.failures.get("patch-status"), Some(&1));
        assert!(s.findings.is_empty());
    }
}
