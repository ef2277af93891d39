//! The `guardduty-operator` command line: one audit or remediation pass from a policy
//! file, without a cluster, passes until a signal (`watch`), or the controller in a
//! cluster (`controller`); the composition root, where the AWS adapters are built and
//! handed to a pass or to the controller. Data goes to stdout; logs and progress to
//! stderr; a session's passes in [`session`], rendering in [`report`].
//!
//! Exit status: 0 the pass completed; 1 AWS could not be reached or a step failed;
//! 2 invalid usage, policy or state file; 3 a `--fail-on` condition holds; 4 an alert
//! was not delivered. `watch` exits 0 when stopped by a signal.

pub mod output_file;
pub mod report;
pub mod session;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::aws::clients::SdkAwsFactory;
use crate::controller::leader::{LEASE_NAME, LeaseTimings};
use crate::controller::reconcile::{self, ControllerOptions};
use crate::pass::FindingsInput;
use crate::spec;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use session::{FailOn, Session, SessionArgs};

/// The exit statuses, as `--help` and README list them.
const EXIT_STATUSES: &str = "Exit status: 0 the pass completed; 1 AWS could not be reached or a \
step failed; 2 invalid usage, policy or state file; 3 a --fail-on condition holds; 4 an alert \
was not delivered.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "guardduty-operator",
    version = VERSION,
    about = "Turns Amazon GuardDuty findings into safe security group fixes",
    after_help = EXIT_STATUSES
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
    /// Read the findings the policy selects and print them with the plan and the
    /// alerts that are due (sent with --notify); changes nothing in AWS.
    Audit(AuditArgs),
    /// Check a policy file offline: every problem at once, with its field; no AWS call.
    Validate(ValidateArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, powershell, elvish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Like audit, then apply the plan when remediation.mode is Enforce.
    Remediate(PassArgs),
    /// Remediate every spec.interval and on every finding event of --queue-url, until
    /// SIGINT or SIGTERM (one report per pass on stdout).
    Watch(WatchArgs),
    /// Print the GuardDutyPolicy CustomResourceDefinition (the YAML in crds/).
    Crd,
    /// A report of the policy for people and auditors (html, json, csv, ocsf): a
    /// read-only pass (no AWS change, no alert, --state left as it is) with the history
    /// of --state or of a GuardDutyPolicy's status (`kubectl get gdp NAME -o json`).
    Report(ReportArgs),
    /// Run the controller: reconcile every GuardDutyPolicy of the cluster (the kube
    /// config is inferred: in-cluster service account, or KUBECONFIG) until SIGTERM.
    Controller(ControllerArgs),
}

