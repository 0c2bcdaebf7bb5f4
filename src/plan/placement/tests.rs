//! Placement planner tests: verdicts, capacity, data safety, and properties.
use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::model::{
    Availability, HostPort, Mount, NodeState, Platform, Resources, ServiceMode, Task, UpdateStatus,
};
use crate::plan::quorum_test_support::{cluster, manager, t, worker};
use crate::plan::{plan, ActionStatus};

fn service(name: &str, mode: ServiceMode, constraints: &[&str]) -> Service {
    Service {
        id: format!("id-{name}"),
        version: 7,
        name: name.into(),
        labels: BTreeMap::new(),
        mode,
        constraints: constraints.iter().map(|c| c.to_string()).collect(),
        image: "busybox:latest".into(),
        reservations: Resources::default(),
        max_replicas_per_node: 0,
        platforms: Vec::new(),
        update: None,
        mounts: Vec::new(),
        ..Default::default()
    }
}

fn replicated(name: &str, replicas: u64) -> Service {
    service(name, ServiceMode::Replicated { replicas }, &[])
}

fn task(service: &Service, node: &str, n: usize) -> Task {
    Task {
        id: format!("task-{}-{node}-{n}", service.name),
        service_id: service.id.clone(),
        node_id: Some(node.into()),
        state: "running".into(),
    }
}

fn swarm(services: Vec<Service>, tasks: Vec<Task>) -> Snapshot {
    let mut snap = cluster(
        vec![
            manager("m1", true),
            manager("m2", false),
            manager("m3", false),
            worker("w1"),
            worker("w2"),
        ],
        t(100),
    );
    snap.services = services;
    snap.tasks = tasks;
    snap
}

/// One plan of `snap` by a process that has seen it once.
pub(super) fn plan_of(snap: &Snapshot, policy: &Policy) -> Plan {
    let mut memory = Memory::default();
    memory.observe(snap);
    plan(snap, policy, &memory, snap.observed_at)
}

fn status_of<'a>(plan: &'a Plan, name: &str) -> &'a PlacementStatus {
    &plan
        .services
        .iter()
        .find(|s| s.service.name == name)
        .unwrap()
        .status
}

#[test]
fn the_issue_scenario_fixes_only_the_workload_and_the_stack_service() {
    let web = replicated("web", 5);
    let mut stacked = replicated("app_api", 2);
    stacked
        .labels
        .insert("com.docker.stack.namespace".into(), "app".into());
    let agent = service("node-exporter", ServiceMode::Global, &[]);
    let pinned = service(
        "portainer",
        ServiceMode::Replicated { replicas: 1 },
        &["node.role==manager"],
    );
    let mut opted = replicated("registry", 1);
    opted
        .labels
        .insert(ALLOW_MANAGERS_LABEL.into(), "true".into());
    let tasks = vec![
        task(&web, "m1", 0),
        task(&web, "w1", 1),
        task(&stacked, "m2", 0),
    ];
    let snap = swarm(vec![web, stacked, agent, pinned, opted], tasks);
    let mut policy = Policy::default();
    policy.placement.max_updates_per_cycle = 2;
    let plan = plan_of(&snap, &policy);

    let targets: Vec<&str> = plan.runnable().map(|a| a.action.target()).collect();
    assert_eq!(targets, ["app_api", "web"]);
    assert_eq!(*status_of(&plan, "web"), PlacementStatus::Violating);
    assert!(matches!(
        status_of(&plan, "node-exporter"),
        PlacementStatus::Exempt(Exemption::Global)
    ));
    assert!(matches!(
        status_of(&plan, "portainer"),
        PlacementStatus::Exempt(Exemption::PinnedByRole)
    ));
    assert!(matches!(
        status_of(&plan, "registry"),
        PlacementStatus::Exempt(Exemption::AllowManagersLabel { .. })
    ));
    let web_verdict = plan
        .services
        .iter()
        .find(|s| s.service.name == "web")
        .unwrap();
    assert_eq!(web_verdict.tasks_on_managers.len(), 1);
    let api = plan
        .actions
        .iter()
        .find(|a| a.action.target() == "app_api")
        .unwrap();
    assert!(api.reason.contains("compose file"), "{}", api.reason);
}

#[test]
fn a_compliant_service_is_left_alone() {
    let snap = swarm(
        vec![service(
            "db",
            ServiceMode::Replicated { replicas: 1 },
            &["node.role != manager"],
        )],
        vec![],
    );
    let plan = plan_of(&snap, &Policy::default());
    assert_eq!(*status_of(&plan, "db"), PlacementStatus::Compliant);
    assert!(plan.actions.is_empty());
}

#[test]
fn a_service_whose_constraints_no_manager_meets_is_compliant() {
    let snap = swarm(
        vec![service(
            "db",
            ServiceMode::Replicated { replicas: 1 },
            &["node.hostname==w1"],
        )],
        vec![],
    );
    assert_eq!(
        *status_of(&plan_of(&snap, &Policy::default()), "db"),
        PlacementStatus::Compliant
    );
}

