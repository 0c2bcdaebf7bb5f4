//! Membership changes in the states real swarms are in, end to end: the real binary
//! against real lab swarms. A promotion that never joins the raft, a removal left half
//! done, `--force-new-cluster` leftovers, a rebuilt host on its old raft address.

mod common;

use std::time::{Duration, Instant};

use common::*;
use swarm_chaos::{Lab, LabSpec, NodeTable, Role};

/// The same rules as in the field, shorter clocks.
fn fast_policy(extra: &str) -> String {
    format!(
        "managers:\n  dead_after: 20s\n  stabilization: 5s\n  leader_settle: 10s\n  convergence_timeout: 30s\n{extra}controller:\n  resync: 5s\n  backoff_min: 1s\n  backoff_max: 10s\n"
    )
}

/// Role manager in its spec, but no raft membership.
fn outside_raft(t: &NodeTable) -> Vec<String> {
    t.rows
        .iter()
        .filter(|r| r.is_manager() && r.reachability.is_empty())
        .map(|r| r.hostname.clone())
        .collect()
}

/// The node ID of `host`, as the swarm lists it now.
async fn node_id(lab: &Lab, host: &str) -> String {
    lab.node_table()
        .await
        .expect("table")
        .node(host)
        .map(|r| r.id.clone())
        .unwrap_or_else(|| panic!("no node {host}"))
}

