//! The GuardDuty operations, one handler each, on GuardDuty's REST-JSON paths. A handler
//! counts the call, reads and validates its input, and asks the
//! [`Store`](crate::store::Store) for the answer in the Region the request is signed for
//! ([`SignedRegion`]): a detector of another Region is answered as GuardDuty answers any
//! detector the caller does not own.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::Emulator;
use crate::body::{RequestBody, invalid_input, page_size, query_integer};
use crate::criteria::{Criteria, SortOrder};
use crate::detectors::{NewDetector, PUBLISHING_FREQUENCIES};
use crate::error::ApiError;
use crate::ids;
use crate::region::SignedRegion;
use crate::samples::{DEFAULT_SAMPLE_TYPES, is_well_formed_type, sample_finding};
use crate::statistics::{GroupBy, StatisticsRequest, finding_statistics};
use crate::store::ListQuery;
use crate::time::now_ms;

/// At most this many ids per ListFindings page and per GetFindings/ArchiveFindings call.
const MAX_FINDING_IDS: usize = 50;
const MAX_DETECTOR_IDS: usize = 50;
const MAX_STATISTIC_GROUPS: usize = 100;
const DEFAULT_STATISTIC_GROUPS: usize = 25;
const DETECTOR_TOKEN_PREFIX: &str = "gdd1-";

type ApiResult = Result<Json<Value>, ApiError>;

/// The GuardDuty routes.
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/detector", get(list_detectors).post(create_detector))
        .route("/detector/{detector_id}", get(get_detector))
        .route("/detector/{detector_id}/findings", post(list_findings))
        .route("/detector/{detector_id}/findings/get", post(get_findings))
        .route(
            "/detector/{detector_id}/findings/archive",
            post(archive_findings),
        )
        .route(
            "/detector/{detector_id}/findings/unarchive",
            post(unarchive_findings),
        )
        .route(
            "/detector/{detector_id}/findings/feedback",
            post(update_findings_feedback),
        )
        .route(
            "/detector/{detector_id}/findings/create",
            post(create_sample_findings),
        )
        .route(
            "/detector/{detector_id}/findings/statistics",
            post(get_findings_statistics),
        )
}

/// `GET /detector?maxResults=&nextToken=`
async fn list_detectors(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let store = emulator.begin("ListDetectors")?;
    let Query(query) = query.map_err(|rejection| {
        invalid_input(format!("the query string is malformed ({rejection})"))
    })?;
    let size = page_size(
        query_integer(query.get("maxResults"), "maxResults")?,
        "maxResults",
        MAX_DETECTOR_IDS,
        MAX_DETECTOR_IDS,
    )?;
    let ids = store.detectors.ids(region.as_str());
    let start = match query.get("nextToken") {
        None => 0,
        Some(token) => decode_detector_token(token, ids.len())?,
    };
    let end = ids.len().min(start + size);
    let mut response = json!({ "detectorIds": ids[start..end] });
    if end < ids.len() {
        response["nextToken"] = json!(format!("{DETECTOR_TOKEN_PREFIX}{end:x}"));
    }
    Ok(Json(response))
}

fn decode_detector_token(token: &str, detector_count: usize) -> Result<usize, ApiError> {
    token
        .strip_prefix(DETECTOR_TOKEN_PREFIX)
        .and_then(|offset| usize::from_str_radix(offset, 16).ok())
        .filter(|offset| *offset <= detector_count)
        .ok_or_else(ApiError::invalid_next_token)
}

/// `POST /detector`
async fn create_detector(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    body: Bytes,
) -> ApiResult {
    let mut store = emulator.begin("CreateDetector")?;
    let body = RequestBody::parse(&body)?;
    let enabled = body
        .boolean("enable")?
        .ok_or_else(|| invalid_input("enable is required"))?;
    let frequency = body.string("findingPublishingFrequency")?;
    if let Some(frequency) =
        frequency.filter(|frequency| !PUBLISHING_FREQUENCIES.contains(frequency))
    {
        return Err(invalid_input(format!(
            "findingPublishingFrequency must be one of {PUBLISHING_FREQUENCIES:?}, got {frequency:?}"
        )));
    }
    let request = NewDetector {
        client_token: body.string("clientToken")?.map(str::to_owned),
        enabled,
        finding_publishing_frequency: frequency.map(str::to_owned),
        tags: string_map(body.object("tags")?, "tags")?,
    };
    let detector_id = store
        .detectors
        .create(region.as_str(), request, ids::hex32(), now_ms());
    Ok(Json(json!({ "detectorId": detector_id })))
}

