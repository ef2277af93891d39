//! `GetFindingsStatistics`: `countBySeverity` (keyed by the severity as GuardDuty
//! prints it, `"8.0"`) and the `groupedBy*` lists, each entry with `totalFindings` and
//! `lastGeneratedAt` (epoch seconds).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::time::parse_iso8601;

const MS_PER_DAY: i64 = 86_400_000;

/// `groupBy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupBy {
    Account,
    Date,
    FindingType,
    Resource,
    Severity,
}

impl GroupBy {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "ACCOUNT" => Some(Self::Account),
            "DATE" => Some(Self::Date),
            "FINDING_TYPE" => Some(Self::FindingType),
            "RESOURCE" => Some(Self::Resource),
            "SEVERITY" => Some(Self::Severity),
            _ => None,
        }
    }

    fn output_member(self) -> &'static str {
        match self {
            Self::Account => "groupedByAccount",
            Self::Date => "groupedByDate",
            Self::FindingType => "groupedByFindingType",
            Self::Resource => "groupedByResource",
            Self::Severity => "groupedBySeverity",
        }
    }
}

/// What to compute, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatisticsRequest {
    pub(crate) count_by_severity: bool,
    pub(crate) group_by: Option<GroupBy>,
    pub(crate) descending: bool,
    pub(crate) max_results: usize,
}

/// The `findingStatistics` member of the response.
pub(crate) fn finding_statistics(findings: &[&Value], request: &StatisticsRequest) -> Value {
    let mut statistics = Map::new();
    if request.count_by_severity {
        statistics.insert("countBySeverity".to_owned(), count_by_severity(findings));
    }
    if let Some(group_by) = request.group_by {
        statistics.insert(
            group_by.output_member().to_owned(),
            Value::Array(grouped(findings, group_by, request)),
        );
    }
    Value::Object(statistics)
}

/// Severity as GuardDuty prints it in `countBySeverity` keys: `2.0`, `7.5`.
fn severity_key(severity: f64) -> String {
    format!("{severity:?}")
}

fn severity_of(finding: &Value) -> f64 {
    finding["severity"].as_f64().unwrap_or_default()
}

fn updated_at_ms(finding: &Value) -> i64 {
    finding["updatedAt"]
        .as_str()
        .and_then(parse_iso8601)
        .unwrap_or_default()
}

fn count_by_severity(findings: &[&Value]) -> Value {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for finding in findings {
        *counts
            .entry(severity_key(severity_of(finding)))
            .or_default() += 1;
    }
    json!(counts)
}

/// One group: the members that identify it, how many findings, the latest update.
#[derive(Debug)]
struct Group {
    identity: Map<String, Value>,
    total: u64,
    last_generated_ms: i64,
    highest_severity: f64,
}

fn identity(finding: &Value, group_by: GroupBy) -> Map<String, Value> {
    let text = |value: &Value| json!(value.as_str().unwrap_or_default());
    let mut identity = Map::new();
    match group_by {
        GroupBy::Account => {
            identity.insert("accountId".to_owned(), text(&finding["accountId"]));
        }
        GroupBy::FindingType => {
            identity.insert("findingType".to_owned(), text(&finding["type"]));
        }
        GroupBy::Severity => {
            identity.insert("severity".to_owned(), json!(severity_of(finding)));
        }
        GroupBy::Date => {
            let day_ms = updated_at_ms(finding).div_euclid(MS_PER_DAY) * MS_PER_DAY;
            identity.insert("date".to_owned(), json!(day_ms / 1000));
        }
        GroupBy::Resource => {
            let resource = &finding["resource"];
            identity.insert("accountId".to_owned(), text(&finding["accountId"]));
            identity.insert(
                "resourceId".to_owned(),
                text(&resource["instanceDetails"]["instanceId"]),
            );
            identity.insert("resourceType".to_owned(), text(&resource["resourceType"]));
        }
    }
    identity
}

fn grouped(findings: &[&Value], group_by: GroupBy, request: &StatisticsRequest) -> Vec<Value> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for finding in findings {
        let identity = identity(finding, group_by);
        let group = groups
            .entry(Value::Object(identity.clone()).to_string())
            .or_insert(Group {
                identity,
                total: 0,
                last_generated_ms: i64::MIN,
                highest_severity: 0.0,
            });
        group.total += 1;
        group.last_generated_ms = group.last_generated_ms.max(updated_at_ms(finding));
        group.highest_severity = group.highest_severity.max(severity_of(finding));
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|left, right| {
        let order = left.total.cmp(&right.total);
        if request.descending {
            order.reverse()
        } else {
            order
        }
    });
    groups.truncate(request.max_results);
    groups
        .into_iter()
        .map(|group| group_entry(group, group_by))
        .collect()
}

fn group_entry(group: Group, group_by: GroupBy) -> Value {
    let mut entry = group.identity;
    entry.insert("totalFindings".to_owned(), json!(group.total));
    entry.insert(
        "lastGeneratedAt".to_owned(),
        json!(group.last_generated_ms as f64 / 1000.0),
    );
    if group_by == GroupBy::Date {
        entry.insert("severity".to_owned(), json!(group.highest_severity));
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings() -> Vec<Value> {
        [(2.0, "A", "2024-06-10T08:00:00Z"), (8.0, "B", "2024-06-11T08:00:00Z"), (2.0, "B", "2024-06-10T09:00:00Z")]
            .into_iter()
            .map(|(severity, kind, updated_at)| json!({ "severity": severity, "type": kind, "accountId": "1", "updatedAt": updated_at }))
            .collect()
    }

    #[test]
    fn count_by_severity_is_keyed_by_the_severity_with_one_decimal() {
        let findings = findings();
        let refs: Vec<&Value> = findings.iter().collect();
        let request = StatisticsRequest {
            count_by_severity: true,
            group_by: None,
            descending: true,
            max_results: 25,
        };
        assert_eq!(
            finding_statistics(&refs, &request),
            json!({ "countBySeverity": { "2.0": 2, "8.0": 1 } })
        );
    }

    #[test]
    fn groups_are_ordered_by_total_and_carry_the_latest_update() {
        let findings = findings();
        let refs: Vec<&Value> = findings.iter().collect();
        let request = StatisticsRequest {
            count_by_severity: false,
            group_by: Some(GroupBy::FindingType),
            descending: true,
            max_results: 25,
        };
        let statistics = finding_statistics(&refs, &request);
        let groups = &statistics["groupedByFindingType"];
        assert_eq!(groups[0]["findingType"], "B");
        assert_eq!(groups[0]["totalFindings"], 2);
        assert_eq!(groups[0]["lastGeneratedAt"], 1_718_092_800.0);
        assert_eq!(groups[1]["findingType"], "A");
    }
}
