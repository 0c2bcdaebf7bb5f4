//! Remediation runbooks: journaled state machines stored in the swarm. Each step has a
//! precondition, an action, a verification, a timeout and bounded attempts with backoff;
//! a restarted swarm-warden resumes where the last one stopped and never repeats a
//! finished step.
//!
//! Everything here is pure: a step is a transition `(journal, view, snapshot, policy, now)
//! -> (journal', effects)` ([`advance`]); the runner in `act` reads the view, saves the
//! journal and hands the [`Effect`]s to the one writer. No Docker client in this module.

pub mod effect;
mod migration;
mod padding;
mod pin;
pub mod progress;
mod rollback;
mod transition;

#[cfg(test)]
mod tests;

// The journal is data the snapshot carries and the planner reads: it lives in the model.
pub use crate::model::journal::{
    self, JobPhase, JobProgress, Journal, RunStatus, RunbookKind, Step, StepState,
    UnreadableJournal,
};
pub use crate::model::stored::{Listing, Stored};
pub use effect::{Effect, Job, JobMount, RUN_LABEL};
pub use padding::PAD_DIR;
pub use transition::{advance, effect_failed, Transition, APPROVE_LABEL};

/// Steps of each runbook, in order.
pub fn steps(kind: RunbookKind) -> &'static [&'static str] {
    match kind {
        RunbookKind::EfsPadding => &["preflight", "approval", "pad", "verify"],
        RunbookKind::EbsMigration => &[
            "preflight",
            "approval",
            "create-target",
            "scale-down",
            "copy",
            "swap-mount",
            "scale-up",
            "verify",
        ],
    }
}
