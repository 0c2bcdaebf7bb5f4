//! Real multi-node Docker Swarm labs on one Linux machine, for tests, demos and chaos.
//!
//! Each node is a `dockerd` in its own network, mount and UTS namespace and its own cgroup,
//! so a swarm of several managers and workers forms in seconds with no registry and no
//! network. Faults are real: node loss kills every process of a node, a freeze stops them
//! (a host stuck in I/O wait), partitions drop packets between namespaces.
//!
//! ```no_run
//! # async fn demo() -> swarm_chaos::Result<()> {
//! use std::time::Duration;
//! use swarm_chaos::{Lab, LabSpec};
//!
//! let lab = Lab::start(LabSpec::new(3, 2)).await?;
//! lab.kill("m3").await?;
//! lab.wait_for_nodes("m3 down", Duration::from_secs(60), |t| {
//!     t.node("m3").is_some_and(|m3| m3.is_down())
//! })
//! .await?;
//! // Dropping `lab` tears it down.
//! # Ok(()) }
//! ```

pub mod browser;
pub mod cgroup;
mod cmd;
mod daemon;
pub mod demo;
pub mod docker_proxy;
pub mod efs;
pub mod efs_model;
mod efs_throttle;
pub mod error;
pub mod footprint;
pub mod image;
mod lab;
mod live;
pub mod meter;
pub mod names;
pub mod nemesis;
mod net;
pub mod partition;
pub mod pending;
pub mod progress;
pub mod prometheus;
pub mod reap;
mod remove;
pub mod replay;
pub mod state;
mod swarm;
pub mod table;
pub mod timeline;
pub mod wait;

pub use cgroup::ProcessState;
pub use efs::{EfsOptions, EfsVolume};
pub use error::{LabError, Result};
pub use image::BUSYBOX_IMAGE;
pub use lab::{default_root, Lab, LabSpec, ROOT_ENV};
pub use names::{LabName, NodeName, Role};
pub use table::{NodeRow, NodeTable};
pub use wait::{wait_until, Probe};
