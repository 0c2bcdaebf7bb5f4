//! Carrying plans out: guards re-checked on fresh state right before each write, per-key
//! backoff after failures, and a dry-run mode that records instead of acting.

mod backoff;
mod executor;
pub mod inflight;
mod placement;

pub use backoff::Backoffs;
pub use executor::{ActError, Executor};
