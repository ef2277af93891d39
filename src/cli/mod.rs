//! The `guardduty-operator` command line: one audit or remediation pass from a policy
//! file, without a cluster, or the controller in a cluster (`controller`); the
//! composition root, where the AWS adapters are built and handed to a pass or to the
//! controller. Data goes to stdout; logs and progress to stderr; rendering in [`report`].
//!
//! Exit status: 0 when the pass completed, 2 for an invalid policy or usage,
//! 1 when AWS could not be reached, a step failed or an alert was not delivered.

pub mod report;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::aws::ApiCallCounter;
use crate::aws::clients::{self, SdkAwsFactory};
use crate::controller::leader::{LEASE_NAME, LeaseTimings};
use crate::controller::reconcile::{self, ControllerOptions};
use crate::domain::alert::AlertLimits;
use crate::domain::time::Timestamp;
use crate::notify;
use crate::notify::dispatch::{NotifyOptions, RetryPolicy, build_channels, notify};
use crate::notify::secrets::{DirSecrets, NoSecrets, SecretStore};
use crate::pass::{PassOptions, run_pass};
use crate::ports::{AwsSetupError, NoJournal};
use crate::spec;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use state::{State, StateJournal};

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
    /// More log output (-v: debug, -vv: trace). --log-level and RUST_LOG override.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The operator's log level: error, warn, info, debug or trace. RUST_LOG overrides.
    #[arg(long, global = true, value_enum)]
    log_level: Option<LogLevel>,
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
    Controller(ControllerArgs),
}

#[derive(Debug, clap::Args)]
struct ControllerArgs {
    /// Where to serve /healthz, /readyz and Prometheus /metrics.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Honour policies in this namespace (repeat for more; '*' for every namespace).
    /// A policy acts on the whole AWS account: elsewhere, policies get
    /// Ready=False NamespaceNotAllowed and nothing is done. Default: the operator's
    /// own namespace (POD_NAMESPACE).
    #[arg(long = "policy-namespace", value_name = "NS")]
    policy_namespaces: Vec<String>,
    /// The Lease the replicas elect a leader on, in the operator's namespace: one
    /// per release, so two releases over disjoint namespaces both run.
    #[arg(long, value_name = "NAME", default_value = LEASE_NAME)]
    lease_name: String,
    /// How long a lease stays valid after its last renewal (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How long the leader keeps leading without a renewal before it steps down.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    renew_deadline: Duration,
    /// How often the leader renews and a follower retries.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    retry_period: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::spec::duration::parse_go_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a duration such as 15s or 1m30s"))
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
    /// The state file (created if missing): the alert record, so a finding is alerted
    /// once per channel and change across runs, and the record of every change made
    /// in AWS. Without it, every run alerts every finding again and keeps no record.
    /// One run at a time: a second run waits for the first (--lock-timeout).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// How long to wait for another run holding --state to finish, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    lock_timeout: u64,
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
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
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

fn init_logging(format: LogFormat, verbose: u8, level: Option<LogLevel>) {
    let default = match (level, verbose) {
        (Some(LogLevel::Error), _) => "error",
        (Some(LogLevel::Warn), _) => "warn",
        (Some(LogLevel::Info), _) => "warn,guardduty_operator=info",
        (Some(LogLevel::Debug), _) => "info,guardduty_operator=debug",
        (Some(LogLevel::Trace), _) => "debug,guardduty_operator=trace",
        (None, 0) => "warn,guardduty_operator=info",
        (None, 1) => "info,guardduty_operator=debug",
        (None, _) => "debug,guardduty_operator=trace",
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
    init_logging(cli.log_format, cli.verbose, cli.log_level);
    let (args, apply) = match &cli.command {
        Command::Audit(args) => (args, false),
        Command::Remediate(args) => (args, !args.dry_run),
        Command::Crd => return print_crd(),
        Command::Controller(args) => return controller(args).await,
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

async fn controller(args: &ControllerArgs) -> ExitCode {
    let result = async {
        let timings = LeaseTimings {
            lease_duration: args.lease_duration,
            renew_every: args.retry_period,
            renew_deadline: args.renew_deadline,
            retry_every: args.retry_period,
        };
        if !(args.retry_period < args.renew_deadline && args.renew_deadline < args.lease_duration) {
            anyhow::bail!(
                "the lease timings must satisfy --retry-period < --renew-deadline < \
                 --lease-duration (a leader steps down before another may take over)"
            );
        }
        let options = ControllerOptions {
            metrics_addr: args.metrics_addr,
            lease_name: args.lease_name.clone(),
            lease_timings: timings,
            policy_namespaces: args.policy_namespaces.clone(),
        };
        let client = kube::Client::try_default()
            .await
            .context("failed to infer the Kubernetes configuration")?;
        reconcile::run(client, SdkAwsFactory::default(), options)
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
    let owner = spec::PolicyOwner::new(
        manifest.metadata.namespace.as_deref(),
        &manifest.metadata.name,
    );
    let valid = match manifest.spec.validate(&owner) {
        Ok(valid) => valid,
        Err(invalid) => {
            eprintln!(
                "error: invalid policy {}:\n{invalid}",
                args.policy.display()
            );
            return Ok(ExitCode::from(INVALID));
        }
    };
    // The state first, under its lock for the whole run (read state, pass, alerts,
    // write): a second run waits, and a damaged file stops the run before anything
    // is done.
    let (_lock, state) = match &args.state {
        Some(path) => {
            let lock = match state::lock(path, Duration::from_secs(args.lock_timeout)) {
                Ok(lock) => lock,
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::from(INVALID));
                }
            };
            match state::load(path) {
                Ok(state) => (Some(lock), state),
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(ExitCode::from(INVALID));
                }
            }
        }
        None => {
            if !valid.notifications.is_empty() && !args.dry_run {
                tracing::warn!(
                    "no --state FILE: every finding is alerted again on each run; pass --state to alert once per finding and change"
                );
            }
            (None, State::default())
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
        record: state.changes.clone(),
        now: Timestamp(k8s_openapi::jiff::Timestamp::now().as_second()),
    };
    let result = match (&args.state, args.dry_run) {
        (Some(path), false) => {
            let journal = StateJournal {
                path,
                alerts: &state.alerts,
            };
            run_pass(&aws.guardduty, &aws.ec2, &valid.policy, &options, &journal).await
        }
        _ => {
            run_pass(
                &aws.guardduty,
                &aws.ec2,
                &valid.policy,
                &options,
                &NoJournal,
            )
            .await
        }
    };
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
            now: options.now,
        };
        Some(notify(&channels, &result, state.alerts.clone(), &notify_options).await)
    };
    // The record of changes and of alerts, in one durable write.
    if let (Some(path), false) = (&args.state, args.dry_run) {
        let after = State {
            alerts: notified
                .as_ref()
                .map_or_else(|| state.alerts.clone(), |n| n.record.clone()),
            changes: result.record.clone(),
        };
        if let Err(error) = state::save(path, &after) {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(FAILED));
        }
    }
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
