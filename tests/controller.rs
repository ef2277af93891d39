//! The controller's reconcile against a mock API server, in the kube-rs/controller-rs
//! style: each test states the ordered requests the API server must receive (method,
//! path and query, content type, body) and what it answers; a request out of order or
//! an extra one fails the test. The AWS side runs on moto and the GuardDuty emulator
//! (tests/common), each test in a region of its own.

use std::sync::Arc;
use std::time::Duration;

use crate::common::mock_api::{
    ApiHandle, Exchange, Server, assert_no_request, mock_client, serve, served,
};
use crate::common::receiver::{Answer, Receiver};
use crate::common::*;
use guardduty_operator::aws::ec2::Ec2;
use guardduty_operator::aws::guardduty::GuardDuty;
use guardduty_operator::controller::reconcile::{Context, FIELD_MANAGER, FINALIZER, reconcile};
use guardduty_operator::ports::{AwsClients, AwsFactory, AwsSetupError};
use guardduty_operator::spec::{GuardDutyPolicy, GuardDutyPolicyStatus};
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

const NAMESPACE: &str = "security";
const NAME: &str = "web";
const POLICY_PATH: &str =
    "/apis/guardduty.security.dev/v1alpha1/namespaces/security/guarddutypolicies/web";
const STATUS_PATH: &str =
    "/apis/guardduty.security.dev/v1alpha1/namespaces/security/guarddutypolicies/web/status";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY_PATCH: &str = "application/apply-patch+yaml";

// ── the mock API server (tests/common/mock_api.rs) ──────────────────────────

/// Waits for the scenario to be served, drops the context (its client with it), then
/// checks that nothing else arrives.
async fn verify(server: Server, ctx: Arc<Context<impl AwsFactory>>) -> Vec<Value> {
    let (mut handle, bodies) = served(server).await;
    drop(ctx);
    assert_no_request(&mut handle).await;
    bodies
}

/// Reconciles with a bound: a failed check in the server task drops the request
/// unanswered, which must fail the test rather than hang it.
async fn reconciled<F: AwsFactory>(
    policy: GuardDutyPolicy,
    ctx: &Arc<Context<F>>,
) -> Result<Action, guardduty_operator::controller::reconcile::Error> {
    tokio::time::timeout(
        Duration::from_secs(60),
        reconcile(Arc::new(policy), ctx.clone()),
    )
    .await
    .expect("the reconcile finished within 60s")
}

fn mock_context<F: AwsFactory>(aws: F) -> (Arc<Context<F>>, ApiHandle) {
    let (client, handle) = mock_client();
    (Arc::new(Context::new(client, aws)), handle)
}

fn status_patch(check_body: impl FnOnce(&Value) + Send + 'static, reply: Value) -> Exchange {
    Exchange::with_body(Method::PATCH, STATUS_PATH, APPLY_PATCH, check_body)
        .query("fieldManager", FIELD_MANAGER)
        .query("force", "true")
        .reply(reply)
}

/// The write-ahead patch of a pass that changes AWS: the status so far with the
/// pass's intent pending in its change record, before the first change.
fn intent_patch(reply: Value) -> Exchange {
    status_patch(
        |body| {
            let pending = &body["status"]["changes"]["pending"];
            assert!(
                pending["added"].is_array() || pending["revoked"].is_array(),
                "an intent is pending: {body:#}"
            );
        },
        reply,
    )
}

/// A JSON patch of the policy's metadata (its finalizers).
fn policy_patch(check_body: impl FnOnce(&Value) + Send + 'static, reply: Value) -> Exchange {
    Exchange::with_body(Method::PATCH, POLICY_PATH, JSON_PATCH, check_body).reply(reply)
}

const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/security/events";

/// One Event recorded about the policy, with this reason and type.
fn event(reason: &'static str, type_: &'static str) -> Exchange {
    Exchange::with_body(Method::POST, EVENTS_PATH, "application/json", move |body| {
        assert_eq!(body["reason"], reason, "{body:#}");
        assert_eq!(body["type"], type_, "{body:#}");
        assert_eq!(body["regarding"]["kind"], "GuardDutyPolicy", "{body:#}");
        assert_eq!(body["regarding"]["name"], NAME, "{body:#}");
        assert_eq!(
            body["reportingController"], "guardduty-operator",
            "{body:#}"
        );
    })
    .reply(json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "web.1", "namespace": NAMESPACE},
        "eventTime": "2026-11-29T04:00:00.000000Z",
        "reason": reason,
        "type": type_,
    }))
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#}"))
}

// ── fixtures ─────────────────────────────────────────────────────────────────

/// A policy as the API server would hand it over: namespaced, generation 1.
fn policy(spec: Value) -> GuardDutyPolicy {
    let mut policy = GuardDutyPolicy::new(
        NAME,
        serde_json::from_value(spec).expect("a spec the CRD would admit"),
    );
    policy.metadata.namespace = Some(NAMESPACE.to_string());
    policy.metadata.generation = Some(1);
    policy.metadata.resource_version = Some("100".to_string());
    policy.metadata.uid = Some("9b1f4c38-5d64-4c3e-9a51-1d0c0e7f2a10".to_string());
    policy
}

