//! GuardDuty findings reduced to what the operator reports and acts on.

use std::fmt;
use std::net::IpAddr;

use super::ids::{FindingId, InstanceId};
use super::security_group::{Exposure, Protocol};
use super::severity::Severity;

/// The finding types whose exposure the operator knows how to close: an inbound
/// probe or brute force against a port of an EC2 instance.
pub const REMEDIABLE_TYPES: [&str; 4] = [
    "Recon:EC2/PortProbeUnprotectedPort",
    "Recon:EC2/PortProbeEMRUnprotectedPort",
    "UnauthorizedAccess:EC2/SSHBruteForce",
    "UnauthorizedAccess:EC2/RDPBruteForce",
];

/// Which way a network connection went, seen from our instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// Our instance was the target.
    Inbound,
    /// Our instance was the actor: it attacked someone else.
    Outbound,
    Unknown,
}

/// What GuardDuty saw happen.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Action {
    /// `PORT_PROBE`: remote hosts probed local ports.
    #[serde(rename_all = "camelCase")]
    PortProbe {
        ports: Vec<u16>,
        remote_ips: Vec<IpAddr>,
    },
    /// `NETWORK_CONNECTION`, e.g. SSH or RDP brute force.
    #[serde(rename_all = "camelCase")]
    NetworkConnection {
        direction: Direction,
        protocol: Option<String>,
        local_port: Option<u16>,
        remote_ip: Option<IpAddr>,
    },
    /// Anything else (API calls, DNS requests, …): reported, never remediated.
    #[serde(rename_all = "camelCase")]
    Other { action_type: Option<String> },
}

/// The EC2 instance a finding is about, as recorded in the finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRef {
    pub id: InstanceId,
    /// Group ids as the finding recorded them (sample findings carry placeholders,
    /// so these are kept as text).
    pub security_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub id: FindingId,
    #[serde(rename = "type")]
    pub finding_type: String,
    pub severity: Severity,
    pub account_id: String,
    pub region: String,
    pub title: String,
    pub sample: bool,
    pub archived: bool,
    pub count: Option<i64>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub updated_at: Option<String>,
    /// The finding's ARN: its id in Security Hub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// `None` when the finding is not about an EC2 instance, or names none.
    pub instance: Option<InstanceRef>,
    pub action: Action,
}

impl Finding {
    /// The local ports the finding concerns.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports = match &self.action {
            Action::PortProbe { ports, .. } => ports.clone(),
            Action::NetworkConnection {
                local_port: Some(port),
                ..
            } => vec![*port],
            _ => Vec::new(),
        };
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The ports the finding concerns, each with its protocol: a port probe is TCP
    /// (GuardDuty probes TCP ports); a connection has the protocol it names (an RDP
    /// brute force over UDP is closed on UDP rules), TCP when it names none.
    pub fn exposures(&self) -> Vec<Exposure> {
        let protocol = match &self.action {
            Action::NetworkConnection {
                protocol: Some(protocol),
                ..
            } if protocol.eq_ignore_ascii_case("UDP") => Protocol::Udp,
            _ => Protocol::Tcp,
        };
        self.ports()
            .into_iter()
            .map(|port| Exposure { protocol, port })
            .collect()
    }

    pub fn remote_ips(&self) -> Vec<IpAddr> {
        let mut ips = match &self.action {
            Action::PortProbe { remote_ips, .. } => remote_ips.clone(),
            Action::NetworkConnection {
                remote_ip: Some(ip),
                ..
            } => vec![*ip],
            _ => Vec::new(),
        };
        ips.sort_unstable();
        ips.dedup();
        ips
    }
}

