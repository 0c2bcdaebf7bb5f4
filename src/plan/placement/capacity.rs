//! Whether workers can take a service's tasks once managers are excluded, by the filters
//! SwarmKit's scheduler applies (`manager/scheduler/filter.go`) that the Swarm API shows:
//!
//! - node Ready and Active, a worker;
//! - constraints (`node.*`, `engine.labels.*`) and platforms;
//! - plugins: the volume drivers of its mounts and its log driver must be on the node
//!   (checked when the node reports its plugins);
//! - CPU and memory reservations against what other services' tasks reserve there;
//! - generic resources (`--generic-resource`), the same way;
//! - `max_replicas_per_node`;
//! - host-mode published ports: one task per node and port, and none where another
//!   service's task holds the port.
//!
//! Adding `node.role != manager` replaces only the tasks on managers: SwarmKit keeps a task
//! whose node still satisfies the new constraints (`IsTaskDirtyPlacementConstraintsOnly`;
//! seen in the lab, and pinned by the field e2e test). So the service's own tasks on workers
//! stay where they are and count once, and a `start-first` update's old tasks run beside
//! their replacements on managers, not on workers: no extra worker room is needed.
//!
//! Not modelled: network plugins, CSI volume topology, and whether the node has the image
//! (not a filter: a task that cannot start fails, and the update is rolled back).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::PlacementPolicy;
use crate::model::{Availability, HostPort, Node, NodeState, Resources, Role, Service, Snapshot};
use crate::plan::constraint::{platform_allows, Constraints};

use super::data::{node_local_data, same_plugin};

/// Ready, Active workers: where tasks kept off managers can go.
pub fn ready_workers(snapshot: &Snapshot) -> Vec<&Node> {
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

/// What the tasks in the snapshot already take on each node.
pub struct Usage<'a> {
    per_node: HashMap<&'a str, Resources>,
    generic_per_node: HashMap<&'a str, BTreeMap<&'a str, i64>>,
    /// Host ports bound on each node, with the service binding them.
    ports_per_node: HashMap<&'a str, Vec<(&'a HostPort, &'a str)>>,
    tasks_per_service_node: HashMap<(&'a str, &'a str), u64>,
}

impl<'a> Usage<'a> {
    /// Sums the snapshot's tasks.
    pub fn of(snapshot: &'a Snapshot, services: &HashMap<&'a str, &'a Service>) -> Self {
        let mut usage = Usage {
            per_node: HashMap::new(),
            generic_per_node: HashMap::new(),
            ports_per_node: HashMap::new(),
            tasks_per_service_node: HashMap::new(),
        };
        for task in &snapshot.tasks {
            let Some(node) = task.node_id.as_deref() else {
                continue;
            };
            let Some(service) = services.get(task.service_id.as_str()) else {
                continue;
            };
            // Only what a task takes from its node counts; most tasks take nothing.
            if service.reservations.is_zero()
                && service.generic_reservations.is_empty()
                && service.host_ports.is_empty()
            {
                continue;
            }
            *usage
                .tasks_per_service_node
                .entry((task.service_id.as_str(), node))
                .or_default() += 1;
            if !service.reservations.is_zero() {
                let used = usage.per_node.entry(node).or_default();
                used.nano_cpus += service.reservations.nano_cpus;
                used.memory_bytes += service.reservations.memory_bytes;
            }
            if !service.generic_reservations.is_empty() {
                let generic = usage.generic_per_node.entry(node).or_default();
                for (kind, n) in &service.generic_reservations {
                    *generic.entry(kind.as_str()).or_default() += n;
                }
            }
            if !service.host_ports.is_empty() {
                let ports = usage.ports_per_node.entry(node).or_default();
                ports.extend(service.host_ports.iter().map(|p| (p, service.id.as_str())));
            }
        }
        usage
    }

    /// Tasks of `service` on `node` in the snapshot (counted only for services that take
    /// something from their node: reservations, generic resources, host ports).
    fn own(&self, node: &Node, service: &Service) -> u64 {
        self.tasks_per_service_node
            .get(&(service.id.as_str(), node.id.as_str()))
            .copied()
            .unwrap_or(0)
    }

    /// Free reservations on `node` for `service`: its own tasks there count as free, since
    /// the rolling update replaces them.
    pub fn free_for(&self, node: &Node, service: &Service) -> Resources {
        let used = self
            .per_node
            .get(node.id.as_str())
            .copied()
            .unwrap_or_default();
        let own = self.own(node, service) as i64;
        Resources {
            nano_cpus: node.resources.nano_cpus - used.nano_cpus
                + own * service.reservations.nano_cpus,
            memory_bytes: node.resources.memory_bytes - used.memory_bytes
                + own * service.reservations.memory_bytes,
        }
    }

