//! A stateful in-memory account (feature `testing`): the [`FindingsSource`] and
//! [`SecurityGroups`] ports over groups, instances and findings held in memory, with
//! the semantics of AWS that matter to a pass (a duplicate authorize adds nothing, a
//! rule already gone is revoked). Tests assert on the account's state afterwards (its
//! groups, its archived findings), not on the calls; faults are injected by wrapping
//! it in [`super::failing::Failing`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::finding::Finding;
use crate::domain::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use crate::domain::known::Read;
use crate::domain::plan::{ChangeSet, PrefixListEntries, apply_change};
use crate::domain::policy::Policy;
use crate::domain::quiet::GroupDigest;
use crate::domain::security_group::{IngressRule, Instance, SecurityGroup, Source};
use crate::domain::watch::parse_watch_value;
use crate::notify::dispatch::AlertClients;
use crate::ports::{
    AwsClients, AwsFactory, AwsSetupError, Ec2Error, FindingsError, FindingsSource, Restoration,
    SecurityGroups,
};

/// An account in memory: groups, instances and findings.
#[derive(Debug, Default)]
pub struct MemoryAccount {
    pub groups: Mutex<BTreeMap<SecurityGroupId, SecurityGroup>>,
    pub instances: Vec<Instance>,
    pub findings: Mutex<Vec<Finding>>,
    pub archived: Mutex<Vec<FindingId>>,
    /// The findings GuardDuty was told were useful.
    pub feedback: Mutex<Vec<FindingId>>,
    /// The findings marked resolved in Security Hub.
    pub hub: Mutex<Vec<crate::ports::HubResolution>>,
    /// How each listing read the findings, in order.
    pub reads: Mutex<Vec<Read>>,
    /// The managed prefix lists and their entries (a list absent is not found).
    pub prefix_lists: BTreeMap<String, Vec<crate::domain::cidr::Cidr>>,
    /// For every revoke: could one of the trusted ranges `reach_check` already reach
    /// the group through one of the operator's rules?
    pub trusted_reach_at_revoke: Mutex<Vec<bool>>,
    /// The range `trusted_reach_at_revoke` looks for (default 10.0.0.0/8).
    pub reach_check: Option<crate::domain::cidr::Cidr>,
    /// The number in the last rule id `authorize` gave out.
    next_rule: Mutex<u32>,
    /// Per group, how many rules `restore` has put back.
    restored: Mutex<BTreeMap<SecurityGroupId, u32>>,
}

impl MemoryAccount {
    /// An account holding these groups, and nothing else.
    pub fn with_groups(groups: impl IntoIterator<Item = SecurityGroup>) -> MemoryAccount {
        MemoryAccount {
            groups: Mutex::new(groups.into_iter().map(|g| (g.id.clone(), g)).collect()),
            ..MemoryAccount::default()
        }
    }

    /// The same account, with these instances.
    pub fn with_instances(mut self, instances: impl IntoIterator<Item = Instance>) -> Self {
        self.instances = instances.into_iter().collect();
        self
    }

    /// The same account, with these findings.
    pub fn with_findings(self, findings: impl IntoIterator<Item = Finding>) -> Self {
        *self.findings.lock().unwrap() = findings.into_iter().collect();
        self
    }

    /// A copy of one group as it is now.
    pub fn group(&self, id: &str) -> SecurityGroup {
        let id = SecurityGroupId::parse(id).expect("a group id");
        self.groups.lock().unwrap()[&id].clone()
    }

    /// The findings archived so far.
    pub fn archived(&self) -> Vec<FindingId> {
        self.archived.lock().unwrap().clone()
    }

    /// A copy of the account's state (groups, instances, findings, archived), with
    /// nothing recorded about calls: the account after a restart.
    pub fn copy(&self) -> MemoryAccount {
        MemoryAccount {
            groups: Mutex::new(self.groups.lock().unwrap().clone()),
            instances: self.instances.clone(),
            findings: Mutex::new(self.findings.lock().unwrap().clone()),
            archived: Mutex::new(self.archived.lock().unwrap().clone()),
            prefix_lists: self.prefix_lists.clone(),
            reach_check: self.reach_check,
            next_rule: Mutex::new(*self.next_rule.lock().unwrap()),
            ..MemoryAccount::default()
        }
    }

