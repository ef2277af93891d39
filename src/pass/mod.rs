//! One pass (I/O): observe → plan (pure) → execute → archive.
//!
//! ```text
//!  FindingsSource ─ detector, findings ─┐
//!  SecurityGroups ─ instances, groups ──┼─> domain::plan ─> Plan ─> execute (authorize, then revoke)
//!                                       │                          ─> archive the remediated findings
//!                                       └──────────────> PassReport (what was seen, decided and done)
//! ```
//!
//! The command line runs one pass; the controller runs the same pass on every
//! reconcile. The executors make no decisions: [`execute`] carries out the plan, group
//! by group, authorizing before revoking; [`revert`] undoes a change record, restoring
//! before removing. Every step's result is reported.

pub mod execute;
pub mod revert;

use std::collections::BTreeSet;

pub use execute::execute;
pub use revert::revert;

use crate::domain::ids::SecurityGroupId;
use crate::domain::outcome::{Category, Failure, PassReport, Step};
use crate::domain::plan::{Observation, instances_to_describe, plan, prefix_lists_to_read};
use crate::domain::policy::{Mode, Policy};
use crate::domain::record::{ChangeRecord, intent_of};
use crate::domain::response::remediated_findings;
use crate::domain::time::Timestamp;
use crate::ports::{FindingsSource, Journal, SecurityGroups, error_chain};

/// How many independent AWS calls a pass keeps in flight at once.
pub const CONCURRENCY: usize = 8;

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
    /// The change record the previous pass left (its pending intent is settled).
    pub record: ChangeRecord,
    /// Now, for the record.
    pub now: Timestamp,
}

