//! The detectors, each in one Region: those created by `CreateDetector` (in the Region
//! of the request), those named by a finding's `service.detectorId` (in the finding's
//! `region`; a detector exists from the moment a finding names it), and, in a Region that
//! has neither, one default detector, so `ListDetectors` works at once in every Region.
//! A detector is identified by its Region and id: a request in one Region never reaches
//! a detector of another, even one with the same id.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::ingest::ACCOUNT_ID;
use crate::region::DEFAULT_REGION;
use crate::time::format_iso8601;

/// The default detector of [`DEFAULT_REGION`] (`us-east-1`), the id the GuardDuty docs use.
pub const DEFAULT_DETECTOR_ID: &str = "12abc34d567e8fa901bc2d34e56789f0";

/// The id of the detector a Region has while no other exists there: [`DEFAULT_DETECTOR_ID`]
/// in [`DEFAULT_REGION`], elsewhere 32 hex digits derived from the Region's name alone
/// (the same in every run, different in every Region).
pub fn default_detector_id(region: &str) -> String {
    if region == DEFAULT_REGION {
        return DEFAULT_DETECTOR_ID.to_owned();
    }
    let half = |salt: &str| fnv1a_64(format!("guardduty-emulator/{salt}/{region}").as_bytes());
    format!("{:016x}{:016x}", half("detector"), half("id"))
}

/// The 64-bit FNV-1a hash: stable across runs and platforms, unlike std's hashers.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How often GuardDuty publishes updates of findings, `FindingPublishingFrequency`.
pub(crate) const PUBLISHING_FREQUENCIES: [&str; 3] = ["FIFTEEN_MINUTES", "ONE_HOUR", "SIX_HOURS"];

#[derive(Debug, Clone)]
pub(crate) struct Detector {
    region: String,
    id: String,
    created_at_ms: i64,
    enabled: bool,
    finding_publishing_frequency: String,
    tags: Map<String, Value>,
}

impl Detector {
    fn new(region: &str, id: String, created_at_ms: i64) -> Self {
        Self {
            region: region.to_owned(),
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
    /// In order of creation, every Region's.
    known: Vec<Detector>,
    /// `(region, clientToken)` → detector id.
    by_client_token: HashMap<(String, String), String>,
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

    /// Every detector id of `region`, in order of creation (the default one while there
    /// is no other).
    pub(crate) fn ids(&self, region: &str) -> Vec<String> {
        let ids: Vec<String> = self
            .in_region(region)
            .map(|detector| detector.id.clone())
            .collect();
        if ids.is_empty() {
            vec![default_detector_id(region)]
        } else {
            ids
        }
    }

    /// The Regions that hold a detector other than their default one, in order of first use.
    pub(crate) fn regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = Vec::new();
        for detector in &self.known {
            if !regions.contains(&detector.region) {
                regions.push(detector.region.clone());
            }
        }
        regions
    }

    pub(crate) fn get(&self, region: &str, id: &str) -> Option<Detector> {
        let mut in_region = self.in_region(region).peekable();
        if in_region.peek().is_none() {
            return (id == default_detector_id(region))
                .then(|| Detector::new(region, id.to_owned(), self.started_at_ms));
        }
        in_region.find(|detector| detector.id == id).cloned()
    }

    pub(crate) fn contains(&self, region: &str, id: &str) -> bool {
        self.get(region, id).is_some()
    }

    /// Registers a detector a finding names, if it is new in its Region.
    pub(crate) fn ensure(&mut self, region: &str, id: &str, now_ms: i64) {
        let region_is_empty = self.in_region(region).next().is_none();
        if self.in_region(region).any(|detector| detector.id == id) {
            return;
        }
        let created_at = if region_is_empty && id == default_detector_id(region) {
            self.started_at_ms
        } else {
            now_ms
        };
        self.known
            .push(Detector::new(region, id.to_owned(), created_at));
    }

    /// Creates a detector in `region`; the same client token there gives back the same id.
    pub(crate) fn create(
        &mut self,
        region: &str,
        request: NewDetector,
        id: String,
        now_ms: i64,
    ) -> String {
        let token_key = |token: &String| (region.to_owned(), token.clone());
        if let Some(existing) = request
            .client_token
            .as_ref()
            .and_then(|token| self.by_client_token.get(&token_key(token)))
        {
            return existing.clone();
        }
        let mut detector = Detector::new(region, id.clone(), now_ms);
        detector.enabled = request.enabled;
        detector.tags = request.tags;
        if let Some(frequency) = request.finding_publishing_frequency {
            detector.finding_publishing_frequency = frequency;
        }
        self.known.push(detector);
        if let Some(token) = request.client_token {
            self.by_client_token.insert(token_key(&token), id.clone());
        }
        id
    }

    fn in_region<'a>(&'a self, region: &'a str) -> impl Iterator<Item = &'a Detector> + 'a {
        self.known
            .iter()
            .filter(move |detector| detector.region == region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_detector_exists_only_while_no_other_does() {
        let mut detectors = Detectors::new(0);
        assert_eq!(detectors.ids(DEFAULT_REGION), [DEFAULT_DETECTOR_ID]);
        detectors.ensure(DEFAULT_REGION, "d1", 5);
        assert_eq!(detectors.ids(DEFAULT_REGION), ["d1"]);
        assert!(!detectors.contains(DEFAULT_REGION, DEFAULT_DETECTOR_ID));
    }

    #[test]
    fn each_region_has_its_own_default_detector_and_its_own_detectors() {
        let mut detectors = Detectors::new(0);
        let eu = default_detector_id("eu-west-1");
        assert_ne!(eu, DEFAULT_DETECTOR_ID);
        assert_eq!(
            eu, "375568ea215a9e86ce0ae33899a699a1",
            "stable across runs and versions"
        );
        assert_eq!(eu.len(), 32);
        assert!(
            eu.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        detectors.ensure(DEFAULT_REGION, "d1", 5);
        assert_eq!(detectors.ids("eu-west-1"), [eu.as_str()]);
        assert!(detectors.contains("eu-west-1", &eu));
        assert!(!detectors.contains("eu-west-1", "d1"));
        assert_eq!(detectors.regions(), [DEFAULT_REGION]);
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
        let first = detectors.create(DEFAULT_REGION, request.clone(), "a".to_owned(), 0);
        let second = detectors.create(DEFAULT_REGION, request.clone(), "b".to_owned(), 0);
        let elsewhere = detectors.create("eu-west-1", request, "c".to_owned(), 0);
        assert_eq!(first, second);
        assert_eq!(elsewhere, "c", "a client token is scoped to its Region");
        assert_eq!(detectors.ids(DEFAULT_REGION), ["a"]);
    }
}
