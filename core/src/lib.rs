//! The pure core of guardduty-operator: domain types and every decision of a pass.
//!
//! Nothing here does I/O, reads a clock or knows about the AWS SDK, Kubernetes or
//! tokio: this crate does not depend on them, so the compiler keeps it that way. The
//! adapters translate to and from these types at the edge.
//!
//! ```text
//!  event (EventBridge JSON) ────────> finding
//!  finding, policy, security_group ─> plan (every decision) ─> Plan
//!  Plan + executor results ─────────> outcome (PassReport) ─> response (per finding)
//!                                                            ─> record (change record, revert plan)
//!  responses + alert record ────────> alert (which alerts, to whom)
//! ```

pub mod address_space;
pub mod alert;
pub mod cidr;
pub mod compliance;
pub mod event;
pub mod finding;
pub mod ids;
pub mod known;
pub mod outcome;
pub mod pace;
pub mod plan;
pub mod policy;
pub mod quiet;
pub mod record;
pub mod response;
pub mod security_group;
pub mod severity;
pub mod time;
pub mod watch;

#[cfg(any(test, feature = "testing"))]
pub mod fixtures;

#[cfg(test)]
mod plan_tests;
