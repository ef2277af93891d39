//! The idle operator: one `watch` (Enforce, interval 1m) reading an empty SQS queue,
//! over a detector holding F findings of instances that no longer exist (nothing to
//! change), left alone for M minutes after its first pass. Its resident memory (VmRSS,
//! sampled every second, and the kernel's peak VmHWM) and CPU time (utime + stime)
//! come from `/proc/PID/status` and `/proc/PID/stat`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::watch::{
    Usage, Watch, WatchSetup, api_calls, pass_problem, ticks_per_second, usage, write_policy,
};
use super::{check, moto_config, print_table};

pub struct IdleArgs {
    pub operator: PathBuf,
    pub region: String,
    pub detector: String,
    pub moto: String,
    pub minutes: u64,
    pub work: PathBuf,
}

pub async fn run(args: &IdleArgs) -> anyhow::Result<bool> {
    let config = moto_config(&args.moto, &args.region).await;
    let queue = aws_sdk_sqs::Client::new(&config)
        .create_queue()
        .queue_name(format!("gdo-bench-idle-{}", std::process::id()))
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let policy = args.work.join("idle.yaml");
    write_policy(&policy, &args.region, &args.detector, "Enforce", "1m", "")?;
    let ticks = ticks_per_second();
    let spawned = Instant::now();
    let mut watch = Watch::spawn(&WatchSetup {
        operator: &args.operator,
        policy: &policy,
        queue: Some((&queue, &args.moto)),
        state: &args.work.join("idle-state.json"),
        log: &args.work.join("idle-watch.log"),
    })?;
    let pid = watch.pid();
    let first = watch.expect_line(Duration::from_secs(300), "the first pass")?;
    let first_pass = first.at.duration_since(spawned);
    let after_first = usage(pid, ticks)?;

    // Left alone: a sample a second, the passes as they come.
    let window = Duration::from_secs(args.minutes * 60);
    let end = Instant::now() + window;
    let mut reports = vec![first.report];
    let mut samples: Vec<Usage> = vec![after_first];
    while Instant::now() < end {
        let wait = (end - Instant::now()).min(Duration::from_secs(1));
        if let Some(line) = watch.next_line(wait)? {
            reports.push(line.report);
        }
        samples.push(usage(pid, ticks)?);
    }
    let last = usage(pid, ticks)?;
    let stopped = watch.stop();

    let idle_cpu = last.cpu_seconds - after_first.cpu_seconds;
    let idle_peak_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let periodic = reports.len() - 1;
    println!(
        "  watch over {} stored findings of terminated instances, an empty SQS queue, \
         interval 1m; observed for {} min after its first pass",
        reports[0]["findings"].as_array().map_or(0, Vec::len),
        args.minutes
    );
    println!();
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    print_table(
        &["", "value"],
        &[
            vec![
                "first pass (from start)".into(),
                format!("{:.2} s", first_pass.as_secs_f64()),
            ],
            vec![
                "passes after the first".into(),
                format!("{periodic} (expected about {})", args.minutes),
            ],
            vec!["RSS after the first pass".into(), mib(after_first.rss_kib)],
            vec!["RSS at the end".into(), mib(last.rss_kib)],
            vec!["RSS, highest sample while idle".into(), mib(idle_peak_rss)],
            vec![
                "peak RSS of the whole run (VmHWM)".into(),
                mib(last.peak_kib),
            ],
            vec![
                "CPU, first pass (utime+stime)".into(),
                format!("{:.2} s", after_first.cpu_seconds),
            ],
            vec![
                format!("CPU while idle ({} min)", args.minutes),
                format!(
                    "{idle_cpu:.2} s ({:.3}% of one core)",
                    idle_cpu * 100.0 / window.as_secs_f64()
                ),
            ],
        ],
    );
    if let Some(last_pass) = reports.get(1..).and_then(<[serde_json::Value]>::last) {
        let calls: Vec<String> = api_calls(last_pass)
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        println!(
            "  API calls of the last periodic pass: {} (SQS long polls, 20 s each, are not counted)",
            if calls.is_empty() {
                "none".to_string()
            } else {
                calls.join(", ")
            }
        );
    }

    println!();
    let problems: Vec<String> = reports.iter().filter_map(pass_problem).collect();
    let mut ok = check(
        problems.is_empty(),
        &format!(
            "every pass completed{}",
            problems.first().map_or(String::new(), |p| format!(": {p}"))
        ),
    );
    ok &= check(
        periodic as u64 + 1 >= args.minutes,
        &format!(
            "a pass every minute: {periodic} in {} min after the first",
            args.minutes
        ),
    );
    ok &= super::watch::check_stopped(&stopped);
    Ok(ok)
}
