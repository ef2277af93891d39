//! ListFindings: FindingCriteria operators on the fields the operator filters by, sorting,
//! and pagination.

use std::collections::BTreeSet;

use aws_sdk_guardduty::Client;
use aws_sdk_guardduty::types::{Condition, FindingCriteria, OrderBy, SortCriteria};
use serde_json::Value;

use crate::common::{DETECTOR, FindingJson, Harness, UPDATED_AT_MS};

/// The ids ListFindings returns on its first page for `criteria`.
async fn listed(client: &Client, criteria: FindingCriteria) -> Vec<String> {
    let output = client
        .list_findings()
        .detector_id(DETECTOR)
        .finding_criteria(criteria)
        .send()
        .await
        .expect("ListFindings succeeds");
    output.finding_ids().to_vec()
}

fn criteria(conditions: Vec<(&str, Condition)>) -> FindingCriteria {
    conditions
        .into_iter()
        .fold(FindingCriteria::builder(), |builder, (field, condition)| {
            builder.criterion(field, condition)
        })
        .build()
}

fn numbered(count: usize) -> Vec<Value> {
    (0..count)
        .map(|index| FindingJson::new(&format!("f-{index:05}")).json())
        .collect()
}

#[tokio::test]
async fn severity_type_and_archived_criteria_select_only_matching_findings() {
    let harness = Harness::with(vec![
        FindingJson::new("high-ssh").severity(7.5).json(),
        FindingJson::new("low-ssh").severity(5.0).json(),
        FindingJson::new("high-rdp")
            .severity(8.0)
            .of_type("UnauthorizedAccess:EC2/RDPBruteForce")
            .json(),
        FindingJson::new("high-ssh-archived")
            .severity(8.0)
            .archived(true)
            .json(),
        FindingJson::new("critical-other")
            .severity(9.0)
            .of_type("Trojan:EC2/DNSDataExfiltration")
            .json(),
    ])
    .await;

    let ids = listed(
        &harness.client,
        criteria(vec![
            (
                "severity",
                Condition::builder().greater_than_or_equal(7).build(),
            ),
            (
                "type",
                Condition::builder()
                    .equals("UnauthorizedAccess:EC2/SSHBruteForce")
                    .equals("UnauthorizedAccess:EC2/RDPBruteForce")
                    .equals("Recon:EC2/PortProbeUnprotectedPort")
                    .build(),
            ),
            (
                "service.archived",
                Condition::builder().equals("false").build(),
            ),
        ]),
    )
    .await;

    assert_eq!(ids, ["high-ssh", "high-rdp"]);
}

#[tokio::test]
async fn updated_at_criterion_is_compared_in_epoch_milliseconds() {
    let harness = Harness::with(vec![
        FindingJson::new("older")
            .updated_at("2024-06-10T07:59:59.999Z")
            .json(),
        FindingJson::new("exact").json(),
        FindingJson::new("newer")
            .updated_at("2024-06-10T08:00:01Z")
            .json(),
    ])
    .await;

    let since = listed(
        &harness.client,
        criteria(vec![(
            "updatedAt",
            Condition::builder()
                .greater_than_or_equal(UPDATED_AT_MS)
                .build(),
        )]),
    )
    .await;
    let after = listed(
        &harness.client,
        criteria(vec![(
            "updatedAt",
            Condition::builder().greater_than(UPDATED_AT_MS).build(),
        )]),
    )
    .await;
    let before = listed(
        &harness.client,
        criteria(vec![(
            "updatedAt",
            Condition::builder().less_than(UPDATED_AT_MS).build(),
        )]),
    )
    .await;

    assert_eq!(since, ["exact", "newer"]);
    assert_eq!(after, ["newer"]);
    assert_eq!(before, ["older"]);
}

