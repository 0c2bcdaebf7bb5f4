//! Placement: workload services get `node.role != manager`, the way the Kubernetes
//! descheduler keeps pods off control-plane nodes — but only where workers can really host
//! them, a few services per cycle, and never for services that belong on managers.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::constraint::{platform_allows, Constraints, NOT_ON_MANAGERS};
use super::{human, Action, Finding, FindingKind, Plan, PlannedAction, Severity};
use crate::config::{Mode, Policy};
use crate::model::{
    Availability, Control, Node, NodeState, Resources, Role, Service, ServiceMode, Snapshot,
    UpdateState,
};
use crate::plan::Memory;

/// Service label that lets a service run on managers.
pub const ALLOW_MANAGERS_LABEL: &str = "swarm-warden.allow-managers";
/// Service label that marks swarm-warden's own service.
pub const SELF_LABEL: &str = "swarm-warden.self";

/// A service as actions and reports name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Service ID.
    pub id: String,
    /// Service name.
    pub name: String,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Where a service stands with respect to managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementStatus {
    /// No manager can run its tasks.
    Compliant,
    /// May run on managers, and why.
    Exempt(String),
    /// May run on managers and should not; a fix is planned.
    Violating,
    /// Should not run on managers, but the fix is blocked, and why.
    Blocked(String),
}

/// A task on a manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOnManager {
    /// Task ID.
    pub task_id: String,
    /// The manager's node ID.
    pub node_id: String,
    /// The manager's hostname.
    pub hostname: String,
}

/// The placement verdict for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlacement {
    /// The service.
    pub service: ServiceRef,
    /// Its stack, if deployed with `docker stack deploy`.
    pub stack: Option<String>,
    /// The verdict.
    pub status: PlacementStatus,
    /// Its tasks that should be running on managers right now.
    pub tasks_on_managers: Vec<TaskOnManager>,
}

/// What swarm-warden remembers of a placement fix it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementFix {
    /// When it was made.
    pub at: SystemTime,
    /// How many times the constraint had been lost again before this fix.
    pub drifts: u32,
}

/// Reservations already taken on each node, and per service and node.
struct Usage<'a> {
    per_node: HashMap<&'a str, Resources>,
    tasks_per_service_node: HashMap<(&'a str, &'a str), u64>,
}

impl<'a> Usage<'a> {
    fn of(snapshot: &'a Snapshot, services: &HashMap<&'a str, &'a Service>) -> Self {
        let mut per_node: HashMap<&str, Resources> = HashMap::new();
        let mut tasks_per_service_node: HashMap<(&str, &str), u64> = HashMap::new();
        for task in &snapshot.tasks {
            let Some(node) = task.node_id.as_deref() else {
                continue;
            };
            *tasks_per_service_node
                .entry((task.service_id.as_str(), node))
                .or_default() += 1;
            if let Some(service) = services.get(task.service_id.as_str()) {
                let used = per_node.entry(node).or_default();
                used.nano_cpus += service.reservations.nano_cpus;
                used.memory_bytes += service.reservations.memory_bytes;
            }
        }
        Self {
            per_node,
            tasks_per_service_node,
        }
    }

    /// Free reservations on `node` for `service`: its own tasks there count as free, since
    /// the rolling update replaces them.
    fn free_for(&self, node: &Node, service: &Service) -> Resources {
        let used = self
            .per_node
            .get(node.id.as_str())
            .copied()
            .unwrap_or_default();
        let own = self
            .tasks_per_service_node
            .get(&(service.id.as_str(), node.id.as_str()))
            .copied()
            .unwrap_or(0) as i64;
        Resources {
            nano_cpus: node.resources.nano_cpus - used.nano_cpus
                + own * service.reservations.nano_cpus,
            memory_bytes: node.resources.memory_bytes - used.memory_bytes
                + own * service.reservations.memory_bytes,
        }
    }
}

