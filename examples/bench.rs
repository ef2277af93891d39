//! The benchmark's helper, driven by `scripts/bench.sh`: seeds moto (EC2, SQS, STS)
//! and the GuardDuty emulator, runs the `watch` measures itself, and turns the
//! operator's JSON reports into the tables and PASS/FAIL lines the script prints.
//!
//! ```text
//! bench seed-groups    --region R --groups N [--groups-per-instance K] [--ports 22,443]
//!                      --emulator URL --detector D
//! bench seed-findings  --emulator URL --detector D --count N [--region R]
//! bench seed-members   --region R --accounts A --groups G --role NAME --external-id X
//!                      --emulator URL --detector D
//! bench converge-report --groups N --instances I --first REPORT METRICS --second REPORT METRICS
//! bench ingest-report  --count N --report REPORT --metrics METRICS
//! bench members-report --accounts A --groups G --members REPORT METRICS
//!                      --baseline REPORT METRICS [--converge GROUPS REPORT METRICS]...
//! bench realtime       --operator BIN --region R --emulator URL --events N --spacing-ms MS --work DIR
//! bench idle           --operator BIN --region R --detector D --minutes M --work DIR
//! bench quiet          --operator BIN --region R --detector D --count N --work DIR
//! ```
//!
//! The seeders print a one-line JSON summary on stdout and progress on stderr. The
//! report subcommands and the `watch` measures (realtime, idle, quiet: they start the
//! release binary's `watch` themselves, see `bench/watch.rs`) print to stdout and exit
//! 1 when a target is missed. A METRICS file is `{"rc": 0, "wall": 1.5,
//! "maxrss_kib": 20480}`, written by the script's measuring wrapper around the
//! operator process.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::{InstanceType, IpPermission, IpRange};
use clap::{Parser, Subcommand};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use serde_json::{Value, json};

#[path = "../tests/common/findings.rs"]
mod findings;
#[path = "bench/idle.rs"]
mod idle;
#[path = "bench/members.rs"]
mod members;
#[path = "bench/quiet.rs"]
mod quiet;
#[path = "bench/realtime.rs"]
mod realtime;
#[path = "bench/watch.rs"]
mod watch;

/// GuardDuty's page size and GetFindings batch.
const GUARDDUTY_BATCH: u64 = 50;
/// The operator puts at most this many values in one EC2 filter.
const FILTER_VALUES: u64 = 200;
/// DescribeSecurityGroupRules' largest page.
const RULES_PAGE: u64 = 1000;
/// The default number of security groups one network interface may hold.
const GROUPS_PER_INSTANCE: usize = 5;
/// The ingest target: 10,000 findings under this peak resident memory.
const MEMORY_TARGET_MIB: f64 = 64.0;
/// The ingest target: GuardDuty calls within this much of the minimum.
const CALLS_TOLERANCE: f64 = 0.05;
/// The port the findings name, opened to the world in every seeded group.
const PROBED_PORT: i32 = 22;
/// A second world-open port, which no finding names: it must be left alone.
const HARMLESS_PORT: i32 = 443;

