//! guardduty-operator: Amazon GuardDuty findings in, safe security group fixes out.
//!
//! ```text
//!  observe (I/O)                 plan (pure)                   execute (I/O)
//!  GuardDuty ─ findings ─┐
//!  EC2 ─ instances ──────┼─> domain::plan(policy, observed) ─> Plan ─> executor ─> outcomes ─> report
//!  EC2 ─ groups, rules ──┘          (every decision)              (no decisions)
//! ```
//!
//! - [`domain`]: the pure core (types, triage, planner); no I/O, no SDK types.
//! - [`spec`]: the `GuardDutyPolicy` manifest (the public API), its CRD and validation.
//! - [`aws`]: adapters from the AWS SDK to the domain, behind narrow traits.
//! - [`pipeline`]: one pass, observe → plan → execute, shared by the command line
//!   and (next) the controller.
//! - [`report`]: table and JSON output of a pass.
#![forbid(unsafe_code)]

pub mod aws;
pub mod controller;
pub mod domain;
/// A stateful in-memory fake of the AWS ports, for the unit tests.
#[cfg(test)]
pub(crate) mod memory_account;
pub mod notify;
pub mod pipeline;
pub mod ports;
pub mod report;
pub mod spec;