/// How many tasks of `service` a node can take: by free CPU, free memory and
/// `max_replicas_per_node`.
fn slots(free: Resources, service: &Service) -> u64 {
    let by = |free: i64, each: i64| {
        if each > 0 {
            u64::try_from(free.max(0) / each).unwrap_or(0)
        } else {
            u64::MAX
        }
    };
    let limit = if service.max_replicas_per_node > 0 {
        service.max_replicas_per_node
    } else {
        u64::MAX
    };
    by(free.nano_cpus, service.reservations.nano_cpus)
        .min(by(free.memory_bytes, service.reservations.memory_bytes))
        .min(limit)
}

fn ready_workers(snapshot: &Snapshot) -> Vec<&Node> {
    snapshot
        .nodes
        .iter()
        .filter(|n| {
            !n.is_manager()
                && n.role == Role::Worker
                && n.state == NodeState::Ready
                && n.availability == Availability::Active
        })
        .collect()
}

fn cpus(nano: i64) -> String {
    format!("{:.2} CPU", nano as f64 / 1e9)
}

fn mib(bytes: i64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

/// Whether workers can take every task of `service` once managers are excluded: `Ok`
/// with a summary, or `Err` with the numbers that say why not.
fn capacity(
    service: &Service,
    constraints: &Constraints,
    workers: &[&Node],
    usage: &Usage,
) -> Result<String, String> {
    // Scan lazily: in a big swarm the first few workers usually settle it.
    let need = service.concurrent_tasks();
    let mut hosts: Vec<&Node> = Vec::new();
    let mut room: u64 = 0;
    for worker in workers
        .iter()
        .copied()
        .filter(|w| constraints.allow(w) && platform_allows(&service.platforms, &w.platform))
    {
        hosts.push(worker);
        room = room.saturating_add(slots(usage.free_for(worker, service), service));
        if need.is_none_or(|need| room >= need) {
            let names: Vec<&str> = hosts.iter().take(5).map(|h| h.hostname.as_str()).collect();
            let more = if hosts.len() > 5 { ", ..." } else { "" };
            let room = match need {
                None => String::new(),
                Some(_) if room == u64::MAX => " with room for any number of tasks".to_owned(),
                Some(_) => format!(" with room for {room} task(s)"),
            };
            return Ok(format!("eligible workers {}{more}{room}", names.join(", ")));
        }
    }
    if hosts.is_empty() {
        return Err(format!(
            "No Ready, Active worker satisfies its other constraints {:?}{}: {} Ready, Active worker(s) in the swarm.",
            service.constraints,
            if service.platforms.is_empty() { String::new() } else { " and platforms".into() },
            workers.len()
        ));
    }
    let need = need.unwrap_or(0);
    let res = service.reservations;
    let mut why = format!("{need} task(s)");
    if !res.is_zero() {
        why.push_str(&format!(
            " reserving {} and {} each",
            cpus(res.nano_cpus),
            mib(res.memory_bytes)
        ));
    }
    if service.max_replicas_per_node > 0 {
        why.push_str(&format!(
            ", at most {} per node",
            service.max_replicas_per_node
        ));
    }
    let free: Vec<String> = hosts
        .iter()
        .map(|h| {
            let f = usage.free_for(h, service);
            format!(
                "{} {} / {} free",
                h.hostname,
                cpus(f.nano_cpus),
                mib(f.memory_bytes)
            )
        })
        .collect();
    Err(format!(
        "Workers cannot host {why}: the {} eligible worker(s) have room for {room} ({}).",
        hosts.len(),
        free.join("; ")
    ))
}

/// Why promoting `candidate` would strand a service: a service kept off managers that no
/// other worker could host (by constraints, platforms or capacity). `None` when it would not.
pub fn strands(snapshot: &Snapshot, candidate: &Node) -> Option<String> {
    let services: HashMap<&str, &Service> = snapshot
        .services
        .iter()
        .map(|s| (s.id.as_str(), s))
        .collect();
    let usage = Usage::of(snapshot, &services);
    let others: Vec<&Node> = ready_workers(snapshot)
        .into_iter()
        .filter(|w| w.id != candidate.id)
        .collect();
    snapshot.services.iter().find_map(|service| {
        let constraints = Constraints::parse(&service.constraints);
        if !constraints.exclude_managers() || !constraints.allow(candidate) {
            return None;
        }
        capacity(service, &constraints, &others, &usage)
            .err()
            .map(|why| format!("{} would be stranded: {why}", service.name))
    })
}

fn exemption(service: &Service, constraints: &Constraints, policy: &Policy) -> Option<String> {
    let p = &policy.placement;
    let label = |k: &str| service.labels.get(k).map(String::as_str);
    if label(SELF_LABEL) == Some("true") || service.image.contains("swarm-warden") {
        Some("swarm-warden itself (it must run on a manager)".into())
    } else if !p.include.is_empty() && !p.include.selects(&service.name, &service.labels) {
        Some("not selected by placement.include".into())
    } else if p.exclude.selects(&service.name, &service.labels) {
        Some("excluded by placement.exclude".into())
    } else if p.exempt_global
        && matches!(service.mode, ServiceMode::Global | ServiceMode::GlobalJob)
    {
        Some(
            "global service: runs on every node, managers included (placement.exempt_global)"
                .into(),
        )
    } else if constraints.pinned_to_managers() {
        Some("pinned to managers by its own constraint".into())
    } else if label(ALLOW_MANAGERS_LABEL) == Some("true") {
        Some(format!("labelled {ALLOW_MANAGERS_LABEL}=true"))
    } else {
        None
    }
}

/// The snippet a stack's compose file needs so that its next deploy keeps the constraint.
pub fn compose_snippet() -> &'static str {
    "deploy:\n  placement:\n    constraints:\n      - node.role != manager"
}

