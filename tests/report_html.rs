//! `report --format html` in a real headless Chromium (Debian's `chromium-headless-shell`):
//! the page of a realistic swarm loads with no console error, fetches nothing and gives a
//! screenshot. No lab: the report is planned in-process from a hand-built snapshot — the
//! talk's incident mid-way: a dead manager being removed, Prometheus on a manager with its
//! EFS volume running low on burst credits, and the padding runbook at its pad step.
//!
//! `UPDATE_DOCS=1 cargo nextest run --test report_html` refreshes `docs/report-html.png`,
//! the README's picture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use swarm_warden::config::Policy;
use swarm_warden::model::journal::{Journal, RunbookKind, StepState};
use swarm_warden::model::{
    Availability, Control, LocalNode, ManagerStatus, Mount, Node, NodeState, Reachability, Role,
    Service, ServiceMode, Snapshot, Task, VolumeTelemetry,
};
use swarm_warden::plan::volumes::{EFS_ID_LABEL, REMEDIATION_LABEL};
use swarm_warden::plan::{plan, ActionStatus, Memory};
use swarm_warden::report::{Format, Report};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// Where the README's screenshot lives.
const DOCS_PNG: &str = "docs/report-html.png";

/// Viewport of the screenshot (the screenshot is as tall as the page).
const SIZE: (u32, u32) = (1280, 900);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000 + secs)
}

fn node(id: &str, hostname: &str, ip: &str, manager: Option<bool>) -> Node {
    Node {
        id: id.into(),
        version: 10,
        hostname: hostname.into(),
        role: if manager.is_some() {
            Role::Manager
        } else {
            Role::Worker
        },
        availability: Availability::Active,
        state: NodeState::Ready,
        addr: ip.into(),
        manager: manager.map(|leader| ManagerStatus {
            leader,
            reachability: Reachability::Reachable,
            addr: format!("{ip}:2377"),
        }),
        updated_at: Some(at(0)),
        ..Default::default()
    }
}

fn efs_mount(source: &str, target: &str, efs_id: &str, remediation: &str) -> Mount {
    Mount {
        kind: "volume".into(),
        source: source.into(),
        target: target.into(),
        driver: "local".into(),
        driver_options: BTreeMap::from([("type".into(), "nfs4".into())]),
        labels: BTreeMap::from([
            (EFS_ID_LABEL.into(), efs_id.into()),
            (REMEDIATION_LABEL.into(), remediation.into()),
        ]),
        read_only: false,
    }
}

fn service(id: &str, name: &str, image: &str, mounts: Vec<Mount>) -> Service {
    Service {
        id: id.into(),
        version: 7,
        name: name.into(),
        labels: BTreeMap::from([(
            "com.docker.stack.namespace".into(),
            name.split('_').next().unwrap_or_default().into(),
        )]),
        mode: ServiceMode::Replicated { replicas: 1 },
        image: image.into(),
        mounts,
        ..Default::default()
    }
}

fn task(id: &str, service: &str, node: &str) -> Task {
    Task {
        id: id.into(),
        service_id: service.into(),
        node_id: Some(node.into()),
        state: "running".into(),
    }
}