#[tokio::test]
async fn updated_at_less_than_or_equal_includes_its_bound_and_bounds_combine_into_a_window() {
    let harness = Harness::with(vec![
        FindingJson::new("october")
            .updated_at("2026-10-31T23:59:59.999Z")
            .json(),
        FindingJson::new("at-ten")
            .updated_at("2026-11-01T10:00:00.000Z")
            .json(),
        FindingJson::new("later")
            .updated_at("2026-11-01T10:00:00.001Z")
            .json(),
        FindingJson::new("december")
            .updated_at("2026-12-01T00:00:00Z")
            .json(),
    ])
    .await;
    let ten = 1_793_527_200_000_i64; // 2026-11-01T10:00:00.000Z
    let november = 1_793_491_200_000_i64; // 2026-11-01T00:00:00.000Z
    let december = 1_796_083_200_000_i64; // 2026-12-01T00:00:00.000Z

    let up_to_ten = listed(
        &harness.client,
        criteria(vec![(
            "updatedAt",
            Condition::builder().less_than_or_equal(ten).build(),
        )]),
    )
    .await;
    let in_november = listed(
        &harness.client,
        criteria(vec![(
            "updatedAt",
            Condition::builder()
                .greater_than_or_equal(november)
                .less_than(december)
                .build(),
        )]),
    )
    .await;
    let exactly_ten = listed(
        &harness.client,
        criteria(vec![(
            "updatedAt",
            Condition::builder().equals(ten.to_string()).build(),
        )]),
    )
    .await;

    assert_eq!(up_to_ten, ["october", "at-ten"]);
    assert_eq!(in_november, ["at-ten", "later"]);
    assert_eq!(exactly_ten, ["at-ten"]);
}

#[tokio::test]
async fn not_equals_excludes_the_listed_values() {
    let harness = Harness::with(vec![
        FindingJson::new("ssh").json(),
        FindingJson::new("rdp")
            .of_type("UnauthorizedAccess:EC2/RDPBruteForce")
            .json(),
        FindingJson::new("probe")
            .of_type("Recon:EC2/PortProbeUnprotectedPort")
            .json(),
    ])
    .await;

    let ids = listed(
        &harness.client,
        criteria(vec![(
            "type",
            Condition::builder()
                .not_equals("UnauthorizedAccess:EC2/SSHBruteForce")
                .not_equals("Recon:EC2/PortProbeUnprotectedPort")
                .build(),
        )]),
    )
    .await;

    assert_eq!(ids, ["rdp"]);
}

#[tokio::test]
#[allow(
    deprecated,
    reason = "the deprecated operators are what this test sends"
)]
async fn deprecated_operators_filter_like_the_current_ones() {
    let harness = Harness::with(vec![
        FindingJson::new("two").severity(2.0).json(),
        FindingJson::new("five").severity(5.0).json(),
        FindingJson::new("eight")
            .severity(8.0)
            .archived(true)
            .json(),
    ])
    .await;

    let gte = listed(
        &harness.client,
        criteria(vec![("severity", Condition::builder().gte(5).build())]),
    )
    .await;
    let lt = listed(
        &harness.client,
        criteria(vec![("severity", Condition::builder().lt(5).build())]),
    )
    .await;
    let eq = listed(
        &harness.client,
        criteria(vec![(
            "service.archived",
            Condition::builder().eq("true").build(),
        )]),
    )
    .await;
    let neq = listed(
        &harness.client,
        criteria(vec![(
            "service.archived",
            Condition::builder().neq("true").build(),
        )]),
    )
    .await;
    let range = listed(
        &harness.client,
        criteria(vec![(
            "severity",
            Condition::builder().gt(2).lte(8).build(),
        )]),
    )
    .await;

    assert_eq!(gte, ["five", "eight"]);
    assert_eq!(lt, ["two"]);
    assert_eq!(eq, ["eight"]);
    assert_eq!(neq, ["two", "five"]);
    assert_eq!(range, ["five", "eight"]);
}