fn enforce_policy(region: &str) -> GuardDutyPolicy {
    policy(json!({
        "region": region,
        "trustedCidrs": ["10.0.0.0/8"],
        "remediation": {"mode": "Enforce"},
    }))
    .finalized()
}

trait PolicyExt {
    fn finalized(self) -> Self;
    fn with_status(self, status: Value) -> Self;
    fn to_json(&self) -> Value;
}

impl PolicyExt for GuardDutyPolicy {
    fn finalized(mut self) -> Self {
        self.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        self
    }

    fn with_status(mut self, status: Value) -> Self {
        let status: GuardDutyPolicyStatus =
            serde_json::from_value(status).expect("a status the operator wrote");
        self.status = Some(status);
        self
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap()
    }
}

/// For reconciles that must not reach AWS.
struct NoAws;

impl AwsFactory for NoAws {
    type Findings = GuardDuty;
    type Ec2 = Ec2;

    async fn clients(
        &self,
        region: Option<&str>,
    ) -> Result<AwsClients<GuardDuty, Ec2>, AwsSetupError> {
        panic!("no AWS client expected (asked for region {region:?})")
    }
}

/// A world-open SSH group behind an instance with a port-probe finding on port 22.
async fn world_open_ssh(world: &World) -> String {
    let group = world.group("ssh", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&group]).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000c01",
        5.0,
        &instance,
        &[&group],
        &[22],
    )]);
    group
}

/// Checks the status a converged Enforce pass writes.
fn check_ready_status(body: &Value) {
    assert_eq!(body["apiVersion"], "guardduty.security.dev/v1alpha1");
    assert_eq!(body["kind"], "GuardDutyPolicy");
    let status = &body["status"];
    assert_eq!(status["observedGeneration"], 1, "{status:#}");
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "True", "{ready:#}");
    assert_eq!(ready["observedGeneration"], 1, "{ready:#}");
    assert_eq!(condition(status, "FindingsSynced")["status"], "True");
    assert_eq!(
        condition(status, "SecurityGroupsConverged")["status"],
        "True"
    );
    assert_eq!(status["findings"]["total"], 1, "{status:#}");
    assert_eq!(status["findings"]["medium"], 1, "{status:#}");
    assert_eq!(status["securityGroups"]["pending"], 0, "{status:#}");
    assert!(status["lastSyncTime"].is_string(), "{status:#}");
    // The controls, judged on this spec (Enforce) and this pass (converged).
    assert_eq!(control(status, "nist-800-53-r5", "IR-4(1)")["state"], "Met");
    assert_eq!(control(status, "nist-800-53-r5", "SC-7")["state"], "Met");
}

/// A Ready status of a policy without channels: incident reporting is not claimed.
fn check_ready_status_without_channels(body: &Value) {
    check_ready_status(body);
    let ir_6 = control(&body["status"], "nist-800-53-r5", "IR-6");
    assert_eq!(ir_6["state"], "NotMet", "{ir_6:#}");
    assert!(
        ir_6["reason"]
            .as_str()
            .unwrap()
            .contains("spec.notifications"),
        "{ir_6:#}"
    );
}

/// One control of `status.compliance`.
fn control<'a>(status: &'a Value, framework: &str, id: &str) -> &'a Value {
    status["compliance"]
        .as_array()
        .and_then(|frameworks| frameworks.iter().find(|f| f["id"] == framework))
        .and_then(|f| f["controls"].as_array())
        .and_then(|controls| controls.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no {framework} {id} in {status:#}"))
}

// ── scenarios ────────────────────────────────────────────────────────────────

#[tokio::test]
async fn a_new_policy_gets_the_finalizer_before_any_pass() {
    let (ctx, handle) = mock_context(NoAws);
    let new = policy(json!({"trustedCidrs": ["10.0.0.0/8"]}));
    let server = serve(
        handle,
        vec![policy_patch(
            |body| {
                assert_eq!(
                    *body,
                    json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": null},
                        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
                    ])
                );
            },
            new.clone().finalized().to_json(),
        )],
    );

    let action = reconciled(new, &ctx).await.unwrap();

    // The finalizer patch triggers the next reconcile, which runs the pass.
    assert_eq!(action, Action::await_change());
    verify(server, ctx).await;
}

#[tokio::test]
async fn an_enforced_policy_converges_the_group_and_applies_a_ready_status() {
    let world = World::new("ap-south-1").await;
    let group = world_open_ssh(&world).await;
    let policy = enforce_policy(&world.region);
    let (ctx, handle) = mock_context(WorldAws::of(&[&world]));
    let reply = policy.to_json();
    let server = serve(
        handle,
        vec![
            intent_patch(reply.clone()),
            status_patch(check_ready_status_without_channels, reply),
            event("RuleRevoked", "Normal"),
        ],
    );

    let action = reconciled(policy, &ctx).await.unwrap();

    assert_eq!(action, Action::requeue(Duration::from_secs(5 * 60)));
    verify(server, ctx).await;
    assert_eq!(
        world.ingress(&group).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"]
    );
}

