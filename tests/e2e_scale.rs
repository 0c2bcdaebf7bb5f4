//! The big-lab path (issue 15): a lab of 5 managers and `SCALE_WORKERS` workers (20 in CI;
//! `SCALE_WORKERS=100` is the 100-node run the README's "Scale" table reports) carrying
//! `SCALE_PENDING` Pending tasks (2,000 by default), swarm-warden on `m1` behind the
//! request meter. An idle reconcile reads the swarm in at most 5 calls and writes nothing
//! but its lease; a killed manager is removed about `dead_after` after SwarmKit marks it
//! Down, as on the small lab, and the manager count is restored.

mod common;

use std::time::Duration;

use common::*;
use swarm_chaos::docker_proxy::DockerProxy;
use swarm_chaos::meter::Metered;
use swarm_chaos::{Lab, LabSpec};

const DEAD_AFTER: Duration = Duration::from_secs(20);
const RESYNC: Duration = Duration::from_secs(5);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The reads of a reconcile's snapshot: the list calls (not the lease's config reads by
/// ID, nor the event stream).
fn snapshot_reads(m: &Metered) -> u64 {
    m.endpoints
        .iter()
        .filter(|(e, _)| {
            ["GET /nodes", "GET /services", "GET /tasks", "GET /configs"].contains(&e.as_str())
        })
        .map(|(_, c)| c.requests)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_big_lab_an_idle_reconcile_is_five_reads_and_a_killed_manager_is_replaced() {
    init_tracing();
    let workers = env_or("SCALE_WORKERS", 20) as usize;
    let pending = env_or("SCALE_PENDING", 2_000);
    let started = std::time::Instant::now();
    let lab = Lab::start(LabSpec::new(5, workers)).await.expect("lab");
    println!(
        "SCALE: 5 managers + {workers} workers formed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (client, _) = lab.manager_client().await.expect("manager");
    for i in 0..pending.div_ceil(1_000) {
        swarm_chaos::pending::create_pending_service(
            &client,
            &format!("pending-{i}"),
            1_000.min(pending - i * 1_000),
        )
        .await
        .expect("pending service");
    }
    let proxy = DockerProxy::start(
        &lab.socket("m1").expect("socket"),
        &lab.paths().dir().join("meter-m1.sock"),
    )
    .await
    .expect("meter");
    let policy = policy_file(
        &lab,
        &format!(
            "managers:\n  desired: 5\n  dead_after: {}s\n  stabilization: 5s\n  leader_settle: 10s\ncontroller:\n  resync: {}s\n  backoff_min: 1s\n  backoff_max: 10s\n",
            DEAD_AFTER.as_secs(),
            RESYNC.as_secs()
        ),
    );
    let warden = Warden::start_with_env(
        &lab,
        "m1",
        &policy,
        &[],
        &[("DOCKER_HOST", proxy.docker_host())],
    );
    // Past the start (connection, the lease, first reconciles), count.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = proxy.meter().take();
    let _ = proxy.take_requests();
    let watched = Duration::from_secs(30);
    tokio::time::sleep(watched).await;
    let idle = proxy.meter().take();
    let seen = proxy.take_requests();
    let snapshots = idle.endpoints.get("GET /nodes").map_or(0, |c| c.requests);
    println!("SCALE: idle for {watched:?}, {snapshots} snapshots:\n{idle}");
    assert!(
        snapshots >= 2,
        "resync {RESYNC:?}: snapshots were taken\n{idle}"
    );
    // The window may cut one snapshot's reads off from its node list at each end: up to 4
    // reads more than 5 per node list.
    let reads = snapshot_reads(&idle);
    assert!(
        reads <= 5 * snapshots + 4,
        "{reads} snapshot reads for {snapshots} snapshots (at most 5 each):\n{idle}"
    );
    // The only write an idle swarm-warden makes is its lease's renewal: every update is of
    // the lease's config, found by its name.
    let lease_id = {
        let configs = client
            .list_configs(Some(bollard::query_parameters::ListConfigsOptions {
                filters: Some([("name".to_owned(), vec!["swarm-warden-lease".to_owned()])].into()),
            }))
            .await
            .expect("configs");
        configs
            .into_iter()
            .find(|c| c.spec.as_ref().and_then(|s| s.name.as_deref()) == Some("swarm-warden-lease"))
            .and_then(|c| c.id)
            .expect("the lease config")
    };
    let lease_update = format!("/configs/{lease_id}/update");
    let other_writes: Vec<String> = seen
        .iter()
        .filter(|r| r.is_write() && r.path.split('?').next() != Some(lease_update.as_str()))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        other_writes.is_empty(),
        "an idle swarm-warden writes only its lease: {other_writes:?}"
    );

    let (victim, victim_id) = follower(&lab.node_table().await.expect("table"), &["m1"]);
    let after_down = kill_until_removed(&lab, &victim, &victim_id, DEAD_AFTER).await;
    println!(
        "SCALE: reaction time (Down seen -> removal done, minus dead_after {DEAD_AFTER:?}): {:.1}s",
        after_down.as_secs_f64() - DEAD_AFTER.as_secs_f64()
    );
    // The small lab's bounds (tests/e2e_managers.rs).
    assert!(
        after_down >= DEAD_AFTER - Duration::from_secs(2),
        "removed after only {after_down:?}"
    );
    assert!(
        after_down <= DEAD_AFTER + Duration::from_secs(20),
        "removed only after {after_down:?}"
    );
    watch_until(
        &lab,
        "5 reachable managers again",
        Duration::from_secs(90),
        |t| reachable_managers(t) == 5 && t.managers().count() == 5,
    )
    .await;
    let log = warden.stop();
    assert!(
        log.actions("action-started", "remove-dead-manager") > 0
            && log.actions("action-started", "promote-worker") > 0,
        "{log}"
    );
    drop(proxy);
    teardown_leaving_nothing(lab);
}
