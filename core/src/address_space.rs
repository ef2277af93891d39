//! Which addresses are globally reachable: the IANA IPv4 and IPv6 Special-Purpose
//! Address Registries, reduced to the ranges they mark "Globally Reachable: False"
//! (private use, shared address space, loopback, link-local, documentation, …), with
//! the more specific entries inside them that are reachable after all (PCP and TURN
//! anycast, AMT, AS112, ORCHIDv2, Teredo, …) taken back out.
//!
//! A source is *public* when it holds at least one address outside that set: it can
//! be reached from the Internet, so `revoke: Public` revokes it. Everything else
//! ("private": 10.0.0.0/8, 100.64.0.0/10, fc00::/7, …) stays.
//!
//! Sources: <https://www.iana.org/assignments/iana-ipv4-special-registry/> and
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/> (as of 2025; entries
//! marked "N/A", such as 6to4 and Teredo, count as reachable). Multicast ranges are not
//! in those registries and count as reachable too.

use std::sync::OnceLock;

use crate::cidr::{Cidr, Family};

/// Ranges the IPv4 registry marks not globally reachable.
const IPV4_NOT_GLOBAL: [&str; 13] = [
    "0.0.0.0/8",       // "This network"
    "10.0.0.0/8",      // Private-Use (RFC 1918)
    "100.64.0.0/10",   // Shared Address Space (RFC 6598, CGNAT)
    "127.0.0.0/8",     // Loopback
    "169.254.0.0/16",  // Link Local
    "172.16.0.0/12",   // Private-Use
    "192.0.0.0/24",    // IETF Protocol Assignments
    "192.0.2.0/24",    // Documentation (TEST-NET-1)
    "192.168.0.0/16",  // Private-Use
    "198.18.0.0/15",   // Benchmarking
    "198.51.100.0/24", // Documentation (TEST-NET-2)
    "203.0.113.0/24",  // Documentation (TEST-NET-3)
    "240.0.0.0/4",     // Reserved (255.255.255.255/32, Limited Broadcast, inside)
];

/// Entries inside those ranges that are globally reachable.
const IPV4_GLOBAL_INSIDE: [&str; 2] = [
    "192.0.0.9/32",  // Port Control Protocol Anycast
    "192.0.0.10/32", // Traversal Using Relays around NAT Anycast
];

/// Ranges the IPv6 registry marks not globally reachable.
const IPV6_NOT_GLOBAL: [&str; 13] = [
    "::1/128",        // Loopback
    "::/128",         // Unspecified
    "::ffff:0:0/96",  // IPv4-mapped
    "64:ff9b:1::/48", // IPv4-IPv6 Translation, local use
    "100::/64",       // Discard-Only
    "100:0:0:1::/64", // Dummy IPv6 Prefix
    "2001::/23",      // IETF Protocol Assignments
    "2001:db8::/32",  // Documentation
    "3fff::/20",      // Documentation
    "5f00::/16",      // Segment Routing (SRv6) SIDs
    "fc00::/7",       // Unique-Local
    "fe80::/10",      // Link-Local Unicast
    "2001:2::/48",    // Benchmarking (inside 2001::/23)
];

/// Entries inside those ranges that are globally reachable (or "N/A").
const IPV6_GLOBAL_INSIDE: [&str; 8] = [
    "2001::/32",       // TEREDO (N/A)
    "2001:1::1/128",   // Port Control Protocol Anycast
    "2001:1::2/128",   // TURN Anycast
    "2001:1::3/128",   // DNS-SD Service Registration Protocol Anycast
    "2001:3::/32",     // AMT
    "2001:4:112::/48", // AS112-v6
    "2001:20::/28",    // ORCHIDv2
    "2001:30::/28",    // Drone Remote ID Protocol Entity Tags
];

/// The IPv4-mapped IPv6 addresses: never a trusted range.
pub const IPV4_MAPPED: &str = "::ffff:0:0/96";

/// Inclusive address intervals of one family, sorted and disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Intervals(Vec<(u128, u128)>);

impl Intervals {
    fn of(ranges: impl IntoIterator<Item = Cidr>) -> Intervals {
        let mut spans: Vec<(u128, u128)> =
            ranges.into_iter().map(|c| (c.first(), c.last())).collect();
        spans.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Intervals(merged)
    }

    fn minus(&self, other: &Intervals) -> Intervals {
        let mut out = Vec::new();
        for &(start, end) in &self.0 {
            let mut from = start;
            let mut open = true;
            for &(cut_start, cut_end) in &other.0 {
                if cut_end < from || cut_start > end {
                    continue;
                }
                if cut_start > from {
                    out.push((from, cut_start - 1));
                }
                if cut_end >= end {
                    open = false;
                    break;
                }
                from = cut_end + 1;
            }
            if open {
                out.push((from, end));
            }
        }
        Intervals(out)
    }

    /// Is every address of `[start, end]` inside the set?
    fn contains(&self, start: u128, end: u128) -> bool {
        self.0.iter().any(|&(s, e)| s <= start && end <= e)
    }

    /// How many addresses the set holds (saturating at `u128::MAX`).
    fn count(&self) -> u128 {
        self.0.iter().fold(0u128, |total, &(s, e)| {
            total.saturating_add((e - s).saturating_add(1))
        })
    }
}

fn parse_all(ranges: &[&str]) -> Vec<Cidr> {
    ranges
        .iter()
        .map(|r| Cidr::parse_strict(r).expect("a range of the registry"))
        .collect()
}

/// The addresses not globally reachable, per family.
fn not_global(family: Family) -> &'static Intervals {
    static V4: OnceLock<Intervals> = OnceLock::new();
    static V6: OnceLock<Intervals> = OnceLock::new();
    let build = |not: &[&str], global: &[&str]| {
        Intervals::of(parse_all(not)).minus(&Intervals::of(parse_all(global)))
    };
    match family {
        Family::V4 => V4.get_or_init(|| build(&IPV4_NOT_GLOBAL, &IPV4_GLOBAL_INSIDE)),
        Family::V6 => V6.get_or_init(|| build(&IPV6_NOT_GLOBAL, &IPV6_GLOBAL_INSIDE)),
    }
}

