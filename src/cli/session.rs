//! A command-line session: the policy file read and checked, the state file locked
//! and loaded, the AWS clients set up; then one pass at a time (`audit`, `remediate`)
//! or passes until a signal (`watch`), each followed by its alerts, one durable write
//! of the state, and its report on stdout.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::report;
use super::state::{self, State, StateJournal, StateLock};
use super::{ALERTS_PER_CHANNEL, FAILED, INVALID, Output, STATE_CAPACITY};
use crate::aws::clients::{SdkAwsFactory, SdkClients};
use crate::domain::alert::AlertLimits;
use crate::domain::outcome::PassReport;
use crate::domain::time::Timestamp;
use crate::notify;
use crate::notify::dispatch::{NotifyOptions, NotifyReport, RetryPolicy, build_channels, notify};
use crate::notify::secrets::{DirSecrets, NoSecrets, SecretStore};
use crate::pass::{FindingsInput, PassOptions, run_pass};
use crate::ports::{AwsFactory as _, AwsSetupError, NoJournal};
use crate::spec::{self, ValidSpec};

/// What every pass of a session needs.
pub struct Session {
    pub name: String,
    pub valid: ValidSpec,
    /// The state file and its lock, held for the whole session.
    state_path: Option<PathBuf>,
    _lock: Option<StateLock>,
    pub state: State,
    pub aws: SdkAwsFactory,
    /// The first region's clients: the account, and SES/SNS for the alert channels.
    setup: SdkClients,
    secrets_dir: Option<PathBuf>,
    pub dry_run: bool,
    /// Send the alerts that are due (`remediate`, `watch`, `audit --notify`); else
    /// they are listed as what would be sent, and the alert record stays as it is.
    pub notify: bool,
}

/// The arguments every pass command shares.
pub struct SessionArgs<'a> {
    pub policy: &'a Path,
    pub state: Option<&'a Path>,
    pub lock_timeout: Duration,
    pub secrets_dir: Option<&'a Path>,
    pub dry_run: bool,
    pub notify: bool,
}

/// A pass, its alerts and its API calls.
pub struct Passed {
    pub report: PassReport,
    pub notified: Option<NotifyReport>,
    pub calls: std::collections::BTreeMap<String, u64>,
}

