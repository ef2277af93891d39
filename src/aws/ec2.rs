//! EC2 adapter: instances, security groups with their ingress rules, interface
//! counts (for the groups a plan would change only), and the mutating calls, each once per group: authorize (tagged as the
//! operator's), revoke, and restore (untagged: rules put back as they were by
//! `deletionPolicy: Revert`).
//!
//! Reads are planned per kind (instances, groups, rules, interfaces): id-filtered
//! batches of 200 values, or one paginated scan of the account-region (1000 a page),
//! whichever takes fewer calls for what is wanted, from the count the last scan of
//! that kind saw ([`RegionCounts`], shared by the account-region's clients); with no
//! count yet, a scan when more than one batch would be needed. An id filter costs the
//! server work in values × objects; a scan, in objects: the number of describe calls
//! is min(⌈W/200⌉, ⌈T/1000⌉) per kind once a count is known, and the server's work stays
//! linear. A scan of groups also yields the groups the policy watches, so the drift
//! watch costs no read of its own.
//! Every request, each page and each one-by-one retry included, first takes a token
//! of its kind from the account-region's [`Pacer`], when the adapter has one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroupRule, Tag,
    TagSpecification,
};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::pace::{PacedPages, Pacer};
use super::{CONCURRENCY, aws_error};
use crate::domain::cidr::{Cidr, Family};
use crate::domain::ids::{InstanceId, RuleId, SecurityGroupId};
use crate::domain::plan::{Authorization, ChangeSet, IpProtocol, PrefixListEntries};
use crate::domain::quiet::GroupDigest;
use crate::domain::security_group::{
    Exposure, IngressRule, Instance, InstanceState, PortRange, SecurityGroup, Source, Traffic,
};
use crate::domain::watch::{parse_watch_value, watch_key, watch_owner};
use crate::ports::{AwsError, Ec2Error, Restoration, SecurityGroups};

pub use crate::domain::watch::{MANAGED_BY_TAG, WATCH_TAG_PREFIX};

/// CreateTags and DeleteTags take this many resources per call here (AWS allows
/// more; smaller calls fail less at once).
const TAG_BATCH: usize = 200;

/// EC2 accepts at most 200 values per filter.
const FILTER_VALUES: usize = 200;
/// The largest page DescribeSecurityGroupRules and friends return.
const PAGE: i32 = 1000;

#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
    /// The buckets of the client's account-region; `None`: calls go unpaced.
    pacer: Option<Arc<Pacer>>,
    /// What the account-region held at its last scans, per kind.
    counts: Arc<RegionCounts>,
    /// Every read this way, whatever the counts (tests and benchmarks).
    forced: Option<Strategy>,
}

/// A kind of object EC2 describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Instances,
    Groups,
    Rules,
    Interfaces,
}

/// How one describe reads what it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Batches of up to 200 ids in a filter.
    Filter,
    /// Every object of the account-region, 1000 a page.
    Scan,
}

/// How many objects of each kind the account-region held when it was last scanned
/// (`None` before any scan), shared by the account-region's EC2 clients.
#[derive(Debug, Default)]
pub struct RegionCounts {
    counts: [AtomicUsize; 4],
}

impl RegionCounts {
    const UNKNOWN: usize = 0;

    fn slot(&self, kind: Kind) -> &AtomicUsize {
        &self.counts[kind as usize]
    }

    /// The count the last scan saw; `None` before any (an empty region counts 1).
    pub fn get(&self, kind: Kind) -> Option<usize> {
        match self.slot(kind).load(Ordering::Relaxed) {
            Self::UNKNOWN => None,
            n => Some(n - 1),
        }
    }

    fn set(&self, kind: Kind, total: usize) {
        self.slot(kind).store(total + 1, Ordering::Relaxed);
    }

    /// What this process added (`delta` > 0) or removed since the last scan, when a
    /// count is known: the next pass plans with what the region holds after its own
    /// changes, not before them.
    fn adjust(&self, kind: Kind, delta: isize) {
        let _ = self
            .slot(kind)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| match n {
                Self::UNKNOWN => None,
                n => Some(n.saturating_add_signed(delta).max(1)),
            });
    }
}

