//! Accepting findings posted to the emulator: the few members every finding must have,
//! the members GuardDuty always sets (filled in when absent), and `additionalInfo` put
//! into the API's shape (`{"value": "<JSON text>", "type": "default"}`) when it arrives in
//! the EventBridge shape (`{"sample": true, ...}`).
//!
//! A finding is owned by the detector its `service.detectorId` names in the Region its
//! `region` names (`us-east-1` when absent), whatever its `accountId`: a delegated
//! administrator's detector holds its member accounts' findings too.

use serde_json::{Map, Value, json};

use crate::region::DEFAULT_REGION as REGION;
use crate::time::{format_iso8601, parse_iso8601};

/// The account the emulator pretends to be (the administrator, in GuardDuty's terms).
pub(crate) const ACCOUNT_ID: &str = "123456789012";

/// The id of a stored finding.
pub(crate) fn finding_id(finding: &Value) -> &str {
    finding["id"].as_str().unwrap_or_default()
}

/// The detector a stored finding belongs to (`service.detectorId`).
pub(crate) fn detector_of(finding: &Value) -> &str {
    finding["service"]["detectorId"]
        .as_str()
        .unwrap_or_default()
}

/// The Region a stored finding belongs to (`region`, always set once stored).
pub(crate) fn region_of(finding: &Value) -> &str {
    finding["region"].as_str().unwrap_or(REGION)
}

/// Whether a stored finding belongs to this detector of this Region.
pub(crate) fn belongs_to(finding: &Value, region: &str, detector_id: &str) -> bool {
    detector_of(finding) == detector_id && region_of(finding) == region
}

/// Checks one posted finding (`findings[index]`) and completes it for storage.
pub(crate) fn prepare(index: usize, finding: Value, now_ms: i64) -> Result<Value, String> {
    let Value::Object(mut finding) = finding else {
        return Err(format!("findings[{index}] must be a JSON object"));
    };
    let field = |name: &str| format!("findings[{index}].{name}");
    require_text(&finding, "id").map_err(|problem| format!("{} {problem}", field("id")))?;
    require_text(&finding, "type").map_err(|problem| format!("{} {problem}", field("type")))?;
    if !finding.get("severity").is_some_and(Value::is_number) {
        return Err(format!(
            "{} is required and must be a number",
            field("severity")
        ));
    }
    let Some(Value::Object(service)) = finding.get_mut("service") else {
        return Err(format!(
            "{} is required and must be a JSON object",
            field("service")
        ));
    };
    require_text(service, "detectorId")
        .map_err(|problem| format!("{} {problem}", field("service.detectorId")))?;
    complete_service(service);
    for name in ["region", "accountId"] {
        if finding.get(name).is_some_and(|value| !value.is_null()) {
            require_text(&finding, name)
                .map_err(|_| format!("{} must be a non-empty string when given", field(name)))?;
        }
    }
    for timestamp in ["createdAt", "updatedAt"] {
        check_timestamp(finding.get(timestamp))
            .map_err(|problem| format!("{} {problem}", field(timestamp)))?;
    }
    complete_finding(&mut finding, now_ms);
    Ok(Value::Object(finding))
}

fn require_text(object: &Map<String, Value>, name: &str) -> Result<(), &'static str> {
    match object.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(()),
        _ => Err("is required and must be a non-empty string"),
    }
}

fn check_timestamp(value: Option<&Value>) -> Result<(), &'static str> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) if parse_iso8601(text).is_some() => Ok(()),
        Some(_) => Err("must be an ISO-8601 timestamp such as 2024-06-10T08:00:00.000Z"),
    }
}

/// Fills the top-level members GuardDuty always sets.
fn complete_finding(finding: &mut Map<String, Value>, now_ms: i64) {
    let now = format_iso8601(now_ms);
    let created_at = text_or(finding, "createdAt", &now);
    set_if_absent(finding, "createdAt", json!(created_at));
    set_if_absent(finding, "updatedAt", json!(created_at));
    set_if_absent(finding, "accountId", json!(ACCOUNT_ID));
    set_if_absent(finding, "region", json!(REGION));
    set_if_absent(finding, "partition", json!("aws"));
    set_if_absent(finding, "schemaVersion", json!("2.0"));
    let arn = format!(
        "arn:{}:guardduty:{}:{}:detector/{}/finding/{}",
        text_or(finding, "partition", "aws"),
        text_or(finding, "region", REGION),
        text_or(finding, "accountId", ACCOUNT_ID),
        finding
            .get("service")
            .map_or("", |service| service["detectorId"]
                .as_str()
                .unwrap_or_default()),
        text_or(finding, "id", ""),
    );
    set_if_absent(finding, "arn", json!(arn));
}

