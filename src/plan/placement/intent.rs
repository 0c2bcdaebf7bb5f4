//! Reading the user's intent from a service: its labels (spelled the way people spell
//! booleans), its constraints (a pin to managers is a choice, not a violation) and
//! swarm-warden's policy.

use std::fmt;

use crate::config::Policy;
use crate::model::{Node, Platform, Role, Service, ServiceMode, Snapshot};
use crate::plan::constraint::{platform_allows, Constraints};

/// Service label that lets a service run on managers.
pub const ALLOW_MANAGERS_LABEL: &str = "swarm-warden.allow-managers";
/// Service label that marks swarm-warden's own service.
pub const SELF_LABEL: &str = "swarm-warden.self";
/// Service label that says where the service's data may go: `disposable` (it may be left
/// behind) or `shared` (its volumes reach every node); either lets placement move it.
pub const DATA_LABEL: &str = "swarm-warden.data";

/// Why a service may run on managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    /// swarm-warden's own service: it must run on a manager.
    SwarmWarden,
    /// `placement.include` is set and does not select it.
    NotIncluded,
    /// `placement.exclude` selects it.
    Excluded,
    /// A global service or global job, with `placement.exempt_global`.
    Global,
    /// Its own constraint selects managers only (`node.role == manager`).
    PinnedByRole,
    /// No worker, present or new, can satisfy its constraints and platforms: it is pinned
    /// to managers by hostname, node ID or a label only managers carry.
    PinnedToManagers {
        /// The constraints, as written.
        constraints: Vec<String>,
    },
    /// It mounts the Docker socket: tools that read the swarm (Traefik's swarm provider,
    /// Portainer, Swarmpit) need a manager's API, and on a worker they fail.
    DockerSocket,
    /// `swarm-warden.allow-managers` reads as true.
    AllowManagersLabel {
        /// The value as written (`true`, `True`, `1`, ...).
        value: String,
    },
}

impl Exemption {
    /// A stable code for machines (the JSON report's `reason_code`).
    pub fn code(&self) -> &'static str {
        match self {
            Exemption::SwarmWarden => "swarm-warden",
            Exemption::NotIncluded => "not-included",
            Exemption::Excluded => "excluded",
            Exemption::Global => "global",
            Exemption::PinnedByRole => "pinned-by-role",
            Exemption::PinnedToManagers { .. } => "pinned-to-managers",
            Exemption::DockerSocket => "docker-socket",
            Exemption::AllowManagersLabel { .. } => "allow-managers-label",
        }
    }
}

impl fmt::Display for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exemption::SwarmWarden => f.write_str("swarm-warden itself (it must run on a manager)"),
            Exemption::NotIncluded => f.write_str("not selected by placement.include"),
            Exemption::Excluded => f.write_str("excluded by placement.exclude"),
            Exemption::Global => f.write_str(
                "global service: runs on every node, managers included (placement.exempt_global)",
            ),
            Exemption::PinnedByRole => f.write_str("pinned to managers by its own constraint"),
            Exemption::PinnedToManagers { constraints } => write!(
                f,
                "pinned to managers by its own constraints {constraints:?}: no worker can satisfy them"
            ),
            Exemption::DockerSocket => f.write_str(
                "mounts the Docker socket: it may need a manager's API (Traefik, Portainer, Swarmpit); add the constraint yourself if it only talks to its own node",
            ),
            Exemption::AllowManagersLabel { value } => {
                write!(f, "labelled {ALLOW_MANAGERS_LABEL}={value}")
            }
        }
    }
}

/// A boolean as Docker reads one (Go's `strconv.ParseBool`: `1`, `t`, `true`, `0`, `f`,
/// `false`), without regard to case, plus YAML 1.1's `yes`/`no`/`on`/`off` that compose
/// files carry. `None` for anything else.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Some(true),
        "0" | "f" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A service label as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelValue<'a> {
    /// Not set.
    Unset,
    /// Set to this value.
    Set(&'a str),
}

impl<'a> LabelValue<'a> {
    /// The service label `key`.
    pub fn of(service: &'a Service, key: &str) -> Self {
        service
            .labels
            .get(key)
            .map_or(LabelValue::Unset, |v| LabelValue::Set(v.as_str()))
    }

    /// As a boolean: `Ok(None)` when unset, `Err(value)` when it is not one.
    pub fn boolean(&self) -> Result<Option<bool>, &'a str> {
        match self {
            LabelValue::Unset => Ok(None),
            LabelValue::Set(v) => parse_bool(v).map(Some).ok_or(v),
        }
    }
}

/// A `swarm-warden.*` service label whose value cannot be read: reported, and the service
/// left alone (neither exempt nor moved) until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableLabel {
    /// The label.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// What values it takes.
    pub allowed: &'static str,
}

