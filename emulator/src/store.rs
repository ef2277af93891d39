//! The emulator's state: findings as GuardDuty JSON in insertion order (a replaced
//! finding keeps its place), the detectors, the `ListFindings` snapshots, and how many
//! times each operation was called. Operations here assume validated input.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::criteria::{Criteria, SortOrder};
use crate::detectors::Detectors;
use crate::error::ApiError;
use crate::ingest::{self, detector_of, finding_id};
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
    request_counts: BTreeMap<String, u64>,
    /// Calls still to fail with an internal error, per operation.
    injected_failures: HashMap<String, u32>,
}

/// The parsed input of one `ListFindings` call.
pub(crate) struct ListQuery<'a> {
    pub(crate) detector_id: &'a str,
    pub(crate) criteria: &'a Criteria,
    pub(crate) sort: Option<&'a SortOrder>,
    /// Identifies the query (detector, criteria, sort) for snapshot reuse and tokens.
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
    pub(crate) fn put(&mut self, finding: Value, now_ms: i64) {
        self.detectors.ensure(detector_of(&finding), now_ms);
        let id = finding_id(&finding).to_owned();
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

    pub(crate) fn require_detector(&self, detector_id: &str) -> Result<(), ApiError> {
        if self.detectors.contains(detector_id) {
            Ok(())
        } else {
            Err(ApiError::unknown_detector())
        }
    }

    /// The detector's findings that satisfy `criteria`, in insertion order.
    pub(crate) fn matching(&self, detector_id: &str, criteria: &Criteria) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|finding| detector_of(finding) == detector_id && criteria.matches(finding))
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
        detector_id: &str,
        ids: &[String],
        sort: Option<&SortOrder>,
    ) -> Vec<Value> {
        let mut found = self.positions_in_detector(detector_id, ids);
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
        detector_id: &str,
        ids: &[String],
        archived: bool,
        now_ms: i64,
    ) {
        let updated_at = format_iso8601(now_ms);
        self.update(detector_id, ids, |finding| {
            finding["service"]["archived"] = json!(archived);
            finding["updatedAt"] = json!(updated_at);
        });
    }

    /// Records the caller's feedback (`USEFUL` / `NOT_USEFUL`) in `service.userFeedback`.
    pub(crate) fn set_feedback(&mut self, detector_id: &str, ids: &[String], feedback: &str) {
        self.update(detector_id, ids, |finding| {
            finding["service"]["userFeedback"] = json!(feedback)
        });
    }

    fn update(&mut self, detector_id: &str, ids: &[String], change: impl Fn(&mut Value)) {
        let positions = self.positions_in_detector(detector_id, ids);
        for &position in &positions {
            change(&mut self.findings[position]);
        }
        if !positions.is_empty() {
            self.generation += 1;
        }
    }

    fn positions_in_detector(&self, detector_id: &str, ids: &[String]) -> Vec<usize> {
        let mut positions: Vec<usize> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(&position) = self.position_by_id.get(id) else {
                continue;
            };
            if detector_of(&self.findings[position]) == detector_id
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
            detector_of(finding) == query.detector_id && query.criteria.matches(finding)
        })
        .map(|(position, _)| position)
        .collect();
    if let Some(sort) = query.sort {
        sort.sort(&mut positions, |&position| &findings[position]);
    }
    positions
}
