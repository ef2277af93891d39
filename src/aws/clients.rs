//! The AWS clients, built in one place for the command line, the controller and
//! Revert: the standard SDK configuration per region, every client counting its calls,
//! and the account the credentials belong to.

use std::collections::BTreeMap;

use aws_config::SdkConfig;

use super::ec2::Ec2;
use super::guardduty::GuardDuty;
use super::{ApiCallCounter, load_config};
use crate::notify::dispatch::AlertClients;
use crate::ports::{AwsClients, AwsFactory, AwsSetupError};

/// The adapters of the SDK.
pub type SdkClients = AwsClients<GuardDuty, Ec2>;

/// The adapters a pass uses, and the SES/SNS clients of the alert channels, built from
/// one SDK configuration, every client reporting its calls to `counter`; `account_id`
/// is the account of the credentials, when known.
pub fn from_config(
    config: &SdkConfig,
    counter: &ApiCallCounter,
    account_id: Option<String>,
) -> SdkClients {
    let guardduty = GuardDuty::new(aws_sdk_guardduty::Client::from_conf(
        aws_sdk_guardduty::config::Builder::from(config)
            .interceptor(counter.clone())
            .build(),
    ));
    let ec2 = Ec2::new(aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(config)
            .interceptor(counter.clone())
            .build(),
    ));
    AwsClients {
        guardduty,
        ec2,
        account_id,
        region: config.region().map(|r| r.to_string()).unwrap_or_default(),
        alerts: alert_clients(config, counter),
    }
}

/// The SES and SNS clients of the Email and SMS channels.
pub fn alert_clients(config: &SdkConfig, counter: &ApiCallCounter) -> AlertClients {
    AlertClients {
        ses: aws_sdk_sesv2::Client::from_conf(
            aws_sdk_sesv2::config::Builder::from(config)
                .interceptor(counter.clone())
                .build(),
        ),
        sns: aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(config)
                .interceptor(counter.clone())
                .build(),
        ),
    }
}

/// The account the credentials belong to (sts:GetCallerIdentity, which needs no
/// permission): findings of other accounts are reported, never acted on.
pub async fn account_id(
    config: &SdkConfig,
    counter: &ApiCallCounter,
) -> Result<Option<String>, String> {
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(config)
            .interceptor(counter.clone())
            .build(),
    );
    sts.get_caller_identity()
        .send()
        .await
        .map(|identity| identity.account().map(str::to_string))
        .map_err(|error| crate::ports::error_chain(&error))
}

/// Loads the SDK configuration for `region` (`None`: the SDK's own), identifies the
/// account and builds the clients: what one pass of the command line needs.
pub async fn load(
    region: Option<&str>,
    counter: &ApiCallCounter,
) -> Result<(SdkConfig, SdkClients), AwsSetupError> {
    let config = load_config(region).await;
    let Some(resolved) = config.region().map(|r| r.to_string()) else {
        return Err(AwsSetupError::NoRegion);
    };
    let account =
        account_id(&config, counter)
            .await
            .map_err(|error| AwsSetupError::IdentifyAccount {
                region: resolved,
                error,
            })?;
    let clients = from_config(&config, counter, account);
    Ok((config, clients))
}

/// The production factory: the standard SDK configuration (environment, IRSA, EKS Pod
/// Identity, IMDS) per region, loaded once per region along with the account id.
#[derive(Debug, Default)]
pub struct SdkAwsFactory {
    /// Keyed by the requested region, `""` for the SDK's own.
    loaded: tokio::sync::Mutex<BTreeMap<String, (SdkConfig, Option<String>)>>,
    /// Every AWS call the controller's clients make.
    calls: ApiCallCounter,
}

impl SdkAwsFactory {
    /// The AWS calls made so far, per operation.
    pub fn api_calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }
}

impl AwsFactory for SdkAwsFactory {
    type Findings = GuardDuty;
    type Ec2 = Ec2;

    fn call_outcomes(&self) -> BTreeMap<(String, &'static str), u64> {
        self.calls.outcomes()
    }

    async fn clients(&self, region: Option<&str>) -> Result<SdkClients, AwsSetupError> {
        let mut loaded = self.loaded.lock().await;
        let key = region.unwrap_or_default().to_string();
        let (config, account_id) = match loaded.get(&key) {
            Some(cached) => cached.clone(),
            None => {
                let config = load_config(region).await;
                let Some(resolved) = config.region().map(|r| r.to_string()) else {
                    return Err(AwsSetupError::NoRegion);
                };
                let account_id = account_id(&config, &self.calls).await.map_err(|error| {
                    AwsSetupError::IdentifyAccount {
                        region: resolved,
                        error,
                    }
                })?;
                loaded.insert(key, (config.clone(), account_id.clone()));
                (config, account_id)
            }
        };
        Ok(from_config(&config, &self.calls, account_id))
    }
}
