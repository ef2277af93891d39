//! The apply executor (I/O, no decisions): first every changed group's watch tag
//! (one call per distinct value, so a pass stopped half-way leaves the groups
//! watched), then every group's change set, groups concurrently (bounded), and in
//! each group authorize before revoke.

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream};

use super::CONCURRENCY;
use crate::domain::ids::{RuleId, SecurityGroupId};
use crate::domain::outcome::{GroupOutcome, StepResult};
use crate::domain::plan::{ChangeSet, GroupPlan, Plan};
use crate::ports::{SecurityGroups, error_chain};

/// How many rounds of [`CONCURRENCY`] groups' futures exist at once.
const WINDOW: usize = 8;

/// Carries out every group's change set: the groups' watch tags first, then per
/// group authorize before revoke. If remembering a group fails, its rules are not
/// changed; if authorizing fails, nothing is revoked, so trusted ranges never lose
/// access.
pub async fn execute<S: SecurityGroups>(ec2: &S, plan: &Plan) -> Vec<GroupOutcome> {
    let remembered = remember(ec2, plan).await;
    let changes: Vec<_> = plan.changes().collect();
    let mut outcomes: Vec<GroupOutcome> = Vec::with_capacity(changes.len());
    // A group's future holds its SDK calls' state (some KiB): built a window at a
    // time, not all at once (6 MiB at 1000 groups). The futures are built before the
    // stream, and by a named async fn: a closure held across the await would keep the
    // future from being provably `Send` in the controller's generic reconcile
    // (rust-lang/rust#102211).
    for window in changes.chunks(CONCURRENCY * WINDOW) {
        let futures: Vec<_> = window
            .iter()
            .map(|(group_plan, change)| {
                let remember = remembered
                    .get(&group_plan.group)
                    .cloned()
                    .unwrap_or(StepResult::NotNeeded);
                execute_group(ec2, group_plan, change, remember)
            })
            .collect();
        let done: Vec<GroupOutcome> = stream::iter(futures)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        outcomes.extend(done);
    }
    outcomes.sort_by(|a, b| a.group.cmp(&b.group));
    outcomes
}

/// Writes the watch tags the plan asks for, one call per distinct value (most
/// groups of a pass share one), and says per group how it went.
async fn remember<S: SecurityGroups>(
    ec2: &S,
    plan: &Plan,
) -> BTreeMap<SecurityGroupId, StepResult> {
    let mut by_value: BTreeMap<(&str, &str), Vec<SecurityGroupId>> = BTreeMap::new();
    for (group_plan, change) in plan.changes() {
        if let Some(value) = &change.watch {
            by_value
                .entry((change.owner.as_str(), value.as_str()))
                .or_default()
                .push(group_plan.group.clone());
        }
    }
    let calls: Vec<_> = by_value
        .into_iter()
        .map(|((owner, value), groups)| remember_batch(ec2, owner, value, groups))
        .collect();
    let results: Vec<Vec<(SecurityGroupId, StepResult)>> = stream::iter(calls)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

async fn remember_batch<S: SecurityGroups>(
    ec2: &S,
    owner: &str,
    value: &str,
    groups: Vec<SecurityGroupId>,
) -> Vec<(SecurityGroupId, StepResult)> {
    let result = match ec2.remember(owner, value, &groups).await {
        Ok(()) => StepResult::Done {
            rules: 0,
            rule_ids: Vec::new(),
        },
        Err(error) => StepResult::Failed {
            category: error.category(),
            error: error_chain(&error),
        },
    };
    groups.into_iter().map(|g| (g, result.clone())).collect()
}

/// One group's change set: authorize, then revoke only if authorizing succeeded;
/// neither when the group could not be remembered.
async fn execute_group<S: SecurityGroups>(
    ec2: &S,
    group_plan: &GroupPlan,
    change: &ChangeSet,
    remember: StepResult,
) -> GroupOutcome {
    let group = &group_plan.group;
    if !remember.is_ok() {
        let not_run = || StepResult::NotRun {
            reason: "the group could not be tagged as watched: changing it now would leave \
                     drift unwatched"
                .into(),
        };
        return GroupOutcome {
            group: group.clone(),
            remember,
            authorize: if change.authorize.is_empty() {
                StepResult::NotNeeded
            } else {
                not_run()
            },
            revoke: if change.revoke.is_empty() {
                StepResult::NotNeeded
            } else {
                not_run()
            },
        };
    }
    let authorize = if change.authorize.is_empty() {
        StepResult::NotNeeded
    } else {
        match ec2.authorize(group, change).await {
            Ok(rule_ids) => StepResult::Done {
                rules: change.authorize.len(),
                rule_ids,
            },
            Err(error) => StepResult::Failed {
                category: error.category(),
                error: error_chain(&error),
            },
        }
    };
    let revoke = if change.revoke.is_empty() {
        StepResult::NotNeeded
    } else if !authorize.is_ok() {
        StepResult::NotRun {
            reason: "authorize failed: revoking now could lock out the trusted ranges".into(),
        }
    } else {
        let rules: Vec<RuleId> = change.revoke.iter().map(|r| r.rule.clone()).collect();
        match ec2.revoke(group, &rules).await {
            Ok(()) => StepResult::Done {
                rules: rules.len(),
                rule_ids: rules,
            },
            Err(error) => StepResult::Failed {
                category: error.category(),
                error: error_chain(&error),
            },
        }
    };
    GroupOutcome {
        group: group.clone(),
        remember,
        authorize,
        revoke,
    }
}
