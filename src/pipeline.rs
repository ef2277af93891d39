//! One pass: observe (I/O) → plan (pure) → execute (I/O) → archive (I/O).
//!
//! The command line runs one pass; the controller will run the same pass on every
//! reconcile. The executor makes no decisions: it carries out the plan, group by
//! group, authorizing before revoking, and reports every step.

use std::collections::BTreeSet;

use futures_util::{StreamExt, stream};

use crate::aws::CONCURRENCY;
use crate::domain::finding::Finding;
use crate::domain::ids::{FindingId, RuleId, SecurityGroupId};
use crate::domain::plan::{
    FindingDecision, Observation, Plan, Verdict, instances_to_describe, plan,
};
use crate::domain::policy::{Mode, Policy};
use crate::ports::{FindingsSource, SecurityGroups, error_chain};

/// What the caller asks of a pass.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// The detector to read; `None` discovers it.
    pub detector: Option<String>,
    /// Carry out the plan (only ever when the policy's mode is Enforce).
    pub apply: bool,
}

/// The result of one step of a group's change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum StepResult {
    /// Nothing to do in this step.
    NotNeeded,
    /// Done: how many rules were added or removed, and the rule ids AWS reported
    /// (AWS may report fewer ids than rules; moto reports only the last permission's).
    #[serde(rename_all = "camelCase")]
    Done { rules: usize, rule_ids: Vec<RuleId> },
    Failed {
        category: &'static str,
        error: String,
    },
    /// Not attempted, and why.
    NotRun { reason: String },
}

impl StepResult {
    fn is_ok(&self) -> bool {
        matches!(self, StepResult::NotNeeded | StepResult::Done { .. })
    }
}

/// What happened to one group's change set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupOutcome {
    pub group: SecurityGroupId,
    pub authorize: StepResult,
    pub revoke: StepResult,
}

impl GroupOutcome {
    pub fn succeeded(&self) -> bool {
        self.authorize.is_ok() && self.revoke.is_ok()
    }
}

/// A step of the pass that could not be completed; the steps before it are kept
/// in the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: &'static str,
    pub category: &'static str,
    pub error: String,
}

/// Everything a pass saw, decided and did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    pub mode: Mode,
    pub detector: Option<String>,
    pub findings: Vec<Finding>,
    pub plan: Option<Plan>,
    /// Whether the plan was carried out.
    pub applied: bool,
    pub outcomes: Vec<GroupOutcome>,
    pub archived: Vec<FindingId>,
    pub failure: Option<Failure>,
}

impl PassReport {
    /// True when a step of the pass or of a group's change failed.
    pub fn failed(&self) -> bool {
        self.failure.is_some() || self.outcomes.iter().any(|o| !o.succeeded())
    }
}

/// Runs one pass against the given sources.
pub async fn run_pass<F, S>(
    findings_source: &F,
    ec2: &S,
    policy: &Policy,
    options: &PassOptions,
) -> PassReport
where
    F: FindingsSource,
    S: SecurityGroups,
{
    let mut report = PassReport {
        mode: policy.mode,
        detector: None,
        findings: Vec::new(),
        plan: None,
        applied: false,
        outcomes: Vec::new(),
        archived: Vec::new(),
        failure: None,
    };
    macro_rules! step {
        ($name:literal, $call:expr) => {
            match $call.await {
                Ok(value) => value,
                Err(error) => {
                    report.failure = Some(Failure {
                        step: $name,
                        category: error.category(),
                        error: error_chain(&error),
                    });
                    return report;
                }
            }
        };
    }

    // observe (I/O)
    let detector = step!(
        "find the GuardDuty detector",
        findings_source.detector(options.detector.as_deref())
    );
    report.detector = Some(detector.clone());
    report.findings = step!("read findings", findings_source.findings(&detector, policy));
    let instance_ids: Vec<_> = instances_to_describe(policy, &report.findings)
        .into_iter()
        .collect();
    let instances = if instance_ids.is_empty() {
        Vec::new()
    } else {
        step!("describe instances", ec2.instances(&instance_ids))
    };
    let mut group_ids: BTreeSet<SecurityGroupId> = instances
        .iter()
        .flat_map(|i| i.security_groups.iter().cloned())
        .collect();
    if policy.mode != Mode::Off {
        group_ids.extend(step!(
            "find the groups the operator manages",
            ec2.managed_groups()
        ));
    }
    let group_ids: Vec<_> = group_ids.into_iter().collect();
    let groups = if group_ids.is_empty() {
        Vec::new()
    } else {
        step!("describe security groups", ec2.groups(&group_ids))
    };
    let observation = Observation {
        findings: report.findings.clone(),
        instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
        groups: groups.into_iter().map(|g| (g.id.clone(), g)).collect(),
    };

    // plan (pure)
    let plan = plan(policy, &observation);

    // execute (I/O): only what the plan says, only when asked and enforced
    if options.apply && policy.mode == Mode::Enforce {
        report.applied = true;
        report.outcomes = execute(ec2, &plan).await;
        if policy.archive_remediated {
            let remediated = remediated_findings(&plan, &report.outcomes);
            if !remediated.is_empty() {
                step!(
                    "archive remediated findings",
                    findings_source.archive(&detector, &remediated)
                );
                report.archived = remediated;
            }
        }
    }
    report.plan = Some(plan);
    report
}

/// Carries out every group's change set, groups concurrently (bounded), and in
/// each group authorize before revoke: if authorizing fails, nothing is revoked,
/// so trusted ranges never lose access.
pub async fn execute<S: SecurityGroups>(ec2: &S, plan: &Plan) -> Vec<GroupOutcome> {
    let mut outcomes: Vec<GroupOutcome> = stream::iter(plan.changes())
        .map(|(group_plan, change)| async move {
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
                    reason: "authorize failed: revoking now could lock out the trusted ranges"
                        .into(),
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
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    outcomes.sort_by(|a, b| a.group.cmp(&b.group));
    outcomes
}

/// Findings whose every group is now converged: safe to archive.
pub fn remediated_findings(plan: &Plan, outcomes: &[GroupOutcome]) -> Vec<FindingId> {
    plan.findings
        .iter()
        .filter_map(|(id, decision)| match decision {
            FindingDecision::Remediate {
                security_groups, ..
            } => {
                let all_done = security_groups.iter().all(|group| {
                    match plan
                        .groups
                        .iter()
                        .find(|g| &g.group == group)
                        .map(|g| &g.verdict)
                    {
                        Some(Verdict::Converged) => true,
                        Some(Verdict::Change(_)) => {
                            outcomes.iter().any(|o| &o.group == group && o.succeeded())
                        }
                        _ => false,
                    }
                });
                all_done.then(|| id.clone())
            }
            FindingDecision::Report(_) => None,
        })
        .collect()
}
