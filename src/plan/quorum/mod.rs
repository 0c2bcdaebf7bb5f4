//! Managers: fault tolerance, dead managers, promotions.
//!
//! Rules (see the policy docs): a manager is dead only when Down *and* unreachable for
//! `dead_after` without a break; removal only when SwarmKit's CanRemoveMember rule holds;
//! promotion only when every raft member is reachable; one membership change per round,
//! removals before promotions; nothing from a minority, nothing right after a leader change,
//! nothing in audit mode.

use std::time::{Duration, SystemTime};

use super::{
    human, short_id, Action, Block, BlockKind, Finding, FindingKind, NodeRef, Plan, PlannedAction,
    Severity,
};
use crate::config::{ManagerPolicy, Mode};
use crate::model::{quorum, Control, Node, NodeState, Role, Snapshot};
use crate::plan::Memory;

mod entries;
mod promotion;
pub(crate) mod raft;

use entries::Gone;
use raft::RaftView;
pub use raft::{DEMOTED_FOR_REMOVAL_LABEL, PROMOTED_AT_LABEL};

/// Label that keeps a worker from ever being promoted.
pub const NO_PROMOTE_LABEL: &str = "swarm-warden.promote";

/// Raft arithmetic of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSummary {
    /// All nodes.
    pub nodes: usize,
    /// Raft members.
    pub managers: usize,
    /// Raft members counted reachable: the leader, and members it reaches whose node is
    /// not Down (a Down member the raft calls reachable is counted out, see
    /// [`raft`]).
    pub reachable_managers: usize,
    /// Majority of the raft.
    pub quorum: usize,
    /// How many more managers may be lost without losing quorum (negative: already lost).
    pub fault_tolerance: i64,
    /// The leader.
    pub leader: Option<NodeRef>,
}

impl ClusterSummary {
    /// The summary, or `None` when no leader answered (nothing is known then).
    pub fn of(snapshot: &Snapshot) -> Option<Self> {
        if snapshot.control != Control::Leader {
            return None;
        }
        let view = RaftView::of(snapshot);
        let managers = view.members.len();
        let reachable = view.reachable;
        Some(Self {
            nodes: snapshot.nodes.len(),
            managers,
            reachable_managers: reachable,
            quorum: quorum(managers),
            fault_tolerance: fault_tolerance(managers, reachable),
            leader: snapshot.nodes.iter().find(|n| n.is_leader()).map(node_ref),
        })
    }
}

fn fault_tolerance(members: usize, reachable: usize) -> i64 {
    reachable as i64 - quorum(members) as i64
}

/// SwarmKit's CanRemoveMember rule: after removing an unreachable member from a raft of
/// `members`, the `reachable` managers must still be a majority of the smaller raft.
pub fn can_remove_member(members: usize, reachable: usize) -> bool {
    members >= 1 && reachable >= quorum(members - 1)
}

pub(crate) fn node_ref(node: &Node) -> NodeRef {
    NodeRef {
        id: node.id.clone(),
        hostname: node.hostname.clone(),
    }
}

