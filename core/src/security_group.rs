//! Security groups and their ingress rules as the planner sees them: what traffic a
//! rule admits, from where, which policy created it, and which ports each policy
//! watches in the group.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::cidr::{Cidr, Family};
use super::ids::{InstanceId, RuleId, SecurityGroupId};

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { from: 0, to: 65535 };

    pub fn new(from: u16, to: u16) -> PortRange {
        debug_assert!(from <= to, "port range {from}-{to} is reversed");
        PortRange { from, to }
    }

    pub fn single(port: u16) -> PortRange {
        PortRange {
            from: port,
            to: port,
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.from..=self.to).contains(&port)
    }

    /// This range without the given ports: the pieces that keep the access they had.
    pub fn without(&self, ports: &[u16]) -> Vec<PortRange> {
        let mut removed: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| self.contains(*p))
            .collect();
        removed.sort_unstable();
        removed.dedup();
        let mut pieces = Vec::new();
        let mut next = u32::from(self.from);
        for port in removed {
            if u32::from(port) > next {
                pieces.push(PortRange::new(next as u16, port - 1));
            }
            next = u32::from(port) + 1;
        }
        if next <= u32::from(self.to) {
            pieces.push(PortRange::new(next as u16, self.to));
        }
        pieces
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// The transport protocols a finding can name a port of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port of one protocol: what a finding says is exposed, and what the operator
/// closes and watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Exposure {
    pub protocol: Protocol,
    pub port: u16,
}

impl Exposure {
    pub fn tcp(port: u16) -> Exposure {
        Exposure {
            protocol: Protocol::Tcp,
            port,
        }
    }

    pub fn udp(port: u16) -> Exposure {
        Exposure {
            protocol: Protocol::Udp,
            port,
        }
    }

    /// Reads `tcp/22` (or `tcp:22`, as the watch tag writes it).
    pub fn parse(text: &str) -> Option<Exposure> {
        let (protocol, port) = text.split_once(['/', ':'])?;
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some(Exposure {
            protocol,
            port: port.parse().ok()?,
        })
    }
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

impl serde::Serialize for Exposure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `tcp/22,3389, udp/53`: exposures grouped by protocol, for people.
pub fn exposures_text(exposures: &[Exposure]) -> String {
    let mut parts = Vec::new();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let ports: Vec<String> = exposures
            .iter()
            .filter(|e| e.protocol == protocol)
            .map(|e| e.port.to_string())
            .collect();
        if !ports.is_empty() {
            parts.push(format!("{protocol}/{}", ports.join(",")));
        }
    }
    parts.join(", ")
}

/// What a rule lets through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Traffic {
    /// Protocol `-1`: every protocol and port.
    All,
    Tcp(PortRange),
    Udp(PortRange),
    /// ICMP and any other IP protocol: never concerned by a port finding. The
    /// operator itself only ever adds `icmp` and `icmpv6` with every type and code
    /// (splitting an all-traffic rule).
    Other {
        protocol: String,
    },
}

impl Traffic {
    /// Does this rule let TCP traffic to `port` through?
    pub fn admits_tcp(&self, port: u16) -> bool {
        self.admits(Exposure::tcp(port))
    }

    /// Does this rule let traffic of the exposure's protocol to its port through?
    pub fn admits(&self, exposure: Exposure) -> bool {
        match (self, exposure.protocol) {
            (Traffic::All, _) => true,
            (Traffic::Tcp(range), Protocol::Tcp) | (Traffic::Udp(range), Protocol::Udp) => {
                range.contains(exposure.port)
            }
            _ => false,
        }
    }

    /// The same protocol over other ports.
    pub fn with_ports(&self, ports: PortRange) -> Traffic {
        match self {
            Traffic::Udp(_) => Traffic::Udp(ports),
            _ => Traffic::Tcp(ports),
        }
    }

    /// The port range of a TCP or UDP rule.
    pub fn ports(&self) -> Option<PortRange> {
        match self {
            Traffic::Tcp(range) | Traffic::Udp(range) => Some(*range),
            _ => None,
        }
    }

