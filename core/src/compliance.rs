//! Compliance evidence (pure): which controls of APRA CPS 234, the MAS TRM Guidelines
//! and NIST SP 800-53 r5 the operator's evidence supports, given how the policy is
//! configured and what its last pass saw.
//!
//! ```text
//!  compliance/catalogue.json (embedded) ─> Catalogue { frameworks: [Framework { controls }] }
//!  policy settings + last pass ─ facts_of ─> Facts (one bool per Condition)
//!  Catalogue + Facts ─ evaluate ─> [FrameworkState { controls: [ControlState] }] ─> status, report
//! ```
//!
//! The mapping is data (`compliance/catalogue.json`, with a citation per control); a
//! control is claimed only when every condition it `requires` holds. How a control is
//! judged, as an auditor reads it:
//! - **Met**: every required condition holds; the reason lists them.
//! - **NotMet**: a required condition does not hold; the reason names the setting to
//!   change (or the condition to fix). A missing capability is NotMet, never
//!   NotApplicable: a notification control with no channel configured is NotMet.
//! - **NotApplicable**: only when the control governs the output of an activity the
//!   policy turns off (`notApplicableUnless`), e.g. escalating the deficiencies that
//!   testing finds when remediation is Off and no group is tested. The gap is then
//!   reported once, as NotMet, by the control of the same framework that requires the
//!   activity itself (a unit test holds the catalogue to that).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::alert::Route;
use crate::ids::{FindingId, SecurityGroupId};
use crate::outcome::PassReport;
use crate::plan::{Refusal, Verdict};
use crate::policy::Mode;
use crate::response::finding_responses;
use crate::security_group::Exposure;
use crate::severity::{Severity, SeverityBand};

/// The catalogue's text, embedded at build time.
pub const CATALOGUE_JSON: &str = include_str!("../../compliance/catalogue.json");

/// The longest pass interval that still counts as continuous monitoring: GuardDuty
/// publishes a new finding within about 5 minutes and updates it every 15 minutes at
/// its fastest setting.
pub const MAX_FREQUENT_INTERVAL_SECONDS: u64 = 15 * 60;

/// The control catalogue: every framework the operator gives evidence for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Catalogue {
    pub version: u32,
    pub frameworks: Vec<Framework>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Framework {
    /// `apra-cps-234`, `mas-trm`, `nist-800-53-r5`.
    pub id: String,
    pub name: String,
    pub edition: String,
    /// Where the framework's text was read.
    pub source: String,
    pub controls: Vec<Control>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Control {
    /// As the framework writes it: `CPS 234 para 35`, `12.2`, `IR-4(1)`.
    pub id: String,
    /// One line, in our words.
    pub title: String,
    /// What the operator's evidence shows, and where it is.
    pub evidence: String,
    /// Every one must hold to claim the control.
    pub requires: Vec<Condition>,
    /// When one of these does not hold, the control is NotApplicable (see the module
    /// documentation for when the catalogue may say so).
    #[serde(default)]
    pub not_applicable_unless: Vec<Condition>,
    /// Where the mapping came from: the framework's words it rests on.
    pub citation: String,
    /// The framework's own text could not be read: the id and title rest on secondary
    /// sources.
    #[serde(default)]
    pub unverified: bool,
}

/// The configuration and observations a control may depend on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Condition {
    /// `spec.remediation.mode` is `Enforce`: the operator closes exposures itself.
    RemediationEnforced,
    /// `spec.remediation.mode` is `DryRun` or `Enforce`: every finding is triaged into
    /// a plan and every watched group is tested (not `Off`).
    RemediationPlanned,
    /// At least one channel in `spec.notifications` hears every HIGH finding: its
    /// `minSeverity` is 7.0 (HIGH) or lower and it has no `findingTypes` filter, and
    /// `spec.findings.minSeverity` is 7.0 or lower, so HIGH findings are read at all.
    AlertsHigh,
    /// At least one channel is configured in `spec.notifications`.
    AlertsAny,
    /// No alert of the last pass failed (condition NotificationsDelivered).
    AlertsDelivered,
    /// The last pass read the findings of every region (condition FindingsSynced).
    FindingsRead,
    /// `spec.findings.minSeverity` is 4.0 (MEDIUM) or lower.
    MonitorsMedium,
    /// `spec.findings.types` is empty: every finding type is read.
    AllFindingTypes,
    /// The last pass read the findings and no public exposure they name is left open:
    /// no group refused, exempt with a port in scope, or with a change not applied or
    /// failed, and no finding whose response is planned, refused or failed.
    NoOpenExposure,
    /// `spec.remediation.archiveRemediated` is true: a remediated finding is closed
    /// (archived) in GuardDuty once its port is closed.
    ArchiveRemediated,
    /// `spec.securityHub.updateFindings` is true: a remediated finding's Security Hub
    /// copy is marked RESOLVED with a note naming the change.
    SecurityHubUpdates,
    /// `spec.interval` is 15 minutes or less ([`MAX_FREQUENT_INTERVAL_SECONDS`]).
    FrequentPasses,
}

