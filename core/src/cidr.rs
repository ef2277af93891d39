//! Network ranges: parsed and normalised CIDRs of both address families, and the
//! containment test every safety decision of the planner rests on.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The address family of a range; security group quotas count them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// A CIDR block in canonical form (host bits zero), so two spellings of the same
/// range compare equal, exactly as AWS stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    family: Family,
    /// The network address, IPv4 in the low 32 bits.
    network: u128,
    prefix: u8,
}

/// Why a text is not a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} has no /prefix length (write it as e.g. 10.0.0.0/8 or 2001:db8::/32)")]
    MissingPrefix(String),
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    #[error("{text:?}: the prefix length must be a number from 0 to {max}")]
    BadPrefix { text: String, max: u8 },
    #[error("{text:?} has host bits set: the network is {canonical}")]
    HostBitsSet { text: String, canonical: Cidr },
}

impl Cidr {
    /// Parses a CIDR exactly as written: host bits must be zero, so a typo such as
    /// `10.1.2.3/8` is refused rather than silently widened.
    pub fn parse_strict(text: &str) -> Result<Cidr, CidrError> {
        let (cidr, had_host_bits) = Self::parse_inner(text)?;
        if had_host_bits {
            return Err(CidrError::HostBitsSet {
                text: text.to_string(),
                canonical: cidr,
            });
        }
        Ok(cidr)
    }

    /// Parses a CIDR and clears host bits, as AWS canonicalises what it stores.
    pub fn parse_normalising(text: &str) -> Result<Cidr, CidrError> {
        Self::parse_inner(text).map(|(cidr, _)| cidr)
    }

    fn parse_inner(text: &str) -> Result<(Cidr, bool), CidrError> {
        let trimmed = text.trim();
        let (addr, prefix) = trimmed
            .split_once('/')
            .ok_or_else(|| CidrError::MissingPrefix(text.to_string()))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(text.to_string()))?;
        let (family, raw) = match addr {
            IpAddr::V4(v4) => (Family::V4, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (Family::V6, u128::from(v6)),
        };
        let max = family.bits();
        let prefix: u8 =
            prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::BadPrefix {
                    text: text.to_string(),
                    max,
                })?;
        let network = raw & mask(family, prefix);
        Ok((
            Cidr {
                family,
                network,
                prefix,
            },
            network != raw,
        ))
    }

    /// The range holding exactly one address.
    pub fn host(addr: IpAddr) -> Cidr {
        match addr {
            IpAddr::V4(v4) => Cidr {
                family: Family::V4,
                network: u128::from(u32::from(v4)),
                prefix: 32,
            },
            IpAddr::V6(v6) => Cidr {
                family: Family::V6,
                network: u128::from(v6),
                prefix: 128,
            },
        }
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// `0.0.0.0/0` or `::/0`: every address of the family.
    pub fn is_world(&self) -> bool {
        self.prefix == 0
    }

    /// True when every address of `other` is inside `self` (same family only).
    pub fn contains(&self, other: &Cidr) -> bool {
        self.family == other.family
            && self.prefix <= other.prefix
            && other.network & mask(self.family, self.prefix) == self.network
    }

    /// The first address, as a number (IPv4 in the low 32 bits).
    pub fn first(&self) -> u128 {
        self.network
    }

    /// The last address, as a number (IPv4 in the low 32 bits).
    pub fn last(&self) -> u128 {
        self.network | !mask(self.family, self.prefix) & family_mask(self.family)
    }

    pub fn network_address(&self) -> IpAddr {
        match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(self.network as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.network)),
        }
    }
}

/// Is every address of `target` inside the union of `ranges`?
pub fn covered_by<'a>(ranges: impl IntoIterator<Item = &'a Cidr>, target: &Cidr) -> bool {
    let mut spans: Vec<(u128, u128)> = ranges
        .into_iter()
        .filter(|r| r.family == target.family)
        .map(|r| (r.first(), r.last()))
        .collect();
    spans.sort_unstable();
    let mut next = target.first();
    for (first, last) in spans {
        if last < next {
            continue;
        }
        if first > next {
            return false;
        }
        if last >= target.last() {
            return true;
        }
        next = last + 1;
    }
    false
}

