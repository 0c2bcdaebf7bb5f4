//! Placement end to end: the real binary keeps workloads off managers on real lab swarms.

mod common;

use std::time::Duration;

use common::*;
use swarm_chaos::{Lab, LabSpec, Probe};

const POLICY: &str = "placement:\n  max_updates_per_cycle: 2\n  update_timeout: 3m\ncontroller:\n  resync: 5s\n  backoff_min: 2s\n  backoff_max: 10s\n";

const STACK: &str = "version: \"3.8\"\nservices:\n  api:\n    image: busybox:latest\n    command: [\"sleep\", \"1d\"]\n    deploy:\n      replicas: 3\n";

fn deploy_stack(lab: &Lab) {
    let file = lab.paths().dir().join("stack.yml");
    std::fs::write(&file, STACK).expect("compose file");
    let file = file.to_str().expect("utf-8 path").to_owned();
    docker(
        lab,
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            &file,
            "app",
        ],
    );
}

async fn api_constrained(lab: &Lab) -> bool {
    services(lab)
        .await
        .get("app_api")
        .is_some_and(|s| has_constraint(&s.1))
}

#[tokio::test]
async fn one_run_keeps_only_the_workload_and_the_stack_service_off_managers() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    create(&lab, "web", &["--replicas", "6"]);
    create(&lab, "agent", &["--mode", "global"]);
    create(
        &lab,
        "pinned",
        &["--replicas", "1", "--constraint", "node.role==manager"],
    );
    create(
        &lab,
        "optout",
        &[
            "--replicas",
            "2",
            "--label",
            "swarm-warden.allow-managers=true",
        ],
    );
    deploy_stack(&lab);
    let web_before = wait_running(&lab, "web", 6).await;
    assert!(
        web_before.iter().any(|h| h.starts_with('m')),
        "web spread onto managers: {web_before:?}"
    );
    wait_running(&lab, "agent", 5).await;
    wait_running(&lab, "app_api", 3).await;
    let policy = policy_file(&lab, POLICY);
    let policy = policy.to_str().expect("utf-8 path");

    // report changes nothing and says what run would do.
    let before = services(&lab).await;
    let out = warden_once(
        &lab,
        "m1",
        &["report", "--config", policy, "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let status = |name: &str| {
        json["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(status("web"), "violating", "{json:#}");
    assert_eq!(status("app_api"), "violating");
    assert_eq!(status("agent"), "exempt");
    assert_eq!(status("pinned"), "exempt");
    assert_eq!(status("optout"), "exempt");
    assert_eq!(services(&lab).await, before, "report changed a service");

    let out = warden_once(
        &lab,
        "m1",
        &["run", "--once", "--config", policy, "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = services(&lab).await;
    for fixed in ["web", "app_api"] {
        assert_kept_off_managers(&lab, &after, fixed).await;
    }
    for untouched in ["agent", "pinned", "optout"] {
        assert_eq!(
            after[untouched].0, before[untouched].0,
            "{untouched} spec version changed"
        );
    }
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn without_workers_the_fix_is_blocked_and_nothing_changes() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 0)).await.expect("lab");
    create(&lab, "web", &["--replicas", "2"]);
    wait_running(&lab, "web", 2).await;
    let policy = policy_file(&lab, POLICY);
    let before = services(&lab).await;
    let out = warden_once(
        &lab,
        "m1",
        &[
            "run",
            "--once",
            "--config",
            policy.to_str().expect("path"),
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let action = json["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["kind"] == "enforce-placement")
        .expect("a placement action");
    assert_eq!(action["status"], "blocked", "{json:#}");
    assert!(
        action["blocked_by"]
            .as_str()
            .unwrap_or_default()
            .contains("No Ready, Active worker"),
        "{action:#}"
    );
    assert_eq!(services(&lab).await, before, "nothing may change");
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn a_redeployed_stack_that_drops_the_constraint_is_reported_and_fixed_again() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 2)).await.expect("lab");
    deploy_stack(&lab);
    wait_running(&lab, "app_api", 3).await;
    let policy = policy_file(&lab, POLICY);
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    swarm_chaos::wait_until("app_api constrained", Duration::from_secs(180), || async {
        if api_constrained(&lab).await {
            Probe::Done(())
        } else {
            Probe::Pending(warden.log().to_string())
        }
    })
    .await
    .expect("first fix");
    swarm_chaos::wait_until(
        "the first fix to finish",
        Duration::from_secs(180),
        || async {
            if warden.log().count("action-done") > 0 {
                Probe::Done(())
            } else {
                Probe::Pending(warden.log().to_string())
            }
        },
    )
    .await
    .expect("first fix done");

    // `docker stack deploy` writes the compose file's spec back: the constraint is gone.
    deploy_stack(&lab);
    swarm_chaos::wait_until(
        "stack-drift reported and fixed again",
        Duration::from_secs(240),
        || async {
            let log = warden.log();
            if log.finding("stack-drift")
                && log.count("action-done") >= 2
                && api_constrained(&lab).await
            {
                Probe::Done(())
            } else {
                Probe::Pending(log.to_string())
            }
        },
    )
    .await
    .expect("drift fixed again");
    let log = warden.stop();
    // The finding carries the compose snippet to put in the stack file.
    assert!(
        log.events("finding")
            .iter()
            .any(|f| f["fields"]["kind"] == "stack-drift"
                && f["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("deploy:") && m.contains("node.role != manager"))),
        "compose snippet in the finding:\n{log}"
    );
    let on = running_on(&lab, "app_api").await;
    assert!(
        on.iter().all(|h| h.starts_with('w')),
        "tasks on managers: {on:?}"
    );
    teardown_leaving_nothing(lab);
}
