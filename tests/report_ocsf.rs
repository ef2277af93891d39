//! The OCSF export against the OCSF 1.7.0 schema, with the offline validator
//! `scripts/ocsf_validate.py` (PyPI pydantic-ocsf, corrected where it departs from the
//! schema) in the venv scripts/test.sh makes (GDO_VENV).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use guardduty_operator::report::{self, sample::Sample};

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("GDO_VENV")
        .filter(|v| !v.is_empty())
        .expect(
            "GDO_VENV is not set: the OCSF test needs the venv with pydantic-ocsf; run the tests \
         with scripts/test.sh (scripts/lib.sh ensure_venv installs it), or export GDO_VENV",
        );
    Path::new(&venv).join("bin/python")
}

fn validate(lines: &str, dir: &Path, name: &str) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, lines).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ocsf_validate.py");
    Command::new(venv_python())
        .arg(script)
        .arg("--strict")
        .arg(&path)
        .output()
        .expect("the venv's python runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn every_ocsf_event_of_the_report_is_valid_against_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let realistic = Sample::realistic();
    let lines = report::ocsf(&realistic.input());
    let output = validate(&lines, dir.path(), "realistic.jsonl");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // Both classes are there, at the version the validator checked.
    assert!(lines.contains("\"class_uid\":2004") && lines.contains("\"class_uid\":7004"));
    assert!(lines.lines().all(|l| l.contains("\"version\":\"1.7.0\"")));

    let large = Sample::large(600, 60);
    let output = validate(&report::ocsf(&large.input()), dir.path(), "large.jsonl");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

#[test]
fn the_validator_refuses_an_event_that_breaks_the_schema() {
    // The validator is live on these events: the same first line, broken three ways,
    // is refused each time, with the attribute named.
    let dir = tempfile::tempdir().unwrap();
    let sample = Sample::realistic();
    let lines = report::ocsf(&sample.input());
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    type Break = (&'static str, fn(&mut serde_json::Value));
    let breaks: [Break; 3] = [
        ("type_uid", |e| e["type_uid"] = serde_json::json!(200499)),
        ("finding_info", |e| {
            e.as_object_mut().unwrap().remove("finding_info");
        }),
        ("time", |e| e["time"] = serde_json::json!("1718000000000")),
    ];
    for (attribute, breaking) in breaks {
        let mut event = first.clone();
        breaking(&mut event);
        let output = validate(&format!("{event}\n"), dir.path(), "broken.jsonl");
        assert_eq!(
            output.status.code(),
            Some(1),
            "{attribute}: {}",
            text(&output)
        );
        assert!(
            text(&output).contains(attribute),
            "{attribute}: {}",
            text(&output)
        );
    }
}