    fn change_group<T>(
        &self,
        group: &SecurityGroupId,
        change: impl FnOnce(&mut SecurityGroup) -> T,
    ) -> T {
        let mut groups = self.groups.lock().unwrap();
        change(groups.get_mut(group).expect("a group of the account"))
    }
}

impl FindingsSource for MemoryAccount {
    async fn detector(&self, _: Option<&str>) -> Result<String, FindingsError> {
        Ok("d1".into())
    }
    /// Every finding the policy's severity and types select; archived ones too
    /// (marked so) when the listing is incremental, as GuardDuty's would be.
    async fn findings(
        &self,
        _: &str,
        policy: &Policy,
        read: Read,
    ) -> Result<Vec<Finding>, FindingsError> {
        self.reads.lock().unwrap().push(read);
        let archived = self.archived.lock().unwrap();
        Ok(self
            .findings
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .map(|mut f| {
                f.archived |= archived.contains(&f.id);
                f
            })
            .filter(|f| match read {
                Read::Full => policy.selects(f),
                Read::UpdatedSince(_) => policy.selects(&Finding {
                    archived: false,
                    ..f.clone()
                }),
            })
            .collect())
    }
    async fn archive(&self, _: &str, ids: &[FindingId]) -> Result<(), FindingsError> {
        self.archived.lock().unwrap().extend(ids.iter().cloned());
        Ok(())
    }
    async fn feedback(&self, _: &str, ids: &[FindingId]) -> Result<(), FindingsError> {
        self.feedback.lock().unwrap().extend(ids.iter().cloned());
        Ok(())
    }
    async fn resolve_in_security_hub(
        &self,
        resolved: &[crate::ports::HubResolution],
    ) -> Result<(), FindingsError> {
        self.hub.lock().unwrap().extend(resolved.iter().cloned());
        Ok(())
    }
}

