//! A swarm of any size generated from what a real lab's Engine answered
//! ([`super::capture`]): every node, service and task is a captured one with its IDs,
//! names, addresses and placement rewritten, so its JSON has exactly the Engine's shape.

use std::path::Path;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::{LabError, Result};

/// How big a swarm to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Managers (the first is the leader, and the node the client talks to).
    pub managers: usize,
    /// Nodes in all, managers included.
    pub nodes: usize,
    /// Replicated services.
    pub services: usize,
    /// Running tasks in all, spread evenly over the services and round-robin over the
    /// nodes (managers too, as in a swarm that does not drain them; workers only for a
    /// service constrained to them).
    pub tasks: usize,
}

impl Size {
    /// Swarm2k (2016): 2,384 nodes and 95,000 tasks on 3 managers, rounded up, with
    /// 10,000 services.
    pub const SWARM2K: Size = Size {
        managers: 3,
        nodes: 2_400,
        services: 10_000,
        tasks: 100_000,
    };
}

/// The captured answers (see [`super::capture::ENDPOINTS`]).
#[derive(Debug, Clone)]
pub struct Fixture {
    version: Value,
    info: Value,
    nodes: Vec<Value>,
    services: Vec<Value>,
    tasks: Vec<Value>,
    configs: Vec<Value>,
}

impl Fixture {
    /// Reads a capture folder.
    ///
    /// # Errors
    /// A file is missing or is not the JSON its endpoint answers (an object for
    /// `/version` and `/info`, a list otherwise).
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |file: &str| -> Result<Value> {
            let path = dir.join(file);
            let text = std::fs::read(&path).map_err(LabError::io("read", &path))?;
            serde_json::from_slice(&text)
                .map_err(|e| LabError::Usage(format!("{}: not JSON: {e}", path.display())))
        };
        let list = |file: &str| -> Result<Vec<Value>> {
            match read(file)? {
                Value::Array(items) => Ok(items),
                _ => Err(LabError::Usage(format!(
                    "{}: expected a JSON list",
                    dir.join(file).display()
                ))),
            }
        };
        Ok(Self {
            version: read("version.json")?,
            info: read("info.json")?,
            nodes: list("nodes.json")?,
            services: list("services.json")?,
            tasks: list("tasks.json")?,
            configs: list("configs.json")?,
        })
    }
}

/// One generated task, by index into the swarm's services and nodes.
#[derive(Debug, Clone, Copy)]
pub(super) struct TaskRow {
    pub service: u32,
    pub node: u32,
    pub slot: u32,
}

/// A generated swarm (see the module).
#[derive(Debug)]
pub struct Swarm {
    pub(super) version: Bytes,
    pub(super) info: Bytes,
    pub(super) nodes: Vec<Value>,
    pub(super) nodes_json: Bytes,
    pub(super) services: Vec<Value>,
    pub(super) services_json: Bytes,
    /// Per service: the index of its task template.
    pub(super) service_template: Vec<usize>,
    pub(super) task_templates: Vec<Value>,
    pub(super) tasks: Vec<TaskRow>,
    /// Each task's JSON, rendered once (~2 KB each): a request costs the replay a filter
    /// and a copy, so what a benchmark measures is the client, not the replay.
    pub(super) task_json: Vec<Box<[u8]>>,
    pub(super) configs: Vec<Value>,
}

