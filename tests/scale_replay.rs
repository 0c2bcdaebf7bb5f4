//! swarm-warden's observation against a Docker API replay (answers captured from a real
//! lab's Engine, scaled up): what only shows at a size no lab here reaches.

use std::path::Path;
use std::time::SystemTime;

use swarm_chaos::docker_proxy::DockerProxy;
use swarm_chaos::replay::{Fixture, Replay, Size, Swarm};
use swarm_warden::config::Policy;
use swarm_warden::observe::Observer;

fn fixture() -> Fixture {
    Fixture::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/engine"))
        .expect("the committed capture")
}

/// Half the captured services reserve resources and mount a volume: with 4,000 services
/// the filter naming those whose tasks the planner needs is ~76 KB, over the 64 KB a
/// request URI may have.
#[tokio::test]
async fn a_swarm_with_thousands_of_reserving_services_is_observed_whole() {
    let size = Size {
        managers: 3,
        nodes: 100,
        services: 4_000,
        tasks: 8_000,
    };
    let swarm = Swarm::generate(&fixture(), size).expect("swarm");
    let dir = tempdir();
    let replay = Replay::start(swarm, &dir.join("replay.sock"))
        .await
        .expect("replay");
    let proxy = DockerProxy::start(replay.socket(), &dir.join("meter.sock"))
        .await
        .expect("meter");
    let docker = swarm_warden::observe::connect(Some(&proxy.docker_host()))
        .await
        .expect("connect");
    let policy = Policy::default();
    let observer = Observer::new(docker).watching(&policy).expect("observer");
    let snapshot = observer
        .snapshot(SystemTime::now())
        .await
        .expect("a snapshot, not an error");
    assert_eq!(snapshot.services.len(), 4_000);
    let reserving: std::collections::HashSet<&str> = snapshot
        .services
        .iter()
        .filter(|s| !s.reservations.is_zero())
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(reserving.len(), 2_000);
    let of_reserving = snapshot
        .tasks
        .iter()
        .filter(|t| reserving.contains(t.service_id.as_str()))
        .count();
    assert_eq!(of_reserving, 4_000, "every task of every reserving service");
    let on_managers: Vec<&swarm_warden::model::Task> = snapshot
        .tasks
        .iter()
        .filter(|t| {
            t.node_id
                .as_deref()
                .is_some_and(|n| snapshot.nodes.iter().any(|m| m.id == n && m.is_manager()))
        })
        .collect();
    // The unconstrained half's tasks are spread over all 100 nodes, managers too; the
    // reserving half is constrained to workers.
    assert!(!on_managers.is_empty());
    assert!(on_managers
        .iter()
        .all(|t| !reserving.contains(t.service_id.as_str())));
    let task_lists = proxy
        .meter()
        .read()
        .endpoints
        .get("GET /tasks")
        .map_or(0, |c| c.requests);
    assert_eq!(
        task_lists, 21,
        "one list for the managers' tasks, 2,000 services in 20 lists of 100"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stack redeploy removes a service between the service list and the task lists: the
/// Engine then fails a task list naming it (404 "service ... not found"). The snapshot is
/// still taken, with every task of the services still there.
#[tokio::test]
async fn a_service_removed_between_the_service_and_task_lists_does_not_blind_the_reconcile() {
    let size = Size {
        managers: 3,
        nodes: 10,
        services: 300,
        tasks: 600,
    };
    let swarm = Swarm::generate(&fixture(), size).expect("swarm");
    let dir = tempdir();
    let replay = Replay::start(swarm, &dir.join("replay-rm.sock"))
        .await
        .expect("replay");
    let docker = swarm_warden::observe::connect(Some(&replay.docker_host()))
        .await
        .expect("connect");
    let policy = Policy::default();
    let observer = Observer::new(docker).watching(&policy).expect("observer");
    // shop_web-0 reserves resources: its tasks are listed by service.
    replay.remove_after_next_listing("shop_web-0");
    let snapshot = observer
        .snapshot(SystemTime::now())
        .await
        .expect("a snapshot, not a failed reconcile");
    let removed = snapshot
        .services
        .iter()
        .find(|s| s.name == "shop_web-0")
        .map(|s| s.id.clone())
        .expect("listed before its removal");
    let reserving: std::collections::HashSet<&str> = snapshot
        .services
        .iter()
        .filter(|s| !s.reservations.is_zero() && s.id != removed)
        .map(|s| s.id.as_str())
        .collect();
    let of_reserving = snapshot
        .tasks
        .iter()
        .filter(|t| reserving.contains(t.service_id.as_str()))
        .count();
    assert_eq!(
        of_reserving,
        149 * 2,
        "every task of every other reserving service"
    );
    assert!(snapshot.tasks.iter().all(|t| t.service_id != removed));
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "swarm-warden-replay-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}
