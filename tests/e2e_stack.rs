//! swarm-warden shipped as a Swarm service: the real image (built by `image/build`),
//! `docker stack deploy` of manifests/stack.yml onto a lab swarm, the service repairing the
//! swarm it runs on, a real Prometheus scraping it, and one lease holder among replicas.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListTasksOptionsBuilder, LogsOptionsBuilder};
use common::*;
use futures::TryStreamExt;
use swarm_chaos::prometheus::Target;
use swarm_chaos::{wait_until, Lab, LabSpec, NodeTable, Probe};

const STACK: &str = "sw";
const SERVICE: &str = "sw_warden";
const LEASE: &str = "swarm-warden-lease";
const LEADER_SETTLE: Duration = Duration::from_secs(10);

/// The same rules with shorter clocks; the lease keeps its Kubernetes-like defaults.
fn fast_policy() -> String {
    format!(
        "managers:\n  dead_after: 20s\n  stabilization: 5s\n  leader_settle: {}s\ncontroller:\n  resync: 5s\n  backoff_min: 1s\n  backoff_max: 10s\n",
        LEADER_SETTLE.as_secs()
    )
}

/// Loads the shipped image into every node and deploys manifests/stack.yml, unchanged,
/// with the fast policy as its policy file.
///
/// `drain`: a manager drained first, so no replica lands there. Every lab node joined
/// through m1, and a worker promoted after the manager it joined through died keeps
/// dialing that dead address and never joins the raft (Engine 20.10, seen in this lab) —
/// so the tests choose which managers die such that m1 survives.
async fn deploy(lab: &Lab, replicas: u32, drain: &[&str]) {
    for node in drain {
        let out = lab
            .docker_cli("m1")
            .expect("cli")
            .args(["node", "update", "--availability", "drain", node])
            .output()
            .expect("docker node update");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    lab.load_image_archive(&warden_image_archive())
        .await
        .expect("load the image into every node");
    let dir = lab.paths().dir().join("stack");
    std::fs::create_dir_all(&dir).expect("stack dir");
    let manifests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    std::fs::copy(manifests.join("stack.yml"), dir.join("stack.yml")).expect("copy stack");
    std::fs::write(dir.join("policy.example.yml"), fast_policy()).expect("policy");
    let out = lab
        .docker_cli("m1")
        .expect("cli")
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(dir.join("stack.yml"))
        .arg(STACK)
        .output()
        .expect("docker stack deploy");
    assert!(
        out.status.success(),
        "docker stack deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if replicas != 1 {
        let out = lab
            .docker_cli("m1")
            .expect("cli")
            .args(["service", "update", "--detach", "--replicas"])
            .arg(replicas.to_string())
            .arg(SERVICE)
            .output()
            .expect("docker service update");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A running task of the service: node hostname and container ID.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Replica {
    node: String,
    container: String,
}

async fn running_replicas(lab: &Lab) -> Vec<Replica> {
    let Ok((client, table)) = lab.manager_client().await else {
        return Vec::new();
    };
    let options = ListTasksOptionsBuilder::default()
        .filters(&std::collections::HashMap::from([(
            "service".to_string(),
            vec![SERVICE.to_string()],
        )]))
        .build();
    let tasks = client.list_tasks(Some(options)).await.unwrap_or_default();
    let mut replicas: Vec<Replica> = tasks
        .iter()
        .filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.state)
                .is_some_and(|s| s == bollard::models::TaskState::RUNNING)
        })
        .filter_map(|t| {
            let node_id = t.node_id.as_deref()?;
            let node = table
                .rows
                .iter()
                .find(|r| r.id == node_id)?
                .hostname
                .clone();
            let container = t
                .status
                .as_ref()?
                .container_status
                .as_ref()?
                .container_id
                .clone()?;
            Some(Replica { node, container })
        })
        .collect();
    replicas.sort_by(|a, b| a.node.cmp(&b.node));
    replicas
}

