//! Archiving, sample findings, statistics, request counting and injected failures.

use aws_sdk_guardduty::error::ProvideErrorMetadata;
use aws_sdk_guardduty::types::{
    Condition, Feedback, FindingCriteria, FindingStatisticType, GroupByType,
};
use guardduty_emulator::DEFAULT_DETECTOR_ID;
use serde_json::Value;

use crate::common::{DETECTOR, FindingJson, Harness, UPDATED_AT, http};

fn unarchived() -> FindingCriteria {
    FindingCriteria::builder()
        .criterion(
            "service.archived",
            Condition::builder().equals("false").build(),
        )
        .build()
}

#[tokio::test]
async fn archiving_hides_a_finding_from_unarchived_listings_and_unarchiving_restores_it() {
    let harness = Harness::with(vec![
        FindingJson::new("keep").json(),
        FindingJson::new("archive-me").json(),
    ])
    .await;
    let unarchived_ids = || async {
        let output = harness
            .client
            .list_findings()
            .detector_id(DETECTOR)
            .finding_criteria(unarchived())
            .send()
            .await
            .expect("ListFindings succeeds");
        output.finding_ids().to_vec()
    };

    harness
        .client
        .archive_findings()
        .detector_id(DETECTOR)
        .finding_ids("archive-me")
        .send()
        .await
        .expect("ArchiveFindings succeeds");
    let after_archive = unarchived_ids().await;
    let archived = harness
        .running
        .emulator
        .finding("archive-me")
        .expect("still stored");
    harness
        .client
        .unarchive_findings()
        .detector_id(DETECTOR)
        .finding_ids("archive-me")
        .send()
        .await
        .expect("UnarchiveFindings succeeds");
    let after_unarchive = unarchived_ids().await;

    assert_eq!(after_archive, ["keep"]);
    assert_eq!(archived["service"]["archived"], true);
    assert!(
        archived["updatedAt"]
            .as_str()
            .is_some_and(|updated_at| updated_at > UPDATED_AT),
        "updatedAt is bumped"
    );
    assert_eq!(after_unarchive, ["keep", "archive-me"]);
}

#[tokio::test]
async fn archive_findings_with_fifty_one_ids_is_a_bad_request() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;
    let ids: Vec<String> = (0..51).map(|index| format!("f-{index}")).collect();

    let result = harness
        .client
        .archive_findings()
        .detector_id(DETECTOR)
        .set_finding_ids(Some(ids))
        .send()
        .await;

    assert!(
        result
            .expect_err("too many ids")
            .into_service_error()
            .is_bad_request_exception()
    );
    assert_eq!(
        harness
            .running
            .emulator
            .finding("f-1")
            .map(|finding| finding["service"]["archived"].clone()),
        Some(false.into())
    );
}

#[tokio::test]
async fn feedback_is_recorded_on_the_finding_and_an_unknown_value_is_rejected() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;

    harness
        .client
        .update_findings_feedback()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .feedback(Feedback::Useful)
        .comments("confirmed scanner")
        .send()
        .await
        .expect("UpdateFindingsFeedback succeeds");
    let unknown = harness
        .client
        .update_findings_feedback()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .feedback(Feedback::from("MAYBE"))
        .send()
        .await;

    let output = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .send()
        .await
        .expect("GetFindings succeeds");
    let feedback = output.findings()[0]
        .service()
        .and_then(|service| service.user_feedback());
    assert_eq!(feedback, Some("USEFUL"));
    assert!(
        unknown
            .expect_err("unknown feedback")
            .into_service_error()
            .is_bad_request_exception()
    );
}

