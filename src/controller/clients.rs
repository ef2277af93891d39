//! The AWS side of a reconcile: the GuardDuty and EC2 adapters for a policy's region,
//! built by an [`AwsFactory`] so that tests point them at emulators.

use std::collections::BTreeMap;
use std::future::Future;

use aws_config::SdkConfig;

use crate::aws::ec2::Ec2;
use crate::aws::guardduty::GuardDuty;
use crate::aws::{ApiCallCounter, account_id, adapters, load_config};
use crate::notify::dispatch::AlertClients;

/// The adapters one pass works with, and the account they act in.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub guardduty: GuardDuty,
    pub ec2: Ec2,
    /// The account of the credentials; findings of other accounts are reported only.
    pub account_id: Option<String>,
    /// The region the clients work in.
    pub region: String,
    /// SES and SNS, for the Email and SMS channels.
    pub alerts: AlertClients,
}

/// Why the adapters for a region could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsSetupError {
    #[error(
        "failed to find an AWS region: set spec.region, or AWS_REGION in the operator's environment"
    )]
    NoRegion,
    #[error("failed to identify the AWS account in {region} (sts:GetCallerIdentity): {error}")]
    IdentifyAccount { region: String, error: String },
}

impl AwsSetupError {
    /// A short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            AwsSetupError::NoRegion => "no-region",
            AwsSetupError::IdentifyAccount { .. } => "identify-account",
        }
    }
}

/// Builds the adapters for a region (`None`: the SDK's own region).
pub trait AwsFactory: Send + Sync + 'static {
    fn clients(
        &self,
        region: Option<&str>,
    ) -> impl Future<Output = Result<AwsClients, AwsSetupError>> + Send;

    /// The AWS calls the clients made so far, by operation and outcome (for metrics).
    fn call_outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        BTreeMap::new()
    }
}

/// The production factory: the standard SDK configuration (environment, IRSA, EKS Pod
/// Identity, IMDS) per region, loaded once per region along with the account id.
#[derive(Debug, Default)]
pub struct SdkAwsFactory {
    /// Keyed by the requested region, `""` for the SDK's own.
    loaded: tokio::sync::Mutex<BTreeMap<String, (SdkConfig, Option<String>)>>,
    /// Every AWS call the controller's clients make (not yet exported as a metric).
    calls: ApiCallCounter,
}

impl SdkAwsFactory {
    /// The AWS calls made so far, per operation.
    pub fn api_calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }
}

impl AwsFactory for SdkAwsFactory {
    fn call_outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        self.calls.outcomes()
    }

    async fn clients(&self, region: Option<&str>) -> Result<AwsClients, AwsSetupError> {
        let mut loaded = self.loaded.lock().await;
        let key = region.unwrap_or_default().to_string();
        let (config, account_id) = match loaded.get(&key) {
            Some(cached) => cached.clone(),
            None => {
                let config = load_config(region).await;
                let Some(resolved) = config.region().map(|r| r.to_string()) else {
                    return Err(AwsSetupError::NoRegion);
                };
                let (_, _, sts) = adapters(&config, &self.calls);
                let account_id =
                    account_id(&sts)
                        .await
                        .map_err(|error| AwsSetupError::IdentifyAccount {
                            region: resolved,
                            error,
                        })?;
                loaded.insert(key, (config.clone(), account_id.clone()));
                (config, account_id)
            }
        };
        let (guardduty, ec2, _) = adapters(&config, &self.calls);
        Ok(AwsClients {
            guardduty,
            ec2,
            account_id,
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            alerts: AlertClients::new(&config, &self.calls),
        })
    }
}