/// A Docker-like ID: 25 lowercase base-36 characters, `kind` first.
fn object_id(kind: char, i: usize) -> String {
    let mut digits = Vec::new();
    let mut n = i;
    loop {
        digits.push(std::char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    let tail: String = digits.iter().rev().collect();
    format!("{kind}{tail:0>24}")
}

fn address(i: usize) -> String {
    format!("10.{}.{}.{}", 10 + i / 65_536, (i / 256) % 256, i % 256)
}

fn set(value: &mut Value, path: &[&str], new: Value) {
    let mut at = value;
    for key in &path[..path.len() - 1] {
        if !at.get(*key).is_some_and(Value::is_object) {
            at[*key] = json!({});
        }
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = new;
}

fn is_running(task: &Value) -> bool {
    task["Status"]["State"] == "running" && task["DesiredState"] == "running"
}

impl Swarm {
    /// Generates a swarm of `size` from `fixture`.
    ///
    /// # Errors
    /// `size` is empty or has more managers than nodes, or the capture lacks a manager, a
    /// worker, or a replicated service with a running task (the templates).
    pub fn generate(fixture: &Fixture, size: Size) -> Result<Self> {
        if size.managers == 0 || size.managers > size.nodes || size.services == 0 {
            return Err(LabError::Usage(format!(
                "a replay swarm needs 1 to {} managers and at least one service: {size:?}",
                size.nodes
            )));
        }
        let missing = |what: &str| LabError::Usage(format!("the capture has no {what}"));
        let manager = fixture
            .nodes
            .iter()
            .find(|n| n["ManagerStatus"]["Leader"] == true)
            .ok_or_else(|| missing("leader"))?;
        let worker = fixture
            .nodes
            .iter()
            .find(|n| n["Spec"]["Role"] == "worker")
            .ok_or_else(|| missing("worker"))?;
        let templates: Vec<(&Value, &Value)> = fixture
            .services
            .iter()
            .filter(|s| s["Spec"]["Mode"].get("Replicated").is_some())
            .filter_map(|s| {
                fixture
                    .tasks
                    .iter()
                    .find(|t| t["ServiceID"] == s["ID"] && is_running(t))
                    .map(|t| (s, t))
            })
            .collect();
        if templates.is_empty() {
            return Err(missing("replicated service with a running task"));
        }
        let nodes: Vec<Value> = (0..size.nodes)
            .map(|i| {
                let is_manager = i < size.managers;
                let mut node = if is_manager { manager } else { worker }.clone();
                let hostname = if is_manager {
                    format!("manager-{}", i + 1)
                } else {
                    format!("worker-{}", i + 1 - size.managers)
                };
                set(&mut node, &["ID"], json!(object_id('n', i)));
                set(&mut node, &["Description", "Hostname"], json!(hostname));
                set(&mut node, &["Status", "Addr"], json!(address(i)));
                if is_manager {
                    set(&mut node, &["ManagerStatus", "Leader"], json!(i == 0));
                    set(
                        &mut node,
                        &["ManagerStatus", "Addr"],
                        json!(format!("{}:2377", address(i))),
                    );
                }
                node
            })
            .collect();
        let services: Vec<Value> = (0..size.services)
            .map(|i| {
                let (template, _) = templates[i % templates.len()];
                let mut service = template.clone();
                let name = template["Spec"]["Name"].as_str().unwrap_or("service");
                set(&mut service, &["ID"], json!(object_id('s', i)));
                set(
                    &mut service,
                    &["Spec", "Name"],
                    json!(format!("{name}-{i}")),
                );
                service
            })
            .collect();
        let per_service = size.tasks / size.services;
        let extra = size.tasks % size.services;
        let mut tasks = Vec::with_capacity(size.tasks);
        let workers = size.nodes - size.managers;
        // A template kept off managers by its constraints places on workers only, as
        // SwarmKit would.
        let workers_only: Vec<bool> = templates
            .iter()
            .map(|(s, _)| {
                s["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
                    .as_array()
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            let c: String =
                                c.as_str().unwrap_or_default().split_whitespace().collect();
                            c == "node.role==worker" || c == "node.role!=manager"
                        })
                    })
            })
            .collect();
        for service in 0..size.services {
            let count = per_service + usize::from(service < extra);
            let on_workers = workers > 0 && workers_only[service % templates.len()];
            for slot in 1..=count {
                let node = if on_workers {
                    size.managers + tasks.len() % workers
                } else {
                    tasks.len() % size.nodes
                };
                tasks.push(TaskRow {
                    service: service as u32,
                    node: node as u32,
                    slot: slot as u32,
                });
            }
        }
        let leader = &nodes[0];
        let mut info = fixture.info.clone();
        set(
            &mut info,
            &["Name"],
            leader["Description"]["Hostname"].clone(),
        );
        set(&mut info, &["Swarm", "NodeID"], leader["ID"].clone());
        set(&mut info, &["Swarm", "NodeAddr"], json!(address(0)));
        set(&mut info, &["Swarm", "Nodes"], json!(size.nodes));
        set(&mut info, &["Swarm", "Managers"], json!(size.managers));
        set(
            &mut info,
            &["Swarm", "RemoteManagers"],
            Value::Array(
                nodes[..size.managers]
                    .iter()
                    .map(|n| json!({"NodeID": n["ID"], "Addr": n["ManagerStatus"]["Addr"]}))
                    .collect(),
            ),
        );
        let bytes = |v: &Value| Bytes::from(serde_json::to_vec(v).unwrap_or_default());
        let mut swarm = Self {
            version: bytes(&fixture.version),
            info: bytes(&info),
            nodes_json: bytes(&Value::Array(nodes.clone())),
            services_json: bytes(&Value::Array(services.clone())),
            nodes,
            services,
            service_template: (0..size.services).map(|i| i % templates.len()).collect(),
            task_templates: templates.iter().map(|(_, t)| (*t).clone()).collect(),
            tasks,
            task_json: Vec::new(),
            configs: fixture.configs.clone(),
        };
        swarm.task_json = swarm
            .tasks
            .iter()
            .enumerate()
            .map(|(i, row)| {
                serde_json::to_vec(&swarm.render_task(i, *row))
                    .unwrap_or_default()
                    .into_boxed_slice()
            })
            .collect();
        Ok(swarm)
    }

    /// The ID of task number `index`.
    pub(super) fn task_id(index: usize) -> String {
        object_id('t', index)
    }

    /// Nodes, services and tasks generated.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.nodes.len(), self.services.len(), self.tasks.len())
    }

    /// The task `row` as the Engine would list it.
    fn render_task(&self, index: usize, row: TaskRow) -> Value {
        let service = &self.services[row.service as usize];
        let template = &self.task_templates[self.service_template[row.service as usize]];
        let mut task = template.clone();
        set(&mut task, &["ID"], json!(object_id('t', index)));
        set(&mut task, &["ServiceID"], service["ID"].clone());
        set(
            &mut task,
            &["NodeID"],
            self.nodes[row.node as usize]["ID"].clone(),
        );
        set(&mut task, &["Slot"], json!(row.slot));
        set(
            &mut task,
            &["Status", "ContainerStatus", "ContainerID"],
            json!(format!("{:0>64}", object_id('c', index))),
        );
        task
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_docker_shaped_and_distinct() {
        assert_eq!(object_id('n', 0).len(), 25);
        assert_eq!(object_id('n', 35), format!("n{:0>24}", "z"));
        assert_ne!(object_id('t', 36), object_id('t', 1));
    }
}
