//! Managers: fault tolerance, dead managers, promotions.
//!
//! Rules (see the policy docs): a manager is dead only when Down *and* unreachable for
//! `dead_after` without a break; removal only when SwarmKit's CanRemoveMember rule holds;
//! promotion only when every raft member is reachable; one membership change per round,
//! removals before promotions; nothing from a minority, nothing right after a leader change,
//! nothing in audit mode.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{
    human, short_id, Action, Finding, FindingKind, NodeRef, Plan, PlannedAction, Severity,
};
use crate::config::{ManagerPolicy, Mode};
use crate::model::{quorum, Availability, Control, Node, NodeState, Role, Snapshot};
use crate::plan::{strands, Memory};

/// Label that keeps a worker from ever being promoted.
pub const NO_PROMOTE_LABEL: &str = "swarm-warden.promote";

/// Raft arithmetic of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSummary {
    /// All nodes.
    pub nodes: usize,
    /// Raft members.
    pub managers: usize,
    /// Raft members the leader reaches (itself included).
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
        let managers = snapshot.nodes.iter().filter(|n| n.is_manager()).count();
        let reachable = snapshot
            .nodes
            .iter()
            .filter(|n| n.is_reachable_manager())
            .count();
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
    let managers: Vec<&Node> = snapshot.nodes.iter().filter(|n| n.is_manager()).collect();
    let members = managers.len();
    let reachable = managers.iter().filter(|m| m.is_reachable_manager()).count();
    if members > 0 && reachable < quorum(members) {
        // A leader that lost its majority keeps answering for a while (until its election
        // timeout makes it step down): its node list is stale, quorum is already gone.
        plan.findings.push(quorum_lost(
            snapshot,
            &format!(
                "Only {reachable} of {members} managers are reachable, fewer than the quorum of {}: the raft has lost its majority (the leader still answering will step down).",
                quorum(members)
            ),
        ));
        return;
    }
    count_findings(members, reachable, policy, plan);
    stuck_promotions(snapshot, plan);

    let mut dead: Vec<(&Node, SystemTime)> = Vec::new();
    for manager in managers.iter().filter(|m| !m.is_reachable_manager()) {
        match memory.lifeless_since(manager) {
            Some(since) if manager.is_down_and_unreachable() => {
                let down_for = elapsed(now, since);
                if down_for >= policy.dead_after {
                    dead.push((manager, since));
                    plan.findings.push(Finding::new(
                        FindingKind::DeadManager,
                        Severity::Critical,
                        &manager.id,
                        format!(
                            "Manager {} has been Down and unreachable for {} (managers.dead_after {}).",
                            node_ref(manager),
                            human(down_for),
                            human(policy.dead_after)
                        ),
                    ));
                } else {
                    let left = policy.dead_after - down_for;
                    plan.requeue_at_most(left);
                    plan.findings.push(Finding::new(
                        FindingKind::ManagerUnreachable,
                        Severity::Warning,
                        &manager.id,
                        format!(
                            "Manager {} has been Down and unreachable for {}; it counts as dead in {} (managers.dead_after {}).",
                            node_ref(manager),
                            human(down_for),
                            human(left),
                            human(policy.dead_after)
                        ),
                    ));
                }
            }
            _ => plan.findings.push(Finding::new(
                FindingKind::ManagerUnreachable,
                Severity::Warning,
                &manager.id,
                format!(
                    "Manager {} is not reachable (state {:?}); not dead until Down and unreachable for {}.",
                    node_ref(manager),
                    manager.state,
                    human(policy.dead_after)
                ),
            )),
        }
    }

    let guards = membership_guards(snapshot, policy, memory, now, members, reachable, plan);
    if !dead.is_empty() {
        plan_removals(dead, members, reachable, &guards, now, plan);
        // Never promote and remove in one round.
        return;
    }
    if members < policy.desired.get() {
        plan_promotion(
            snapshot, policy, placement, memory, now, members, reachable, &guards, plan,
        );
    }
}

