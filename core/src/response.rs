//! What each finding of a pass got from the operator (pure): closed, planned,
//! refused, failed or reported, with the words an alert tells it in; and which
//! findings are remediated, so safe to archive.

use crate::alert::{FindingSummary, Response, Seen};
use crate::finding::{Finding, Triage, triage};
use crate::ids::{FindingId, SecurityGroupId};
use crate::outcome::{GroupOutcome, PassReport};
use crate::plan::{ChangeSet, FindingDecision, Plan, Verdict};
use crate::security_group::exposures_text;

/// Findings whose every group is now converged: safe to archive. A finding that also
/// names a public port (left open by design) is not archived: a public path to a
/// port it reports remains.
pub fn remediated_findings(plan: &Plan, outcomes: &[GroupOutcome]) -> Vec<FindingId> {
    plan.findings
        .iter()
        .filter_map(|(id, decision)| match decision {
            FindingDecision::Remediate {
                security_groups,
                public_ports,
                ..
            } if public_ports.is_empty() => {
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
            FindingDecision::Remediate { .. } | FindingDecision::Report(_) => None,
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
    let decided = report
        .plan
        .as_ref()
        .and_then(|plan| Some((plan, plan.findings.get(&finding.id)?)));
    let Some((plan, decision)) = decided else {
        // Not planned: its account's or region's pass stopped before planning.
        let failure = report.failure_for(&finding.account_id, &finding.region);
        return match (triage(finding), failure) {
            (Triage::Report(reason), _) => Response::reported(&reason),
            (Triage::Close { .. }, Some(failure)) => Response::Failed {
                error: failure.to_string(),
            },
            (Triage::Close { .. }, None) if report.plan.is_none() => Response::Planned {
                summary: "not planned in this pass".into(),
            },
            (Triage::Close { .. }, None) => Response::Reported {
                reason: "not selected by the policy".into(),
            },
        };
    };
    let (security_groups, public_ports) = match decision {
        FindingDecision::Remediate {
            security_groups,
            public_ports,
            ..
        } => (security_groups, public_ports),
        FindingDecision::Report(reason) => return Response::reported(reason),
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
            Verdict::Change(change) if report.applied => match report.outcome(group) {
                Some(outcome) if outcome.succeeded() => {
                    closed.push(describe_change(group, change, true));
                }
                Some(outcome) => failed.push(format!("{group}: {}", outcome.error())),
                None => failed.push(format!("{group}: the change was not carried out")),
            },
            Verdict::Change(change) => planned.push(describe_change(group, change, false)),
            Verdict::Converged if group_plan.ports.is_empty() => {
                closed.push(format!("{group} does not open the finding's ports"))
            }
            Verdict::Converged => closed.push(format!(
                "{group} already admits {} from trusted ranges only",
                exposures_text(&group_plan.ports)
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
        if !public_ports.is_empty() {
            let ports: Vec<String> = public_ports.iter().map(u16::to_string).collect();
            closed.push(format!(
                "port {} left open: it serves everyone by design (remediation.publicPorts)",
                ports.join(",")
            ));
        }
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
            .map(|r| format!("{} from {}", r.what(), r.source))
            .collect();
        parts.push(format!("{revoke} {}", rules.join(", ")));
    }
    if !change.authorize.is_empty() {
        let rules: Vec<String> = change
            .authorize
            .iter()
            .map(|a| format!("{} from {}", a.what(), a.source))
            .collect();
        parts.push(format!("{authorize} {}", rules.join(", ")));
    }
    format!("{} in {group}", parts.join(", "))
}
