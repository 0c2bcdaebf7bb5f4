//! The campaign's history: one JSON object per line, every time in milliseconds since the
//! campaign started, by the nemesis' own clock (never swarm-warden's, which may be
//! shifted).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};

/// One row of a node table, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Node ID.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// `Spec.Role`: `manager` or `worker`.
    pub role: String,
    /// `ready`, `down`, `unknown`, `disconnected`.
    pub state: String,
    /// `reachable`, `unreachable`, `unknown`; empty without raft membership.
    pub reachability: String,
    /// The raft leader.
    pub leader: bool,
}

impl Row {
    /// A raft member.
    pub fn is_member(&self) -> bool {
        !self.reachability.is_empty()
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum Event {
    /// The campaign started.
    Start {
        /// The seed.
        seed: u64,
        /// Managers and workers at the start.
        managers: usize,
        /// Workers at the start.
        workers: usize,
        /// swarm-warden's `managers.desired`.
        desired: usize,
        /// `managers.dead_after`, ms.
        dead_after_ms: u64,
        /// `managers.leader_settle`, ms.
        leader_settle_ms: u64,
        /// `managers.stabilization`, ms.
        stabilization_ms: u64,
        /// `controller.resync`, ms: how late swarm-warden may see a change.
        resync_ms: u64,
        /// The schedule, as drawn from the seed.
        schedule: serde_json::Value,
    },
    /// A fault was applied to `node` (empty for faults on no one node).
    Fault {
        /// The fault's name.
        fault: String,
        /// The hostnames it hit (a split names the minority).
        nodes: Vec<String>,
        /// What it did, for humans.
        detail: String,
    },
    /// A fault was healed.
    Heal {
        /// The fault's name.
        fault: String,
        /// The hostnames it had hit.
        nodes: Vec<String>,
    },
    /// A fault could not be applied (the swarm's state did not allow it).
    FaultSkipped {
        /// The fault's name.
        fault: String,
        /// Why.
        why: String,
    },
    /// What an operator would do, done by the nemesis (the final repair).
    Operator {
        /// What was done.
        detail: String,
        /// The hostnames involved.
        nodes: Vec<String>,
    },
    /// swarm-warden started against `on`.
    WardenStart {
        /// The manager it talks to.
        on: String,
        /// How far its clock is off, seconds.
        clock_offset_s: i64,
    },
    /// swarm-warden stopped.
    WardenStop {
        /// Killed (SIGKILL) rather than stopped.
        crash: bool,
    },
    /// An action of swarm-warden, from its JSON log.
    Action {
        /// `started`, `done`, `failed`, `rolled-back`.
        phase: String,
        /// `remove-dead-manager`, `promote-worker`, ...
        kind: String,
        /// A node ID or a service name.
        target: String,
        /// The manager the acting swarm-warden talks to.
        on: String,
        /// Its reason or result.
        detail: String,
    },
    /// The node table, as a manager with a leader answered.
    Table {
        /// Every node.
        rows: Vec<Row>,
        /// The manager that answered.
        #[serde(default)]
        from: String,
    },
    /// No manager answered with a leader.
    NoLeader,
    /// The final heal: every fault healed, every host repaired.
    FinalHeal,
    /// The campaign ended.
    End,
}

/// An event at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Milliseconds since the campaign started.
    pub t_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Appends entries to the history file; clones share the file and the clock.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    start: Instant,
    file: Arc<Mutex<File>>,
}

impl History {
    /// A new history at `path` (truncated), its clock starting now.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(LabError::io("create", path))?;
        Ok(Self {
            path: path.to_owned(),
            start: Instant::now(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Milliseconds since the campaign started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records `event` now. A failed write is logged, not fatal: the campaign goes on.
    pub fn record(&self, event: Event) {
        let entry = Entry {
            t_ms: self.now_ms(),
            event,
        };
        let line = match serde_json::to_string(&entry) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "Could not serialize a history entry");
                return;
            }
        };
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = writeln!(file, "{line}") {
            tracing::warn!(error = %e, path = %self.path.display(), "Could not write the history");
        }
    }
}

/// Reads a history file; a line that is not an entry is an error naming the line.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let file = File::open(path).map_err(LabError::io("open", path))?;
    let mut entries = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(LabError::io("read", path))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line).map_err(|e| {
            LabError::Usage(format!(
                "{}:{}: not a history entry: {e}",
                path.display(),
                i + 1
            ))
        })?;
        entries.push(entry);
    }
    Ok(entries)
}