    /// Another service's task on `node` holds one of `service`'s host ports.
    fn port_taken(&self, node: &Node, service: &Service) -> Option<&'a HostPort> {
        self.ports_per_node
            .get(node.id.as_str())?
            .iter()
            .find(|(port, owner)| *owner != service.id && service.host_ports.contains(port))
            .map(|(port, _)| *port)
    }

    /// How many tasks of `service` `node` can take: by free CPU, memory and generic
    /// resources, `max_replicas_per_node` and host ports.
    pub fn slots(&self, node: &Node, service: &Service) -> u64 {
        let by = |free: i64, each: i64| {
            if each > 0 {
                u64::try_from(free.max(0) / each).unwrap_or(0)
            } else {
                u64::MAX
            }
        };
        let free = self.free_for(node, service);
        let mut slots = by(free.nano_cpus, service.reservations.nano_cpus)
            .min(by(free.memory_bytes, service.reservations.memory_bytes));
        let own = self.own(node, service) as i64;
        for (kind, each) in &service.generic_reservations {
            let offered = node.generic_resources.get(kind).copied().unwrap_or(0);
            let used = self
                .generic_per_node
                .get(node.id.as_str())
                .and_then(|g| g.get(kind.as_str()))
                .copied()
                .unwrap_or(0);
            slots = slots.min(by(offered - used + own * each, *each));
        }
        if service.max_replicas_per_node > 0 {
            slots = slots.min(service.max_replicas_per_node);
        }
        if !service.host_ports.is_empty() {
            slots = slots.min(u64::from(self.port_taken(node, service).is_none()));
        }
        slots
    }
}

/// Whether `node` passes the service's constraints, platforms and plugin needs.
pub fn eligible(service: &Service, constraints: &Constraints, node: &Node) -> bool {
    constraints.allow(node)
        && platform_allows(&service.platforms, &node.platform)
        && has_plugins(service, node)
}

/// SwarmKit's plugin filter (`PluginFilter`) for what the API shows: the volume drivers of
/// the service's mounts and its log driver. As in SwarmKit, a node that reports no plugins
/// of a kind passes for that kind (older Engines report none), and log driver `none` needs
/// no plugin.
fn has_plugins(service: &Service, node: &Node) -> bool {
    let has = |kind: &str, name: &str| {
        let of_kind = || {
            node.plugins
                .iter()
                .filter(|p| p.kind.eq_ignore_ascii_case(kind))
        };
        of_kind().next().is_none() || of_kind().any(|p| same_plugin(&p.name, name))
    };
    let volumes_ok = service
        .mounts
        .iter()
        .filter(|m| m.kind == "volume" && !m.driver.is_empty() && m.driver != "local")
        .all(|m| has("Volume", &m.driver));
    let log_ok = service
        .log_driver
        .as_deref()
        .is_none_or(|d| d == "none" || has("Log", d));
    volumes_ok && log_ok
}

fn cpus(nano: i64) -> String {
    format!("{:.2} CPU", nano as f64 / 1e9)
}

