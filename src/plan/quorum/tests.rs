//! The manager slice's rules, one behaviour per test.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::config::{ManagerCount, Policy};
use crate::model::{Availability, LocalNode, ManagerStatus, Platform, Reachability, Resources};
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
            addr: format!("{id}:2377"),
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
        runbook_problems: Default::default(),
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
        .filter(|f| f.kind == FindingKind::ExManager)
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
        t(700),
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
        // The status time counts dead_after later (clock skew): Down since t(500).
        t(560),
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
        .blocked_message()
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
        t(700),
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
    assert_eq!(
        a.blocked_kind(),
        Some(crate::plan::BlockKind::ManagersUnreachable),
        "{:?}",
        a.blocked_by
    );
    assert!(a.blocked_message().unwrap().contains("unreachable"));
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

/// Seen on a lab (e2e_one_writer, under CI load): the successor replica promoted a worker
/// while its predecessor's placement fix rolled; SwarmKit rejected the new task on the new
/// manager, the update paused, and the fix was rolled back.
#[test]
fn a_worker_running_a_task_of_a_rolling_update_kept_off_managers_is_not_promoted() {
    // `slow` (kept off managers) rolls an update that started at t(990); now is t(1000).
    let snap_with = |tasks_on: &[&str], state, started: u64, constraint: &str| {
        let mut snap = cluster(
            vec![
                manager("m1", true),
                manager("m2", false),
                worker("w1"),
                worker("w2"),
            ],
            t(1000),
        );
        snap.services = vec![crate::model::Service {
            id: "slow".into(),
            name: "slow".into(),
            constraints: vec![constraint.to_owned()],
            update: Some(crate::model::UpdateStatus {
                state,
                message: String::new(),
                started_at: Some(t(started)),
            }),
            ..Default::default()
        }];
        snap.tasks = tasks_on
            .iter()
            .map(|node| crate::model::Task {
                id: format!("slow-{node}"),
                service_id: "slow".into(),
                node_id: Some((*node).into()),
                state: "running".into(),
            })
            .collect();
        snap
    };
    let promotion = |snap: &Snapshot| {
        plan_once(snap, &policy())
            .actions
            .into_iter()
            .find(|a| a.action.kind() == "promote-worker")
            .expect("a promotion planned")
    };
    use crate::model::UpdateState::*;
    let off = "node.role != manager";

    // w1 comes first by name but runs a task of the update: w2 instead.
    let a = promotion(&snap_with(&["w1"], Updating, 990, off));
    assert_eq!((a.action.target(), a.status), ("w2", ActionStatus::Planned));
    let a = promotion(&snap_with(&["w1"], RollbackStarted, 990, off));
    assert_eq!(a.action.target(), "w2");

    // Both do: the promotion waits, and says why.
    let a = promotion(&snap_with(&["w1", "w2"], Updating, 990, off));
    assert_eq!(a.status, ActionStatus::Blocked);
    assert_eq!(a.blocked_kind(), Some(crate::plan::BlockKind::Placement));
    assert!(
        a.blocked_message()
            .unwrap()
            .contains("slow rolls an update"),
        "{a:?}"
    );

    // Not for ever: an update older than placement.update_timeout (5 m) holds nothing.
    let snap = snap_with(&["w1", "w2"], Updating, 1000 - 301, off);
    assert_eq!(promotion(&snap).status, ActionStatus::Planned);
    // Ended updates, and updates of services that may run on managers, hold nothing.
    for state in [Completed, Paused, RollbackCompleted, RollbackPaused] {
        let a = promotion(&snap_with(&["w1", "w2"], state, 990, off));
        assert_eq!((a.action.target(), a.status), ("w1", ActionStatus::Planned));
    }
    let a = promotion(&snap_with(
        &["w1", "w2"],
        Updating,
        990,
        "node.labels.tier == web",
    ));
    assert_eq!((a.action.target(), a.status), ("w1", ActionStatus::Planned));
}

/// The rolling services' tasks are listed by observe: the rule above can only see tasks
/// it was given.
#[test]
fn observe_lists_the_tasks_of_rolling_updates_kept_off_managers() {
    let rolling = crate::model::Service {
        id: "slow".into(),
        constraints: vec!["node.role != manager".into()],
        update: Some(crate::model::UpdateStatus {
            state: crate::model::UpdateState::Updating,
            message: String::new(),
            started_at: Some(t(90)),
        }),
        ..Default::default()
    };
    let done = crate::model::Service {
        id: "done".into(),
        update: None,
        ..rolling.clone()
    };
    let services = [rolling, done];
    assert_eq!(
        crate::plan::services_needing_tasks(&services, &policy()),
        ["slow"]
    );
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
    assert_eq!(
        a.blocked_kind(),
        Some(crate::plan::BlockKind::LeaderSettling),
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
        t(700),
    );
    let plan = plan_once(&snap, &policy());
    assert!(plan.actions[0]
        .blocked_message()
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
        t(700),
    );
    let plan = plan_once(&snap, &p);
    assert_eq!(plan.actions.len(), 1);
    assert!(plan.actions[0].blocked_message().unwrap().contains("audit"));
}

