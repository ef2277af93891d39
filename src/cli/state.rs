//! The command line's memory: `--state FILE`, so that a cron job alerts once per
//! finding and change across runs, and keeps the record of what it changed in AWS,
//! as the controller does with the resource's status.
//!
//! A JSON document `{"version": 2, "alerts": [...], "changes": {...}}`. Version 1
//! files (alerts only) are read and upgraded on the next write. Every write goes to a
//! temporary file beside it, is flushed to disk, then renamed over it (and the
//! directory flushed), so a crash leaves the old file or the new one, never half of
//! one. One run at a time: [`lock`] holds `.<name>.lock` beside it for the whole run.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::domain::alert::{AlertRecord, Delivered};
use crate::domain::record::ChangeRecord;
use crate::ports::{Journal, JournalError};

const VERSION: u32 = 2;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    alerts: Vec<Delivered>,
    #[serde(default, skip_serializing_if = "ChangeRecord::is_empty")]
    changes: ChangeRecord,
}

/// Version 1: the alert record alone.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFileV1 {
    #[allow(dead_code)]
    version: u32,
    alerts: Vec<Delivered>,
}

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub alerts: AlertRecord,
    pub changes: ChangeRecord,
}

/// The state in `path`; an empty one when the file does not exist yet.
pub fn load(path: &Path) -> Result<State, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(State::default());
        }
        Err(error) => {
            return Err(format!(
                "failed to read the state file {}: {error}",
                path.display()
            ));
        }
    };
    let damaged = |error: serde_json::Error| {
        format!(
            "the state file {} is not a state this operator wrote ({error}): fix it, or delete \
             it to alert every current finding again (the record of changes goes with it)",
            path.display()
        )
    };
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(damaged)?
        .get("version")
        .and_then(serde_json::Value::as_u64);
    match version {
        Some(1) => {
            let old: StateFileV1 = serde_json::from_str(&text).map_err(damaged)?;
            Ok(State {
                alerts: AlertRecord::from_entries(old.alerts),
                changes: ChangeRecord::default(),
            })
        }
        Some(2) => {
            let state: StateFile = serde_json::from_str(&text).map_err(damaged)?;
            Ok(State {
                alerts: AlertRecord::from_entries(state.alerts),
                changes: state.changes,
            })
        }
        other => Err(format!(
            "the state file {} has version {}, this operator reads versions 1 and {VERSION}",
            path.display(),
            other.map_or_else(|| "none".to_string(), |v| v.to_string())
        )),
    }
}

/// Writes the state to `path` atomically and durably: a temporary file in the same
/// directory, flushed to disk, renamed over `path`, then the directory flushed. A
/// failed write leaves `path` as it was and no temporary file behind.
pub fn save(path: &Path, state: &State) -> Result<(), String> {
    let file = StateFile {
        version: VERSION,
        alerts: state.alerts.entries().cloned().collect(),
        changes: state.changes.clone(),
    };
    let mut text = serde_json::to_string_pretty(&file)
        .map_err(|error| format!("failed to encode the state: {error}"))?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
        .map_err(|error| format!("failed to write the state file {}: {error}", path.display()))
}

/// Writes `bytes` to `path` as one step: nothing half-written is ever seen there.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".gdo-")
        .suffix(".tmp")
        .tempfile_in(directory)?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    // On failure the temporary file is removed when dropped.
    temporary.persist(path).map_err(|error| error.error)?;
    // The rename itself is durable once the directory is.
    if let Ok(dir) = File::open(directory) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The lock of a state file, held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the lock of the state file `path` (`.<name>.lock` beside it), waiting at
/// most `wait` for another run to finish with it.
pub fn lock(path: &Path, wait: Duration) -> Result<StateLock, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let lock_path = path.with_file_name(format!(".{name}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|error| {
            format!(
                "failed to open the lock file {}: {error}",
                lock_path.display()
            )
        })?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => {
                return Ok(StateLock {
                    _file: file,
                    path: lock_path,
                });
            }
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another run holds the state file {} (lock {}) and did not finish within {} s: \
                     wait for it, or raise --lock-timeout",
                    path.display(),
                    lock_path.display(),
                    wait.as_secs()
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(format!(
                    "failed to lock the state file {}: {error}",
                    lock_path.display()
                ));
            }
        }
    }
}

/// The state file as a pass's journal: the intent goes to disk, with the alert record
/// as it was, before the first change.
pub struct StateJournal<'a> {
    pub path: &'a Path,
    pub alerts: &'a AlertRecord,
}

impl Journal for StateJournal<'_> {
    async fn write_ahead(&self, record: &ChangeRecord) -> Result<(), JournalError> {
        save(
            self.path,
            &State {
                alerts: self.alerts.clone(),
                changes: record.clone(),
            },
        )
        .map_err(JournalError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::ResponseKind;
    use crate::domain::ids::FindingId;
    use crate::domain::record::RecordedRule;

    fn alerts() -> AlertRecord {
        AlertRecord::from_entries([Delivered {
            channel: "oncall".into(),
            finding: FindingId::parse("a1b2").unwrap(),
            finding_type: "Recon:EC2/PortProbeUnprotectedPort".into(),
            severity: 8.0,
            response: ResponseKind::Closed,
            since: None,
            account: None,
            region: None,
        }])
    }

    #[test]
    fn a_state_survives_a_save_and_a_load_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap(), State::default());
        let state = State {
            alerts: alerts(),
            changes: ChangeRecord {
                added: vec![RecordedRule {
                    group: "sg-1".into(),
                    account: None,
                    region: Some("us-east-1".into()),
                    rule_id: Some("sgr-1".into()),
                    protocol: "tcp".into(),
                    from_port: 22,
                    to_port: 22,
                    cidr: "10.0.0.0/8".into(),
                    description: None,
                    finding: Some("f1".into()),
                    at: Some("2026-12-01T00:00:00Z".into()),
                }],
                ..ChangeRecord::default()
            },
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["state.json"]);
    }

    #[test]
    fn a_version_one_file_is_read_and_upgraded_on_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(
            &path,
            r#"{"version": 1, "alerts": [{"channel": "oncall", "finding": "a1b2", "type": "Recon:EC2/PortProbeUnprotectedPort", "severity": 8.0, "response": "closed"}]}"#,
        )
        .unwrap();
        let state = load(&path).unwrap();
        assert_eq!(state.alerts, alerts());
        save(&path, &state).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");
        assert_eq!(load(&path).unwrap(), state);
    }

    #[test]
    fn a_damaged_state_file_is_refused_rather_than_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, "{\"version\": 2, \"alerts\": [{\"channel\": 3}]}").unwrap();
        let error = load(&path).unwrap_err();
        assert!(
            error.contains("is not a state this operator wrote"),
            "{error}"
        );
        std::fs::write(&path, "{\"version\": 9, \"alerts\": []}").unwrap();
        assert!(load(&path).unwrap_err().contains("has version 9"));
        std::fs::write(&path, "not json").unwrap();
        assert!(load(&path).unwrap_err().contains("not a state"));
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&path, &State::default()).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        // A directory where the file should be: the rename fails.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), "").unwrap();
        assert!(save(&blocked, &State::default()).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        let temporaries = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(temporaries, 0);
    }

    #[test]
    fn a_second_run_waits_for_the_lock_then_gives_up_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let held = lock(&path, Duration::ZERO).unwrap();
        let error = lock(&path, Duration::from_millis(300)).unwrap_err();
        assert!(
            error.contains("another run holds the state file"),
            "{error}"
        );
        drop(held);
        assert!(lock(&path, Duration::ZERO).is_ok());
    }
}