fn mib(bytes: i64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

/// "w1, w2, w3" or "w1, w2, w3, w4, w5 and 12 more".
fn names(hosts: &[&Node]) -> String {
    let shown: Vec<&str> = hosts.iter().take(5).map(|h| h.hostname.as_str()).collect();
    match hosts.len().saturating_sub(5) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// What decides which workers pass [`eligible`] for a service: services with the same key
/// share one scan of the workers (in a big swarm most services have the same few).
pub fn eligibility_key(service: &Service) -> String {
    if service.constraints.is_empty()
        && service.platforms.is_empty()
        && service.mounts.is_empty()
        && service.log_driver.is_none()
    {
        // Most services: no formatting needed.
        return String::new();
    }
    let drivers: Vec<&str> = service
        .mounts
        .iter()
        .filter(|m| m.kind == "volume")
        .map(|m| m.driver.as_str())
        .collect();
    format!(
        "{:?}|{:?}|{drivers:?}|{:?}",
        service.constraints, service.platforms, service.log_driver
    )
}

/// The workers among `workers` that pass [`eligible`] for `service`.
pub fn eligible_workers<'a>(
    service: &Service,
    constraints: &Constraints,
    workers: &[&'a Node],
) -> Vec<&'a Node> {
    workers
        .iter()
        .copied()
        .filter(|w| eligible(service, constraints, w))
        .collect()
}

/// Whether workers can take every task of `service` once managers are excluded: `Ok`
/// with a summary naming the eligible workers, or `Err` with the numbers that say why not.
/// `hosts` are the eligible workers ([`eligible_workers`]) out of `workers` Ready, Active
/// ones.
pub fn capacity(
    service: &Service,
    hosts: &[&Node],
    workers: usize,
    usage: &Usage,
) -> Result<String, String> {
    if hosts.is_empty() {
        return Err(format!(
            "No Ready, Active worker satisfies its other constraints {:?}{}{}: {} Ready, Active worker(s) in the swarm.",
            service.constraints,
            if service.platforms.is_empty() { "" } else { ", platforms" },
            if service.mounts.iter().any(|m| !m.driver.is_empty() && m.driver != "local") || service.log_driver.is_some() {
                " and plugins"
            } else {
                ""
            },
            workers
        ));
    }
    let Some(need) = service.concurrent_tasks() else {
        return Ok(format!(
            "{} eligible worker(s): {}",
            hosts.len(),
            names(hosts)
        ));
    };
    // Summed lazily: in a big swarm the first few workers usually settle it.
    let mut room: u64 = 0;
    for host in hosts {
        room = room.saturating_add(usage.slots(host, service));
        if room >= need {
            return Ok(format!(
                "{} eligible worker(s), room for the {need} task(s): {}",
                hosts.len(),
                names(hosts)
            ));
        }
    }
    let res = service.reservations;
    let mut why = format!("{need} task(s)");
    if !res.is_zero() {
        why.push_str(&format!(
            " reserving {} and {} each",
            cpus(res.nano_cpus),
            mib(res.memory_bytes)
        ));
    }
    for (kind, n) in &service.generic_reservations {
        why.push_str(&format!(", {n} {kind} each"));
    }
    if service.max_replicas_per_node > 0 {
        why.push_str(&format!(
            ", at most {} per node",
            service.max_replicas_per_node
        ));
    }
    if !service.host_ports.is_empty() {
        let ports: Vec<String> = service
            .host_ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect();
        why.push_str(&format!(
            ", one per node for its host-mode port(s) {}",
            ports.join(", ")
        ));
    }
    let free: Vec<String> = hosts
        .iter()
        .take(10)
        .copied()
        .map(|h| {
            let f = usage.free_for(h, service);
            let mut line = format!(
                "{} {} / {} free, {} slot(s)",
                h.hostname,
                cpus(f.nano_cpus),
                mib(f.memory_bytes),
                usage.slots(h, service)
            );
            if let Some(port) = usage.port_taken(h, service) {
                line.push_str(&format!(
                    ", port {}/{} held by another service",
                    port.port, port.protocol
                ));
            }
            line
        })
        .collect();
    Err(format!(
        "Workers cannot host {why}: the {} eligible worker(s) have room for {room} ({}).",
        hosts.len(),
        free.join("; ")
    ))
}

/// Why promoting `candidate` would harm a service kept off managers: it runs a task with
/// node-local data there (the task would move and leave the data behind), or no other
/// worker could host the service (by constraints, platforms or capacity). `None` when it
/// would not.
pub fn strands(snapshot: &Snapshot, policy: &PlacementPolicy, candidate: &Node) -> Option<String> {
    let services: HashMap<&str, &Service> = snapshot
        .services
        .iter()
        .map(|s| (s.id.as_str(), s))
        .collect();
    let on_candidate: HashSet<&str> = snapshot
        .tasks
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(candidate.id.as_str()))
        .map(|t| t.service_id.as_str())
        .collect();
    let usage = Usage::of(snapshot, &services);
    let others: Vec<&Node> = ready_workers(snapshot)
        .into_iter()
        .filter(|w| w.id != candidate.id)
        .collect();
    let mut eligible: HashMap<String, Vec<&Node>> = HashMap::new();
    snapshot.services.iter().find_map(|service| {
        let constraints = Constraints::parse(&service.constraints);
        if !constraints.exclude_managers() || !constraints.allow(candidate) {
            return None;
        }
        if on_candidate.contains(service.id.as_str()) {
            let data = node_local_data(service, policy);
            if !data.is_empty() {
                let what: Vec<String> = data.iter().map(ToString::to_string).collect();
                return Some(format!(
                    "{} runs there with node-local data ({}): as a manager the node sheds the task and the data stays behind",
                    service.name,
                    what.join("; ")
                ));
            }
        }
        // One scan of the workers per eligibility key, as in the placement plan.
        let hosts = eligible
            .entry(eligibility_key(service))
            .or_insert_with(|| eligible_workers(service, &constraints, &others));
        capacity(service, hosts, others.len(), &usage)
            .err()
            .map(|why| format!("{} would be stranded: {why}", service.name))
    })
}
