//! Why the harness could not do what a test asked. Tests usually `expect()` these: a harness
//! failure is a failed test, and the message must say enough to debug it (the server's stderr,
//! the command that failed).

/// A failure of the harness itself (not an assertion about the server's behaviour).
///
/// `Debug` prints the same text as `Display`, so `expect()` shows the server's stderr as lines
/// rather than one escaped string.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The `cstore` binary could not be found or built.
    #[error("cannot get the cstore binary: {0}")]
    Binary(String),
    /// The server exited or did not answer `/v1/health` in time.
    #[error("server did not become healthy: {reason}\n--- server stderr ---\n{stderr}")]
    NotReady {
        /// What happened instead.
        reason: String,
        /// The server's captured stderr.
        stderr: String,
    },
    /// The server did not exit within the bound after SIGTERM.
    #[error(
        "server (pid {pid}) did not exit within {timeout_ms} ms\n--- server stderr ---\n{stderr}"
    )]
    ExitTimeout {
        /// The server's PID.
        pid: u32,
        /// The bound that passed.
        timeout_ms: u64,
        /// The server's captured stderr.
        stderr: String,
    },
    /// A signal could not be delivered.
    #[error("cannot signal pid {pid}: {source}")]
    Signal {
        /// The target PID.
        pid: u32,
        /// The errno.
        source: nix::errno::Errno,
    },
    /// The operation needs a running (or a stopped) server.
    #[error("invalid harness state: {0}")]
    State(&'static str),
    /// A command (such as `cstore token create`) failed.
    #[error("command `{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr.
        stderr: String,
    },
}

impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl HarnessError {
    /// Wraps an IO error with what the harness was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}