#[test]
fn without_workers_the_fix_is_blocked_with_the_reason() {
    let mut snap = swarm(vec![replicated("web", 2)], vec![]);
    snap.nodes.retain(|n| n.is_manager());
    let plan = plan_of(&snap, &Policy::default());
    let a = &plan.actions[0];
    assert_eq!(a.status, ActionStatus::Blocked);
    assert!(
        a.blocked_message()
            .unwrap()
            .contains("No Ready, Active worker"),
        "{:?}",
        a.blocked_by
    );
    assert!(matches!(
        status_of(&plan, "web"),
        PlacementStatus::Blocked(_)
    ));
}

#[test]
fn reservations_that_do_not_fit_the_workers_block_with_numbers() {
    let mut big = replicated("big", 3);
    big.reservations = Resources {
        nano_cpus: 1_500_000_000,
        memory_bytes: 1 << 30,
    };
    // Each worker offers 2 CPUs: one task each, two in all, three needed.
    let plan = plan_of(&swarm(vec![big], vec![]), &Policy::default());
    let why = plan.actions[0].blocked_message().unwrap();
    assert!(
        why.contains("3 task(s) reserving 1.50 CPU") && why.contains("room for 2"),
        "{why}"
    );
}

#[test]
fn max_replicas_per_node_times_workers_must_cover_the_replicas() {
    let mut spread = replicated("spread", 3);
    spread.max_replicas_per_node = 1;
    let plan = plan_of(&swarm(vec![spread.clone()], vec![]), &Policy::default());
    assert!(plan.actions[0]
        .blocked_message()
        .unwrap()
        .contains("at most 1 per node"));
    spread.mode = ServiceMode::Replicated { replicas: 2 };
    let plan = plan_of(&swarm(vec![spread], vec![]), &Policy::default());
    assert_eq!(plan.actions[0].status, ActionStatus::Planned);
}

#[test]
fn other_services_reservations_count_but_the_services_own_do_not() {
    let mut hog = service(
        "hog",
        ServiceMode::Replicated { replicas: 2 },
        &["node.role != manager"],
    );
    hog.reservations = Resources {
        nano_cpus: 1_000_000_000,
        memory_bytes: 0,
    };
    let mut web = replicated("web", 3);
    web.reservations = Resources {
        nano_cpus: 1_000_000_000,
        memory_bytes: 0,
    };
    let tasks = vec![
        task(&hog, "w1", 0),
        task(&hog, "w2", 1),
        task(&web, "w1", 0),
    ];
    let plan = plan_of(&swarm(vec![hog, web], tasks), &Policy::default());
    // 2 CPUs per worker. w1: 2 - 1 (hog) - 1 (web) + 1 (web's own task is replaced) = 1
    // slot; w2: 2 - 1 (hog) = 1 slot. 2 slots for 3 tasks.
    let why = plan.actions[0].blocked_message().unwrap();
    assert!(why.contains("room for 2"), "{why}");
}

#[test]
fn platforms_limit_the_eligible_workers() {
    let mut arm = replicated("arm-only", 1);
    arm.platforms = vec![Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
    }];
    let plan = plan_of(&swarm(vec![arm], vec![]), &Policy::default());
    assert!(
        plan.actions.is_empty(),
        "no manager is arm64 either: compliant"
    );
}

#[test]
fn the_budget_limits_updates_per_cycle() {
    let snap = swarm(
        vec![replicated("a", 1), replicated("b", 1), replicated("c", 1)],
        vec![],
    );
    let plan = plan_of(&snap, &Policy::default());
    assert_eq!(plan.runnable().count(), 1);
    let blocked: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.status == ActionStatus::Blocked)
        .collect();
    assert_eq!(blocked.len(), 2);
    assert!(blocked[0]
        .blocked_message()
        .unwrap()
        .contains("max_updates_per_cycle"));
}

#[test]
fn include_and_exclude_selectors_and_self_are_exempt() {
    let mut me = replicated("ops_swarm-warden", 1);
    me.image = "swarm-warden:0.1".into();
    let snap = swarm(
        vec![replicated("prod_web", 1), replicated("dev_web", 1), me],
        vec![],
    );
    let mut policy = Policy::default();
    policy.placement.include.names = vec!["prod_*".into(), "ops_*".into()];
    policy.placement.max_updates_per_cycle = 5;
    let plan = plan_of(&snap, &policy);
    assert!(matches!(
        status_of(&plan, "dev_web"),
        PlacementStatus::Exempt(Exemption::NotIncluded)
    ));
    assert!(matches!(
        status_of(&plan, "ops_swarm-warden"),
        PlacementStatus::Exempt(Exemption::SwarmWarden)
    ));
    assert_eq!(*status_of(&plan, "prod_web"), PlacementStatus::Violating);
    policy.placement.exclude.names = vec!["prod_web".into()];
    let plan = plan_of(&snap, &policy);
    assert!(matches!(
        status_of(&plan, "prod_web"),
        PlacementStatus::Exempt(Exemption::Excluded)
    ));
}