#[tokio::test]
async fn an_invalid_policy_gets_ready_false_invalid_spec_and_waits_for_a_change() {
    // A world range among the trusted ones: the CRD's CEL refuses it, so build the
    // object directly, as if the CRD were older than the operator.
    let invalid = policy(json!({
        "trustedCidrs": ["0.0.0.0/0"],
        "remediation": {"mode": "Enforce"},
    }))
    .finalized();
    let (ctx, handle) = mock_context(NoAws);
    let reply = invalid.to_json();
    let server = serve(
        handle,
        vec![
            status_patch(
                |body| {
                    let status = &body["status"];
                    assert_eq!(status["observedGeneration"], 1, "{status:#}");
                    let ready = condition(status, "Ready");
                    assert_eq!(ready["status"], "False", "{ready:#}");
                    assert_eq!(ready["reason"], "InvalidSpec", "{ready:#}");
                    let message = ready["message"].as_str().unwrap();
                    assert!(message.contains("spec.trustedCidrs"), "{message}");
                    assert!(status.get("findings").is_none(), "{status:#}");
                    assert!(status.get("compliance").is_none(), "{status:#}");
                },
                reply,
            ),
            event("InvalidSpec", "Warning"),
        ],
    );

    let action = reconciled(invalid, &ctx).await.unwrap();

    // No pass and no retry loop: the next reconcile comes with the next change.
    assert_eq!(action, Action::await_change());
    verify(server, ctx).await;
}

#[tokio::test]
async fn a_policy_outside_the_allowed_namespaces_gets_ready_false_and_nothing_in_aws() {
    // Not even a finalizer: the policy carries no authority here.
    let outside = policy(json!({
        "trustedCidrs": ["10.0.0.0/8"],
        "remediation": {"mode": "Enforce"},
    }));
    let (client, handle) = mock_client();
    let allowed = guardduty_operator::controller::reconcile::AllowedNamespaces::from_flags(
        &["guardduty-operator".to_string(), "platform".to_string()],
        "unused",
    );
    let ctx = Arc::new(Context::new(client, NoAws).allowing(allowed));
    let server = serve(
        handle,
        vec![
            status_patch(
                |body| {
                    let ready = condition(&body["status"], "Ready");
                    assert_eq!(ready["status"], "False", "{ready:#}");
                    assert_eq!(ready["reason"], "NamespaceNotAllowed", "{ready:#}");
                    let message = ready["message"].as_str().unwrap();
                    assert!(
                        message.contains("namespace security")
                            && message.contains("guardduty-operator, platform")
                            && message.contains("policyNamespaces"),
                        "{message}"
                    );
                },
                outside.to_json(),
            ),
            event("NamespaceNotAllowed", "Warning"),
        ],
    );

    let action = reconciled(outside, &ctx).await.unwrap();

    assert_eq!(action, Action::await_change());
    verify(server, ctx).await;
}

/// Reconciles `policy`, failing at once if any request reaches the API server.
async fn reconcile_expecting_no_request(
    policy: GuardDutyPolicy,
    ctx: &Arc<Context<WorldAws>>,
    handle: &mut ApiHandle,
) -> Action {
    let reconciling = reconcile(Arc::new(policy), ctx.clone());
    tokio::select! {
        action = reconciling => action.unwrap(),
        Some((request, _)) = handle.next_request() => {
            let (method, uri) = (request.method().clone(), request.uri().clone());
            let body = request.into_body().collect_bytes().await.unwrap();
            panic!("unexpected request: {method} {uri}\n{}", String::from_utf8_lossy(&body));
        }
    }
}

#[tokio::test]
async fn a_quiet_pass_sends_nothing_to_the_api_server() {
    let world = World::new("ap-northeast-2").await;
    let group = world_open_ssh(&world).await;
    let policy = enforce_policy(&world.region);
    let (ctx, handle) = mock_context(WorldAws::of(&[&world]));
    // The pass that changes the group.
    let server = serve(
        handle,
        vec![
            intent_patch(policy.to_json()),
            status_patch(check_ready_status, policy.to_json()),
            event("RuleRevoked", "Normal"),
        ],
    );
    reconciled(policy.clone(), &ctx).await.unwrap();
    let (mut handle, bodies) = served(server).await;
    let converged = world.ingress(&group).await;
    assert_eq!(converged, ["tcp 22-22 10.0.0.0/8 [managed]"]);

    // The status patch itself triggers a reconcile: same generation, pass not due,
    // so nothing is done (the backoff and the interval hold).
    let observed = policy.with_status(bodies[1]["status"].clone());
    let action = reconcile_expecting_no_request(observed.clone(), &ctx, &mut handle).await;
    // Requeued for what is left of the interval (`Action` shows its delay only to
    // equality): neither a wait for a change nor a fresh full interval.
    assert_ne!(action, Action::await_change());
    assert_ne!(action, Action::requeue(Duration::from_secs(5 * 60)));
    drop(ctx);
    assert_no_request(&mut handle).await;

    // A quiet pass when it is due (here: a fresh controller), with that status on the
    // object: not a single request.
    let (ctx, mut handle) = mock_context(WorldAws::of(&[&world]));
    let action = reconcile_expecting_no_request(observed, &ctx, &mut handle).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5 * 60)));
    drop(ctx);
    assert_no_request(&mut handle).await;
    assert_eq!(world.ingress(&group).await, converged);
}