fn elapsed(now: SystemTime, since: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

pub(super) fn plan_managers(
    snapshot: &Snapshot,
    policy: &ManagerPolicy,
    placement: &crate::config::PlacementPolicy,
    memory: &Memory,
    now: SystemTime,
    plan: &mut Plan,
) {
    if policy.mode == Mode::Off {
        return;
    }
    if let Control::NoLeader { error } = &snapshot.control {
        plan.findings.push(quorum_lost(
            snapshot,
            &format!("No raft leader is reachable from this manager: {error}"),
        ));
        return;
    }
    let view = RaftView::of(snapshot);
    let members = view.members.len();
    let reachable = view.reachable;
    // Members whose signals merely disagree may still ack: quorum is judged lost only on
    // the raft's word or on evidence (ghosts), the fault tolerance shown is pessimistic.
    let acking = reachable + view.disagreeing.len();
    if members > 0 && acking < quorum(members) {
        // A leader that lost its majority keeps answering for a while (until its election
        // timeout makes it step down): its node list is stale, quorum is already gone.
        plan.findings.push(quorum_lost(
            snapshot,
            &format!(
                "Only {acking} of {members} managers are reachable, fewer than the quorum of {}: the raft has lost its majority (the leader still answering will step down).",
                quorum(members)
            ),
        ));
        return;
    }
    count_findings(members, reachable, policy, plan);
    let removable = entries::removable(&view, memory, policy);
    entries::report(
        &view,
        &removable,
        &snapshot.nodes,
        memory,
        policy,
        now,
        plan,
    );

    // Evidence from status times counts `dead_after` later than it says: see
    // `Memory::lifeless_since` (clock skew between this host and the raft leader).
    let skew = policy.dead_after;
    let mut dead: Vec<(&Node, Gone, SystemTime)> = Vec::new();
    let mut reported: Vec<&str> = Vec::new();
    for &(node, gone) in &removable {
        let Some(since) = memory.lifeless_since(node, skew) else {
            continue;
        };
        reported.push(&node.id);
        let down_for = elapsed(now, since);
        let is_dead = down_for >= policy.dead_after;
        let timer = if is_dead {
            format!(
                "{} (managers.dead_after {})",
                human(down_for),
                human(policy.dead_after)
            )
        } else {
            let left = policy.dead_after - down_for;
            plan.requeue_at_most(left);
            format!(
                "{}, dead in {} (managers.dead_after {})",
                human(down_for),
                human(left),
                human(policy.dead_after)
            )
        };
        plan.findings
            .push(entries::gone_finding(node, gone, &view, &timer, is_dead));
        if is_dead {
            dead.push((node, gone, since));
        }
    }
    for manager in view.members.iter().filter(|m| {
        !raft::counts_reachable(m)
            && !m.is_down_but_reachable()
            && !reported.contains(&m.id.as_str())
    }) {
        plan.findings.push(Finding::new(
            FindingKind::ManagerUnreachable,
            Severity::Warning,
            &manager.id,
            format!(
                "Manager {} is not reachable (state {:?}); not dead until Down and unreachable for {}.",
                node_ref(manager),
                manager.state,
                human(policy.dead_after)
            ),
        ));
    }

    let guards = membership_guards(snapshot, policy, memory, now, members, reachable, plan);
    if !dead.is_empty() {
        plan_removals(dead, members, reachable, &guards, now, plan);
        // Never promote and remove in one round.
        return;
    }
    if members < policy.desired.get() {
        promotion::plan_promotion(
            snapshot, policy, placement, memory, now, members, reachable, &guards, plan,
        );
    }
}

fn plan_removals(
    mut dead: Vec<(&Node, Gone, SystemTime)>,
    members: usize,
    reachable: usize,
    guards: &[Block],
    now: SystemTime,
    plan: &mut Plan,
) {
    dead.sort_by(|(a, _, since_a), (b, _, since_b)| {
        since_a.cmp(since_b).then_with(|| a.id.cmp(&b.id))
    });
    let ft_now = fault_tolerance(members, reachable);
    for (i, (node, gone, since)) in dead.into_iter().enumerate() {
        let (after, ft_after) = if gone.is_member() {
            (members - 1, fault_tolerance(members - 1, reachable))
        } else {
            (members, ft_now)
        };
        let what = match gone {
            Gone::Member => "has been Down and unreachable",
            Gone::Ghost => "is a ghost (Down, its raft address held by a live manager)",
            Gone::ExManager => "is outside the raft with role manager, without a sign of life",
            Gone::HalfRemoved => "was demoted for removal and has been without a sign of life",
        };
        let reason = if gone.is_member() {
            format!(
                "{} {what} for {}; removing it shrinks the raft from {members} to {after} members with {reachable} reachable (quorum {} -> {}, fault tolerance {ft_now} -> {ft_after}).",
                node_ref(node),
                human(elapsed(now, since)),
                quorum(members),
                quorum(after),
            )
        } else {
            format!(
                "{} {what} for {}; it holds no raft seat, so removing its entry (by ID) leaves the raft at {members} members (fault tolerance {ft_now}).",
                node_ref(node),
                human(elapsed(now, since)),
            )
        };
        let blocked_by = if i > 0 {
            Some(Block::new(
                BlockKind::OnePerRound,
                "One membership change per round: an earlier dead entry goes first.",
            ))
        } else if gone.is_member() && !can_remove_member(members, reachable) {
            Some(Block::new(BlockKind::CanRemoveMember, format!(
                "SwarmKit's CanRemoveMember rule: {reachable} reachable managers would not be a majority of {after} members."
            )))
        } else if ft_after < ft_now {
            Some(Block::new(
                BlockKind::LowersFaultTolerance,
                format!("Removing it would lower fault tolerance from {ft_now} to {ft_after}."),
            ))
        } else {
            guards.first().cloned()
        };
        plan.actions.push(PlannedAction::new(
            Action::RemoveDeadManager(node_ref(node)),
            reason,
            blocked_by,
        ));
    }
}

/// Reasons no membership change may happen now, most fundamental first.
fn membership_guards(
    snapshot: &Snapshot,
    policy: &ManagerPolicy,
    memory: &Memory,
    now: SystemTime,
    members: usize,
    reachable: usize,
    plan: &mut Plan,
) -> Vec<Block> {
    let mut guards = Vec::new();
    if policy.mode == Mode::Audit {
        guards.push(Block::new(
            BlockKind::Audit,
            "managers.mode is audit: report only.",
        ));
    }
    let local = snapshot
        .nodes
        .iter()
        .find(|n| n.id == snapshot.local.node_id);
    if !local.is_some_and(raft::counts_reachable) {
        guards.push(Block::new(BlockKind::LocalNotReachable, format!(
            "This manager ({}) is not a reachable raft member as the leader sees it: it may be cut off in a minority.",
            short_id(&snapshot.local.node_id)
        )));
    }
    if reachable < quorum(members) {
        guards.push(Block::new(BlockKind::NoMajority, format!(
            "Only {reachable} of {members} managers are reachable (quorum {}): never act without a majority.",
            quorum(members)
        )));
    }
    if let Some(changed) = memory.leader_changed_at() {
        let since = elapsed(now, changed);
        if since < policy.leader_settle {
            plan.requeue_at_most(policy.leader_settle - since);
            guards.push(Block::new(
                BlockKind::LeaderSettling,
                format!(
                    "The raft leader changed {} ago: waiting managers.leader_settle ({}).",
                    human(since),
                    human(policy.leader_settle)
                ),
            ));
        }
    }
    let unknown = snapshot
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Unknown)
        .count();
    if unknown > 0 {
        guards.push(Block::new(BlockKind::NodesUnknown, format!(
            "{unknown} node(s) in state unknown, as after a leader election: waiting until every node has reported."
        )));
    }
    if let Some(last) = memory.last_membership_change() {
        let since = elapsed(now, last);
        if since < policy.stabilization {
            plan.requeue_at_most(policy.stabilization - since);
            guards.push(Block::new(
                BlockKind::Stabilizing,
                format!(
                    "The last membership change was {} ago: waiting managers.stabilization ({}).",
                    human(since),
                    human(policy.stabilization)
                ),
            ));
        }
    }
    // A dead manager mid-removal keeps its place until the removal finishes; anything
    // else in transition means the raft has not converged yet.
    for node in snapshot
        .nodes
        .iter()
        .filter(|n| !n.is_down_and_unreachable())
    {
        let transition = match (node.role, node.is_manager()) {
            (Role::Manager, false)
                if entries::is_promotion_in_progress(node, memory, policy, now) =>
            {
                Some("promotion")
            }
            (Role::Worker, true) => Some("demotion"),
            _ => None,
        };
        if let Some(what) = transition {
            guards.push(Block::new(
                BlockKind::NotConverged,
                format!("The {what} of {} has not converged yet.", node_ref(node)),
            ));
        }
    }
    guards
}

