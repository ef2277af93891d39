//! The validated policy the planner works from (built once from the manifest's spec).

use std::collections::BTreeSet;
use std::fmt;

use super::address_space::{is_public, overlaps_ipv4_mapped, public_addresses, public_bound};
use super::cidr::{Cidr, Family, covered_by};
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

/// The trusted source ranges: never a world range nor more public space than a /8
/// (IPv4) or a /16 (IPv6) over their union, never IPv4-mapped IPv6 addresses, never
/// empty; reduced to the widest ranges (a range inside another adds nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRanges(Vec<Cidr>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedRangesError {
    #[error("{0} is a world range: trusting it would leave the port open to everyone")]
    WorldRange(Cidr),
    #[error("at least one trusted range is required: the operator never closes a port to everyone")]
    Empty,
    #[error(
        "{0} holds IPv4-mapped IPv6 addresses (::ffff:0:0/96), which security groups never \
         match: write the IPv4 range itself"
    )]
    Ipv4Mapped(Cidr),
    #[error(
        "together the trusted {family} ranges hold {addresses} globally reachable addresses, \
         more than a {bound} ({limit}): a set that wide leaves the port open to much of the \
         Internet"
    )]
    TooMuchPublicSpace {
        family: Family,
        addresses: u128,
        bound: &'static str,
        limit: u128,
    },
}

impl TrustedRanges {
    pub fn new(
        ranges: impl IntoIterator<Item = Cidr>,
    ) -> Result<TrustedRanges, TrustedRangesError> {
        let mut ranges: Vec<Cidr> = ranges.into_iter().collect();
        if let Some(world) = ranges.iter().find(|c| c.is_world()) {
            return Err(TrustedRangesError::WorldRange(*world));
        }
        if let Some(mapped) = ranges.iter().find(|c| overlaps_ipv4_mapped(c)) {
            return Err(TrustedRangesError::Ipv4Mapped(*mapped));
        }
        for (family, bound) in [(Family::V4, "/8"), (Family::V6, "/16")] {
            let addresses = public_addresses(&ranges, family);
            let limit = public_bound(family);
            if addresses > limit {
                return Err(TrustedRangesError::TooMuchPublicSpace {
                    family,
                    addresses,
                    bound,
                    limit,
                });
            }
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

    /// Is every address of `source` trusted? Over the union of the ranges, so two
    /// adjacent /9s cover the /8 they make up.
    pub fn covers(&self, source: &Cidr) -> bool {
        covered_by(self.0.iter(), source)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Cidr> {
        self.0.iter()
    }
}

/// Which sources of a rule on a port in scope are revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RevokeScope {
    /// Sources that hold a globally reachable address (the default): private ranges
    /// (a peered VPC, a CGNAT health checker) stay.
    #[default]
    Public,
    /// Every source outside the trusted ranges.
    Untrusted,
}

/// What happens to an all-traffic rule (protocol `-1`) that exposes a port in scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum AllTrafficRules {
    /// The group is refused: a person splits the rule (the default).
    #[default]
    Refuse,
    /// The rule is replaced by tcp, udp and icmp rules that keep every other port's
    /// access; other IP protocols from that source are dropped, and the plan says so.
    Split,
}

/// A policy whose every field has been checked: the planner's only input besides
/// what was observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The policy itself (`namespace/name`): the owner written on the rules it adds and
    /// the groups it watches; another owner's rules and ports are never touched.
    pub owner: String,
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
    /// Which sources are revoked.
    pub revoke: RevokeScope,
    /// Ports that serve everyone by design: reported and alerted, never remediated.
    pub public_ports: BTreeSet<u16>,
    /// When not empty, the only ports remediated.
    pub ports: BTreeSet<u16>,
    /// A group used by more network interfaces is refused.
    pub max_network_interfaces: usize,
    pub all_traffic_rules: AllTrafficRules,
    /// How findings of member accounts are remediated; `None`: they are reported.
    pub member_accounts: Option<MemberAccounts>,
    /// Tell GuardDuty a remediated finding was useful (UpdateFindingsFeedback).
    pub finding_feedback: bool,
    /// Mark a remediated finding's Security Hub copy RESOLVED (BatchUpdateFindings).
    pub security_hub_updates: bool,
}