#[tokio::test]
async fn deleting_a_retained_policy_only_removes_the_finalizer() {
    // Retain (the default) leaves AWS as it is, whether or not a pass ever ran.
    let mut deleted = policy(json!({"trustedCidrs": ["10.0.0.0/8"]})).finalized();
    deleted.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-29T04:00:00Z".parse().unwrap(),
        ));
    let (ctx, handle) = mock_context(NoAws);
    let mut reply = deleted.clone();
    reply.metadata.finalizers = None;
    let server = serve(
        handle,
        vec![policy_patch(
            |body| {
                assert_eq!(
                    *body,
                    json!([
                        {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                        {"op": "remove", "path": "/metadata/finalizers/0"},
                    ])
                );
            },
            reply.to_json(),
        )],
    );

    let action = reconciled(deleted, &ctx).await.unwrap();

    assert_eq!(action, Action::await_change());
    verify(server, ctx).await;
}

#[tokio::test]
async fn deleting_a_reverted_policy_restores_the_group_before_the_finalizer_goes() {
    let world = World::new("eu-south-2").await;
    let group = world_open_ssh(&world).await;
    let policy = policy(json!({
        "region": world.region,
        "trustedCidrs": ["10.0.0.0/8"],
        "remediation": {"mode": "Enforce"},
        "deletionPolicy": "Revert",
    }))
    .finalized();
    let (ctx, handle) = mock_context(WorldAws::of(&[&world]));
    // The pass converges the group and records what it changed on the status.
    let server = serve(
        handle,
        vec![
            intent_patch(policy.to_json()),
            status_patch(
                |body| {
                    let changes = &body["status"]["changes"];
                    assert_eq!(changes["revoked"][0]["cidr"], "0.0.0.0/0", "{changes:#}");
                    assert_eq!(changes["added"][0]["cidr"], "10.0.0.0/8", "{changes:#}");
                },
                policy.to_json(),
            ),
            event("RuleRevoked", "Normal"),
        ],
    );
    reconciled(policy.clone(), &ctx).await.unwrap();
    let (handle, bodies) = served(server).await;
    assert_eq!(
        world.ingress(&group).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"]
    );

    // Deleted: the group is as it was before, then the finalizer goes.
    let mut deleted = policy.with_status(bodies[1]["status"].clone());
    deleted.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-29T04:00:00Z".parse().unwrap(),
        ));
    let mut reply = deleted.clone();
    reply.metadata.finalizers = None;
    let server = serve(
        handle,
        vec![policy_patch(
            |body| {
                assert_eq!(
                    body[1],
                    json!({"op": "remove", "path": "/metadata/finalizers/0"})
                );
            },
            reply.to_json(),
        )],
    );
    let action = reconciled(deleted, &ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    verify(server, ctx).await;
    assert_eq!(world.ingress(&group).await, ["tcp 22-22 0.0.0.0/0"]);
}

// ── in a real cluster ────────────────────────────────────────────────────────

/// For the cluster test: every pass fails before reaching AWS, so the test needs no
/// AWS account; the finalizer and deletion paths do not depend on it.
struct UnconfiguredAws;

impl AwsFactory for UnconfiguredAws {
    type Findings = GuardDuty;
    type Ec2 = Ec2;

    async fn clients(
        &self,
        _region: Option<&str>,
    ) -> Result<AwsClients<GuardDuty, Ec2>, AwsSetupError> {
        Err(AwsSetupError::NoRegion)
    }
}

