//! EC2 adapter: instances, security groups with their ingress rules and interface
//! counts (describes batched across groups, run concurrently), and the mutating
//! calls, each once per group: authorize (tagged as the operator's), revoke, and
//! restore (untagged: rules put back as they were by `deletionPolicy: Revert`).
//! Every request, each page and each one-by-one retry included, first takes a token
//! of its kind from the account-region's [`Pacer`], when the adapter has one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
}

impl Ec2 {
    /// An adapter whose calls are not paced: for emulators, tests and benchmarks,
    /// where no account's throttling is at stake. Real accounts: [`Ec2::paced`].
    pub fn new(client: Client) -> Self {
        Ec2 {
            client,
            pacer: None,
        }
    }

    /// An adapter that takes a token from `pacer` before every call: the pacer of
    /// the client's account and region, shared by all its clients
    /// ([`super::pace::Pacers::for_account_region`]).
    pub fn paced(client: Client, pacer: Arc<Pacer>) -> Self {
        Ec2 {
            client,
            pacer: Some(pacer),
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

    async fn rules(&self, filter: Filter) -> Result<Vec<SecurityGroupRule>, Ec2Error> {
        let mut rules = Vec::new();
        let mut pages = self
            .client
            .describe_security_group_rules()
            .filters(filter)
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

    async fn interface_counts(
        &self,
        ids: Vec<String>,
    ) -> Result<BTreeMap<String, usize>, Ec2Error> {
        let mut counts = BTreeMap::new();
        let wanted: BTreeSet<String> = ids.iter().cloned().collect();
        let mut pages = self
            .client
            .describe_network_interfaces()
            .filters(filter("group-id", ids))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(|e| Ec2Error::DescribeInterfaces(aws_error(e)))?;
            for eni in page.network_interfaces() {
                for group in eni.groups() {
                    if let Some(id) = group.group_id().filter(|id| wanted.contains(*id)) {
                        *counts.entry(id.to_string()).or_default() += 1;
                    }
                }
            }
        }
        Ok(counts)
    }

    /// One batch of up to 200 groups: the group, its rules and its interfaces,
    /// described concurrently.
    async fn group_batch(&self, ids: Vec<String>) -> Result<Vec<SecurityGroup>, Ec2Error> {
        let describe_groups = async {
            let mut groups = Vec::new();
            let mut pages = self
                .client
                .describe_security_groups()
                .filters(filter("group-id", ids.clone()))
                .max_results(PAGE)
                .into_paginator()
                .send();
            let mut paced = self.paced_pages();
            while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
                let page = page.map_err(|e| Ec2Error::DescribeGroups(aws_error(e)))?;
                groups.extend(page.security_groups().iter().cloned());
            }
            Ok(groups)
        };
        let (output, rules, interfaces) = futures_util::future::try_join3(
            describe_groups,
            self.rules(filter("group-id", ids.clone())),
            self.interface_counts(ids.clone()),
        )
        .await?;
        let mut rules_by_group: BTreeMap<String, Vec<IngressRule>> = BTreeMap::new();
        for rule in rules {
            if let (Some(group), Some(rule)) =
                (rule.group_id().map(str::to_string), ingress_rule(&rule))
            {
                rules_by_group.entry(group).or_default().push(rule);
            }
        }
        let mut groups = Vec::new();
        for group in &output {
            let Some(Ok(id)) = group.group_id().map(SecurityGroupId::parse) else {
                continue;
            };
            let mut ingress = rules_by_group.remove(id.as_str()).unwrap_or_default();
            ingress.sort_by(|a, b| a.id.cmp(&b.id));
            groups.push(SecurityGroup {
                network_interfaces: interfaces.get(id.as_str()).copied().unwrap_or(0),
                name: group.group_name().unwrap_or_default().to_string(),
                vpc_id: group.vpc_id().map(str::to_string),
                watches: watches(group.tags()),
                tags: tags(group.tags()),
                ingress,
                id,
            });
        }
        Ok(groups)
    }

    async fn instance_batch(&self, ids: Vec<String>) -> Result<Vec<Instance>, Ec2Error> {
        let mut instances = Vec::new();
        // A filter, not InstanceIds: an id that no longer exists is absent, not an error.
        let mut pages = self
            .client
            .describe_instances()
            .filters(filter("instance-id", ids))
            .max_results(PAGE)
            .into_paginator()
            .send();
        let mut paced = self.paced_pages();
        while let Some(page) = paced.next(pages.next(), |p| p.next_token()).await {
            let page = page.map_err(|e| Ec2Error::DescribeInstances(aws_error(e)))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(Ok(id)) = instance.instance_id().map(InstanceId::parse) else {
                    continue;
                };
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
        Ok(instances)
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
        let mut instances = in_batches(ids, |batch| self.instance_batch(batch)).await?;
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(instances)
    }

    async fn groups(&self, ids: &[SecurityGroupId]) -> Result<Vec<SecurityGroup>, Ec2Error> {
        let mut groups = in_batches(ids, |batch| self.group_batch(batch)).await?;
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(groups)
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
        match self
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
        }
    }

    async fn revoke(&self, group: &SecurityGroupId, rules: &[RuleId]) -> Result<(), Ec2Error> {
        if rules.is_empty() {
            return Ok(());
        }
        match self.send_revoke(group, rules).await {
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
        }
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
        match self.send_restore(group, rules).await {
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
        }
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

/// Translates an SDK rule; egress rules and unreadable ones are left out.
fn ingress_rule(rule: &SecurityGroupRule) -> Option<IngressRule> {
    if rule.is_egress() != Some(false) {
        return None;
    }
    let id = RuleId::parse(rule.security_group_rule_id()?).ok()?;
    let range = || {
        let from = rule.from_port().and_then(|p| u16::try_from(p).ok());
        let to = rule.to_port().and_then(|p| u16::try_from(p).ok());
        match (from, to) {
            (Some(from), Some(to)) if from <= to => PortRange::new(from, to),
            _ => PortRange::ALL,
        }
    };
    let traffic = match rule.ip_protocol().unwrap_or("-1") {
        "-1" | "all" => Traffic::All,
        "tcp" | "6" => Traffic::Tcp(range()),
        "udp" | "17" => Traffic::Udp(range()),
        other => Traffic::Other {
            protocol: other.to_string(),
        },
    };
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
