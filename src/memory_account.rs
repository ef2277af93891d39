//! A stateful in-memory account for unit tests: the [`FindingsSource`] and
//! [`SecurityGroups`] ports over groups, instances and findings held in memory, with
//! failure injection per operation and group. Tests assert on the account's state
//! afterwards (its groups, its archived findings), not on the calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::domain::cidr::Cidr;
use crate::domain::finding::Finding;
use crate::domain::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use crate::domain::plan::{ChangeSet, apply_change};
use crate::domain::policy::Policy;
use crate::domain::security_group::{IngressRule, Instance, SecurityGroup, Source, Traffic};
use crate::ports::{
    AwsError, Ec2Error, FindingsError, FindingsSource, Restoration, SecurityGroups,
};

/// An account in memory: groups, instances, findings, and the operations told to fail.
#[derive(Default)]
pub(crate) struct MemoryAccount {
    pub(crate) groups: Mutex<BTreeMap<SecurityGroupId, SecurityGroup>>,
    pub(crate) instances: Vec<Instance>,
    pub(crate) findings: Vec<Finding>,
    pub(crate) archived: Mutex<Vec<FindingId>>,
    /// The operations that fail, as (operation, group): `authorize`, `revoke` and
    /// `restore` in a group; `archive` and `instances` with the group `""`.
    pub(crate) fail: BTreeSet<(&'static str, String)>,
    /// For every revoke: could the trusted range 10.0.0.0/8 already reach the group
    /// (through one of the operator's rules)?
    pub(crate) trusted_reach_at_revoke: Mutex<Vec<bool>>,
    /// Every change asked of a group, in order, failed or not: `authorize sg-1`,
    /// `revoke sg-1`, `restore sg-1`.
    pub(crate) calls: Mutex<Vec<String>>,
    /// The number in the last rule id `authorize` gave out.
    pub(crate) next_rule: Mutex<u32>,
    /// Per group, how many rules `restore` has put back.
    pub(crate) restored: Mutex<BTreeMap<SecurityGroupId, u32>>,
}

impl MemoryAccount {
    /// An account holding these groups, and nothing else.
    pub(crate) fn with_groups(groups: impl IntoIterator<Item = SecurityGroup>) -> MemoryAccount {
        MemoryAccount {
            groups: Mutex::new(groups.into_iter().map(|g| (g.id.clone(), g)).collect()),
            ..MemoryAccount::default()
        }
    }

    /// The same account, where `op` fails in `group` (`""` for `archive` and
    /// `instances`).
    pub(crate) fn failing(mut self, op: &'static str, group: &str) -> MemoryAccount {
        self.fail.insert((op, group.to_string()));
        self
    }

