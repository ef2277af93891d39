//! The pure core: domain types and every decision of a pass.
//!
//! Nothing here does I/O, reads a clock or knows about the AWS SDK or Kubernetes;
//! the adapters translate to and from these types at the edge.

pub mod alert;
pub mod cidr;
pub mod finding;
pub mod ids;
pub mod plan;
pub mod policy;
pub mod security_group;
pub mod severity;

#[cfg(test)]
mod plan_tests;
