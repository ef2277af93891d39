//! One pass: observe (I/O) → plan (pure) → execute (I/O) → archive (I/O).
//!
//! The command line runs one pass; the controller will run the same pass on every
//! reconcile. The executor makes no decisions: it carries out the plan, group by
//! group, authorizing before revoking, and reports every step.

use std::collections::BTreeSet;

use futures_util::{StreamExt, stream};

use crate::aws::CONCURRENCY;
use crate::domain::alert::{FindingSummary, Response, Seen};
use crate::domain::finding::{Finding, Triage, triage};
use crate::domain::ids::{FindingId, RuleId, SecurityGroupId};
use crate::domain::plan::{
    ChangeSet, FindingDecision, GroupPlan, Observation, Plan, Verdict, instances_to_describe, plan,
};
use crate::domain::policy::{Mode, Policy};
use crate::ports::{FindingsSource, SecurityGroups, error_chain};

/// The names of a pass's steps, as a failure reports them ("failed to …").
pub mod step {
    pub const FIND_DETECTOR: &str = "find the GuardDuty detector";
    pub const READ_FINDINGS: &str = "read findings";
    pub const DESCRIBE_INSTANCES: &str = "describe instances";
    pub const FIND_MANAGED_GROUPS: &str = "find the groups the operator manages";
    pub const DESCRIBE_GROUPS: &str = "describe security groups";
    pub const ARCHIVE: &str = "archive remediated findings";
}

/// What the caller asks of a pass.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// The detector to read; `None` discovers it.
    pub detector: Option<String>,
    /// The account of the credentials (STS GetCallerIdentity); findings of other
    /// accounts are reported, not remediated.
    pub account_id: Option<String>,
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

    /// The group's change as the executor reports it when every step worked: a step
    /// with rules done, a step without rules not needed; AWS reported one id per
    /// authorized rule (`sgr-a0`, `sgr-a1`, … in the change's order), and the revoked
    /// rules' ids are the plan's.
    #[cfg(test)]
    pub fn done(group: &GroupPlan, change: &ChangeSet) -> GroupOutcome {
        let authorized = (0..change.authorize.len())
            .map(|k| RuleId::parse(&format!("sgr-a{k:x}")).unwrap())
            .collect();
        let revoked = change.revoke.iter().map(|r| r.rule.clone()).collect();
        let step = |rule_ids: Vec<RuleId>| {
            if rule_ids.is_empty() {
                StepResult::NotNeeded
            } else {
                StepResult::Done {
                    rules: rule_ids.len(),
                    rule_ids,
                }
            }
        };
        GroupOutcome {
            group: group.group.clone(),
            authorize: step(authorized),
            revoke: step(revoked),
        }
    }

    /// The group's change as the executor reports it when AWS refused the authorize
    /// (access denied): nothing was revoked.
    #[cfg(test)]
    pub fn failed_authorize(group: &GroupPlan) -> GroupOutcome {
        GroupOutcome {
            group: group.group.clone(),
            authorize: StepResult::Failed {
                category: "access-denied",
                error: "UnauthorizedOperation: not allowed".into(),
            },
            revoke: StepResult::NotRun {
                reason: "authorize failed".into(),
            },
        }
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
        ($name:expr, $call:expr) => {
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
        step::FIND_DETECTOR,
        findings_source.detector(options.detector.as_deref())
    );
    report.detector = Some(detector.clone());
    report.findings = step!(
        step::READ_FINDINGS,
        findings_source.findings(&detector, policy)
    );
    let instance_ids: Vec<_> =
        instances_to_describe(policy, options.account_id.as_deref(), &report.findings)
            .into_iter()
            .collect();
    // The findings' instances and the groups already under watch are independent reads.
    let describe_instances = async {
        if instance_ids.is_empty() {
            Ok(Vec::new())
        } else {
            ec2.instances(&instance_ids).await
        }
    };
    let find_managed = async {
        if policy.mode == Mode::Off {
            Ok(Vec::new())
        } else {
            ec2.managed_groups().await
        }
    };
    let (instances, managed) = futures_util::future::join(describe_instances, find_managed).await;
    let instances = step!(step::DESCRIBE_INSTANCES, async { instances });
    let managed = step!(step::FIND_MANAGED_GROUPS, async { managed });
    let group_ids: BTreeSet<SecurityGroupId> = instances
        .iter()
        .flat_map(|i| i.security_groups.iter().cloned())
        .chain(managed)
        .collect();
    let group_ids: Vec<_> = group_ids.into_iter().collect();
    let groups = if group_ids.is_empty() {
        Vec::new()
    } else {
        step!(step::DESCRIBE_GROUPS, ec2.groups(&group_ids))
    };
    let observation = Observation {
        account_id: options.account_id.clone(),
        findings: report.findings.clone(),
        instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
        groups: groups.into_iter().map(|g| (g.id.clone(), g)).collect(),
    };

    // plan (pure)
    let plan = plan(policy, &observation);

    // execute (I/O): only what the plan says, only when asked and enforced
    let mut remediated = Vec::new();
    if options.apply && policy.mode == Mode::Enforce {
        report.applied = true;
        report.outcomes = execute(ec2, &plan).await;
        if policy.archive_remediated {
            remediated = remediated_findings(&plan, &report.outcomes);
        }
    }
    // The plan is reported even if archiving fails below.
    report.plan = Some(plan);
    if !remediated.is_empty() {
        step!(
            step::ARCHIVE,
            findings_source.archive(&detector, &remediated)
        );
        report.archived = remediated;
    }
    report
}

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

