//! Node entries that are not plain managers or workers: ghosts, members whose two health
//! signals disagree, nodes outside the raft with role manager, half-done removals and
//! duplicated hostnames. Each gets a finding that says what it is and what to do; which
//! of them may be removed is decided here too.

use std::collections::BTreeMap;

use super::raft::{RaftView, DEMOTED_FOR_REMOVAL_LABEL, PROMOTED_AT_LABEL};
use super::{node_ref, short_id};
use crate::model::{Node, NodeState};
use crate::plan::{Finding, FindingKind, Memory, Plan, Severity};

/// What an entry that may be removed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gone {
    /// A raft member, Down and unreachable.
    Member,
    /// A raft member, Down, whose raft address a live member holds.
    Ghost,
    /// Role manager outside the raft, not a promotion of ours.
    ExManager,
    /// Demoted by swarm-warden for removal; the `node rm` never ran.
    HalfRemoved,
}

impl Gone {
    /// Whether removing it shrinks the raft.
    pub fn is_member(self) -> bool {
        matches!(self, Gone::Member | Gone::Ghost)
    }
}

/// A promotion of ours that never joined the raft: outside the raft, not Ready, labelled
/// by our promotion, and never seen as a member by this process.
pub(super) fn is_failed_promotion(node: &Node, memory: &Memory) -> bool {
    node.is_manager_outside_raft()
        && node.state != NodeState::Ready
        && node.label(PROMOTED_AT_LABEL).is_some()
        && !memory.seen_as_member(node)
}

/// The entries that may be removed once lifeless for `dead_after`, with what they are.
/// Members whose signals merely disagree and failed promotions are never among them.
pub(super) fn removable<'a>(view: &RaftView<'a>, memory: &Memory) -> Vec<(&'a Node, Gone)> {
    let mut gone: Vec<(&Node, Gone)> = view
        .members
        .iter()
        .filter(|m| m.is_down_and_unreachable())
        .map(|m| (*m, Gone::Member))
        .collect();
    gone.extend(view.ghosts.iter().map(|(g, _)| (*g, Gone::Ghost)));
    gone.extend(
        view.outside
            .iter()
            .filter(|n| is_down(n) && !is_failed_promotion(n, memory))
            .map(|n| (*n, Gone::ExManager)),
    );
    gone.extend(
        view.half_removed
            .iter()
            .filter(|n| is_down(n))
            .map(|n| (*n, Gone::HalfRemoved)),
    );
    gone
}

fn is_down(node: &Node) -> bool {
    matches!(node.state, NodeState::Down | NodeState::Disconnected)
}

/// Findings about the entries that are neither plain managers nor plain workers; removable
/// ones (ghosts included) are reported by the caller with their timers ([`gone_finding`]).
pub(super) fn report(
    view: &RaftView<'_>,
    snapshot_nodes: &[Node],
    memory: &Memory,
    plan: &mut Plan,
) {
    for node in &view.disagreeing {
        plan.findings.push(Finding::new(
            FindingKind::ManagerStatusDisagrees,
            Severity::Warning,
            &node.id,
            format!(
                "Manager {} is Down ({}) while the raft calls it reachable, and no other manager holds its raft address: it is counted as unreachable in the fault tolerance, but not removed on this alone. If its host was rebuilt and rejoined on another node entry, check `docker node ls` for its hostname.",
                node_ref(node),
                if node.message.is_empty() { "no message" } else { node.message.as_str() },
            ),
        ));
    }
    for node in &view.outside {
        if node.state == NodeState::Ready {
            plan.findings.push(Finding::new(
                FindingKind::PromotionInProgress,
                Severity::Info,
                &node.id,
                format!(
                    "Node {} is being promoted (role manager, Ready, not yet a raft member): no other membership change until it joins.",
                    node_ref(node)
                ),
            ));
        } else if node.state == NodeState::Unknown && !is_failed_promotion(node, memory) {
            // Right after `--force-new-cluster` every other node is unknown (a leadership
            // change) until its heartbeats fail; removable entries are Down.
            plan.findings.push(Finding::new(
                FindingKind::ExManager,
                Severity::Warning,
                &node.id,
                format!(
                    "Node {} has role manager but is no raft member, state unknown: a manager left out by `docker swarm init --force-new-cluster`, or a promotion (not swarm-warden's) that never joined. Its entry is removed by ID once it has been Down for managers.dead_after (it holds no raft seat).",
                    node_ref(node)
                ),
            ));
        } else if is_failed_promotion(node, memory) {
            plan.findings.push(Finding::new(
                FindingKind::PromotionFailed,
                Severity::Critical,
                &node.id,
                format!(
                    "swarm-warden promoted {} (at {}), and it never joined the raft: it is role manager, no raft member, {:?}. SwarmKit cannot demote it back (the raft has no such member) and the host stays out of service as a worker too. The usual cause: a promoted node joins the raft through the manager address it first joined the swarm with; if that manager is gone, it keeps dialing it (see the README). No other worker is promoted until this is resolved, because workers that joined through the same address would fail the same way. On the host: `docker swarm leave --force`, then `docker swarm join --token <worker token> <a live manager's address>`; then `docker node rm {}`.",
                    node_ref(node),
                    node.label(PROMOTED_AT_LABEL).unwrap_or("?"),
                    node.state,
                    node.id,
                ),
            ));
        }
    }
    for node in &view.half_removed {
        if node.state == NodeState::Ready {
            plan.findings.push(Finding::new(
                FindingKind::RemovalUnfinished,
                Severity::Warning,
                &node.id,
                format!(
                    "Node {} was demoted by swarm-warden for removal (at {}) but is Ready again, as a worker: it is left in place. If it is to stay, `docker node update --label-rm {DEMOTED_FOR_REMOVAL_LABEL} {}`, or it is removed the next time it is Down for managers.dead_after.",
                    node_ref(node),
                    node.label(DEMOTED_FOR_REMOVAL_LABEL).unwrap_or("?"),
                    node.id,
                ),
            ));
        }
    }
    let mut by_hostname: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for node in snapshot_nodes {
        by_hostname
            .entry(node.hostname.as_str())
            .or_default()
            .push(node);
    }
    for (hostname, nodes) in by_hostname.into_iter().filter(|(_, n)| n.len() > 1) {
        let entries: Vec<String> = nodes
            .iter()
            .map(|n| {
                format!(
                    "{} ({:?}, {})",
                    short_id(&n.id),
                    n.state,
                    if n.is_manager() { "manager" } else { "worker" }
                )
            })
            .collect();
        plan.findings.push(Finding::new(
            FindingKind::DuplicateHostname,
            Severity::Info,
            hostname,
            format!(
                "{} node entries share the hostname {hostname}: {}. A rebuilt host rejoins as a new node; the old entry stays until removed. swarm-warden keys everything on node IDs.",
                nodes.len(),
                entries.join(", ")
            ),
        ));
    }
}

