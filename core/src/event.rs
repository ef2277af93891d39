//! GuardDuty findings as JSON: the finding itself (the JSON shape of GetFindings)
//! and the EventBridge event that carries one to an SQS queue.
//!
//! An EventBridge rule matching `{"source": ["aws.guardduty"], "detail-type":
//! ["GuardDuty Finding"]}` with an SQS queue as its target delivers each event,
//! unchanged, as a message body; [`finding_event`] reads that body. Only that path
//! is read: an event that went through SNS first arrives inside an SNS notification
//! (`{"Type": "Notification", "Message": "<the event as text>", …}`) and is refused
//! for its missing `source`. Point the rule at the queue itself.
//!
//! [`finding_from_json`] reads the finding, the event's `detail`. It follows the
//! rules of the SDK adapter (`to_domain` in `src/aws/guardduty.rs`), so a finding
//! comes out the same whichever way it arrived (`tests/finding_json.rs` checks this
//! against the GuardDuty emulator):
//!
//! - an id that is not a [`FindingId`], or a severity that is missing or not a
//!   finite number, refuses the finding (the SDK path logs it and skips it);
//! - any other member that is missing, null or of another type counts as absent;
//! - `service.additionalInfo` comes in two shapes: `{"value": "<JSON text>",
//!   "type": "default"}` from the API and a plain object in events. Either way the
//!   finding is a sample when its `sample` member is `true` or `"true"`;
//! - security groups are sorted and deduplicated; a connection's direction is
//!   INBOUND or OUTBOUND in any case, anything else Unknown; ports outside `u16`
//!   and addresses that do not parse are dropped; a remote address is
//!   `ipAddressV4` when present, else `ipAddressV6`;
//! - the finding names no instance when it has no usable instance id.

use std::net::IpAddr;

use serde_json::Value;

use crate::finding::{Action, Direction, Finding, InstanceRef};
use crate::ids::{FindingId, InstanceId};
use crate::severity::Severity;

/// The `source` of the events GuardDuty publishes.
pub const SOURCE: &str = "aws.guardduty";
/// The `detail-type` of an event that carries a finding.
pub const DETAIL_TYPE: &str = "GuardDuty Finding";
/// How much of an offending value an error message shows.
const EXCERPT_CHARS: usize = 100;

/// Why a message or a finding was refused. Messages are one line and show at
/// most the offending value, cut to about a hundred characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the message is not JSON ({reason}): expected an EventBridge event")]
    NotJson { reason: String },
    #[error("the message is a JSON {found}: expected an EventBridge event, a JSON object")]
    NotAnObject { found: &'static str },
    #[error("source is {found}: expected {}", SOURCE)]
    NotFromGuardDuty { found: String },
    #[error("detail-type is {found}: expected {}", DETAIL_TYPE)]
    NotAFinding { found: String },
    #[error("detail is {found}: expected the finding, a JSON object")]
    NoDetail { found: String },
    #[error("id is {found}: expected the finding's id (letters, digits, - and _)")]
    UnusableId { found: String },
    #[error("severity of finding {id} is {found}: expected a number")]
    UnusableSeverity { id: FindingId, found: String },
}

impl EventError {
    /// A short PascalCase name for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            EventError::NotJson { .. } => "NotJson",
            EventError::NotAnObject { .. } => "NotAnEvent",
            EventError::NotFromGuardDuty { .. } => "NotFromGuardDuty",
            EventError::NotAFinding { .. } => "NotAFinding",
            EventError::NoDetail { .. } => "NoDetail",
            EventError::UnusableId { .. } => "UnusableId",
            EventError::UnusableSeverity { .. } => "UnusableSeverity",
        }
    }
}