/// Every finding of the pass with what the operator did about it, for alerts (pure).
///
/// Per group the finding concerns: a change done (Enforce, applied) or already in
/// place closes it; a change not applied is planned; a refusal or a failed step is
/// said with its reason. Across groups the gravest wins: failed, refused, planned,
/// closed, reported. When the pass stopped before planning, a finding the operator
/// would act on is reported as failed with the pass's failure.
pub fn finding_responses(report: &PassReport) -> Vec<Seen> {
    report
        .findings
        .iter()
        .map(|finding| Seen {
            finding: FindingSummary::of(finding),
            response: finding_response(report, finding),
        })
        .collect()
}

fn finding_response(report: &PassReport, finding: &Finding) -> Response {
    let Some(plan) = &report.plan else {
        return match (triage(finding), &report.failure) {
            (Triage::Report(reason), _) => Response::reported(&reason),
            (Triage::Close { .. }, Some(failure)) => Response::Failed {
                error: format!("failed to {}: {}", failure.step, failure.error),
            },
            (Triage::Close { .. }, None) => Response::Planned {
                summary: "not planned in this pass".into(),
            },
        };
    };
    let security_groups = match plan.findings.get(&finding.id) {
        Some(FindingDecision::Remediate {
            security_groups, ..
        }) => security_groups,
        Some(FindingDecision::Report(reason)) => return Response::reported(reason),
        None => {
            return Response::Reported {
                reason: "not selected by the policy".into(),
            };
        }
    };
    let mut failed = Vec::new();
    let mut refused = Vec::new();
    let mut planned = Vec::new();
    let mut closed = Vec::new();
    let mut reported = Vec::new();
    for group in security_groups {
        let Some(group_plan) = plan.groups.iter().find(|g| &g.group == group) else {
            continue;
        };
        match &group_plan.verdict {
            Verdict::Change(change) if report.applied => {
                match report.outcomes.iter().find(|o| &o.group == group) {
                    Some(outcome) if outcome.succeeded() => {
                        closed.push(describe_change(group, change, true));
                    }
                    Some(outcome) => failed.push(format!("{group}: {}", outcome_error(outcome))),
                    None => failed.push(format!("{group}: the change was not carried out")),
                }
            }
            Verdict::Change(change) => planned.push(describe_change(group, change, false)),
            Verdict::Converged => closed.push(format!(
                "{group} already admits tcp/{} from trusted ranges only",
                ports_text(&group_plan.ports)
            )),
            Verdict::Refused(refusal) => refused.push(format!("{group}: {refusal}")),
            Verdict::Exempt => reported.push(format!("{group} is exempt: left as it is")),
            Verdict::NotFound => reported.push(format!("{group} no longer exists")),
        }
    }
    if !failed.is_empty() {
        Response::Failed {
            error: failed.join("; "),
        }
    } else if !refused.is_empty() {
        Response::Refused {
            reason: refused.join("; "),
        }
    } else if !planned.is_empty() {
        Response::Planned {
            summary: planned.join("; "),
        }
    } else if !closed.is_empty() {
        Response::Closed {
            summary: closed.join("; "),
        }
    } else {
        Response::Reported {
            reason: if reported.is_empty() {
                "no security group to change".into()
            } else {
                reported.join("; ")
            },
        }
    }
}