impl Condition {
    pub const ALL: [Condition; 12] = [
        Condition::RemediationEnforced,
        Condition::RemediationPlanned,
        Condition::AlertsHigh,
        Condition::AlertsAny,
        Condition::AlertsDelivered,
        Condition::FindingsRead,
        Condition::MonitorsMedium,
        Condition::AllFindingTypes,
        Condition::NoOpenExposure,
        Condition::ArchiveRemediated,
        Condition::SecurityHubUpdates,
        Condition::FrequentPasses,
    ];

    /// The name the catalogue uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::RemediationEnforced => "remediationEnforced",
            Condition::RemediationPlanned => "remediationPlanned",
            Condition::AlertsHigh => "alertsHigh",
            Condition::AlertsAny => "alertsAny",
            Condition::AlertsDelivered => "alertsDelivered",
            Condition::FindingsRead => "findingsRead",
            Condition::MonitorsMedium => "monitorsMedium",
            Condition::AllFindingTypes => "allFindingTypes",
            Condition::NoOpenExposure => "noOpenExposure",
            Condition::ArchiveRemediated => "archiveRemediated",
            Condition::SecurityHubUpdates => "securityHubUpdates",
            Condition::FrequentPasses => "frequentPasses",
        }
    }

    /// What holds, in a few words.
    pub fn holds(self) -> &'static str {
        match self {
            Condition::RemediationEnforced => "remediation.mode Enforce",
            Condition::RemediationPlanned => "remediation.mode plans fixes",
            Condition::AlertsHigh => "a channel hears every HIGH finding",
            Condition::AlertsAny => "a channel is configured",
            Condition::AlertsDelivered => "alerts delivered",
            Condition::FindingsRead => "findings read",
            Condition::MonitorsMedium => "MEDIUM and above read",
            Condition::AllFindingTypes => "every finding type read",
            Condition::NoOpenExposure => "no open public exposure",
            Condition::ArchiveRemediated => "remediated findings archived",
            Condition::SecurityHubUpdates => "Security Hub findings resolved",
            Condition::FrequentPasses => "passes at most 15 minutes apart",
        }
    }

    /// What to change for it to hold: the setting, or the condition to look at.
    pub fn to_meet(self) -> &'static str {
        match self {
            Condition::RemediationEnforced => "set spec.remediation.mode: Enforce",
            Condition::RemediationPlanned => "set spec.remediation.mode: DryRun or Enforce",
            Condition::AlertsHigh => {
                "add a spec.notifications channel with minSeverity HIGH or lower and no \
                 findingTypes (and keep spec.findings.minSeverity at HIGH or lower)"
            }
            Condition::AlertsAny => "add a channel to spec.notifications",
            Condition::AlertsDelivered => {
                "fix the channel whose alert failed (condition NotificationsDelivered)"
            }
            Condition::FindingsRead => {
                "fix reading the findings (condition FindingsSynced): the last pass read none"
            }
            Condition::MonitorsMedium => "set spec.findings.minSeverity to MEDIUM or lower",
            Condition::AllFindingTypes => "empty spec.findings.types to read every type",
            Condition::NoOpenExposure => {
                "close the open exposures the report lists (condition SecurityGroupsConverged)"
            }
            Condition::ArchiveRemediated => "set spec.remediation.archiveRemediated: true",
            Condition::SecurityHubUpdates => "set spec.securityHub.updateFindings: true",
            Condition::FrequentPasses => "set spec.interval to 15m or less",
        }
    }

    /// The state in which it does not hold, for a NotApplicable reason.
    pub fn absent(self) -> &'static str {
        match self {
            Condition::RemediationEnforced => "spec.remediation.mode is not Enforce",
            Condition::RemediationPlanned => "spec.remediation.mode is Off",
            Condition::AlertsHigh => "no channel hears every HIGH finding",
            Condition::AlertsAny => "spec.notifications is empty",
            Condition::AlertsDelivered => "an alert failed",
            Condition::FindingsRead => "the findings were not read",
            Condition::MonitorsMedium => "spec.findings.minSeverity is above MEDIUM",
            Condition::AllFindingTypes => "spec.findings.types filters the types",
            Condition::NoOpenExposure => "a public exposure is open",
            Condition::ArchiveRemediated => "spec.remediation.archiveRemediated is false",
            Condition::SecurityHubUpdates => "spec.securityHub.updateFindings is false",
            Condition::FrequentPasses => "spec.interval is over 15m",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The catalogue embedded in the binary (parsed once; a unit test proves it parses).
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        serde_json::from_str(CATALOGUE_JSON)
            .expect("compliance/catalogue.json is embedded and checked by the unit tests")
    })
}

