//! Real time: GuardDuty finding events, as an EventBridge rule delivers them to an SQS
//! queue, turned into targeted passes of the policies that select them.
//!
//! ```text
//!  EventQueue ─ receive (long poll) ─> finding_event (parse) ─┬─ unreadable: logged, left to the
//!                                                             │  queue's redrive policy
//!                                     Router (which policies) ┴─> Inbox (per policy, coalesced)
//!                                                                 ─> trigger the policy's pass
//!  the pass took its events ─> Inbox::settle ─> every policy handled it ─> delete the message
//! ```
//!
//! At least once: a message is deleted only after every policy that selected it has
//! handled it (a pass that completed); a pass that failed leaves it to come back after
//! the queue's visibility timeout, never in a hot loop. Passes are idempotent, so a
//! message handled twice changes nothing the second time. Events that arrive while a
//! policy's pass runs wait in its inbox and go together into its next pass, so a burst
//! about one instance makes one change.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::event::finding_event;
use crate::domain::finding::Finding;
use crate::ports::AwsError;

/// One message of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    /// What deletes it.
    pub receipt: String,
    pub body: String,
}

/// The queue the events arrive in: SQS ([`crate::aws::sqs::Sqs`]).
pub trait EventQueue: Send + Sync + 'static {
    /// The messages waiting, after waiting at most `wait_seconds` for one.
    fn receive(
        &self,
        wait_seconds: u32,
    ) -> impl Future<Output = Result<Vec<Message>, AwsError>> + Send;

    /// Deletes handled messages.
    fn delete(&self, receipts: &[String]) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// A message being handled by the policies that selected it.
#[derive(Debug)]
pub struct InFlight {
    pub id: String,
    receipt: String,
    /// Policies still to handle it.
    remaining: AtomicUsize,
    /// A policy's pass failed: the message is left to come back.
    failed: AtomicBool,
}

/// A finding waiting for a policy's pass, and the message it came in.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub finding: Finding,
    pub message: Arc<InFlight>,
}

/// The events waiting for each policy's pass (by policy key, `namespace/name`), and
/// the receipts of messages every policy handled, for the intake to delete.
#[derive(Debug)]
pub struct Inbox {
    waiting: Mutex<BTreeMap<String, Vec<Delivery>>>,
    done: mpsc::UnboundedSender<String>,
}

impl Inbox {
    /// An inbox, and the receiver of the receipts to delete.
    pub fn new() -> (Inbox, mpsc::UnboundedReceiver<String>) {
        let (done, receipts) = mpsc::unbounded_channel();
        (
            Inbox {
                waiting: Mutex::default(),
                done,
            },
            receipts,
        )
    }

    fn push(&self, policy: &str, delivery: Delivery) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(policy.to_string())
            .or_default()
            .push(delivery);
    }

    /// Is an event waiting for `policy`?
    pub fn has(&self, policy: &str) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(policy)
            .is_some_and(|d| !d.is_empty())
    }

    /// Every event waiting for `policy`, for its next pass to handle.
    pub fn take(&self, policy: &str) -> Vec<Delivery> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(policy)
            .unwrap_or_default()
    }

    /// A policy's pass handled `deliveries` (`handled`), or failed: a message every
    /// policy handled goes to be deleted; one whose pass failed is left to come back.
    pub fn settle(&self, deliveries: &[Delivery], handled: bool) {
        let mut seen: Vec<&Arc<InFlight>> = Vec::new();
        for delivery in deliveries {
            if seen.iter().any(|m| Arc::ptr_eq(m, &delivery.message)) {
                continue;
            }
            seen.push(&delivery.message);
            let message = &delivery.message;
            if !handled {
                message.failed.store(true, Ordering::Release);
            }
            let last = message.remaining.fetch_sub(1, Ordering::AcqRel) == 1;
            if last && !message.failed.load(Ordering::Acquire) {
                let _ = self.done.send(message.receipt.clone());
            }
        }
    }
}