/// The finding kinds of a one-shot JSON report taken on `node`.
fn report_kinds(lab: &Lab, node: &str, policy: &std::path::Path) -> Vec<String> {
    let out = warden_once(
        lab,
        node,
        &[
            "report",
            "--config",
            policy.to_str().expect("utf-8"),
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["kind"].as_str().map(str::to_owned))
        .collect()
}

/// Every worker joined through m1. Once m1 is dead and removed, a promoted worker keeps
/// dialing m1 and never joins the raft (SwarmKit, seen on Engine 20.10). Before the fix
/// the next worker was promoted after each failure, until no worker was left.
#[tokio::test]
async fn a_promotion_that_never_joins_the_raft_is_the_only_one_and_is_reported_failed() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 3)).await.expect("lab");
    let policy = policy_file(&lab, &fast_policy(""));
    let warden = Warden::start(&lab, "m2", &policy, &[]);
    let m1 = node_id(&lab, "m1").await;
    lab.kill("m1").await.expect("kill m1");

    watch_until(&lab, "m1 removed", Duration::from_secs(120), |t| {
        t.rows.iter().all(|r| r.id != m1)
    })
    .await;
    let (table, failed_at, _) = watch_until(
        &lab,
        "a promoted worker Down outside the raft",
        Duration::from_secs(120),
        |t| {
            t.rows
                .iter()
                .any(|r| r.hostname.starts_with('w') && r.is_manager() && r.state == "down")
        },
    )
    .await;
    let failed = outside_raft(&table);
    assert_eq!(failed.len(), 1, "{table}");

    // Long enough for several more rounds (resync 5 s, backoff 1-10 s, stabilization 5 s).
    while failed_at.elapsed() < Duration::from_secs(45) {
        let t = lab.node_table().await.expect("table");
        let promoted: Vec<_> = t
            .rows
            .iter()
            .filter(|r| r.hostname.starts_with('w') && r.is_manager())
            .collect();
        assert_eq!(promoted.len(), 1, "a second promotion:\n{t}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let t = lab.node_table().await.expect("table");
    assert_eq!(
        t.rows
            .iter()
            .filter(|r| r.hostname.starts_with('w') && !r.is_manager() && r.is_ready())
            .count(),
        2,
        "the other workers stay Ready workers:\n{t}"
    );
    assert!(
        t.rows.iter().any(|r| r.hostname == failed[0]),
        "a failed promotion is never removed automatically:\n{t}"
    );
    let kinds = report_kinds(&lab, "m2", &policy);
    assert!(kinds.iter().any(|k| k == "promotion-failed"), "{kinds:?}");
    let log = warden.stop();
    assert_eq!(log.actions("action-started", "promote-worker"), 1, "{log}");
    teardown_leaving_nothing(lab);
}

/// A dead manager was demoted (and labelled) but the process stopped before `node rm`:
/// the entry is a Down worker. The next process finishes the removal; before the fix it
/// stayed for ever.
#[tokio::test]
async fn a_removal_left_half_done_is_finished_by_the_next_process() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let m3 = node_id(&lab, "m3").await;
    lab.kill("m3").await.expect("kill m3");
    watch_until(&lab, "m3 Down", Duration::from_secs(60), |t| {
        t.rows.iter().any(|r| r.id == m3 && r.is_down())
    })
    .await;
    // What a swarm-warden stopped between its two writes leaves: one write demotes and
    // labels (here two, by hand), the `node rm` never comes.
    let label = format!(
        "swarm-warden.demoted-for-removal-at={}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
    for args in [
        vec!["node", "demote", m3.as_str()],
        vec!["node", "update", "--label-add", label.as_str(), m3.as_str()],
    ] {
        docker_on(&lab, "m1", &args);
    }
    watch_until(&lab, "m3 out of the raft", Duration::from_secs(60), |t| {
        t.rows.iter().any(|r| r.id == m3 && !r.is_manager())
    })
    .await;

    let policy = policy_file(&lab, &fast_policy(""));
    let start = Instant::now();
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    watch_until(&lab, "m3's entry removed", Duration::from_secs(90), |t| {
        t.rows.iter().all(|r| r.id != m3)
    })
    .await;
    println!("finished after {:.1}s", start.elapsed().as_secs_f64());
    // And the raft is restored to managers.desired through the worker.
    watch_until(&lab, "3 reachable managers", Duration::from_secs(90), |t| {
        reachable_managers(t) == 3
    })
    .await;
    let log = warden.stop();
    assert!(
        log.actions("action-started", "remove-dead-manager") > 0,
        "{log}"
    );
    teardown_leaving_nothing(lab);
}

/// After `docker swarm init --force-new-cluster` on m1, m2 and m3 stay in the node list
/// with role manager and no raft membership. A swarm-warden that saw them in the raft
/// removes them by ID once Down for dead_after, then restores managers.desired one
/// promotion at a time. Before the fix they were reported as workers and stayed for ever.
#[tokio::test]
async fn force_new_cluster_leftovers_are_removed_by_id_and_the_managers_restored() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    let policy = policy_file(&lab, &fast_policy(""));
    // swarm-warden runs on m1 throughout: it saw m2 and m3 as raft members, which is what
    // lets it remove their entries later (a fresh process only reports them).
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    lab.kill("m2").await.expect("kill m2");
    lab.kill("m3").await.expect("kill m3");
    lab.force_new_cluster("m1")
        .await
        .expect("force-new-cluster");
    let (t, _, _) = watch_until(
        &lab,
        "m2, m3 outside the raft",
        Duration::from_secs(60),
        |t| outside_raft(t).len() == 2,
    )
    .await;
    let leftovers: Vec<String> = t
        .rows
        .iter()
        .filter(|r| r.hostname == "m2" || r.hostname == "m3")
        .map(|r| r.id.clone())
        .collect();
    // A fresh report never saw them as members: it reports them, nothing more.
    let kinds = report_kinds(&lab, "m1", &policy);
    assert_eq!(
        kinds.iter().filter(|k| *k == "ex-manager").count(),
        2,
        "{kinds:?}"
    );

    let (t, _, _) = watch_until(
        &lab,
        "leftovers removed and 3 reachable managers",
        Duration::from_secs(180),
        |t| reachable_managers(t) == 3 && t.rows.iter().all(|r| !leftovers.contains(&r.id)),
    )
    .await;
    assert!(outside_raft(&t).is_empty(), "{t}");
    let log = warden.stop();
    assert_eq!(
        log.actions("action-started", "remove-dead-manager"),
        2,
        "{log}"
    );
    teardown_leaving_nothing(lab);
}

