//! Docker Engine API types -> the planner's plain model.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bollard::models;

use crate::model::{
    Availability, EnginePlugin, HostPort, ManagerStatus, Mount, Node, NodeState, Platform,
    Reachability, Resources, Role, Service, ServiceMode, Task, UpdateState, UpdateStatus,
};

pub(super) fn node(n: &models::Node) -> Node {
    let spec = n.spec.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    Node {
        id: n.id.clone().unwrap_or_default(),
        version: version(n.version.as_ref()),
        hostname: n
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .unwrap_or_default(),
        spec_name: spec.name,
        role: match spec.role {
            Some(models::NodeSpecRoleEnum::MANAGER) => Role::Manager,
            _ => Role::Worker,
        },
        availability: match spec.availability {
            Some(models::NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
            Some(models::NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
            _ => Availability::Active,
        },
        state: match status.state {
            Some(models::NodeState::READY) => NodeState::Ready,
            Some(models::NodeState::DOWN) => NodeState::Down,
            Some(models::NodeState::DISCONNECTED) => NodeState::Disconnected,
            _ => NodeState::Unknown,
        },
        message: status.message.unwrap_or_default(),
        addr: status.addr.unwrap_or_default(),
        manager: n.manager_status.as_ref().map(|m| ManagerStatus {
            leader: m.leader.unwrap_or(false),
            reachability: match m.reachability {
                Some(models::Reachability::REACHABLE) => Reachability::Reachable,
                Some(models::Reachability::UNREACHABLE) => Reachability::Unreachable,
                _ => Reachability::Unknown,
            },
            addr: m.addr.clone().unwrap_or_default(),
        }),
        labels: labels(spec.labels),
        updated_at: n.updated_at.as_deref().and_then(timestamp),
        platform: n
            .description
            .as_ref()
            .and_then(|d| d.platform.as_ref())
            .map(platform)
            .unwrap_or_default(),
        resources: n
            .description
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .map(resources)
            .unwrap_or_default(),
        engine_labels: labels(
            n.description
                .as_ref()
                .and_then(|d| d.engine.as_ref())
                .and_then(|e| e.labels.clone()),
        ),
        generic_resources: generic(
            n.description
                .as_ref()
                .and_then(|d| d.resources.as_ref())
                .and_then(|r| r.generic_resources.as_ref()),
        ),
        plugins: n
            .description
            .as_ref()
            .and_then(|d| d.engine.as_ref())
            .and_then(|e| e.plugins.as_ref())
            .map(|plugins| {
                plugins
                    .iter()
                    .map(|p| EnginePlugin {
                        kind: p.typ.clone().unwrap_or_default(),
                        name: p.name.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Generic resources by kind: a discrete resource's value, or how many named resources of
/// that kind there are (SwarmKit counts both the same way when it schedules).
fn generic(resources: Option<&models::GenericResources>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for r in resources.into_iter().flatten() {
        if let Some(d) = &r.discrete_resource_spec {
            *out.entry(d.kind.clone().unwrap_or_default()).or_default() += d.value.unwrap_or(0);
        }
        if let Some(n) = &r.named_resource_spec {
            *out.entry(n.kind.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    out
}

fn platform(p: &models::Platform) -> Platform {
    Platform {
        os: p.os.clone().unwrap_or_default(),
        architecture: p.architecture.clone().unwrap_or_default(),
    }
}

fn resources(r: &models::ResourceObject) -> Resources {
    Resources {
        nano_cpus: r.nano_cpus.unwrap_or(0),
        memory_bytes: r.memory_bytes.unwrap_or(0),
    }
}

pub(super) fn service(s: &models::Service) -> Service {
    let spec = s.spec.clone().unwrap_or_default();
    let hash = spec_hash(&spec);
    let mode = spec.mode.unwrap_or_default();
    let template = spec.task_template.unwrap_or_default();
    let placement = template.placement.unwrap_or_default();
    let count =
        |n: Option<i64>, default: u64| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(default);
    Service {
        id: s.id.clone().unwrap_or_default(),
        version: version(s.version.as_ref()),
        name: spec.name.unwrap_or_default(),
        labels: labels(spec.labels),
        mode: if mode.global.is_some() {
            ServiceMode::Global
        } else if let Some(job) = mode.replicated_job {
            ServiceMode::ReplicatedJob {
                max_concurrent: count(job.max_concurrent, 1),
            }
        } else if mode.global_job.is_some() {
            ServiceMode::GlobalJob
        } else {
            ServiceMode::Replicated {
                replicas: count(mode.replicated.and_then(|r| r.replicas), 1),
            }
        },
        constraints: placement.constraints.unwrap_or_default(),
        image: template
            .container_spec
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        mounts: template
            .container_spec
            .as_ref()
            .and_then(|c| c.mounts.clone())
            .unwrap_or_default()
            .iter()
            .map(mount)
            .collect(),
        reservations: template
            .resources
            .as_ref()
            .and_then(|r| r.reservations.as_ref())
            .map(resources)
            .unwrap_or_default(),
        generic_reservations: generic(
            template
                .resources
                .as_ref()
                .and_then(|r| r.reservations.as_ref())
                .and_then(|r| r.generic_resources.as_ref()),
        ),
        container_labels: labels(
            template
                .container_spec
                .as_ref()
                .and_then(|c| c.labels.clone()),
        ),
        host_ports: spec
            .endpoint_spec
            .as_ref()
            .and_then(|e| e.ports.as_ref())
            .into_iter()
            .flatten()
            .filter(|p| p.publish_mode == Some(models::EndpointPortConfigPublishModeEnum::HOST))
            .filter_map(|p| {
                Some(HostPort {
                    port: u32::try_from(p.published_port?).ok().filter(|p| *p > 0)?,
                    protocol: p
                        .protocol
                        .map(|p| p.to_string())
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "tcp".into()),
                })
            })
            .collect(),
        log_driver: template
            .log_driver
            .as_ref()
            .and_then(|l| l.name.clone())
            .filter(|n| !n.is_empty()),
        max_replicas_per_node: count(placement.max_replicas, 0),
        platforms: placement
            .platforms
            .unwrap_or_default()
            .iter()
            .map(platform)
            .collect(),
        update: s.update_status.as_ref().and_then(|u| {
            let state = match u.state? {
                models::ServiceUpdateStatusStateEnum::UPDATING => UpdateState::Updating,
                models::ServiceUpdateStatusStateEnum::PAUSED => UpdateState::Paused,
                models::ServiceUpdateStatusStateEnum::COMPLETED => UpdateState::Completed,
                models::ServiceUpdateStatusStateEnum::ROLLBACK_STARTED => {
                    UpdateState::RollbackStarted
                }
                models::ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED => {
                    UpdateState::RollbackPaused
                }
                models::ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => {
                    UpdateState::RollbackCompleted
                }
                models::ServiceUpdateStatusStateEnum::EMPTY => return None,
            };
            Some(UpdateStatus {
                state,
                message: u.message.clone().unwrap_or_default(),
                started_at: u.started_at.as_deref().and_then(timestamp),
            })
        }),
        spec_hash: hash,
    }
}

/// `v1:` and the SHA-256 (hex) of a service spec in canonical JSON (object keys sorted at
/// every level), so the same spec hashes the same whatever order its maps were read in.
/// Empty when the spec cannot be serialized: an empty hash never equals another (callers
/// check), so such a spec is never taken for one swarm-warden wrote.
pub fn spec_hash(spec: &models::ServiceSpec) -> String {
    use sha2::{Digest, Sha256};
    /// Feeds `v` to `hasher` as canonical JSON, piece by piece: no text is built and no
    /// key copied (at 10,000 services per reconcile the hash was a quarter of the
    /// observation's instructions). Keys and scalars are written as `serde_json` writes
    /// them compactly, which is what the `v1` format hashes.
    fn canonical(v: &serde_json::Value, hasher: &mut Sha256, scratch: &mut Vec<u8>) {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                hasher.update(b"{");
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        hasher.update(b",");
                    }
                    compact(key.as_str(), hasher, scratch);
                    hasher.update(b":");
                    canonical(item, hasher, scratch);
                }
                hasher.update(b"}");
            }
            serde_json::Value::Array(items) => {
                hasher.update(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        hasher.update(b",");
                    }
                    canonical(item, hasher, scratch);
                }
                hasher.update(b"]");
            }
            other => compact(other, hasher, scratch),
        }
    }
    /// `value` as `serde_json` writes it compactly (a string quoted and escaped).
    fn compact<T: serde::Serialize + ?Sized>(
        value: &T,
        hasher: &mut Sha256,
        scratch: &mut Vec<u8>,
    ) {
        scratch.clear();
        let _ = serde_json::to_writer(&mut *scratch, value);
        hasher.update(&scratch[..]);
    }
    let Ok(value) = serde_json::to_value(spec) else {
        return String::new();
    };
    let mut hasher = Sha256::new();
    canonical(&value, &mut hasher, &mut Vec::with_capacity(64));
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(67);
    hex.push_str("v1:");
    for b in digest.iter() {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

pub(super) fn task(t: &models::Task) -> Task {
    Task {
        id: t.id.clone().unwrap_or_default(),
        service_id: t.service_id.clone().unwrap_or_default(),
        node_id: t.node_id.clone(),
        state: t
            .status
            .as_ref()
            .and_then(|s| s.state)
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

pub(super) fn mount(m: &models::Mount) -> Mount {
    let volume = m.volume_options.clone().unwrap_or_default();
    let driver = volume.driver_config.unwrap_or_default();
    Mount {
        kind: m
            .typ
            .map(|t| t.to_string())
            .unwrap_or_else(|| "volume".into()),
        source: m.source.clone().unwrap_or_default(),
        target: m.target.clone().unwrap_or_default(),
        driver: driver.name.unwrap_or_default(),
        driver_options: labels(driver.options),
        labels: labels(volume.labels),
        read_only: m.read_only.unwrap_or(false),
    }
}

fn version(v: Option<&models::ObjectVersion>) -> u64 {
    v.and_then(|v| v.index).unwrap_or(0)
}

fn labels(l: Option<std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    l.unwrap_or_default().into_iter().collect()
}

/// An Engine timestamp (RFC 3339, up to nanoseconds). The zero time Docker uses for
/// "never" (`0001-01-01T00:00:00Z`) and unparsable values give `None`.
pub(super) fn timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text)
        .ok()
        .filter(|t| *t > SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn engine_timestamps_parse_with_nanoseconds_and_zero_means_none() {
        let t = timestamp("2026-11-26T18:17:44.768722123Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
            768_722_123
        );
        assert!(timestamp("2026-11-26T18:17:44Z").is_some());
        assert_eq!(timestamp("0001-01-01T00:00:00Z"), None);
        assert_eq!(timestamp("yesterday"), None);
        let _ = Duration::ZERO;
    }

    #[test]
    fn spec_hashes_ignore_map_order_and_see_every_change() {
        let spec = |labels: &[(&str, &str)], image: &str| -> models::ServiceSpec {
            serde_json::from_value(serde_json::json!({
                "Name": "web",
                "Labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::HashMap<_, _>>(),
                "TaskTemplate": {"ContainerSpec": {"Image": image}}
            }))
            .unwrap()
        };
        let a = spec(&[("a", "1"), ("b", "2"), ("c", "3")], "busybox");
        let b = spec(&[("c", "3"), ("a", "1"), ("b", "2")], "busybox");
        assert_eq!(spec_hash(&a), spec_hash(&b));
        assert_ne!(spec_hash(&a), spec_hash(&spec(&[("a", "1")], "busybox")));
        assert_ne!(
            spec_hash(&a),
            spec_hash(&spec(&[("a", "1"), ("b", "2"), ("c", "3")], "busybox:2"))
        );
        assert_eq!(spec_hash(&a).len(), 67);
    }

    /// The `v1` hash as first written: placement records in users' swarms carry hashes
    /// made this way, so any faster implementation must give exactly the same.
    fn reference_spec_hash(spec: &models::ServiceSpec) -> String {
        use sha2::{Digest, Sha256};
        fn canonical(v: &serde_json::Value, out: &mut String) {
            match v {
                serde_json::Value::Object(map) => {
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    out.push('{');
                    for (i, k) in keys.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&serde_json::Value::String(k.clone()).to_string());
                        out.push(':');
                        canonical(&map[k], out);
                    }
                    out.push('}');
                }
                serde_json::Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        canonical(item, out);
                    }
                    out.push(']');
                }
                other => out.push_str(&other.to_string()),
            }
        }
        let value = serde_json::to_value(spec).unwrap();
        let mut text = String::new();
        canonical(&value, &mut text);
        let hex: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("v1:{hex}")
    }

    #[test]
    fn spec_hashes_are_those_the_first_v1_implementation_wrote() {
        // Real specs as an Engine returns them (a stack with health check, limits,
        // labels, a volume, escaped strings), and edge cases.
        let captured: Vec<models::Service> =
            serde_json::from_str(include_str!("../../benches/fixtures/engine/services.json"))
                .unwrap();
        let mut specs: Vec<models::ServiceSpec> =
            captured.into_iter().filter_map(|s| s.spec).collect();
        assert!(specs.len() >= 3);
        specs.push(
            serde_json::from_value(serde_json::json!({
                "Name": "q\"uote\\d \u{e9}\u{1F600}\n",
                "Labels": {"z": "1", "a": "\t", "é": "x"},
                "TaskTemplate": {"ContainerSpec": {"Image": "i", "Args": ["-x", "1.5", ""]},
                                 "Resources": {"Limits": {"NanoCPUs": 1500000000, "MemoryBytes": 0}}},
                "Mode": {"Replicated": {"Replicas": 0}}
            }))
            .unwrap(),
        );
        specs.push(models::ServiceSpec::default());
        for spec in &specs {
            assert_eq!(spec_hash(spec), reference_spec_hash(spec), "{spec:?}");
        }
    }

    #[test]
    fn a_manager_node_converts_with_its_raft_status() {
        let raw: models::Node = serde_json::from_value(serde_json::json!({
            "ID": "abc", "Version": {"Index": 42},
            "UpdatedAt": "2026-11-26T18:17:44.1Z",
            "Spec": {"Role": "manager", "Availability": "active", "Labels": {"zone": "a"}},
            "Description": {"Hostname": "m1"},
            "Status": {"State": "down", "Message": "heartbeat failure", "Addr": "10.0.0.1"},
            "ManagerStatus": {"Leader": false, "Reachability": "unreachable", "Addr": "10.0.0.1:2377"}
        }))
        .unwrap();
        let n = node(&raw);
        assert_eq!(
            (n.id.as_str(), n.version, n.hostname.as_str()),
            ("abc", 42, "m1")
        );
        assert_eq!(n.role, Role::Manager);
        assert!(n.is_down_and_unreachable());
        assert_eq!(n.label("zone"), Some("a"));
        assert!(n.updated_at.is_some());
    }
}
