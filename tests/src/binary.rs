//! Finding the `cstore` binary that the tests run.
//!
//! Cargo does not build another package's binary for our tests, and a binary left over from an
//! older build would test old code. So the first test in a process runs
//! `cargo build -p cstore-server --bin cstore` with the same profile and target dir as the test
//! executable itself (a no-op of well under a second when nothing changed), then uses
//! `<target>/<profile>/cstore`. The build runs once per process behind a `OnceLock`; cargo's own
//! lock on the target dir serializes test processes.
//!
//! `CSTORE_BIN=/path/to/cstore` skips all of this and runs that binary (for example a release
//! build, or one built elsewhere).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::HarnessError;

/// The environment variable naming an explicit binary to test.
pub const BIN_ENV: &str = "CSTORE_BIN";

/// Where a test executable lives: `<target_dir>/<profile_dir_name>/[deps/]exe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildLayout {
    /// The cargo target dir (`target/`).
    pub target_dir: PathBuf,
    /// The profile's output dir (`target/debug`, `target/release`).
    pub profile_dir: PathBuf,
    /// The cargo profile name (`dev`, `release`, or a custom one).
    pub profile: String,
}

impl BuildLayout {
    /// Derives the layout from an executable's path: its dir, or the dir above `deps/`.
    pub fn from_exe(exe: &Path) -> Option<BuildLayout> {
        let mut dir = exe.parent()?;
        if dir.file_name()? == "deps" || dir.file_name()? == "examples" {
            dir = dir.parent()?;
        }
        let dir_name = dir.file_name()?.to_str()?.to_string();
        let profile = match dir_name.as_str() {
            "debug" => "dev".to_string(),
            other => other.to_string(),
        };
        Some(BuildLayout {
            target_dir: dir.parent()?.to_path_buf(),
            profile_dir: dir.to_path_buf(),
            profile,
        })
    }

    /// Where `cstore` is in this layout.
    pub fn cstore_path(&self) -> PathBuf {
        self.profile_dir
            .join(format!("cstore{}", std::env::consts::EXE_SUFFIX))
    }
}

/// The `cstore` binary to test: `CSTORE_BIN`, or a freshly built one next to this executable.
pub fn cstore_binary() -> Result<PathBuf, HarnessError> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| find_or_build().map_err(|e| e.to_string()))
        .clone()
        .map_err(HarnessError::Binary)
}

fn find_or_build() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(HarnessError::Binary(format!(
                "{BIN_ENV}={} is not a file",
                path.display()
            )));
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().map_err(|e| HarnessError::io("current_exe", e))?;
    let layout = BuildLayout::from_exe(&exe).ok_or_else(|| {
        HarnessError::Binary(format!(
            "cannot derive the target dir from {}",
            exe.display()
        ))
    })?;
    build(&layout)?;
    let path = layout.cstore_path();
    if !path.is_file() {
        return Err(HarnessError::Binary(format!(
            "cargo build succeeded but {} is missing",
            path.display()
        )));
    }
    Ok(path)
}

/// Runs `cargo build -p cstore-server --bin cstore` for `layout`'s profile and target dir.
fn build(layout: &BuildLayout) -> Result<(), HarnessError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .join("Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["-p", "cstore-server", "--bin", "cstore"])
        .arg("--profile")
        .arg(&layout.profile)
        .arg("--target-dir")
        .arg(&layout.target_dir);
    // Cargo runs a test with the test package's variables set (CARGO_MANIFEST_DIR,
    // CARGO_PKG_NAME, ...). Some build scripts (ring's) declare `rerun-if-env-changed` on those
    // names, so passing them on would make this build and the next `cargo test` from a shell
    // each rebuild everything above ring, in turn.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let per_package = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || matches!(name, "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR");
        if per_package {
            command.env_remove(name);
        }
    }
    let output = command
        .output()
        .map_err(|e| HarnessError::io(format!("running {command:?}"), e))?;
    if !output.status.success() {
        return Err(HarnessError::Command {
            command: format!("{command:?}"),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_from_a_test_executable_in_deps() {
        let layout = BuildLayout::from_exe(Path::new("/t/target/debug/deps/crud-0123")).unwrap();
        assert_eq!(layout.target_dir, Path::new("/t/target"));
        assert_eq!(layout.profile_dir, Path::new("/t/target/debug"));
        assert_eq!(layout.profile, "dev");
    }

    #[test]
    fn layout_from_a_release_binary() {
        let layout = BuildLayout::from_exe(Path::new("/t/target/release/cstore-load")).unwrap();
        assert_eq!(layout.profile, "release");
        assert_eq!(layout.cstore_path(), Path::new("/t/target/release/cstore"));
    }
}