/// `revoked tcp/22 from 0.0.0.0/0, authorized tcp/22 from 10.0.0.0/8 in sg-…`
fn describe_change(group: &SecurityGroupId, change: &ChangeSet, done: bool) -> String {
    let (revoke, authorize) = if done {
        ("revoked", "authorized")
    } else {
        ("revoke", "authorize")
    };
    let mut parts = Vec::new();
    if !change.revoke.is_empty() {
        let rules: Vec<String> = change
            .revoke
            .iter()
            .map(|r| format!("tcp/{} from {}", r.ports, r.source))
            .collect();
        parts.push(format!("{revoke} {}", rules.join(", ")));
    }
    if !change.authorize.is_empty() {
        let rules: Vec<String> = change
            .authorize
            .iter()
            .map(|a| format!("tcp/{} from {}", a.ports, a.source))
            .collect();
        parts.push(format!("{authorize} {}", rules.join(", ")));
    }
    format!("{} in {group}", parts.join(", "))
}

fn ports_text(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(",")
}

fn outcome_error(outcome: &GroupOutcome) -> String {
    for step in [&outcome.authorize, &outcome.revoke] {
        if let StepResult::Failed { error, .. } = step {
            return error.clone();
        }
    }
    "the change did not complete".into()
}

#[cfg(test)]
mod tests {
    //! The executor against a stateful in-memory account with failure injection:
    //! outcomes are asserted on the account's state, not on the calls.

    use std::sync::Mutex;

    use super::*;
    use crate::domain::ids::InstanceId;
    use crate::domain::policy::TrustedRanges;
    use crate::domain::security_group::{
        Instance, InstanceState, PortRange, SecurityGroup, Traffic,
    };
    use crate::memory_account::MemoryAccount;

    fn world_open_group(id: &str) -> SecurityGroup {
        SecurityGroup::world_open(id, Traffic::Tcp(PortRange::single(22)))
    }

