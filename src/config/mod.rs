//! The policy file: typed, every key defaulted, unknown keys rejected, and errors that say
//! `file:line:col`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod load;
mod prometheus;
mod values;

pub use load::ConfigError;
pub use prometheus::{Authorization, BasicAuth, PrometheusHttpConfig, TlsConfig};
use values::{
    humantime_serde, listen_addr, non_empty, optional_size, positive_duration, positive_number,
    positive_size, prometheus_url, zone_label,
};
pub use values::{ByteSize, ManagerCount};

/// Whether a part of swarm-warden acts, only reports, or is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Plan and carry out actions.
    #[default]
    Enforce,
    /// Plan and report; never act.
    Audit,
    /// Neither plan nor report.
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Off => "off",
        })
    }
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Manager health and quorum.
    pub managers: ManagerPolicy,
    /// Keeping workloads off manager nodes.
    pub placement: PlacementPolicy,
    /// Watching volume throughput (EFS burst credits).
    pub volumes: VolumesPolicy,
    /// The control loop itself.
    pub controller: ControllerPolicy,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpPolicy,
    /// One active replica at a time.
    pub lease: LeasePolicy,
}

/// Where the HTTP endpoints listen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPolicy {
    /// `IP:PORT`; empty: no HTTP server.
    #[serde(deserialize_with = "listen_addr::deserialize")]
    pub listen: String,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
        }
    }
}

/// The leader lease (defaults like Kubernetes leases). `renew` must be shorter than
/// `duration`: a holder that renews later than its lease lasts lets a second replica take
/// it while the first still acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, try_from = "LeaseFields")]
pub struct LeasePolicy {
    /// Whether replicas take a lease before acting (off: every replica acts).
    pub enabled: bool,
    /// Name of the Swarm config that holds it.
    pub name: String,
    /// How long a renewal holds.
    #[serde(with = "positive_duration")]
    pub duration: Duration,
    /// How often the holder renews.
    #[serde(with = "positive_duration")]
    pub renew: Duration,
    /// How often the others try to take it.
    #[serde(with = "positive_duration")]
    pub retry: Duration,
}

/// [`LeasePolicy`] as written, before the check across its fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LeaseFields {
    enabled: bool,
    name: String,
    #[serde(with = "positive_duration")]
    duration: Duration,
    #[serde(with = "positive_duration")]
    renew: Duration,
    #[serde(with = "positive_duration")]
    retry: Duration,
}

impl Default for LeaseFields {
    fn default() -> Self {
        let d = LeasePolicy::default();
        Self {
            enabled: d.enabled,
            name: d.name,
            duration: d.duration,
            renew: d.renew,
            retry: d.retry,
        }
    }
}

impl TryFrom<LeaseFields> for LeasePolicy {
    type Error = String;
    fn try_from(f: LeaseFields) -> Result<Self, String> {
        if f.renew >= f.duration {
            return Err(format!(
                "lease.renew ({}) must be shorter than lease.duration ({}): otherwise the lease lapses between renewals and a second replica can act at once (Kubernetes uses 10s and 15s)",
                humantime::format_duration(f.renew),
                humantime::format_duration(f.duration)
            ));
        }
        if f.name.is_empty() {
            return Err(
                "lease.name must not be empty: it names the Swarm config holding the lease".into(),
            );
        }
        Ok(Self {
            enabled: f.enabled,
            name: f.name,
            duration: f.duration,
            renew: f.renew,
            retry: f.retry,
        })
    }
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "swarm-warden-lease".into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// How managers are kept healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerPolicy {
    /// `enforce`, `audit` (report only) or `off`.
    pub mode: Mode,
    /// How many managers the swarm should have (odd: 3, 5 or 7).
    pub desired: ManagerCount,
    /// How long a manager must be Down and unreachable, without a break, to count as dead.
    #[serde(with = "positive_duration")]
    pub dead_after: Duration,
    /// No membership change this soon after the raft leader changed: SwarmKit marks every
    /// node `unknown` after an election until it hears from it again.
    #[serde(with = "humantime_serde")]
    pub leader_settle: Duration,
    /// Time between two membership changes, and how long a worker must have been Ready
    /// before it may be promoted.
    #[serde(with = "humantime_serde")]
    pub stabilization: Duration,
    /// Node label that promotions spread managers over (like an availability zone).
    pub spread_label: String,
    /// How long a membership change may take to show in the node list before it is
    /// reported failed.
    #[serde(with = "positive_duration")]
    pub convergence_timeout: Duration,
}