#[tokio::test]
async fn resource_and_action_fields_filter_through_nested_arrays() {
    let harness = Harness::with(vec![
        crate::common::port_probe_finding("probe"),
        FindingJson::new("inbound").instance("i-0inbound").json(),
        FindingJson::new("outbound")
            .instance("i-0outbound")
            .outbound()
            .json(),
    ])
    .await;

    let by_group = listed(
        &harness.client,
        criteria(vec![(
            "resource.instanceDetails.networkInterfaces.securityGroups.groupId",
            Condition::builder().equals("sg-0deadbe0").build(),
        )]),
    )
    .await;
    let inbound = listed(
        &harness.client,
        criteria(vec![(
            "service.action.networkConnectionAction.connectionDirection",
            Condition::builder().equals("INBOUND").build(),
        )]),
    )
    .await;
    let by_instance = listed(
        &harness.client,
        criteria(vec![
            (
                "resource.instanceDetails.instanceId",
                Condition::builder().equals("i-0outbound").build(),
            ),
            (
                "resource.resourceType",
                Condition::builder().equals("Instance").build(),
            ),
            (
                "accountId",
                Condition::builder().equals("123456789012").build(),
            ),
            ("region", Condition::builder().equals("us-east-1").build()),
        ]),
    )
    .await;
    let by_port = listed(
        &harness.client,
        criteria(vec![(
            "service.action.portProbeAction.portProbeDetails.localPortDetails.port",
            Condition::builder().equals("3389").build(),
        )]),
    )
    .await;
    let by_id = listed(
        &harness.client,
        criteria(vec![("id", Condition::builder().equals("inbound").build())]),
    )
    .await;

    assert_eq!(by_group, ["probe"]);
    assert_eq!(inbound, ["inbound"]);
    assert_eq!(by_instance, ["outbound"]);
    assert_eq!(by_port, ["probe"]);
    assert_eq!(by_id, ["inbound"]);
}

#[tokio::test]
async fn list_findings_pages_hold_at_most_fifty_ids_and_cover_every_match() {
    let harness = Harness::with(numbered(120)).await;

    let mut page_sizes = Vec::new();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = harness
            .client
            .list_findings()
            .detector_id(DETECTOR)
            .max_results(50)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("ListFindings succeeds");
        page_sizes.push(page.finding_ids().len());
        seen.extend(page.finding_ids().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }

    assert_eq!(page_sizes, [50, 50, 20]);
    let expected: Vec<String> = (0..120).map(|index| format!("f-{index:05}")).collect();
    assert_eq!(seen, expected, "every id once, in insertion order");
}

#[tokio::test]
async fn ten_thousand_findings_page_in_two_hundred_calls_with_each_id_once() {
    let harness = Harness::with(numbered(10_000)).await;
    let recent = criteria(vec![(
        "updatedAt",
        Condition::builder()
            .greater_than_or_equal(UPDATED_AT_MS)
            .build(),
    )]);

    let pages: Vec<_> = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .finding_criteria(recent)
        .max_results(50)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("every page succeeds");

    assert_eq!(pages.len(), 200);
    let distinct: BTreeSet<&String> = pages.iter().flat_map(|page| page.finding_ids()).collect();
    assert_eq!(distinct.len(), 10_000);
    assert_eq!(
        harness
            .running
            .emulator
            .request_counts()
            .get("ListFindings"),
        Some(&200)
    );
}

#[tokio::test]
async fn the_sdk_paginator_walks_every_page_with_the_default_page_size() {
    let harness = Harness::with(numbered(101)).await;

    let pages: Vec<_> = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("every page succeeds");

    let sizes: Vec<usize> = pages.iter().map(|page| page.finding_ids().len()).collect();
    assert_eq!(sizes, [50, 50, 1]);
    let distinct: BTreeSet<&String> = pages.iter().flat_map(|page| page.finding_ids()).collect();
    assert_eq!(distinct.len(), 101);
}

#[tokio::test]
async fn a_write_between_pages_neither_repeats_nor_skips_an_id() {
    let harness = Harness::with(numbered(60)).await;
    let first = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .send()
        .await
        .expect("first page");

    let mut changed = numbered(1);
    changed.push(FindingJson::new("late-arrival").json());
    harness
        .running
        .emulator
        .upsert_findings(changed)
        .expect("valid findings");
    let token = first.next_token().expect("a second page").to_owned();
    let second = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .next_token(token)
        .send()
        .await
        .expect("second page");
    let fresh = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .max_results(50)
        .send()
        .await
        .expect("a new listing");

    let mut seen: Vec<String> = first.finding_ids().to_vec();
    seen.extend(second.finding_ids().iter().cloned());
    assert_eq!(seen.len(), 60);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 60);
    assert!(
        fresh.next_token().is_some(),
        "a new listing sees 61 findings"
    );
}

