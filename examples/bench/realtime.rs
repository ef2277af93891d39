//! Event to converged: one `watch --queue-url` (Enforce, interval 24h, so no periodic
//! pass interferes) over N groups, each open to the world on tcp/22 and held by an
//! instance of its own; one GuardDuty finding event per instance sent to the SQS queue,
//! one every `spacing` (0: all at once).
//!
//! The latency of an event runs from its SendMessage call returning to the moment the
//! benchmark reads the watch's report line whose outcomes show its group's revoke
//! done. The watch prints that line after the revoke has returned (and after the
//! state file is written), so the figure is an upper bound of the time to converge,
//! by at most that write; polling moto for the rule instead would compete with the
//! operator for moto's one Python process. At the end one read of
//! moto's rules confirms that no group is still open to the world on tcp/22.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use aws_sdk_ec2::types::Filter;
use serde_json::{Value, json};

use super::watch::{Watch, WatchSetup, api_calls, pass_problem, write_policy};
use super::{
    PROBED_PORT, check, moto_config, percentile, place, port_probe, print_table, seed_estate,
};

/// The target: 99% of events converged within this long, on loopback.
const P99_TARGET: Duration = Duration::from_secs(1);
/// How long to wait for the last events' passes after the last event was sent.
const SETTLE: Duration = Duration::from_secs(120);

pub struct RealtimeArgs {
    pub operator: PathBuf,
    pub region: String,
    pub emulator: String,
    pub moto: String,
    pub groups: usize,
    pub spacing: Duration,
    pub work: PathBuf,
    pub concurrency: usize,
}

/// One event sent: its group, and when SendMessage returned.
struct Sent {
    finding: String,
    group: String,
    at: Instant,
    wall: SystemTime,
}

