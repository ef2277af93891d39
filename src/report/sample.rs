//! Report inputs for tests, the screenshot and the benchmark (feature `testing`): a
//! realistic account after some remediation, and a large one of N findings and M
//! changes. Built from the core's fixtures and its real planner, so the responses,
//! open exposures and compliance states are the ones a real pass computes.

use std::collections::BTreeMap;

use crate::domain::alert::{Route, Seen};
use crate::domain::compliance::{self, FactInputs, FrameworkState};
use crate::domain::finding::{Action as FindingAction, Direction, Finding, InstanceRef};
use crate::domain::fixtures::World;
use crate::domain::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use crate::domain::outcome::PassReport;
use crate::domain::policy::{DEFAULT_EXEMPT_TAG, Mode, Policy};
use crate::domain::record::{ChangeRecord, RecordedRule};
use crate::domain::response::finding_responses;
use crate::domain::security_group::{
    Exposure, IngressRule, PortRange, SecurityGroup, Source, Traffic,
};
use crate::domain::severity::Severity;
use crate::domain::time::Timestamp;

use super::ReportInput;

/// The policy of the samples.
pub const POLICY: &str = "security/prod";

/// Everything a report is made from, owned.
#[derive(Debug, Clone)]
pub struct Sample {
    pub policy: String,
    pub generated_at: Timestamp,
    pub report: PassReport,
    pub responses: Vec<Seen>,
    pub record: ChangeRecord,
    pub compliance: Vec<FrameworkState>,
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).expect("a sample time")
}

/// A group the policy converged earlier: `ports` admitted from 10.0.0.0/8 only, by the
/// operator's rules, and watched.
fn converged(suffix: &str, ports: &[u16]) -> SecurityGroup {
    SecurityGroup {
        id: SecurityGroupId::parse(&format!("sg-{suffix}")).unwrap(),
        name: format!("web-{suffix}"),
        vpc_id: Some("vpc-0a1b2c3d".into()),
        tags: BTreeMap::new(),
        ingress: ports
            .iter()
            .enumerate()
            .map(|(k, port)| IngressRule {
                id: RuleId::parse(&format!("sgr-a{suffix}{k}")).unwrap(),
                traffic: Traffic::Tcp(PortRange::single(*port)),
                source: Source::Cidr("10.0.0.0/8".parse().unwrap()),
                description: Some(format!("guardduty-operator: trusted access to tcp/{port}")),
                owner: Some(POLICY.to_string()),
            })
            .collect(),
        network_interfaces: Some(1),
        watches: [(
            POLICY.to_string(),
            ports.iter().map(|p| Exposure::tcp(*p)).collect(),
        )]
        .into(),
    }
}

/// The record of one remediation: tcp/`port` revoked from 0.0.0.0/0 (rule
/// `sgr-<suffix><port>`) and authorized from 10.0.0.0/8, at `when`, for `finding`.
fn remediated(record: &mut ChangeRecord, suffix: &str, port: u16, finding: &str, when: Timestamp) {
    let rule = |cidr: &str, rule_id: Option<String>, description: String| RecordedRule {
        group: format!("sg-{suffix}"),
        account: None,
        region: Some("us-east-1".into()),
        rule_id,
        protocol: "tcp".into(),
        from_port: port,
        to_port: port,
        cidr: cidr.into(),
        description: Some(description),
        finding: Some(finding.into()),
        at: Some(when.to_string()),
    };
    record.added.push(rule(
        "10.0.0.0/8",
        Some(format!("sgr-a{suffix}{port:x}")),
        format!("guardduty-operator: trusted access to tcp/{port}"),
    ));
    record.revoked.push(rule(
        "0.0.0.0/0",
        Some(format!("sgr-{suffix}{port:x}")),
        "ssh from anywhere".into(),
    ));
}

fn probe(id: &str, instance: &str, ports: &[u16], severity: f64, first_seen: &str) -> Finding {
    let mut finding = Finding::probe(id, instance, ports);
    finding.severity = Severity::of_finding(severity).unwrap();
    finding.title = format!("Unprotected port on EC2 instance {instance} is being probed.");
    finding.first_seen = Some(first_seen.into());
    finding.last_seen = Some(first_seen.into());
    finding.updated_at = Some(first_seen.into());
    finding.count = Some(3);
    if let Some(i) = &mut finding.instance {
        i.security_groups = vec![format!("sg-{}", &instance[2..])];
    }
    finding
}

