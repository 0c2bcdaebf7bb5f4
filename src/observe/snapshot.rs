//! One consistent-enough picture of the swarm per reconcile, from list calls only: the
//! local node's info, all nodes, all services, and only the running tasks on managers
//! (a 2,000-node swarm has ~100,000 tasks; the planner needs a handful).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bollard::errors::Error as DockerError;
use bollard::models::LocalNodeState;
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptionsBuilder};
use bollard::Docker;

use super::convert;
use super::swarm_errors::{is_no_leader, is_not_a_manager, is_not_found, message};
use super::Telemetry;
use crate::config::Policy;
use crate::model::{Control, LocalNode, Snapshot};

/// Why no snapshot could be taken.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The Engine did not answer or failed; retry with backoff.
    #[error("Docker API call {call} failed: {source}")]
    Api {
        /// Which call.
        call: &'static str,
        /// The error.
        #[source]
        source: DockerError,
    },
    /// swarm-warden is not talking to a swarm manager: nothing to do until it is.
    #[error("the Docker Engine swarm-warden talks to is not an active swarm manager (swarm state {state}); point --docker-host / DOCKER_HOST at a manager")]
    NotAManager {
        /// The local node's swarm state.
        state: String,
    },
}

impl ObserveError {
    /// Whether trying again may help without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, ObserveError::Api { .. })
    }
}

/// Longest wait for one list call. A manager cut off from its leader answers only after
/// the Engine's own 20 s request deadline (and `info` waits as long): a reconcile must find
/// out sooner that there is no leader. A slow but healthy swarm hitting this limit is
/// reported as leaderless, which blocks actions: the safe side.
pub(super) const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for `info`: above the Engine's own 20 s request deadline.
const INFO_TIMEOUT: Duration = Duration::from_secs(25);

/// Longest wait for `/_ping` when a list call timed out: the local Engine answers it without
/// the raft, so silence means the Engine itself hangs (not the raft's leader).
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// `call`'s answer, or a timeout error after [`LIST_TIMEOUT`]: no read may hold a
/// reconcile longer.
pub(super) async fn bounded<T>(
    call: &'static str,
    read: impl std::future::Future<Output = Result<T, DockerError>>,
) -> Result<T, ObserveError> {
    tokio::time::timeout(LIST_TIMEOUT, read)
        .await
        .unwrap_or(Err(DockerError::RequestTimeoutError))
        .map_err(|source| ObserveError::Api { call, source })
}

/// A listing whose failure blinds one part only: its answer, or why not (its error, or
/// that it did not answer within [`LIST_TIMEOUT`]) for that part's finding.
async fn part_listed<T, E: std::fmt::Display>(
    what: &str,
    list: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(LIST_TIMEOUT, list).await {
        Ok(Ok(listing)) => Ok(listing),
        Ok(Err(e)) => Err(format!("listing {what} failed: {e}")),
        Err(_) => Err(format!(
            "listing {what} did not answer within {}",
            humantime::format_duration(LIST_TIMEOUT)
        )),
    }
}

/// Takes snapshots through one Docker client.
#[derive(Debug, Clone)]
pub struct Observer {
    docker: Docker,
    policy: Option<Arc<Policy>>,
    telemetry: Option<Telemetry>,
    /// The local node never changes while it stays in the swarm: read once, not per
    /// reconcile (`info` itself needs the leader and is slow without one).
    local: Arc<Mutex<Option<LocalNode>>>,
}