#[test]
fn an_update_in_progress_or_paused_blocks_the_fix() {
    let mut web = replicated("web", 1);
    web.update = Some(crate::model::UpdateStatus {
        state: UpdateState::Paused,
        message: "update paused due to failure".into(),
        started_at: None,
    });
    let plan = plan_of(&swarm(vec![web], vec![]), &Policy::default());
    assert!(plan.actions[0]
        .blocked_message()
        .unwrap()
        .contains("Paused"));
}

#[test]
fn a_stack_service_that_lost_the_constraint_again_is_drift_fixed_with_backoff() {
    let mut api = replicated("app_api", 1);
    api.labels
        .insert("com.docker.stack.namespace".into(), "app".into());
    let snap = swarm(vec![api], vec![]);
    let policy = Policy::default(); // backoff_min 5s
    let mut memory = Memory::default();
    memory.observe(&snap);
    memory.record_placement_fix("id-app_api", t(99));
    let plan1 = plan(&snap, &policy, &memory, t(100));
    assert!(plan1
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::StackDrift && f.message.contains("node.role != manager")));
    assert!(
        plan1.actions[0]
            .blocked_message()
            .unwrap()
            .contains("fix #1"),
        "{:?}",
        plan1.actions[0].blocked_by
    );
    assert_eq!(plan1.requeue_after, Some(Duration::from_secs(4)));
    let plan2 = plan(&snap, &policy, &memory, t(105));
    assert_eq!(plan2.actions[0].status, ActionStatus::Planned);
    // Fixed again: the next drift waits twice as long.
    memory.record_placement_fix("id-app_api", t(105));
    let plan3 = plan(&snap, &policy, &memory, t(112));
    assert!(plan3.actions[0]
        .blocked_message()
        .unwrap()
        .contains("fix #2"));
    assert_eq!(
        plan(&snap, &policy, &memory, t(115)).actions[0].status,
        ActionStatus::Planned
    );
}

#[test]
fn audit_mode_blocks_and_off_mode_skips_placement() {
    let snap = swarm(vec![replicated("web", 1)], vec![]);
    let mut policy = Policy::default();
    policy.placement.mode = Mode::Audit;
    assert!(plan_of(&snap, &policy).actions[0]
        .blocked_message()
        .unwrap()
        .contains("audit"));
    policy.placement.mode = Mode::Off;
    let plan = plan_of(&snap, &policy);
    assert!(plan.actions.is_empty() && plan.services.is_empty());
}

#[test]
fn promoting_the_only_worker_a_service_can_use_would_strand_it() {
    let pinned = service(
        "db",
        ServiceMode::Replicated { replicas: 1 },
        &["node.role != manager", "node.hostname == w1"],
    );
    let snap = swarm(vec![pinned], vec![]);
    let w1 = snap.nodes.iter().find(|n| n.id == "w1").unwrap();
    let w2 = snap.nodes.iter().find(|n| n.id == "w2").unwrap();
    assert!(strands(&snap, &Policy::default().placement, w1)
        .unwrap()
        .contains("db"));
    assert_eq!(strands(&snap, &Policy::default().placement, w2), None);
}

// ---- issue 10: data safety, jobs, capacity filters, users' intent ------------------

fn volume(source: &str) -> Mount {
    Mount {
        kind: "volume".into(),
        source: source.into(),
        target: "/data".into(),
        ..Default::default()
    }
}

fn actions_for<'a>(plan: &'a Plan, name: &str) -> Vec<&'a PlannedAction> {
    plan.actions
        .iter()
        .filter(|a| a.action.target() == name)
        .collect()
}

fn finding_of<'a>(plan: &'a Plan, kind: FindingKind, subject: &str) -> Option<&'a Finding> {
    plan.findings
        .iter()
        .find(|f| f.kind == kind && f.subject == subject)
}

fn hold_of<'a>(plan: &'a Plan, name: &str) -> &'a Hold {
    match status_of(plan, name) {
        PlacementStatus::Blocked(hold) => hold,
        other => panic!("{name}: expected blocked, got {other:?}"),
    }
}

fn roomy_policy() -> Policy {
    let mut policy = Policy::default();
    policy.placement.max_updates_per_cycle = 10;
    policy
}

