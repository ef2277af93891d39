//! The `guardduty-operator` command line: one audit or remediation pass from a policy
//! file, without a cluster, or the controller in a cluster (`controller`); the
//! composition root, where the AWS adapters are built and handed to a pass or to the
//! controller. Data goes to stdout; logs and progress to stderr; rendering in [`report`].
//!
//! Exit status: 0 when the pass completed, 2 for an invalid policy or usage,
//! 1 when AWS could not be reached, a step failed or an alert was not delivered.

pub mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::aws::ApiCallCounter;
use crate::aws::clients::{self, SdkAwsFactory};
use crate::controller::reconcile;
use crate::domain::alert::{AlertLimits, AlertRecord};
use crate::notify::dispatch::{NotifyOptions, RetryPolicy, build_channels, notify};
use crate::notify::secrets::{DirSecrets, NoSecrets, SecretStore};
use crate::notify::{self, state};
use crate::pass::{PassOptions, run_pass};
use crate::ports::AwsSetupError;
use crate::spec;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "guardduty-operator",
    version,
    about = "Turns Amazon GuardDuty findings into safe security group fixes"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read the findings the policy selects, print them with the plan and send the
    /// alerts that are due; changes nothing in AWS.
    Audit(PassArgs),
    /// Like audit, then apply the plan when remediation.mode is Enforce.
    Remediate(PassArgs),
    /// Print the GuardDutyPolicy CustomResourceDefinition (the YAML in crds/).
    Crd,
    /// Run the controller: reconcile every GuardDutyPolicy of the cluster (the kube
    /// config is inferred: in-cluster service account, or KUBECONFIG) until SIGTERM.
    Controller {
        /// Where to serve /healthz, /readyz and Prometheus /metrics.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
    },
}

#[derive(Debug, clap::Args)]
struct PassArgs {
    /// A GuardDutyPolicy manifest (the same file `kubectl apply` takes).
    #[arg(long, short = 'p', value_name = "FILE")]
    policy: PathBuf,
    /// Output format on stdout.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Change nothing outside this process: print the plan and the alerts that are
    /// due, apply nothing, send nothing, leave --state as it is.
    #[arg(long)]
    dry_run: bool,
    /// The alert record (created if missing): a finding is alerted once per channel
    /// and change across runs. Without it, every run alerts every finding again.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Where the policy's *SecretRef references are read from, laid out like a mounted
    /// Secret: DIR/NAME/KEY (e.g. DIR/slack/webhookUrl).
    #[arg(long, value_name = "DIR")]
    secrets_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// At most this many alerts per channel in one run; the rest go out on the next runs.
const ALERTS_PER_CHANNEL: usize = 50;
/// The most entries `--state` keeps.
const STATE_CAPACITY: usize = 100_000;

/// Exit statuses.
const INVALID: u8 = 2;
const FAILED: u8 = 1;

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn,guardduty_operator=info",
        1 => "info,guardduty_operator=debug",
        _ => "debug,guardduty_operator=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the command the arguments name; what `main` returns.
pub async fn run(cli: Cli) -> ExitCode {
    init_logging(cli.log_format, cli.verbose);
    let (args, apply) = match &cli.command {
        Command::Audit(args) => (args, false),
        Command::Remediate(args) => (args, !args.dry_run),
        Command::Crd => return print_crd(),
        Command::Controller { metrics_addr } => return controller(*metrics_addr).await,
    };
    match pass(args, apply).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(FAILED)
        }
    }
}

fn print_crd() -> ExitCode {
    use std::io::Write as _;
    let written = spec::crd_yaml()
        .context("failed to write the CRD as YAML")
        .and_then(|yaml| {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(yaml.as_bytes())?;
            stdout.flush()?;
            Ok(())
        });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(FAILED)
        }
    }
}

async fn controller(metrics_addr: SocketAddr) -> ExitCode {
    let result = async {
        let client = kube::Client::try_default()
            .await
            .context("failed to infer the Kubernetes configuration")?;
        reconcile::run(client, SdkAwsFactory::default(), metrics_addr)
            .await
            .map_err(|error| anyhow::anyhow!(crate::ports::error_chain(&error)))
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(FAILED)
        }
    }
}

