//! The narrow interfaces a pass needs from AWS, in domain terms, with one error enum
//! per service. The AWS SDK implementations live in [`crate::aws`]; the stateful
//! in-memory account ([`memory`]) and the failure-injecting wrapper ([`failing`])
//! behind the `testing` feature.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use crate::domain::finding::Finding;
use crate::domain::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use crate::domain::known::Read;
use crate::domain::outcome::Category;
use crate::domain::plan::ChangeSet;
use crate::domain::plan::PrefixListEntries;
use crate::domain::policy::{MemberAccounts, Policy};
use crate::domain::quiet::GroupDigest;
use crate::domain::record::ChangeRecord;
pub use crate::domain::record::Restoration;
use crate::domain::security_group::{Instance, SecurityGroup};
use crate::notify::dispatch::AlertClients;

#[cfg(any(test, feature = "testing"))]
pub mod failing;
#[cfg(any(test, feature = "testing"))]
pub mod memory;

/// An error AWS (or the way to it) returned, reduced to what people and metrics need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The AWS error code (`InvalidPermission.Duplicate`, `AccessDeniedException`);
    /// `None` when the request never got an answer (network, timeout, credentials).
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    /// An SDK error reduced to its code and message; without a code (no answer from
    /// AWS), the chain of causes says why: refused, timed out, …
    pub fn of_sdk<E>(error: E) -> AwsError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match error.code() {
            Some(code) => AwsError {
                code: Some(code.to_string()),
                message: error.message().unwrap_or("no message").to_string(),
            },
            None => AwsError {
                code: None,
                message: error_chain(&error),
            },
        }
    }

    /// A label for metrics and event reasons: never the whole error text.
    pub fn category(&self) -> Category {
        match self.code.as_deref() {
            None => Category::Unreachable,
            Some(c)
                if c.contains("Throttl")
                    || c == "RequestLimitExceeded"
                    || c == "TooManyRequestsException" =>
            {
                Category::Throttled
            }
            Some(c)
                if c.contains("AccessDenied")
                    || c.contains("UnauthorizedOperation")
                    || c.contains("AuthFailure")
                    || c.contains("InvalidClientTokenId")
                    || c.contains("ExpiredToken") =>
            {
                Category::AccessDenied
            }
            Some(c) if c.contains("NotFound") => Category::NotFound,
            Some(c) if c.contains("LimitExceeded") => Category::Quota,
            Some(_) => Category::AwsError,
        }
    }
}

/// The adapters one pass works with, and the account they act in.
#[derive(Debug, Clone)]
pub struct AwsClients<F, S> {
    pub guardduty: F,
    pub ec2: S,
    /// The account of the credentials; findings of other accounts are reported only.
    pub account_id: Option<String>,
    /// The region the clients work in.
    pub region: String,
    /// SES and SNS, for the Email and SMS channels.
    pub alerts: AlertClients,
}

/// Why the adapters for a region could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsSetupError {
    #[error(
        "failed to find an AWS region: set spec.region, or AWS_REGION in the operator's environment"
    )]
    NoRegion,
    #[error("failed to identify the AWS account in {region} (sts:GetCallerIdentity): {error}")]
    IdentifyAccount { region: String, error: String },
    #[error("failed to assume {role} (sts:AssumeRole): {error}")]
    AssumeRole { role: String, error: String },
}

impl AwsSetupError {
    /// A short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            AwsSetupError::NoRegion => "no-region",
            AwsSetupError::IdentifyAccount { .. } => "identify-account",
            AwsSetupError::AssumeRole { .. } => "assume-role",
        }
    }

    /// The `Ready` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AwsSetupError::NoRegion => "NoRegion",
            AwsSetupError::IdentifyAccount { .. } => "AccountUnknown",
            AwsSetupError::AssumeRole { .. } => "AssumeRoleFailed",
        }
    }
}

/// Builds the adapters for a region (`None`: the SDK's own region): the SDK ones in
/// production ([`crate::aws::clients::SdkAwsFactory`]), the in-memory account in tests.
pub trait AwsFactory: Send + Sync + 'static {
    type Findings: FindingsSource + Send + Sync;
    type Ec2: SecurityGroups + Send + Sync;

    fn clients(
        &self,
        region: Option<&str>,
    ) -> impl Future<Output = Result<AwsClients<Self::Findings, Self::Ec2>, AwsSetupError>> + Send;

    /// EC2 in a member account `account` of `region`, through the role `members`
    /// names (sts:AssumeRole; credentials cached and refreshed before they expire).
    fn member(
        &self,
        account: &str,
        region: &str,
        members: &MemberAccounts,
    ) -> impl Future<Output = Result<Self::Ec2, AwsSetupError>> + Send {
        let role = members.role_arn(account, region);
        async move {
            Err(AwsSetupError::AssumeRole {
                role,
                error: "member accounts are not supported here".into(),
            })
        }
    }

    /// The AWS calls the clients made so far, by operation and outcome (for metrics).
    fn call_outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        BTreeMap::new()
    }
}