/// Runs the whole controller against a disposable cluster:
///
/// ```text
/// kind create cluster            # or: k3d cluster create
/// cargo run -- crd | kubectl apply -f -
/// cargo test --test main controller -- --ignored
/// ```
///
/// Checks that the controller adds its finalizer to a new policy and that deleting
/// the policy (Retain) completes.
#[tokio::test]
#[ignore = "needs a cluster"]
async fn in_a_cluster_a_policy_gets_the_finalizer_and_deletion_completes() {
    use kube::ResourceExt as _;
    use kube::api::{Api, DeleteParams, PostParams};
    use kube::runtime::wait::{await_condition, conditions};

    let client = kube::Client::try_default()
        .await
        .expect("a kube config for a disposable cluster");
    let api: Api<GuardDutyPolicy> = Api::namespaced(client.clone(), "default");
    let controller = tokio::spawn(guardduty_operator::controller::reconcile::run(
        client,
        UnconfiguredAws,
        guardduty_operator::controller::reconcile::ControllerOptions {
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            policy_namespaces: vec!["default".into()],
            ..Default::default()
        },
    ));
    let mut new = policy(json!({"trustedCidrs": ["10.0.0.0/8"]}));
    new.metadata.name = Some("controller-test".to_string());
    new.metadata.namespace = Some("default".to_string());
    new.metadata.generation = None;
    new.metadata.resource_version = None;
    new.metadata.uid = None;
    let created = api
        .create(&PostParams::default(), &new)
        .await
        .expect("create the policy");

    let has_finalizer = |policy: Option<&GuardDutyPolicy>| {
        policy.is_some_and(|p| p.finalizers().iter().any(|f| f == FINALIZER))
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api.clone(), "controller-test", has_finalizer),
    )
    .await
    .expect("the finalizer within 30s")
    .unwrap();

    api.delete("controller-test", &DeleteParams::default())
        .await
        .expect("delete the policy");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            api.clone(),
            "controller-test",
            conditions::is_deleted(&created.uid().unwrap()),
        ),
    )
    .await
    .expect("deletion completes within 30s")
    .unwrap();
    controller.abort();
}

// ── alerts ───────────────────────────────────────────────────────────────────

const SLACK_TOKEN: &str = "T000/B000/CONTROLLERSECRET";

/// The Secret holding the Slack webhook URL, as the API server answers a GET.
fn slack_secret(receiver: &Receiver) -> Exchange {
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("slack".into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(
            [(
                "webhookUrl".to_string(),
                k8s_openapi::ByteString(
                    format!("{}/services/{SLACK_TOKEN}", receiver.url).into_bytes(),
                ),
            )]
            .into(),
        ),
        ..Default::default()
    };
    Exchange::get("/api/v1/namespaces/security/secrets/slack")
        .reply(serde_json::to_value(secret).unwrap())
}

fn alerting_policy(region: &str) -> GuardDutyPolicy {
    policy(json!({
        "region": region,
        "trustedCidrs": ["10.0.0.0/8"],
        "remediation": {"mode": "Enforce"},
        "notifications": [{
            "name": "chat",
            "slack": {"webhookUrlSecretRef": {"name": "slack", "key": "webhookUrl"}},
        }],
    }))
    .finalized()
}

#[tokio::test]
async fn alerts_go_out_once_and_their_record_lives_on_the_status() {
    let world = World::new("ap-southeast-3").await;
    world_open_ssh(&world).await;
    let slack = Receiver::start(vec![Answer::new(200, "ok")]).await;
    let policy = alerting_policy(&world.region);
    let (ctx, handle) = mock_context(WorldAws::of(&[&world]));
    let server = serve(
        handle,
        vec![
            intent_patch(policy.to_json()),
            slack_secret(&slack),
            status_patch(
                |body| {
                    check_ready_status(body);
                    let status = &body["status"];
                    // A channel hears every HIGH finding and its alert went out.
                    assert_eq!(control(status, "nist-800-53-r5", "IR-6")["state"], "Met");
                    let delivered = condition(status, "NotificationsDelivered");
                    assert_eq!(delivered["status"], "True", "{delivered:#}");
                    assert_eq!(delivered["message"], "every alert due was delivered");
                    assert_eq!(
                        status["alerts"]["delivered"],
                        json!([{
                            "channel": "chat",
                            "finding": "f0000000000000000000000000000c01",
                            "type": "Recon:EC2/PortProbeUnprotectedPort",
                            "severity": 5.0,
                            "response": "closed",
                            "since": status["alerts"]["delivered"][0]["since"],
                            "account": ACCOUNT,
                            "region": "ap-southeast-3",
                        }])
                    );
                    assert!(!status.to_string().contains("CONTROLLERSECRET"));
                },
                policy.to_json(),
            ),
            event("RuleRevoked", "Normal"),
        ],
    );
    reconciled(policy.clone(), &ctx).await.unwrap();
    let (handle, bodies) = served(server).await;
    let received = slack.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, format!("/services/{SLACK_TOKEN}"));
    assert!(
        received[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("remediated")
    );

    // The next pass (when due: a fresh controller) reads the secret again (it may have
    // been rotated) and sends nothing else: no alert, no patch, no event.
    drop(handle);
    let observed = policy.with_status(bodies[2]["status"].clone());
    let (ctx, handle) = mock_context(WorldAws::of(&[&world]));
    let server = serve(handle, vec![slack_secret(&slack)]);
    let action = reconciled(observed, &ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(5 * 60)));
    verify(server, ctx).await;
    assert_eq!(slack.received().len(), 1, "no second alert");
}

