//! swarm-warden: a reconciliation operator for Docker Swarm.
//!
//! observe -> plan -> act -> report:
//! - [`observe`] reads one [`model::Snapshot`] per reconcile from the Docker Engine API
//!   (list calls only) and turns the event stream into reconcile triggers;
//! - [`plan`] is pure: snapshot + policy + memory + time -> findings and actions, each
//!   with its reason;
//! - [`act`] carries actions out, re-checking each guard on fresh state first, with
//!   per-key backoff; in dry-run it records instead;
//! - [`writer`] is the one module that changes the swarm: every write checks the
//!   [`lease::Claim`] right before it is sent;
//! - [`report`] renders the same plan as text, Markdown or JSON.
//!
//! [`controller`] runs that loop; `main.rs` is the CLI.

pub mod act;
pub mod cli_plugin;
pub mod config;
pub mod controller;
pub mod copy;
pub mod events;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod pad;
pub mod plan;
pub mod report;
pub mod runbook;
pub mod writer;
