//! Security groups and their ingress rules as the planner sees them: what traffic a
//! rule admits, from where, and whether the operator created it.

use std::collections::BTreeMap;
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

/// What a rule lets through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Traffic {
    /// Protocol `-1`: every protocol and port.
    All,
    Tcp(PortRange),
    Udp(PortRange),
    /// ICMP and any other IP protocol: never concerned by a port finding.
    Other {
        protocol: String,
    },
}

impl Traffic {
    /// Does this rule let TCP traffic to `port` through?
    pub fn admits_tcp(&self, port: u16) -> bool {
        match self {
            Traffic::All => true,
            Traffic::Tcp(range) => range.contains(port),
            Traffic::Udp(_) | Traffic::Other { .. } => false,
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
    /// The ports the operator protects with this rule, when the operator created
    /// it (read from the rule's tag); `None` for every rule someone else made.
    pub managed_ports: Option<Vec<u16>>,
}

impl IngressRule {
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
    /// How many network interfaces use this group (a change reaches all of them).
    pub network_interfaces: usize,
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