#[tokio::test]
async fn a_failing_channel_shows_on_the_status_and_in_one_event_and_remediation_goes_on() {
    let world = World::new("eu-central-2").await;
    let group = world_open_ssh(&world).await;
    let slack = Receiver::start(vec![Answer::new(403, "action_prohibited")]).await;
    let policy = alerting_policy(&world.region);
    let (ctx, handle) = mock_context(WorldAws::of(&[&world]));
    let server = serve(
        handle,
        vec![
            intent_patch(policy.to_json()),
            slack_secret(&slack),
            status_patch(
                |body| {
                    let status = &body["status"];
                    let delivered = condition(status, "NotificationsDelivered");
                    assert_eq!(delivered["status"], "False", "{delivered:#}");
                    assert_eq!(delivered["reason"], "DeliveryFailed", "{delivered:#}");
                    assert_eq!(
                        delivered["message"],
                        "1 alert not delivered, tried again next pass: chat (slack): Slack \
                         answered HTTP 403: action_prohibited"
                    );
                    let ready = condition(status, "Ready");
                    assert_eq!(ready["status"], "False", "{ready:#}");
                    assert_eq!(ready["reason"], "DeliveryFailed", "{ready:#}");
                    assert_eq!(
                        condition(status, "SecurityGroupsConverged")["status"],
                        "True"
                    );
                    assert_eq!(status["alerts"]["failingChannels"], json!(["chat"]));
                    assert!(status["alerts"].get("delivered").is_none(), "{status:#}");
                },
                policy.to_json(),
            ),
            event("RuleRevoked", "Normal"),
            event("NotificationFailed", "Warning"),
        ],
    );

    let action = reconciled(policy, &ctx).await.unwrap();

    // Tried again soon (the first backoff: 15 to 30 s, jittered), not at the next
    // interval.
    assert!(
        (15..=30).any(|s| action == Action::requeue(Duration::from_secs(s))),
        "{action:?}"
    );
    verify(server, ctx).await;
    assert_eq!(
        world.ingress(&group).await,
        ["tcp 22-22 10.0.0.0/8 [managed]"]
    );
}

// ── against the in-memory account (no moto, no emulator) ─────────────────────

mod in_memory {
    use guardduty_operator::domain::finding::Finding;
    use guardduty_operator::domain::ids::{InstanceId, SecurityGroupId};
    use guardduty_operator::domain::security_group::{
        Instance, InstanceState, PortRange, SecurityGroup, Traffic,
    };
    use guardduty_operator::ports::memory::{MemoryAccount, MemoryAws};

    use super::*;

    /// Instance i-1 in sg-1, whose one rule opens tcp/22 to the world, and a port
    /// probe finding on it.
    fn open_ssh_account() -> MemoryAws {
        MemoryAws::new(
            MemoryAccount::with_groups([SecurityGroup::world_open(
                "sg-1",
                Traffic::Tcp(PortRange::single(22)),
            )])
            .with_instances([Instance {
                id: InstanceId::parse("i-1").unwrap(),
                state: InstanceState::Running,
                security_groups: vec![SecurityGroupId::parse("sg-1").unwrap()],
            }])
            .with_findings([Finding::probe(
                "f0000000000000000000000000000c01",
                "i-1",
                &[22],
            )]),
        )
    }

    /// The group's rules as `source tcp/ports [managed]`, sorted.
    fn ingress(aws: &MemoryAws) -> Vec<String> {
        let mut rules: Vec<String> = aws
            .account
            .group("sg-1")
            .ingress
            .iter()
            .map(|r| {
                let managed = if r.owner.is_some() { " [managed]" } else { "" };
                format!("{} {}{managed}", r.source, r.traffic)
            })
            .collect();
        rules.sort();
        rules
    }