#[tokio::test]
async fn max_results_of_zero_or_fifty_one_is_a_bad_request() {
    let harness = Harness::with(numbered(3)).await;

    for max_results in [0, 51] {
        let result = harness
            .client
            .list_findings()
            .detector_id(DETECTOR)
            .max_results(max_results)
            .send()
            .await;

        let error = result.expect_err("out of range").into_service_error();
        assert!(
            error.is_bad_request_exception(),
            "maxResults {max_results}: {error:?}"
        );
        let message = aws_sdk_guardduty::error::ProvideErrorMetadata::message(&error)
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("maxResults"), "{message}");
    }
}

#[tokio::test]
async fn an_unknown_next_token_is_a_bad_request() {
    let harness = Harness::with(numbered(3)).await;

    for token in ["garbage", "gde1-ffff-0"] {
        let result = harness
            .client
            .list_findings()
            .detector_id(DETECTOR)
            .next_token(token)
            .send()
            .await;

        assert!(
            result
                .expect_err("invalid token")
                .into_service_error()
                .is_bad_request_exception(),
            "{token}"
        );
    }
}

#[tokio::test]
async fn a_token_from_another_query_is_a_bad_request() {
    let harness = Harness::with(numbered(3)).await;
    let first = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .max_results(1)
        .send()
        .await
        .expect("first page");
    let token = first.next_token().expect("more pages").to_owned();

    let result = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .finding_criteria(criteria(vec![(
            "severity",
            Condition::builder().greater_than(1).build(),
        )]))
        .next_token(token)
        .send()
        .await;

    assert!(
        result
            .expect_err("token of another query")
            .into_service_error()
            .is_bad_request_exception()
    );
}

#[tokio::test]
async fn sort_criteria_order_the_ids_and_ties_keep_insertion_order() {
    let harness = Harness::with(vec![
        FindingJson::new("a").severity(2.0).json(),
        FindingJson::new("b").severity(8.0).json(),
        FindingJson::new("c").severity(5.0).json(),
        FindingJson::new("d").severity(8.0).json(),
    ])
    .await;
    let sorted = |order: OrderBy| {
        SortCriteria::builder()
            .attribute_name("severity")
            .order_by(order)
            .build()
    };

    let descending = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .sort_criteria(sorted(OrderBy::Desc))
        .send()
        .await
        .expect("sorted");
    let ascending = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .sort_criteria(sorted(OrderBy::Asc))
        .send()
        .await
        .expect("sorted");

    assert_eq!(descending.finding_ids(), ["b", "d", "c", "a"]);
    assert_eq!(ascending.finding_ids(), ["a", "c", "b", "d"]);
}

#[tokio::test]
async fn findings_of_other_detectors_are_not_listed() {
    let harness = Harness::with(vec![
        FindingJson::new("mine").json(),
        FindingJson::new("theirs").detector("d-other").json(),
    ])
    .await;

    let mine = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .send()
        .await
        .expect("ListFindings succeeds");
    let theirs = harness
        .client
        .list_findings()
        .detector_id("d-other")
        .send()
        .await
        .expect("ListFindings succeeds");

    assert_eq!(mine.finding_ids(), ["mine"]);
    assert_eq!(theirs.finding_ids(), ["theirs"]);
}

#[tokio::test]
async fn a_filter_only_operator_is_a_bad_request_naming_the_field() {
    let harness = Harness::with(numbered(1)).await;

    let result = harness
        .client
        .list_findings()
        .detector_id(DETECTOR)
        .finding_criteria(criteria(vec![(
            "type",
            Condition::builder().matches("Recon:*").build(),
        )]))
        .send()
        .await;

    let error = result
        .expect_err("matches is for filters")
        .into_service_error();
    assert!(error.is_bad_request_exception());
    let message = aws_sdk_guardduty::error::ProvideErrorMetadata::message(&error)
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("findingCriteria.criterion.type.matches"),
        "{message}"
    );
}
