//! The Revert executor (I/O, no decisions): carries out [`revert_plan`] per group,
//! groups concurrently, restoring before removing, then takes the policy's watch
//! tags off every group it watches; the same step machinery as the apply executor
//! ([`super::execute`]).

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream};

use super::CONCURRENCY;
use crate::domain::ids::SecurityGroupId;
use crate::domain::outcome::Step;
use crate::domain::policy::MemberAccounts;
use crate::domain::record::{
    ChangeRecord, GroupRevert, RevertError, RevertReport, RevertSteps, missing, present_removals,
    revert_plan, unreadable_entries,
};
use crate::domain::security_group::SecurityGroup;
use crate::ports::{AwsFactory, Ec2Error, SecurityGroups, error_chain};

/// Undoes `owner`'s record everywhere it changed something (I/O): the record split by
/// region and account ([`ChangeRecord::by_place`]), each part reverted by [`revert`]
/// with that account's EC2 (a member account's through its role), every region of
/// the policy included so its watch tags go too; one report of it all. A part whose
/// clients cannot be had is a failure of the revert; the others still go ahead.
pub async fn revert_everywhere<A: AwsFactory>(
    aws: &A,
    record: &ChangeRecord,
    owner: &str,
    regions: &[String],
    members: Option<&MemberAccounts>,
) -> RevertReport {
    let default_region = match regions.first() {
        Some(region) => region.clone(),
        None => match aws.clients(None).await {
            Ok(clients) => clients.region,
            Err(error) => {
                return RevertReport {
                    failure: Some(setup_failure(Step::DescribeRecordedGroups, &error)),
                    ..RevertReport::default()
                };
            }
        },
    };
    let mut parts = record.by_place(&default_region);
    for region in regions.iter().chain([&default_region]) {
        parts
            .entry((region.clone(), None))
            .or_insert_with(|| ChangeRecord {
                truncated: record.truncated,
                ..ChangeRecord::default()
            });
    }
    let mut report = RevertReport {
        unreadable: unreadable_entries(record).len(),
        truncated: record.truncated,
        ..RevertReport::default()
    };
    for ((region, account), part) in parts {
        let own = match aws.clients(Some(&region)).await {
            Ok(clients) => clients,
            Err(error) => {
                report
                    .failure
                    .get_or_insert(setup_failure(Step::DescribeRecordedGroups, &error));
                continue;
            }
        };
        let part_report = match account.filter(|a| own.account_id.as_deref() != Some(a)) {
            None => revert(&own.ec2, &part, owner).await,
            Some(account) => {
                let Some(members) = members else {
                    report.failure.get_or_insert(RevertError {
                        step: Step::AssumeRole,
                        category: crate::domain::outcome::Category::AccessDenied,
                        error: format!(
                            "the record holds changes in account {account}, and the policy no                              longer has spec.memberAccounts to reach it"
                        ),
                    });
                    continue;
                };
                match aws.member(&account, &region, members).await {
                    Ok(ec2) => revert(&ec2, &part, owner).await,
                    Err(error) => {
                        report
                            .failure
                            .get_or_insert(setup_failure(Step::AssumeRole, &error));
                        continue;
                    }
                }
            }
        };
        report.groups.extend(part_report.groups);
        if let Some(failure) = part_report.failure {
            report.failure.get_or_insert(failure);
        }
    }
    report.groups.sort_by(|a, b| a.group().cmp(b.group()));
    report
}

fn setup_failure(step: Step, error: &crate::ports::AwsSetupError) -> RevertError {
    RevertError {
        step,
        category: crate::domain::outcome::Category::Unreachable,
        error: error.to_string(),
    }
}

/// Undoes `owner`'s record in AWS (I/O, no decisions: [`revert_plan`] decides):
/// describes the recorded groups, then per group, groups concurrently (bounded),
/// restores the revoked rules that are missing and, only if that worked, removes the
/// owner's added rules that are still there; once every group is reverted, the
/// owner's watch tags go, so nothing watches the groups any more. A group that no
/// longer exists is reported and skipped; rules already reverted are left alone, so
/// running it again changes nothing.
pub async fn revert<S: SecurityGroups>(
    ec2: &S,
    record: &ChangeRecord,
    owner: &str,
) -> RevertReport {
    let mut report = RevertReport {
        unreadable: unreadable_entries(record).len(),
        truncated: record.truncated,
        ..RevertReport::default()
    };
    // An intent left pending (a pass killed half-way) is settled first, so what it
    // did is reverted too.
    let settled;
    let record = if record.pending.is_some() {
        let pending = record.pending_groups();
        match ec2.groups(&pending).await {
            Ok(groups) => {
                let groups = groups.into_iter().map(|g| (g.id.clone(), g)).collect();
                settled = record.settled(&groups, owner);
                &settled
            }
            Err(error) => {
                report.failure = Some(RevertError {
                    step: Step::DescribeRecordedGroups,
                    category: error.category(),
                    error: error_chain(&error),
                });
                return report;
            }
        }
    } else {
        record
    };
    let plan = revert_plan(record);
    if !plan.is_empty() {
        revert_groups(ec2, plan, owner, &mut report).await;
    }
    if report.completed() {
        let forgotten = match ec2.watched_groups(owner).await {
            Ok(watched) if watched.is_empty() => Ok(()),
            Ok(watched) => ec2.forget(owner, &watched).await,
            Err(error) => Err(error),
        };
        if let Err(error) = forgotten {
            report.failure = Some(RevertError {
                step: Step::Forget,
                category: error.category(),
                error: error_chain(&error),
            });
        }
    }
    report
}

