//! `FindingCriteria` and `SortCriteria` applied to finding JSON, addressed by dotted
//! field paths (`service.action.networkConnectionAction.connectionDirection`) as
//! GuardDuty addresses them. A path descends into arrays, so it names every element's
//! value; a condition holds when any of those values satisfies it.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::body::{invalid_input, string_list};
use crate::error::ApiError;
use crate::time::parse_iso8601;

/// A dotted path into a finding, split into its member names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<String>);

impl FieldPath {
    pub(crate) fn parse(text: &str, context: &str) -> Result<Self, ApiError> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(invalid_input(format!(
                "{context}: {text:?} is not a dotted field path"
            )));
        }
        Ok(Self(segments))
    }

    /// Every non-null value the path reaches, descending into arrays along the way.
    pub(crate) fn values<'a>(&self, finding: &'a Value) -> Vec<&'a Value> {
        let mut found = Vec::new();
        collect(finding, &self.0, &mut found);
        found
    }
}

fn collect<'a>(value: &'a Value, path: &[String], found: &mut Vec<&'a Value>) {
    match (value, path.split_first()) {
        (Value::Array(items), _) => items.iter().for_each(|item| collect(item, path, found)),
        (Value::Null, _) => {}
        (_, None) => found.push(value),
        (Value::Object(members), Some((head, rest))) => {
            if let Some(member) = members.get(head) {
                collect(member, rest, found);
            }
        }
        (_, Some(_)) => {}
    }
}

/// A value read as a number: numbers, numeric strings, and ISO-8601 timestamps (as
/// epoch milliseconds, the unit of `updatedAt` criteria).
pub(crate) fn numeric(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite())
            .or_else(|| parse_iso8601(text).map(|ms| ms as f64)),
        _ => None,
    }
}

/// Whether a finding value equals a criterion string (`"true"` equals `true`, `"7"` equals `7.0`).
fn equals(value: &Value, expected: &str) -> bool {
    let same_text = match value {
        Value::String(text) => text == expected,
        Value::Bool(flag) => expected.eq_ignore_ascii_case(if *flag { "true" } else { "false" }),
        _ => false,
    };
    same_text
        || matches!(
            (numeric(value), expected.parse::<f64>()),
            (Some(actual), Ok(wanted)) if actual == wanted
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Above,
    AtLeast,
    Below,
    AtMost,
}

impl Bound {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Self::Above => actual > limit,
            Self::AtLeast => actual >= limit,
            Self::Below => actual < limit,
            Self::AtMost => actual <= limit,
        }
    }
}

/// One operator of a `Condition`.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    EqualsAny(Vec<String>),
    EqualsNone(Vec<String>),
    Compare(Bound, f64),
}

impl Test {
    fn holds(&self, values: &[&Value]) -> bool {
        match self {
            Self::EqualsAny(wanted) => values
                .iter()
                .any(|value| wanted.iter().any(|w| equals(value, w))),
            Self::EqualsNone(unwanted) => !values
                .iter()
                .any(|value| unwanted.iter().any(|u| equals(value, u))),
            Self::Compare(bound, limit) => values
                .iter()
                .filter_map(|value| numeric(value))
                .any(|actual| bound.holds(actual, *limit)),
        }
    }

    /// Reads one `Condition` member (wire names, current and deprecated).
    fn parse(operator: &str, operand: &Value, context: &str) -> Result<Self, ApiError> {
        let field = format!("{context}.{operator}");
        let bound = |bound| {
            let limit = operand
                .as_f64()
                .ok_or_else(|| invalid_input(format!("{field} must be a number")))?;
            Ok(Self::Compare(bound, limit))
        };
        match operator {
            "equals" | "eq" => Ok(Self::EqualsAny(string_list(operand, &field)?)),
            "notEquals" | "neq" => Ok(Self::EqualsNone(string_list(operand, &field)?)),
            "greaterThan" | "gt" => bound(Bound::Above),
            "greaterThanOrEqual" | "gte" => bound(Bound::AtLeast),
            "lessThan" | "lt" => bound(Bound::Below),
            "lessThanOrEqual" | "lte" => bound(Bound::AtMost),
            "matches" | "notMatches" => Err(invalid_input(format!(
                "{field}: the matches and notMatches operators are only accepted by CreateFilter and UpdateFilter"
            ))),
            other => Err(invalid_input(format!(
                "{context}: unknown condition operator {other:?}"
            ))),
        }
    }
}