impl Catalogue {
    /// The control `id` of framework `framework`.
    pub fn control(&self, framework: &str, id: &str) -> Option<&Control> {
        self.frameworks
            .iter()
            .find(|f| f.id == framework)?
            .controls
            .iter()
            .find(|c| c.id == id)
    }
}

/// Which conditions hold: one bool per [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub remediation_enforced: bool,
    pub remediation_planned: bool,
    pub alerts_high: bool,
    pub alerts_any: bool,
    pub alerts_delivered: bool,
    pub findings_read: bool,
    pub monitors_medium: bool,
    pub all_finding_types: bool,
    pub no_open_exposure: bool,
    pub archive_remediated: bool,
    pub security_hub_updates: bool,
    pub frequent_passes: bool,
}

impl Facts {
    /// Every condition holding.
    pub fn all() -> Facts {
        let mut facts = Facts::default();
        for condition in Condition::ALL {
            facts.set(condition, true);
        }
        facts
    }

    pub fn holds(&self, condition: Condition) -> bool {
        match condition {
            Condition::RemediationEnforced => self.remediation_enforced,
            Condition::RemediationPlanned => self.remediation_planned,
            Condition::AlertsHigh => self.alerts_high,
            Condition::AlertsAny => self.alerts_any,
            Condition::AlertsDelivered => self.alerts_delivered,
            Condition::FindingsRead => self.findings_read,
            Condition::MonitorsMedium => self.monitors_medium,
            Condition::AllFindingTypes => self.all_finding_types,
            Condition::NoOpenExposure => self.no_open_exposure,
            Condition::ArchiveRemediated => self.archive_remediated,
            Condition::SecurityHubUpdates => self.security_hub_updates,
            Condition::FrequentPasses => self.frequent_passes,
        }
    }

    pub fn set(&mut self, condition: Condition, value: bool) {
        let field = match condition {
            Condition::RemediationEnforced => &mut self.remediation_enforced,
            Condition::RemediationPlanned => &mut self.remediation_planned,
            Condition::AlertsHigh => &mut self.alerts_high,
            Condition::AlertsAny => &mut self.alerts_any,
            Condition::AlertsDelivered => &mut self.alerts_delivered,
            Condition::FindingsRead => &mut self.findings_read,
            Condition::MonitorsMedium => &mut self.monitors_medium,
            Condition::AllFindingTypes => &mut self.all_finding_types,
            Condition::NoOpenExposure => &mut self.no_open_exposure,
            Condition::ArchiveRemediated => &mut self.archive_remediated,
            Condition::SecurityHubUpdates => &mut self.security_hub_updates,
            Condition::FrequentPasses => &mut self.frequent_passes,
        };
        *field = value;
    }

    /// The same facts with `condition` set to `value`.
    pub fn with(mut self, condition: Condition, value: bool) -> Facts {
        self.set(condition, value);
        self
    }
}

/// What the facts are derived from: the policy's settings and its last pass, as plain
/// values (the controller and the command line fill it in from what they hold).
#[derive(Debug, Clone, Copy)]
pub struct FactInputs<'a> {
    /// `spec.remediation.mode`.
    pub mode: Mode,
    /// `spec.remediation.archiveRemediated`.
    pub archive_remediated: bool,
    /// `spec.securityHub.updateFindings`.
    pub security_hub_updates: bool,
    /// `spec.findings.minSeverity`.
    pub min_severity: Severity,
    /// `spec.findings.types` is empty.
    pub all_finding_types: bool,
    /// `spec.interval`, in seconds.
    pub interval_seconds: u64,
    /// The routes of `spec.notifications`.
    pub channels: &'a [Route],
    /// The last pass read the findings of every region ([`PassReport::findings_read`]).
    pub findings_read: bool,
    /// An alert of the last pass failed.
    pub alert_failed: bool,
    /// A public exposure remains open after the last pass ([`exposure_remains`]).
    pub open_exposure: bool,
}

/// The facts of a policy and its last pass (pure).
pub fn facts_of(inputs: &FactInputs<'_>) -> Facts {
    let high = SeverityBand::High.floor();
    Facts {
        remediation_enforced: inputs.mode == Mode::Enforce,
        remediation_planned: inputs.mode != Mode::Off,
        alerts_high: inputs.min_severity <= high
            && inputs
                .channels
                .iter()
                .any(|r| r.min_severity <= high && r.finding_types.is_empty()),
        alerts_any: !inputs.channels.is_empty(),
        alerts_delivered: !inputs.alert_failed,
        findings_read: inputs.findings_read,
        monitors_medium: inputs.min_severity <= SeverityBand::Medium.floor(),
        all_finding_types: inputs.all_finding_types,
        no_open_exposure: inputs.findings_read && !inputs.open_exposure,
        archive_remediated: inputs.archive_remediated,
        security_hub_updates: inputs.security_hub_updates,
        frequent_passes: inputs.interval_seconds <= MAX_FREQUENT_INTERVAL_SECONDS,
    }
}

