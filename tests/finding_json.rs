//! The two ways a finding reaches the operator read the same: GetFindings through
//! the SDK adapter, and the finding's JSON as an EventBridge event delivers it
//! (`domain::event`). The GuardDuty emulator, in process, stores each finding and
//! serves it to the real SDK; no moto is needed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aws_sdk_guardduty::config::{BehaviorVersion, Credentials, Region};
use guardduty_operator::aws::guardduty::GuardDuty;
use guardduty_operator::domain::event::{finding_event, finding_from_json};
use guardduty_operator::domain::finding::{Action, Direction, Finding};
use guardduty_operator::domain::ids::FindingId;
use guardduty_operator::domain::known::Read;
use guardduty_operator::domain::policy::Policy;
use guardduty_operator::domain::security_group::{Exposure, Protocol};
use guardduty_operator::ports::FindingsSource;
use serde_json::{Value, json};

use crate::common::DETECTOR;
use crate::common::findings::{brute_force_finding, port_probe_finding, sample};

/// No other test uses this Region; the emulator serves a Region's findings only to
/// requests signed for it.
const REGION: &str = "eu-isoe-west-1";
const INSTANCE: &str = "i-0f00dfeed0000beef";
const GROUPS: [&str; 2] = ["sg-0bbbbbbbbbbbbbbbb", "sg-0aaaaaaaaaaaaaaaa"];

/// One finding, read three ways.
struct Readings {
    /// GetFindings through the SDK adapter.
    sdk: Finding,
    /// The JSON as the emulator stored and serves it (the API's shape).
    stored: Finding,
    /// The JSON as posted (`additionalInfo` possibly in the event's shape).
    posted: Finding,
}

/// Stores `finding` (in [`REGION`]) in a fresh emulator and reads it back.
async fn read_three_ways(mut finding: Value) -> Readings {
    finding["region"] = json!(REGION);
    let id = finding["id"]
        .as_str()
        .expect("the finding has an id")
        .to_string();
    let emulator = guardduty_emulator::spawn("127.0.0.1:0")
        .await
        .expect("start the GuardDuty emulator");
    emulator
        .emulator
        .upsert_findings(vec![finding.clone()])
        .expect("store the finding in the emulator");
    let guardduty = guardduty_client(&emulator.url);
    let detector = guardduty.detector(None).await.expect("find the detector");
    let mut by_id: BTreeMap<FindingId, Finding> = guardduty
        .findings(&detector, &Policy::test(), Read::Full)
        .await
        .expect("read the findings through GetFindings")
        .into_iter()
        .map(|f| (f.id.clone(), f))
        .collect();
    let sdk = by_id
        .remove(&FindingId::parse(&id).unwrap())
        .expect("GetFindings returns the stored finding");
    assert!(by_id.is_empty(), "only one finding was stored: {by_id:?}");
    let stored_json = emulator
        .emulator
        .finding(&id)
        .expect("the emulator holds it");
    Readings {
        sdk,
        stored: finding_from_json(&stored_json).expect("the stored JSON reads"),
        posted: finding_from_json(&finding).expect("the posted JSON reads"),
    }
}

/// Reads the finding three ways, checks they agree, and returns the finding.
async fn agreed(finding: Value) -> Finding {
    let readings = read_three_ways(finding).await;
    assert_eq!(
        readings.sdk, readings.stored,
        "GetFindings vs the stored JSON"
    );
    assert_eq!(readings.posted, readings.stored, "posted vs stored JSON");
    readings.sdk
}

fn guardduty_client(url: &str) -> GuardDuty {
    let config = aws_sdk_guardduty::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(url)
        .build();
    GuardDuty::new(aws_sdk_guardduty::Client::from_conf(config))
}

fn brute_force(id: &str, kind: &str, port: u16, direction: &str) -> Value {
    brute_force_finding(DETECTOR, id, kind, INSTANCE, &GROUPS, port, direction)
}

