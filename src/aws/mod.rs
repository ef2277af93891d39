//! Adapters from the AWS SDK to the domain ([`ec2`], [`guardduty`]), their
//! construction from the standard SDK configuration ([`clients`]), and a counter of
//! the API calls every client makes.

pub mod clients;
pub mod ec2;
pub mod guardduty;
pub mod pace;
pub mod sqs;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::AwsError;

/// Seconds one AWS request may take (default 60; the whole operation, retries
/// included, may take three times that). Raise it for a slow endpoint, such as an
/// emulator holding thousands of rules.
pub const ATTEMPT_TIMEOUT_ENV: &str = "GDO_AWS_ATTEMPT_TIMEOUT_SECONDS";

/// The attempt timeout from [`ATTEMPT_TIMEOUT_ENV`]: whole seconds from 1 to 3600;
/// anything else (or nothing) is the default of 60 s.
fn attempt_timeout(value: Option<&str>) -> Duration {
    match value.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(seconds @ 1..=3600) => Duration::from_secs(seconds),
        Some(_) | None => {
            if value.is_some() {
                tracing::warn!(
                    "{ATTEMPT_TIMEOUT_ENV} must be whole seconds from 1 to 3600: using 60"
                );
            }
            Duration::from_secs(60)
        }
    }
}

/// Attempts of one AWS request, the first included (default 5, from 1 to 10).
pub const MAX_ATTEMPTS_ENV: &str = "GDO_AWS_MAX_ATTEMPTS";
/// The first retry's backoff ceiling in milliseconds (default 1000); each retry
/// doubles it, with full jitter, up to 20 s.
pub const RETRY_BACKOFF_ENV: &str = "GDO_AWS_RETRY_BACKOFF_MS";

/// How throttling (RequestLimitExceeded, Throttling), 5xx and dropped connections
/// are retried: the SDK's standard strategy (exponential backoff with full jitter,
/// so many clients do not retry in lock-step), at least 5 attempts by default, each
/// wait at most 20 s: bounded, then the error is reported.
fn retry_config(
    attempts: Option<&str>,
    backoff_ms: Option<&str>,
) -> aws_config::retry::RetryConfig {
    let attempts = attempts
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|a| (1..=10).contains(a))
        .unwrap_or(5);
    let backoff = backoff_ms
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| (1..=60_000).contains(ms))
        .unwrap_or(1000);
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(backoff))
        .with_max_backoff(Duration::from_secs(20))
}

/// Loads the standard AWS configuration (environment, profiles, IRSA, IMDS),
/// with `region` taking precedence when given. Per-service endpoints such as
/// `AWS_ENDPOINT_URL_EC2` are honoured by the SDK itself.
pub async fn load_config(region: Option<&str>) -> SdkConfig {
    // Bounded, so an endpoint that never answers fails the pass instead of hanging
    // a cron job; retries (standard mode, with backoff) stay the SDK's.
    let attempt = attempt_timeout(std::env::var(ATTEMPT_TIMEOUT_ENV).ok().as_deref());
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(attempt)
        // Every attempt, and the waits between them.
        .operation_timeout(attempt * 3 + Duration::from_secs(60))
        .build();
    let retries = retry_config(
        std::env::var(MAX_ATTEMPTS_ENV).ok().as_deref(),
        std::env::var(RETRY_BACKOFF_ENV).ok().as_deref(),
    );
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(retries);
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}

/// Counts the HTTP requests each AWS operation sent (retries included), and how each
/// attempt ended, for the benchmarks and the controller's metrics.
#[derive(Debug, Clone, Default)]
pub struct ApiCallCounter {
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    outcomes: Arc<Mutex<BTreeMap<(String, &'static str), u64>>>,
}

impl ApiCallCounter {
    /// Calls so far, keyed `Service.Operation` (e.g. `EC2.DescribeInstances`).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Attempts so far by operation and outcome: `success` (a 2xx answer), `error`
    /// (an error answer, throttling included) or `no-response` (network, timeout).
    pub fn outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        self.outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>()
        .map(|m| format!("{}.{}", m.service(), m.name()))
        .unwrap_or_else(|| "unknown".to_string())
}

impl Intercept for ApiCallCounter {
    fn name(&self) -> &'static str {
        "ApiCallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(operation(cfg))
            .or_default() += 1;
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // An attempt that never got as far as a request was not a call.
        if context.request().is_none() {
            return Ok(());
        }
        let outcome = match context.response() {
            Some(response) if response.status().is_success() => "success",
            Some(_) => "error",
            None => "no-response",
        };
        *self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((operation(cfg), outcome))
            .or_default() += 1;
        Ok(())
    }
}

/// How many describes of one kind the adapters keep in flight at once.
pub const CONCURRENCY: usize = 8;

/// Reduces an SDK error to its code and message ([`AwsError::of_sdk`]).
pub(crate) fn aws_error<E>(error: E) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    AwsError::of_sdk(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_retried_five_times_with_a_bounded_jittered_backoff_by_default() {
        let default = retry_config(None, None);
        assert_eq!(default.max_attempts(), 5);
        assert_eq!(default.initial_backoff(), Duration::from_secs(1));
        assert_eq!(default.max_backoff(), Duration::from_secs(20));
        let quick = retry_config(Some("7"), Some("20"));
        assert_eq!(quick.max_attempts(), 7);
        assert_eq!(quick.initial_backoff(), Duration::from_millis(20));
        assert_eq!(retry_config(Some("0"), Some("nope")).max_attempts(), 5);
    }

    #[test]
    fn the_attempt_timeout_is_sixty_seconds_unless_a_sane_value_is_given() {
        assert_eq!(attempt_timeout(None), Duration::from_secs(60));
        assert_eq!(attempt_timeout(Some("600")), Duration::from_secs(600));
        assert_eq!(attempt_timeout(Some("0")), Duration::from_secs(60));
        assert_eq!(attempt_timeout(Some("5m")), Duration::from_secs(60));
        assert_eq!(attempt_timeout(Some("99999")), Duration::from_secs(60));
    }
}
