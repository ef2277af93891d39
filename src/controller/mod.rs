//! The Kubernetes side of the operator: what a reconcile writes back to the cluster.
pub mod status;
