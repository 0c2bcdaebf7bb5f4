//! A faulty Docker API between swarm-warden and its manager (`swarm_chaos::docker_proxy`):
//! error answers, a hung Engine, bodies cut short, slow answers, dropped event streams and
//! an Engine that claims an old API. swarm-warden never acts on a read that failed (a
//! failed list is never an empty list), says so, and does its work within a resync of the
//! proxy healing.

mod common;

use std::time::Duration;

use common::*;
use swarm_chaos::docker_proxy::{DockerFault, DockerProxy};
use swarm_chaos::{wait_until, Lab, LabSpec, Probe};

const POLICY: &str = "lease:\n  enabled: false\nplacement:\n  update_timeout: 60s\ncontroller:\n  resync: 3s\n  backoff_min: 1s\n  backoff_max: 3s\n";

/// A service whose one task runs on the manager m1: a placement fix waits for it.
async fn service_on_the_manager(lab: &Lab, name: &str) {
    docker(lab, &["node", "update", "--availability", "drain", "w1"]);
    create(lab, name, &[]);
    wait_running(lab, name, 1).await;
    docker(lab, &["node", "update", "--availability", "active", "w1"]);
}

async fn fixed(lab: &Lab, name: &str) -> bool {
    services(lab)
        .await
        .get(name)
        .is_some_and(|s| has_constraint(&s.1))
}

/// One round: `fault` is set before swarm-warden starts; `acts_meanwhile` says whether it
/// may still do its work (the reads themselves pass), else its log must say why not and
/// the service stay as it is; then the proxy heals and the fix follows.
async fn round(lab: &Lab, proxy: &DockerProxy, n: usize, fault: DockerFault, acts_meanwhile: bool) {
    let name = format!("svc{n}");
    service_on_the_manager(lab, &name).await;
    let version = services(lab).await[&name].0;
    proxy.set(fault.clone());
    let policy = policy_file(lab, POLICY);
    let warden = Warden::start_with_env(
        lab,
        "m1",
        &policy,
        &[],
        &[("DOCKER_HOST", proxy.docker_host())],
    );
    if acts_meanwhile {
        wait_until(
            &format!("the fix of {name} while {fault:?}"),
            Duration::from_secs(60),
            || async {
                if fixed(lab, &name).await {
                    Probe::Done(())
                } else {
                    Probe::Pending(warden.log())
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    } else {
        // Long enough for a hanging read to hit its deadline (15 s).
        let window = match fault {
            DockerFault::Hang | DockerFault::Slow(_) => 18,
            _ => 8,
        };
        tokio::time::sleep(Duration::from_secs(window)).await;
        let log = warden.log();
        assert_eq!(
            services(lab).await[&name].0,
            version,
            "{name} was written while reads failed ({fault:?}):\n{log}"
        );
        assert_eq!(warden.actions_started(), 0, "{fault:?}:\n{log}");
        assert!(
            log.contains("Could not observe the swarm")
                || log.contains("Cannot reach the Docker Engine yet"),
            "no word of the failed reads ({fault:?}):\n{log}"
        );
        proxy.heal();
        // One resync after the heal, plus a read the fault left hanging (the list
        // deadline) and the update itself.
        wait_until(
            &format!("the fix of {name} after {fault:?} healed"),
            Duration::from_secs(45),
            || async {
                if fixed(lab, &name).await {
                    Probe::Done(())
                } else {
                    Probe::Pending(warden.log())
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    proxy.heal();
    let log = warden.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_docker_api_never_leads_to_an_action_and_work_resumes_once_it_heals() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 1)).await.expect("lab");
    let socket = lab.paths().dir().join("proxy.sock");
    let proxy = DockerProxy::start(&lab.socket("m1").expect("socket"), &socket)
        .await
        .expect("proxy");
    let rounds = [
        (DockerFault::Status(500), false),
        (DockerFault::Status(503), false),
        (DockerFault::CutBody, false),
        (DockerFault::Hang, false),
        (DockerFault::Slow(Duration::from_secs(20)), false),
        (DockerFault::DropEvents, true),
    ];
    for (n, (fault, acts)) in rounds.into_iter().enumerate() {
        round(&lab, &proxy, n, fault, acts).await;
    }
    drop(proxy);
    teardown_leaving_nothing(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_older_than_swarm_mode_is_refused_with_exit_2() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 0)).await.expect("lab");
    let socket = lab.paths().dir().join("proxy.sock");
    let proxy = DockerProxy::start(&lab.socket("m1").expect("socket"), &socket)
        .await
        .expect("proxy");
    proxy.set(DockerFault::OldVersion("1.23".into()));
    let out = std::process::Command::new(warden_bin())
        .args(["report", "--format", "json"])
        .env("DOCKER_HOST", proxy.docker_host())
        .output()
        .expect("run swarm-warden");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("1.23") && stderr.contains("1.24"),
        "{stderr}"
    );
    drop(proxy);
    teardown_leaving_nothing(lab);
}