fn count_findings(members: usize, reachable: usize, policy: &ManagerPolicy, plan: &mut Plan) {
    let q = quorum(members);
    let desired = policy.desired.get();
    if members > 0 && members % 2 == 0 {
        plan.findings.push(Finding::new(
            FindingKind::EvenManagerCount,
            Severity::Warning,
            "cluster",
            format!(
                "{members} managers need {q} for quorum and tolerate {} failure(s), no more than {} managers would: keep an odd count.",
                members - q,
                members - 1
            ),
        ));
    }
    if members > 0 && reachable <= q {
        plan.findings.push(Finding::new(
            FindingKind::NoFaultTolerance,
            if members >= 3 { Severity::Critical } else { Severity::Warning },
            "cluster",
            format!("{reachable} of {members} managers reachable, quorum {q}: losing one more manager loses quorum."),
        ));
    }
    if members < desired {
        plan.findings.push(Finding::new(
            FindingKind::ManagersBelowDesired,
            Severity::Warning,
            "cluster",
            format!("The raft has {members} members; managers.desired is {desired}."),
        ));
    } else if members > desired {
        plan.findings.push(Finding::new(
            FindingKind::ManagersAboveDesired,
            Severity::Info,
            "cluster",
            format!(
                "The raft has {members} members; managers.desired is {desired}. Healthy managers are never demoted automatically."
            ),
        ));
    }
}

/// `quorum-lost` with the recovery steps; `cause` says how it was seen.
fn quorum_lost(snapshot: &Snapshot, cause: &str) -> Finding {
    let addr = if snapshot.local.addr.is_empty() {
        "<this manager's address>"
    } else {
        snapshot.local.addr.as_str()
    };
    Finding::new(
        FindingKind::QuorumLost,
        Severity::Critical,
        "cluster",
        format!(
            "Seen from manager {} ({addr}): {cause}\n\
             Either the swarm lost quorum (more than half of its managers are gone) or this manager is cut off in a minority. swarm-warden takes no action without a majority.\n\
             If quorum is lost, recover from ONE surviving manager, the one with the most recent state:\n\
             1. docker swarm init --force-new-cluster --advertise-addr {addr}\n\
             2. docker node ls   (the lost managers show Down, role manager, no manager status: they are no raft members any more)\n\
             3. for each lost manager: docker node rm --force <ID>   (by ID; no demote: the raft has no such member)\n\
             4. restore an odd manager count: docker node promote <healthy worker>, or join new managers with the token from docker swarm join-token manager\n\
             Services, secrets and configs survive: --force-new-cluster keeps this manager's raft data.",
            short_id(&snapshot.local.node_id),
        ),
    )
}

#[cfg(test)]
mod field_tests;
#[cfg(test)]
pub(crate) mod tests;
