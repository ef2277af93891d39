//! Alerts to deliver in channel tests: a high-severity SSH probe, and ways to vary it.
#![allow(dead_code)]

use guardduty_operator::domain::alert::{Alert, AlertEvent, FindingSummary, Response};
use guardduty_operator::domain::ids::FindingId;
use guardduty_operator::domain::severity::Severity;

pub const FINDING_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// An SSH port probe of i-0123456789abcdef0, severity 8.0, first seen by `channel`.
pub fn alert(channel: &str) -> Alert {
    Alert {
        channel: channel.to_string(),
        event: AlertEvent::Opened,
        finding: FindingSummary {
            id: FindingId::parse(FINDING_ID).unwrap(),
            finding_type: "Recon:EC2/PortProbeUnprotectedPort".into(),
            title: "Unprotected port on EC2 instance i-0123456789abcdef0 is being probed.".into(),
            severity: Severity::of_finding(8.0).unwrap(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            instance: Some("i-0123456789abcdef0".into()),
            security_groups: vec!["sg-0123456789abcdef0".into()],
            ports: vec![22],
            remote_ips: vec!["198.51.100.7".parse().unwrap()],
            first_seen: Some("2026-11-28T10:00:00.000Z".into()),
            last_seen: Some("2026-11-29T04:00:00.000Z".into()),
            count: Some(14),
            sample: false,
        },
        response: Response::Planned {
            summary: "revoke tcp/22 from 0.0.0.0/0 in sg-0123456789abcdef0, authorize 10.0.0.0/8"
                .into(),
        },
        evicts: None,
    }
}

/// The same alert with another severity.
pub fn with_severity(mut alert: Alert, severity: f64) -> Alert {
    alert.finding.severity = Severity::of_finding(severity).unwrap();
    alert
}

/// The same alert, now remediated (the operator's response changed).
pub fn remediated(mut alert: Alert) -> Alert {
    alert.event = AlertEvent::Updated {
        from: alert.response.kind(),
    };
    alert.response = Response::Closed {
        summary: "revoked tcp/22 from 0.0.0.0/0 in sg-0123456789abcdef0, authorized 10.0.0.0/8"
            .into(),
    };
    alert
}

/// The last alert about a finding that is no longer listed.
pub fn resolved(mut alert: Alert) -> Alert {
    alert.event = AlertEvent::Resolved;
    alert.response = Response::NoLongerListed;
    alert
}
