//! Node entries that are not plain managers or workers: ghosts, members whose two health
//! signals disagree, nodes outside the raft with role manager, half-done removals and
//! duplicated hostnames. Each gets a finding that says what it is and what to do; which
//! of them may be removed is decided here too.

use std::collections::BTreeMap;

use std::time::SystemTime;

use super::raft::{RaftView, DEMOTED_FOR_REMOVAL_LABEL, PROMOTED_AT_LABEL};
use super::{node_ref, short_id};
use crate::config::ManagerPolicy;
use crate::model::{Node, NodeState};
use crate::plan::{human, Finding, FindingKind, Memory, Plan, Severity};

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

/// A time a node label carries (RFC 3339, written by swarm-warden's clock).
pub(super) fn label_time(node: &Node, key: &str) -> Option<SystemTime> {
    node.label(key)
        .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
}

/// A promotion of ours that never joined the raft: outside the raft, labelled by our
/// promotion more than `convergence_timeout` ago (an unreadable time counts as long ago),
/// and never seen as a member by this process. Ready or not: a promotion Ready for that
/// long without joining has failed too.
pub(super) fn is_failed_promotion(
    node: &Node,
    memory: &Memory,
    policy: &ManagerPolicy,
    now: SystemTime,
) -> bool {
    node.is_manager_outside_raft()
        && node.label(PROMOTED_AT_LABEL).is_some()
        && !memory.seen_as_member(node)
        && label_time(node, PROMOTED_AT_LABEL).is_none_or(|at| {
            now.duration_since(at).unwrap_or_default() >= policy.convergence_timeout
        })
}

/// A promotion under way: outside the raft and Ready, or ours and still within
/// `convergence_timeout` of it. Every membership change waits for it.
pub(super) fn is_promotion_in_progress(
    node: &Node,
    memory: &Memory,
    policy: &ManagerPolicy,
    now: SystemTime,
) -> bool {
    node.is_manager_outside_raft()
        && !is_failed_promotion(node, memory, policy, now)
        && !memory.seen_as_member(node)
        && (node.state == NodeState::Ready || node.label(PROMOTED_AT_LABEL).is_some())
}

/// A removal of ours left half done that may be finished: the node has shown no life
/// since the demotion, as far as anyone can tell (this process saw none, and its status
/// has not changed since the demotion settled: `convergence_timeout`, plus `dead_after`
/// for the clocks). Otherwise the label is stale (the host came back, as a worker) and the
/// node is only reported.
fn is_finishable(node: &Node, memory: &Memory, policy: &ManagerPolicy) -> bool {
    let Some(demoted) = label_time(node, DEMOTED_FOR_REMOVAL_LABEL) else {
        return false;
    };
    let settled = demoted + policy.convergence_timeout + policy.dead_after;
    memory.alive_at(node).is_none_or(|alive| alive <= demoted)
        && node.updated_at.is_none_or(|at| at <= settled)
}

/// The entries that may be removed once lifeless for `dead_after`, with what they are.
/// Never among them: members whose signals merely disagree, failed promotions, nodes
/// outside the raft this process never saw as members (someone else's promotion, or an
/// ex-manager a fresh process cannot tell from one: reported only), and half-done
/// removals whose node has shown life since.
pub(super) fn removable<'a>(
    view: &RaftView<'a>,
    memory: &Memory,
    policy: &ManagerPolicy,
) -> Vec<(&'a Node, Gone)> {
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
            .filter(|n| is_down(n) && memory.seen_as_member(n))
            .map(|n| (*n, Gone::ExManager)),
    );
    gone.extend(
        view.half_removed
            .iter()
            .filter(|n| is_down(n) && is_finishable(n, memory, policy))
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
    removable: &[(&Node, Gone)],
    snapshot_nodes: &[Node],
    memory: &Memory,
    policy: &ManagerPolicy,
    now: SystemTime,
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
    let is_removable = |node: &Node| removable.iter().any(|(r, _)| r.id == node.id);
    for node in &view.outside {
        if is_failed_promotion(node, memory, policy, now) {
            plan.findings.push(Finding::new(
                FindingKind::PromotionFailed,
                Severity::Critical,
                &node.id,
                format!(
                    "swarm-warden promoted {} (at {}), and it has not joined the raft within managers.convergence_timeout ({}): it is role manager, no raft member, {:?}. SwarmKit cannot demote it back (the raft has no such member: `can't find manager in raft memberlist`). The usual cause: a promoted node joins the raft through the manager address it first joined the swarm with; if that manager is gone, it keeps dialing it (see the README). No other worker is promoted until this is resolved, because workers that joined through the same address would fail the same way. On the host: `docker swarm leave --force`, then `docker swarm join --token <worker token> <a live manager's address>`; then `docker node rm {}`.",
                    node_ref(node),
                    node.label(PROMOTED_AT_LABEL).unwrap_or("?"),
                    human(policy.convergence_timeout),
                    node.state,
                    node.id,
                ),
            ));
        } else if is_promotion_in_progress(node, memory, policy, now) {
            plan.findings.push(Finding::new(
                FindingKind::PromotionInProgress,
                Severity::Info,
                &node.id,
                format!(
                    "Node {} is being promoted (role manager, {:?}, not yet a raft member): no other membership change until it joins.",
                    node_ref(node),
                    node.state
                ),
            ));
        } else if !is_removable(node) {
            // Not ours, and not seen as a member by this process: an ex-manager left out by
            // `--force-new-cluster`, or someone else's promotion; a fresh process cannot
            // tell which, so it only reports. (Removable ones are reported with their
            // timers by the caller.)
            plan.findings.push(Finding::new(
                FindingKind::ExManager,
                Severity::Warning,
                &node.id,
                format!(
                    "Node {} has role manager but is no raft member, {:?}: a manager left out by `docker swarm init --force-new-cluster`, or a promotion (not swarm-warden's) that never joined. swarm-warden removes such an entry only once Down for managers.dead_after, and only if it (or the lease holder before it) saw the node as a raft member; every promotion waits meanwhile. If the host is gone: `docker node rm {}` (no demote: the raft has no such member). To bring the host back: `docker swarm leave --force` on it, then join again.",
                    node_ref(node),
                    node.state,
                    node.id,
                ),
            ));
        }
    }
    for node in &view.half_removed {
        if is_removable(node) {
            continue;
        }
        plan.findings.push(Finding::new(
            FindingKind::RemovalUnfinished,
            Severity::Warning,
            &node.id,
            format!(
                "Node {} was demoted by swarm-warden for removal (at {}) but has shown life since (it is {:?}, a worker now): it is left in place. If it is to stay, `docker node update --label-rm {DEMOTED_FOR_REMOVAL_LABEL} {}`.",
                node_ref(node),
                node.label(DEMOTED_FOR_REMOVAL_LABEL).unwrap_or("?"),
                node.state,
                node.id,
            ),
        ));
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
                    if dead { "its removal by ID is planned (see the action's status)." } else { "it is removed by ID once dead." },
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
                if dead { "the removal of its entry by ID is planned (it holds no raft seat; see the action's status)." } else { "its entry is removed by ID once dead (it holds no raft seat)." },
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
                if dead { "finishing the removal is planned (see the action's status)." } else { "the removal is finished once it has been lifeless for managers.dead_after." },
            ),
        ),
    }
}