#[test]
fn jobs_are_never_updated_only_reported_with_the_snippet() {
    let done = service(
        "migrate",
        ServiceMode::ReplicatedJob { max_concurrent: 1 },
        &[],
    );
    let running = service(
        "backfill",
        ServiceMode::ReplicatedJob { max_concurrent: 2 },
        &[],
    );
    let global = service("inventory", ServiceMode::GlobalJob, &[]);
    let tasks = vec![task(&running, "m1", 0)];
    let mut policy = roomy_policy();
    policy.placement.exempt_global = false;
    let plan = plan_of(&swarm(vec![done, running, global], tasks), &policy);
    for job in ["migrate", "backfill", "inventory"] {
        assert!(
            actions_for(&plan, job).is_empty(),
            "{job}: {:?}",
            plan.actions
        );
        assert_eq!(*hold_of(&plan, job), Hold::Job);
        let f = finding_of(&plan, FindingKind::JobOnManager, job).expect("finding");
        assert!(
            f.message.contains("deploy:") && f.message.contains("--constraint"),
            "{}",
            f.message
        );
    }
    assert_eq!(
        finding_of(&plan, FindingKind::JobOnManager, "backfill")
            .unwrap()
            .severity,
        Severity::Warning,
        "a job running on a manager now"
    );
}

