//! One plan, four renderings: text for people, Markdown for issues and wikis, one
//! self-contained HTML page for mail and browsers, JSON for machines (schema:
//! `docs/report.schema.json`). `run` logs and `report` prints the same [`Report`].

mod html;
mod markdown;
mod text;

use std::time::Duration;

use serde::Serialize;

use crate::config::Remediation;
use crate::model::{Availability, NodeState, Reachability, Snapshot, VolumeTelemetry};
use crate::plan::readings::{readings, saturating_secs, Unusable};
use crate::plan::volumes::{baseline_rate, out_of_credits, throttled, Watched};
use crate::plan::{ActionStatus, Plan, Severity};

/// Version of the JSON report's shape; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// How to render a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text for terminals.
    Text,
    /// JSON following `docs/report.schema.json`.
    Json,
    /// Markdown tables.
    Markdown,
    /// One self-contained HTML page (inline CSS, no script, nothing fetched): for a mail
    /// attachment or a browser.
    Html,
}

/// Everything a report shows, in the JSON report's shape.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When the observation was made (RFC 3339).
    pub generated_at: String,
    /// Whether nothing was (or would be) changed.
    pub dry_run: bool,
    /// The manager the observation came from.
    pub observed_via: ObservedVia,
    /// Raft arithmetic; counts are `null` when no leader answered.
    pub cluster: ClusterView,
    /// Every node.
    pub nodes: Vec<NodeView>,
    /// What was noticed.
    pub findings: Vec<FindingView>,
    /// What was planned or done.
    pub actions: Vec<ActionView>,
    /// Placement verdict of every service (empty when placement is off).
    pub services: Vec<ServiceView>,
    /// Remediation runbooks stored in the swarm (journals).
    pub runbooks: Vec<crate::model::journal::Journal>,
    /// Watched EFS file systems and their burst credits (empty when volumes are off).
    pub volumes: Vec<VolumeView>,
    /// When the next reconcile is due at the latest, in seconds, if the plan asked.
    pub requeue_after_seconds: Option<u64>,
}

/// The local manager.
#[derive(Debug, Clone, Serialize)]
pub struct ObservedVia {
    /// Its node ID.
    pub node_id: String,
    /// Its address.
    pub addr: String,
}

/// Cluster summary.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// All nodes.
    pub nodes: Option<usize>,
    /// Raft members.
    pub managers: Option<usize>,
    /// Raft members the leader reaches.
    pub reachable_managers: Option<usize>,
    /// Majority of the raft.
    pub quorum: Option<usize>,
    /// Manager losses the raft survives (negative: quorum lost).
    pub fault_tolerance: Option<i64>,
    /// Leader node ID.
    pub leader: Option<String>,
    /// Leader hostname.
    pub leader_hostname: Option<String>,
    /// Raft members the policy aims for (`managers.desired`); known without a leader too.
    pub desired_managers: usize,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Node ID.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// `manager` (raft member) or `worker`.
    pub role: &'static str,
    /// `ready`, `down`, `unknown`, `disconnected`.
    pub state: &'static str,
    /// `active`, `pause`, `drain`.
    pub availability: &'static str,
    /// Managers only: `reachable`, `unreachable`, `unknown`.
    pub reachability: Option<&'static str>,
    /// Whether this is the raft leader.
    pub leader: bool,
    /// Status address.
    pub addr: String,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct FindingView {
    /// Kind, e.g. `dead-manager`.
    pub kind: &'static str,
    /// `info`, `warning`, `critical`.
    pub severity: Severity,
    /// Node ID, or `cluster`.
    pub subject: String,
    /// Explanation.
    pub message: String,
}

/// One service's placement verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// Service ID.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Its stack, if deployed with `docker stack deploy`.
    pub stack: Option<String>,
    /// `compliant`, `exempt`, `violating`, `blocked` or `unschedulable`.
    pub status: &'static str,
    /// Why exempt, blocked or unschedulable, as a stable code (`job`, `node-local-data`,
    /// `pinned-to-managers`, `rolled-back`, ...; see the schema).
    pub reason_code: Option<&'static str>,
    /// Why exempt, blocked or unschedulable, for people.
    pub reason: Option<String>,
    /// Its tasks that should be running on managers now.
    pub tasks_on_managers: Vec<TaskView>,
}

/// A task on a manager.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// Task ID.
    pub task: String,
    /// Node ID.
    pub node: String,
    /// Node hostname.
    pub hostname: String,
}

