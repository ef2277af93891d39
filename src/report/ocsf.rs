//! The report as OCSF events, one JSON object a line (`compliance/OCSF-NOTES.md` has
//! the schema facts and the mapping): a Detection Finding (class 2004) per finding,
//! with the operator's response as its status, and a Network Remediation Activity
//! (class 7004, OCSF 1.3.0 and later) per change of a security group in the record.
//! Every event declares the `cloud` profile; times are epoch milliseconds from the
//! finding and the record, never from the report's clock.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::domain::alert::{FindingSummary, Response, Seen};
use crate::domain::finding::Finding;
use crate::domain::ids::FindingId;
use crate::domain::policy::partition;
use crate::domain::record::RecordedRule;
use crate::domain::severity::SeverityBand;
use crate::domain::time::Timestamp;

use super::{Analysis, ReportInput, rule_what};

/// The OCSF version every event names in `metadata.version`.
pub const OCSF_VERSION: &str = "1.7.0";

const DETECTION_FINDING: u32 = 2004;
const NETWORK_REMEDIATION_ACTIVITY: u32 = 7004;

/// One event per line, each line one JSON object, the file ending in a line break.
pub fn ocsf(input: &ReportInput<'_>) -> String {
    let analysis = Analysis::of(input);
    let findings: BTreeMap<&FindingId, &Finding> =
        input.report.findings.iter().map(|f| (&f.id, f)).collect();
    let mut out = String::new();
    for seen in input.responses {
        let finding = findings.get(&seen.finding.id).copied();
        push_line(
            &mut out,
            &detection_finding(input, &analysis, seen, finding),
        );
    }
    for change in changes(input) {
        push_line(&mut out, &remediation_activity(input, &change));
    }
    out
}

fn push_line(out: &mut String, event: &Value) {
    out.push_str(&event.to_string());
    out.push('\n');
}

fn millis(t: Timestamp) -> i64 {
    t.seconds() * 1000
}

fn parse_millis(text: Option<&str>) -> Option<i64> {
    text.and_then(Timestamp::parse).map(millis)
}

/// `severity_id` and its caption, from GuardDuty's band.
fn severity(band: SeverityBand) -> (u8, &'static str) {
    match band {
        SeverityBand::Low => (2, "Low"),
        SeverityBand::Medium => (3, "Medium"),
        SeverityBand::High => (4, "High"),
        SeverityBand::Critical => (5, "Critical"),
    }
}

fn metadata(correlation: Option<&str>) -> Value {
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "profiles": ["cloud"],
        "product": {
            "name": "guardduty-operator",
            "vendor_name": "guardduty-operator",
            "version": env!("CARGO_PKG_VERSION"),
        },
    });
    if let Some(uid) = correlation {
        metadata["correlation_uid"] = json!(uid);
    }
    metadata
}

fn cloud(region: &str, account: Option<&str>) -> Value {
    let mut cloud = json!({"provider": "AWS", "region": region});
    if let Some(account) = account {
        cloud["account"] = json!({"uid": account, "type_id": 10, "type": "AWS Account"});
    }
    cloud
}

/// The operator's response as the finding's activity and status: reported → Create /
/// New; planned → Update / In Progress; closed → Close / Resolved; refused and failed
/// → Update / Other with the words; no longer listed → Close / Other.
fn activity_and_status(response: &Response) -> ((u8, &'static str), (u8, &'static str)) {
    match response {
        Response::Reported { .. } => ((1, "Create"), (1, "New")),
        Response::Planned { .. } => ((2, "Update"), (2, "In Progress")),
        Response::Closed { .. } => ((3, "Close"), (4, "Resolved")),
        Response::Refused { .. } => ((2, "Update"), (99, "Refused")),
        Response::Failed { .. } => ((2, "Update"), (99, "Failed")),
        Response::NoLongerListed => ((3, "Close"), (99, "No longer listed")),
    }
}

