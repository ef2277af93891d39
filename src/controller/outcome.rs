//! What one reconcile got to: the one value the status, the events, the metrics and
//! the next requeue are all computed from.

use crate::domain::compliance::FrameworkState;
use crate::domain::outcome::{Category, PassReport};
use crate::notify::dispatch::{ChannelFailure, NotifyReport};
use crate::ports::AwsSetupError;
use crate::spec::InvalidSpec;

/// The result of one reconcile of a policy that holds the finalizer.
// One value per reconcile, moved once: the size of the pass's report costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    /// The spec failed validation: no pass ran.
    Invalid(InvalidSpec),
    /// The AWS clients could not be set up (no region, the account unknown): no pass ran.
    SetupFailed(AwsSetupError),
    /// The policy's namespace is not among those the operator honours: nothing is
    /// done in AWS.
    NamespaceNotAllowed { namespace: String, allowed: String },
    /// A pass ran (its report may carry a failure); `alerts` is `None` when the policy
    /// has no notification channels; `compliance`: each control judged on the spec and
    /// this pass ([`ValidSpec::compliance`](crate::spec::ValidSpec::compliance)).
    Passed {
        report: PassReport,
        alerts: Option<NotifyReport>,
        compliance: Vec<FrameworkState>,
    },
}

impl Outcome {
    /// A pass without alerting or compliance states.
    pub fn passed(report: PassReport) -> Outcome {
        Outcome::Passed {
            report,
            alerts: None,
            compliance: Vec::new(),
        }
    }

    pub fn report(&self) -> Option<&PassReport> {
        match self {
            Outcome::Passed { report, .. } => Some(report),
            _ => None,
        }
    }

    pub fn alerts(&self) -> Option<&NotifyReport> {
        match self {
            Outcome::Passed { alerts, .. } => alerts.as_ref(),
            _ => None,
        }
    }

    /// The channels with an alert not delivered.
    pub fn alert_failures(&self) -> Vec<ChannelFailure> {
        self.alerts()
            .map(NotifyReport::failures)
            .unwrap_or_default()
    }

    /// Something failed that a retry may fix: AWS set-up, a step of the pass, a
    /// group's change, an alert. An invalid spec is not retried: it waits for a change.
    pub fn needs_retry(&self) -> bool {
        match self {
            Outcome::Invalid(_) | Outcome::NamespaceNotAllowed { .. } => false,
            Outcome::SetupFailed(_) => true,
            Outcome::Passed { report, .. } => report.failed() || !self.alert_failures().is_empty(),
        }
    }

    /// Whether AWS throttled the pass (the backoff then starts higher).
    pub fn throttled(&self) -> bool {
        self.report()
            .and_then(|r| r.failure())
            .is_some_and(|f| f.category == Category::Throttled)
    }
}