/// Labels swarm-warden reads on services that were set on the containers instead
/// (`--container-label`, compose `labels:` instead of `deploy.labels:`), and so mean nothing.
pub fn container_only_labels(service: &Service) -> Vec<(String, String)> {
    service
        .container_labels
        .iter()
        .filter(|(k, _)| k.starts_with("swarm-warden.") && !service.labels.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Why the service may run on managers by policy, role constraint or label, or why its
/// labels cannot be read, or neither. (Pins by hostname, ID or label: [`pin`].)
pub fn exemption(
    service: &Service,
    constraints: &Constraints,
    policy: &Policy,
) -> Result<Option<Exemption>, UnreadableLabel> {
    let p = &policy.placement;
    let is_self = LabelValue::of(service, SELF_LABEL).boolean() == Ok(Some(true));
    if is_self || service.image.contains("swarm-warden") {
        return Ok(Some(Exemption::SwarmWarden));
    }
    if !p.include.is_empty() && !p.include.selects(&service.name, &service.labels) {
        return Ok(Some(Exemption::NotIncluded));
    }
    if p.exclude.selects(&service.name, &service.labels) {
        return Ok(Some(Exemption::Excluded));
    }
    if p.exempt_global && matches!(service.mode, ServiceMode::Global | ServiceMode::GlobalJob) {
        return Ok(Some(Exemption::Global));
    }
    if constraints.pinned_to_managers() {
        return Ok(Some(Exemption::PinnedByRole));
    }
    let allow = LabelValue::of(service, ALLOW_MANAGERS_LABEL);
    match allow.boolean() {
        Ok(Some(true)) => {
            return Ok(Some(Exemption::AllowManagersLabel {
                value: match allow {
                    LabelValue::Set(v) => v.to_owned(),
                    LabelValue::Unset => String::new(),
                },
            }))
        }
        Ok(_) => {}
        Err(value) => {
            return Err(UnreadableLabel {
                key: ALLOW_MANAGERS_LABEL,
                value: value.to_owned(),
                allowed: "true or false (also 1/0, t/f, yes/no, on/off; any case)",
            })
        }
    }
    if super::data::mounts_docker_socket(service) {
        return Ok(Some(Exemption::DockerSocket));
    }
    if let LabelValue::Set(v) = LabelValue::of(service, DATA_LABEL) {
        if !v.eq_ignore_ascii_case("disposable") && !v.eq_ignore_ascii_case("shared") {
            return Err(UnreadableLabel {
                key: DATA_LABEL,
                value: v.to_owned(),
                allowed: "disposable or shared",
            });
        }
    }
    Ok(None)
}

/// [`Exemption::PinnedToManagers`] when no worker can ever run the service; called for
/// services that some manager can run (so not for one whose constraints match no node).
pub fn pin(service: &Service, constraints: &Constraints, snapshot: &Snapshot) -> Option<Exemption> {
    pinned_to_managers(service, constraints, snapshot).then(|| Exemption::PinnedToManagers {
        constraints: service.constraints.clone(),
    })
}

/// No worker can ever run it while a manager can: none of the swarm's workers (in any state) satisfies its
/// constraints and platforms, and neither would a new worker with no labels — so it is
/// held to managers by hostname, node ID or a label only managers carry. A swarm without
/// workers decides on the new worker alone, so "no workers yet" is not mistaken for a pin.
fn pinned_to_managers(service: &Service, constraints: &Constraints, snapshot: &Snapshot) -> bool {
    if service.constraints.is_empty() && service.platforms.is_empty() {
        return false;
    }
    let fits = |n: &Node| constraints.allow(n) && platform_allows(&service.platforms, &n.platform);
    let mut workers = snapshot.nodes.iter().filter(|n| !n.is_manager());
    if workers.any(fits) {
        return false;
    }
    !fits(&new_worker(snapshot))
}

/// A worker as it would join: no labels, no name a constraint could pick, the platform
/// most managers have.
fn new_worker(snapshot: &Snapshot) -> Node {
    let platform = snapshot
        .nodes
        .iter()
        .find(|n| n.is_manager())
        .map(|n| n.platform.clone())
        .unwrap_or_else(|| Platform {
            os: "linux".into(),
            architecture: "x86_64".into(),
        });
    Node {
        role: Role::Worker,
        platform,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_read_the_way_docker_and_compose_write_them() {
        for yes in ["true", "True", "TRUE", "1", "t", "yes", "On", " true "] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["false", "False", "0", "f", "no", "off"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        for odd in ["", "ture", "2", "enabled"] {
            assert_eq!(parse_bool(odd), None, "{odd}");
        }
    }

    #[test]
    fn only_swarm_warden_labels_set_on_containers_alone_are_reported() {
        let mut s = Service::default();
        s.container_labels
            .insert(ALLOW_MANAGERS_LABEL.into(), "true".into());
        s.container_labels.insert("app".into(), "x".into());
        assert_eq!(
            container_only_labels(&s),
            vec![(ALLOW_MANAGERS_LABEL.to_owned(), "true".to_owned())]
        );
        s.labels.insert(ALLOW_MANAGERS_LABEL.into(), "true".into());
        assert!(container_only_labels(&s).is_empty());
    }
}