/// Where findings come from: GuardDuty.
pub trait FindingsSource {
    /// The detector to read: the configured one, or the region's only detector.
    fn detector(
        &self,
        configured: Option<&str>,
    ) -> impl Future<Output = Result<String, FindingsError>> + Send;

    /// The findings GuardDuty lists for the policy's criteria, as far as its API
    /// applies them (the caller selects the rest): with [`Read::Full`] the unarchived
    /// ones; with [`Read::UpdatedSince`] those updated since, archived ones too.
    fn findings(
        &self,
        detector: &str,
        policy: &Policy,
        read: Read,
    ) -> impl Future<Output = Result<Vec<Finding>, FindingsError>> + Send;

    fn archive(
        &self,
        detector: &str,
        ids: &[FindingId],
    ) -> impl Future<Output = Result<(), FindingsError>> + Send;

    /// Tells GuardDuty these findings were useful (UpdateFindingsFeedback).
    fn feedback(
        &self,
        detector: &str,
        ids: &[FindingId],
    ) -> impl Future<Output = Result<(), FindingsError>> + Send;

    /// Marks the Security Hub copies of these findings RESOLVED, each with its note
    /// (BatchUpdateFindings); the findings Security Hub did not update are an error.
    fn resolve_in_security_hub(
        &self,
        resolved: &[HubResolution],
    ) -> impl Future<Output = Result<(), FindingsError>> + Send;
}

/// A remediated finding, for Security Hub: its ARN (its id there), the region of its
/// GuardDuty product, and the note naming the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubResolution {
    pub arn: String,
    pub region: String,
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    #[error("failed to list the GuardDuty detectors")]
    ListDetectors(#[source] AwsError),
    #[error(
        "failed to find a GuardDuty detector in this region: enable GuardDuty or set spec.detectorId"
    )]
    NoDetector,
    #[error("failed to list the findings of detector {detector}")]
    ListFindings {
        detector: String,
        #[source]
        source: AwsError,
    },
    #[error("failed to read {count} findings of detector {detector}")]
    GetFindings {
        detector: String,
        count: usize,
        #[source]
        source: AwsError,
    },
    #[error("failed to archive {count} findings of detector {detector}")]
    Archive {
        detector: String,
        count: usize,
        #[source]
        source: AwsError,
    },
    #[error("failed to send feedback on {count} findings of detector {detector}")]
    Feedback {
        detector: String,
        count: usize,
        #[source]
        source: AwsError,
    },
    #[error("failed to mark {count} findings resolved in Security Hub")]
    SecurityHub {
        count: usize,
        #[source]
        source: AwsError,
    },
}

impl FindingsError {
    pub fn category(&self) -> Category {
        match self {
            FindingsError::NoDetector => Category::NoDetector,
            FindingsError::ListDetectors(source)
            | FindingsError::ListFindings { source, .. }
            | FindingsError::GetFindings { source, .. }
            | FindingsError::Archive { source, .. }
            | FindingsError::Feedback { source, .. }
            | FindingsError::SecurityHub { source, .. } => source.category(),
        }
    }
}

/// The security groups and instances of the account: EC2.
pub trait SecurityGroups {
    /// These instances as they are now; unknown ids are simply absent.
    fn instances(
        &self,
        ids: &[InstanceId],
    ) -> impl Future<Output = Result<Vec<Instance>, Ec2Error>> + Send;

    /// These groups with their ingress rules, interface counts and watches (their
    /// watch tags); unknown ids are absent.
    fn groups(
        &self,
        ids: &[SecurityGroupId],
    ) -> impl Future<Output = Result<Vec<SecurityGroup>, Ec2Error>> + Send;

    /// These groups and every group `owner` watches (when given), in one read where
    /// the adapter can: the groups, and which of them `owner` watches. Their
    /// interfaces are not counted (`network_interfaces: None`): only a group the plan
    /// would change needs that, and [`SecurityGroups::interface_counts`] reads it.
    fn groups_with_watched(
        &self,
        ids: &[SecurityGroupId],
        owner: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<SecurityGroup>, Vec<SecurityGroupId>), Ec2Error>> + Send;

