//! What the operator changed in AWS for a policy, kept on the policy's status: the
//! record `deletionPolicy: Revert` undoes (remove the rules the operator added,
//! restore the ones it revoked), bounded so the object stays small.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What happens in AWS when the policy is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the security groups as they are (the default): the fixes stay.
    #[default]
    Retain,
    /// Undo the operator's changes from its own record: remove the rules it added and
    /// restore the rules it revoked (which reopens what the findings reported).
    Revert,
}

/// The most rules each list of the record holds.
pub const MAX_RECORDED_RULES: usize = 500;

/// The operator's changes to security groups, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// Ingress rules the operator added (trusted ranges, narrowed remainders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECORDED_RULES))]
    pub added: Vec<RecordedRule>,
    /// Ingress rules the operator revoked, as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RECORDED_RULES))]
    pub revoked: Vec<RecordedRule>,
    /// True when a list reached its bound and older entries were dropped: a Revert
    /// then restores only what is recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One TCP ingress rule from a CIDR, in a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRule {
    pub group: String,
    /// The rule's id, when AWS reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub from_port: u16,
    pub to_port: u16,
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