    /// One change of a group: logged, failed with `error` when `op` is told to fail
    /// there, otherwise made by `change` on the group (which must exist).
    fn change_group<T>(
        &self,
        op: &'static str,
        group: &SecurityGroupId,
        error: fn(SecurityGroupId, AwsError) -> Ec2Error,
        change: impl FnOnce(&mut SecurityGroup) -> T,
    ) -> Result<T, Ec2Error> {
        self.calls.lock().unwrap().push(format!("{op} {group}"));
        if self.fail.contains(&(op, group.to_string())) {
            return Err(error(group.clone(), injected()));
        }
        let mut groups = self.groups.lock().unwrap();
        Ok(change(groups.get_mut(group).expect("known group")))
    }
}

fn injected() -> AwsError {
    AwsError {
        code: Some("UnauthorizedOperation".into()),
        message: "injected".into(),
    }
}

impl FindingsSource for MemoryAccount {
    async fn detector(&self, _: Option<&str>) -> Result<String, FindingsError> {
        Ok("d1".into())
    }
    async fn findings(&self, _: &str, policy: &Policy) -> Result<Vec<Finding>, FindingsError> {
        let archived = self.archived.lock().unwrap();
        Ok(self
            .findings
            .iter()
            .filter(|f| policy.selects(f) && !archived.contains(&f.id))
            .cloned()
            .collect())
    }
    async fn archive(&self, detector: &str, ids: &[FindingId]) -> Result<(), FindingsError> {
        if self.fail.contains(&("archive", String::new())) {
            return Err(FindingsError::Archive {
                detector: detector.to_string(),
                count: ids.len(),
                source: injected(),
            });
        }
        self.archived.lock().unwrap().extend(ids.iter().cloned());
        Ok(())
    }
}

impl SecurityGroups for MemoryAccount {
    async fn instances(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, Ec2Error> {
        if self.fail.contains(&("instances", String::new())) {
            return Err(Ec2Error::DescribeInstances(injected()));
        }
        Ok(self
            .instances
            .iter()
            .filter(|i| ids.contains(&i.id))
            .cloned()
            .collect())
    }
    async fn groups(&self, ids: &[SecurityGroupId]) -> Result<Vec<SecurityGroup>, Ec2Error> {
        let groups = self.groups.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| groups.get(id).cloned())
            .collect())
    }
    async fn managed_groups(&self) -> Result<Vec<SecurityGroupId>, Ec2Error> {
        let groups = self.groups.lock().unwrap();
        Ok(groups
            .values()
            .filter(|g| g.ingress.iter().any(|r| r.managed_ports.is_some()))
            .map(|g| g.id.clone())
            .collect())
    }
    /// Adds the change's rules, tagged, with new ids `sgr-aaaa0001`, … (one counter
    /// for the account).
    async fn authorize(
        &self,
        group: &SecurityGroupId,
        change: &ChangeSet,
    ) -> Result<Vec<RuleId>, Ec2Error> {
        let error = |group, source| Ec2Error::Authorize { group, source };
        self.change_group("authorize", group, error, |target| {
            let additions = ChangeSet {
                revoke: Vec::new(),
                ..change.clone()
            };
            let mut created = Vec::new();
            apply_change(target, &additions, || {
                let mut next = self.next_rule.lock().unwrap();
                *next += 1;
                let id = RuleId::parse(&format!("sgr-aaaa{:04x}", *next)).unwrap();
                created.push(id.clone());
                id
            });
            created
        })
    }
    async fn revoke(&self, group: &SecurityGroupId, rules: &[RuleId]) -> Result<(), Ec2Error> {
        let error = |group, source| Ec2Error::Revoke { group, source };
        self.change_group("revoke", group, error, |target| {
            let trusted_reach = target.ingress.iter().any(|r| {
                r.managed_ports.is_some()
                    && r.cidr()
                        .is_some_and(|c| *c == "10.0.0.0/8".parse::<Cidr>().unwrap())
            });
            self.trusted_reach_at_revoke
                .lock()
                .unwrap()
                .push(trusted_reach);
            target.ingress.retain(|r| !rules.contains(&r.id));
        })
    }
    /// Puts back the rules the group does not hold yet, untagged, with ids numbered
    /// per group in the order they come back (`sgr-e0`, `sgr-e1`, …), so that groups
    /// restored concurrently get the same ids whatever the order.
    async fn restore(
        &self,
        group: &SecurityGroupId,
        rules: &[Restoration],
    ) -> Result<(), Ec2Error> {
        let error = |group, source| Ec2Error::Restore { group, source };
        self.change_group("restore", group, error, |target| {
            let mut restored = self.restored.lock().unwrap();
            let next = restored.entry(group.clone()).or_default();
            for rule in rules {
                let (traffic, source) = (Traffic::Tcp(rule.ports), Source::Cidr(rule.source));
                if !target
                    .ingress
                    .iter()
                    .any(|r| r.traffic == traffic && r.source == source)
                {
                    target.ingress.push(IngressRule {
                        id: RuleId::parse(&format!("sgr-e{:x}", *next)).unwrap(),
                        traffic,
                        source,
                        description: rule.description.clone(),
                        managed_ports: None,
                    });
                    *next += 1;
                }
            }
        })
    }
}
