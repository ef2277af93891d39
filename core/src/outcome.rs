//! What a pass decided and did: the facts every consumer reads (status, events,
//! alerts, metrics, the command line's output), as values, never as strings.
//!
//! ```text
//!  run_pass ─> PassReport { findings, plan, outcomes: [GroupOutcome { authorize, revoke }], failures }
//!                                                   StepResult: NotNeeded | Done | Failed | NotRun
//! ```
//!
//! One report covers every region and account of a policy: the findings carry their
//! account and region, the plan's groups theirs, and a failure names the region (and
//! the account) it stopped, so one region failing leaves the others' facts intact.

use std::collections::BTreeMap;
use std::fmt;

use crate::finding::Finding;
use crate::ids::{FindingId, RuleId, SecurityGroupId};
use crate::known::Read;
use crate::plan::Plan;
use crate::policy::Mode;
use crate::record::ChangeRecord;

/// The AWS service a step talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    GuardDuty,
    Ec2,
    Sts,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::GuardDuty => "GuardDuty",
            Service::Ec2 => "EC2",
            Service::Sts => "STS",
        })
    }
}

/// A step of a pass (or of a revert) that can fail on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Setting up the region's clients: its region, the credentials' account.
    IdentifyAccount,
    FindDetector,
    ReadFindings,
    /// Assuming the member account's role (`spec.memberAccounts`).
    AssumeRole,
    DescribeInstances,
    FindWatchedGroups,
    DescribeGroups,
    /// Writing the intent of the changes before making them (the change record).
    RecordIntent,
    Archive,
    /// Telling GuardDuty the remediated findings were useful (`findingFeedback`).
    Feedback,
    /// Marking the remediated findings resolved in Security Hub (`securityHub`).
    SecurityHub,
    /// A revert: reading the groups its record names.
    DescribeRecordedGroups,
    /// A revert: putting back the rules the operator revoked.
    Restore,
    /// A revert: removing the rules the operator added.
    Remove,
    /// A revert: removing the policy's watch tags from the groups.
    Forget,
}

