//! Why an action may not run now: a kind for machines (tests, metrics, the report's
//! `blocked_kind`) and a message for people, as findings have.

use std::fmt;

/// What stops an action. Kinds are stable (reports and tests match on them); messages may
/// change wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// The section's `mode` is `audit`: report only.
    Audit,
    /// The manager swarm-warden talks to is not a reachable raft member (it may be cut
    /// off in a minority).
    LocalNotReachable,
    /// Fewer reachable managers than the quorum: never act without a majority.
    NoMajority,
    /// The raft leader changed less than `managers.leader_settle` ago.
    LeaderSettling,
    /// Nodes in state unknown, as after a leader election.
    NodesUnknown,
    /// The last membership change was less than `managers.stabilization` ago.
    Stabilizing,
    /// A promotion or demotion has not converged yet.
    NotConverged,
    /// One membership change per round: another goes first.
    OnePerRound,
    /// SwarmKit's CanRemoveMember rule would refuse the removal.
    CanRemoveMember,
    /// The change would lower fault tolerance.
    LowersFaultTolerance,
    /// Managers are unreachable: a promotion waits until they recover or are removed.
    ManagersUnreachable,
    /// A placement hold (capacity, data, an update in progress, the budget, ...).
    Placement,
    /// A runbook may not start (cooldown, journals in doubt).
    Runbook,
    /// This replica does not hold the lease.
    NotLeader,
    /// The action failed lately: backing off.
    BackingOff,
    /// A running action stands in the way (one membership change, one action per
    /// service, the rolling-update budget).
    InProgress,
    /// On re-check right before the write, the action was no longer needed or its target
    /// was gone.
    NoLongerNeeded,
}

impl BlockKind {
    /// Every kind.
    pub const ALL: [BlockKind; 17] = [
        BlockKind::Audit,
        BlockKind::LocalNotReachable,
        BlockKind::NoMajority,
        BlockKind::LeaderSettling,
        BlockKind::NodesUnknown,
        BlockKind::Stabilizing,
        BlockKind::NotConverged,
        BlockKind::OnePerRound,
        BlockKind::CanRemoveMember,
        BlockKind::LowersFaultTolerance,
        BlockKind::ManagersUnreachable,
        BlockKind::Placement,
        BlockKind::Runbook,
        BlockKind::NotLeader,
        BlockKind::BackingOff,
        BlockKind::InProgress,
        BlockKind::NoLongerNeeded,
    ];

    /// The kind as reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Audit => "audit",
            BlockKind::LocalNotReachable => "local-not-reachable",
            BlockKind::NoMajority => "no-majority",
            BlockKind::LeaderSettling => "leader-settling",
            BlockKind::NodesUnknown => "nodes-unknown",
            BlockKind::Stabilizing => "stabilizing",
            BlockKind::NotConverged => "not-converged",
            BlockKind::OnePerRound => "one-per-round",
            BlockKind::CanRemoveMember => "can-remove-member",
            BlockKind::LowersFaultTolerance => "lowers-fault-tolerance",
            BlockKind::ManagersUnreachable => "managers-unreachable",
            BlockKind::Placement => "placement",
            BlockKind::Runbook => "runbook",
            BlockKind::NotLeader => "not-leader",
            BlockKind::BackingOff => "backing-off",
            BlockKind::InProgress => "in-progress",
            BlockKind::NoLongerNeeded => "no-longer-needed",
        }
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an action is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What kind of reason.
    pub kind: BlockKind,
    /// The reason, for people.
    pub message: String,
}

impl Block {
    /// A block of `kind` saying `message`.
    pub fn new(kind: BlockKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The same block, as found on the re-check right before the write.
    pub fn on_recheck(&self) -> Self {
        Self::new(self.kind, format!("On re-check: {}", self.message))
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_in_the_report_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/report.schema.json")).unwrap();
        let text = schema.to_string();
        for kind in BlockKind::ALL {
            assert!(
                text.contains(&format!("\"{}\"", kind.as_str())),
                "{kind} is missing from docs/report.schema.json"
            );
        }
    }
}