impl Observer {
    /// An observer using `docker`.
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            policy: None,
            telemetry: None,
            local: Arc::new(Mutex::new(None)),
        }
    }

    /// Also reads what `policy` watches: the tasks of services with watched volumes and
    /// their telemetry from Prometheus.
    ///
    /// # Errors
    /// The Prometheus client cannot be built from `volumes.prometheus_http_config` (an
    /// unreadable CA or secret file): bad input.
    pub fn watching(mut self, policy: &Policy) -> Result<Self, super::telemetry::ClientError> {
        self.telemetry = Telemetry::new(&policy.volumes)?;
        self.policy = Some(Arc::new(policy.clone()));
        Ok(self)
    }

    /// The client, for the writers.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The node list alone (one call): what waits on a membership change read, instead of
    /// a whole snapshot. `None` when no raft leader answered (an election: "not yet").
    ///
    /// # Errors
    /// As [`Observer::snapshot`]'s node list: not a manager, or a failed read.
    pub async fn nodes(&self) -> Result<Option<Vec<crate::model::Node>>, ObserveError> {
        Ok(self.list_nodes().await?.ok())
    }

    /// Lists the nodes; the inner error is SwarmKit's "no leader" answer.
    async fn list_nodes(&self) -> Result<Result<Vec<crate::model::Node>, String>, ObserveError> {
        let listed = tokio::time::timeout(
            LIST_TIMEOUT,
            self.docker.list_nodes(None::<ListNodesOptions>),
        )
        .await
        .unwrap_or(Err(DockerError::RequestTimeoutError));
        let nodes = match listed {
            Ok(nodes) => nodes,
            Err(e) if is_not_a_manager(&e) => {
                self.forget_local_node();
                return Err(ObserveError::NotAManager {
                    state: "no longer a manager".into(),
                });
            }
            // Our own deadline means "no leader" only if the Engine itself still
            // answers: a hung Engine (or a proxy in front of it) is a failed read.
            Err(e @ DockerError::RequestTimeoutError) if !self.engine_answers().await => {
                return Err(ObserveError::Api {
                    call: "list nodes (the Engine does not answer /_ping either)",
                    source: e,
                })
            }
            Err(e) if is_no_leader(&e) => return Ok(Err(message(&e))),
            Err(source) => {
                return Err(ObserveError::Api {
                    call: "list nodes",
                    source,
                })
            }
        };
        Ok(Ok(nodes.iter().map(convert::node).collect()))
    }

    /// Reads the swarm. `now` is stamped on the snapshot (the planner's clock).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn snapshot(&self, now: SystemTime) -> Result<Snapshot, ObserveError> {
        let local = self.local_node().await?;
        let nodes = match self.list_nodes().await? {
            Ok(nodes) => nodes,
            Err(error) => {
                return Ok(Snapshot {
                    observed_at: now,
                    local,
                    control: Control::NoLeader { error },
                    nodes: Vec::new(),
                    services: Vec::new(),
                    tasks: Vec::new(),
                    telemetry: Vec::new(),
                    runbooks: Vec::new(),
                    runbook_problems: Default::default(),
                    placement_records: Default::default(),
                })
            }
        };
        let services = bounded(
            "list services",
            self.docker.list_services(None::<ListServicesOptions>),
        )
        .await?;
        // Converted one by one and the Engine's models freed at once: at Swarm2k size
        // (10,000 services) they take ~100 MB, the lean model a fraction.
        let services: Vec<_> = services.into_iter().map(|s| convert::service(&s)).collect();
        // Two narrow task lists instead of all tasks: those on managers (placement
        // verdicts), and those of the services whose tasks capacity and promotion checks
        // count (reservations, host ports, node-local data, watched volumes).
        let manager_ids: Vec<&str> = nodes
            .iter()
            .filter(|n| n.is_manager())
            .map(|n| n.id.as_str())
            .collect();
        let watched = self
            .policy
            .as_ref()
            .map(|p| crate::plan::volumes::watched(&services, p))
            .unwrap_or_default();
        let default_policy = Policy::default();
        let policy = self.policy.as_deref().unwrap_or(&default_policy);
        let mut reserving: Vec<&str> = crate::plan::services_needing_tasks(&services, policy)
            .into_iter()
            .chain(watched.iter().map(|w| w.service_id.as_str()))
            .collect();
        reserving.sort_unstable();
        reserving.dedup();
        let mut tasks = Vec::new();
        for (key, values) in [("node", manager_ids.clone()), ("service", reserving)] {
            let listed = self
                .list_tasks_by(&[("desired-state", vec!["running"])], key, &values, |_| {
                    true
                })
                .await?;
            tasks.extend(listed);
        }
        // A job's tasks have desired state `complete`, which the Engine's filter cannot
        // select: list the jobs' tasks on managers whatever their state (a global job on a
        // big swarm keeps a task per node; only those on managers matter) and keep the live
        // ones.
        let jobs: Vec<&str> = services
            .iter()
            .filter(|s| s.mode.is_job())
            .map(|s| s.id.as_str())
            .collect();
        if !jobs.is_empty() && !manager_ids.is_empty() {
            let listed = self
                .list_tasks_by(&[("node", manager_ids)], "service", &jobs, live_job_task)
                .await?;
            tasks.extend(listed);
        }
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        tasks.dedup_by(|a, b| a.id == b.id);
        // Always read: a migrated service no longer mounts the watched volume, but its run
        // must go on. One list call, filtered by label.
        // A failed listing blinds the runbooks only, not the manager checks.
        let (runbooks, runbook_problems) = match part_listed(
            "runbook journals",
            super::stored::list_journals(&self.docker),
        )
        .await
        {
            Ok(listing) => (
                listing.journals.into_iter().map(|s| s.journal).collect(),
                crate::model::RunbookProblems {
                    unreadable: listing.unreadable,
                    error: None,
                },
            ),
            Err(error) => (
                Vec::new(),
                crate::model::RunbookProblems {
                    unreadable: Vec::new(),
                    error: Some(error),
                },
            ),
        };
        // A failed listing blinds placement only, not the manager checks.
        let placement_records = part_listed(
            "placement records",
            super::stored::list_placement_records(&self.docker),
        )
        .await
        .unwrap_or_else(|error| crate::model::PlacementRecords {
            error: Some(error),
            ..Default::default()
        });
        let mut telemetry = Vec::new();
        if let Some(reader) = &self.telemetry {
            let mut ids: Vec<&str> = watched.iter().map(|w| w.efs_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let requests: Vec<(String, Vec<String>)> = ids
                .into_iter()
                .map(|id| {
                    let hosts = watched
                        .iter()
                        .filter(|w| w.efs_id == id)
                        .flat_map(|w| tasks.iter().filter(move |t| t.service_id == w.service_id))
                        .filter_map(|t| t.node_id.as_deref())
                        .filter_map(|n| nodes.iter().find(|x| x.id == n))
                        .map(|n| n.hostname.clone())
                        .collect();
                    (id.to_owned(), hosts)
                })
                .collect();
            telemetry = reader.volumes(&requests).await;
        }
        Ok(Snapshot {
            observed_at: now,
            local,
            control: Control::Leader,
            nodes,
            services,
            tasks,
            telemetry,
            runbooks,
            runbook_problems,
            placement_records,
        })
    }
}

