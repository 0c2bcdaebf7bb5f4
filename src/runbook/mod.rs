//! Remediation runbooks: journaled state machines stored in the swarm. Each step has a
//! precondition, an action, a verification, a timeout and bounded attempts with backoff;
//! a restarted swarm-warden resumes where the last one stopped and never repeats a
//! finished step.

pub mod journal;
pub mod runner;
pub mod store;

pub use journal::{Journal, RunStatus, RunbookKind, Step, StepState};
pub use runner::{steps, Runner, APPROVE_LABEL};
pub use store::{JournalStore, Listing, StoreError, Stored, UnreadableJournal};
