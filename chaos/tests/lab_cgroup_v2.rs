//! The lab's cgroup v2 paths on this host's cgroup2 mount (`/sys/fs/cgroup/unified` on a
//! hybrid host, `/sys/fs/cgroup` on a unified one): `cgroup.freeze`, `cgroup.kill` and
//! the SIGKILL-by-listing fallback on real processes, then a whole lab held in the v2 tree.
//!
//! What this does not reach on a hybrid host: dockerd's own cgroup v2 driver and `io.max`
//! (the controllers are bound to v1 there); see the README's "cgroup v2" section.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions};
use swarm_chaos::cgroup::{CgroupMode, KillMethod, NodeCgroup, Tree};
use swarm_chaos::reap::leftovers;
use swarm_chaos::{Lab, LabSpec, ProcessState, BUSYBOX_IMAGE};

const SEEN_DOWN: Duration = Duration::from_secs(60);
const BACK_READY: Duration = Duration::from_secs(90);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("swarm_chaos=info")
        .with_test_writer()
        .try_init();
}

/// A cgroup2 folder of our own, removed (processes killed) even when the test fails.
struct Scratch {
    cgroup: NodeCgroup,
    children: Vec<Child>,
}

impl Scratch {
    fn new(tag: &str) -> Self {
        assert_ne!(
            CgroupMode::of_host(),
            CgroupMode::Legacy,
            "this host has no cgroup2 mount"
        );
        let cgroup = NodeCgroup::new(
            format!("swarm-chaos-test-{tag}-{}", std::process::id()),
            Tree::V2,
        );
        cgroup.create().expect("create the cgroup");
        Self {
            cgroup,
            children: Vec::new(),
        }
    }

