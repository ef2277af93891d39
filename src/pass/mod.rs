//! One pass (I/O): per region, read → per account, observe → plan (pure) → record the
//! intent → execute → archive.
//!
//! ```text
//!  per region (concurrently):  clients, detector, findings (listed in full, since the last
//!                              listing, or given by an event)
//!  per account of the region:  the credentials' own, and each member account with findings
//!                              or recorded changes (its role assumed); instances, watched
//!                              groups, groups, prefix lists, then the interfaces of
//!                              the groups to change ─> domain::plan ─> Plan
//!  all plans:                  one intent written ─> execute per account (authorize, then
//!                              revoke) ─> record ─> feedback and archive per region
//!                              ─> PassReport (what was seen, decided and done, everywhere)
//! ```
//!
//! The command line runs one pass; the controller runs the same pass on every
//! reconcile, and for the findings of an event. The executors make no decisions:
//! [`execute`] carries out the plan, group by group, authorizing before revoking;
//! [`revert`] undoes a change record, restoring before removing. A region or an
//! account that fails stops only its own part; every step's result is reported.

pub mod execute;
pub mod revert;

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, stream};

pub use execute::execute;
pub use revert::{revert, revert_everywhere};

use crate::domain::finding::Finding;
use crate::domain::ids::{FindingId, SecurityGroupId};
use crate::domain::known::{self, KnownFindings, Read};
use crate::domain::outcome::{
    Category, Failure, GroupOutcome, PassReport, QuietScope, SettledScope, Step,
};
use crate::domain::plan::{
    FindingDecision, Observation, Plan, instances_to_describe, interfaces_to_count, plan,
    prefix_lists_to_read,
};
use crate::domain::policy::{Mode, Policy};
use crate::domain::quiet::Settled;
use crate::domain::record::{ChangeRecord, RecordedRule, intent_of};
use crate::domain::response::remediated_findings;
use crate::domain::time::Timestamp;
use crate::ports::{AwsFactory, FindingsSource, Journal, SecurityGroups, error_chain};

/// How many independent AWS calls a pass keeps in flight at once.
pub const CONCURRENCY: usize = 8;

/// Where a pass's findings come from.
#[derive(Debug, Clone, Default)]
pub enum FindingsInput {
    /// Every region listed in full (the command line's one-off passes).
    #[default]
    Full,
    /// Each region as `known` says: in full the first time and every
    /// `full_resync_seconds`, else only what was updated since the last listing,
    /// merged with what it knew (the controller, `watch`).
    Known {
        known: KnownFindings,
        full_resync_seconds: i64,
    },
    /// These findings only (an event's): nothing is listed, no region is complete.
    Given(Vec<Finding>),
}

/// What the caller asks of a pass.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// The regions to cover, in order; empty: the AWS SDK's own region.
    pub regions: Vec<String>,
    /// The detector to read (one region only); `None` discovers it.
    pub detector: Option<String>,
    /// Carry out the plan (only ever when the policy's mode is Enforce).
    pub apply: bool,
    /// The change record the previous pass left (its pending intent is settled).
    pub record: ChangeRecord,
    /// Now, for the record and the watermark.
    pub now: Timestamp,
    pub findings: FindingsInput,
}

/// A region's findings, read.
struct RegionRead<F, S> {
    region: String,
    guardduty: F,
    ec2: S,
    /// The credentials' account, when known.
    account_id: Option<String>,
    detector: String,
    /// The open findings the policy selects.
    findings: Vec<Finding>,
    /// How they were listed; `None`: given, not listed.
    read: Option<Read>,
    /// What the last pass left settled here, per account, when this pass may be quiet
    /// (listed since the last pass, no intent pending).
    settled: BTreeMap<Option<String>, Settled>,
}

/// A region read, or why it could not be.
type RegionResult<A> =
    Result<RegionRead<<A as AwsFactory>::Findings, <A as AwsFactory>::Ec2>, Failure>;

/// The part of a region one EC2 client acts in: the credentials' own account, or a
/// member account through its role.
struct Scope<S> {
    region: String,
    /// The account; `None`: the credentials' own, unknown.
    account: Option<String>,
    own: bool,
    ec2: S,
    findings: Vec<Finding>,
    /// What the last pass left settled here, if anything.
    settled: Option<Settled>,
}

