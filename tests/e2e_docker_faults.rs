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

const POLICY: &str = "lease:\n  enabled: false\nplacement:\n  update_timeout: 20s\ncontroller:\n  resync: 3s\n  backoff_min: 1s\n  backoff_max: 3s\n";

/// A service whose one task runs on the manager m1: a placement fix waits for it.
/// It runs as nobody with scratch data (tmpfs: disposable, so placement may move it; a
/// service with node-local data is never moved, see e2e_placement_field).
async fn service_on_the_manager(lab: &Lab, name: &str) {
    docker(lab, &["node", "update", "--availability", "drain", "w1"]);
    create(
        lab,
        name,
        &[
            "--user",
            "65534:65534",
            "--mount",
            "type=tmpfs,target=/scratch",
        ],
    );
    wait_running(lab, name, 1).await;
    docker(lab, &["node", "update", "--availability", "active", "w1"]);
}

/// The fix is written and has converged: the task runs on the worker. (A fix still
/// rolling out when the next round drains the worker could not converge, and would be
/// rolled back.)
async fn fixed(lab: &Lab, name: &str) -> bool {
    services(lab)
        .await
        .get(name)
        .is_some_and(|s| has_constraint(&s.1))
        && running_on(lab, name).await == ["w1"]
}

/// Waits until every action swarm-warden started has ended (done, failed or rolled back):
/// the next fault then hits its reconcile, not a rollout it is still watching.
async fn idle(warden: &Warden) {
    wait_until(
        "swarm-warden's actions to end",
        Duration::from_secs(60),
        || async {
            let log = warden.log();
            if log.actions_ended() >= log.count("action-started") {
                Probe::Done(())
            } else {
                Probe::Pending(log.to_string())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// What swarm-warden must say under a fault, as typed events.
#[derive(Debug, Clone, Copy)]
enum Says {
    /// Nothing in particular (the reads work).
    Nothing,
    /// `observe-failed`, its error containing this (the Engine's or the deadline's words).
    ObserveFailed(&'static str),
    /// A finding of this kind.
    Finding(&'static str),
    /// An event of this name.
    Event(&'static str),
}

/// How often `log` says it.
fn count(log: &Log, says: Says) -> usize {
    match says {
        Says::Nothing => 0,
        // A transient failure: a read that failed or hung (not "cannot work with it").
        Says::ObserveFailed(error) => log
            .events("observe-failed")
            .iter()
            .filter(|e| e["fields"]["transient"] == true)
            .filter(|e| {
                e["fields"]["error"]
                    .as_str()
                    .is_some_and(|m| m.contains(error))
            })
            .count(),
        Says::Finding(kind) => log
            .events("finding")
            .iter()
            .filter(|e| e["fields"]["kind"] == kind)
            .count(),
        Says::Event(name) => log.count(name),
    }
}

/// Waits until swarm-warden's log says it more than `before` times.
async fn says_again(warden: &Warden, says: Says, before: usize, what: &str) {
    wait_until(what, Duration::from_secs(60), || async {
        let log = warden.log();
        if count(&log, says) > before {
            Probe::Done(())
        } else {
            Probe::Pending(log.to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// One round against a running swarm-warden: the fault is set on `only` (empty: every
/// cluster read), then a service lands on the manager. If the reads still work
/// (`acts_meanwhile`), the fix must follow anyway; else swarm-warden must say `says`
/// again, write nothing, and fix the service within a resync (plus a read left hanging)
/// of the heal.
#[allow(clippy::too_many_arguments)]
async fn round(
    lab: &Lab,
    proxy: &DockerProxy,
    warden: &Warden,
    n: usize,
    fault: DockerFault,
    only: &[&str],
    says: Says,
    acts_meanwhile: bool,
) {
    let name = format!("svc{n}");
    let said = count(&warden.log(), says);
    let acted = warden.actions_started();
    proxy.set_on(fault.clone(), only);
    service_on_the_manager(lab, &name).await;
    let version = services(lab).await[&name].0;
    if !acts_meanwhile {
        says_again(
            warden,
            says,
            said,
            &format!("swarm-warden to say {says:?} under {fault:?} on {only:?}"),
        )
        .await;
        // And for more than a resync (3 s) after that.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let log = warden.log();
        assert_eq!(
            services(lab).await[&name].0,
            version,
            "{name} was written while reads failed ({fault:?} on {only:?}):\n{log}"
        );
        assert_eq!(warden.actions_started(), acted, "{fault:?}:\n{log}");
        assert!(
            !log.finding("quorum-lost"),
            "a failed read is no lost quorum:\n{log}"
        );
        proxy.heal();
    }
    wait_until(
        &format!("the fix of {name} ({fault:?} on {only:?}, acts meanwhile: {acts_meanwhile})"),
        Duration::from_secs(60),
        || async {
            if fixed(lab, &name).await {
                Probe::Done(())
            } else {
                Probe::Pending(warden.log().to_string())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    proxy.heal();
    idle(warden).await;
}

/// Reads fail while swarm-warden watches its own fix roll out, past
/// `placement.update_timeout`: it must not roll back what it cannot see (the fix is
/// fine); it leaves it to the next reconcile, which finds it done.
async fn blind_during_a_rollout(lab: &Lab, proxy: &DockerProxy, warden: &Warden, n: usize) {
    let name = format!("svc{n}");
    let started = warden.actions_started();
    let unobserved = Says::Event("action-unobserved");
    let left = count(&warden.log(), unobserved);
    service_on_the_manager(lab, &name).await;
    says_again(
        warden,
        Says::Event("action-started"),
        started,
        "the fix to start",
    )
    .await;
    proxy.set_on(DockerFault::Status(503), &["/tasks"]);
    says_again(warden, unobserved, left, "the rollout to be left unjudged").await;
    let log = warden.log();
    assert_eq!(
        log.count("action-rolled-back"),
        0,
        "rolled back blind:\n{log}"
    );
    assert!(fixed(lab, &name).await, "the fix was undone:\n{log}");
    proxy.heal();
    idle(warden).await;
    assert!(fixed(lab, &name).await, "{}", warden.log());
    assert_eq!(
        warden.log().count("action-rolled-back"),
        0,
        "rolled back blind:\n{}",
        warden.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_docker_api_never_leads_to_an_action_and_work_resumes_once_it_heals() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 1)).await.expect("lab");
    let socket = lab.paths().dir().join("proxy.sock");
    let proxy = DockerProxy::start(&lab.socket("m1").expect("socket"), &socket)
        .await
        .expect("proxy");
    let policy = policy_file(&lab, POLICY);
    let warden = Warden::start_with_env(
        &lab,
        "m1",
        &policy,
        &[],
        &[("DOCKER_HOST", proxy.docker_host())],
    );
    // Healthy first: each fault then hits a read after the local node is known.
    round(
        &lab,
        &proxy,
        &warden,
        0,
        DockerFault::None,
        &[],
        Says::Nothing,
        true,
    )
    .await;
    let failed = Says::ObserveFailed("");
    let rounds: [(DockerFault, &[&str], Says, bool); 7] = [
        (DockerFault::Status(500), &["/nodes"], failed, false),
        (DockerFault::Status(503), &["/tasks"], failed, false),
        (DockerFault::CutBody, &["/services"], failed, false),
        (
            DockerFault::Slow(Duration::from_secs(20)),
            &["/tasks"],
            failed,
            false,
        ),
        // The placement records: placement writes nothing, the rest goes on.
        (
            DockerFault::Status(500),
            &["/configs"],
            Says::Finding("placement-record-unreadable"),
            false,
        ),
        // A hung Engine: the node list times out and /_ping is silent too.
        (
            DockerFault::Hang,
            &[],
            Says::ObserveFailed("does not answer /_ping either"),
            false,
        ),
        (DockerFault::DropEvents, &[], Says::Nothing, true),
    ];
    for (n, (fault, only, says, acts)) in rounds.into_iter().enumerate() {
        round(&lab, &proxy, &warden, n + 1, fault, only, says, acts).await;
    }
    blind_during_a_rollout(&lab, &proxy, &warden, 9).await;
    let log = warden.stop();
    assert!(!log.text().contains("panicked"), "{log}");
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