impl Step {
    /// What the step does, as a failure reports it ("failed to …").
    pub fn as_str(self) -> &'static str {
        match self {
            Step::IdentifyAccount => "identify the AWS account",
            Step::FindDetector => "find the GuardDuty detector",
            Step::ReadFindings => "read findings",
            Step::AssumeRole => "assume the member account's role",
            Step::DescribeInstances => "describe instances",
            Step::FindWatchedGroups => "find the groups the operator watches",
            Step::DescribeGroups => "describe security groups",
            Step::RecordIntent => "record the changes before making them",
            Step::Archive => "archive remediated findings",
            Step::Feedback => "send feedback on remediated findings",
            Step::SecurityHub => "mark remediated findings resolved in Security Hub",
            Step::DescribeRecordedGroups => "describe the recorded security groups",
            Step::Restore => "restore the revoked rules",
            Step::Remove => "remove the added rules",
            Step::Forget => "remove the watch tags",
        }
    }

    pub fn service(self) -> Service {
        match self {
            Step::FindDetector
            | Step::ReadFindings
            | Step::Archive
            | Step::Feedback
            | Step::SecurityHub => Service::GuardDuty,
            Step::AssumeRole | Step::IdentifyAccount => Service::Sts,
            Step::DescribeInstances
            | Step::FindWatchedGroups
            | Step::DescribeGroups
            | Step::RecordIntent
            | Step::DescribeRecordedGroups
            | Step::Restore
            | Step::Remove
            | Step::Forget => Service::Ec2,
        }
    }

    /// The steps before which a failure leaves the findings unread.
    pub fn reads_findings(self) -> bool {
        matches!(
            self,
            Step::IdentifyAccount | Step::FindDetector | Step::ReadFindings
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What kind of failure: the label of metrics and the root of event and condition
/// reasons, never the error's whole text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// No answer (network, timeout, credentials that never reached AWS).
    Unreachable,
    /// The service asked us to slow down.
    Throttled,
    /// Not allowed (IAM, expired credentials, 401/403).
    AccessDenied,
    NotFound,
    /// A quota or limit was exceeded.
    Quota,
    /// Any other error answer from AWS.
    AwsError,
    /// The region has no GuardDuty detector.
    NoDetector,
    /// A channel service answered 5xx.
    ServerError,
    /// A channel service refused the request (4xx, a permanent SMTP reply).
    Rejected,
    /// A channel service answered 2xx, but not what its API documents.
    UnexpectedAnswer,
    /// An SMTP server failed transiently.
    SmtpError,
    /// A channel cannot be used as configured (a secret missing).
    Setup,
    /// The change record could not be written (the status, the state file).
    Record,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Unreachable => "unreachable",
            Category::Throttled => "throttled",
            Category::AccessDenied => "access-denied",
            Category::NotFound => "not-found",
            Category::Quota => "quota",
            Category::AwsError => "aws-error",
            Category::NoDetector => "no-detector",
            Category::ServerError => "server-error",
            Category::Rejected => "rejected",
            Category::UnexpectedAnswer => "unexpected-answer",
            Category::SmtpError => "smtp-error",
            Category::Setup => "setup",
            Category::Record => "record",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Category {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The result of one step of a group's change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum StepResult {
    /// Nothing to do in this step.
    NotNeeded,
    /// Done: how many rules were added or removed, and the rule ids AWS reported
    /// (AWS may report fewer ids than rules; moto reports only the last permission's).
    #[serde(rename_all = "camelCase")]
    Done {
        rules: usize,
        rule_ids: Vec<RuleId>,
    },
    Failed {
        category: Category,
        error: String,
    },
    /// Not attempted, and why.
    NotRun {
        reason: String,
    },
}

impl StepResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, StepResult::NotNeeded | StepResult::Done { .. })
    }

    pub fn is_done(&self) -> bool {
        matches!(self, StepResult::Done { .. })
    }

    /// The error of a failed step.
    pub fn error(&self) -> Option<&str> {
        match self {
            StepResult::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What happened to one group's change set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupOutcome {
    pub group: SecurityGroupId,
    /// Writing the group's watch tag, before its rules change.
    pub remember: StepResult,
    pub authorize: StepResult,
    pub revoke: StepResult,
}

impl GroupOutcome {
    pub fn succeeded(&self) -> bool {
        self.remember.is_ok() && self.authorize.is_ok() && self.revoke.is_ok()
    }

    /// The first failed step's error, or a generic sentence.
    pub fn error(&self) -> &str {
        self.remember
            .error()
            .or(self.authorize.error())
            .or(self.revoke.error())
            .unwrap_or("a step did not complete")
    }

    /// The category of the first failed step.
    pub fn category(&self) -> Option<Category> {
        [&self.remember, &self.authorize, &self.revoke]
            .into_iter()
            .find_map(|step| match step {
                StepResult::Failed { category, .. } => Some(*category),
                _ => None,
            })
    }
}

/// A step of the pass that could not be completed; the steps before it are kept
/// in the report. A failure in one region (or one member account) stops only that
/// region's (or account's) pass.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: Step,
    pub category: Category,
    pub error: String,
    /// The region whose pass stopped; `None` for a step of the whole pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The account whose part stopped, when it is a member account's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl Failure {
    /// A failure of the whole pass (no region or account).
    pub fn new(step: Step, category: Category, error: impl Into<String>) -> Failure {
        Failure {
            step,
            category,
            error: error.into(),
            region: None,
            account: None,
        }
    }

    /// The same failure, in `region`.
    pub fn in_region(mut self, region: &str) -> Failure {
        self.region = Some(region.to_string());
        self
    }

    /// The same failure, of `account`'s part.
    pub fn in_account(mut self, account: &str) -> Failure {
        self.account = Some(account.to_string());
        self
    }

    /// Does the failure stop what concerns a finding of `account` in `region`?
    pub fn covers(&self, account: &str, region: &str) -> bool {
        self.region.as_deref().is_none_or(|r| r == region)
            && self.account.as_deref().is_none_or(|a| a == account)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {}", self.step)?;
        match (&self.account, &self.region) {
            (Some(account), Some(region)) => write!(f, " in account {account} ({region})")?,
            (Some(account), None) => write!(f, " in account {account}")?,
            (None, Some(region)) => write!(f, " in {region}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.error)
    }
}

/// Everything a pass saw, decided and did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    pub mode: Mode,
    /// The regions the pass covers, in the policy's order.
    pub regions: Vec<String>,
    /// The detector read in each region.
    pub detectors: BTreeMap<String, String>,
    /// The findings the pass acted on (every region and account, most severe first).
    pub findings: Vec<Finding>,
    /// The regions whose findings are all here, and how they were listed (in full, or
    /// since the last pass and merged with what it knew): a finding of such a region
    /// that is not here is no longer open. A pass for a few findings (an event) lists
    /// none.
    #[serde(skip)]
    pub listed: BTreeMap<String, Read>,
    /// A pass about a few findings (an event's), not every open one: what it found is
    /// not the policy's whole picture.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub targeted: bool,
    pub plan: Option<Plan>,
    /// Whether the plan was carried out.
    pub applied: bool,
    pub outcomes: Vec<GroupOutcome>,
    pub archived: Vec<FindingId>,
    /// Findings GuardDuty was told were useful (`findingFeedback`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<FindingId>,
    /// Findings marked resolved in Security Hub (`securityHub.updateFindings`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_hub: Vec<FindingId>,
    /// What could not be done, per region and account; the rest went ahead.
    pub failures: Vec<Failure>,
    /// The change record after this pass: the previous one, settled, with what this
    /// pass changed (unchanged when the pass stopped before reading the groups).
    #[serde(skip)]
    pub record: ChangeRecord,
    /// The account-regions this pass found quiet: nothing new listed, and the groups'
    /// digests as the last pass left them, so it planned what that pass observed
    /// (see [`crate::quiet`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quiet: Vec<QuietScope>,
    /// The account-regions this pass left settled, for the next one to be quiet in.
    #[serde(skip)]
    pub settled: Vec<SettledScope>,
}

/// An account-region a pass found quiet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuietScope {
    pub region: String,
    /// `None`: the credentials' own account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// How many groups its digests showed unchanged.
    pub groups: usize,
}

