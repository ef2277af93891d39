//! How a pass is shown: aligned tables for people, one JSON document for programs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::domain::alert::{AlertEvent, ResponseKind};
use crate::domain::finding::Finding;
use crate::domain::outcome::{PassReport, StepResult};
use crate::domain::plan::{FindingDecision, Purpose, Verdict};
use crate::domain::security_group::exposures_text;
use crate::domain::severity::SeverityBand;
use crate::notify::dispatch::{Delivery, DeliveryResult, NotifyReport};

/// The JSON document of `--output json` (its shape is documented in the README).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonDocument<'a> {
    #[serde(flatten)]
    report: &'a PassReport,
    region: &'a str,
    api_calls: &'a BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notifications: Option<JsonNotifications<'a>>,
}

/// The alerts of the pass: every delivery (or, in a dry run, what would be sent) and
/// what was held back for later passes.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonNotifications<'a> {
    deliveries: &'a [Delivery],
    deferred: &'a BTreeMap<String, usize>,
}

/// Writes the JSON document straight to `out`: no copy of the whole document is
/// held in memory (10,000 findings make a document of about 10 MB).
pub fn write_json(
    out: impl std::io::Write,
    report: &PassReport,
    region: &str,
    api_calls: &BTreeMap<String, u64>,
    notify: Option<&NotifyReport>,
    compact: bool,
) -> serde_json::Result<()> {
    let document = JsonDocument {
        report,
        region,
        api_calls,
        notifications: notify.map(|n| JsonNotifications {
            deliveries: &n.deliveries,
            deferred: &n.deferred,
        }),
    };
    if compact {
        serde_json::to_writer(out, &document)
    } else {
        serde_json::to_writer_pretty(out, &document)
    }
}

/// The findings of a pass as CSV (RFC 4180): one row per finding, with what the
/// operator did about it.
pub fn csv(report: &PassReport) -> String {
    let mut out = String::from(
        "finding,type,severity,account,region,instance,ports,remote_ips,response,detail\r\n",
    );
    for seen in crate::domain::response::finding_responses(report) {
        let f = &seen.finding;
        let (response, detail) = response_cells(&seen.response);
        let ports: Vec<String> = f.ports.iter().map(u16::to_string).collect();
        let ips: Vec<String> = f.remote_ips.iter().map(ToString::to_string).collect();
        let cells = [
            f.id.to_string(),
            f.finding_type.clone(),
            format!("{:.1}", f.severity.value()),
            f.account_id.clone(),
            f.region.clone(),
            f.instance.clone().unwrap_or_default(),
            ports.join(" "),
            ips.join(" "),
            response.to_string(),
            detail,
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

fn response_cells(response: &crate::domain::alert::Response) -> (&'static str, String) {
    use crate::domain::alert::Response;
    match response {
        Response::Reported { reason } => ("reported", reason.clone()),
        Response::Planned { summary } => ("planned", summary.clone()),
        Response::Closed { summary } => ("closed", summary.clone()),
        Response::Refused { reason } => ("refused", reason.clone()),
        Response::Failed { error } => ("failed", error.clone()),
        Response::NoLongerListed => ("noLongerListed", String::new()),
    }
}

/// A CSV cell: quoted when it holds a comma, a quote or a line break (quotes doubled).
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The alerts of a pass, for people: one line per alert.
pub fn alerts_text(notify: &NotifyReport) -> String {
    let mut out = String::new();
    if notify.deliveries.is_empty() && notify.deferred.is_empty() {
        let _ = writeln!(out, "\nAlerts: none due (every channel already knows).");
        return out;
    }
    let _ = writeln!(out, "\nAlerts:\n");
    let rows: Vec<Vec<String>> = notify
        .deliveries
        .iter()
        .map(|d| {
            let event = match d.event {
                AlertEvent::Opened => "new".to_string(),
                AlertEvent::Escalated { from } => format!("severity up from {from}"),
                AlertEvent::Updated { from } => format!("updated (was {})", response_word(from)),
                AlertEvent::Resolved => "resolved".to_string(),
            };
            let result = match &d.result {
                DeliveryResult::Delivered { attempts: 1 } => "sent".to_string(),
                DeliveryResult::Delivered { attempts } => format!("sent ({attempts} attempts)"),
                DeliveryResult::Failed { error, .. } => format!("FAILED: {error}"),
                DeliveryResult::Skipped { reason } => format!("not sent: {reason}"),
                DeliveryResult::WouldSend => {
                    "would send (not sent: a dry run, or audit without --notify)".to_string()
                }
            };
            vec![
                d.channel.clone(),
                d.kind.to_string(),
                d.finding.short().to_string(),
                event,
                result,
            ]
        })
        .collect();
    out.push_str(&table(
        &["CHANNEL", "KIND", "FINDING", "WHY", "RESULT"],
        &rows,
    ));
    for (channel, count) in &notify.deferred {
        let _ = writeln!(
            out,
            "  {channel}: {count} more alert(s) held for the next pass"
        );
    }
    out
}

fn response_word(kind: ResponseKind) -> &'static str {
    match kind {
        ResponseKind::Reported => "reported",
        ResponseKind::Planned => "planned",
        ResponseKind::Closed => "closed",
        ResponseKind::Refused => "refused",
        ResponseKind::Failed => "failed",
        ResponseKind::NoLongerListed => "no longer listed",
    }
}

/// Left-aligned columns separated by two spaces, like `kubectl get`.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
    }
}

