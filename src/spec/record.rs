//! `spec.deletionPolicy`, and the change record it undoes (remove the rules the
//! operator added, restore the ones it revoked), kept on the policy's status.

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

/// The record of what the operator changed, kept in the status: a domain type.
pub use crate::domain::record::{ChangeRecord, MAX_RECORDED_RULES, RecordedRule};