/// Runs one pass over every region of `options` (concurrently) and every account in
/// them; the intent of all its changes goes to `journal` before the first change.
pub async fn run_pass<A, J>(
    aws: &A,
    policy: &Policy,
    options: &PassOptions,
    journal: &J,
) -> PassReport
where
    A: AwsFactory,
    J: Journal,
{
    let mut report = PassReport::new(policy.mode);
    report.record = options.record.clone();
    report.targeted = matches!(options.findings, FindingsInput::Given(_));

    // read (I/O), per region
    let regions: Vec<Option<String>> = if options.regions.is_empty() {
        vec![None]
    } else {
        options.regions.iter().cloned().map(Some).collect()
    };
    let reads: Vec<_> = regions
        .iter()
        .map(|region| read_region(aws, policy, options, region.as_deref()))
        .collect();
    let reads: Vec<RegionResult<A>> = stream::iter(reads).buffered(CONCURRENCY).collect().await;
    let mut read_regions = Vec::new();
    for (region, read) in regions.iter().zip(reads) {
        match read {
            Ok(read) => {
                report.regions.push(read.region.clone());
                report
                    .detectors
                    .insert(read.region.clone(), read.detector.clone());
                if let Some(how) = read.read {
                    report.listed.insert(read.region.clone(), how);
                }
                report.findings.extend(read.findings.iter().cloned());
                read_regions.push(read);
            }
            Err(failure) => {
                report.regions.push(
                    region
                        .clone()
                        .or(failure.region.clone())
                        .unwrap_or_default(),
                );
                report.failures.push(failure);
            }
        }
    }
    known::sort(&mut report.findings);
    // The region of a recorded rule that has none (recorded before policies covered
    // several): the first.
    let default_region = report.regions.first().cloned().unwrap_or_default();

    // observe (I/O), per account of each region
    let mut scopes = Vec::new();
    let mut guardduty = BTreeMap::new();
    for read in read_regions {
        let (region_scopes, failures) = scopes_of(
            aws,
            policy,
            &options.record,
            &default_region,
            &read.region,
            read.account_id.clone(),
            read.ec2,
            read.findings,
            read.settled,
        )
        .await;
        scopes.extend(region_scopes);
        report.failures.extend(failures);
        guardduty.insert(read.region.clone(), (read.guardduty, read.detector));
    }
    let observations: Vec<_> = scopes
        .iter()
        .map(|scope| observe(scope, policy, &options.record, &default_region))
        .collect();
    let observations: Vec<Result<(Observation, Option<usize>), Failure>> =
        stream::iter(observations)
            .buffered(CONCURRENCY)
            .collect()
            .await;
    let mut observed: Vec<(Scope<A::Ec2>, Observation)> = Vec::new();
    for (scope, observation) in scopes.into_iter().zip(observations) {
        match observation {
            Ok((observation, quiet)) => {
                if let Some(groups) = quiet {
                    report.quiet.push(QuietScope {
                        region: scope.region.clone(),
                        account: scope.account.clone(),
                        groups,
                    });
                }
                observed.push((scope, observation));
            }
            Err(failure) => report.failures.push(failure),
        }
    }

    // What an earlier pass left pending, settled against the groups of the accounts
    // and regions read; the rest stays pending.
    let groups: BTreeMap<_, _> = observed
        .iter()
        .flat_map(|(_, o)| o.groups.iter().map(|(id, g)| (id.clone(), g.clone())))
        .collect();
    let record = options
        .record
        .settled_where(&groups, &policy.owner, |rule| {
            observed
                .iter()
                .any(|(scope, _)| recorded_in(rule, scope, &default_region))
        });
    report.record = record.clone();

    // plan (pure), per account and region; a long-running pass remembers the scopes
    // it leaves settled, for the next one to be quiet in
    let remembers = matches!(options.findings, FindingsInput::Known { .. });
    let plans: Vec<(Scope<A::Ec2>, Plan)> = observed
        .into_iter()
        .map(|(scope, observation)| {
            let planned = plan(policy, &observation);
            if remembers && let Some(settled) = Settled::of(policy, &observation, &planned) {
                report.settled.push(SettledScope {
                    region: scope.region.clone(),
                    account: scope.account.clone(),
                    settled,
                });
            }
            (scope, planned)
        })
        .collect();
    if plans.is_empty() && !report.failures.is_empty() {
        // Nothing could be observed anywhere: no plan, the failures say why.
        return report;
    }
    let merged = Plan::merged(policy.mode, plans.iter().map(|(_, p)| p.clone()));

    // execute (I/O): only what the plans say, only when asked and enforced, and only
    // once the intent of every change is recorded
    let mut remediated = Vec::new();
    if options.apply && policy.mode == Mode::Enforce {
        report.applied = true;
        if !merged.is_empty() {
            let intent = intent_of(&merged, options.now);
            if let Err(error) = journal.write_ahead(&record.with_intent(intent)).await {
                report.failures.push(Failure::new(
                    Step::RecordIntent,
                    Category::Record,
                    error.to_string(),
                ));
                report.applied = false;
                report.plan = Some(merged);
                return report;
            }
            let executions: Vec<_> = plans
                .iter()
                .filter(|(_, p)| !p.is_empty())
                .map(|(scope, p)| execute(&scope.ec2, p))
                .collect();
            let outcomes: Vec<Vec<GroupOutcome>> = stream::iter(executions)
                .buffered(CONCURRENCY)
                .collect()
                .await;
            report.outcomes = outcomes.into_iter().flatten().collect();
            report.outcomes.sort_by(|a, b| a.group.cmp(&b.group));
            report.record = record.after(&merged, &report.outcomes, options.now);
        }
        remediated = remediated_findings(&merged, &report.outcomes);
    }
    report.plan = Some(merged);

    // feedback, Security Hub and archive (I/O), per region, through its detector
    let after_remediation =
        policy.finding_feedback || policy.archive_remediated || policy.security_hub_updates;
    if !remediated.is_empty() && after_remediation {
        let newly = newly_remediated(&report, &remediated);
        for (region, (source, detector)) in &guardduty {
            let in_region = |ids: &[FindingId]| -> Vec<FindingId> {
                ids.iter()
                    .filter(|id| {
                        report
                            .findings
                            .iter()
                            .any(|f| &f.id == *id && &f.region == region)
                    })
                    .cloned()
                    .collect()
            };
            let newly_here = in_region(&newly);
            if policy.finding_feedback && !newly_here.is_empty() {
                match source.feedback(detector, &newly_here).await {
                    Ok(()) => report.feedback.extend(newly_here.iter().cloned()),
                    Err(error) => report.failures.push(
                        Failure::new(Step::Feedback, error.category(), error_chain(&error))
                            .in_region(region),
                    ),
                }
            }
            if policy.security_hub_updates && !newly_here.is_empty() {
                let (resolutions, missing) = hub_resolutions(&report, &policy.owner, &newly_here);
                if !missing.is_empty() {
                    report.failures.push(
                        Failure::new(
                            Step::SecurityHub,
                            Category::NotFound,
                            format!(
                                "{} finding(s) carry no ARN to name in Security Hub, first {}",
                                missing.len(),
                                missing[0]
                            ),
                        )
                        .in_region(region),
                    );
                }
                if !resolutions.is_empty() {
                    match source.resolve_in_security_hub(&resolutions).await {
                        Ok(()) => report.security_hub.extend(
                            newly_here
                                .iter()
                                .filter(|id| !missing.contains(id))
                                .cloned(),
                        ),
                        Err(error) => report.failures.push(
                            Failure::new(Step::SecurityHub, error.category(), error_chain(&error))
                                .in_region(region),
                        ),
                    }
                }
            }
            let archive = in_region(&remediated);
            if policy.archive_remediated && !archive.is_empty() {
                match source.archive(detector, &archive).await {
                    Ok(()) => report.archived.extend(archive),
                    Err(error) => report.failures.push(
                        Failure::new(Step::Archive, error.category(), error_chain(&error))
                            .in_region(region),
                    ),
                }
            }
        }
    }
    report
}