fn string_map(
    map: Option<&Map<String, Value>>,
    field: &str,
) -> Result<Map<String, Value>, ApiError> {
    let map = map.cloned().unwrap_or_default();
    if let Some((key, _)) = map.iter().find(|(_, value)| !value.is_string()) {
        return Err(invalid_input(format!("{field}.{key} must be a string")));
    }
    Ok(map)
}

/// `GET /detector/{detectorId}`
async fn get_detector(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    Path(detector_id): Path<String>,
) -> ApiResult {
    let store = emulator.begin("GetDetector")?;
    let detector = store
        .detectors
        .get(region.as_str(), &detector_id)
        .ok_or_else(ApiError::unknown_detector)?;
    Ok(Json(detector.to_json()))
}

/// `POST /detector/{detectorId}/findings`
async fn list_findings(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    Path(detector_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut store = emulator.begin("ListFindings")?;
    store.require_detector(region.as_str(), &detector_id)?;
    let body = RequestBody::parse(&body)?;
    let criteria = Criteria::parse(body.object("findingCriteria")?)?;
    let sort = SortOrder::parse(body.object("sortCriteria")?)?;
    let size = page_size(
        body.integer("maxResults")?,
        "maxResults",
        MAX_FINDING_IDS,
        MAX_FINDING_IDS,
    )?;
    let query_text = |field: &str| body.get(field).map(Value::to_string).unwrap_or_default();
    let query = ListQuery {
        region: region.as_str(),
        detector_id: &detector_id,
        criteria: &criteria,
        sort: sort.as_ref(),
        key: format!(
            "{}\n{detector_id}\n{}\n{}",
            region.as_str(),
            query_text("findingCriteria"),
            query_text("sortCriteria")
        ),
        page_size: size,
        next_token: body.string("nextToken")?.filter(|token| !token.is_empty()),
    };
    let (finding_ids, next_token) = store.list_findings(&query)?;
    let mut response = json!({ "findingIds": finding_ids });
    if let Some(token) = next_token {
        response["nextToken"] = json!(token);
    }
    Ok(Json(response))
}

/// `POST /detector/{detectorId}/findings/get`
async fn get_findings(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    Path(detector_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let store = emulator.begin("GetFindings")?;
    store.require_detector(region.as_str(), &detector_id)?;
    let body = RequestBody::parse(&body)?;
    let finding_ids = body.bounded_string_list("findingIds", MAX_FINDING_IDS)?;
    let sort = SortOrder::parse(body.object("sortCriteria")?)?;
    let findings = store.get_findings(region.as_str(), &detector_id, &finding_ids, sort.as_ref());
    Ok(Json(json!({ "findings": findings })))
}

/// `POST /detector/{detectorId}/findings/archive`
async fn archive_findings(
    emulator: State<Emulator>,
    region: SignedRegion,
    detector_id: Path<String>,
    body: Bytes,
) -> ApiResult {
    set_archived(
        emulator,
        &region,
        detector_id,
        &body,
        "ArchiveFindings",
        true,
    )
}

/// `POST /detector/{detectorId}/findings/unarchive`
async fn unarchive_findings(
    emulator: State<Emulator>,
    region: SignedRegion,
    detector_id: Path<String>,
    body: Bytes,
) -> ApiResult {
    set_archived(
        emulator,
        &region,
        detector_id,
        &body,
        "UnarchiveFindings",
        false,
    )
}

fn set_archived(
    State(emulator): State<Emulator>,
    region: &SignedRegion,
    Path(detector_id): Path<String>,
    body: &[u8],
    operation: &str,
    archived: bool,
) -> ApiResult {
    let mut store = emulator.begin(operation)?;
    store.require_detector(region.as_str(), &detector_id)?;
    let finding_ids =
        RequestBody::parse(body)?.bounded_string_list("findingIds", MAX_FINDING_IDS)?;
    store.set_archived(
        region.as_str(),
        &detector_id,
        &finding_ids,
        archived,
        now_ms(),
    );
    Ok(Json(json!({})))
}

/// `POST /detector/{detectorId}/findings/feedback`
async fn update_findings_feedback(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    Path(detector_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut store = emulator.begin("UpdateFindingsFeedback")?;
    store.require_detector(region.as_str(), &detector_id)?;
    let body = RequestBody::parse(&body)?;
    let finding_ids = body.bounded_string_list("findingIds", MAX_FINDING_IDS)?;
    let feedback = match body.string("feedback")? {
        Some(feedback @ ("USEFUL" | "NOT_USEFUL")) => feedback,
        Some(other) => {
            return Err(invalid_input(format!(
                "feedback must be USEFUL or NOT_USEFUL, got {other:?}"
            )));
        }
        None => return Err(invalid_input("feedback is required")),
    };
    let comments = body.string("comments")?;
    store.set_feedback(
        region.as_str(),
        &detector_id,
        &finding_ids,
        feedback,
        comments,
        now_ms(),
    );
    Ok(Json(json!({})))
}

/// `POST /detector/{detectorId}/findings/create`
async fn create_sample_findings(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    Path(detector_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut store = emulator.begin("CreateSampleFindings")?;
    store.require_detector(region.as_str(), &detector_id)?;
    let body = RequestBody::parse(&body)?;
    let mut finding_types = body.string_list("findingTypes")?.unwrap_or_default();
    if finding_types.len() > MAX_FINDING_IDS {
        return Err(invalid_input(format!(
            "findingTypes holds {} entries, at most 50 are allowed",
            finding_types.len()
        )));
    }
    if let Some(bad) = finding_types
        .iter()
        .find(|finding_type| !is_well_formed_type(finding_type))
    {
        return Err(ApiError::bad_request(format!(
            "The request is rejected because an invalid finding type is specified: {bad:?}"
        )));
    }
    if finding_types.is_empty() {
        finding_types = DEFAULT_SAMPLE_TYPES.map(str::to_owned).to_vec();
    }
    let now = now_ms();
    for finding_type in &finding_types {
        store.put(
            sample_finding(
                finding_type,
                region.as_str(),
                &detector_id,
                &ids::hex32(),
                now,
            ),
            now,
        );
    }
    Ok(Json(json!({})))
}

/// `POST /detector/{detectorId}/findings/statistics`
async fn get_findings_statistics(
    State(emulator): State<Emulator>,
    region: SignedRegion,
    Path(detector_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let store = emulator.begin("GetFindingsStatistics")?;
    store.require_detector(region.as_str(), &detector_id)?;
    let body = RequestBody::parse(&body)?;
    let request = statistics_request(&body)?;
    let criteria = Criteria::parse(body.object("findingCriteria")?)?;
    let findings = store.matching(region.as_str(), &detector_id, &criteria);
    Ok(Json(
        json!({ "findingStatistics": finding_statistics(&findings, &request) }),
    ))
}

fn statistics_request(body: &RequestBody) -> Result<StatisticsRequest, ApiError> {
    let statistic_types = body
        .string_list("findingStatisticTypes")?
        .unwrap_or_default();
    if let Some(other) = statistic_types
        .iter()
        .find(|kind| *kind != "COUNT_BY_SEVERITY")
    {
        return Err(invalid_input(format!(
            "findingStatisticTypes: unknown statistic type {other:?}"
        )));
    }
    let group_by = body
        .string("groupBy")?
        .map(|text| {
            GroupBy::parse(text)
                .ok_or_else(|| invalid_input(format!("groupBy: unknown value {text:?}")))
        })
        .transpose()?;
    let order_by = body.string("orderBy")?;
    let max_results = body.integer("maxResults")?;
    if group_by.is_none() && (order_by.is_some() || max_results.is_some()) {
        return Err(invalid_input(
            "orderBy and maxResults can only be used with groupBy",
        ));
    }
    if group_by.is_none() && statistic_types.is_empty() {
        return Err(invalid_input(
            "findingStatisticTypes or groupBy is required",
        ));
    }
    let descending = match order_by {
        None | Some("DESC") => true,
        Some("ASC") => false,
        Some(other) => {
            return Err(invalid_input(format!(
                "orderBy must be ASC or DESC, got {other:?}"
            )));
        }
    };
    Ok(StatisticsRequest {
        count_by_severity: !statistic_types.is_empty(),
        group_by,
        descending,
        max_results: page_size(
            max_results,
            "maxResults",
            MAX_STATISTIC_GROUPS,
            DEFAULT_STATISTIC_GROUPS,
        )?,
    })
}
