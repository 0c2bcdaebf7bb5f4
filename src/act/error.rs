//! Why an action did not complete.

use std::time::Duration;

use crate::observe::ObserveError;
use crate::plan::human;
use crate::writer::WriteError;

/// Why an action did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The Engine refused or failed a write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The swarm could not be read while checking or waiting.
    #[error("could not observe the swarm: {0}")]
    Observe(#[from] ObserveError),
    /// The change did not show in the node list in time.
    #[error("{what} did not happen within {}", human(*after))]
    NotConverged {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// A placement record could not be written.
    #[error("placement record: {0}")]
    Record(String),
    /// A runbook journal could not be written.
    #[error("runbook journal: {0}")]
    Runbook(String),
    /// A service's rolling update paused or rolled back.
    #[error("the rolling update of {service} ended {state}: {message}")]
    UpdateFailed {
        /// The service.
        service: String,
        /// `Paused`, `RollbackCompleted`, ...
        state: String,
        /// What SwarmKit said.
        message: String,
    },
    /// A placement update could not be seen to its end (reads failed): nothing was rolled
    /// back; its placement record stays for the next reconcile to judge on fresh reads.
    #[error("the placement update of {service} could not be seen to its end ({reason}); it is left as it is, and its placement record stays for the next reconcile")]
    Unobserved {
        /// The service.
        service: String,
        /// Why.
        reason: String,
    },
    /// A placement update did not converge and was rolled back to the previous spec.
    #[error("the placement update of {service} was rolled back: {reason}")]
    RolledBack {
        /// The service.
        service: String,
        /// Why: the update's state and its tasks' errors.
        reason: String,
    },
    /// The lease did not carry a membership change before its first write: nothing was
    /// written (the next holder would not know to wait out its stabilization).
    #[error("the lease did not carry the membership change within {}: nothing written", human(*.0))]
    HandoffNotCarried(Duration),
    /// The task carrying the action out ended without an answer (a panic: a bug).
    #[error("the action's task ended without an answer: {0}")]
    Crashed(String),
    /// Shutdown was requested while waiting.
    #[error("interrupted by shutdown while waiting for {0}")]
    Interrupted(String),
}

/// An observation made while waiting: a transient failure is "not yet" (`None`), any other
/// ends the wait.
pub(super) fn tolerate<T>(observed: Result<T, ObserveError>) -> Result<Option<T>, ActError> {
    match observed {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_transient() => {
            tracing::debug!(error = %e, "Observation failed while waiting");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
