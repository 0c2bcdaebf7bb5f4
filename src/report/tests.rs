use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Policy;
use crate::model::journal::{Journal, RunbookKind, StepState};
use crate::model::{Control, VolumeTelemetry};
use crate::plan::quorum_test_support::{cluster, dead, manager, t, worker};
use crate::plan::volumes::EFS_ID_LABEL;
use crate::plan::{plan, Memory};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

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
    snap.services.push(crate::model::Service {
        id: "prom".into(),
        version: 1,
        name: "prom".into(),
        mode: crate::model::ServiceMode::Replicated { replicas: 1 },
        constraints: vec!["node.role == worker".into()],
        image: "prom/prometheus:v2.42.0".into(),
        mounts: vec![crate::model::Mount {
            kind: "volume".into(),
            source: "promdata".into(),
            target: "/prometheus".into(),
            driver: "local".into(),
            driver_options: [("type".to_owned(), "nfs4".to_owned())].into(),
            labels: [
                (EFS_ID_LABEL.to_owned(), "fs-1".to_owned()),
                (
                    "swarm-warden.remediation".to_owned(),
                    "efs-padding".to_owned(),
                ),
            ]
            .into(),
            read_only: false,
        }],
        ..Default::default()
    });
    // 12 GiB of credits, metering 3 MiB/s over a 1 MiB/s baseline (20 GiB stored):
    // T = 12 GiB / 2 MiB/s = 6144 s.
    snap.telemetry = vec![VolumeTelemetry {
        efs_id: "fs-1".into(),
        credits: Some(12.0 * GIB),
        permitted: Some(3.0 * MIB),
        metered_rate: Some(3.0 * MIB),
        storage: Some(20.0 * GIB),
        ..Default::default()
    }];
    let mut run = Journal::new(
        RunbookKind::EfsPadding,
        "fs-1",
        "prom",
        "prom",
        "promdata",
        crate::runbook::steps(RunbookKind::EfsPadding),
        t(900),
    );
    run.steps[0].state = StepState::Done;
    run.steps[0].attempts = 1;
    run.steps[1].state = StepState::Done;
    run.steps[1].attempts = 1;
    run.steps[2].state = StepState::Running;
    run.steps[2].attempts = 1;
    run.steps[2].detail = "job swarm-warden-pad-fs-1 writing 80 GiB".into();
    snap.runbooks = vec![run];
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

#[test]
fn a_draining_volume_has_its_time_to_exhaustion() {
    let r = sample(false);
    assert_eq!(r.volumes.len(), 1, "{:#?}", r.volumes);
    let v = &r.volumes[0];
    assert_eq!(v.efs_id, "fs-1");
    assert_eq!(v.state, "draining");
    assert_eq!(v.remediation, "efs-padding");
    assert_eq!(v.time_to_exhaustion_seconds, Some(6144));
    assert_eq!(v.baseline_bytes_per_second, Some(MIB));
    assert_eq!(v.mounts[0].service, "prom");
    let json: serde_json::Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
    assert_eq!(json["volumes"][0]["time_to_exhaustion_seconds"], 6144);
    assert_eq!(json["cluster"]["desired_managers"], 3);
    for format in [Format::Text, Format::Markdown] {
        let out = r.render(format);
        assert!(out.contains("fs-1 draining"), "{out}");
        assert!(out.contains("1h 42m 24s"), "{out}");
    }
}

#[test]
fn volume_states_follow_the_planner_s_credit_rules() {
    let watched = [crate::plan::volumes::Watched {
        service_id: "s".into(),
        service: "s".into(),
        volume: "v".into(),
        target: "/d".into(),
        efs_id: "fs-1".into(),
        remediation: crate::config::Remediation::Report,
    }];
    let w: Vec<&crate::plan::volumes::Watched> = watched.iter().collect();
    let tel = |credits: f64, metered: f64| VolumeTelemetry {
        efs_id: "fs-1".into(),
        credits: Some(credits),
        permitted: Some(MIB),
        metered_rate: Some(metered),
        storage: Some(GIB),
        ..Default::default()
    };
    let state = |t: &VolumeTelemetry| VolumeView::new(&w, Some(t));
    assert_eq!(state(&tel(GIB, 0.5 * MIB)).state, "ok");
    assert_eq!(state(&tel(GIB, 0.5 * MIB)).time_to_exhaustion_seconds, None);
    assert_eq!(state(&tel(0.0, MIB)).state, "throttled");
    assert_eq!(state(&tel(0.0, MIB)).time_to_exhaustion_seconds, Some(0));
    assert_eq!(state(&tel(0.0, 0.1 * MIB)).state, "out-of-credits");
    let nan = VolumeTelemetry {
        credits: Some(f64::NAN),
        ..tel(0.0, 0.0)
    };
    let v = state(&nan);
    assert_eq!(v.state, "no-telemetry");
    assert!(v.problem.as_deref().unwrap_or("").contains("credits = NaN"));
    assert!(v.credits_bytes.is_none());
    let none = VolumeView::new(&w, None);
    assert_eq!(none.state, "no-telemetry");
    assert!(none.problem.is_some());
}

