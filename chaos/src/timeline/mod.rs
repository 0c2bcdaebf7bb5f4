//! What a run on a lab swarm looked like over time, for pictures: one lane per node (its
//! state and reachability as seen by the raft leader), fault tolerance as a step line, and
//! marks for the faults injected and swarm-warden's actions with their reasons.
//!
//! A [`Recorder`] samples node tables as a run goes; [`Timeline`] is what it yields, and
//! serializes to JSON so a page can be rendered again later (`swarm-chaos timeline`).
//! [`html`] renders one or more runs side by side as a self-contained page.

pub mod html;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::table::{NodeRow, NodeTable};

/// Several runs shown side by side (the demo: without and with swarm-warden).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The page's title.
    pub title: String,
    /// One paragraph on what was done.
    pub summary: String,
    /// The runs, left to right.
    pub runs: Vec<Run>,
}

/// One run on one lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// What the run was ("Without swarm-warden").
    pub title: String,
    /// Seconds from the run's start to its last sample.
    pub duration_s: f64,
    /// One lane per node, in the order nodes were first seen.
    pub lanes: Vec<Lane>,
    /// Fault tolerance over time: `(seconds, value)`, a step line; `None` when no leader
    /// answered (quorum lost).
    pub fault_tolerance: Vec<(f64, Option<i64>)>,
    /// Faults, actions and other moments.
    pub marks: Vec<Mark>,
    /// How the run ended, as (label, value) rows.
    pub outcome: Vec<(String, String)>,
}

/// One node's states over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    /// Its hostname.
    pub node: String,
    /// Consecutive spans; a gap means the node was not listed (removed, or not yet
    /// joined).
    pub spans: Vec<Span>,
}

/// A stretch of time in one state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Start, in seconds from the run's start.
    pub from_s: f64,
    /// End, in seconds from the run's start.
    pub to_s: f64,
    /// The state.
    pub look: Look,
    /// The state as the node table words it ("ready reachable").
    pub detail: String,
}

/// A node's state, as a lane colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Look {
    /// The raft leader.
    Leader,
    /// A reachable manager.
    Manager,
    /// A manager the leader cannot reach, or one Down.
    ManagerDown,
    /// A Ready worker.
    Worker,
    /// A worker that is not Ready.
    WorkerDown,
    /// Nobody could tell: no leader answered.
    Unknown,
}

impl Look {
    fn of(row: &NodeRow) -> Look {
        match (row.is_manager(), row.leader) {
            (_, true) => Look::Leader,
            (true, false) if row.is_reachable_manager() && row.is_ready() => Look::Manager,
            (true, false) => Look::ManagerDown,
            (false, _) if row.is_ready() => Look::Worker,
            (false, _) => Look::WorkerDown,
        }
    }

    /// A word for legends and hover text.
    pub fn label(self) -> &'static str {
        match self {
            Look::Leader => "leader",
            Look::Manager => "manager, reachable",
            Look::ManagerDown => "manager, down or unreachable",
            Look::Worker => "worker, ready",
            Look::WorkerDown => "worker, down",
            Look::Unknown => "unknown (no leader answered)",
        }
    }
}

/// A moment worth marking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Seconds from the run's start.
    pub at_s: f64,
    /// What kind of moment.
    pub kind: MarkKind,
    /// The node it concerns, if one (the mark is drawn on its lane).
    pub node: Option<String>,
    /// A few words ("kill m2", "remove-dead-manager m2").
    pub label: String,
    /// Why, for hover text (swarm-warden's reason, or what the fault stands for).
    pub detail: String,
}

/// Kinds of marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MarkKind {
    /// A fault the lab injected.
    Fault,
    /// swarm-warden started an action.
    Action,
    /// An action converged.
    ActionDone,
    /// An action failed or was rolled back.
    ActionFailed,
    /// Anything else (quorum lost, swarm-warden started).
    Note,
}

/// Records one run as it goes.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    run: Run,
    /// Lane of every node ID seen, so marks can name a node by ID (as swarm-warden's
    /// log does).
    lanes_by_id: std::collections::BTreeMap<String, String>,
}

