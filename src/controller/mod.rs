//! The Kubernetes side of the operator: the controller that reconciles
//! `GuardDutyPolicy` objects ([`reconcile`]), the AWS adapters it builds per region
//! ([`clients`]), what a reconcile writes back to the cluster ([`status`]), and its health and
//! Prometheus endpoints ([`server`], [`metrics`]).
pub mod clients;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod revert;
pub mod server;
pub mod status;