/// The state of a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ControlStatus {
    Met,
    NotMet,
    NotApplicable,
}

impl ControlStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlStatus::Met => "Met",
            ControlStatus::NotMet => "NotMet",
            ControlStatus::NotApplicable => "NotApplicable",
        }
    }
}

impl fmt::Display for ControlStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One control, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlState {
    /// As the framework writes it: `CPS 234 para 35`, `12.2`, `IR-4(1)`.
    pub id: String,
    /// What the control asks, in one line (compliance/catalogue.json).
    pub title: String,
    pub state: ControlStatus,
    /// One line: what holds, or the setting to change.
    pub reason: String,
    /// The mapping rests on secondary sources (see the catalogue's citation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

/// One framework's controls, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrameworkState {
    /// `apra-cps-234`, `mas-trm` or `nist-800-53-r5`.
    pub id: String,
    /// The framework's name and edition, as the catalogue gives it.
    pub name: String,
    #[schemars(length(max = MAX_CONTROLS))]
    pub controls: Vec<ControlState>,
}

/// The most controls a framework of the catalogue may hold (a unit test holds the
/// catalogue to it): what bounds `status.compliance`.
pub const MAX_CONTROLS: usize = 64;

impl FrameworkState {
    /// How many controls are in `state`.
    pub fn count(&self, state: ControlStatus) -> usize {
        self.controls.iter().filter(|c| c.state == state).count()
    }
}

/// Every control of the catalogue, judged on the facts (pure; in catalogue order).
pub fn evaluate(catalogue: &Catalogue, facts: &Facts) -> Vec<FrameworkState> {
    catalogue
        .frameworks
        .iter()
        .map(|framework| FrameworkState {
            id: framework.id.clone(),
            name: framework.name.clone(),
            controls: framework
                .controls
                .iter()
                .map(|control| judge(control, facts))
                .collect(),
        })
        .collect()
}

fn judge(control: &Control, facts: &Facts) -> ControlState {
    let absent: Vec<Condition> = control
        .not_applicable_unless
        .iter()
        .copied()
        .filter(|c| !facts.holds(*c))
        .collect();
    let missing: Vec<Condition> = control
        .requires
        .iter()
        .copied()
        .filter(|c| !facts.holds(*c))
        .collect();
    let (state, reason) = if !absent.is_empty() {
        let why: Vec<&str> = absent.iter().map(|c| c.absent()).collect();
        (
            ControlStatus::NotApplicable,
            format!("not applicable while {}", why.join(" and ")),
        )
    } else if missing.is_empty() {
        let what: Vec<&str> = control.requires.iter().map(|c| c.holds()).collect();
        (ControlStatus::Met, format!("met: {}", what.join(", ")))
    } else {
        let fix: Vec<&str> = missing.iter().map(|c| c.to_meet()).collect();
        (
            ControlStatus::NotMet,
            format!("to meet: {}", fix.join("; ")),
        )
    };
    ControlState {
        id: control.id.clone(),
        title: control.title.clone(),
        state,
        reason,
        unverified: control.unverified,
    }
}

/// Why a public exposure a finding names is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OpenState {
    /// A change is planned and not applied (DryRun, or a read-only pass).
    NotApplied,
    /// The change was attempted and failed.
    Failed,
    /// The operator will not change the group.
    Refused,
    /// The group carries the exempt tag: left alone, still open.
    Exempt,
}

impl fmt::Display for OpenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenState::NotApplied => "not applied",
            OpenState::Failed => "failed",
            OpenState::Refused => "refused",
            OpenState::Exempt => "exempt",
        })
    }
}

/// A security group that still admits a port in scope from a public source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenExposure {
    pub group: SecurityGroupId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub region: String,
    /// The ports (with their protocol) still open.
    pub exposures: Vec<Exposure>,
    /// The public sources that admit them, where the plan names them (the rules a
    /// change would revoke, the source of a refused all-traffic rule, a prefix list's
    /// public entry); empty when the plan does not name them.
    pub sources: Vec<String>,
    /// The findings that brought the group in (none: watched for drift).
    pub findings: Vec<FindingId>,
    pub state: OpenState,
    /// One line: the refusal, the error, or what the change would do.
    pub reason: String,
}

