//! What a pass decided and did: the facts every consumer reads (status, events,
//! alerts, metrics, the command line's output), as values, never as strings.
//!
//! ```text
//!  run_pass ─> PassReport { findings, plan, outcomes: [GroupOutcome { authorize, revoke }], failure }
//!                                                   StepResult: NotNeeded | Done | Failed | NotRun
//! ```

use std::fmt;

use crate::finding::Finding;
use crate::ids::{FindingId, RuleId, SecurityGroupId};
use crate::plan::Plan;
use crate::policy::Mode;
use crate::record::ChangeRecord;

/// The AWS service a step talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    GuardDuty,
    Ec2,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::GuardDuty => "GuardDuty",
            Service::Ec2 => "EC2",
        })
    }
}

/// A step of a pass (or of a revert) that can fail on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    FindDetector,
    ReadFindings,
    DescribeInstances,
    FindWatchedGroups,
    DescribeGroups,
    /// Writing the intent of the changes before making them (the change record).
    RecordIntent,
    Archive,
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
            Step::FindDetector => "find the GuardDuty detector",
            Step::ReadFindings => "read findings",
            Step::DescribeInstances => "describe instances",
            Step::FindWatchedGroups => "find the groups the operator watches",
            Step::DescribeGroups => "describe security groups",
            Step::RecordIntent => "record the changes before making them",
            Step::Archive => "archive remediated findings",
            Step::DescribeRecordedGroups => "describe the recorded security groups",
            Step::Restore => "restore the revoked rules",
            Step::Remove => "remove the added rules",
            Step::Forget => "remove the watch tags",
        }
    }

    pub fn service(self) -> Service {
        match self {
            Step::FindDetector | Step::ReadFindings | Step::Archive => Service::GuardDuty,
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
        matches!(self, Step::FindDetector | Step::ReadFindings)
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
/// in the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: Step,
    pub category: Category,
    pub error: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {}: {}", self.step, self.error)
    }
}

/// Everything a pass saw, decided and did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    pub mode: Mode,
    pub detector: Option<String>,
    pub findings: Vec<Finding>,
    pub plan: Option<Plan>,
    /// Whether the plan was carried out.
    pub applied: bool,
    pub outcomes: Vec<GroupOutcome>,
    pub archived: Vec<FindingId>,
    pub failure: Option<Failure>,
    /// The change record after this pass: the previous one, settled, with what this
    /// pass changed (unchanged when the pass stopped before reading the groups).
    #[serde(skip)]
    pub record: ChangeRecord,
}

impl PassReport {
    /// An empty report of a pass in this mode, before anything was read.
    pub fn new(mode: Mode) -> PassReport {
        PassReport {
            mode,
            detector: None,
            findings: Vec::new(),
            plan: None,
            applied: false,
            outcomes: Vec::new(),
            archived: Vec::new(),
            failure: None,
            record: ChangeRecord::default(),
        }
    }

    /// True when a step of the pass or of a group's change failed.
    pub fn failed(&self) -> bool {
        self.failure.is_some() || self.outcomes.iter().any(|o| !o.succeeded())
    }

    /// The findings were all read: no failure, or one after reading them.
    pub fn findings_read(&self) -> bool {
        match &self.failure {
            None => true,
            Some(failure) => self.detector.is_some() && !failure.step.reads_findings(),
        }
    }

    /// The outcome of a group's change, when it was carried out.
    pub fn outcome(&self, group: &SecurityGroupId) -> Option<&GroupOutcome> {
        self.outcomes.iter().find(|o| &o.group == group)
    }

    /// The category of the pass's failure or of its first failed group, if any.
    pub fn failure_category(&self) -> Option<Category> {
        self.failure
            .as_ref()
            .map(|f| f.category)
            .or_else(|| self.outcomes.iter().find_map(GroupOutcome::category))
    }
}