/// A region's clients, detector and open findings.
async fn read_region<A: AwsFactory>(
    aws: &A,
    policy: &Policy,
    options: &PassOptions,
    region: Option<&str>,
) -> Result<RegionRead<A::Findings, A::Ec2>, Failure> {
    let named = region.unwrap_or_default();
    let clients = aws.clients(region).await.map_err(|error| {
        Failure::new(
            Step::IdentifyAccount,
            Category::Unreachable,
            error.to_string(),
        )
        .in_region(named)
    })?;
    let region = clients.region.clone();
    let failed = |step: Step, error: &crate::ports::FindingsError| {
        Failure::new(step, error.category(), error_chain(error)).in_region(&region)
    };
    // A configured detector id is one region's (validation allows it with one only).
    let configured = match options.regions.len() {
        0 | 1 => options.detector.as_deref(),
        _ => None,
    };
    let detector = clients
        .guardduty
        .detector(configured)
        .await
        .map_err(|e| failed(Step::FindDetector, &e))?;
    let is_open = |f: &Finding| policy.selects(f);
    let mut settled = BTreeMap::new();
    let (findings, read) = match &options.findings {
        FindingsInput::Full => {
            let listed = clients
                .guardduty
                .findings(&detector, policy, Read::Full)
                .await
                .map_err(|e| failed(Step::ReadFindings, &e))?;
            (
                known::merge(Read::Full, Vec::new(), listed, is_open),
                Some(Read::Full),
            )
        }
        FindingsInput::Known {
            known,
            full_resync_seconds,
        } => {
            let read = known.read(&region, options.now, *full_resync_seconds);
            let listed = clients
                .guardduty
                .findings(&detector, policy, read)
                .await
                .map_err(|e| failed(Step::ReadFindings, &e))?;
            if matches!(read, Read::UpdatedSince(_)) && options.record.pending.is_none() {
                settled = known.settled(&region);
            }
            (
                known::merge(read, known.open(&region), listed, is_open),
                Some(read),
            )
        }
        FindingsInput::Given(given) => {
            let mut findings: Vec<Finding> = given
                .iter()
                .filter(|f| f.region == region && is_open(f))
                .cloned()
                .collect();
            known::sort(&mut findings);
            (findings, None)
        }
    };
    Ok(RegionRead {
        region,
        guardduty: clients.guardduty,
        ec2: clients.ec2,
        account_id: clients.account_id,
        detector,
        findings,
        read,
        settled,
    })
}