pub async fn run(args: &RealtimeArgs) -> anyhow::Result<bool> {
    let config = moto_config(&args.moto, &args.region).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let seeding = Instant::now();
    let estate = seed_estate(&ec2, None, args.groups, 1, &[PROBED_PORT], args.concurrency).await?;
    println!(
        "  seeded {} groups open to the world on tcp/{PROBED_PORT}, each on an instance of its own, \
         in {:.1} s",
        estate.groups.len(),
        seeding.elapsed().as_secs_f64()
    );

    // The region's detector, as `aws guardduty list-detectors` shows it.
    let guardduty = aws_sdk_guardduty::Client::from_conf(
        aws_sdk_guardduty::config::Builder::from(&config)
            .endpoint_url(&args.emulator)
            .build(),
    );
    let detector = guardduty
        .list_detectors()
        .send()
        .await
        .context("failed to list the emulator's detectors")?
        .detector_ids()
        .first()
        .cloned()
        .context("the emulator lists no detector")?;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs
        .create_queue()
        .queue_name(format!("gdo-bench-realtime-{}", std::process::id()))
        .send()
        .await
        .context("failed to create the SQS queue in moto")?
        .queue_url
        .context("CreateQueue returned no URL")?;

    let policy = args.work.join("realtime.yaml");
    write_policy(&policy, &args.region, &detector, "Enforce", "24h", "")?;
    let mut watch = Watch::spawn(&WatchSetup {
        operator: &args.operator,
        policy: &policy,
        queue: Some((&queue, &args.moto)),
        state: &args.work.join("realtime-state.json"),
        log: &args.work.join("realtime-watch.log"),
    })?;
    let first = watch.expect_line(Duration::from_secs(120), "the first pass")?;
    let mut problems: Vec<String> = pass_problem(&first.report).into_iter().collect();

    // The events, on schedule: event i is sent at start + i × spacing.
    let started = Instant::now();
    let mut sent = Vec::with_capacity(estate.instances.len());
    for (i, (instance, groups)) in estate.instances.iter().enumerate() {
        let due = started + args.spacing * u32::try_from(i)?;
        tokio::time::sleep_until(due.into()).await;
        let finding_id = format!("{:032x}", (0xe0_u128 << 120) | i as u128);
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let mut finding = port_probe(&finding_id, &detector, 8.0, instance, &groups);
        place(&mut finding, &args.region, None);
        sqs.send_message()
            .queue_url(&queue)
            .message_body(event(&finding).to_string())
            .send()
            .await
            .with_context(|| format!("failed to send event {i}"))?;
        sent.push(Sent {
            finding: finding_id,
            group: groups[0].to_string(),
            at: Instant::now(),
            wall: SystemTime::now(),
        });
    }
    let sending = started.elapsed();

    // The report lines until every group's revoke is reported (or SETTLE runs out).
    let mut converged: BTreeMap<String, Instant> = BTreeMap::new();
    let mut passes = Vec::new();
    let deadline = Instant::now() + SETTLE;
    // Lines that came while the events were being sent wait in the channel.
    while converged.len() < sent.len() && Instant::now() < deadline {
        let Some(line) = watch.next_line(deadline - Instant::now())? else {
            break;
        };
        for outcome in line.report["outcomes"].as_array().into_iter().flatten() {
            if outcome["revoke"]["result"] == "done"
                && let Some(group) = outcome["group"].as_str()
            {
                converged.entry(group.to_string()).or_insert(line.at);
            }
        }
        problems.extend(pass_problem(&line.report));
        passes.push(line.report);
    }
    let stopped = watch.stop();
    let events = watch.log_events().unwrap_or_default();

    // moto's word: which groups still let the world in on tcp/22.
    let still_open = world_open_groups(&ec2, &estate.groups).await?;

    let latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|s| converged.get(&s.group).map(|at| at.duration_since(s.at)))
        .collect();
    // From the operator's log: when its intake handed each finding to the policy.
    let routed: BTreeMap<&str, SystemTime> = events
        .iter()
        .filter(|e| e.message.starts_with("finding event queued"))
        .filter_map(|e| Some((e.fields["finding"].as_str()?, e.at)))
        .collect();
    let in_queue: Vec<Duration> = sent
        .iter()
        .filter_map(|s| routed.get(s.finding.as_str())?.duration_since(s.wall).ok())
        .collect();

    let spacing = if args.spacing.is_zero() {
        "all at once".to_string()
    } else {
        format!("one every {} ms", args.spacing.as_millis())
    };
    println!(
        "  {} finding events sent to the queue, {spacing}, in {:.1} s; {} targeted passes \
         reported",
        sent.len(),
        sending.as_secs_f64(),
        passes.iter().filter(|p| p["targeted"] == true).count()
    );
    println!();
    let row = |what: &str, values: &[Duration]| {
        let figure = |p: f64| {
            percentile(values, p).map_or("-".to_string(), |d| format!("{} ms", d.as_millis()))
        };
        vec![
            what.to_string(),
            values.len().to_string(),
            figure(50.0),
            figure(99.0),
            figure(100.0),
        ]
    };
    print_table(
        &["", "events", "p50", "p99", "max"],
        &[
            row("SendMessage returned -> revoke reported", &latencies),
            row("  of which in the queue, until routed", &in_queue),
        ],
    );
    println!(
        "  (\"reported\": the watch's JSON line for the pass that revoked the group's world rule, \
         read as it is printed; \"routed\": the operator's log line for the event)"
    );

    // What one targeted pass costs, on average.
    let targeted: Vec<&Value> = passes.iter().filter(|p| p["targeted"] == true).collect();
    if !targeted.is_empty() {
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        for pass in &targeted {
            for (op, n) in api_calls(pass) {
                *totals.entry(op).or_default() += n;
            }
        }
        println!();
        let rows: Vec<Vec<String>> = totals
            .iter()
            .map(|(op, n)| {
                vec![
                    op.clone(),
                    format!("{:.2}", *n as f64 / targeted.len() as f64),
                ]
            })
            .collect();
        print_table(&["API calls per targeted pass", "mean"], &rows);
    }

    println!();
    let mut ok = check(
        problems.is_empty(),
        &format!(
            "every pass completed{}",
            problems.first().map_or(String::new(), |p| format!(": {p}"))
        ),
    );
    ok &= check(
        latencies.len() == sent.len() && still_open.is_empty(),
        &format!(
            "every event's group converged: {} of {} revokes reported, {} group(s) still open to \
             the world on tcp/{PROBED_PORT} in moto",
            latencies.len(),
            sent.len(),
            still_open.len()
        ),
    );
    let p99 = percentile(&latencies, 99.0);
    ok &= check(
        latencies.len() == sent.len() && p99.is_some_and(|p| p <= P99_TARGET),
        &format!(
            "event -> converged p99 {} <= {} ms ({spacing}, loopback)",
            p99.map_or("-".into(), |p| format!("{} ms", p.as_millis())),
            P99_TARGET.as_millis()
        ),
    );
    ok &= super::watch::check_stopped(&stopped);
    Ok(ok)
}

/// An EventBridge event carrying `finding` as its detail, as a rule delivers it.
fn event(finding: &Value) -> Value {
    json!({
        "version": "0",
        "id": format!("bench-{}", finding["id"].as_str().unwrap_or_default()),
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": finding["accountId"],
        "time": finding["updatedAt"],
        "region": finding["region"],
        "resources": [],
        "detail": finding,
    })
}

/// The groups of `groups` that still have an ingress rule open to 0.0.0.0/0 on the
/// probed port.
async fn world_open_groups(
    ec2: &aws_sdk_ec2::Client,
    groups: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut open = std::collections::BTreeSet::new();
    for batch in groups.chunks(super::FILTER_VALUES as usize) {
        let mut pages = ec2
            .describe_security_group_rules()
            .filters(
                Filter::builder()
                    .name("group-id")
                    .set_values(Some(batch.to_vec()))
                    .build(),
            )
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.context("failed to describe the groups' rules")?;
            for rule in page.security_group_rules() {
                if rule.is_egress() == Some(false)
                    && rule.cidr_ipv4() == Some("0.0.0.0/0")
                    && rule.from_port() == Some(PROBED_PORT)
                    && let Some(group) = rule.group_id()
                {
                    open.insert(group.to_string());
                }
            }
        }
    }
    Ok(open.into_iter().collect())
}
