//! ListDetectors, GetDetector, CreateDetector, and the answer for an unknown detector.

use aws_sdk_guardduty::error::ProvideErrorMetadata;
use guardduty_emulator::DEFAULT_DETECTOR_ID;

use crate::common::{DETECTOR, FindingJson, Harness};

#[tokio::test]
async fn a_fresh_emulator_lists_one_default_detector() {
    let harness = Harness::start().await;

    let listed = harness
        .client
        .list_detectors()
        .send()
        .await
        .expect("ListDetectors succeeds");

    assert_eq!(listed.detector_ids(), [DEFAULT_DETECTOR_ID]);
    assert_eq!(listed.next_token(), None);
    assert_eq!(DEFAULT_DETECTOR_ID.len(), 32);
}

#[tokio::test]
async fn a_posted_finding_creates_its_detector_which_replaces_the_default() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;

    let listed = harness
        .client
        .list_detectors()
        .send()
        .await
        .expect("ListDetectors succeeds");

    assert_eq!(listed.detector_ids(), [DETECTOR]);
    let detector = harness
        .client
        .get_detector()
        .detector_id(DETECTOR)
        .send()
        .await
        .expect("GetDetector succeeds");
    assert_eq!(
        detector.status().map(|status| status.as_str()),
        Some("ENABLED")
    );
    assert!(
        detector
            .service_role()
            .is_some_and(|role| role.contains("AWSServiceRoleForAmazonGuardDuty"))
    );
}

#[tokio::test]
async fn the_default_detector_answers_get_detector_and_list_findings() {
    let harness = Harness::start().await;

    let detector = harness
        .client
        .get_detector()
        .detector_id(DEFAULT_DETECTOR_ID)
        .send()
        .await
        .expect("GetDetector succeeds");
    let findings = harness
        .client
        .list_findings()
        .detector_id(DEFAULT_DETECTOR_ID)
        .send()
        .await
        .expect("ListFindings succeeds");

    assert!(detector.created_at().is_some());
    assert!(findings.finding_ids().is_empty());
}

#[tokio::test]
async fn an_unknown_detector_is_rejected_as_not_owned_by_the_account() {
    let harness = Harness::with(vec![FindingJson::new("f-1").json()]).await;
    let not_owned =
        "The request is rejected because the input detectorId is not owned by the current account.";

    let get = harness
        .client
        .get_detector()
        .detector_id("0123456789abcdef0123456789abcdef")
        .send()
        .await;
    let list = harness
        .client
        .list_findings()
        .detector_id("0123456789abcdef0123456789abcdef")
        .send()
        .await;

    let get = get.expect_err("GetDetector fails").into_service_error();
    assert!(get.is_bad_request_exception(), "{get:?}");
    assert_eq!(get.message(), Some(not_owned));
    let list = list.expect_err("ListFindings fails").into_service_error();
    assert!(list.is_bad_request_exception(), "{list:?}");
    assert_eq!(list.message(), Some(not_owned));
}

#[tokio::test]
async fn create_detector_returns_a_new_detector_that_is_then_listed() {
    let harness = Harness::start().await;

    let created = harness
        .client
        .create_detector()
        .enable(true)
        .send()
        .await
        .expect("CreateDetector succeeds");

    let detector_id = created.detector_id().expect("a detector id").to_owned();
    assert_eq!(detector_id.len(), 32);
    let listed = harness
        .client
        .list_detectors()
        .send()
        .await
        .expect("ListDetectors succeeds");
    assert_eq!(listed.detector_ids(), [detector_id.as_str()]);
    harness
        .client
        .get_detector()
        .detector_id(&detector_id)
        .send()
        .await
        .expect("GetDetector succeeds");
}

#[tokio::test]
async fn list_detectors_pages_by_max_results_and_rejects_a_forged_token() {
    let detectors = ["d-1", "d-2", "d-3"];
    let findings = detectors
        .iter()
        .map(|detector| {
            FindingJson::new(&format!("f-{detector}"))
                .detector(detector)
                .json()
        })
        .collect();
    let harness = Harness::with(findings).await;

    let first = harness
        .client
        .list_detectors()
        .max_results(2)
        .send()
        .await
        .expect("first page");
    let token = first.next_token().expect("a second page").to_owned();
    let second = harness
        .client
        .list_detectors()
        .max_results(2)
        .next_token(token)
        .send()
        .await
        .expect("second page");
    let forged = harness
        .client
        .list_detectors()
        .next_token("not-a-token")
        .send()
        .await;

    assert_eq!(first.detector_ids(), ["d-1", "d-2"]);
    assert_eq!(second.detector_ids(), ["d-3"]);
    assert_eq!(second.next_token(), None);
    assert!(
        forged
            .expect_err("a forged token fails")
            .into_service_error()
            .is_bad_request_exception()
    );
}
