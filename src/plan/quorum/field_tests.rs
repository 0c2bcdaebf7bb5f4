//! Membership in the states real swarms are in: failed promotions, `--force-new-cluster`
//! leftovers, rebuilt hosts on the old raft address, half-done removals, skewed clocks.

use std::time::Duration;

use proptest::prelude::*;

use super::tests::{cluster, dead, manager, t, worker};
use super::*;
use crate::config::{ManagerCount, Policy};
use crate::model::Reachability;
use crate::plan::{plan, FindingKind};

fn policy(desired: i64) -> Policy {
    let mut p = Policy::default();
    p.managers.dead_after = Duration::from_secs(300);
    p.managers.leader_settle = Duration::from_secs(45);
    p.managers.stabilization = Duration::from_secs(30);
    p.managers.desired = ManagerCount::try_from(desired).unwrap();
    p
}

fn plan_once(snapshot: &Snapshot, policy: &Policy) -> Plan {
    let mut memory = Memory::default();
    memory.observe(snapshot);
    plan(snapshot, policy, &memory, snapshot.observed_at)
}

fn findings(plan: &Plan, kind: FindingKind) -> Vec<&Finding> {
    plan.findings.iter().filter(|f| f.kind == kind).collect()
}

fn plan_at(snapshot: &Snapshot, policy: &Policy, memory: &Memory) -> Plan {
    plan(snapshot, policy, memory, snapshot.observed_at)
}

fn runnable(plan: &Plan) -> Vec<&Action> {
    plan.runnable().map(|a| &a.action).collect()
}

/// Role manager, no raft membership, Down since `since`.
fn outside_raft(id: &str, since: u64) -> Node {
    let mut n = dead(worker(id), since);
    n.role = Role::Manager;
    n
}

/// A label time as swarm-warden writes it, at `t(secs)`.
fn stamp(secs: u64) -> String {
    humantime::format_rfc3339_seconds(t(secs)).to_string()
}

/// `n` with the label `key` at t(0), as swarm-warden writes it.
fn labelled(mut n: Node, key: &str) -> Node {
    n.labels.insert(key.into(), stamp(0));
    n
}

/// Promoted by swarm-warden at t(0).
fn promoted_by_us(n: Node) -> Node {
    labelled(n, PROMOTED_AT_LABEL)
}

#[test]
fn a_failed_promotion_of_ours_holds_every_other_promotion_and_is_never_removed() {
    let snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            promoted_by_us(outside_raft("w1", 0)),
            worker("w2"),
            worker("w3"),
        ],
        t(100_000),
    );
    let plan = plan_once(&snap, &policy(3));
    let failed = findings(&plan, FindingKind::PromotionFailed);
    assert_eq!(failed.len(), 1, "{:#?}", plan.findings);
    assert_eq!(failed[0].subject, "w1");
    assert_eq!(failed[0].severity, Severity::Critical);
    assert!(failed[0].message.contains("docker swarm leave --force"));
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
    let promote = plan
        .actions
        .iter()
        .find(|a| matches!(a.action, Action::PromoteWorker(_)))
        .expect("the promotion is shown, blocked");
    assert!(promote
        .blocked_message()
        .unwrap()
        .contains("At most one promotion that has not converged"));
    assert!(plan
        .actions
        .iter()
        .all(|a| !matches!(a.action, Action::RemoveDeadManager(_))));
}

#[test]
fn a_promotion_in_progress_holds_every_membership_change() {
    let mut promoting = worker("w1");
    promoting.role = Role::Manager;
    let snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            dead(manager("m3", false), 0),
            promoting,
        ],
        t(100_000),
    );
    let plan = plan_once(&snap, &policy(3));
    assert!(!findings(&plan, FindingKind::PromotionInProgress).is_empty());
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
    assert_blocked_by_promotion_of_w1(&plan);
}