/// The cheaper way to read `wanted` objects of a kind that held `total` at its last
/// scan (pure): filter batches cost ⌈W/200⌉ calls, a scan ⌈T/1000⌉ (at least 1), and a
/// tie scans. With no count, a scan once more than one batch is needed (it counts,
/// for next time).
pub fn strategy(wanted: usize, total: Option<usize>) -> Strategy {
    let batches = wanted.div_ceil(FILTER_VALUES);
    match total {
        _ if batches <= 1 => Strategy::Filter,
        // A tie scans: the same calls, and the server's work linear in objects rather
        // than values × objects (on moto at N=1000, 5 rule batches take 15 s, a scan 2).
        Some(total) if total.div_ceil(PAGE as usize).max(1) <= batches => Strategy::Scan,
        Some(_) => Strategy::Filter,
        None => Strategy::Scan,
    }
}

impl Ec2 {
    /// An adapter whose calls are not paced: for emulators, tests and benchmarks,
    /// where no account's throttling is at stake. Real accounts: [`Ec2::paced`].
    pub fn new(client: Client) -> Self {
        Ec2 {
            client,
            pacer: None,
            counts: Arc::default(),
            forced: None,
        }
    }

    /// The same adapter, reading every kind one way: to compare the two on one
    /// account (tests, the benchmark).
    pub fn reading(mut self, strategy: Strategy) -> Self {
        self.forced = Some(strategy);
        self
    }

    /// The same adapter, planning its reads with the account-region's shared counts.
    pub fn with_counts(mut self, counts: Arc<RegionCounts>) -> Self {
        self.counts = counts;
        self
    }

    fn plan(&self, kind: Kind, wanted: usize) -> Strategy {
        self.forced
            .unwrap_or_else(|| strategy(wanted, self.counts.get(kind)))
    }

    /// An adapter that takes a token from `pacer` before every call: the pacer of
    /// the client's account and region, shared by all its clients
    /// ([`super::pace::Pacers::for_account_region`]).
    pub fn paced(client: Client, pacer: Arc<Pacer>) -> Self {
        Ec2 {
            client,
            pacer: Some(pacer),
            counts: Arc::default(),
            forced: None,
        }
    }

    /// Waits for a mutating token, when paced; right before the call is sent.
    async fn before_mutating(&self) {
        if let Some(pacer) = &self.pacer {
            pacer.mutating().await;
        }
    }

