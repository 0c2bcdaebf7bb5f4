//! The `ebs-migration` runbook when the world interferes (issue 14), on one lab and one
//! service running as nobody: someone scales the service back in the middle of the copy
//! (the run stops and rolls back), `volumes.mode` is switched to `audit` mid-run (the run
//! pauses, and the report says so), and swarm-warden is SIGKILLed right after the swap and
//! before its journal write (the next process resumes without a second swap; the
//! rollback that follows puts back the original mount whole and removes the pin). The
//! copy's progress, read from its job's log, is in the journal when it is done.

mod common;

use std::time::Duration;

use common::*;
use swarm_chaos::docker_proxy::{DockerFault, DockerProxy};
use swarm_chaos::{wait_until, Lab, LabSpec, Probe};

/// A policy in `mode` (`enforce`, `audit`) written to its own file.
fn policy(lab: &Lab, prometheus: &str, mode: &str) -> std::path::PathBuf {
    let path = lab.paths().dir().join(format!("policy-{mode}.yml"));
    std::fs::write(
        &path,
        format!(
            // One attempt per step: the first failure rolls back. The target is `local`
            // with no options: a directory on the copy's worker.
            "placement:\n  mode: off\nvolumes:\n  mode: {mode}\n  prometheus_url: {prometheus}\n  throttled_for: 5s\n  cooldown: 1s\n  step_attempts: 1\n  migration:\n    driver: local\n    copy_timeout: 5m\n    scale_timeout: 20s\n    verify_for: 10s\ncontroller:\n  resync: 2s\n  backoff_min: 1s\n  backoff_max: 5s\n"
        ),
    )
    .expect("write policy");
    path
}