#[test]
fn off_mode_plans_nothing() {
    let mut p = policy();
    p.managers.mode = Mode::Off;
    let snap = cluster(
        vec![manager("m1", true), dead(manager("m3", false), 0)],
        t(700),
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
        t(700),
    );
    snap.local.node_id = "m3".into();
    let plan = plan_once(&snap, &policy());
    assert!(plan.actions[0]
        .blocked_message()
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
        .blocked_message()
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
        0..6u8,                    // raft address: 0..3 shared with others (rebuilt hosts)
        0..4u8,                    // 1: promoted-at label, 2: demoted-for-removal label
    )
        .prop_map(
            move |(
                is_manager,
                state,
                reach,
                avail,
                updated,
                zone,
                opted,
                transition,
                addr,
                mark,
            )| {
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
                if let Some(m) = n.manager.as_mut().filter(|_| addr < 3) {
                    m.addr = format!("10.0.0.{addr}:2377");
                }
                match mark {
                    1 => {
                        n.labels
                            .insert(PROMOTED_AT_LABEL.into(), "2026-11-30T09:00:00Z".into());
                    }
                    2 => {
                        n.labels.insert(
                            DEMOTED_FOR_REMOVAL_LABEL.into(),
                            "2026-11-30T09:00:00Z".into(),
                        );
                    }
                    _ => {}
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
                     half in 0..4i64) -> (Snapshot, i64) {
        // Odd counts only: the policy refuses even ones.
        let desired = 2 * half + 1;
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
        // Down members the raft calls reachable are counted out (pessimistic).
        let reachable = snap.nodes.iter().filter(|n| raft::counts_reachable(n)).count();
        // Never from a minority, never without the local manager in the majority.
        prop_assert!(reachable >= quorum(members));
        let local = snap.nodes.iter().find(|n| n.id == snap.local.node_id).unwrap();
        prop_assert!(local.is_reachable_manager());
        // Never within the settle and stabilization windows, never with unknown nodes.
        if let Some(at) = memory.leader_changed_at() { prop_assert!(elapsed(now, at) >= p.managers.leader_settle); }
        if let Some(at) = memory.last_membership_change() { prop_assert!(elapsed(now, at) >= p.managers.stabilization); }
        prop_assert!(snap.nodes.iter().all(|n| n.state != NodeState::Unknown));

        let skew = p.managers.dead_after;
        let target = snap.nodes.iter().find(|n| n.id == action.action.target()).unwrap();
        match &action.action {
            Action::RemoveDeadManager(_) => {
                // Only entries without life for dead_after; members only when Down and
                // unreachable (or ghosts), and only within SwarmKit's rule.
                prop_assert!(!raft::counts_reachable(target));
                prop_assert!(target.state == NodeState::Down || target.state == NodeState::Disconnected);
                let since = memory.lifeless_since(target, skew).unwrap();
                prop_assert!(elapsed(now, since) >= p.managers.dead_after);
                if target.is_manager() {
                    let ghost = raft::ghost_ids(&snap).contains(&target.id);
                    prop_assert!(target.is_down_and_unreachable() || ghost);
                    prop_assert!(can_remove_member(members, reachable));
                    prop_assert!(fault_tolerance(members - 1, reachable) >= fault_tolerance(members, reachable));
                } else if target.role == Role::Manager {
                    // Outside the raft: only an ex-member this process saw in the raft,
                    // never a promotion of ours.
                    prop_assert!(memory.seen_as_member(target));
                } else {
                    // A worker: only one swarm-warden demoted for removal.
                    prop_assert!(target.label(DEMOTED_FOR_REMOVAL_LABEL).is_some());
                }
            }
            Action::PromoteWorker(_) => {
                // No dead manager waits for removal; everyone reachable; below desired;
                // no promotion unconverged.
                prop_assert_eq!(reachable, members);
                prop_assert!(members < p.managers.desired.get());
                prop_assert!(snap.nodes.iter().all(|n| !n.is_manager_outside_raft()));
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