    /// A shell in the cgroup that starts two background sleepers (a small process tree,
    /// like dockerd and its shims) and a ticker that appends to `ticks` every 20 ms.
    fn spawn_tree(&mut self, ticks: &std::path::Path) {
        let script = format!(
            "echo $$ > {procs}; sleep 1000 & sleep 1000 & \
             while :; do echo . >> {ticks}; sleep 0.02; done",
            procs = self.cgroup.procs_file().display(),
            ticks = ticks.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .expect("spawn a tree");
        self.children.push(child);
        wait_for("three processes in the cgroup", || {
            self.cgroup.pids().len() >= 3
        });
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.cgroup.remove();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Orphans are reaped by init, in its own time: gone from /proc, or a zombie at most.
fn gone_or_zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command's closing parenthesis.
    stat.is_empty()
        || stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

fn ticks(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.len()).unwrap_or(0)
}

fn freeze_then_kill(method: KillMethod) {
    let dir = std::env::temp_dir().join(format!("cg2-{method:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tick_file = dir.join("ticks");
    let mut scratch = Scratch::new(&format!("{method:?}").to_lowercase());
    scratch.spawn_tree(&tick_file);
    assert_eq!(scratch.cgroup.state(), ProcessState::Running);
    wait_for("the ticker ticking", || ticks(&tick_file) > 0);

    scratch.cgroup.freeze().expect("freeze");
    assert_eq!(scratch.cgroup.state(), ProcessState::Frozen);
    let frozen_at = ticks(&tick_file);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ticks(&tick_file),
        frozen_at,
        "a frozen tree went on running"
    );

    scratch.cgroup.thaw().expect("thaw");
    assert_eq!(scratch.cgroup.state(), ProcessState::Running);
    wait_for("the ticker ticking again", || ticks(&tick_file) > frozen_at);

    let pids = scratch.cgroup.pids();
    scratch.cgroup.kill_all_by(method).expect("kill");
    assert_eq!(scratch.cgroup.state(), ProcessState::Stopped);
    for child in &mut scratch.children {
        let status = child.wait().expect("reaped");
        assert!(!status.success(), "the shell was killed: {status:?}");
    }
    scratch.children.clear();
    for pid in pids {
        assert!(gone_or_zombie(pid), "process {pid} survived");
    }
    // Not left frozen: a node restarted under the name would start frozen.
    let freeze =
        std::fs::read_to_string(scratch.cgroup.dir().join("cgroup.freeze")).expect("cgroup.freeze");
    assert_eq!(freeze.trim(), "0");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node killed while frozen (freeze, then kill) comes back thawed: a restart joins the
/// same tree.
fn killed_while_frozen(method: KillMethod) {
    let dir = std::env::temp_dir().join(format!("cg2-frozen-{method:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut scratch = Scratch::new(&format!("frozen-{method:?}").to_lowercase());
    scratch.spawn_tree(&dir.join("ticks"));
    scratch.cgroup.freeze().expect("freeze");
    scratch
        .cgroup
        .kill_all_by(method)
        .expect("kill a frozen tree");
    assert_eq!(scratch.cgroup.state(), ProcessState::Stopped);
    let freeze =
        std::fs::read_to_string(scratch.cgroup.dir().join("cgroup.freeze")).expect("cgroup.freeze");
    assert_eq!(freeze.trim(), "0", "left frozen: a restart would hang");
    for child in &mut scratch.children {
        let _ = child.wait();
    }
    scratch.children.clear();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tree_killed_while_frozen_by_cgroup_kill_is_left_thawed() {
    killed_while_frozen(KillMethod::CgroupKill);
}

#[test]
fn a_tree_killed_while_frozen_by_signals_is_left_thawed() {
    killed_while_frozen(KillMethod::Signals);
}

#[test]
fn a_cgroup2_tree_freezes_thaws_and_dies_whole_by_cgroup_kill() {
    freeze_then_kill(KillMethod::CgroupKill);
}

#[test]
fn a_cgroup2_tree_dies_whole_by_sigkill_to_every_listed_process_without_cgroup_kill() {
    freeze_then_kill(KillMethod::Signals);
}

/// Every process of a v2 node — dockerd, containerd, shims and the containers dockerd
/// starts under `--cgroup-parent` — is in the node's cgroup2 tree: freezing it is a
/// stuck host the swarm sees Down, killing it is node loss, and both come back.
#[tokio::test]
async fn a_lab_held_in_the_v2_tree_freezes_kills_and_restarts_nodes_containers_included() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1).cgroup(Tree::V2))
        .await
        .expect("lab starts");
    assert_eq!(lab.cgroup_tree(), Tree::V2);
    assert_eq!(lab.state().cgroup, Tree::V2, "recorded for down/status");

    // A container on the worker, with a memory limit (its cgroup is dockerd's own work).
    let worker = lab.client("w1").await.expect("client");
    worker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name("c1").build()),
            ContainerCreateBody {
                image: Some(BUSYBOX_IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                user: Some("65534:65534".into()),
                host_config: Some(HostConfig {
                    network_mode: Some("none".into()),
                    memory: Some(64 << 20),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("container created");
    worker
        .start_container("c1", None::<StartContainerOptions>)
        .await
        .expect("container started");
    let pid = worker
        .inspect_container("c1", None)
        .await
        .expect("inspect")
        .state
        .and_then(|s| s.pid)
        .expect("container pid");
    let w1 = lab.node_cgroup("w1").expect("w1's cgroup");
    assert!(
        w1.pids().contains(&i32::try_from(pid).expect("pid")),
        "container process {pid} outside {}: {:?}",
        w1.dir().display(),
        w1.pids()
    );

    lab.freeze("m2").await.expect("freeze");
    assert_eq!(
        lab.process_state("m2").expect("state"),
        ProcessState::Frozen
    );
    lab.wait_for_nodes("frozen m2 Down", SEEN_DOWN, |t| {
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

    lab.kill("w1").await.expect("kill");
    assert_eq!(
        lab.process_state("w1").expect("state"),
        ProcessState::Stopped
    );
    assert!(
        gone_or_zombie(i32::try_from(pid).expect("pid")),
        "the container outlived its node"
    );
    lab.wait_for_nodes("killed w1 Down", SEEN_DOWN, |t| {
        t.node("w1").is_some_and(|r| r.is_down())
    })
    .await
    .expect("w1 seen down");
    lab.restart("w1").await.expect("restart");
    lab.wait_for_nodes("w1 Ready again", BACK_READY, |t| {
        t.node("w1").is_some_and(|r| r.is_ready())
    })
    .await
    .expect("w1 back");

    let paths = lab.paths().clone();
    lab.teardown().expect("teardown");
    let left = leftovers(&paths);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