#[derive(Debug, clap::Args)]
struct ControllerArgs {
    /// Read GuardDuty finding events from this SQS queue (an EventBridge rule's
    /// target) and act on each at once, beside the periodic passes.
    #[arg(long, value_name = "URL")]
    events_queue_url: Option<String>,
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
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Write the report to FILE (whole, then renamed into place) instead of stdout.
    #[arg(long, value_name = "FILE")]
    output_file: Option<PathBuf>,
    /// Exit 3 when, after a completed pass, findings are still exposed, changes are
    /// pending or groups were refused (repeat or comma-separate; for CI jobs).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "WHAT")]
    fail_on: Vec<FailOn>,
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

#[derive(Debug, clap::Args)]
struct AuditArgs {
    #[command(flatten)]
    pass: PassArgs,
    /// Send the alerts that are due (an audit only lists them otherwise).
    #[arg(long)]
    notify: bool,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// A GuardDutyPolicy manifest (the same file `kubectl apply` takes).
    #[arg(long, short = 'p', value_name = "FILE")]
    policy: PathBuf,
    /// The state file of `remediate` or `watch`: the change record the report shows.
    /// Read only.
    #[arg(long, value_name = "FILE", conflicts_with = "status")]
    state: Option<PathBuf>,
    /// A GuardDutyPolicy object as `kubectl get gdp NAME -o json` prints it: the
    /// controller's change record and conditions.
    #[arg(long, value_name = "FILE")]
    status: Option<PathBuf>,
    /// Report format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Html)]
    output: ReportFormat,
    /// Write the report to FILE (whole, then renamed into place) instead of stdout.
    #[arg(long, value_name = "FILE")]
    output_file: Option<PathBuf>,
    /// How long to wait for a run holding --state to finish, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    lock_timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// One page, no external resource.
    Html,
    /// One JSON document.
    Json,
    /// One row per finding.
    Csv,
    /// OCSF Detection Finding events, one JSON object per line.
    Ocsf,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// The GuardDutyPolicy manifest to check.
    #[arg(long, short = 'p', value_name = "FILE")]
    policy: PathBuf,
}

#[derive(Debug, clap::Args)]
struct WatchArgs {
    #[command(flatten)]
    pass: PassArgs,
    /// Also act on each GuardDuty finding event of this SQS queue at once (an
    /// EventBridge rule's target).
    #[arg(long, value_name = "URL")]
    queue_url: Option<String>,
}

impl PassArgs {
    fn session(&self, notify: bool) -> SessionArgs<'_> {
        SessionArgs {
            policy: &self.policy,
            state: self.state.as_deref(),
            lock_timeout: Duration::from_secs(self.lock_timeout),
            secrets_dir: self.secrets_dir.as_deref(),
            dry_run: self.dry_run,
            notify,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
    /// One row per finding, with what the operator did.
    Csv,
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
const FAIL_ON: u8 = 3;
const UNDELIVERED: u8 = 4;

/// The version `--version` prints: the crate's, with the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GDO_GIT_REVISION"),
    ")"
);

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
    let (args, apply, notify) = match &cli.command {
        Command::Audit(args) => (&args.pass, false, args.notify),
        Command::Remediate(args) => (args, !args.dry_run, true),
        Command::Validate(args) => return validate(args),
        Command::Completions { shell } => return completions(*shell),
        Command::Crd => return print_crd(),
        Command::Report(args) => {
            return match report_command(args).await {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(FAILED)
                }
            };
        }
        Command::Controller(args) => return controller(args).await,
        Command::Watch(args) => {
            return match watch(args).await {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(FAILED)
                }
            };
        }
    };
    match pass(args, apply, notify).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(FAILED)
        }
    }
}

/// Writes `document` to `file` (whole, then renamed into place) or to stdout.
fn write_document(
    document: &str,
    file: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    match file {
        Some(path) => output_file::write(path, |out| Ok(out.write_all(document.as_bytes())?)),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(document.as_bytes())
                .and_then(|()| stdout.flush())
                .with_context(|| format!("failed to write {what} to stdout"))
        }
    }
}

fn print_crd() -> ExitCode {
    let written = spec::crd_yaml()
        .context("failed to write the CRD as YAML")
        .and_then(|yaml| write_document(&yaml, None, "the CRD"));
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
            events_queue_url: args.events_queue_url.clone(),
        };
        let client = kube::Client::try_default()
            .await
            .context("failed to infer the Kubernetes configuration")?;
        reconcile::run(client, SdkAwsFactory::from_env()?, options)
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

async fn pass(args: &PassArgs, apply: bool, notify: bool) -> anyhow::Result<ExitCode> {
    let mut session = match Session::open(&args.session(notify)).await {
        Ok(session) => session,
        Err(code) => return Ok(code),
    };
    let passed = session.pass(apply, FindingsInput::Full).await?;
    session.print(&passed, args.output, false, args.output_file.as_deref())?;
    Ok(ExitCode::from(session::exit_status(&passed, &args.fail_on)))
}

/// The history and the delivery state a `--status` file holds.
struct StatusHistory {
    changes: crate::domain::record::ChangeRecord,
    alert_failed: bool,
}

