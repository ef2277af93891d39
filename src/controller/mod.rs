//! The Kubernetes side of the operator: the controller that reconciles
//! `GuardDutyPolicy` objects ([`reconcile`]: validate → pass → one [`outcome::Outcome`]
//! → status → events → one patch → metrics), what a reconcile writes back to the
//! cluster ([`status`], [`events`], both pure), leader election ([`leader`]) and its
//! health and Prometheus endpoints ([`server`], [`metrics`]).
pub mod events;
pub mod leader;
pub mod metrics;
pub mod outcome;
pub mod reconcile;
pub mod server;
pub mod status;