impl Default for ManagerPolicy {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            desired: ManagerCount::THREE,
            dead_after: Duration::from_secs(5 * 60),
            leader_settle: Duration::from_secs(45),
            stabilization: Duration::from_secs(30),
            spread_label: "zone".into(),
            convergence_timeout: Duration::from_secs(120),
        }
    }
}

/// How workloads are kept off managers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementPolicy {
    /// `enforce`, `audit` (report only) or `off`.
    pub mode: Mode,
    /// Most services updated per reconcile; each update completes before the next.
    pub max_updates_per_cycle: usize,
    /// Global services (monitoring agents) may run on managers.
    pub exempt_global: bool,
    /// When not empty, only services it selects are considered.
    pub include: Selector,
    /// Services it selects are exempt.
    pub exclude: Selector,
    /// How long a service's rolling update may take before it counts as failed and is
    /// rolled back.
    #[serde(with = "positive_duration")]
    pub update_timeout: Duration,
    /// Services whose node-local data (local volumes, bind mounts) may be left behind: the
    /// policy form of the `swarm-warden.data=disposable` service label.
    pub disposable: Selector,
    /// Volume drivers whose volumes every node reaches (the data follows the task), in
    /// addition to NFS/CIFS through the `local` driver and cluster (CSI) volumes. Any other
    /// driver counts as node-local. Default: Docker for AWS's `cloudstor:aws`.
    pub shared_volume_drivers: Vec<String>,
}

impl Default for PlacementPolicy {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            max_updates_per_cycle: 1,
            exempt_global: true,
            include: Selector::default(),
            exclude: Selector::default(),
            update_timeout: Duration::from_secs(300),
            disposable: Selector::default(),
            shared_volume_drivers: vec!["cloudstor:aws".into()],
        }
    }
}

/// Selects services by name (globs with `*` and `?`) or by label (`key` or `key=value`).
/// A service is selected when any name or any label entry matches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Selector {
    /// Service name globs.
    pub names: Vec<String>,
    /// `key` (present) or `key=value` service labels.
    pub labels: Vec<String>,
}

impl Selector {
    /// Whether the selector names nothing.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.labels.is_empty()
    }

    /// Whether a service with this name and these labels is selected.
    pub fn selects(&self, name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.names.iter().any(|g| glob_match(g, name))
            || self.labels.iter().any(|entry| match entry.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|actual| actual == v),
                None => labels.contains_key(entry.as_str()),
            })
    }
}

/// `*` matches any run of characters, `?` any one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// How volumes are watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumesPolicy {
    /// `enforce`, `audit` (report only) or `off`.
    pub mode: Mode,
    /// Prometheus HTTP API holding the volumes' CloudWatch metrics; empty = no telemetry.
    #[serde(deserialize_with = "prometheus_url::deserialize")]
    pub prometheus_url: String,
    /// TLS and authentication towards it.
    pub prometheus_http_config: PrometheusHttpConfig,
    /// PromQL for each quantity; `{fs}` is replaced by the file-system ID, `{node}` by the
    /// hostname of the node running the service's task.
    pub queries: VolumeQueries,
    /// How long a volume must be out of credits and near its permitted rate to count as
    /// throttled.
    #[serde(with = "humantime_serde")]
    pub throttled_for: Duration,
    /// Time to credit exhaustion below which credits are reported low (warning).
    #[serde(with = "humantime_serde")]
    pub credits_warning: Duration,
    /// ... and critical.
    #[serde(with = "humantime_serde")]
    pub credits_critical: Duration,
    /// Image name fragments of services that do not support NFS for their storage
    /// (Prometheus's own docs say NFS/EFS is unsupported).
    pub nfs_unsupported_images: Vec<String>,
    /// Volumes to watch.
    pub watch: Vec<WatchedVolume>,
    /// A runbook waits for the volume's service to carry the label
    /// `swarm-warden.approve=<run id>` before it changes anything.
    pub require_approval: bool,
    /// No new runbook for a volume this soon after its last run ended.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Attempts per runbook step before the run fails.
    pub step_attempts: u32,
    /// The `efs-padding` runbook.
    pub padding: PaddingPolicy,
    /// The `ebs-migration` runbook.
    pub migration: MigrationPolicy,
}

