//! The AWS clients, built in one place for the command line, the controller and
//! Revert: the standard SDK configuration per region, every client counting its calls,
//! and the account the credentials belong to.

use std::collections::BTreeMap;

use aws_config::SdkConfig;

use super::ec2::Ec2;
use super::guardduty::GuardDuty;
use super::pace::{PaceConfig, Pacers};
use super::{ApiCallCounter, load_config};
use crate::domain::policy::MemberAccounts;
use crate::notify::dispatch::AlertClients;
use crate::ports::{AwsClients, AwsFactory, AwsSetupError};

/// The session name the operator's assumed-role sessions carry (CloudTrail shows it).
pub const SESSION_NAME: &str = "guardduty-operator";

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
    ))
    .with_security_hub(aws_sdk_securityhub::Client::from_conf(
        aws_sdk_securityhub::config::Builder::from(config)
            .interceptor(counter.clone())
            .build(),
    ));
    let ec2 = ec2_of(config, counter);
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

/// The configuration of a member account: `base`'s (region, endpoints, timeouts,
/// retries) with the credentials of `role` in it, assumed with `base`'s credentials
/// (sts:AssumeRole through the standard STS endpoint configuration, so
/// `AWS_ENDPOINT_URL_STS` applies). The credentials are fetched once here, so a role
/// that cannot be assumed is said now, then cached and refreshed before they expire
/// by the configuration's identity cache, which every client built from it shares.
pub async fn member_config(
    base: &SdkConfig,
    role: &str,
    external_id: Option<&str>,
) -> Result<SdkConfig, AwsSetupError> {
    use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name(SESSION_NAME)
        .configure(base);
    if let Some(external_id) = external_id {
        builder = builder.external_id(external_id);
    }
    let provider = builder.build().await;
    provider
        .provide_credentials()
        .await
        .map_err(|error| AwsSetupError::AssumeRole {
            role: role.to_string(),
            error: crate::ports::error_chain(&error),
        })?;
    Ok(base
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .identity_cache(aws_config::identity::IdentityCache::lazy().build())
        .build())
}

/// The SQS queue of finding events at `queue_url`, in the region the URL names (else
/// `fallback`, else the SDK's); `AWS_ENDPOINT_URL_SQS` applies.
pub async fn event_queue(queue_url: &str, fallback: Option<&str>) -> super::sqs::Sqs {
    let region = super::sqs::queue_region(queue_url).or(fallback.map(str::to_string));
    let config = super::load_config(region.as_deref()).await;
    super::sqs::Sqs::new(aws_sdk_sqs::Client::new(&config), queue_url)
}

/// The EC2 adapter of a configuration, counting its calls.
pub fn ec2_of(config: &SdkConfig, counter: &ApiCallCounter) -> Ec2 {
    Ec2::new(aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(config)
            .interceptor(counter.clone())
            .build(),
    ))
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
/// Identity, IMDS) per region, loaded once per region along with the account id; every
/// EC2 client paced by its account-region's token buckets, shared by all of them.
#[derive(Debug)]
pub struct SdkAwsFactory {
    /// EC2's token buckets, per account and region.
    pacers: Pacers,
    /// What each account-region held at its last scans, for the EC2 read planner.
    counts: std::sync::Mutex<BTreeMap<(String, String), std::sync::Arc<super::ec2::RegionCounts>>>,
    /// Keyed by the requested region, `""` for the SDK's own.
    loaded: tokio::sync::Mutex<BTreeMap<String, (SdkConfig, Option<String>)>>,
    /// Member accounts' configurations, keyed by role ARN and region.
    members: tokio::sync::Mutex<BTreeMap<(String, String), SdkConfig>>,
    /// Every AWS call the controller's clients make.
    calls: ApiCallCounter,
}

impl Default for SdkAwsFactory {
    /// EC2's own bucket sizes.
    fn default() -> Self {
        SdkAwsFactory::with_pacing(PaceConfig::default()).expect("EC2's own rates are valid")
    }
}

impl SdkAwsFactory {
    /// Pacing as the environment says (`GDO_EC2_*`, see [`PaceConfig::from_env`]).
    pub fn from_env() -> anyhow::Result<SdkAwsFactory> {
        let config = PaceConfig::from_env()?;
        SdkAwsFactory::with_pacing(config)
    }

    pub fn with_pacing(config: PaceConfig) -> anyhow::Result<SdkAwsFactory> {
        Ok(SdkAwsFactory {
            pacers: Pacers::new(config)?,
            counts: Default::default(),
            loaded: Default::default(),
            members: Default::default(),
            calls: ApiCallCounter::default(),
        })
    }

    /// How long EC2 calls waited for their buckets, per account and region.
    pub fn paced(&self) -> BTreeMap<(String, String), std::time::Duration> {
        self.pacers.waited()
    }

    /// The EC2 adapter of `config` in `account`, paced by its account-region's buckets.
    fn paced_ec2(&self, config: &SdkConfig, account: Option<&str>) -> Ec2 {
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let account = account.unwrap_or_default();
        let pacer = self.pacers.for_account_region(account, &region);
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((account.to_string(), region.clone()))
            .or_default()
            .clone();
        Ec2::paced(
            aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(config)
                    .interceptor(self.calls.clone())
                    .build(),
            ),
            pacer,
        )
        .with_counts(counts)
    }

    /// The counter every client reports its calls to (a cheap clone).
    pub fn call_counter(&self) -> ApiCallCounter {
        self.calls.clone()
    }

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
        let ec2 = self.paced_ec2(&config, account_id.as_deref());
        Ok(AwsClients {
            ec2,
            ..from_config(&config, &self.calls, account_id)
        })
    }

    async fn member(
        &self,
        account: &str,
        region: &str,
        members: &MemberAccounts,
    ) -> Result<Ec2, AwsSetupError> {
        let role = members.role_arn(account, region);
        let key = (role.clone(), region.to_string());
        if let Some(config) = self.members.lock().await.get(&key) {
            return Ok(self.paced_ec2(config, Some(account)));
        }
        let base = self.base(region).await?;
        let config = member_config(&base, &role, members.external_id.as_deref()).await?;
        let ec2 = self.paced_ec2(&config, Some(account));
        self.members.lock().await.insert(key, config);
        Ok(ec2)
    }
}

impl SdkAwsFactory {
    /// The operator's own configuration of `region`, loaded once.
    async fn base(&self, region: &str) -> Result<SdkConfig, AwsSetupError> {
        if let Some((config, _)) = self.loaded.lock().await.get(region) {
            return Ok(config.clone());
        }
        self.clients(Some(region)).await?;
        Ok(self.loaded.lock().await[region].0.clone())
    }
}