/// An account-region a pass left settled (`account` `None`: the credentials' own).
#[derive(Debug, Clone, PartialEq)]
pub struct SettledScope {
    pub region: String,
    pub account: Option<String>,
    pub settled: crate::quiet::Settled,
}

impl PassReport {
    /// An empty report of a pass in this mode, before anything was read.
    pub fn new(mode: Mode) -> PassReport {
        PassReport {
            mode,
            regions: Vec::new(),
            detectors: BTreeMap::new(),
            findings: Vec::new(),
            listed: BTreeMap::new(),
            targeted: false,
            plan: None,
            applied: false,
            outcomes: Vec::new(),
            archived: Vec::new(),
            feedback: Vec::new(),
            security_hub: Vec::new(),
            failures: Vec::new(),
            record: ChangeRecord::default(),
            quiet: Vec::new(),
            settled: Vec::new(),
        }
    }

    /// True when a step of the pass or of a group's change failed.
    pub fn failed(&self) -> bool {
        !self.failures.is_empty() || self.outcomes.iter().any(|o| !o.succeeded())
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failures.first()
    }

    /// The failure that stopped what concerns a finding of `account` in `region`.
    pub fn failure_for(&self, account: &str, region: &str) -> Option<&Failure> {
        self.failures.iter().find(|f| f.covers(account, region))
    }

    /// The findings of every region were read: no failure before or while reading them.
    pub fn findings_read(&self) -> bool {
        !self.failures.iter().any(|f| f.step.reads_findings())
    }

    /// The findings of `region` were read.
    pub fn findings_read_in(&self, region: &str) -> bool {
        !self
            .failures
            .iter()
            .any(|f| f.step.reads_findings() && f.region.as_deref().is_none_or(|r| r == region))
    }

    /// The outcome of a group's change, when it was carried out.
    pub fn outcome(&self, group: &SecurityGroupId) -> Option<&GroupOutcome> {
        self.outcomes.iter().find(|o| &o.group == group)
    }

    /// The category of the pass's first failure or of its first failed group, if any.
    pub fn failure_category(&self) -> Option<Category> {
        self.failure()
            .map(|f| f.category)
            .or_else(|| self.outcomes.iter().find_map(GroupOutcome::category))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_its_region_and_account_and_covers_only_them() {
        let whole = Failure::new(Step::RecordIntent, Category::Record, "conflict");
        assert_eq!(
            whole.to_string(),
            "failed to record the changes before making them: conflict"
        );
        assert!(whole.covers("1", "us-east-1"));
        let region = Failure::new(Step::ReadFindings, Category::Unreachable, "timed out")
            .in_region("eu-west-1");
        assert_eq!(
            region.to_string(),
            "failed to read findings in eu-west-1: timed out"
        );
        assert!(region.covers("1", "eu-west-1"));
        assert!(!region.covers("1", "us-east-1"));
        let member = Failure::new(Step::AssumeRole, Category::AccessDenied, "denied")
            .in_region("eu-west-1")
            .in_account("111111111111");
        assert_eq!(
            member.to_string(),
            "failed to assume the member account's role in account 111111111111 (eu-west-1): \
             denied"
        );
        assert!(member.covers("111111111111", "eu-west-1"));
        assert!(!member.covers("123456789012", "eu-west-1"));
    }

    #[test]
    fn findings_are_read_in_a_region_unless_its_reading_failed() {
        let mut report = PassReport::new(Mode::Enforce);
        report.failures.push(
            Failure::new(Step::ReadFindings, Category::Throttled, "slow down")
                .in_region("eu-west-1"),
        );
        assert!(report.findings_read_in("us-east-1"));
        assert!(!report.findings_read_in("eu-west-1"));
        assert!(!report.findings_read());
        assert_eq!(
            report.failure_for("1", "eu-west-1").map(|f| f.step),
            Some(Step::ReadFindings)
        );
        assert!(report.failure_for("1", "us-east-1").is_none());
    }
}