/// The finding an EventBridge GuardDuty Finding event carries, from the body of
/// the SQS message the rule delivered.
pub fn finding_event(message_body: &str) -> Result<Finding, EventError> {
    let event = event_object(message_body)?;
    require_member(&event, "source", SOURCE)
        .map_err(|found| EventError::NotFromGuardDuty { found })?;
    require_member(&event, "detail-type", DETAIL_TYPE)
        .map_err(|found| EventError::NotAFinding { found })?;
    match event.get("detail") {
        Some(detail) if detail.is_object() => finding_from_json(detail),
        other => Err(EventError::NoDetail {
            found: excerpt(other),
        }),
    }
}

/// A finding in the JSON shape of GetFindings (camelCase members), as an
/// event's `detail` holds it.
pub fn finding_from_json(detail: &Value) -> Result<Finding, EventError> {
    let id = finding_id(detail)?;
    let severity = finding_severity(detail, &id)?;
    let service = &detail["service"];
    Ok(Finding {
        id,
        finding_type: text_or_empty(&detail["type"]),
        severity,
        account_id: text_or_empty(&detail["accountId"]),
        region: text_or_empty(&detail["region"]),
        title: text_or_empty(&detail["title"]),
        sample: is_sample(&service["additionalInfo"]),
        archived: service["archived"].as_bool().unwrap_or(false),
        count: whole_number(&service["count"]),
        first_seen: text(&service["eventFirstSeen"]),
        last_seen: text(&service["eventLastSeen"]),
        updated_at: text(&detail["updatedAt"]),
        arn: text(&detail["arn"]),
        instance: instance(&detail["resource"]["instanceDetails"]),
        action: action(&service["action"]),
    })
}

fn event_object(message_body: &str) -> Result<Value, EventError> {
    let event: Value = serde_json::from_str(message_body).map_err(|error| EventError::NotJson {
        reason: error.to_string(),
    })?;
    if event.is_object() {
        Ok(event)
    } else {
        Err(EventError::NotAnObject {
            found: json_kind(&event),
        })
    }
}

/// Checks that `name` is exactly `expected`; otherwise what it is instead.
fn require_member(event: &Value, name: &str, expected: &str) -> Result<(), String> {
    match event.get(name) {
        Some(Value::String(text)) if text == expected => Ok(()),
        other => Err(excerpt(other)),
    }
}

fn finding_id(detail: &Value) -> Result<FindingId, EventError> {
    detail["id"]
        .as_str()
        .and_then(|text| FindingId::parse(text).ok())
        .ok_or_else(|| EventError::UnusableId {
            found: excerpt(detail.get("id")),
        })
}