#[test]
fn a_service_with_a_local_volume_on_a_manager_is_reported_never_moved() {
    let mut prom = replicated("prometheus", 1);
    prom.mounts = vec![volume("promdata")];
    let tasks = vec![task(&prom, "m2", 0)];
    let plan = plan_of(&swarm(vec![prom], tasks), &roomy_policy());
    assert!(
        actions_for(&plan, "prometheus").is_empty(),
        "{:?}",
        plan.actions
    );
    assert!(
        matches!(hold_of(&plan, "prometheus"), Hold::NodeLocalData(m) if m[0].contains("promdata"))
    );
    let f = finding_of(&plan, FindingKind::StatefulOnManager, "prometheus").expect("finding");
    assert!(
        f.message.contains("promdata") && f.message.contains("m2"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("swarm-warden.data=disposable"),
        "{}",
        f.message
    );
}

#[test]
fn bind_mounts_and_undeclared_drivers_hold_a_service_back_too() {
    let mut logs = replicated("shipper", 1);
    logs.mounts = vec![Mount {
        kind: "bind".into(),
        source: "/var/log".into(),
        target: "/logs".into(),
        ..Default::default()
    }];
    let mut ebs = replicated("db", 1);
    ebs.mounts = vec![Mount {
        driver: "rexray/ebs".into(),
        ..volume("dbdata")
    }];
    let plan = plan_of(&swarm(vec![logs, ebs], vec![]), &roomy_policy());
    for name in ["shipper", "db"] {
        assert!(actions_for(&plan, name).is_empty());
        assert!(matches!(hold_of(&plan, name), Hold::NodeLocalData(_)));
    }
}

#[test]
fn disposable_data_shared_volumes_and_tmpfs_do_not_hold_a_service_back() {
    let mut cache = replicated("cache", 1);
    cache.mounts = vec![volume("cachedata")];
    cache.labels.insert(DATA_LABEL.into(), "disposable".into());
    let mut nfs = replicated("uploads", 1);
    nfs.mounts = vec![Mount {
        driver: "local".into(),
        driver_options: BTreeMap::from([("type".into(), "nfs".into())]),
        ..volume("uploads")
    }];
    let mut scratch = replicated("scratch", 1);
    scratch.mounts = vec![Mount {
        kind: "tmpfs".into(),
        target: "/tmp".into(),
        ..Default::default()
    }];
    let plan = plan_of(&swarm(vec![cache, nfs, scratch], vec![]), &roomy_policy());
    for name in ["cache", "uploads", "scratch"] {
        assert_eq!(
            *status_of(&plan, name),
            PlacementStatus::Violating,
            "{name}"
        );
    }
}

#[test]
fn host_mode_ports_allow_one_task_per_worker() {
    let mut edge = replicated("edge", 3);
    edge.host_ports = vec![HostPort {
        port: 18080,
        protocol: "tcp".into(),
    }];
    let plan = plan_of(&swarm(vec![edge.clone()], vec![]), &roomy_policy());
    let Hold::Capacity(why) = hold_of(&plan, "edge") else {
        panic!("{:?}", status_of(&plan, "edge"));
    };
    assert!(
        why.contains("host-mode port") && why.contains("room for 2"),
        "{why}"
    );
    edge.mode = ServiceMode::Replicated { replicas: 2 };
    let plan = plan_of(&swarm(vec![edge], vec![]), &roomy_policy());
    assert_eq!(*status_of(&plan, "edge"), PlacementStatus::Violating);
}

#[test]
fn a_worker_where_another_service_holds_the_port_cannot_take_the_task() {
    let port = HostPort {
        port: 443,
        protocol: "tcp".into(),
    };
    let mut proxy = service(
        "proxy",
        ServiceMode::Replicated { replicas: 1 },
        &["node.role != manager"],
    );
    proxy.host_ports = vec![port.clone()];
    let mut edge = replicated("edge", 2);
    edge.host_ports = vec![port];
    let tasks = vec![task(&proxy, "w1", 0)];
    let plan = plan_of(&swarm(vec![proxy, edge], tasks), &roomy_policy());
    let Hold::Capacity(why) = hold_of(&plan, "edge") else {
        panic!("{:?}", status_of(&plan, "edge"));
    };
    assert!(why.contains("held by another service"), "{why}");
}

#[test]
fn the_services_own_tasks_on_workers_stay_and_count_once() {
    // SwarmKit replaces only the task on m1; the one on w1 keeps its port.
    let mut edge = replicated("edge", 2);
    edge.host_ports = vec![HostPort {
        port: 8443,
        protocol: "tcp".into(),
    }];
    let tasks = vec![task(&edge, "m1", 0), task(&edge, "w1", 1)];
    let plan = plan_of(&swarm(vec![edge], tasks), &roomy_policy());
    assert_eq!(*status_of(&plan, "edge"), PlacementStatus::Violating);
}

#[test]
fn generic_resources_and_missing_volume_plugins_limit_the_workers() {
    let mut gpu = replicated("trainer", 2);
    gpu.generic_reservations = BTreeMap::from([("gpu".into(), 1)]);
    let mut snap = swarm(vec![gpu], vec![]);
    for node in snap.nodes.iter_mut().filter(|n| n.id == "w1") {
        node.generic_resources.insert("gpu".into(), 1);
    }
    let plan = plan_of(&snap, &roomy_policy());
    assert!(matches!(hold_of(&plan, "trainer"), Hold::Capacity(why) if why.contains("1 gpu each")));

    let mut shared = replicated("files", 1);
    shared.mounts = vec![Mount {
        driver: "vieux/sshfs".into(),
        ..volume("files")
    }];
    let mut policy = roomy_policy();
    policy.placement.shared_volume_drivers = vec!["vieux/sshfs".into()];
    let mut snap = swarm(vec![shared], vec![]);
    for node in &mut snap.nodes {
        node.plugins = vec![crate::model::EnginePlugin {
            kind: "Volume".into(),
            name: "local".into(),
        }];
        if node.is_manager() {
            node.plugins.push(crate::model::EnginePlugin {
                kind: "Volume".into(),
                name: "vieux/sshfs:latest".into(),
            });
        }
    }
    let plan = plan_of(&snap, &policy);
    assert!(
        matches!(hold_of(&plan, "files"), Hold::Capacity(why) if why.contains("plugins")),
        "{:?}",
        status_of(&plan, "files")
    );
}

#[test]
fn a_service_mounting_the_docker_socket_is_exempt_and_read_only_binds_do_not_hold() {
    let mut ui = replicated("portainer", 1);
    ui.mounts = vec![Mount {
        kind: "bind".into(),
        source: "/var/run/docker.sock".into(),
        target: "/var/run/docker.sock".into(),
        ..Default::default()
    }];
    let mut app = replicated("app", 1);
    app.mounts = vec![Mount {
        kind: "bind".into(),
        source: "/etc/localtime".into(),
        target: "/etc/localtime".into(),
        read_only: true,
        ..Default::default()
    }];
    let plan = plan_of(&swarm(vec![ui, app], vec![]), &roomy_policy());
    assert!(matches!(
        status_of(&plan, "portainer"),
        PlacementStatus::Exempt(Exemption::DockerSocket)
    ));
    assert_eq!(*status_of(&plan, "app"), PlacementStatus::Violating);
}

#[test]
fn log_driver_none_and_nodes_without_log_plugins_pass_the_plugin_filter() {
    let mut quiet = replicated("quiet", 1);
    quiet.log_driver = Some("none".into());
    let mut gelf = replicated("gelf", 1);
    gelf.log_driver = Some("gelf".into());
    let mut snap = swarm(vec![quiet, gelf], vec![]);
    for node in &mut snap.nodes {
        // Volume plugins reported, log plugins not: the log kind is not filtered.
        node.plugins = vec![crate::model::EnginePlugin {
            kind: "Volume".into(),
            name: "local".into(),
        }];
    }
    let plan = plan_of(&snap, &roomy_policy());
    assert_eq!(*status_of(&plan, "quiet"), PlacementStatus::Violating);
    assert_eq!(*status_of(&plan, "gelf"), PlacementStatus::Violating);
}

#[test]
fn services_pinned_by_hostname_id_or_a_manager_only_label_are_exempt() {
    let by_host = service(
        "by-host",
        ServiceMode::Replicated { replicas: 1 },
        &["node.hostname==m1"],
    );
    let by_id = service(
        "by-id",
        ServiceMode::Replicated { replicas: 1 },
        &["node.id==m2"],
    );
    let by_label = service(
        "by-label",
        ServiceMode::Replicated { replicas: 1 },
        &["node.labels.tier==control"],
    );
    let mut snap = swarm(vec![by_host, by_id, by_label], vec![]);
    for node in snap.nodes.iter_mut().filter(|n| n.is_manager()) {
        node.labels.insert("tier".into(), "control".into());
    }
    let plan = plan_of(&snap, &roomy_policy());
    for name in ["by-host", "by-id", "by-label"] {
        assert!(
            matches!(
                status_of(&plan, name),
                PlacementStatus::Exempt(Exemption::PinnedToManagers { .. })
            ),
            "{name}: {:?}",
            status_of(&plan, name)
        );
        assert!(finding_of(&plan, FindingKind::WorkloadOnManager, name).is_none());
    }
}

#[test]
fn without_workers_an_unconstrained_service_is_not_mistaken_for_a_pinned_one() {
    let mut snap = swarm(vec![replicated("web", 1)], vec![]);
    snap.nodes.retain(|n| n.is_manager());
    let plan = plan_of(&snap, &roomy_policy());
    assert!(matches!(hold_of(&plan, "web"), Hold::Capacity(_)));
}

#[test]
fn a_constraint_no_node_matches_is_reported_with_the_case_hint_and_left_alone() {
    let typo = service(
        "typo",
        ServiceMode::Replicated { replicas: 1 },
        &["node.labels.Tier==control"],
    );
    let mut snap = swarm(vec![typo], vec![]);
    for node in snap.nodes.iter_mut().filter(|n| n.is_manager()) {
        node.labels.insert("tier".into(), "control".into());
    }
    let plan = plan_of(&snap, &roomy_policy());
    assert!(matches!(
        status_of(&plan, "typo"),
        PlacementStatus::Unschedulable(_)
    ));
    assert!(actions_for(&plan, "typo").is_empty());
    let f = finding_of(&plan, FindingKind::ConstraintMatchesNoNode, "typo").expect("finding");
    assert!(f.message.contains("did you mean `tier`"), "{}", f.message);
}

#[test]
fn allow_managers_is_read_the_way_docker_reads_booleans() {
    let labelled = |name: &str, value: &str| {
        let mut s = replicated(name, 1);
        s.labels.insert(ALLOW_MANAGERS_LABEL.into(), value.into());
        s
    };
    let snap = swarm(
        vec![
            labelled("a", "True"),
            labelled("b", "1"),
            labelled("c", "yes"),
            labelled("d", "false"),
            labelled("e", "maybe"),
        ],
        vec![],
    );
    let plan = plan_of(&snap, &roomy_policy());
    for name in ["a", "b", "c"] {
        assert!(
            matches!(
                status_of(&plan, name),
                PlacementStatus::Exempt(Exemption::AllowManagersLabel { .. })
            ),
            "{name}"
        );
    }
    assert_eq!(*status_of(&plan, "d"), PlacementStatus::Violating);
    assert!(matches!(hold_of(&plan, "e"), Hold::LabelUnreadable { .. }));
    assert!(actions_for(&plan, "e").is_empty());
    assert!(finding_of(&plan, FindingKind::LabelValueInvalid, "e").is_some());
}

#[test]
fn an_opt_out_on_the_containers_is_reported_and_does_not_exempt() {
    let mut s = replicated("api", 1);
    s.container_labels
        .insert(ALLOW_MANAGERS_LABEL.into(), "true".into());
    let plan = plan_of(&swarm(vec![s], vec![]), &roomy_policy());
    assert_eq!(*status_of(&plan, "api"), PlacementStatus::Violating);
    let f = finding_of(&plan, FindingKind::LabelOnContainers, "api").expect("finding");
    assert!(
        f.message.contains("Did you mean a service label?"),
        "{}",
        f.message
    );
}

#[test]
fn the_reason_names_every_eligible_worker() {
    let plan = plan_of(&swarm(vec![replicated("web", 1)], vec![]), &roomy_policy());
    let reason = &actions_for(&plan, "web")[0].reason;
    assert!(
        reason.contains("2 eligible worker(s)") && reason.contains("w1, w2"),
        "{reason}"
    );
}

#[test]
fn a_rolled_back_service_is_not_retried_until_a_worker_joins() {
    let mut web = replicated("web", 2);
    web.update = Some(UpdateStatus {
        state: UpdateState::RollbackCompleted,
        message: "rollback completed".into(),
        started_at: None,
    });
    let snap = swarm(vec![web], vec![]);
    let policy = roomy_policy();
    let mut memory = Memory::default();
    memory.observe(&snap);
    let first = plan(&snap, &policy, &memory, snap.observed_at);
    assert!(
        matches!(hold_of(&first, "web"), Hold::RolledBack { cli, .. } if cli.contains("--constraint-add"))
    );
    assert_eq!(first.runnable().count(), 0);
    // Same workers later: still held. A new worker: tried again.
    let later = plan(&snap, &policy, &memory, t(500));
    assert_eq!(later.runnable().count(), 0);
    let mut grown = snap.clone();
    grown.nodes.push(worker("w3"));
    memory.observe(&grown);
    let retried = plan(&grown, &policy, &memory, grown.observed_at);
    assert_eq!(*status_of(&retried, "web"), PlacementStatus::Violating);
}

#[test]
fn an_identical_redeploy_does_not_retry_a_rolled_back_fix_but_a_changed_spec_does() {
    let mut web = replicated("web", 2);
    web.spec_hash = "after-rollback".into();
    let snap = swarm(vec![web], vec![]);
    let policy = roomy_policy();
    let mut memory = Memory::default();
    memory.observe(&snap);
    memory.record_placement_rollback("id-web", "after-rollback".into(), worker_set(&snap));
    // `docker stack deploy` of the same file: the update status is new, the spec is not.
    let mut redeployed = snap.clone();
    redeployed.services[0].update = Some(UpdateStatus {
        state: UpdateState::Completed,
        message: "update completed".into(),
        started_at: None,
    });
    memory.observe(&redeployed);
    let held = plan(&redeployed, &policy, &memory, redeployed.observed_at);
    assert!(matches!(hold_of(&held, "web"), Hold::RolledBack { .. }));
    // A real change (a new image, say): tried again.
    let mut changed = redeployed.clone();
    changed.services[0].spec_hash = "new-image".into();
    memory.observe(&changed);
    let retried = plan(&changed, &policy, &memory, changed.observed_at);
    assert_eq!(*status_of(&retried, "web"), PlacementStatus::Violating);
}

#[test]
fn promotions_avoid_a_worker_holding_node_local_data_of_a_kept_off_service() {
    let mut db = service(
        "db",
        ServiceMode::Replicated { replicas: 1 },
        &["node.role != manager"],
    );
    db.mounts = vec![volume("pgdata")];
    let tasks = vec![task(&db, "w1", 0)];
    let snap = swarm(vec![db], tasks);
    let placement = &Policy::default().placement;
    let w1 = snap.nodes.iter().find(|n| n.id == "w1").unwrap();
    let w2 = snap.nodes.iter().find(|n| n.id == "w2").unwrap();
    assert!(strands(&snap, placement, w1).unwrap().contains("pgdata"));
    assert_eq!(strands(&snap, placement, w2), None);
}

// ---- properties -------------------------------------------------------------------

/// The oracle's eligible workers: constraints and platforms, written apart from
/// `capacity::eligible_workers` on purpose (the generated nodes report no plugins).
fn eligible<'a>(
    service: &Service,
    constraints: &Constraints,
    workers: &[&'a Node],
) -> Vec<&'a Node> {
    workers
        .iter()
        .copied()
        .filter(|w| constraints.allow(w) && platform_allows(&service.platforms, &w.platform))
        .collect()
}