/// The public exposures left open by a pass, from its plan and outcomes (pure; in the
/// plan's order). A pass without a plan lists none: see [`exposure_remains`].
pub fn open_exposures(report: &PassReport) -> Vec<OpenExposure> {
    let Some(plan) = &report.plan else {
        return Vec::new();
    };
    let mut open = Vec::new();
    for group in &plan.groups {
        let entry = |exposures: Vec<Exposure>, sources: Vec<String>, state, reason| OpenExposure {
            group: group.group.clone(),
            account: group.account.clone(),
            region: group.region.clone(),
            exposures,
            sources,
            findings: group.findings.clone(),
            state,
            reason,
        };
        match &group.verdict {
            Verdict::Change(change) => {
                let outcome = report.applied.then(|| report.outcome(&group.group));
                let (state, reason) = match outcome {
                    Some(Some(outcome)) if outcome.succeeded() => continue,
                    Some(Some(outcome)) => (OpenState::Failed, outcome.error().to_string()),
                    Some(None) => (
                        OpenState::Failed,
                        "the change was not carried out".to_string(),
                    ),
                    None => {
                        let revoked: Vec<String> = change.revoke.iter().map(|r| r.what()).collect();
                        (
                            OpenState::NotApplied,
                            format!("planned, not applied: revoke {}", revoked.join(", ")),
                        )
                    }
                };
                let exposures: BTreeSet<Exposure> = change
                    .revoke
                    .iter()
                    .flat_map(|r| r.exposed.iter().copied())
                    .collect();
                let sources: BTreeSet<String> =
                    change.revoke.iter().map(|r| r.source.to_string()).collect();
                open.push(entry(
                    exposures.into_iter().collect(),
                    sources.into_iter().collect(),
                    state,
                    reason,
                ));
            }
            Verdict::Refused(refusal) => {
                let sources = match refusal {
                    Refusal::AllTrafficRule { source, .. } => vec![source.to_string()],
                    Refusal::PrefixListExposes { list, entry, .. } => {
                        vec![format!("{entry} (prefix list {list})")]
                    }
                    Refusal::PrefixListUnreadable { list, .. } => {
                        vec![format!("prefix list {list} (unread)")]
                    }
                    Refusal::RuleQuota { .. }
                    | Refusal::ClaimedByOtherPolicy { .. }
                    | Refusal::TooManyInterfaces { .. }
                    | Refusal::InterfacesNotRead
                    | Refusal::WatchTooLong { .. } => Vec::new(),
                };
                open.push(entry(
                    group.ports.clone(),
                    sources,
                    OpenState::Refused,
                    refusal.to_string(),
                ));
            }
            Verdict::Exempt if !group.ports.is_empty() => open.push(entry(
                group.ports.clone(),
                Vec::new(),
                OpenState::Exempt,
                "the group carries the exempt tag: left as it is".to_string(),
            )),
            Verdict::Exempt | Verdict::Converged | Verdict::NotFound => {}
        }
    }
    open
}

/// Does a public exposure remain after the pass: a group [`open_exposures`] lists, or a
/// finding whose response is planned, refused or failed (which also covers a pass that
/// stopped before planning)? Pure.
pub fn exposure_remains(report: &PassReport) -> bool {
    !open_exposures(report).is_empty()
        || finding_responses(report)
            .iter()
            .any(|seen| seen.response.kind().leaves_exposure_open())
}