fn connection(
    id: &str,
    finding_type: &str,
    instance: &str,
    direction: Direction,
    severity: f64,
    first_seen: &str,
) -> Finding {
    Finding {
        finding_type: finding_type.into(),
        title: format!("{finding_type} activity involving EC2 instance {instance}."),
        action: FindingAction::NetworkConnection {
            direction,
            protocol: Some("TCP".into()),
            local_port: Some(22),
            remote_ip: Some("203.0.113.9".parse().unwrap()),
        },
        ..probe(id, instance, &[22], severity, first_seen)
    }
}

/// The settings of the samples' policy: Enforce, MEDIUM and above, every type, every
/// 5 minutes, one channel at HIGH; neither archiving nor Security Hub.
fn compliance_of(report: &PassReport) -> Vec<FrameworkState> {
    let channels = [Route {
        channel: "oncall".into(),
        min_severity: Severity::threshold(7.0).unwrap(),
        finding_types: Vec::new(),
    }];
    let facts = compliance::facts_of(&FactInputs {
        mode: Mode::Enforce,
        archive_remediated: false,
        security_hub_updates: false,
        min_severity: Severity::threshold(4.0).unwrap(),
        all_finding_types: true,
        interval_seconds: 300,
        channels: &channels,
        findings_read: report.findings_read(),
        alert_failed: false,
        open_exposure: compliance::exposure_remains(report),
    });
    compliance::evaluate(compliance::catalogue(), &facts)
}

impl Sample {
    fn of(world: &World, record: ChangeRecord, generated_at: Timestamp) -> Sample {
        // A read-only pass of the Enforce policy the controls are judged on (as the
        // `report` command runs it): planned, nothing applied.
        let policy = Policy::test().enforce().owned_by(POLICY);
        let mut report = world.report(&policy, |_, _| None);
        report.applied = false;
        let responses = finding_responses(&report);
        let compliance = compliance_of(&report);
        Sample {
            policy: POLICY.to_string(),
            generated_at,
            report,
            responses,
            record,
            compliance,
        }
    }

    /// Ten findings of every band and several types: four remediated earlier (f1–f4,
    /// in the record), one planned (f5), one refused (f6, an all-traffic rule), one on
    /// an exempt group (f7), and three the operator only reports (f8 a type it cannot
    /// fix, whose title holds markup; f9 a sample; f10 outbound brute force).
    pub fn realistic() -> Sample {
        let mut exempt = SecurityGroup::world_open("sg-7", Traffic::Tcp(PortRange::single(22)));
        exempt
            .tags
            .insert(DEFAULT_EXEMPT_TAG.to_string(), "bastion".into());
        let mut world = World::default()
            .with_group(converged("1", &[22]))
            .with_group(converged("2", &[22, 3389]))
            .with_group(converged("3", &[22]))
            .with_group(converged("4", &[3306]))
            .with_open_group("5", Traffic::Tcp(PortRange::single(22)))
            .with_open_group("6", Traffic::All)
            .with_group(exempt);
        let mut tor = Finding {
            finding_type: "UnauthorizedAccess:EC2/TorClient".into(),
            action: FindingAction::Other {
                action_type: Some("NETWORK_CONNECTION".into()),
            },
            ..probe("f8", "i-8", &[], 3.0, "2026-03-02T16:00:00Z")
        };
        tor.title = "EC2 instance i-8 <script>alert(\"x\")</script> & 'Tor' nodes".into();
        let mut sample_finding = probe("f9", "i-9", &[22], 1.0, "2026-03-02T17:00:00Z");
        sample_finding.sample = true;
        world.observation.findings = vec![
            probe("f4", "i-4", &[3306], 9.1, "2026-03-02T13:00:00Z"),
            probe("f2", "i-2", &[22, 3389], 8.0, "2026-03-02T11:00:00Z"),
            connection(
                "f3",
                "UnauthorizedAccess:EC2/SSHBruteForce",
                "i-3",
                Direction::Inbound,
                7.5,
                "2026-03-02T12:00:00Z",
            ),
            probe("f6", "i-6", &[22], 7.0, "2026-03-03T07:00:00Z"),
            probe("f5", "i-5", &[22], 6.0, "2026-03-03T08:00:00Z"),
            probe("f1", "i-1", &[22], 5.0, "2026-03-02T10:00:00Z"),
            connection(
                "f10",
                "UnauthorizedAccess:EC2/SSHBruteForce",
                "i-a",
                Direction::Outbound,
                5.0,
                "2026-03-02T18:00:00Z",
            ),
            tor,
            sample_finding,
            probe("f7", "i-7", &[22], 2.0, "2026-03-02T19:00:00Z"),
        ];
        let mut record = ChangeRecord::default();
        remediated(&mut record, "1", 22, "f1", at("2026-03-02T10:04:10Z"));
        remediated(&mut record, "2", 22, "f2", at("2026-03-02T11:02:00Z"));
        remediated(&mut record, "3", 22, "f3", at("2026-03-02T12:20:00Z"));
        remediated(&mut record, "2", 3389, "f2", at("2026-03-02T11:30:00Z"));
        remediated(&mut record, "4", 3306, "f4", at("2026-03-02T15:00:00Z"));
        Sample::of(&world, record, at("2026-03-03T09:00:00Z"))
    }