/// A parsed `findingCriteria`: every condition on every field must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Criteria {
    conditions: Vec<(FieldPath, Vec<Test>)>,
}

impl Criteria {
    /// Reads `findingCriteria` (`{"criterion": {"<field>": {"<operator>": ...}}}`).
    pub(crate) fn parse(finding_criteria: Option<&Map<String, Value>>) -> Result<Self, ApiError> {
        let Some(criterion) = finding_criteria.and_then(|criteria| criteria.get("criterion"))
        else {
            return Ok(Self::default());
        };
        if criterion.is_null() {
            return Ok(Self::default());
        }
        let criterion = criterion
            .as_object()
            .ok_or_else(|| invalid_input("findingCriteria.criterion must be a JSON object"))?;
        let conditions = criterion
            .iter()
            .map(|(field, condition)| parse_condition(field, condition))
            .collect::<Result<_, _>>()?;
        Ok(Self { conditions })
    }

    pub(crate) fn matches(&self, finding: &Value) -> bool {
        self.conditions.iter().all(|(path, tests)| {
            let values = path.values(finding);
            tests.iter().all(|test| test.holds(&values))
        })
    }
}

fn parse_condition(field: &str, condition: &Value) -> Result<(FieldPath, Vec<Test>), ApiError> {
    let context = format!("findingCriteria.criterion.{field}");
    let path = FieldPath::parse(field, &context)?;
    let operators = condition
        .as_object()
        .ok_or_else(|| invalid_input(format!("{context} must be a Condition object")))?;
    let tests: Vec<Test> = operators
        .iter()
        .filter(|(_, operand)| !operand.is_null())
        .map(|(operator, operand)| Test::parse(operator, operand, &context))
        .collect::<Result<_, _>>()?;
    if tests.is_empty() {
        return Err(invalid_input(format!(
            "{context} has no condition operator"
        )));
    }
    Ok((path, tests))
}

/// A parsed `sortCriteria`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortOrder {
    path: FieldPath,
    descending: bool,
}

/// The value a finding is sorted by. Absent values sort first in ascending order.
#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Absent,
    Number(f64),
    Text(String),
}

impl SortKey {
    fn of(value: Option<&Value>) -> Self {
        match value {
            None => Self::Absent,
            Some(Value::Bool(flag)) => Self::Number(f64::from(u8::from(*flag))),
            Some(value) => match numeric(value) {
                Some(number) => Self::Number(number),
                None => Self::Text(
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned),
                ),
            },
        }
    }

    fn compare(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(left), Self::Number(right)) => left.total_cmp(right),
            (Self::Text(left), Self::Text(right)) => left.cmp(right),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Absent => 0,
            Self::Number(_) => 1,
            Self::Text(_) => 2,
        }
    }
}

