//! A small emulated AWS account for integration tests: EC2 on moto (`GDO_MOTO_URL`,
//! started by scripts/test.sh) and GuardDuty on the project's emulator, run in
//! process. Each test uses its own region, so tests never see each other's
//! groups, even the ones the operator watches account-wide.
#![allow(dead_code)]

pub mod alerts;
pub mod channel_checks;
pub mod cli;
pub mod findings;
pub mod mock_api;
pub mod proxy;
pub mod receiver;

#[allow(unused_imports)]
pub use findings::sample;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, Tag, TagSpecification,
};
use guardduty_emulator::RunningEmulator;
use guardduty_operator::aws::ApiCallCounter;
use guardduty_operator::aws::clients::{alert_clients, ec2_of, member_config};
use guardduty_operator::aws::ec2::Ec2;
use guardduty_operator::aws::guardduty::GuardDuty;
use guardduty_operator::domain::outcome::PassReport;
use guardduty_operator::domain::policy::MemberAccounts;
use guardduty_operator::domain::policy::{Mode, Policy, TrustedRanges};
use guardduty_operator::domain::time::Timestamp;
use guardduty_operator::pass::{PassOptions, run_pass};
use guardduty_operator::ports::NoJournal;
use guardduty_operator::ports::{AwsClients, AwsFactory, AwsSetupError};
use serde_json::Value;

pub const DETECTOR: &str = "12abc34d567e8fa901bc2d34e56789f0";
pub const ACCOUNT: &str = "123456789012";