    /// The protocol as EC2 names it: `tcp`, `udp`, `-1`, `icmp`, …
    pub fn protocol_name(&self) -> &str {
        match self {
            Traffic::All => "-1",
            Traffic::Tcp(_) => "tcp",
            Traffic::Udp(_) => "udp",
            Traffic::Other { protocol } => protocol,
        }
    }
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Traffic::All => f.write_str("all traffic"),
            Traffic::Tcp(range) => write!(f, "tcp/{range}"),
            Traffic::Udp(range) => write!(f, "udp/{range}"),
            Traffic::Other { protocol } => write!(f, "protocol {protocol}"),
        }
    }
}

/// Where a rule admits traffic from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Cidr(Cidr),
    /// Another security group: never touched by the operator.
    SecurityGroup(String),
    /// A managed prefix list: never touched by the operator.
    PrefixList(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Cidr(cidr) => write!(f, "{cidr}"),
            Source::SecurityGroup(id) => write!(f, "group {id}"),
            Source::PrefixList(id) => write!(f, "prefix list {id}"),
        }
    }
}

/// One ingress rule, as DescribeSecurityGroupRules reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub id: RuleId,
    pub traffic: Traffic,
    pub source: Source,
    pub description: Option<String>,
    /// The policy (`namespace/name`) that created the rule, read from the rule's
    /// `guardduty-operator/managed-by` tag; `None` for every rule someone else made.
    pub owner: Option<String>,
}

impl IngressRule {
    /// Did this policy create the rule?
    pub fn owned_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }

    pub fn cidr(&self) -> Option<&Cidr> {
        match &self.source {
            Source::Cidr(cidr) => Some(cidr),
            _ => None,
        }
    }

    /// The address families this rule counts against in the per-family quota: a
    /// rule that references a group or a prefix list counts in both.
    pub fn quota_families(&self) -> &'static [Family] {
        match &self.source {
            Source::Cidr(cidr) if cidr.family() == Family::V4 => &[Family::V4],
            Source::Cidr(_) => &[Family::V6],
            _ => &[Family::V4, Family::V6],
        }
    }
}

/// A security group with its ingress rules (egress rules are never read or changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: SecurityGroupId,
    pub name: String,
    pub vpc_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub ingress: Vec<IngressRule>,
    /// How many network interfaces use this group (a change reaches all of them);
    /// `None`: not read. A pass counts them only for the groups its plan would
    /// change ([`super::plan::interfaces_to_count`]): a converged group needs none.
    pub network_interfaces: Option<usize>,
    /// Per policy (`namespace/name`), the exposures it converged here and keeps
    /// closed, read from the group's `guardduty-operator/watch/…` tags.
    pub watches: BTreeMap<String, BTreeSet<Exposure>>,
}

/// The lifecycle state of an instance, as far as remediation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    Unknown,
}

impl InstanceState {
    /// A terminated instance has no network interfaces left to protect.
    pub fn is_gone(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Unknown => "unknown",
        })
    }
}

/// An instance as DescribeInstances reports it now (its groups may have changed
/// since the finding was recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: InstanceId,
    pub state: InstanceState,
    /// The security groups of all its network interfaces, sorted, without repeats.
    pub security_groups: Vec<SecurityGroupId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_without_a_port_keeps_both_sides() {
        assert_eq!(
            PortRange::ALL.without(&[22]),
            vec![PortRange::new(0, 21), PortRange::new(23, 65535)]
        );
    }

    #[test]
    fn a_range_without_its_edges_or_itself_keeps_what_is_left() {
        assert_eq!(PortRange::new(22, 22).without(&[22]), vec![]);
        assert_eq!(
            PortRange::new(22, 25).without(&[22, 25]),
            vec![PortRange::new(23, 24)]
        );
        assert_eq!(
            PortRange::new(0, 65535).without(&[0, 65535, 3389, 22, 22]),
            vec![
                PortRange::new(1, 21),
                PortRange::new(23, 3388),
                PortRange::new(3390, 65534)
            ]
        );
        assert_eq!(
            PortRange::new(1000, 2000).without(&[22]),
            vec![PortRange::new(1000, 2000)]
        );
    }
}
