//! A quiet periodic pass: `watch` (Enforce, interval 30s, the shortest) over a detector
//! holding N findings that nothing updates, of instances that no longer exist. Its
//! first pass lists them all; the second, 30 s later, must list only what was updated
//! since (nothing): one ListFindings page and no GetFindings, the N findings still
//! known, and of EC2 one DescribeSecurityGroups filtered on the watch tag and one
//! DescribeInstances (the account-region the first pass left settled is quiet). The counts are the `apiCalls` of each pass's JSON line; the wall times come
//! from the operator's log ("starting a pass" to "pass finished").

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::watch::{Watch, WatchSetup, api_calls, pass_problem, pass_times, write_policy};
use super::{check, print_table};

pub struct QuietArgs {
    pub operator: PathBuf,
    pub region: String,
    pub detector: String,
    pub count: u64,
    pub work: PathBuf,
}

pub fn run(args: &QuietArgs) -> anyhow::Result<bool> {
    let policy = args.work.join("quiet.yaml");
    write_policy(&policy, &args.region, &args.detector, "Enforce", "30s", "")?;
    let mut watch = Watch::spawn(&WatchSetup {
        operator: &args.operator,
        policy: &policy,
        queue: None,
        state: &args.work.join("quiet-state.json"),
        log: &args.work.join("quiet-watch.log"),
    })?;
    let timeout = Duration::from_secs(600);
    let first = watch.expect_line(timeout, "the first pass")?;
    let second = watch.expect_line(timeout, "the second pass")?;
    let stopped = watch.stop();
    let times = pass_times(&watch.log_events()?);
    let wall = |n: usize| -> Option<f64> {
        let (start, end) = times.get(n)?;
        Some(end.as_ref()?.duration_since(*start).ok()?.as_secs_f64())
    };
    let passes = [&first.report, &second.report];
    let calls = passes.map(api_calls);
    let count_of = |pass: usize, op: &str| calls[pass].get(op).copied().unwrap_or(0);
    let findings = |report: &Value| report["findings"].as_array().map_or(0, Vec::len);
    let quiet = |report: &Value| report["quiet"].as_array().map_or(0, Vec::len);
    let describes = |pass: usize| -> u64 {
        calls[pass]
            .iter()
            .filter(|(op, _)| op.starts_with("EC2.Describe"))
            .map(|(_, n)| n)
            .sum()
    };

    println!();
    let seconds = |n: usize| wall(n).map_or("-".to_string(), |s| format!("{s:.2} s"));
    let mut rows = vec![
        vec!["wall time".into(), seconds(0), seconds(1)],
        vec![
            "findings (open, known)".into(),
            findings(passes[0]).to_string(),
            findings(passes[1]).to_string(),
        ],
        vec![
            "describe calls (EC2)".into(),
            describes(0).to_string(),
            describes(1).to_string(),
        ],
        vec![
            "quiet (account-regions)".into(),
            quiet(passes[0]).to_string(),
            quiet(passes[1]).to_string(),
        ],
    ];
    let mut ops: Vec<&String> = calls[0].keys().chain(calls[1].keys()).collect();
    ops.sort();
    ops.dedup();
    for op in ops {
        rows.push(vec![
            op.clone(),
            count_of(0, op).to_string(),
            count_of(1, op).to_string(),
        ]);
    }
    print_table(
        &["", "first pass (full listing)", "second pass (30 s later)"],
        &rows,
    );

    println!();
    let lists = count_of(1, "GuardDuty.ListFindings");
    let gets = count_of(1, "GuardDuty.GetFindings");
    let problems: Vec<String> = passes.iter().filter_map(|p| pass_problem(p)).collect();
    let mut ok = check(
        problems.is_empty(),
        &format!(
            "both passes completed{}",
            problems.first().map_or(String::new(), |p| format!(": {p}"))
        ),
    );
    ok &= check(
        findings(passes[0]) as u64 == args.count,
        &format!(
            "the first pass read all {} findings (read {})",
            args.count,
            findings(passes[0])
        ),
    );
    ok &= check(
        lists == 1 && gets == 0,
        &format!("the quiet pass made 1 ListFindings page and 0 GetFindings ({lists} and {gets})"),
    );
    ok &= check(
        findings(passes[1]) == findings(passes[0]),
        &format!(
            "the quiet pass still knows every open finding ({} of {})",
            findings(passes[1]),
            findings(passes[0])
        ),
    );
    let other_ec2: Vec<String> = calls[1]
        .iter()
        .filter(|(op, _)| {
            op.starts_with("EC2.")
                && !matches!(
                    op.as_str(),
                    "EC2.DescribeSecurityGroups" | "EC2.DescribeInstances"
                )
        })
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    ok &= check(
        quiet(passes[1]) == 1
            && count_of(1, "EC2.DescribeSecurityGroups") <= 1
            && count_of(1, "EC2.DescribeInstances") <= 1
            && other_ec2.is_empty(),
        &format!(
            "the quiet pass read EC2 by one tag-filtered DescribeSecurityGroups and one \
             DescribeInstances only ({} and {}{})",
            count_of(1, "EC2.DescribeSecurityGroups"),
            count_of(1, "EC2.DescribeInstances"),
            if other_ec2.is_empty() {
                String::new()
            } else {
                format!(", and {}", other_ec2.join(", "))
            }
        ),
    );
    ok &= super::watch::check_stopped(&stopped);
    Ok(ok)
}
