//! `CreateSampleFindings`: findings in the style of GuardDuty's generated samples —
//! `additionalInfo` value `{"sample":true}`, a `[SAMPLE]` title, placeholder instance
//! `i-99999999` in security group `GeneratedFindingSecurityId`, and an action block that
//! fits the finding type.

use serde_json::{Value, json};

use crate::ingest::ACCOUNT_ID;
use crate::time::format_iso8601;

/// The types sampled when `findingTypes` is empty or absent.
pub(crate) const DEFAULT_SAMPLE_TYPES: [&str; 4] = [
    "Recon:EC2/PortProbeUnprotectedPort",
    "UnauthorizedAccess:EC2/SSHBruteForce",
    "UnauthorizedAccess:EC2/RDPBruteForce",
    "Recon:EC2/Portscan",
];

const SAMPLE_INSTANCE: &str = "i-99999999";
const SAMPLE_REMOTE_IP: &str = "198.51.100.0";

/// Whether a finding type is shaped like GuardDuty's (`ThreatPurpose:ResourceType/Name`).
pub(crate) fn is_well_formed_type(finding_type: &str) -> bool {
    let Some((purpose, rest)) = finding_type.split_once(':') else {
        return false;
    };
    let Some((resource, name)) = rest.split_once('/') else {
        return false;
    };
    finding_type.len() <= 50 && !purpose.is_empty() && !resource.is_empty() && !name.is_empty()
}

/// What varies between sample types.
struct Story {
    severity: f64,
    title: String,
    description: String,
    resource_role: &'static str,
    action: Value,
}

fn story(finding_type: &str) -> Story {
    match finding_type {
        "Recon:EC2/PortProbeUnprotectedPort" => Story {
            severity: 2.0,
            title: format!("Unprotected port on EC2 instance {SAMPLE_INSTANCE} is being probed."),
            description: "EC2 instance has an unprotected port which is being probed by a known malicious host.".to_owned(),
            resource_role: "TARGET",
            action: port_probe(80, "HTTP"),
        },
        "UnauthorizedAccess:EC2/SSHBruteForce" => brute_force("SSH", 22),
        "UnauthorizedAccess:EC2/RDPBruteForce" => brute_force("RDP", 3389),
        "Recon:EC2/Portscan" => Story {
            severity: 5.0,
            title: format!("Unusual outbound portscan activity from EC2 instance {SAMPLE_INSTANCE}."),
            description: format!(
                "EC2 instance {SAMPLE_INSTANCE} is performing outbound port scans against remote host {SAMPLE_REMOTE_IP}."
            ),
            resource_role: "ACTOR",
            action: network_connection("OUTBOUND", (39677, "Unknown"), (22, "SSH")),
        },
        other => Story {
            severity: 5.0,
            title: format!("Sample finding of type {other} on EC2 instance {SAMPLE_INSTANCE}."),
            description: format!("A generated sample of the GuardDuty finding type {other}."),
            resource_role: "TARGET",
            action: network_connection("INBOUND", (80, "HTTP"), (32794, "Unknown")),
        },
    }
}

fn brute_force(protocol_name: &str, port: u16) -> Story {
    let title = format!(
        "{SAMPLE_REMOTE_IP} is performing {protocol_name} brute force attacks against {SAMPLE_INSTANCE}."
    );
    Story {
        severity: 2.0,
        description: format!(
            "{title} Brute force attacks are used to gain unauthorized access to your instance by guessing the {protocol_name} password."
        ),
        title,
        resource_role: "TARGET",
        action: network_connection("INBOUND", (port, protocol_name), (32794, "Unknown")),
    }
}

fn remote_ip_details() -> Value {
    json!({
        "ipAddressV4": SAMPLE_REMOTE_IP,
        "organization": {
            "asn": "-1",
            "asnOrg": "GeneratedFindingASNOrg",
            "isp": "GeneratedFindingISP",
            "org": "GeneratedFindingORG"
        },
        "country": { "countryName": "GeneratedFindingCountryName" },
        "city": { "cityName": "GeneratedFindingCityName" },
        "geoLocation": { "lat": 0, "lon": 0 }
    })
}

fn port_probe(port: u16, port_name: &str) -> Value {
    json!({
        "actionType": "PORT_PROBE",
        "portProbeAction": {
            "blocked": false,
            "portProbeDetails": [{
                "localPortDetails": { "port": port, "portName": port_name },
                "localIpDetails": { "ipAddressV4": "10.0.0.23" },
                "remoteIpDetails": remote_ip_details()
            }]
        }
    })
}

