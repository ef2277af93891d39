//! How the operator remembers, on AWS itself, what it converged: tags.
//!
//! - On every rule it adds: `guardduty-operator/managed-by` = the owning policy
//!   (`namespace/name`), so no other policy ever revokes, narrows or reverts it.
//! - On every group it changes: `guardduty-operator/watch/<namespace>/<name>` = the
//!   exposures it keeps closed there (`tcp:22 udp:3389`), so a reopened port is
//!   closed again on the next pass, even after a revoke-only fix and an archived
//!   finding, with no state kept anywhere else.

use std::collections::BTreeSet;

use crate::security_group::{Exposure, Protocol};

/// The tag key of the owner on the rules the operator adds.
pub const MANAGED_BY_TAG: &str = "guardduty-operator/managed-by";
/// The prefix of the watch tags on security groups; the owner follows it.
pub const WATCH_TAG_PREFIX: &str = "guardduty-operator/watch/";
/// AWS tag keys hold at most 128 characters.
pub const MAX_TAG_KEY: usize = 128;
/// AWS tag values hold at most 256 characters.
pub const MAX_TAG_VALUE: usize = 256;
/// The longest owner (`namespace/name`) a watch tag key can hold.
pub const MAX_OWNER: usize = MAX_TAG_KEY - WATCH_TAG_PREFIX.len();

/// The watch tag key of a policy.
pub fn watch_key(owner: &str) -> String {
    format!("{WATCH_TAG_PREFIX}{owner}")
}

/// The owner a tag key names, when it is a watch tag.
pub fn watch_owner(key: &str) -> Option<&str> {
    key.strip_prefix(WATCH_TAG_PREFIX).filter(|o| !o.is_empty())
}

/// The tag value for these exposures: per protocol, ports and runs of ports
/// (`tcp:22 tcp:8000-8080 udp:53`), sorted.
pub fn watch_value(exposures: &BTreeSet<Exposure>) -> String {
    let mut parts = Vec::new();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let ports: Vec<u16> = exposures
            .iter()
            .filter(|e| e.protocol == protocol)
            .map(|e| e.port)
            .collect();
        let mut i = 0;
        while i < ports.len() {
            let mut j = i;
            while j + 1 < ports.len() && ports[j + 1] == ports[j] + 1 {
                j += 1;
            }
            if j > i {
                parts.push(format!("{protocol}:{}-{}", ports[i], ports[j]));
            } else {
                parts.push(format!("{protocol}:{}", ports[i]));
            }
            i = j + 1;
        }
    }
    parts.join(" ")
}

/// The exposures a watch tag value holds; what cannot be read is left out.
pub fn parse_watch_value(value: &str) -> BTreeSet<Exposure> {
    let mut exposures = BTreeSet::new();
    for part in value.split_whitespace() {
        let Some((protocol, ports)) = part.split_once(':') else {
            continue;
        };
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => continue,
        };
        let (from, to) = ports.split_once('-').unwrap_or((ports, ports));
        let (Ok(from), Ok(to)) = (from.parse::<u16>(), to.parse::<u16>()) else {
            continue;
        };
        // A run is at most 65536 ports; a reversed one is read as empty.
        for port in from..=to {
            exposures.insert(Exposure { protocol, port });
        }
    }
    exposures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_value_reads_back_as_the_same_exposures() {
        let exposures: BTreeSet<Exposure> = [
            Exposure::tcp(22),
            Exposure::tcp(8000),
            Exposure::tcp(8001),
            Exposure::tcp(8002),
            Exposure::udp(3389),
        ]
        .into();
        let value = watch_value(&exposures);
        assert_eq!(value, "tcp:22 tcp:8000-8002 udp:3389");
        assert_eq!(parse_watch_value(&value), exposures);
        assert!(parse_watch_value("tcp:x icmp:3 udp:9-7 nonsense").is_empty());
    }

    #[test]
    fn a_watch_key_names_its_owner() {
        assert_eq!(
            watch_key("security/web"),
            "guardduty-operator/watch/security/web"
        );
        assert_eq!(
            watch_owner("guardduty-operator/watch/security/web"),
            Some("security/web")
        );
        assert_eq!(watch_owner("guardduty-operator/watch/"), None);
        assert_eq!(watch_owner("Name"), None);
        assert_eq!(MAX_OWNER, 103);
    }
}