/// Runs one pass against the given sources; the intent of its changes goes to
/// `journal` before the first change.
pub async fn run_pass<F, S, J>(
    findings_source: &F,
    ec2: &S,
    policy: &Policy,
    options: &PassOptions,
    journal: &J,
) -> PassReport
where
    F: FindingsSource,
    S: SecurityGroups,
    J: Journal,
{
    let mut report = PassReport::new(policy.mode);
    report.record = options.record.clone();
    macro_rules! step {
        ($step:expr, $call:expr) => {
            match $call.await {
                Ok(value) => value,
                Err(error) => {
                    report.failure = Some(Failure {
                        step: $step,
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
        Step::FindDetector,
        findings_source.detector(options.detector.as_deref())
    );
    report.detector = Some(detector.clone());
    report.findings = step!(
        Step::ReadFindings,
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
    let find_watched = async {
        if policy.mode == Mode::Off {
            Ok(Vec::new())
        } else {
            ec2.watched_groups(&policy.owner).await
        }
    };
    let (instances, watched) = futures_util::future::join(describe_instances, find_watched).await;
    let instances = step!(Step::DescribeInstances, async { instances });
    let watched = step!(Step::FindWatchedGroups, async { watched });
    // The groups of an intent left pending are read too, to settle it.
    let group_ids: BTreeSet<SecurityGroupId> = instances
        .iter()
        .flat_map(|i| i.security_groups.iter().cloned())
        .chain(watched)
        .chain(options.record.pending_groups())
        .collect();
    let group_ids: Vec<_> = group_ids.into_iter().collect();
    let groups = if group_ids.is_empty() {
        Vec::new()
    } else {
        step!(Step::DescribeGroups, ec2.groups(&group_ids))
    };
    let mut observation = Observation {
        account_id: options.account_id.clone(),
        findings: report.findings.clone(),
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
    // What an earlier pass left pending, settled against the groups as they are.
    let record = options.record.settled(&observation.groups, &policy.owner);
    report.record = record.clone();

    // plan (pure)
    let plan = plan(policy, &observation);

    // execute (I/O): only what the plan says, only when asked and enforced, and only
    // once its intent is recorded
    let mut remediated = Vec::new();
    if options.apply && policy.mode == Mode::Enforce && !plan.is_empty() {
        let intent = intent_of(&plan, options.now);
        if let Err(error) = journal.write_ahead(&record.with_intent(intent)).await {
            report.failure = Some(Failure {
                step: Step::RecordIntent,
                category: Category::Record,
                error: error.to_string(),
            });
            report.plan = Some(plan);
            return report;
        }
        report.applied = true;
        report.outcomes = execute(ec2, &plan).await;
        report.record = record.after(&plan, &report.outcomes, options.now);
        if policy.archive_remediated {
            remediated = remediated_findings(&plan, &report.outcomes);
        }
    } else if options.apply && policy.mode == Mode::Enforce {
        report.applied = true;
        if policy.archive_remediated {
            remediated = remediated_findings(&plan, &report.outcomes);
        }
    }
    // The plan is reported even if archiving fails below.
    report.plan = Some(plan);
    if !remediated.is_empty() {
        step!(
            Step::Archive,
            findings_source.archive(&detector, &remediated)
        );
        report.archived = remediated;
    }
    report
}

#[cfg(test)]
mod tests {
    //! The pass against a stateful in-memory account with failure injection:
    //! outcomes are asserted on the account's state, not on the calls.

    use super::*;
    use crate::domain::alert::Response;
    use crate::domain::finding::Finding;
    use crate::domain::ids::InstanceId;
    use crate::domain::outcome::{Category, StepResult};
    use crate::domain::policy::TrustedRanges;
    use crate::domain::response::finding_responses;
    use crate::domain::security_group::{
        Instance, InstanceState, PortRange, SecurityGroup, Traffic,
    };
    use crate::ports::NoJournal;
    use crate::ports::failing::{Failing, Operation};
    use crate::ports::memory::MemoryAccount;

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
            detector: None,
            account_id: Some("123456789012".into()),
            apply: true,
            record: Default::default(),
            now: Timestamp(1_800_000_000),
        }
    }

    #[tokio::test]
    async fn trusted_ranges_can_reach_the_port_before_anything_is_revoked() {
        let account = account(&["sg-1", "sg-2"]);
        let report = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
        assert!(!report.failed(), "{report:#?}");
        assert_eq!(
            *account.trusted_reach_at_revoke.lock().unwrap(),
            [true, true]
        );
        let again = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
        assert!(again.plan.unwrap().is_empty());
        assert_eq!(account.archived().len(), 1);
    }

    #[tokio::test]
    async fn failed_authorize_revokes_nothing_and_other_groups_still_converge() {
        let account =
            Failing::new(account(&["sg-1", "sg-2"])).fail(Operation::Authorize, Some("sg-1"));
        let before = account.inner().group("sg-1");
        let report = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
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
        let account = Failing::new(account(&["sg-1"])).fail(Operation::Archive, None);
        let report = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
        assert!(report.failed());
        assert_eq!(report.failure.as_ref().unwrap().step, Step::Archive);
        assert_eq!(report.plan.as_ref().unwrap().changes().count(), 1);
        assert!(report.outcomes[0].succeeded());
        assert!(report.archived.is_empty());
    }

    #[tokio::test]
    async fn failed_revoke_is_reported_and_retried_on_the_next_pass() {
        let account = Failing::new(account(&["sg-1"])).fail(Operation::Revoke, Some("sg-1"));
        let report = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
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
        let again = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
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
        let account = account(&["sg-1"]);
        let dry_run = PassOptions {
            apply: false,
            ..apply()
        };
        let report = run_pass(&account, &account, &policy(), &dry_run, &NoJournal).await;
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
        let report = run_pass(&account, &account, &policy, &apply(), &NoJournal).await;
        assert_eq!(
            responses(&report),
            [Response::Closed {
                summary: "revoked tcp/22 from 0.0.0.0/0, authorized tcp/22 from 10.0.0.0/8 in sg-1"
                    .into()
            }]
        );
        let report = run_pass(&account, &account, &policy, &apply(), &NoJournal).await;
        assert_eq!(
            responses(&report),
            [Response::Closed {
                summary: "sg-1 already admits tcp/22 from trusted ranges only".into()
            }]
        );
    }

    #[tokio::test]
    async fn a_failed_group_makes_the_finding_failed_whatever_the_other_groups_did() {
        let account =
            Failing::new(account(&["sg-1", "sg-2"])).fail(Operation::Authorize, Some("sg-2"));
        let report = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
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
        let account = Failing::new(account).fail(Operation::Instances, None);
        let report = run_pass(&account, &account, &policy(), &apply(), &NoJournal).await;
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
