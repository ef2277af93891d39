//! Reading a policy file: one `GuardDutyPolicy` document, checked for its kind, its
//! apiVersion, and its fields' names and types, with errors that name the field's
//! path and line.

use serde::{Deserialize, Serialize};

use super::resource::GuardDutyPolicySpec;
use super::{API_VERSION, KIND};

/// A `GuardDutyPolicy` as written in a file: what `kubectl apply -f` sends, and what
/// the command line reads for a pass without a cluster. Other top-level fields (such
/// as the `status` of `kubectl get -o yaml`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyManifest {
    /// Always `guardduty.security.dev/v1alpha1`.
    pub api_version: String,
    /// Always `GuardDutyPolicy`.
    pub kind: String,
    /// The policy's name and namespace.
    pub metadata: ObjectMeta,
    /// What the policy asks for.
    pub spec: GuardDutyPolicySpec,
}

/// The part of the Kubernetes object metadata the operator reads; the other fields
/// (labels, annotations, …) are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The policy's name, unique in its namespace.
    pub name: String,
    /// The namespace of the policy; absent in a file meant for any namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Why a file is not one `GuardDutyPolicy` manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read the manifest as YAML: {0}")]
    Yaml(serde_yaml::Error),
    #[error("the manifest is empty: expected one GuardDutyPolicy document")]
    Empty,
    #[error(
        "expected one GuardDutyPolicy document, found {found}: put each policy in a file of its own"
    )]
    SeveralDocuments { found: usize },
    #[error(
        "expected a GuardDutyPolicy manifest (a mapping with apiVersion, kind, metadata and \
         spec), found {found}"
    )]
    NotAMapping { found: &'static str },
    #[error("kind is {}: expected kind: {}", quoted_or_missing(.found), KIND)]
    WrongKind { found: Option<String> },
    #[error("apiVersion is {}: expected apiVersion: {}", quoted_or_missing(.found), API_VERSION)]
    WrongApiVersion { found: Option<String> },
    /// A field is missing, unknown or of the wrong type; Display names its path
    /// (`spec.remediation.mode: …`) and its line.
    #[error("{}", field_message(.0))]
    Field(serde_path_to_error::Error<serde_yaml::Error>),
}

impl ManifestError {
    /// A short PascalCase name for metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ManifestError::Yaml(_) => "InvalidYaml",
            ManifestError::Empty => "EmptyManifest",
            ManifestError::SeveralDocuments { .. } => "SeveralDocuments",
            ManifestError::NotAMapping { .. } => "NotAManifest",
            ManifestError::WrongKind { .. } => "WrongKind",
            ManifestError::WrongApiVersion { .. } => "WrongApiVersion",
            ManifestError::Field(_) => "InvalidField",
        }
    }
}

/// serde_yaml already writes the path and line of the errors it can place
/// (`spec: unknown field … at line 13 column 3`); the path that serde_path_to_error
/// tracked is added only to those it cannot.
fn field_message(err: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    if err.inner().location().is_some() {
        err.inner().to_string()
    } else {
        err.to_string()
    }
}

fn quoted_or_missing(found: &Option<String>) -> String {
    match found {
        Some(text) => format!("{text:?}"),
        None => "missing".to_string(),
    }
}

/// Reads a file holding one `GuardDutyPolicy`. Empty documents (a trailing `---`)
/// are ignored; the spec is checked for names and types here, and for its rules by
/// [`GuardDutyPolicySpec::validate`].
pub fn parse_manifest(yaml: &str) -> Result<PolicyManifest, ManifestError> {
    // First pass: each document as a plain YAML value, to count them and to see
    // what the one document is before reading it as a policy.
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(document).map_err(ManifestError::Yaml)?;
        if !value.is_null() {
            documents.push((index, value));
        }
    }
    let (index, value) = match documents.as_slice() {
        [] => return Err(ManifestError::Empty),
        [(index, value)] => (*index, value),
        several => {
            return Err(ManifestError::SeveralDocuments {
                found: several.len(),
            });
        }
    };
    check_type(value)?;

    // Second pass: that document read as a policy, straight from the text, so an
    // error names both the field's path and its line.
    let document = serde_yaml::Deserializer::from_str(yaml)
        .nth(index)
        .ok_or(ManifestError::Empty)?;
    serde_path_to_error::deserialize(document).map_err(ManifestError::Field)
}

/// Is this document a GuardDutyPolicy at all? Checked before its fields, so that
/// another kind of manifest is named as such rather than as a list of unknown fields.
fn check_type(document: &serde_yaml::Value) -> Result<(), ManifestError> {
    use serde_yaml::Value;
    let map = match document {
        Value::Mapping(map) => map,
        Value::Null => return Err(ManifestError::Empty),
        Value::Bool(_) => return Err(ManifestError::NotAMapping { found: "a boolean" }),
        Value::Number(_) => return Err(ManifestError::NotAMapping { found: "a number" }),
        Value::String(_) => return Err(ManifestError::NotAMapping { found: "a string" }),
        Value::Sequence(_) => return Err(ManifestError::NotAMapping { found: "a list" }),
        Value::Tagged(_) => {
            return Err(ManifestError::NotAMapping {
                found: "a tagged value",
            });
        }
    };
    let text_of = |key: &str| -> Option<String> {
        map.get(key).map(|value| match value {
            Value::String(text) => text.clone(),
            other => serde_yaml::to_string(other)
                .map(|text| text.trim_end().to_string())
                .unwrap_or_default(),
        })
    };
    let kind = text_of("kind");
    if kind.as_deref() != Some(KIND) {
        return Err(ManifestError::WrongKind { found: kind });
    }
    let api_version = text_of("apiVersion");
    if api_version.as_deref() != Some(API_VERSION) {
        return Err(ManifestError::WrongApiVersion { found: api_version });
    }
    Ok(())
}
