//! A failure-injecting wrapper around any account (feature `testing`), in the style
//! of mountpoint-s3's `failure_client.rs`: faults are keyed by a typed [`Operation`]
//! (and, for a group's change, the group), each failing a given number of times or
//! for good; every call is logged, failed or not, so a test can also say what was
//! never attempted.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::finding::Finding;
use crate::domain::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use crate::domain::known::Read;
use crate::domain::plan::{ChangeSet, PrefixListEntries};
use crate::domain::policy::Policy;
use crate::domain::quiet::GroupDigest;
use crate::domain::security_group::{Instance, SecurityGroup};
use crate::ports::{
    AwsError, Ec2Error, FindingsError, FindingsSource, Restoration, SecurityGroups,
};

/// Every operation of the ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Detector,
    Findings,
    Archive,
    Feedback,
    SecurityHub,
    Instances,
    Groups,
    WatchedGroups,
    Interfaces,
    Digests,
    PrefixLists,
    Remember,
    Forget,
    Authorize,
    Revoke,
    Restore,
}

/// One call that reached the wrapper: the operation and, for a group's change, the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub operation: Operation,
    pub group: Option<SecurityGroupId>,
    /// Whether the wrapper failed it.
    pub failed: bool,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: Operation,
    /// `None`: every group (and the operations that name none).
    group: Option<SecurityGroupId>,
    error: AwsError,
    /// How many more calls fail; `None`: every call.
    remaining: Option<usize>,
}

/// `inner`, with the faults injected by [`Failing::fail`] and friends.
#[derive(Debug)]
pub struct Failing<T> {
    inner: T,
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<Vec<Call>>,
}

/// The error injected when a test does not choose one: access denied.
pub fn access_denied() -> AwsError {
    AwsError {
        code: Some("UnauthorizedOperation".into()),
        message: "injected".into(),
    }
}

/// An injected throttling error.
pub fn throttled() -> AwsError {
    AwsError {
        code: Some("RequestLimitExceeded".into()),
        message: "injected".into(),
    }
}

impl<T> Failing<T> {
    pub fn new(inner: T) -> Failing<T> {
        Failing {
            inner,
            faults: Mutex::default(),
            calls: Mutex::default(),
        }
    }

    /// `operation` fails for good (access denied), in `group` only when given.
    pub fn fail(self, operation: Operation, group: Option<&str>) -> Self {
        self.fail_with(operation, group, access_denied(), None)
    }

    /// `operation` fails `times` times (for good with `None`) with `error`.
    pub fn fail_with(
        self,
        operation: Operation,
        group: Option<&str>,
        error: AwsError,
        times: Option<usize>,
    ) -> Self {
        self.faults.lock().unwrap().push(Fault {
            operation,
            group: group.map(|g| SecurityGroupId::parse(g).expect("a group id")),
            error,
            remaining: times,
        });
        self
    }

    /// No more faults from now on.
    pub fn heal(&self) {
        self.faults.lock().unwrap().clear();
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls of one operation so far.
    pub fn calls_of(&self, operation: Operation) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .collect()
    }