/// Why a finding is reported but changes nothing in AWS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum ReportOnly {
    /// A sample finding (CreateSampleFindings): alerted on, never acted on.
    Sample,
    /// A type the operator cannot fix; people are told about it.
    NotRemediable,
    /// Outbound brute force: our instance is the attacker, its ingress is not the problem.
    InstanceIsTheActor,
    /// A connection finding that does not say which way it went.
    DirectionUnknown,
    /// No instance named in the finding.
    NoInstance,
    /// No local port named in the finding.
    NoPort,
    /// DescribeInstances no longer knows the instance.
    #[serde(rename_all = "camelCase")]
    InstanceNotFound { instance: InstanceId },
    /// The instance is terminated or shutting down.
    #[serde(rename_all = "camelCase")]
    InstanceGone {
        instance: InstanceId,
        state: super::security_group::InstanceState,
    },
    /// The finding is about another account (a GuardDuty administrator sees its
    /// members' findings); remediating there needs a role in that account.
    #[serde(rename_all = "camelCase")]
    OtherAccount { account: String },
    /// A member account left out of `memberAccounts.accounts`.
    #[serde(rename_all = "camelCase")]
    AccountNotAllowed { account: String },
    /// Remediation mode is Off.
    RemediationOff,
    /// Every port the finding names serves everyone by design
    /// (`remediation.publicPorts`).
    #[serde(rename_all = "camelCase")]
    PublicPorts { ports: Vec<u16> },
    /// None of the finding's ports is among `remediation.ports`.
    #[serde(rename_all = "camelCase")]
    PortsNotRemediated { ports: Vec<u16> },
}

impl fmt::Display for ReportOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportOnly::Sample => f.write_str("sample finding: never changes AWS"),
            ReportOnly::NotRemediable => f.write_str("type not remediated: reported only"),
            ReportOnly::InstanceIsTheActor => {
                f.write_str("outbound: the instance is the actor, its ingress is left alone")
            }
            ReportOnly::DirectionUnknown => {
                f.write_str("connection direction unknown: reported only")
            }
            ReportOnly::NoInstance => f.write_str("names no EC2 instance"),
            ReportOnly::NoPort => f.write_str("names no local port"),
            ReportOnly::InstanceNotFound { instance } => {
                write!(f, "instance {instance} no longer exists")
            }
            ReportOnly::InstanceGone { instance, state } => {
                write!(f, "instance {instance} is {state}")
            }
            ReportOnly::OtherAccount { account } => write!(
                f,
                "belongs to account {account}, not the one of these credentials: not remediated"
            ),
            ReportOnly::AccountNotAllowed { account } => write!(
                f,
                "belongs to account {account}, which is not among memberAccounts.accounts: not \
                 remediated"
            ),
            ReportOnly::RemediationOff => f.write_str("remediation mode is Off"),
            ReportOnly::PublicPorts { ports } => write!(
                f,
                "port {} serves everyone by design (remediation.publicPorts): reported, never \
                 closed",
                ports_list(ports)
            ),
            ReportOnly::PortsNotRemediated { ports } => write!(
                f,
                "port {} is not among remediation.ports: reported only",
                ports_list(ports)
            ),
        }
    }
}

fn ports_list(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(",")
}

/// What the operator will try to do about one finding, decided from the finding
/// alone (the instance's current state is checked later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    /// Close these ports of this instance to everyone but the trusted ranges.
    Close {
        instance: InstanceId,
        exposures: Vec<Exposure>,
    },
    Report(ReportOnly),
}

/// Decides, from the finding alone, whether it is one the operator acts on.
pub fn triage(finding: &Finding) -> Triage {
    if finding.sample {
        return Triage::Report(ReportOnly::Sample);
    }
    if !REMEDIABLE_TYPES.contains(&finding.finding_type.as_str()) {
        return Triage::Report(ReportOnly::NotRemediable);
    }
    match &finding.action {
        Action::NetworkConnection {
            direction: Direction::Inbound,
            ..
        }
        | Action::PortProbe { .. } => {}
        Action::NetworkConnection {
            direction: Direction::Outbound,
            ..
        } => return Triage::Report(ReportOnly::InstanceIsTheActor),
        Action::NetworkConnection { .. } => return Triage::Report(ReportOnly::DirectionUnknown),
        Action::Other { .. } => return Triage::Report(ReportOnly::NoPort),
    }
    let Some(instance) = &finding.instance else {
        return Triage::Report(ReportOnly::NoInstance);
    };
    let exposures = finding.exposures();
    if exposures.is_empty() {
        return Triage::Report(ReportOnly::NoPort);
    }
    Triage::Close {
        instance: instance.id.clone(),
        exposures,
    }
}
