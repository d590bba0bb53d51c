//! What can go wrong in the lab.

use std::time::Duration;

/// Lab failures.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        /// Command line.
        cmd: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// Command line.
        cmd: String,
        /// Exit status.
        status: String,
        /// Its error output.
        stderr: String,
    },
    /// A command ran too long and was killed.
    #[error("`{cmd}` did not finish within {after:?} and was killed")]
    Timeout {
        /// Command line.
        cmd: String,
        /// Limit.
        after: Duration,
    },
    /// The prefix is unusable.
    #[error("invalid lab prefix {0:?}: use 1..=16 characters from [A-Za-z0-9_-]")]
    Prefix(String),
    /// A namespace of this lab is missing.
    #[error("namespace {0} does not exist: run `altroute lab up --prefix <prefix>` first")]
    Missing(String),
    /// A namespace of this lab already exists.
    #[error("namespace {0} already exists: run `altroute lab down --prefix <prefix>` first")]
    Exists(String),
}
