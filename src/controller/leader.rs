//! Leader election on a `coordination.k8s.io/v1` Lease, so that with more than one
//! replica only one reconciles.
//!
//! ```text
//!  every renew_every (leading) or retry_every (following):
//!    GET lease ─> decide (pure) ─┬─ Acquire  ─> POST   (409: someone was first: follow)
//!                                ├─ Renew    ─> PUT with resourceVersion (409: lost: follow)
//!                                ├─ TakeOver ─> PUT with resourceVersion, leaseTransitions + 1
//!                                └─ Follow   ─> nothing
//!    leading, and no renewal succeeded for renew_deadline ─> step down
//!  on shutdown, while leading ─> release: holderIdentity cleared, so a successor
//!                                takes over at once
//! ```
//!
//! kube 5 ships no leader election (neither kube-runtime nor kube-client has a lease
//! helper), hence this small one. The decisions ([`decide`], [`claim`], [`released`])
//! are pure, with `now` as an argument; [`LeaderElector`] only reads and writes the
//! lease and publishes whether this replica leads on a `watch` channel.
//!
//! Expiry compares the lease's `renewTime` with this replica's clock, as the lease
//! API intends: it assumes the nodes' clocks agree to well within the lease duration
//! (NTP). A leader steps down after `renew_deadline` (two thirds of the duration by
//! default) without a successful renewal, before any other replica may see the lease
//! as expired, so that two replicas never act at once unless the clocks disagree by
//! more than the remaining third.
//!
//! No fencing: a leader that stalls (a long GC pause, a frozen node) longer than the
//! lease may still finish the request it was making. The reconcile's writes are
//! idempotent and every AWS change is planned from a fresh observation, which makes
//! such an overlap harmless.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// The Lease's name, in the operator's namespace.
pub const LEASE_NAME: &str = "guardduty-operator";
/// The environment variable holding this replica's identity (the pod's name, from
/// the downward API).
pub const POD_NAME_ENV: &str = "POD_NAME";
/// The environment variable holding the operator's namespace (downward API).
pub const POD_NAMESPACE_ENV: &str = "POD_NAMESPACE";

/// How long a lease lasts and how often it is renewed or retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a lease stays valid after its last renewal (`leaseDurationSeconds`;
    /// whole seconds on the wire, at least 1).
    pub lease_duration: Duration,
    /// How often the leader renews (about a third of the duration).
    pub renew_every: Duration,
    /// How long the leader keeps acting without a successful renewal before it steps
    /// down; less than `lease_duration`, so it stops before another may take over.
    pub renew_deadline: Duration,
    /// How often a follower checks whether the lease has become free.
    pub retry_every: Duration,
}

impl Default for LeaseTimings {
    /// client-go's defaults: a 15 s lease, a 10 s renew deadline, retries every 2 s;
    /// renewed every 5 s.
    fn default() -> Self {
        LeaseTimings::for_duration(Duration::from_secs(15))
    }
}

impl LeaseTimings {
    /// Renewal every third of `lease_duration`, a deadline at two thirds, retries
    /// every 2 s (or at the renewal period, if shorter).
    pub fn for_duration(lease_duration: Duration) -> Self {
        let renew_every = lease_duration / 3;
        LeaseTimings {
            lease_duration,
            renew_every,
            renew_deadline: renew_every * 2,
            retry_every: renew_every.min(Duration::from_secs(2)),
        }
    }

    /// `leaseDurationSeconds`: whole seconds, rounded up, at least 1.
    fn duration_seconds(&self) -> i32 {
        let millis = self.lease_duration.as_millis().max(1);
        i32::try_from(millis.div_ceil(1000)).unwrap_or(i32::MAX)
    }
}

// ── decisions (pure) ─────────────────────────────────────────────────────────

/// What to do about the lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease yet: create it, holding it.
    Acquire,
    /// The lease is ours: renew it.
    Renew,
    /// The lease is expired or released: take it over (`leaseTransitions` + 1).
    TakeOver,
    /// Another replica holds a valid lease.
    Follow { holder: String },
}

/// Decides what to do about `lease` (its spec; `None` when there is no lease).
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Acquire;
    };
    match lease.holder_identity.as_deref() {
        Some(holder) if holder == me => Decision::Renew,
        Some(holder) if !holder.is_empty() && !expired(lease, now) => Decision::Follow {
            holder: holder.to_string(),
        },
        // No holder (released) or an expired lease.
        _ => Decision::TakeOver,
    }
}