/// The accounts of a region a pass acts in: the credentials' own (with every finding
/// not remediated elsewhere: its own, and other accounts' to report), and each member
/// account (`memberAccounts`) with findings or recorded changes here, through its role.
#[allow(clippy::too_many_arguments)]
async fn scopes_of<A: AwsFactory>(
    aws: &A,
    policy: &Policy,
    record: &ChangeRecord,
    default_region: &str,
    region: &str,
    own_account: Option<String>,
    own_ec2: A::Ec2,
    findings: Vec<Finding>,
    mut settled: BTreeMap<Option<String>, Settled>,
) -> (Vec<Scope<A::Ec2>>, Vec<Failure>) {
    let member = |account: &str| match (&own_account, &policy.member_accounts) {
        (Some(own), Some(_)) => account != own && policy.remediates_account(account, own),
        _ => false,
    };
    let mut by_account: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    let mut own = Vec::new();
    for finding in findings {
        if member(&finding.account_id) {
            by_account
                .entry(finding.account_id.clone())
                .or_default()
                .push(finding);
        } else {
            own.push(finding);
        }
    }
    // Member accounts with recorded changes here stay under watch for drift.
    for rule in recorded_rules(record) {
        if let Some(account) = &rule.account
            && rule.region.as_deref().unwrap_or(default_region) == region
            && member(account)
        {
            by_account.entry(account.clone()).or_default();
        }
    }
    let mut scopes = vec![Scope {
        region: region.to_string(),
        account: own_account.clone(),
        own: true,
        ec2: own_ec2,
        findings: own,
        settled: settled.remove(&own_account),
    }];
    let mut failures = Vec::new();
    if let Some(members) = &policy.member_accounts {
        let assumed: Vec<_> = by_account
            .keys()
            .map(|account| aws.member(account, region, members))
            .collect();
        let assumed: Vec<_> = stream::iter(assumed).buffered(CONCURRENCY).collect().await;
        for ((account, findings), ec2) in by_account.into_iter().zip(assumed) {
            match ec2 {
                Ok(ec2) => scopes.push(Scope {
                    region: region.to_string(),
                    settled: settled.remove(&Some(account.clone())),
                    account: Some(account),
                    own: false,
                    ec2,
                    findings,
                }),
                Err(error) => failures.push(
                    Failure::new(Step::AssumeRole, Category::AccessDenied, error.to_string())
                        .in_region(region)
                        .in_account(&account),
                ),
            }
        }
    }
    (scopes, failures)
}

/// Every rule of the record, pending ones included.
fn recorded_rules(record: &ChangeRecord) -> impl Iterator<Item = &RecordedRule> {
    record.added.iter().chain(&record.revoked).chain(
        record
            .pending
            .iter()
            .flat_map(|p| p.added.iter().chain(&p.revoked)),
    )
}

/// Was `rule` recorded in the account and region of `scope`?
fn recorded_in<S>(rule: &RecordedRule, scope: &Scope<S>, default_region: &str) -> bool {
    rule.region.as_deref().unwrap_or(default_region) == scope.region
        && match &rule.account {
            None => scope.own,
            Some(account) => scope.account.as_deref() == Some(account.as_str()),
        }
}

/// What one account of one region holds that the plan needs: the findings'
/// instances, the groups under watch and those of an intent left pending, the groups
/// of those, the prefix lists on a port in scope, and the interface counts of the
/// groups the plan would change. Or, where the last pass left the scope settled and
/// nothing new was listed, only the groups' digests: equal, the scope is quiet
/// (`Some(groups)`) and its observation the one remembered.
async fn observe<S: SecurityGroups>(
    scope: &Scope<S>,
    policy: &Policy,
    record: &ChangeRecord,
    default_region: &str,
) -> Result<(Observation, Option<usize>), Failure> {
    let ec2 = &scope.ec2;
    let failed = |step: Step, error: &crate::ports::Ec2Error| {
        let failure =
            Failure::new(step, error.category(), error_chain(error)).in_region(&scope.region);
        match (&scope.account, scope.own) {
            (Some(account), false) => failure.in_account(account),
            _ => failure,
        }
    };
    let instance_ids: Vec<_> =
        instances_to_describe(policy, scope.account.as_deref(), &scope.findings)
            .into_iter()
            .collect();
    if let Some(settled) = &scope.settled
        && settled.may_hold(policy, &scope.findings)
    {
        // The groups' digests and the instances' groups now, concurrently.
        let unwatched = settled.unwatched();
        let digests = async {
            ec2.digests(&policy.owner, &unwatched)
                .await
                .map_err(|e| failed(Step::FindWatchedGroups, &e))
        };
        let instances = async {
            if instance_ids.is_empty() {
                return Ok(Vec::new());
            }
            ec2.instances(&instance_ids)
                .await
                .map_err(|e| failed(Step::DescribeInstances, &e))
        };
        let (digests, instances) = futures_util::future::try_join(digests, instances).await?;
        let instances: BTreeMap<_, _> = instances.into_iter().map(|i| (i.id.clone(), i)).collect();
        if settled.holds(&digests, &instances) {
            return Ok((settled.observation.clone(), Some(digests.len())));
        }
    }
    // The findings' instances first: their groups now (never the finding's, which
    // may be stale); then those groups and the ones under watch, in one read.
    let instances = if instance_ids.is_empty() {
        Vec::new()
    } else {
        ec2.instances(&instance_ids)
            .await
            .map_err(|e| failed(Step::DescribeInstances, &e))?
    };
    // The groups of an intent left pending here are read too, to settle it.
    let pending = record
        .pending
        .iter()
        .flat_map(|p| p.added.iter().chain(&p.revoked))
        .filter(|rule| recorded_in(rule, scope, default_region))
        .filter_map(|rule| SecurityGroupId::parse(&rule.group).ok());
    let group_ids: BTreeSet<SecurityGroupId> = instances
        .iter()
        .flat_map(|i| i.security_groups.iter().cloned())
        .chain(pending)
        .collect();
    let group_ids: Vec<_> = group_ids.into_iter().collect();
    let watcher = (policy.mode != Mode::Off).then_some(policy.owner.as_str());
    let groups = if group_ids.is_empty() && watcher.is_none() {
        Vec::new()
    } else {
        let (groups, _watched) =
            ec2.groups_with_watched(&group_ids, watcher)
                .await
                .map_err(|e| {
                    let step = match e {
                        crate::ports::Ec2Error::DescribeWatched(_) => Step::FindWatchedGroups,
                        _ => Step::DescribeGroups,
                    };
                    failed(step, &e)
                })?;
        groups
    };
    let mut observation = Observation {
        account_id: scope.account.clone(),
        region: scope.region.clone(),
        findings: scope.findings.clone(),
        instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
        groups: groups.into_iter().map(|g| (g.id.clone(), g)).collect(),
        prefix_lists: Default::default(),
    };
    // Only the prefix lists on a port the plan may concern (pure), then read (I/O).
    let lists: Vec<String> = prefix_lists_to_read(policy, &observation)
        .into_iter()
        .collect();
    if !lists.is_empty() {
        observation.prefix_lists = ec2.prefix_lists(&lists).await;
    }
    // The interfaces of the groups the plan would change only (pure), then read
    // (I/O): a converged group's blast radius is never asked.
    let counted: Vec<SecurityGroupId> = interfaces_to_count(policy, &observation)
        .into_iter()
        .collect();
    if !counted.is_empty() {
        let counts = ec2
            .interface_counts(&counted)
            .await
            .map_err(|e| failed(Step::DescribeGroups, &e))?;
        for (id, count) in counts {
            if let Some(group) = observation.groups.get_mut(&id) {
                group.network_interfaces = Some(count);
            }
        }
    }
    Ok((observation, None))
}

