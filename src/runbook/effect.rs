//! What a runbook step asks of the swarm: plain data the pure transitions return and the
//! one writer carries out (`Writer::carry_out`), each write under the claim. No Docker
//! client types here.

use std::collections::BTreeMap;
use std::fmt;

/// Label marking the jobs a runbook started (value: the run ID).
pub const RUN_LABEL: &str = "swarm-warden.runbook";

/// One change a step makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Create a one-shot job: a replicated job of one completion, never restarted (its
    /// attempts are the runbook's business), where its constraints say, labelled
    /// [`RUN_LABEL`].
    CreateJob(Job),
    /// Remove a job; one already gone counts as removed.
    RemoveJob {
        /// Job (service) name.
        name: String,
    },
    /// Set a replicated service's replica count: read, change only that, write back with
    /// the version read. With `expect`, nothing is written unless the count read is that
    /// (a rollback never overrides a count someone else set).
    Scale {
        /// Service ID.
        service_id: String,
        /// The replica count wanted.
        replicas: u64,
        /// The count it must have now, if any.
        expect: Option<u64>,
    },
    /// Point the mount at `path` from volume `from` to volume `to`, defined with the
    /// target's driver and options (the `swarm-warden.*` volume labels dropped), and add
    /// the placement constraint `pin` in the same write (see `runbook::pin`). Fails,
    /// without writing, when at write time the service has no mount of `from` at `path`,
    /// is not at 0 replicas, or its spec no longer hashes to `spec_hash` (what the run saw
    /// when its copy was made).
    SwapMount {
        /// Service ID.
        service_id: String,
        /// The mount's container path.
        path: String,
        /// The volume mounted there now.
        from: String,
        /// The volume to mount instead.
        to: String,
        /// Its volume driver (empty: `local`).
        driver: String,
        /// Its driver options.
        options: BTreeMap<String, String>,
        /// The spec's hash the copy was made under.
        spec_hash: String,
        /// A placement constraint to add (`node.id==<id>`, `<zone label>==<zone>`): where
        /// the service finds the target the copy filled.
        pin: Option<String>,
    },
    /// Put back, whole, the mount at `path` that a swap replaced: `original` is the
    /// Engine's JSON of the mount, recorded in the journal before the swap was sent; and
    /// remove the constraint `unpin` the swap added, in the same write.
    /// Nothing is written when the mount at `path` is not of `current` (never swapped, or
    /// restored already); an `original` that is not a mount fails without writing.
    RestoreMount {
        /// Service ID.
        service_id: String,
        /// The mount's container path.
        path: String,
        /// The volume the swap mounted there.
        current: String,
        /// The original mount, Engine JSON.
        original: String,
        /// The placement constraint the swap added, if any.
        unpin: Option<String>,
    },
}

/// A runbook job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Job (service) name: unique per run and attempt, at most 63 characters.
    pub name: String,
    /// The run it belongs to.
    pub run_id: String,
    /// Image (the swarm-warden image: it carries `pad` and `copy`).
    pub image: String,
    /// Arguments to the image's entry point.
    pub args: Vec<String>,
    /// Volumes it mounts.
    pub mounts: Vec<JobMount>,
    /// Its placement constraints (`node.role==worker`, `node.id==<id>`).
    pub constraints: Vec<String>,
}

/// A volume a job mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMount {
    /// Path in the job's container.
    pub target: String,
    /// Volume name.
    pub source: String,
    /// Volume driver (empty: `local`).
    pub driver: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Volume labels.
    pub labels: BTreeMap<String, String>,
    /// Mounted read-only.
    pub read_only: bool,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::CreateJob(job) => write!(f, "create job {}", job.name),
            Effect::RemoveJob { name } => write!(f, "remove job {name}"),
            Effect::Scale {
                service_id,
                replicas,
                ..
            } => write!(f, "scale service {service_id} to {replicas}"),
            Effect::SwapMount {
                service_id,
                path,
                from,
                to,
                ..
            } => write!(
                f,
                "mount {to} instead of {from} at {path} in service {service_id}"
            ),
            Effect::RestoreMount {
                service_id, path, ..
            } => write!(
                f,
                "restore the original mount at {path} in service {service_id}"
            ),
        }
    }
}