/// The dead m3's removal is in the plan, blocked by w1's promotion.
fn assert_blocked_by_promotion_of_w1(plan: &Plan) {
    let removal = plan
        .actions
        .iter()
        .find(|a| matches!(a.action, Action::RemoveDeadManager(_)))
        .expect("the dead m3's removal is shown, blocked");
    assert!(
        removal
            .blocked_message()
            .is_some_and(|b| b.contains("promotion of w1")),
        "{:?}",
        removal.blocked_by
    );
}

#[test]
fn force_new_cluster_leftovers_seen_as_members_are_removed_by_id_one_per_round_then_promotions_resume(
) {
    let p = policy(3);
    let mut memory = Memory::default();
    // This process watched m2 and m3 as raft members before the disaster.
    memory.observe(&cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            manager("m3", false),
            worker("w1"),
        ],
        t(0),
    ));
    let snap = cluster(
        vec![
            manager("m1", true),
            // Down since t(5) and t(10), after the last sign of life this process saw.
            outside_raft("m2", 5),
            outside_raft("m3", 10),
            worker("w1"),
        ],
        t(700),
    );
    memory.observe(&snap);
    let plan = plan(&snap, &p, &memory, t(700));
    assert_eq!(findings(&plan, FindingKind::ExManager).len(), 2);
    assert!(findings(&plan, FindingKind::PromotionFailed).is_empty());
    // Not counted as members: a raft of one, fault tolerance 0.
    assert_eq!(plan.cluster.as_ref().map(|c| c.managers), Some(1));
    let run = runnable(&plan);
    assert_eq!(run.len(), 1, "{:#?}", plan.actions);
    assert_eq!(run[0], &Action::RemoveDeadManager(node_ref(&snap.nodes[1])));
    let removal = &plan.actions[0];
    assert!(
        removal.reason.contains("holds no raft seat"),
        "{}",
        removal.reason
    );
    let promote = plan
        .actions
        .iter()
        .all(|a| !matches!(a.action, Action::PromoteWorker(_)));
    assert!(promote, "never promote and remove in one round");

    // Once both entries are gone (and stabilization has passed), the raft grows again,
    // one promotion at a time.
    memory.record_membership_change(t(700));
    let snap = cluster(
        vec![manager("m1", true), worker("w1"), worker("w2")],
        t(710),
    );
    memory.observe(&snap);
    assert!(
        runnable(&plan_at(&snap, &p, &memory)).is_empty(),
        "stabilization"
    );
    let snap = cluster(
        vec![manager("m1", true), worker("w1"), worker("w2")],
        t(800),
    );
    memory.observe(&snap);
    assert_eq!(runnable(&plan_at(&snap, &p, &memory)).len(), 1);
}

#[test]
fn ex_managers_a_fresh_process_never_saw_as_members_are_reported_not_removed() {
    let snap = cluster(
        vec![manager("m1", true), outside_raft("m2", 0), worker("w1")],
        t(100_000),
    );
    let plan = plan_once(&snap, &policy(3));
    let ex = findings(&plan, FindingKind::ExManager);
    assert_eq!(ex.len(), 1);
    assert!(
        ex[0].message.contains("docker node rm m2"),
        "{}",
        ex[0].message
    );
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
}

#[test]
fn right_after_force_new_cluster_the_unknown_ex_managers_are_reported_not_removed() {
    let mut m2 = outside_raft("m2", 0);
    m2.state = NodeState::Unknown;
    let snap = cluster(vec![manager("m1", true), m2, worker("w1")], t(100_000));
    let plan = plan_once(&snap, &policy(3));
    assert_eq!(findings(&plan, FindingKind::ExManager).len(), 1);
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
}

#[test]
fn an_ex_manager_down_for_less_than_dead_after_is_reported_not_removed() {
    let snap = cluster(
        vec![manager("m1", true), outside_raft("m2", 0), worker("w1")],
        t(200),
    );
    let plan = plan_once(&snap, &policy(3));
    assert_eq!(findings(&plan, FindingKind::ExManager).len(), 1);
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
}

