//! Promotions up to `managers.desired`: which worker, and what holds a promotion back.
//!
//! A candidate is a Ready, Active worker, Ready for `managers.stabilization`, not labelled
//! `swarm-warden.promote=false`, whose promotion strands no service kept off managers;
//! managers spread over `managers.spread_label`. Nothing is promoted while a member is
//! unreachable or another promotion has not converged. A worker running a task of a
//! rolling update kept off managers is passed over (its promotion could pause the update,
//! see `placement/rolling.rs`); when every candidate does, the promotion waits.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{elapsed, fault_tolerance, node_ref, raft, NO_PROMOTE_LABEL};
use crate::config::ManagerPolicy;
use crate::model::{Availability, Node, NodeState, Role, Snapshot};
use crate::plan::{
    human, pauses_an_update, strands, Action, Block, BlockKind, Finding, FindingKind, Memory, Plan,
    PlannedAction, Severity,
};

#[allow(clippy::too_many_arguments)]
pub(super) fn plan_promotion(
    snapshot: &Snapshot,
    policy: &ManagerPolicy,
    placement: &crate::config::PlacementPolicy,
    memory: &Memory,
    now: SystemTime,
    members: usize,
    reachable: usize,
    guards: &[Block],
    plan: &mut Plan,
) {
    let desired = policy.desired.get();
    let workers: Vec<&Node> = snapshot
        .nodes
        .iter()
        .filter(|n| !n.is_manager() && n.role == Role::Worker)
        .collect();
    let opted_out = |n: &Node| n.label(NO_PROMOTE_LABEL) == Some("false");
    let healthy: Vec<&Node> = workers
        .iter()
        .copied()
        .filter(|n| {
            n.state == NodeState::Ready && n.availability == Availability::Active && !opted_out(n)
        })
        .collect();
    let stable_for = |n: &Node| {
        memory
            .ready_since(n)
            .map(|since| elapsed(now, since))
            .unwrap_or_default()
    };
    let eligible: Vec<&Node> = healthy
        .iter()
        .copied()
        .filter(|n| stable_for(n) >= policy.stabilization)
        .collect();

    if eligible.is_empty() {
        let message = if let Some(soonest) = healthy
            .iter()
            .map(|n| policy.stabilization - stable_for(n))
            .min()
        {
            plan.requeue_at_most(soonest);
            format!(
                "{members} of {desired} desired managers; the first Ready worker qualifies for promotion in {} (Ready for managers.stabilization {}).",
                human(soonest),
                human(policy.stabilization)
            )
        } else {
            format!(
                "{members} of {desired} desired managers and no worker to promote: {} worker(s), {} Ready, {} Active, {} labelled {NO_PROMOTE_LABEL}=false.",
                workers.len(),
                workers.iter().filter(|n| n.state == NodeState::Ready).count(),
                workers.iter().filter(|n| n.availability == Availability::Active).count(),
                workers.iter().filter(|n| opted_out(n)).count(),
            )
        };
        plan.findings.push(Finding::new(
            FindingKind::NoPromotionCandidate,
            Severity::Warning,
            "cluster",
            message,
        ));
        return;
    }

    // Spread managers over the zone label: the candidate in the zone with the fewest
    // reachable managers, then the one Ready longest, then by name for a stable choice.
    let zone = |n: &Node| n.label(&policy.spread_label).unwrap_or("").to_owned();
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for manager in snapshot.nodes.iter().filter(|n| raft::counts_reachable(n)) {
        *per_zone.entry(zone(manager)).or_default() += 1;
    }
    let managers_in = |n: &Node| per_zone.get(&zone(n)).copied().unwrap_or(0);
    let mut ranked = eligible;
    ranked.sort_by(|a, b| {
        managers_in(a)
            .cmp(&managers_in(b))
            .then_with(|| stable_for(b).cmp(&stable_for(a)))
            .then_with(|| a.hostname.cmp(&b.hostname))
            .then_with(|| a.id.cmp(&b.id))
    });
    // A promoted worker sheds the tasks kept off managers: never promote the one worker
    // such a task can run on. Nor, while another will do, one running a task of a rolling
    // update it would pause. Checked in preference order, so usually once.
    let mut stranding = Vec::new();
    let mut held = Vec::new();
    let mut first_held = None;
    let mut free = None;
    for candidate in ranked {
        if let Some(why) = strands(snapshot, placement, candidate) {
            stranding.push(format!("{}: {why}", candidate.hostname));
            continue;
        }
        if let Some(why) = pauses_an_update(snapshot, placement, candidate, now) {
            held.push(format!("{}: {why}", candidate.hostname));
            first_held.get_or_insert(candidate);
            continue;
        }
        free = Some(candidate);
        break;
    }
    if free.is_some() {
        held.clear();
    }
    let Some(chosen) = free.or(first_held) else {
        plan.findings.push(Finding::new(
            FindingKind::NoPromotionCandidate,
            Severity::Warning,
            "cluster",
            format!(
                "{members} of {desired} desired managers; promoting any eligible worker would strand a service. {}",
                stranding.join(" ")
            ),
        ));
        return;
    };

    let ft_now = fault_tolerance(members, reachable);
    let ft_after = fault_tolerance(members + 1, reachable + 1);
    let zone_note = match zone(chosen) {
        z if z.is_empty() => String::new(),
        z => format!(
            ", {}={z} with {} manager(s)",
            policy.spread_label,
            managers_in(chosen)
        ),
    };
    let reason = format!(
        "The raft has {members} of {desired} desired managers; promoting {} (Ready for {}{zone_note}) makes {} (fault tolerance {ft_now} -> {ft_after}).",
        node_ref(chosen),
        human(stable_for(chosen)),
        members + 1,
    );
    let unreachable = members - reachable;
    let unconverged: Vec<String> = snapshot
        .nodes
        .iter()
        .filter(|n| n.is_manager_outside_raft())
        .map(|n| node_ref(n).to_string())
        .collect();
    let blocked_by = if !unconverged.is_empty() {
        // A promotion that never joins leaves the node role manager, outside the raft:
        // promoting the next worker would likely fail the same way (same join address).
        Some(Block::new(BlockKind::NotConverged, format!(
            "At most one promotion that has not converged: {} has role manager but is no raft member; no other worker is promoted until it joins or its entry is removed.",
            unconverged.join(", ")
        )))
    } else if unreachable > 0 {
        Some(Block::new(BlockKind::ManagersUnreachable, format!(
            "{unreachable} manager(s) unreachable: a promotion waits until they recover or are removed as dead."
        )))
    } else if ft_after < ft_now {
        Some(Block::new(
            BlockKind::LowersFaultTolerance,
            format!("Promoting would lower fault tolerance from {ft_now} to {ft_after}."),
        ))
    } else if let Some(guard) = guards.first() {
        Some(guard.clone())
    } else if !held.is_empty() {
        // Every candidate runs a task of a rolling update it would pause: wait for the
        // update (at most placement.update_timeout from its start).
        plan.requeue_at_most(std::time::Duration::from_secs(15));
        Some(Block::new(
            BlockKind::Placement,
            format!(
                "Every eligible worker runs a task of a rolling update a promotion now could pause. {}.",
                held.join("; ")
            ),
        ))
    } else {
        None
    };
    plan.actions.push(PlannedAction::new(
        Action::PromoteWorker(node_ref(chosen)),
        reason,
        blocked_by,
    ));
}
