//! Reports of a policy for people, auditors and security lakes (pure: no I/O, no
//! clock): what was found, what was fixed and how fast, what is still open, and which
//! controls that evidence supports.
//!
//! ```text
//!  ReportInput { report (a read-only pass), responses, record (the history), compliance }
//!     ─ Analysis::of ─> findings by band and type, open exposures and refusals,
//!                       every action with its time, time to remediate (median, p90)
//!     ─> json (one document) │ csv (a row per finding) │ ocsf (JSON lines) │ html (one page)
//! ```
//!
//! Every time a report states comes from its input: a finding's `first_seen`
//! (`service.eventFirstSeen`) and the change record's `at`, never the report's clock
//! (`generated_at` only says when the report was made).

mod csv;
mod html;
mod ocsf;
#[cfg(any(test, feature = "testing"))]
pub mod sample;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::domain::alert::{FindingSummary, Response, ResponseKind, Seen};
use crate::domain::compliance::{self, ControlStatus, FrameworkState, OpenExposure, OpenState};
use crate::domain::ids::FindingId;
use crate::domain::outcome::PassReport;
use crate::domain::plan::{FindingDecision, IpProtocol};
use crate::domain::record::{ChangeRecord, RecordedRule};
use crate::domain::security_group::{Exposure, PortRange, Protocol};
use crate::domain::severity::{Severity, SeverityBand};
use crate::domain::time::Timestamp;

pub use csv::csv;
pub use html::html;
pub use ocsf::{OCSF_VERSION, ocsf};

/// Everything a report is made from.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// The policy, `namespace/name`.
    pub policy: &'a str,
    /// When the report was made (shown, never used to compute a duration).
    pub generated_at: Timestamp,
    /// A read-only pass: the findings, the plan, the failures.
    pub report: &'a PassReport,
    /// What each finding got ([`finding_responses`](crate::domain::response::finding_responses)
    /// of `report`).
    pub responses: &'a [Seen],
    /// The history: what was revoked and authorized, when, for which finding.
    pub record: &'a ChangeRecord,
    /// Each control's state ([`compliance::evaluate`]).
    pub compliance: &'a [FrameworkState],
}

/// Findings of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeCount<'a> {
    pub finding_type: &'a str,
    pub findings: usize,
    pub max_severity: Severity,
    /// Findings of the type whose response is closed.
    pub closed: usize,
}

/// What a change record entry says was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ActionKind {
    /// A rule the operator added (trusted access, a narrowed remainder).
    Authorized,
    /// A rule the operator revoked.
    Revoked,
    /// Asked of AWS, outcome not known yet (settled by the next pass).
    PendingAuthorize,
    PendingRevoke,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Authorized => "authorized",
            ActionKind::Revoked => "revoked",
            ActionKind::PendingAuthorize => "authorize pending",
            ActionKind::PendingRevoke => "revoke pending",
        }
    }
}

/// One action of the change record, with its recorded time.
#[derive(Debug, Clone, PartialEq)]
pub struct Action<'a> {
    /// The recorded `at` (`None`: recorded without a time, or unreadable).
    pub at: Option<Timestamp>,
    pub kind: ActionKind,
    pub rule: &'a RecordedRule,
}

impl Action<'_> {
    /// `tcp/22`, `tcp/0-21`, `all traffic`.
    pub fn what(&self) -> String {
        rule_what(self.rule)
    }
}

/// `tcp/22`, `udp/0-52`, `all traffic`: what a recorded rule admits.
pub fn rule_what(rule: &RecordedRule) -> String {
    // Recorded data: a reversed range is shown as written, not asserted against.
    let ports = PortRange {
        from: rule.from_port,
        to: rule.to_port,
    };
    match IpProtocol::parse(&rule.protocol) {
        Some(protocol) => protocol.describe(ports),
        None => format!("{}/{ports}", rule.protocol),
    }
}

