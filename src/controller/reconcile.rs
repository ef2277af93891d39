//! The reconcile loop: one `GuardDutyPolicy` → validate, one pass, status.
//!
//! ```text
//!  watch ─> finalizer ─┬─ Apply ─> validate (pure) ─ invalid ─> status (pure) ─> patch (I/O) ─> await change
//!                      │                  └─ valid ─> pass: observe, plan, execute (I/O)
//!                      │                              ─> status (pure) ─> patch if changed (I/O) ─> requeue
//!                      └─ Cleanup ─> Retain: AWS is left as it is; the finalizer goes
//! ```
//!
//! Every reconcile is counted and timed, its pass's findings and actions recorded, and
//! failures counted by category ([`Metrics`]); [`run`] serves them with `/healthz` and
//! `/readyz` ([`crate::controller::server`]).
//!
//! Left for later: Kubernetes Events, leader election, AWS call metrics, and
//! `deletionPolicy: Revert` (the spec has no such field yet).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource as _, ResourceExt as _};

use crate::controller::clients::{AwsFactory, AwsSetupError};
use crate::controller::metrics::Metrics;
use crate::controller::server::{self, Endpoints};
use crate::controller::status::{PassOutcome, compute_status, status_changed};
use crate::pipeline::{PassOptions, run_pass};
use crate::spec::{API_VERSION, GuardDutyPolicy, GuardDutyPolicyStatus, KIND};

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "guardduty-operator";
/// Held on every policy while the operator may have changed AWS on its behalf.
pub const FINALIZER: &str = "guardduty.security.dev/cleanup";
/// How soon a failed reconcile, or a pass that failed part-way, is tried again
/// (at most: a shorter `spec.interval` wins for a failed pass).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What every reconcile shares.
pub struct Context<F> {
    pub client: Client,
    pub aws: F,
    pub metrics: Arc<Metrics>,
}

impl<F: AwsFactory> Context<F> {
    /// A context with metrics of its own.
    pub fn new(client: Client, aws: F) -> Self {
        Context {
            client,
            aws,
            metrics: Arc::default(),
        }
    }
}

/// Why a reconcile failed; the controller logs it and retries after [`RETRY_AFTER`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to reconcile a GuardDutyPolicy without a namespace")]
    NoNamespace,
    #[error("failed to set up AWS")]
    AwsSetup(#[source] AwsSetupError),
    #[error("failed to patch the status of {name}")]
    PatchStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to {}", finalizer_step(.0))]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("failed to list GuardDutyPolicies (is the CRD installed? kubectl apply -f crds/)")]
    ListPolicies(#[source] kube::Error),
    #[error("failed to listen on {addr} for the health and metrics endpoints")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn finalizer_step(error: &finalizer::Error<Error>) -> &'static str {
    match error {
        finalizer::Error::ApplyFailed(_) => "apply the policy",
        finalizer::Error::CleanupFailed(_) => "clean up the policy",
        finalizer::Error::AddFinalizer(_) => "add the finalizer",
        finalizer::Error::RemoveFinalizer(_) => "remove the finalizer",
        _ => "handle the finalizer",
    }
}

impl Error {
    /// A short label for logs, metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no-namespace",
            Error::AwsSetup(error) => error.category(),
            Error::PatchStatus { .. } => "patch-status",
            Error::Finalizer(error) => match error.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.category()
                }
                _ => "finalizer",
            },
            Error::ListPolicies(_) => "list-policies",
            Error::Listen { .. } => "listen",
        }
    }
}

/// Reconciles one policy: the finalizer first, then [`apply`] or [`cleanup`]; counted
/// and timed whatever the result.
pub async fn reconcile<F: AwsFactory>(
    policy: Arc<GuardDutyPolicy>,
    ctx: Arc<Context<F>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let metrics = ctx.metrics.clone();
    let result = reconcile_policy(policy, ctx).await;
    metrics.reconciled(started.elapsed());
    result
}

