//! `guardduty-emulator --listen ADDR [--findings FILE]...`: serves the GuardDuty emulator,
//! seeded from files holding `{"findings": [...]}`, and prints one line to stdout,
//! `listening on http://IP:PORT`, once it accepts connections. Logs go to stderr.
//! Every Region is served on the one address (see the library documentation).
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use guardduty_emulator::{Emulator, RequestLog, parse_findings_document};

/// A local emulator of the Amazon GuardDuty API (REST-JSON), for tests and demos.
///
/// Every Region is served on the one address: a request is answered for the Region its
/// SigV4 signature names (the SDK's configured Region; us-east-1 when it names none), and a
/// finding belongs to the detector its service.detectorId names in the Region its region
/// member names (us-east-1 when absent). A Region without detectors has one default detector:
/// 12abc34d567e8fa901bc2d34e56789f0 in us-east-1, elsewhere an id derived from the Region's
/// name (printed at start for the Regions the loaded findings use).
#[derive(Debug, Parser)]
#[command(name = "guardduty-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// A JSON file `{"findings": [...]}` (GetFindings' shape) to load at start (repeatable); a
    /// later file's finding replaces an earlier one with the same id.
    #[arg(long = "findings", value_name = "FILE")]
    findings: Vec<PathBuf>,
    /// Log every request to stderr, not only failed ones.
    #[arg(long, short)]
    verbose: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("guardduty-emulator: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let request_log = if args.verbose {
        RequestLog::All
    } else {
        RequestLog::Errors
    };
    let emulator = Emulator::new().with_request_log(request_log);
    for path in &args.findings {
        let loaded = load(&emulator, path)
            .map_err(|error| format!("failed to load {}: {error}", path.display()))?;
        eprintln!(
            "guardduty-emulator: loaded {loaded} findings from {}",
            path.display()
        );
    }
    let running = emulator
        .spawn(&args.listen)
        .await
        .map_err(|error| format!("failed to listen on {}: {error}", args.listen))?;
    announce(&running.url).map_err(|error| format!("failed to write to stdout: {error}"))?;
    for (region, detectors) in emulator.detectors_by_region() {
        eprintln!("guardduty-emulator: detectors in {region}: {detectors:?}");
    }
    tokio::select! {
        served = async { running.wait().await } => served.map_err(|error| format!("server failed: {error}")),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("guardduty-emulator: interrupted, stopping");
            Ok(())
        }
    }
}

fn load(emulator: &Emulator, path: &PathBuf) -> Result<usize, String> {
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    let findings = parse_findings_document(&bytes)?;
    emulator.upsert_findings(findings)
}

fn announce(url: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {url}")?;
    stdout.flush()
}