/// Every bit of an address of the family.
fn family_mask(family: Family) -> u128 {
    match family {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    }
}

fn mask(family: Family, prefix: u8) -> u128 {
    let bits = u32::from(family.bits());
    let prefix = u32::from(prefix);
    if prefix == 0 {
        return 0;
    }
    let family_mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    // At most 127 host bits here, so the shift cannot overflow.
    let host_mask = (1u128 << (bits - prefix)) - 1;
    family_mask & !host_mask
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse_strict(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network_address(), self.prefix)
    }
}

/// IPv4 before IPv6, then by network, wider ranges first.
impl Ord for Cidr {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.family, self.network, self.prefix).cmp(&(other.family, other.network, other.prefix))
    }
}

impl PartialOrd for Cidr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse_strict(s).unwrap()
    }

    #[test]
    fn wider_range_contains_narrower_one_of_the_same_family_only() {
        assert!(cidr("10.0.0.0/8").contains(&cidr("10.1.0.0/16")));
        assert!(cidr("10.0.0.0/8").contains(&cidr("10.0.0.0/8")));
        assert!(!cidr("10.1.0.0/16").contains(&cidr("10.0.0.0/8")));
        assert!(!cidr("10.0.0.0/8").contains(&cidr("11.0.0.0/8")));
        assert!(cidr("0.0.0.0/0").contains(&cidr("192.0.2.7/32")));
        assert!(!cidr("0.0.0.0/0").contains(&cidr("2001:db8::/32")));
        assert!(cidr("2001:db8::/32").contains(&cidr("2001:db8:1::/48")));
        assert!(cidr("::/0").contains(&cidr("2001:db8::/32")));
        assert!(cidr("192.0.2.7/32").contains(&cidr("192.0.2.7/32")));
        assert!(!cidr("192.0.2.7/32").contains(&cidr("192.0.2.8/32")));
    }

    #[test]
    fn host_bits_are_refused_when_strict_and_cleared_when_normalising() {
        assert_eq!(
            Cidr::parse_strict("10.1.2.3/8"),
            Err(CidrError::HostBitsSet {
                text: "10.1.2.3/8".into(),
                canonical: cidr("10.0.0.0/8")
            })
        );
        assert_eq!(
            Cidr::parse_normalising("100.68.0.18/18")
                .unwrap()
                .to_string(),
            "100.68.0.0/18"
        );
        assert_eq!(
            Cidr::parse_normalising("2001:db8::1/32")
                .unwrap()
                .to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn malformed_ranges_name_what_is_wrong() {
        assert!(matches!(
            Cidr::parse_strict("10.0.0.0"),
            Err(CidrError::MissingPrefix(_))
        ));
        assert!(matches!(
            Cidr::parse_strict("10.0.0.300/8"),
            Err(CidrError::BadAddress(_))
        ));
        assert!(matches!(
            Cidr::parse_strict("10.0.0.0/33"),
            Err(CidrError::BadPrefix { max: 32, .. })
        ));
        assert!(matches!(
            Cidr::parse_strict("2001:db8::/129"),
            Err(CidrError::BadPrefix { max: 128, .. })
        ));
    }

    #[test]
    fn world_ranges_are_recognised_in_both_families() {
        assert!(cidr("0.0.0.0/0").is_world());
        assert!(cidr("::/0").is_world());
        assert!(!cidr("0.0.0.0/1").is_world());
    }

    #[test]
    fn full_length_prefixes_keep_every_bit() {
        assert_eq!(cidr("255.255.255.255/32").to_string(), "255.255.255.255/32");
        assert_eq!(
            cidr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128").to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"
        );
        assert_eq!(
            Cidr::parse_normalising("255.255.255.255/31")
                .unwrap()
                .to_string(),
            "255.255.255.254/31"
        );
    }

    mod against_ipnet {
        //! `covered_by` checked against an independent implementation: ipnet's
        //! aggregation (the fewest blocks that cover exactly the union). A block lies
        //! in the union exactly when one aggregated block contains it.

        use super::*;
        use ipnet::IpNet;
        use proptest::prelude::*;

        /// Blocks of both families packed into small spaces, so that unions, adjacency
        /// and gaps are common: wide ones (10.0.0.0/8, 2001:db8::/32, up to 6 bits
        /// below) and narrow ones down to single addresses (10.0.0.0/26,
        /// 2001:db8::/122), where a gap of one address shows.
        fn block() -> impl Strategy<Value = Cidr> {
            let v4 = |base: u32, shift: u32, prefixes: std::ops::RangeInclusive<u8>| {
                (0u32..64, prefixes).prop_map(move |(n, prefix)| {
                    let address = std::net::Ipv4Addr::from(base | (n << shift));
                    Cidr::parse_normalising(&format!("{address}/{prefix}")).unwrap()
                })
            };
            let v6 = |shift: u32, prefixes: std::ops::RangeInclusive<u8>| {
                (0u128..64, prefixes).prop_map(move |(n, prefix)| {
                    let address = std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | (n << shift));
                    Cidr::parse_normalising(&format!("{address}/{prefix}")).unwrap()
                })
            };
            prop_oneof![
                v4(0x0a00_0000, 18, 8..=14),
                v4(0x0a00_0000, 0, 26..=32),
                v6(90, 32..=38),
                v6(0, 122..=128),
            ]
        }

        fn ipnet(cidr: &Cidr) -> IpNet {
            cidr.to_string().parse().unwrap()
        }

        /// A block and some of its equal parts (up to 16; each kept with probability
        /// 0.85), so that the union often covers the block but for one part: a gap as
        /// small as one address.
        fn block_and_parts() -> impl Strategy<Value = (Cidr, Vec<Cidr>)> {
            let keep = proptest::collection::vec(proptest::bool::weighted(0.85), 16);
            (block(), 0u8..=4, keep).prop_map(|(whole, depth, keep)| {
                let bits = whole.family().bits();
                let depth = depth.min(bits - whole.prefix());
                let step = 1u128 << (bits - whole.prefix() - depth);
                let parts = (0..1usize << depth)
                    .filter(|i| keep[*i])
                    .map(|i| {
                        let first = whole.first() + i as u128 * step;
                        let address: IpAddr = match whole.family() {
                            Family::V4 => Ipv4Addr::from(first as u32).into(),
                            Family::V6 => Ipv6Addr::from(first).into(),
                        };
                        Cidr::parse_strict(&format!("{address}/{}", whole.prefix() + depth))
                            .unwrap()
                    })
                    .collect();
                (whole, parts)
            })
        }

        proptest! {
            #[test]
            fn a_block_is_covered_by_its_parts_exactly_when_none_is_missing(
                (whole, parts) in block_and_parts(),
            ) {
                let aggregated = IpNet::aggregate(&parts.iter().map(ipnet).collect());
                let expected = aggregated.iter().any(|net| net.contains(&ipnet(&whole)));
                prop_assert_eq!(covered_by(parts.iter(), &whole), expected,
                    "parts {:?} of {}", parts.iter().map(ToString::to_string).collect::<Vec<_>>(), whole);
            }

            #[test]
            fn covered_by_is_containment_in_the_aggregated_union(
                ranges in proptest::collection::vec(block(), 0..8),
                target in block(),
            ) {
                let aggregated = IpNet::aggregate(&ranges.iter().map(ipnet).collect());
                let expected = aggregated.iter().any(|net| net.contains(&ipnet(&target)));
                prop_assert_eq!(covered_by(ranges.iter(), &target), expected,
                    "ranges {:?} target {}", ranges.iter().map(ToString::to_string).collect::<Vec<_>>(), target);
            }
        }

        #[test]
        fn two_adjacent_halves_cover_the_whole() {
            let halves = [cidr("10.0.0.0/9"), cidr("10.128.0.0/9")];
            assert!(covered_by(halves.iter(), &cidr("10.0.0.0/8")));
            assert_eq!(
                IpNet::aggregate(&halves.iter().map(ipnet).collect()),
                vec![ipnet(&cidr("10.0.0.0/8"))]
            );
            assert!(!covered_by(halves[..1].iter(), &cidr("10.0.0.0/8")));
        }
    }
}