impl Recorder {
    /// Starts the clock of a run called `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            start: Instant::now(),
            run: Run {
                title: title.into(),
                duration_s: 0.0,
                lanes: Vec::new(),
                fault_tolerance: Vec::new(),
                marks: Vec::new(),
                outcome: Vec::new(),
            },
            lanes_by_id: std::collections::BTreeMap::new(),
        }
    }

    /// Seconds since the run started.
    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A node table seen now.
    pub fn sample(&mut self, table: &NodeTable) {
        let at = self.now_s();
        self.sample_at(at, table);
    }

    /// A node table seen at `at` seconds: each listed node's lane goes on (or starts a
    /// span in a new state); lanes of nodes not listed stop; fault tolerance steps.
    pub fn sample_at(&mut self, at: f64, table: &NodeTable) {
        // A rebuilt host is listed twice under one hostname (its old entry stays Down):
        // each entry gets its own lane then.
        let twice = |r: &NodeRow| table.by_hostname(&r.hostname).count() > 1;
        let looks: Vec<(String, Look, String)> = table
            .rows
            .iter()
            .map(|r| {
                let lane = if twice(r) {
                    format!("{} ({})", r.hostname, r.id.get(..6).unwrap_or(&r.id))
                } else {
                    r.hostname.clone()
                };
                self.lanes_by_id.insert(r.id.clone(), lane.clone());
                (lane, Look::of(r), row_detail(r))
            })
            .collect();
        self.extend_lanes(at, &looks);
        let members = table.managers().count();
        let reachable = table
            .managers()
            .filter(|m| m.is_reachable_manager() || m.leader)
            .count();
        let ft = reachable as i64 - (members / 2 + 1) as i64;
        self.step_fault_tolerance(at, Some(ft));
    }

    /// No leader answered now: every lane goes on as unknown, fault tolerance is gone.
    pub fn no_leader(&mut self) {
        let at = self.now_s();
        self.no_leader_at(at);
    }

    /// No leader answered at `at` seconds (see [`Recorder::no_leader`]).
    pub fn no_leader_at(&mut self, at: f64) {
        let looks: Vec<(String, Look, String)> = self
            .run
            .lanes
            .iter()
            .filter(|l| {
                l.spans
                    .last()
                    .is_some_and(|s| s.to_s >= self.run.duration_s)
            })
            .map(|l| {
                (
                    l.node.clone(),
                    Look::Unknown,
                    "no leader answered".to_owned(),
                )
            })
            .collect();
        self.extend_lanes(at, &looks);
        self.step_fault_tolerance(at, None);
    }

    fn extend_lanes(&mut self, at: f64, looks: &[(String, Look, String)]) {
        let last = self.run.duration_s;
        for (node, look, detail) in looks {
            let lane = match self.run.lanes.iter().position(|l| &l.node == node) {
                Some(i) => &mut self.run.lanes[i],
                None => {
                    self.run.lanes.push(Lane {
                        node: node.clone(),
                        spans: Vec::new(),
                    });
                    let i = self.run.lanes.len() - 1;
                    &mut self.run.lanes[i]
                }
            };
            match lane.spans.last_mut() {
                // Listed at the last sample too, in the same state: the span goes on.
                Some(span) if span.to_s >= last && span.look == *look && &span.detail == detail => {
                    span.to_s = at;
                }
                // Listed at the last sample in another state: the new one starts there.
                Some(span) if span.to_s >= last => {
                    span.to_s = at;
                    lane.spans.push(Span {
                        from_s: at,
                        to_s: at,
                        look: *look,
                        detail: detail.clone(),
                    });
                }
                _ => lane.spans.push(Span {
                    from_s: at,
                    to_s: at,
                    look: *look,
                    detail: detail.clone(),
                }),
            }
        }
        self.run.duration_s = at;
    }

    fn step_fault_tolerance(&mut self, at: f64, ft: Option<i64>) {
        if self.run.fault_tolerance.last().map(|(_, v)| *v) != Some(ft) {
            self.run.fault_tolerance.push((at, ft));
        }
    }

    /// Marks a moment now; `node` is a lane (hostname) or a node ID seen in a sample.
    pub fn mark(
        &mut self,
        kind: MarkKind,
        node: Option<&str>,
        label: impl Into<String>,
        detail: impl Into<String>,
    ) {
        let at = self.now_s();
        self.mark_at(at, kind, node, label, detail);
    }

    /// Marks a moment at `at` seconds (see [`Recorder::mark`]).
    pub fn mark_at(
        &mut self,
        at: f64,
        kind: MarkKind,
        node: Option<&str>,
        label: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.run.marks.push(Mark {
            at_s: at,
            kind,
            node: node.map(|n| {
                self.lanes_by_id
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| n.to_owned())
            }),
            label: label.into(),
            detail: detail.into(),
        });
    }

    /// Adds a row to the run's outcome.
    pub fn outcome(&mut self, label: impl Into<String>, value: impl Into<String>) {
        self.run.outcome.push((label.into(), value.into()));
    }

    /// The run as recorded, its length stretched to now.
    pub fn finish(mut self) -> Run {
        self.run.duration_s = self.run.duration_s.max(self.now_s());
        self.run
    }

    /// The run as recorded, its length stretched to `end` seconds (a run replayed from a
    /// history, whose clock is not this process's).
    pub fn finish_at(mut self, end: f64) -> Run {
        self.run.duration_s = self.run.duration_s.max(end);
        self.run
    }
}

fn row_detail(row: &NodeRow) -> String {
    let role = if row.is_manager() {
        "manager"
    } else {
        "worker"
    };
    let mut words = vec![row.state.clone(), role.to_owned()];
    if row.leader {
        words.push("leader".into());
    } else if row.is_manager() && !row.reachability.is_empty() {
        words.push(row.reachability.clone());
    }
    words.join(", ")
}

#[cfg(test)]
mod tests;