fn plan_removals(
    mut dead: Vec<(&Node, SystemTime)>,
    members: usize,
    reachable: usize,
    guards: &[String],
    now: SystemTime,
    plan: &mut Plan,
) {
    dead.sort_by(|(a, since_a), (b, since_b)| since_a.cmp(since_b).then_with(|| a.id.cmp(&b.id)));
    let ft_now = fault_tolerance(members, reachable);
    let ft_after = fault_tolerance(members - 1, reachable);
    for (i, (node, since)) in dead.into_iter().enumerate() {
        let reason = format!(
            "{} has been Down and unreachable for {}; removing it shrinks the raft from {members} to {} members with {reachable} reachable (quorum {} -> {}, fault tolerance {ft_now} -> {ft_after}).",
            node_ref(node),
            human(elapsed(now, since)),
            members - 1,
            quorum(members),
            quorum(members - 1),
        );
        let blocked_by = if i > 0 {
            Some("One membership change per round: an earlier dead manager goes first.".to_owned())
        } else if !can_remove_member(members, reachable) {
            Some(format!(
                "SwarmKit's CanRemoveMember rule: {reachable} reachable managers would not be a majority of {} members.",
                members - 1
            ))
        } else if ft_after < ft_now {
            Some(format!(
                "Removing it would lower fault tolerance from {ft_now} to {ft_after}."
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

#[allow(clippy::too_many_arguments)]
fn plan_promotion(
    snapshot: &Snapshot,
    policy: &ManagerPolicy,
    placement: &crate::config::PlacementPolicy,
    memory: &Memory,
    now: SystemTime,
    members: usize,
    reachable: usize,
    guards: &[String],
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
    for manager in snapshot.nodes.iter().filter(|n| n.is_reachable_manager()) {
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
    // such a task can run on. Checked in preference order, so usually once.
    let mut stranding = Vec::new();
    let Some(chosen) =
        ranked
            .into_iter()
            .find(|candidate| match strands(snapshot, placement, candidate) {
                Some(why) => {
                    stranding.push(format!("{}: {why}", candidate.hostname));
                    false
                }
                None => true,
            })
    else {
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
    let blocked_by = if unreachable > 0 {
        Some(format!(
            "{unreachable} manager(s) unreachable: a promotion waits until they recover or are removed as dead."
        ))
    } else if ft_after < ft_now {
        Some(format!(
            "Promoting would lower fault tolerance from {ft_now} to {ft_after}."
        ))
    } else {
        guards.first().cloned()
    };
    plan.actions.push(PlannedAction::new(
        Action::PromoteWorker(node_ref(chosen)),
        reason,
        blocked_by,
    ));
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
) -> Vec<String> {
    let mut guards = Vec::new();
    if policy.mode == Mode::Audit {
        guards.push("managers.mode is audit: report only.".to_owned());
    }
    let local = snapshot
        .nodes
        .iter()
        .find(|n| n.id == snapshot.local.node_id);
    if !local.is_some_and(Node::is_reachable_manager) {
        guards.push(format!(
            "This manager ({}) is not a reachable raft member as the leader sees it: it may be cut off in a minority.",
            short_id(&snapshot.local.node_id)
        ));
    }
    if reachable < quorum(members) {
        guards.push(format!(
            "Only {reachable} of {members} managers are reachable (quorum {}): never act without a majority.",
            quorum(members)
        ));
    }
    if let Some(changed) = memory.leader_changed_at() {
        let since = elapsed(now, changed);
        if since < policy.leader_settle {
            plan.requeue_at_most(policy.leader_settle - since);
            guards.push(format!(
                "The raft leader changed {} ago: waiting managers.leader_settle ({}).",
                human(since),
                human(policy.leader_settle)
            ));
        }
    }
    let unknown = snapshot
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Unknown)
        .count();
    if unknown > 0 {
        guards.push(format!(
            "{unknown} node(s) in state unknown, as after a leader election: waiting until every node has reported."
        ));
    }
    if let Some(last) = memory.last_membership_change() {
        let since = elapsed(now, last);
        if since < policy.stabilization {
            plan.requeue_at_most(policy.stabilization - since);
            guards.push(format!(
                "The last membership change was {} ago: waiting managers.stabilization ({}).",
                human(since),
                human(policy.stabilization)
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
            (Role::Manager, false) if node.state != NodeState::Down => Some("promotion"),
            (Role::Worker, true) => Some("demotion"),
            _ => None,
        };
        if let Some(what) = transition {
            guards.push(format!(
                "The {what} of {} has not converged yet.",
                node_ref(node)
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

/// Nodes whose role is manager but that are Down without a manager status: promoted, yet
/// never joined the raft. SwarmKit joins a promoted node's raft through the manager address
/// it originally joined the swarm with; when that manager is gone the node keeps dialing it
/// (seen on Engine 20.10). A node mid-promotion is Ready, so it is not reported.
fn stuck_promotions(snapshot: &Snapshot, plan: &mut Plan) {
    for node in snapshot
        .nodes
        .iter()
        .filter(|n| n.role == Role::Manager && !n.is_manager() && n.state == NodeState::Down)
    {
        plan.findings.push(Finding::new(
            FindingKind::PromotionStuck,
            Severity::Warning,
            &node.id,
            format!(
                "Node {} was promoted to manager but is Down and never joined the raft. A promoted node joins the raft through the manager it first joined the swarm with; if that manager is gone, it keeps dialing it. On the node: `docker swarm leave --force`, then `docker swarm join` with a manager token and a live manager's address; then `docker node rm` its old entry.",
                node_ref(node)
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
             2. docker node ls   (the lost managers show Down / Unreachable)\n\
             3. for each lost manager: docker node demote <ID> && docker node rm --force <ID>\n\
             4. restore an odd manager count: docker node promote <healthy worker>, or join new managers with the token from docker swarm join-token manager\n\
             Services, secrets and configs survive: --force-new-cluster keeps this manager's raft data.",
            short_id(&snapshot.local.node_id),
        ),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::*;
    use crate::config::{ManagerCount, Policy};
    use crate::model::{LocalNode, ManagerStatus, Platform, Reachability, Resources};
    use crate::plan::{plan, ActionStatus};

    pub(crate) fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    pub(crate) fn manager(id: &str, leader: bool) -> Node {
        Node {
            id: id.into(),
            version: 1,
            hostname: id.into(),
            spec_name: None,
            role: Role::Manager,
            availability: Availability::Active,
            state: NodeState::Ready,
            message: String::new(),
            addr: String::new(),
            manager: Some(ManagerStatus {
                leader,
                reachability: Reachability::Reachable,
            }),
            labels: BTreeMap::new(),
            updated_at: Some(t(0)),
            platform: Platform {
                os: "linux".into(),
                architecture: "x86_64".into(),
            },
            resources: Resources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 4 << 30,
            },
            engine_labels: BTreeMap::new(),
            ..Default::default()
        }
    }

    pub(crate) fn worker(id: &str) -> Node {
        Node {
            role: Role::Worker,
            manager: None,
            ..manager(id, false)
        }
    }

    pub(crate) fn dead(mut node: Node, since: u64) -> Node {
        node.state = NodeState::Down;
        node.updated_at = Some(t(since));
        if let Some(m) = node.manager.as_mut() {
            m.reachability = Reachability::Unreachable;
        }
        node
    }

    pub(crate) fn cluster(nodes: Vec<Node>, at: SystemTime) -> Snapshot {
        let local = nodes
            .iter()
            .find(|n| n.is_leader())
            .map(|n| n.id.clone())
            .unwrap_or_default();
        Snapshot {
            observed_at: at,
            local: LocalNode {
                node_id: local,
                addr: "10.0.0.1".into(),
            },
            control: Control::Leader,
            nodes,
            services: Vec::new(),
            tasks: Vec::new(),
            telemetry: Vec::new(),
            runbooks: Vec::new(),
            placement_records: Default::default(),
        }
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.managers.dead_after = Duration::from_secs(300);
        p.managers.leader_settle = Duration::from_secs(45);
        p.managers.stabilization = Duration::from_secs(30);
        p
    }

    /// Plans with memory built from this one snapshot, as `--once` does.
    fn plan_once(snapshot: &Snapshot, policy: &Policy) -> Plan {
        let mut memory = Memory::default();
        memory.observe(snapshot);
        plan(snapshot, policy, &memory, snapshot.observed_at)
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.findings.iter().map(|f| f.kind.as_str()).collect()
    }

    #[test]
    fn a_promoted_node_down_without_joining_the_raft_is_reported_not_counted() {
        let mut stuck = dead(worker("w1"), 100);
        stuck.role = Role::Manager;
        let mut promoting = worker("w2");
        promoting.role = Role::Manager;
        let snap = cluster(
            vec![manager("m1", true), manager("m2", false), stuck, promoting],
            t(400),
        );
        let plan = plan_once(&snap, &policy());
        let stuck: Vec<_> = plan
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::PromotionStuck)
            .collect();
        assert_eq!(stuck.len(), 1, "{:#?}", plan.findings);
        assert_eq!(stuck[0].subject, "w1");
        assert!(stuck[0].message.contains("docker swarm leave"));
        assert_eq!(plan.cluster.as_ref().map(|c| c.managers), Some(2));
    }

    #[test]
    fn a_manager_down_longer_than_dead_after_is_removed() {
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 0),
                worker("w1"),
            ],
            t(400),
        );
        let plan = plan_once(&snap, &policy());
        assert_eq!(plan.actions.len(), 1, "{:#?}", plan.actions);
        let a = &plan.actions[0];
        assert_eq!(
            a.action,
            Action::RemoveDeadManager(NodeRef {
                id: "m3".into(),
                hostname: "m3".into()
            })
        );
        assert_eq!(a.status, ActionStatus::Planned, "{:?}", a.blocked_by);
        assert!(a.reason.contains("6m 40s"), "{}", a.reason);
        assert!(kinds(&plan).contains(&"dead-manager"));
    }

    #[test]
    fn a_manager_down_for_less_than_dead_after_is_only_reported_and_requeued() {
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 200),
                worker("w1"),
            ],
            t(260),
        );
        let plan = plan_once(&snap, &policy());
        assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
        assert!(kinds(&plan).contains(&"manager-unreachable"));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(240)));
    }

    #[test]
    fn an_unreachable_manager_that_is_not_down_is_never_dead() {
        let mut m3 = manager("m3", false);
        m3.manager.as_mut().unwrap().reachability = Reachability::Unreachable;
        m3.updated_at = Some(t(0));
        let snap = cluster(
            vec![manager("m1", true), manager("m2", false), m3],
            t(10_000),
        );
        let plan = plan_once(&snap, &policy());
        assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
    }

    #[test]
    fn the_talks_incident_a_dead_manager_in_a_four_manager_raft_is_removed() {
        // 4 managers, one dead and left in the raft: 3 of 4 reachable, fault tolerance 0.
        // Removing it makes 3 of 3 (fault tolerance 1) before the next loss can hit.
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                manager("m3", false),
                dead(manager("m4", false), 0),
                worker("w1"),
            ],
            t(1000),
        );
        let plan = plan_once(&snap, &policy());
        let planned: Vec<_> = plan.runnable().collect();
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].action.target(), "m4");
        assert!(
            planned[0].reason.contains("fault tolerance 0 -> 1"),
            "{}",
            planned[0].reason
        );
        assert!(kinds(&plan).contains(&"no-fault-tolerance"));
        assert!(kinds(&plan).contains(&"even-manager-count"));
    }

    #[test]
    fn removal_is_blocked_when_the_smaller_raft_would_have_no_majority() {
        assert!(!can_remove_member(5, 2), "2 reachable of 4 is no majority");
        assert!(can_remove_member(3, 2));
        assert!(!can_remove_member(1, 0));
    }

    #[test]
    fn two_dead_managers_are_removed_one_per_round_oldest_first() {
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                manager("m3", false),
                dead(manager("m4", false), 50),
                dead(manager("m5", false), 10),
            ],
            t(2000),
        );
        let plan = plan_once(&snap, &policy());
        let planned: Vec<_> = plan.runnable().map(|a| a.action.target()).collect();
        assert_eq!(planned, ["m5"]);
        assert_eq!(plan.actions.len(), 2);
        assert!(plan.actions[1]
            .blocked_by
            .as_deref()
            .unwrap()
            .contains("One membership change"));
    }

    #[test]
    fn a_worker_is_promoted_when_the_raft_is_below_desired_and_everyone_is_reachable() {
        let snap = cluster(
            vec![manager("m1", true), manager("m2", false), worker("w1")],
            t(100),
        );
        let plan = plan_once(&snap, &policy());
        let a = plan.runnable().next().expect("a promotion");
        assert_eq!(a.action.kind(), "promote-worker");
        assert_eq!(a.action.target(), "w1");
        assert!(a.reason.contains("fault tolerance 0 -> 1"), "{}", a.reason);
    }

    #[test]
    fn promotion_waits_for_removal_of_dead_managers_first() {
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 0),
                worker("w1"),
            ],
            t(400),
        );
        let plan = plan_once(&snap, &policy());
        assert!(plan
            .actions
            .iter()
            .all(|a| a.action.kind() == "remove-dead-manager"));
    }

    #[test]
    fn promotion_waits_while_a_manager_is_unreachable_but_not_dead() {
        // 3 of 5 desired, one of them unreachable (2 reachable: still a majority of 3).
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 390),
                worker("w1"),
            ],
            t(400),
        );
        let mut p = policy();
        p.managers.desired = crate::config::ManagerCount::try_from(5).unwrap();
        let plan = plan_once(&snap, &p);
        let a = &plan.actions[0];
        assert_eq!(a.status, ActionStatus::Blocked);
        assert!(
            a.blocked_by.as_deref().unwrap().contains("unreachable"),
            "{:?}",
            a.blocked_by
        );
    }

    #[test]
    fn a_worker_ready_for_less_than_stabilization_is_not_promoted_yet() {
        let mut w1 = worker("w1");
        w1.updated_at = Some(t(90));
        let snap = cluster(vec![manager("m1", true), manager("m2", false), w1], t(100));
        let plan = plan_once(&snap, &policy());
        assert!(plan.actions.is_empty());
        assert!(kinds(&plan).contains(&"no-promotion-candidate"));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    }

    #[test]
    fn opted_out_drained_and_down_workers_are_never_promoted() {
        let mut opted = worker("w1");
        opted.labels.insert(NO_PROMOTE_LABEL.into(), "false".into());
        let mut drained = worker("w2");
        drained.availability = Availability::Drain;
        let down = dead(worker("w3"), 0);
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                opted,
                drained,
                down,
            ],
            t(100),
        );
        let plan = plan_once(&snap, &policy());
        assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
        let f = plan
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::NoPromotionCandidate)
            .unwrap();
        assert!(f.message.contains("1 labelled"), "{}", f.message);
    }

    #[test]
    fn promotions_spread_over_the_zone_label() {
        let zoned = |id: &str, zone: &str| {
            let mut n = worker(id);
            n.labels.insert("zone".into(), zone.into());
            n
        };
        let mut m1 = manager("m1", true);
        m1.labels.insert("zone".into(), "a".into());
        let mut m2 = manager("m2", false);
        m2.labels.insert("zone".into(), "b".into());
        let snap = cluster(
            vec![m1, m2, zoned("w1", "a"), zoned("w2", "b"), zoned("w3", "c")],
            t(100),
        );
        let plan = plan_once(&snap, &policy());
        assert_eq!(plan.runnable().next().unwrap().action.target(), "w3");
    }

    #[test]
    fn a_worker_holding_node_local_data_of_a_kept_off_service_is_passed_over() {
        let snap_with = |w2_has_data: bool| {
            let mut snap = cluster(
                vec![
                    manager("m1", true),
                    manager("m2", false),
                    worker("w1"),
                    worker("w2"),
                ],
                t(100),
            );
            let db = crate::model::Service {
                id: "db".into(),
                name: "db".into(),
                constraints: vec!["node.role != manager".into()],
                mounts: vec![crate::model::Mount {
                    kind: "volume".into(),
                    source: "pgdata".into(),
                    target: "/var/lib/postgresql/data".into(),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let mut tasks = vec![crate::model::Task {
                id: "t1".into(),
                service_id: "db".into(),
                node_id: Some("w1".into()),
                state: "running".into(),
            }];
            if w2_has_data {
                tasks.push(crate::model::Task {
                    id: "t2".into(),
                    node_id: Some("w2".into()),
                    ..tasks[0].clone()
                });
            }
            snap.services = vec![db];
            snap.tasks = tasks;
            snap
        };
        // w1 comes first by name, but its promotion would leave pgdata behind.
        let plan = plan_once(&snap_with(false), &policy());
        assert_eq!(plan.runnable().next().unwrap().action.target(), "w2");
        // Both hold data: no promotion, and the report says why.
        let plan = plan_once(&snap_with(true), &policy());
        assert_eq!(plan.runnable().count(), 0);
        let f = plan
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::NoPromotionCandidate)
            .unwrap();
        assert!(f.message.contains("pgdata"), "{}", f.message);
    }

    #[test]
    fn a_leader_still_answering_without_a_majority_is_quorum_lost_not_fault_tolerance_minus_one() {
        // Two of three managers killed; the survivor still calls itself leader for a while.
        let snap = cluster(
            vec![
                manager("m1", true),
                dead(manager("m2", false), 0),
                dead(manager("m3", false), 0),
                worker("w1"),
            ],
            t(10_000),
        );
        let plan = plan_once(&snap, &policy());
        assert_eq!(kinds(&plan), ["quorum-lost"], "{:?}", plan.findings);
        let f = &plan.findings[0];
        assert!(
            f.message.contains("1 of 3") && f.message.contains("--force-new-cluster"),
            "{}",
            f.message
        );
        assert!(plan.actions.is_empty(), "no action without a majority");
    }

    #[test]
    fn nothing_is_done_right_after_a_leader_change() {
        let mut memory = Memory::default();
        let mut snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 0),
            ],
            t(1000),
        );
        memory.observe(&snap);
        snap.nodes[0].manager.as_mut().unwrap().leader = false;
        snap.nodes[1].manager.as_mut().unwrap().leader = true;
        snap.local.node_id = "m2".into();
        snap.observed_at = t(1010);
        memory.observe(&snap);
        let plan = plan(&snap, &policy(), &memory, t(1020));
        let a = &plan.actions[0];
        assert_eq!(a.status, ActionStatus::Blocked);
        assert!(
            a.blocked_by.as_deref().unwrap().contains("leader changed"),
            "{:?}",
            a.blocked_by
        );
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(35)));
    }

    #[test]
    fn nodes_in_unknown_state_block_membership_changes() {
        let mut w = worker("w1");
        w.state = NodeState::Unknown;
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 0),
                w,
            ],
            t(400),
        );
        let plan = plan_once(&snap, &policy());
        assert!(plan.actions[0]
            .blocked_by
            .as_deref()
            .unwrap()
            .contains("unknown"));
    }

    #[test]
    fn audit_mode_reports_the_same_actions_as_blocked() {
        let mut p = policy();
        p.managers.mode = Mode::Audit;
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 0),
            ],
            t(400),
        );
        let plan = plan_once(&snap, &p);
        assert_eq!(plan.actions.len(), 1);
        assert!(plan.actions[0]
            .blocked_by
            .as_deref()
            .unwrap()
            .contains("audit"));
    }

    #[test]
    fn off_mode_plans_nothing() {
        let mut p = policy();
        p.managers.mode = Mode::Off;
        let snap = cluster(
            vec![manager("m1", true), dead(manager("m3", false), 0)],
            t(400),
        );
        let plan = plan_once(&snap, &p);
        assert!(plan.actions.is_empty() && plan.findings.is_empty());
    }

    #[test]
    fn a_manager_that_is_not_a_reachable_member_never_acts() {
        let mut snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 0),
            ],
            t(400),
        );
        snap.local.node_id = "m3".into();
        let plan = plan_once(&snap, &policy());
        assert!(plan.actions[0]
            .blocked_by
            .as_deref()
            .unwrap()
            .contains("minority"));
    }

    #[test]
    fn without_a_leader_there_is_a_quorum_lost_finding_with_recovery_steps_and_no_action() {
        let mut snap = cluster(vec![], t(0));
        snap.control = Control::NoLeader {
            error: "The swarm does not have a leader.".into(),
        };
        let plan = plan_once(&snap, &policy());
        assert!(plan.actions.is_empty());
        assert_eq!(kinds(&plan), ["quorum-lost"]);
        let message = &plan.findings[0].message;
        assert!(
            message.contains("docker swarm init --force-new-cluster --advertise-addr 10.0.0.1"),
            "{message}"
        );
        assert!(message.contains("docker node rm --force"), "{message}");
        assert!(ClusterSummary::of(&snap).is_none());
    }

    #[test]
    fn an_even_manager_count_is_a_finding() {
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                manager("m3", false),
                manager("m4", false),
            ],
            t(0),
        );
        let plan = plan_once(&snap, &policy());
        assert!(kinds(&plan).contains(&"even-manager-count"));
        assert!(kinds(&plan).contains(&"managers-above-desired"));
        assert!(
            plan.actions.is_empty(),
            "healthy managers are never demoted"
        );
    }

    #[test]
    fn a_recent_membership_change_holds_the_next_one_for_stabilization() {
        let snap = cluster(
            vec![manager("m1", true), manager("m2", false), worker("w1")],
            t(100),
        );
        let mut memory = Memory::default();
        memory.observe(&snap);
        memory.record_membership_change(t(90));
        let plan = plan(&snap, &policy(), &memory, t(100));
        assert!(plan.actions[0]
            .blocked_by
            .as_deref()
            .unwrap()
            .contains("stabilization"));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    }

    // ---- properties -------------------------------------------------------------------

    fn arb_node(i: usize) -> impl Strategy<Value = Node> {
        (
            any::<bool>(),             // manager?
            0..4u8,                    // state
            0..3u8,                    // reachability
            0..3u8,                    // availability
            0..2000u64,                // updated_at
            prop::option::of(0..3u8),  // zone
            prop::bool::weighted(0.1), // opted out
            prop::bool::weighted(0.1), // role in transition
        )
            .prop_map(
                move |(is_manager, state, reach, avail, updated, zone, opted, transition)| {
                    let id = format!("n{i}");
                    let mut n = if is_manager {
                        manager(&id, false)
                    } else {
                        worker(&id)
                    };
                    n.state = [
                        NodeState::Ready,
                        NodeState::Down,
                        NodeState::Unknown,
                        NodeState::Disconnected,
                    ][state as usize];
                    if let Some(m) = n.manager.as_mut() {
                        m.reachability = [
                            Reachability::Reachable,
                            Reachability::Unreachable,
                            Reachability::Unknown,
                        ][reach as usize];
                    }
                    n.availability = [
                        Availability::Active,
                        Availability::Pause,
                        Availability::Drain,
                    ][avail as usize];
                    n.updated_at = Some(t(updated));
                    if let Some(z) = zone {
                        n.labels.insert("zone".into(), format!("z{z}"));
                    }
                    if opted {
                        n.labels.insert(NO_PROMOTE_LABEL.into(), "false".into());
                    }
                    if transition {
                        n.role = if n.role == Role::Manager {
                            Role::Worker
                        } else {
                            Role::Manager
                        };
                    }
                    n
                },
            )
    }

    prop_compose! {
        fn arb_cluster()(nodes in (1..12usize).prop_flat_map(|k| (0..k).map(arb_node).collect::<Vec<_>>()),
                         leader in any::<prop::sample::Index>(),
                         local in any::<prop::sample::Index>(),
                         now in 0..4000u64,
                         desired in 1..8i64) -> (Snapshot, i64) {
            let mut nodes = nodes;
            let managers: Vec<usize> = nodes.iter().enumerate().filter(|(_, n)| n.is_manager()).map(|(i, _)| i).collect();
            if !managers.is_empty() {
                let l = managers[leader.index(managers.len())];
                let m = nodes[l].manager.as_mut().unwrap();
                m.leader = true;
                m.reachability = Reachability::Reachable;
                nodes[l].state = NodeState::Ready;
            }
            let local_id = nodes[local.index(nodes.len())].id.clone();
            let mut snap = cluster(nodes, t(now));
            snap.local.node_id = local_id;
            (snap, desired)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn plans_never_break_the_safety_rules((snap, desired) in arb_cluster(), leader_changed in prop::option::of(0..4000u64), last_change in prop::option::of(0..4000u64)) {
            let mut p = policy();
            p.managers.desired = ManagerCount::try_from(desired).unwrap();
            let mut memory = Memory::default();
            memory.observe(&snap);
            if let Some(at) = leader_changed {
                // Pretend an earlier observation saw another leader.
                let mut earlier = snap.clone();
                earlier.observed_at = t(at);
                for n in earlier.nodes.iter_mut() { if let Some(m) = n.manager.as_mut() { m.leader = false; } }
                if let Some(first) = earlier.nodes.iter_mut().find(|n| n.is_manager() && !n.is_leader()) {
                    first.manager.as_mut().unwrap().leader = true;
                }
                memory = Memory::default();
                memory.observe(&earlier);
                let mut now_snap = snap.clone();
                now_snap.observed_at = t(at);
                memory.observe(&now_snap);
            }
            if let Some(at) = last_change { memory.record_membership_change(t(at)); }
            let now = snap.observed_at;
            let plan = plan(&snap, &p, &memory, now);
            let runnable: Vec<&PlannedAction> = plan.runnable().filter(|a| a.action.is_membership_change()).collect();

            // At most one membership change may run.
            prop_assert!(runnable.len() <= 1, "{:#?}", runnable);
            let Some(action) = runnable.first() else { return Ok(()); };

            let members = snap.nodes.iter().filter(|n| n.is_manager()).count();
            let reachable = snap.nodes.iter().filter(|n| n.is_reachable_manager()).count();
            // Never from a minority, never without the local manager in the majority.
            prop_assert!(reachable >= quorum(members));
            let local = snap.nodes.iter().find(|n| n.id == snap.local.node_id).unwrap();
            prop_assert!(local.is_reachable_manager());
            // Never within the settle and stabilization windows, never with unknown nodes.
            if let Some(at) = memory.leader_changed_at() { prop_assert!(elapsed(now, at) >= p.managers.leader_settle); }
            if let Some(at) = memory.last_membership_change() { prop_assert!(elapsed(now, at) >= p.managers.stabilization); }
            prop_assert!(snap.nodes.iter().all(|n| n.state != NodeState::Unknown));

            let target = snap.nodes.iter().find(|n| n.id == action.action.target()).unwrap();
            match &action.action {
                Action::RemoveDeadManager(_) => {
                    // Only dead managers: Down, unreachable, for dead_after.
                    prop_assert!(target.is_down_and_unreachable());
                    prop_assert!(!target.is_reachable_manager());
                    let since = memory.lifeless_since(target).unwrap();
                    prop_assert!(elapsed(now, since) >= p.managers.dead_after);
                    prop_assert!(can_remove_member(members, reachable));
                    prop_assert!(fault_tolerance(members - 1, reachable) >= fault_tolerance(members, reachable));
                }
                Action::PromoteWorker(_) => {
                    // No dead manager waits for removal; everyone reachable; below desired.
                    prop_assert_eq!(reachable, members);
                    prop_assert!(members < p.managers.desired.get());
                    prop_assert!(target.state == NodeState::Ready && target.availability == Availability::Active);
                    prop_assert!(!target.is_manager() && target.role == Role::Worker);
                    prop_assert!(target.label(NO_PROMOTE_LABEL) != Some("false"));
                    let ready = memory.ready_since(target).unwrap();
                    prop_assert!(elapsed(now, ready) >= p.managers.stabilization);
                    prop_assert!(fault_tolerance(members + 1, reachable + 1) >= fault_tolerance(members, reachable));
                }
                Action::EnforcePlacement(_)
                | Action::RollBackPlacement(_)
                | Action::ClearPlacementRecord { .. }
                | Action::StartRunbook { .. } => {}
            }
        }

        #[test]
        fn audit_and_off_modes_never_plan_a_runnable_action((snap, _) in arb_cluster()) {
            for mode in [Mode::Audit, Mode::Off] {
                let mut p = policy();
                p.managers.mode = mode;
                let plan = plan_once(&snap, &p);
                prop_assert_eq!(plan.runnable().count(), 0);
            }
        }
    }
}