use proptest::prelude::*;

const CONSTRAINTS: [&str; 6] = [
    "node.role==manager",
    "node.role!=manager",
    "node.labels.disk==ssd",
    "node.hostname==w1",
    "node.platform.os==linux",
    "node.labels.zone!=a",
];

fn arb_service(i: usize) -> impl Strategy<Value = Service> {
    (
        (
            0..6u8,
            0..6u64,
            prop::collection::vec(0..CONSTRAINTS.len(), 0..3),
        ),
        (prop::bool::weighted(0.15), 0..3i64, 0..3u64),
        (0..6u8, prop::bool::weighted(0.2), 0..3u8),
    )
        .prop_map(
            move |(
                (mode, replicas, constraints),
                (allow, cpu, max_per_node),
                (data, disposable, port),
            )| {
                let mode = match mode {
                    0 | 1 => ServiceMode::Replicated { replicas },
                    2 => ServiceMode::Global,
                    3 => ServiceMode::GlobalJob,
                    _ => ServiceMode::ReplicatedJob {
                        max_concurrent: replicas,
                    },
                };
                let names: Vec<&str> = constraints.iter().map(|c| CONSTRAINTS[*c]).collect();
                let mut s = service(&format!("s{i}"), mode, &names);
                if allow {
                    s.labels.insert(ALLOW_MANAGERS_LABEL.into(), "true".into());
                }
                s.reservations.nano_cpus = cpu * 700_000_000;
                s.max_replicas_per_node = max_per_node;
                s.mounts = match data {
                    0 => vec![volume(&format!("data{i}"))],
                    1 => vec![Mount {
                        kind: "bind".into(),
                        source: "/srv".into(),
                        target: "/srv".into(),
                        ..Default::default()
                    }],
                    2 => vec![Mount {
                        driver: "local".into(),
                        driver_options: BTreeMap::from([("type".into(), "nfs".into())]),
                        ..volume("nfs")
                    }],
                    3 => vec![Mount {
                        kind: "tmpfs".into(),
                        target: "/tmp".into(),
                        ..Default::default()
                    }],
                    _ => Vec::new(),
                };
                if disposable {
                    s.labels.insert(DATA_LABEL.into(), "disposable".into());
                }
                if port > 0 {
                    s.host_ports = vec![HostPort {
                        port: 8000 + u32::from(port),
                        protocol: "tcp".into(),
                    }];
                }
                s
            },
        )
}