#[test]
fn the_html_report_is_one_page_with_every_section() {
    let html = sample(false).render(Format::Html);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    for needle in [
        "<h2>Quorum</h2>",
        "<h2>Managers</h2>",
        "<h2>Workers</h2>",
        "<h2>Findings</h2>",
        "<h2>Actions</h2>",
        "<h2>Services</h2>",
        "<h2>Volumes (EFS burst credits)</h2>",
        "<h2>Runbooks</h2>",
        "remove-dead-manager",
        "dead-manager",
        "no fault tolerance",
        "violating",
        "fs-1",
        "draining",
        "1h 42m 24s",
        "efs-padding",
        "job swarm-warden-pad-fs-1 writing 80 GiB",
        "2 of 4 steps done",
        "dry run",
    ] {
        assert!(html.contains(needle), "the page lacks {needle}:\n{html}");
    }
    // Self-contained: nothing to fetch, nothing to run. The SVG namespace is a name, not
    // a fetch.
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for banned in [
        "<script", "<link", "<img", "src=", "url(", "@import", "http://", "https://",
    ] {
        assert!(!without_ns.contains(banned), "the page has {banned}");
    }
}

#[test]
fn the_html_report_without_a_leader_says_so() {
    let html = sample(true).render(Format::Html);
    assert!(html.contains("no raft leader answered"), "{html}");
    assert!(html.contains("quorum-lost"), "{html}");
}

#[test]
fn the_html_report_escapes_what_comes_from_the_swarm() {
    let mut r = sample(false);
    r.services[0].name = "<script>alert(1)</script>".into();
    r.services[0].status = "violating";
    r.nodes[0].hostname = "m1\" onmouseover=\"x".into();
    r.findings[0].message = "a & b <b>bold</b>".into();
    let html = r.render(Format::Html);
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("m1&quot; onmouseover=&quot;x"), "{html}");
    assert!(html.contains("a &amp; b &lt;b&gt;bold&lt;/b&gt;"), "{html}");
}

/// A migration at its copy step, with the progress the warden last read from the job's
/// log: every format says how far it is; the JSON validates against the schema.
#[test]
fn a_running_copy_step_shows_its_progress_in_every_format() {
    use crate::model::journal::{JobPhase, JobProgress, ProgressLine};
    let mut r = sample(false);
    let mut run = Journal::new(
        RunbookKind::EbsMigration,
        "fs-2",
        "tsdb",
        "tsdb",
        "tsdbdata",
        crate::runbook::steps(RunbookKind::EbsMigration),
        t(900),
    );
    let copy = run.steps.iter().position(|s| s.name == "copy").unwrap();
    for i in 0..copy {
        run.begin(i, t(900));
        run.complete(i, t(900), "ok");
    }
    run.begin(copy, t(950));
    run.progress = Some(JobProgress {
        step: "copy".into(),
        attempt: 1,
        line: ProgressLine {
            phase: JobPhase::Copying,
            bytes_done: 1_288_490_188,
            bytes_total: 3 << 30,
            files_done: 812,
            files_total: 2000,
            bytes_per_second: 48 << 20,
            elapsed_seconds: 25,
        },
        at: 1000,
    });
    r.runbooks.push(run.clone());
    let said = "copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s";
    for format in [Format::Text, Format::Markdown, Format::Html] {
        let out = r.render(format);
        assert!(out.contains(said), "{format:?}:\n{out}");
    }
    let text = r.render(Format::Text);
    assert!(
        text.contains(&format!("progress {said}, as of 1970-01-01T00:16:40Z")),
        "{text}"
    );
    let md = r.render(Format::Markdown);
    assert!(md.contains("### Runbooks"), "{md}");
    assert!(
        md.contains("running, 4 of 8 steps done; `copy` running (attempt 1); `copy`: copying"),
        "{md}"
    );
    let html = r.render(Format::Html);
    assert!(
        html.contains(r#"<progress max="1000" value="400">40%</progress>"#),
        "{html}"
    );
    let json: serde_json::Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
    let progress = &json["runbooks"][1]["progress"];
    assert_eq!(progress["files_done"], 812, "{json:#}");
    assert_eq!(progress["phase"], "copying");
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    // An earlier attempt's progress is not shown as this one's.
    r.runbooks[1].steps[copy].attempts = 2;
    for format in [Format::Text, Format::Markdown, Format::Html] {
        assert!(!r.render(format).contains(said), "{format:?}");
    }
}