impl SecurityGroups for MemoryAccount {
    async fn instances(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, Ec2Error> {
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
    async fn groups_with_watched(
        &self,
        ids: &[SecurityGroupId],
        owner: Option<&str>,
    ) -> Result<(Vec<SecurityGroup>, Vec<SecurityGroupId>), Ec2Error> {
        let watched = match owner {
            Some(owner) => self.watched_groups(owner).await?,
            None => Vec::new(),
        };
        let wanted: std::collections::BTreeSet<SecurityGroupId> =
            ids.iter().chain(&watched).cloned().collect();
        let wanted: Vec<SecurityGroupId> = wanted.into_iter().collect();
        let mut groups = self.groups(&wanted).await?;
        for group in &mut groups {
            group.network_interfaces = None; // as the port says: not counted here
        }
        Ok((groups, watched))
    }
    async fn digests(
        &self,
        owner: &str,
        ids: &[SecurityGroupId],
    ) -> Result<BTreeMap<SecurityGroupId, GroupDigest>, Ec2Error> {
        let groups = self.groups.lock().unwrap();
        Ok(groups
            .values()
            .filter(|g| g.watches.contains_key(owner) || ids.contains(&g.id))
            .map(|g| (g.id.clone(), GroupDigest::of(g)))
            .collect())
    }
    async fn interface_counts(
        &self,
        ids: &[SecurityGroupId],
    ) -> Result<BTreeMap<SecurityGroupId, usize>, Ec2Error> {
        let groups = self.groups.lock().unwrap();
        Ok(ids
            .iter()
            .map(|id| {
                let count = groups.get(id).and_then(|g| g.network_interfaces);
                (id.clone(), count.unwrap_or(0))
            })
            .collect())
    }
    async fn watched_groups(&self, owner: &str) -> Result<Vec<SecurityGroupId>, Ec2Error> {
        let groups = self.groups.lock().unwrap();
        Ok(groups
            .values()
            .filter(|g| g.watches.contains_key(owner))
            .map(|g| g.id.clone())
            .collect())
    }
    async fn prefix_lists(&self, ids: &[String]) -> BTreeMap<String, PrefixListEntries> {
        ids.iter()
            .map(|id| {
                let entries = match self.prefix_lists.get(id) {
                    Some(entries) => PrefixListEntries::Read(entries.clone()),
                    None => PrefixListEntries::Unreadable(format!("{id} not found")),
                };
                (id.clone(), entries)
            })
            .collect()
    }
    async fn remember(
        &self,
        owner: &str,
        value: &str,
        groups: &[SecurityGroupId],
    ) -> Result<(), Ec2Error> {
        for group in groups {
            self.change_group(group, |target| {
                target
                    .watches
                    .insert(owner.to_string(), parse_watch_value(value));
            });
        }
        Ok(())
    }
    async fn forget(&self, owner: &str, groups: &[SecurityGroupId]) -> Result<(), Ec2Error> {
        let mut all = self.groups.lock().unwrap();
        for group in groups {
            if let Some(target) = all.get_mut(group) {
                target.watches.remove(owner);
            }
        }
        Ok(())
    }
    /// Adds the change's rules, tagged, with new ids `sgr-aaaa0001`, … (one counter
    /// for the account).
    async fn authorize(
        &self,
        group: &SecurityGroupId,
        change: &ChangeSet,
    ) -> Result<Vec<RuleId>, Ec2Error> {
        Ok(self.change_group(group, |target| {
            let additions = ChangeSet {
                revoke: Vec::new(),
                watch: None,
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
        }))
    }
    async fn revoke(&self, group: &SecurityGroupId, rules: &[RuleId]) -> Result<(), Ec2Error> {
        let reach_check = self
            .reach_check
            .unwrap_or_else(|| "10.0.0.0/8".parse().unwrap());
        self.change_group(group, |target| {
            let trusted_reach = target
                .ingress
                .iter()
                .any(|r| r.owner.is_some() && r.cidr() == Some(&reach_check));
            self.trusted_reach_at_revoke
                .lock()
                .unwrap()
                .push(trusted_reach);
            target.ingress.retain(|r| !rules.contains(&r.id));
        });
        Ok(())
    }
    /// Puts back the rules the group does not hold yet, untagged, with ids numbered
    /// per group in the order they come back (`sgr-e0`, `sgr-e1`, …), so that groups
    /// restored concurrently get the same ids whatever the order.
    async fn restore(
        &self,
        group: &SecurityGroupId,
        rules: &[Restoration],
    ) -> Result<(), Ec2Error> {
        self.change_group(group, |target| {
            let mut restored = self.restored.lock().unwrap();
            let next = restored.entry(group.clone()).or_default();
            for rule in rules {
                let (traffic, source) =
                    (rule.protocol.traffic(rule.ports), Source::Cidr(rule.source));
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
                        owner: None,
                    });
                    *next += 1;
                }
            }
        });
        Ok(())
    }
}

/// The account as the controller's [`AwsFactory`]: every region is this one account
/// (123456789012, region `us-east-1` unless said otherwise), so a reconcile runs
/// against memory, without moto or the emulator.
#[derive(Debug)]
pub struct MemoryAws<T = MemoryAccount> {
    pub account: std::sync::Arc<T>,
    pub account_id: String,
    pub region: String,
}

impl<T> Clone for MemoryAws<T> {
    fn clone(&self) -> Self {
        MemoryAws {
            account: self.account.clone(),
            account_id: self.account_id.clone(),
            region: self.region.clone(),
        }
    }
}

impl<T> MemoryAws<T> {
    pub fn new(account: T) -> MemoryAws<T> {
        MemoryAws::from_arc(std::sync::Arc::new(account))
    }

    /// The factory of an account the caller keeps a handle on.
    pub fn from_arc(account: std::sync::Arc<T>) -> MemoryAws<T> {
        MemoryAws {
            account,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
        }
    }
}

impl<T> AwsFactory for MemoryAws<T>
where
    T: FindingsSource + SecurityGroups + Send + Sync + 'static,
{
    type Findings = std::sync::Arc<T>;
    type Ec2 = std::sync::Arc<T>;

    async fn clients(
        &self,
        _region: Option<&str>,
    ) -> Result<AwsClients<Self::Findings, Self::Ec2>, AwsSetupError> {
        // Clients that are never called unless an Email or SMS channel is configured.
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .build();
        let alerts = AlertClients {
            ses: aws_sdk_sesv2::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
        };
        Ok(AwsClients {
            guardduty: self.account.clone(),
            ec2: self.account.clone(),
            account_id: Some(self.account_id.clone()),
            region: self.region.clone(),
            alerts,
        })
    }
}