/// What Security Hub is told about each of `ids`: the finding's ARN, its region and a
/// note naming `owner` and the change; and the findings without an ARN to name.
fn hub_resolutions(
    report: &PassReport,
    owner: &str,
    ids: &[FindingId],
) -> (Vec<crate::ports::HubResolution>, Vec<FindingId>) {
    use crate::domain::alert::Response;
    use std::collections::HashMap;
    let findings: HashMap<&FindingId, &crate::domain::finding::Finding> =
        report.findings.iter().map(|f| (&f.id, f)).collect();
    let responses = crate::domain::response::finding_responses(report);
    let closed: HashMap<&FindingId, &str> = responses
        .iter()
        .filter_map(|seen| match &seen.response {
            Response::Closed { summary } => Some((&seen.finding.id, summary.as_str())),
            _ => None,
        })
        .collect();
    let mut resolutions = Vec::new();
    let mut missing = Vec::new();
    for id in ids {
        let Some(finding) = findings.get(id) else {
            continue;
        };
        let Some(arn) = &finding.arn else {
            missing.push(id.clone());
            continue;
        };
        let summary = closed.get(id).copied().unwrap_or("the exposure is closed");
        resolutions.push(crate::ports::HubResolution {
            arn: arn.clone(),
            region: finding.region.clone(),
            note: format!("Remediated by guardduty-operator ({owner}): {summary}"),
        });
    }
    (resolutions, missing)
}