/// GuardDuty sends a number; a number in text is accepted too.
fn finding_severity(detail: &Value, id: &FindingId) -> Result<Severity, EventError> {
    let number = match &detail["severity"] {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    number
        .and_then(Severity::of_finding)
        .ok_or_else(|| EventError::UnusableSeverity {
            id: id.clone(),
            found: excerpt(detail.get("severity")),
        })
}

/// `additionalInfo` is `{"value": "<JSON text>", …}` from the API (the flags are
/// in that text) and the plain object in events.
fn is_sample(info: &Value) -> bool {
    match &info["value"] {
        Value::String(text) => {
            serde_json::from_str::<Value>(text).is_ok_and(|inner| has_sample_flag(&inner))
        }
        _ => has_sample_flag(info),
    }
}

fn has_sample_flag(info: &Value) -> bool {
    match &info["sample"] {
        Value::Bool(flag) => *flag,
        Value::String(text) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn instance(details: &Value) -> Option<InstanceRef> {
    let id = InstanceId::parse(details["instanceId"].as_str()?).ok()?;
    Some(InstanceRef {
        id,
        security_groups: security_groups(&details["networkInterfaces"]),
    })
}

/// The group ids of every network interface, sorted and deduplicated.
fn security_groups(interfaces: &Value) -> Vec<String> {
    let mut groups: Vec<String> = elements(interfaces)
        .flat_map(|interface| elements(&interface["securityGroups"]))
        .filter_map(|group| text(&group["groupId"]))
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// A port probe when the action holds one, else a connection when it holds one
/// (the order of the SDK adapter), else another kind of action.
fn action(action: &Value) -> Action {
    let probe = &action["portProbeAction"];
    if probe.is_object() {
        return port_probe(&probe["portProbeDetails"]);
    }
    let connection = &action["networkConnectionAction"];
    if connection.is_object() {
        return network_connection(connection);
    }
    Action::Other {
        action_type: text(&action["actionType"]),
    }
}

fn port_probe(details: &Value) -> Action {
    Action::PortProbe {
        ports: elements(details)
            .filter_map(|detail| port(&detail["localPortDetails"]["port"]))
            .collect(),
        remote_ips: elements(details)
            .filter_map(|detail| remote_ip(&detail["remoteIpDetails"]))
            .collect(),
    }
}

fn network_connection(connection: &Value) -> Action {
    Action::NetworkConnection {
        direction: direction(&connection["connectionDirection"]),
        protocol: text(&connection["protocol"]),
        local_port: port(&connection["localPortDetails"]["port"]),
        remote_ip: remote_ip(&connection["remoteIpDetails"]),
    }
}

fn direction(value: &Value) -> Direction {
    match value.as_str() {
        Some(text) if text.eq_ignore_ascii_case("INBOUND") => Direction::Inbound,
        Some(text) if text.eq_ignore_ascii_case("OUTBOUND") => Direction::Outbound,
        _ => Direction::Unknown,
    }
}

/// `ipAddressV4` when present, else `ipAddressV6`, as the SDK adapter reads it.
fn remote_ip(details: &Value) -> Option<IpAddr> {
    let text = details["ipAddressV4"]
        .as_str()
        .or(details["ipAddressV6"].as_str())?;
    text.parse().ok()
}

fn port(value: &Value) -> Option<u16> {
    u16::try_from(whole_number(value)?).ok()
}

/// An integer, also when written as a float without a fraction (`22.0`), as the
/// SDK reads the integers of GuardDuty's JSON.
fn whole_number(value: &Value) -> Option<i64> {
    const I64_BOUND: f64 = 9_223_372_036_854_775_808.0; // 2^63
    value.as_i64().or_else(|| {
        let float = value.as_f64()?;
        (float.fract() == 0.0 && float.abs() < I64_BOUND).then_some(float as i64)
    })
}

/// The elements of a list; nothing when the value is not a list.
fn elements(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().into_iter().flatten()
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn text_or_empty(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// What a member holds, for an error message: `missing`, or its JSON text cut
/// to [`EXCERPT_CHARS`] characters.
fn excerpt(value: Option<&Value>) -> String {
    let Some(value) = value else {
        return "missing".to_string();
    };
    let text = value.to_string();
    if text.chars().count() <= EXCERPT_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(EXCERPT_CHARS).collect();
    cut.push('…');
    cut
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::finding::{Triage, triage};
    use crate::security_group::{Exposure, Protocol};

    const ID: &str = "7ec2f1a6d2b84c0e9a1f3b5d7c9e0a21";

    /// An EventBridge event for `Recon:EC2/PortProbeUnprotectedPort`, in the shape
    /// of the sample in the GuardDuty documentation (values of our own).
    fn port_probe_event() -> Value {
        json!({
            "version": "0",
            "id": "3f1c7a52-9d4e-4b1a-8e0f-2c6d5b7a9e10",
            "detail-type": "GuardDuty Finding",
            "source": "aws.guardduty",
            "account": "111122223333",
            "time": "2026-03-02T09:41:07Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {
                "schemaVersion": "2.0",
                "accountId": "111122223333",
                "region": "eu-west-1",
                "partition": "aws",
                "id": ID,
                "arn": format!("arn:aws:guardduty:eu-west-1:111122223333:detector/0cb2e4d6f8a0b2c4d6e8f0a2b4c6d8e0/finding/{ID}"),
                "type": "Recon:EC2/PortProbeUnprotectedPort",
                "resource": {
                    "resourceType": "Instance",
                    "instanceDetails": {
                        "instanceId": "i-0a1b2c3d4e5f60718",
                        "instanceType": "t3.small",
                        "launchTime": "2026-02-27T14:03:55Z",
                        "availabilityZone": "eu-west-1b",
                        "networkInterfaces": [{
                            "networkInterfaceId": "eni-0f1e2d3c4b5a69788",
                            "privateIpAddress": "10.40.2.17",
                            "publicIp": "203.0.113.40",
                            "subnetId": "subnet-0a9b8c7d6e5f40312",
                            "vpcId": "vpc-0d1c2b3a495867f01",
                            "securityGroups": [
                                {"groupName": "web", "groupId": "sg-0bbbbbbbbbbbbbbbb"},
                                {"groupName": "ops", "groupId": "sg-0aaaaaaaaaaaaaaaa"}
                            ]
                        }],
                        "tags": [{"key": "Name", "value": "web-1"}]
                    }
                },
                "service": {
                    "serviceName": "guardduty",
                    "detectorId": "0cb2e4d6f8a0b2c4d6e8f0a2b4c6d8e0",
                    "action": {
                        "actionType": "PORT_PROBE",
                        "portProbeAction": {
                            "blocked": false,
                            "portProbeDetails": [
                                {
                                    "localPortDetails": {"port": 3306, "portName": "MYSQL"},
                                    "remoteIpDetails": {
                                        "ipAddressV4": "198.51.100.23",
                                        "organization": {"asn": "64496", "asnOrg": "EXAMPLE-NET", "isp": "Example ISP", "org": "Example Org"},
                                        "country": {"countryName": "Exampleland"},
                                        "city": {"cityName": "Example City"},
                                        "geoLocation": {"lat": 48.1, "lon": 11.6}
                                    }
                                },
                                {
                                    "localPortDetails": {"port": 5432, "portName": "POSTGRESQL"},
                                    "remoteIpDetails": {"ipAddressV4": "192.0.2.81"}
                                }
                            ]
                        }
                    },
                    "resourceRole": "TARGET",
                    "additionalInfo": {"threatName": "Scanner", "threatListName": "ProofPoint"},
                    "eventFirstSeen": "2026-03-02T08:12:40Z",
                    "eventLastSeen": "2026-03-02T09:30:02Z",
                    "archived": false,
                    "count": 6
                },
                "severity": 2,
                "createdAt": "2026-03-02T08:20:11.512Z",
                "updatedAt": "2026-03-02T09:35:47.086Z",
                "title": "Unprotected port on EC2 instance i-0a1b2c3d4e5f60718 is being probed.",
                "description": "EC2 instance has an unprotected port which is being probed by a known malicious host."
            }
        })
    }

    /// A brute force finding (GetFindings shape) against `port`.
    fn brute_force(kind: &str, direction: &str, protocol: &str, port: u16) -> Value {
        json!({
            "id": ID,
            "accountId": "111122223333",
            "region": "eu-west-1",
            "type": format!("UnauthorizedAccess:EC2/{kind}"),
            "severity": 5.0,
            "title": format!("{kind} attacks against i-0a1b2c3d4e5f60718."),
            "updatedAt": "2026-03-02T09:35:47.086Z",
            "resource": {
                "resourceType": "Instance",
                "instanceDetails": {
                    "instanceId": "i-0a1b2c3d4e5f60718",
                    "networkInterfaces": [{"securityGroups": [{"groupId": "sg-0aaaaaaaaaaaaaaaa"}]}]
                }
            },
            "service": {
                "archived": false,
                "count": 120,
                "action": {
                    "actionType": "NETWORK_CONNECTION",
                    "networkConnectionAction": {
                        "connectionDirection": direction,
                        "protocol": protocol,
                        "blocked": false,
                        "localPortDetails": {"port": port, "portName": kind},
                        "remotePortDetails": {"port": 51234, "portName": "Unknown"},
                        "remoteIpDetails": {"ipAddressV4": "198.51.100.77"}
                    }
                }
            }
        })
    }

    fn body(event: &Value) -> String {
        event.to_string()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_port_probe_event_from_eventbridge_reads_as_its_finding() {
        let finding = finding_event(&body(&port_probe_event())).unwrap();
        assert_eq!(
            finding,
            Finding {
                id: FindingId::parse(ID).unwrap(),
                finding_type: "Recon:EC2/PortProbeUnprotectedPort".into(),
                severity: Severity::of_finding(2.0).unwrap(),
                account_id: "111122223333".into(),
                region: "eu-west-1".into(),
                title: "Unprotected port on EC2 instance i-0a1b2c3d4e5f60718 is being probed."
                    .into(),
                sample: false,
                archived: false,
                count: Some(6),
                first_seen: Some("2026-03-02T08:12:40Z".into()),
                last_seen: Some("2026-03-02T09:30:02Z".into()),
                updated_at: Some("2026-03-02T09:35:47.086Z".into()),
                arn: Some(format!(
                    "arn:aws:guardduty:eu-west-1:111122223333:detector/\
                     0cb2e4d6f8a0b2c4d6e8f0a2b4c6d8e0/finding/{ID}"
                )),
                instance: Some(InstanceRef {
                    id: InstanceId::parse("i-0a1b2c3d4e5f60718").unwrap(),
                    security_groups: vec![
                        "sg-0aaaaaaaaaaaaaaaa".into(),
                        "sg-0bbbbbbbbbbbbbbbb".into()
                    ],
                }),
                action: Action::PortProbe {
                    ports: vec![3306, 5432],
                    remote_ips: vec![ip("198.51.100.23"), ip("192.0.2.81")],
                },
            }
        );
    }

    #[test]
    fn an_inbound_ssh_brute_force_over_tcp_is_closed_on_its_port() {
        let finding = finding_from_json(&brute_force("SSHBruteForce", "INBOUND", "TCP", 22));
        let finding = finding.unwrap();
        assert_eq!(
            finding.action,
            Action::NetworkConnection {
                direction: Direction::Inbound,
                protocol: Some("TCP".into()),
                local_port: Some(22),
                remote_ip: Some(ip("198.51.100.77")),
            }
        );
        assert_eq!(
            triage(&finding),
            Triage::Close {
                instance: InstanceId::parse("i-0a1b2c3d4e5f60718").unwrap(),
                exposures: vec![Exposure {
                    protocol: Protocol::Tcp,
                    port: 22
                }],
            }
        );
    }

    #[test]
    fn an_rdp_brute_force_over_udp_is_closed_on_udp() {
        let finding =
            finding_from_json(&brute_force("RDPBruteForce", "INBOUND", "UDP", 3389)).unwrap();
        assert_eq!(
            finding.exposures(),
            [Exposure {
                protocol: Protocol::Udp,
                port: 3389
            }]
        );
    }

    #[test]
    fn the_direction_is_inbound_or_outbound_in_any_case_and_unknown_otherwise() {
        let direction_of = |direction: Value| {
            let mut finding = brute_force("SSHBruteForce", "INBOUND", "TCP", 22);
            finding["service"]["action"]["networkConnectionAction"]["connectionDirection"] =
                direction;
            match finding_from_json(&finding).unwrap().action {
                Action::NetworkConnection { direction, .. } => direction,
                other => panic!("expected a connection, got {other:?}"),
            }
        };
        assert_eq!(direction_of(json!("OUTBOUND")), Direction::Outbound);
        assert_eq!(direction_of(json!("outbound")), Direction::Outbound);
        assert_eq!(direction_of(json!("Inbound")), Direction::Inbound);
        assert_eq!(direction_of(json!("UNKNOWN")), Direction::Unknown);
        assert_eq!(direction_of(json!(null)), Direction::Unknown);
        assert_eq!(direction_of(json!(1)), Direction::Unknown);
    }

    #[test]
    fn additional_info_marks_a_sample_in_the_api_shape_and_in_the_event_shape() {
        let sample_with = |info: Value| {
            let mut event = port_probe_event();
            event["detail"]["service"]["additionalInfo"] = info;
            finding_event(&body(&event)).unwrap().sample
        };
        assert!(sample_with(
            json!({"value": "{\"sample\":true,\"threatListName\":\"ProofPoint\"}", "type": "default"})
        ));
        assert!(sample_with(
            json!({"sample": true, "threatListName": "ProofPoint"})
        ));
        assert!(sample_with(json!({"sample": "TRUE"})));
        assert!(sample_with(
            json!({"value": "{\"sample\":\"true\"}", "type": "default"})
        ));
        assert!(!sample_with(json!({"sample": false})));
        assert!(!sample_with(json!({"sample": "yes"})));
        assert!(!sample_with(
            json!({"value": "not JSON", "type": "default"})
        ));
        assert!(!sample_with(json!({"threatListName": "ProofPoint"})));
        assert!(!sample_with(json!(null)));
    }

    #[test]
    fn an_ipv6_remote_address_is_read_when_there_is_no_ipv4_one() {
        let mut finding = brute_force("SSHBruteForce", "INBOUND", "TCP", 22);
        finding["service"]["action"]["networkConnectionAction"]["remoteIpDetails"] =
            json!({"ipAddressV6": "2001:db8::77"});
        let finding = finding_from_json(&finding).unwrap();
        assert_eq!(finding.remote_ips(), [ip("2001:db8::77")]);

        let mut event = port_probe_event();
        event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"][1]["remoteIpDetails"] =
            json!({"ipAddressV6": "2001:db8:4::81"});
        let finding = finding_event(&body(&event)).unwrap();
        assert_eq!(
            finding.remote_ips(),
            [ip("198.51.100.23"), ip("2001:db8:4::81")]
        );
    }

    #[test]
    fn ports_outside_u16_and_addresses_that_do_not_parse_are_dropped() {
        let mut event = port_probe_event();
        event["detail"]["service"]["action"]["portProbeAction"]["portProbeDetails"] = json!([
            {"localPortDetails": {"port": 70000}, "remoteIpDetails": {"ipAddressV4": "198.51.100.300"}},
            {"localPortDetails": {"port": -1}, "remoteIpDetails": {"ipAddressV6": "not-an-address"}},
            {"localPortDetails": {"port": "443"}, "remoteIpDetails": {}},
            {"localPortDetails": {"port": 8443.5}},
            {"localPortDetails": {"port": 22.0}, "remoteIpDetails": {"ipAddressV4": "192.0.2.1"}},
            "not a detail"
        ]);
        let finding = finding_event(&body(&event)).unwrap();
        assert_eq!(
            finding.action,
            Action::PortProbe {
                ports: vec![22],
                remote_ips: vec![ip("192.0.2.1")],
            }
        );
    }

    #[test]
    fn security_groups_of_every_interface_are_sorted_and_deduplicated() {
        let mut event = port_probe_event();
        event["detail"]["resource"]["instanceDetails"]["networkInterfaces"] = json!([
            {"securityGroups": [{"groupId": "sg-0ccccccccccccccc0"}, {"groupId": "sg-0aaaaaaaaaaaaaaaa"}]},
            {"securityGroups": [{"groupId": "sg-0aaaaaaaaaaaaaaaa"}, {"groupName": "no id"}]},
            {"networkInterfaceId": "eni-0f1e2d3c4b5a69788"}
        ]);
        let finding = finding_event(&body(&event)).unwrap();
        assert_eq!(
            finding.instance.unwrap().security_groups,
            ["sg-0aaaaaaaaaaaaaaaa", "sg-0ccccccccccccccc0"]
        );
    }

    #[test]
    fn a_finding_without_a_usable_instance_id_names_no_instance() {
        for instance_id in [json!("web-1"), json!(null), json!(7)] {
            let mut event = port_probe_event();
            event["detail"]["resource"]["instanceDetails"]["instanceId"] = instance_id;
            assert_eq!(finding_event(&body(&event)).unwrap().instance, None);
        }
        let mut event = port_probe_event();
        event["detail"].as_object_mut().unwrap().remove("resource");
        assert_eq!(finding_event(&body(&event)).unwrap().instance, None);
    }

    #[test]
    fn severity_and_count_are_numbers_and_severity_may_be_numeric_text() {
        let read = |severity: Value, count: Value| {
            let mut event = port_probe_event();
            event["detail"]["severity"] = severity;
            event["detail"]["service"]["count"] = count;
            let finding = finding_event(&body(&event)).unwrap();
            (finding.severity.value(), finding.count)
        };
        assert_eq!(read(json!(8), json!(3)), (8.0, Some(3)));
        assert_eq!(read(json!(7.5), json!(3.0)), (7.5, Some(3)));
        assert_eq!(read(json!(" 5.3 "), json!("3")), (5.3, None));
    }

    #[test]
    fn an_api_call_finding_reads_as_another_kind_of_action() {
        let finding = finding_from_json(&json!({
            "id": ID,
            "accountId": "111122223333",
            "region": "eu-west-1",
            "type": "Recon:IAMUser/MaliciousIPCaller",
            "severity": 5,
            "title": "Reconnaissance API GetCallerIdentity was invoked from a known malicious IP.",
            "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"userName": "ci"}},
            "service": {"action": {"actionType": "AWS_API_CALL", "awsApiCallAction": {"api": "GetCallerIdentity"}}}
        }))
        .unwrap();
        assert_eq!(
            finding.action,
            Action::Other {
                action_type: Some("AWS_API_CALL".into())
            }
        );
        assert_eq!(finding.instance, None);
        assert_eq!(finding.updated_at, None);
    }

    #[test]
    fn a_finding_without_a_service_reads_with_no_action_and_no_flags() {
        let mut finding = brute_force("SSHBruteForce", "INBOUND", "TCP", 22);
        finding.as_object_mut().unwrap().remove("service");
        let finding = finding_from_json(&finding).unwrap();
        assert_eq!(finding.action, Action::Other { action_type: None });
        assert_eq!(
            (finding.sample, finding.archived, finding.count),
            (false, false, None)
        );
    }

    /// The good event with one change made to it.
    fn mutated(change: impl FnOnce(&mut Value)) -> String {
        let mut event = port_probe_event();
        change(&mut event);
        body(&event)
    }

    #[test]
    fn each_flaw_of_a_message_is_refused_with_its_own_error() {
        let long_source = format!("aws.{}", "x".repeat(300));
        let cases: Vec<(String, EventError, String)> = vec![
            (
                "{\"version\": \"0\",".into(),
                EventError::NotJson {
                    reason: "EOF while parsing a value at line 1 column 16".into(),
                },
                "the message is not JSON (EOF while parsing a value at line 1 column 16): \
                 expected an EventBridge event"
                    .into(),
            ),
            (
                "[1, 2]".into(),
                EventError::NotAnObject { found: "array" },
                "the message is a JSON array: expected an EventBridge event, a JSON object".into(),
            ),
            (
                mutated(|e| e["source"] = json!("aws.securityhub")),
                EventError::NotFromGuardDuty {
                    found: "\"aws.securityhub\"".into(),
                },
                "source is \"aws.securityhub\": expected aws.guardduty".into(),
            ),
            (
                mutated(|e| e["source"] = json!(long_source)),
                EventError::NotFromGuardDuty {
                    found: format!("\"aws.{}…", "x".repeat(95)),
                },
                format!(
                    "source is \"aws.{}…: expected aws.guardduty",
                    "x".repeat(95)
                ),
            ),
            (
                mutated(|e| e["detail-type"] = json!("GuardDuty Runtime Protection Healthy")),
                EventError::NotAFinding {
                    found: "\"GuardDuty Runtime Protection Healthy\"".into(),
                },
                "detail-type is \"GuardDuty Runtime Protection Healthy\": expected GuardDuty \
                 Finding"
                    .into(),
            ),
            (
                mutated(|e| {
                    e.as_object_mut().unwrap().remove("detail-type");
                }),
                EventError::NotAFinding {
                    found: "missing".into(),
                },
                "detail-type is missing: expected GuardDuty Finding".into(),
            ),
            (
                mutated(|e| e["detail"] = json!("{\"id\": \"x\"}")),
                EventError::NoDetail {
                    found: "\"{\\\"id\\\": \\\"x\\\"}\"".into(),
                },
                "detail is \"{\\\"id\\\": \\\"x\\\"}\": expected the finding, a JSON object".into(),
            ),
            (
                mutated(|e| {
                    e.as_object_mut().unwrap().remove("detail");
                }),
                EventError::NoDetail {
                    found: "missing".into(),
                },
                "detail is missing: expected the finding, a JSON object".into(),
            ),
            (
                mutated(|e| e["detail"]["id"] = json!("7ec2 f1a6")),
                EventError::UnusableId {
                    found: "\"7ec2 f1a6\"".into(),
                },
                "id is \"7ec2 f1a6\": expected the finding's id (letters, digits, - and _)".into(),
            ),
            (
                mutated(|e| {
                    e["detail"].as_object_mut().unwrap().remove("id");
                }),
                EventError::UnusableId {
                    found: "missing".into(),
                },
                "id is missing: expected the finding's id (letters, digits, - and _)".into(),
            ),
            (
                mutated(|e| e["detail"]["severity"] = json!("HIGH")),
                EventError::UnusableSeverity {
                    id: FindingId::parse(ID).unwrap(),
                    found: "\"HIGH\"".into(),
                },
                format!("severity of finding {ID} is \"HIGH\": expected a number"),
            ),
            (
                mutated(|e| e["detail"]["severity"] = json!("NaN")),
                EventError::UnusableSeverity {
                    id: FindingId::parse(ID).unwrap(),
                    found: "\"NaN\"".into(),
                },
                format!("severity of finding {ID} is \"NaN\": expected a number"),
            ),
            (
                mutated(|e| {
                    e["detail"].as_object_mut().unwrap().remove("severity");
                }),
                EventError::UnusableSeverity {
                    id: FindingId::parse(ID).unwrap(),
                    found: "missing".into(),
                },
                format!("severity of finding {ID} is missing: expected a number"),
            ),
        ];
        for (message, error, display) in cases {
            let refused = finding_event(&message).unwrap_err();
            assert_eq!(refused, error, "for {message:.120}");
            assert_eq!(refused.to_string(), display);
        }
    }

    #[test]
    fn an_sns_notification_is_refused_for_its_missing_source() {
        let notification = json!({
            "Type": "Notification",
            "MessageId": "5b1a2c3d-0000-4000-8000-000000000001",
            "TopicArn": "arn:aws:sns:eu-west-1:111122223333:guardduty",
            "Message": body(&port_probe_event()),
        });
        assert_eq!(
            finding_event(&body(&notification)),
            Err(EventError::NotFromGuardDuty {
                found: "missing".into()
            })
        );
    }

    #[test]
    fn a_finding_that_is_not_an_object_is_refused_for_its_missing_id() {
        assert_eq!(
            finding_from_json(&json!([ID])),
            Err(EventError::UnusableId {
                found: "missing".into()
            })
        );
    }

    #[test]
    fn every_refusal_has_a_category_of_its_own() {
        let id = FindingId::parse(ID).unwrap();
        let errors = [
            EventError::NotJson {
                reason: String::new(),
            },
            EventError::NotAnObject { found: "array" },
            EventError::NotFromGuardDuty {
                found: String::new(),
            },
            EventError::NotAFinding {
                found: String::new(),
            },
            EventError::NoDetail {
                found: String::new(),
            },
            EventError::UnusableId {
                found: String::new(),
            },
            EventError::UnusableSeverity {
                id,
                found: String::new(),
            },
        ];
        let mut categories: Vec<&str> = errors.iter().map(EventError::category).collect();
        categories.sort_unstable();
        categories.dedup();
        assert_eq!(categories.len(), errors.len());
    }
}
