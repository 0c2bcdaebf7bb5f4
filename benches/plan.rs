//! Planner benchmark: one plan for a synthetic swarm of 2,000 nodes, 10,000 services and
//! 100,000 tasks (all tasks in the snapshot, though observation fetches only those on
//! managers). Goal: under 50 ms per plan. Run with `cargo bench --bench plan`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use swarm_warden::config::Policy;
use swarm_warden::model::{
    Availability, Control, LocalNode, ManagerStatus, Node, NodeState, Platform, Reachability,
    Resources, Role, Service, ServiceMode, Snapshot, Task,
};
use swarm_warden::plan::{plan, Memory};

const NODES: usize = 2_000;
const MANAGERS: usize = 5;
const SERVICES: usize = 10_000;
const TASKS: usize = 100_000;
const GOAL: Duration = Duration::from_millis(50);

fn snapshot(now: SystemTime) -> Snapshot {
    let long_ago = now - Duration::from_secs(3600);
    let nodes: Vec<Node> = (0..NODES)
        .map(|i| {
            let manager = i < MANAGERS;
            // One dead manager, so the planner has real work to do.
            let dead = i == MANAGERS - 1;
            Node {
                id: format!("node{i:05}xxxxxxxxxxxxxxxxxx"),
                version: 10 + i as u64,
                hostname: format!("host-{i}"),
                spec_name: None,
                role: if manager { Role::Manager } else { Role::Worker },
                availability: Availability::Active,
                state: if dead {
                    NodeState::Down
                } else {
                    NodeState::Ready
                },
                message: String::new(),
                addr: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                manager: manager.then_some(ManagerStatus {
                    leader: i == 0,
                    reachability: if dead {
                        Reachability::Unreachable
                    } else {
                        Reachability::Reachable
                    },
                    addr: format!("10.{}.{}.{}:2377", i / 65536, (i / 256) % 256, i % 256),
                }),
                labels: BTreeMap::from([("zone".to_owned(), format!("zone-{}", i % 3))]),
                updated_at: Some(long_ago),
                platform: Platform {
                    os: "linux".to_owned(),
                    architecture: "x86_64".to_owned(),
                },
                resources: Resources {
                    nano_cpus: 8_000_000_000,
                    memory_bytes: 32 << 30,
                },
                engine_labels: BTreeMap::new(),
                ..Default::default()
            }
        })
        .collect();
    let services: Vec<Service> = (0..SERVICES)
        .map(|i| Service {
            id: format!("svc{i:06}xxxxxxxxxxxxxxxxx"),
            version: 100 + i as u64,
            name: format!("stack{}_service{i}", i % 50),
            labels: BTreeMap::from([(
                "com.docker.stack.namespace".to_owned(),
                format!("stack{}", i % 50),
            )]),
            mode: if i % 20 == 0 {
                ServiceMode::Global
            } else {
                ServiceMode::Replicated { replicas: 10 }
            },
            image: "registry.example/app:1".to_owned(),
            reservations: if i % 4 == 0 {
                Resources {
                    nano_cpus: 100_000_000,
                    memory_bytes: 64 << 20,
                }
            } else {
                Resources::default()
            },
            max_replicas_per_node: 0,
            platforms: Vec::new(),
            update: None,
            mounts: Vec::new(),
            constraints: if i % 3 == 0 {
                vec!["node.role != manager".to_owned()]
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .collect();
    let tasks: Vec<Task> = (0..TASKS)
        .map(|i| Task {
            id: format!("task{i:07}xxxxxxxxxxxxxxx"),
            service_id: services[i % SERVICES].id.clone(),
            node_id: Some(nodes[i % NODES].id.clone()),
            state: "running".to_owned(),
        })
        .collect();
    Snapshot {
        observed_at: now,
        local: LocalNode {
            node_id: nodes[0].id.clone(),
            addr: nodes[0].addr.clone(),
        },
        control: Control::Leader,
        nodes,
        services,
        tasks,
        telemetry: Vec::new(),
        runbooks: Vec::new(),
        runbook_problems: Default::default(),
        placement_records: Default::default(),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run once then.
    let iterations = if std::env::args().any(|a| a == "--bench") {
        50
    } else {
        1
    };
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let snap = snapshot(now);
    let policy = Policy::default();
    let mut memory = Memory::default();
    memory.observe(&snap);
    let mut times = Vec::with_capacity(iterations);
    let mut actions = 0;
    for _ in 0..iterations {
        let start = Instant::now();
        let p = plan(&snap, &policy, &memory, now);
        times.push(start.elapsed());
        actions = p.actions.len();
        std::hint::black_box(p);
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "plan: {NODES} nodes, {SERVICES} services, {TASKS} tasks -> {actions} action(s): median {:.2} ms, worst {:.2} ms over {iterations} runs (goal < {} ms)",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        GOAL.as_millis()
    );
    if median > GOAL {
        eprintln!("plan benchmark: median {median:?} is over the {GOAL:?} goal");
        std::process::exit(1);
    }
}