/// m3's host was rebuilt: the old entry is Down, the raft calls it reachable because the
/// new m3 answers on the same raft address.
fn rebuilt_m3(old_down_since: u64) -> Vec<Node> {
    let mut old = manager("m3-old", false);
    old.hostname = "m3".into();
    old.state = NodeState::Down;
    old.updated_at = Some(t(old_down_since));
    old.manager.as_mut().unwrap().addr = "10.0.0.13:2377".into();
    let mut new = manager("m3-new", false);
    new.hostname = "m3".into();
    new.manager.as_mut().unwrap().addr = "10.0.0.13:2377".into();
    vec![manager("m1", true), manager("m2", false), old, new]
}

#[test]
fn a_ghost_manager_is_counted_unreachable_and_removed_by_id_after_dead_after() {
    let p = policy(3);
    let early = cluster(rebuilt_m3(0), t(100));
    let plan = plan_once(&early, &p);
    let summary = plan.cluster.clone().unwrap();
    assert_eq!((summary.managers, summary.reachable_managers), (4, 3));
    assert_eq!(summary.fault_tolerance, 0, "docker node ls would suggest 1");
    let ghost = findings(&plan, FindingKind::GhostManager);
    assert_eq!(ghost.len(), 1, "{:#?}", plan.findings);
    assert_eq!(ghost[0].subject, "m3-old");
    assert!(ghost[0].message.contains("docker node demote m3-old"));
    assert_eq!(findings(&plan, FindingKind::DuplicateHostname).len(), 1);
    assert!(findings(&plan, FindingKind::NoFaultTolerance).len() == 1);
    assert!(
        runnable(&plan).is_empty(),
        "not dead yet: {:#?}",
        plan.actions
    );

    let late = cluster(rebuilt_m3(0), t(700));
    let plan = plan_once(&late, &p);
    assert_eq!(
        runnable(&plan),
        vec![&Action::RemoveDeadManager(node_ref(&late.nodes[2]))]
    );
    assert!(plan.actions[0].reason.contains("fault tolerance 0 -> 1"));
}

#[test]
fn a_ghost_is_timed_by_our_own_observation_since_the_raft_calls_it_reachable() {
    let p = policy(3);
    let mut memory = Memory::default();
    // No status time to go by: only our own observation counts.
    let mut nodes = rebuilt_m3(0);
    nodes[2].updated_at = None;
    for at in [1000, 1100, 1200] {
        memory.observe(&cluster(nodes.clone(), t(at)));
    }
    let snap = cluster(nodes.clone(), t(1250));
    memory.observe(&snap);
    assert!(runnable(&plan(&snap, &p, &memory, t(1250))).is_empty());
    let snap = cluster(nodes, t(1300));
    memory.observe(&snap);
    assert_eq!(runnable(&plan(&snap, &p, &memory, t(1300))).len(), 1);
}

#[test]
fn a_down_manager_the_raft_calls_reachable_without_evidence_is_counted_out_never_removed() {
    let p = policy(3);
    let mut nodes = vec![
        manager("m1", true),
        manager("m2", false),
        manager("m3", false),
    ];
    nodes[2].state = NodeState::Down;
    let mut memory = Memory::default();
    for at in (0..20_000).step_by(600) {
        memory.observe(&cluster(nodes.clone(), t(at)));
    }
    let snap = cluster(nodes, t(20_000));
    memory.observe(&snap);
    let plan = plan(&snap, &p, &memory, t(20_000));
    assert_eq!(
        findings(&plan, FindingKind::ManagerStatusDisagrees).len(),
        1
    );
    let summary = plan.cluster.clone().unwrap();
    assert_eq!(
        (summary.reachable_managers, summary.fault_tolerance),
        (2, 0)
    );
    assert!(findings(&plan, FindingKind::QuorumLost).is_empty());
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
}

/// Demoted for removal by swarm-warden at t(0).
fn demoted_for_removal(n: Node) -> Node {
    labelled(n, DEMOTED_FOR_REMOVAL_LABEL)
}

