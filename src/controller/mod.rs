//! The Kubernetes side of the operator: the controller that reconciles
//! `GuardDutyPolicy` objects ([`reconcile`]), the AWS adapters it builds per region
//! ([`clients`]), and what a reconcile writes back to the cluster ([`status`]).
pub mod clients;
pub mod reconcile;
pub mod status;
