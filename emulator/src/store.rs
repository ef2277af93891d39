//! The emulator's state: findings as GuardDuty JSON in insertion order (a replaced
//! finding keeps its place), the detectors of every Region, the `ListFindings` snapshots,
//! the feedback given on findings, and how many times each operation was called.
//! Operations here assume validated input.
//!
//! Every operation on findings names a Region and a detector, and reaches only the
//! findings that belong to both ([`belongs_to`]); none looks at a finding's account.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::criteria::{Criteria, SortOrder};
use crate::detectors::Detectors;
use crate::error::ApiError;
use crate::ingest::{self, belongs_to, detector_of, finding_id, region_of};
use crate::listing::{Listings, Page};
use crate::time::format_iso8601;

#[derive(Debug)]
pub(crate) struct Store {
    findings: Vec<Value>,
    position_by_id: HashMap<String, usize>,
    pub(crate) detectors: Detectors,
    /// Bumped by every write; a `ListFindings` snapshot of an older generation is stale.
    generation: u64,
    listings: Listings,
    /// UpdateFindingsFeedback calls, per finding id.
    feedback: HashMap<String, Vec<FeedbackSubmission>>,
    request_counts: BTreeMap<String, u64>,
    /// Calls still to fail with an internal error, per operation.
    injected_failures: HashMap<String, u32>,
}

/// One `UpdateFindingsFeedback` call, as recorded for one of its findings.
#[derive(Debug, Clone)]
pub(crate) struct FeedbackSubmission {
    pub(crate) feedback: String,
    pub(crate) comments: Option<String>,
    pub(crate) region: String,
    pub(crate) detector_id: String,
    pub(crate) submitted_at_ms: i64,
}

/// The parsed input of one `ListFindings` call.
pub(crate) struct ListQuery<'a> {
    pub(crate) region: &'a str,
    pub(crate) detector_id: &'a str,
    pub(crate) criteria: &'a Criteria,
    pub(crate) sort: Option<&'a SortOrder>,
    /// Identifies the query (Region, detector, criteria, sort) for snapshot reuse and tokens.
    pub(crate) key: String,
    pub(crate) page_size: usize,
    pub(crate) next_token: Option<&'a str>,
}

impl Store {
    pub(crate) fn new(now_ms: i64) -> Self {
        Self {
            findings: Vec::new(),
            position_by_id: HashMap::new(),
            detectors: Detectors::new(now_ms),
            generation: 0,
            listings: Listings::default(),
            feedback: HashMap::new(),
            request_counts: BTreeMap::new(),
            injected_failures: HashMap::new(),
        }
    }

