//! The report's benchmark and its sample page.
//!
//! ```text
//! cargo run --release --example report -- bench [FINDINGS [CHANGES]]   # default 10000 1000
//! cargo run --example report -- sample FILE.html                       # the realistic sample page
//! ```
//!
//! `bench` renders the four formats of a report of FINDINGS findings and CHANGES changed
//! groups and prints, per format, the wall time, the size and the process's peak
//! resident memory while it rendered (the input included), with PASS/FAIL lines against
//! the targets for the HTML page (under 2 s, 64 MiB and 5 MiB); it exits 1 when one is
//! missed. `sample` writes the page the README's screenshot shows (docs/report.png):
//!
//! ```text
//! cargo run --example report -- sample target/report.html
//! chromium --headless=new --disable-gpu --no-sandbox --hide-scrollbars \
//!     --window-size=1280,1600 --screenshot=docs/report.png "file://$PWD/target/report.html"
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Instant;

use guardduty_operator::report::{self, sample::Sample};

const TIME_TARGET_SECONDS: f64 = 2.0;
const MEMORY_TARGET_MIB: f64 = 64.0;
const SIZE_TARGET_MIB: f64 = 5.0;

/// Starts the process's peak resident set size afresh from what it holds now (Linux
/// 4.0 and later: `5` to `/proc/self/clear_refs`), so that each format's peak is its
/// own; false where the kernel does not allow it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set size in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn bench(findings: usize, changes: usize) -> ExitCode {
    let built = Instant::now();
    let sample = Sample::large(findings, changes);
    let input = sample.input();
    let before = peak_rss_mib();
    let show = |v: Option<f64>| v.map_or("unknown".to_string(), |m| format!("{m:.1} MiB"));
    println!(
        "input: {findings} findings, {changes} changed groups ({} recorded actions), built in {:.2} s",
        sample.record.added.len() + sample.record.revoked.len(),
        built.elapsed().as_secs_f64()
    );
    let mut html = (0.0, 0, None);
    let mut each_peak = true;
    for (format, render) in [
        (
            "html",
            report::html as fn(&report::ReportInput<'_>) -> String,
        ),
        ("csv", report::csv),
        ("ocsf", report::ocsf),
        ("json", |i: &report::ReportInput<'_>| {
            report::json(i).to_string()
        }),
    ] {
        each_peak &= reset_peak_rss();
        let started = Instant::now();
        let text = render(&input);
        let seconds = started.elapsed().as_secs_f64();
        let peak = peak_rss_mib();
        println!(
            "{format:>5}: {seconds:.3} s, {:.2} MiB ({} bytes), peak RSS {}",
            mib(text.len()),
            text.len(),
            show(peak)
        );
        if format == "html" {
            html = (seconds, text.len(), peak);
        }
    }
    println!(
        "peak RSS: {} with the input built, {} rendering the HTML page ({})",
        show(before),
        show(html.2),
        if each_peak {
            "each format's peak measured on its own, the input included"
        } else {
            "the peak could not be reset: the largest of every format so far"
        }
    );
    let mut ok = true;
    let mut check = |name: &str, value: f64, target: f64, unit: &str| {
        let pass = value < target;
        ok &= pass;
        println!(
            "{} {name}: {value:.2} {unit} (target < {target} {unit})",
            if pass { "PASS" } else { "FAIL" }
        );
    };
    check("html render time", html.0, TIME_TARGET_SECONDS, "s");
    check("html size", mib(html.1), SIZE_TARGET_MIB, "MiB");
    if let Some(peak) = html.2 {
        check("html peak memory", peak, MEMORY_TARGET_MIB, "MiB");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |k: usize, default: usize| -> Option<usize> {
        args.get(k).map_or(Some(default), |a| a.parse().ok())
    };
    match args.first().map(String::as_str) {
        Some("bench") => match (number(1, 10_000), number(2, 1_000)) {
            (Some(findings), Some(changes)) if changes > 0 => bench(findings, changes),
            _ => {
                eprintln!("usage: report bench [FINDINGS [CHANGES]] (numbers, CHANGES > 0)");
                ExitCode::from(2)
            }
        },
        Some("sample") if args.len() == 2 => {
            let sample = Sample::realistic();
            if let Err(e) = std::fs::write(&args[1], report::html(&sample.input())) {
                eprintln!("cannot write {}: {e}", args[1]);
                return ExitCode::FAILURE;
            }
            println!("{}", args[1]);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: report bench [FINDINGS [CHANGES]] | report sample FILE.html");
            ExitCode::from(2)
        }
    }
}