/// Every action of the record, oldest first (the ones without a time last); at one
/// time authorizations before revocations, as the operator makes them.
pub fn actions(record: &ChangeRecord) -> Vec<Action<'_>> {
    let done = record
        .added
        .iter()
        .map(|r| (ActionKind::Authorized, r))
        .chain(record.revoked.iter().map(|r| (ActionKind::Revoked, r)));
    let pending = record.pending.iter().flat_map(|p| {
        p.added
            .iter()
            .map(|r| (ActionKind::PendingAuthorize, r))
            .chain(p.revoked.iter().map(|r| (ActionKind::PendingRevoke, r)))
    });
    let mut actions: Vec<Action<'_>> = done
        .chain(pending)
        .map(|(kind, rule)| Action {
            at: rule.at.as_deref().and_then(Timestamp::parse),
            kind,
            rule,
        })
        .collect();
    actions.sort_by(|a, b| {
        (a.at.is_none(), a.at, &a.rule.group, a.kind, &a.rule.cidr).cmp(&(
            b.at.is_none(),
            b.at,
            &b.rule.group,
            b.kind,
            &b.rule.cidr,
        ))
    });
    actions
}

/// A finding the operator remediated, and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Remediation<'a> {
    pub finding: &'a FindingSummary,
    /// `service.eventFirstSeen`.
    pub first_seen: Timestamp,
    /// The recorded time of the revocation that closed its last open port.
    pub closed_at: Timestamp,
    /// `closed_at - first_seen`.
    pub seconds: i64,
}

/// Does a recorded rule admit the exposure?
fn admits(rule: &RecordedRule, exposure: Exposure) -> bool {
    let protocol = match rule.protocol.as_str() {
        "-1" => return true,
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return false,
    };
    protocol == exposure.protocol && (rule.from_port..=rule.to_port).contains(&exposure.port)
}

/// Time to remediate, per finding whose response is closed (pure).
///
/// For each security group and port of the finding (the groups its plan decision
/// names and the ones it recorded; the exposures its decision names, else its ports
/// on TCP), the port was closed by the earliest recorded revocation of a rule of that
/// group admitting it, at or after the finding's `first_seen`; the finding was
/// remediated when the last of its ports was closed. A revocation before the finding
/// was first seen did not remediate it. A closed finding with no such revocation (its
/// groups never opened the port, or the record dropped the entry) is not timed.
pub fn time_to_remediate<'a>(
    report: &PassReport,
    responses: &'a [Seen],
    record: &ChangeRecord,
) -> Vec<Remediation<'a>> {
    let mut revoked: BTreeMap<&str, Vec<(&RecordedRule, Timestamp)>> = BTreeMap::new();
    for rule in &record.revoked {
        if let Some(at) = rule.at.as_deref().and_then(Timestamp::parse) {
            revoked.entry(&rule.group).or_default().push((rule, at));
        }
    }
    responses
        .iter()
        .filter(|seen| matches!(seen.response, Response::Closed { .. }))
        .filter_map(|seen| {
            let finding = &seen.finding;
            let first_seen = Timestamp::parse(finding.first_seen.as_deref()?)?;
            let decision = report
                .plan
                .as_ref()
                .and_then(|p| p.findings.get(&finding.id));
            let (mut groups, exposures): (Vec<&str>, Vec<Exposure>) = match decision {
                Some(FindingDecision::Remediate {
                    security_groups,
                    exposures,
                    ..
                }) => (
                    security_groups.iter().map(|g| g.as_str()).collect(),
                    exposures.clone(),
                ),
                _ => (
                    Vec::new(),
                    finding.ports.iter().map(|p| Exposure::tcp(*p)).collect(),
                ),
            };
            groups.extend(finding.security_groups.iter().map(String::as_str));
            groups.sort_unstable();
            groups.dedup();
            let closed_at = groups
                .iter()
                .filter_map(|group| revoked.get(group))
                .flat_map(|rules| {
                    exposures.iter().filter_map(move |exposure| {
                        rules
                            .iter()
                            .filter(|(rule, at)| *at >= first_seen && admits(rule, *exposure))
                            .map(|(_, at)| *at)
                            .min()
                    })
                })
                .max()?;
            Some(Remediation {
                finding,
                first_seen,
                closed_at,
                seconds: closed_at.seconds() - first_seen.seconds(),
            })
        })
        .collect()
}

