//! What the planner remembers between reconciles: when the leader changed, since when each
//! node has shown (or not shown) life, and when swarm-warden last changed membership.
//!
//! Memory only ever makes the planner *more* careful or *more* precise; a fresh process
//! (`--once`) falls back on the nodes' own status timestamps.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::model::{Control, Node, NodeState, Snapshot, UpdateState};
use crate::plan::PlacementFix;

/// Observations carried from one reconcile to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    leader: Option<LeaderSeen>,
    /// First observation of each node without any sign of life, reset by a sign of life.
    lifeless_since: HashMap<String, SystemTime>,
    /// Last observation of each node showing a sign of life: status timestamps older than
    /// this are no evidence of how long it has been lifeless.
    alive_at: HashMap<String, SystemTime>,
    /// First observation of each node as Ready, reset when it is not.
    ready_since: HashMap<String, SystemTime>,
    /// Ghost members of the last snapshot (Down, their raft address held by another live
    /// member): the raft's "reachable" is no sign of life for them.
    ghosts: HashSet<String>,
    /// Nodes seen as raft members: one outside the raft now is an ex-member, not a
    /// promotion that never joined.
    members_seen: HashSet<String>,
    last_membership_change: Option<SystemTime>,
    /// Services swarm-warden added the placement constraint to.
    placement_fixes: HashMap<String, PlacementFix>,
    /// Services whose placement fix was rolled back (or whose last update was seen rolled
    /// back), with the spec and the Ready, Active workers of that moment: the fix is tried
    /// again only once the spec really changed or a worker joined.
    placement_rollbacks: HashMap<String, RolledBack>,
    /// First observation of each EFS volume out of credits at its permitted rate.
    throttled_since: HashMap<String, SystemTime>,
    /// What the previous lease holder passed on, until the first leader sighting uses it.
    inherited: Option<(Handoff, SystemTime)>,
}

/// What one lease holder passes to the next (kept in the lease's labels), so a replica
/// that takes over is no less careful than the one it replaces: it still waits
/// `leader_settle` after a raft leader change and `stabilization` after a membership change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handoff {
    /// The raft leader the holder last saw.
    pub raft_leader: Option<String>,
    /// When the holder saw that leader take over (`None`: it was leader at its first look).
    pub raft_leader_since: Option<SystemTime>,
    /// When the holder last changed raft membership.
    pub last_membership_change: Option<SystemTime>,
    /// Node IDs the holder saw as raft members (still in the node list): a node outside
    /// the raft among them is an ex-member the next holder may remove too.
    pub raft_members: BTreeSet<String>,
}

/// What a rolled-back placement fix was up against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RolledBack {
    /// The service's spec after the rollback ([`crate::model::Service::spec_hash`]).
    spec_hash: String,
    /// The Ready, Active workers then.
    workers: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaderSeen {
    id: String,
    /// When we saw it take over; `None` when it was already leader at our first look.
    since: Option<SystemTime>,
}

