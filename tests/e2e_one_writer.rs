//! One writer under a checked claim, and a loop that never blocks, end to end: the real
//! binary, two replicas, real lab swarms. The wardens log JSON; the tests read fields,
//! not wording.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use nix::sys::signal::Signal;
use swarm_chaos::docker_proxy::{DockerProxy, Seen};
use swarm_chaos::{wait_until, Lab, LabSpec, Probe};

const DEAD_AFTER: Duration = Duration::from_secs(10);

/// Short clocks; a lease that runs out in 6 s.
fn policy(stabilization: Duration) -> String {
    format!(
        "managers:\n  dead_after: {}s\n  stabilization: {}s\n  leader_settle: 5s\n\
         placement:\n  update_timeout: 5m\n\
         lease:\n  duration: 6s\n  renew: 2s\n  retry: 1s\n\
         controller:\n  resync: 5s\n  backoff_min: 1s\n  backoff_max: 10s\n",
        DEAD_AFTER.as_secs(),
        stabilization.as_secs()
    )
}

fn json_env() -> Vec<(&'static str, String)> {
    vec![("LOG_FORMAT", "json".into())]
}

/// The `Carrying out` events of a log, as (kind, target, when).
fn carried_out(events: &[serde_json::Value]) -> Vec<(String, String, SystemTime)> {
    events
        .iter()
        .map(|e| {
            (
                e["fields"]["kind"].as_str().unwrap_or_default().to_owned(),
                e["fields"]["target"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event_time(e),
            )
        })
        .collect()
}

async fn wait_for_event(warden: &Warden, what: &str, event: &str, kind: Option<&str>) {
    wait_for_event_within(warden, what, event, kind, Duration::from_secs(120)).await
}

async fn wait_for_event_within(
    warden: &Warden,
    what: &str,
    event: &str,
    kind: Option<&str>,
    within: Duration,
) {
    wait_until(what, within, || async {
        let found = warden
            .log()
            .events(event)
            .iter()
            .any(|e| kind.is_none_or(|k| e["fields"]["kind"] == k));
        if found {
            Probe::Done(())
        } else {
            Probe::Pending(String::new())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", warden.log()));
}

/// A service of 6 replicas (one per node of a 3+3 lab, so three on managers) whose rolling
/// update replaces one task every `delay`: a placement fix takes about six of them. Like a
/// real workload it runs as nobody and keeps data while it runs (scratch, on tmpfs: a
/// service with node-local data is never moved, see e2e_placement_field).
async fn slow_service(lab: &Lab, delay: &str) {
    create_running(
        lab,
        "slow",
        &[
            "--replicas",
            "6",
            "--update-parallelism",
            "1",
            "--update-delay",
            delay,
            // Each task the update starts is watched for failure for 30 s (Docker's
            // default is 5 s), and the update ends 30 s after its last task: a task
            // rejected in that window (its node promoted to manager) pauses the update.
            "--update-monitor",
            "30s",
            "--user",
            "65534:65534",
            "--mount",
            "type=tmpfs,target=/scratch",
        ],
        &[
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/scratch/wal bs=1k count=256 2>/dev/null && exec sleep 1d",
        ],
    );
    let hosts = wait_running(lab, "slow", 6).await;
    assert!(hosts.iter().any(|h| h.starts_with('m')), "{hosts:?}");
}

#[tokio::test]
async fn a_dead_manager_is_removed_while_a_slow_update_rolls_and_a_frozen_holder_then_writes_nothing(
) {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 3)).await.expect("lab");
    slow_service(&lab, "15s").await;
    let policy = policy_file(&lab, &policy(Duration::from_secs(5)));
    let holder = Warden::start_with_env(&lab, "m1", &policy, &[], &json_env());
    wait_for_event(&holder, "the lease", "lease-taken", None).await;
    let other = Warden::start_with_env(&lab, "m2", &policy, &[], &json_env());

    // The placement fix of `slow` starts rolling; a manager dies meanwhile.
    wait_for_event(
        &holder,
        "the placement fix",
        "action-started",
        Some("enforce-placement"),
    )
    .await;
    let (victim, victim_id) = follower(&lab.node_table().await.expect("table"), &["m1", "m2"]);
    let after_down = kill_until_removed(&lab, &victim, &victim_id, DEAD_AFTER).await;
    assert!(
        after_down <= DEAD_AFTER + Duration::from_secs(20),
        "removed only {after_down:?} after it was seen Down: the rolling update held the loop"
    );
    let log = holder.log();
    let fix_ended = ["action-done", "action-failed", "action-rolled-back"]
        .iter()
        .flat_map(|e| log.events(e))
        .any(|e| e["fields"]["kind"] == "enforce-placement");
    assert!(
        !fix_ended,
        "the placement fix had ended before the removal: nothing ran side by side\n{}",
        holder.log()
    );

    // Freeze the holder past the lease while the update still rolls: the follower takes
    // over; the thawed holder's claim has run out on its own clock, and its running fix
    // sends nothing when it gets to its next write.
    holder.signal(Signal::SIGSTOP);
    let frozen = Instant::now();
    wait_for_event(
        &other,
        "the other replica to take over",
        "lease-taken",
        None,
    )
    .await;
    // Not before the lease ran out: its last renewal was at most `renew` (2 s) before the
    // freeze, and the lease lasts 6 s.
    assert!(
        frozen.elapsed() >= Duration::from_secs(4),
        "took over early"
    );
    holder.signal(Signal::SIGCONT);
    // Its next write is the record's removal once the update converged: up to a few
    // minutes on a loaded machine.
    wait_for_event_within(
        &holder,
        "a refused write on the old holder",
        "write-refused",
        None,
        Duration::from_secs(300),
    )
    .await;
    let refused_after_thaw = holder.log().events("write-refused").len();
    assert!(refused_after_thaw > 0);

    // The new holder finishes the fix from its record: every task off the managers, the
    // record gone.
    wait_until("the fix to end", Duration::from_secs(180), || async {
        let records = placement_record_ids(&lab);
        let on_managers: Vec<String> = running_on(&lab, "slow")
            .await
            .into_iter()
            .filter(|h| h.starts_with('m'))
            .collect();
        if records.is_empty() && on_managers.is_empty() {
            Probe::Done(())
        } else {
            Probe::Pending(format!("records {records:?}, on managers {on_managers:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", other.log()));
    wait_running(&lab, "slow", 6).await;
    holder.stop();
    let log = other.stop();
    // Nothing undid the fix: no promotion while it rolled (which would have paused it),
    // no rollback.
    let rolled_back: Vec<_> = carried_out(&log.lines("action-started"))
        .into_iter()
        .filter(|(kind, _, _)| kind == "roll-back-placement")
        .collect();
    assert!(rolled_back.is_empty(), "{rolled_back:?}\n{log}");
    teardown_leaving_nothing(lab);
}

/// How the holder goes away in the middle of a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HolderEnd {
    /// SIGKILL: no release, no handoff on the way out; only what the lease carried
    /// before the demote was sent.
    Killed,
    /// SIGTERM once the victim is demoted: the running removal stops at its next wait,
    /// then the holder releases the lease (carrying the change) and exits.
    Terminated,
}

#[tokio::test]
async fn a_holder_killed_between_demote_and_node_rm_leaves_its_successor_waiting_out_stabilization()
{
    holder_gone_between_demote_and_node_rm(HolderEnd::Killed).await;
}

#[tokio::test]
async fn a_holder_terminated_between_demote_and_node_rm_leaves_its_successor_waiting_out_stabilization(
) {
    holder_gone_between_demote_and_node_rm(HolderEnd::Terminated).await;
}

/// The holder starts a removal and goes away (`end`) between its demote and its `node
/// rm`; the successor makes no membership change within stabilization of the first and
/// finishes the job: the victim gone, three reachable managers.
async fn holder_gone_between_demote_and_node_rm(end: HolderEnd) {
    init_tracing();
    let stabilization = Duration::from_secs(30);
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    let policy = policy_file(&lab, &policy(stabilization));
    let first = Warden::start_with_env(&lab, "m1", &policy, &[], &json_env());
    wait_for_event(&first, "the lease", "lease-taken", None).await;
    let second = Warden::start_with_env(&lab, "m2", &policy, &[], &json_env());

    let (victim, victim_id) = follower(&lab.node_table().await.expect("table"), &["m1", "m2"]);
    lab.kill(&victim).await.expect("kill");
    wait_for_event(
        &first,
        "the removal",
        "action-started",
        Some("remove-dead-manager"),
    )
    .await;
    let first_log = match end {
        HolderEnd::Killed => {
            let log = first.log();
            first.kill();
            log
        }
        HolderEnd::Terminated => {
            // Demoted (role worker) or already out of the raft: the `node rm` is next.
            watch_until(&lab, "the victim demoted", Duration::from_secs(60), |t| {
                t.rows.iter().any(|r| r.id == victim_id && !r.is_manager())
                    || t.rows.iter().all(|r| r.id != victim_id)
            })
            .await;
            first.stop()
        }
    };
    let changed = carried_out(&first_log.lines("action-started"))
        .into_iter()
        .map(|(_, _, at)| at)
        .next()
        .expect("the first holder's change");

    // The successor takes the lease with the change in it: no membership change of its
    // own within stabilization of the first one; then it finishes the removal (or the
    // first did) and restores three managers.
    let (table, _, _) = watch_until(
        &lab,
        "the victim gone and three reachable managers",
        Duration::from_secs(150),
        |t| t.rows.iter().all(|r| r.id != victim_id) && reachable_managers(t) == 3,
    )
    .await;
    let log = second.stop();
    let changes = carried_out(&log.lines("action-started"));
    assert!(
        !changes.is_empty(),
        "the successor restored the managers:\n{table}\n{log}"
    );
    // The change is recorded (and carried by the lease) just before `Carrying out` is
    // logged; the lease write between them takes up to two renewals.
    let slack = Duration::from_secs(5);
    for (kind, target, at) in &changes {
        let after = at.duration_since(changed).unwrap_or_default();
        assert!(
            after + slack >= stabilization,
            "{kind} {target} only {after:?} after the first holder's change (stabilization {stabilization:?})\n{log}"
        );
    }
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn two_single_runs_at_once_while_a_fix_outlasts_the_lease_and_only_one_acts() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 3)).await.expect("lab");
    slow_service(&lab, "4s").await;
    let policy = policy_file(&lab, &policy(Duration::from_secs(5)));
    let policy = policy.to_str().expect("utf-8").to_owned();
    let (victim, _) = follower(&lab.node_table().await.expect("table"), &["m1", "m2"]);
    kill_until_down(&lab, &victim).await;
    tokio::time::sleep(DEAD_AFTER + Duration::from_secs(2)).await;

    // Logs to files: two runs writing into pipes read one after the other could block.
    let once = |node: &str| {
        let log = lab.paths().dir().join(format!("once-{node}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(warden_bin())
            .args(["run", "--once", "--config", &policy, "--format", "json"])
            .env("DOCKER_HOST", lab.docker_host(node).expect("docker host"))
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "swarm_warden=debug")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("run --once");
        (child, log)
    };
    let (mut a, a_log) = once("m1");
    let (mut b, b_log) = once("m2");
    a.wait().expect("first run");
    b.wait().expect("second run");
    let logs = [
        Log::parse(std::fs::read_to_string(&a_log).expect("first log")),
        Log::parse(std::fs::read_to_string(&b_log).expect("second log")),
    ];
    let acted: Vec<usize> = logs.iter().map(|l| l.count("action-started")).collect();
    assert_eq!(
        acted.iter().filter(|&&n| n > 0).count(),
        1,
        "actions per run {acted:?}\n---- first ----\n{}\n---- second ----\n{}",
        logs[0],
        logs[1]
    );
    // The one that acted saw its placement fix through, longer than the lease lasts.
    let actor = if acted[0] > 0 { &logs[0] } else { &logs[1] };
    assert!(
        actor.actions("action-done", "enforce-placement") > 0,
        "{actor}"
    );
    assert!(
        actor.events("write-refused").is_empty(),
        "the acting run kept its claim: {actor}"
    );
    teardown_leaving_nothing(lab);
}

/// How long the idle test watches: `IDLE_SECONDS` (the 5 minutes:
/// `IDLE_SECONDS=300`), 30 s by default (CI: three resyncs).
fn idle_for() -> Duration {
    Duration::from_secs(
        std::env::var("IDLE_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_idle_swarm_the_follower_writes_nothing_and_both_read_once_per_resync() {
    init_tracing();
    let resync = Duration::from_secs(10);
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let policy = policy_file(
        &lab,
        &format!(
            "controller:\n  resync: {}s\n  backoff_min: 1s\n  backoff_max: 10s\n",
            resync.as_secs()
        ),
    );
    let mut proxies = Vec::new();
    let mut wardens = Vec::new();
    for node in ["m1", "m2"] {
        let socket = lab.paths().dir().join(format!("proxy-{node}.sock"));
        let proxy = DockerProxy::start(&lab.socket(node).expect("socket"), &socket)
            .await
            .expect("proxy");
        let mut env = json_env();
        env.push(("DOCKER_HOST", proxy.docker_host()));
        let warden = Warden::start_with_env(&lab, node, &policy, &[], &env);
        // One at a time, so the first is the holder.
        if wardens.is_empty() {
            wait_for_event(&warden, "the lease", "lease-taken", None).await;
        }
        proxies.push(proxy);
        wardens.push(warden);
    }
    // Past the start (first reconciles, the follower's first lease rounds), count.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for proxy in &proxies {
        proxy.take_requests();
    }
    let watched = idle_for();
    tokio::time::sleep(watched).await;
    let seen: Vec<Vec<Seen>> = proxies.iter().map(DockerProxy::take_requests).collect();
    let logs: Vec<Log> = wardens.into_iter().map(Warden::stop).collect();

    let (holder, follower) = (&seen[0], &seen[1]);
    let follower_writes: Vec<&Seen> = follower.iter().filter(|r| r.is_write()).collect();
    assert!(
        follower_writes.is_empty(),
        "the follower wrote: {follower_writes:?}\n{}",
        logs[1]
    );
    let other_writes: Vec<&Seen> = holder
        .iter()
        .filter(|r| {
            r.is_write() && !(r.path.starts_with("/configs/") && r.path.ends_with("/update"))
        })
        .collect();
    assert!(
        other_writes.is_empty(),
        "an idle holder writes only its lease: {other_writes:?}"
    );
    // One node list per snapshot: about one per resync, within 2x.
    let due = watched.as_secs_f64() / resync.as_secs_f64();
    for (who, requests) in [("holder", holder), ("follower", follower)] {
        let snapshots = requests
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/nodes")
            .count() as f64;
        println!(
            "{who}: {} requests, {snapshots} node lists in {watched:?}",
            requests.len()
        );
        assert!(
            snapshots <= 2.0 * due + 1.0 && snapshots >= due / 2.0,
            "{who}: {snapshots} node lists in {watched:?}, {due:.0} due (resync {resync:?})"
        );
    }
    drop(proxies);
    teardown_leaving_nothing(lab);
}
