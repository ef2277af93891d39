//! What a long-running operator (the controller, `watch`) knows of each region's open
//! findings between passes, so that a periodic pass lists only what changed (pure).
//!
//! ```text
//!  first pass, or fullResyncInterval since the last full listing ─> Read::Full
//!  otherwise ─> Read::UpdatedSince(start of the last successful listing − OVERLAP)
//!  listed findings + what was known ─> merge ─> the region's open findings now
//! ```
//!
//! The watermark is the *start* of the last successful listing, not the newest
//! `updatedAt` seen: a finding GuardDuty updates while a pass lists is listed again by
//! the next one, and [`OVERLAP`] covers findings that show in ListFindings a little
//! after their `updatedAt`. An incremental listing asks for archived findings too, so a
//! finding archived since leaves the open set; a full listing replaces the set, so
//! whatever an incremental listing missed is corrected within `fullResyncInterval`.

use std::collections::BTreeMap;

use crate::finding::Finding;
use crate::ids::FindingId;
use crate::outcome::PassReport;
use crate::quiet::Settled;
use crate::time::Timestamp;

/// How far before the last listing's start an incremental listing reaches back.
pub const OVERLAP_SECONDS: i64 = 300;

/// How a pass reads a region's findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Every open finding the policy selects.
    Full,
    /// Findings updated at or after this time, archived ones included, merged with
    /// what is known.
    UpdatedSince(Timestamp),
}

/// One region's open findings, and when they were listed.
#[derive(Debug, Clone, PartialEq, Default)]
struct Region {
    open: BTreeMap<FindingId, Finding>,
    /// The start of the last successful listing.
    listed_at: Option<Timestamp>,
    /// The start of the last successful full listing.
    full_at: Option<Timestamp>,
    /// Per account (`None`: the credentials' own, unknown), what the last pass left
    /// settled there, for the next one to be quiet in ([`crate::quiet`]).
    settled: BTreeMap<Option<String>, Settled>,
}

/// The open findings of every region a policy covers, as the last passes left them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KnownFindings {
    regions: BTreeMap<String, Region>,
}

impl KnownFindings {
    /// How the pass starting at `now` reads `region`: in full the first time and once
    /// `full_resync_seconds` passed since the last full listing, else incrementally.
    pub fn read(&self, region: &str, now: Timestamp, full_resync_seconds: i64) -> Read {
        let Some(known) = self.regions.get(region) else {
            return Read::Full;
        };
        match (known.full_at, known.listed_at) {
            (Some(full), Some(listed)) if now.0 - full.0 < full_resync_seconds => {
                Read::UpdatedSince(Timestamp(listed.0 - OVERLAP_SECONDS))
            }
            _ => Read::Full,
        }
    }

    /// The open findings known in `region`, most severe first.
    pub fn open(&self, region: &str) -> Vec<Finding> {
        let mut findings: Vec<Finding> = self
            .regions
            .get(region)
            .map(|r| r.open.values().cloned().collect())
            .unwrap_or_default();
        sort(&mut findings);
        findings
    }

    /// What the last pass left settled in `region`, per account.
    pub fn settled(&self, region: &str) -> BTreeMap<Option<String>, Settled> {
        self.regions
            .get(region)
            .map(|r| r.settled.clone())
            .unwrap_or_default()
    }

    /// How many open findings are known, over every region.
    pub fn len(&self) -> usize {
        self.regions.values().map(|r| r.open.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A region's listing succeeded: `open` is its open findings now (see [`merge`]),
    /// and the listing started at `started`.
    pub fn listed(&mut self, region: &str, read: Read, open: &[Finding], started: Timestamp) {
        let known = self.regions.entry(region.to_string()).or_default();
        known.open = open.iter().map(|f| (f.id.clone(), f.clone())).collect();
        known.listed_at = Some(started);
        if read == Read::Full {
            known.full_at = Some(started);
        }
    }

    /// A finding heard of between listings (an event): open if `open`, else gone.
    /// Only regions already listed keep it: the first listing of a region is full.
    pub fn heard(&mut self, finding: &Finding, open: bool) {
        if let Some(known) = self.regions.get_mut(&finding.region) {
            // Something happened there: the next pass reads it in full.
            known.settled.clear();
            if open {
                known.open.insert(finding.id.clone(), finding.clone());
            } else {
                known.open.remove(&finding.id);
            }
        }
    }

    /// What a pass taught: the regions it listed have the open findings it holds now
    /// (listed at `started`) and are settled where it left them so; a pass that listed
    /// none (an event's) heard of its findings.
    pub fn learn(&mut self, report: &PassReport, started: Timestamp) {
        if report.listed.is_empty() {
            for finding in &report.findings {
                self.heard(finding, true);
            }
            return;
        }
        for (region, read) in &report.listed {
            let open: Vec<Finding> = report
                .findings
                .iter()
                .filter(|f| &f.region == region)
                .cloned()
                .collect();
            self.listed(region, *read, &open, started);
            if let Some(known) = self.regions.get_mut(region) {
                known.settled = report
                    .settled
                    .iter()
                    .filter(|s| &s.region == region)
                    .map(|s| (s.account.clone(), s.settled.clone()))
                    .collect();
            }
        }
    }

    /// Forgets regions no longer covered.
    pub fn retain_regions(&mut self, regions: &[String]) {
        self.regions.retain(|region, _| regions.contains(region));
    }
}

/// A region's open findings after a listing (pure): a full listing is the set; an
/// incremental one updates what was known, the findings it lists replacing theirs, and
/// those no longer open (archived, or no longer selected) leaving. Most severe first.
pub fn merge(
    read: Read,
    known: Vec<Finding>,
    listed: Vec<Finding>,
    is_open: impl Fn(&Finding) -> bool,
) -> Vec<Finding> {
    let mut open: BTreeMap<FindingId, Finding> = match read {
        Read::Full => BTreeMap::new(),
        Read::UpdatedSince(_) => known.into_iter().map(|f| (f.id.clone(), f)).collect(),
    };
    for finding in listed {
        if is_open(&finding) {
            open.insert(finding.id.clone(), finding);
        } else {
            open.remove(&finding.id);
        }
    }
    let mut findings: Vec<Finding> = open.into_values().collect();
    sort(&mut findings);
    findings
}

/// Most severe first, then by id: the order every report shows.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(id: &str) -> Finding {
        Finding::probe(id, "i-1", &[22])
    }

