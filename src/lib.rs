//! guardduty-operator: Amazon GuardDuty findings in, safe security group fixes out.
//!
//! ```text
//!  observe (I/O)                  plan (pure)                     execute (I/O)
//!  GuardDuty ─ findings ─┐
//!  EC2 ─ instances ──────┼─> domain::plan(policy, observed) ─> Plan ─> pass::execute ─> PassReport
//!  EC2 ─ groups, rules ──┘        (every decision)                     (no decisions)
//!
//!  PassReport ─> domain::response (what each finding got) ─> notify (alerts)
//!             ─> controller::status, events, metrics (the cluster) │ cli::report (stdout)
//! ```
//!
//! - [`domain`]: the pure core (its own crate, `guardduty-core`): types, triage, the
//!   planner, the pass's outcome, the change record, alert decisions. No I/O, no SDK.
//! - [`ports`]: the narrow traits a pass needs from AWS, in domain terms (and, with the
//!   `testing` feature, an in-memory account and a failure-injecting wrapper).
//! - [`aws`]: the AWS SDK adapters behind those traits, and their construction.
//! - [`pass`]: one pass, observe → plan → execute → archive, and the Revert executor;
//!   shared by the command line and the controller.
//! - [`notify`]: the six alert channels behind one `Notifier` port, and dispatch.
//! - [`spec`]: the `GuardDutyPolicy` resource (the public API), its status, manifest
//!   parsing and validation, and its CRD.
//! - [`controller`]: the Kubernetes controller: reconcile, status, events, leader
//!   election, metrics.
//! - [`cli`]: the command line and its output.
//! - [`report`]: reports for people and auditors (HTML, JSON, CSV, OCSF), pure.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod controller;
pub mod events;
pub use guardduty_core as domain;
pub mod notify;
pub mod pass;
pub mod ports;
pub mod report;
pub mod spec;