fn detection_finding(
    input: &ReportInput<'_>,
    analysis: &Analysis<'_>,
    seen: &Seen,
    finding: Option<&Finding>,
) -> Value {
    let f: &FindingSummary = &seen.finding;
    let ((activity_id, activity), (status_id, status)) = activity_and_status(&seen.response);
    let (severity_id, severity_name) = severity(f.band());
    let first_seen = parse_millis(f.first_seen.as_deref());
    let last_seen = parse_millis(f.last_seen.as_deref());
    let updated = parse_millis(finding.and_then(|f| f.updated_at.as_deref()));
    // The finding's creation time: the finding carries eventFirstSeen, not createdAt,
    // so the first time GuardDuty saw the activity stands for it.
    let time = first_seen.unwrap_or_else(|| millis(input.generated_at));
    let title = if f.title.is_empty() {
        &f.finding_type
    } else {
        &f.title
    };
    let mut info = json!({
        "uid": f.id,
        "title": title,
        "types": [f.finding_type],
        "src_url": f.console_url(),
        "product": {
            "name": "GuardDuty",
            "vendor_name": "AWS",
            "uid": format!("arn:{}:securityhub:{}::product/aws/guardduty", partition(&f.region), f.region),
        },
    });
    if let Some(t) = first_seen {
        info["first_seen_time"] = json!(t);
    }
    if let Some(t) = last_seen {
        info["last_seen_time"] = json!(t);
    }
    if let Some(t) = updated {
        info["modified_time"] = json!(t);
    }
    let mut resources = Vec::new();
    if let Some(instance) = &f.instance {
        resources.push(json!({
            "uid": instance,
            "type": "AWS::EC2::Instance",
            "region": f.region,
            "role_id": 1,
            "role": "Target",
        }));
    }
    for group in &f.security_groups {
        resources.push(json!({
            "uid": group,
            "type": "AWS::EC2::SecurityGroup",
            "region": f.region,
            "role_id": 3,
            "role": "Affected",
        }));
    }
    let mut unmapped = json!({
        "policy": input.policy,
        "guardduty_severity": f.severity,
        "ports": f.ports,
        "remote_ips": f.remote_ips,
        "response": super::response_cells(&seen.response).0,
        "sample": f.sample,
    });
    let remediation = analysis.remediation(&f.id);
    if let Some(r) = remediation {
        unmapped["remediated_time"] = json!(millis(r.closed_at));
        unmapped["time_to_remediate_seconds"] = json!(r.seconds);
    }
    let mut event = json!({
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": DETECTION_FINDING,
        "class_name": "Detection Finding",
        "type_uid": DETECTION_FINDING * 100 + u32::from(activity_id),
        "type_name": format!("Detection Finding: {activity}"),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status,
        "status_detail": seen.response.to_string(),
        "time": time,
        "timezone_offset": 0,
        "message": f.headline(),
        "metadata": metadata(Some(f.id.as_str())),
        "cloud": cloud(&f.region, Some(&f.account_id)),
        "finding_info": info,
        "unmapped": unmapped,
    });
    if let Some(t) = first_seen {
        event["start_time"] = json!(t);
    }
    if let Some(t) = last_seen {
        event["end_time"] = json!(t);
    }
    if let Some(count) = f.count.filter(|c| *c > 0) {
        event["count"] = json!(count);
    }
    if !resources.is_empty() {
        event["resources"] = Value::Array(resources);
    }
    let observables: Vec<Value> = f
        .remote_ips
        .iter()
        .map(|ip| json!({"name": "unmapped.remote_ips", "type_id": 2, "type": "IP Address", "value": ip.to_string()}))
        .collect();
    if !observables.is_empty() {
        event["observables"] = Value::Array(observables);
    }
    let desc = match &seen.response {
        Response::Closed { summary } => Some(format!("Remediated: {summary}.")),
        Response::Planned { summary } => Some(format!("Planned (not applied): {summary}.")),
        _ => None,
    };
    if let Some(desc) = desc {
        event["remediation"] = json!({ "desc": desc });
    }
    event
}

/// The rules one change of one group revoked and authorized (same group, account,
/// region and recorded time).
struct GroupChange<'a> {
    group: &'a str,
    account: Option<&'a str>,
    region: &'a str,
    at: Timestamp,
    revoked: Vec<&'a RecordedRule>,
    authorized: Vec<&'a RecordedRule>,
}

/// The record's changes, oldest first: rules grouped by group and recorded time.
/// Rules recorded without a time (or with one that does not read) are left out: an
/// OCSF event needs its time.
fn changes<'a>(input: &ReportInput<'a>) -> Vec<GroupChange<'a>> {
    type Key<'a> = (Timestamp, &'a str, Option<&'a str>, &'a str);
    let mut by_key: BTreeMap<Key<'a>, GroupChange<'a>> = BTreeMap::new();
    let default_region = input
        .report
        .regions
        .first()
        .map_or("us-east-1", String::as_str);
    let record = input.record;
    let rules = record
        .revoked
        .iter()
        .map(|r| (true, r))
        .chain(record.added.iter().map(|r| (false, r)));
    for (revoked, rule) in rules {
        let Some(at) = rule.at.as_deref().and_then(Timestamp::parse) else {
            continue;
        };
        let region = rule.region.as_deref().unwrap_or(default_region);
        let key = (at, rule.group.as_str(), rule.account.as_deref(), region);
        let change = by_key.entry(key).or_insert_with(|| GroupChange {
            group: &rule.group,
            account: rule.account.as_deref(),
            region,
            at,
            revoked: Vec::new(),
            authorized: Vec::new(),
        });
        if revoked {
            change.revoked.push(rule);
        } else {
            change.authorized.push(rule);
        }
    }
    by_key.into_values().collect()
}