/// One watched EFS file system: its burst-credit arithmetic (AWS's EFS bursting rules, as
/// the planner applies them in `plan::volumes`) and the mounts that use it.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeView {
    /// EFS file-system ID.
    pub efs_id: String,
    /// The watched volume mounts on it.
    pub mounts: Vec<VolumeMountView>,
    /// What swarm-warden does when it runs out of credits: `report`, `efs-padding`,
    /// `ebs-migration` (the first watched mount's).
    pub remediation: &'static str,
    /// `throttled` (no credits, held to the baseline), `out-of-credits` (less than a
    /// minute of baseline left), `draining` (metering above the baseline: credits fall),
    /// `ok` (at or below the baseline: credits hold or grow) or `no-telemetry`.
    pub state: &'static str,
    /// Burst credit balance, bytes.
    pub credits_bytes: Option<f64>,
    /// Permitted throughput, bytes/s.
    pub permitted_bytes_per_second: Option<f64>,
    /// Metered throughput, bytes/s.
    pub metered_bytes_per_second: Option<f64>,
    /// Baseline throughput the metered size earns (50 KiB/s per GiB, at least 1 MiB/s).
    pub baseline_bytes_per_second: Option<f64>,
    /// Metered size, bytes.
    pub storage_bytes: Option<f64>,
    /// Seconds until the credits are gone at the current rate, T = C / (M - B): `0` when
    /// out of credits or throttled, `null` when not draining or without telemetry.
    pub time_to_exhaustion_seconds: Option<u64>,
    /// Why there are no usable numbers, with `state` `no-telemetry`.
    pub problem: Option<String>,
}

/// A watched mount of an EFS volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeMountView {
    /// Service name.
    pub service: String,
    /// Volume name (the mount's source).
    pub volume: String,
    /// Mount target in the container.
    pub target: String,
}

impl VolumeView {
    /// The view of one file system from its watched mounts (at least one) and its
    /// telemetry, if any was read.
    fn new(mounts: &[&Watched], telemetry: Option<&VolumeTelemetry>) -> Self {
        let remediation = match mounts.first().map(|w| w.remediation) {
            Some(Remediation::EfsPadding) => "efs-padding",
            Some(Remediation::EbsMigration) => "ebs-migration",
            Some(Remediation::Report) | None => "report",
        };
        let mut view = Self {
            efs_id: mounts.first().map(|w| w.efs_id.clone()).unwrap_or_default(),
            mounts: mounts
                .iter()
                .map(|w| VolumeMountView {
                    service: w.service.clone(),
                    volume: w.volume.clone(),
                    target: w.target.clone(),
                })
                .collect(),
            remediation,
            state: "no-telemetry",
            credits_bytes: None,
            permitted_bytes_per_second: None,
            metered_bytes_per_second: None,
            baseline_bytes_per_second: None,
            storage_bytes: None,
            time_to_exhaustion_seconds: None,
            problem: None,
        };
        let Some(t) = telemetry else {
            view.problem = Some("no telemetry was read (is volumes.prometheus_url set?)".into());
            return view;
        };
        let r = match readings(t) {
            Ok(r) => r,
            Err(unusable) => {
                // The plan's own finding names the PromQL; here a short reason is enough.
                let why = match unusable {
                    Unusable::Missing { quantities } => {
                        let names: Vec<&str> = quantities.iter().map(|q| q.as_str()).collect();
                        format!("no sample for {}", names.join(", "))
                    }
                    Unusable::OutOfRange { quantity, value } => {
                        format!("{} = {value} is not usable", quantity.as_str())
                    }
                };
                view.problem = Some(match &t.error {
                    Some(error) => format!("{why} ({error})"),
                    None => why,
                });
                return view;
            }
        };
        let baseline = baseline_rate(r.storage);
        // The same order of tests as the planner's findings (plan::volumes).
        let (state, left) = if throttled(r.credits, r.metered, r.storage) {
            ("throttled", Some(0))
        } else if out_of_credits(r.credits, baseline) {
            ("out-of-credits", Some(0))
        } else if r.metered > baseline {
            let left = saturating_secs(r.credits / (r.metered - baseline));
            ("draining", Some(left.as_secs()))
        } else {
            ("ok", None)
        };
        view.state = state;
        view.time_to_exhaustion_seconds = left;
        view.credits_bytes = Some(r.credits);
        view.permitted_bytes_per_second = Some(r.permitted);
        view.metered_bytes_per_second = Some(r.metered);
        view.baseline_bytes_per_second = Some(baseline);
        view.storage_bytes = Some(r.storage);
        view
    }
}