/// How a service's rolling update is going, for the executor's wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// The update's state, if it has one.
    pub state: Option<crate::model::UpdateState>,
    /// What SwarmKit said about it.
    pub message: String,
    /// When its latest update started, as the Engine wrote it.
    pub started_at: Option<String>,
    /// Its tasks that should run on the given nodes.
    pub tasks_on: usize,
    /// Its tasks that should run, and of those, how many do.
    pub tasks_running: (usize, usize),
    /// How many tasks it wants (replicas); `None` for global services.
    pub replicas: Option<u64>,
    /// Why its tasks do not run, newest first, distinct, at most three: the errors of its
    /// tasks that are pending, rejected or failed since the latest update started
    /// ("no suitable node (host-mode port already in use on 2 nodes)", "No such image").
    pub task_errors: Vec<String>,
}

impl Rollout {
    /// Every task the service wants runs (at least `replicas` of them).
    pub fn all_running(&self) -> bool {
        let (desired, running) = self.tasks_running;
        desired == running && self.replicas.is_none_or(|n| running as u64 >= n)
    }

    /// No task should run on the given nodes any more, and all that should run do.
    pub fn settled(&self) -> bool {
        self.tasks_on == 0 && self.all_running()
    }
}

impl Observer {
    /// One service's update state and how many of its tasks should run on `nodes`. Per
    /// object on purpose: only the executor calls it, for the one service it just updated.
    pub async fn rollout(
        &self,
        service_id: &str,
        nodes: &[String],
    ) -> Result<Rollout, ObserveError> {
        let service = self
            .docker
            .inspect_service(
                service_id,
                None::<bollard::query_parameters::InspectServiceOptions>,
            )
            .await
            .map_err(|source| ObserveError::Api {
                call: "inspect service",
                source,
            })?;
        let started_at = service
            .update_status
            .as_ref()
            .and_then(|u| u.started_at.clone());
        let converted = convert::service(&service);
        let replicas = match converted.mode {
            crate::model::ServiceMode::Replicated { replicas } => Some(replicas),
            _ => None,
        };
        let update = converted.update;
        // Every task of the service (a few per slot: SwarmKit keeps a short history), so
        // that failed attempts explain themselves.
        let filters = HashMap::from([("service", vec![service_id])]);
        let tasks = self.list_tasks(&filters).await?;
        let desired_running = |t: &&bollard::models::Task| {
            t.desired_state == Some(bollard::models::TaskState::RUNNING)
        };
        Ok(Rollout {
            state: update.as_ref().map(|u| u.state),
            message: update.map(|u| u.message).unwrap_or_default(),
            task_errors: task_errors(&tasks, started_at.as_deref()),
            replicas,
            started_at,
            tasks_running: (
                tasks.iter().filter(desired_running).count(),
                tasks
                    .iter()
                    .filter(desired_running)
                    .filter(|t| {
                        t.status.as_ref().and_then(|s| s.state)
                            == Some(bollard::models::TaskState::RUNNING)
                    })
                    .count(),
            ),
            tasks_on: tasks
                .iter()
                .filter(desired_running)
                .filter(|t| t.node_id.as_ref().is_some_and(|n| nodes.contains(n)))
                .count(),
        })
    }
}