#[test]
fn a_removal_left_half_done_by_a_stopped_process_is_finished_by_the_next() {
    let snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            manager("m3", false),
            demoted_for_removal(dead(worker("m4"), 0)),
        ],
        t(700),
    );
    let plan = plan_once(&snap, &policy(3));
    assert_eq!(
        runnable(&plan),
        vec![&Action::RemoveDeadManager(node_ref(&snap.nodes[3]))]
    );
    assert_eq!(findings(&plan, FindingKind::RemovalUnfinished).len(), 1);
}

#[test]
fn a_node_demoted_for_removal_that_is_ready_again_is_left_alone_and_reported() {
    let snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            manager("m3", false),
            demoted_for_removal(worker("m4")),
        ],
        t(700),
    );
    let plan = plan_once(&snap, &policy(3));
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
    let unfinished = findings(&plan, FindingKind::RemovalUnfinished);
    assert_eq!(unfinished.len(), 1);
    assert!(unfinished[0].message.contains("--label-rm"));
}

#[test]
fn a_plain_down_worker_is_never_removed() {
    let snap = cluster(vec![manager("m1", true), dead(worker("w1"), 0)], t(100_000));
    let plan = plan_once(&snap, &policy(1));
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A manager goes Down at true time `down` (the raft leader's clock is true); swarm-warden
    /// starts at `start`, polls every 10 s, its clock `skew` off. It never removes the
    /// manager before an observer watching since `down` would (`down + dead_after`), for any
    /// skew up to dead_after either way, and it removes it no later than its own
    /// observation would (`start + dead_after`, plus a poll).
    #[test]
    fn clock_skew_up_to_dead_after_never_makes_a_manager_dead_sooner(
        down in 0..2_000u64,
        started_after in 0..1_500u64,
        skew in -300i64..=300,
    ) {
        let p = policy(3);
        let dead_after = p.managers.dead_after.as_secs();
        let start = down + started_after;
        let ours = |true_secs: u64| {
            let secs = i64::try_from(true_secs).unwrap() + skew + 10_000;
            t(u64::try_from(secs).unwrap())
        };
        let nodes = |leader_stamp: u64| {
            let mut m3 = dead(manager("m3", false), 0);
            m3.updated_at = Some(t(leader_stamp + 10_000));
            vec![manager("m1", true), manager("m2", false), m3, worker("w1")]
        };
        let mut memory = Memory::default();
        let mut removed_at = None;
        for now in (start..start + dead_after + 20).step_by(10) {
            let snap = cluster(nodes(down), ours(now));
            memory.observe(&snap);
            let plan = plan(&snap, &p, &memory, ours(now));
            if plan.runnable().any(|a| matches!(a.action, Action::RemoveDeadManager(_))) {
                removed_at = Some(now);
                break;
            }
        }
        let removed_at = removed_at.expect("removed within dead_after of our own first look");
        prop_assert!(removed_at >= down + dead_after, "removed at {removed_at}, Down at {down}");
    }
}

#[test]
fn down_but_reachable_and_down_and_unreachable_are_told_apart() {
    let mut n = manager("m", false);
    n.state = NodeState::Down;
    assert!(n.is_down_but_reachable());
    n.manager.as_mut().unwrap().reachability = Reachability::Unreachable;
    assert!(!n.is_down_but_reachable() && n.is_down_and_unreachable());
}

/// Two workers, three managers wanted; `web` is kept off managers and needs both workers.
fn promotion_with(web: crate::model::Service) -> Plan {
    let mut snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            worker("w1"),
            worker("w2"),
        ],
        t(100),
    );
    snap.tasks = ["w1", "w2"]
        .iter()
        .enumerate()
        .map(|(i, w)| crate::model::Task {
            id: format!("t{i}"),
            service_id: web.id.clone(),
            node_id: Some((*w).into()),
            state: "running".into(),
        })
        .collect();
    snap.services = vec![web];
    plan_once(&snap, &policy(3))
}

