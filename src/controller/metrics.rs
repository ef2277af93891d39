//! The controller's Prometheus metrics: a `prometheus-client` registry written by
//! reconciles and the leader election, encoded in the text exposition format 0.0.4
//! ([`Metrics::render`]), which every Prometheus-compatible scraper reads.
//!
//! Label cardinality is bounded: failure categories, step results and channel kinds
//! are fixed sets, and the per-policy series (findings by severity band, readiness,
//! last pass, interval) exist only for live policies: a deleted policy's series go
//! with it ([`Metrics::forget`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::controller::outcome::Outcome;
use crate::controller::status::{ConditionStatus, READY};
use crate::domain::compliance::{self, ControlStatus};
use crate::domain::outcome::{PassReport, StepResult};
use crate::domain::severity::SeverityBand;
use crate::notify::dispatch::{DeliveryResult, NotifyReport};
use crate::spec::GuardDutyPolicyStatus;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The upper bounds of the reconcile duration histogram, in seconds: from a requeue
/// that returns at once to a pass over many regions that waits out throttling.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Severity bands, in the order and spelling of the `severity` label.
const BANDS: [(SeverityBand, &str); 4] = [
    (SeverityBand::Low, "low"),
    (SeverityBand::Medium, "medium"),
    (SeverityBand::High, "high"),
    (SeverityBand::Critical, "critical"),
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    policy: String,
    severity: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    channel: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsCallLabels {
    operation: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComplianceLabels {
    policy: String,
    framework: String,
    state: &'static str,
}

/// The states of a control, as the `state` label writes them.
const CONTROL_STATES: [ControlStatus; 3] = [
    ControlStatus::Met,
    ControlStatus::NotMet,
    ControlStatus::NotApplicable,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// The shared registry: every method updates atomics (or takes a short lock).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<CategoryLabels, Counter>,
    duration: Histogram,
    findings: Family<FindingLabels, Gauge>,
    actions: Family<ActionLabels, Counter>,
    alerts: Family<AlertLabels, Counter>,
    aws_calls: Family<AwsCallLabels, Counter>,
    /// Held while the AWS call totals are turned into increments.
    aws_calls_update: Mutex<()>,
    policy_ready: Family<PolicyLabels, Gauge>,
    last_pass: Family<PolicyLabels, Gauge>,
    pass_interval: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
    compliance: Family<ComplianceLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    /// The operator's metrics, this build's version and git revision among them.
    fn default() -> Self {
        Metrics::new(env!("CARGO_PKG_VERSION"), env!("GDO_GIT_REVISION"))
    }
}

impl Metrics {
    /// A registry whose `build_info` says `version` and `revision`.
    pub fn new(version: &'static str, revision: &'static str) -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("guardduty_operator"),
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS),
            findings: Family::default(),
            actions: Family::default(),
            alerts: Family::default(),
            aws_calls: Family::default(),
            aws_calls_update: Mutex::new(()),
            policy_ready: Family::default(),
            last_pass: Family::default(),
            pass_interval: Family::default(),
            compliance: Family::default(),
            leader: Gauge::default(),
        };
        let registry = &mut metrics.registry;
        // The help texts have no final full stop: the registry adds one.
        registry.register(
            "reconciles",
            "Reconciles of GuardDutyPolicies",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles and failed pass steps, by error category",
            metrics.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in reconciles",
            metrics.duration.clone(),
        );
        registry.register(
            "findings",
            "Findings the last pass of each policy read, by severity band",
            metrics.findings.clone(),
        );
        registry.register(
            "actions",
            "Security group change steps, by kind and result",
            metrics.actions.clone(),
        );
        registry.register(
            "alerts",
            "Alerts by channel kind and result (delivered, failed, skipped until the next pass)",
            metrics.alerts.clone(),
        );
        registry.register(
            "aws_api_calls",
            "AWS API requests, retries included, by operation and outcome",
            metrics.aws_calls.clone(),
        );
        registry.register(
            "policy_ready",
            "Whether each policy's Ready condition is True (1) or not (0)",
            metrics.policy_ready.clone(),
        );
        registry.register(
            "last_pass_timestamp_seconds",
            "When each policy's last full pass read its findings, in Unix seconds",
            metrics.last_pass.clone(),
        );
        registry.register(
            "pass_interval_seconds",
            "Each valid policy's spec.interval: how often a full pass is due",
            metrics.pass_interval.clone(),
        );
        registry.register(
            "compliance_controls",
            "Controls of each compliance framework by state (Met, NotMet, NotApplicable), \
             as each policy's status.compliance judges them",
            metrics.compliance.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica holds the leader lease and reconciles (1) or stands by (0)",
            metrics.leader.clone(),
        );
        registry.register(
            "build",
            "The operator's version and git revision",
            Info::new(BuildLabels { version, revision }),
        );
        metrics
    }

    /// One reconcile, whatever its result, and how long it took.
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// A failed reconcile or pass, by error category.
    pub fn failed(&self, category: &str) {
        self.failures
            .get_or_create(&CategoryLabels {
                category: category.to_string(),
            })
            .inc();
    }

    /// What one reconcile got to: its failures by category, its pass and its alerts.
    pub fn record(&self, policy: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Invalid(_) | Outcome::NamespaceNotAllowed { .. } => {}
            Outcome::SetupFailed(error) => self.failed(error.category()),
            Outcome::Passed { report, alerts, .. } => {
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

    /// Where a policy stands after a reconcile, from the status written: Ready or
    /// not, when its findings were last read, and its interval (`None` for an invalid
    /// spec, which runs no pass: its interval series goes, so that no "pass overdue"
    /// alert doubles the "not Ready" one).
    pub fn policy(&self, policy: &str, status: &GuardDutyPolicyStatus, interval: Option<Duration>) {
        let labels = PolicyLabels {
            policy: policy.to_string(),
        };
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .is_some_and(|c| ConditionStatus::of(c) == ConditionStatus::True);
        self.policy_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
        match &status.last_sync_time {
            Some(synced) => {
                self.last_pass
                    .get_or_create(&labels)
                    .set(synced.0.as_second());
            }
            None => {
                self.last_pass.remove(&labels);
            }
        }
        match interval {
            Some(interval) => {
                self.pass_interval
                    .get_or_create(&labels)
                    .set(interval.as_secs_f64());
            }
            None => {
                self.pass_interval.remove(&labels);
            }
        }
        // Claims go when the status makes none (no pass of the current spec).
        self.forget_compliance(policy);
        for framework in &status.compliance {
            for state in CONTROL_STATES {
                self.compliance
                    .get_or_create(&ComplianceLabels {
                        policy: policy.to_string(),
                        framework: framework.id.clone(),
                        state: state.as_str(),
                    })
                    .set(framework.count(state) as i64);
            }
        }
    }

    /// Removes a policy's compliance series, for every framework of the catalogue.
    fn forget_compliance(&self, policy: &str) {
        for framework in &compliance::catalogue().frameworks {
            for state in CONTROL_STATES {
                self.compliance.remove(&ComplianceLabels {
                    policy: policy.to_string(),
                    framework: framework.id.clone(),
                    state: state.as_str(),
                });
            }
        }
    }

    /// Whether this replica leads (and so reconciles).
    pub fn leading(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    /// What a policy's pass found and did: findings by band (when the pass read
    /// them) and the result of every authorize and revoke step.
    pub fn pass(&self, policy: &str, report: &PassReport) {
        // An event's pass sees a few findings, not the policy's whole count.
        if report.findings_read() && !report.targeted {
            let mut counts = [0; 4];
            for finding in &report.findings {
                let band = finding.severity.band();
                if let Some(i) = BANDS.iter().position(|(b, _)| *b == band) {
                    counts[i] += 1;
                }
            }
            for ((_, severity), n) in BANDS.iter().zip(counts) {
                self.findings
                    .get_or_create(&FindingLabels {
                        policy: policy.to_string(),
                        severity,
                    })
                    .set(n);
            }
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
                self.actions
                    .get_or_create(&ActionLabels { kind, result })
                    .inc();
            }
        }
    }

    /// The fate of a pass's alerts, by channel kind.
    pub fn alerts(&self, notified: &NotifyReport) {
        for delivery in &notified.deliveries {
            let result = match delivery.result {
                DeliveryResult::Delivered { .. } => "delivered",
                DeliveryResult::Failed { .. } => "failed",
                DeliveryResult::Skipped { .. } => "skipped",
                DeliveryResult::WouldSend => continue,
            };
            self.alerts
                .get_or_create(&AlertLabels {
                    channel: delivery.kind,
                    result,
                })
                .inc();
        }
    }

    /// The AWS calls counted so far (running totals, which only grow): each counter
    /// is raised to its total.
    pub fn set_aws_calls(&self, calls: BTreeMap<(String, &'static str), u64>) {
        let _one_at_a_time = self
            .aws_calls_update
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for ((operation, outcome), total) in calls {
            let counter = self
                .aws_calls
                .get_or_create(&AwsCallLabels { operation, outcome });
            let counted = counter.get();
            if total > counted {
                counter.inc_by(total - counted);
            }
        }
    }

    /// A deleted policy: its series go.
    pub fn forget(&self, policy: &str) {
        for (_, severity) in BANDS {
            self.findings.remove(&FindingLabels {
                policy: policy.to_string(),
                severity,
            });
        }
        let labels = PolicyLabels {
            policy: policy.to_string(),
        };
        self.policy_ready.remove(&labels);
        self.last_pass.remove(&labels);
        self.pass_interval.remove(&labels);
        self.forget_compliance(policy);
    }

    /// The metrics in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    /// The text with each family's samples sorted: a family keeps its series in a
    /// hash map, so their order is not fixed (Prometheus does not mind).
    fn sorted_samples(text: &str) -> String {
        let mut out = Vec::new();
        let mut samples: Vec<&str> = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                samples.sort_unstable();
                out.append(&mut samples);
                out.push(line);
            } else {
                samples.push(line);
            }
        }
        samples.sort_unstable();
        out.append(&mut samples);
        out.join("\n")
    }

    fn band(m: &Metrics, policy: &str, severity: &'static str) -> Option<i64> {
        m.findings
            .get(&FindingLabels {
                policy: policy.to_string(),
                severity,
            })
            .map(|g| g.get())
    }

    fn per_policy(family: &Family<PolicyLabels, Gauge>, policy: &str) -> Option<i64> {
        family
            .get(&PolicyLabels {
                policy: policy.to_string(),
            })
            .map(|g| g.get())
    }

    fn status(ready: &str, synced_at: Option<i64>) -> GuardDutyPolicyStatus {
        let at = |seconds| Time(Timestamp::from_second(seconds).unwrap());
        GuardDutyPolicyStatus {
            conditions: vec![Condition {
                type_: READY.to_string(),
                status: ready.to_string(),
                reason: "Ready".to_string(),
                message: String::new(),
                last_transition_time: at(0),
                observed_generation: None,
            }],
            last_sync_time: synced_at.map(at),
            ..GuardDutyPolicyStatus::default()
        }
    }

    #[test]
    fn renders_a_small_registry_exactly() {
        let m = Metrics::new("1.2.3", "abc123");
        for took in [250, 250, 1000] {
            m.reconciled(Duration::from_millis(took));
        }
        m.failed("throttled");
        m.failed("throttled");
        for (severity, n) in [("low", 1), ("medium", 0), ("high", 2), ("critical", 0)] {
            m.findings
                .get_or_create(&FindingLabels {
                    policy: "ns/a\"b".into(),
                    severity,
                })
                .set(n);
        }
        m.actions
            .get_or_create(&ActionLabels {
                kind: "revoke",
                result: "done",
            })
            .inc_by(4);
        m.actions
            .get_or_create(&ActionLabels {
                kind: "authorize",
                result: "failed",
            })
            .inc();
        m.alerts
            .get_or_create(&AlertLabels {
                channel: "slack",
                result: "delivered",
            })
            .inc_by(2);
        m.set_aws_calls([(("EC2.DescribeInstances".into(), "success"), 7)].into());
        m.policy(
            "ns/p",
            &status("True", Some(1_700_000_000)),
            Some(Duration::from_secs(300)),
        );
        m.leading(true);
        let expected = r#"# HELP guardduty_operator_reconciles_total Reconciles of GuardDutyPolicies.
# TYPE guardduty_operator_reconciles_total counter
guardduty_operator_reconciles_total 3
# HELP guardduty_operator_reconcile_failures_total Failed reconciles and failed pass steps, by error category.
# TYPE guardduty_operator_reconcile_failures_total counter
guardduty_operator_reconcile_failures_total{category="throttled"} 2
# HELP guardduty_operator_reconcile_duration_seconds Time spent in reconciles.
# TYPE guardduty_operator_reconcile_duration_seconds histogram
guardduty_operator_reconcile_duration_seconds_bucket{le="0.01"} 0
guardduty_operator_reconcile_duration_seconds_bucket{le="0.05"} 0
guardduty_operator_reconcile_duration_seconds_bucket{le="0.1"} 0
guardduty_operator_reconcile_duration_seconds_bucket{le="0.25"} 2
guardduty_operator_reconcile_duration_seconds_bucket{le="0.5"} 2
guardduty_operator_reconcile_duration_seconds_bucket{le="1"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="2.5"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="5"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="10"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="30"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="60"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="120"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="300"} 3
guardduty_operator_reconcile_duration_seconds_bucket{le="+Inf"} 3
guardduty_operator_reconcile_duration_seconds_sum 1.5
guardduty_operator_reconcile_duration_seconds_count 3
# HELP guardduty_operator_findings Findings the last pass of each policy read, by severity band.
# TYPE guardduty_operator_findings gauge
guardduty_operator_findings{policy="ns/a\"b",severity="low"} 1
guardduty_operator_findings{policy="ns/a\"b",severity="medium"} 0
guardduty_operator_findings{policy="ns/a\"b",severity="high"} 2
guardduty_operator_findings{policy="ns/a\"b",severity="critical"} 0
# HELP guardduty_operator_actions_total Security group change steps, by kind and result.
# TYPE guardduty_operator_actions_total counter
guardduty_operator_actions_total{kind="authorize",result="failed"} 1
guardduty_operator_actions_total{kind="revoke",result="done"} 4
# HELP guardduty_operator_alerts_total Alerts by channel kind and result (delivered, failed, skipped until the next pass).
# TYPE guardduty_operator_alerts_total counter
guardduty_operator_alerts_total{channel="slack",result="delivered"} 2
# HELP guardduty_operator_aws_api_calls_total AWS API requests, retries included, by operation and outcome.
# TYPE guardduty_operator_aws_api_calls_total counter
guardduty_operator_aws_api_calls_total{operation="EC2.DescribeInstances",outcome="success"} 7
# HELP guardduty_operator_policy_ready Whether each policy's Ready condition is True (1) or not (0).
# TYPE guardduty_operator_policy_ready gauge
guardduty_operator_policy_ready{policy="ns/p"} 1
# HELP guardduty_operator_last_pass_timestamp_seconds When each policy's last full pass read its findings, in Unix seconds.
# TYPE guardduty_operator_last_pass_timestamp_seconds gauge
guardduty_operator_last_pass_timestamp_seconds{policy="ns/p"} 1700000000
# HELP guardduty_operator_pass_interval_seconds Each valid policy's spec.interval: how often a full pass is due.
# TYPE guardduty_operator_pass_interval_seconds gauge
guardduty_operator_pass_interval_seconds{policy="ns/p"} 300.0
# HELP guardduty_operator_leader Whether this replica holds the leader lease and reconciles (1) or stands by (0).
# TYPE guardduty_operator_leader gauge
guardduty_operator_leader 1
# HELP guardduty_operator_build_info The operator's version and git revision.
# TYPE guardduty_operator_build_info gauge
guardduty_operator_build_info{version="1.2.3",revision="abc123"} 1
"#;
        assert_eq!(sorted_samples(&m.render()), sorted_samples(expected));
    }

    #[test]
    fn a_fresh_registry_says_standby_and_has_no_policy_series() {
        let text = Metrics::default().render();
        assert!(text.contains("\nguardduty_operator_leader 0\n"), "{text}");
        assert!(
            text.contains(&format!(
                "\nguardduty_operator_build_info{{version=\"{}\",revision=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION"),
                env!("GDO_GIT_REVISION")
            )),
            "{text}"
        );
        assert!(!text.contains("{policy="), "{text}");
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
            security_hub: Vec::new(),
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
            quiet: Vec::new(),
            settled: Vec::new(),
        };
        let m = Metrics::default();
        m.pass("ns/p", &report);
        for severity in ["low", "medium", "high", "critical"] {
            assert_eq!(band(&m, "ns/p", severity), Some(0), "{severity}");
        }
        let action = |kind, result| {
            m.actions
                .get(&ActionLabels { kind, result })
                .map(|c| c.get())
        };
        assert_eq!(action("authorize", "failed"), Some(1));
        assert_eq!(action("revoke", "done"), Some(1));
        assert_eq!(action("revoke", "not_run"), Some(1));
        let text = m.render();
        let actions = text
            .lines()
            .filter(|l| l.starts_with("guardduty_operator_actions_total{"));
        assert_eq!(actions.count(), 3, "{text}");

        // A pass that could not read findings leaves the last counts alone.
        m.findings
            .get_or_create(&FindingLabels {
                policy: "ns/p".into(),
                severity: "high",
            })
            .set(3);
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
        assert_eq!(band(&m, "ns/p", "high"), Some(3));
    }

    #[test]
    fn the_policy_series_follow_the_status_and_an_invalid_spec_drops_the_interval() {
        let m = Metrics::default();
        let interval = Some(Duration::from_secs(60));
        m.policy("ns/p", &status("True", Some(100)), interval);
        assert_eq!(per_policy(&m.policy_ready, "ns/p"), Some(1));
        assert_eq!(per_policy(&m.last_pass, "ns/p"), Some(100));
        let interval_of = |m: &Metrics| {
            m.pass_interval
                .get(&PolicyLabels {
                    policy: "ns/p".into(),
                })
                .map(|g| g.get())
        };
        assert_eq!(interval_of(&m), Some(60.0));

        // A failed pass: not Ready, the last sync kept.
        m.policy("ns/p", &status("False", Some(100)), interval);
        assert_eq!(per_policy(&m.policy_ready, "ns/p"), Some(0));
        assert_eq!(per_policy(&m.last_pass, "ns/p"), Some(100));

        // An invalid spec runs no pass: not Ready, and no interval to be overdue by.
        m.policy("ns/p", &status("False", Some(100)), None);
        assert_eq!(per_policy(&m.policy_ready, "ns/p"), Some(0));
        assert_eq!(interval_of(&m), None);

        // A status without Ready (nothing decided yet) is not Ready.
        m.policy("ns/q", &GuardDutyPolicyStatus::default(), interval);
        assert_eq!(per_policy(&m.policy_ready, "ns/q"), Some(0));
        assert_eq!(per_policy(&m.last_pass, "ns/q"), None);
    }

    #[test]
    fn the_compliance_series_count_controls_per_state_and_go_with_the_claims() {
        use crate::domain::compliance::{Facts, evaluate};
        let m = Metrics::default();
        let count = |m: &Metrics, framework: &str, state: ControlStatus| {
            m.compliance
                .get(&ComplianceLabels {
                    policy: "ns/p".into(),
                    framework: framework.into(),
                    state: state.as_str(),
                })
                .map(|g| g.get())
        };
        let mut judged = status("True", Some(100));
        judged.compliance = evaluate(
            compliance::catalogue(),
            &Facts::all().with(compliance::Condition::RemediationEnforced, false),
        );
        m.policy("ns/p", &judged, Some(Duration::from_secs(60)));
        let nist = &judged.compliance[2];
        assert_eq!(nist.id, "nist-800-53-r5");
        let not_met = nist.count(ControlStatus::NotMet) as i64;
        assert!(not_met > 0, "IR-4(1) needs Enforce");
        assert_eq!(
            count(&m, "nist-800-53-r5", ControlStatus::NotMet),
            Some(not_met)
        );
        assert_eq!(
            count(&m, "nist-800-53-r5", ControlStatus::Met),
            Some(nist.controls.len() as i64 - not_met)
        );
        assert!(m.render().contains(
            "guardduty_operator_compliance_controls{policy=\"ns/p\",framework=\"mas-trm\",state=\"Met\"}"
        ));

        // A status that claims nothing (an invalid spec) leaves no series behind.
        m.policy("ns/p", &status("False", Some(100)), None);
        assert_eq!(count(&m, "nist-800-53-r5", ControlStatus::NotMet), None);
        m.policy("ns/p", &judged, None);
        m.forget("ns/p");
        assert_eq!(count(&m, "mas-trm", ControlStatus::Met), None);
    }

    #[test]
    fn records_reconciles_failures_and_forgets_deleted_policies() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(500));
        m.reconciled(Duration::from_millis(250));
        m.failed("patch-status");
        m.findings
            .get_or_create(&FindingLabels {
                policy: "ns/p".into(),
                severity: "low",
            })
            .set(1);
        m.policy(
            "ns/p",
            &status("True", Some(100)),
            Some(Duration::from_secs(60)),
        );
        m.policy(
            "ns/other",
            &status("True", Some(100)),
            Some(Duration::from_secs(60)),
        );
        m.forget("ns/p");
        assert_eq!(m.reconciles.get(), 2);
        let text = m.render();
        assert!(
            text.contains("\nguardduty_operator_reconcile_duration_seconds_sum 0.75\n"),
            "{text}"
        );
        assert!(
            text.contains("\nguardduty_operator_reconcile_duration_seconds_count 2\n"),
            "{text}"
        );
        let patch_status = m.failures.get(&CategoryLabels {
            category: "patch-status".into(),
        });
        assert_eq!(patch_status.map(|c| c.get()), Some(1));
        assert!(!text.contains("ns/p\""), "{text}");
        assert!(
            text.contains("\nguardduty_operator_policy_ready{policy=\"ns/other\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn aws_call_totals_raise_the_counters_to_the_total_once() {
        let m = Metrics::default();
        let totals = |n| BTreeMap::from([(("EC2.DescribeSecurityGroups".to_string(), "error"), n)]);
        m.set_aws_calls(totals(2));
        m.set_aws_calls(totals(2));
        m.set_aws_calls(totals(5));
        let counted = m.aws_calls.get(&AwsCallLabels {
            operation: "EC2.DescribeSecurityGroups".into(),
            outcome: "error",
        });
        assert_eq!(counted.map(|c| c.get()), Some(5));
    }
}