/// The nearest-rank percentile of sorted values: the smallest value such that at least
/// `percent`% of the values are at or below it, i.e. the value at 1-based rank
/// ⌈percent/100 × n⌉. `None` for no values. The median is `nearest_rank(v, 50)` (the
/// lower middle value of an even count), p90 `nearest_rank(v, 90)`.
pub fn nearest_rank(sorted: &[i64], percent: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (u64::from(percent.min(100)) * n as u64)
        .div_ceil(100)
        .max(1) as usize;
    Some(sorted[rank - 1])
}

/// The spread of the times to remediate, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spread {
    pub count: usize,
    #[serde(rename = "medianSeconds")]
    pub median: Option<i64>,
    #[serde(rename = "p90Seconds")]
    pub p90: Option<i64>,
    #[serde(rename = "maxSeconds")]
    pub max: Option<i64>,
}

impl Spread {
    pub fn of(seconds: &[i64]) -> Spread {
        let mut sorted = seconds.to_vec();
        sorted.sort_unstable();
        Spread {
            count: sorted.len(),
            median: nearest_rank(&sorted, 50),
            p90: nearest_rank(&sorted, 90),
            max: sorted.last().copied(),
        }
    }
}

/// What every format shows, computed once from the input (pure).
#[derive(Debug, Clone)]
pub struct Analysis<'a> {
    /// Every band, most severe first, with its count (zero included).
    pub by_band: Vec<(SeverityBand, usize)>,
    /// Most findings first, then by name.
    pub by_type: Vec<TypeCount<'a>>,
    pub by_response: BTreeMap<ResponseKind, usize>,
    /// Open exposures, refusals among them ([`OpenState::Refused`]).
    pub open: Vec<OpenExposure>,
    pub actions: Vec<Action<'a>>,
    pub remediations: Vec<Remediation<'a>>,
    pub spread: Spread,
    remediation_of: BTreeMap<&'a FindingId, usize>,
}

impl<'a> Analysis<'a> {
    pub fn of(input: &ReportInput<'a>) -> Analysis<'a> {
        let mut bands: BTreeMap<SeverityBand, usize> = BTreeMap::new();
        let mut types: BTreeMap<&'a str, TypeCount<'a>> = BTreeMap::new();
        let mut by_response = BTreeMap::new();
        for seen in input.responses {
            let finding = &seen.finding;
            *bands.entry(finding.band()).or_default() += 1;
            *by_response.entry(seen.response.kind()).or_default() += 1;
            let closed = usize::from(seen.response.kind() == ResponseKind::Closed);
            types
                .entry(&finding.finding_type)
                .and_modify(|t| {
                    t.findings += 1;
                    t.max_severity = t.max_severity.max(finding.severity);
                    t.closed += closed;
                })
                .or_insert(TypeCount {
                    finding_type: &finding.finding_type,
                    findings: 1,
                    max_severity: finding.severity,
                    closed,
                });
        }
        let by_band = [
            SeverityBand::Critical,
            SeverityBand::High,
            SeverityBand::Medium,
            SeverityBand::Low,
        ]
        .into_iter()
        .map(|band| (band, bands.get(&band).copied().unwrap_or(0)))
        .collect();
        let mut by_type: Vec<TypeCount<'a>> = types.into_values().collect();
        by_type.sort_by(|a, b| {
            b.findings
                .cmp(&a.findings)
                .then(a.finding_type.cmp(b.finding_type))
        });
        let remediations = time_to_remediate(input.report, input.responses, input.record);
        let seconds: Vec<i64> = remediations.iter().map(|r| r.seconds).collect();
        let remediation_of = remediations
            .iter()
            .enumerate()
            .map(|(k, r)| (&r.finding.id, k))
            .collect();
        Analysis {
            by_band,
            by_type,
            by_response,
            open: compliance::open_exposures(input.report),
            actions: actions(input.record),
            spread: Spread::of(&seconds),
            remediations,
            remediation_of,
        }
    }

    /// The time to remediate of a finding, when it was remediated and timed.
    pub fn remediation(&self, finding: &FindingId) -> Option<&Remediation<'a>> {
        self.remediation_of
            .get(finding)
            .map(|k| &self.remediations[*k])
    }

