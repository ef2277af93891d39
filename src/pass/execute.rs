//! The apply executor (I/O, no decisions): every group's change set, groups
//! concurrently (bounded), and in each group authorize before revoke.

use futures_util::{StreamExt, stream};

use super::CONCURRENCY;
use crate::domain::ids::RuleId;
use crate::domain::outcome::{GroupOutcome, StepResult};
use crate::domain::plan::{ChangeSet, GroupPlan, Plan};
use crate::ports::{SecurityGroups, error_chain};

/// Carries out every group's change set, groups concurrently (bounded), and in
/// each group authorize before revoke: if authorizing fails, nothing is revoked,
/// so trusted ranges never lose access.
pub async fn execute<S: SecurityGroups>(ec2: &S, plan: &Plan) -> Vec<GroupOutcome> {
    // The futures are built before the stream, and by a named async fn: a closure
    // held across the await would keep the future from being provably `Send` in
    // the controller's generic reconcile (rust-lang/rust#102211).
    let changes: Vec<_> = plan
        .changes()
        .map(|(group_plan, change)| execute_group(ec2, group_plan, change))
        .collect();
    let mut outcomes: Vec<GroupOutcome> = stream::iter(changes)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    outcomes.sort_by(|a, b| a.group.cmp(&b.group));
    outcomes
}

/// One group's change set: authorize, then revoke only if authorizing succeeded.
async fn execute_group<S: SecurityGroups>(
    ec2: &S,
    group_plan: &GroupPlan,
    change: &ChangeSet,
) -> GroupOutcome {
    let group = &group_plan.group;
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
        authorize,
        revoke,
    }
}
