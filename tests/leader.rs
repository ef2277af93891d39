//! Leader election against a mock API server (tests/common/mock_api.rs), in the
//! kube-rs/controller-rs style of tests/controller.rs: each test states the ordered
//! requests the API server must receive (method, path, query, content type, body) and
//! what it answers, status code included; a request out of order or an extra one fails
//! the test. Timings are milliseconds.

use std::future::Future;
use std::time::Duration;

use crate::common::mock_api::{ApiHandle, Exchange, Server, mock_client, serve, served, verify};
use guardduty_operator::controller::leader::{
    LEASE_NAME, LeaderElector, LeaderError, LeaseTimings, Role,
};
use http::{Method, Response};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const NAMESPACE: &str = "guardduty-system";
const ME: &str = "guardduty-operator-5d8f7-abcde";
const OTHER: &str = "guardduty-operator-5d8f7-zyxwv";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/guardduty-system/leases";
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/guardduty-system/leases/guardduty-operator";
const JSON: &str = "application/json";

// ── the mock API server (tests/common/mock_api.rs) ──────────────────────────

/// A read of the lease, answered 200 with `lease`.
fn get_lease(lease: Value) -> Exchange {
    Exchange::get(LEASE).reply(lease)
}

/// A read of the lease, answered with a `code` Status for `reason`.
fn get_fails(code: u16, reason: &str) -> Exchange {
    Exchange::get(LEASE)
        .status(code)
        .reply(status(code, reason))
}

/// A read of a lease nobody has created yet.
fn no_lease() -> Exchange {
    get_fails(404, "NotFound")
}

fn create(check_body: impl FnOnce(&Value) + Send + 'static, status: u16, reply: Value) -> Exchange {
    Exchange::with_body(Method::POST, LEASES, JSON, check_body)
        .status(status)
        .reply(reply)
}

fn replace(
    check_body: impl FnOnce(&Value) + Send + 'static,
    status: u16,
    reply: Value,
) -> Exchange {
    Exchange::with_body(Method::PUT, LEASE, JSON, check_body)
        .status(status)
        .reply(reply)
}

fn elector(client: kube::Client, timings: LeaseTimings) -> LeaderElector {
    LeaderElector::new(client, NAMESPACE, LEASE_NAME, ME, timings)
}

/// One round with the default timings against `scenario`, which must be served
/// exactly. Bounded: a failed check in the server drops the request unanswered.
async fn try_round(scenario: Vec<Exchange>) -> Result<Role, LeaderError> {
    let (client, handle) = mock_client();
    let server = serve(handle, scenario);
    let elector = elector(client, LeaseTimings::default());
    let result = tokio::time::timeout(Duration::from_secs(5), elector.try_acquire_or_renew())
        .await
        .expect("the round finished within 5s");
    verify(server).await;
    result
}

/// One successful round against `scenario` (see [`try_round`]): the role it left.
async fn round(scenario: Vec<Exchange>) -> Role {
    try_round(scenario).await.expect("the round succeeded")
}

// ── fixtures ─────────────────────────────────────────────────────────────────

fn micro_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A lease held by `holder`, renewed `age` ago, for 15 s, after 3 transitions.
fn lease(holder: Option<&str>, age: SignedDuration) -> Value {
    let renewed = Timestamp::now() - age;
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": NAMESPACE, "resourceVersion": "42"},
        "spec": {
            "holderIdentity": holder,
            "acquireTime": micro_time(renewed - SignedDuration::from_mins(10)),
            "renewTime": micro_time(renewed),
            "leaseDurationSeconds": 15,
            "leaseTransitions": 3,
        },
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": format!("leases.coordination.k8s.io \"{LEASE_NAME}\": {reason}"),
    })
}

// ── one round ────────────────────────────────────────────────────────────────

#[tokio::test]
async fn a_missing_lease_is_created_holding_it() {
    let role = round(vec![
        no_lease(),
        create(
            |body| {
                assert_eq!(body["metadata"]["name"], LEASE_NAME, "{body:#}");
                let spec = &body["spec"];
                assert_eq!(spec["holderIdentity"], ME, "{body:#}");
                assert_eq!(spec["leaseDurationSeconds"], 15, "{body:#}");
                assert_eq!(spec["leaseTransitions"], 0, "{body:#}");
                assert_eq!(spec["acquireTime"], spec["renewTime"], "{body:#}");
            },
            201,
            lease(Some(ME), SignedDuration::from_secs(0)),
        ),
    ])
    .await;

    assert_eq!(role, Role::Leader);
}

#[tokio::test]
async fn a_fresh_lease_of_another_replica_is_followed_without_writing() {
    let role = round(vec![get_lease(lease(
        Some(OTHER),
        SignedDuration::from_secs(2),
    ))])
    .await;

    assert_eq!(
        role,
        Role::Follower {
            holder: Some(OTHER.to_string())
        }
    );
}