impl Memory {
    /// Folds one snapshot in. Snapshots without a leader carry no node list and change
    /// nothing.
    pub fn observe(&mut self, snapshot: &Snapshot) {
        if snapshot.control != Control::Leader {
            return;
        }
        let now = snapshot.observed_at;
        let leader = snapshot
            .nodes
            .iter()
            .find(|n| n.is_leader())
            .map(|n| n.id.clone());
        match (&self.leader, leader) {
            (Some(seen), Some(id)) if seen.id == id => {}
            (Some(_), Some(id)) => {
                self.leader = Some(LeaderSeen {
                    id,
                    since: Some(now),
                })
            }
            (None, Some(id)) => self.leader = Some(LeaderSeen { id, since: None }),
            (_, None) => {}
        }
        self.use_inheritance();
        self.lifeless_since
            .retain(|id, _| snapshot.nodes.iter().any(|n| &n.id == id));
        self.ready_since
            .retain(|id, _| snapshot.nodes.iter().any(|n| &n.id == id));
        if !self.placement_fixes.is_empty() {
            let ids: HashSet<&str> = snapshot.services.iter().map(|s| s.id.as_str()).collect();
            self.placement_fixes
                .retain(|id, _| ids.contains(id.as_str()));
        }
        if !self.placement_rollbacks.is_empty() {
            let ids: HashSet<&str> = snapshot.services.iter().map(|s| s.id.as_str()).collect();
            self.placement_rollbacks
                .retain(|id, _| ids.contains(id.as_str()));
        }
        let mut workers: Option<BTreeSet<String>> = None;
        for service in &snapshot.services {
            // Rolled back now: the current spec is the one rolled back to. An entry for an
            // older rollback (another spec) is replaced, with today's workers.
            let rolled_back = service
                .update
                .as_ref()
                .is_some_and(|u| u.state == UpdateState::RollbackCompleted);
            if rolled_back
                && self
                    .placement_rollbacks
                    .get(&service.id)
                    .is_none_or(|r| r.spec_hash != service.spec_hash)
            {
                self.placement_rollbacks.insert(
                    service.id.clone(),
                    RolledBack {
                        spec_hash: service.spec_hash.clone(),
                        workers: workers
                            .get_or_insert_with(|| crate::plan::worker_set(snapshot))
                            .clone(),
                    },
                );
            }
        }
        for t in &snapshot.telemetry {
            // A gap in usable telemetry ends a streak: what it hides is not counted as
            // throttled (remediation waits; it never starts sooner).
            let throttled = crate::plan::readings::readings(t)
                .is_ok_and(|r| crate::plan::volumes::throttled(r.credits, r.metered, r.storage));
            if throttled {
                self.throttled_since.entry(t.efs_id.clone()).or_insert(now);
            } else {
                self.throttled_since.remove(&t.efs_id);
            }
        }
        self.alive_at
            .retain(|id, _| snapshot.nodes.iter().any(|n| &n.id == id));
        self.members_seen
            .retain(|id| snapshot.nodes.iter().any(|n| &n.id == id));
        self.ghosts = super::quorum::raft::ghost_ids(snapshot)
            .into_iter()
            .collect();
        for node in &snapshot.nodes {
            if node.is_manager() {
                self.members_seen.insert(node.id.clone());
            }
            if self.shows_life(node) {
                self.alive_at.insert(node.id.clone(), now);
                self.lifeless_since.remove(&node.id);
            } else {
                self.lifeless_since.entry(node.id.clone()).or_insert(now);
            }
            if node.state == NodeState::Ready {
                self.ready_since.entry(node.id.clone()).or_insert(now);
            } else {
                self.ready_since.remove(&node.id);
            }
        }
    }

    /// What to pass on to the next lease holder.
    pub fn handoff(&self) -> Handoff {
        Handoff {
            raft_leader: self.leader.as_ref().map(|l| l.id.clone()),
            raft_leader_since: self.leader.as_ref().and_then(|l| l.since),
            last_membership_change: self.last_membership_change,
            raft_members: self.members_seen.iter().cloned().collect(),
        }
    }

    /// Takes over from the previous lease holder at `taken_at`. Its last membership change
    /// counts as ours. A raft leader we have seen take over ourselves keeps our time; one we
    /// only found in place keeps the previous holder's time if it is the same leader, and
    /// otherwise counts as having changed at `taken_at`: it changed after the previous
    /// holder's last renewal, we cannot know exactly when, so we assume the latest moment.
    pub fn adopt(&mut self, previous: Handoff, taken_at: SystemTime) {
        self.last_membership_change = self
            .last_membership_change
            .max(previous.last_membership_change);
        self.members_seen
            .extend(previous.raft_members.iter().cloned());
        self.inherited = Some((previous, taken_at));
        self.use_inheritance();
    }

    fn use_inheritance(&mut self) {
        let Some(seen) = self.leader.as_mut() else {
            return;
        };
        let Some((previous, taken_at)) = self.inherited.take() else {
            return;
        };
        if seen.since.is_none() {
            seen.since = if previous.raft_leader.as_deref() == Some(seen.id.as_str()) {
                previous.raft_leader_since
            } else {
                Some(taken_at)
            };
        }
    }

    /// Records that swarm-warden changed raft membership at `at`.
    pub fn record_membership_change(&mut self, at: SystemTime) {
        self.last_membership_change = Some(at);
    }

    /// Records that swarm-warden added the placement constraint to a service at `at`; a fix
    /// of a service fixed before counts as one more drift.
    pub fn record_placement_fix(&mut self, service_id: &str, at: SystemTime) {
        self.placement_rollbacks.remove(service_id);
        let drifts = self
            .placement_fixes
            .get(service_id)
            .map_or(0, |f| f.drifts + 1);
        self.placement_fixes
            .insert(service_id.to_owned(), PlacementFix { at, drifts });
    }

    /// Records that swarm-warden rolled a placement fix back to the spec hashed `spec_hash`
    /// while `workers` were the Ready, Active workers.
    pub fn record_placement_rollback(
        &mut self,
        service_id: &str,
        spec_hash: String,
        workers: BTreeSet<String>,
    ) {
        self.placement_rollbacks
            .insert(service_id.to_owned(), RolledBack { spec_hash, workers });
    }