#[derive(Debug, Parser)]
#[command(name = "bench", about = "Seeds and reports for scripts/bench.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A VPC with N world-open groups, N/5 instances (5 groups each) and one port
    /// probe finding per instance, posted to the emulator.
    SeedGroups {
        #[arg(long)]
        region: String,
        #[arg(long)]
        groups: usize,
        /// Groups per instance (at most 5, an interface's default limit).
        #[arg(long, default_value_t = GROUPS_PER_INSTANCE)]
        groups_per_instance: usize,
        /// The ports opened to the world in every group (the first is the probed one).
        #[arg(long, value_delimiter = ',', default_values_t = [PROBED_PORT, HARMLESS_PORT])]
        ports: Vec<i32>,
        /// The GuardDuty emulator's base URL (http://127.0.0.1:PORT).
        #[arg(long)]
        emulator: String,
        /// The `service.detectorId` of the findings.
        #[arg(long)]
        detector: String,
        /// The moto server's URL.
        #[arg(long, env = "GDO_MOTO_URL")]
        moto: String,
        /// EC2 calls in flight at once while seeding.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// N port probe findings of nonexistent instances, severities in every band.
    SeedFindings {
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        detector: String,
        #[arg(long)]
        count: usize,
        /// The findings' region (the emulator serves them to requests signed for it).
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    /// A member accounts × G groups created through each account's assumed role, each
    /// group on an instance of its own and open to the world on tcp/22; one finding
    /// per group in the administrator's detector, with the member's accountId.
    SeedMembers {
        #[arg(long)]
        region: String,
        #[arg(long)]
        accounts: usize,
        #[arg(long)]
        groups: usize,
        /// The role's name in every member account.
        #[arg(long)]
        role: String,
        #[arg(long)]
        external_id: String,
        #[arg(long)]
        emulator: String,
        #[arg(long)]
        detector: String,
        #[arg(long, env = "GDO_MOTO_URL")]
        moto: String,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// The converge benchmark's table and checks, from the two passes' outputs.
    ConvergeReport {
        #[arg(long)]
        groups: u64,
        #[arg(long)]
        instances: u64,
        /// The first pass's JSON report and metrics files.
        #[arg(long, num_args = 2, value_names = ["REPORT", "METRICS"])]
        first: Vec<PathBuf>,
        /// The second pass's JSON report and metrics files.
        #[arg(long, num_args = 2, value_names = ["REPORT", "METRICS"])]
        second: Vec<PathBuf>,
    },
    /// The ingest benchmark's table and checks.
    IngestReport {
        #[arg(long)]
        count: u64,
        #[arg(long)]
        report: PathBuf,
        #[arg(long)]
        metrics: PathBuf,
        /// The metrics of the same pass with `-o table`, to show what the JSON
        /// rendering costs.
        #[arg(long)]
        table_metrics: Option<PathBuf>,
    },
    /// The member accounts' EC2 calls per group beside a single account's.
    MembersReport {
        #[arg(long)]
        accounts: u64,
        /// Groups per account.
        #[arg(long)]
        groups: u64,
        /// The member accounts' pass: its JSON report and metrics files.
        #[arg(long, num_args = 2, value_names = ["REPORT", "METRICS"])]
        members: Vec<PathBuf>,
        /// One account of as many groups, laid out the same way.
        #[arg(long, num_args = 2, value_names = ["REPORT", "METRICS"])]
        baseline: Vec<PathBuf>,
        /// A converge benchmark's first pass, for comparison (repeat for more sizes).
        #[arg(long, num_args = 3, value_names = ["GROUPS", "REPORT", "METRICS"])]
        converge: Vec<String>,
    },
    /// Event to converged: a `watch --queue-url` over N world-open groups, one finding
    /// event per group sent to its SQS queue; latency percentiles.
    Realtime {
        /// The release binary of the operator.
        #[arg(long)]
        operator: PathBuf,
        #[arg(long)]
        region: String,
        #[arg(long)]
        emulator: String,
        /// Events, one per group and instance.
        #[arg(long, default_value_t = 100)]
        events: usize,
        /// Milliseconds between two events; 0 sends them all at once.
        #[arg(long, default_value_t = 200)]
        spacing_ms: u64,
        /// Where the policy, the state file and the watch's log go.
        #[arg(long)]
        work: PathBuf,
        #[arg(long, env = "GDO_MOTO_URL")]
        moto: String,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// The idle operator: a `watch` with nothing to do, its memory and CPU over M minutes.
    Idle {
        #[arg(long)]
        operator: PathBuf,
        #[arg(long)]
        region: String,
        /// The detector holding the findings already seeded.
        #[arg(long)]
        detector: String,
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        #[arg(long)]
        work: PathBuf,
        #[arg(long, env = "GDO_MOTO_URL")]
        moto: String,
    },
    /// A quiet periodic pass: `watch`'s second pass over N stored findings.
    Quiet {
        #[arg(long)]
        operator: PathBuf,
        #[arg(long)]
        region: String,
        /// The detector holding the N findings already seeded.
        #[arg(long)]
        detector: String,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        work: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::SeedGroups {
            region,
            groups,
            groups_per_instance,
            ports,
            emulator,
            detector,
            moto,
            concurrency,
        } => runtime().and_then(|rt| {
            rt.block_on(seed_groups(
                &SeedGroupsArgs {
                    region,
                    count: groups,
                    per_instance: groups_per_instance,
                    ports,
                    emulator,
                    detector,
                    moto,
                },
                concurrency.max(1),
            ))
        }),
        Command::SeedFindings {
            emulator,
            detector,
            count,
            region,
        } => seed_findings(&emulator, &detector, count, &region),
        Command::SeedMembers {
            region,
            accounts,
            groups,
            role,
            external_id,
            emulator,
            detector,
            moto,
            concurrency,
        } => runtime().and_then(|rt| {
            rt.block_on(members::seed(&members::SeedMembersArgs {
                region,
                accounts,
                groups,
                role,
                external_id,
                emulator,
                detector,
                moto,
                concurrency: concurrency.max(1),
            }))
        }),
        Command::MembersReport {
            accounts,
            groups,
            members,
            baseline,
            converge,
        } => members::report(&members::ReportArgs {
            accounts,
            groups,
            members,
            baseline,
            converge,
        }),
        Command::Realtime {
            operator,
            region,
            emulator,
            events,
            spacing_ms,
            work,
            moto,
            concurrency,
        } => runtime().and_then(|rt| {
            rt.block_on(realtime::run(&realtime::RealtimeArgs {
                operator,
                region,
                emulator,
                moto,
                groups: events,
                spacing: Duration::from_millis(spacing_ms),
                work,
                concurrency: concurrency.max(1),
            }))
        }),
        Command::Idle {
            operator,
            region,
            detector,
            minutes,
            work,
            moto,
        } => runtime().and_then(|rt| {
            rt.block_on(idle::run(&idle::IdleArgs {
                operator,
                region,
                detector,
                moto,
                minutes: minutes.max(1),
                work,
            }))
        }),
        Command::Quiet {
            operator,
            region,
            detector,
            count,
            work,
        } => quiet::run(&quiet::QuietArgs {
            operator,
            region,
            detector,
            count,
            work,
        }),
        Command::ConvergeReport {
            groups,
            instances,
            first,
            second,
        } => converge_report(groups, instances, &first, &second),
        Command::IngestReport {
            count,
            report,
            metrics,
            table_metrics,
        } => ingest_report(count, &report, &metrics, table_metrics.as_deref()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")
}

// ---------------------------------------------------------------------------
// Seeding
// ---------------------------------------------------------------------------

/// What `seed-groups` makes, and where.
struct SeedGroupsArgs {
    region: String,
    count: usize,
    per_instance: usize,
    ports: Vec<i32>,
    emulator: String,
    detector: String,
    moto: String,
}

/// A configuration for moto in `region`, with the fake credentials moto accepts.
async fn moto_config(moto: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .endpoint_url(moto)
        .load()
        .await
}

/// An image moto can run instances from.
async fn first_image(ec2: &aws_sdk_ec2::Client) -> anyhow::Result<String> {
    ec2.describe_images()
        .send()
        .await
        .context("failed to list moto's images")?
        .images()
        .iter()
        .find_map(|i| i.image_id().map(str::to_string))
        .context("moto lists no image")
}

/// Security groups and the instances that hold them, in one account and region.
struct Estate {
    groups: Vec<String>,
    /// Each instance and its groups.
    instances: Vec<(String, Vec<String>)>,
}

/// A VPC with `count` groups, each open to the world on `ports` (one call, as a person
/// would in the console), and instances holding `per_instance` groups each. The image
/// is `image`, or the account's first.
async fn seed_estate(
    ec2: &aws_sdk_ec2::Client,
    image: Option<&str>,
    count: usize,
    per_instance: usize,
    ports: &[i32],
    concurrency: usize,
) -> anyhow::Result<Estate> {
    let started = Instant::now();
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .amazon_provided_ipv6_cidr_block(true)
        .send()
        .await
        .context("failed to create a VPC in moto")?
        .vpc
        .and_then(|v| v.vpc_id)
        .context("CreateVpc returned no VPC id")?;
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.20.0.0/18")
        .send()
        .await
        .context("failed to create a subnet")?
        .subnet
        .and_then(|s| s.subnet_id)
        .context("CreateSubnet returned no subnet id")?;
    let image = match image {
        Some(image) => image.to_string(),
        None => first_image(ec2).await?,
    };

    let vpc_ref = vpc.as_str();
    let groups: Vec<String> = stream::iter(0..count)
        .map(|i| async move {
            let name = format!("bench-{i:05}");
            let id = ec2
                .create_security_group()
                .group_name(&name)
                .description("guardduty-operator benchmark")
                .vpc_id(vpc_ref)
                .send()
                .await
                .with_context(|| format!("failed to create group {name}"))?
                .group_id
                .context("CreateSecurityGroup returned no id")?;
            ec2.authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(ports.iter().map(|p| world_open(*p)).collect()))
                .send()
                .await
                .with_context(|| format!("failed to open group {id}"))?;
            anyhow::Ok(id)
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let groups_done = started.elapsed();
    eprintln!(
        "bench: {count} groups seeded in {:.1} s",
        groups_done.as_secs_f64()
    );

    let chunks: Vec<Vec<String>> = groups
        .chunks(per_instance.clamp(1, GROUPS_PER_INSTANCE))
        .map(<[String]>::to_vec)
        .collect();
    let (image_ref, subnet_ref) = (image.as_str(), subnet.as_str());
    let instances: Vec<(String, Vec<String>)> = stream::iter(chunks)
        .map(|chunk| async move {
            let id = ec2
                .run_instances()
                .image_id(image_ref)
                .instance_type(InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .subnet_id(subnet_ref)
                .set_security_group_ids(Some(chunk.clone()))
                .send()
                .await
                .context("failed to run an instance")?
                .instances()
                .first()
                .and_then(|i| i.instance_id())
                .context("RunInstances returned no instance")?
                .to_string();
            anyhow::Ok((id, chunk))
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    eprintln!(
        "bench: {} instances seeded in {:.1} s",
        instances.len(),
        (started.elapsed() - groups_done).as_secs_f64()
    );
    Ok(Estate { groups, instances })
}

async fn seed_groups(args: &SeedGroupsArgs, concurrency: usize) -> anyhow::Result<bool> {
    let started = Instant::now();
    let config = moto_config(&args.moto, &args.region).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let estate = seed_estate(
        &ec2,
        None,
        args.count,
        args.per_instance,
        &args.ports,
        concurrency,
    )
    .await?;
    let findings: Vec<Value> = estate
        .instances
        .iter()
        .enumerate()
        .map(|(i, (instance, groups))| {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let mut finding = port_probe(
                &format!("{}{i:08x}", args.detector),
                &args.detector,
                8.0,
                instance,
                &groups,
            );
            place(&mut finding, &args.region, None);
            finding
        })
        .collect();
    let emulator = args.emulator.clone();
    let posted = tokio::task::spawn_blocking(move || post_findings(&emulator, findings))
        .await
        .context("the posting task panicked")??;

    println!(
        "{}",
        json!({
            "region": args.region,
            "groups": estate.groups.len(),
            "instances": estate.instances.len(),
            "findings": posted,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(true)
}

fn world_open(port: i32) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build()
}

fn seed_findings(
    emulator: &str,
    detector: &str,
    count: usize,
    region: &str,
) -> anyhow::Result<bool> {
    const SEVERITIES: [f64; 7] = [1.0, 2.5, 4.0, 5.5, 7.0, 8.5, 9.5];
    let started = Instant::now();
    // A fixed xorshift sequence: "random" instance and group ids, the same every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let findings: Vec<Value> = (0..count)
        .map(|i| {
            let instance = format!("i-{:017x}", next());
            let group = format!("sg-{:017x}", next());
            let mut finding = port_probe(
                &format!("{detector}{i:08x}"),
                detector,
                SEVERITIES[i % SEVERITIES.len()],
                &instance,
                &[group.as_str()],
            );
            place(&mut finding, region, None);
            finding
        })
        .collect();
    let posted = post_findings(emulator, findings)?;
    println!(
        "{}",
        json!({ "findings": posted, "seconds": started.elapsed().as_secs_f64() })
    );
    Ok(true)
}

/// A `Recon:EC2/PortProbeUnprotectedPort` finding on port 22, in GetFindings' shape.
fn port_probe(id: &str, detector: &str, severity: f64, instance: &str, groups: &[&str]) -> Value {
    findings::port_probe_finding(
        detector,
        id,
        severity,
        instance,
        groups,
        &[PROBED_PORT as u16],
    )
}

/// Places a finding in `region` (the emulator serves a region's findings to requests
/// signed for it) and, when given, in `account`; its ARN follows.
fn place(finding: &mut Value, region: &str, account: Option<&str>) {
    if let Some(account) = account {
        finding["accountId"] = json!(account);
    }
    let arn = format!(
        "arn:aws:guardduty:{region}:{}:detector/{}/finding/{}",
        finding["accountId"].as_str().unwrap_or_default(),
        finding["service"]["detectorId"]
            .as_str()
            .unwrap_or_default(),
        finding["id"].as_str().unwrap_or_default()
    );
    finding["region"] = json!(region);
    finding["arn"] = json!(arn);
}

/// Posts the findings to `POST /_emulator/findings`, 1,000 per request; returns
/// how many the emulator stored.
fn post_findings(emulator: &str, findings: Vec<Value>) -> anyhow::Result<usize> {
    const CHUNK: usize = 1000;
    let address = emulator
        .strip_prefix("http://")
        .with_context(|| format!("the emulator URL {emulator} is not http://HOST:PORT"))?
        .trim_end_matches('/')
        .to_string();
    let mut stored = 0;
    for chunk in findings.chunks(CHUNK) {
        let body = serde_json::to_vec(&json!({ "findings": chunk }))?;
        let response = http_post(&address, "/_emulator/findings", &body)
            .with_context(|| format!("failed to post findings to {emulator}"))?;
        let upserted = response["upserted"]
            .as_u64()
            .with_context(|| format!("unexpected answer from the emulator: {response}"))?;
        stored += usize::try_from(upserted)?;
    }
    Ok(stored)
}

/// One HTTP/1.1 POST of JSON on a fresh connection; returns the JSON answer.
fn http_post(address: &str, path: &str, body: &[u8]) -> anyhow::Result<Value> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_write_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .context("the answer has no HTTP header")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{status}: {payload}");
    }
    serde_json::from_str(payload).with_context(|| format!("the answer is not JSON: {payload}"))
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

/// One pass of the operator: its JSON report and the measures taken around it.
struct Pass {
    report: Value,
    calls: BTreeMap<String, u64>,
    exit: i64,
    wall: f64,
    cpu: f64,
    peak_mib: f64,
}

impl Pass {
    fn load(report: &Path, metrics: &Path) -> anyhow::Result<Pass> {
        let metrics: Value = read_json(metrics)?;
        let exit = metrics["rc"].as_i64().unwrap_or(-1);
        let text = std::fs::read_to_string(report)
            .with_context(|| format!("failed to read {}", report.display()))?;
        // A pass that failed early may have printed nothing.
        let report: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", report.display()))?
        };
        let calls = report["apiCalls"]
            .as_object()
            .map(|calls| {
                calls
                    .iter()
                    .map(|(op, n)| (op.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Pass {
            calls,
            exit,
            wall: metrics["wall"].as_f64().unwrap_or(f64::NAN),
            cpu: metrics["cpu"].as_f64().unwrap_or(f64::NAN),
            peak_mib: metrics["maxrss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            report,
        })
    }

    fn calls_of(&self, op: &str) -> u64 {
        self.calls.get(op).copied().unwrap_or(0)
    }

    fn mutating(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(op, _)| is_mutating(op))
            .map(|(_, n)| n)
            .sum()
    }

    fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// The EC2 describe calls of the pass.
    fn describes(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(op, _)| op.starts_with("EC2.Describe"))
            .map(|(_, n)| n)
            .sum()
    }

    /// Groups in the plan, by verdict (`change`, `converged`, ...).
    fn verdicts(&self) -> BTreeMap<String, u64> {
        let mut verdicts = BTreeMap::new();
        for group in self.report["plan"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let verdict = group["verdict"].as_str().unwrap_or("?").to_string();
            *verdicts.entry(verdict).or_default() += 1;
        }
        verdicts
    }

    fn findings(&self) -> usize {
        self.report["findings"].as_array().map_or(0, Vec::len)
    }

    /// Why the pass did not complete, if it did not.
    fn problem(&self) -> Option<String> {
        if self.report.is_null() {
            return Some(format!("no JSON report (exit status {})", self.exit));
        }
        if let Some(failure) = self.report["failures"]
            .as_array()
            .and_then(|f| f.first())
            .and_then(Value::as_object)
        {
            return Some(format!(
                "failed to {}: {}",
                failure.get("step").and_then(Value::as_str).unwrap_or("?"),
                failure.get("error").and_then(Value::as_str).unwrap_or("?")
            ));
        }
        let failed = self.report["outcomes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                ["authorize", "revoke"]
                    .iter()
                    .any(|step| o[step]["result"] == "failed" || o[step]["result"] == "notRun")
            })
            .count();
        if failed > 0 {
            return Some(format!("{failed} group change(s) did not complete"));
        }
        (self.exit != 0).then(|| format!("exit status {}", self.exit))
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn is_mutating(op: &str) -> bool {
    op.contains("Authorize") || op.contains("Revoke")
}

/// Left-aligned first column, right-aligned others, two spaces apart.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                text.push_str(&format!("{cell:<width$}", width = widths[0]));
            } else {
                text.push_str(&format!("  {cell:>width$}", width = widths[i]));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The nearest-rank percentile `p` (0 < p <= 100) of `values`: the smallest value
/// that at least p% of them do not exceed; `None` when there are none.
fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

fn check(ok: bool, what: &str) -> bool {
    println!("  {}  {what}", if ok { "PASS" } else { "FAIL" });
    ok
}

fn percent_over(calls: u64, minimum: u64) -> f64 {
    if minimum == 0 {
        if calls == 0 { 0.0 } else { f64::INFINITY }
    } else {
        (calls as f64 - minimum as f64) * 100.0 / minimum as f64
    }
}

/// The fewest calls of each operation a converge pass can make. The lookup of the
/// rules the operator manages counts as one call: moto answers it in one page, AWS
/// in one page per 1,000 rules (see [`managed_rule_pages`]).
fn converge_minimum(groups: u64, findings: u64, instances: u64, first: bool) -> Vec<(String, u64)> {
    let batches = groups.div_ceil(FILTER_VALUES);
    let managed_pages = 1;
    vec![
        (
            "GuardDuty.ListFindings".into(),
            findings.div_ceil(GUARDDUTY_BATCH).max(1),
        ),
        (
            "GuardDuty.GetFindings".into(),
            findings.div_ceil(GUARDDUTY_BATCH),
        ),
        (
            "EC2.DescribeInstances".into(),
            instances.div_ceil(FILTER_VALUES),
        ),
        ("EC2.DescribeSecurityGroups".into(), batches),
        (
            "EC2.DescribeSecurityGroupRules".into(),
            batches + managed_pages,
        ),
        // Counted only for the groups a plan changes: none once converged.
        (
            "EC2.DescribeNetworkInterfaces".into(),
            if first { batches } else { 0 },
        ),
        (
            "EC2.AuthorizeSecurityGroupIngress".into(),
            if first { groups } else { 0 },
        ),
        (
            "EC2.RevokeSecurityGroupIngress".into(),
            if first { groups } else { 0 },
        ),
        // Whose credentials these are: findings of other accounts are never acted on.
        ("STS.GetCallerIdentity".into(), 1),
    ]
}

fn converge_report(
    groups: u64,
    instances: u64,
    first: &[PathBuf],
    second: &[PathBuf],
) -> anyhow::Result<bool> {
    let [first_report, first_metrics] = first else {
        bail!("--first takes REPORT METRICS");
    };
    let [second_report, second_metrics] = second else {
        bail!("--second takes REPORT METRICS");
    };
    let passes = [
        Pass::load(first_report, first_metrics)?,
        Pass::load(second_report, second_metrics)?,
    ];
    let findings = instances;
    let minimums = [
        converge_minimum(groups, findings, instances, true),
        converge_minimum(groups, findings, instances, false),
    ];

    println!();
    print_table(
        &["", "first pass (converges)", "second pass (converged)"],
        &[
            vec![
                "wall time".into(),
                format!("{:.2} s", passes[0].wall),
                format!("{:.2} s", passes[1].wall),
            ],
            vec![
                "CPU time (operator)".into(),
                format!("{:.2} s", passes[0].cpu),
                format!("{:.2} s", passes[1].cpu),
            ],
            vec![
                "peak RSS (operator)".into(),
                format!("{:.1} MiB", passes[0].peak_mib),
                format!("{:.1} MiB", passes[1].peak_mib),
            ],
            vec![
                "findings read".into(),
                passes[0].findings().to_string(),
                passes[1].findings().to_string(),
            ],
            vec![
                "plan (groups by verdict)".into(),
                verdict_summary(&passes[0]),
                verdict_summary(&passes[1]),
            ],
            vec![
                "describe calls (EC2)".into(),
                passes[0].describes().to_string(),
                passes[1].describes().to_string(),
            ],
        ],
    );

    println!(
        "  (moto serves one request at a time: the wall time is mostly moto's, the operator's \
         own work is its CPU time)"
    );
    println!();
    let mut ops: Vec<String> = minimums[0].iter().map(|(op, _)| op.clone()).collect();
    for pass in &passes {
        for op in pass.calls.keys() {
            if !ops.contains(op) {
                ops.push(op.clone());
            }
        }
    }
    let minimum_of = |pass: usize, op: &str| {
        minimums[pass]
            .iter()
            .find(|(o, _)| o == op)
            .map_or(0, |(_, n)| *n)
    };
    let mut rows = Vec::new();
    for op in &ops {
        let mut row = vec![op.clone()];
        for (i, pass) in passes.iter().enumerate() {
            let (calls, minimum) = (pass.calls_of(op), minimum_of(i, op));
            row.push(calls.to_string());
            row.push(minimum.to_string());
            row.push(over_marker(calls, minimum));
        }
        rows.push(row);
    }
    let total_minimum = |i: usize| minimums[i].iter().map(|(_, n)| n).sum::<u64>();
    let mut totals = vec!["total".to_string()];
    for (i, pass) in passes.iter().enumerate() {
        totals.push(pass.total().to_string());
        totals.push(total_minimum(i).to_string());
        totals.push(over_marker(pass.total(), total_minimum(i)));
    }
    rows.push(totals);
    print_table(
        &["API calls", "pass 1", "min", "", "pass 2", "min", ""],
        &rows,
    );

    println!();
    let per_group = passes[0].mutating() as f64 / groups.max(1) as f64;
    println!(
        "  mutating EC2 calls per converged group: {per_group:.2} on the first pass (target <= 2, minimum 2), \
         {} in all on the second (minimum 0)",
        passes[1].mutating()
    );
    for (i, pass) in passes.iter().enumerate() {
        let over: Vec<String> = ops
            .iter()
            .filter(|op| !is_mutating(op))
            .filter(|op| pass.calls_of(op) > minimum_of(i, op))
            .map(|op| format!("{op} {} vs {}", pass.calls_of(op), minimum_of(i, op)))
            .collect();
        println!(
            "  pass {} reads: {}",
            i + 1,
            if over.is_empty() {
                "every describe and GuardDuty read at its minimum".to_string()
            } else {
                format!("over the minimum: {}", over.join("; "))
            }
        );
    }

    if managed_rule_pages(groups) > 1 {
        println!(
            "  note: the second pass's lookup of the {} rules the operator manages is one call \
             on moto, {} pages of 1,000 on AWS",
            2 * groups,
            managed_rule_pages(groups)
        );
    }
    println!();
    let mut ok = true;
    for (i, pass) in passes.iter().enumerate() {
        ok &= check(
            pass.problem().is_none(),
            &format!(
                "pass {} completed{}",
                i + 1,
                pass.problem().map_or(String::new(), |p| format!(": {p}"))
            ),
        );
    }
    ok &= check(
        passes[0].findings() as u64 == findings,
        &format!(
            "first pass read all {findings} findings (read {})",
            passes[0].findings()
        ),
    );
    ok &= check(
        per_group <= 2.0,
        &format!("first pass: {per_group:.2} mutating calls per group <= 2"),
    );
    let revoked: Vec<&Value> = passes[0].report["plan"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["revoke"].as_array().into_iter().flatten())
        .collect();
    let probed_only = revoked
        .iter()
        .all(|r| r["ports"]["from"] == PROBED_PORT && r["ports"]["to"] == PROBED_PORT);
    ok &= check(
        revoked.len() as u64 == groups && probed_only,
        &format!(
            "first pass planned to revoke exactly the {groups} tcp/{PROBED_PORT} world rules, \
             tcp/{HARMLESS_PORT} left open ({} revocations{})",
            revoked.len(),
            if probed_only {
                ""
            } else {
                ", some on other ports"
            }
        ),
    );
    let converged = passes[1].verdicts().get("converged").copied().unwrap_or(0);
    ok &= check(
        converged == groups && passes[1].verdicts().len() == 1,
        &format!(
            "after the first pass every group converged ({converged} of {groups} groups \
             \"converged\" in the second pass's plan)"
        ),
    );
    ok &= check(
        passes[1].mutating() == 0,
        &format!(
            "second pass made no mutating call ({})",
            passes[1].mutating()
        ),
    );
    Ok(ok)
}

/// Pages of DescribeSecurityGroupRules AWS needs for the managed-rule lookup once
/// every group holds its two trusted rules (IPv4 and IPv6).
fn managed_rule_pages(groups: u64) -> u64 {
    (2 * groups).div_ceil(RULES_PAGE).max(1)
}

fn verdict_summary(pass: &Pass) -> String {
    let verdicts = pass.verdicts();
    if verdicts.is_empty() {
        return "-".into();
    }
    verdicts
        .iter()
        .map(|(verdict, n)| format!("{n} {verdict}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn over_marker(calls: u64, minimum: u64) -> String {
    if calls <= minimum {
        String::new()
    } else if minimum == 0 {
        "(unexpected)".into()
    } else {
        format!("+{:.0}%", percent_over(calls, minimum))
    }
}

fn ingest_report(
    count: u64,
    report: &Path,
    metrics: &Path,
    table_metrics: Option<&Path>,
) -> anyhow::Result<bool> {
    let pass = Pass::load(report, metrics)?;
    let table = table_metrics.map(read_json).transpose()?;
    let pages = count.div_ceil(GUARDDUTY_BATCH);
    let minimums = [
        ("GuardDuty.ListFindings".to_string(), pages.max(1)),
        ("GuardDuty.GetFindings".to_string(), pages),
        // Whose credentials these are: findings of other accounts are never acted on.
        ("STS.GetCallerIdentity".to_string(), 1),
    ];
    let mut ops: Vec<String> = minimums.iter().map(|(op, _)| op.clone()).collect();
    for op in pass.calls.keys() {
        if !ops.contains(op) {
            ops.push(op.clone());
        }
    }
    let minimum_of = |op: &str| {
        minimums
            .iter()
            .find(|(o, _)| o == op)
            .map_or(0, |(_, n)| *n)
    };

    println!();
    let mut header = vec!["", "audit -o json"];
    let mut rows = vec![
        vec!["wall time".to_string(), format!("{:.2} s", pass.wall)],
        vec!["CPU time (operator)".into(), format!("{:.2} s", pass.cpu)],
        vec![
            "peak RSS (operator)".into(),
            format!("{:.1} MiB", pass.peak_mib),
        ],
        vec!["findings read".into(), pass.findings().to_string()],
    ];
    if let Some(table) = &table {
        header.push("audit -o table");
        let number = |name: &str| table[name].as_f64().unwrap_or(f64::NAN);
        rows[0].push(format!("{:.2} s", number("wall")));
        rows[1].push(format!("{:.2} s", number("cpu")));
        rows[2].push(format!("{:.1} MiB", number("maxrss_kib") / 1024.0));
        rows[3].push("-".into());
    }
    print_table(&header, &rows);
    println!();
    let mut rows: Vec<Vec<String>> = ops
        .iter()
        .map(|op| {
            let (calls, minimum) = (pass.calls_of(op), minimum_of(op));
            vec![
                op.clone(),
                calls.to_string(),
                minimum.to_string(),
                format!("{:+.1}%", percent_over(calls, minimum)),
            ]
        })
        .collect();
    let guardduty: u64 = pass
        .calls
        .iter()
        .filter(|(op, _)| op.starts_with("GuardDuty."))
        .map(|(_, n)| n)
        .sum();
    let minimum: u64 = minimums
        .iter()
        .filter(|(op, _)| op.starts_with("GuardDuty."))
        .map(|(_, n)| n)
        .sum();
    let over = percent_over(guardduty, minimum);
    rows.push(vec![
        "GuardDuty total".into(),
        guardduty.to_string(),
        minimum.to_string(),
        format!("{over:+.1}%"),
    ]);
    print_table(&["API calls", "calls", "min", "over min"], &rows);

    println!();
    let mut ok = check(
        pass.problem().is_none(),
        &format!(
            "audit completed{}",
            pass.problem().map_or(String::new(), |p| format!(": {p}"))
        ),
    );
    ok &= check(
        pass.findings() as u64 == count,
        &format!("read all {count} findings (read {})", pass.findings()),
    );
    ok &= check(
        over <= CALLS_TOLERANCE * 100.0,
        &format!("GuardDuty calls within 5% of the minimum ({over:+.1}%)"),
    );
    let ec2: u64 = pass
        .calls
        .iter()
        .filter(|(op, _)| op.starts_with("EC2."))
        .map(|(_, n)| n)
        .sum();
    ok &= check(
        ec2 == 0,
        &format!("no EC2 call with remediation.mode Off ({ec2})"),
    );
    ok &= check(
        pass.peak_mib < MEMORY_TARGET_MIB,
        &format!(
            "peak RSS {:.1} MiB under {MEMORY_TARGET_MIB:.0} MiB with -o json{}",
            pass.peak_mib,
            if count == 10_000 {
                ""
            } else {
                " (the target is stated for 10,000 findings)"
            }
        ),
    );
    if let Some(table) = &table {
        let table_mib = table["maxrss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
        println!(
            "  info  with -o table the same pass peaks at {table_mib:.1} MiB: the JSON report \
             accounts for {:.1} MiB",
            pass.peak_mib - table_mib
        );
    }
    Ok(ok)
}
