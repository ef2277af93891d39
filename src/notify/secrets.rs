//! Where channel secrets come from: a Kubernetes Secret in the policy's namespace (the
//! controller) or a directory laid out like a mounted Secret, `DIR/NAME/KEY` (the
//! command line). Values come back as [`SecretValue`]s; errors name the Secret and
//! key, never a value.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::SecretValue;

/// Reads one key of one Secret.
pub trait SecretStore: Send + Sync {
    fn get<'a>(&'a self, name: &'a str, key: &'a str)
    -> BoxFuture<'a, Result<SecretValue, String>>;
}

/// `DIR/NAME/KEY`, as `kubectl create secret generic NAME --from-literal=KEY=…` would
/// be mounted. One trailing newline is dropped (files written with `echo`).
#[derive(Debug, Clone)]
pub struct DirSecrets {
    root: PathBuf,
}

impl DirSecrets {
    pub fn new(root: impl Into<PathBuf>) -> DirSecrets {
        DirSecrets { root: root.into() }
    }
}

/// No secrets at all: the command line without `--secrets-dir`.
#[derive(Debug, Clone, Copy)]
pub struct NoSecrets;

impl SecretStore for NoSecrets {
    fn get<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<SecretValue, String>> {
        Box::pin(async move {
            Err(format!(
                "secret {name}/{key} is needed: pass --secrets-dir DIR with the file DIR/{name}/{key}"
            ))
        })
    }
}

impl SecretStore for DirSecrets {
    fn get<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<SecretValue, String>> {
        Box::pin(async move { read_file_secret(&self.root, name, key).await })
    }
}

async fn read_file_secret(root: &Path, name: &str, key: &str) -> Result<SecretValue, String> {
    // Names and keys are validated (no `/`, no `..` segment alone), but a key such as
    // `..` is still refused here: a reference never leaves its Secret's directory.
    if [name, key]
        .iter()
        .any(|part| part.is_empty() || *part == "." || *part == ".." || part.contains('/'))
    {
        return Err(format!("secret {name}/{key} is not a valid reference"));
    }
    let path = root.join(name).join(key);
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut text = String::from_utf8(bytes)
                .map_err(|_| format!("secret file {} is not UTF-8 text", path.display()))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            if text.is_empty() {
                return Err(format!("secret file {} is empty", path.display()));
            }
            Ok(SecretValue::new(text))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "secret {name}/{key} not found: create the file {}",
            path.display()
        )),
        Err(error) => Err(format!(
            "failed to read the secret file {}: {error}",
            path.display()
        )),
    }
}

/// Secrets of one namespace, read through the API server (`get` on `secrets`).
#[derive(Clone)]
pub struct KubeSecrets {
    api: Api<Secret>,
    namespace: String,
}

impl KubeSecrets {
    pub fn new(client: kube::Client, namespace: &str) -> KubeSecrets {
        KubeSecrets {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }
}

impl SecretStore for KubeSecrets {
    fn get<'a>(
        &'a self,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<SecretValue, String>> {
        Box::pin(async move {
            let namespace = &self.namespace;
            let secret = match self.api.get_opt(name).await {
                Ok(Some(secret)) => secret,
                Ok(None) => {
                    return Err(format!(
                        "Secret {namespace}/{name} not found: create it with the key {key}"
                    ));
                }
                Err(error) => {
                    return Err(format!(
                        "failed to read Secret {namespace}/{name}: {}",
                        crate::ports::error_chain(&error)
                    ));
                }
            };
            let value = secret
                .data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|bytes| String::from_utf8(bytes.0.clone()))
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|data| data.get(key))
                        .map(|text| Ok(text.clone()))
                });
            match value {
                Some(Ok(text)) if !text.trim().is_empty() => {
                    Ok(SecretValue::new(text.trim_end_matches(['\n', '\r'])))
                }
                Some(Ok(_)) => Err(format!("Secret {namespace}/{name} key {key} is empty")),
                Some(Err(_)) => Err(format!(
                    "Secret {namespace}/{name} key {key} is not UTF-8 text"
                )),
                None => Err(format!(
                    "Secret {namespace}/{name} has no key {key}: add it (kubectl edit secret {name} -n {namespace})"
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_secret_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("slack")).unwrap();
        std::fs::write(
            dir.path().join("slack/webhookUrl"),
            "https://hooks.example/T/B/x\n",
        )
        .unwrap();
        let secrets = DirSecrets::new(dir.path());
        let value = secrets.get("slack", "webhookUrl").await.unwrap();
        assert_eq!(value.expose(), "https://hooks.example/T/B/x");
        assert_eq!(format!("{value:?}"), "SecretValue(<redacted>)");
    }

    #[tokio::test]
    async fn a_missing_or_escaping_directory_secret_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = DirSecrets::new(dir.path());
        let error = secrets.get("jira", "token").await.unwrap_err();
        assert!(
            error.starts_with("secret jira/token not found: create the file "),
            "{error}"
        );
        assert!(error.ends_with("jira/token"), "{error}");
        let error = secrets.get("..", "passwd").await.unwrap_err();
        assert_eq!(error, "secret ../passwd is not a valid reference");
        let error = NoSecrets.get("jira", "token").await.unwrap_err();
        assert_eq!(
            error,
            "secret jira/token is needed: pass --secrets-dir DIR with the file DIR/jira/token"
        );
    }
}
