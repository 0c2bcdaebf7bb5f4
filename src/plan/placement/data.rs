//! Where a service's data lives: each mount is node-local (it stays on the node that ran
//! the task), shared (every node reaches it) or disposable (nothing worth keeping). A
//! service with node-local data is never moved by placement: SwarmKit reschedules a
//! replicated task on any eligible node after a spec update, and a local volume or a bind
//! path does not follow it — the task starts on an empty volume and the data stays behind.

use std::fmt;

use crate::config::PlacementPolicy;
use crate::model::{Mount, Service};

use super::intent::{LabelValue, DATA_LABEL};

/// Host paths that hold the host's own state, not a service's data: node_exporter, cAdvisor
/// and time-zone mounts read them on every node alike.
const SYSTEM_PATHS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/hostname",
    "/lib/modules",
];

/// The Docker socket: a service that mounts it talks to the Engine of its node.
pub const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

/// Filesystem types the `local` driver mounts over the network (`--opt type=nfs`):
/// every node that mounts the volume sees the same data.
pub(crate) const NETWORK_FS_TYPES: &[&str] =
    &["nfs", "nfs4", "cifs", "smb", "smb3", "ceph", "glusterfs"];

/// Where one mount's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// On the node that ran the task: a `local` volume, a bind mount, a volume of a driver
    /// not declared shared.
    NodeLocal,
    /// Reachable from every node: NFS/CIFS through the `local` driver, cluster (CSI)
    /// volumes, drivers in `placement.shared_volume_drivers`, watched EFS volumes.
    Shared,
    /// Nothing to keep: tmpfs, named pipes, anonymous volumes (new for every task), the
    /// image's own content, read-only host paths (nothing is written there), the host's
    /// own system paths.
    Disposable,
}

/// A mount with where its data lives and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountData {
    /// `volume`, `bind`, ...
    pub kind: String,
    /// Volume name or host path.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// The classification.
    pub locality: Locality,
    /// Why, for reports: "local volume", "bind mount of a host path", ...
    pub why: String,
}

impl fmt::Display for MountData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.as_str() {
            "bind" => write!(f, "bind mount {} -> {}", self.source, self.target),
            _ => write!(
                f,
                "volume {} ({}) at {}",
                self.source, self.why, self.target
            ),
        }
    }
}

/// Classifies one mount.
pub fn classify(mount: &Mount, policy: &PlacementPolicy) -> MountData {
    let (locality, why) = locality(mount, policy);
    MountData {
        kind: mount.kind.clone(),
        source: mount.source.clone(),
        target: mount.target.clone(),
        locality,
        why,
    }
}

fn locality(mount: &Mount, policy: &PlacementPolicy) -> (Locality, String) {
    match mount.kind.as_str() {
        "tmpfs" => return (Locality::Disposable, "tmpfs: in memory".into()),
        "npipe" => return (Locality::Disposable, "named pipe".into()),
        "image" => return (Locality::Disposable, "an image's content".into()),
        "cluster" => return (Locality::Shared, "cluster (CSI) volume".into()),
        "bind" => {
            let path = mount.source.trim_end_matches('/');
            return if SYSTEM_PATHS
                .iter()
                .chain(DOCKER_SOCKETS)
                .any(|p| path == *p || path.starts_with(&format!("{p}/")))
            {
                (Locality::Disposable, "the host's own system path".into())
            } else if mount.read_only {
                // Nothing is written there; on another node the path must exist, or the
                // task fails to start and the update is rolled back.
                (Locality::Disposable, "read-only host path".into())
            } else {
                (Locality::NodeLocal, "bind mount of a host path".into())
            };
        }
        _ => {}
    }
    if mount.source.is_empty() {
        return (
            Locality::Disposable,
            "anonymous volume: a new one for every task".into(),
        );
    }
    if mount
        .labels
        .contains_key(crate::plan::volumes::EFS_ID_LABEL)
    {
        return (Locality::Shared, "watched EFS volume".into());
    }
    let driver = if mount.driver.is_empty() {
        "local"
    } else {
        mount.driver.as_str()
    };
    if driver == "local" {
        let fs_type = mount
            .driver_options
            .get("type")
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_default();
        if NETWORK_FS_TYPES.contains(&fs_type.as_str()) {
            return (Locality::Shared, format!("local driver, type={fs_type}"));
        }
        return if mount.driver.is_empty() && mount.driver_options.is_empty() {
            // The spec names no driver: the volume is made (or was made beforehand, with
            // options the Swarm API does not show) on whichever node runs the task.
            (
                Locality::NodeLocal,
                "volume on the node (the service spec names no driver)".into(),
            )
        } else {
            (Locality::NodeLocal, "local volume".into())
        };
    }
    let declared = policy
        .shared_volume_drivers
        .iter()
        .any(|d| same_plugin(d, driver));
    if declared {
        (
            Locality::Shared,
            format!("driver {driver}, declared shared in placement.shared_volume_drivers"),
        )
    } else {
        (
            Locality::NodeLocal,
            format!("driver {driver}, not declared in placement.shared_volume_drivers"),
        )
    }
}

/// Plugin names as Docker compares them: `:latest` is implied.
pub fn same_plugin(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.strip_suffix(":latest").unwrap_or(s).to_ascii_lowercase();
    strip(a) == strip(b)
}

