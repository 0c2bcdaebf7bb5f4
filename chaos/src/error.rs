//! The lab's one error type.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while building, breaking or observing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A lab or node name that would not make valid host names.
    #[error("invalid {what} name {name:?}: {rule}")]
    InvalidName {
        /// `lab` or `node`.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// What a valid name looks like.
        rule: &'static str,
    },

    /// A request that does not fit the lab (unknown node, bad partition, ...).
    #[error("{0}")]
    Usage(String),

    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An external command (ip, nsenter, iptables, ...) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and standard error.
        detail: String,
    },

    /// The Docker Engine API of a node answered with an error.
    #[error("docker API of node {node}: {source}")]
    Docker {
        /// The node asked.
        node: String,
        /// The API error.
        #[source]
        source: bollard::errors::Error,
    },

    /// A node's dockerd did not come up.
    #[error("dockerd of node {node} did not answer within {after:?}; last lines of {}:\n{tail}", log.display())]
    DaemonStart {
        /// The node.
        node: String,
        /// How long we waited.
        after: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },

    /// A condition was not met in time.
    #[error("timed out after {after:?} waiting for {what}; last observed:\n{last}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long we waited.
        after: Duration,
        /// The last observation (usually the node table), for the failure message.
        last: String,
    },

    /// No node of the lab could answer as a manager with a leader.
    #[error("no manager of the lab answered: {0}")]
    NoManager(String),

    /// The machine lacks something the lab needs.
    #[error("{0}")]
    Prerequisite(String),

    /// A state file could not be read or written.
    #[error("lab state {}: {source}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LabError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn docker(node: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let node = node.into();
        move |source| LabError::Docker { node, source }
    }
}

/// Short for results of lab operations.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
