//! Shared test fixtures: an emulator with an SDK client pointed at it, finding JSON
//! built from one good example plus changes, and a tiny HTTP client for `/_emulator/`.
//! The SDK signs every request for its configured Region, which is how the emulator
//! tells Regions apart: `client` is in `us-east-1`, `client_in` in any Region.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_guardduty::Client;
use aws_sdk_guardduty::config::Credentials;
use guardduty_emulator::RunningEmulator;
use serde_json::{Value, json};

/// The detector the fixtures' findings belong to.
pub const DETECTOR: &str = "d6012345678912345678912349f831b8";
/// The `updatedAt` of fixture findings unless changed: 2024-06-10T08:00:00Z.
pub const UPDATED_AT: &str = "2024-06-10T08:00:00.000Z";
pub const UPDATED_AT_MS: i64 = 1_718_006_400_000;

/// A running emulator and an SDK client pointed at it.
pub struct Harness {
    pub running: RunningEmulator,
    pub client: Client,
}

impl Harness {
    pub async fn start() -> Self {
        let running = guardduty_emulator::spawn("127.0.0.1:0")
            .await
            .expect("the emulator binds a free port");
        let client = client(&running.url).await;
        Self { running, client }
    }

    /// A harness whose emulator already holds these findings.
    /// Another SDK client of the same emulator, signing for `region`.
    pub async fn client_in(&self, region: &str) -> Client {
        client_in(&self.running.url, region).await
    }

    pub async fn with(findings: Vec<Value>) -> Self {
        let harness = Self::start().await;
        harness
            .running
            .emulator
            .upsert_findings(findings)
            .expect("valid fixtures");
        harness
    }
}

/// The real SDK client, configured only by endpoint URL, Region (`us-east-1`) and static
/// credentials.
pub async fn client(url: &str) -> Client {
    client_in(url, "us-east-1").await
}

/// The real SDK client in `region`: its requests are signed for that Region.
pub async fn client_in(url: &str, region: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            "AKIDEMULATOR",
            "emulator-secret",
            None,
            None,
            "tests",
        ))
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
        .load()
        .await;
    Client::new(&config)
}

/// A finding in GuardDuty's GetFindings JSON shape, built from one good example.
#[derive(Debug, Clone)]
pub struct FindingJson(Value);

impl FindingJson {
    /// An inbound SSH brute-force finding against `i-0abc`, severity 5, unarchived.
    pub fn new(id: &str) -> Self {
        Self(json!({
            "schemaVersion": "2.0",
            "accountId": "123456789012",
            "region": "us-east-1",
            "partition": "aws",
            "id": id,
            "arn": format!("arn:aws:guardduty:us-east-1:123456789012:detector/{DETECTOR}/finding/{id}"),
            "type": "UnauthorizedAccess:EC2/SSHBruteForce",
            "resource": {
                "resourceType": "Instance",
                "instanceDetails": {
                    "instanceId": "i-0abc",
                    "networkInterfaces": [{
                        "networkInterfaceId": "eni-0a",
                        "securityGroups": [{ "groupId": "sg-0a", "groupName": "web" }]
                    }]
                }
            },
            "service": {
                "serviceName": "guardduty",
                "detectorId": DETECTOR,
                "action": {
                    "actionType": "NETWORK_CONNECTION",
                    "networkConnectionAction": {
                        "connectionDirection": "INBOUND",
                        "protocol": "TCP",
                        "blocked": false,
                        "localPortDetails": { "port": 22, "portName": "SSH" },
                        "remoteIpDetails": { "ipAddressV4": "203.0.113.7" }
                    }
                },
                "resourceRole": "TARGET",
                "archived": false,
                "count": 1,
                "eventFirstSeen": UPDATED_AT,
                "eventLastSeen": UPDATED_AT
            },
            "severity": 5,
            "createdAt": UPDATED_AT,
            "updatedAt": UPDATED_AT,
            "title": "203.0.113.7 is performing SSH brute force attacks against i-0abc.",
            "description": "203.0.113.7 is performing SSH brute force attacks against i-0abc."
        }))
    }

    pub fn severity(mut self, severity: f64) -> Self {
        self.0["severity"] = json!(severity);
        self
    }

    pub fn of_type(mut self, finding_type: &str) -> Self {
        self.0["type"] = json!(finding_type);
        self
    }

    pub fn archived(mut self, archived: bool) -> Self {
        self.0["service"]["archived"] = json!(archived);
        self
    }

    pub fn updated_at(mut self, timestamp: &str) -> Self {
        self.0["updatedAt"] = json!(timestamp);
        self
    }

    pub fn detector(mut self, detector_id: &str) -> Self {
        self.0["service"]["detectorId"] = json!(detector_id);
        self.0["arn"] = json!(self.arn());
        self
    }

