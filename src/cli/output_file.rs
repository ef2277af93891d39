//! `--output-file FILE`: the report written whole to a temporary file beside FILE,
//! flushed to disk, then renamed over it, so FILE holds the old report or the new one,
//! never part of one; a write that fails leaves no temporary file and names the path.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Writes what `render` writes into `path`, atomically.
pub fn write(
    path: &Path,
    render: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let failed = || format!("failed to write the report to {}", path.display());
    // Dropped on any error below: the temporary file goes with it.
    let mut file = tempfile::Builder::new()
        .prefix(".report-")
        .tempfile_in(dir)
        .with_context(failed)?;
    {
        let mut out = std::io::BufWriter::new(file.as_file_mut());
        render(&mut out).with_context(failed)?;
        out.flush().with_context(failed)?;
    }
    file.as_file().sync_all().with_context(failed)?;
    file.persist(path)
        .map_err(|e| e.error)
        .with_context(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        write(&path, |out| Ok(out.write_all(b"new")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_failed_render_keeps_the_old_report_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        let error = write(&path, |out| {
            out.write_all(b"half")?;
            anyhow::bail!("the pass's report could not be rendered")
        })
        .unwrap_err();
        assert!(
            format!("{error:#}")
                .starts_with(&format!("failed to write the report to {}", path.display())),
            "{error:#}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_that_does_not_exist_is_named_in_the_error() {
        let error = write(Path::new("/nonexistent/dir/report.json"), |_| Ok(())).unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/dir/report.json"),
            "{error:#}"
        );
    }
}