/// How `ebs-migration` moves data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationPolicy {
    /// Volume driver of the target (e.g. `cloudstor:aws` or `rexray/ebs`; `local` in the lab).
    pub driver: String,
    /// Driver options of the target (e.g. `backing: relocatable`, `size: 100`).
    pub options: std::collections::BTreeMap<String, String>,
    /// Whether the target driver attaches one volume to many nodes at once (an NFS-like
    /// driver). `false` (EBS, `local`): a service with more than one replica is not
    /// migrated — its replicas share the EFS volume, and a single-attach or node-local
    /// target cannot serve them all.
    pub shared_target: bool,
    /// The node label that names a node's availability zone, as a placement constraint
    /// writes it (`engine.labels.availability_zone` on Docker for AWS, or
    /// `node.labels.<key>`); empty: none. A target that is neither `local` nor shared is
    /// found by the service only in the zone the copy filled it in: with this label the
    /// swap pins the service to that zone, without it to the copy's node (see
    /// `runbook::pin`).
    #[serde(deserialize_with = "zone_label::deserialize")]
    pub zone_label: String,
    /// The target volume is named after the source with this suffix (not empty), then
    /// `-<the run's start, Unix seconds>`: a new volume per run.
    #[serde(deserialize_with = "non_empty::deserialize")]
    pub volume_suffix: String,
    /// Image with the `swarm-warden copy` command.
    pub image: String,
    /// How long the copy job may run.
    #[serde(with = "positive_duration")]
    pub copy_timeout: Duration,
    /// How long scaling the service down or up may take.
    #[serde(with = "positive_duration")]
    pub scale_timeout: Duration,
    /// How long the service must run on the new volume before the run succeeds.
    #[serde(with = "humantime_serde")]
    pub verify_for: Duration,
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        Self {
            driver: "local".into(),
            options: std::collections::BTreeMap::new(),
            shared_target: false,
            zone_label: String::new(),
            volume_suffix: "-ebs".into(),
            image: "swarm-warden:latest".into(),
            copy_timeout: Duration::from_secs(6 * 3600),
            scale_timeout: Duration::from_secs(300),
            verify_for: Duration::from_secs(120),
        }
    }
}

/// How `efs-padding` pads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaddingPolicy {
    /// Baseline throughput to reach, bytes per second (e.g. `10MiB`); empty: 125% of the
    /// current demand (the metered rate).
    #[serde(with = "optional_size")]
    pub target_baseline: Option<ByteSize>,
    /// Most padding one run may add (e.g. `500GiB`).
    pub max: ByteSize,
    /// Size of each padding file (above zero).
    #[serde(deserialize_with = "positive_size::deserialize")]
    pub file_size: ByteSize,
    /// Image with the `swarm-warden pad` command.
    pub image: String,
    /// Metered bytes per byte written: 1 on AWS; the lab's EFS model meters each byte
    /// `scale` times. Above zero.
    #[serde(deserialize_with = "positive_number::deserialize")]
    pub metered_per_byte: f64,
    /// How long the padding job may run.
    #[serde(with = "positive_duration")]
    pub job_timeout: Duration,
    /// How long the metered size may take to show the padding.
    #[serde(with = "positive_duration")]
    pub verify_timeout: Duration,
}

impl Default for PaddingPolicy {
    fn default() -> Self {
        Self {
            target_baseline: None,
            max: ByteSize::new(1 << 40),
            file_size: ByteSize::new(1 << 30),
            image: "swarm-warden:latest".into(),
            metered_per_byte: 1.0,
            job_timeout: Duration::from_secs(24 * 3600),
            verify_timeout: Duration::from_secs(3 * 3600),
        }
    }
}

impl Default for VolumesPolicy {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            prometheus_url: String::new(),
            prometheus_http_config: PrometheusHttpConfig::default(),
            queries: VolumeQueries::default(),
            throttled_for: Duration::from_secs(300),
            credits_warning: Duration::from_secs(180 * 60),
            credits_critical: Duration::from_secs(60 * 60),
            nfs_unsupported_images: vec!["prometheus".into()],
            watch: Vec::new(),
            require_approval: false,
            cooldown: Duration::from_secs(3600),
            step_attempts: 3,
            padding: PaddingPolicy::default(),
            migration: MigrationPolicy::default(),
        }
    }
}

/// PromQL per quantity; the defaults fit cloudwatch_exporter's `AWS/EFS` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeQueries {
    /// Burst credit balance, bytes.
    pub credits: String,
    /// Permitted throughput, bytes/s.
    pub permitted: String,
    /// Metered throughput, bytes/s.
    pub metered_rate: String,
    /// Metered size, bytes.
    pub storage: String,
    /// I/O wait of a node, 0..1 (node_exporter).
    pub iowait: String,
}