/// One view per watched file system, in the planner's order (by EFS ID).
fn volume_views(snapshot: &Snapshot, watched: &[Watched]) -> Vec<VolumeView> {
    let mut ids: Vec<&str> = watched.iter().map(|w| w.efs_id.as_str()).collect();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let mounts: Vec<&Watched> = watched.iter().filter(|w| w.efs_id == id).collect();
            VolumeView::new(&mounts, snapshot.telemetry.iter().find(|t| t.efs_id == id))
        })
        .collect()
}

/// One action.
#[derive(Debug, Clone, Serialize)]
pub struct ActionView {
    /// Kind, e.g. `remove-dead-manager`.
    pub kind: &'static str,
    /// Node ID.
    pub target: String,
    /// Its hostname.
    pub target_name: String,
    /// Why it is wanted.
    pub reason: String,
    /// `planned`, `blocked`, `in-progress`, `done`, `failed`, `rolled-back`.
    pub status: ActionStatus,
    /// The guard that stops it.
    pub blocked_by: Option<String>,
    /// The kind of that guard (see [`crate::plan::BlockKind::as_str`]).
    pub blocked_kind: Option<&'static str>,
    /// What happened (or would happen in a dry run).
    pub detail: Option<String>,
}

impl Report {
    /// The report of one reconcile.
    pub fn new(snapshot: &Snapshot, plan: &Plan, dry_run: bool) -> Self {
        let cluster = plan.cluster.as_ref();
        Self {
            schema_version: SCHEMA_VERSION,
            generated_at: humantime::format_rfc3339_seconds(snapshot.observed_at).to_string(),
            dry_run,
            observed_via: ObservedVia {
                node_id: snapshot.local.node_id.clone(),
                addr: snapshot.local.addr.clone(),
            },
            cluster: ClusterView {
                nodes: cluster.map(|c| c.nodes),
                managers: cluster.map(|c| c.managers),
                reachable_managers: cluster.map(|c| c.reachable_managers),
                quorum: cluster.map(|c| c.quorum),
                fault_tolerance: cluster.map(|c| c.fault_tolerance),
                leader: cluster
                    .and_then(|c| c.leader.as_ref())
                    .map(|l| l.id.clone()),
                leader_hostname: cluster
                    .and_then(|c| c.leader.as_ref())
                    .map(|l| l.hostname.clone()),
                desired_managers: plan.desired_managers,
            },
            nodes: sorted_nodes(snapshot)
                .into_iter()
                .map(|n| NodeView {
                    id: n.id.clone(),
                    hostname: n.hostname.clone(),
                    role: if n.is_manager() { "manager" } else { "worker" },
                    state: match n.state {
                        NodeState::Ready => "ready",
                        NodeState::Down => "down",
                        NodeState::Unknown => "unknown",
                        NodeState::Disconnected => "disconnected",
                    },
                    availability: match n.availability {
                        Availability::Active => "active",
                        Availability::Pause => "pause",
                        Availability::Drain => "drain",
                    },
                    reachability: n.manager.as_ref().map(|m| match m.reachability {
                        Reachability::Reachable => "reachable",
                        Reachability::Unreachable => "unreachable",
                        Reachability::Unknown => "unknown",
                    }),
                    leader: n.is_leader(),
                    addr: n.addr.clone(),
                })
                .collect(),
            findings: plan
                .findings
                .iter()
                .map(|f| FindingView {
                    kind: f.kind.as_str(),
                    severity: f.severity,
                    subject: f.subject.clone(),
                    message: f.message.clone(),
                })
                .collect(),
            actions: plan
                .actions
                .iter()
                .map(|a| ActionView {
                    kind: a.action.kind(),
                    target: a.action.target().to_owned(),
                    target_name: a.action.target_name().to_owned(),
                    reason: a.reason.clone(),
                    status: a.status,
                    blocked_by: a.blocked_message().map(str::to_owned),
                    blocked_kind: a.blocked_kind().map(|k| k.as_str()),
                    detail: a.detail.clone(),
                })
                .collect(),
            services: plan
                .services
                .iter()
                .map(|v| ServiceView {
                    id: v.service.id.clone(),
                    name: v.service.name.clone(),
                    stack: v.stack.clone(),
                    status: v.status.as_str(),
                    reason_code: v.status.reason_code(),
                    reason: v.status.reason(),
                    tasks_on_managers: v
                        .tasks_on_managers
                        .iter()
                        .map(|t| TaskView {
                            task: t.task_id.clone(),
                            node: t.node_id.clone(),
                            hostname: t.hostname.clone(),
                        })
                        .collect(),
                })
                .collect(),
            runbooks: snapshot.runbooks.clone(),
            volumes: volume_views(snapshot, &plan.volumes),
            requeue_after_seconds: plan.requeue_after.map(|d| d.as_secs()),
        }
    }

