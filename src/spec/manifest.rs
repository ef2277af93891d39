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
    Yaml(YamlError),
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
    /// and, but for a missing field, its line (`spec.remediation.mode: unknown variant
    /// … at line 29, column 11`).
    #[error("{}", field_message(.path, .error))]
    Field {
        /// Where in the document, as serde_path_to_error writes it (`.`: the root).
        path: String,
        error: YamlError,
    },
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
            ManifestError::Field { .. } => "InvalidField",
        }
    }
}

/// An error of the YAML reader (serde-saphyr), shown on one line with its line and
/// column when it knows them (`… at line 13, column 3`), never with a snippet of the
/// file: the message goes into a status condition, an event and a log line.
#[derive(Debug)]
pub struct YamlError(Box<serde_saphyr::Error>);

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reader places a missing field at the mapping's last key, which misleads:
        // the path before the message names the mapping instead.
        if let serde_saphyr::Error::SerdeMissingField { field, .. } = self.0.without_snippet() {
            return write!(f, "missing field `{field}`");
        }
        let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
        f.write_str(&self.0.render_with_options(options))
    }
}

impl std::error::Error for YamlError {}

/// `path: error`, or the error alone at the document's root.
fn field_message(path: &str, error: &YamlError) -> String {
    if path.is_empty() || path == "." {
        error.to_string()
    } else {
        format!("{path}: {error}")
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
    // First pass: each document as a plain value (empty documents are skipped), to
    // count them and to see what the one document is before reading it as a policy.
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml)
        .map_err(|e| ManifestError::Yaml(YamlError(Box::new(e))))?;
    match documents.as_slice() {
        [] => return Err(ManifestError::Empty),
        [document] => check_type(document)?,
        several => {
            return Err(ManifestError::SeveralDocuments {
                found: several.len(),
            });
        }
    }

    // Second pass: that document read as a policy, straight from the text, so an
    // error names both the field's path and its line.
    FIELD_PATH.with(|path| path.borrow_mut().take());
    let read = serde_saphyr::from_multiple::<Tracked>(yaml);
    let path = FIELD_PATH.with(|path| path.borrow_mut().take());
    match read {
        Ok(mut policies) if policies.len() == 1 => Ok(policies.remove(0).0),
        Ok(_) => Err(ManifestError::Empty),
        Err(error) => {
            let mut path = path.unwrap_or_default();
            // serde_path_to_error's path of an unknown field ends with that field: the
            // mapping that does not know it is named instead.
            if let serde_saphyr::Error::SerdeUnknownField { field, .. } = error.without_snippet()
                && let Some(parent) = path.strip_suffix(field.as_str())
            {
                path = parent.trim_end_matches('.').to_string();
            }
            Err(ManifestError::Field {
                path,
                error: YamlError(Box::new(error)),
            })
        }
    }
}

thread_local! {
    /// Where the last [`Tracked`] read on this thread failed: the reader's multi-document
    /// entry point takes a type, not a value, so the path comes back this way.
    static FIELD_PATH: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A policy read with serde_path_to_error, which tracks the path of a failing field.
struct Tracked(PolicyManifest);

impl<'de> Deserialize<'de> for Tracked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_path_to_error::deserialize(deserializer)
            .map(Tracked)
            .map_err(|error| {
                FIELD_PATH.with(|path| *path.borrow_mut() = Some(error.path().to_string()));
                error.into_inner()
            })
    }
}

/// Is this document a GuardDutyPolicy at all? Checked before its fields, so that
/// another kind of manifest is named as such rather than as a list of unknown fields.
fn check_type(document: &serde_json::Value) -> Result<(), ManifestError> {
    use serde_json::Value;
    let map = match document {
        Value::Object(map) => map,
        Value::Null => return Err(ManifestError::Empty),
        Value::Bool(_) => return Err(ManifestError::NotAMapping { found: "a boolean" }),
        Value::Number(_) => return Err(ManifestError::NotAMapping { found: "a number" }),
        Value::String(_) => return Err(ManifestError::NotAMapping { found: "a string" }),
        Value::Array(_) => return Err(ManifestError::NotAMapping { found: "a list" }),
    };
    let text_of = |key: &str| -> Option<String> {
        map.get(key).map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
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
