//! The validated policy the planner works from (built once from the manifest's spec).

use std::fmt;

use super::cidr::Cidr;
use super::finding::Finding;
use super::severity::Severity;

/// What the operator may do in AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Plan and report, change nothing (the default).
    #[default]
    DryRun,
    /// Apply the plan.
    Enforce,
    /// Report findings only; plan nothing.
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::DryRun => "DryRun",
            Mode::Enforce => "Enforce",
            Mode::Off => "Off",
        })
    }
}

/// The trusted source ranges: never a world range, never empty, reduced to the
/// widest ranges (a range inside another trusted range adds nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRanges(Vec<Cidr>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedRangesError {
    #[error("{0} is a world range: trusting it would leave the port open to everyone")]
    WorldRange(Cidr),
    #[error("at least one trusted range is required: the operator never closes a port to everyone")]
    Empty,
}

impl TrustedRanges {
    pub fn new(
        ranges: impl IntoIterator<Item = Cidr>,
    ) -> Result<TrustedRanges, TrustedRangesError> {
        let mut ranges: Vec<Cidr> = ranges.into_iter().collect();
        if let Some(world) = ranges.iter().find(|c| c.is_world()) {
            return Err(TrustedRangesError::WorldRange(*world));
        }
        ranges.sort();
        ranges.dedup();
        let widest: Vec<Cidr> = ranges
            .iter()
            .filter(|c| !ranges.iter().any(|o| o != *c && o.contains(c)))
            .copied()
            .collect();
        if widest.is_empty() {
            return Err(TrustedRangesError::Empty);
        }
        Ok(TrustedRanges(widest))
    }

    /// Is every address of `source` trusted?
    pub fn covers(&self, source: &Cidr) -> bool {
        self.0.iter().any(|t| t.contains(source))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Cidr> {
        self.0.iter()
    }
}

/// A policy whose every field has been checked: the planner's only input besides
/// what was observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub trusted: TrustedRanges,
    pub min_severity: Severity,
    /// Finding types to act on; empty means every type.
    pub finding_types: Vec<String>,
    pub mode: Mode,
    /// Security groups carrying a tag with this key are never touched.
    pub exempt_tag: String,
    pub archive_remediated: bool,
    /// Inbound rules a group may hold per address family (the account's quota).
    pub max_rules_per_group: usize,
}

pub const DEFAULT_EXEMPT_TAG: &str = "guardduty-operator/exempt";
pub const DEFAULT_MAX_RULES_PER_GROUP: usize = 60;

impl Policy {
    /// Does the policy concern this finding?
    pub fn selects(&self, finding: &Finding) -> bool {
        !finding.archived
            && finding.severity >= self.min_severity
            && (self.finding_types.is_empty() || self.finding_types.contains(&finding.finding_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_ranges_keep_only_the_widest_and_refuse_the_world() {
        let ranges = TrustedRanges::new(
            ["10.1.0.0/16", "10.0.0.0/8", "2001:db8::/32", "10.0.0.0/8"]
                .iter()
                .map(|r| r.parse().unwrap()),
        )
        .unwrap();
        let kept: Vec<String> = ranges.iter().map(|c| c.to_string()).collect();
        assert_eq!(kept, ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(
            TrustedRanges::new(["::/0".parse().unwrap()]),
            Err(TrustedRangesError::WorldRange("::/0".parse().unwrap()))
        );
        assert_eq!(TrustedRanges::new([]), Err(TrustedRangesError::Empty));
    }
}