/// True when the lease's last renewal (or acquisition) is older than its duration.
/// A lease without a time or a duration is taken as expired.
pub fn expired(lease: &LeaseSpec, now: Timestamp) -> bool {
    let renewed = lease.renew_time.as_ref().or(lease.acquire_time.as_ref());
    match (renewed, lease.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(seconds)) if seconds > 0 => renewed
            .saturating_add(SignedDuration::from_secs(i64::from(seconds)))
            .is_ok_and(|expiry| expiry < now),
        _ => true,
    }
}

/// The lease spec to write for `decision` (`None` for [`Decision::Follow`]).
pub fn claim(
    current: Option<&LeaseSpec>,
    decision: &Decision,
    me: &str,
    now: Timestamp,
    timings: &LeaseTimings,
) -> Option<LeaseSpec> {
    let previous = current.cloned().unwrap_or_default();
    let held = LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(timings.duration_seconds()),
        renew_time: Some(MicroTime(now)),
        ..previous.clone()
    };
    match decision {
        Decision::Follow { .. } => None,
        Decision::Acquire => Some(LeaseSpec {
            acquire_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..held
        }),
        Decision::Renew => Some(held),
        Decision::TakeOver => Some(LeaseSpec {
            acquire_time: Some(MicroTime(now)),
            lease_transitions: Some(previous.lease_transitions.unwrap_or(0).saturating_add(1)),
            ..held
        }),
    }
}

/// The spec that gives the lease up: no holder, a 1 s duration (for electors that
/// only look at the time), so a successor takes over at once.
pub fn released(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..current.clone()
    }
}

// ── identity ─────────────────────────────────────────────────────────────────

/// This replica's identity: `POD_NAME` (the downward API), else `HOSTNAME` (which
/// Kubernetes sets to the pod's name), else the kernel's host name.
pub fn identity_from_env() -> Option<String> {
    let from_env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
    from_env(POD_NAME_ENV)
        .or_else(|| from_env("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
}

/// The namespace of the lease: `POD_NAMESPACE` (the downward API), else the
/// client's default namespace (the service account's, in a cluster).
pub fn namespace_from_env(client: &Client) -> String {
    std::env::var(POD_NAMESPACE_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string())
}

// ── I/O ──────────────────────────────────────────────────────────────────────

/// Why a round of the election failed (the replica keeps its role until the renew
/// deadline, and retries).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("failed to read the lease {name}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to create the lease {name}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update the lease {name}")]
    Update {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to reach the API server about the lease within {0:?}")]
    TimedOut(Duration),
}

impl LeaderError {
    /// A short label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            LeaderError::Read { source, .. }
            | LeaderError::Create { source, .. }
            | LeaderError::Update { source, .. } => match source {
                kube::Error::Api(status) if status.is_forbidden() => "lease-forbidden",
                _ => "lease-api",
            },
            LeaderError::TimedOut(_) => "lease-timeout",
        }
    }
}

/// Where a round of the election left this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Another replica leads (`None`: it was not told who, e.g. a lost race).
    Follower {
        holder: Option<String>,
    },
}

/// Holds or waits for the Lease `namespace/lease_name` as `identity`.
pub struct LeaderElector {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    timings: LeaseTimings,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: impl Into<String>,
        timings: LeaseTimings,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_string(),
            identity: identity.into(),
            timings,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One round: read the lease, decide, write. Conflicts (another replica wrote
    /// first) make this replica a follower; other API errors are returned.
    pub async fn try_acquire_or_renew(&self) -> Result<Role, LeaderError> {
        let name = &self.lease_name;
        let current = self.read().await?;
        let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
        let now = Timestamp::now();
        let decision = decide(spec, &self.identity, now);
        let Some(wanted) = claim(spec, &decision, &self.identity, now, &self.timings) else {
            let Decision::Follow { holder } = decision else {
                unreachable!("only Follow claims nothing")
            };
            return Ok(Role::Follower {
                holder: Some(holder),
            });
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(wanted),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map_err(|source| LeaderError::Create {
                        name: name.clone(),
                        source,
                    })
            }
            Some(mut lease) => {
                // The resourceVersion read above travels with the object: a replace
                // after anyone else's write fails with 409.
                lease.spec = Some(wanted);
                self.replace(lease).await
            }
        };
        match result {
            Ok(_) => {
                if decision != Decision::Renew {
                    tracing::debug!(lease = %name, ?decision, "acquired the lease");
                }
                Ok(Role::Leader)
            }
            Err(error) if lost_race(&error) => {
                tracing::debug!(lease = %name, "another replica wrote the lease first");
                Ok(Role::Follower { holder: None })
            }
            Err(error) => Err(error),
        }
    }