async fn pass(args: &PassArgs, apply: bool) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(&args.policy) {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "error: failed to read the policy {}: {error}",
                args.policy.display()
            );
            return Ok(ExitCode::from(INVALID));
        }
    };
    let manifest = match spec::parse_manifest(&text) {
        Ok(manifest) => manifest,
        Err(error) => {
            eprintln!("error: invalid policy {}: {error}", args.policy.display());
            return Ok(ExitCode::from(INVALID));
        }
    };
    let valid = match manifest.spec.validate() {
        Ok(valid) => valid,
        Err(invalid) => {
            eprintln!(
                "error: invalid policy {}:\n{invalid}",
                args.policy.display()
            );
            return Ok(ExitCode::from(INVALID));
        }
    };
    // The alert record first: a damaged one stops the run before anything is done.
    let record = match &args.state {
        Some(path) => match state::load(path) {
            Ok(record) => record,
            Err(error) => {
                eprintln!("error: {error}");
                return Ok(ExitCode::from(INVALID));
            }
        },
        None => {
            if !valid.notifications.is_empty() && !args.dry_run {
                tracing::warn!(
                    "no --state FILE: every finding is alerted again on each run; pass --state to alert once per finding and change"
                );
            }
            AlertRecord::default()
        }
    };
    let counter = ApiCallCounter::default();
    let aws = match clients::load(valid.region.as_deref(), &counter).await {
        Ok((_, aws)) => aws,
        Err(AwsSetupError::NoRegion) => {
            eprintln!("error: no AWS region: set spec.region in the policy, or AWS_REGION");
            return Ok(ExitCode::from(INVALID));
        }
        Err(AwsSetupError::IdentifyAccount { error, .. }) => {
            eprintln!("error: failed to identify the AWS account (sts:GetCallerIdentity): {error}");
            return Ok(ExitCode::from(FAILED));
        }
    };
    let region = aws.region.clone();
    tracing::info!(
        policy = %manifest.metadata.name,
        account = aws.account_id.as_deref().unwrap_or("unknown"),
        %region,
        mode = %valid.policy.mode,
        apply,
        "starting a pass"
    );
    let options = PassOptions {
        detector: valid.detector_id.clone(),
        account_id: aws.account_id.clone(),
        apply,
    };
    let result = run_pass(&aws.guardduty, &aws.ec2, &valid.policy, &options).await;
    let notified = if valid.notifications.is_empty() {
        None
    } else {
        let secrets: Box<dyn SecretStore> = match &args.secrets_dir {
            Some(dir) => Box::new(DirSecrets::new(dir)),
            None => Box::new(NoSecrets),
        };
        let channels = build_channels(
            &valid.notifications,
            secrets.as_ref(),
            &aws.alerts,
            &notify::http::client(),
        )
        .await;
        let notify_options = NotifyOptions {
            limits: AlertLimits {
                per_channel: ALERTS_PER_CHANNEL,
                record_capacity: STATE_CAPACITY,
            },
            retry: RetryPolicy::default(),
            account_id: options.account_id.clone().unwrap_or_default(),
            region: region.clone(),
            dry_run: args.dry_run,
        };
        let notified = notify(&channels, &result, record, &notify_options).await;
        if let (Some(path), false) = (&args.state, args.dry_run)
            && let Err(error) = state::save(path, &notified.record)
        {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(FAILED));
        }
        Some(notified)
    };
    let calls = counter.snapshot();
    tracing::info!(api_calls = ?calls, "pass finished");
    {
        use std::io::Write as _;
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        match args.output {
            Output::Table => {
                write!(stdout, "{}", report::text(&result, &region))?;
                if let Some(notified) = &notified {
                    write!(stdout, "{}", report::alerts_text(notified))?;
                }
            }
            Output::Json => {
                report::write_json(&mut stdout, &result, &region, &calls, notified.as_ref())?
            }
        }
        writeln!(stdout)?;
        stdout
            .flush()
            .context("failed to write the report to stdout")?;
    }
    if let Some(failure) = &result.failure {
        eprintln!("error: failed to {}: {}", failure.step, failure.error);
    }
    for outcome in result.outcomes.iter().filter(|o| !o.succeeded()) {
        eprintln!(
            "error: the change to {} did not complete (see the outcome above)",
            outcome.group
        );
    }
    let alert_failures = notified.as_ref().map(|n| n.failures()).unwrap_or_default();
    for failure in &alert_failures {
        eprintln!(
            "error: {} alert(s) to {} ({}) not delivered: {}",
            failure.undelivered, failure.channel, failure.kind, failure.error
        );
    }
    Ok(if result.failed() || !alert_failures.is_empty() {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
