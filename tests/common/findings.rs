//! GuardDuty findings in GetFindings' JSON shape, for the emulator: shared by the
//! integration tests and the benchmark (`examples/bench.rs`).
#![allow(dead_code)]

use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";

fn instance_resource(instance: &str, groups: &[&str]) -> Value {
    json!({
        "resourceType": "Instance",
        "instanceDetails": {
            "instanceId": instance,
            "instanceType": "t3.micro",
            "networkInterfaces": [{
                "networkInterfaceId": "eni-0aaaaaaaaaaaaaaaa",
                "privateIpAddress": "10.20.1.10",
                "publicIp": "203.0.113.10",
                "subnetId": "subnet-0aaaaaaaaaaaaaaaa",
                "vpcId": "vpc-0aaaaaaaaaaaaaaaa",
                "securityGroups": groups.iter().map(|g| json!({"groupId": g, "groupName": g})).collect::<Vec<_>>()
            }]
        }
    })
}

/// A `Recon:EC2/PortProbeUnprotectedPort` finding in GetFindings' JSON shape.
pub fn port_probe_finding(
    detector: &str,
    id: &str,
    severity: f64,
    instance: &str,
    groups: &[&str],
    ports: &[u16],
) -> Value {
    json!({
        "id": id,
        "arn": format!("arn:aws:guardduty:us-east-1:{ACCOUNT}:detector/{detector}/finding/{id}"),
        "accountId": ACCOUNT,
        "region": "us-east-1",
        "type": "Recon:EC2/PortProbeUnprotectedPort",
        "severity": severity,
        "title": format!("Unprotected port on EC2 instance {instance} is being probed."),
        "description": "A port is open to the world and being probed.",
        "createdAt": "2026-11-28T10:00:00.000Z",
        "updatedAt": "2026-11-28T11:00:00.000Z",
        "resource": instance_resource(instance, groups),
        "service": {
            "detectorId": detector,
            "archived": false,
            "count": 3,
            "eventFirstSeen": "2026-11-28T10:00:00.000Z",
            "eventLastSeen": "2026-11-28T11:00:00.000Z",
            "resourceRole": "TARGET",
            "serviceName": "guardduty",
            "action": {
                "actionType": "PORT_PROBE",
                "portProbeAction": {
                    "blocked": false,
                    "portProbeDetails": ports.iter().enumerate().map(|(i, p)| json!({
                        "localPortDetails": {"port": p, "portName": "Unknown"},
                        "remoteIpDetails": {"ipAddressV4": format!("198.51.100.{}", 10 + i),
                            "organization": {"asn": "64500", "asnOrg": "EXAMPLE", "isp": "Example", "org": "Example"}}
                    })).collect::<Vec<_>>()
                }
            }
        }
    })
}

/// An SSH or RDP brute force finding (`direction` INBOUND or OUTBOUND).
#[allow(clippy::too_many_arguments)]
pub fn brute_force_finding(
    detector: &str,
    id: &str,
    kind: &str,
    instance: &str,
    groups: &[&str],
    port: u16,
    direction: &str,
) -> Value {
    json!({
        "id": id,
        "arn": format!("arn:aws:guardduty:us-east-1:{ACCOUNT}:detector/{detector}/finding/{id}"),
        "accountId": ACCOUNT,
        "region": "us-east-1",
        "type": format!("UnauthorizedAccess:EC2/{kind}"),
        "severity": 5.0,
        "title": format!("{kind} against {instance}"),
        "description": "brute force",
        "createdAt": "2026-11-28T10:00:00.000Z",
        "updatedAt": "2026-11-28T11:00:00.000Z",
        "resource": instance_resource(instance, groups),
        "service": {
            "detectorId": detector,
            "archived": false,
            "count": 40,
            "resourceRole": if direction == "INBOUND" { "TARGET" } else { "ACTOR" },
            "serviceName": "guardduty",
            "action": {
                "actionType": "NETWORK_CONNECTION",
                "networkConnectionAction": {
                    "connectionDirection": direction,
                    "protocol": "TCP",
                    "blocked": false,
                    "localPortDetails": {"port": port, "portName": kind},
                    "remotePortDetails": {"port": 40000, "portName": "Unknown"},
                    "remoteIpDetails": {"ipAddressV4": "198.51.100.77"}
                }
            }
        }
    })
}

/// Marks a finding as a GuardDuty sample.
pub fn sample(mut finding: Value) -> Value {
    finding["service"]["additionalInfo"] = json!({"sample": true});
    finding
}