    /// Gives the lease up if this replica still holds it.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let name = &self.lease_name;
        let Some(mut lease) = self.read().await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_ref() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released(spec, Timestamp::now()));
        match self.replace(lease).await {
            Ok(_) => {
                tracing::info!(lease = %name, identity = %self.identity, "released the lease");
                Ok(())
            }
            // Someone else already wrote it: it is not ours to release any more.
            Err(error) if lost_race(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The lease as it is now (`None`: nobody created it yet).
    async fn read(&self) -> Result<Option<Lease>, LeaderError> {
        self.api
            .get_opt(&self.lease_name)
            .await
            .map_err(|source| LeaderError::Read {
                name: self.lease_name.clone(),
                source,
            })
    }

    async fn replace(&self, lease: Lease) -> Result<Lease, LeaderError> {
        self.api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
            .map_err(|source| LeaderError::Update {
                name: self.lease_name.clone(),
                source,
            })
    }

    /// Runs the election until `shutdown` completes, publishing on `is_leader` whether
    /// this replica leads (create the channel with `false`): `true` once it holds the
    /// lease, `false` when it loses it or steps down, and `false` on shutdown, before
    /// the lease is released. Every round is bounded in time, so a hung API server
    /// cannot keep a leader acting past its renew deadline.
    ///
    /// Complete `shutdown` only once the controller has stopped, so that the lease is
    /// released after the last reconcile, not during it.
    pub async fn run(self, is_leader: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        let timings = self.timings;
        let mut last_renewed: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            // Leading: whatever is left before the deadline; following: a retry period.
            let budget = match last_renewed {
                Some(at) => timings.renew_deadline.saturating_sub(at.elapsed()),
                None => timings.renew_deadline.max(timings.retry_every),
            };
            // The lease's renewTime is taken when the round starts: count from there.
            let started = Instant::now();
            let round = tokio::select! {
                round = tokio::time::timeout(budget, self.try_acquire_or_renew()) => {
                    round.unwrap_or(Err(LeaderError::TimedOut(budget)))
                }
                () = &mut shutdown => break,
            };
            let succeeded = round.is_ok();
            match round {
                Ok(Role::Leader) => last_renewed = Some(started),
                Ok(Role::Follower { holder }) => {
                    if last_renewed.take().is_some() {
                        tracing::warn!(lease = %self.lease_name, ?holder, "lost the lease");
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        lease = %self.lease_name,
                        category = error.category(),
                        error = %crate::ports::error_chain(&error),
                        "leader election round failed"
                    );
                    if last_renewed.is_some_and(|at| at.elapsed() >= timings.renew_deadline) {
                        tracing::warn!(
                            lease = %self.lease_name,
                            "no renewal within {:?}: stepping down",
                            timings.renew_deadline
                        );
                        last_renewed = None;
                    }
                }
            }
            let now_leading = last_renewed.is_some();
            let changed = is_leader
                .send_if_modified(|leading| std::mem::replace(leading, now_leading) != now_leading);
            if changed {
                tracing::info!(
                    lease = %self.lease_name,
                    identity = %self.identity,
                    leading = now_leading,
                    "leadership changed"
                );
            }
            // A leader whose renewal failed retries at the (shorter) retry period,
            // to renew before its deadline if the API server comes back.
            let pause = if now_leading && succeeded {
                timings.renew_every
            } else {
                timings.retry_every
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut shutdown => break,
            }
        }
        // Stop acting first, then give the lease up.
        is_leader.send_replace(false);
        if last_renewed.is_some() {
            let release = tokio::time::timeout(timings.renew_deadline, self.release()).await;
            match release {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(
                    error = %crate::ports::error_chain(&error),
                    "failed to release the lease; a successor waits for it to expire"
                ),
                Err(_) => tracing::warn!(
                    "releasing the lease timed out; a successor waits for it to expire"
                ),
            }
        }
    }
}