/// Who holds the lease (empty: nobody), read from the Swarm config.
async fn lease_holder(lab: &Lab) -> String {
    let Ok((client, _)) = lab.manager_client().await else {
        return String::new();
    };
    client
        .inspect_config(LEASE)
        .await
        .ok()
        .and_then(|c| c.spec?.labels?.get("swarm-warden.lease.holder").cloned())
        .unwrap_or_default()
}

fn metrics_addr(lab: &Lab, node: &str) -> SocketAddr {
    SocketAddr::new(lab.node(node).expect("node").addr.into(), 8080)
}

/// `/metrics` of the replica on `node`, fetched over the lab's network.
fn scrape(lab: &Lab, node: &str) -> Result<String, String> {
    match lab.http_get_on_lab_network(metrics_addr(lab, node), "/metrics") {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => Err(format!("HTTP {status}: {body}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The sum of a metric's samples whose labels contain `with`.
fn sample_sum(metrics: &str, name: &str, with: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(with))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The single value of an instant query, if it has exactly one.
fn prom_value(prometheus: &swarm_chaos::prometheus::Prometheus, promql: &str) -> Option<f64> {
    let body = prometheus.query(promql).ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = json["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

async fn wait_prom(
    prometheus: &swarm_chaos::prometheus::Prometheus,
    promql: &str,
    want: f64,
    timeout: Duration,
) {
    wait_until(
        &format!("Prometheus: {promql} == {want}"),
        timeout,
        || async {
            match prom_value(prometheus, promql) {
                Some(v) if v == want => Probe::Done(()),
                other => Probe::Pending(format!("{promql} = {other:?}")),
            }
        },
    )
    .await
    .expect("Prometheus sees the right value");
}

async fn wait_table(
    lab: &Lab,
    what: &str,
    timeout: Duration,
    goal: impl Fn(&NodeTable) -> bool,
) -> NodeTable {
    wait_until(what, timeout, || async {
        match lab.node_table().await {
            Ok(t) if goal(&t) => Probe::Done(t),
            Ok(t) => Probe::Pending(t.to_string()),
            Err(e) => Probe::Pending(e.to_string()),
        }
    })
    .await
    .expect(what)
}

/// A replica's log (the stack sets `LOG_FORMAT: json`), read by its events.
async fn container_log(lab: &Lab, replica: &Replica) -> Log {
    let Ok(client) = lab.client(&replica.node).await else {
        return Log::default();
    };
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    client
        .logs(&replica.container, Some(options))
        .try_collect::<Vec<_>>()
        .await
        .map(|chunks| Log::parse(chunks.iter().map(|c| c.to_string()).collect()))
        .unwrap_or_default()
}

fn three_healthy_managers(t: &NodeTable) -> bool {
    reachable_managers(t) == 3 && t.managers().count() == 3
}

#[tokio::test]
async fn the_stack_repairs_its_swarm_even_after_losing_the_manager_it_runs_on() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    // Move the raft leadership off m1 (freeze it until another manager leads, then thaw
    // it), then drain m1 and the other follower: swarm-warden starts on the raft leader, so
    // killing its manager later also changes the raft leader; m1, the join address, never
    // dies.
    lab.freeze("m1").await.expect("freeze m1");
    wait_table(
        &lab,
        "a raft leader other than m1",
        Duration::from_secs(90),
        |t| t.managers().any(|m| m.leader && m.hostname != "m1"),
    )
    .await;
    lab.thaw("m1").await.expect("thaw m1");
    let moved = wait_table(
        &lab,
        "m1 back as a follower",
        Duration::from_secs(120),
        |t| {
            three_healthy_managers(t)
                && t.rows.iter().all(|r| r.is_ready())
                && t.managers().any(|m| m.leader && m.hostname != "m1")
        },
    )
    .await;
    let other = moved
        .managers()
        .find(|m| !m.leader && m.hostname != "m1")
        .expect("the other follower")
        .hostname
        .clone();
    deploy(&lab, 1, &["m1", &other]).await;
    let table = lab.node_table().await.expect("table");

    // It runs on a manager, holds the lease and says so on /metrics.
    let first = wait_until(
        "the service running on a manager",
        Duration::from_secs(90),
        || async {
            let replicas = running_replicas(&lab).await;
            match replicas.as_slice() {
                [r] if r.node.starts_with('m') => match scrape(&lab, &r.node) {
                    Ok(m) if m.contains("swarm_warden_leader 1\n") => Probe::Done(r.clone()),
                    Ok(_) => Probe::Pending(format!("{r:?}: not (yet) the lease holder")),
                    Err(e) => Probe::Pending(format!("{r:?}: {e}")),
                },
                other => Probe::Pending(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("swarm-warden runs");
    let first_holder = lease_holder(&lab).await;
    assert!(
        first_holder.starts_with(&first.node),
        "lease holder {first_holder:?}"
    );

    // A real Prometheus on the lab's network scrapes every node that may run a replica.
    let targets: Vec<Target> = lab
        .state()
        .nodes
        .iter()
        .map(|n| Target {
            job: "swarm-warden".into(),
            addr: SocketAddr::new(n.addr.into(), 8080),
        })
        .collect();
    let prometheus = lab
        .start_prometheus_on_lab_network(&targets, Duration::from_secs(1))
        .expect("prometheus");
    let ft = "max(swarm_warden_fault_tolerance)";
    wait_prom(&prometheus, ft, 1.0, Duration::from_secs(60)).await;

    // Another manager dies: the service itself removes it and promotes a worker.
    let victim = table
        .managers()
        .find(|m| m.hostname != first.node && m.hostname != "m1")
        .expect("a manager without swarm-warden, not m1")
        .clone();
    lab.kill(&victim.hostname).await.expect("kill");
    wait_prom(&prometheus, ft, 0.0, Duration::from_secs(90)).await;
    wait_table(
        &lab,
        "the dead manager removed, a worker promoted",
        Duration::from_secs(150),
        |t| t.rows.iter().all(|r| r.id != victim.id) && three_healthy_managers(t),
    )
    .await;
    wait_prom(&prometheus, ft, 1.0, Duration::from_secs(60)).await;
    let log = container_log(&lab, &first).await;
    assert!(
        log.actions("action-started", "remove-dead-manager") > 0
            && log.actions("action-started", "promote-worker") > 0,
        "{log}"
    );

    // Now the manager running swarm-warden dies: Swarm reschedules it on another manager,
    // the new task waits out the lease, takes it over and keeps the leader-settle time.
    let before = lab.node_table().await.expect("table");
    let own = before
        .by_hostname(&first.node)
        .next()
        .expect("own node")
        .clone();
    let raft_leader_died = own.leader;
    lab.kill(&first.node).await.expect("kill");
    let (second, took_over) =
        wait_until("a new lease holder", Duration::from_secs(150), || async {
            let holder = lease_holder(&lab).await;
            if holder.is_empty() || holder == first_holder {
                return Probe::Pending(format!("holder {holder:?}"));
            }
            match running_replicas(&lab)
                .await
                .into_iter()
                .find(|r| r.node != first.node)
            {
                Some(r) => Probe::Done((r, Instant::now())),
                None => Probe::Pending(format!("holder {holder:?}, no new task seen")),
            }
        })
        .await
        .expect("rescheduled and took the lease");
    let removed = wait_until(
        "its old manager removed",
        Duration::from_secs(180),
        || async {
            match lab.node_table().await {
                Ok(t) if t.rows.iter().all(|r| r.id != own.id) && three_healthy_managers(&t) => {
                    Probe::Done(t)
                }
                Ok(t) => Probe::Pending(t.to_string()),
                Err(e) => Probe::Pending(e.to_string()),
            }
        },
    )
    .await;
    let after = match removed {
        Ok(t) => t,
        Err(e) => panic!(
            "{e}\nthe new holder's log:\n{}",
            container_log(&lab, &second).await
        ),
    };
    let removed_after = took_over.elapsed();
    let log = container_log(&lab, &second).await;
    assert!(log.count("took-over") > 0, "{log}");
    assert!(
        log.actions("action-started", "remove-dead-manager") > 0,
        "{log}"
    );
    assert!(
        raft_leader_died,
        "swarm-warden ran on the raft leader:\n{before}"
    );
    {
        // The raft leader changed after the old holder's last renewal: the new holder
        // counts the change from its takeover and waits leader_settle before acting.
        assert!(
            removed_after >= LEADER_SETTLE.saturating_sub(Duration::from_secs(2)),
            "acted {removed_after:?} after taking over, before leader_settle:\n{log}"
        );
    }
    println!(
        "second holder on {}, raft leader died with the first: {raft_leader_died}, removal {removed_after:?} after takeover\n{after}",
        second.node
    );
    drop(prometheus);
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn with_two_replicas_exactly_one_holds_the_lease_and_acts() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    // m3 drained: the replicas run on m1 and m2, and m3 is the one to die.
    deploy(&lab, 2, &["m3"]).await;
    let table = lab.node_table().await.expect("table");
    let replicas = wait_until(
        "two replicas, one leader",
        Duration::from_secs(120),
        || async {
            let replicas = running_replicas(&lab).await;
            if replicas.len() != 2 {
                return Probe::Pending(format!("{replicas:?}"));
            }
            let leaders: Vec<f64> = replicas
                .iter()
                .map(|r| {
                    scrape(&lab, &r.node)
                        .map_or(-1.0, |m| sample_sum(&m, "swarm_warden_leader", ""))
                })
                .collect();
            match leaders.as_slice() {
                [a, b] if a + b == 1.0 && (*a == 0.0 || *b == 0.0) => Probe::Done(replicas),
                other => Probe::Pending(format!("{replicas:?}: leader gauges {other:?}")),
            }
        },
    )
    .await
    .expect("two replicas");
    assert_ne!(
        replicas[0].node, replicas[1].node,
        "one replica per manager"
    );

    let victim = table
        .managers()
        .find(|m| replicas.iter().all(|r| r.node != m.hostname))
        .expect("the manager without a replica")
        .clone();
    lab.kill(&victim.hostname).await.expect("kill");
    wait_table(
        &lab,
        "the dead manager removed, a worker promoted",
        Duration::from_secs(150),
        |t| t.rows.iter().all(|r| r.id != victim.id) && three_healthy_managers(t),
    )
    .await;

    // A reconcile's actions are counted when it ends, after the change converged.
    let done = wait_until(
        "the removal and the promotion counted",
        Duration::from_secs(60),
        || async {
            let done: Vec<(String, f64, f64)> = replicas
                .iter()
                .map(|r| {
                    let m = scrape(&lab, &r.node).unwrap_or_default();
                    (
                        r.node.clone(),
                        sample_sum(&m, "swarm_warden_leader", ""),
                        sample_sum(&m, "swarm_warden_actions_total", "result=\"done\""),
                    )
                })
                .collect();
            if done.iter().map(|d| d.2).sum::<f64>() >= 2.0 {
                Probe::Done(done)
            } else {
                Probe::Pending(format!("{done:?}"))
            }
        },
    )
    .await
    .expect("actions counted");
    let acting: Vec<_> = done.iter().filter(|(_, _, n)| *n > 0.0).collect();
    assert_eq!(acting.len(), 1, "exactly one replica acted: {done:?}");
    assert_eq!(acting[0].1, 1.0, "and it is the lease holder: {done:?}");
    assert!(acting[0].2 >= 2.0, "it removed and promoted: {done:?}");
    teardown_leaving_nothing(lab);
}
