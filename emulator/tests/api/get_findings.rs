//! GetFindings, and storing findings: what the SDK parses out of the stored JSON, limits,
//! replacing a finding, and rejecting an invalid one.

use aws_sdk_guardduty::error::ProvideErrorMetadata;
use aws_sdk_guardduty::types::{Condition, FindingCriteria, OrderBy, SortCriteria};
use serde_json::{Value, json};

use crate::common::{DETECTOR, FindingJson, Harness, http, port_probe_finding};

#[tokio::test]
async fn get_findings_round_trips_a_realistic_port_probe_finding() {
    let harness = Harness::with(vec![port_probe_finding("probe-1")]).await;

    let output = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("probe-1")
        .send()
        .await
        .expect("GetFindings succeeds");

    let [finding] = output.findings() else {
        panic!("one finding, got {:?}", output.findings())
    };
    assert_eq!(finding.id(), Some("probe-1"));
    assert_eq!(finding.r#type(), Some("Recon:EC2/PortProbeUnprotectedPort"));
    assert_eq!(finding.severity(), Some(2.0));
    let instance = finding
        .resource()
        .and_then(|resource| resource.instance_details())
        .expect("instance details");
    assert_eq!(instance.instance_id(), Some("i-0a1b2c3d4e5f60718"));
    let groups: Vec<Vec<&str>> = instance
        .network_interfaces()
        .iter()
        .map(|interface| {
            interface
                .security_groups()
                .iter()
                .filter_map(|group| group.group_id())
                .collect()
        })
        .collect();
    assert_eq!(
        groups,
        [
            vec!["sg-09d6be73", "sg-3bd7bf41"],
            vec!["sg-0c0ffee0", "sg-0deadbe0"]
        ]
    );
    let service = finding.service().expect("service");
    assert_eq!(service.archived(), Some(false));
    assert_eq!(service.count(), Some(3));
    let probes = service
        .action()
        .and_then(|action| action.port_probe_action())
        .expect("a port probe action")
        .port_probe_details();
    let ports: Vec<Option<i32>> = probes
        .iter()
        .map(|probe| probe.local_port_details().and_then(|port| port.port()))
        .collect();
    let remote_ips: Vec<Option<&str>> = probes
        .iter()
        .map(|probe| probe.remote_ip_details().and_then(|ip| ip.ip_address_v4()))
        .collect();
    assert_eq!(ports, [Some(22), Some(3389), Some(5432)]);
    assert_eq!(
        remote_ips,
        [
            Some("92.119.160.80"),
            Some("92.119.160.81"),
            Some("185.156.73.54")
        ]
    );
    let organization = probes[0]
        .remote_ip_details()
        .and_then(|ip| ip.organization())
        .expect("organization");
    assert_eq!(organization.asn(), Some("49505"));
    let info = service
        .additional_info()
        .and_then(|info| info.value())
        .expect("additional info value");
    let info: Value = serde_json::from_str(info).expect("additional info value is JSON text");
    assert_eq!(info.get("sample"), None, "a real finding is not a sample");
    assert_eq!(finding.updated_at(), Some(crate::common::UPDATED_AT));
}

#[tokio::test]
async fn eventbridge_style_additional_info_reaches_the_sdk_in_the_api_shape() {
    let mut finding = FindingJson::new("sample-1").json();
    finding["service"]["additionalInfo"] = json!({ "sample": true });
    let harness = Harness::with(vec![finding]).await;

    let output = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("sample-1")
        .send()
        .await
        .expect("GetFindings succeeds");

    let info = output.findings()[0]
        .service()
        .and_then(|service| service.additional_info())
        .expect("additional info");
    assert_eq!(info.r#type(), Some("default"));
    let value: Value = serde_json::from_str(info.value().unwrap_or_default()).expect("JSON text");
    assert_eq!(value["sample"], true);
}

#[tokio::test]
async fn get_findings_with_fifty_one_ids_is_a_bad_request() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;
    let ids: Vec<String> = (0..51).map(|index| format!("f-{index}")).collect();

    let result = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .set_finding_ids(Some(ids))
        .send()
        .await;

    let error = result.expect_err("too many ids").into_service_error();
    assert!(error.is_bad_request_exception(), "{error:?}");
    assert!(
        error
            .message()
            .is_some_and(|message| message.contains("findingIds")),
        "{error:?}"
    );
}

#[tokio::test]
async fn unknown_finding_ids_are_left_out_and_duplicates_answered_once() {
    let harness = Harness::with(vec![
        FindingJson::new("f-1").json(),
        FindingJson::new("f-2").json(),
    ])
    .await;

    let output = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("f-2")
        .finding_ids("missing")
        .finding_ids("f-1")
        .finding_ids("f-2")
        .send()
        .await
        .expect("GetFindings succeeds");

    let ids: Vec<Option<&str>> = output
        .findings()
        .iter()
        .map(|finding| finding.id())
        .collect();
    assert_eq!(ids, [Some("f-2"), Some("f-1")]);
}

#[tokio::test]
async fn get_findings_sorts_by_the_sort_criteria() {
    let harness = Harness::with(vec![
        FindingJson::new("old")
            .updated_at("2024-06-01T00:00:00Z")
            .json(),
        FindingJson::new("new")
            .updated_at("2024-06-20T00:00:00.000Z")
            .json(),
    ])
    .await;

    let output = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("old")
        .finding_ids("new")
        .sort_criteria(
            SortCriteria::builder()
                .attribute_name("updatedAt")
                .order_by(OrderBy::Desc)
                .build(),
        )
        .send()
        .await
        .expect("GetFindings succeeds");

    let ids: Vec<Option<&str>> = output
        .findings()
        .iter()
        .map(|finding| finding.id())
        .collect();
    assert_eq!(ids, [Some("new"), Some("old")]);
}

#[tokio::test]
async fn posting_the_same_id_twice_replaces_the_finding_in_place() {
    let harness = Harness::with(vec![
        FindingJson::new("first").json(),
        FindingJson::new("second").json(),
    ])
    .await;
    let replacement = json!({ "findings": [FindingJson::new("first").severity(8.0).json()] });

    let (status, body) = http(
        &harness.running.url,
        "POST",
        "/_emulator/findings",
        Some(&replacement.to_string()),
    )
    .await;

    assert_eq!(status, 200, "{body}");
    let listed = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .send()
        .await
        .expect("ListFindings succeeds");
    assert_eq!(
        listed.finding_ids(),
        ["first", "second"],
        "the replaced finding keeps its place"
    );
    let output = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("first")
        .send()
        .await
        .expect("GetFindings succeeds");
    assert_eq!(output.findings()[0].severity(), Some(8.0));
    assert_eq!(
        harness
            .running
            .emulator
            .finding("first")
            .map(|finding| finding["severity"].clone()),
        Some(json!(8.0))
    );
}

#[tokio::test]
async fn a_replaced_finding_is_listed_by_the_updated_at_of_the_replacement() {
    let harness = Harness::with(vec![
        FindingJson::new("f-1")
            .updated_at("2026-11-01T10:00:00.000Z")
            .json(),
    ])
    .await;
    let watermark = 1_793_530_800_000_i64; // 2026-11-01T11:00:00.000Z
    let since_watermark = || async {
        harness
            .client
            .list_findings()
            .detector_id(DETECTOR)
            .finding_criteria(
                FindingCriteria::builder()
                    .criterion(
                        "updatedAt",
                        Condition::builder()
                            .greater_than_or_equal(watermark)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("ListFindings succeeds")
            .finding_ids()
            .to_vec()
    };
    let post = |updated_at: &str| {
        let document =
            json!({ "findings": [FindingJson::new("f-1").updated_at(updated_at).json()] });
        let url = harness.running.url.clone();
        async move {
            http(
                &url,
                "POST",
                "/_emulator/findings",
                Some(&document.to_string()),
            )
            .await
        }
    };

    let before = since_watermark().await;
    let (status, body) = post("2026-11-01T12:00:00.000Z").await;
    let after_update = since_watermark().await;
    post("2026-11-01T09:00:00.000Z").await;
    let after_going_back = since_watermark().await;

    assert_eq!(status, 200, "{body}");
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(after_update, ["f-1"]);
    assert!(after_going_back.is_empty(), "{after_going_back:?}");
}

#[tokio::test]
async fn an_invalid_posted_finding_is_rejected_with_a_message_naming_the_field() {
    let harness = Harness::start().await;
    let mut missing_detector = FindingJson::new("bad").json();
    missing_detector["service"] = json!({ "archived": false });
    let document = json!({ "findings": [FindingJson::new("good").json(), missing_detector] });

    let (status, body) = http(
        &harness.running.url,
        "POST",
        "/_emulator/findings",
        Some(&document.to_string()),
    )
    .await;
    let (not_a_document, _) = http(
        &harness.running.url,
        "POST",
        "/_emulator/findings",
        Some("[1, 2]"),
    )
    .await;

    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_eq!(body["__type"], "InvalidInputException");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("findings[1].service.detectorId")),
        "{body}"
    );
    assert_eq!(not_a_document, 400);
    assert_eq!(
        harness.running.emulator.finding("good"),
        None,
        "nothing is stored from a rejected batch"
    );
    let severity_error = harness.running.emulator.upsert_findings(vec![
        FindingJson::new("x").json(),
        json!({ "id": "y", "type": "t", "severity": "high", "service": { "detectorId": "d" } }),
    ]);
    assert!(
        severity_error
            .expect_err("invalid severity")
            .contains("findings[1].severity")
    );
}