fn arb_swarm() -> impl Strategy<Value = Snapshot> {
    (
        prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 0..4),
        (1..8usize).prop_flat_map(|k| (0..k).map(arb_service).collect::<Vec<_>>()),
        prop::collection::vec((0..8usize, 0..7usize), 0..12),
    )
        .prop_map(|(workers, services, placed)| {
            let mut nodes = vec![
                manager("m1", true),
                manager("m2", false),
                manager("m3", false),
            ];
            for (i, (ready, ssd, drained)) in workers.into_iter().enumerate() {
                let mut w = worker(&format!("w{}", i + 1));
                if !ready {
                    w.state = NodeState::Down;
                }
                if ssd {
                    w.labels.insert("disk".into(), "ssd".into());
                }
                if drained {
                    w.availability = Availability::Drain;
                }
                nodes.push(w);
            }
            let mut snap = cluster(nodes, t(100));
            // Running tasks of the services on arbitrary nodes (the swarm's history).
            snap.tasks = placed
                .into_iter()
                .enumerate()
                .filter_map(|(n, (si, ni))| {
                    let s = services.get(si % services.len())?;
                    let node = snap.nodes.get(ni % snap.nodes.len())?;
                    Some(task(s, &node.id, n))
                })
                .collect();
            snap.services = services;
            snap
        })
}