    fn ids(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.id.as_str()).collect()
    }

    const HOUR: i64 = 3600;

    #[test]
    fn the_first_read_of_a_region_is_full_then_incremental_until_the_resync() {
        let mut known = KnownFindings::default();
        let start = Timestamp(1_800_000_000);
        assert_eq!(known.read("us-east-1", start, HOUR), Read::Full);
        known.listed("us-east-1", Read::Full, &[probe("f1")], start);
        let next = Timestamp(start.0 + 300);
        assert_eq!(
            known.read("us-east-1", next, HOUR),
            Read::UpdatedSince(Timestamp(start.0 - OVERLAP_SECONDS)),
            "from the start of the last listing, minus the overlap"
        );
        known.listed("us-east-1", Read::UpdatedSince(start), &[probe("f1")], next);
        assert_eq!(
            known.read("us-east-1", Timestamp(next.0 + 300), HOUR),
            Read::UpdatedSince(Timestamp(next.0 - OVERLAP_SECONDS))
        );
        assert_eq!(
            known.read("us-east-1", Timestamp(start.0 + HOUR), HOUR),
            Read::Full,
            "a full listing every fullResyncInterval, counted from the last full one"
        );
        assert_eq!(known.read("eu-west-1", next, HOUR), Read::Full);
    }

    #[test]
    fn an_incremental_listing_updates_adds_and_drops_archived_findings() {
        let known = vec![probe("f1"), probe("f2")];
        let mut archived = probe("f2");
        archived.archived = true;
        let mut updated = probe("f1");
        updated.count = Some(9);
        let open = merge(
            Read::UpdatedSince(Timestamp(0)),
            known.clone(),
            vec![updated.clone(), archived, probe("f3")],
            |f| !f.archived,
        );
        assert_eq!(ids(&open), ["f1", "f3"]);
        assert_eq!(
            open[0].count,
            Some(9),
            "the listed finding replaces the known one"
        );

        let full = merge(Read::Full, known, vec![probe("f3")], |f| !f.archived);
        assert_eq!(ids(&full), ["f3"], "a full listing is the whole set");
    }

    #[test]
    fn a_pass_leaves_its_listed_regions_settled_and_an_event_unsettles_one() {
        use crate::outcome::SettledScope;
        use crate::plan::{Observation, plan};
        use crate::policy::{Mode, Policy};
        use crate::quiet::Settled;
        let policy = Policy::test().enforce();
        let observation = Observation {
            region: "us-east-1".into(),
            ..Observation::default()
        };
        let settled = Settled::of(&policy, &observation, &plan(&policy, &observation)).unwrap();
        let mut report = PassReport::new(Mode::Enforce);
        report.listed.insert("us-east-1".into(), Read::Full);
        report.settled.push(SettledScope {
            region: "us-east-1".into(),
            account: Some("111111111111".into()),
            settled,
        });
        let mut known = KnownFindings::default();
        let start = Timestamp(1_800_000_000);
        known.learn(&report, start);
        assert_eq!(
            known.settled("us-east-1").keys().collect::<Vec<_>>(),
            [&Some("111111111111".to_string())]
        );
        assert!(known.settled("eu-west-1").is_empty());
        known.heard(&probe("f1"), true);
        assert!(known.settled("us-east-1").is_empty(), "an event unsettles");
        known.learn(&report, start);
        report.settled.clear();
        known.learn(&report, start);
        assert!(
            known.settled("us-east-1").is_empty(),
            "a pass that left nothing settled"
        );
    }

    #[test]
    fn a_finding_heard_of_joins_a_listed_region_only() {
        let mut known = KnownFindings::default();
        known.heard(&probe("f1"), true);
        assert!(
            known.is_empty(),
            "not listed yet: its first listing is full"
        );
        known.listed("us-east-1", Read::Full, &[], Timestamp(0));
        known.heard(&probe("f1"), true);
        assert_eq!(ids(&known.open("us-east-1")), ["f1"]);
        known.heard(&probe("f1"), false);
        assert!(known.open("us-east-1").is_empty());
        known.retain_regions(&[]);
        assert_eq!(known.read("us-east-1", Timestamp(0), HOUR), Read::Full);
    }
}