/// m3's host is rebuilt and rejoins as a manager on the same address: the old entry is
/// Down while the raft calls it reachable (the new daemon answers on its raft address).
/// It is counted unreachable, removed by ID after dead_after, and the new m3 is never
/// touched. Before the fix it counted as reachable and stayed for ever.
#[tokio::test]
async fn a_rebuilt_manager_on_its_old_address_leaves_a_ghost_that_is_removed_by_id() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let old = node_id(&lab, "m3").await;
    lab.rebuild("m3", Role::Manager).await.expect("rebuild m3");
    let (t, _, _) = watch_until(&lab, "two m3 entries", Duration::from_secs(60), |t| {
        t.by_hostname("m3").count() == 2
            && t.by_hostname("m3")
                .any(|r| r.id != old && r.is_reachable_manager())
    })
    .await;
    let new = t
        .by_hostname("m3")
        .find(|r| r.id != old)
        .map(|r| r.id.clone())
        .expect("new m3");
    let policy = policy_file(&lab, &fast_policy(""));
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    // Once the old entry is Down (the raft still calls it reachable), every report
    // counts it out.
    watch_until(&lab, "the old m3 Down", Duration::from_secs(60), |t| {
        t.rows.iter().any(|r| r.id == old && r.state == "down")
    })
    .await;
    let kinds = report_kinds(&lab, "m1", &policy);
    assert!(
        kinds.iter().any(|k| k == "ghost-manager")
            && kinds.iter().any(|k| k == "duplicate-hostname"),
        "{kinds:?}"
    );

    let (t, _, _) = watch_until(&lab, "the old m3 removed", Duration::from_secs(120), |t| {
        t.rows.iter().all(|r| r.id != old)
    })
    .await;
    assert!(
        t.rows
            .iter()
            .any(|r| r.id == new && r.is_reachable_manager()),
        "the new m3 stays a reachable manager:\n{t}"
    );
    assert_eq!(reachable_managers(&t), 3, "{t}");
    let log = warden.stop();
    assert!(
        log.finding("ghost-manager") || log.actions("action-started", "remove-dead-manager") > 0,
        "{log}"
    );
    // The raft is healthy: one more manager lost keeps a leader.
    lab.kill("m2").await.expect("kill m2");
    watch_until(
        &lab,
        "a leader after losing m2",
        Duration::from_secs(60),
        |t| t.leader().is_some(),
    )
    .await;
    teardown_leaving_nothing(lab);
}