    fn account(groups: &[&str], fail: &[(&'static str, &str)]) -> MemoryAccount {
        let group_ids: Vec<SecurityGroupId> = groups
            .iter()
            .map(|g| SecurityGroupId::parse(g).unwrap())
            .collect();
        let account = MemoryAccount {
            instances: vec![Instance {
                id: InstanceId::parse("i-1").unwrap(),
                state: InstanceState::Running,
                security_groups: group_ids,
            }],
            findings: vec![Finding::probe("f1", "i-1", &[22])],
            ..MemoryAccount::with_groups(groups.iter().map(|g| world_open_group(g)))
        };
        fail.iter()
            .fold(account, |account, (op, group)| account.failing(op, group))
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
            detector: None,
            account_id: Some("123456789012".into()),
            apply: true,
        }
    }

    #[tokio::test]
    async fn trusted_ranges_can_reach_the_port_before_anything_is_revoked() {
        let account = account(&["sg-1", "sg-2"], &[]);
        let report = run_pass(&account, &account, &policy(), &apply()).await;
        assert!(!report.failed(), "{report:#?}");
        assert_eq!(
            *account.trusted_reach_at_revoke.lock().unwrap(),
            [true, true]
        );
        let again = run_pass(&account, &account, &policy(), &apply()).await;
        assert!(again.plan.unwrap().is_empty());
        assert_eq!(account.archived.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn failed_authorize_revokes_nothing_and_other_groups_still_converge() {
        let account = account(&["sg-1", "sg-2"], &[("authorize", "sg-1")]);
        let before =
            account.groups.lock().unwrap()[&SecurityGroupId::parse("sg-1").unwrap()].clone();
        let report = run_pass(&account, &account, &policy(), &apply()).await;
        assert!(report.failed());
        let failed = &report.outcomes[0];
        assert!(matches!(
            failed.authorize,
            StepResult::Failed {
                category: "access-denied",
                ..
            }
        ));
        assert!(matches!(failed.revoke, StepResult::NotRun { .. }));
        let groups = account.groups.lock().unwrap();
        assert_eq!(
            groups[&SecurityGroupId::parse("sg-1").unwrap()],
            before,
            "sg-1 must be untouched"
        );
        assert_eq!(
            groups[&SecurityGroupId::parse("sg-2").unwrap()]
                .ingress
                .len(),
            1
        );
        assert!(report.outcomes[1].succeeded());
        assert!(
            account.archived.lock().unwrap().is_empty(),
            "a finding with a failed group stays open"
        );
    }

    #[tokio::test]
    async fn failed_archive_keeps_the_plan_and_the_outcomes_in_the_report() {
        let account = account(&["sg-1"], &[("archive", "")]);
        let report = run_pass(&account, &account, &policy(), &apply()).await;
        assert!(report.failed());
        assert_eq!(
            report.failure.as_ref().unwrap().step,
            "archive remediated findings"
        );
        assert_eq!(report.plan.as_ref().unwrap().changes().count(), 1);
        assert!(report.outcomes[0].succeeded());
        assert!(report.archived.is_empty());
    }

    #[tokio::test]
    async fn failed_revoke_is_reported_and_retried_on_the_next_pass() {
        let account = account(&["sg-1"], &[("revoke", "sg-1")]);
        let report = run_pass(&account, &account, &policy(), &apply()).await;
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
        let healthy = MemoryAccount {
            groups: Mutex::new(account.groups.lock().unwrap().clone()),
            instances: account.instances.clone(),
            findings: account.findings.clone(),
            ..Default::default()
        };
        let again = run_pass(&healthy, &healthy, &policy(), &apply()).await;
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
        let account = account(&["sg-1"], &[]);
        let dry_run = PassOptions {
            apply: false,
            ..apply()
        };
        let report = run_pass(&account, &account, &policy(), &dry_run).await;
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
        let report = run_pass(&account, &account, &policy, &apply()).await;
        assert_eq!(
            responses(&report),
            [Response::Closed {
                summary: "revoked tcp/22 from 0.0.0.0/0, authorized tcp/22 from 10.0.0.0/8 in sg-1"
                    .into()
            }]
        );
        let report = run_pass(&account, &account, &policy, &apply()).await;
        assert_eq!(
            responses(&report),
            [Response::Closed {
                summary: "sg-1 already admits tcp/22 from trusted ranges only".into()
            }]
        );
    }

    #[tokio::test]
    async fn a_failed_group_makes_the_finding_failed_whatever_the_other_groups_did() {
        let account = account(&["sg-1", "sg-2"], &[("authorize", "sg-2")]);
        let report = run_pass(&account, &account, &policy(), &apply()).await;
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
        let mut account = account(&["sg-1"], &[]);
        let mut sample = Finding::probe("f2", "i-1", &[22]);
        sample.sample = true;
        account.findings.push(sample);
        account.fail.insert(("instances", String::new()));
        let report = run_pass(&account, &account, &policy(), &apply()).await;
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
}