impl Default for VolumeQueries {
    fn default() -> Self {
        Self {
            credits: r#"aws_efs_burst_credit_balance_average{file_system_id="{fs}"}"#.into(),
            permitted: r#"aws_efs_permitted_throughput_average{file_system_id="{fs}"}"#.into(),
            metered_rate: r#"aws_efs_metered_iobytes_sum{file_system_id="{fs}"} / 60"#.into(),
            storage: r#"aws_efs_storage_bytes_average{file_system_id="{fs}",storage_class="Total"}"#.into(),
            iowait: r#"avg(rate(node_cpu_seconds_total{mode="iowait",instance=~"{node}(:[0-9]+)?"}[1m]))"#.into(),
        }
    }
}

/// What to do when a watched volume runs out of credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remediation {
    /// Report only.
    #[default]
    Report,
    /// Pad the file system so its baseline reaches a target.
    EfsPadding,
    /// Move the data to a block volume.
    EbsMigration,
}

/// One watched volume: by volume name, or by service and mount target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchedVolume {
    /// Volume name (the mount's source).
    pub volume: String,
    /// Service name (with `target`, instead of `volume`).
    pub service: String,
    /// Mount target in the service's containers.
    pub target: String,
    /// EFS file-system ID.
    pub efs_id: String,
    /// What to do about it.
    pub remediation: Remediation,
}

/// How the control loop runs. `backoff_min` may not exceed `backoff_max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, try_from = "ControllerFields")]
pub struct ControllerPolicy {
    /// A full reconcile at least this often, events or not.
    #[serde(with = "positive_duration")]
    pub resync: Duration,
    /// First delay after a failure (per failing key), doubled on each further failure.
    #[serde(with = "positive_duration")]
    pub backoff_min: Duration,
    /// Longest delay between retries of one failing key.
    #[serde(with = "positive_duration")]
    pub backoff_max: Duration,
}

/// [`ControllerPolicy`] as written, before the check across its fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ControllerFields {
    #[serde(with = "positive_duration")]
    resync: Duration,
    #[serde(with = "positive_duration")]
    backoff_min: Duration,
    #[serde(with = "positive_duration")]
    backoff_max: Duration,
}

impl Default for ControllerFields {
    fn default() -> Self {
        let d = ControllerPolicy::default();
        Self {
            resync: d.resync,
            backoff_min: d.backoff_min,
            backoff_max: d.backoff_max,
        }
    }
}

impl TryFrom<ControllerFields> for ControllerPolicy {
    type Error = String;
    fn try_from(f: ControllerFields) -> Result<Self, String> {
        if f.backoff_min > f.backoff_max {
            return Err(format!(
                "controller.backoff_min ({}) must not exceed controller.backoff_max ({})",
                humantime::format_duration(f.backoff_min),
                humantime::format_duration(f.backoff_max)
            ));
        }
        Ok(Self {
            resync: f.resync,
            backoff_min: f.backoff_min,
            backoff_max: f.backoff_max,
        })
    }
}

impl Default for ControllerPolicy {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(30),
            backoff_min: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<Policy, ConfigError> {
        Policy::parse(text, Path::new("policy.yml"))
    }

    #[test]
    fn an_empty_file_means_every_default() {
        assert_eq!(parse("").unwrap(), Policy::default());
        assert_eq!(parse("# only a comment\n").unwrap(), Policy::default());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let m = Policy::default().managers;
        assert_eq!(m.mode, Mode::Enforce);
        assert_eq!(m.desired.get(), 3);
        assert_eq!(m.dead_after, Duration::from_secs(300));
        assert_eq!(m.leader_settle, Duration::from_secs(45));
        assert_eq!(m.stabilization, Duration::from_secs(30));
    }

