//! What the demo says as it goes (timestamped lines, progress) and records for its page.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::warden::{WardenEvent, WardenProcess};
use super::STEP_TIMEOUT;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::progress::{Progress, LINE_EVERY};
use crate::table::NodeTable;
use crate::timeline::{MarkKind, Recorder};

/// Prints timestamped lines and records the run for the page.
pub(super) struct Narrator {
    start: Instant,
    recorder: Mutex<Recorder>,
    progress: Arc<Progress>,
    /// When the last line was printed: off a terminal, a long wait prints a line every
    /// [`LINE_EVERY`] so a log shows the demo is alive.
    last_said: Mutex<Instant>,
}

impl Narrator {
    pub(super) fn new(title: &str, progress: Arc<Progress>) -> Self {
        Self {
            start: Instant::now(),
            recorder: Mutex::new(Recorder::new(title)),
            progress,
            last_said: Mutex::new(Instant::now()),
        }
    }

    pub(super) fn say(&self, what: &str) {
        let at = self.start.elapsed().as_secs_f64();
        self.progress.suspend(|| println!("[{at:>6.1}s] {what}"));
        if let Ok(mut last) = self.last_said.lock() {
            *last = Instant::now();
        }
    }

    /// Names the step now under way on the bar.
    pub(super) fn step(&self, what: &str) {
        self.progress.set_step(what);
    }

    pub(super) fn done_step(&self) {
        self.progress.inc();
    }

    /// Off a terminal, a line if nothing was printed for [`LINE_EVERY`].
    pub(super) fn still_waiting(&self, what: &str) {
        if self.progress.is_drawn() {
            return;
        }
        let quiet = self
            .last_said
            .lock()
            .map(|last| last.elapsed() >= LINE_EVERY)
            .unwrap_or(false);
        if quiet {
            self.say(&format!("... still waiting for {what}"));
        }
    }

    pub(super) fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        // Plain data: a panic elsewhere leaves nothing half-written worth refusing.
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn sample(&self, table: &NodeTable) {
        self.recorder().sample(table);
    }

    pub(super) fn no_leader(&self) {
        self.recorder().no_leader();
    }

    pub(super) fn mark(
        &self,
        kind: MarkKind,
        node: Option<&str>,
        label: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.recorder().mark(kind, node, label, detail);
    }

    /// Prints and marks what swarm-warden did.
    pub(super) fn warden(&self, events: Vec<WardenEvent>) {
        for e in events {
            self.say(&format!("swarm-warden: {}", e.line));
            let node = (!e.target.is_empty()).then_some(e.target.as_str());
            self.mark(e.kind, node, e.label, e.detail);
        }
    }

    pub(super) fn finish(self) -> crate::timeline::Run {
        self.recorder
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .finish()
    }
}

/// Watches the node table and prints what changes.
pub(super) struct Watcher {
    pub(super) table: NodeTable,
}

impl Watcher {
    pub(super) async fn new(lab: &Lab) -> Result<Self> {
        Ok(Self {
            table: lab.node_table().await?,
        })
    }

    pub(super) async fn until(
        &mut self,
        lab: &Lab,
        timeline: &Narrator,
        mut warden: Option<&mut WardenProcess>,
        what: &str,
        done: impl Fn(&NodeTable) -> bool,
    ) -> Result<NodeTable> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        timeline.step(&format!("waiting for {what}"));
        loop {
            if let Some(w) = warden.as_deref_mut() {
                timeline.warden(w.new_actions());
            }
            if let Ok(table) = lab.node_table().await {
                timeline.sample(&table);
                for change in diff(&self.table, &table) {
                    timeline.say(&change);
                }
                self.table = table;
                if done(&self.table) {
                    timeline.done_step();
                    return Ok(self.table.clone());
                }
            }
            if Instant::now() > deadline {
                return Err(LabError::Timeout {
                    what: what.to_owned(),
                    after: STEP_TIMEOUT,
                    last: self.table.to_string(),
                });
            }
            timeline.still_waiting(what);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn status(row: &crate::table::NodeRow) -> String {
    match (row.is_manager(), row.leader) {
        (_, true) => format!("{} leader", row.state),
        (true, false) if row.reachability.is_empty() => format!("{} joining the raft", row.state),
        (true, false) => format!("{} {}", row.state, row.reachability),
        (false, _) => format!("{} worker", row.state),
    }
}

/// Human-readable changes between two node tables.
fn diff(before: &NodeTable, after: &NodeTable) -> Vec<String> {
    let index = |t: &NodeTable| -> BTreeMap<String, String> {
        t.rows.iter().map(|r| (r.id.clone(), status(r))).collect()
    };
    let names: BTreeMap<String, String> = before
        .rows
        .iter()
        .chain(after.rows.iter())
        .map(|r| (r.id.clone(), r.hostname.clone()))
        .collect();
    let (old, new) = (index(before), index(after));
    let mut out = Vec::new();
    for (id, was) in &old {
        match new.get(id) {
            None => out.push(format!("{} removed from the swarm", names[id])),
            Some(now) if now != was => out.push(format!("{}: {was} -> {now}", names[id])),
            _ => {}
        }
    }
    for (id, now) in &new {
        if !old.contains_key(id) {
            out.push(format!("{} joined: {now}", names[id]));
        }
    }
    let count = |t: &NodeTable| {
        let members = t.managers().count();
        let reachable = t
            .managers()
            .filter(|m| m.is_reachable_manager() || m.leader)
            .count();
        (members, reachable)
    };
    if count(before) != count(after) {
        let (members, reachable) = count(after);
        let quorum = members / 2 + 1;
        let mut line = String::new();
        let _ = write!(
            line,
            "raft: {reachable} of {members} managers reachable, quorum {quorum}, fault tolerance {}",
            reachable as i64 - quorum as i64
        );
        out.push(line);
    }
    out
}