/// How many controls of each state, per framework id: for summaries.
pub fn tally(states: &[FrameworkState]) -> BTreeMap<String, (usize, usize, usize)> {
    states
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                (
                    f.count(ControlStatus::Met),
                    f.count(ControlStatus::NotMet),
                    f.count(ControlStatus::NotApplicable),
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::TypePattern;
    use crate::fixtures::World;
    use crate::outcome::GroupOutcome;
    use crate::policy::Policy;
    use crate::security_group::{PortRange, Traffic};

    fn every_control() -> impl Iterator<Item = (&'static Framework, &'static Control)> {
        catalogue()
            .frameworks
            .iter()
            .flat_map(|f| f.controls.iter().map(move |c| (f, c)))
    }

    fn state_of(facts: &Facts, framework: &str, control: &str) -> ControlState {
        evaluate(catalogue(), facts)
            .into_iter()
            .find(|f| f.id == framework)
            .unwrap()
            .controls
            .into_iter()
            .find(|c| c.id == control)
            .unwrap()
    }

    #[test]
    fn the_embedded_catalogue_parses_with_the_three_frameworks() {
        let parsed: Catalogue = serde_json::from_str(CATALOGUE_JSON).unwrap();
        assert_eq!(&parsed, catalogue());
        let ids: Vec<&str> = parsed.frameworks.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["apra-cps-234", "mas-trm", "nist-800-53-r5"]);
        for framework in &parsed.frameworks {
            assert!(!framework.controls.is_empty(), "{}", framework.id);
            assert!(
                framework.controls.len() <= MAX_CONTROLS,
                "{}: the status schema bounds a framework at {MAX_CONTROLS} controls",
                framework.id
            );
            for control in &framework.controls {
                assert!(
                    !control.requires.is_empty(),
                    "{} claims nothing",
                    control.id
                );
                for text in [&control.title, &control.evidence, &control.citation] {
                    assert!(!text.trim().is_empty(), "{}", control.id);
                    assert!(!text.contains('\n'), "{}: one line", control.id);
                }
            }
        }
    }

    #[test]
    fn control_ids_are_unique_per_framework_and_written_as_the_framework_writes_them() {
        let nist = |id: &str| {
            // `SI-4`, `IR-4(1)`, `SC-7(5)`, `AC-17(1)`: family, number, enhancement.
            let (family, rest) = id.split_once('-').unwrap_or(("", ""));
            let (number, enhancement) = match rest.split_once('(') {
                Some((n, e)) => (n, e.strip_suffix(')').unwrap_or("x")),
                None => (rest, "1"),
            };
            family.len() == 2
                && family.bytes().all(|b| b.is_ascii_uppercase())
                && !number.is_empty()
                && !number.starts_with('0')
                && number.bytes().all(|b| b.is_ascii_digit())
                && !enhancement.is_empty()
                && !enhancement.starts_with('0')
                && enhancement.bytes().all(|b| b.is_ascii_digit())
        };
        let apra = |id: &str| {
            // `CPS 234 para 35`, `CPS 234 para 25(a)`.
            id.strip_prefix("CPS 234 para ").is_some_and(|rest| {
                let (number, sub) = rest.split_once('(').unwrap_or((rest, "a)"));
                !number.is_empty()
                    && number.bytes().all(|b| b.is_ascii_digit())
                    && sub.len() == 2
                    && sub.as_bytes()[0].is_ascii_lowercase()
                    && sub.ends_with(')')
            })
        };
        let mas = |id: &str| {
            // Sections: `11.2`, `12.3`.
            id.split('.').count() == 2
                && id
                    .split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        for framework in &catalogue().frameworks {
            let mut seen = BTreeSet::new();
            for control in &framework.controls {
                assert!(
                    seen.insert(control.id.as_str()),
                    "{} twice in {}",
                    control.id,
                    framework.id
                );
                let written_right = match framework.id.as_str() {
                    "apra-cps-234" => apra(&control.id),
                    "mas-trm" => mas(&control.id),
                    "nist-800-53-r5" => nist(&control.id),
                    other => panic!("unknown framework {other}"),
                };
                assert!(written_right, "{}: {:?}", framework.id, control.id);
            }
        }
        for id in ["IR-4(1)", "SC-7(5)", "AC-17(1)", "SI-4"] {
            assert!(catalogue().control("nist-800-53-r5", id).is_some(), "{id}");
        }
        for wrong in ["IR-4 (1)", "IR-04(01)", "ir-4(1)", "IR-4.1", "SC-7(5"] {
            assert!(!nist(wrong), "{wrong}");
        }
        assert!(
            catalogue()
                .control("apra-cps-234", "CPS 234 para 35")
                .is_some()
        );
    }

    #[test]
    fn every_condition_is_used_by_a_control_and_the_names_match_the_catalogue() {
        let used: BTreeSet<Condition> = every_control()
            .flat_map(|(_, c)| c.requires.iter().chain(&c.not_applicable_unless))
            .copied()
            .collect();
        let all: BTreeSet<Condition> = Condition::ALL.into_iter().collect();
        assert_eq!(used, all, "a condition no control uses");
        for condition in Condition::ALL {
            let json = serde_json::to_value(condition).unwrap();
            assert_eq!(json, condition.as_str());
            assert!(CATALOGUE_JSON.contains(&format!("\"{condition}\"")));
        }
    }

    #[test]
    fn a_control_is_not_applicable_only_where_another_control_of_its_framework_reports_the_gap() {
        for (framework, control) in every_control() {
            for precondition in &control.not_applicable_unless {
                assert!(
                    framework.controls.iter().any(|other| other.id != control.id
                        && other.requires.contains(precondition)
                        && other.not_applicable_unless.is_empty()),
                    "{} {}: NotApplicable unless {precondition}, which no other control requires",
                    framework.id,
                    control.id
                );
                assert!(!control.requires.contains(precondition), "{}", control.id);
            }
        }
    }

    /// The acceptance criterion: every control flips on the one setting it depends on.
    #[test]
    fn every_control_flips_to_not_met_when_one_required_condition_is_removed() {
        let mut flips = 0;
        for (framework, control) in every_control() {
            let met = state_of(&Facts::all(), &framework.id, &control.id);
            assert_eq!(
                met.state,
                ControlStatus::Met,
                "{}: {}",
                control.id,
                met.reason
            );
            for condition in &control.requires {
                assert!(met.reason.contains(condition.holds()), "{}", met.reason);
            }
            for condition in &control.requires {
                let facts = Facts::all().with(*condition, false);
                let flipped = state_of(&facts, &framework.id, &control.id);
                assert_eq!(
                    flipped.state,
                    ControlStatus::NotMet,
                    "{} without {condition}",
                    control.id
                );
                assert_eq!(
                    flipped.reason,
                    format!("to meet: {}", condition.to_meet()),
                    "{}: the reason names exactly the setting to change",
                    control.id
                );
                flips += 1;
            }
            for precondition in &control.not_applicable_unless {
                let facts = Facts::all().with(*precondition, false);
                let state = state_of(&facts, &framework.id, &control.id);
                assert_eq!(state.state, ControlStatus::NotApplicable, "{}", control.id);
                assert_eq!(
                    state.reason,
                    format!("not applicable while {}", precondition.absent())
                );
            }
            // Conditions the control does not name change nothing.
            for other in Condition::ALL {
                if !control.requires.contains(&other)
                    && !control.not_applicable_unless.contains(&other)
                {
                    let facts = Facts::all().with(other, false);
                    assert_eq!(
                        state_of(&facts, &framework.id, &control.id).state,
                        ControlStatus::Met,
                        "{} does not depend on {other}",
                        control.id
                    );
                }
            }
        }
        assert!(flips >= 60, "{flips} flips: the catalogue lost controls");
    }

    #[test]
    fn with_nothing_holding_every_control_is_not_met_or_not_applicable() {
        for framework in evaluate(catalogue(), &Facts::default()) {
            assert_eq!(framework.count(ControlStatus::Met), 0, "{}", framework.id);
            for control in &framework.controls {
                assert!(!control.reason.contains('\n'));
            }
        }
        let (met, not_met, na) = tally(&evaluate(catalogue(), &Facts::all()))["nist-800-53-r5"];
        assert_eq!((not_met, na), (0, 0));
        assert_eq!(met, catalogue().frameworks[2].controls.len());
    }

    #[test]
    fn states_serialize_as_the_status_field_writes_them() {
        let state = state_of(
            &Facts::all().with(Condition::RemediationEnforced, false),
            "nist-800-53-r5",
            "IR-4(1)",
        );
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            serde_json::json!({
                "id": "IR-4(1)",
                "title": "Automate incident handling",
                "state": "NotMet",
                "reason": "to meet: set spec.remediation.mode: Enforce",
            })
        );
        let mas = state_of(&Facts::all(), "mas-trm", "11.2");
        assert_eq!(serde_json::to_value(&mas).unwrap()["unverified"], true);
        let back: ControlState =
            serde_json::from_value(serde_json::to_value(&mas).unwrap()).unwrap();
        assert_eq!(back, mas);
        let para_29 = state_of(
            &Facts::all().with(Condition::RemediationPlanned, false),
            "apra-cps-234",
            "CPS 234 para 29",
        );
        assert_eq!(
            serde_json::to_value(para_29.state).unwrap(),
            "NotApplicable"
        );
    }

    fn route(min: f64, types: &[&str]) -> Route {
        Route {
            channel: "oncall".into(),
            min_severity: Severity::threshold(min).unwrap(),
            finding_types: types
                .iter()
                .map(|t| TypePattern::parse(t).unwrap())
                .collect(),
        }
    }

    fn inputs(channels: &[Route]) -> FactInputs<'_> {
        FactInputs {
            mode: Mode::Enforce,
            archive_remediated: true,
            security_hub_updates: true,
            min_severity: Severity::threshold(4.0).unwrap(),
            all_finding_types: true,
            interval_seconds: 300,
            channels,
            findings_read: true,
            alert_failed: false,
            open_exposure: false,
        }
    }

    #[test]
    fn facts_follow_the_settings_one_by_one() {
        let channels = [route(7.0, &[])];
        assert_eq!(facts_of(&inputs(&channels)), Facts::all());
        let flip = |change: &dyn Fn(&mut FactInputs<'_>), lost: &[Condition]| {
            let mut changed = inputs(&channels);
            change(&mut changed);
            let mut expected = Facts::all();
            for condition in lost {
                expected.set(*condition, false);
            }
            assert_eq!(facts_of(&changed), expected, "{lost:?}");
        };
        flip(
            &|i| i.mode = Mode::DryRun,
            &[Condition::RemediationEnforced],
        );
        flip(
            &|i| i.mode = Mode::Off,
            &[
                Condition::RemediationEnforced,
                Condition::RemediationPlanned,
            ],
        );
        flip(
            &|i| i.archive_remediated = false,
            &[Condition::ArchiveRemediated],
        );
        flip(
            &|i| i.security_hub_updates = false,
            &[Condition::SecurityHubUpdates],
        );
        flip(
            &|i| i.min_severity = Severity::threshold(5.0).unwrap(),
            &[Condition::MonitorsMedium],
        );
        flip(
            &|i| i.min_severity = Severity::threshold(7.5).unwrap(),
            &[Condition::MonitorsMedium, Condition::AlertsHigh],
        );
        flip(
            &|i| i.all_finding_types = false,
            &[Condition::AllFindingTypes],
        );
        flip(&|i| i.interval_seconds = 900, &[]);
        flip(&|i| i.interval_seconds = 901, &[Condition::FrequentPasses]);
        flip(
            &|i| i.channels = &[],
            &[Condition::AlertsHigh, Condition::AlertsAny],
        );
        flip(
            &|i| i.findings_read = false,
            &[Condition::FindingsRead, Condition::NoOpenExposure],
        );
        flip(&|i| i.alert_failed = true, &[Condition::AlertsDelivered]);
        flip(&|i| i.open_exposure = true, &[Condition::NoOpenExposure]);
    }

    #[test]
    fn only_a_channel_at_high_or_lower_without_a_type_filter_hears_every_high_finding() {
        let facts = |channels: &[Route]| facts_of(&inputs(channels));
        assert!(!facts(&[route(9.0, &[])]).alerts_high, "CRITICAL only");
        assert!(
            !facts(&[route(1.0, &["Recon:*"])]).alerts_high,
            "a type filter misses types"
        );
        assert!(facts(&[route(9.0, &[]), route(1.0, &[])]).alerts_high);
        assert!(facts(&[route(9.0, &[])]).alerts_any);
    }

    #[test]
    fn open_exposures_follow_the_plan_and_what_was_applied() {
        let world = World::open_ssh(2);
        // DryRun: both changes planned, not applied; both groups open.
        let dry = world.dry_run();
        let open = open_exposures(&dry);
        assert_eq!(open.len(), 2);
        assert!(open.iter().all(|o| o.state == OpenState::NotApplied));
        assert_eq!(open[0].exposures, [Exposure::tcp(22)]);
        assert_eq!(open[0].sources, ["0.0.0.0/0"]);
        assert_eq!(open[0].findings.len(), 1);
        assert!(exposure_remains(&dry));
        // Enforce, everything done: nothing open.
        let enforced = world.enforced();
        assert!(open_exposures(&enforced).is_empty());
        assert!(!exposure_remains(&enforced));
        // One failed group stays open, with its error.
        let failing = world.enforced_failing(&["sg-2"]);
        let open = open_exposures(&failing);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].group.as_str(), "sg-2");
        assert_eq!(open[0].state, OpenState::Failed);
        assert!(
            open[0].reason.contains("UnauthorizedOperation"),
            "{}",
            open[0].reason
        );
        // The next pass finds both converged: nothing open.
        let after = world.after(&enforced);
        assert!(!exposure_remains(&after.enforced()));
    }

    #[test]
    fn a_refused_or_exempt_group_is_an_open_exposure_with_its_reason() {
        let world = World::default()
            .with_open_group("1", Traffic::All)
            .with_finding("f1", 8.0, "i-1");
        let report = world.report(&Policy::test().enforce(), |g, c| {
            Some(GroupOutcome::done(g, c))
        });
        let [open] = open_exposures(&report).try_into().unwrap();
        assert_eq!(open.state, OpenState::Refused);
        assert_eq!(open.sources, ["0.0.0.0/0"]);
        assert!(
            open.reason.contains("allows all traffic"),
            "{}",
            open.reason
        );

        let mut exempt = World::open_ssh(1);
        let group = exempt.observation.groups.values_mut().next().unwrap();
        group
            .tags
            .insert(crate::policy::DEFAULT_EXEMPT_TAG.to_string(), String::new());
        let [open] = open_exposures(&exempt.enforced()).try_into().unwrap();
        assert_eq!(open.state, OpenState::Exempt);
        assert_eq!(open.exposures, [Exposure::tcp(22)]);
    }

    #[test]
    fn a_pass_that_stopped_before_planning_leaves_the_exposure_unproven() {
        let world = World::open_ssh(1);
        let report = crate::fixtures::failed_at(
            &world,
            crate::outcome::Step::DescribeInstances,
            crate::outcome::Category::Throttled,
        );
        assert!(open_exposures(&report).is_empty());
        assert!(
            exposure_remains(&report),
            "the finding's response is failed"
        );
        // A group not opening the port is not an exposure.
        let closed = World::default()
            .with_open_group("1", Traffic::Tcp(PortRange::single(80)))
            .with_finding("f1", 5.0, "i-1");
        assert!(!exposure_remains(&closed.enforced()));
    }
}