    /// Renders the report.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => text::render(self),
            Format::Markdown => markdown::render(self),
            Format::Html => html::render(self),
            Format::Json => {
                let mut json = serde_json::to_string_pretty(self)
                    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
                json.push('\n');
                json
            }
        }
    }

    /// A hostname for a node ID, for findings that name nodes.
    fn hostname_of(&self, id: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.hostname.as_str())
    }

    /// `cluster`, or `hostname (short id)` for a node subject.
    fn subject(&self, subject: &str) -> String {
        match self.hostname_of(subject) {
            Some(h) => format!("{h} ({})", crate::plan::short_id(subject)),
            None => subject.to_owned(),
        }
    }
}

/// Managers first, then by hostname: how people scan a node list.
fn sorted_nodes(snapshot: &Snapshot) -> Vec<&crate::model::Node> {
    let mut nodes: Vec<_> = snapshot.nodes.iter().collect();
    nodes.sort_by(|a, b| {
        b.is_manager()
            .cmp(&a.is_manager())
            .then_with(|| a.hostname.cmp(&b.hostname))
            .then_with(|| a.id.cmp(&b.id))
    });
    nodes
}

/// One line of cluster arithmetic, shared by text and Markdown.
fn cluster_line(r: &Report) -> String {
    let c = &r.cluster;
    match (c.nodes, c.managers, c.reachable_managers, c.quorum, c.fault_tolerance) {
        (Some(nodes), Some(managers), Some(reachable), Some(quorum), Some(ft)) => format!(
            "{nodes} nodes, {managers} managers ({reachable} reachable), quorum {quorum}, fault tolerance {ft}, leader {}",
            c.leader_hostname.as_deref().unwrap_or("none")
        ),
        _ => "unknown: no raft leader answered".to_owned(),
    }
}

/// Services that need a look (violating, blocked, exempt) and a count of the compliant.
fn services_of_note(r: &Report) -> (Vec<&ServiceView>, usize) {
    let noted: Vec<&ServiceView> = r
        .services
        .iter()
        .filter(|s| s.status != "compliant")
        .collect();
    (
        noted,
        r.services
            .iter()
            .filter(|s| s.status == "compliant")
            .count(),
    )
}

const MIB: f64 = 1024.0 * 1024.0;

/// Bytes for people (the runbooks' formatter: `80.0 GiB`, `2.1 TiB`).
fn bytes(b: f64) -> String {
    crate::runbook::progress::human_bytes(b.max(0.0) as u64)
}

/// A rate (bytes/s) for people, in MiB/s as the planner's findings give it.
fn rate(r: f64) -> String {
    format!("{:.2} MiB/s", r / MIB)
}

/// A volume's time to exhaustion for people.
fn time_left(v: &VolumeView) -> String {
    match (v.state, v.time_to_exhaustion_seconds) {
        (_, Some(0)) => "now (0 s)".to_owned(),
        (_, Some(s)) => crate::plan::human(Duration::from_secs(s)),
        ("ok", None) => "not draining".to_owned(),
        _ => "-".to_owned(),
    }
}

/// One line about a volume, shared by text and Markdown.
fn volume_line(v: &VolumeView) -> String {
    let users: Vec<String> = v
        .mounts
        .iter()
        .map(|m| format!("{} ({})", m.service, m.volume))
        .collect();
    let numbers = match (
        v.credits_bytes,
        v.metered_bytes_per_second,
        v.baseline_bytes_per_second,
    ) {
        (Some(c), Some(m), Some(b)) => format!(
            "credits {}, time to exhaustion {}, metered {} of baseline {}",
            bytes(c),
            time_left(v),
            rate(m),
            rate(b)
        ),
        _ => v.problem.clone().unwrap_or_default(),
    };
    format!(
        "{} {}: {numbers}; used by {}; remediation {}",
        v.efs_id,
        v.state,
        users.join(", "),
        v.remediation
    )
}

/// A job step's progress for people, when the journal has one for the step's current
/// attempt: `copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s, as of
/// 2026-01-01T00:00:00Z` (shared by text and Markdown).
fn progress_line(j: &crate::model::journal::Journal, step: &str) -> Option<String> {
    crate::runbook::progress::shown(j, step).map(|p| {
        format!(
            "{}, as of {}",
            p.describe(),
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(p.at))
        )
    })
}

/// A requeue hint for people.
fn requeue_line(r: &Report) -> Option<String> {
    r.requeue_after_seconds.map(|s| {
        format!(
            "Next look due in {}.",
            crate::plan::human(Duration::from_secs(s))
        )
    })
}

#[cfg(test)]
mod tests;