/// The remediated findings whose groups this pass changed (not merely found
/// converged): they get feedback once, when they are closed.
fn newly_remediated(report: &PassReport, remediated: &[FindingId]) -> Vec<FindingId> {
    let Some(plan) = &report.plan else {
        return Vec::new();
    };
    remediated
        .iter()
        .filter(|id| match plan.findings.get(*id) {
            Some(FindingDecision::Remediate {
                security_groups, ..
            }) => security_groups
                .iter()
                .any(|g| report.outcome(g).is_some_and(GroupOutcome::succeeded)),
            _ => false,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    //! The pass against a stateful in-memory account with failure injection:
    //! outcomes are asserted on the account's state, not on the calls.

    use super::*;
    use crate::domain::alert::Response;
    use crate::domain::finding::Finding;
    use crate::domain::ids::InstanceId;
    use crate::domain::known::KnownFindings;
    use crate::domain::outcome::{Category, StepResult};
    use crate::domain::policy::TrustedRanges;
    use crate::domain::response::finding_responses;
    use crate::domain::security_group::{
        IngressRule, Instance, InstanceState, PortRange, SecurityGroup, Traffic,
    };
    use crate::ports::NoJournal;
    use crate::ports::failing::{Failing, Operation};
    use crate::ports::memory::{MemoryAccount, MemoryAws};

    fn world_open_group(id: &str) -> SecurityGroup {
        SecurityGroup::world_open(id, Traffic::Tcp(PortRange::single(22)))
    }

    /// Instance i-1 in these world-open groups, with one finding on its port 22.
    fn account(groups: &[&str]) -> MemoryAccount {
        let group_ids: Vec<SecurityGroupId> = groups
            .iter()
            .map(|g| SecurityGroupId::parse(g).unwrap())
            .collect();
        MemoryAccount::with_groups(groups.iter().map(|g| world_open_group(g)))
            .with_instances([Instance {
                id: InstanceId::parse("i-1").unwrap(),
                state: InstanceState::Running,
                security_groups: group_ids,
            }])
            .with_findings([Finding::probe("f1", "i-1", &[22])])
    }

    fn policy() -> Policy {
        Policy {
            trusted: TrustedRanges::new(["10.0.0.0/8".parse().unwrap()]).unwrap(),
            archive_remediated: true,
            ..Policy::test().enforce()
        }
    }

    fn apply() -> PassOptions {
        PassOptions {
            regions: vec!["us-east-1".into()],
            apply: true,
            now: Timestamp(1_800_000_000),
            ..PassOptions::default()
        }
    }

    #[tokio::test]
    async fn trusted_ranges_can_reach_the_port_before_anything_is_revoked() {
        let account = std::sync::Arc::new(account(&["sg-1", "sg-2"]));
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(!report.failed(), "{report:#?}");
        assert_eq!(
            *account.trusted_reach_at_revoke.lock().unwrap(),
            [true, true]
        );
        let again = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(again.plan.unwrap().is_empty());
        assert_eq!(account.archived().len(), 1);
    }

    #[tokio::test]
    async fn failed_authorize_revokes_nothing_and_other_groups_still_converge() {
        let account = std::sync::Arc::new(
            Failing::new(account(&["sg-1", "sg-2"])).fail(Operation::Authorize, Some("sg-1")),
        );
        let before = account.inner().group("sg-1");
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(report.failed());
        let failed = &report.outcomes[0];
        assert!(matches!(
            failed.authorize,
            StepResult::Failed {
                category: Category::AccessDenied,
                ..
            }
        ));
        assert!(matches!(failed.revoke, StepResult::NotRun { .. }));
        assert_eq!(
            account.inner().group("sg-1").ingress,
            before.ingress,
            "sg-1's rules must be untouched"
        );
        assert!(
            account
                .inner()
                .group("sg-1")
                .watches
                .contains_key(&policy().owner),
            "remembered first, so the next pass watches it"
        );
        assert!(
            account.calls_of(Operation::Revoke).iter().all(|c| c
                .group
                .as_ref()
                .map(SecurityGroupId::as_str)
                != Some("sg-1")),
            "nothing is revoked in sg-1"
        );
        assert_eq!(account.inner().group("sg-2").ingress.len(), 1);
        assert!(report.outcomes[1].succeeded());
        assert!(
            account.inner().archived().is_empty(),
            "a finding with a failed group stays open"
        );
    }

    #[tokio::test]
    async fn failed_archive_keeps_the_plan_and_the_outcomes_in_the_report() {
        let account =
            std::sync::Arc::new(Failing::new(account(&["sg-1"])).fail(Operation::Archive, None));
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(report.failed());
        assert_eq!(report.failure().unwrap().step, Step::Archive);
        assert_eq!(report.plan.as_ref().unwrap().changes().count(), 1);
        assert!(report.outcomes[0].succeeded());
        assert!(report.archived.is_empty());
    }

    #[tokio::test]
    async fn failed_revoke_is_reported_and_retried_on_the_next_pass() {
        let account = std::sync::Arc::new(
            Failing::new(account(&["sg-1"])).fail(Operation::Revoke, Some("sg-1")),
        );
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(report.failed());
        assert!(matches!(
            report.outcomes[0].authorize,
            StepResult::Done { rules: 1, .. }
        ));
        assert!(matches!(
            report.outcomes[0].revoke,
            StepResult::Failed { .. }
        ));
        // The next pass (after the fault) plans only the revoke.
        account.heal();
        let again = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(!again.failed());
        let plan = again.plan.unwrap();
        let (_, change) = plan.changes().next().expect("the revoke is still planned");
        assert!(change.authorize.is_empty());
        assert_eq!(change.revoke.len(), 1);
    }

    fn responses(report: &PassReport) -> Vec<Response> {
        finding_responses(report)
            .into_iter()
            .map(|seen| seen.response)
            .collect()
    }

    #[tokio::test]
    async fn a_finding_is_planned_in_dry_run_then_closed_when_enforced() {
        let account = std::sync::Arc::new(account(&["sg-1"]));
        let dry_run = PassOptions {
            apply: false,
            ..apply()
        };
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &dry_run,
            &NoJournal,
        )
        .await;
        assert_eq!(
            responses(&report),
            [Response::Planned {
                summary: "revoke tcp/22 from 0.0.0.0/0, authorize tcp/22 from 10.0.0.0/8 in sg-1"
                    .into()
            }]
        );
        let policy = Policy {
            archive_remediated: false,
            ..policy()
        };
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy,
            &apply(),
            &NoJournal,
        )
        .await;
        assert_eq!(
            responses(&report),
            [Response::Closed {
                summary: "revoked tcp/22 from 0.0.0.0/0, authorized tcp/22 from 10.0.0.0/8 in sg-1"
                    .into()
            }]
        );
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy,
            &apply(),
            &NoJournal,
        )
        .await;
        assert_eq!(
            responses(&report),
            [Response::Closed {
                summary: "sg-1 already admits tcp/22 from trusted ranges only".into()
            }]
        );
    }

    #[tokio::test]
    async fn a_failed_group_makes_the_finding_failed_whatever_the_other_groups_did() {
        let account = std::sync::Arc::new(
            Failing::new(account(&["sg-1", "sg-2"])).fail(Operation::Authorize, Some("sg-2")),
        );
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        let responses = responses(&report);
        let [Response::Failed { error }] = responses.as_slice() else {
            panic!("expected one failed response: {responses:?}");
        };
        assert!(
            error.starts_with("sg-2: failed to authorize ingress in sg-2"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_pass_that_stopped_before_planning_reports_the_failure_for_fixable_findings() {
        let account = account(&["sg-1"]);
        let mut sample = Finding::probe("f2", "i-1", &[22]);
        sample.sample = true;
        account.findings.lock().unwrap().push(sample);
        let account = std::sync::Arc::new(Failing::new(account).fail(Operation::Instances, None));
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(report.plan.is_none());
        let responses = responses(&report);
        assert!(
            matches!(&responses[0], Response::Failed { error } if error.starts_with("failed to describe instances")),
            "{responses:?}"
        );
        assert_eq!(
            responses[1],
            Response::Reported {
                reason: "sample finding: never changes AWS".into()
            }
        );
    }

    #[tokio::test]
    async fn interfaces_are_counted_for_the_groups_to_change_and_never_once_converged() {
        let account = std::sync::Arc::new(Failing::new(account(&["sg-1", "sg-2"])));
        let first = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(!first.failed(), "{first:#?}");
        assert_eq!(account.calls_of(Operation::Interfaces).len(), 1);
        let plan = first.plan.unwrap();
        assert!(plan.groups.iter().all(|g| g.network_interfaces == Some(1)));
        let again = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(again.plan.as_ref().unwrap().is_empty());
        assert_eq!(
            account.calls_of(Operation::Interfaces).len(),
            1,
            "a converged pass asks no interface count"
        );
        assert!(
            again
                .plan
                .unwrap()
                .groups
                .iter()
                .all(|g| g.network_interfaces.is_none())
        );
    }

    #[tokio::test]
    async fn interfaces_that_cannot_be_counted_stop_the_account_and_change_nothing() {
        let account =
            std::sync::Arc::new(Failing::new(account(&["sg-1"])).fail(Operation::Interfaces, None));
        let before = account.inner().group("sg-1");
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            &policy(),
            &apply(),
            &NoJournal,
        )
        .await;
        assert!(report.failed());
        assert!(report.plan.is_none());
        assert_eq!(account.inner().group("sg-1"), before);
        assert!(account.calls_of(Operation::Authorize).is_empty());
    }

    /// A long-running pass over `account`: the options `watch` gives, with what the
    /// last passes taught.
    async fn known_pass(
        account: &std::sync::Arc<Failing<MemoryAccount>>,
        policy: &Policy,
        known: &mut KnownFindings,
        now: i64,
    ) -> PassReport {
        let options = PassOptions {
            findings: FindingsInput::Known {
                known: known.clone(),
                full_resync_seconds: 3600,
            },
            now: Timestamp(now),
            ..apply()
        };
        let report = run_pass(
            &MemoryAws::from_arc(account.clone()),
            policy,
            &options,
            &NoJournal,
        )
        .await;
        known.learn(&report, Timestamp(now));
        report
    }

    /// The EC2 reads since `from` calls, by operation.
    fn ec2_reads(account: &Failing<MemoryAccount>, from: usize) -> Vec<Operation> {
        let mut reads: Vec<Operation> = account.calls()[from..]
            .iter()
            .map(|c| c.operation)
            .filter(|op| {
                matches!(
                    op,
                    Operation::Instances
                        | Operation::Groups
                        | Operation::WatchedGroups
                        | Operation::Interfaces
                        | Operation::PrefixLists
                        | Operation::Digests
                )
            })
            .collect();
        reads.sort_by_key(|op| format!("{op:?}"));
        reads.dedup();
        reads
    }

    fn unarchived() -> Policy {
        Policy {
            archive_remediated: false,
            ..policy()
        }
    }

    #[tokio::test]
    async fn a_settled_account_with_nothing_new_is_read_by_its_digests_only() {
        let account = std::sync::Arc::new(Failing::new(account(&["sg-1", "sg-2"])));
        let policy = unarchived();
        let mut known = KnownFindings::default();
        let t = 1_800_000_000;
        let first = known_pass(&account, &policy, &mut known, t).await;
        assert_eq!(first.plan.as_ref().unwrap().changes().count(), 2);
        assert!(
            first.quiet.is_empty() && first.settled.is_empty(),
            "it changed groups"
        );
        let converged = known_pass(&account, &policy, &mut known, t + 30).await;
        assert!(
            converged.quiet.is_empty(),
            "the first pass changed them: read in full"
        );
        assert_eq!(converged.settled.len(), 1);
        let calls = account.calls().len();
        let quiet = known_pass(&account, &policy, &mut known, t + 60).await;
        assert!(!quiet.failed(), "{quiet:#?}");
        assert_eq!(quiet.quiet.len(), 1);
        assert_eq!(quiet.quiet[0].groups, 2);
        assert_eq!(
            ec2_reads(&account, calls),
            [Operation::Digests, Operation::Instances]
        );
        assert_eq!(quiet.plan, converged.plan, "the same verdicts");
        assert_eq!(quiet.findings, converged.findings);
        // Still quiet on the next pass: it settles again.
        let calls = account.calls().len();
        let again = known_pass(&account, &policy, &mut known, t + 90).await;
        assert_eq!(again.quiet.len(), 1);
        assert_eq!(
            ec2_reads(&account, calls),
            [Operation::Digests, Operation::Instances]
        );
    }

    #[tokio::test]
    async fn drift_in_a_settled_account_is_read_in_full_and_closed() {
        let account = std::sync::Arc::new(Failing::new(account(&["sg-1", "sg-2"])));
        let policy = unarchived();
        let mut known = KnownFindings::default();
        let t = 1_800_000_000;
        known_pass(&account, &policy, &mut known, t).await;
        known_pass(&account, &policy, &mut known, t + 30).await;
        // Someone opens tcp/22 to the world again in sg-2.
        let reopened = world_open_group("sg-2").ingress.remove(0);
        account
            .inner()
            .groups
            .lock()
            .unwrap()
            .get_mut(&SecurityGroupId::parse("sg-2").unwrap())
            .unwrap()
            .ingress
            .push(IngressRule {
                id: crate::domain::ids::RuleId::parse("sgr-0d1f7").unwrap(),
                ..reopened
            });
        let drift = known_pass(&account, &policy, &mut known, t + 60).await;
        assert!(drift.quiet.is_empty(), "the digest differs: a full read");
        let plan = drift.plan.unwrap();
        let (group, change) = plan.changes().next().expect("the drift is closed");
        assert_eq!(group.group.as_str(), "sg-2");
        assert_eq!(change.revoke.len(), 1);
        assert!(
            account
                .inner()
                .group("sg-2")
                .ingress
                .iter()
                .all(|r| r.id.as_str() != "sgr-0d1f7")
        );
    }

    #[tokio::test]
    async fn a_finding_heard_a_new_finding_or_another_policy_reads_in_full() {
        let account = std::sync::Arc::new(Failing::new(account(&["sg-1"])));
        let policy = unarchived();
        let mut known = KnownFindings::default();
        let t = 1_800_000_000;
        known_pass(&account, &policy, &mut known, t).await;
        known_pass(&account, &policy, &mut known, t + 30).await;
        assert_eq!(
            known_pass(&account, &policy, &mut known, t + 60)
                .await
                .quiet
                .len(),
            1
        );

        // An event about the finding.
        known.heard(&Finding::probe("f1", "i-1", &[22]), true);
        let calls = account.calls().len();
        let heard = known_pass(&account, &policy, &mut known, t + 90).await;
        assert!(heard.quiet.is_empty());
        assert!(ec2_reads(&account, calls).contains(&Operation::Groups));

        // A new finding listed.
        assert_eq!(
            known_pass(&account, &policy, &mut known, t + 120)
                .await
                .quiet
                .len(),
            1
        );
        account
            .inner()
            .findings
            .lock()
            .unwrap()
            .push(Finding::probe("f2", "i-1", &[22]));
        let listed = known_pass(&account, &policy, &mut known, t + 150).await;
        assert!(listed.quiet.is_empty());
        assert_eq!(listed.findings.len(), 2);

        // The policy changed (another trusted range).
        assert_eq!(
            known_pass(&account, &policy, &mut known, t + 180)
                .await
                .quiet
                .len(),
            1
        );
        let wider = policy.clone().trusting(&["10.0.0.0/8", "192.168.0.0/16"]);
        let changed = known_pass(&account, &wider, &mut known, t + 210).await;
        assert!(changed.quiet.is_empty());
        assert_eq!(
            changed.plan.unwrap().changes().count(),
            1,
            "authorizes the new range"
        );

        // Every fullResyncInterval, in full.
        assert!(
            known_pass(&account, &wider, &mut known, t + 240)
                .await
                .quiet
                .is_empty()
        );
        assert_eq!(
            known_pass(&account, &wider, &mut known, t + 270)
                .await
                .quiet
                .len(),
            1
        );
        let resync = known_pass(&account, &wider, &mut known, t + 3600).await;
        assert!(resync.quiet.is_empty());
    }

    #[tokio::test]
    async fn digests_that_cannot_be_read_fail_the_account_and_change_nothing() {
        let account = std::sync::Arc::new(Failing::new(account(&["sg-1"])));
        let policy = unarchived();
        let mut known = KnownFindings::default();
        let t = 1_800_000_000;
        known_pass(&account, &policy, &mut known, t).await;
        known_pass(&account, &policy, &mut known, t + 30).await;
        let account = std::sync::Arc::new(
            Failing::new(account.inner().copy()).fail(Operation::Digests, None),
        );
        let failed = known_pass(&account, &policy, &mut known, t + 60).await;
        assert!(failed.failed());
        assert_eq!(failed.failure().unwrap().step, Step::FindWatchedGroups);
        assert!(failed.plan.is_none());
        assert!(
            known.settled("us-east-1").is_empty(),
            "the next pass reads in full"
        );
    }

    #[tokio::test]
    async fn an_instance_moved_into_a_world_open_group_is_never_called_quiet() {
        let account = std::sync::Arc::new(Failing::new(account(&["sg-1"])));
        let policy = unarchived();
        let mut known = KnownFindings::default();
        let t = 1_800_000_000;
        known_pass(&account, &policy, &mut known, t).await;
        known_pass(&account, &policy, &mut known, t + 30).await;
        // Someone attaches a world-open sg-3 to i-1: no finding is updated, no
        // watched group changes, yet the world gets in again.
        let mut moved = account.inner().copy();
        moved.instances[0]
            .security_groups
            .push(SecurityGroupId::parse("sg-3").unwrap());
        moved.groups.lock().unwrap().insert(
            SecurityGroupId::parse("sg-3").unwrap(),
            world_open_group("sg-3"),
        );
        let account = std::sync::Arc::new(Failing::new(moved));
        let report = known_pass(&account, &policy, &mut known, t + 60).await;
        assert!(
            report.quiet.is_empty(),
            "the instance's groups changed: a full read"
        );
        let plan = report.plan.unwrap();
        let (group, _) = plan.changes().next().expect("sg-3 is closed");
        assert_eq!(group.group.as_str(), "sg-3");
        assert!(report.outcomes[0].succeeded());
    }
}
