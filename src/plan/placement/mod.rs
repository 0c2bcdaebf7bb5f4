//! Placement: workload services get `node.role != manager`, the way the Kubernetes
//! descheduler keeps pods off control-plane nodes — but only where workers can really host
//! them, a few services per cycle, never for services that belong on managers, never for a
//! job (an update runs it again) and never for a service whose data would stay behind.

mod capacity;
pub(crate) mod data;
mod inflight;
mod intent;
mod rolling;
mod verdict;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use super::constraint::{platform_allows, Constraints, NOT_ON_MANAGERS};
use super::{Action, Finding, FindingKind, Plan, PlannedAction, Severity};
use crate::config::{Mode, Policy};
use crate::model::{Control, Node, Service, Snapshot, UpdateState};
use crate::plan::Memory;

pub use capacity::{ready_workers, strands};
pub use data::{classify, node_local_data, Locality, MountData};
pub use intent::{parse_bool, Exemption, ALLOW_MANAGERS_LABEL, DATA_LABEL, SELF_LABEL};
pub use rolling::{pauses_an_update, rolling_off_managers};
pub use verdict::{
    Hold, PlacementFix, PlacementStatus, ServicePlacement, ServiceRef, TaskOnManager,
};

use capacity::{capacity, Usage};

/// The snippet a stack's compose file needs so that its next deploy keeps the constraint.
pub fn compose_snippet() -> &'static str {
    "deploy:\n  placement:\n    constraints:\n      - node.role != manager"
}

/// The `docker service update` command that adds the constraint by hand.
fn cli_snippet(service: &str) -> String {
    format!("docker service update --constraint-add '{NOT_ON_MANAGERS}' {service}")
}

/// Delay before fixing a service that lost the constraint again for the `drifts`-th time:
/// doubling from `min`, at most `max`.
fn drift_delay(drifts: u32, min: Duration, max: Duration) -> Duration {
    min.saturating_mul(2u32.saturating_pow(drifts.min(30)))
        .min(max)
}

/// IDs of the workers a placement fix could use now: a rolled-back fix is tried again only
/// once this set gains a worker.
pub fn worker_set(snapshot: &Snapshot) -> BTreeSet<String> {
    ready_workers(snapshot)
        .into_iter()
        .map(|n| n.id.clone())
        .collect()
}

/// IDs of the services whose tasks on workers the planner needs besides those on managers:
/// rolling updates a promotion could pause, capacity (reservations, generic resources, host ports) and
/// promotions (tasks with node-local data). The observer lists exactly these.
pub fn services_needing_tasks<'a>(services: &'a [Service], policy: &Policy) -> Vec<&'a str> {
    services
        .iter()
        .filter(|s| {
            !s.reservations.is_zero()
                || !s.generic_reservations.is_empty()
                || !s.host_ports.is_empty()
                || !node_local_data(s, &policy.placement).is_empty()
                // A promotion must not land on one of their tasks (rolling.rs).
                || rolling_off_managers(s)
        })
        .map(|s| s.id.as_str())
        .collect()
}

/// What every service's verdict is computed from.
struct Context<'a> {
    snapshot: &'a Snapshot,
    policy: &'a Policy,
    memory: &'a Memory,
    now: SystemTime,
    usage: Usage<'a>,
    managers: HashMap<&'a str, &'a Node>,
    workers: Vec<&'a Node>,
    local_ok: bool,
    /// Eligible workers by [`capacity::eligibility_key`].
    eligible: RefCell<HashMap<String, Rc<Vec<&'a Node>>>>,
}