fn sentence(change: &GroupChange<'_>) -> String {
    let list = |rules: &[&RecordedRule]| -> String {
        let items: Vec<String> = rules
            .iter()
            .map(|r| format!("{} from {}", rule_what(r), r.cidr))
            .collect();
        items.join(", ")
    };
    let mut parts = Vec::new();
    if !change.revoked.is_empty() {
        parts.push(format!("Revoked {}", list(&change.revoked)));
    }
    if !change.authorized.is_empty() {
        let verb = if parts.is_empty() {
            "Authorized"
        } else {
            "authorized"
        };
        parts.push(format!("{verb} {}", list(&change.authorized)));
    }
    format!("{} in {}", parts.join("; "), change.group)
}

fn remediation_activity(input: &ReportInput<'_>, change: &GroupChange<'_>) -> Value {
    let rules: Vec<&RecordedRule> = change
        .revoked
        .iter()
        .chain(&change.authorized)
        .copied()
        .collect();
    let mut findings: Vec<&str> = rules.iter().filter_map(|r| r.finding.as_deref()).collect();
    findings.sort_unstable();
    findings.dedup();
    // The most severe finding the change was for, when the report holds it.
    let band = input
        .responses
        .iter()
        .filter(|s| findings.contains(&s.finding.id.as_str()))
        .map(|s| s.finding.band())
        .max();
    let (severity_id, severity_name) = band.map_or((0, "Unknown"), severity);
    // Revoking public ingress is D3FEND Inbound Traffic Filtering, a Network Isolation
    // technique (Isolate); a change that only authorized trusted ranges is Other.
    let (activity_id, activity): (u8, &str) = if change.revoked.is_empty() {
        (99, "Other")
    } else {
        (1, "Isolate")
    };
    let mut connection = json!({"direction_id": 1, "direction": "Inbound"});
    let mut protocols: Vec<&str> = rules.iter().map(|r| r.protocol.as_str()).collect();
    protocols.sort_unstable();
    protocols.dedup();
    if let [protocol] = protocols.as_slice() {
        let number = match *protocol {
            "tcp" => Some(6),
            "udp" => Some(17),
            "icmp" => Some(1),
            "icmpv6" => Some(58),
            _ => None,
        };
        if let Some(number) = number {
            connection["protocol_num"] = json!(number);
            connection["protocol_name"] = json!(protocol);
        }
    }
    let mut families: Vec<u8> = rules
        .iter()
        .map(|r| if r.cidr.contains(':') { 6 } else { 4 })
        .collect();
    families.sort_unstable();
    families.dedup();
    if let [family] = families.as_slice() {
        connection["protocol_ver_id"] = json!(family);
    }
    let entries = |rules: &[&RecordedRule]| -> Vec<Value> {
        rules
            .iter()
            .map(|r| {
                let mut entry = Map::new();
                entry.insert("protocol".into(), json!(r.protocol));
                entry.insert("from_port".into(), json!(r.from_port));
                entry.insert("to_port".into(), json!(r.to_port));
                entry.insert("cidr".into(), json!(r.cidr));
                if let Some(id) = &r.rule_id {
                    entry.insert("rule_uid".into(), json!(id));
                }
                if let Some(finding) = &r.finding {
                    entry.insert("finding_uid".into(), json!(finding));
                }
                Value::Object(entry)
            })
            .collect()
    };
    let mut observables = vec![json!({
        "name": "unmapped.security_group_uid",
        "type_id": 10,
        "type": "Resource UID",
        "value": change.group,
    })];
    for rule in &change.revoked {
        observables.push(json!({
            "name": "unmapped.revoked.cidr",
            "type_id": 12,
            "type": "Subnet",
            "value": rule.cidr,
        }));
    }
    let message = sentence(change);
    let at = millis(change.at);
    let account = change.account.map_or(String::new(), |a| format!("{a}/"));
    json!({
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": 7,
        "category_name": "Remediation",
        "class_uid": NETWORK_REMEDIATION_ACTIVITY,
        "class_name": "Network Remediation Activity",
        "type_uid": NETWORK_REMEDIATION_ACTIVITY * 100 + u32::from(activity_id),
        "type_name": format!("Network Remediation Activity: {activity}"),
        "severity_id": severity_id,
        "severity": severity_name,
        // The record holds the steps AWS confirmed: each one succeeded.
        "status_id": 1,
        "status": "Success",
        "time": at,
        "timezone_offset": 0,
        "message": message,
        "command_uid": format!("{}/{account}{}/{}/{at}", input.policy, change.region, change.group),
        "connection_info": connection,
        "countermeasures": [{
            "d3f_tactic": {"uid": "d3f:Isolate", "name": "Isolate"},
            "d3f_technique": {
                "uid": "D3-ITF",
                "name": "Inbound Traffic Filtering",
                "src_url": "https://d3fend.mitre.org/technique/d3f:InboundTrafficFiltering/",
            },
        }],
        "remediation": {"desc": format!("{message}.")},
        "metadata": metadata(findings.first().copied()),
        "cloud": cloud(change.region, change.account),
        "observables": observables,
        "unmapped": {
            "policy": input.policy,
            "security_group_uid": change.group,
            "revoked": entries(&change.revoked),
            "authorized": entries(&change.authorized),
            "finding_uids": findings,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::sample::Sample;
    use super::*;

    fn events(text: &str) -> Vec<Value> {
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }

    #[test]
    fn each_line_is_an_event_of_its_class_with_type_uid_and_millisecond_time() {
        let sample = Sample::realistic();
        let text = ocsf(&sample.input());
        let events = events(&text);
        let findings: Vec<&Value> = events.iter().filter(|e| e["class_uid"] == 2004).collect();
        let changes: Vec<&Value> = events.iter().filter(|e| e["class_uid"] == 7004).collect();
        assert_eq!(findings.len(), sample.responses.len());
        // f1, f3, f4 one change each; f2 two (11:02 and 11:30).
        assert_eq!(changes.len(), 5);
        assert_eq!(findings.len() + changes.len(), events.len());
        for event in &events {
            let class = event["class_uid"].as_u64().unwrap();
            let activity = event["activity_id"].as_u64().unwrap();
            assert_eq!(event["type_uid"].as_u64().unwrap(), class * 100 + activity);
            assert_eq!(event["category_uid"].as_u64().unwrap(), class / 1000);
            assert!(
                event["time"].is_i64(),
                "epoch ms as an integer: {}",
                event["time"]
            );
            assert!(event["time"].as_i64().unwrap() > 1_700_000_000_000);
            assert_eq!(event["metadata"]["version"], OCSF_VERSION);
            assert_eq!(event["cloud"]["provider"], "AWS");
        }
        let f1 = findings
            .iter()
            .find(|e| e["finding_info"]["uid"] == "f1")
            .unwrap();
        assert_eq!(f1["activity_id"], 3);
        assert_eq!(f1["status_id"], 4);
        assert_eq!(f1["status"], "Resolved");
        assert_eq!(f1["severity_id"], 3);
        assert_eq!(
            f1["time"],
            Timestamp::parse("2026-03-02T10:00:00Z").unwrap().seconds() * 1000
        );
        assert_eq!(f1["unmapped"]["time_to_remediate_seconds"], 250);
        let f6 = findings
            .iter()
            .find(|e| e["finding_info"]["uid"] == "f6")
            .unwrap();
        assert_eq!(
            (f6["status_id"].as_u64(), f6["status"].as_str()),
            (Some(99), Some("Refused"))
        );
        let f5 = findings
            .iter()
            .find(|e| e["finding_info"]["uid"] == "f5")
            .unwrap();
        assert_eq!(
            (f5["activity_id"].as_u64(), f5["status_id"].as_u64()),
            (Some(2), Some(2))
        );
        // The change for f1 at its recorded time, never the report's.
        let change = changes
            .iter()
            .find(|e| e["unmapped"]["security_group_uid"] == "sg-1")
            .unwrap();
        assert_eq!(change["activity_id"], 1);
        assert_eq!(change["type_uid"], 700401);
        assert_eq!(
            change["time"],
            Timestamp::parse("2026-03-02T10:04:10Z").unwrap().seconds() * 1000
        );
        assert_eq!(change["metadata"]["correlation_uid"], "f1");
        assert_eq!(change["connection_info"]["protocol_num"], 6);
        assert_eq!(
            change["message"],
            "Revoked tcp/22 from 0.0.0.0/0; authorized tcp/22 from 10.0.0.0/8 in sg-1"
        );
        let uids: std::collections::BTreeSet<&str> = changes
            .iter()
            .map(|c| c["command_uid"].as_str().unwrap())
            .collect();
        assert_eq!(uids.len(), changes.len(), "one id per change");
    }

    #[test]
    fn the_same_input_gives_the_same_lines() {
        let sample = Sample::realistic();
        assert_eq!(ocsf(&sample.input()), ocsf(&sample.input()));
    }
}