fn connection(finding: &Finding) -> (Direction, Option<&str>, Option<u16>) {
    match &finding.action {
        Action::NetworkConnection {
            direction,
            protocol,
            local_port,
            ..
        } => (*direction, protocol.as_deref(), *local_port),
        other => panic!("expected a network connection, got {other:?}"),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn a_port_probe_of_several_ports_reads_the_same_from_getfindings_and_from_json() {
    let finding = port_probe_finding(
        DETECTOR,
        "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        2.0,
        INSTANCE,
        &GROUPS,
        &[8080, 22, 3306],
    );
    let finding = agreed(finding).await;
    assert_eq!(finding.ports(), [22, 3306, 8080]);
    assert_eq!(
        finding.remote_ips(),
        [
            ip("198.51.100.10"),
            ip("198.51.100.11"),
            ip("198.51.100.12")
        ]
    );
    assert_eq!(
        finding
            .instance
            .expect("names its instance")
            .security_groups,
        ["sg-0aaaaaaaaaaaaaaaa", "sg-0bbbbbbbbbbbbbbbb"]
    );
}

#[tokio::test]
async fn an_inbound_ssh_brute_force_reads_the_same_from_getfindings_and_from_json() {
    let finding = agreed(brute_force(
        "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
        "SSHBruteForce",
        22,
        "INBOUND",
    ))
    .await;
    assert_eq!(
        connection(&finding),
        (Direction::Inbound, Some("TCP"), Some(22))
    );
}

#[tokio::test]
async fn an_rdp_brute_force_over_udp_reads_the_same_from_getfindings_and_from_json() {
    let mut finding = brute_force(
        "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3",
        "RDPBruteForce",
        3389,
        "INBOUND",
    );
    finding["service"]["action"]["networkConnectionAction"]["protocol"] = json!("UDP");
    let finding = agreed(finding).await;
    assert_eq!(
        finding.exposures(),
        [Exposure {
            protocol: Protocol::Udp,
            port: 3389
        }]
    );
}

#[tokio::test]
async fn an_outbound_brute_force_reads_the_same_from_getfindings_and_from_json() {
    let finding = agreed(brute_force(
        "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4",
        "SSHBruteForce",
        22,
        "OUTBOUND",
    ))
    .await;
    assert_eq!(connection(&finding).0, Direction::Outbound);
}

#[tokio::test]
async fn a_sample_posted_in_the_event_shape_reads_as_the_api_serves_it() {
    let mut finding = sample(port_probe_finding(
        DETECTOR,
        "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5",
        5.0,
        INSTANCE,
        &GROUPS,
        &[22],
    ));
    finding["service"]["additionalInfo"]["threatListName"] = json!("GeneratedFindingThreatList");
    let readings = read_three_ways(finding).await;
    assert_eq!(readings.sdk, readings.stored);
    assert_eq!(readings.posted, readings.stored);
    assert!(readings.sdk.sample, "the SDK path sees the sample flag");
}

#[tokio::test]
async fn an_ipv6_remote_address_reads_the_same_from_getfindings_and_from_json() {
    let mut finding = brute_force(
        "f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6f6",
        "SSHBruteForce",
        22,
        "INBOUND",
    );
    finding["service"]["action"]["networkConnectionAction"]["remoteIpDetails"] =
        json!({"ipAddressV6": "2001:db8:77::5"});
    let finding = agreed(finding).await;
    assert_eq!(finding.remote_ips(), [ip("2001:db8:77::5")]);
}

#[tokio::test]
async fn a_finding_without_an_instance_reads_the_same_from_getfindings_and_from_json() {
    let mut finding = port_probe_finding(
        DETECTOR,
        "a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7",
        5.0,
        INSTANCE,
        &GROUPS,
        &[22],
    );
    finding.as_object_mut().unwrap().remove("resource");
    let finding = agreed(finding).await;
    assert_eq!(finding.instance, None);
    assert_eq!(finding.ports(), [22]);
}

#[tokio::test]
async fn an_aws_api_call_finding_reads_the_same_from_getfindings_and_from_json() {
    let finding = agreed(json!({
        "id": "b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8",
        "arn": format!(
            "arn:aws:guardduty:{REGION}:123456789012:detector/{DETECTOR}/finding/b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8b8"
        ),
        "accountId": "123456789012",
        "region": REGION,
        "type": "Recon:IAMUser/MaliciousIPCaller",
        "severity": 5.0,
        "title": "Reconnaissance API GetCallerIdentity was invoked from a known malicious IP.",
        "updatedAt": "2026-11-28T11:00:00.000Z",
        "resource": {
            "resourceType": "AccessKey",
            "accessKeyDetails": {
                "accessKeyId": "ASIAEXAMPLEEXAMPLE00",
                "principalId": "AIDAEXAMPLEEXAMPLE00",
                "userName": "ci",
                "userType": "IAMUser"
            }
        },
        "service": {
            "detectorId": DETECTOR,
            "archived": false,
            "count": 2,
            "eventFirstSeen": "2026-11-28T10:00:00.000Z",
            "eventLastSeen": "2026-11-28T11:00:00.000Z",
            "action": {
                "actionType": "AWS_API_CALL",
                "awsApiCallAction": {
                    "api": "GetCallerIdentity",
                    "serviceName": "sts.amazonaws.com",
                    "callerType": "Remote IP",
                    "remoteIpDetails": {"ipAddressV4": "198.51.100.90"}
                }
            }
        }
    }))
    .await;
    assert_eq!(
        finding.action,
        Action::Other {
            action_type: Some("AWS_API_CALL".into())
        }
    );
    assert_eq!(finding.instance, None);
}

#[tokio::test]
async fn a_finding_in_an_eventbridge_event_reads_as_getfindings_serves_it() {
    let mut finding = sample(brute_force(
        "c9c9c9c9c9c9c9c9c9c9c9c9c9c9c9c9",
        "RDPBruteForce",
        3389,
        "INBOUND",
    ));
    finding["region"] = json!(REGION);
    let event = json!({
        "version": "0",
        "id": "0d5e1f2a-3b4c-4d5e-8f60-718293a4b5c6",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": "123456789012",
        "time": "2026-11-28T11:00:05Z",
        "region": REGION,
        "resources": [],
        "detail": finding.clone(),
    });
    let from_event = finding_event(&event.to_string()).expect("the event reads");
    let readings = read_three_ways(finding).await;
    assert_eq!(from_event, readings.sdk);
    assert!(from_event.sample);
    assert_eq!(
        connection(&from_event),
        (Direction::Inbound, Some("TCP"), Some(3389))
    );
}