/// Whether the user said the service's data needs no node: `swarm-warden.data=disposable`
/// (it may be left behind), `swarm-warden.data=shared` (its volumes reach every node, e.g.
/// NFS volumes created beforehand on each node, whose options the Swarm API does not show)
/// or `placement.disposable`.
pub fn data_may_move(service: &Service, policy: &PlacementPolicy) -> bool {
    matches!(
        LabelValue::of(service, DATA_LABEL),
        LabelValue::Set(v) if v.eq_ignore_ascii_case("disposable") || v.eq_ignore_ascii_case("shared")
    ) || policy.disposable.selects(&service.name, &service.labels)
}

/// Whether the service mounts the Docker socket (it talks to its node's Engine).
pub fn mounts_docker_socket(service: &Service) -> bool {
    service
        .mounts
        .iter()
        .any(|m| m.kind == "bind" && DOCKER_SOCKETS.contains(&m.source.trim_end_matches('/')))
}

/// The service's mounts whose data would stay behind if its tasks moved to other nodes;
/// empty when there are none or the user said the data may move.
pub fn node_local_data(service: &Service, policy: &PlacementPolicy) -> Vec<MountData> {
    if data_may_move(service, policy) {
        return Vec::new();
    }
    service
        .mounts
        .iter()
        .map(|m| classify(m, policy))
        .filter(|m| m.locality == Locality::NodeLocal)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn mount(kind: &str, source: &str, driver: &str, opts: &[(&str, &str)]) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            target: "/data".into(),
            driver: driver.into(),
            driver_options: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: BTreeMap::new(),
            read_only: false,
        }
    }

    fn locality_of(m: &Mount) -> Locality {
        classify(m, &PlacementPolicy::default()).locality
    }

    #[test]
    fn local_volumes_and_bind_mounts_are_node_local() {
        assert_eq!(
            locality_of(&mount("volume", "promdata", "", &[])),
            Locality::NodeLocal
        );
        assert_eq!(
            locality_of(&mount("volume", "promdata", "local", &[])),
            Locality::NodeLocal
        );
        assert_eq!(
            locality_of(&mount(
                "volume",
                "data",
                "local",
                &[("type", "none"), ("o", "bind"), ("device", "/srv/data")]
            )),
            Locality::NodeLocal,
            "a local volume bound to a host folder stays on that host"
        );
        assert_eq!(
            locality_of(&mount("bind", "/srv/data", "", &[])),
            Locality::NodeLocal
        );
    }

    #[test]
    fn read_only_and_system_host_paths_are_not_data() {
        let mut ro = mount("bind", "/srv/config", "", &[]);
        ro.read_only = true;
        assert_eq!(locality_of(&ro), Locality::Disposable);
        for path in [
            "/etc/localtime",
            "/proc",
            "/sys/fs/cgroup",
            "/var/run/docker.sock",
        ] {
            assert_eq!(
                locality_of(&mount("bind", path, "", &[])),
                Locality::Disposable,
                "{path}"
            );
        }
        assert_eq!(
            locality_of(&mount("bind", "/procdata", "", &[])),
            Locality::NodeLocal,
            "a prefix of a name is not a system path"
        );
    }

    #[test]
    fn network_filesystems_cluster_volumes_and_declared_drivers_are_shared() {
        for fs in ["nfs", "NFS4", "cifs"] {
            assert_eq!(
                locality_of(&mount("volume", "v", "local", &[("type", fs)])),
                Locality::Shared,
                "{fs}"
            );
        }
        assert_eq!(
            locality_of(&mount("cluster", "v", "", &[])),
            Locality::Shared
        );
        assert_eq!(
            locality_of(&mount("volume", "v", "cloudstor:aws", &[])),
            Locality::Shared
        );
        assert_eq!(
            locality_of(&mount("volume", "v", "rexray/ebs", &[])),
            Locality::NodeLocal,
            "an undeclared driver is node-local: the safe side"
        );
    }

    #[test]
    fn tmpfs_and_anonymous_volumes_are_disposable() {
        assert_eq!(
            locality_of(&mount("tmpfs", "", "", &[])),
            Locality::Disposable
        );
        assert_eq!(
            locality_of(&mount("volume", "", "", &[])),
            Locality::Disposable
        );
    }

    #[test]
    fn a_disposable_label_or_policy_entry_releases_the_data() {
        let mut s = Service {
            name: "cache".into(),
            mounts: vec![mount("volume", "cachedata", "", &[])],
            ..Default::default()
        };
        let policy = PlacementPolicy::default();
        assert_eq!(node_local_data(&s, &policy).len(), 1);
        s.labels.insert(DATA_LABEL.into(), "Disposable".into());
        assert!(node_local_data(&s, &policy).is_empty());
        s.labels.insert(DATA_LABEL.into(), "shared".into());
        assert!(node_local_data(&s, &policy).is_empty());
        s.labels.clear();
        let mut policy = PlacementPolicy::default();
        policy.disposable.names = vec!["cach*".into()];
        assert!(node_local_data(&s, &policy).is_empty());
    }

    #[test]
    fn plugin_names_imply_latest() {
        assert!(same_plugin("rexray/ebs", "rexray/ebs:latest"));
        assert!(!same_plugin("rexray/ebs", "rexray/efs"));
    }
}