/// The findings of `deliveries`, one per finding id (the newest update wins): what a
/// policy's targeted pass acts on.
pub fn coalesce(deliveries: &[Delivery]) -> Vec<Finding> {
    let mut by_id: BTreeMap<String, Finding> = BTreeMap::new();
    for delivery in deliveries {
        let finding = &delivery.finding;
        match by_id.get(finding.id.as_str()) {
            Some(known) if known.updated_at >= finding.updated_at => {}
            _ => {
                by_id.insert(finding.id.to_string(), finding.clone());
            }
        }
    }
    by_id.into_values().collect()
}

/// Which policies select a finding, by key; and how to wake one for its pass.
pub trait Router: Send + Sync {
    fn selecting(&self, finding: &Finding) -> Vec<String>;
    fn wake(&self, policy: &str);
}

/// What the intake did with one message (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Handed to these policies.
    Routed(Vec<String>),
    /// No policy selects it: deleted.
    Unselected,
    /// Not a GuardDuty finding event, or unreadable: left to the queue's redrive policy.
    Unreadable(String),
}

/// Hands one message to the policies that select its finding (pure but for the
/// inbox and the router).
pub fn route(message: &Message, router: &dyn Router, inbox: &Inbox) -> Intake {
    let finding = match finding_event(&message.body) {
        Ok(finding) => finding,
        Err(error) => {
            tracing::warn!(
                message_id = %message.id,
                %error,
                "a queued message is not a GuardDuty finding event: left to the queue's redrive policy"
            );
            return Intake::Unreadable(error.to_string());
        }
    };
    let policies = router.selecting(&finding);
    if policies.is_empty() {
        let _ = inbox.done.send(message.receipt.clone());
        return Intake::Unselected;
    }
    let in_flight = Arc::new(InFlight {
        id: message.id.clone(),
        receipt: message.receipt.clone(),
        remaining: AtomicUsize::new(policies.len()),
        failed: AtomicBool::new(false),
    });
    for policy in &policies {
        inbox.push(
            policy,
            Delivery {
                finding: finding.clone(),
                message: in_flight.clone(),
            },
        );
        router.wake(policy);
    }
    tracing::info!(
        message_id = %message.id,
        finding = %finding.id,
        policies = policies.len(),
        "finding event queued for the policies that select it"
    );
    Intake::Routed(policies)
}

/// How long the intake waits after the queue failed, doubling to a minute.
fn retry_wait(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(6)).min(60))
}