impl SortOrder {
    /// Reads `sortCriteria` (`{"attributeName": "...", "orderBy": "ASC"|"DESC"}`).
    /// No `attributeName` means no sorting (insertion order).
    pub(crate) fn parse(
        sort_criteria: Option<&Map<String, Value>>,
    ) -> Result<Option<Self>, ApiError> {
        let Some(sort_criteria) = sort_criteria else {
            return Ok(None);
        };
        let member = |name: &str| -> Result<Option<&str>, ApiError> {
            match sort_criteria.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text)),
                Some(_) => Err(invalid_input(format!(
                    "sortCriteria.{name} must be a string"
                ))),
            }
        };
        let descending = match member("orderBy")? {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => {
                return Err(invalid_input(format!(
                    "sortCriteria.orderBy must be ASC or DESC, got {other:?}"
                )));
            }
        };
        let Some(attribute) = member("attributeName")? else {
            return Ok(None);
        };
        let path = FieldPath::parse(attribute, "sortCriteria.attributeName")?;
        Ok(Some(Self { path, descending }))
    }

    /// Sorts items by the attribute of the finding each refers to; ties keep their order.
    pub(crate) fn sort<'f, T>(&self, items: &mut Vec<T>, finding_of: impl Fn(&T) -> &'f Value) {
        let mut keyed: Vec<(SortKey, T)> = items
            .drain(..)
            .map(|item| {
                (
                    SortKey::of(self.path.values(finding_of(&item)).first().copied()),
                    item,
                )
            })
            .collect();
        keyed.sort_by(|(left, _), (right, _)| {
            let order = left.compare(right);
            if self.descending {
                order.reverse()
            } else {
                order
            }
        });
        items.extend(keyed.into_iter().map(|(_, item)| item));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn criteria(criterion: Value) -> Criteria {
        let wrapper = json!({ "criterion": criterion });
        Criteria::parse(wrapper.as_object()).expect("valid criteria")
    }

    fn finding() -> Value {
        json!({
            "severity": 7.5,
            "type": "Recon:EC2/PortProbeUnprotectedPort",
            "updatedAt": "2024-06-10T08:00:00.000Z",
            "service": { "archived": false },
            "resource": { "instanceDetails": { "networkInterfaces": [
                { "securityGroups": [ { "groupId": "sg-1" }, { "groupId": "sg-2" } ] },
                { "securityGroups": [ { "groupId": "sg-3" } ] }
            ] } }
        })
    }

    #[test]
    fn numbers_compare_numerically() {
        assert!(criteria(json!({ "severity": { "greaterThanOrEqual": 7 } })).matches(&finding()));
        assert!(criteria(json!({ "severity": { "gte": 7 } })).matches(&finding()));
        assert!(!criteria(json!({ "severity": { "greaterThan": 8 } })).matches(&finding()));
        assert!(criteria(json!({ "severity": { "equals": ["7.5"] } })).matches(&finding()));
    }

    #[test]
    fn booleans_match_their_string_spelling() {
        assert!(
            criteria(json!({ "service.archived": { "equals": ["false"] } })).matches(&finding())
        );
        assert!(!criteria(json!({ "service.archived": { "eq": ["true"] } })).matches(&finding()));
    }

    #[test]
    fn timestamps_compare_as_epoch_milliseconds() {
        let at = 1_718_006_400_000_i64; // 2024-06-10T08:00:00Z
        assert!(criteria(json!({ "updatedAt": { "greaterThanOrEqual": at } })).matches(&finding()));
        assert!(!criteria(json!({ "updatedAt": { "greaterThan": at } })).matches(&finding()));
    }

    #[test]
    fn a_path_through_arrays_matches_when_any_element_matches() {
        let path = "resource.instanceDetails.networkInterfaces.securityGroups.groupId";
        assert!(criteria(json!({ path: { "equals": ["sg-3"] } })).matches(&finding()));
        assert!(!criteria(json!({ path: { "notEquals": ["sg-2"] } })).matches(&finding()));
        assert!(criteria(json!({ path: { "notEquals": ["sg-9"] } })).matches(&finding()));
    }

    #[test]
    fn a_missing_field_fails_equals_and_passes_not_equals() {
        assert!(!criteria(json!({ "region": { "equals": ["us-east-1"] } })).matches(&finding()));
        assert!(criteria(json!({ "region": { "notEquals": ["us-east-1"] } })).matches(&finding()));
    }

    #[test]
    fn filter_only_operators_and_empty_conditions_are_rejected() {
        for criterion in [
            json!({ "type": { "matches": ["Recon*"] } }),
            json!({ "type": {} }),
            json!({ "type": { "bigger": 1 } }),
        ] {
            let wrapper = json!({ "criterion": criterion });
            let error = Criteria::parse(wrapper.as_object()).expect_err("invalid");
            assert!(
                error.message().contains("findingCriteria.criterion.type"),
                "{error}"
            );
        }
    }

    #[test]
    fn sorting_is_stable_and_honours_the_direction() {
        let findings = [
            json!({ "id": "a", "severity": 2 }),
            json!({ "id": "b", "severity": 8 }),
            json!({ "id": "c", "severity": 2 }),
        ];
        let order = |sort: Value| {
            let order = SortOrder::parse(sort.as_object())
                .expect("valid")
                .expect("sorting");
            let mut items: Vec<&Value> = findings.iter().collect();
            order.sort(&mut items, |finding| *finding);
            items
                .iter()
                .map(|finding| finding["id"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(json!({ "attributeName": "severity", "orderBy": "DESC" })),
            ["b", "a", "c"]
        );
        assert_eq!(
            order(json!({ "attributeName": "severity" })),
            ["a", "c", "b"]
        );
    }
}