    /// Paces the pages of one describe: a describe token before each page.
    fn paced_pages(&self) -> PacedPages<'_> {
        PacedPages::new(self.pacer.as_deref())
    }

    /// Every rule the filter selects (`None`: every rule of the account-region).
    async fn rules(&self, filter: Option<Filter>) -> Result<Vec<SecurityGroupRule>, Ec2Error> {
        let mut rules = Vec::new();
        let mut pages = self
            .client
            .describe_security_group_rules()
            .set_filters(filter.map(|f| vec![f]))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(|e| Ec2Error::DescribeRules(aws_error(e)))?;
            rules.extend(page.security_group_rules().iter().cloned());
        }
        Ok(rules)
    }

    /// How many interfaces use each group, of the interfaces the filter selects
    /// (`None`: every interface), counting only the groups in `wanted`; and how many
    /// interfaces the pages held.
    async fn count_interfaces(
        &self,
        filter: Option<Filter>,
        wanted: &BTreeSet<String>,
    ) -> Result<(BTreeMap<String, usize>, usize), Ec2Error> {
        let mut counts = BTreeMap::new();
        let mut seen = 0;
        let mut pages = self
            .client
            .describe_network_interfaces()
            .set_filters(filter.map(|f| vec![f]))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(|e| Ec2Error::DescribeInterfaces(aws_error(e)))?;
            for eni in page.network_interfaces() {
                seen += 1;
                for group in eni.groups() {
                    if let Some(id) = group.group_id().filter(|id| wanted.contains(*id)) {
                        *counts.entry(id.to_string()).or_default() += 1;
                    }
                }
            }
        }
        Ok((counts, seen))
    }

    /// How many interfaces use each of `ids`, read as [`strategy`] plans it.
    async fn counts_of(&self, ids: &[String]) -> Result<BTreeMap<String, usize>, Ec2Error> {
        let wanted: BTreeSet<String> = ids.iter().cloned().collect();
        match self.plan(Kind::Interfaces, ids.len()) {
            _ if ids.is_empty() => Ok(BTreeMap::new()),
            Strategy::Scan => {
                let (counts, seen) = self.count_interfaces(None, &wanted).await?;
                self.counts.set(Kind::Interfaces, seen);
                Ok(counts)
            }
            Strategy::Filter => {
                let mut counts = BTreeMap::new();
                for batch in ids.chunks(FILTER_VALUES) {
                    let (found, _) = self
                        .count_interfaces(Some(filter("group-id", batch.to_vec())), &wanted)
                        .await?;
                    counts.extend(found);
                }
                Ok(counts)
            }
        }
    }

    /// The groups the filter selects (`None`: every group of the account-region).
    async fn describe_groups(
        &self,
        filter: Option<Filter>,
        error: fn(AwsError) -> Ec2Error,
    ) -> Result<Vec<aws_sdk_ec2::types::SecurityGroup>, Ec2Error> {
        let mut groups = Vec::new();
        let mut pages = self
            .client
            .describe_security_groups()
            .set_filters(filter.map(|f| vec![f]))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(|e| error(aws_error(e)))?;
            groups.extend(page.security_groups().iter().cloned());
        }
        Ok(groups)
    }

    /// The groups `wanted` names and, with `owner`, every group it watches: the
    /// groups' own records, then their rules and, when `count`, their interfaces
    /// (concurrently), each read as [`strategy`] plans it.
    async fn read_groups(
        &self,
        wanted: &[SecurityGroupId],
        owner: Option<&str>,
        count: bool,
    ) -> Result<(Vec<SecurityGroup>, Vec<SecurityGroupId>), Ec2Error> {
        let mut keep: BTreeSet<String> = wanted.iter().map(ToString::to_string).collect();
        let is_watched = |g: &aws_sdk_ec2::types::SecurityGroup| {
            owner.is_some_and(|owner| {
                let key = watch_key(owner);
                g.tags().iter().any(|t| t.key() == Some(key.as_str()))
            })
        };
        let (records, watched) = match self.plan(Kind::Groups, keep.len()) {
            Strategy::Scan => {
                let all = self.describe_groups(None, Ec2Error::DescribeGroups).await?;
                self.counts.set(Kind::Groups, all.len());
                let watched: Vec<String> = all
                    .iter()
                    .filter(|g| is_watched(g))
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect();
                keep.extend(watched.iter().cloned());
                let records: Vec<_> = all
                    .into_iter()
                    .filter(|g| g.group_id().is_some_and(|id| keep.contains(id)))
                    .collect();
                (records, watched)
            }
            Strategy::Filter => {
                let watched: Vec<String> = match owner {
                    Some(owner) => self
                        .describe_groups(
                            Some(filter("tag-key", vec![watch_key(owner)])),
                            Ec2Error::DescribeWatched,
                        )
                        .await?
                        .iter()
                        .filter_map(|g| g.group_id().map(str::to_string))
                        .collect(),
                    None => Vec::new(),
                };
                keep.extend(watched.iter().cloned());
                let ids: Vec<String> = keep.iter().cloned().collect();
                let records = in_batches(&ids, |batch| {
                    self.describe_groups(Some(filter("group-id", batch)), Ec2Error::DescribeGroups)
                })
                .await?;
                (records, watched)
            }
        };
        let ids: Vec<String> = records
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        let present: BTreeSet<String> = ids.iter().cloned().collect();
        let rules = async {
            match self.plan(Kind::Rules, ids.len()) {
                _ if ids.is_empty() => Ok(Vec::new()),
                Strategy::Scan => {
                    let all = self.rules(None).await?;
                    self.counts.set(Kind::Rules, all.len());
                    Ok(all
                        .into_iter()
                        .filter(|r| r.group_id().is_some_and(|g| present.contains(g)))
                        .collect())
                }
                Strategy::Filter => {
                    in_batches(&ids, |batch| self.rules(Some(filter("group-id", batch)))).await
                }
            }
        };
        let interfaces = async {
            match count {
                true => self.counts_of(&ids).await.map(Some),
                false => Ok(None),
            }
        };
        let (rules, interfaces) = futures_util::future::try_join(rules, interfaces).await?;
        let mut rules_by_group: BTreeMap<String, Vec<IngressRule>> = BTreeMap::new();
        for rule in rules {
            if let (Some(group), Some(rule)) =
                (rule.group_id().map(str::to_string), ingress_rule(&rule))
            {
                rules_by_group.entry(group).or_default().push(rule);
            }
        }
        let mut groups = Vec::new();
        for group in &records {
            let Some(Ok(id)) = group.group_id().map(SecurityGroupId::parse) else {
                continue;
            };
            let mut ingress = rules_by_group.remove(id.as_str()).unwrap_or_default();
            ingress.sort_by(|a, b| a.id.cmp(&b.id));
            groups.push(SecurityGroup {
                network_interfaces: interfaces
                    .as_ref()
                    .map(|counts| counts.get(id.as_str()).copied().unwrap_or(0)),
                name: group.group_name().unwrap_or_default().to_string(),
                vpc_id: group.vpc_id().map(str::to_string),
                watches: watches(group.tags()),
                tags: tags(group.tags()),
                ingress,
                id,
            });
        }
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        let watched = watched
            .iter()
            .filter_map(|id| SecurityGroupId::parse(id).ok())
            .collect();
        Ok((groups, watched))
    }

    /// The instances the filter selects (`None`: every instance), and how many the
    /// pages held.
    async fn describe_instances(
        &self,
        filter: Option<Filter>,
        wanted: Option<&BTreeSet<String>>,
    ) -> Result<(Vec<Instance>, usize), Ec2Error> {
        let mut instances = Vec::new();
        let mut seen = 0;
        // A filter, not InstanceIds: an id that no longer exists is absent, not an error.
        let mut pages = self
            .client
            .describe_instances()
            .set_filters(filter.map(|f| vec![f]))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(|e| Ec2Error::DescribeInstances(aws_error(e)))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                seen += 1;
                let Some(Ok(id)) = instance.instance_id().map(InstanceId::parse) else {
                    continue;
                };
                if wanted.is_some_and(|w| !w.contains(id.as_str())) {
                    continue;
                }
                let mut groups: Vec<SecurityGroupId> = instance
                    .network_interfaces()
                    .iter()
                    .flat_map(|eni| eni.groups())
                    .chain(instance.security_groups())
                    .filter_map(|g| g.group_id().and_then(|id| SecurityGroupId::parse(id).ok()))
                    .collect();
                groups.sort();
                groups.dedup();
                instances.push(Instance {
                    id,
                    state: instance_state(instance.state().and_then(|s| s.name())),
                    security_groups: groups,
                });
            }
        }
        Ok((instances, seen))
    }

    /// Authorizes rules one at a time; used only when a batch met a rule that
    /// already exists (AWS refuses the whole batch then).
    async fn authorize_one_by_one(
        &self,
        group: &SecurityGroupId,
        change: &ChangeSet,
    ) -> Result<Vec<RuleId>, Ec2Error> {
        let mut ids = Vec::new();
        for (done, auth) in change.authorize.iter().enumerate() {
            match self
                .send_authorize(group, std::slice::from_ref(auth), &change.owner)
                .await
            {
                Ok(created) => ids.extend(created),
                Err(e) if is_code(&e, "InvalidPermission.Duplicate") => {}
                Err(source) => {
                    return Err(Ec2Error::AuthorizePartly {
                        group: group.clone(),
                        done,
                        of: change.authorize.len(),
                        source,
                    });
                }
            }
        }
        Ok(ids)
    }

    async fn send_authorize(
        &self,
        group: &SecurityGroupId,
        rules: &[Authorization],
        owner: &str,
    ) -> Result<Vec<RuleId>, AwsError> {
        self.before_mutating().await;
        let output = self
            .client
            .authorize_security_group_ingress()
            .group_id(group.as_str())
            .set_ip_permissions(Some(permissions(rules)))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroupRule)
                    .tags(Tag::builder().key(MANAGED_BY_TAG).value(owner).build())
                    .build(),
            )
            .send()
            .await
            .map_err(aws_error)?;
        Ok(output
            .security_group_rules()
            .iter()
            .filter_map(|r| {
                r.security_group_rule_id()
                    .and_then(|id| RuleId::parse(id).ok())
            })
            .collect())
    }

    /// The entries of one managed prefix list, every page.
    async fn prefix_list(&self, id: &str) -> Result<Vec<Cidr>, AwsError> {
        let mut entries = Vec::new();
        let mut pages = self
            .client
            .get_managed_prefix_list_entries()
            .prefix_list_id(id)
            .max_results(100)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(aws_error)?;
            entries.extend(
                page.entries()
                    .iter()
                    .filter_map(|e| e.cidr())
                    .filter_map(|c| Cidr::parse_normalising(c).ok()),
            );
        }
        Ok(entries)
    }

    /// Authorizes rules without the operator's tags (rules put back as they were).
    async fn send_restore(
        &self,
        group: &SecurityGroupId,
        rules: &[Restoration],
    ) -> Result<(), AwsError> {
        self.before_mutating().await;
        self.client
            .authorize_security_group_ingress()
            .group_id(group.as_str())
            .set_ip_permissions(Some(restore_permissions(rules)))
            .send()
            .await
            .map(|_| ())
            .map_err(aws_error)
    }

    async fn send_revoke(&self, group: &SecurityGroupId, rules: &[RuleId]) -> Result<(), AwsError> {
        self.before_mutating().await;
        self.client
            .revoke_security_group_ingress()
            .group_id(group.as_str())
            .set_security_group_rule_ids(Some(
                rules.iter().map(|r| r.as_str().to_string()).collect(),
            ))
            .send()
            .await
            .map(|_| ())
            .map_err(aws_error)
    }
}