/// Does `source` hold a globally reachable address? True for `0.0.0.0/0`, an office's
/// /24 or a single Internet host; false for a range wholly inside the private,
/// shared, loopback, link-local or documentation space.
pub fn is_public(source: &Cidr) -> bool {
    !not_global(source.family()).contains(source.first(), source.last())
}

/// How many globally reachable addresses of `family` the union of `ranges` holds.
pub fn public_addresses(ranges: &[Cidr], family: Family) -> u128 {
    let union = Intervals::of(ranges.iter().copied().filter(|c| c.family() == family));
    union.minus(not_global(family)).count()
}

/// The most globally reachable addresses a trusted set may hold: a /8 of IPv4
/// (16,777,216 addresses) and a /16 of IPv6 (2^112).
pub fn public_bound(family: Family) -> u128 {
    match family {
        Family::V4 => 1 << 24,
        Family::V6 => 1 << 112,
    }
}

/// Does `range` hold IPv4-mapped IPv6 addresses (`::ffff:0:0/96`)?
pub fn overlaps_ipv4_mapped(range: &Cidr) -> bool {
    let mapped = Cidr::parse_strict(IPV4_MAPPED).expect("the IPv4-mapped range");
    range.family() == Family::V6 && (range.contains(&mapped) || mapped.contains(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(&text.parse().unwrap())
    }

    #[test]
    fn private_shared_loopback_link_local_and_documentation_ranges_are_not_public() {
        for range in [
            "10.0.0.0/8",
            "10.1.2.0/24",
            "172.31.0.0/16",
            "192.168.10.0/24",
            "100.64.0.0/10",
            "127.0.0.1/32",
            "169.254.169.254/32",
            "192.0.2.0/24",
            "198.51.100.7/32",
            "203.0.113.0/24",
            "240.0.0.0/4",
            "fc00::/7",
            "fd12:3456::/32",
            "fe80::/10",
            "2001:db8::/32",
            "3fff::/20",
            "::1/128",
            "::ffff:10.0.0.1/128",
        ] {
            assert!(!public(range), "{range} is not globally reachable");
        }
    }

    #[test]
    fn the_world_internet_hosts_and_ranges_that_straddle_are_public() {
        for range in [
            "0.0.0.0/0",
            "::/0",
            "8.8.8.8/32",
            "52.94.0.0/16",
            // 10.0.0.0/7 is 10/8 (private) and 11/8 (public).
            "10.0.0.0/7",
            "100.0.0.0/8",
            "172.0.0.0/8",
            "2600:1f18::/32",
            "224.0.0.0/4",
            "2002::/16",
            "2000::/3",
        ] {
            assert!(public(range), "{range} holds globally reachable addresses");
        }
    }

    #[test]
    fn reachable_entries_inside_unreachable_blocks_count_as_public() {
        assert!(!public("192.0.0.8/32"));
        assert!(public("192.0.0.9/32"));
        assert!(public("192.0.0.10/32"));
        assert!(public("192.0.0.0/24"), "holds the two anycast addresses");
        assert!(public("2001:4:112::/48"));
        assert!(public("2001::/32"), "Teredo is not marked unreachable");
        assert!(!public("2001:2::/48"));
    }

    #[test]
    fn public_space_is_counted_over_the_union_of_the_ranges() {
        let ranges: Vec<Cidr> = ["0.0.0.0/1", "128.0.0.0/1"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let public = public_addresses(&ranges, Family::V4);
        assert!(public > public_bound(Family::V4));
        // Two overlapping /9s count once; private space counts nothing.
        let ranges: Vec<Cidr> = ["11.0.0.0/9", "11.0.0.0/9", "10.0.0.0/8", "192.168.0.0/16"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(public_addresses(&ranges, Family::V4), 1 << 23);
        let ranges: Vec<Cidr> = ["11.0.0.0/8", "12.0.0.0/24"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(public_addresses(&ranges, Family::V4), (1 << 24) + 256);
        assert_eq!(public_addresses(&ranges, Family::V6), 0);
        let v6: Vec<Cidr> = ["fc00::/7", "2600::/16"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(public_addresses(&v6, Family::V6), 1 << 112);
    }

    #[test]
    fn ipv4_mapped_ranges_are_recognised() {
        assert!(overlaps_ipv4_mapped(&"::ffff:0:0/96".parse().unwrap()));
        assert!(overlaps_ipv4_mapped(
            &"::ffff:10.0.0.0/104".parse().unwrap()
        ));
        assert!(overlaps_ipv4_mapped(&"::/64".parse().unwrap()));
        assert!(!overlaps_ipv4_mapped(&"2001:db8::/32".parse().unwrap()));
        assert!(!overlaps_ipv4_mapped(&"10.0.0.0/8".parse().unwrap()));
    }
}