    #[test]
    fn durations_are_humantime_strings() {
        let p = parse("managers:\n  dead_after: 90s\n  leader_settle: 1m 30s\n").unwrap();
        assert_eq!(p.managers.dead_after, Duration::from_secs(90));
        assert_eq!(p.managers.leader_settle, Duration::from_secs(90));
        assert_eq!(
            p.managers.stabilization,
            Duration::from_secs(30),
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_at_its_line_and_column() {
        let err = parse("managers:\n  desired: 3\n  dead_afterr: 5m\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("policy.yml:3:3: "), "{err}");
        assert!(err.contains("dead_afterr"), "{err}");
    }

    #[test]
    fn a_bad_duration_says_what_and_where() {
        let err = parse("managers:\n  dead_after: soon\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("policy.yml:2:"), "{err}");
        assert!(err.contains("soon") && err.contains("5m"), "{err}");
    }

    #[test]
    fn a_bad_mode_or_count_is_refused() {
        let err = parse("managers:\n  mode: sometimes\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("policy.yml:2:"), "{err}");
        let err = parse("managers:\n  desired: 0\n").unwrap_err().to_string();
        assert!(
            err.starts_with("policy.yml:2:") && err.contains("1 to 9"),
            "{err}"
        );
    }

    /// The error for `text`, which must start with `policy.yml:LINE:` and name each of
    /// `parts`.
    fn refused_at(text: &str, line: usize, parts: &[&str]) {
        let err = parse(text)
            .map(|p| format!("accepted: {p:?}"))
            .unwrap_or_else(|e| e.to_string());
        assert!(
            err.starts_with(&format!("policy.yml:{line}:")),
            "{text:?} -> {err}"
        );
        for part in parts {
            assert!(err.contains(part), "{part:?} missing: {text:?} -> {err}");
        }
    }

    #[test]
    fn values_that_parse_but_cannot_work_are_refused_where_they_are() {
        refused_at("controller:\n  resync: 0s\n", 2, &["longer than zero"]);
        refused_at("lease:\n  duration: 0s\n", 2, &["longer than zero"]);
        refused_at("managers:\n  dead_after: 0s\n", 2, &["longer than zero"]);
        refused_at(
            "lease:\n  duration: 10s\n  renew: 10s\n",
            1,
            &["lease.renew (10s) must be shorter than lease.duration (10s)"],
        );
        refused_at("managers:\n  desired: 4\n", 2, &["odd", "not 4"]);
        refused_at("volumes:\n  padding:\n    max: lots\n", 3, &["lots", "GiB"]);
        refused_at(
            "volumes:\n  padding:\n    target_baseline: 10 furlongs\n",
            3,
            &["furlongs"],
        );
        refused_at(
            "volumes:\n  padding:\n    metered_per_byte: 0\n",
            3,
            &["above zero"],
        );
        refused_at(
            "controller:\n  backoff_min: 10m\n  backoff_max: 1m\n",
            1,
            &["backoff_min (10m) must not exceed controller.backoff_max (1m)"],
        );
        refused_at(
            "controller:\n  resync: 300000000000y\n",
            2,
            &["longer than a year"],
        );
        refused_at("volumes:\n  cooldown: 2y\n", 2, &["longer than a year"]);
        refused_at(
            "volumes:\n  padding:\n    file_size: 0\n",
            3,
            &["above zero"],
        );
        refused_at(
            "volumes:\n  prometheus_url: https://warden:s3cret@prom:9090\n",
            2,
            &["must not carry credentials"],
        );
        refused_at(
            "volumes:\n  migration:\n    volume_suffix: \"\"\n",
            3,
            &["must not be empty"],
        );
        refused_at("http:\n  listen: localhost\n", 2, &["IP:PORT"]);
        refused_at("http:\n  listen: 0.0.0.0:99999\n", 2, &["IP:PORT"]);
        refused_at(
            "volumes:\n  prometheus_url: prometheus:9090\n",
            2,
            &["Prometheus URL", "http://"],
        );
    }

    #[test]
    fn sizes_are_parsed_when_the_policy_is_loaded() {
        let p = parse("volumes:\n  padding:\n    target_baseline: 10MiB\n    max: 2TiB\n    file_size: 1048576\n").unwrap();
        let pad = &p.volumes.padding;
        assert_eq!(pad.target_baseline, Some(ByteSize::new(10 << 20)));
        assert_eq!(pad.max, ByteSize::new(2 << 40));
        assert_eq!(pad.file_size, ByteSize::new(1 << 20));
        assert_eq!(pad.max.to_string(), "2TiB");
        let empty = parse("volumes:\n  padding:\n    target_baseline: \"\"\n").unwrap();
        assert_eq!(empty.volumes.padding.target_baseline, None);
    }

    #[test]
    fn usable_values_are_accepted() {
        for text in [
            "http:\n  listen: \"\"\n",
            "http:\n  listen: \"[::]:8080\"\n",
            "volumes:\n  prometheus_url: https://prometheus.example:9090/\n",
            "managers:\n  desired: 5\n",
            "lease:\n  duration: 30s\n  renew: 20s\n",
        ] {
            parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
    }

    #[test]
    fn an_environment_override_is_checked_like_the_file() {
        let err = Policy::default()
            .apply_env([(
                "SWARM_WARDEN_CONTROLLER_RESYNC".to_string(),
                "0s".to_string(),
            )])
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than zero"), "{err}");
        let err = Policy::default()
            .apply_env([("SWARM_WARDEN_LEASE_RENEW".to_string(), "1m".to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be shorter than lease.duration"), "{err}");
    }

    #[test]
    fn a_refused_url_override_never_shows_its_password() {
        let err = Policy::default()
            .apply_env([(
                "SWARM_WARDEN_VOLUMES_PROMETHEUS_URL".to_string(),
                "https://warden:s3cret@prom:9090".to_string(),
            )])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must not carry credentials"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn overrides_that_only_fit_together_are_accepted_in_any_order() {
        let vars = |order: [(&str, &str); 2]| {
            order
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        for order in [
            [
                ("SWARM_WARDEN_LEASE_DURATION", "8s"),
                ("SWARM_WARDEN_LEASE_RENEW", "5s"),
            ],
            [
                ("SWARM_WARDEN_LEASE_RENEW", "5s"),
                ("SWARM_WARDEN_LEASE_DURATION", "8s"),
            ],
        ] {
            let p = Policy::default().apply_env(vars(order)).unwrap();
            assert_eq!(p.lease.duration, Duration::from_secs(8));
            assert_eq!(p.lease.renew, Duration::from_secs(5));
        }
        // Each fits alone, not together: both are named.
        let err = Policy::default()
            .apply_env(vars([
                ("SWARM_WARDEN_LEASE_DURATION", "12s"),
                ("SWARM_WARDEN_LEASE_RENEW", "12s"),
            ]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SWARM_WARDEN_LEASE_DURATION + SWARM_WARDEN_LEASE_RENEW"),
            "{err}"
        );
    }

    #[test]
    fn selectors_match_name_globs_and_labels() {
        let sel = Selector {
            names: vec!["monitoring_*".into(), "db-?".into()],
            labels: vec!["team=data".into(), "critical".into()],
        };
        let none = std::collections::BTreeMap::new();
        assert!(sel.selects("monitoring_cadvisor", &none));
        assert!(sel.selects("db-1", &none) && !sel.selects("db-12", &none));
        let labels = std::collections::BTreeMap::from([("team".to_string(), "data".to_string())]);
        assert!(sel.selects("web", &labels));
        let other = std::collections::BTreeMap::from([("team".to_string(), "web".to_string())]);
        assert!(!sel.selects("web", &other));
        let flagged = std::collections::BTreeMap::from([("critical".to_string(), String::new())]);
        assert!(sel.selects("web", &flagged));
        assert!(Selector::default().is_empty());
    }

    #[test]
    fn environment_variables_override_keys_at_any_depth() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let p = Policy::default()
            .apply_env(env(&[
                ("SWARM_WARDEN_MANAGERS_DEAD_AFTER", "10m"),
                ("SWARM_WARDEN_MANAGERS_DESIRED", "5"),
                ("SWARM_WARDEN_PLACEMENT_MODE", "audit"),
                ("SWARM_WARDEN_VOLUMES_PADDING_MAX", "2TiB"),
                ("SWARM_WARDEN_HTTP_LISTEN", "127.0.0.1:9102"),
                ("SWARM_WARDEN_IDENTITY", "replica-1"),
                ("OTHER", "ignored"),
            ]))
            .unwrap();
        assert_eq!(p.managers.dead_after, Duration::from_secs(600));
        assert_eq!(p.managers.desired.get(), 5);
        assert_eq!(p.placement.mode, Mode::Audit);
        assert_eq!(p.volumes.padding.max, ByteSize::new(2 << 40));
        assert_eq!(p.http.listen, "127.0.0.1:9102");
    }

    #[test]
    fn a_bad_environment_override_names_the_variable() {
        let err = Policy::default()
            .apply_env([(
                "SWARM_WARDEN_MANAGERS_DEAD_AFTERR".to_string(),
                "1m".to_string(),
            )])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("SWARM_WARDEN_MANAGERS_DEAD_AFTERR: no such policy key"),
            "{err}"
        );
        let err = Policy::default()
            .apply_env([("SWARM_WARDEN_MANAGERS_DESIRED".to_string(), "0".to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 to 9"), "{err}");
    }

    #[test]
    fn the_committed_example_policy_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/policy.example.yml");
        let policy = Policy::load(&path).unwrap();
        assert_eq!(
            policy,
            Policy::default(),
            "the example documents the defaults"
        );
    }
}