async fn reconcile_policy<F: AwsFactory>(
    policy: Arc<GuardDutyPolicy>,
    ctx: Arc<Context<F>>,
) -> Result<Action, Error> {
    let namespace = policy.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<GuardDutyPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let (ctx, api_ref) = (&ctx, &api);
    finalizer(&api, FINALIZER, policy, |event| async move {
        match event {
            Event::Apply(policy) => apply(&policy, ctx, api_ref).await,
            Event::Cleanup(policy) => Ok(cleanup(&policy, ctx)),
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// One pass for a policy that holds the finalizer, and its status.
async fn apply<F: AwsFactory>(
    policy: &GuardDutyPolicy,
    ctx: &Context<F>,
    api: &Api<GuardDutyPolicy>,
) -> Result<Action, Error> {
    let generation = policy.meta().generation;
    let previous = policy.status.as_ref();

    // 1. Validate (pure). An invalid spec waits for the next change: no pass, no retry loop.
    let valid = match policy.spec.validate() {
        Ok(valid) => valid,
        Err(invalid) => {
            let message = invalid
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            tracing::warn!(policy = %policy.name_any(), %message, "invalid spec");
            // 3. Status (pure).
            let status = compute_status(
                generation,
                previous,
                &PassOutcome::Invalid { message: &message },
                now(),
            );
            // 4. Patch (I/O).
            patch_status_if_changed(api, policy, status).await?;
            return Ok(Action::await_change());
        }
    };

    // 2. Observe, plan and execute (I/O): one pass; the spec's mode decides whether the
    //    plan is applied.
    let aws = ctx
        .aws
        .clients(valid.region.as_deref())
        .await
        .map_err(Error::AwsSetup)?;
    let options = PassOptions {
        detector: valid.detector_id.clone(),
        account_id: aws.account_id.clone(),
        apply: true,
    };
    let report = run_pass(&aws.guardduty, &aws.ec2, &valid.policy, &options).await;
    ctx.metrics.pass(&policy_key(policy), &report);
    if let Some(failure) = &report.failure {
        ctx.metrics.failed(failure.category);
        tracing::warn!(
            policy = %policy.name_any(),
            step = failure.step,
            category = failure.category,
            error = %failure.error,
            "pass failed"
        );
    }

    // 3. Status (pure).
    let status = compute_status(
        generation,
        previous,
        &PassOutcome::Completed(&report),
        now(),
    );

    // 4. Patch (I/O), only when something other than a timestamp changed.
    patch_status_if_changed(api, policy, status).await?;

    Ok(if report.failed() {
        Action::requeue(valid.interval.min(RETRY_AFTER))
    } else {
        Action::requeue(valid.interval)
    })
}

/// Deletion with `deletionPolicy: Retain` (the only policy so far): AWS is left as it
/// is, whether or not a pass ever ran, and the finalizer goes.
fn cleanup<F>(policy: &GuardDutyPolicy, ctx: &Context<F>) -> Action {
    ctx.metrics.forget(&policy_key(policy));
    tracing::info!(
        policy = %policy.name_any(),
        "policy deleted: security groups are left as they are (Retain)"
    );
    Action::await_change()
}

/// Writes `status` by server-side apply on the status subresource, unless it equals
/// the current status but for timestamps.
async fn patch_status_if_changed(
    api: &Api<GuardDutyPolicy>,
    policy: &GuardDutyPolicy,
    status: GuardDutyPolicyStatus,
) -> Result<(), Error> {
    let unchanged = policy
        .status
        .as_ref()
        .is_some_and(|old| !status_changed(old, &status));
    if unchanged {
        return Ok(());
    }
    let name = policy.name_any();
    let patch = Patch::Apply(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    }));
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
        .await
        .map_err(|source| Error::PatchStatus { name, source })?;
    Ok(())
}

/// `namespace/name`, the `policy` label of the metrics.
fn policy_key(policy: &GuardDutyPolicy) -> String {
    format!(
        "{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    )
}

/// Logs and counts the error and retries later: AWS and API-server errors are usually
/// transient.
pub fn error_policy<F: AwsFactory>(
    policy: Arc<GuardDutyPolicy>,
    error: &Error,
    ctx: Arc<Context<F>>,
) -> Action {
    ctx.metrics.failed(error.category());
    tracing::warn!(
        policy = %policy.name_any(),
        namespace = policy.namespace().as_deref().unwrap_or(""),
        category = error.category(),
        error = %crate::ports::error_chain(error),
        "reconcile failed; retrying in {}s",
        RETRY_AFTER.as_secs()
    );
    Action::requeue(RETRY_AFTER)
}

/// Runs the controller on every `GuardDutyPolicy` in the cluster until SIGTERM or
/// Ctrl-C, letting running reconciles finish, with `/healthz`, `/readyz` and `/metrics`
/// served on `metrics_addr` (ready once the watch has synced).
pub async fn run<F: AwsFactory>(
    client: Client,
    aws: F,
    metrics_addr: SocketAddr,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(|source| Error::Listen {
            addr: metrics_addr,
            source,
        })?;
    let ctx = Arc::new(Context::new(client.clone(), aws));
    let endpoints = Endpoints {
        metrics: ctx.metrics.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let ready = endpoints.ready.clone();
    // Healthy from here on, so that the liveness probe passes while the API server
    // is checked and the watch syncs.
    let server = tokio::spawn(async move {
        if let Err(error) = server::serve(listener, endpoints).await {
            tracing::error!(%error, "the health and metrics endpoints stopped");
        }
    });
    let result = control(client, ctx, ready).await;
    server.abort();
    result
}

async fn control<F: AwsFactory>(
    client: Client,
    ctx: Arc<Context<F>>,
    ready: Arc<AtomicBool>,
) -> Result<(), Error> {
    let api = Api::<GuardDutyPolicy>::all(client);
    api.list(&ListParams::default().limit(1))
        .await
        .map_err(Error::ListPolicies)?;
    // Every change of a policy triggers a reconcile, the operator's own status patches
    // included: the pass that follows a patch is quiet (no change, so no patch), which
    // bounds it to one extra pass per real change. Filtering those out needs kube's
    // `unstable-runtime` (`Controller::for_stream`), left out on purpose.
    tracing::info!("controller started");
    let controller =
        Controller::new(api, watcher::Config::default().any_semantic()).shutdown_on_signal();
    let store = controller.store();
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            ready.store(true, Ordering::Release);
            tracing::info!("the watch of GuardDutyPolicies has synced: ready");
        }
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => {
                    tracing::debug!(policy = %object.name, ?action, "reconciled");
                }
                Err(error) => tracing::debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    tracing::info!("controller stopped");
    Ok(())
}

fn now() -> Time {
    Time(Timestamp::now())
}