    pub fn refusals(&self) -> impl Iterator<Item = &OpenExposure> {
        self.open.iter().filter(|o| o.state == OpenState::Refused)
    }
}

/// The response's kind and its text, as the CSV and the page show them.
pub fn response_cells(response: &Response) -> (&'static str, String) {
    match response {
        Response::Reported { reason } => ("reported", reason.clone()),
        Response::Planned { summary } => ("planned", summary.clone()),
        Response::Closed { summary } => ("closed", summary.clone()),
        Response::Refused { reason } => ("refused", reason.clone()),
        Response::Failed { error } => ("failed", error.clone()),
        Response::NoLongerListed => ("noLongerListed", String::new()),
    }
}

/// The report as one JSON document (its shape: the keys below; times RFC 3339,
/// durations in seconds).
pub fn json(input: &ReportInput<'_>) -> Value {
    let analysis = Analysis::of(input);
    let catalogue = compliance::catalogue();
    let findings: Vec<Value> = input
        .responses
        .iter()
        .map(|seen| {
            let (kind, detail) = response_cells(&seen.response);
            let mut finding = serde_json::to_value(&seen.finding).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut finding {
                map.insert("band".into(), json!(seen.finding.band()));
                map.insert("response".into(), json!({"kind": kind, "detail": detail}));
                if let Some(r) = analysis.remediation(&seen.finding.id) {
                    map.insert("remediatedAt".into(), json!(r.closed_at));
                    map.insert("timeToRemediateSeconds".into(), json!(r.seconds));
                }
            }
            finding
        })
        .collect();
    let controls: Vec<Value> = input
        .compliance
        .iter()
        .map(|framework| {
            let source = catalogue.frameworks.iter().find(|f| f.id == framework.id);
            let controls: Vec<Value> = framework
                .controls
                .iter()
                .map(|state| {
                    let control = catalogue.control(&framework.id, &state.id);
                    let mut value = serde_json::to_value(state).unwrap_or(Value::Null);
                    if let (Value::Object(map), Some(control)) = (&mut value, control) {
                        map.insert("evidence".into(), json!(control.evidence));
                        map.insert("citation".into(), json!(control.citation));
                    }
                    value
                })
                .collect();
            json!({
                "id": framework.id,
                "name": framework.name,
                "edition": source.map(|f| f.edition.as_str()),
                "met": framework.count(ControlStatus::Met),
                "notMet": framework.count(ControlStatus::NotMet),
                "notApplicable": framework.count(ControlStatus::NotApplicable),
                "controls": controls,
            })
        })
        .collect();
    let actions: Vec<Value> = analysis
        .actions
        .iter()
        .map(|action| {
            let rule = action.rule;
            json!({
                "at": action.at,
                "action": action.kind.as_str(),
                "group": rule.group,
                "account": rule.account,
                "region": rule.region,
                "rule": rule.rule_id,
                "traffic": action.what(),
                "cidr": rule.cidr,
                "finding": rule.finding,
                "description": rule.description,
            })
        })
        .collect();
    let remediations: Vec<Value> = analysis
        .remediations
        .iter()
        .map(|r| {
            json!({
                "finding": r.finding.id,
                "firstSeen": r.first_seen,
                "closedAt": r.closed_at,
                "seconds": r.seconds,
            })
        })
        .collect();
    let bands: serde_json::Map<String, Value> = analysis
        .by_band
        .iter()
        .map(|(band, count)| (band.to_string(), json!(count)))
        .collect();
    let types: Vec<Value> = analysis
        .by_type
        .iter()
        .map(|t| {
            json!({
                "type": t.finding_type,
                "findings": t.findings,
                "maxSeverity": t.max_severity,
                "closed": t.closed,
            })
        })
        .collect();
    json!({
        "policy": input.policy,
        "generatedAt": input.generated_at,
        "mode": input.report.mode,
        "regions": input.report.regions,
        "summary": {
            "findings": input.responses.len(),
            "bySeverity": bands,
            "byResponse": analysis.by_response,
            "remediated": analysis.remediations.len(),
            "openExposures": analysis.open.len(),
            "refusals": analysis.refusals().count(),
            "actions": analysis.actions.len(),
            "timeToRemediate": analysis.spread,
            "failures": input.report.failures.len(),
        },
        "findings": {
            "bySeverity": bands,
            "byType": types,
            "list": findings,
        },
        "openExposures": analysis.open,
        "actions": actions,
        "timeToRemediate": {
            "method": "from service.eventFirstSeen to the recorded revocation that closed \
                       the finding's last open port; percentiles by nearest rank",
            "spread": analysis.spread,
            "findings": remediations,
        },
        "compliance": controls,
        "failures": input.report.failures,
        "record": {
            "truncated": input.record.truncated,
            "pending": input.record.pending.as_ref().map_or(0, |p| p.added.len() + p.revoked.len()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::compliance::OpenState;

    #[test]
    fn nearest_rank_picks_the_smallest_value_covering_the_percentage() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(
            nearest_rank(&ten, 50),
            Some(5),
            "the lower middle of an even count"
        );
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        assert_eq!(nearest_rank(&ten, 91), Some(10));
        assert_eq!(nearest_rank(&ten, 100), Some(10));
        assert_eq!(nearest_rank(&[1, 2, 3], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3], 90), Some(3));
        let spread = Spread::of(&[300, 60, 120, 3600]);
        assert_eq!(
            spread,
            Spread {
                count: 4,
                median: Some(120),
                p90: Some(3600),
                max: Some(3600)
            }
        );
    }

    #[test]
    fn time_to_remediate_runs_from_first_seen_to_the_recorded_revocation() {
        let sample = sample::Sample::realistic();
        let input = sample.input();
        let analysis = Analysis::of(&input);
        // f1 first seen at 10:00, its group's tcp/22 revoked at 10:04:10.
        let f1 = analysis
            .remediation(&FindingId::parse("f1").unwrap())
            .expect("f1 is timed");
        assert_eq!(f1.first_seen.to_string(), "2026-03-02T10:00:00Z");
        assert_eq!(f1.closed_at.to_string(), "2026-03-02T10:04:10Z");
        assert_eq!(f1.seconds, 250);
        // f2 names two ports of sg-2, closed at 11:02 and 11:30: the last one counts.
        let f2 = analysis
            .remediation(&FindingId::parse("f2").unwrap())
            .unwrap();
        assert_eq!(f2.seconds, 30 * 60);
        // The report's clock plays no part.
        let later = ReportInput {
            generated_at: Timestamp(input.generated_at.seconds() + 86_400),
            ..input
        };
        assert_eq!(Analysis::of(&later).remediations, analysis.remediations);
        // A planned finding is not remediated, hence not timed.
        assert!(
            analysis
                .remediation(&FindingId::parse("f5").unwrap())
                .is_none()
        );
        let seconds: Vec<i64> = analysis.remediations.iter().map(|r| r.seconds).collect();
        assert_eq!(analysis.spread, Spread::of(&seconds));
        assert_eq!(analysis.spread.count, 4, "{seconds:?}");
    }

    #[test]
    fn a_revocation_before_the_finding_was_first_seen_did_not_remediate_it() {
        let mut sample = sample::Sample::realistic();
        for rule in &mut sample.record.revoked {
            rule.at = Some("2026-01-01T00:00:00Z".into());
        }
        let input = sample.input();
        assert!(Analysis::of(&input).remediations.is_empty());
    }

    #[test]
    fn findings_are_counted_by_band_and_type_and_open_exposures_listed() {
        let sample = sample::Sample::realistic();
        let input = sample.input();
        let analysis = Analysis::of(&input);
        let bands: Vec<usize> = analysis.by_band.iter().map(|(_, n)| *n).collect();
        let total: usize = bands.iter().sum();
        assert_eq!(total, input.responses.len());
        assert_eq!(analysis.by_band[0].0, SeverityBand::Critical);
        assert!(analysis.by_band.iter().all(|(_, n)| *n > 0), "{bands:?}");
        assert_eq!(
            analysis.by_type[0].finding_type,
            "Recon:EC2/PortProbeUnprotectedPort"
        );
        let states: Vec<OpenState> = analysis.open.iter().map(|o| o.state).collect();
        assert!(states.contains(&OpenState::NotApplied), "{states:?}");
        assert!(states.contains(&OpenState::Refused), "{states:?}");
        assert!(states.contains(&OpenState::Exempt), "{states:?}");
        assert_eq!(analysis.refusals().count(), 1);
        let refused = analysis.refusals().next().unwrap();
        assert!(refused.reason.contains("all traffic"), "{}", refused.reason);
    }

    #[test]
    fn actions_are_listed_oldest_first_authorizations_before_revocations() {
        let sample = sample::Sample::realistic();
        let actions = actions(&sample.record);
        assert_eq!(
            actions.len(),
            sample.record.added.len() + sample.record.revoked.len()
        );
        for pair in actions.windows(2) {
            assert!(
                pair[0].at <= pair[1].at,
                "{:?} then {:?}",
                pair[0].at,
                pair[1].at
            );
        }
        let first_group: Vec<ActionKind> = actions
            .iter()
            .filter(|a| a.at == actions[0].at && a.rule.group == actions[0].rule.group)
            .map(|a| a.kind)
            .collect();
        assert_eq!(first_group, [ActionKind::Authorized, ActionKind::Revoked]);
        assert_eq!(actions[0].what(), "tcp/22");
    }

    #[test]
    fn the_json_document_has_every_section_with_times_from_the_record() {
        let sample = sample::Sample::realistic();
        let input = sample.input();
        let doc = json(&input);
        assert_eq!(doc["policy"], "security/prod");
        assert_eq!(doc["generatedAt"], "2026-03-03T09:00:00Z");
        assert_eq!(doc["mode"], "Enforce");
        let summary = &doc["summary"];
        assert_eq!(summary["findings"], input.responses.len());
        assert_eq!(summary["remediated"], 4);
        assert_eq!(summary["timeToRemediate"]["count"], 4);
        assert!(summary["timeToRemediate"]["medianSeconds"].is_i64());
        assert_eq!(summary["bySeverity"]["CRITICAL"], 1);
        let list = doc["findings"]["list"].as_array().unwrap();
        assert_eq!(list.len(), input.responses.len());
        let f1 = list.iter().find(|f| f["id"] == "f1").unwrap();
        assert_eq!(f1["response"]["kind"], "closed");
        assert_eq!(f1["remediatedAt"], "2026-03-02T10:04:10Z");
        assert_eq!(f1["timeToRemediateSeconds"], 250);
        assert_eq!(f1["band"], "MEDIUM");
        let open = doc["openExposures"].as_array().unwrap();
        assert!(open.iter().any(|o| o["state"] == "refused"));
        let actions = doc["actions"].as_array().unwrap();
        assert_eq!(actions[0]["at"], "2026-03-02T10:04:10Z");
        assert_eq!(actions[0]["action"], "authorized");
        let nist = doc["compliance"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "nist-800-53-r5")
            .unwrap();
        let ir41 = nist["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "IR-4(1)")
            .unwrap();
        assert_eq!(ir41["state"], "Met");
        assert!(ir41["evidence"].as_str().unwrap().contains("recentActions"));
        assert_eq!(
            nist["met"].as_u64().unwrap() + nist["notMet"].as_u64().unwrap(),
            nist["controls"].as_array().unwrap().len() as u64
        );
    }
}