impl SecurityGroups for Ec2 {
    async fn instances(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, Ec2Error> {
        let mut instances = match self.plan(Kind::Instances, ids.len()) {
            Strategy::Scan => {
                let wanted: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
                let (found, seen) = self.describe_instances(None, Some(&wanted)).await?;
                self.counts.set(Kind::Instances, seen);
                found
            }
            Strategy::Filter => {
                in_batches(ids, |batch| async move {
                    let (found, _) = self
                        .describe_instances(Some(filter("instance-id", batch)), None)
                        .await?;
                    Ok(found)
                })
                .await?
            }
        };
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(instances)
    }

    async fn groups(&self, ids: &[SecurityGroupId]) -> Result<Vec<SecurityGroup>, Ec2Error> {
        Ok(self.read_groups(ids, None, true).await?.0)
    }

    async fn groups_with_watched(
        &self,
        ids: &[SecurityGroupId],
        owner: Option<&str>,
    ) -> Result<(Vec<SecurityGroup>, Vec<SecurityGroupId>), Ec2Error> {
        self.read_groups(ids, owner, false).await
    }

    async fn digests(
        &self,
        owner: &str,
        ids: &[SecurityGroupId],
    ) -> Result<BTreeMap<SecurityGroupId, GroupDigest>, Ec2Error> {
        let watched = self
            .describe_groups(
                Some(filter("tag-key", vec![watch_key(owner)])),
                Ec2Error::DescribeWatched,
            )
            .await?;
        let seen: BTreeSet<&str> = watched.iter().filter_map(|g| g.group_id()).collect();
        let rest: Vec<String> = ids
            .iter()
            .map(ToString::to_string)
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        let others = if rest.is_empty() {
            Vec::new()
        } else {
            in_batches(&rest, |batch| {
                self.describe_groups(Some(filter("group-id", batch)), Ec2Error::DescribeGroups)
            })
            .await?
        };
        Ok(watched
            .iter()
            .chain(&others)
            .filter_map(|g| {
                let id = SecurityGroupId::parse(g.group_id()?).ok()?;
                Some((id, digest(g)))
            })
            .collect())
    }

    async fn interface_counts(
        &self,
        ids: &[SecurityGroupId],
    ) -> Result<BTreeMap<SecurityGroupId, usize>, Ec2Error> {
        let wanted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let counts = self.counts_of(&wanted).await?;
        Ok(ids
            .iter()
            .map(|id| (id.clone(), counts.get(id.as_str()).copied().unwrap_or(0)))
            .collect())
    }

    async fn watched_groups(&self, owner: &str) -> Result<Vec<SecurityGroupId>, Ec2Error> {
        // `tag-key` is the filter DescribeSecurityGroups documents for a tag's key.
        let mut ids = BTreeSet::new();
        let mut pages = self
            .client
            .describe_security_groups()
            .filters(filter("tag-key", vec![watch_key(owner)]))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(|e| Ec2Error::DescribeWatched(aws_error(e)))?;
            ids.extend(
                page.security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().and_then(|id| SecurityGroupId::parse(id).ok())),
            );
        }
        Ok(ids.into_iter().collect())
    }

    async fn prefix_lists(&self, ids: &[String]) -> BTreeMap<String, PrefixListEntries> {
        stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let entries = match self.prefix_list(&id).await {
                    Ok(entries) => PrefixListEntries::Read(entries),
                    Err(error) => PrefixListEntries::Unreadable(error.to_string()),
                };
                (id, entries)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    }

    async fn remember(
        &self,
        owner: &str,
        value: &str,
        groups: &[SecurityGroupId],
    ) -> Result<(), Ec2Error> {
        for batch in groups.chunks(TAG_BATCH) {
            self.before_mutating().await;
            self.client
                .create_tags()
                .set_resources(Some(batch.iter().map(ToString::to_string).collect()))
                .tags(Tag::builder().key(watch_key(owner)).value(value).build())
                .send()
                .await
                .map_err(|e| Ec2Error::Remember {
                    groups: batch.len(),
                    source: aws_error(e),
                })?;
        }
        Ok(())
    }

    async fn forget(&self, owner: &str, groups: &[SecurityGroupId]) -> Result<(), Ec2Error> {
        for batch in groups.chunks(TAG_BATCH) {
            self.before_mutating().await;
            self.client
                .delete_tags()
                .set_resources(Some(batch.iter().map(ToString::to_string).collect()))
                // A key without a value deletes the tag whatever its value.
                .tags(Tag::builder().key(watch_key(owner)).build())
                .send()
                .await
                .map_err(|e| Ec2Error::Forget {
                    groups: batch.len(),
                    source: aws_error(e),
                })?;
        }
        Ok(())
    }

    async fn authorize(
        &self,
        group: &SecurityGroupId,
        change: &ChangeSet,
    ) -> Result<Vec<RuleId>, Ec2Error> {
        if change.authorize.is_empty() {
            return Ok(Vec::new());
        }
        let added = match self
            .send_authorize(group, &change.authorize, &change.owner)
            .await
        {
            Ok(ids) => Ok(ids),
            // Someone added one of the rules since we looked: add the others.
            Err(e) if is_code(&e, "InvalidPermission.Duplicate") => {
                self.authorize_one_by_one(group, change).await
            }
            Err(source) => Err(Ec2Error::Authorize {
                group: group.clone(),
                source,
            }),
        };
        if let Ok(ids) = &added {
            self.counts.adjust(Kind::Rules, ids.len() as isize);
        }
        added
    }

    async fn revoke(&self, group: &SecurityGroupId, rules: &[RuleId]) -> Result<(), Ec2Error> {
        if rules.is_empty() {
            return Ok(());
        }
        let revoked = match self.send_revoke(group, rules).await {
            Ok(()) => Ok(()),
            // A rule is already gone, and a non-default VPC then refuses the whole
            // call: revoke the rest one by one.
            Err(e) if is_gone(&e) => {
                for (done, rule) in rules.iter().enumerate() {
                    match self.send_revoke(group, std::slice::from_ref(rule)).await {
                        Ok(()) => {}
                        Err(e) if is_gone(&e) => {}
                        Err(source) => {
                            return Err(Ec2Error::RevokePartly {
                                group: group.clone(),
                                done,
                                of: rules.len(),
                                source,
                            });
                        }
                    }
                }
                Ok(())
            }
            Err(source) => Err(Ec2Error::Revoke {
                group: group.clone(),
                source,
            }),
        };
        // Counted once done, as authorize and restore are (a rule already gone makes
        // the count an estimate).
        if revoked.is_ok() {
            self.counts.adjust(Kind::Rules, -(rules.len() as isize));
        }
        revoked
    }

    async fn restore(
        &self,
        group: &SecurityGroupId,
        rules: &[Restoration],
    ) -> Result<(), Ec2Error> {
        if rules.is_empty() {
            return Ok(());
        }
        let failed = |source| Ec2Error::Restore {
            group: group.clone(),
            source,
        };
        let restored = match self.send_restore(group, rules).await {
            Ok(()) => Ok(()),
            // One of the rules is back already, and AWS refuses the whole call: add
            // the others one by one.
            Err(e) if is_code(&e, "InvalidPermission.Duplicate") => {
                for rule in rules {
                    match self.send_restore(group, std::slice::from_ref(rule)).await {
                        Ok(()) => {}
                        Err(e) if is_code(&e, "InvalidPermission.Duplicate") => {}
                        Err(source) => return Err(failed(source)),
                    }
                }
                Ok(())
            }
            Err(source) => Err(failed(source)),
        };
        if restored.is_ok() {
            self.counts.adjust(Kind::Rules, rules.len() as isize);
        }
        restored
    }
}

