//! The command line's alert record: `--state FILE`, so that a cron job alerts once per
//! finding and change across runs, as the controller does with the resource's status.
//!
//! A JSON document `{"version": 1, "alerts": [...]}`, written whole to a temporary file
//! beside it and renamed over it, so a crash never leaves half a record.

use std::path::Path;

use crate::domain::alert::{AlertRecord, Delivered};

const VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    alerts: Vec<Delivered>,
}

/// The record in `path`; an empty one when the file does not exist yet.
pub fn load(path: &Path) -> Result<AlertRecord, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(AlertRecord::default());
        }
        Err(error) => {
            return Err(format!(
                "failed to read the state file {}: {error}",
                path.display()
            ));
        }
    };
    let state: StateFile = serde_json::from_str(&text).map_err(|error| {
        format!(
            "the state file {} is not an alert record ({error}): fix it, or delete it to alert every current finding again",
            path.display()
        )
    })?;
    if state.version != VERSION {
        return Err(format!(
            "the state file {} has version {}, this operator reads version {VERSION}",
            path.display(),
            state.version
        ));
    }
    Ok(AlertRecord::from_entries(state.alerts))
}

/// Writes the record to `path` atomically (a temporary file in the same directory,
/// then a rename).
pub fn save(path: &Path, record: &AlertRecord) -> Result<(), String> {
    let state = StateFile {
        version: VERSION,
        alerts: record.entries().cloned().collect(),
    };
    let text = serde_json::to_string_pretty(&state)
        .map_err(|error| format!("failed to encode the alert record: {error}"))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let temporary = directory.join(format!(".{file_name}.tmp"));
    std::fs::write(&temporary, text + "\n")
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| {
            let _ = std::fs::remove_file(&temporary);
            format!("failed to write the state file {}: {error}", path.display())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::ResponseKind;
    use crate::domain::ids::FindingId;

    #[test]
    fn a_record_survives_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        assert_eq!(load(&path).unwrap(), AlertRecord::default());
        let record = AlertRecord::from_entries([Delivered {
            channel: "oncall".into(),
            finding: FindingId::parse("a1b2").unwrap(),
            finding_type: "Recon:EC2/PortProbeUnprotectedPort".into(),
            severity: 8.0,
            response: ResponseKind::Closed,
        }]);
        save(&path, &record).unwrap();
        assert_eq!(load(&path).unwrap(), record);
        assert!(!dir.path().join(".alerts.json.tmp").exists());
    }

    #[test]
    fn a_damaged_state_file_is_refused_rather_than_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, "{\"version\": 1, \"alerts\": [{\"channel\": 3}]}").unwrap();
        let error = load(&path).unwrap_err();
        assert!(error.contains("is not an alert record"), "{error}");
        assert!(error.ends_with("fix it, or delete it to alert every current finding again"));
        std::fs::write(&path, "{\"version\": 9, \"alerts\": []}").unwrap();
        assert!(load(&path).unwrap_err().contains("has version 9"));
    }
}