/// Delay before fixing a service that lost the constraint again for the `drifts`-th time:
/// doubling from `min`, at most `max`.
fn drift_delay(drifts: u32, min: Duration, max: Duration) -> Duration {
    min.saturating_mul(2u32.saturating_pow(drifts.min(30)))
        .min(max)
}

pub(super) fn plan_placement(
    snapshot: &Snapshot,
    policy: &Policy,
    memory: &Memory,
    now: SystemTime,
    plan: &mut Plan,
) {
    let p = &policy.placement;
    if p.mode == Mode::Off || snapshot.control != Control::Leader {
        return;
    }
    let services: HashMap<&str, &Service> = snapshot
        .services
        .iter()
        .map(|s| (s.id.as_str(), s))
        .collect();
    let usage = Usage::of(snapshot, &services);
    let managers: HashMap<&str, &Node> = snapshot
        .nodes
        .iter()
        .filter(|n| n.is_manager())
        .map(|n| (n.id.as_str(), n))
        .collect();
    let workers = ready_workers(snapshot);
    let mut on_managers: HashMap<&str, Vec<TaskOnManager>> = HashMap::new();
    for task in &snapshot.tasks {
        if let Some(node) = task.node_id.as_deref().and_then(|id| managers.get(id)) {
            on_managers
                .entry(task.service_id.as_str())
                .or_default()
                .push(TaskOnManager {
                    task_id: task.id.clone(),
                    node_id: node.id.clone(),
                    hostname: node.hostname.clone(),
                });
        }
    }
    let local_ok = snapshot
        .nodes
        .iter()
        .any(|n| n.id == snapshot.local.node_id && n.is_reachable_manager());
    let mut budget = p.max_updates_per_cycle;
    let mut ordered: Vec<&Service> = snapshot.services.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));

    for service in ordered {
        let constraints = Constraints::parse(&service.constraints);
        let tasks_on_managers = on_managers.remove(service.id.as_str()).unwrap_or_default();
        let service_ref = ServiceRef {
            id: service.id.clone(),
            name: service.name.clone(),
        };
        let mut verdict = ServicePlacement {
            service: service_ref.clone(),
            stack: service.stack().map(str::to_owned),
            status: PlacementStatus::Compliant,
            tasks_on_managers,
        };
        if let Some(reason) = exemption(service, &constraints, policy) {
            verdict.status = PlacementStatus::Exempt(reason);
            plan.services.push(verdict);
            continue;
        }
        if let Some(error) = constraints.error() {
            verdict.status =
                PlacementStatus::Blocked(format!("Its constraints cannot be read: {error}."));
            plan.services.push(verdict);
            continue;
        }
        let allowed: Vec<&str> = managers
            .values()
            .filter(|m| constraints.allow(m) && platform_allows(&service.platforms, &m.platform))
            .map(|m| m.hostname.as_str())
            .collect();
        if allowed.is_empty() {
            plan.services.push(verdict);
            continue;
        }

        let fixed_before = memory.placement_fix(&service.id);
        let running = verdict.tasks_on_managers.len();
        let hosts: Vec<&str> = verdict
            .tasks_on_managers
            .iter()
            .map(|t| t.hostname.as_str())
            .collect();
        plan.findings.push(Finding {
            kind: FindingKind::WorkloadOnManager,
            severity: Severity::Warning,
            subject: service.name.clone(),
            message: if running > 0 {
                format!(
                    "Service {} may run on managers and has {running} task(s) on {}.",
                    service.name,
                    hosts.join(", ")
                )
            } else {
                format!(
                    "Service {} may be scheduled on managers ({}).",
                    service.name,
                    allowed.join(", ")
                )
            },
        });
        if let (Some(stack), Some(_)) = (service.stack(), fixed_before) {
            plan.findings.push(Finding {
                kind: FindingKind::StackDrift,
                severity: Severity::Warning,
                subject: service.name.clone(),
                message: format!(
                    "Service {} of stack {stack} lost `{NOT_ON_MANAGERS}` again after swarm-warden added it (a docker stack deploy overwrote it). Add this to the service in the stack's compose file:\n{}",
                    service.name,
                    compose_snippet()
                ),
            });
        }

        let capacity = capacity(service, &constraints, &workers, &usage);
        let mut reason = format!(
            "{} may run on managers{}; adding `{NOT_ON_MANAGERS}` moves its tasks to workers",
            service.name,
            if running > 0 {
                format!(" and has {running} task(s) on {}", hosts.join(", "))
            } else {
                String::new()
            },
        );
        if let Ok(summary) = &capacity {
            reason.push_str(&format!(": {summary}"));
        }
        reason.push('.');
        if let Some(stack) = service.stack() {
            reason.push_str(&format!(
                " Stack {stack}: add `deploy.placement.constraints: [{NOT_ON_MANAGERS}]` to its compose file, or its next deploy removes the constraint."
            ));
        }
        let drift_wait = fixed_before.and_then(|fix| {
            let delay = drift_delay(
                fix.drifts,
                policy.controller.backoff_min,
                policy.controller.backoff_max,
            );
            let since = now.duration_since(fix.at).unwrap_or_default();
            (since < delay).then(|| (delay - since, fix.drifts + 1))
        });
        let blocked_by = if p.mode == Mode::Audit {
            Some("placement.mode is audit: report only.".to_owned())
        } else if !local_ok {
            Some(
                "This manager is not a reachable raft member: it may be cut off in a minority."
                    .to_owned(),
            )
        } else if let Some(u) = service.update.as_ref().filter(|u| {
            matches!(
                u.state,
                UpdateState::Updating | UpdateState::RollbackStarted
            )
        }) {
            Some(format!(
                "A rolling update of the service is in progress ({:?}): waiting for it to finish.",
                u.state
            ))
        } else if let Some(u) = service
            .update
            .as_ref()
            .filter(|u| matches!(u.state, UpdateState::Paused | UpdateState::RollbackPaused))
        {
            Some(format!(
                "Its last update is {:?}: \"{}\". Resolve that first (docker service update / rollback).",
                u.state, u.message
            ))
        } else if let Err(why) = &capacity {
            Some(why.clone())
        } else if let Some((wait, nth)) = drift_wait {
            plan.requeue_at_most(wait);
            Some(format!(
                "It lost the constraint again after swarm-warden added it: fix #{nth} waits {} (backoff against a redeploy loop).",
                human(wait)
            ))
        } else if budget == 0 {
            Some(format!(
                "placement.max_updates_per_cycle ({}) reached for this cycle.",
                p.max_updates_per_cycle
            ))
        } else {
            None
        };
        verdict.status = match &blocked_by {
            Some(why) => PlacementStatus::Blocked(why.clone()),
            None => {
                budget -= 1;
                PlacementStatus::Violating
            }
        };
        plan.actions.push(PlannedAction::new(
            Action::EnforcePlacement(service_ref),
            reason,
            blocked_by,
        ));
        plan.services.push(verdict);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::model::{Platform, Task};
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

    fn plan_of(snap: &Snapshot, policy: &Policy) -> Plan {
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
        assert!(
            matches!(status_of(&plan, "node-exporter"), PlacementStatus::Exempt(r) if r.contains("global"))
        );
        assert!(
            matches!(status_of(&plan, "portainer"), PlacementStatus::Exempt(r) if r.contains("pinned"))
        );
        assert!(
            matches!(status_of(&plan, "registry"), PlacementStatus::Exempt(r) if r.contains("allow-managers"))
        );
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
            a.blocked_by
                .as_deref()
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
        let why = plan.actions[0].blocked_by.as_deref().unwrap();
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
            .blocked_by
            .as_deref()
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
        let why = plan.actions[0].blocked_by.as_deref().unwrap();
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
            .blocked_by
            .as_deref()
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
        assert!(
            matches!(status_of(&plan, "dev_web"), PlacementStatus::Exempt(r) if r.contains("include"))
        );
        assert!(
            matches!(status_of(&plan, "ops_swarm-warden"), PlacementStatus::Exempt(r) if r.contains("itself"))
        );
        assert_eq!(*status_of(&plan, "prod_web"), PlacementStatus::Violating);
        policy.placement.exclude.names = vec!["prod_web".into()];
        let plan = plan_of(&snap, &policy);
        assert!(
            matches!(status_of(&plan, "prod_web"), PlacementStatus::Exempt(r) if r.contains("exclude"))
        );
    }

    #[test]
    fn an_update_in_progress_or_paused_blocks_the_fix() {
        let mut web = replicated("web", 1);
        web.update = Some(crate::model::UpdateStatus {
            state: UpdateState::Paused,
            message: "update paused due to failure".into(),
        });
        let plan = plan_of(&swarm(vec![web], vec![]), &Policy::default());
        assert!(plan.actions[0]
            .blocked_by
            .as_deref()
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
        assert!(plan1.findings.iter().any(
            |f| f.kind == FindingKind::StackDrift && f.message.contains("node.role != manager")
        ));
        assert!(
            plan1.actions[0]
                .blocked_by
                .as_deref()
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
            .blocked_by
            .as_deref()
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
            .blocked_by
            .as_deref()
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
        assert!(strands(&snap, w1).unwrap().contains("db"));
        assert_eq!(strands(&snap, w2), None);
    }

    // ---- properties -------------------------------------------------------------------

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
            0..4u8,
            0..6u64,
            prop::collection::vec(0..CONSTRAINTS.len(), 0..3),
            prop::bool::weighted(0.15),
            0..3i64,
            0..3u64,
        )
            .prop_map(
                move |(mode, replicas, constraints, allow, cpu, max_per_node)| {
                    let mode = match mode {
                        0 | 1 => ServiceMode::Replicated { replicas },
                        2 => ServiceMode::Global,
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
                    s
                },
            )
    }

    fn arb_swarm() -> impl Strategy<Value = Snapshot> {
        (
            prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 0..4),
            (1..8usize).prop_flat_map(|k| (0..k).map(arb_service).collect::<Vec<_>>()),
        )
            .prop_map(|(workers, services)| {
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
                snap.services = services;
                snap
            })
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
                prop_assert!(exemption(service, &constraints, &policy).is_none());
                // Only when a manager could run it now.
                prop_assert!(snap.nodes.iter().any(|n| n.is_manager() && constraints.allow(n)));
                // Only when workers can take every task.
                let hosts = eligible(service, &constraints, &workers);
                prop_assert!(!hosts.is_empty());
                if let Some(need) = service.concurrent_tasks() {
                    let services_by_id: HashMap<&str, &Service> = snap.services.iter().map(|s| (s.id.as_str(), s)).collect();
                    let usage = Usage::of(&snap, &services_by_id);
                    let room = hosts.iter().map(|h| slots(usage.free_for(h, service), service)).fold(0u64, u64::saturating_add);
                    prop_assert!(room >= need, "room {} < need {}", room, need);
                }
            }
            // Every service gets exactly one verdict.
            prop_assert_eq!(plan.services.len(), snap.services.len());
        }
    }
}