    /// `findings` findings over `changes` groups the operator converged (each with one
    /// revocation and one authorization in the record) and `changes / 20` groups still
    /// open: the benchmark's input (10,000 findings, 1,000 changes).
    pub fn large(findings: usize, changes: usize) -> Sample {
        let base = at("2026-02-01T00:00:00Z");
        let open = (changes / 20).max(1);
        let mut world = World::default();
        let mut record = ChangeRecord::default();
        for k in 1..=changes {
            let suffix = format!("{k:x}");
            world = world.with_group(converged(&suffix, &[22]));
            let when = Timestamp(base.seconds() + k as i64 * 97 + 600);
            remediated(&mut record, &suffix, 22, &format!("{:032x}", k), when);
        }
        for k in changes + 1..=changes + open {
            world = world.with_open_group(&format!("{k:x}"), Traffic::Tcp(PortRange::single(22)));
        }
        let types = [
            "Recon:EC2/PortProbeUnprotectedPort",
            "UnauthorizedAccess:EC2/SSHBruteForce",
            "UnauthorizedAccess:EC2/TorClient",
            "CryptoCurrency:EC2/BitcoinTool.B!DNS",
        ];
        let severities = [2.0, 5.0, 5.5, 7.0, 8.0, 9.0];
        world.observation.findings = (0..findings)
            .map(|j| {
                let k = j % (changes + open) + 1;
                let instance = format!("i-{k:x}");
                let first_seen = Timestamp(base.seconds() + k as i64 * 97 - (j % 13) as i64 * 120);
                let id = format!("{:032x}", j + 1);
                let severity = severities[j % severities.len()];
                let mut finding = match j % 10 {
                    0..=6 => probe(&id, &instance, &[22], severity, &first_seen.to_string()),
                    7 => connection(
                        &id,
                        types[1],
                        &instance,
                        Direction::Inbound,
                        severity,
                        &first_seen.to_string(),
                    ),
                    _ => Finding {
                        finding_type: types[2 + j % 2].into(),
                        action: FindingAction::Other { action_type: None },
                        ..probe(&id, &instance, &[], severity, &first_seen.to_string())
                    },
                };
                finding.instance = Some(InstanceRef {
                    id: InstanceId::parse(&instance).unwrap(),
                    security_groups: vec![format!("sg-{k:x}")],
                });
                finding
            })
            .collect();
        Sample::of(&world, record, at("2026-03-01T00:00:00Z"))
    }

    pub fn input(&self) -> ReportInput<'_> {
        ReportInput {
            policy: &self.policy,
            generated_at: self.generated_at,
            report: &self.report,
            responses: &self.responses,
            record: &self.record,
            compliance: &self.compliance,
        }
    }

    /// The sample's finding `id`.
    pub fn finding(&self, id: &str) -> Option<&Seen> {
        let id = FindingId::parse(id).ok()?;
        self.responses.iter().find(|s| s.finding.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::ResponseKind;

    #[test]
    fn the_realistic_sample_has_every_response_the_report_shows() {
        let sample = Sample::realistic();
        let kind = |id: &str| sample.finding(id).unwrap().response.kind();
        for id in ["f1", "f2", "f3", "f4"] {
            assert_eq!(
                kind(id),
                ResponseKind::Closed,
                "{id}: {:?}",
                sample.finding(id)
            );
        }
        assert_eq!(kind("f5"), ResponseKind::Planned);
        assert_eq!(kind("f6"), ResponseKind::Refused);
        for id in ["f7", "f8", "f9", "f10"] {
            assert_eq!(kind(id), ResponseKind::Reported, "{id}");
        }
    }

    #[test]
    fn the_large_sample_has_the_sizes_asked_for() {
        let sample = Sample::large(2000, 100);
        assert_eq!(sample.responses.len(), 2000);
        assert_eq!(sample.record.revoked.len(), 100);
        assert_eq!(sample.record.added.len(), 100);
        let closed = sample
            .responses
            .iter()
            .filter(|s| s.response.kind() == ResponseKind::Closed)
            .count();
        assert!(closed > 1000, "{closed}");
    }
}