async fn revert_groups<S: SecurityGroups>(
    ec2: &S,
    plan: Vec<(SecurityGroupId, RevertSteps)>,
    owner: &str,
    report: &mut RevertReport,
) {
    let ids: Vec<SecurityGroupId> = plan.iter().map(|(group, _)| group.clone()).collect();
    let described = match ec2.groups(&ids).await {
        Ok(groups) => groups,
        Err(error) => {
            report.failure = Some(RevertError {
                step: Step::DescribeRecordedGroups,
                category: error.category(),
                error: error_chain(&error),
            });
            return;
        }
    };
    let mut now: BTreeMap<SecurityGroupId, SecurityGroup> =
        described.into_iter().map(|g| (g.id.clone(), g)).collect();
    // Futures built before the stream, by a named async fn (see `super::execute`).
    let reverts: Vec<_> = plan
        .into_iter()
        .map(|(group, steps)| {
            let current = now.remove(&group);
            revert_group(ec2, group, steps, current, owner)
        })
        .collect();
    report.groups = stream::iter(reverts)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    report.groups.sort_by(|a, b| a.group().cmp(b.group()));
}

async fn revert_group<S: SecurityGroups>(
    ec2: &S,
    group: SecurityGroupId,
    steps: RevertSteps,
    current: Option<SecurityGroup>,
    owner: &str,
) -> GroupRevert {
    let Some(current) = current else {
        return GroupRevert::GroupGone { group };
    };
    let restore = missing(&current, &steps.restore);
    let remove = present_removals(&current, &steps.remove, owner);
    let failed = |step, error: Ec2Error| {
        if group_gone(&error) {
            GroupRevert::GroupGone {
                group: group.clone(),
            }
        } else {
            GroupRevert::Failed {
                group: group.clone(),
                step,
                category: error.category(),
                error: error_chain(&error),
            }
        }
    };
    if !restore.is_empty()
        && let Err(error) = ec2.restore(&group, &restore).await
    {
        return failed(Step::Restore, error);
    }
    if !remove.is_empty()
        && let Err(error) = ec2.revoke(&group, &remove).await
    {
        return failed(Step::Remove, error);
    }
    GroupRevert::Reverted {
        already_reverted: (steps.restore.len() + steps.remove.len())
            .saturating_sub(restore.len() + remove.len()),
        restored: restore.len(),
        removed: remove.len(),
        group,
    }
}