    /// Whether a rolled-back placement fix holds `service` back: its last update was rolled
    /// back (as SwarmKit says, or as remembered) and since then neither did its spec change
    /// (an identical `docker stack deploy` is no change) nor did a worker join. A fresh
    /// process that finds a rolled-back service counts from its first look.
    ///
    /// `workers` gives the Ready, Active workers now; it is called only for a service with
    /// a rollback on record.
    pub fn rollback_holds(
        &self,
        service: &crate::model::Service,
        workers: impl FnOnce() -> BTreeSet<String>,
    ) -> bool {
        let rolled_back_now = service
            .update
            .as_ref()
            .is_some_and(|u| u.state == UpdateState::RollbackCompleted);
        match self.placement_rollbacks.get(&service.id) {
            Some(seen) => {
                seen.spec_hash == service.spec_hash
                    && workers().iter().all(|w| seen.workers.contains(w))
            }
            None => rolled_back_now,
        }
    }

    /// The last placement fix swarm-warden made to a service, if any.
    pub fn placement_fix(&self, service_id: &str) -> Option<PlacementFix> {
        self.placement_fixes.get(service_id).copied()
    }

    /// Since when an EFS volume has been seen out of credits at its permitted rate.
    pub fn throttled_since(&self, efs_id: &str) -> Option<SystemTime> {
        self.throttled_since.get(efs_id).copied()
    }

    /// When swarm-warden last changed membership, if it did.
    pub fn last_membership_change(&self) -> Option<SystemTime> {
        self.last_membership_change
    }

    /// When the current leader was seen taking over, if we saw it happen.
    pub fn leader_changed_at(&self) -> Option<SystemTime> {
        self.leader.as_ref().and_then(|l| l.since)
    }

    /// A sign of life: Ready, or a raft member the leader reaches, unless it is a ghost
    /// (see [`super::quorum::raft`]).
    fn shows_life(&self, node: &Node) -> bool {
        node.shows_life() && !self.ghosts.contains(&node.id)
    }

    /// When this process last saw `node` show a sign of life, if it did.
    pub fn alive_at(&self, node: &Node) -> Option<SystemTime> {
        self.alive_at.get(&node.id).copied()
    }

    /// Whether `node` was seen as a raft member (by this process).
    pub fn seen_as_member(&self, node: &Node) -> bool {
        self.members_seen.contains(&node.id)
    }

    /// Since when `node` has been without a sign of life, at the latest: the earlier of our
    /// own first lifeless observation and the node's last status change (when it is Down
    /// now, and only if that change is later than the last sign of life we saw). `None`
    /// when it shows life now.
    ///
    /// The status time is stamped by the raft leader's clock, ours may differ: it counts
    /// `skew` later than it says, so a clock up to `skew` ahead of the leader's never makes
    /// a node lifeless for longer than our own observation would.
    pub fn lifeless_since(&self, node: &Node, skew: Duration) -> Option<SystemTime> {
        if self.shows_life(node) {
            return None;
        }
        // A status time from before the last sign of life we saw is stale: a reachable
        // flicker does not always move `UpdatedAt`.
        let alive_at = self.alive_at.get(&node.id).copied();
        let from_status = (node.state == NodeState::Down)
            .then_some(node.updated_at)
            .flatten()
            .filter(|at| alive_at.is_none_or(|alive| *at > alive))
            .map(|at| at + skew);
        earliest(self.lifeless_since.get(&node.id).copied(), from_status)
    }

    /// Since when `node` has been Ready, at the latest (same evidence rule). Status times
    /// count as they say here: a skewed clock can make a worker qualify for promotion
    /// early, never make a manager dead.
    pub fn ready_since(&self, node: &Node) -> Option<SystemTime> {
        if node.state != NodeState::Ready {
            return None;
        }
        earliest(self.ready_since.get(&node.id).copied(), node.updated_at)
    }
}

fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Reachability;
    use crate::plan::quorum_test_support::{cluster, manager, t};

    #[test]
    fn the_first_leader_seen_has_no_change_time_and_a_new_one_does() {
        let mut memory = Memory::default();
        let mut snap = cluster(vec![manager("a", true), manager("b", false)], t(100));
        memory.observe(&snap);
        assert_eq!(memory.leader_changed_at(), None);
        snap.observed_at = t(200);
        snap.nodes[0].manager.as_mut().unwrap().leader = false;
        snap.nodes[1].manager.as_mut().unwrap().leader = true;
        memory.observe(&snap);
        assert_eq!(memory.leader_changed_at(), Some(t(200)));
    }

    #[test]
    fn a_down_node_counts_from_the_earlier_of_memory_and_its_status_time() {
        let mut memory = Memory::default();
        let mut dead = manager("b", false);
        dead.state = NodeState::Down;
        dead.manager.as_mut().unwrap().reachability = Reachability::Unreachable;
        dead.updated_at = Some(t(500));
        let mut snap = cluster(vec![manager("a", true), dead], t(300));
        memory.observe(&snap);
        assert_eq!(
            memory.lifeless_since(&snap.nodes[1], Duration::ZERO),
            Some(t(300))
        );
        // A leader change re-marks it unknown then down: its timestamp moves, ours does not.
        snap.nodes[1].updated_at = Some(t(900));
        snap.observed_at = t(950);
        memory.observe(&snap);
        assert_eq!(
            memory.lifeless_since(&snap.nodes[1], Duration::ZERO),
            Some(t(300))
        );
    }

    #[test]
    fn a_sign_of_life_resets_the_lifeless_clock() {
        let mut memory = Memory::default();
        let mut node = manager("b", false);
        node.state = NodeState::Down;
        node.manager.as_mut().unwrap().reachability = Reachability::Unreachable;
        let mut snap = cluster(vec![manager("a", true), node], t(100));
        memory.observe(&snap);
        snap.nodes[1].state = NodeState::Ready;
        snap.nodes[1].manager.as_mut().unwrap().reachability = Reachability::Reachable;
        snap.observed_at = t(200);
        memory.observe(&snap);
        snap.nodes[1].state = NodeState::Down;
        snap.nodes[1].manager.as_mut().unwrap().reachability = Reachability::Unreachable;
        // Its status time never moved (t(0)): the life seen at t(200) still counts.
        assert_eq!(snap.nodes[1].updated_at, Some(t(0)));
        snap.observed_at = t(300);
        memory.observe(&snap);
        assert_eq!(
            memory.lifeless_since(&snap.nodes[1], Duration::ZERO),
            Some(t(300))
        );
    }

    #[test]
    fn a_new_holder_waits_as_long_as_the_previous_one_would_have() {
        let snap = cluster(vec![manager("a", true), manager("b", false)], t(100));
        let mut memory = Memory::default();
        memory.observe(&snap);
        memory.adopt(
            Handoff {
                raft_leader: Some("a".into()),
                raft_leader_since: Some(t(40)),
                last_membership_change: Some(t(60)),
                ..Default::default()
            },
            t(120),
        );
        assert_eq!(memory.leader_changed_at(), Some(t(40)));
        assert_eq!(memory.last_membership_change(), Some(t(60)));
        assert_eq!(memory.handoff().raft_leader_since, Some(t(40)));
    }

    #[test]
    fn a_leader_change_after_the_previous_holder_looked_counts_from_the_takeover() {
        let mut memory = Memory::default();
        // Taken over before the first look: the inheritance waits for a leader sighting.
        memory.adopt(
            Handoff {
                raft_leader: Some("old".into()),
                raft_leader_since: None,
                last_membership_change: None,
                ..Default::default()
            },
            t(120),
        );
        assert_eq!(memory.leader_changed_at(), None);
        memory.observe(&cluster(vec![manager("a", true)], t(130)));
        assert_eq!(memory.leader_changed_at(), Some(t(120)));
    }

    #[test]
    fn a_leader_change_seen_by_the_new_holder_itself_keeps_its_own_time() {
        let mut memory = Memory::default();
        let mut snap = cluster(vec![manager("a", true), manager("b", false)], t(100));
        memory.observe(&snap);
        snap.nodes[0].manager.as_mut().unwrap().leader = false;
        snap.nodes[1].manager.as_mut().unwrap().leader = true;
        snap.observed_at = t(200);
        memory.observe(&snap);
        memory.adopt(
            Handoff {
                raft_leader: Some("a".into()),
                raft_leader_since: Some(t(10)),
                last_membership_change: Some(t(300)),
                ..Default::default()
            },
            t(250),
        );
        assert_eq!(memory.leader_changed_at(), Some(t(200)));
        assert_eq!(memory.last_membership_change(), Some(t(300)));
    }

    #[test]
    fn a_new_holder_knows_the_raft_members_the_previous_one_saw() {
        let mut previous = Memory::default();
        previous.observe(&cluster(
            vec![manager("a", true), manager("b", false)],
            t(100),
        ));
        let handoff = previous.handoff();
        assert_eq!(handoff.raft_members.len(), 2);
        let mut b = manager("b", false);
        b.manager = None; // left out of the raft since
        let snap = cluster(vec![manager("a", true), b], t(200));
        let mut next = Memory::default();
        next.observe(&snap);
        assert!(!next.seen_as_member(&snap.nodes[1]));
        next.adopt(handoff, t(150));
        assert!(next.seen_as_member(&snap.nodes[1]));
    }

    #[test]
    fn a_snapshot_without_a_leader_changes_nothing() {
        let mut memory = Memory::default();
        let mut snap = cluster(vec![manager("a", true)], t(100));
        memory.observe(&snap);
        let before = memory.clone();
        snap.control = Control::NoLeader {
            error: "no leader".into(),
        };
        snap.nodes.clear();
        memory.observe(&snap);
        assert_eq!(memory, before);
    }
}
