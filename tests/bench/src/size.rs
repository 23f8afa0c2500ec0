//! Release binary size and dependency count of `oai-sse`, built into target dirs of this
//! package (`target/size-default`, `target/size-min`) so other builds are not disturbed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Build {
    pub label: &'static str,
    pub binary: PathBuf,
    pub bytes: u64,
    pub crates: usize,
}

/// The whole binary: the default `tls` with the opt-in `cli` and `mock`.
pub const DEFAULT: (&str, &str, &[&str]) = (
    "--features cli,mock (tls, cli, mock)",
    "size-default",
    &["--features", "cli,mock"],
);
pub const MINIMAL: (&str, &str, &[&str]) = (
    "--no-default-features --features cli (plain HTTP)",
    "size-min",
    &["--no-default-features", "--features", "cli"],
);

fn crate_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the release binary with these feature flags; returns its path and size, and the
/// number of distinct crates in its normal (non-dev, non-build) dependency tree, itself
/// included.
pub fn build(
    (label, dir, flags): (&'static str, &str, &'static [&'static str]),
) -> Result<Build, String> {
    let manifest = crate_root().join("Cargo.toml");
    let target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(dir);
    eprintln!("building oai-sse ({label}) into {}", target.display());
    let status = cargo()
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--bin",
            "oai-sse",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .args(flags)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build ({label}) failed"));
    }
    let binary = target.join("release/oai-sse");
    let bytes = std::fs::metadata(&binary)
        .map_err(|e| format!("{}: {e}", binary.display()))?
        .len();
    let tree = cargo()
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(flags)
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !tree.status.success() {
        return Err(format!("cargo tree ({label}) failed"));
    }
    let crates: BTreeSet<String> = String::from_utf8_lossy(&tree.stdout)
        .lines()
        .map(|l| l.trim_end_matches(" (*)").to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    Ok(Build {
        label,
        binary,
        bytes,
        crates: crates.len(),
    })
}