/// A 409: another replica created or updated the lease since it was read.
fn lost_race(error: &LeaderError) -> bool {
    match error {
        LeaderError::Create { source, .. } | LeaderError::Update { source, .. } => {
            matches!(source, kube::Error::Api(status) if status.is_conflict() || status.is_already_exists())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "operator-7d9f-abcde";
    const OTHER: &str = "operator-7d9f-zyxwv";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    /// A lease held by `holder`, renewed at `renewed` (seconds), for 15 s.
    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            acquire_time: Some(MicroTime(at(-100))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    fn timings() -> LeaseTimings {
        LeaseTimings::default()
    }

    #[test]
    fn a_missing_lease_is_acquired() {
        assert_eq!(decide(None, ME, at(0)), Decision::Acquire);
        let spec = claim(None, &Decision::Acquire, ME, at(0), &timings()).unwrap();
        assert_eq!(
            spec,
            LeaseSpec {
                holder_identity: Some(ME.to_string()),
                acquire_time: Some(MicroTime(at(0))),
                renew_time: Some(MicroTime(at(0))),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }
        );
    }

    #[test]
    fn a_fresh_lease_of_another_replica_is_followed() {
        let lease = held_by(OTHER, 0);
        assert_eq!(
            decide(Some(&lease), ME, at(15)),
            Decision::Follow {
                holder: OTHER.to_string()
            }
        );
        assert_eq!(
            claim(
                Some(&lease),
                &decide(Some(&lease), ME, at(15)),
                ME,
                at(15),
                &timings()
            ),
            None
        );
    }

    #[test]
    fn an_expired_lease_of_another_replica_is_taken_over_with_one_more_transition() {
        let lease = held_by(OTHER, 0);
        assert_eq!(decide(Some(&lease), ME, at(16)), Decision::TakeOver);
        let spec = claim(Some(&lease), &Decision::TakeOver, ME, at(16), &timings()).unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(16))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(16))));
    }

    #[test]
    fn our_own_lease_is_renewed_without_a_transition() {
        let lease = held_by(ME, 0);
        // Ours whether fresh or (after a long pause) expired: renewing is safe, as
        // nobody else wrote it (the replace would fail with 409 otherwise).
        assert_eq!(decide(Some(&lease), ME, at(5)), Decision::Renew);
        assert_eq!(decide(Some(&lease), ME, at(60)), Decision::Renew);
        let spec = claim(Some(&lease), &Decision::Renew, ME, at(5), &timings()).unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(-100))));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn a_released_lease_is_taken_over_at_once() {
        let lease = released(&held_by(OTHER, 0), at(1));
        assert_eq!(lease.holder_identity, None);
        assert_eq!(lease.lease_duration_seconds, Some(1));
        assert_eq!(decide(Some(&lease), ME, at(1)), Decision::TakeOver);
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..held_by(OTHER, 0)
        };
        assert_eq!(decide(Some(&empty), ME, at(1)), Decision::TakeOver);
    }

    #[test]
    fn a_lease_is_valid_up_to_its_expiry_second_included() {
        let lease = held_by(OTHER, 0);
        assert!(!expired(&lease, at(15)));
        assert!(expired(
            &lease,
            at(15).checked_add(SignedDuration::from_millis(1)).unwrap()
        ));
    }

    #[test]
    fn a_lease_without_renew_time_expires_from_its_acquire_time() {
        let lease = LeaseSpec {
            renew_time: None,
            ..held_by(OTHER, 0)
        };
        assert!(expired(&lease, at(-84)));
        assert!(!expired(&lease, at(-86)));
    }

    #[test]
    fn a_lease_without_times_or_duration_is_expired() {
        let no_times = LeaseSpec {
            renew_time: None,
            acquire_time: None,
            ..held_by(OTHER, 0)
        };
        assert_eq!(decide(Some(&no_times), ME, at(0)), Decision::TakeOver);
        let no_duration = LeaseSpec {
            lease_duration_seconds: None,
            ..held_by(OTHER, 0)
        };
        assert_eq!(decide(Some(&no_duration), ME, at(0)), Decision::TakeOver);
    }

    #[test]
    fn a_lease_that_never_changed_hands_starts_its_transitions_at_one() {
        let lease = LeaseSpec {
            lease_transitions: None,
            ..held_by(OTHER, 0)
        };
        let spec = claim(Some(&lease), &Decision::TakeOver, ME, at(60), &timings()).unwrap();
        assert_eq!(spec.lease_transitions, Some(1));
    }

    #[test]
    fn default_timings_renew_every_third_and_step_down_before_expiry() {
        let t = LeaseTimings::default();
        assert_eq!(t.lease_duration, Duration::from_secs(15));
        assert_eq!(t.renew_every, Duration::from_secs(5));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_every, Duration::from_secs(2));
        assert!(t.renew_deadline < t.lease_duration);
    }

    #[test]
    fn lease_duration_is_written_in_whole_seconds_rounded_up() {
        let t = |ms| LeaseTimings::for_duration(Duration::from_millis(ms)).duration_seconds();
        assert_eq!(t(15_000), 15);
        assert_eq!(t(300), 1);
        assert_eq!(t(1_001), 2);
        assert_eq!(t(0), 1);
    }
}