/// A web service publishes port 8080 in host mode on both workers, kept off managers. A
/// manager dies and is removed; promoting either worker would leave one replica nowhere
/// to bind its port, so no worker is promoted and the report says why.
#[tokio::test]
async fn a_promotion_that_would_strand_a_host_mode_port_is_not_made() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    create(
        &lab,
        "web",
        &[
            "--replicas",
            "2",
            "--constraint",
            "node.role!=manager",
            "--publish",
            "mode=host,published=8080,target=8080",
        ],
    );
    wait_running(&lab, "web", 2).await;
    let policy = policy_file(&lab, &fast_policy(""));
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    let m3 = node_id(&lab, "m3").await;
    lab.kill("m3").await.expect("kill m3");
    let (_, removed, _) = watch_until(&lab, "m3 removed", Duration::from_secs(120), |t| {
        t.rows.iter().all(|r| r.id != m3)
    })
    .await;
    while removed.elapsed() < Duration::from_secs(30) {
        let t = lab.node_table().await.expect("table");
        assert!(
            t.rows
                .iter()
                .all(|r| !r.hostname.starts_with('w') || !r.is_manager()),
            "a worker was promoted:\n{t}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(running_on(&lab, "web").await.len(), 2);
    let out = warden_once(
        &lab,
        "m1",
        &["report", "--config", policy.to_str().expect("utf-8")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web would be stranded"), "{text}");
    warden.stop();
    teardown_leaving_nothing(lab);
}

/// A stateful service kept off managers runs on w1 with data on a local volume (as nobody);
/// w2 is as good a worker in every other way. m3 dies and is removed: the promotion that
/// restores three managers must go to w2. Promoting w1 would make SwarmKit shed the task
/// and start it on w2 with an empty volume, the data left behind on a manager.
#[tokio::test]
async fn a_promotion_never_separates_a_service_kept_off_managers_from_its_local_data() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    // Runs `script` in a container on w1 with the volume dbdata at /data.
    let on_dbdata = |script: &str| {
        docker_on(
            &lab,
            "w1",
            &[
                "run",
                "--rm",
                "-v",
                "dbdata:/data",
                "busybox",
                "sh",
                "-c",
                script,
            ],
        )
    };
    // The data is already there (4 MiB of WAL, owned by nobody) before the service starts.
    on_dbdata("mkdir -p /data/wal && dd if=/dev/urandom of=/data/wal/00000001 bs=1M count=4 2>/dev/null && chown -R 65534:65534 /data");
    // w2 drained while the service starts, so its task lands on w1, by its data.
    docker(&lab, &["node", "update", "--availability", "drain", "w2"]);
    create_running(
        &lab,
        "db",
        &[
            "--constraint",
            "node.role!=manager",
            "--user",
            "65534:65534",
            "--mount",
            "type=volume,source=dbdata,target=/data",
        ],
        &[
            "busybox",
            "sh",
            "-c",
            "test -f /data/marker || date +%s%N > /data/marker; exec sleep 1d",
        ],
    );
    assert_eq!(wait_running(&lab, "db", 1).await, vec!["w1".to_owned()]);
    docker(&lab, &["node", "update", "--availability", "active", "w2"]);
    let data = || on_dbdata("cat /data/marker 2>/dev/null; md5sum /data/wal/00000001");
    let before = swarm_chaos::wait_until("db's marker", Duration::from_secs(30), || async {
        match data() {
            d if d.lines().count() == 2 => swarm_chaos::Probe::Done(d),
            d => swarm_chaos::Probe::Pending(d),
        }
    })
    .await
    .expect("db wrote its marker as nobody");
    let policy = policy_file(&lab, &fast_policy(""));
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    let m3 = node_id(&lab, "m3").await;
    lab.kill("m3").await.expect("kill m3");
    let (t, _, _) = watch_until(
        &lab,
        "m3 removed and a worker promoted",
        Duration::from_secs(180),
        |t| {
            t.rows.iter().all(|r| r.id != m3)
                && t.rows
                    .iter()
                    .any(|r| r.hostname.starts_with('w') && r.is_manager())
        },
    )
    .await;
    assert!(
        t.node("w2").is_some_and(|r| r.is_manager())
            && t.node("w1").is_some_and(|r| !r.is_manager()),
        "the worker holding db's data was promoted:\n{t}"
    );
    assert_eq!(running_on(&lab, "db").await, vec!["w1".to_owned()]);
    assert_eq!(data(), before, "db's data on w1 changed");
    warden.stop();
    teardown_leaving_nothing(lab);
}

/// swarm-warden's clock runs 15 s ahead of the raft leader's (dead_after 20 s). A manager
/// is frozen; once it is Down, swarm-warden starts fresh (a restart, a new lease holder)
/// and finds its status time. The manager is thawed 12 s after it went Down: it must not
/// have been removed. Before the fix, the status time read on the skewed clock made it
/// dead within seconds of the restart.
#[tokio::test]
async fn a_fresh_swarm_warden_with_its_clock_ahead_never_removes_a_manager_down_for_seconds() {
    init_tracing();
    let lib = swarm_chaos::nemesis::warden::find_libfaketime()
        .expect("libfaketime (Debian's faketime package; .ci/run installs it)");
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let policy = policy_file(&lab, &fast_policy(""));
    let m3 = node_id(&lab, "m3").await;
    lab.freeze("m3").await.expect("freeze m3");
    let (_, down_at, _) = watch_until(&lab, "m3 Down", Duration::from_secs(60), |t| {
        t.rows.iter().any(|r| r.id == m3 && r.is_down())
    })
    .await;
    let warden = Warden::start_with_env(
        &lab,
        "m1",
        &policy,
        &[],
        &[
            ("LD_PRELOAD", lib.display().to_string()),
            ("FAKETIME", "+15".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ],
    );
    while down_at.elapsed() < Duration::from_secs(12) {
        let t = lab.node_table().await.expect("table");
        assert!(
            t.rows.iter().any(|r| r.id == m3 && r.is_manager()),
            "m3 removed {:?} after it went Down:\n{t}",
            down_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    lab.thaw("m3").await.expect("thaw m3");
    watch_until(&lab, "m3 reachable again", Duration::from_secs(60), |t| {
        t.rows
            .iter()
            .any(|r| r.id == m3 && r.is_reachable_manager())
    })
    .await;
    let log = warden.stop();
    assert_eq!(log.count("action-started"), 0, "{log}");
    teardown_leaving_nothing(lab);
}
