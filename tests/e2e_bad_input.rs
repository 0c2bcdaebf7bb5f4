//! Bad input end to end: what a user's swarm hands swarm-warden must never stop its
//! manager checks. Each test pins an input that once blinded or crashed it.

mod common;

use common::*;
use swarm_chaos::{Lab, LabSpec};

#[tokio::test]
async fn unreadable_runbook_journals_are_reported_and_the_manager_checks_go_on() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let data = lab.paths().dir().join("journal-data");
    std::fs::write(&data, "see the labels").expect("write");
    let data = data.to_str().expect("utf-8 path");
    // A newer build's journal, and one edited by hand.
    let newer = "swarm-warden-runbook-efs-padding-fs-0newer-1";
    let edited = "swarm-warden-runbook-efs-padding-fs-0typo-1";
    for (name, efs, journal) in [
        (newer, "fs-0newer", r#"{"schema": 2, "run_id": "r1"}"#),
        (edited, "fs-0typo", r#"{"run_id": "r2", "status": "runing""#),
    ] {
        docker(
            &lab,
            &[
                "config",
                "create",
                "--label",
                &format!("swarm-warden.runbook.efs-id={efs}"),
                "--label",
                &format!("swarm-warden.runbook.journal={journal}"),
                name,
                data,
            ],
        );
    }

    let out = warden_once(&lab, "m1", &["report", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "exit {:?}: {stderr}",
        out.status.code()
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{stderr}"));
    // The manager checks ran: the raft was counted.
    assert_eq!(json["cluster"]["managers"], 3, "{json:#}");
    assert!(json["cluster"]["leader"].is_string(), "{json:#}");
    let unreadable: Vec<&serde_json::Value> = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "runbook-journal-unreadable")
        .collect();
    assert_eq!(unreadable.len(), 2, "{json:#}");
    let message = |name: &str| {
        unreadable
            .iter()
            .find(|f| f["message"].as_str().is_some_and(|m| m.contains(name)))
            .and_then(|f| f["message"].as_str())
            .unwrap_or_else(|| panic!("no finding for {name}: {json:#}"))
            .to_owned()
    };
    assert!(message(newer).contains("schema 2"), "{}", message(newer));
    assert!(
        message(edited).contains("not a runbook journal"),
        "{}",
        message(edited)
    );
    // Left alone.
    let left = docker(&lab, &["config", "ls", "--format", "{{.Name}}"]);
    assert!(left.contains(newer) && left.contains(edited), "{left}");
    teardown_leaving_nothing(lab);
}