    /// Counts a call of `operation`; fails it if a failure was injected for it.
    pub(crate) fn count_request(&mut self, operation: &str) -> Result<(), ApiError> {
        *self.request_counts.entry(operation.to_owned()).or_default() += 1;
        match self.injected_failures.get_mut(operation) {
            Some(remaining) if *remaining > 0 => {
                *remaining -= 1;
                Err(ApiError::internal(
                    "Internal server error (injected by the emulator)",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Makes the next `times` calls of `operation` fail with `InternalServerErrorException`.
    pub(crate) fn inject_failures(&mut self, operation: &str, times: u32) {
        self.injected_failures.insert(operation.to_owned(), times);
    }

    pub(crate) fn request_counts(&self) -> BTreeMap<String, u64> {
        self.request_counts.clone()
    }

    /// Validates every finding, then stores them all (or none): returns how many.
    pub(crate) fn upsert(&mut self, findings: Vec<Value>, now_ms: i64) -> Result<usize, String> {
        let prepared = findings
            .into_iter()
            .enumerate()
            .map(|(index, finding)| ingest::prepare(index, finding, now_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let stored = prepared.len();
        for finding in prepared {
            self.put(finding, now_ms);
        }
        Ok(stored)
    }

    /// Stores a complete finding: replaces the one with the same id in place, or appends.
    /// Feedback given with `UpdateFindingsFeedback` is the user's, not GuardDuty's: it stays
    /// on a replacement that carries no `service.userFeedback` of its own.
    pub(crate) fn put(&mut self, mut finding: Value, now_ms: i64) {
        self.detectors
            .ensure(region_of(&finding), detector_of(&finding), now_ms);
        let id = finding_id(&finding).to_owned();
        let given = self
            .feedback
            .get(&id)
            .and_then(|submissions| submissions.last());
        if let Some(given) = given
            && finding["service"]["userFeedback"].is_null()
        {
            finding["service"]["userFeedback"] = json!(given.feedback);
        }
        match self.position_by_id.get(&id) {
            Some(&position) => self.findings[position] = finding,
            None => {
                self.position_by_id.insert(id, self.findings.len());
                self.findings.push(finding);
            }
        }
        self.generation += 1;
    }

    pub(crate) fn finding(&self, id: &str) -> Option<&Value> {
        self.position_by_id
            .get(id)
            .map(|&position| &self.findings[position])
    }

    pub(crate) fn all_findings(&self) -> &[Value] {
        &self.findings
    }

    /// Fails as GuardDuty does for a detector that is not the caller's in this Region.
    pub(crate) fn require_detector(&self, region: &str, detector_id: &str) -> Result<(), ApiError> {
        if self.detectors.contains(region, detector_id) {
            Ok(())
        } else {
            Err(ApiError::unknown_detector())
        }
    }

    /// The detector's findings that satisfy `criteria`, in insertion order.
    pub(crate) fn matching(
        &self,
        region: &str,
        detector_id: &str,
        criteria: &Criteria,
    ) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|finding| belongs_to(finding, region, detector_id) && criteria.matches(finding))
            .collect()
    }

    /// One page of `ListFindings`: finding ids and the next token.
    pub(crate) fn list_findings(
        &mut self,
        query: &ListQuery<'_>,
    ) -> Result<(Vec<String>, Option<String>), ApiError> {
        let page = match query.next_token {
            Some(token) => self
                .listings
                .next_page(&query.key, token, query.page_size)?,
            None => self
                .listings
                .first_page(&query.key, self.generation, query.page_size, || {
                    matching_positions(&self.findings, query)
                }),
        };
        let Page {
            positions,
            next_token,
        } = page;
        let ids = positions
            .into_iter()
            .filter_map(|position| self.findings.get(position))
            .map(|finding| finding_id(finding).to_owned())
            .collect();
        Ok((ids, next_token))
    }

    /// The detector's findings with these ids (unknown ids are left out, duplicates once).
    pub(crate) fn get_findings(
        &self,
        region: &str,
        detector_id: &str,
        ids: &[String],
        sort: Option<&SortOrder>,
    ) -> Vec<Value> {
        let mut found = self.positions_in_detector(region, detector_id, ids);
        if let Some(sort) = sort {
            sort.sort(&mut found, |&position| &self.findings[position]);
        }
        found
            .into_iter()
            .map(|position| self.findings[position].clone())
            .collect()
    }

    /// Sets `service.archived` and bumps `updatedAt` of the detector's findings with these ids.
    pub(crate) fn set_archived(
        &mut self,
        region: &str,
        detector_id: &str,
        ids: &[String],
        archived: bool,
        now_ms: i64,
    ) {
        let updated_at = format_iso8601(now_ms);
        self.update(region, detector_id, ids, |finding| {
            finding["service"]["archived"] = json!(archived);
            finding["updatedAt"] = json!(updated_at);
        });
    }

    /// Records the caller's feedback (`USEFUL` / `NOT_USEFUL`) in `service.userFeedback`
    /// and, with its comments, in the feedback record of each of the detector's findings.
    pub(crate) fn set_feedback(
        &mut self,
        region: &str,
        detector_id: &str,
        ids: &[String],
        feedback: &str,
        comments: Option<&str>,
        now_ms: i64,
    ) {
        let positions = self.update(region, detector_id, ids, |finding| {
            finding["service"]["userFeedback"] = json!(feedback);
        });
        for position in positions {
            let id = finding_id(&self.findings[position]).to_owned();
            self.feedback
                .entry(id)
                .or_default()
                .push(FeedbackSubmission {
                    feedback: feedback.to_owned(),
                    comments: comments.map(str::to_owned),
                    region: region.to_owned(),
                    detector_id: detector_id.to_owned(),
                    submitted_at_ms: now_ms,
                });
        }
    }

    /// Every feedback given on the finding with this id, oldest first.
    pub(crate) fn feedback(&self, id: &str) -> &[FeedbackSubmission] {
        self.feedback.get(id).map_or(&[], Vec::as_slice)
    }

    /// Changes the detector's findings with these ids; returns their positions.
    fn update(
        &mut self,
        region: &str,
        detector_id: &str,
        ids: &[String],
        change: impl Fn(&mut Value),
    ) -> Vec<usize> {
        let positions = self.positions_in_detector(region, detector_id, ids);
        for &position in &positions {
            change(&mut self.findings[position]);
        }
        if !positions.is_empty() {
            self.generation += 1;
        }
        positions
    }

    fn positions_in_detector(&self, region: &str, detector_id: &str, ids: &[String]) -> Vec<usize> {
        let mut positions: Vec<usize> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(&position) = self.position_by_id.get(id) else {
                continue;
            };
            if belongs_to(&self.findings[position], region, detector_id)
                && !positions.contains(&position)
            {
                positions.push(position);
            }
        }
        positions
    }
}

fn matching_positions(findings: &[Value], query: &ListQuery<'_>) -> Vec<usize> {
    let mut positions: Vec<usize> = findings
        .iter()
        .enumerate()
        .filter(|(_, finding)| {
            belongs_to(finding, query.region, query.detector_id) && query.criteria.matches(finding)
        })
        .map(|(position, _)| position)
        .collect();
    if let Some(sort) = query.sort {
        sort.sort(&mut positions, |&position| &findings[position]);
    }
    positions
}