fn findings_table(findings: &[Finding]) -> String {
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.id.short().to_string(),
                format!("{} {}", f.severity.band(), f.severity),
                f.finding_type.clone(),
                f.account_id.clone(),
                f.region.clone(),
                f.instance
                    .as_ref()
                    .map_or("-".to_string(), |i| i.id.to_string()),
                list(&f.ports()),
                list(&f.remote_ips()),
                if f.sample { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "FINDING",
            "SEVERITY",
            "TYPE",
            "ACCOUNT",
            "REGION",
            "INSTANCE",
            "PORTS",
            "REMOTE IPS",
            "SAMPLE",
        ],
        &rows,
    )
}

fn band_counts(findings: &[Finding]) -> String {
    let mut counts: BTreeMap<SeverityBand, usize> = BTreeMap::new();
    for f in findings {
        *counts.entry(f.severity.band()).or_default() += 1;
    }
    counts
        .iter()
        .rev()
        .map(|(band, n)| format!("{n} {band}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn step(result: &StepResult) -> String {
    match result {
        StepResult::NotNeeded => "not needed".into(),
        StepResult::Done { rules: 1, .. } => "done (1 rule)".into(),
        StepResult::Done { rules, .. } => format!("done ({rules} rules)"),
        StepResult::Failed { error, .. } => format!("FAILED: {error}"),
        StepResult::NotRun { reason } => format!("not run: {reason}"),
    }
}

/// The text output of a pass, for people.
pub fn text(report: &PassReport, region: &str) -> String {
    let mut out = String::new();
    let regions: Vec<&str> = if report.regions.is_empty() {
        vec![region]
    } else {
        report.regions.iter().map(String::as_str).collect()
    };
    for region in &regions {
        let detector = report
            .detectors
            .get(*region)
            .map_or("(not found)", String::as_str);
        let _ = writeln!(out, "Detector {detector} in {region}, mode {}", report.mode);
    }
    for quiet in &report.quiet {
        let account = quiet
            .account
            .as_deref()
            .map_or(String::new(), |a| format!(" account {a}"));
        let _ = writeln!(
            out,
            "Quiet in {}{account}: nothing new listed, {} group(s) as the last pass left them \
             (read by their digests only)",
            quiet.region, quiet.groups
        );
    }
    // Groups are named with their account and region when the pass covers several.
    let places: std::collections::BTreeSet<(Option<&str>, &str)> = report
        .plan
        .iter()
        .flat_map(|p| &p.groups)
        .map(|g| (g.account.as_deref(), g.region.as_str()))
        .collect();
    let placed = places.len() > 1;
    if report.findings.is_empty() {
        let _ = writeln!(out, "\nNo findings match the policy.");
    } else {
        let _ = writeln!(
            out,
            "\n{} findings ({}):\n",
            report.findings.len(),
            band_counts(&report.findings)
        );
        out.push_str(&findings_table(&report.findings));
    }

    if let Some(plan) = &report.plan {
        let reported: Vec<String> = plan
            .findings
            .iter()
            .filter_map(|(id, decision)| match decision {
                FindingDecision::Report(reason) => Some(format!("  {}  {reason}", id.short())),
                FindingDecision::Remediate { .. } => None,
            })
            .collect();
        if !reported.is_empty() {
            let _ = writeln!(out, "\nReported, not remediated:");
            for line in reported {
                let _ = writeln!(out, "{line}");
            }
        }

        let changes = plan.changes().count();
        let _ = writeln!(
            out,
            "\nPlan: {changes} security group(s) to change, {} in scope",
            plan.groups.len()
        );
        for group in &plan.groups {
            let name = if group.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", group.name)
            };
            let why = if group.findings.is_empty() {
                "watched: the policy converged it before".to_string()
            } else {
                format!(
                    "findings {}",
                    group
                        .findings
                        .iter()
                        .map(|f| f.short())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            let ports = if group.ports.is_empty() {
                "no port exposed".to_string()
            } else {
                exposures_text(&group.ports)
            };
            let place = match (&group.account, placed) {
                (Some(account), true) => format!(" [{account} {}]", group.region),
                (None, true) => format!(" [{}]", group.region),
                (_, false) => String::new(),
            };
            let interfaces = match group.network_interfaces {
                Some(n) => format!(", {n} network interface(s)"),
                None => String::new(), // not read: the plan leaves the group as it is
            };
            let _ = write!(
                out,
                "  {}{name}{place}: {ports}{interfaces}, {why}: ",
                group.group
            );
            match &group.verdict {
                Verdict::Converged => {
                    let _ = writeln!(out, "converged");
                }
                Verdict::Exempt => {
                    let _ = writeln!(out, "exempt (tagged), left alone");
                }
                Verdict::NotFound => {
                    let _ = writeln!(out, "group no longer exists");
                }
                Verdict::Refused(reason) => {
                    let _ = writeln!(out, "REFUSED: {reason}");
                }
                Verdict::Change(change) => {
                    let _ = writeln!(out, "change");
                    if change.watch.is_some() {
                        let _ = writeln!(
                            out,
                            "    = remember  {} on the group (watched for drift)",
                            exposures_text(&change.protected)
                        );
                    }
                    for auth in &change.authorize {
                        let purpose = match &auth.purpose {
                            Purpose::Trusted => "trusted range".to_string(),
                            Purpose::Narrowed { replaces } => format!("narrowed from {replaces}"),
                            Purpose::Split { replaces } => format!("split from {replaces}"),
                        };
                        let _ = writeln!(
                            out,
                            "    + authorize {} {}  ({purpose})",
                            auth.source,
                            auth.what()
                        );
                    }
                    for revoke in &change.revoke {
                        let _ = writeln!(
                            out,
                            "    - revoke    {} {} {}  (exposes {})",
                            revoke.rule,
                            revoke.source,
                            revoke.what(),
                            exposures_text(&revoke.exposed)
                        );
                    }
                    for dropped in &change.dropped {
                        let _ = writeln!(out, "    ! drops     {dropped}");
                    }
                }
            }
            for kept in &group.kept {
                let _ = writeln!(
                    out,
                    "    · keeps     {} {}: {}",
                    kept.rule, kept.source, kept.reason
                );
            }
        }
        if plan.is_empty() {
            let _ = writeln!(
                out,
                "\nNothing to change: every security group in scope is converged."
            );
        } else if !report.applied {
            let _ = writeln!(
                out,
                "\nNot applied ({}). Run `remediate` with remediation.mode Enforce to apply.",
                match report.mode {
                    crate::domain::policy::Mode::Enforce => "audit or --dry-run",
                    _ => "mode is not Enforce",
                }
            );
        }
    }

    if !report.outcomes.is_empty() {
        let _ = writeln!(out, "\nOutcome:");
        for outcome in &report.outcomes {
            let remember = match &outcome.remember {
                StepResult::NotNeeded => String::new(),
                StepResult::Done { .. } => "remembered; ".to_string(),
                other => format!("remember {}; ", step(other)),
            };
            let _ = writeln!(
                out,
                "  {}: {remember}authorize {}; revoke {}",
                outcome.group,
                step(&outcome.authorize),
                step(&outcome.revoke)
            );
        }
    }
    if !report.archived.is_empty() {
        let _ = writeln!(
            out,
            "\nArchived {} remediated finding(s).",
            report.archived.len()
        );
    }
    for failure in &report.failures {
        let _ = writeln!(
            out,
            "\nFAILED {}",
            failure.to_string().trim_start_matches("failed ")
        );
    }
    out
}