impl<'a> Context<'a> {
    /// The workers eligible for `service`, scanned once per eligibility key.
    fn eligible(&self, service: &Service, constraints: &Constraints) -> Rc<Vec<&'a Node>> {
        let key = capacity::eligibility_key(service);
        if let Some(hosts) = self.eligible.borrow().get(&key) {
            return hosts.clone();
        }
        let hosts = Rc::new(capacity::eligible_workers(
            service,
            constraints,
            &self.workers,
        ));
        self.eligible.borrow_mut().insert(key, hosts.clone());
        hosts
    }
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
    let cx = Context {
        snapshot,
        policy,
        memory,
        now,
        usage: Usage::of(snapshot, &services),
        managers: snapshot
            .nodes
            .iter()
            .filter(|n| n.is_manager())
            .map(|n| (n.id.as_str(), n))
            .collect(),
        workers: ready_workers(snapshot),
        local_ok: snapshot
            .nodes
            .iter()
            .any(|n| n.id == snapshot.local.node_id && n.is_reachable_manager()),
        eligible: RefCell::new(HashMap::new()),
    };
    let mut on_managers: HashMap<&str, Vec<TaskOnManager>> = HashMap::new();
    for task in &snapshot.tasks {
        if let Some(node) = task.node_id.as_deref().and_then(|id| cx.managers.get(id)) {
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
    inflight::plan_records(&cx, plan);
    let mut budget = p.max_updates_per_cycle;
    let mut ordered: Vec<&Service> = snapshot.services.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    for service in ordered {
        let tasks_on_managers = on_managers.remove(service.id.as_str()).unwrap_or_default();
        let verdict = judge(&cx, service, tasks_on_managers, &mut budget, plan);
        plan.services.push(verdict);
    }
}

/// One service's verdict; findings and the action (if any) go to `plan`.
fn judge(
    cx: &Context,
    service: &Service,
    tasks_on_managers: Vec<TaskOnManager>,
    budget: &mut usize,
    plan: &mut Plan,
) -> ServicePlacement {
    let constraints = Constraints::parse(&service.constraints);
    let mut verdict = ServicePlacement {
        service: ServiceRef {
            id: service.id.clone(),
            name: service.name.clone(),
        },
        stack: service.stack().map(str::to_owned),
        status: PlacementStatus::Compliant,
        tasks_on_managers,
    };
    for (key, value) in intent::container_only_labels(service) {
        plan.findings.push(Finding::new(
            FindingKind::LabelOnContainers,
            Severity::Warning,
            &service.name,
            format!(
                "Service {} sets {key}={value} on its containers (--container-label, or compose `labels:` under the service), where swarm-warden does not read it. Did you mean a service label? `docker service update --label-add {key}={value} {}`, or compose `deploy.labels`.",
                service.name, service.name
            ),
        ));
    }
    match intent::exemption(service, &constraints, cx.policy) {
        Ok(Some(exemption)) => {
            verdict.status = PlacementStatus::Exempt(exemption);
            return verdict;
        }
        Ok(None) => {}
        Err(label) => {
            plan.findings.push(Finding::new(
                FindingKind::LabelValueInvalid,
                Severity::Warning,
                &service.name,
                format!(
                    "Service {} has {}={:?}, which swarm-warden cannot read (allowed: {}); placement leaves the service alone until it is fixed.",
                    service.name, label.key, label.value, label.allowed
                ),
            ));
            verdict.status = PlacementStatus::Blocked(Hold::LabelUnreadable {
                key: label.key,
                value: label.value,
            });
            return verdict;
        }
    }
    if let Some(error) = constraints.error() {
        verdict.status = PlacementStatus::Blocked(Hold::ConstraintsUnreadable(error.to_owned()));
        return verdict;
    }
    let fits = |n: &Node| constraints.allow(n) && platform_allows(&service.platforms, &n.platform);
    if !cx.snapshot.nodes.iter().any(fits) {
        let mut message = format!(
            "No node satisfies the constraints {:?}{} of service {}: its tasks cannot be scheduled (Pending).",
            service.constraints,
            if service.platforms.is_empty() { "" } else { " and platforms" },
            service.name
        );
        for hint in constraints.label_case_hints(&cx.snapshot.nodes) {
            message.push(' ');
            message.push_str(&hint);
        }
        plan.findings.push(Finding::new(
            FindingKind::ConstraintMatchesNoNode,
            Severity::Warning,
            &service.name,
            message.clone(),
        ));
        verdict.status = PlacementStatus::Unschedulable(message);
        return verdict;
    }
    let allowed: Vec<&str> = cx
        .managers
        .values()
        .filter(|m| fits(m))
        .map(|m| m.hostname.as_str())
        .collect();
    if allowed.is_empty() {
        return verdict;
    }
    if let Some(pinned) = intent::pin(service, &constraints, cx.snapshot) {
        verdict.status = PlacementStatus::Exempt(pinned);
        return verdict;
    }
    let running = verdict.tasks_on_managers.len();
    let mut hosts: Vec<&str> = verdict
        .tasks_on_managers
        .iter()
        .map(|t| t.hostname.as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let where_now = if running > 0 {
        format!("has {running} task(s) on {}", hosts.join(", "))
    } else {
        let mut allowed = allowed.clone();
        allowed.sort_unstable();
        format!("may be scheduled on managers ({})", allowed.join(", "))
    };

    if service.mode.is_job() {
        plan.findings.push(Finding::new(
            FindingKind::JobOnManager,
            if running > 0 { Severity::Warning } else { Severity::Info },
            &service.name,
            format!(
                "Job {} {where_now}. swarm-warden never updates a job: any spec update starts a new job iteration and runs it again. Add the constraint to its definition for its next run — compose:\n{}\nor CLI: docker service create ... --constraint '{NOT_ON_MANAGERS}'",
                service.name,
                compose_snippet()
            ),
        ));
        verdict.status = PlacementStatus::Blocked(Hold::Job);
        return verdict;
    }
    let data = node_local_data(service, &cx.policy.placement);
    if !data.is_empty() {
        let what: Vec<String> = data.iter().map(ToString::to_string).collect();
        let (kind, severity) = if running > 0 {
            (FindingKind::StatefulOnManager, Severity::Warning)
        } else {
            (FindingKind::WorkloadOnManager, Severity::Info)
        };
        plan.findings.push(Finding::new(
            kind,
            severity,
            &service.name,
            format!(
                "Service {} {where_now} and keeps node-local data: {}. Moving it would start its tasks on other nodes with empty volumes and leave the data behind{}, so swarm-warden does not move it. Options: (1) move it with its data in a maintenance window: scale it to 0, copy the data to a worker (docker run --rm -v VOLUME:/from ... tar), then `docker service update --constraint-add '{NOT_ON_MANAGERS}' --constraint-add 'node.hostname==WORKER' {}`; (2) if the data may be lost, label it `{DATA_LABEL}=disposable` (or list it in placement.disposable) and swarm-warden moves it. The Swarm API does not report volume sizes: `docker system df -v` on {} shows them.",
                service.name,
                what.join("; "),
                if running > 0 { format!(" on {}", hosts.join(", ")) } else { String::new() },
                service.name,
                if hosts.is_empty() { "the node".to_owned() } else { hosts.join(", ") },
            ),
        ));
        verdict.status = PlacementStatus::Blocked(Hold::NodeLocalData(what));
        return verdict;
    }
    fix(cx, service, &constraints, verdict, &where_now, budget, plan)
}

/// A movable service that may run on managers: the fix, planned or held.
fn fix(
    cx: &Context,
    service: &Service,
    constraints: &Constraints,
    mut verdict: ServicePlacement,
    where_now: &str,
    budget: &mut usize,
    plan: &mut Plan,
) -> ServicePlacement {
    let p = &cx.policy.placement;
    let fixed_before = cx.memory.placement_fix(&service.id);
    plan.findings.push(Finding::new(
        FindingKind::WorkloadOnManager,
        Severity::Warning,
        &service.name,
        format!("Service {} {where_now}.", service.name),
    ));
    if let (Some(stack), Some(_)) = (service.stack(), fixed_before) {
        plan.findings.push(Finding::new(
            FindingKind::StackDrift,
            Severity::Warning,
            &service.name,
            format!(
                "Service {} of stack {stack} lost `{NOT_ON_MANAGERS}` again after swarm-warden added it (a docker stack deploy overwrote it). Add this to the service in the stack's compose file:\n{}",
                service.name,
                compose_snippet()
            ),
        ));
    }
    let hosts = cx.eligible(service, constraints);
    let capacity = capacity(service, &hosts, cx.workers.len(), &cx.usage);
    let mut reason = format!(
        "{} {where_now}; adding `{NOT_ON_MANAGERS}` moves its tasks to workers",
        service.name
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
            cx.policy.controller.backoff_min,
            cx.policy.controller.backoff_max,
        );
        let since = cx.now.duration_since(fix.at).unwrap_or_default();
        (since < delay).then(|| (delay - since, fix.drifts + 1))
    });
    let update = service.update.as_ref();
    let hold = if p.mode == Mode::Audit {
        Some(Hold::Audit)
    } else if let Some(error) = &cx.snapshot.placement_records.error {
        Some(Hold::RecordsUnknown(error.clone()))
    } else if !cx.local_ok {
        Some(Hold::LocalNotReachable)
    } else if let Some(u) = update.filter(|u| {
        matches!(
            u.state,
            UpdateState::Updating | UpdateState::RollbackStarted
        )
    }) {
        Some(Hold::UpdateInProgress(u.state))
    } else if let Some(u) =
        update.filter(|u| matches!(u.state, UpdateState::Paused | UpdateState::RollbackPaused))
    {
        Some(Hold::UpdatePaused {
            state: u.state,
            message: u.message.clone(),
        })
    } else if cx
        .memory
        .rollback_holds(service, || worker_set(cx.snapshot))
    {
        Some(Hold::RolledBack {
            message: update
                .filter(|u| u.state == UpdateState::RollbackCompleted)
                .map_or_else(
                    || "rolled back by swarm-warden; its spec has not changed since".to_owned(),
                    |u| u.message.clone(),
                ),
            cli: cli_snippet(&service.name),
        })
    } else if let Err(why) = &capacity {
        Some(Hold::Capacity(why.clone()))
    } else if let Some((wait, nth)) = drift_wait {
        plan.requeue_at_most(wait);
        Some(Hold::DriftBackoff { nth, wait })
    } else if *budget == 0 {
        Some(Hold::Budget(p.max_updates_per_cycle))
    } else {
        None
    };
    verdict.status = match &hold {
        Some(hold) => PlacementStatus::Blocked(hold.clone()),
        None => {
            *budget -= 1;
            PlacementStatus::Violating
        }
    };
    plan.actions.push(PlannedAction::new(
        Action::EnforcePlacement(verdict.service.clone()),
        reason,
        hold.map(|h| {
            let kind = match h {
                Hold::Audit => crate::plan::BlockKind::Audit,
                Hold::LocalNotReachable => crate::plan::BlockKind::LocalNotReachable,
                _ => crate::plan::BlockKind::Placement,
            };
            crate::plan::Block::new(kind, h.to_string())
        }),
    ));
    verdict
}