impl Session {
    /// Reads and checks the policy, locks and loads the state, sets up AWS; on a
    /// problem, says it on stderr and gives the exit status.
    pub async fn open(args: &SessionArgs<'_>) -> Result<Session, ExitCode> {
        let invalid = |message: String| {
            eprintln!("error: {message}");
            ExitCode::from(INVALID)
        };
        let path = args.policy.display();
        let text = std::fs::read_to_string(args.policy)
            .map_err(|error| invalid(format!("failed to read the policy {path}: {error}")))?;
        let manifest = spec::parse_manifest(&text)
            .map_err(|error| invalid(format!("invalid policy {path}: {error}")))?;
        let owner = spec::PolicyOwner::new(
            manifest.metadata.namespace.as_deref(),
            &manifest.metadata.name,
        );
        let valid = manifest
            .spec
            .validate(&owner)
            .map_err(|e| invalid(format!("invalid policy {path}:\n{e}")))?;
        // The state first, under its lock for the whole session (read state, pass,
        // alerts, write): a second run waits, and a damaged file stops the run before
        // anything is done.
        let (lock, state) = match args.state {
            Some(file) => {
                let lock = state::lock(file, args.lock_timeout).map_err(invalid)?;
                (Some(lock), state::load(file).map_err(invalid)?)
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
        let aws = SdkAwsFactory::from_env().map_err(|e| invalid(format!("{e:#}")))?;
        let setup = match aws.clients(valid.regions.first().map(String::as_str)).await {
            Ok(setup) => setup,
            Err(AwsSetupError::NoRegion) => {
                return Err(invalid(
                    "no AWS region: set spec.region in the policy, or AWS_REGION".into(),
                ));
            }
            Err(AwsSetupError::IdentifyAccount { error, .. }) => {
                eprintln!(
                    "error: failed to identify the AWS account (sts:GetCallerIdentity): {error}"
                );
                return Err(ExitCode::from(FAILED));
            }
            Err(error) => {
                eprintln!("error: {error}");
                return Err(ExitCode::from(FAILED));
            }
        };
        Ok(Session {
            name: manifest.metadata.name.clone(),
            valid,
            state_path: args.state.map(Path::to_path_buf),
            _lock: lock,
            state,
            aws,
            setup,
            secrets_dir: args.secrets_dir.map(Path::to_path_buf),
            dry_run: args.dry_run,
            notify: args.notify && !args.dry_run,
        })
    }

    /// The first region, as the SDK resolved it.
    pub fn region(&self) -> &str {
        &self.setup.region
    }

    /// One pass of `findings` (applied when `apply` and the policy enforces), its
    /// alerts, and the state written once for both; the state write failing is an
    /// error (the run exits 1).
    pub async fn pass(&mut self, apply: bool, findings: FindingsInput) -> anyhow::Result<Passed> {
        tracing::info!(
            policy = %self.name,
            account = self.setup.account_id.as_deref().unwrap_or("unknown"),
            region = %self.setup.region,
            mode = %self.valid.policy.mode,
            apply,
            "starting a pass"
        );
        let before = self.aws.api_calls();
        let options = PassOptions {
            regions: self.valid.regions.clone(),
            detector: self.valid.detector_id.clone(),
            apply,
            record: self.state.changes.clone(),
            now: now(),
            findings,
        };
        let progress = Progress::start(&self.aws);
        let report = match (&self.state_path, self.dry_run) {
            (Some(path), false) => {
                let journal = StateJournal {
                    path,
                    alerts: &self.state.alerts,
                };
                run_pass(&self.aws, &self.valid.policy, &options, &journal).await
            }
            _ => run_pass(&self.aws, &self.valid.policy, &options, &NoJournal).await,
        };
        drop(progress);
        let notified = if self.valid.notifications.is_empty() {
            None
        } else {
            // Secrets are read for every pass, so a rotated one is used at once.
            let secrets: Box<dyn SecretStore> = match &self.secrets_dir {
                Some(dir) => Box::new(DirSecrets::new(dir)),
                None => Box::new(NoSecrets),
            };
            let channels = build_channels(
                &self.valid.notifications,
                secrets.as_ref(),
                &self.setup.alerts,
                &notify::http::client(),
            )
            .await;
            let notify_options = NotifyOptions {
                limits: AlertLimits {
                    per_channel: ALERTS_PER_CHANNEL,
                    record_capacity: STATE_CAPACITY,
                },
                retry: RetryPolicy::default(),
                account_id: self.setup.account_id.clone().unwrap_or_default(),
                region: self.setup.region.clone(),
                dry_run: !self.notify,
                now: options.now,
            };
            Some(
                notify(
                    &channels,
                    &report,
                    self.state.alerts.clone(),
                    &notify_options,
                )
                .await,
            )
        };
        // The record of changes and of alerts, in one durable write.
        if !self.dry_run {
            self.state = State {
                alerts: notified
                    .as_ref()
                    .filter(|_| self.notify)
                    .map_or_else(|| self.state.alerts.clone(), |n| n.record.clone()),
                changes: report.record.clone(),
            };
            if let Some(path) = &self.state_path {
                state::save(path, &self.state).map_err(anyhow::Error::msg)?;
            }
        }
        let after = self.aws.api_calls();
        let calls = after
            .into_iter()
            .map(|(op, n)| {
                let was = before.get(&op).copied().unwrap_or(0);
                (op, n - was)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        tracing::info!(api_calls = ?calls, "pass finished");
        Ok(Passed {
            report,
            notified,
            calls,
        })
    }

    /// Prints a pass: a table, CSV, or one JSON document (on one line when `compact`,
    /// as `watch --output json` prints one per pass), to stdout or, written whole and
    /// then renamed into place, to `file`.
    pub fn print(
        &self,
        passed: &Passed,
        output: Output,
        compact: bool,
        file: Option<&Path>,
    ) -> anyhow::Result<()> {
        match file {
            None => {
                let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
                self.render(&mut stdout, passed, output, compact)?;
                stdout
                    .flush()
                    .context("failed to write the report to stdout")
            }
            Some(path) => {
                super::output_file::write(path, |out| self.render(out, passed, output, compact))
            }
        }
    }

    fn render(
        &self,
        out: &mut dyn std::io::Write,
        passed: &Passed,
        output: Output,
        compact: bool,
    ) -> anyhow::Result<()> {
        let region = self.region();
        match output {
            Output::Table => {
                write!(out, "{}", report::text(&passed.report, region))?;
                if let Some(notified) = &passed.notified {
                    write!(out, "{}", report::alerts_text(notified))?;
                }
            }
            Output::Csv => write!(out, "{}", report::csv(&passed.report))?,
            Output::Json => report::write_json(
                &mut *out,
                &passed.report,
                region,
                &passed.calls,
                passed.notified.as_ref(),
                compact,
            )?,
        }
        if !matches!(output, Output::Csv) {
            writeln!(out)?;
        }
        Ok(())
    }
}

/// What a pass's exit status is: 1 when a step failed, 4 when an alert was not
/// delivered, 3 when a `--fail-on` condition holds, else 0; says why on stderr.
pub fn exit_status(passed: &Passed, fail_on: &[FailOn]) -> u8 {
    if complain(passed) {
        return FAILED;
    }
    let undelivered = passed
        .notified
        .as_ref()
        .is_some_and(|n| !n.failures().is_empty());
    if undelivered {
        return super::UNDELIVERED;
    }
    let held: Vec<&FailOn> = fail_on.iter().filter(|f| f.holds(&passed.report)).collect();
    if let Some(first) = held.first() {
        eprintln!(
            "error: --fail-on {}: {}",
            first.name(),
            first.describe(&passed.report)
        );
        return super::FAIL_ON;
    }
    0
}

/// `--fail-on`: what makes a pass that completed fail a CI job (exit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// A finding's exposure is still open: planned, refused or failed, not closed.
    Exposed,
    /// Changes are planned and not applied (DryRun, audit, --dry-run).
    Pending,
    /// The operator refused to change a group.
    Refused,
}

impl FailOn {
    fn name(self) -> &'static str {
        match self {
            FailOn::Exposed => "exposed",
            FailOn::Pending => "pending",
            FailOn::Refused => "refused",
        }
    }

    /// The findings (`exposed`) or groups (`pending`, `refused`) that make it hold.
    fn matching(self, report: &PassReport) -> Vec<String> {
        use crate::domain::plan::Verdict;
        let groups = |keep: &dyn Fn(&Verdict) -> bool| -> Vec<String> {
            report
                .plan
                .iter()
                .flat_map(|p| &p.groups)
                .filter(|g| keep(&g.verdict))
                .map(|g| g.group.to_string())
                .collect()
        };
        match self {
            FailOn::Exposed => crate::domain::response::finding_responses(report)
                .into_iter()
                .filter(|s| s.response.kind().leaves_exposure_open())
                .map(|s| s.finding.id.to_string())
                .collect(),
            FailOn::Pending if report.applied => Vec::new(),
            FailOn::Pending => groups(&|v| matches!(v, Verdict::Change(_))),
            FailOn::Refused => groups(&|v| matches!(v, Verdict::Refused(_))),
        }
    }

    fn holds(self, report: &PassReport) -> bool {
        !self.matching(report).is_empty()
    }

    fn describe(self, report: &PassReport) -> String {
        let found = self.matching(report);
        let what = match self {
            FailOn::Exposed => "finding(s) still exposed",
            FailOn::Pending => "group(s) with changes not applied",
            FailOn::Refused => "group(s) refused",
        };
        let shown: Vec<&str> = found.iter().take(5).map(String::as_str).collect();
        let more = if found.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        format!("{} {what}: {}{more}", found.len(), shown.join(", "))
    }
}

/// Says on stderr what went wrong in a pass; true when a step did (exit 1).
pub fn complain(passed: &Passed) -> bool {
    for failure in &passed.report.failures {
        eprintln!("error: {failure}");
    }
    for outcome in passed.report.outcomes.iter().filter(|o| !o.succeeded()) {
        eprintln!(
            "error: the change to {} did not complete (see the outcome above)",
            outcome.group
        );
    }
    let alert_failures = passed
        .notified
        .as_ref()
        .map(|n| n.failures())
        .unwrap_or_default();
    for failure in &alert_failures {
        eprintln!(
            "error: {} alert(s) to {} ({}) not delivered: {}",
            failure.undelivered, failure.channel, failure.kind, failure.error
        );
    }
    passed.report.failed()
}

/// A progress line on stderr while a pass runs, when stderr is a terminal: how long
/// it has run and how many AWS calls it made (silent otherwise, and gone when done).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(aws: &SdkAwsFactory) -> Progress {
        use std::io::IsTerminal as _;
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        let before: u64 = aws.api_calls().values().sum();
        let calls = aws.call_counter();
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let made: u64 = calls.snapshot().values().sum::<u64>() - before;
                shown.set_message(format!("reading and changing AWS: {made} calls"));
                shown.tick();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The wall clock, in whole seconds (the one place the command line reads it).
pub(crate) fn now() -> Timestamp {
    Timestamp(k8s_openapi::jiff::Timestamp::now().as_second())
}
