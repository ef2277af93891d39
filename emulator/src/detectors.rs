//! The detectors: those created by `CreateDetector`, those named by a finding's
//! `service.detectorId` (a detector exists from the moment a finding names it), and, while
//! there is neither, one default detector, so `ListDetectors` works at once.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::ingest::ACCOUNT_ID;
use crate::time::format_iso8601;

/// The detector that exists while no other does (the id the GuardDuty docs use).
pub const DEFAULT_DETECTOR_ID: &str = "12abc34d567e8fa901bc2d34e56789f0";

/// How often GuardDuty publishes updates of findings, `FindingPublishingFrequency`.
pub(crate) const PUBLISHING_FREQUENCIES: [&str; 3] = ["FIFTEEN_MINUTES", "ONE_HOUR", "SIX_HOURS"];

#[derive(Debug, Clone)]
pub(crate) struct Detector {
    id: String,
    created_at_ms: i64,
    enabled: bool,
    finding_publishing_frequency: String,
    tags: Map<String, Value>,
}

impl Detector {
    fn new(id: String, created_at_ms: i64) -> Self {
        Self {
            id,
            created_at_ms,
            enabled: true,
            finding_publishing_frequency: "SIX_HOURS".to_owned(),
            tags: Map::new(),
        }
    }

    /// The `GetDetector` response body.
    pub(crate) fn to_json(&self) -> Value {
        let timestamp = format_iso8601(self.created_at_ms);
        json!({
            "createdAt": timestamp,
            "updatedAt": timestamp,
            "findingPublishingFrequency": self.finding_publishing_frequency,
            "serviceRole": format!("arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty"),
            "status": if self.enabled { "ENABLED" } else { "DISABLED" },
            "tags": self.tags,
        })
    }
}

/// What `CreateDetector` asks for.
#[derive(Debug, Clone)]
pub(crate) struct NewDetector {
    pub(crate) client_token: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) finding_publishing_frequency: Option<String>,
    pub(crate) tags: Map<String, Value>,
}

#[derive(Debug)]
pub(crate) struct Detectors {
    /// In order of creation.
    known: Vec<Detector>,
    by_client_token: HashMap<String, String>,
    started_at_ms: i64,
}

impl Detectors {
    pub(crate) fn new(started_at_ms: i64) -> Self {
        Self {
            known: Vec::new(),
            by_client_token: HashMap::new(),
            started_at_ms,
        }
    }

    /// Every detector id, in order of creation (the default one while there is no other).
    pub(crate) fn ids(&self) -> Vec<String> {
        if self.known.is_empty() {
            return vec![DEFAULT_DETECTOR_ID.to_owned()];
        }
        self.known
            .iter()
            .map(|detector| detector.id.clone())
            .collect()
    }

    pub(crate) fn get(&self, id: &str) -> Option<Detector> {
        if self.known.is_empty() && id == DEFAULT_DETECTOR_ID {
            return Some(Detector::new(id.to_owned(), self.started_at_ms));
        }
        self.known
            .iter()
            .find(|detector| detector.id == id)
            .cloned()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Registers a detector a finding names, if it is new.
    pub(crate) fn ensure(&mut self, id: &str, now_ms: i64) {
        if !self.known.iter().any(|detector| detector.id == id) {
            let created_at = if id == DEFAULT_DETECTOR_ID && self.known.is_empty() {
                self.started_at_ms
            } else {
                now_ms
            };
            self.known.push(Detector::new(id.to_owned(), created_at));
        }
    }

    /// Creates a detector; the same client token gives back the same detector id.
    pub(crate) fn create(&mut self, request: NewDetector, id: String, now_ms: i64) -> String {
        if let Some(existing) = request
            .client_token
            .as_ref()
            .and_then(|token| self.by_client_token.get(token))
        {
            return existing.clone();
        }
        let mut detector = Detector::new(id.clone(), now_ms);
        detector.enabled = request.enabled;
        detector.tags = request.tags;
        if let Some(frequency) = request.finding_publishing_frequency {
            detector.finding_publishing_frequency = frequency;
        }
        self.known.push(detector);
        if let Some(token) = request.client_token {
            self.by_client_token.insert(token, id.clone());
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_detector_exists_only_while_no_other_does() {
        let mut detectors = Detectors::new(0);
        assert_eq!(detectors.ids(), [DEFAULT_DETECTOR_ID]);
        detectors.ensure("d1", 5);
        assert_eq!(detectors.ids(), ["d1"]);
        assert!(!detectors.contains(DEFAULT_DETECTOR_ID));
    }

    #[test]
    fn a_repeated_client_token_returns_the_same_detector() {
        let mut detectors = Detectors::new(0);
        let request = NewDetector {
            client_token: Some("token".to_owned()),
            enabled: true,
            finding_publishing_frequency: None,
            tags: Map::new(),
        };
        let first = detectors.create(request.clone(), "a".to_owned(), 0);
        let second = detectors.create(request, "b".to_owned(), 0);
        assert_eq!(first, second);
        assert_eq!(detectors.ids(), ["a"]);
    }
}