    pub fn forget_calls(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// Logs the call and returns the injected error, if the call must fail.
    fn check(&self, operation: Operation, group: Option<&SecurityGroupId>) -> Option<AwsError> {
        let mut faults = self.faults.lock().unwrap();
        let fault = faults.iter_mut().find(|f| {
            f.operation == operation
                && f.remaining != Some(0)
                && f.group.as_ref().is_none_or(|g| Some(g) == group)
        });
        let error = fault.map(|fault| {
            if let Some(remaining) = &mut fault.remaining {
                *remaining -= 1;
            }
            fault.error.clone()
        });
        self.calls.lock().unwrap().push(Call {
            operation,
            group: group.cloned(),
            failed: error.is_some(),
        });
        error
    }
}

impl<T: FindingsSource + Sync> FindingsSource for Failing<T> {
    async fn detector(&self, configured: Option<&str>) -> Result<String, FindingsError> {
        match self.check(Operation::Detector, None) {
            Some(error) => Err(FindingsError::ListDetectors(error)),
            None => self.inner.detector(configured).await,
        }
    }
    async fn findings(
        &self,
        detector: &str,
        policy: &Policy,
        read: Read,
    ) -> Result<Vec<Finding>, FindingsError> {
        match self.check(Operation::Findings, None) {
            Some(source) => Err(FindingsError::ListFindings {
                detector: detector.to_string(),
                source,
            }),
            None => self.inner.findings(detector, policy, read).await,
        }
    }
    async fn resolve_in_security_hub(
        &self,
        resolved: &[crate::ports::HubResolution],
    ) -> Result<(), FindingsError> {
        match self.check(Operation::SecurityHub, None) {
            Some(source) => Err(FindingsError::SecurityHub {
                count: resolved.len(),
                source,
            }),
            None => self.inner.resolve_in_security_hub(resolved).await,
        }
    }
    async fn feedback(&self, detector: &str, ids: &[FindingId]) -> Result<(), FindingsError> {
        match self.check(Operation::Feedback, None) {
            Some(source) => Err(FindingsError::Feedback {
                detector: detector.to_string(),
                count: ids.len(),
                source,
            }),
            None => self.inner.feedback(detector, ids).await,
        }
    }
    async fn archive(&self, detector: &str, ids: &[FindingId]) -> Result<(), FindingsError> {
        match self.check(Operation::Archive, None) {
            Some(source) => Err(FindingsError::Archive {
                detector: detector.to_string(),
                count: ids.len(),
                source,
            }),
            None => self.inner.archive(detector, ids).await,
        }
    }
}

impl<T: SecurityGroups + Sync> SecurityGroups for Failing<T> {
    async fn instances(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, Ec2Error> {
        match self.check(Operation::Instances, None) {
            Some(error) => Err(Ec2Error::DescribeInstances(error)),
            None => self.inner.instances(ids).await,
        }
    }
    async fn groups(&self, ids: &[SecurityGroupId]) -> Result<Vec<SecurityGroup>, Ec2Error> {
        match self.check(Operation::Groups, None) {
            Some(error) => Err(Ec2Error::DescribeGroups(error)),
            None => self.inner.groups(ids).await,
        }
    }
    async fn groups_with_watched(
        &self,
        ids: &[SecurityGroupId],
        owner: Option<&str>,
    ) -> Result<(Vec<SecurityGroup>, Vec<SecurityGroupId>), Ec2Error> {
        if owner.is_some()
            && let Some(error) = self.check(Operation::WatchedGroups, None)
        {
            return Err(Ec2Error::DescribeWatched(error));
        }
        match self.check(Operation::Groups, None) {
            Some(error) => Err(Ec2Error::DescribeGroups(error)),
            None => self.inner.groups_with_watched(ids, owner).await,
        }
    }
    async fn watched_groups(&self, owner: &str) -> Result<Vec<SecurityGroupId>, Ec2Error> {
        match self.check(Operation::WatchedGroups, None) {
            Some(error) => Err(Ec2Error::DescribeWatched(error)),
            None => self.inner.watched_groups(owner).await,
        }
    }
    async fn digests(
        &self,
        owner: &str,
        ids: &[SecurityGroupId],
    ) -> Result<BTreeMap<SecurityGroupId, GroupDigest>, Ec2Error> {
        match self.check(Operation::Digests, None) {
            Some(error) => Err(Ec2Error::DescribeWatched(error)),
            None => self.inner.digests(owner, ids).await,
        }
    }
    async fn interface_counts(
        &self,
        ids: &[SecurityGroupId],
    ) -> Result<BTreeMap<SecurityGroupId, usize>, Ec2Error> {
        match self.check(Operation::Interfaces, None) {
            Some(error) => Err(Ec2Error::DescribeInterfaces(error)),
            None => self.inner.interface_counts(ids).await,
        }
    }
    async fn prefix_lists(&self, ids: &[String]) -> BTreeMap<String, PrefixListEntries> {
        match self.check(Operation::PrefixLists, None) {
            Some(error) => ids
                .iter()
                .map(|id| (id.clone(), PrefixListEntries::Unreadable(error.to_string())))
                .collect(),
            None => self.inner.prefix_lists(ids).await,
        }
    }
    async fn remember(
        &self,
        owner: &str,
        value: &str,
        groups: &[SecurityGroupId],
    ) -> Result<(), Ec2Error> {
        let failed = groups
            .iter()
            .find_map(|g| self.check(Operation::Remember, Some(g)));
        match failed {
            Some(source) => Err(Ec2Error::Remember {
                groups: groups.len(),
                source,
            }),
            None => self.inner.remember(owner, value, groups).await,
        }
    }
    async fn forget(&self, owner: &str, groups: &[SecurityGroupId]) -> Result<(), Ec2Error> {
        match self.check(Operation::Forget, None) {
            Some(source) => Err(Ec2Error::Forget {
                groups: groups.len(),
                source,
            }),
            None => self.inner.forget(owner, groups).await,
        }
    }
    async fn authorize(
        &self,
        group: &SecurityGroupId,
        change: &ChangeSet,
    ) -> Result<Vec<RuleId>, Ec2Error> {
        match self.check(Operation::Authorize, Some(group)) {
            Some(source) => Err(Ec2Error::Authorize {
                group: group.clone(),
                source,
            }),
            None => self.inner.authorize(group, change).await,
        }
    }
    async fn revoke(&self, group: &SecurityGroupId, rules: &[RuleId]) -> Result<(), Ec2Error> {
        match self.check(Operation::Revoke, Some(group)) {
            Some(source) => Err(Ec2Error::Revoke {
                group: group.clone(),
                source,
            }),
            None => self.inner.revoke(group, rules).await,
        }
    }
    async fn restore(
        &self,
        group: &SecurityGroupId,
        rules: &[Restoration],
    ) -> Result<(), Ec2Error> {
        match self.check(Operation::Restore, Some(group)) {
            Some(source) => Err(Ec2Error::Restore {
                group: group.clone(),
                source,
            }),
            None => self.inner.restore(group, rules).await,
        }
    }
}