/// The finding of a removable entry, `down_for` into its timer; `dead` once past
/// `dead_after`.
pub(super) fn gone_finding(
    node: &Node,
    gone: Gone,
    view: &RaftView<'_>,
    timer: &str,
    dead: bool,
) -> Finding {
    let who = node_ref(node);
    match gone {
        Gone::Member => Finding::new(
            if dead { FindingKind::DeadManager } else { FindingKind::ManagerUnreachable },
            if dead { Severity::Critical } else { Severity::Warning },
            &node.id,
            format!("Manager {who} has been Down and unreachable for {timer}."),
        ),
        Gone::Ghost => {
            let holder = view
                .ghosts
                .iter()
                .find(|(g, _)| g.id == node.id)
                .map(|(_, h)| node_ref(h).to_string())
                .unwrap_or_default();
            let addr = node.manager.as_ref().map(|m| m.addr.as_str()).unwrap_or("");
            Finding::new(
                FindingKind::GhostManager,
                Severity::Critical,
                &node.id,
                format!(
                    "Manager {who} is Down, but the raft calls it reachable because manager {holder} now answers on its raft address {addr} (a rebuilt host rejoined there). The old member never acks: it is counted as unreachable, and fault tolerance is one less than `docker node ls` suggests. It has been Down for {timer}; {} By hand: `docker node demote {id}` then `docker node rm --force {id}` (by ID: the hostname is shared).",
                    if dead { "it is removed now, by ID." } else { "it is removed by ID once dead." },
                    id = node.id,
                ),
            )
        }
        Gone::ExManager => Finding::new(
            FindingKind::ExManager,
            Severity::Warning,
            &node.id,
            format!(
                "Node {who} has role manager but is no raft member and is {:?}: a manager left out by `docker swarm init --force-new-cluster`, or a promotion (not swarm-warden's) that never joined. It has been without a sign of life for {timer}; {} To bring the host back: `docker swarm leave --force` on it, then join again.",
                node.state,
                if dead { "its entry is removed now, by ID (it holds no raft seat)." } else { "its entry is removed by ID once dead (it holds no raft seat)." },
            ),
        ),
        Gone::HalfRemoved => Finding::new(
            FindingKind::RemovalUnfinished,
            Severity::Warning,
            &node.id,
            format!(
                "Node {who} was demoted by swarm-warden for removal (at {}) and is still in the node list, {:?} for {timer}; {}",
                node.label(DEMOTED_FOR_REMOVAL_LABEL).unwrap_or("?"),
                node.state,
                if dead { "the removal is finished now." } else { "the removal is finished once it has been lifeless for managers.dead_after." },
            ),
        ),
    }
}