/// Fills the `service` members GuardDuty always sets and normalises `additionalInfo`.
fn complete_service(service: &mut Map<String, Value>) {
    set_if_absent(service, "archived", json!(false));
    set_if_absent(service, "count", json!(1));
    set_if_absent(service, "serviceName", json!("guardduty"));
    if let Some(info) = service.get_mut("additionalInfo") {
        *info = api_additional_info(std::mem::take(info));
    }
}

/// GuardDuty's API returns `additionalInfo` as `{"value": "<JSON text>", "type": "default"}`;
/// EventBridge events carry the same information as a plain object.
fn api_additional_info(info: Value) -> Value {
    match info {
        Value::Object(members) if !members.get("value").is_some_and(Value::is_string) => {
            json!({ "value": Value::Object(members).to_string(), "type": "default" })
        }
        other => other,
    }
}

fn text_or(object: &Map<String, Value>, name: &str, fallback: &str) -> String {
    object
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or(fallback)
        .to_owned()
}

fn set_if_absent(object: &mut Map<String, Value>, name: &str, value: Value) {
    if object.get(name).is_none_or(Value::is_null) {
        object.insert(name.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        json!({ "id": "f1", "type": "Recon:EC2/PortProbeUnprotectedPort", "severity": 2, "service": { "detectorId": "d1" } })
    }

    #[test]
    fn a_minimal_finding_is_completed_with_what_guardduty_always_sets() {
        let finding = prepare(0, minimal(), 1_486_685_375_000).expect("valid");
        assert_eq!(finding["createdAt"], "2017-02-10T00:09:35.000Z");
        assert_eq!(finding["updatedAt"], "2017-02-10T00:09:35.000Z");
        assert_eq!(finding["service"]["archived"], false);
        assert_eq!(
            finding["arn"],
            "arn:aws:guardduty:us-east-1:123456789012:detector/d1/finding/f1"
        );
    }

    #[test]
    fn missing_required_members_are_named() {
        for (member, expected) in [
            ("id", "findings[3].id"),
            ("type", "findings[3].type"),
            ("severity", "findings[3].severity"),
            ("service", "findings[3].service"),
        ] {
            let mut finding = minimal();
            finding.as_object_mut().map(|object| object.remove(member));
            let error = prepare(3, finding, 0).expect_err("invalid");
            assert!(error.starts_with(expected), "{error}");
        }
        let mut finding = minimal();
        finding["service"] = json!({});
        assert!(
            prepare(0, finding, 0)
                .expect_err("invalid")
                .contains("service.detectorId")
        );
    }

    #[test]
    fn eventbridge_additional_info_is_stored_in_the_api_shape() {
        let mut finding = minimal();
        finding["service"]["additionalInfo"] = json!({ "sample": true });
        let finding = prepare(0, finding, 0).expect("valid");
        assert_eq!(
            finding["service"]["additionalInfo"],
            json!({ "value": "{\"sample\":true}", "type": "default" })
        );
    }

    #[test]
    fn a_region_or_account_that_is_not_text_is_rejected() {
        for member in ["region", "accountId"] {
            let mut finding = minimal();
            finding[member] = json!(12);
            let error = prepare(0, finding, 0).expect_err("invalid");
            assert!(error.contains(&format!("findings[0].{member}")), "{error}");
        }
        let mut finding = minimal();
        finding["region"] = json!("eu-west-1");
        let finding = prepare(0, finding, 0).expect("valid");
        assert_eq!(region_of(&finding), "eu-west-1");
        assert!(belongs_to(&finding, "eu-west-1", "d1"));
        assert!(!belongs_to(&finding, REGION, "d1"));
    }

    #[test]
    fn a_timestamp_that_is_not_iso_8601_is_rejected() {
        let mut finding = minimal();
        finding["updatedAt"] = json!(1_718_000_000_000_i64);
        assert!(
            prepare(0, finding, 0)
                .expect_err("invalid")
                .contains("findings[0].updatedAt")
        );
    }
}