/// Reads a GuardDutyPolicy object (`kubectl get gdp NAME -o json`): its
/// `status.changes` and whether `NotificationsDelivered` is False.
fn read_status(path: &std::path::Path) -> anyhow::Result<StatusHistory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read --status {}", path.display()))?;
    let object: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "--status {}: not JSON; give the object as `kubectl get gdp NAME -o json` prints it",
            path.display()
        )
    })?;
    let status = object.get("status").with_context(|| {
        format!(
            "--status {}: no `status` (the policy has not been reconciled yet, or this is not \
             a GuardDutyPolicy object)",
            path.display()
        )
    })?;
    let changes = match status.get("changes") {
        None | Some(serde_json::Value::Null) => Default::default(),
        Some(changes) => serde_json::from_value(changes.clone()).with_context(|| {
            format!("--status {}: status.changes does not read", path.display())
        })?,
    };
    let alert_failed = status
        .get("conditions")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "NotificationsDelivered" && c["status"] == "False");
    Ok(StatusHistory {
        changes,
        alert_failed,
    })
}

/// `report`: a read-only pass, the history of --state or --status, the controls'
/// states, one document in the format asked.
async fn report_command(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    // Read the status first: a bad file stops the run before any AWS call.
    let from_status = args.status.as_deref().map(read_status).transpose()?;
    let session_args = SessionArgs {
        policy: &args.policy,
        state: args.state.as_deref(),
        lock_timeout: Duration::from_secs(args.lock_timeout),
        secrets_dir: None,
        // Nothing leaves this process: no change, no alert, no state write.
        dry_run: true,
        notify: false,
    };
    let mut session = match Session::open(&session_args).await {
        Ok(session) => session,
        Err(code) => return Ok(code),
    };
    let passed = session.pass(false, FindingsInput::Full).await?;
    let (record, alert_failed) = match from_status {
        Some(status) => (status.changes, status.alert_failed),
        None => (session.state.changes.clone(), false),
    };
    let report = &passed.report;
    let states = session.valid.compliance(report, alert_failed);
    let responses = crate::domain::response::finding_responses(report);
    let input = crate::report::ReportInput {
        policy: &session.name,
        generated_at: session::now(),
        report,
        responses: &responses,
        record: &record,
        compliance: &states,
    };
    let document = match args.output {
        ReportFormat::Html => crate::report::html(&input),
        ReportFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&crate::report::json(&input))?
        ),
        ReportFormat::Csv => crate::report::csv(&input),
        ReportFormat::Ocsf => crate::report::ocsf(&input),
    };
    write_document(&document, args.output_file.as_deref(), "the report")?;
    Ok(ExitCode::SUCCESS)
}

/// `completions SHELL`: the completion script, on stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    clap_complete::generate(
        shell,
        &mut command,
        "guardduty-operator",
        &mut std::io::stdout(),
    );
    ExitCode::SUCCESS
}

/// `validate`: the policy file checked as the controller and `remediate` check it,
/// offline; every problem at once.
fn validate(args: &ValidateArgs) -> ExitCode {
    let path = args.policy.display();
    let text = match std::fs::read_to_string(&args.policy) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: failed to read the policy {path}: {error}");
            return ExitCode::from(INVALID);
        }
    };
    let manifest = match spec::parse_manifest(&text) {
        Ok(manifest) => manifest,
        Err(error) => {
            eprintln!("error: invalid policy {path}: {error}");
            return ExitCode::from(INVALID);
        }
    };
    let owner = spec::PolicyOwner::new(
        manifest.metadata.namespace.as_deref(),
        &manifest.metadata.name,
    );
    match manifest.spec.validate(&owner) {
        Ok(valid) => {
            let regions = if valid.regions.is_empty() {
                "the AWS SDK's region".to_string()
            } else {
                valid.regions.join(", ")
            };
            println!(
                "{path}: policy {owner} is valid: mode {}, {} trusted range(s), {} channel(s), {regions}",
                valid.policy.mode,
                valid.policy.trusted.iter().count(),
                valid.notifications.len(),
            );
            ExitCode::SUCCESS
        }
        Err(invalid) => {
            eprintln!("error: invalid policy {path}:\n{invalid}");
            ExitCode::from(INVALID)
        }
    }
}

