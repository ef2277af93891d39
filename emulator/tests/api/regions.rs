//! Regions and accounts: each Region (the one the SDK signs for) has its own detectors
//! and serves only its own findings; a detector serves its member accounts' findings too.

use aws_sdk_guardduty::Client;
use aws_sdk_guardduty::error::ProvideErrorMetadata;
use aws_sdk_guardduty::types::{Condition, Feedback, FindingCriteria, GroupByType};
use guardduty_emulator::{DEFAULT_DETECTOR_ID, DEFAULT_REGION, default_detector_id};
use serde_json::Value;

use crate::common::{DETECTOR, FindingJson, Harness, http_with_headers};

const NOT_OWNED: &str =
    "The request is rejected because the input detectorId is not owned by the current account.";
const EU: &str = "eu-west-1";
const EU_DETECTOR: &str = "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0";
const MEMBER: &str = "210987654321";

async fn detector_ids(client: &Client) -> Vec<String> {
    client
        .list_detectors()
        .send()
        .await
        .expect("ListDetectors succeeds")
        .detector_ids()
        .to_vec()
}

async fn finding_ids(client: &Client, detector_id: &str) -> Vec<String> {
    client
        .list_findings()
        .detector_id(detector_id)
        .send()
        .await
        .expect("ListFindings succeeds")
        .finding_ids()
        .to_vec()
}

fn signed_for(region: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEMULATOR/20240610/{region}/guardduty/aws4_request, SignedHeaders=host;x-amz-date, Signature=0"
    )
}

#[tokio::test]
async fn each_region_has_its_own_predictable_default_detector() {
    let harness = Harness::start().await;
    let eu = harness.client_in(EU).await;
    let sydney = harness.client_in("ap-southeast-2").await;

    let in_us_east_1 = detector_ids(&harness.client).await;
    let in_eu = detector_ids(&eu).await;
    let in_sydney = detector_ids(&sydney).await;
    let eu_detector = eu
        .get_detector()
        .detector_id(default_detector_id(EU))
        .send()
        .await;

    assert_eq!(in_us_east_1, [DEFAULT_DETECTOR_ID]);
    assert_eq!(default_detector_id(DEFAULT_REGION), DEFAULT_DETECTOR_ID);
    assert_eq!(in_eu, [default_detector_id(EU)]);
    assert_eq!(in_sydney, [default_detector_id("ap-southeast-2")]);
    assert_ne!(in_eu, in_sydney);
    assert_ne!(in_eu, in_us_east_1);
    assert!(
        eu_detector
            .expect("GetDetector succeeds in its Region")
            .created_at()
            .is_some()
    );
    assert_eq!(
        harness.running.emulator.detector_ids_in(EU),
        [default_detector_id(EU)]
    );
}

#[tokio::test]
async fn a_finding_creates_its_detector_in_its_own_region_only() {
    let harness = Harness::with(vec![
        FindingJson::new("eu-1")
            .region(EU)
            .detector(EU_DETECTOR)
            .json(),
    ])
    .await;
    let eu = harness.client_in(EU).await;

    let in_eu = detector_ids(&eu).await;
    let in_us_east_1 = detector_ids(&harness.client).await;
    let listed = finding_ids(&eu, EU_DETECTOR).await;

    assert_eq!(in_eu, [EU_DETECTOR]);
    assert_eq!(
        in_us_east_1,
        [DEFAULT_DETECTOR_ID],
        "us-east-1 keeps its default"
    );
    assert_eq!(listed, ["eu-1"]);
    assert_eq!(
        harness.running.emulator.detectors_by_region(),
        [
            (EU.to_owned(), vec![EU_DETECTOR.to_owned()]),
            (
                DEFAULT_REGION.to_owned(),
                vec![DEFAULT_DETECTOR_ID.to_owned()]
            ),
        ]
        .into_iter()
        .collect()
    );
}