/// The newest run the report shows (runs are listed oldest first).
fn newest_run(lab: &Lab, policy: &std::path::Path) -> Option<serde_json::Value> {
    let out = warden_once(
        lab,
        "m1",
        &[
            "report",
            "--config",
            policy.to_str().unwrap_or_default(),
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["runbooks"].as_array().and_then(|r| r.last()).cloned()
}

/// Waits until the newest run other than `not` is at step `step` (index) in state `state`.
async fn run_at(
    lab: &Lab,
    policy: &std::path::Path,
    not: Option<&str>,
    step: usize,
    state: &str,
    warden: &Warden,
) -> serde_json::Value {
    wait_until(
        &format!("a run at step {step} {state}"),
        Duration::from_secs(240),
        || async {
            match newest_run(lab, policy) {
                Some(run)
                    if Some(run["run_id"].as_str().unwrap_or_default()) != not
                        && run["steps"][step]["state"] == state =>
                {
                    Probe::Done(run)
                }
                other => Probe::Pending(format!("{other:#?}\n{}", warden.log().text())),
            }
        },
    )
    .await
    .expect("run at step")
}

#[tokio::test]
async fn a_migration_interfered_with_pauses_rolls_back_and_resumes_without_losing_the_original_mount(
) {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 2)).await.expect("lab");
    let (source, prometheus) = migration_source(&lab).await;
    let mount = format!(
        "type=volume,source=efsdata,target=/data,volume-driver=local,volume-opt=type=ext4,volume-opt=device={},volume-label=swarm-warden.efs-id={SOURCE_EFS},volume-label=swarm-warden.remediation=ebs-migration",
        source.device()
    );
    docker_on(
        &lab,
        "m1",
        &[
            "service", "create", "-d", "--no-resolve-image", "--name", "tsdb",
            "--user", "65534:65534",
            "--constraint", "node.role==worker", "--mount", &mount,
            "busybox", "sh", "-c",
            "umask 077; mkdir -p /data/chunks || exit 1; i=0; while true; do t=$(date +%s); dd if=/dev/urandom of=/data/chunks/c$((i%40)) bs=1M count=2 conv=fsync 2>/dev/null || exit 1; i=$((i+1)); [ $(date +%s) -le $((t+1)) ] && sleep 1; done",
        ],
    );
    let original = service_spec(&lab, "tsdb").await;
    wait_credits_spent(&source).await;
    let enforce = policy(&lab, &prometheus.url(), "enforce");
    let audit = policy(&lab, &prometheus.url(), "audit");

    // 1. The copy is running; swarm-warden dies; a process in `audit` does not advance
    //    the run and reports it paused (critical: it holds the service at 0).
    let first = Warden::start(&lab, "m1", &enforce, &[]);
    let run = run_at(&lab, &enforce, None, 4, "running", &first).await;
    let run_id = run["run_id"].as_str().expect("run id").to_owned();
    first.kill();
    let paused = Warden::start(&lab, "m1", &audit, &[]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let out = warden_once(
        &lab,
        "m1",
        &[
            "report",
            "--config",
            audit.to_str().expect("path"),
            "--format",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let finding = report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "runbook-paused"))
        .unwrap_or_else(|| panic!("no runbook-paused: {report:#}"));
    assert_eq!(finding["severity"], "critical", "{finding:#}");
    let still = newest_run(&lab, &enforce).expect("run");
    assert_eq!(still["steps"], run["steps"], "a paused run does not move");
    let paused_log = paused.stop();
    assert_eq!(paused_log.count("runbook"), 0, "{}", paused_log.text());

    // 2. Someone scales the service back mid-copy: the copy would be stale. The run stops
    //    and rolls back (the copy job removed; the mount was never swapped; the count
    //    someone set stays).
    docker_on(&lab, "m1", &["service", "scale", "-d", "tsdb=1"]);
    // From here on through a proxy: step 3 stops its Docker API after the swap.
    let socket = lab.paths().dir().join("proxy.sock");
    let proxy = DockerProxy::start(&lab.socket("m1").expect("socket"), &socket)
        .await
        .expect("proxy");
    let warden = Warden::start_with_env(
        &lab,
        "m1",
        &enforce,
        &[],
        &[("DOCKER_HOST", proxy.docker_host())],
    );
    let failed = wait_until("the run to roll back", Duration::from_secs(180), || async {
        match newest_run(&lab, &enforce) {
            Some(run) if run["run_id"] == run_id.as_str() && run["status"] == "failed" => {
                Probe::Done(run)
            }
            other => Probe::Pending(format!("{other:#?}\n{}", warden.log().text())),
        }
    })
    .await
    .expect("rolled back");
    let rollback = failed["facts"]["rollback"].as_str().unwrap_or_default();
    assert!(rollback.starts_with("done"), "{failed:#}");
    assert!(
        failed["steps"][4]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("someone scaled it back")),
        "{failed:#}"
    );
    let spec = service_spec(&lab, "tsdb").await;
    assert_eq!(first_mount(&spec), first_mount(&original));
    assert_eq!(constraints(&spec), constraints(&original));

    // 3. The next run (the volume is still throttled): swarm-warden's Docker API stops
    //    answering journal writes right after the swap is sent, and it is SIGKILLed there.
    let service_id = docker_on(
        &lab,
        "m1",
        &["service", "inspect", "--format", "{{.ID}}", "tsdb"],
    )
    .trim()
    .to_owned();
    let second = run_at(&lab, &enforce, Some(&run_id), 4, "running", &warden).await;
    let second_id = second["run_id"].as_str().expect("run id").to_owned();
    proxy.set_on(
        DockerFault::HangAfterWrite(format!("/services/{service_id}/update")),
        &["/configs"],
    );
    wait_until("the swap to be sent", Duration::from_secs(180), || async {
        if proxy.tripped() {
            Probe::Done(())
        } else {
            Probe::Pending(warden.log().text().to_owned())
        }
    })
    .await
    .expect("swap sent");
    tokio::time::sleep(Duration::from_secs(2)).await;
    warden.kill();
    let cut = newest_run(&lab, &enforce).expect("run");
    assert_eq!(cut["run_id"], second_id.as_str());
    assert_eq!(cut["steps"][5]["state"], "running", "{cut:#}");
    assert!(cut["facts"]["swapped"].is_null(), "{cut:#}");
    // The copy job's progress, read from its log into the journal: its last line, all
    // verified.
    let progress = &cut["progress"];
    assert_eq!(progress["step"], "copy", "{cut:#}");
    assert_eq!(progress["attempt"], cut["steps"][4]["attempts"], "{cut:#}");
    assert_eq!(progress["phase"], "verifying", "{cut:#}");
    assert!(
        progress["files_total"].as_u64().is_some_and(|n| n > 0),
        "{cut:#}"
    );
    assert_eq!(progress["files_done"], progress["files_total"], "{cut:#}");
    assert_eq!(progress["bytes_done"], progress["bytes_total"], "{cut:#}");
    let target = cut["facts"]["target_volume"].as_str().expect("target");
    let spec = service_spec(&lab, "tsdb").await;
    assert_eq!(first_mount(&spec)["Source"], target, "the swap was made");
    let pin = cut["facts"]["pin"].as_str().expect("pin").to_owned();
    assert!(
        constraints(&spec).contains(&pin),
        "{:?}",
        constraints(&spec)
    );

    // The worker the service is pinned to is drained: the next process resumes (the swap
    // seen done, not sent again), the scale-up cannot place the task, and the rollback
    // restores the original mount whole and removes the pin.
    let node = cut["facts"]["source_node"].as_str().expect("node");
    docker_on(
        &lab,
        "m1",
        &["node", "update", "--availability", "drain", node],
    );
    let last = Warden::start(&lab, "m1", &enforce, &[]);
    let failed = wait_until(
        "the second run to roll back",
        Duration::from_secs(240),
        || async {
            match newest_run(&lab, &enforce) {
                Some(run) if run["run_id"] == second_id.as_str() && run["status"] == "failed" => {
                    Probe::Done(run)
                }
                other => Probe::Pending(format!("{other:#?}\n{}", last.log().text())),
            }
        },
    )
    .await
    .expect("rolled back");
    let log = last.stop();
    assert_eq!(failed["facts"]["swapped"], "true", "{failed:#}");
    assert_eq!(failed["steps"][5]["attempts"], 1, "one swap: {failed:#}");
    assert!(
        failed["facts"]["rollback"]
            .as_str()
            .is_some_and(|r| r.starts_with("done")),
        "{failed:#}\n{}",
        log.text()
    );
    let spec = service_spec(&lab, "tsdb").await;
    assert_eq!(
        first_mount(&spec),
        first_mount(&original),
        "the original mount, whole"
    );
    assert_eq!(
        constraints(&spec),
        constraints(&original),
        "the pin removed"
    );

    drop(proxy);
    drop(prometheus);
    drop(source);
    teardown_leaving_nothing(lab);
}