fn network_connection(direction: &str, local: (u16, &str), remote: (u16, &str)) -> Value {
    json!({
        "actionType": "NETWORK_CONNECTION",
        "networkConnectionAction": {
            "connectionDirection": direction,
            "protocol": "TCP",
            "blocked": false,
            "localPortDetails": { "port": local.0, "portName": local.1 },
            "localIpDetails": { "ipAddressV4": "10.0.0.23" },
            "remotePortDetails": { "port": remote.0, "portName": remote.1 },
            "remoteIpDetails": remote_ip_details()
        }
    })
}

fn instance_resource() -> Value {
    json!({
        "resourceType": "Instance",
        "instanceDetails": {
            "instanceId": SAMPLE_INSTANCE,
            "instanceType": "m3.xlarge",
            "instanceState": "running",
            "availabilityZone": "GeneratedFindingInstaceAvailabilityZone",
            "imageId": "ami-99999999",
            "imageDescription": "GeneratedFindingInstaceImageDescription",
            "launchTime": "2016-08-02T02:05:06.000Z",
            "iamInstanceProfile": {
                "arn": format!("arn:aws:iam::{ACCOUNT_ID}:example/instance/profile"),
                "id": "GeneratedFindingInstanceProfileId"
            },
            "networkInterfaces": [{
                "networkInterfaceId": "eni-bfcffe88",
                "privateDnsName": "GeneratedFindingPrivateDnsName",
                "privateIpAddress": "10.0.0.23",
                "privateIpAddresses": [{
                    "privateDnsName": "GeneratedFindingPrivateName",
                    "privateIpAddress": "10.0.0.23"
                }],
                "publicDnsName": "GeneratedFindingPublicDNSName",
                "publicIp": "198.51.100.23",
                "securityGroups": [{
                    "groupId": "GeneratedFindingSecurityId",
                    "groupName": "GeneratedFindingSecurityGroupName"
                }],
                "subnetId": "GeneratedFindingSubnetId",
                "vpcId": "GeneratedFindingVPCId"
            }],
            "productCodes": [],
            "tags": [{ "key": "GeneratedFindingInstaceTag1", "value": "GeneratedFindingInstaceValue1" }]
        }
    })
}

/// One complete sample finding of `finding_type` for `detector_id` of `region`.
pub(crate) fn sample_finding(
    finding_type: &str,
    region: &str,
    detector_id: &str,
    id: &str,
    now_ms: i64,
) -> Value {
    let story = story(finding_type);
    let now = format_iso8601(now_ms);
    json!({
        "schemaVersion": "2.0",
        "accountId": ACCOUNT_ID,
        "region": region,
        "partition": "aws",
        "id": id,
        "arn": format!("arn:aws:guardduty:{region}:{ACCOUNT_ID}:detector/{detector_id}/finding/{id}"),
        "type": finding_type,
        "resource": instance_resource(),
        "service": {
            "serviceName": "guardduty",
            "detectorId": detector_id,
            "action": story.action,
            "resourceRole": story.resource_role,
            "additionalInfo": { "value": "{\"sample\":true}", "type": "default" },
            "eventFirstSeen": now,
            "eventLastSeen": now,
            "archived": false,
            "count": 1
        },
        "severity": story.severity,
        "createdAt": now,
        "updatedAt": now,
        "title": format!("[SAMPLE] {}", story.title),
        "description": story.description
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_types_must_look_like_guardduty_types() {
        assert!(is_well_formed_type("Recon:EC2/PortProbeUnprotectedPort"));
        assert!(is_well_formed_type("Backdoor:EC2/C&CActivity.B!DNS"));
        for bad in ["", "Recon", "Recon:EC2", ":EC2/x", "Recon:/x", "Recon:EC2/"] {
            assert!(!is_well_formed_type(bad), "{bad}");
        }
    }

    #[test]
    fn brute_force_samples_are_inbound_on_their_service_port() {
        let ssh = sample_finding(
            "UnauthorizedAccess:EC2/SSHBruteForce",
            "eu-west-1",
            "d",
            "f",
            0,
        );
        let action = &ssh["service"]["action"]["networkConnectionAction"];
        assert_eq!(action["connectionDirection"], "INBOUND");
        assert_eq!(action["localPortDetails"]["port"], 22);
        assert_eq!(ssh["region"], "eu-west-1");
        assert_eq!(
            ssh["arn"],
            "arn:aws:guardduty:eu-west-1:123456789012:detector/d/finding/f"
        );
        assert!(
            ssh["title"]
                .as_str()
                .is_some_and(|title| title.starts_with("[SAMPLE] "))
        );
    }
}
