//! The lab against real swarms: formation, workloads, faults, joins and clean teardown.
//!
//! These start real dockerd processes: they need root and run one at a time (see
//! `.config/nextest.toml`, test group `lab`).

use std::time::Duration;

use bollard::models::{ServiceSpec, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement};
use bollard::query_parameters::ListTasksOptionsBuilder;
use swarm_chaos::reap::leftovers;
use swarm_chaos::{Lab, LabSpec, NodeTable, ProcessState, Role, BUSYBOX_IMAGE};

const SEEN_DOWN: Duration = Duration::from_secs(60);
const BACK_READY: Duration = Duration::from_secs(90);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("swarm_chaos=info")
        .with_test_writer()
        .try_init();
}

/// Tears the lab down and fails if anything of it is left on the host.
fn teardown_leaving_nothing(lab: Lab) {
    let paths = lab.paths().clone();
    lab.teardown().expect("teardown");
    let left = leftovers(&paths);
    assert!(
        left.is_empty(),
        "lab {} left behind: {left:#?}",
        paths.lab()
    );
}

fn hostnames(table: &NodeTable) -> Vec<&str> {
    table.rows.iter().map(|r| r.hostname.as_str()).collect()
}

#[tokio::test]
async fn a_three_plus_two_swarm_forms_runs_replicas_on_workers_and_takes_a_new_manager() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab starts");

    let table = lab.node_table().await.expect("node table");
    assert_eq!(hostnames(&table), ["m1", "m2", "m3", "w1", "w2"]);
    let managers: Vec<&str> = table.managers().map(|m| m.hostname.as_str()).collect();
    assert_eq!(managers, ["m1", "m2", "m3"]);
    assert!(table.leader().is_some(), "no leader:\n{table}");
    assert!(
        table.rows.iter().all(|r| r.is_ready()),
        "not all ready:\n{table}"
    );
    for node in ["m1", "m2", "m3", "w1", "w2"] {
        let socket = lab.socket(node).expect("socket");
        assert!(socket.exists(), "{}", socket.display());
        let info = lab
            .client(node)
            .await
            .expect("client")
            .info()
            .await
            .expect("info");
        assert_eq!(
            info.name.as_deref(),
            Some(node),
            "each node has its own daemon"
        );
        lab.client(node)
            .await
            .expect("client")
            .inspect_image(BUSYBOX_IMAGE)
            .await
            .unwrap_or_else(|e| panic!("{BUSYBOX_IMAGE} missing on {node}: {e}"));
    }

    let client = lab.client("m1").await.expect("client");
    client
        .create_service(
            ServiceSpec {
                name: Some("sleeper".into()),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(BUSYBOX_IMAGE.into()),
                        args: Some(vec!["sleep".into(), "3600".into()]),
                        ..Default::default()
                    }),
                    placement: Some(TaskSpecPlacement {
                        constraints: Some(vec!["node.role==worker".into()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(bollard::models::ServiceSpecMode {
                    replicated: Some(bollard::models::ServiceSpecModeReplicated {
                        replicas: Some(4),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("service created");
    let ids: std::collections::HashMap<String, String> = table
        .rows
        .iter()
        .map(|r| (r.id.clone(), r.hostname.clone()))
        .collect();
    let running_on = swarm_chaos::wait_until(
        "4 sleeper tasks running",
        Duration::from_secs(60),
        || async {
            let filters = ListTasksOptionsBuilder::default()
                .filters(
                    &[
                        ("service", vec!["sleeper"]),
                        ("desired-state", vec!["running"]),
                    ]
                    .into(),
                )
                .build();
            let tasks = match client.list_tasks(Some(filters)).await {
                Ok(t) => t,
                Err(e) => return swarm_chaos::Probe::Pending(e.to_string()),
            };
            let running: Vec<String> = tasks
                .iter()
                .filter(|t| {
                    t.status.as_ref().and_then(|s| s.state)
                        == Some(bollard::models::TaskState::RUNNING)
                })
                .filter_map(|t| t.node_id.as_ref().and_then(|n| ids.get(n)).cloned())
                .collect();
            if running.len() == 4 {
                swarm_chaos::Probe::Done(running)
            } else {
                swarm_chaos::Probe::Pending(format!(
                    "running on {running:?} of {} tasks",
                    tasks.len()
                ))
            }
        },
    )
    .await
    .expect("tasks run");
    assert!(
        running_on.iter().all(|n| n.starts_with('w')),
        "tasks on {running_on:?}"
    );

    let m4 = lab.join("m4", Role::Manager).await.expect("m4 joins");
    assert_eq!(m4.name.as_str(), "m4");
    lab.wait_for_nodes("m4 a reachable manager", Duration::from_secs(30), |t| {
        t.node("m4")
            .is_some_and(|r| r.is_reachable_manager() && r.is_ready())
            && t.managers()
                .filter(|m| m.is_reachable_manager() || m.leader)
                .count()
                == 4
    })
    .await
    .expect("m4 joined the raft");

    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn a_killed_manager_is_seen_down_and_unreachable_and_comes_back_after_restart() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab starts");
    let before = lab.node_table().await.expect("table");
    let m3_id = before.node("m3").expect("m3").id.clone();

    lab.kill("m3").await.expect("kill");
    assert_eq!(
        lab.process_state("m3").expect("state"),
        ProcessState::Stopped
    );
    let table = lab
        .wait_for_nodes("m3 Down and Unreachable", SEEN_DOWN, |t| {
            t.node("m3").is_some_and(|r| r.is_down())
        })
        .await
        .expect("m3 seen dead");
    assert!(
        table.leader().is_some_and(|l| l.hostname != "m3"),
        "{table}"
    );

    lab.restart("m3").await.expect("restart");
    let table = lab
        .wait_for_nodes("m3 Ready and reachable again", BACK_READY, |t| {
            t.node("m3")
                .is_some_and(|r| r.is_ready() && (r.is_reachable_manager() || r.leader))
        })
        .await
        .expect("m3 back");
    assert_eq!(
        table.node("m3").expect("m3").id,
        m3_id,
        "restart keeps the node's identity"
    );

    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn a_rebuilt_manager_rejoins_under_a_new_id_and_leaves_its_old_entry_down() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 0)).await.expect("lab starts");
    let before = lab.node_table().await.expect("table");
    let old = before.node("m3").expect("m3").clone();

    let record = lab.rebuild("m3", Role::Manager).await.expect("rebuild");
    assert_eq!(record.addr.to_string(), old.addr, "same address");
    assert_eq!(lab.node("m3").expect("record").role, Role::Manager);
    let table = lab
        .wait_for_nodes("old m3 Down, new m3 Ready and reachable", SEEN_DOWN, |t| {
            let rows: Vec<_> = t.by_hostname("m3").collect();
            rows.len() == 2
                && rows.iter().any(|r| r.id == old.id && r.state == "down")
                && rows.iter().any(|r| {
                    r.id != old.id && r.is_ready() && (r.is_reachable_manager() || r.leader)
                })
        })
        .await
        .expect("rebuilt m3 seen");
    let new = table.node("m3").expect("current m3");
    assert_ne!(new.id, old.id, "a wiped host is a new swarm node");
    assert_eq!(new.addr, old.addr);

    let client = lab.client("m3").await.expect("client");
    let info = client.info().await.expect("info");
    assert_eq!(info.name.as_deref(), Some("m3"), "same hostname");
    assert_eq!(
        info.swarm.and_then(|s| s.node_id).as_deref(),
        Some(new.id.as_str()),
        "the daemon on m3 is the new node"
    );
    client
        .inspect_image(BUSYBOX_IMAGE)
        .await
        .expect("busybox loaded on the rebuilt node");

    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn force_new_cluster_leaves_the_lost_managers_listed_outside_the_raft() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 0)).await.expect("lab starts");
    lab.kill("m2").await.expect("kill m2");
    lab.kill("m3").await.expect("kill m3");

    lab.force_new_cluster("m1")
        .await
        .expect("force new cluster");
    let table = lab
        .wait_for_nodes("m1 sole leader of a new raft", SEEN_DOWN, |t| {
            t.leader().is_some_and(|l| l.hostname == "m1")
        })
        .await
        .expect("m1 leads");
    for lost in ["m2", "m3"] {
        let row = table.node(lost).expect("still listed");
        assert!(row.is_manager(), "{lost} keeps its role:\n{table}");
        assert_eq!(row.reachability, "", "{lost} is out of the raft:\n{table}");
        assert!(!row.is_ready(), "{lost} is not ready:\n{table}");
    }

    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn a_frozen_manager_goes_down_and_is_ready_again_after_thaw() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 0)).await.expect("lab starts");

    lab.freeze("m2").await.expect("freeze");
    assert_eq!(
        lab.process_state("m2").expect("state"),
        ProcessState::Frozen
    );
    lab.wait_for_nodes("frozen m2 Down and Unreachable", SEEN_DOWN, |t| {
        t.node("m2").is_some_and(|r| r.is_down())
    })
    .await
    .expect("m2 seen down");

    lab.thaw("m2").await.expect("thaw");
    lab.wait_for_nodes("thawed m2 Ready and reachable", BACK_READY, |t| {
        t.node("m2")
            .is_some_and(|r| r.is_ready() && (r.is_reachable_manager() || r.leader))
    })
    .await
    .expect("m2 back");

    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn an_isolated_manager_is_unreachable_until_the_partition_heals() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab starts");
    // Isolate a follower, so the majority keeps its leader and can tell us what it sees.
    let table = lab.node_table().await.expect("table");
    let follower = table
        .managers()
        .find(|m| !m.leader)
        .expect("a follower")
        .hostname
        .clone();

    lab.partition(&follower).await.expect("partition");
    assert_eq!(lab.state().partition.as_deref(), Some(follower.as_str()));
    lab.wait_for_nodes(
        &format!("isolated {follower} unreachable"),
        SEEN_DOWN,
        |t| {
            t.node(&follower)
                .is_some_and(|r| r.reachability == "unreachable")
        },
    )
    .await
    .expect("isolation seen");

    lab.heal().await.expect("heal");
    // Healing may trigger an election (the isolated node's term grew): allow for it.
    lab.wait_for_nodes(&format!("healed {follower} reachable"), BACK_READY, |t| {
        t.leader().is_some()
            && t.node(&follower)
                .is_some_and(|r| r.is_ready() && (r.is_reachable_manager() || r.leader))
    })
    .await
    .expect("heal seen");

    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn two_labs_at_once_do_not_collide() {
    init_tracing();
    let (a, b) = tokio::join!(
        Lab::start(LabSpec::new(1, 1)),
        Lab::start(LabSpec::new(1, 1))
    );
    let (a, b) = (a.expect("lab a"), b.expect("lab b"));
    assert_ne!(a.name(), b.name());
    assert_ne!(a.socket("m1").expect("a"), b.socket("m1").expect("b"));
    let (ta, tb) = (
        a.node_table().await.expect("a"),
        b.node_table().await.expect("b"),
    );
    assert_eq!(ta.rows.len(), 2, "{ta}");
    assert_eq!(tb.rows.len(), 2, "{tb}");
    assert!(
        ta.rows
            .iter()
            .all(|r| !tb.rows.iter().any(|s| s.id == r.id)),
        "two separate swarms"
    );
    teardown_leaving_nothing(a);
    teardown_leaving_nothing(b);
}

#[test]
fn a_lab_is_torn_down_when_its_owner_panics() {
    init_tracing();
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let lab = Lab::start(LabSpec::new(1, 0)).await.expect("lab starts");
            tx.send(lab.paths().clone()).expect("send");
            panic!("a test failing with a lab in hand");
        })
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let paths = rx.recv().expect("lab paths");
    let left = leftovers(&paths);
    assert!(left.is_empty(), "left behind after a panic: {left:#?}");
}
