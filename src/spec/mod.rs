//! The `GuardDutyPolicy` resource: the operator's public API, by concern.
//!
//! ```text
//!  policy.yaml ─ manifest::parse_manifest ─> PolicyManifest ─ spec.validate(owner) ─> ValidSpec { policy }
//!               (YAML, one document,                        (validate: every rule; all
//!                apiVersion and kind,                        problems at once, each with
//!                field names and types)                      its path and how to fix it)
//! ```
//!
//! - [`resource`]: the spec types (plain serde structs whose field names are the public
//!   API and whose doc comments are what `kubectl explain gdp.spec` shows), and the
//!   CRD they derive, with a CEL rule for every check CEL can express.
//! - [`status`]: the status types (`kubectl get gdp`, `kubectl describe gdp`).
//! - [`manifest`]: reading a policy file.
//! - [`validate`]: every check, into the planner's [`crate::domain::policy::Policy`].
//! - [`duration`]: Go durations (`5m`, `1h30m`), as Kubernetes users write them.
//! - [`notifications`]: the alert channels; [`record`]: `deletionPolicy` and the
//!   change record.

use std::time::Duration;

pub mod duration;
pub mod manifest;
pub mod notifications;
pub mod record;
pub mod resource;
pub mod status;
pub mod validate;

pub use manifest::{ManifestError, ObjectMeta, PolicyManifest, parse_manifest};
pub use resource::{
    AllTrafficRulesMode, CRD_HEADER, FindingsSpec, GuardDutyPolicy, GuardDutyPolicySpec,
    RemediationMode, RemediationSpec, RevokeMode, SeverityThreshold, crd_yaml,
};
pub use status::*;
pub use validate::{FieldError, InvalidSpec, PolicyOwner, ValidSpec};

pub const API_VERSION: &str = "guardduty.security.dev/v1alpha1";
pub const KIND: &str = "GuardDutyPolicy";

/// The most entries `spec.trustedCidrs` may hold.
pub const MAX_TRUSTED_CIDRS: usize = 50;
/// The most entries `spec.findings.types` may hold.
pub const MAX_FINDING_TYPES: usize = 50;
/// The highest `spec.remediation.maxRulesPerGroup` accepted (AWS's own ceiling is 1000).
pub const MAX_RULES_PER_GROUP_LIMIT: u32 = 1000;
/// The shortest `spec.interval` accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The longest `spec.interval` accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
const INTERVAL_BOUNDS: &str = "from 30s to 24h";
const DEFAULT_INTERVAL: &str = "5m";
/// `spec.fullResyncInterval` when absent (or `interval`, when longer).
const DEFAULT_FULL_RESYNC: Duration = Duration::from_secs(60 * 60);
/// The bounds of `spec.fullResyncInterval`.
const MIN_FULL_RESYNC: Duration = Duration::from_secs(5 * 60);
/// The most regions `spec.regions` may list.
pub const MAX_REGIONS: usize = 32;
/// The most accounts `spec.memberAccounts.accounts` may list.
pub const MAX_MEMBER_ACCOUNTS: usize = 1000;
/// AWS tag keys are at most 128 characters long.
const MAX_TAG_KEY_CHARS: usize = 128;
const MAX_DETECTOR_ID_CHARS: usize = 300;
/// The most entries `spec.notifications` may hold in the CRD (bounds the cost of
/// the unique-names rule, which compares every pair).
pub const MAX_NOTIFICATION_CHANNELS: usize = 32;