    /// The Region the finding is in (and its ARN names).
    pub fn region(mut self, region: &str) -> Self {
        self.0["region"] = json!(region);
        self.0["arn"] = json!(self.arn());
        self
    }

    /// The account the finding is about (and its ARN names).
    pub fn account(mut self, account_id: &str) -> Self {
        self.0["accountId"] = json!(account_id);
        self.0["arn"] = json!(self.arn());
        self
    }

    fn arn(&self) -> String {
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        format!(
            "arn:aws:guardduty:{}:{}:detector/{}/finding/{}",
            text(&self.0["region"]),
            text(&self.0["accountId"]),
            text(&self.0["service"]["detectorId"]),
            text(&self.0["id"])
        )
    }

    pub fn outbound(mut self) -> Self {
        self.0["service"]["action"]["networkConnectionAction"]["connectionDirection"] =
            json!("OUTBOUND");
        self.0["service"]["resourceRole"] = json!("ACTOR");
        self
    }

    pub fn instance(mut self, instance_id: &str) -> Self {
        self.0["resource"]["instanceDetails"]["instanceId"] = json!(instance_id);
        self
    }

    pub fn title(mut self, title: &str) -> Self {
        self.0["title"] = json!(title);
        self
    }

    pub fn json(self) -> Value {
        self.0
    }
}

/// A realistic `Recon:EC2/PortProbeUnprotectedPort` finding: three probed ports from three
/// remote IPs, two network interfaces with two security groups each.
pub fn port_probe_finding(id: &str) -> Value {
    let probe = |port: u16, port_name: &str, remote_ip: &str| {
        json!({
            "localPortDetails": { "port": port, "portName": port_name },
            "localIpDetails": { "ipAddressV4": "10.0.1.15" },
            "remoteIpDetails": {
                "ipAddressV4": remote_ip,
                "organization": { "asn": "49505", "asnOrg": "Example Hosting", "isp": "Example ISP", "org": "Example Org" },
                "country": { "countryName": "Netherlands" },
                "city": { "cityName": "Amsterdam" },
                "geoLocation": { "lat": 52.37, "lon": 4.89 }
            }
        })
    };
    let interface = |eni: &str, subnet: &str, groups: [(&str, &str); 2]| {
        json!({
            "networkInterfaceId": eni,
            "subnetId": subnet,
            "vpcId": "vpc-0f1e2d3c",
            "privateIpAddress": "10.0.1.15",
            "publicIp": "54.240.196.186",
            "securityGroups": groups.map(|(group_id, group_name)| json!({ "groupId": group_id, "groupName": group_name }))
        })
    };
    let mut finding = FindingJson::new(id)
        .of_type("Recon:EC2/PortProbeUnprotectedPort")
        .severity(2.0)
        .instance("i-0a1b2c3d4e5f60718")
        .title("Unprotected port on EC2 instance i-0a1b2c3d4e5f60718 is being probed.")
        .json();
    finding["resource"]["instanceDetails"]["networkInterfaces"] = json!([
        interface(
            "eni-0aa11bb22cc33dd44",
            "subnet-0a1",
            [
                ("sg-09d6be73", "livelog-direct"),
                ("sg-3bd7bf41", "rdp-only")
            ]
        ),
        interface(
            "eni-0ee55ff66aa77bb88",
            "subnet-0b2",
            [("sg-0c0ffee0", "ssh-admin"), ("sg-0deadbe0", "db-clients")]
        ),
    ]);
    finding["service"]["action"] = json!({
        "actionType": "PORT_PROBE",
        "portProbeAction": {
            "blocked": false,
            "portProbeDetails": [
                probe(22, "SSH", "92.119.160.80"),
                probe(3389, "RDP", "92.119.160.81"),
                probe(5432, "Unknown", "185.156.73.54")
            ]
        }
    });
    finding["service"]["count"] = json!(3);
    finding["service"]["additionalInfo"] = json!({
        "value": "{\"threatName\":\"Scanner\",\"threatListName\":\"ProofPoint\"}",
        "type": "default"
    });
    finding
}

/// A plain HTTP/1.1 request to the emulator: returns the status code and body.
pub async fn http(url: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_with_headers(url, method, path, &[], body).await
}

/// A plain HTTP/1.1 request with extra headers (`"Name: value"`).
pub async fn http_with_headers(
    url: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String) {
    let authority = url.trim_start_matches("http://").to_owned();
    let extra: String = headers
        .iter()
        .map(|header| format!("{header}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.map_or(0, str::len),
        body.unwrap_or_default()
    );
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&authority).expect("connect to the emulator");
        stream
            .write_all(request.as_bytes())
            .expect("send the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status code");
        (status, body.to_owned())
    })
    .await
    .expect("the request task completes")
}
