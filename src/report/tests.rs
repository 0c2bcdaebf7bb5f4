use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Policy;
use crate::model::Control;
use crate::plan::quorum_test_support::{cluster, dead, manager, t, worker};
use crate::plan::{plan, Memory};

fn sample(control_lost: bool) -> Report {
    let mut snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            dead(manager("m3", false), 0),
            worker("w1"),
        ],
        t(1000),
    );
    snap.services = vec![crate::model::Service {
        id: "svc1".into(),
        version: 3,
        name: "web".into(),
        labels: Default::default(),
        mode: crate::model::ServiceMode::Replicated { replicas: 2 },
        constraints: Vec::new(),
        image: "busybox:latest".into(),
        reservations: Default::default(),
        max_replicas_per_node: 0,
        platforms: Vec::new(),
        update: None,
        mounts: Vec::new(),
        ..Default::default()
    }];
    snap.tasks = vec![crate::model::Task {
        id: "task1".into(),
        service_id: "svc1".into(),
        node_id: Some("m1".into()),
        state: "running".into(),
    }];
    if control_lost {
        snap.control = Control::NoLeader {
            error: "The swarm does not have a leader.".into(),
        };
        snap.nodes.clear();
    }
    let mut memory = Memory::default();
    memory.observe(&snap);
    let plan = plan(&snap, &Policy::default(), &memory, t(1000));
    Report::new(&snap, &plan, true)
}

fn schema() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn json_reports_validate_against_the_committed_schema() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    for lost in [false, true] {
        let json: serde_json::Value =
            serde_json::from_str(&sample(lost).render(Format::Json)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{json:#}");
    }
}

#[test]
fn the_json_report_has_the_documented_fields() {
    let json: serde_json::Value =
        serde_json::from_str(&sample(false).render(Format::Json)).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["cluster"]["managers"], 3);
    assert_eq!(json["cluster"]["reachable_managers"], 2);
    assert_eq!(json["cluster"]["quorum"], 2);
    assert_eq!(json["cluster"]["fault_tolerance"], 0);
    assert_eq!(json["cluster"]["leader"], "m1");
    let action = &json["actions"][0];
    assert_eq!(action["kind"], "remove-dead-manager");
    assert_eq!(action["target"], "m3");
    assert_eq!(action["status"], "planned");
    assert!(json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "dead-manager"));
}

#[test]
fn without_a_leader_the_cluster_numbers_are_null_and_quorum_lost_is_reported() {
    let json: serde_json::Value = serde_json::from_str(&sample(true).render(Format::Json)).unwrap();
    assert!(json["cluster"]["managers"].is_null());
    assert_eq!(json["findings"][0]["kind"], "quorum-lost");
}

#[test]
fn text_and_markdown_show_the_same_findings_and_actions() {
    let r = sample(false);
    let text = r.render(Format::Text);
    let md = r.render(Format::Markdown);
    for needle in [
        "dead-manager",
        "remove-dead-manager",
        "fault tolerance 0",
        "m3",
    ] {
        assert!(text.contains(needle), "text lacks {needle}:\n{text}");
        assert!(md.contains(needle), "markdown lacks {needle}:\n{md}");
    }
    assert!(text.contains("dry run"));
    assert!(md.contains("| Status | Kind |"));
    let _ = Duration::ZERO;
}

#[test]
fn markdown_cells_escape_pipes_and_newlines() {
    let r = sample(true);
    let md = r.render(Format::Markdown);
    let row = md.lines().find(|l| l.contains("quorum-lost")).unwrap();
    assert!(row.contains("<br>"), "{row}");
}