/// The group was deleted between the describe and the change.
fn group_gone(error: &Ec2Error) -> bool {
    error.aws().code.as_deref() == Some("InvalidGroup.NotFound")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::cidr::Cidr;
    use crate::domain::fixtures::TEST_OWNER;
    use crate::domain::ids::RuleId;
    use crate::domain::outcome::Category;
    use crate::domain::record::RecordedRule;
    use crate::domain::security_group::{IngressRule, PortRange, Source, Traffic};
    use crate::ports::failing::{Failing, Operation};
    use crate::ports::memory::MemoryAccount;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn sg(id: &str) -> SecurityGroupId {
        SecurityGroupId::parse(id).unwrap()
    }

    fn rule_id(id: &str) -> RuleId {
        RuleId::parse(id).unwrap()
    }

    fn ports(from: u16, to: u16) -> PortRange {
        PortRange::new(from, to)
    }

    fn ingress(id: &str, range: PortRange, source: &str, managed: bool) -> IngressRule {
        IngressRule {
            id: rule_id(id),
            traffic: Traffic::Tcp(range),
            source: Source::Cidr(cidr(source)),
            description: None,
            owner: managed.then(|| TEST_OWNER.to_string()),
        }
    }

    fn group(id: &str, ingress: Vec<IngressRule>) -> SecurityGroup {
        SecurityGroup {
            id: sg(id),
            name: id.into(),
            vpc_id: None,
            tags: BTreeMap::new(),
            ingress,
            network_interfaces: Some(1),
            watches: BTreeMap::new(),
        }
    }

    #[test]
    fn a_revert_with_the_sdk_adapter_can_run_on_the_controllers_runtime() {
        fn send<T: Send>(_: &T) {}
        let ec2 = crate::aws::ec2::Ec2::new(aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .build(),
        ));
        let record = ChangeRecord::default();
        send(&revert(&ec2, &record, TEST_OWNER));
    }

    fn recorded(group: &str, id: Option<&str>, range: PortRange, source: &str) -> RecordedRule {
        RecordedRule {
            group: group.into(),
            account: None,
            region: Some("us-east-1".into()),
            rule_id: id.map(str::to_string),
            protocol: "tcp".into(),
            from_port: range.from,
            to_port: range.to,
            cidr: source.into(),
            description: None,
            finding: None,
            at: None,
        }
    }

    /// `sg-1` and `sg-2`, each narrowed by the operator around 22 with 10.0.0.0/8
    /// trusted; restoring fails in the groups `fail_restore`.
    fn narrowed_groups(fail_restore: &[&str]) -> Failing<MemoryAccount> {
        let fixed = |id: &str| {
            group(
                id,
                vec![
                    ingress("sgr-a1", ports(22, 22), "10.0.0.0/8", true),
                    ingress("sgr-a2", ports(0, 21), "0.0.0.0/0", true),
                    ingress("sgr-a3", ports(23, 65535), "0.0.0.0/0", true),
                ],
            )
        };
        fail_restore.iter().fold(
            Failing::new(MemoryAccount::with_groups([fixed("sg-1"), fixed("sg-2")])),
            |account, g| account.fail(Operation::Restore, Some(g)),
        )
    }

    fn narrowed_record() -> ChangeRecord {
        let mut record = ChangeRecord::default();
        for g in ["sg-1", "sg-2", "sg-3"] {
            record.added.extend([
                recorded(g, None, ports(22, 22), "10.0.0.0/8"),
                recorded(g, None, ports(0, 21), "0.0.0.0/0"),
                recorded(g, Some("sgr-a3"), ports(23, 65535), "0.0.0.0/0"),
            ]);
            record
                .revoked
                .push(recorded(g, Some("sgr-1"), PortRange::ALL, "0.0.0.0/0"));
        }
        record
    }

    /// The changes asked of groups, in order: `restore sg-1`, `revoke sg-1`, …
    fn changes(account: &Failing<MemoryAccount>) -> Vec<String> {
        account
            .calls()
            .into_iter()
            .filter_map(|call| {
                let verb = match call.operation {
                    Operation::Authorize => "authorize",
                    Operation::Revoke => "revoke",
                    Operation::Restore => "restore",
                    _ => return None,
                };
                Some(format!("{verb} {}", call.group?))
            })
            .collect()
    }

    /// A revert only restores (untagged) and removes: it never authorizes tagged rules.
    fn assert_never_authorized(account: &Failing<MemoryAccount>) {
        assert!(
            account.calls_of(Operation::Authorize).is_empty(),
            "a revert never authorizes tagged rules: {:?}",
            account.calls()
        );
    }

    #[tokio::test]
    async fn a_revert_puts_groups_back_skips_gone_ones_and_changes_nothing_the_second_time() {
        let account = narrowed_groups(&[]);
        let report = revert(&account, &narrowed_record(), TEST_OWNER).await;
        assert!(report.completed(), "{report:#?}");
        assert_eq!(report.counts(), (2, 6, 1));
        assert_eq!(
            report.groups[2],
            GroupRevert::GroupGone { group: sg("sg-3") }
        );
        for g in ["sg-1", "sg-2"] {
            assert_eq!(
                account.inner().group(g).ingress,
                [ingress("sgr-e0", PortRange::ALL, "0.0.0.0/0", false)]
            );
        }
        assert_never_authorized(&account);
        let calls = changes(&account);
        for g in ["sg-1", "sg-2"] {
            let of_group: Vec<&String> = calls.iter().filter(|c| c.ends_with(g)).collect();
            assert_eq!(of_group, [&format!("restore {g}"), &format!("revoke {g}")]);
        }

        account.forget_calls();
        let again = revert(&account, &narrowed_record(), TEST_OWNER).await;
        assert!(again.completed());
        assert_eq!(again.counts(), (0, 0, 1));
        assert!(changes(&account).is_empty());
    }

    #[tokio::test]
    async fn a_failed_restore_removes_nothing_in_that_group_and_fails_the_revert() {
        let account = narrowed_groups(&["sg-1"]);
        let report = revert(&account, &narrowed_record(), TEST_OWNER).await;
        assert_never_authorized(&account);
        let error = report.check().unwrap_err();
        assert_eq!(error.category(), Category::AccessDenied);
        assert_eq!(
            error.to_string(),
            "failed to restore the revoked rules: sg-1: failed to restore ingress rules in sg-1: \
             UnauthorizedOperation: injected"
        );
        assert_eq!(
            account.inner().group("sg-1").ingress.len(),
            3,
            "sg-1 untouched"
        );
        assert_eq!(
            account.inner().group("sg-2").ingress.len(),
            1,
            "sg-2 still reverted"
        );
    }
}