/// The replace of a take-over: our identity, one more transition, the version read.
fn take_over_check(duration_seconds: i64) -> impl FnOnce(&Value) + Send + 'static {
    move |body| {
        assert_eq!(body["metadata"]["resourceVersion"], "42", "{body:#}");
        let spec = &body["spec"];
        assert_eq!(spec["holderIdentity"], ME, "{body:#}");
        assert_eq!(spec["leaseTransitions"], 4, "{body:#}");
        assert_eq!(spec["leaseDurationSeconds"], duration_seconds, "{body:#}");
        assert_eq!(spec["acquireTime"], spec["renewTime"], "{body:#}");
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_its_resource_version_and_one_more_transition() {
    let expired = lease(Some(OTHER), SignedDuration::from_secs(60));
    let mut taken = expired.clone();
    taken["spec"]["holderIdentity"] = json!(ME);
    taken["metadata"]["resourceVersion"] = json!("43");

    let role = round(vec![
        get_lease(expired),
        replace(take_over_check(15), 200, taken),
    ])
    .await;

    assert_eq!(role, Role::Leader);
}

#[tokio::test]
async fn a_conflict_on_take_over_means_another_replica_won() {
    let role = round(vec![
        get_lease(lease(Some(OTHER), SignedDuration::from_secs(60))),
        replace(take_over_check(15), 409, status(409, "Conflict")),
    ])
    .await;

    assert_eq!(role, Role::Follower { holder: None });
}

#[tokio::test]
async fn losing_the_race_to_create_the_lease_means_following() {
    let role = round(vec![
        no_lease(),
        create(
            |body| assert_eq!(body["spec"]["holderIdentity"], ME),
            409,
            status(409, "AlreadyExists"),
        ),
    ])
    .await;

    assert_eq!(role, Role::Follower { holder: None });
}

#[tokio::test]
async fn our_own_lease_is_renewed_in_place() {
    let ours = lease(Some(ME), SignedDuration::from_secs(5));

    let role = round(vec![
        get_lease(ours.clone()),
        replace(
            |body| {
                assert_eq!(body["metadata"]["resourceVersion"], "42", "{body:#}");
                let spec = &body["spec"];
                assert_eq!(spec["holderIdentity"], ME, "{body:#}");
                assert_eq!(spec["leaseTransitions"], 3, "{body:#}");
                assert_ne!(spec["renewTime"], spec["acquireTime"], "{body:#}");
            },
            200,
            ours,
        ),
    ])
    .await;

    assert_eq!(role, Role::Leader);
}

#[tokio::test]
async fn an_api_error_other_than_a_conflict_is_returned() {
    let error = try_round(vec![get_fails(403, "Forbidden")])
        .await
        .unwrap_err();

    assert_eq!(
        error.to_string(),
        "failed to read the lease guardduty-operator"
    );
    assert_eq!(error.category(), "lease-forbidden");
}

// ── the loop ─────────────────────────────────────────────────────────────────

/// Fast timings: renew every 50 ms, step down after 300 ms without a renewal.
fn fast() -> LeaseTimings {
    LeaseTimings {
        lease_duration: Duration::from_secs(1),
        renew_every: Duration::from_millis(50),
        renew_deadline: Duration::from_millis(300),
        retry_every: Duration::from_millis(50),
    }
}

/// Waits (bounded) until `is_leader` says `leading`.
async fn until(is_leader: &mut watch::Receiver<bool>, leading: bool) {
    tokio::time::timeout(
        Duration::from_secs(5),
        is_leader.wait_for(|l| *l == leading),
    )
    .await
    .unwrap_or_else(|_| panic!("is_leader did not become {leading} within 5s"))
    .expect("the elector is running");
}

/// The election loop with `timings` against the API server's `scenario`, running
/// until `shutdown`: whether it leads, the loop's task, and the scenario being served.
fn run_election(
    scenario: Vec<Exchange>,
    timings: LeaseTimings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<bool>, JoinHandle<()>, Server) {
    let (client, handle) = mock_client();
    let server = serve(handle, scenario);
    let (tx, is_leader) = watch::channel(false);
    let running = tokio::spawn(elector(client, timings).run(tx, shutdown));
    (is_leader, running, server)
}

/// Waits until the whole scenario was served, then stops the loop.
async fn stop_once_served(server: Server, running: JoinHandle<()>) {
    let (handle, _) = served(server).await;
    running.abort();
    drop(handle);
}

/// Answers every request with `status` until dropped.
fn answer_all(mut handle: ApiHandle, code: u16) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut answered = 0;
        while let Some((_, send)) = handle.next_request().await {
            let reply = serde_json::to_vec(&status(code, "InternalError")).unwrap();
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(reply))
                    .unwrap(),
            );
            answered += 1;
        }
        answered
    })
}

