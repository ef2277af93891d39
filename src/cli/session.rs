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
}

/// The arguments every pass command shares.
pub struct SessionArgs<'a> {
    pub policy: &'a Path,
    pub state: Option<&'a Path>,
    pub lock_timeout: Duration,
    pub secrets_dir: Option<&'a Path>,
    pub dry_run: bool,
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
                dry_run: self.dry_run,
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

    /// Prints a pass on stdout: a table, or one JSON document (on one line when
    /// `compact`, as `watch --output json` prints one per pass).
    pub fn print(&self, passed: &Passed, output: Output, compact: bool) -> anyhow::Result<()> {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        let region = self.region();
        match output {
            Output::Table => {
                write!(stdout, "{}", report::text(&passed.report, region))?;
                if let Some(notified) = &passed.notified {
                    write!(stdout, "{}", report::alerts_text(notified))?;
                }
            }
            Output::Json => report::write_json(
                &mut stdout,
                &passed.report,
                region,
                &passed.calls,
                passed.notified.as_ref(),
                compact,
            )?,
        }
        writeln!(stdout)?;
        stdout
            .flush()
            .context("failed to write the report to stdout")
    }
}

/// Says on stderr what went wrong in a pass; true when something did (exit 1).
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
    passed.report.failed() || !alert_failures.is_empty()
}

fn now() -> Timestamp {
    Timestamp(k8s_openapi::jiff::Timestamp::now().as_second())
}
