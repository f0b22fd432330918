//! Why a peer benchmark could not run. A failure here is reported in the table as "not
//! available: <reason>", never replaced by a number.

use crate::error::HarnessError;

/// A failure to set up or run a peer benchmark.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A peer's executable is not installed.
    #[error("{program} is not installed (apt-get install -y {package})")]
    Missing {
        /// The executable looked for.
        program: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// A peer process could not be spawned or exited early.
    #[error("{name} did not start: {reason}")]
    Start {
        /// Which peer.
        name: String,
        /// What happened, with the tail of its log.
        reason: String,
    },
    /// The cstore harness failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// A network operation failed.
    #[error("{context}: {message}")]
    Net {
        /// What was being done.
        context: String,
        /// The error text.
        message: String,
    },
    /// A workload is not available on this build (a feature has not landed).
    #[error("not available: {0}")]
    Unavailable(String),
}

impl PeerError {
    /// A network error with its context.
    pub fn net(context: impl Into<String>, message: impl ToString) -> PeerError {
        PeerError::Net {
            context: context.into(),
            message: message.to_string(),
        }
    }
}

/// Runs a peer's own tool (`program`, from Debian's `package`) to its end and returns its
/// stdout: `Missing` when it is not installed, an error with its status and stderr when it
/// fails.
pub fn tool_output(
    mut command: std::process::Command,
    program: &str,
    package: &str,
) -> Result<String, PeerError> {
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PeerError::Missing {
            program: program.into(),
            package: package.into(),
        },
        _ => PeerError::net(format!("running {program}"), e),
    })?;
    if !output.status.success() {
        return Err(PeerError::net(
            program,
            format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