#[tokio::test]
async fn the_leader_releases_the_lease_on_shutdown() {
    let (stop, stopped) = oneshot::channel::<()>();
    // No renewal before the stop; time enough for the release on a busy machine.
    let timings = LeaseTimings {
        renew_every: Duration::from_secs(30),
        renew_deadline: Duration::from_secs(5),
        ..fast()
    };
    let ours = lease(Some(ME), SignedDuration::from_secs(0));
    let scenario = vec![
        no_lease(),
        create(|_| {}, 201, ours.clone()),
        // The release: read, then clear the holder.
        get_lease(ours.clone()),
        replace(
            |body| {
                assert_eq!(body["metadata"]["resourceVersion"], "42", "{body:#}");
                assert!(body["spec"].get("holderIdentity").is_none(), "{body:#}");
                assert_eq!(body["spec"]["leaseDurationSeconds"], 1, "{body:#}");
            },
            200,
            lease(None, SignedDuration::from_secs(0)),
        ),
    ];
    let (mut is_leader, running, server) = run_election(scenario, timings, async {
        let _ = stopped.await;
    });

    until(&mut is_leader, true).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the elector stopped within 5s")
        .unwrap();

    assert!(!*is_leader.borrow());
    verify(server).await;
}

#[tokio::test]
async fn a_follower_takes_over_once_the_lease_expires() {
    let expired = lease(Some(OTHER), SignedDuration::from_secs(60));
    let scenario = vec![
        get_lease(lease(Some(OTHER), SignedDuration::from_secs(0))),
        get_lease(expired.clone()),
        replace(take_over_check(1), 200, expired),
    ];
    let (mut is_leader, running, server) = run_election(scenario, fast(), std::future::pending());

    until(&mut is_leader, true).await;

    stop_once_served(server, running).await;
}

#[tokio::test]
async fn the_leader_steps_down_when_another_replica_holds_the_lease() {
    let ours = lease(Some(ME), SignedDuration::from_secs(0));
    let scenario = vec![
        get_lease(ours.clone()),
        replace(|_| {}, 200, ours),
        // Between renewals, another replica took the lease (say, after a pause).
        get_lease(lease(Some(OTHER), SignedDuration::from_secs(0))),
    ];
    let (mut is_leader, running, server) = run_election(scenario, fast(), std::future::pending());

    until(&mut is_leader, true).await;
    until(&mut is_leader, false).await;

    stop_once_served(server, running).await;
}

#[tokio::test]
async fn the_leader_steps_down_when_renewals_fail_past_the_deadline() {
    let (client, mut handle) = mock_client();
    let (tx, mut is_leader) = watch::channel(false);
    let ours = lease(Some(ME), SignedDuration::from_secs(0));
    let running = tokio::spawn(elector(client, fast()).run(tx, std::future::pending()));
    // Acquire: read our (stale) lease and renew it.
    for (code, reply) in [(200, ours.clone()), (200, ours)] {
        let (_, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("a request within 5s")
            .expect("a request");
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
    }
    until(&mut is_leader, true).await;
    let leading_since = tokio::time::Instant::now();
    // Then the API server fails every request.
    let failing = answer_all(handle, 500);

    until(&mut is_leader, false).await;

    let led = leading_since.elapsed();
    assert!(
        led >= Duration::from_millis(250),
        "stepped down after {led:?}, before the deadline"
    );
    running.abort();
    let answered = failing.await.unwrap();
    assert!(answered >= 2, "renewals were retried ({answered})");
}

#[tokio::test]
async fn a_leader_keeps_the_lease_through_a_failed_renewal_within_the_deadline() {
    let ours = lease(Some(ME), SignedDuration::from_secs(0));
    let scenario = vec![
        no_lease(),
        create(|_| {}, 201, ours.clone()),
        // One renewal fails; the retry, a retry period later, succeeds.
        get_fails(500, "InternalError"),
        get_lease(ours.clone()),
        replace(
            |body| assert_eq!(body["spec"]["holderIdentity"], ME),
            200,
            ours,
        ),
    ];
    // A deadline long enough that only the one failure can matter on a busy machine.
    let timings = LeaseTimings {
        renew_deadline: Duration::from_secs(3),
        ..fast()
    };
    let (mut is_leader, running, server) = run_election(scenario, timings, std::future::pending());
    until(&mut is_leader, true).await;
    is_leader.borrow_and_update();

    let (handle, _) = served(server).await;

    assert!(
        !is_leader.has_changed().unwrap(),
        "leadership flapped on one failed renewal"
    );
    assert!(*is_leader.borrow());
    running.abort();
    drop(handle);
}