/// moto's whole state (`/moto-api/data.json`): the only window on the SMS and email
/// moto "sent". moto serialises every model of every service for it, which fails
/// now and then while other tests change those models at the same moment (an HTTP
/// 500 page): a few bounded attempts, then the last answer is reported.
pub async fn moto_state() -> Value {
    let url = format!("{}/moto-api/data.json", moto_url());
    let mut last = String::new();
    for attempt in 0..6 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
        }
        let response = match reqwest::get(&url).await {
            Ok(response) => response,
            Err(error) => {
                last = error.to_string();
                continue;
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        match serde_json::from_str(&body) {
            Ok(state) if status.is_success() => return state,
            _ => {
                last = format!(
                    "HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                )
            }
        }
    }
    panic!("moto's state could not be read from {url}: {last}")
}

pub fn moto_url() -> String {
    std::env::var("GDO_MOTO_URL").expect(
        "GDO_MOTO_URL is not set: these tests need a moto server; run them with scripts/test.sh \
         (it installs and starts moto), or start `moto_server -p PORT` and export GDO_MOTO_URL",
    )
}

pub struct World {
    pub region: String,
    pub config: SdkConfig,
    pub ec2: aws_sdk_ec2::Client,
    pub guardduty_url: String,
    pub emulator: RunningEmulator,
    pub vpc: String,
    pub subnet: String,
    image: String,
}

/// A rule to seed: protocol, from, to, source CIDR.
pub type Rule<'a> = (&'a str, i32, i32, &'a str);

impl World {
    /// A fresh VPC in `region` (one region per test) and a fresh GuardDuty.
    pub async fn new(region: &str) -> World {
        World::create(region, None).await
    }

    /// A fresh VPC in one of the [`SHARED_REGIONS`], for a test whose policies are
    /// owned by `owner` alone: only `owner`'s leftovers of earlier runs are removed, so
    /// tests of other owners share the region safely.
    pub async fn owned(region: &str, owner: &str) -> World {
        assert!(
            SHARED_REGIONS.contains(&region),
            "{region} is not a shared region: use World::new with a region of its own"
        );
        World::create(region, Some(owner)).await
    }

    async fn create(region: &str, owner: Option<&str>) -> World {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .endpoint_url(moto_url())
            .load()
            .await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        forget_earlier_runs(&ec2, owner).await;
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.20.0.0/16")
            .amazon_provided_ipv6_cidr_block(true)
            .send()
            .await
            .expect("create a VPC in moto")
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.20.1.0/24")
            .send()
            .await
            .expect("create a subnet")
            .subnet
            .unwrap()
            .subnet_id
            .unwrap();
        let image = ec2
            .describe_images()
            .send()
            .await
            .expect("list moto's images")
            .images()
            .first()
            .and_then(|i| i.image_id())
            .expect("moto has images")
            .to_string();
        let emulator = guardduty_emulator::spawn("127.0.0.1:0")
            .await
            .expect("start the GuardDuty emulator");
        World {
            region: region.to_string(),
            guardduty_url: emulator.url.clone(),
            config,
            ec2,
            emulator,
            vpc,
            subnet,
            image,
        }
    }

    /// A security group with these ingress rules (IPv6 sources go to Ipv6Ranges).
    pub async fn group(&self, name: &str, rules: &[Rule<'_>]) -> String {
        self.group_tagged(name, rules, &[]).await
    }

    pub async fn group_tagged(
        &self,
        name: &str,
        rules: &[Rule<'_>],
        tags: &[(&str, &str)],
    ) -> String {
        let mut create = self
            .ec2
            .create_security_group()
            .group_name(name)
            .description(name)
            .vpc_id(&self.vpc);
        if !tags.is_empty() {
            let mut spec = TagSpecification::builder().resource_type(ResourceType::SecurityGroup);
            for (k, v) in tags {
                spec = spec.tags(Tag::builder().key(*k).value(*v).build());
            }
            create = create.tag_specifications(spec.build());
        }
        let id = create
            .send()
            .await
            .expect("create a group")
            .group_id
            .unwrap();
        self.open(&id, rules).await;
        id
    }

    /// Adds ingress rules to a group, as a person would in the console.
    pub async fn open(&self, group: &str, rules: &[Rule<'_>]) {
        for (protocol, from, to, source) in rules {
            let mut permission = IpPermission::builder()
                .ip_protocol(*protocol)
                .from_port(*from)
                .to_port(*to);
            permission = if source.contains(':') {
                permission.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(*source).build())
            } else {
                permission.ip_ranges(IpRange::builder().cidr_ip(*source).build())
            };
            self.ec2
                .authorize_security_group_ingress()
                .group_id(group)
                .ip_permissions(permission.build())
                .send()
                .await
                .expect("seed an ingress rule");
        }
    }

    /// Adds a rule that admits traffic from another group.
    pub async fn open_to_group(&self, group: &str, port: i32, source_group: &str) {
        self.ec2
            .authorize_security_group_ingress()
            .group_id(group)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(port)
                    .to_port(port)
                    .user_id_group_pairs(
                        aws_sdk_ec2::types::UserIdGroupPair::builder()
                            .group_id(source_group)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("seed a group reference");
    }

    pub async fn instance(&self, groups: &[&str]) -> String {
        let mut run = self
            .ec2
            .run_instances()
            .image_id(&self.image)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .subnet_id(&self.subnet);
        for g in groups {
            run = run.security_group_ids(*g);
        }
        run.send().await.expect("run an instance").instances()[0]
            .instance_id()
            .unwrap()
            .to_string()
    }

    /// The group's ingress as sorted lines `tcp 22-22 0.0.0.0/0 [managed]`.
    pub async fn ingress(&self, group: &str) -> Vec<String> {
        let rules = self
            .ec2
            .describe_security_group_rules()
            .filters(Filter::builder().name("group-id").values(group).build())
            .send()
            .await
            .expect("describe rules");
        let mut lines: Vec<String> = rules
            .security_group_rules()
            .iter()
            .filter(|r| r.is_egress() == Some(false))
            .map(|r| {
                let source = r
                    .cidr_ipv4()
                    .or(r.cidr_ipv6())
                    .map(str::to_string)
                    .or_else(|| {
                        r.referenced_group_info()
                            .and_then(|g| g.group_id())
                            .map(|g| format!("group {g}"))
                    })
                    .unwrap_or_default();
                let managed = r
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some("guardduty-operator/managed-by"));
                format!(
                    "{} {}-{} {source}{}",
                    r.ip_protocol().unwrap_or_default(),
                    r.from_port().unwrap_or(-1),
                    r.to_port().unwrap_or(-1),
                    if managed { " [managed]" } else { "" }
                )
            })
            .collect();
        lines.sort();
        lines
    }

    /// The group's ingress as sorted lines `tcp 22-22 10.0.0.0/8 by default/a`: the
    /// owner is the operator's ownership tag (none for a rule a person added).
    pub async fn owners(&self, group: &str) -> Vec<String> {
        let rules = self
            .ec2
            .describe_security_group_rules()
            .filters(Filter::builder().name("group-id").values(group).build())
            .send()
            .await
            .expect("describe rules");
        let mut lines: Vec<String> = rules
            .security_group_rules()
            .iter()
            .filter(|r| r.is_egress() == Some(false))
            .map(|r| {
                let source = r
                    .cidr_ipv4()
                    .or(r.cidr_ipv6())
                    .or(r.prefix_list_id())
                    .unwrap_or_default();
                let owner = r
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("guardduty-operator/managed-by"))
                    .and_then(|t| t.value())
                    .map(|o| format!(" by {o}"))
                    .unwrap_or_default();
                format!(
                    "{} {}-{} {source}{owner}",
                    r.ip_protocol().unwrap_or_default(),
                    r.from_port().unwrap_or(-1),
                    r.to_port().unwrap_or(-1),
                )
            })
            .collect();
        lines.sort();
        lines
    }

    /// The group's watch tags: owner → value (`tcp:22 udp:3389`).
    pub async fn watches(&self, group: &str) -> std::collections::BTreeMap<String, String> {
        let groups = self
            .ec2
            .describe_security_groups()
            .group_ids(group)
            .send()
            .await
            .expect("describe the group");
        groups.security_groups()[0]
            .tags()
            .iter()
            .filter_map(|t| {
                let owner = t.key()?.strip_prefix("guardduty-operator/watch/")?;
                Some((owner.to_string(), t.value().unwrap_or_default().to_string()))
            })
            .collect()
    }

    /// Stores findings in the emulator, in this world's region (the emulator serves a
    /// region's findings only to requests signed for it).
    pub fn post(&self, mut findings: Vec<Value>) {
        for finding in &mut findings {
            finding["region"] = Value::String(self.region.clone());
            // The ARN names the finding's region and account too.
            if let (Some(arn), Some(account)) =
                (finding["arn"].as_str(), finding["accountId"].as_str())
            {
                let parts: Vec<&str> = arn.splitn(6, ':').collect();
                if let [arn_prefix, partition, service, _, _, rest] = parts.as_slice() {
                    let arn = format!(
                        "{arn_prefix}:{partition}:{service}:{}:{account}:{rest}",
                        self.region
                    );
                    finding["arn"] = Value::String(arn);
                }
            }
        }
        self.emulator
            .emulator
            .upsert_findings(findings)
            .expect("store findings in the emulator");
    }

    /// Runs one pass through the library entry point, as the command line does.
    pub async fn pass(
        &self,
        policy: &Policy,
        apply: bool,
    ) -> (PassReport, std::collections::BTreeMap<String, u64>) {
        let aws = WorldAws::of(&[self]);
        let report = run_pass(
            &aws,
            policy,
            &PassOptions {
                regions: vec![self.region.clone()],
                apply,
                now: Timestamp(1_800_000_000),
                ..PassOptions::default()
            },
            &NoJournal,
        )
        .await;
        (report, aws.counter.snapshot())
    }
}

/// The AWS of one or more worlds (a region each, with its own GuardDuty emulator):
/// the operator's factory over moto and the emulators, counting every call; member
/// accounts through moto's STS AssumeRole.
#[derive(Clone)]
pub struct WorldAws {
    regions: std::collections::BTreeMap<String, (SdkConfig, String)>,
    first: String,
    pub counter: ApiCallCounter,
    /// Paces every EC2 client, when set.
    pacer: Option<std::sync::Arc<guardduty_operator::aws::pace::Pacer>>,
    /// Reads every kind one way, when set.
    reading: Option<guardduty_operator::aws::ec2::Strategy>,
    /// Where Security Hub answers (a local receiver), when set.
    hub_url: Option<String>,
}

impl WorldAws {
    pub fn of(worlds: &[&World]) -> WorldAws {
        WorldAws {
            regions: worlds
                .iter()
                .map(|w| {
                    (
                        w.region.clone(),
                        (w.config.clone(), w.guardduty_url.clone()),
                    )
                })
                .collect(),
            first: worlds[0].region.clone(),
            counter: ApiCallCounter::default(),
            pacer: None,
            reading: None,
            hub_url: None,
        }
    }

    /// The same AWS, with Security Hub at `url` (moto has no BatchUpdateFindings).
    pub fn security_hub_at(mut self, url: &str) -> Self {
        self.hub_url = Some(url.to_string());
        self
    }

    /// The same AWS, its EC2 reads all planned one way.
    pub fn reading(mut self, strategy: guardduty_operator::aws::ec2::Strategy) -> Self {
        self.reading = Some(strategy);
        self
    }

    /// The same AWS, every EC2 client paced by `pacer`.
    pub fn paced(mut self, pacer: std::sync::Arc<guardduty_operator::aws::pace::Pacer>) -> Self {
        self.pacer = Some(pacer);
        self
    }

    fn ec2(&self, config: &SdkConfig) -> Ec2 {
        let ec2 = self.unplanned_ec2(config);
        match self.reading {
            Some(strategy) => ec2.reading(strategy),
            None => ec2,
        }
    }

    fn unplanned_ec2(&self, config: &SdkConfig) -> Ec2 {
        match &self.pacer {
            None => ec2_of(config, &self.counter),
            Some(pacer) => Ec2::paced(
                aws_sdk_ec2::Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(config)
                        .interceptor(self.counter.clone())
                        .build(),
                ),
                pacer.clone(),
            ),
        }
    }

    fn world(&self, region: Option<&str>) -> (&SdkConfig, &String, String) {
        let region = region.unwrap_or(&self.first).to_string();
        let (config, url) = self
            .regions
            .get(&region)
            .unwrap_or_else(|| panic!("no world in region {region}"));
        (config, url, region)
    }
}

impl AwsFactory for WorldAws {
    type Findings = GuardDuty;
    type Ec2 = Ec2;

    async fn clients(
        &self,
        region: Option<&str>,
    ) -> Result<AwsClients<GuardDuty, Ec2>, AwsSetupError> {
        let (config, url, region) = self.world(region);
        let hub =
            aws_sdk_securityhub::config::Builder::from(config).interceptor(self.counter.clone());
        let hub = match &self.hub_url {
            Some(url) => hub.endpoint_url(url),
            None => hub,
        };
        Ok(AwsClients {
            guardduty: GuardDuty::new(aws_sdk_guardduty::Client::from_conf(
                aws_sdk_guardduty::config::Builder::from(config)
                    .endpoint_url(url)
                    .interceptor(self.counter.clone())
                    .build(),
            ))
            .with_security_hub(aws_sdk_securityhub::Client::from_conf(hub.build())),
            ec2: self.ec2(config),
            account_id: Some(ACCOUNT.to_string()),
            region,
            alerts: alert_clients(config, &self.counter),
        })
    }

    async fn member(
        &self,
        account: &str,
        region: &str,
        members: &MemberAccounts,
    ) -> Result<Ec2, AwsSetupError> {
        let (config, _, _) = self.world(Some(region));
        let config = member_config(
            config,
            &members.role_arn(account, region),
            members.external_id.as_deref(),
        )
        .await?;
        Ok(self.ec2(&config))
    }
}

/// Removes the operator's rules and watch tags left in this region by an earlier run
/// against the same moto server, so the operator's region-wide watch sees only this
/// test's groups.
/// Regions that tests share, each test with a policy owner of its own
/// ([`World::owned`]); every other region belongs to one test ([`World::new`]).
pub const SHARED_REGIONS: [&str; 2] = ["ap-southeast-7", "ca-west-1"];

async fn forget_earlier_runs(ec2: &aws_sdk_ec2::Client, owner: Option<&str>) {
    let ours = |key: &str| match owner {
        None => key.starts_with("guardduty-operator/watch/"),
        Some(owner) => key == format!("guardduty-operator/watch/{owner}"),
    };
    let groups = ec2
        .describe_security_groups()
        .send()
        .await
        .expect("list the region's groups");
    for group in groups.security_groups() {
        let watches: Vec<Tag> = group
            .tags()
            .iter()
            .filter(|t| t.key().is_some_and(ours))
            .map(|t| Tag::builder().key(t.key().unwrap()).build())
            .collect();
        if let (false, Some(id)) = (watches.is_empty(), group.group_id()) {
            ec2.delete_tags()
                .resources(id)
                .set_tags(Some(watches))
                .send()
                .await
                .expect("remove an earlier run's watch tags");
        }
    }
    let rules = ec2
        .describe_security_group_rules()
        .filters(
            Filter::builder()
                .name("tag-key")
                .values("guardduty-operator/managed-by")
                .build(),
        )
        .send()
        .await
        .expect("list the operator's rules");
    let mut by_group: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let owned = |rule: &aws_sdk_ec2::types::SecurityGroupRule| match owner {
        None => true,
        Some(owner) => rule
            .tags()
            .iter()
            .any(|t| t.key() == Some("guardduty-operator/managed-by") && t.value() == Some(owner)),
    };
    for rule in rules.security_group_rules().iter().filter(|r| owned(r)) {
        if let (Some(group), Some(id)) = (rule.group_id(), rule.security_group_rule_id()) {
            by_group
                .entry(group.to_string())
                .or_default()
                .push(id.to_string());
        }
    }
    for (group, ids) in by_group {
        ec2.revoke_security_group_ingress()
            .group_id(group)
            .set_security_group_rule_ids(Some(ids))
            .send()
            .await
            .expect("remove an earlier run's rules");
    }
}

/// A policy `default/test` of this mode trusting these ranges, every other setting at
/// its default.
pub fn policy(mode: Mode, trusted: &[&str]) -> Policy {
    Policy {
        trusted: TrustedRanges::new(trusted.iter().map(|t| t.parse().unwrap())).unwrap(),
        mode,
        ..Policy::test()
    }
}

/// Mutating EC2 calls in a pass's counts.
pub fn mutating_calls(calls: &std::collections::BTreeMap<String, u64>) -> u64 {
    calls
        .iter()
        .filter(|(op, _)| op.contains("Authorize") || op.contains("Revoke"))
        .map(|(_, n)| n)
        .sum()
}

/// A `Recon:EC2/PortProbeUnprotectedPort` finding of the tests' detector.
pub fn port_probe(
    id: &str,
    severity: f64,
    instance: &str,
    groups: &[&str],
    ports: &[u16],
) -> Value {
    findings::port_probe_finding(DETECTOR, id, severity, instance, groups, ports)
}

/// An SSH or RDP brute force finding of the tests' detector.
pub fn brute_force(
    id: &str,
    kind: &str,
    instance: &str,
    groups: &[&str],
    port: u16,
    direction: &str,
) -> Value {
    findings::brute_force_finding(DETECTOR, id, kind, instance, groups, port, direction)
}