fn kept_off(replicas: u64) -> crate::model::Service {
    crate::model::Service {
        id: "web".into(),
        name: "web".into(),
        constraints: vec!["node.role != manager".into()],
        mode: crate::model::ServiceMode::Replicated { replicas },
        ..Default::default()
    }
}

#[test]
fn a_promotion_that_breaks_max_replicas_per_node_of_a_kept_off_service_is_not_made() {
    let mut web = kept_off(2);
    web.max_replicas_per_node = 1;
    let plan = promotion_with(web);
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
    let why = findings(&plan, FindingKind::NoPromotionCandidate);
    assert!(
        why[0].message.contains("web would be stranded"),
        "{}",
        why[0].message
    );
    // With room for both replicas on one worker, the promotion goes ahead.
    let mut web = kept_off(2);
    web.max_replicas_per_node = 2;
    assert_eq!(runnable(&promotion_with(web)).len(), 1);
}

#[test]
fn a_promotion_that_leaves_a_host_mode_port_nowhere_to_bind_is_not_made() {
    let mut web = kept_off(2);
    web.host_ports = vec![crate::model::HostPort {
        port: 80,
        protocol: "tcp".into(),
    }];
    let plan = promotion_with(web);
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
    let why = findings(&plan, FindingKind::NoPromotionCandidate);
    assert!(
        why[0].message.contains("web would be stranded"),
        "{}",
        why[0].message
    );
}

#[test]
fn a_node_demoted_for_removal_that_showed_life_since_is_never_removed_when_down_again() {
    let p = policy(3);
    let mut memory = Memory::default();
    let mut m4 = demoted_for_removal(worker("m4"));
    // Back as a worker after the demotion (t(0)), seen Ready by this process...
    memory.observe(&cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            manager("m3", false),
            m4.clone(),
        ],
        t(100),
    ));
    // ...then Down again, for far longer than dead_after.
    m4 = dead(m4, 200);
    for at in [200, 600, 1_000, 5_000] {
        let snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                manager("m3", false),
                m4.clone(),
            ],
            t(at),
        );
        memory.observe(&snap);
        let plan = plan_at(&snap, &p, &memory);
        assert!(plan.actions.is_empty(), "at t({at}): {:#?}", plan.actions);
        assert_eq!(findings(&plan, FindingKind::RemovalUnfinished).len(), 1);
    }
    // A fresh process cannot have seen it, but its status changed long after the
    // demotion settled (t(0) + convergence_timeout + dead_after): the same.
    let snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            manager("m3", false),
            dead(m4, 1_000),
        ],
        t(5_000),
    );
    assert!(plan_once(&snap, &p).actions.is_empty());
}

#[test]
fn a_promotion_of_ours_is_in_progress_until_convergence_timeout_then_failed() {
    let p = policy(3);
    let timeout = p.managers.convergence_timeout.as_secs();
    // m3 has been dead for long; w1 was promoted `promoted_ago` before t(100_000).
    let nodes = |promoted_ago: u64| {
        let mut w1 = outside_raft("w1", 0);
        w1.labels
            .insert(PROMOTED_AT_LABEL.into(), stamp(100_000 - promoted_ago));
        cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                dead(manager("m3", false), 0),
                w1,
                worker("w2"),
            ],
            t(100_000),
        )
    };
    // Within the timeout: in progress, every membership change waits (the dead m3 too).
    let plan = plan_once(&nodes(timeout - 1), &p);
    assert_eq!(findings(&plan, FindingKind::PromotionInProgress).len(), 1);
    assert_blocked_by_promotion_of_w1(&plan);
    assert!(runnable(&plan).is_empty(), "{:#?}", plan.actions);
    // Past it: failed; the dead manager may go, promotions stay held.
    let plan = plan_once(&nodes(timeout + 1), &p);
    assert_eq!(findings(&plan, FindingKind::PromotionFailed).len(), 1);
    assert_eq!(
        runnable(&plan),
        vec![&Action::RemoveDeadManager(node_ref(&nodes(0).nodes[2]))]
    );
}