/// Most values one filter key carries in one task list call. A request URI may be at most
/// 64 KiB (the `http` crate refuses longer ones before sending), and a swarm can have
/// thousands of services whose tasks the planner needs: 100 IDs of 25 characters, quoted
/// and percent-encoded, take ~4 KB.
pub(super) const FILTER_VALUES_PER_CALL: usize = 100;

impl Observer {
    /// The tasks `fixed` and `key` (any of `values`) select and `keep` keeps, converted,
    /// `values` split over as many calls as [`FILTER_VALUES_PER_CALL`] needs (none when
    /// `values` is empty). Each call's Engine models are freed before the next call: at
    /// Swarm2k size the tasks of services that reserve resources are ~50,000. A value
    /// naming an object removed since it was listed is skipped (see below); any other
    /// failure fails the listing.
    pub(super) async fn list_tasks_by(
        &self,
        fixed: &[(&str, Vec<&str>)],
        key: &str,
        values: &[&str],
        keep: impl Fn(&bollard::models::Task) -> bool,
    ) -> Result<Vec<crate::model::Task>, ObserveError> {
        // A 404 can be blamed on one of `values` only when `fixed` names no object.
        let only_values_name_objects = fixed.iter().all(|(k, _)| *k != "service" && *k != "node");
        let mut tasks = Vec::new();
        for chunk in values.chunks(FILTER_VALUES_PER_CALL) {
            let mut filters: HashMap<&str, Vec<&str>> = fixed.iter().cloned().collect();
            filters.insert(key, chunk.to_vec());
            match self.list_tasks(&filters).await {
                Ok(listed) => tasks.extend(listed.iter().filter(|t| keep(t)).map(convert::task)),
                // The Engine fails the whole call when one value names nothing: a service
                // removed (a stack redeploy) or a node removed since the lists this call
                // was built from. The others are asked one by one; the gone ones have no
                // tasks to count.
                Err(ObserveError::Api { source, .. })
                    if is_not_found(&source) && only_values_name_objects =>
                {
                    for value in chunk {
                        filters.insert(key, vec![*value]);
                        match self.list_tasks(&filters).await {
                            Ok(listed) => {
                                tasks.extend(listed.iter().filter(|t| keep(t)).map(convert::task))
                            }
                            Err(ObserveError::Api { source, .. }) if is_not_found(&source) => {
                                tracing::debug!(key, value, "Gone since listed: no tasks");
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(tasks)
    }

    /// One task list call with `filters`.
    pub(super) async fn list_tasks(
        &self,
        filters: &HashMap<&str, Vec<&str>>,
    ) -> Result<Vec<bollard::models::Task>, ObserveError> {
        bounded(
            "list tasks",
            self.docker.list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(filters).build(),
            )),
        )
        .await
    }

    /// Whether the Engine answers `/_ping` within [`PING_TIMEOUT`].
    async fn engine_answers(&self) -> bool {
        matches!(
            tokio::time::timeout(PING_TIMEOUT, self.docker.ping()).await,
            Ok(Ok(_))
        )
    }

    async fn local_node(&self) -> Result<LocalNode, ObserveError> {
        if let Some(local) = self.local.lock().ok().and_then(|l| l.clone()) {
            return Ok(local);
        }
        // `info` needs the raft like the lists do, but waits the Engine's full 20 s
        // before answering without a leader: its own, longer deadline (it is read once),
        // so that a fresh process on a leaderless manager still gets to quorum-lost.
        let info = tokio::time::timeout(INFO_TIMEOUT, self.docker.info())
            .await
            .unwrap_or(Err(DockerError::RequestTimeoutError))
            .map_err(|source| ObserveError::Api {
                call: "info",
                source,
            })?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE)
            || swarm.control_available != Some(true)
        {
            return Err(ObserveError::NotAManager {
                state: swarm
                    .local_node_state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        let local = LocalNode {
            node_id: swarm.node_id.unwrap_or_default(),
            addr: swarm.node_addr.unwrap_or_default(),
        };
        if let Ok(mut cached) = self.local.lock() {
            *cached = Some(local.clone());
        }
        Ok(local)
    }

    fn forget_local_node(&self) {
        if let Ok(mut cached) = self.local.lock() {
            *cached = None;
        }
    }
}

/// A job task that is to complete and has not yet ended: it holds its node like a running
/// task.
fn live_job_task(t: &bollard::models::Task) -> bool {
    use bollard::models::TaskState;
    t.desired_state == Some(TaskState::COMPLETE)
        && t.status.as_ref().and_then(|s| s.state).is_some_and(|s| {
            !matches!(
                s,
                TaskState::COMPLETE
                    | TaskState::FAILED
                    | TaskState::REJECTED
                    | TaskState::SHUTDOWN
                    | TaskState::ORPHANED
                    | TaskState::REMOVE
            )
        })
}

/// The errors of tasks that did not start since `since` (an Engine timestamp), newest
/// first, distinct, at most three.
fn task_errors(tasks: &[bollard::models::Task], since: Option<&str>) -> Vec<String> {
    use bollard::models::TaskState;
    let since = since.and_then(convert::timestamp);
    let mut failed: Vec<(std::time::SystemTime, String)> = tasks
        .iter()
        .filter_map(|t| {
            let status = t.status.as_ref()?;
            let state = status.state?;
            if !matches!(
                state,
                TaskState::PENDING | TaskState::REJECTED | TaskState::FAILED
            ) {
                return None;
            }
            let at = status.timestamp.as_deref().and_then(convert::timestamp)?;
            if since.is_some_and(|since| at < since) {
                return None;
            }
            let why = status
                .err
                .clone()
                .filter(|e| !e.is_empty())
                .or_else(|| status.message.clone())
                .unwrap_or_default();
            Some((at, format!("{state}: {why}")))
        })
        .collect();
    failed.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut out: Vec<String> = Vec::new();
    for (_, why) in failed {
        if !out.contains(&why) && out.len() < 3 {
            out.push(why);
        }
    }
    out
}
