//! Carrying plans out: guards re-checked on fresh state right before each write, per-key
//! backoff after failures, long actions in their own tasks while the loop goes on, and a
//! dry-run mode that records instead of acting.

mod actor;
mod backoff;
mod error;
mod executor;
mod membership;
mod placement;
mod runbooks;
mod running;

pub use backoff::Backoffs;
pub use error::ActError;
pub use executor::Executor;
pub use runbooks::RunbookRunner;
