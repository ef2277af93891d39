//! The git revision the binary is built from, for `--version` (`unknown` outside a
//! git checkout, or `GDO_GIT_REVISION` when the build sets it).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GDO_GIT_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("GDO_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let output = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            let text = String::from_utf8(output.stdout).ok()?;
            let text = text.trim();
            (output.status.success() && !text.is_empty()).then(|| text.to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=GDO_GIT_REVISION={revision}");
}