#[tokio::test]
#[allow(
    deprecated,
    reason = "COUNT_BY_SEVERITY is deprecated in the model but still answered"
)]
async fn a_detector_of_another_region_is_not_found() {
    let harness = Harness::with(vec![
        FindingJson::new("eu-1")
            .region(EU)
            .detector(EU_DETECTOR)
            .json(),
    ])
    .await;
    let us = &harness.client;
    let rejected = |error: Option<aws_sdk_guardduty::Error>, operation: &str| {
        let error = error.unwrap_or_else(|| panic!("{operation} succeeded in another Region"));
        assert!(
            matches!(error, aws_sdk_guardduty::Error::BadRequestException(_)),
            "{operation}: {error:?}"
        );
        assert_eq!(error.message(), Some(NOT_OWNED), "{operation}");
    };

    rejected(
        us.get_detector()
            .detector_id(EU_DETECTOR)
            .send()
            .await
            .err()
            .map(Into::into),
        "GetDetector",
    );
    rejected(
        us.list_findings()
            .detector_id(EU_DETECTOR)
            .send()
            .await
            .err()
            .map(Into::into),
        "ListFindings",
    );
    rejected(
        us.get_findings()
            .detector_id(EU_DETECTOR)
            .finding_ids("eu-1")
            .send()
            .await
            .err()
            .map(Into::into),
        "GetFindings",
    );
    rejected(
        us.archive_findings()
            .detector_id(EU_DETECTOR)
            .finding_ids("eu-1")
            .send()
            .await
            .err()
            .map(Into::into),
        "ArchiveFindings",
    );
    rejected(
        us.unarchive_findings()
            .detector_id(EU_DETECTOR)
            .finding_ids("eu-1")
            .send()
            .await
            .err()
            .map(Into::into),
        "UnarchiveFindings",
    );
    rejected(
        us.update_findings_feedback()
            .detector_id(EU_DETECTOR)
            .finding_ids("eu-1")
            .feedback(Feedback::Useful)
            .send()
            .await
            .err()
            .map(Into::into),
        "UpdateFindingsFeedback",
    );
    rejected(
        us.get_findings_statistics()
            .detector_id(EU_DETECTOR)
            .finding_statistic_types(
                aws_sdk_guardduty::types::FindingStatisticType::CountBySeverity,
            )
            .send()
            .await
            .err()
            .map(Into::into),
        "GetFindingsStatistics",
    );
    rejected(
        us.create_sample_findings()
            .detector_id(EU_DETECTOR)
            .send()
            .await
            .err()
            .map(Into::into),
        "CreateSampleFindings",
    );
    let eu = harness.client_in(EU).await;
    rejected(
        eu.list_findings()
            .detector_id(DEFAULT_DETECTOR_ID)
            .send()
            .await
            .err()
            .map(Into::into),
        "ListFindings of us-east-1's default detector in eu-west-1",
    );

    let stored = harness.running.emulator.finding("eu-1").expect("stored");
    assert_eq!(stored["service"]["archived"], false, "nothing was archived");
    assert_eq!(stored["service"].get("userFeedback"), None);
    assert_eq!(
        harness.running.emulator.findings().len(),
        1,
        "no sample was created"
    );
}

#[tokio::test]
async fn findings_of_one_detector_id_in_two_regions_are_kept_apart() {
    let harness = Harness::with(vec![
        FindingJson::new("us-1").json(),
        FindingJson::new("eu-1").region(EU).json(),
        FindingJson::new("eu-2").region(EU).json(),
    ])
    .await;
    let eu = harness.client_in(EU).await;

    let us_listed = finding_ids(&harness.client, DETECTOR).await;
    let eu_listed = finding_ids(&eu, DETECTOR).await;
    let us_got = harness
        .client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("us-1")
        .finding_ids("eu-1")
        .send()
        .await
        .expect("GetFindings succeeds");
    eu.archive_findings()
        .detector_id(DETECTOR)
        .finding_ids("eu-1")
        .finding_ids("us-1")
        .send()
        .await
        .expect("ArchiveFindings succeeds");

    assert_eq!(us_listed, ["us-1"]);
    assert_eq!(eu_listed, ["eu-1", "eu-2"]);
    let got: Vec<Option<&str>> = us_got
        .findings()
        .iter()
        .map(|finding| finding.id())
        .collect();
    assert_eq!(
        got,
        [Some("us-1")],
        "another Region's finding is left out like an unknown id"
    );
    assert_eq!(us_got.findings()[0].region(), Some("us-east-1"));
    let archived = |id: &str| {
        harness
            .running
            .emulator
            .finding(id)
            .map(|finding| finding["service"]["archived"].clone())
    };
    assert_eq!(archived("eu-1"), Some(true.into()));
    assert_eq!(
        archived("us-1"),
        Some(false.into()),
        "an archive in eu-west-1 leaves us-east-1's finding alone"
    );
}

#[tokio::test]
async fn a_next_token_of_one_region_is_refused_in_another() {
    let findings = ["us-1", "us-2"]
        .into_iter()
        .map(|id| FindingJson::new(id).json())
        .chain(
            ["eu-1", "eu-2"]
                .into_iter()
                .map(|id| FindingJson::new(id).region(EU).json()),
        )
        .collect();
    let harness = Harness::with(findings).await;
    let eu = harness.client_in(EU).await;
    let first = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .max_results(1)
        .send()
        .await
        .expect("first page");
    let token = first.next_token().expect("a second page").to_owned();

    let elsewhere = eu
        .list_findings()
        .detector_id(DETECTOR)
        .max_results(1)
        .next_token(&token)
        .send()
        .await;
    let here = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .max_results(1)
        .next_token(&token)
        .send()
        .await
        .expect("the token works in its own Region");

    assert!(
        elsewhere
            .expect_err("a token of another Region")
            .into_service_error()
            .is_bad_request_exception()
    );
    assert_eq!(first.finding_ids(), ["us-1"]);
    assert_eq!(here.finding_ids(), ["us-2"]);
}