/// The talk's swarm, an hour after manager-3 died.
fn report() -> Report {
    let now = at(3600);
    let mut dead = node(
        "x3n8q2w6e4r1t7y5u9i0o3p2a",
        "manager-3",
        "10.0.1.13",
        Some(false),
    );
    dead.state = NodeState::Down;
    dead.message = "heartbeat failure".into();
    if let Some(m) = dead.manager.as_mut() {
        m.reachability = Reachability::Unreachable;
    }
    let nodes = vec![
        node(
            "k2v7c9d1f3g5h8j0l4z6x1b3n",
            "manager-1",
            "10.0.1.11",
            Some(true),
        ),
        node(
            "p4m6q8s0u2w4y6a8c0e2g4i6k",
            "manager-2",
            "10.0.1.12",
            Some(false),
        ),
        dead,
        node("r1t3v5x7z9b1d3f5h7j9l1n3p", "worker-1", "10.0.2.21", None),
        node("s2u4w6y8a0c2e4g6i8k0m2o4q", "worker-2", "10.0.2.22", None),
    ];
    let prometheus = service(
        "pr0m3th3u5s3rv1c3xxxxxxxx",
        "monitoring_prometheus",
        "prom/prometheus:v2.42.0",
        vec![efs_mount(
            "monitoring_prometheus_data",
            "/prometheus",
            "fs-0a1b2c3d4e5f60718",
            "efs-padding",
        )],
    );
    let mut grafana = service(
        "gr4f4n4s3rv1c3xxxxxxxxxxx",
        "monitoring_grafana",
        "grafana/grafana:9.4.3",
        vec![efs_mount(
            "monitoring_grafana_data",
            "/var/lib/grafana",
            "fs-09f8e7d6c5b4a3921",
            "report",
        )],
    );
    let mut web = service(
        "w3bs3rv1c3xxxxxxxxxxxxxxx",
        "shop_web",
        "nginx:1.25",
        vec![],
    );
    // Grafana and the shop are kept off managers by their stacks; Prometheus is not.
    grafana.constraints = vec!["node.role == worker".into()];
    web.constraints = vec!["node.role == worker".into()];
    let tasks = vec![
        task(
            "t1prometheusonmanager2xxx",
            &prometheus.id,
            "p4m6q8s0u2w4y6a8c0e2g4i6k",
        ),
        task(
            "t2grafanaonworker1xxxxxxx",
            &grafana.id,
            "r1t3v5x7z9b1d3f5h7j9l1n3p",
        ),
        task(
            "t3webonworker2xxxxxxxxxxx",
            &web.id,
            "s2u4w6y8a0c2e4g6i8k0m2o4q",
        ),
    ];
    // Prometheus's file system: 80 GiB of credits left, metering 12 MiB/s against the
    // 1 MiB/s its 15 GiB earn. Grafana's: quiet, below its baseline.
    let telemetry = vec![
        VolumeTelemetry {
            efs_id: "fs-0a1b2c3d4e5f60718".into(),
            credits: Some(80.0 * GIB),
            permitted: Some(105.0 * MIB),
            metered_rate: Some(12.0 * MIB),
            storage: Some(15.0 * GIB),
            iowait: BTreeMap::from([("manager-2".into(), 0.41)]),
            ..Default::default()
        },
        VolumeTelemetry {
            efs_id: "fs-09f8e7d6c5b4a3921".into(),
            credits: Some(2.1 * 1024.0 * GIB),
            permitted: Some(105.0 * MIB),
            metered_rate: Some(0.2 * MIB),
            storage: Some(2.0 * GIB),
            ..Default::default()
        },
    ];
    let mut run = Journal::new(
        RunbookKind::EfsPadding,
        "fs-0a1b2c3d4e5f60718",
        &prometheus.id,
        &prometheus.name,
        "monitoring_prometheus_data",
        swarm_warden::runbook::steps(RunbookKind::EfsPadding),
        at(1800),
    );
    for (i, detail) in [
        (
            0,
            "metered size 15.0 GiB, baseline 1.00 MiB/s; 85.0 GiB of padding planned",
        ),
        (1, "approved by label swarm-warden.approve on the service"),
    ] {
        run.steps[i].state = StepState::Done;
        run.steps[i].attempts = 1;
        run.steps[i].detail = detail.into();
    }
    run.steps[2].state = StepState::Running;
    run.steps[2].attempts = 1;
    run.steps[2].detail =
        "job swarm-warden-pad-fs-0a1b2c3d4e5f60718 on worker-2: writing 85.0 GiB".into();
    run.facts
        .insert("padding_bytes".into(), "91268055040".into());
    run.facts.insert("monthly_cost_usd".into(), "27.38".into());
    let snapshot = Snapshot {
        observed_at: now,
        local: LocalNode {
            node_id: "k2v7c9d1f3g5h8j0l4z6x1b3n".into(),
            addr: "10.0.1.11".into(),
        },
        control: Control::Leader,
        nodes,
        services: vec![prometheus, grafana, web],
        tasks,
        telemetry,
        runbooks: vec![run],
        runbook_problems: Default::default(),
        placement_records: Default::default(),
    };
    let mut memory = Memory::default();
    memory.observe(&snapshot);
    let mut plan = plan(&snapshot, &Policy::default(), &memory, now);
    // As `run` reports it mid-way: the removal started (demoted, waiting for the raft).
    if let Some(a) = plan
        .actions
        .iter_mut()
        .find(|a| a.action.kind() == "remove-dead-manager")
    {
        a.status = ActionStatus::InProgress;
        a.detail = Some("Demoted; waiting for it to leave the raft before node rm.".into());
    }
    Report::new(&snapshot, &plan, false)
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("swarm-warden-report-html-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn the_html_report_loads_in_chromium_without_errors() {
    let r = report();
    // The scenario is the one the picture promises.
    assert!(
        r.actions.iter().any(|a| a.kind == "remove-dead-manager"),
        "{:#?}",
        r.actions
    );
    assert!(
        r.services
            .iter()
            .any(|s| s.status != "compliant" && !s.tasks_on_managers.is_empty()),
        "{:#?}",
        r.services
    );
    assert!(
        r.volumes.iter().any(|v| v.state == "draining"),
        "{:#?}",
        r.volumes
    );
    assert!(!r.runbooks.is_empty());

    let dir = tempdir();
    let html = dir.join("report.html");
    std::fs::write(&html, r.render(Format::Html)).expect("write the page");
    let png = dir.join("report.png");
    let check = swarm_chaos::browser::check_page(&html, &png, SIZE)
        .unwrap_or_else(|e| panic!("the browser check could not run: {e}"));
    assert!(
        check.console_errors.is_empty(),
        "{:#?}",
        check.console_errors
    );
    assert!(
        check.requests.is_empty(),
        "the page fetched {:#?}",
        check.requests
    );
    assert_eq!(check.png_size.0, SIZE.0);
    assert!(check.png_size.1 >= SIZE.1, "{:?}", check.png_size);
    assert!(
        check.png_bytes > 10_000,
        "a near-empty screenshot: {} bytes",
        check.png_bytes
    );
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCS_PNG);
        std::fs::copy(&png, &docs).expect("update docs/report-html.png");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
