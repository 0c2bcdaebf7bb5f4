//! swarm-warden's manager slice end to end: the real binary against real lab swarms.

mod common;

use std::time::{Duration, Instant};

use bollard::query_parameters::ListServicesOptions;
use common::*;
use swarm_chaos::{Lab, LabSpec, NodeTable};

const DEAD_AFTER: Duration = Duration::from_secs(20);

/// A fast policy for the lab: the same rules, shorter clocks.
fn fast_policy(dead_after: Duration) -> String {
    format!(
        "managers:\n  dead_after: {}s\n  stabilization: 5s\n  leader_settle: 10s\ncontroller:\n  resync: 5s\n  backoff_min: 1s\n  backoff_max: 10s\n",
        dead_after.as_secs()
    )
}

#[tokio::test]
async fn a_killed_manager_is_removed_about_dead_after_later_and_a_worker_is_promoted() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    let policy = policy_file(&lab, &fast_policy(DEAD_AFTER));
    let warden = Warden::start(&lab, "m1", &policy, &[]);

    let (victim, victim_id) = follower(&lab.node_table().await.expect("table"), &["m1"]);
    let after_down = kill_until_removed(&lab, &victim, &victim_id, DEAD_AFTER).await;
    println!(
        "reaction time (Down seen -> removal done, minus dead_after {DEAD_AFTER:?}): {:.1}s",
        after_down.as_secs_f64() - DEAD_AFTER.as_secs_f64()
    );
    // Never early (the lab sees Down up to one poll late), and not much later either.
    assert!(
        after_down >= DEAD_AFTER - Duration::from_secs(2),
        "removed after only {after_down:?}"
    );
    assert!(
        after_down <= DEAD_AFTER + Duration::from_secs(20),
        "removed only after {after_down:?}"
    );

    let (table, _, _) = watch_until(
        &lab,
        "3 reachable managers again",
        Duration::from_secs(60),
        |t| reachable_managers(t) == 3 && t.managers().count() == 3,
    )
    .await;
    assert!(
        table.managers().any(|m| m.hostname.starts_with('w')),
        "a worker was promoted:\n{table}"
    );
    let log = warden.stop();
    assert!(
        log.actions("action-started", "remove-dead-manager") > 0
            && log.actions("action-started", "promote-worker") > 0,
        "{log}"
    );
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn the_talks_incident_without_swarm_warden_loses_the_leader() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(4, 2)).await.expect("lab");
    let (first, _) = follower(&lab.node_table().await.expect("table"), &["m1"]);
    lab.kill(&first).await.expect("kill");
    watch_until(&lab, "first loss Down", Duration::from_secs(60), |t| {
        t.by_hostname(&first).any(|r| r.is_down())
    })
    .await;
    // The dead manager stays in the raft: 3 of 4. The next loss leaves 2 of 4.
    let (second, _) = follower(&lab.node_table().await.expect("table"), &["m1", &first]);
    lab.kill(&second).await.expect("kill");
    swarm_chaos::wait_until(
        "the swarm to lose its leader",
        Duration::from_secs(60),
        || async {
            match lab.node_table().await {
                Err(e) => swarm_chaos::Probe::Done(e.to_string()),
                Ok(t) => swarm_chaos::Probe::Pending(t.to_string()),
            }
        },
    )
    .await
    .expect("without swarm-warden, 2 of 4 managers have no quorum");
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn the_talks_incident_with_swarm_warden_never_loses_quorum_and_ends_with_three_managers() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(4, 2)).await.expect("lab");
    let policy = policy_file(&lab, &fast_policy(DEAD_AFTER));
    let warden = Warden::start(&lab, "m1", &policy, &[]);

    let (first, first_id) = follower(&lab.node_table().await.expect("table"), &["m1"]);
    lab.kill(&first).await.expect("kill");
    let (_, _, leaderless_1) =
        watch_until(&lab, "first loss removed", Duration::from_secs(120), |t| {
            t.rows.iter().all(|r| r.id != first_id) && reachable_managers(t) == 3
        })
        .await;

    let (second, second_id) = follower(&lab.node_table().await.expect("table"), &["m1"]);
    lab.kill(&second).await.expect("kill");
    let (table, _, leaderless_2) = watch_until(
        &lab,
        "second loss removed, 3 reachable managers",
        Duration::from_secs(150),
        |t| {
            t.rows.iter().all(|r| r.id != second_id)
                && reachable_managers(t) == 3
                && t.managers().count() == 3
        },
    )
    .await;
    assert_eq!(
        leaderless_1 + leaderless_2,
        0,
        "the swarm had no leader at some point"
    );
    assert!(table.leader().is_some(), "{table}");
    // The lab may see the promotion converge a moment before swarm-warden's own wait does.
    swarm_chaos::wait_until(
        "swarm-warden to finish its third action",
        Duration::from_secs(30),
        || async {
            match warden.log().count("action-done") {
                3 => swarm_chaos::Probe::Done(()),
                n => swarm_chaos::Probe::Pending(format!("{n} actions done")),
            }
        },
    )
    .await
    .expect("two removals and one promotion");
    let log = warden.stop();
    assert_eq!(
        log.count("action-done"),
        3,
        "two removals and one promotion:\n{log}"
    );
    assert_eq!(log.count("action-failed"), 0, "{log}");
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn a_manager_frozen_for_less_than_dead_after_is_not_removed() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let policy = policy_file(&lab, &fast_policy(Duration::from_secs(90)));
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    let (victim, victim_id) = follower(&lab.node_table().await.expect("table"), &["m1"]);

    lab.freeze(&victim).await.expect("freeze");
    watch_until(&lab, "frozen manager Down", Duration::from_secs(60), |t| {
        t.by_hostname(&victim).any(|r| r.is_down())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    lab.thaw(&victim).await.expect("thaw");
    watch_until(
        &lab,
        "thawed manager reachable",
        Duration::from_secs(90),
        |t| {
            t.node(&victim)
                .is_some_and(|r| r.id == victim_id && (r.is_reachable_manager() || r.leader))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = warden.stop();
    assert!(
        log.finding("manager-unreachable"),
        "the outage was seen:\n{log}"
    );
    assert_eq!(
        log.count("action-started"),
        0,
        "nothing may be done:\n{log}"
    );
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn a_swarm_warden_on_a_manager_cut_off_in_a_minority_does_nothing() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let before = lab.node_table().await.expect("table");
    let (isolated, _) = follower(&before, &[]);
    let policy = policy_file(&lab, &fast_policy(Duration::from_secs(10)));
    let warden = Warden::start(&lab, &isolated, &policy, &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;

    lab.partition(&isolated).await.expect("partition");
    watch_until(
        &lab,
        "the majority sees the isolated manager down",
        Duration::from_secs(60),
        |t| t.by_hostname(&isolated).any(|r| r.is_down()),
    )
    .await;
    // Well past dead_after: from the majority's side it looks dead, but swarm-warden
    // runs on the minority side and must not act. Wait until it has noticed.
    swarm_chaos::wait_until(
        "swarm-warden to report quorum-lost",
        Duration::from_secs(90),
        || async {
            let log = warden.log();
            if log.finding("quorum-lost") {
                swarm_chaos::Probe::Done(())
            } else {
                swarm_chaos::Probe::Pending(log.to_string())
            }
        },
    )
    .await
    .expect("the minority was noticed");
    tokio::time::sleep(Duration::from_secs(15)).await;
    lab.heal().await.expect("heal");
    watch_until(
        &lab,
        "all three managers reachable again",
        Duration::from_secs(120),
        |t| reachable_managers(t) == 3,
    )
    .await;
    let after = lab.node_table().await.expect("table");
    let ids = |t: &NodeTable| {
        let mut v: Vec<String> = t.rows.iter().map(|r| r.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&after), ids(&before), "no node removed");
    let log = warden.stop();
    assert_eq!(
        log.count("action-started"),
        0,
        "nothing may be done:\n{log}"
    );
    teardown_leaving_nothing(lab);
}

async fn service_versions(lab: &Lab) -> Vec<(String, u64)> {
    let services = lab
        .client("m1")
        .await
        .expect("client")
        .list_services(None::<ListServicesOptions>)
        .await
        .expect("services");
    services
        .iter()
        .map(|s| {
            (
                s.id.clone().unwrap_or_default(),
                s.version.as_ref().and_then(|v| v.index).unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn report_and_dry_run_change_nothing_while_a_real_run_acts() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let created = lab
        .docker_cli("m1")
        .expect("cli")
        .args([
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            "web",
            "--replicas",
            "2",
        ])
        .args(["busybox", "sleep", "1d"])
        .output()
        .expect("docker service create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let policy = policy_file(&lab, &fast_policy(Duration::from_secs(5)));
    let policy = policy.to_str().expect("utf-8 path");
    let (victim, victim_id) = follower(&lab.node_table().await.expect("table"), &["m1"]);
    lab.kill(&victim).await.expect("kill");
    watch_until(&lab, "victim Down", Duration::from_secs(60), |t| {
        t.by_hostname(&victim).any(|r| r.is_down())
    })
    .await;
    // A fresh process counts the status time dead_after (5 s) later than it says (clock
    // skew): Down for 2 x dead_after and a second is dead for it.
    tokio::time::sleep(Duration::from_secs(11)).await;

    let nodes_before = node_versions(&lab, "m1").await;
    let services_before = service_versions(&lab).await;
    for args in [
        vec!["report", "--config", policy, "--format", "json"],
        vec![
            "run",
            "--once",
            "--dry-run",
            "--config",
            policy,
            "--format",
            "json",
        ],
    ] {
        let out = warden_once(&lab, "m1", &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
        assert_eq!(json["dry_run"], true);
        let action = &json["actions"][0];
        assert_eq!(action["kind"], "remove-dead-manager", "{json:#}");
        assert_eq!(action["target"], victim_id.as_str());
        assert_eq!(action["status"], "planned", "{json:#}");
        assert_eq!(json["cluster"]["fault_tolerance"], 0);
    }
    assert_eq!(
        node_versions(&lab, "m1").await,
        nodes_before,
        "report/dry-run changed a node"
    );
    assert_eq!(
        service_versions(&lab).await,
        services_before,
        "report/dry-run changed a service"
    );

    let out = warden_once(
        &lab,
        "m1",
        &["run", "--once", "--config", policy, "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(json["actions"][0]["status"], "done", "{json:#}");
    let table = lab.node_table().await.expect("table");
    assert!(
        table.rows.iter().all(|r| r.id != victim_id),
        "--once removed it:\n{table}"
    );
    teardown_leaving_nothing(lab);
}

/// Two of three managers killed at once: while the survivor still answers as leader its
/// node list shows 1 of 3 reachable. Every report in that time must say quorum-lost (with
/// the recovery steps), never "fault tolerance -1: losing one more loses quorum", and
/// nothing may be done.
#[tokio::test]
async fn two_of_three_managers_killed_is_quorum_lost_in_every_report() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let table = lab.node_table().await.expect("table");
    let survivor = table
        .managers()
        .find(|m| m.leader)
        .map(|m| m.hostname.clone())
        .expect("a leader");
    let victims: Vec<String> = table
        .managers()
        .filter(|m| m.hostname != survivor)
        .map(|m| m.hostname.clone())
        .collect();
    let policy = policy_file(&lab, &fast_policy(Duration::from_secs(5)));
    let policy = policy.to_str().expect("utf-8 path");
    for victim in &victims {
        lab.kill(victim).await.expect("kill");
    }
    let start = Instant::now();
    let (mut with_numbers, mut lost) = (0, 0);
    while start.elapsed() < Duration::from_secs(60) {
        let out = warden_once(
            &lab,
            &survivor,
            &["report", "--config", policy, "--format", "json"],
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let kinds: Vec<&str> = json["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["kind"].as_str())
            .collect();
        let reachable = json["cluster"]["reachable_managers"].as_u64();
        if reachable.is_some_and(|r| r < 2) {
            with_numbers += 1;
            assert!(
                kinds.contains(&"quorum-lost") && !kinds.contains(&"no-fault-tolerance"),
                "1 of 3 reachable reported as {kinds:?}"
            );
        }
        if kinds.contains(&"quorum-lost") {
            lost += 1;
        }
        if with_numbers >= 3 || (lost >= 3 && with_numbers > 0) {
            break;
        }
        assert!(
            json["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .all(|a| a["status"] != "planned"),
            "an action planned without a majority: {json:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("reports with a leader still answering and 1 of 3 reachable: {with_numbers}");
    // The state the issue names must have been seen, or this test proves nothing.
    assert!(
        with_numbers >= 1,
        "no report caught the leader answering with 1 of 3 reachable"
    );
    assert!(lost >= 3, "quorum-lost reported {lost} time(s)");
    teardown_leaving_nothing(lab);
}