/// Member accounts of a GuardDuty administrator account, remediated through a role the
/// operator assumes in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAccounts {
    /// The role's name in every member account (`arn:aws:iam::<account>:role/<name>`).
    pub role_name: String,
    /// The external id the role's trust policy asks for, if any.
    pub external_id: Option<String>,
    /// The only accounts remediated; empty: every member account.
    pub accounts: BTreeSet<String>,
}

impl MemberAccounts {
    pub fn allows(&self, account: &str) -> bool {
        self.accounts.is_empty() || self.accounts.contains(account)
    }

    /// The ARN of the role to assume in `account`, in the partition of `region`.
    pub fn role_arn(&self, account: &str, region: &str) -> String {
        format!(
            "arn:{}:iam::{account}:role/{}",
            partition(region),
            self.role_name
        )
    }
}

/// The AWS partition a region belongs to.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else {
        "aws"
    }
}

pub const DEFAULT_EXEMPT_TAG: &str = "guardduty-operator/exempt";
pub const DEFAULT_MAX_RULES_PER_GROUP: usize = 60;
pub const DEFAULT_PUBLIC_PORTS: [u16; 2] = [80, 443];
pub const DEFAULT_MAX_NETWORK_INTERFACES: usize = 50;

impl Policy {
    /// May the operator close this port?
    pub fn remediates_port(&self, port: u16) -> bool {
        !self.public_ports.contains(&port) && (self.ports.is_empty() || self.ports.contains(&port))
    }

    /// Is `source`, on a port in scope, revoked (unless the operator added the rule
    /// itself, whose every untrusted source goes)?
    pub fn revokes(&self, source: &Cidr) -> bool {
        !self.trusted.covers(source)
            && match self.revoke {
                RevokeScope::Public => is_public(source),
                RevokeScope::Untrusted => true,
            }
    }

    /// Is a finding of `account` remediated, the caller's account being `ours`?
    pub fn remediates_account(&self, account: &str, ours: &str) -> bool {
        account == ours
            || self
                .member_accounts
                .as_ref()
                .is_some_and(|members| members.allows(account))
    }

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

    fn ranges(texts: &[&str]) -> Result<TrustedRanges, TrustedRangesError> {
        TrustedRanges::new(texts.iter().map(|r| r.parse().unwrap()))
    }

    #[test]
    fn a_world_equivalent_trusted_set_is_refused() {
        assert!(matches!(
            ranges(&["0.0.0.0/1", "128.0.0.0/1"]),
            Err(TrustedRangesError::TooMuchPublicSpace {
                family: Family::V4,
                ..
            })
        ));
        assert!(matches!(
            ranges(&["2000::/4"]),
            Err(TrustedRangesError::TooMuchPublicSpace {
                family: Family::V6,
                ..
            })
        ));
        // Exactly a /8 of public space is allowed, private space does not count.
        assert!(ranges(&["11.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "fc00::/7"]).is_ok());
        assert!(ranges(&["11.0.0.0/8", "12.0.0.0/31"]).is_err());
        assert_eq!(
            ranges(&["::ffff:10.0.0.0/104"]),
            Err(TrustedRangesError::Ipv4Mapped(
                "::ffff:10.0.0.0/104".parse().unwrap()
            ))
        );
    }

    #[test]
    fn trusted_ranges_cover_a_source_over_their_union() {
        let trusted = ranges(&["10.0.0.0/9", "10.128.0.0/9", "192.168.0.0/24"]).unwrap();
        let covers = |s: &str| trusted.covers(&s.parse().unwrap());
        assert!(covers("10.0.0.0/8"), "two adjacent /9s make the /8");
        assert!(covers("10.64.0.0/10"));
        assert!(covers("192.168.0.0/25"));
        assert!(!covers("192.168.0.0/23"));
        assert!(!covers("0.0.0.0/0"));
        assert!(!covers("2001:db8::/32"));
    }
}
