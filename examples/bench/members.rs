//! Member accounts: A accounts × G groups, each group open to the world on tcp/22 on an
//! instance of its own, created in moto through the account's assumed role (moto maps
//! the role's credentials to its account); one finding per group in the
//! administrator's detector, `accountId` the member's. One `remediate` pass with
//! `spec.memberAccounts` converges them all through the roles; its EC2 calls per group
//! are set beside those of a single account of G groups laid out the same way (the
//! baseline), and of the converge benchmark's passes when they ran.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use guardduty_operator::aws::clients::member_config;
use guardduty_operator::domain::policy::MemberAccounts;
use serde_json::{Value, json};

use super::{
    PROBED_PORT, Pass, check, first_image, moto_config, place, port_probe, post_findings,
    print_table, seed_estate,
};

/// Calls per group within this much of the single account's: "unchanged".
const TOLERANCE: f64 = 0.10;

/// The first member account's id; the others follow.
const FIRST_MEMBER: u64 = 210_000_000_001;

pub struct SeedMembersArgs {
    pub region: String,
    pub accounts: usize,
    pub groups: usize,
    pub role: String,
    pub external_id: String,
    pub emulator: String,
    pub detector: String,
    pub moto: String,
    pub concurrency: usize,
}

pub async fn seed(args: &SeedMembersArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let base = moto_config(&args.moto, &args.region).await;
    let image = first_image(&aws_sdk_ec2::Client::new(&base)).await?;
    let members = MemberAccounts {
        role_name: args.role.clone(),
        external_id: Some(args.external_id.clone()),
        accounts: Default::default(),
    };
    let mut accounts = Vec::new();
    let mut findings = Vec::new();
    let mut instances = 0;
    for n in 0..args.accounts {
        let account = (FIRST_MEMBER + n as u64).to_string();
        let config = member_config(
            &base,
            &members.role_arn(&account, &args.region),
            members.external_id.as_deref(),
        )
        .await
        .with_context(|| format!("failed to assume the role in {account}"))?;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let estate = seed_estate(
            &ec2,
            Some(&image),
            args.groups,
            1,
            &[PROBED_PORT],
            args.concurrency,
        )
        .await
        .with_context(|| format!("failed to seed account {account}"))?;
        for (i, (instance, groups)) in estate.instances.iter().enumerate() {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let id = format!("{:016x}{:016x}", (0xa0_u64 << 56) | n as u64, i);
            let mut finding = port_probe(&id, &args.detector, 8.0, instance, &groups);
            place(&mut finding, &args.region, Some(&account));
            findings.push(finding);
        }
        instances += estate.instances.len();
        eprintln!(
            "bench: account {account}: {} groups seeded through its role ({:.1} s so far)",
            estate.groups.len(),
            started.elapsed().as_secs_f64()
        );
        accounts.push(account);
    }
    let emulator = args.emulator.clone();
    let posted = tokio::task::spawn_blocking(move || post_findings(&emulator, findings))
        .await
        .context("the posting task panicked")??;
    println!(
        "{}",
        json!({
            "accounts": accounts,
            "groups": args.accounts * args.groups,
            "instances": instances,
            "findings": posted,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(true)
}

pub struct ReportArgs {
    pub accounts: u64,
    pub groups: u64,
    /// The member accounts' pass: REPORT METRICS.
    pub members: Vec<PathBuf>,
    /// The single account's pass: REPORT METRICS.
    pub baseline: Vec<PathBuf>,
    /// The converge benchmark's first passes: GROUPS REPORT METRICS, repeated.
    pub converge: Vec<String>,
}

/// The kinds of EC2 calls compared per group.
/// A column of the table and how it is read from one group's counts.
type Kind = (&'static str, fn(&PerGroup) -> u64);

const KINDS: [Kind; 3] = [
    ("authorize + revoke", PerGroup::rule_changes),
    ("watch tags written", PerGroup::tag_writes),
    ("describes", PerGroup::describes),
];

/// A pass's EC2 calls by kind, per group.
struct PerGroup {
    label: String,
    groups: u64,
    pass: Pass,
}

impl PerGroup {
    fn sum(&self, keep: impl Fn(&str) -> bool) -> u64 {
        self.pass
            .calls
            .iter()
            .filter(|(op, _)| keep(op))
            .map(|(_, n)| n)
            .sum()
    }

    fn rule_changes(&self) -> u64 {
        self.sum(super::is_mutating)
    }

    fn tag_writes(&self) -> u64 {
        self.sum(|op| op == "EC2.CreateTags" || op == "EC2.DeleteTags")
    }

    fn describes(&self) -> u64 {
        self.sum(|op| op.starts_with("EC2.Describe"))
    }

    fn per_group(&self, calls: u64) -> f64 {
        calls as f64 / self.groups.max(1) as f64
    }
}

pub fn report(args: &ReportArgs) -> anyhow::Result<bool> {
    let load = |files: &[PathBuf], what: &str| -> anyhow::Result<Pass> {
        let [report, metrics] = files else {
            anyhow::bail!("--{what} takes REPORT METRICS");
        };
        Pass::load(report, metrics)
    };
    let members = PerGroup {
        label: format!("{} accounts x {}", args.accounts, args.groups),
        groups: args.accounts * args.groups,
        pass: load(&args.members, "members")?,
    };
    let baseline = PerGroup {
        label: format!("1 account x {}", args.groups),
        groups: args.groups,
        pass: load(&args.baseline, "baseline")?,
    };
    let mut converge = Vec::new();
    for triple in args.converge.chunks(3) {
        let [groups, report, metrics] = triple else {
            anyhow::bail!("--converge takes GROUPS REPORT METRICS");
        };
        converge.push(PerGroup {
            label: format!("converge {groups} (5 per instance)"),
            groups: groups
                .parse()
                .context("--converge GROUPS is not a number")?,
            pass: Pass::load(report.as_ref(), metrics.as_ref())?,
        });
    }
    let columns: Vec<&PerGroup> = [&baseline, &members].into_iter().chain(&converge).collect();

    println!();
    let mut header = vec!["EC2 calls per group".to_string()];
    header.extend(columns.iter().map(|c| c.label.clone()));
    let per_group_row = |what: &str, calls: fn(&PerGroup) -> u64| {
        let mut row = vec![what.to_string()];
        row.extend(
            columns
                .iter()
                .map(|c| format!("{:.3}", c.per_group(calls(c)))),
        );
        row
    };
    let mut rows: Vec<Vec<String>> = KINDS
        .iter()
        .map(|(what, calls)| per_group_row(what, *calls))
        .collect();
    let mut wall = vec!["wall time".to_string()];
    wall.extend(columns.iter().map(|c| format!("{:.2} s", c.pass.wall)));
    rows.push(wall);
    let mut rss = vec!["peak RSS (operator)".to_string()];
    rss.extend(
        columns
            .iter()
            .map(|c| format!("{:.1} MiB", c.pass.peak_mib)),
    );
    rows.push(rss);
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    print_table(&header_refs, &rows);

    println!();
    let mut ops: Vec<&String> = columns.iter().flat_map(|c| c.pass.calls.keys()).collect();
    ops.sort();
    ops.dedup();
    let mut header = vec!["API calls".to_string()];
    header.extend(columns.iter().map(|c| c.label.clone()));
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|op| {
            let mut row = vec![(*op).clone()];
            row.extend(columns.iter().map(|c| c.pass.calls_of(op).to_string()));
            row
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    print_table(&header_refs, &rows);
    println!(
        "  (STS AssumeRole is made by the SDK's credentials provider, which the operator's \
         call counter does not see: one per member account)"
    );

    println!();
    let mut ok = true;
    for column in [&baseline, &members] {
        ok &= check(
            column.pass.problem().is_none(),
            &format!(
                "{}: the pass completed{}",
                column.label,
                column
                    .pass
                    .problem()
                    .map_or(String::new(), |p| format!(": {p}"))
            ),
        );
    }
    // Every member group changed, in its own account.
    let changed = changed_by_account(&members.pass.report);
    let all_changed = changed.len() as u64 == args.accounts
        && changed.values().all(|&n| n == args.groups)
        && revokes_done(&members.pass.report) == members.groups;
    ok &= check(
        all_changed,
        &format!(
            "every member group was fixed through its account's role: {} revokes done, {} \
             accounts with {} planned changes each",
            revokes_done(&members.pass.report),
            changed.len(),
            changed
                .values()
                .map(u64::to_string)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join("/")
        ),
    );
    for (what, calls) in KINDS {
        let (theirs, ours) = (
            baseline.per_group(calls(&baseline)),
            members.per_group(calls(&members)),
        );
        ok &= check(
            within(ours, theirs),
            &format!(
                "{what} per group unchanged by member accounts: {ours:.3} vs {theirs:.3} in one \
                 account of {} groups (within {:.0}%)",
                args.groups,
                TOLERANCE * 100.0
            ),
        );
    }
    for column in &converge {
        let (theirs, ours) = (
            column.per_group(column.describes()),
            members.per_group(members.describes()),
        );
        println!(
            "  info  describes per group vs {}: {ours:.3} vs {theirs:.3} ({:+.0}%): EC2 reads \
             batch within an account (200 ids a call), never across accounts",
            column.label,
            (ours - theirs) * 100.0 / theirs.max(f64::MIN_POSITIVE)
        );
    }
    Ok(ok)
}

fn within(ours: f64, theirs: f64) -> bool {
    if theirs == 0.0 {
        ours == 0.0
    } else {
        (ours - theirs).abs() <= TOLERANCE * theirs
    }
}

/// Planned changes (verdict `change`) per account.
fn changed_by_account(report: &Value) -> BTreeMap<String, u64> {
    let mut by_account = BTreeMap::new();
    for group in report["plan"]["groups"].as_array().into_iter().flatten() {
        if group["verdict"] == "change" {
            let account = group["account"].as_str().unwrap_or("own").to_string();
            *by_account.entry(account).or_default() += 1;
        }
    }
    by_account
}

fn revokes_done(report: &Value) -> u64 {
    report["outcomes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["revoke"]["result"] == "done")
        .count() as u64
}