#[tokio::test]
async fn create_detector_and_sample_findings_stay_in_the_region_of_the_request() {
    let harness = Harness::start().await;
    let eu = harness.client_in(EU).await;
    let sydney = harness.client_in("ap-southeast-2").await;

    let created = sydney
        .create_detector()
        .enable(true)
        .send()
        .await
        .expect("CreateDetector succeeds")
        .detector_id()
        .expect("a detector id")
        .to_owned();
    eu.create_sample_findings()
        .detector_id(default_detector_id(EU))
        .finding_types("Recon:EC2/PortProbeUnprotectedPort")
        .send()
        .await
        .expect("CreateSampleFindings succeeds");

    assert_eq!(detector_ids(&sydney).await, [created.as_str()]);
    assert_eq!(detector_ids(&harness.client).await, [DEFAULT_DETECTOR_ID]);
    assert_eq!(detector_ids(&eu).await, [default_detector_id(EU)]);
    let samples = finding_ids(&eu, &default_detector_id(EU)).await;
    assert_eq!(samples.len(), 1);
    let sample = harness
        .running
        .emulator
        .finding(&samples[0])
        .expect("stored");
    assert_eq!(sample["region"], EU);
    assert!(
        sample["arn"]
            .as_str()
            .is_some_and(|arn| arn.starts_with("arn:aws:guardduty:eu-west-1:")),
        "{}",
        sample["arn"]
    );
    assert!(
        finding_ids(&harness.client, DEFAULT_DETECTOR_ID)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_request_without_a_readable_signature_is_answered_for_us_east_1() {
    let harness = Harness::start().await;
    let url = &harness.running.url;

    let (unsigned_status, unsigned) = http_with_headers(url, "GET", "/detector", &[], None).await;
    let (_, garbled) =
        http_with_headers(url, "GET", "/detector", &["Authorization: Basic abc"], None).await;
    let (_, signed) = http_with_headers(url, "GET", "/detector", &[&signed_for(EU)], None).await;

    let ids = |body: &str| {
        let body: Value = serde_json::from_str(body).expect("JSON");
        body["detectorIds"].clone()
    };
    assert_eq!(unsigned_status, 200);
    assert_eq!(ids(&unsigned), serde_json::json!([DEFAULT_DETECTOR_ID]));
    assert_eq!(ids(&garbled), serde_json::json!([DEFAULT_DETECTOR_ID]));
    assert_eq!(ids(&signed), serde_json::json!([default_detector_id(EU)]));
}

#[tokio::test]
async fn findings_of_member_accounts_are_served_by_the_administrators_detector() {
    let harness = Harness::with(vec![
        FindingJson::new("admin-1").json(),
        FindingJson::new("member-1").account(MEMBER).json(),
        FindingJson::new("member-2")
            .account(MEMBER)
            .severity(8.0)
            .json(),
    ])
    .await;
    let client = &harness.client;

    let listed = finding_ids(client, DETECTOR).await;
    let of_member = client
        .list_findings()
        .detector_id(DETECTOR)
        .finding_criteria(
            FindingCriteria::builder()
                .criterion("accountId", Condition::builder().equals(MEMBER).build())
                .build(),
        )
        .send()
        .await
        .expect("ListFindings succeeds");
    let got = client
        .get_findings()
        .detector_id(DETECTOR)
        .finding_ids("admin-1")
        .finding_ids("member-1")
        .send()
        .await
        .expect("GetFindings succeeds");
    client
        .archive_findings()
        .detector_id(DETECTOR)
        .finding_ids("member-2")
        .send()
        .await
        .expect("ArchiveFindings succeeds");
    client
        .update_findings_feedback()
        .detector_id(DETECTOR)
        .finding_ids("member-1")
        .feedback(Feedback::NotUseful)
        .send()
        .await
        .expect("UpdateFindingsFeedback succeeds");
    let by_account = client
        .get_findings_statistics()
        .detector_id(DETECTOR)
        .group_by(GroupByType::Account)
        .send()
        .await
        .expect("GetFindingsStatistics succeeds");

    assert_eq!(listed, ["admin-1", "member-1", "member-2"]);
    assert_eq!(of_member.finding_ids(), ["member-1", "member-2"]);
    let accounts: Vec<(Option<&str>, Option<&str>)> = got
        .findings()
        .iter()
        .map(|finding| (finding.id(), finding.account_id()))
        .collect();
    assert_eq!(
        accounts,
        [
            (Some("admin-1"), Some("123456789012")),
            (Some("member-1"), Some(MEMBER))
        ]
    );
    let stored = |id: &str| harness.running.emulator.finding(id).expect("stored");
    assert_eq!(stored("member-2")["service"]["archived"], true);
    assert_eq!(stored("member-1")["service"]["userFeedback"], "NOT_USEFUL");
    let mut groups: Vec<(Option<&str>, Option<i32>)> = by_account
        .finding_statistics()
        .expect("statistics")
        .grouped_by_account()
        .iter()
        .map(|group| (group.account_id(), group.total_findings()))
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [(Some("123456789012"), Some(1)), (Some(MEMBER), Some(2))]
    );
}