/// How many tasks of `service` a node can take, computed independently of the planner:
/// free CPU over each task's reservation (its own tasks are replaced), `max_replicas_per_node`,
/// and one task per node when it publishes host ports and no other service's task holds one.
fn oracle_slots(snap: &Snapshot, service: &Service, node: &Node) -> u64 {
    let on_node: Vec<&Task> = snap
        .tasks
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(node.id.as_str()))
        .collect();
    let mut slots = u64::MAX;
    if service.reservations.nano_cpus > 0 {
        let used: i64 = on_node
            .iter()
            .filter(|t| t.service_id != service.id)
            .filter_map(|t| snap.services.iter().find(|s| s.id == t.service_id))
            .map(|s| s.reservations.nano_cpus)
            .sum();
        let free = (node.resources.nano_cpus - used).max(0);
        slots = slots.min((free / service.reservations.nano_cpus) as u64);
    }
    if service.max_replicas_per_node > 0 {
        slots = slots.min(service.max_replicas_per_node);
    }
    if !service.host_ports.is_empty() {
        let taken = on_node.iter().any(|t| {
            t.service_id != service.id
                && snap.services.iter().any(|s| {
                    s.id == t.service_id
                        && s.host_ports.iter().any(|p| service.host_ports.contains(p))
                })
        });
        slots = slots.min(u64::from(!taken));
    }
    slots
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn placement_fixes_only_what_it_may_and_only_where_workers_can_host_it(snap in arb_swarm(), budget in 0..3usize) {
        let mut policy = Policy::default();
        policy.placement.max_updates_per_cycle = budget;
        let plan = plan_of(&snap, &policy);
        let fixes: Vec<&PlannedAction> = plan
            .runnable()
            .filter(|a| matches!(a.action, Action::EnforcePlacement(_)))
            .collect();
        prop_assert!(fixes.len() <= budget);
        let workers = ready_workers(&snap);
        for fix in fixes {
            let service = snap.services.iter().find(|s| s.name == fix.action.target()).unwrap();
            let constraints = Constraints::parse(&service.constraints);
            // Never an exempt service.
            prop_assert!(matches!(intent::exemption(service, &constraints, &policy), Ok(None)) && intent::pin(service, &constraints, &snap).is_none());
            // Only when a manager could run it now.
            prop_assert!(snap.nodes.iter().any(|n| n.is_manager() && constraints.allow(n)));
            // Only when workers can take every task.
            let hosts = eligible(service, &constraints, &workers);
            prop_assert!(!hosts.is_empty());
            // Never more tasks than the workers' ports, max_replicas_per_node and
            // reservations allow.
            if let Some(replicas) = service.concurrent_tasks() {
                let need = replicas;
                let room = hosts.iter().map(|h| oracle_slots(&snap, service, h)).fold(0u64, u64::saturating_add);
                prop_assert!(room >= need, "room {} < need {}", room, need);
            }
        }
        for service in &snap.services {
            let acted = plan.actions.iter().any(|a| a.action.target() == service.name);
            // Never an action on a job: an update runs it again.
            prop_assert!(!(service.mode.is_job() && acted), "action on job {}", service.name);
            // Never an action on a service whose node-local data would stay behind.
            let keeps_data = service.mounts.iter().any(|m| m.kind == "bind" || (m.kind == "volume" && m.driver.is_empty()))
                && !service.labels.contains_key(DATA_LABEL);
            prop_assert!(!(keeps_data && acted), "action on stateful {}", service.name);
        }
        // Every service gets exactly one verdict.
        prop_assert_eq!(plan.services.len(), snap.services.len());
    }
}