#[tokio::test]
async fn feedback_and_its_comments_are_read_from_the_control_route() {
    let harness = Harness::with(vec![
        FindingJson::new("f-1").json(),
        FindingJson::new("f-2").json(),
        FindingJson::new("quiet").json(),
    ])
    .await;

    harness
        .client
        .update_findings_feedback()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .finding_ids("f-2")
        .feedback(Feedback::NotUseful)
        .send()
        .await
        .expect("UpdateFindingsFeedback succeeds");
    harness
        .client
        .update_findings_feedback()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .feedback(Feedback::Useful)
        .comments("remediated by guardduty-operator")
        .send()
        .await
        .expect("UpdateFindingsFeedback succeeds");
    let read = |id: &str| {
        let url = harness.running.url.clone();
        let path = format!("/_emulator/findings/{id}/feedback");
        async move {
            let (status, body) = http(&url, "GET", &path, None).await;
            (status, serde_json::from_str::<Value>(&body).expect("JSON"))
        }
    };

    let (status, f1) = read("f-1").await;
    let (_, f2) = read("f-2").await;
    let (_, quiet) = read("quiet").await;
    let (unknown_status, unknown) = read("no-such-finding").await;

    assert_eq!(status, 200);
    assert_eq!(f1["findingId"], "f-1");
    assert_eq!(f1["feedback"], "USEFUL");
    assert_eq!(f1["comments"], "remediated by guardduty-operator");
    let submissions = f1["submissions"].as_array().expect("a list");
    assert_eq!(submissions.len(), 2);
    assert_eq!(submissions[0]["feedback"], "NOT_USEFUL");
    assert_eq!(submissions[0].get("comments"), None);
    assert_eq!(submissions[1]["region"], "us-east-1");
    assert_eq!(submissions[1]["detectorId"], DETECTOR);
    assert!(
        submissions[1]["submittedAt"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    assert_eq!(f2["feedback"], "NOT_USEFUL");
    assert_eq!(f2.get("comments"), None);
    assert_eq!(quiet["submissions"], serde_json::json!([]));
    assert_eq!(quiet.get("feedback"), None);
    assert_eq!(unknown_status, 404);
    assert_eq!(unknown["__type"], "NotFoundException");
    assert_eq!(harness.running.emulator.feedback("f-1"), Some(f1));
    assert_eq!(harness.running.emulator.feedback("no-such-finding"), None);
}

#[tokio::test]
async fn feedback_stays_on_a_finding_that_is_replaced() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;
    harness
        .client
        .update_findings_feedback()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .feedback(Feedback::Useful)
        .send()
        .await
        .expect("UpdateFindingsFeedback succeeds");

    harness
        .running
        .emulator
        .upsert_findings(vec![FindingJson::new("f-1").severity(8.0).json()])
        .expect("valid finding");

    let output = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .send()
        .await
        .expect("GetFindings succeeds");
    let finding = &output.findings()[0];
    assert_eq!(finding.severity(), Some(8.0), "the finding was replaced");
    assert_eq!(
        finding
            .service()
            .and_then(|service| service.user_feedback()),
        Some("USEFUL")
    );
    let feedback = harness.running.emulator.feedback("f-1").expect("known");
    assert_eq!(feedback["feedback"], "USEFUL");
}

#[tokio::test]
async fn create_sample_findings_creates_default_samples_in_guardduty_style() {
    let harness = Harness::start().await;

    harness
        .client
        .create_sample_findings()
        .detector_id(DEFAULT_DETECTOR_ID)
        .send()
        .await
        .expect("CreateSampleFindings succeeds");

    let listed = harness
        .client
        .list_findings()
        .detector_id(DEFAULT_DETECTOR_ID)
        .send()
        .await
        .expect("ListFindings succeeds");
    let output = harness
        .client
        .get_findings()
        .detector_id(DEFAULT_DETECTOR_ID)
        .set_finding_ids(Some(listed.finding_ids().to_vec()))
        .send()
        .await
        .expect("GetFindings succeeds");
    let types: Vec<&str> = output
        .findings()
        .iter()
        .filter_map(|finding| finding.r#type())
        .collect();
    for expected in [
        "Recon:EC2/PortProbeUnprotectedPort",
        "UnauthorizedAccess:EC2/SSHBruteForce",
        "UnauthorizedAccess:EC2/RDPBruteForce",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    for finding in output.findings() {
        assert!(
            finding
                .title()
                .is_some_and(|title| title.starts_with("[SAMPLE] ")),
            "{:?}",
            finding.title()
        );
        let instance = finding
            .resource()
            .and_then(|resource| resource.instance_details())
            .expect("instance details");
        assert_eq!(instance.instance_id(), Some("i-99999999"));
        assert_eq!(
            instance.network_interfaces()[0].security_groups()[0].group_id(),
            Some("GeneratedFindingSecurityId")
        );
        let info = finding
            .service()
            .and_then(|service| service.additional_info())
            .and_then(|info| info.value())
            .expect("additional info");
        let info: Value = serde_json::from_str(info).expect("JSON text");
        assert_eq!(info["sample"], true);
    }
    let rdp = output
        .findings()
        .iter()
        .find(|finding| finding.r#type() == Some("UnauthorizedAccess:EC2/RDPBruteForce"))
        .expect("an RDP sample");
    let connection = rdp
        .service()
        .and_then(|service| service.action())
        .and_then(|action| action.network_connection_action())
        .expect("a connection");
    assert_eq!(connection.connection_direction(), Some("INBOUND"));
    assert_eq!(
        connection.local_port_details().and_then(|port| port.port()),
        Some(3389)
    );
    let probe = output
        .findings()
        .iter()
        .find(|finding| finding.r#type() == Some("Recon:EC2/PortProbeUnprotectedPort"))
        .expect("a probe sample");
    let probed = probe
        .service()
        .and_then(|service| service.action())
        .and_then(|action| action.port_probe_action())
        .expect("a port probe");
    assert!(
        probed.port_probe_details()[0]
            .local_port_details()
            .and_then(|port| port.port())
            .is_some()
    );
    assert_eq!(probe.severity(), Some(2.0));
    assert_eq!(
        harness.running.emulator.detector_ids(),
        [DEFAULT_DETECTOR_ID],
        "the default detector now holds findings"
    );
}

#[tokio::test]
async fn create_sample_findings_of_requested_types_and_rejects_malformed_types() {
    let harness = Harness::with(vec![FindingJson::new("real").json()]).await;

    harness
        .client
        .create_sample_findings()
        .detector_id(DETECTOR)
        .finding_types("UnauthorizedAccess:EC2/SSHBruteForce")
        .send()
        .await
        .expect("CreateSampleFindings succeeds");
    let malformed = harness
        .client
        .create_sample_findings()
        .detector_id(DETECTOR)
        .finding_types("not a type")
        .send()
        .await;

    let ids = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .send()
        .await
        .expect("ListFindings succeeds");
    assert_eq!(ids.finding_ids().len(), 2);
    let sample = harness
        .running
        .emulator
        .finding(&ids.finding_ids()[1])
        .expect("the sample");
    assert_eq!(sample["type"], "UnauthorizedAccess:EC2/SSHBruteForce");
    assert_eq!(
        sample["service"]["action"]["networkConnectionAction"]["localPortDetails"]["port"],
        22
    );
    assert!(
        malformed
            .expect_err("malformed type")
            .into_service_error()
            .is_bad_request_exception()
    );
}

#[tokio::test]
#[allow(
    deprecated,
    reason = "COUNT_BY_SEVERITY is deprecated in the model but still answered"
)]
async fn get_findings_statistics_counts_by_severity_honouring_criteria() {
    let harness = Harness::with(vec![
        FindingJson::new("a").severity(2.0).json(),
        FindingJson::new("b").severity(2.0).json(),
        FindingJson::new("c").severity(7.5).json(),
        FindingJson::new("d").severity(8.0).archived(true).json(),
    ])
    .await;

    let output = harness
        .client
        .get_findings_statistics()
        .detector_id(DETECTOR)
        .finding_statistic_types(FindingStatisticType::CountBySeverity)
        .finding_criteria(unarchived())
        .send()
        .await
        .expect("GetFindingsStatistics succeeds");

    let counts = output
        .finding_statistics()
        .and_then(|statistics| statistics.count_by_severity())
        .expect("counts");
    let mut counts: Vec<(&str, i32)> = counts
        .iter()
        .map(|(severity, count)| (severity.as_str(), *count))
        .collect();
    counts.sort();
    assert_eq!(counts, [("2.0", 2), ("7.5", 1)]);
}

#[tokio::test]
async fn get_findings_statistics_groups_by_severity_as_the_model_recommends() {
    let harness = Harness::with(vec![
        FindingJson::new("a").severity(2.0).json(),
        FindingJson::new("b").severity(8.0).json(),
        FindingJson::new("c").severity(8.0).json(),
    ])
    .await;

    let output = harness
        .client
        .get_findings_statistics()
        .detector_id(DETECTOR)
        .group_by(GroupByType::Severity)
        .order_by(aws_sdk_guardduty::types::OrderBy::Asc)
        .send()
        .await
        .expect("GetFindingsStatistics succeeds");

    let groups = output
        .finding_statistics()
        .expect("statistics")
        .grouped_by_severity();
    let summary: Vec<(Option<f64>, Option<i32>)> = groups
        .iter()
        .map(|group| (group.severity(), group.total_findings()))
        .collect();
    assert_eq!(summary, [(Some(2.0), Some(1)), (Some(8.0), Some(2))]);
}

#[tokio::test]
async fn get_findings_statistics_groups_by_finding_type_most_frequent_first() {
    let harness = Harness::with(vec![
        FindingJson::new("a").json(),
        FindingJson::new("b")
            .of_type("Recon:EC2/PortProbeUnprotectedPort")
            .json(),
        FindingJson::new("c")
            .of_type("Recon:EC2/PortProbeUnprotectedPort")
            .updated_at("2024-06-11T00:00:00Z")
            .json(),
    ])
    .await;

    let output = harness
        .client
        .get_findings_statistics()
        .detector_id(DETECTOR)
        .group_by(GroupByType::FindingType)
        .send()
        .await
        .expect("GetFindingsStatistics succeeds");

    let groups = output
        .finding_statistics()
        .expect("statistics")
        .grouped_by_finding_type();
    let summary: Vec<(Option<&str>, Option<i32>)> = groups
        .iter()
        .map(|group| (group.finding_type(), group.total_findings()))
        .collect();
    assert_eq!(
        summary,
        [
            (Some("Recon:EC2/PortProbeUnprotectedPort"), Some(2)),
            (Some("UnauthorizedAccess:EC2/SSHBruteForce"), Some(1))
        ]
    );
    let latest = groups[0].last_generated_at().expect("lastGeneratedAt");
    assert_eq!(latest.secs(), 1_718_064_000);
}

#[tokio::test]
async fn every_operation_is_counted_including_failures() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;

    harness
        .client
        .list_detectors()
        .send()
        .await
        .expect("ListDetectors succeeds");
    harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .send()
        .await
        .expect("ListFindings succeeds");
    let _ = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .max_results(0)
        .send()
        .await;
    harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .send()
        .await
        .expect("GetFindings succeeds");
    let (status, body) = http(&harness.running.url, "GET", "/_emulator/stats", None).await;

    let counts = harness.running.emulator.request_counts();
    assert_eq!(counts.get("ListDetectors"), Some(&1));
    assert_eq!(counts.get("ListFindings"), Some(&2));
    assert_eq!(counts.get("GetFindings"), Some(&1));
    assert_eq!(status, 200);
    let over_http: Value = serde_json::from_str(&body).expect("JSON counts");
    assert_eq!(over_http["ListFindings"], 2);
}

#[tokio::test]
async fn injected_internal_errors_are_typed_and_retried_by_the_sdk() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;

    harness.running.emulator.fail_next("ListFindings", 1);
    let retried = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .send()
        .await;
    harness.running.emulator.fail_next("GetFindings", 10);
    let exhausted = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("f-1")
        .send()
        .await;

    assert_eq!(
        retried.expect("the SDK retries a 500").finding_ids(),
        ["f-1"]
    );
    let error = exhausted
        .expect_err("every attempt fails")
        .into_service_error();
    assert!(error.is_internal_server_error_exception(), "{error:?}");
    assert!(
        error
            .message()
            .is_some_and(|message| message.contains("injected"))
    );
    let counts = harness.running.emulator.request_counts();
    assert_eq!(counts.get("ListFindings"), Some(&2));
    assert_eq!(
        counts.get("GetFindings"),
        Some(&3),
        "the standard retry mode makes three attempts"
    );
}
