//! Who counts in the raft arithmetic of one snapshot.
//!
//! SwarmKit's `ManagerStatus.Reachability` is the leader's view of the raft transport; the
//! node's `Status.State` is the dispatcher's view of its heartbeats. When a rebuilt host
//! rejoins as a manager on the old member's address, the leader's raft transport reaches
//! the *new* daemon on that address and calls the *old* member reachable, while the old
//! node is Down (seen in the lab, Engine 20.10): that old member never acks, so counting
//! it would overstate fault tolerance by one. A member is therefore counted reachable only
//! when both views agree.

use crate::model::{Node, NodeState, Role, Snapshot};

/// Label swarm-warden sets on a worker in the same write that promotes it (value: RFC 3339
/// time of the promotion): a node outside the raft with this label is a promotion of ours
/// that never joined, even for a process that did not see it happen.
pub const PROMOTED_AT_LABEL: &str = "swarm-warden.promoted-at";

/// Label swarm-warden sets on a dead manager in the same write that demotes it (value:
/// RFC 3339 time of the demotion): the next process finishes a removal whose `node rm`
/// never ran (the process died in between).
pub const DEMOTED_FOR_REMOVAL_LABEL: &str = "swarm-warden.demoted-for-removal-at";

/// The raft as swarm-warden counts it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RaftView<'a> {
    /// Raft members (nodes with a manager status).
    pub members: Vec<&'a Node>,
    /// Members counted reachable: the leader, and members the raft reaches whose node is
    /// not Down.
    pub reachable: usize,
    /// Down members the raft calls reachable while another live member holds their raft
    /// address: `(ghost, holder)`.
    pub ghosts: Vec<(&'a Node, &'a Node)>,
    /// Down members the raft calls reachable with no such evidence: counted unreachable,
    /// never removed on that alone.
    pub disagreeing: Vec<&'a Node>,
    /// Nodes whose spec says manager but that have no raft membership.
    pub outside: Vec<&'a Node>,
    /// Workers swarm-warden demoted for removal that are still in the node list.
    pub half_removed: Vec<&'a Node>,
}

impl<'a> RaftView<'a> {
    /// The view of `snapshot`'s node list.
    pub fn of(snapshot: &'a Snapshot) -> Self {
        let members: Vec<&Node> = snapshot.nodes.iter().filter(|n| n.is_manager()).collect();
        let mut view = RaftView {
            reachable: members.iter().filter(|m| counts_reachable(m)).count(),
            ..Default::default()
        };
        for node in &members {
            if !node.is_down_but_reachable() {
                continue;
            }
            match address_holder(node, &members) {
                Some(holder) => view.ghosts.push((node, holder)),
                None => view.disagreeing.push(node),
            }
        }
        view.outside = snapshot
            .nodes
            .iter()
            .filter(|n| n.is_manager_outside_raft())
            .collect();
        view.half_removed = snapshot
            .nodes
            .iter()
            .filter(|n| {
                n.role == Role::Worker
                    && !n.is_manager()
                    && n.label(DEMOTED_FOR_REMOVAL_LABEL).is_some()
            })
            .collect();
        view.members = members;
        view
    }
}

/// The leader, or a member the raft reaches whose node is not Down.
pub(crate) fn counts_reachable(node: &Node) -> bool {
    node.is_reachable_manager() && !node.is_down_but_reachable()
}

/// Another live member admitted with `node`'s raft address, if any.
fn address_holder<'a>(node: &Node, members: &[&'a Node]) -> Option<&'a Node> {
    let addr = node.manager.as_ref().map(|m| m.addr.as_str())?;
    if addr.is_empty() {
        return None;
    }
    members.iter().copied().find(|other| {
        other.id != node.id
            && other.state == NodeState::Ready
            && other.manager.as_ref().is_some_and(|m| m.addr == addr)
    })
}

/// IDs of the ghost members of `snapshot` (see [`RaftView::ghosts`]).
pub(crate) fn ghost_ids(snapshot: &Snapshot) -> Vec<String> {
    RaftView::of(snapshot)
        .ghosts
        .iter()
        .map(|(g, _)| g.id.clone())
        .collect()
}