fn is_code(error: &AwsError, code: &str) -> bool {
    error.code.as_deref() == Some(code)
}

fn is_gone(error: &AwsError) -> bool {
    is_code(error, "InvalidPermission.NotFound")
        || is_code(error, "InvalidSecurityGroupRuleId.NotFound")
}

fn filter(name: &str, values: Vec<String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

/// Runs `describe` over the ids in batches of one filter's worth of values, a few
/// batches at a time, and gathers the answers.
async fn in_batches<Id, T, Fut>(
    ids: &[Id],
    describe: impl Fn(Vec<String>) -> Fut,
) -> Result<Vec<T>, Ec2Error>
where
    Id: std::fmt::Display,
    Fut: std::future::Future<Output = Result<Vec<T>, Ec2Error>>,
{
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let batches: Vec<Vec<String>> = ids.chunks(FILTER_VALUES).map(<[String]>::to_vec).collect();
    let found: Vec<Vec<T>> = stream::iter(batches)
        .map(describe)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The watches of a group: its `guardduty-operator/watch/<owner>` tags.
fn watches(tags: &[Tag]) -> BTreeMap<String, BTreeSet<Exposure>> {
    tags.iter()
        .filter_map(|t| {
            let owner = watch_owner(t.key()?)?;
            Some((
                owner.to_string(),
                parse_watch_value(t.value().unwrap_or_default()),
            ))
        })
        .collect()
}

fn instance_state(name: Option<&aws_sdk_ec2::types::InstanceStateName>) -> InstanceState {
    use aws_sdk_ec2::types::InstanceStateName as Name;
    match name {
        Some(Name::Pending) => InstanceState::Pending,
        Some(Name::Running) => InstanceState::Running,
        Some(Name::Stopping) => InstanceState::Stopping,
        Some(Name::Stopped) => InstanceState::Stopped,
        Some(Name::ShuttingDown) => InstanceState::ShuttingDown,
        Some(Name::Terminated) => InstanceState::Terminated,
        _ => InstanceState::Unknown,
    }
}

/// One IpPermission per protocol and port range, carrying every source of it.
fn permissions(rules: &[Authorization]) -> Vec<IpPermission> {
    ip_permissions(rules.iter().map(|rule| {
        (
            rule.protocol,
            rule.ports,
            rule.source,
            Some(rule.description()),
        )
    }))
}

/// The restored rules as IpPermissions, with their own descriptions (or none).
fn restore_permissions(rules: &[Restoration]) -> Vec<IpPermission> {
    ip_permissions(rules.iter().map(|rule| {
        (
            rule.protocol,
            rule.ports,
            rule.source,
            rule.description.clone(),
        )
    }))
}

/// A source and its rule's description.
type Described = (Cidr, Option<String>);

fn ip_permissions(
    rules: impl Iterator<Item = (IpProtocol, PortRange, Cidr, Option<String>)>,
) -> Vec<IpPermission> {
    let mut by_kind: BTreeMap<(IpProtocol, PortRange), Vec<Described>> = BTreeMap::new();
    for (protocol, range, source, description) in rules {
        by_kind
            .entry((protocol, range))
            .or_default()
            .push((source, description));
    }
    by_kind
        .into_iter()
        .map(|((protocol, range), sources)| {
            let mut permission = IpPermission::builder().ip_protocol(protocol.as_str());
            permission = match protocol {
                IpProtocol::Tcp | IpProtocol::Udp => permission
                    .from_port(i32::from(range.from))
                    .to_port(i32::from(range.to)),
                // Every ICMP type and code.
                IpProtocol::Icmp | IpProtocol::Icmpv6 => permission.from_port(-1).to_port(-1),
                IpProtocol::All => permission,
            };
            for (source, description) in sources {
                permission = match source.family() {
                    Family::V4 => permission.ip_ranges(
                        IpRange::builder()
                            .cidr_ip(source.to_string())
                            .set_description(description)
                            .build(),
                    ),
                    Family::V6 => permission.ipv6_ranges(
                        Ipv6Range::builder()
                            .cidr_ipv6(source.to_string())
                            .set_description(description)
                            .build(),
                    ),
                };
            }
            permission.build()
        })
        .collect()
}

/// What a rule (or a permission) lets through, from its protocol and ports.
fn traffic(protocol: Option<&str>, from: Option<i32>, to: Option<i32>) -> Traffic {
    let range = || {
        let from = from.and_then(|p| u16::try_from(p).ok());
        let to = to.and_then(|p| u16::try_from(p).ok());
        match (from, to) {
            (Some(from), Some(to)) if from <= to => PortRange::new(from, to),
            _ => PortRange::ALL,
        }
    };
    match protocol.unwrap_or("-1") {
        "-1" | "all" => Traffic::All,
        "tcp" | "6" => Traffic::Tcp(range()),
        "udp" | "17" => Traffic::Udp(range()),
        other => Traffic::Other {
            protocol: other.to_string(),
        },
    }
}

/// A group's digest from its DescribeSecurityGroups record: the (traffic, source) of
/// every source of every ingress permission, as [`ingress_rule`] reads them one rule
/// at a time, and its tags.
fn digest(group: &aws_sdk_ec2::types::SecurityGroup) -> GroupDigest {
    let mut ingress = Vec::new();
    for permission in group.ip_permissions() {
        let traffic = traffic(
            permission.ip_protocol(),
            permission.from_port(),
            permission.to_port(),
        );
        let cidrs = permission
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(
                permission
                    .ipv6_ranges()
                    .iter()
                    .filter_map(|r| r.cidr_ipv6()),
            )
            .filter_map(|c| Cidr::parse_normalising(c).ok())
            .map(Source::Cidr);
        let groups = permission
            .user_id_group_pairs()
            .iter()
            .filter_map(|p| p.group_id())
            .map(|g| Source::SecurityGroup(g.to_string()));
        let lists = permission
            .prefix_list_ids()
            .iter()
            .map(|p| Source::PrefixList(p.prefix_list_id().unwrap_or("unknown").to_string()));
        ingress.extend(
            cidrs
                .chain(groups)
                .chain(lists)
                .map(|s| (traffic.clone(), s)),
        );
    }
    GroupDigest::new(ingress, tags(group.tags()), watches(group.tags()))
}

/// Translates an SDK rule; egress rules and unreadable ones are left out.
fn ingress_rule(rule: &SecurityGroupRule) -> Option<IngressRule> {
    if rule.is_egress() != Some(false) {
        return None;
    }
    let id = RuleId::parse(rule.security_group_rule_id()?).ok()?;
    let traffic = traffic(rule.ip_protocol(), rule.from_port(), rule.to_port());
    let source = if let Some(cidr) = rule.cidr_ipv4().or(rule.cidr_ipv6()) {
        Source::Cidr(Cidr::parse_normalising(cidr).ok()?)
    } else if let Some(group) = rule.referenced_group_info().and_then(|g| g.group_id()) {
        Source::SecurityGroup(group.to_string())
    } else {
        Source::PrefixList(rule.prefix_list_id().unwrap_or("unknown").to_string())
    };
    let owner = tags(rule.tags()).remove(MANAGED_BY_TAG);
    Some(IngressRule {
        id,
        traffic,
        source,
        description: rule.description().map(str::to_string),
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_batch_is_always_a_filter_and_a_scan_wins_in_as_few_calls() {
        assert_eq!(strategy(0, None), Strategy::Filter);
        assert_eq!(strategy(200, None), Strategy::Filter, "one batch");
        assert_eq!(strategy(200, Some(0)), Strategy::Filter);
        assert_eq!(
            strategy(201, None),
            Strategy::Scan,
            "no count yet: scan and count"
        );
        // 1000 wanted: 5 batches; a region of 1001 objects scans in 2 pages.
        assert_eq!(strategy(1000, Some(1001)), Strategy::Scan);
        // 5 batches against 5 pages: the same calls, the scan's linear work wins.
        assert_eq!(strategy(1000, Some(5000)), Strategy::Scan);
        assert_eq!(strategy(1000, Some(5001)), Strategy::Filter);
        assert_eq!(strategy(1000, Some(4000)), Strategy::Scan);
        // A large region and few wanted: filters.
        assert_eq!(strategy(400, Some(100_000)), Strategy::Filter);
    }

    #[test]
    fn calls_are_the_fewer_of_batches_and_pages_once_counted() {
        for wanted in [1usize, 199, 200, 201, 999, 1000, 1001, 5000] {
            for total in [wanted, wanted * 2, wanted * 5, wanted * 10, wanted * 100] {
                let batches = wanted.div_ceil(200);
                let pages = total.div_ceil(1000).max(1);
                let calls = match strategy(wanted, Some(total)) {
                    Strategy::Filter => batches,
                    Strategy::Scan => pages,
                };
                assert_eq!(calls, batches.min(pages), "{wanted} of {total}");
            }
        }
    }

    #[test]
    fn a_count_follows_the_changes_made_since_once_known() {
        let counts = RegionCounts::default();
        counts.adjust(Kind::Rules, 5);
        assert_eq!(counts.get(Kind::Rules), None, "unknown stays unknown");
        counts.set(Kind::Rules, 5001);
        // 1000 groups' rules: 6 pages against 5 batches before the pass's changes...
        assert_eq!(strategy(1000, counts.get(Kind::Rules)), Strategy::Filter);
        counts.adjust(Kind::Rules, 1000);
        counts.adjust(Kind::Rules, -2000);
        assert_eq!(counts.get(Kind::Rules), Some(4001));
        // ...5 against 5 after them (a rule added and two revoked per group).
        assert_eq!(strategy(1000, counts.get(Kind::Rules)), Strategy::Scan);
        counts.adjust(Kind::Rules, -10_000);
        assert_eq!(counts.get(Kind::Rules), Some(0), "never below empty");
    }

    #[test]
    fn a_count_is_unknown_until_a_scan_sets_it_and_an_empty_region_counts() {
        let counts = RegionCounts::default();
        assert_eq!(counts.get(Kind::Rules), None);
        counts.set(Kind::Rules, 0);
        assert_eq!(counts.get(Kind::Rules), Some(0));
        counts.set(Kind::Groups, 1234);
        assert_eq!(counts.get(Kind::Groups), Some(1234));
        assert_eq!(counts.get(Kind::Instances), None);
    }
}