    /// The groups `owner` watches: those carrying its watch tag.
    fn watched_groups(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<SecurityGroupId>, Ec2Error>> + Send;

    /// How many network interfaces use each of these groups (0 for a group none
    /// uses): the blast-radius guard's count, for the groups a plan would change.
    fn interface_counts(
        &self,
        ids: &[SecurityGroupId],
    ) -> impl Future<Output = Result<BTreeMap<SecurityGroupId, usize>, Ec2Error>> + Send;

    /// The digests of every group `owner` watches (by its tag, in one read where the
    /// adapter can) and of these other groups (unknown ids are absent): what a quiet
    /// pass reads of EC2 ([`crate::domain::quiet`]).
    fn digests(
        &self,
        owner: &str,
        ids: &[SecurityGroupId],
    ) -> impl Future<Output = Result<BTreeMap<SecurityGroupId, GroupDigest>, Ec2Error>> + Send;

    /// The entries of these managed prefix lists; a list that cannot be read says why
    /// (the plan then refuses the groups that use it on a port in scope).
    fn prefix_lists(
        &self,
        ids: &[String],
    ) -> impl Future<Output = BTreeMap<String, PrefixListEntries>> + Send;

    /// Writes `owner`'s watch tag with `value` on these groups, before their rules
    /// change, so the next pass watches them even if this one stops half-way.
    fn remember(
        &self,
        owner: &str,
        value: &str,
        groups: &[SecurityGroupId],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;

    /// Removes `owner`'s watch tag from these groups (a revert).
    fn forget(
        &self,
        owner: &str,
        groups: &[SecurityGroupId],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;

    /// Adds the change's rules in one call, tagged as its owner's; a rule that
    /// already exists counts as added. Returns the ids AWS reported.
    fn authorize(
        &self,
        group: &SecurityGroupId,
        change: &ChangeSet,
    ) -> impl Future<Output = Result<Vec<RuleId>, Ec2Error>> + Send;

    /// Removes rules by id in one call; a rule already gone counts as removed.
    fn revoke(
        &self,
        group: &SecurityGroupId,
        rules: &[RuleId],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;

    /// Puts back rules the operator revoked, as they were: without the operator's tag
    /// (they are not its rules, and a tagged world-open rule would be revoked again);
    /// a rule that already exists counts as restored.
    fn restore(
        &self,
        group: &SecurityGroupId,
        rules: &[Restoration],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send;
}

/// Where a pass writes its intent before its first change (write-ahead), so a pass
/// killed between two AWS calls leaves a record the next pass completes: the
/// controller's status, the command line's `--state` file.
pub trait Journal {
    fn write_ahead(
        &self,
        record: &ChangeRecord,
    ) -> impl Future<Output = Result<(), JournalError>> + Send;
}

/// The intent could not be made durable: no change is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to record the changes before making them: {0}")]
pub struct JournalError(pub String);

/// No record is kept (a command-line run without `--state`, a benchmark).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournal;

impl Journal for NoJournal {
    async fn write_ahead(&self, _: &ChangeRecord) -> Result<(), JournalError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    #[error("failed to describe instances")]
    DescribeInstances(#[source] AwsError),
    #[error("failed to describe security groups")]
    DescribeGroups(#[source] AwsError),
    #[error("failed to describe security group rules")]
    DescribeRules(#[source] AwsError),
    #[error("failed to describe network interfaces")]
    DescribeInterfaces(#[source] AwsError),
    #[error("failed to find the groups the operator watches")]
    DescribeWatched(#[source] AwsError),
    #[error("failed to tag {groups} security groups as watched")]
    Remember {
        groups: usize,
        #[source]
        source: AwsError,
    },
    #[error("failed to remove the watch tag from {groups} security groups")]
    Forget {
        groups: usize,
        #[source]
        source: AwsError,
    },
    #[error("failed to authorize ingress in {group}")]
    Authorize {
        group: SecurityGroupId,
        #[source]
        source: AwsError,
    },
    /// A one-by-one fallback stopped part-way: the rules it did change stay pending
    /// in the change record, settled against AWS by the next pass.
    #[error("failed to authorize ingress in {group} after adding {done} of {of} rules one by one")]
    AuthorizePartly {
        group: SecurityGroupId,
        done: usize,
        of: usize,
        #[source]
        source: AwsError,
    },
    #[error("failed to revoke ingress rules in {group}")]
    Revoke {
        group: SecurityGroupId,
        #[source]
        source: AwsError,
    },
    #[error("failed to revoke ingress rules in {group} after revoking {done} of {of} one by one")]
    RevokePartly {
        group: SecurityGroupId,
        done: usize,
        of: usize,
        #[source]
        source: AwsError,
    },
    #[error("failed to restore ingress rules in {group}")]
    Restore {
        group: SecurityGroupId,
        #[source]
        source: AwsError,
    },
}

impl Ec2Error {
    pub fn category(&self) -> Category {
        self.aws().category()
    }

    pub fn aws(&self) -> &AwsError {
        match self {
            Ec2Error::DescribeInstances(source)
            | Ec2Error::DescribeGroups(source)
            | Ec2Error::DescribeRules(source)
            | Ec2Error::DescribeInterfaces(source)
            | Ec2Error::DescribeWatched(source)
            | Ec2Error::Remember { source, .. }
            | Ec2Error::Forget { source, .. }
            | Ec2Error::Authorize { source, .. }
            | Ec2Error::AuthorizePartly { source, .. }
            | Ec2Error::Revoke { source, .. }
            | Ec2Error::RevokePartly { source, .. }
            | Ec2Error::Restore { source, .. } => source,
        }
    }
}

impl<T: FindingsSource + Send + Sync> FindingsSource for std::sync::Arc<T> {
    fn detector(
        &self,
        configured: Option<&str>,
    ) -> impl Future<Output = Result<String, FindingsError>> + Send {
        self.as_ref().detector(configured)
    }
    fn findings(
        &self,
        detector: &str,
        policy: &Policy,
        read: Read,
    ) -> impl Future<Output = Result<Vec<Finding>, FindingsError>> + Send {
        self.as_ref().findings(detector, policy, read)
    }
    fn archive(
        &self,
        detector: &str,
        ids: &[FindingId],
    ) -> impl Future<Output = Result<(), FindingsError>> + Send {
        self.as_ref().archive(detector, ids)
    }
    fn feedback(
        &self,
        detector: &str,
        ids: &[FindingId],
    ) -> impl Future<Output = Result<(), FindingsError>> + Send {
        self.as_ref().feedback(detector, ids)
    }
    fn resolve_in_security_hub(
        &self,
        resolved: &[HubResolution],
    ) -> impl Future<Output = Result<(), FindingsError>> + Send {
        self.as_ref().resolve_in_security_hub(resolved)
    }
}

impl<T: SecurityGroups + Send + Sync> SecurityGroups for std::sync::Arc<T> {
    fn instances(
        &self,
        ids: &[InstanceId],
    ) -> impl Future<Output = Result<Vec<Instance>, Ec2Error>> + Send {
        self.as_ref().instances(ids)
    }
    fn groups(
        &self,
        ids: &[SecurityGroupId],
    ) -> impl Future<Output = Result<Vec<SecurityGroup>, Ec2Error>> + Send {
        self.as_ref().groups(ids)
    }
    fn watched_groups(
        &self,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<SecurityGroupId>, Ec2Error>> + Send {
        self.as_ref().watched_groups(owner)
    }
    fn groups_with_watched(
        &self,
        ids: &[SecurityGroupId],
        owner: Option<&str>,
    ) -> impl Future<Output = Result<(Vec<SecurityGroup>, Vec<SecurityGroupId>), Ec2Error>> + Send
    {
        self.as_ref().groups_with_watched(ids, owner)
    }
    fn interface_counts(
        &self,
        ids: &[SecurityGroupId],
    ) -> impl Future<Output = Result<BTreeMap<SecurityGroupId, usize>, Ec2Error>> + Send {
        self.as_ref().interface_counts(ids)
    }
    fn digests(
        &self,
        owner: &str,
        ids: &[SecurityGroupId],
    ) -> impl Future<Output = Result<BTreeMap<SecurityGroupId, GroupDigest>, Ec2Error>> + Send {
        self.as_ref().digests(owner, ids)
    }
    fn prefix_lists(
        &self,
        ids: &[String],
    ) -> impl Future<Output = BTreeMap<String, PrefixListEntries>> + Send {
        self.as_ref().prefix_lists(ids)
    }
    fn remember(
        &self,
        owner: &str,
        value: &str,
        groups: &[SecurityGroupId],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.as_ref().remember(owner, value, groups)
    }
    fn forget(
        &self,
        owner: &str,
        groups: &[SecurityGroupId],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.as_ref().forget(owner, groups)
    }
    fn authorize(
        &self,
        group: &SecurityGroupId,
        change: &ChangeSet,
    ) -> impl Future<Output = Result<Vec<RuleId>, Ec2Error>> + Send {
        self.as_ref().authorize(group, change)
    }
    fn revoke(
        &self,
        group: &SecurityGroupId,
        rules: &[RuleId],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.as_ref().revoke(group, rules)
    }
    fn restore(
        &self,
        group: &SecurityGroupId,
        rules: &[Restoration],
    ) -> impl Future<Output = Result<(), Ec2Error>> + Send {
        self.as_ref().restore(group, rules)
    }
}

/// The full text of an error and its sources, for people.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