    fn memory_policy(extra: Value) -> GuardDutyPolicy {
        let mut spec = json!({
            "region": "us-east-1",
            "trustedCidrs": ["10.0.0.0/8"],
            "remediation": {"mode": "Enforce"},
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        policy(spec).finalized()
    }

    #[tokio::test]
    async fn an_enforced_policy_converges_the_group_in_memory() {
        let aws = open_ssh_account();
        let (ctx, handle) = mock_context(aws.clone());
        let policy = memory_policy(json!({}));
        let server = serve(
            handle,
            vec![
                intent_patch(policy.to_json()),
                status_patch(check_ready_status_without_channels, policy.to_json()),
                event("RuleRevoked", "Normal"),
            ],
        );

        let action = reconciled(policy, &ctx).await.unwrap();

        assert_eq!(action, Action::requeue(Duration::from_secs(5 * 60)));
        verify(server, ctx).await;
        assert_eq!(ingress(&aws), ["10.0.0.0/8 tcp/22 [managed]"]);
    }

    #[tokio::test]
    async fn an_invalid_policy_changes_nothing_in_memory() {
        let aws = open_ssh_account();
        let (ctx, handle) = mock_context(aws.clone());
        let invalid = memory_policy(json!({"interval": "10s"}));
        let server = serve(
            handle,
            vec![
                status_patch(
                    |body| {
                        let ready = condition(&body["status"], "Ready");
                        assert_eq!(ready["reason"], "InvalidSpec", "{ready:#}");
                        assert!(ready["message"].as_str().unwrap().contains("spec.interval"));
                    },
                    invalid.to_json(),
                ),
                event("InvalidSpec", "Warning"),
            ],
        );

        let action = reconciled(invalid, &ctx).await.unwrap();

        assert_eq!(action, Action::await_change());
        verify(server, ctx).await;
        assert_eq!(ingress(&aws), ["0.0.0.0/0 tcp/22"], "nothing changed");
    }

    #[tokio::test]
    async fn a_quiet_pass_in_memory_sends_nothing_to_the_api_server() {
        let aws = open_ssh_account();
        let (ctx, handle) = mock_context(aws.clone());
        let policy = memory_policy(json!({}));
        let server = serve(
            handle,
            vec![
                intent_patch(policy.to_json()),
                status_patch(check_ready_status_without_channels, policy.to_json()),
                event("RuleRevoked", "Normal"),
            ],
        );
        reconciled(policy.clone(), &ctx).await.unwrap();
        let (handle, bodies) = served(server).await;

        // When due (a fresh controller: the status write itself makes no pass).
        drop(handle);
        drop(ctx);
        let (ctx, mut handle) = mock_context(aws.clone());
        let observed = policy.with_status(bodies[1]["status"].clone());
        let reconciling = reconcile(Arc::new(observed), ctx.clone());
        let action = tokio::select! {
            action = reconciling => action.unwrap(),
            Some((request, _)) = handle.next_request() => {
                panic!("unexpected request: {} {}", request.method(), request.uri());
            }
        };

        assert_eq!(action, Action::requeue(Duration::from_secs(5 * 60)));
        drop(ctx);
        assert_no_request(&mut handle).await;
        assert_eq!(ingress(&aws), ["10.0.0.0/8 tcp/22 [managed]"]);
    }

    #[tokio::test]
    async fn a_failed_status_patch_after_aws_changed_loses_neither_the_record_nor_the_pass() {
        let aws = open_ssh_account();
        let (ctx, handle) = mock_context(aws.clone());
        let policy = memory_policy(json!({}));
        let unavailable = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500,
        });
        let server = serve(
            handle,
            vec![
                intent_patch(policy.to_json()),
                status_patch(|_| {}, unavailable).status(500),
            ],
        );
        let failed = reconciled(policy.clone(), &ctx).await;
        assert!(failed.is_err(), "the failed patch is an error: {failed:?}");
        let (handle, _) = served(server).await;
        assert_eq!(ingress(&aws), ["10.0.0.0/8 tcp/22 [managed]"]);

        // The retry finds the object without that status: the pass it runs has
        // nothing to change, and the status it writes still records the changes.
        let server = serve(
            handle,
            vec![status_patch(
                |body| {
                    let changes = &body["status"]["changes"];
                    assert_eq!(
                        changes["added"].as_array().map(Vec::len),
                        Some(1),
                        "{changes:#}"
                    );
                    assert_eq!(changes["added"][0]["cidr"], "10.0.0.0/8");
                    assert_eq!(changes["revoked"].as_array().map(Vec::len), Some(1));
                    assert_eq!(changes["revoked"][0]["cidr"], "0.0.0.0/0");
                    assert_eq!(changes["pending"], Value::Null, "{changes:#}");
                },
                policy.to_json(),
            )],
        );
        reconciled(policy, &ctx).await.unwrap();
        verify(server, ctx).await;
    }

