//! Remediation runbooks: journaled state machines stored in the swarm. Each step has a
//! precondition, an action, a verification, a timeout and bounded attempts with backoff;
//! a restarted swarm-warden resumes where the last one stopped and never repeats a
//! finished step.

pub mod runner;
pub mod store;

// The journal is data the snapshot carries and the planner reads: it lives in the model.
pub use crate::model::journal::{
    self, Journal, RunStatus, RunbookKind, Step, StepState, UnreadableJournal,
};
pub use runner::{steps, Runner, APPROVE_LABEL};
pub use store::{JournalStore, Listing, StoreError, Stored};
