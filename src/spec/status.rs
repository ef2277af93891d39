//! The status of a `GuardDutyPolicy`: what the operator last saw and did, as
//! `kubectl get gdp` and `kubectl describe gdp` show it. Every field is optional: a
//! new policy has no status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MAX_NOTIFICATION_CHANNELS, record};
use crate::domain::compliance::FrameworkState;

/// What the operator last saw and did for a policy: what `kubectl get gdp` and
/// `kubectl describe gdp` show. Every field is optional: a new policy has no status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardDutyPolicyStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `FindingsSynced`, `SecurityGroupsConverged` and
    /// `NotificationsDelivered`, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// When the operator last read the findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// The findings the policy selects, by severity band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<FindingCounts>,

    /// The security groups the findings concern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<SecurityGroupCounts>,

    /// The latest changes and refusals, newest first; at most 50, so the object
    /// stays small whatever the number of findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECENT_ACTIONS))]
    pub recent_actions: Vec<RecentAction>,

    /// In DryRun, the changes the last pass planned and did not make: what `Enforce`
    /// would do. At most 20 groups, each with at most 10 rules to authorize and 10 to
    /// revoke; the rest is counted in `truncated` and `omittedRules`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_plan: Option<PendingPlan>,

    /// What the operator changed in AWS for this policy (bounded): the record
    /// `deletionPolicy: Revert` undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<record::ChangeRecord>,

    /// What each alert channel was last told about each finding still listed, and
    /// which channels failed in the last pass: how alerts stay exactly-once across
    /// restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsStatus>,

    /// The controls of APRA CPS 234, the MAS TRM Guidelines and NIST SP 800-53 r5
    /// that this policy's evidence supports: per framework, each control `Met`,
    /// `NotMet` (the reason names the setting to change) or `NotApplicable`, judged
    /// on the spec and the last full pass. Empty while no pass of the current spec
    /// ran (an invalid spec, AWS not reachable): nothing is claimed then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_COMPLIANCE_FRAMEWORKS))]
    pub compliance: Vec<FrameworkState>,
}

/// The most frameworks `status.compliance` holds (the catalogue has three).
pub const MAX_COMPLIANCE_FRAMEWORKS: usize = 8;

/// The most entries `status.alerts.delivered` holds; a finding new to a channel past
/// it waits until others are resolved (counted in the NotificationsDelivered message).
pub const MAX_ALERT_RECORD: usize = 1000;

/// The alerting state of a policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertsStatus {
    /// What each channel was last told, per finding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ALERT_RECORD))]
    pub delivered: Vec<DeliveredAlert>,
    /// Channels that left an alert undelivered in the last pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_NOTIFICATION_CHANNELS))]
    pub failing_channels: Vec<String>,
}

/// One channel's knowledge of one finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredAlert {
    pub channel: String,
    pub finding: String,
    #[serde(rename = "type")]
    pub finding_type: String,
    /// The highest severity alerted.
    pub severity: f64,
    /// What the operator had done when the channel was last told:
    /// reported, planned, closed, refused or failed.
    pub response: String,
    /// When the channel was first told about the finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The finding's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 12))]
    pub account: Option<String>,
    /// The finding's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub region: Option<String>,
}

/// The most entries `status.recentActions` holds.
pub const MAX_RECENT_ACTIONS: usize = 50;
/// The most groups `status.pendingPlan.groups` holds.
pub const MAX_PENDING_GROUPS: usize = 20;
/// The most rules each of `authorize` and `revoke` of a pending group holds.
pub const MAX_PENDING_RULES: usize = 10;

/// The changes planned and not made (DryRun), bounded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingPlan {
    /// The first groups with a pending change, in group id order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PENDING_GROUPS))]
    pub groups: Vec<PendingGroup>,
    /// How many more groups have a pending change than `groups` lists.
    #[serde(default)]
    pub truncated: u32,
}

/// One group's pending change: rules to add first, then rules to remove.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingGroup {
    /// The security group, such as `sg-0123456789abcdef0`.
    pub group: String,
    /// The GuardDuty finding that brought the group in (the first one, when several do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_id: Option<String>,
    /// Rules to add, such as `10.0.0.0/8 tcp/22`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PENDING_RULES))]
    pub authorize: Vec<String>,
    /// Rules to remove, such as `sgr-0123456789abcdef0 0.0.0.0/0 tcp/22`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_PENDING_RULES))]
    pub revoke: Vec<String>,
    /// How many more rules the change has than `authorize` and `revoke` list.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted_rules: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Findings the policy selects, by GuardDuty severity band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FindingCounts {
    pub total: u32,
    /// Severity 1.0 to 3.9.
    pub low: u32,
    /// Severity 4.0 to 6.9.
    pub medium: u32,
    /// Severity 7.0 to 8.9.
    pub high: u32,
    /// Severity 9.0 to 10.0.
    pub critical: u32,
}

/// The security groups the findings concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SecurityGroupCounts {
    /// Groups under watch: concerned by a finding, or holding the operator's rules.
    pub managed: u32,
    /// Groups where the probed ports are reachable from the trusted ranges only.
    pub converged: u32,
    /// Groups not yet converged: a change planned (DryRun), failed or refused.
    pub pending: u32,
}

/// One change the operator made, or refused to make, to a security group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentAction {
    /// When it happened.
    pub time: Time,
    /// What happened.
    pub kind: ActionKind,
    /// The security group, such as `sg-0123456789abcdef0`.
    pub group: String,
    /// The security group rule id, such as `sgr-0123456789abcdef0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The rule's source CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The rule's protocol when it is not `tcp`: `udp`, `icmp`, `icmpv6` or `-1` (all
    /// traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The rule's ports, such as `22` or `0-21`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// The GuardDuty finding that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_id: Option<String>,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What happened to a security group rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ActionKind {
    /// A rule was added (a trusted range, or the rest of a narrowed rule).
    Authorized,
    /// A rule was removed.
    Revoked,
    /// A change was not made, with the reason in `message` (quota, all-traffic rule).
    Refused,
    /// A change was attempted and failed.
    Failed,
}