/// Long-polls `queue` until `stop` resolves, routing each message, and deletes the
/// messages every policy handled as their receipts arrive. A long poll is cancelled
/// when `stop` resolves; a queue that fails is retried with backoff.
pub async fn run_intake<Q: EventQueue>(
    queue: Arc<Q>,
    router: Arc<dyn Router>,
    inbox: Arc<Inbox>,
    mut receipts: mpsc::UnboundedReceiver<String>,
    stop: impl Future<Output = ()> + Send,
) {
    let deleting = {
        let queue = queue.clone();
        async move {
            while let Some(first) = receipts.recv().await {
                let mut batch = vec![first];
                while let Ok(next) = receipts.try_recv() {
                    batch.push(next);
                }
                if let Err(error) = queue.delete(&batch).await {
                    tracing::warn!(%error, messages = batch.len(), "failed to delete handled messages: they come back and are handled again");
                }
            }
        }
    };
    let receiving = async {
        let mut failures = 0;
        loop {
            match queue.receive(20).await {
                Ok(messages) => {
                    failures = 0;
                    for message in &messages {
                        route(message, router.as_ref(), &inbox);
                    }
                }
                Err(error) => {
                    failures += 1;
                    let wait = retry_wait(failures);
                    tracing::warn!(%error, "failed to receive finding events; retrying in {}s", wait.as_secs());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    };
    tokio::select! {
        () = stop => {}
        () = receiving => {}
        () = deleting => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<String>, Mutex<Vec<String>>);

    impl Router for Fixed {
        fn selecting(&self, _: &Finding) -> Vec<String> {
            self.0.clone()
        }
        fn wake(&self, policy: &str) {
            self.1.lock().unwrap().push(policy.to_string());
        }
    }

    fn event(id: &str) -> String {
        serde_json::json!({
            "version": "0", "id": "e1", "detail-type": "GuardDuty Finding",
            "source": "aws.guardduty", "account": "123456789012", "region": "us-east-1",
            "detail": {
                "id": id, "accountId": "123456789012", "region": "us-east-1",
                "type": "Recon:EC2/PortProbeUnprotectedPort", "severity": 5.0,
                "updatedAt": "2026-12-01T00:00:00.000Z",
                "service": {"archived": false, "action": {"actionType": "PORT_PROBE"}}
            }
        })
        .to_string()
    }

    fn message(id: &str, body: String) -> Message {
        Message {
            id: id.into(),
            receipt: format!("r-{id}"),
            body,
        }
    }

    #[test]
    fn a_message_is_deleted_once_every_policy_that_selected_it_handled_it() {
        let (inbox, mut receipts) = Inbox::new();
        let router = Fixed(vec!["a/p".into(), "b/q".into()], Mutex::default());
        assert_eq!(
            route(&message("m1", event("f1")), &router, &inbox),
            Intake::Routed(vec!["a/p".into(), "b/q".into()])
        );
        assert_eq!(*router.1.lock().unwrap(), ["a/p", "b/q"], "both woken");
        let first = inbox.take("a/p");
        inbox.settle(&first, true);
        assert!(receipts.try_recv().is_err(), "b/q has not handled it yet");
        let second = inbox.take("b/q");
        inbox.settle(&second, true);
        assert_eq!(receipts.try_recv().unwrap(), "r-m1");
    }

    #[test]
    fn a_failed_pass_leaves_the_message_to_come_back() {
        let (inbox, mut receipts) = Inbox::new();
        let router = Fixed(vec!["a/p".into(), "b/q".into()], Mutex::default());
        route(&message("m1", event("f1")), &router, &inbox);
        inbox.settle(&inbox.take("a/p"), false);
        inbox.settle(&inbox.take("b/q"), true);
        assert!(receipts.try_recv().is_err(), "not deleted: a/p failed");
    }

    #[test]
    fn an_unreadable_message_is_left_and_one_nobody_selects_is_deleted() {
        let (inbox, mut receipts) = Inbox::new();
        let nobody = Fixed(Vec::new(), Mutex::default());
        assert!(matches!(
            route(&message("bad", "{not json".into()), &nobody, &inbox),
            Intake::Unreadable(_)
        ));
        assert!(receipts.try_recv().is_err());
        assert_eq!(
            route(&message("m2", event("f2")), &nobody, &inbox),
            Intake::Unselected
        );
        assert_eq!(receipts.try_recv().unwrap(), "r-m2");
    }

    #[test]
    fn a_burst_about_one_finding_is_one_finding_for_the_pass() {
        let (inbox, _receipts) = Inbox::new();
        let router = Fixed(vec!["a/p".into()], Mutex::default());
        for n in 0..50 {
            route(&message(&format!("m{n}"), event("f1")), &router, &inbox);
        }
        route(&message("other", event("f2")), &router, &inbox);
        let deliveries = inbox.take("a/p");
        assert_eq!(deliveries.len(), 51);
        let findings = coalesce(&deliveries);
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["f1", "f2"]);
    }

    #[test]
    fn the_intake_backs_off_up_to_a_minute() {
        assert_eq!(retry_wait(1), Duration::from_secs(2));
        assert_eq!(retry_wait(20), Duration::from_secs(60));
    }
}