    #[tokio::test]
    async fn an_operator_restarted_mid_pass_settles_the_intent_it_wrote() {
        let aws = open_ssh_account();
        let (ctx, handle) = mock_context(aws.clone());
        let policy = memory_policy(json!({}));
        let unavailable = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the lease was lost", "reason": "InternalError", "code": 500,
        });
        let server = serve(
            handle,
            vec![
                intent_patch(policy.to_json()),
                status_patch(|_| {}, unavailable).status(500),
            ],
        );
        assert!(reconciled(policy.clone(), &ctx).await.is_err());
        let (handle, bodies) = served(server).await;
        drop(handle);
        drop(ctx);

        // A new replica: no memory of the pass, only the intent on the object.
        let (ctx, handle) = mock_context(aws.clone());
        let observed = policy.clone().with_status(bodies[0]["status"].clone());
        let server = serve(
            handle,
            vec![status_patch(
                |body| {
                    let changes = &body["status"]["changes"];
                    assert_eq!(changes["pending"], Value::Null, "{changes:#}");
                    let added = changes["added"].as_array().unwrap();
                    assert_eq!(added.len(), 1, "{changes:#}");
                    assert!(
                        added[0]["ruleId"].is_string(),
                        "found on AWS by its ownership tag: {changes:#}"
                    );
                    assert_eq!(changes["revoked"][0]["cidr"], "0.0.0.0/0");
                },
                policy.to_json(),
            )],
        );
        reconciled(observed, &ctx).await.unwrap();
        verify(server, ctx).await;
        assert_eq!(ingress(&aws), ["10.0.0.0/8 tcp/22 [managed]"]);
    }

    /// Routes every event to the policy `security/web`.
    struct ToWeb;

    impl guardduty_operator::events::Router for ToWeb {
        fn selecting(&self, _: &Finding) -> Vec<String> {
            vec![format!("{NAMESPACE}/{NAME}")]
        }
        fn wake(&self, _: &str) {}
    }

    #[tokio::test]
    async fn a_finding_event_makes_a_pass_of_its_finding_at_once_and_its_message_is_deleted() {
        use guardduty_operator::events::{Inbox, Message, route};
        // GuardDuty lists nothing: only the event tells of the finding.
        let aws = MemoryAws::new(
            MemoryAccount::with_groups([SecurityGroup::world_open(
                "sg-1",
                Traffic::Tcp(PortRange::single(22)),
            )])
            .with_instances([Instance {
                id: InstanceId::parse("i-1").unwrap(),
                state: InstanceState::Running,
                security_groups: vec![SecurityGroupId::parse("sg-1").unwrap()],
            }]),
        );
        let (inbox, mut receipts) = Inbox::new();
        let inbox = Arc::new(inbox);
        let (client, handle) = mock_client();
        let ctx = Arc::new(Context::new(client, aws.clone()).with_inbox(inbox.clone()));
        let policy = memory_policy(json!({}));
        // The periodic pass: nothing to do, its status written.
        let server = serve(handle, vec![status_patch(|_| {}, policy.to_json())]);
        let periodic = reconciled(policy.clone(), &ctx).await.unwrap();
        assert_eq!(periodic, Action::requeue(Duration::from_secs(5 * 60)));
        let (handle, bodies) = served(server).await;
        assert_eq!(ingress(&aws), ["0.0.0.0/0 tcp/22"]);

        let finding = crate::common::findings::port_probe_finding(
            DETECTOR,
            "f0000000000000000000000000000e01",
            8.0,
            "i-1",
            &["sg-1"],
            &[22],
        );
        let message = Message {
            id: "m-1".into(),
            receipt: "receipt-1".into(),
            body: json!({
                "version": "0", "id": "ev-1", "detail-type": "GuardDuty Finding",
                "source": "aws.guardduty", "account": ACCOUNT, "region": "us-east-1",
                "time": "2026-12-01T10:00:00Z", "resources": [], "detail": finding,
            })
            .to_string(),
        };
        route(&message, &ToWeb, &inbox);
        assert!(receipts.try_recv().is_err(), "not deleted before its pass");

        // The next reconcile, though the periodic pass is not due: the event's pass.
        let observed = policy.clone().with_status(bodies[0]["status"].clone());
        let server = serve(
            handle,
            vec![
                intent_patch(policy.to_json()),
                status_patch(
                    |body| {
                        let status = &body["status"];
                        assert_eq!(
                            status["recentActions"][0]["findingId"],
                            "f0000000000000000000000000000e01",
                            "{status:#}"
                        );
                    },
                    policy.to_json(),
                ),
                event("RuleRevoked", "Normal"),
            ],
        );
        let action = reconciled(observed, &ctx).await.unwrap();
        verify(server, ctx).await;
        assert_eq!(ingress(&aws), ["10.0.0.0/8 tcp/22 [managed]"]);
        assert_eq!(receipts.try_recv().unwrap(), "receipt-1");
        assert_ne!(
            action,
            Action::requeue(Duration::from_secs(5 * 60)),
            "the periodic pass keeps its time"
        );
    }

    #[tokio::test]
    async fn deleting_a_reverted_policy_in_memory_puts_the_group_back() {
        let aws = open_ssh_account();
        let (ctx, handle) = mock_context(aws.clone());
        let policy = memory_policy(json!({"deletionPolicy": "Revert"}));
        let server = serve(
            handle,
            vec![
                intent_patch(policy.to_json()),
                status_patch(|_| {}, policy.to_json()),
                event("RuleRevoked", "Normal"),
            ],
        );
        reconciled(policy.clone(), &ctx).await.unwrap();
        let (handle, bodies) = served(server).await;
        assert_eq!(ingress(&aws), ["10.0.0.0/8 tcp/22 [managed]"]);

        let mut deleted = policy.with_status(bodies[1]["status"].clone());
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-11-29T04:00:00Z".parse().unwrap(),
            ));
        let mut reply = deleted.clone();
        reply.metadata.finalizers = None;
        let server = serve(
            handle,
            vec![policy_patch(
                |body| {
                    assert_eq!(
                        body[1],
                        json!({"op": "remove", "path": "/metadata/finalizers/0"})
                    );
                },
                reply.to_json(),
            )],
        );

        let action = reconciled(deleted, &ctx).await.unwrap();

        assert_eq!(action, Action::await_change());
        verify(server, ctx).await;
        assert_eq!(
            ingress(&aws),
            ["0.0.0.0/0 tcp/22"],
            "as before the operator"
        );
    }
}