/// `watch`: a pass every `spec.interval` (listing only what changed since the last,
/// in full every `spec.fullResyncInterval`) and one for the findings of each event
/// of `--queue-url`, until SIGINT or SIGTERM; then the pass in flight finishes, the
/// long poll is cancelled, and the exit status is 0.
async fn watch(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    use crate::domain::known::KnownFindings;
    let mut session = match Session::open(&args.pass.session(true)).await {
        Ok(session) => session,
        Err(code) => return Ok(code),
    };
    let apply = !args.pass.dry_run;
    let key = session.valid.policy.owner.clone();
    let (inbox, receipts) = crate::events::Inbox::new();
    let inbox = std::sync::Arc::new(inbox);
    let woken = std::sync::Arc::new(tokio::sync::Notify::new());
    let (stop_intake, intake_stopped) = tokio::sync::oneshot::channel::<()>();
    let intake = match &args.queue_url {
        Some(url) => {
            let router = std::sync::Arc::new(OnePolicy {
                key: key.clone(),
                valid: session.valid.clone(),
                woken: woken.clone(),
            });
            let queue = std::sync::Arc::new(
                crate::aws::clients::event_queue(url, Some(session.region())).await,
            );
            tracing::info!(queue = %url, "reading GuardDuty finding events");
            Some(tokio::spawn(crate::events::run_intake(
                queue,
                router,
                inbox.clone(),
                receipts,
                async {
                    let _ = intake_stopped.await;
                },
            )))
        }
        None => None,
    };
    let mut known = KnownFindings::default();
    let interval = session.valid.interval;
    let full_resync = session.valid.full_resync_interval.as_secs() as i64;
    let mut next = tokio::time::Instant::now();
    let stop = reconcile::shutdown_signal();
    tokio::pin!(stop);
    let mut failed_passes = 0u32;
    loop {
        let events = tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep_until(next) => false,
            () = woken.notified() => true,
        };
        let queued = inbox.take(&key);
        let started = session::now();
        let input = if events && tokio::time::Instant::now() < next {
            if queued.is_empty() {
                continue;
            }
            FindingsInput::Given(crate::events::coalesce(&queued))
        } else {
            for delivery in &queued {
                known.heard(
                    &delivery.finding,
                    session.valid.policy.selects(&delivery.finding),
                );
            }
            next = tokio::time::Instant::now() + interval;
            FindingsInput::Known {
                known: known.clone(),
                full_resync_seconds: full_resync,
            }
        };
        let passed = session.pass(apply, input).await?;
        known.learn(&passed.report, started);
        inbox.settle(&queued, !passed.report.failed());
        session.print(
            &passed,
            args.pass.output,
            true,
            args.pass.output_file.as_deref(),
        )?;
        if session::exit_status(&passed, &args.pass.fail_on) != 0 {
            failed_passes += 1;
        }
    }
    let _ = stop_intake.send(());
    if let Some(intake) = intake {
        let _ = tokio::time::timeout(Duration::from_secs(5), intake).await;
    }
    tracing::info!(failed_passes, "watch stopped");
    Ok(ExitCode::SUCCESS)
}

/// The one policy `watch` runs, as the events' router.
struct OnePolicy {
    key: String,
    valid: spec::ValidSpec,
    woken: std::sync::Arc<tokio::sync::Notify>,
}

impl crate::events::Router for OnePolicy {
    fn selecting(&self, finding: &crate::domain::finding::Finding) -> Vec<String> {
        let region = self.valid.regions.is_empty() || self.valid.regions.contains(&finding.region);
        if region && self.valid.policy.selects(finding) {
            vec![self.key.clone()]
        } else {
            Vec::new()
        }
    }

    fn wake(&self, _: &str) {
        self.woken.notify_one();
    }
}
