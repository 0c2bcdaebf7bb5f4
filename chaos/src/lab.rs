//! A real Docker Swarm on this machine: start it from a spec, reach each node's Docker API,
//! break it, watch it, and tear it down — on drop, on panic and on interruption.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use bollard::query_parameters::ListNodesOptions;
use bollard::{ClientVersion, Docker};
use futures::future::try_join_all;

use crate::cgroup::{NodeCgroup, ProcessState, Tree};
use crate::error::{LabError, Result};
use crate::image::{busybox_rootfs, find_static_busybox, import};
use crate::names::{LabName, LabPaths, NodeName, Role, DEFAULT_ROOT};
use crate::partition::grudges;
use crate::progress::Progress;
use crate::remove::remove_retrying;
use crate::state::{pick_subnet, LabState, NodeRecord, Owner};
use crate::table::NodeTable;
use crate::wait::{wait_until, Probe};
use crate::{daemon, live, net, reap, swarm};

/// Overrides where labs live.
pub const ROOT_ENV: &str = "SWARM_CHAOS_ROOT";
/// Timeout of lab operations against one node's API.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one observation: a frozen or cut-off manager must not stall a wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new swarm may take until every node is Ready.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a rebuilt node waits for a manager with a leader to join through (the rebuilt
/// host may have been the leader: the others elect a new one first).
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// The labs' root folder: `$SWARM_CHAOS_ROOT` or `/var/lib/swarm-chaos`.
pub fn default_root() -> PathBuf {
    std::env::var_os(ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// What lab to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Number of managers (`m1..mM`), at least 1.
    pub managers: usize,
    /// Number of workers (`w1..wW`).
    pub workers: usize,
    /// The lab's name; a unique one when `None`.
    pub name: Option<LabName>,
    /// Where the lab keeps its files.
    pub root: PathBuf,
    /// The cgroup tree that holds the nodes; [`Tree::for_new_lab`] when `None`.
    pub cgroup: Option<Tree>,
}

impl LabSpec {
    /// `managers` managers and `workers` workers, a unique name, the default root.
    pub fn new(managers: usize, workers: usize) -> Self {
        Self {
            managers,
            workers,
            name: None,
            root: default_root(),
            cgroup: None,
        }
    }

    /// Holds the nodes in the given cgroup tree (v2 on a hybrid host: the cgroup2 freeze
    /// and kill paths).
    pub fn cgroup(mut self, tree: Tree) -> Self {
        self.cgroup = Some(tree);
        self
    }

    /// Gives the lab a name.
    pub fn named(mut self, name: LabName) -> Self {
        self.name = Some(name);
        self
    }
}

/// A running lab. Dropping a lab started by this process tears it down; a lab opened by
/// name (the CLI) or [`Lab::detach`]ed is left running.
pub struct Lab {
    paths: LabPaths,
    state: Mutex<LabState>,
    children: Mutex<HashMap<NodeName, Child>>,
    version: Mutex<Option<ClientVersion>>,
    armed: bool,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("name", self.paths.lab())
            .finish_non_exhaustive()
    }
}

impl Lab {
    /// Starts a swarm of `spec.managers` managers and `spec.workers` workers, each node a
    /// dockerd in its own namespaces, with `busybox:latest` loaded on every node, and
    /// returns once every node is Ready and every manager reachable.
    pub async fn start(spec: LabSpec) -> Result<Self> {
        if spec.managers == 0 {
            return Err(LabError::Usage("a lab needs at least one manager".into()));
        }
        check_prerequisites()?;
        let tree = match spec.cgroup {
            Some(tree) => tree,
            None => Tree::for_new_lab()?,
        };
        tree.check()?;
        // Fails before anything is created if no static busybox can be found or fetched.
        let rootfs = busybox_rootfs(&find_static_busybox()?)?;
        reap::reap_orphans(&spec.root)?;
        let name = spec.name.clone().unwrap_or_else(|| LabName::unique("t"));
        let paths = LabPaths::new(&spec.root, name.clone());
        std::fs::create_dir_all(&spec.root).map_err(LabError::io("create", &spec.root))?;
        // create_dir (not _all) is the atomic claim on the name.
        std::fs::create_dir(paths.dir()).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => LabError::Usage(format!(
                "lab {name} already exists (swarm-chaos down --name {name})"
            )),
            _ => LabError::io("create", paths.dir())(e),
        })?;
        let mut state = LabState::new(
            name.clone(),
            pick_subnet(&spec.root, &name),
            Owner::this_process(),
        );
        state.cgroup = tree;
        state.save(&paths.state_file())?;
        live::register(&paths);
        // From here on, any error drops `lab`, which tears everything down again.
        let lab = Self {
            paths,
            state: Mutex::new(state),
            children: Mutex::new(HashMap::new()),
            version: Mutex::new(None),
            armed: true,
        };
        tracing::info!(lab = %name, managers = spec.managers, workers = spec.workers, "Starting lab");
        net::create_bridge(&name.bridge_netns())?;
        let managers = (1..=spec.managers).map(|i| NodeName::numbered(Role::Manager, i));
        let workers = (1..=spec.workers).map(|i| NodeName::numbered(Role::Worker, i));
        let mut records = Vec::new();
        for node in managers {
            records.push(lab.boot_node(node, Role::Manager)?);
        }
        for node in workers {
            records.push(lab.boot_node(node, Role::Worker)?);
        }
        let total = records.len();
        let answering = Progress::new("nodes answering", total as u64);
        try_join_all(records.iter().map(|r| async {
            lab.ready_with_image(&r.name, &rootfs).await?;
            answering.inc();
            Ok::<_, LabError>(())
        }))
        .await?;
        answering.finish();
        lab.form_swarm(&records).await?;
        let ready = Progress::new("nodes Ready", total as u64);
        lab.wait_for_nodes(
            &format!(
                "{total} nodes Ready with {} reachable managers",
                spec.managers
            ),
            FORM_TIMEOUT,
            |t| {
                ready.set(t.rows.iter().filter(|r| r.is_ready()).count() as u64);
                t.rows.len() == total
                    && t.rows.iter().all(|r| r.is_ready())
                    && t.managers()
                        .filter(|m| m.is_reachable_manager() || m.leader)
                        .count()
                        == spec.managers
            },
        )
        .await?;
        ready.finish();
        tracing::info!(lab = %name, "Lab is up");
        Ok(lab)
    }

    /// Opens a lab started earlier (by this or another process), by name, or the only lab
    /// there is when `name` is `None`. The handle does not tear the lab down on drop.
    pub fn open(root: &Path, name: Option<&str>) -> Result<Self> {
        let name = match name {
            Some(n) => LabName::new(n)?,
            None => {
                let labs = crate::state::list_labs(root);
                match labs.as_slice() {
                    [only] => only.clone(),
                    [] => return Err(LabError::Usage("no lab is running (swarm-chaos up)".into())),
                    many => {
                        let names: Vec<&str> = many.iter().map(|l| l.as_str()).collect();
                        return Err(LabError::Usage(format!(
                            "several labs exist ({}): say which with --name",
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        let paths = LabPaths::new(root, name.clone());
        if !paths.state_file().exists() {
            return Err(LabError::Usage(format!(
                "no lab named {name} under {}",
                root.display()
            )));
        }
        let state = LabState::load(&paths.state_file())?;
        Ok(Self {
            paths,
            state: Mutex::new(state),
            children: Mutex::new(HashMap::new()),
            version: Mutex::new(None),
            armed: false,
        })
    }

    /// The lab's name.
    pub fn name(&self) -> &LabName {
        self.paths.lab()
    }

    /// The lab's files.
    pub fn paths(&self) -> &LabPaths {
        &self.paths
    }

    /// A copy of the lab's state (nodes, addresses, partition).
    pub fn state(&self) -> LabState {
        self.lock_state().clone()
    }

    /// One node's record.
    pub fn node(&self, node: &str) -> Result<NodeRecord> {
        self.lock_state().node(node).cloned()
    }

    /// The node's Docker socket on the host.
    pub fn socket(&self, node: &str) -> Result<PathBuf> {
        Ok(self.paths.socket(&self.node(node)?.name))
    }

    /// `unix://<socket>`, for `DOCKER_HOST` or `docker -H`.
    pub fn docker_host(&self, node: &str) -> Result<String> {
        Ok(format!("unix://{}", self.socket(node)?.display()))
    }

    /// A Docker API client for one node.
    pub async fn client(&self, node: &str) -> Result<Docker> {
        self.client_with_timeout(node, OP_TIMEOUT).await
    }

    /// The docker CLI, pointed at one node.
    pub fn docker_cli(&self, node: &str) -> Result<Command> {
        let mut command = Command::new("docker");
        command.arg("-H").arg(self.docker_host(node)?);
        Ok(command)
    }

    /// Bytes of memory the node's processes take on the host (their PSS, see
    /// [`crate::footprint`]).
    pub fn memory(&self, node: &str) -> Result<u64> {
        Ok(crate::footprint::pss_bytes(
            &self.cgroup(&self.node(node)?.name),
        ))
    }

    /// The cgroup that holds every process of the node.
    pub fn node_cgroup(&self, node: &str) -> Result<NodeCgroup> {
        Ok(self.cgroup(&self.node(node)?.name))
    }

    /// Whether the node's processes run, are frozen or are gone.
    pub fn process_state(&self, node: &str) -> Result<ProcessState> {
        Ok(self.cgroup(&self.node(node)?.name).state())
    }

    /// Node loss: kills every process of the node at once (dockerd, containerd, shims and
    /// containers). Its data stays, so [`Lab::restart`] can bring it back.
    pub async fn kill(&self, node: &str) -> Result<()> {
        let record = self.node(node)?;
        tracing::info!(lab = %self.name(), node, "Killing node");
        self.cgroup(&record.name).kill_all()?;
        self.reap_child(&record.name);
        Ok(())
    }

    /// A stuck host: freezes every process of the node.
    pub async fn freeze(&self, node: &str) -> Result<()> {
        let record = self.node(node)?;
        let cgroup = self.cgroup(&record.name);
        match cgroup.state() {
            ProcessState::Running => {
                tracing::info!(lab = %self.name(), node, "Freezing node");
                cgroup.freeze()
            }
            other => Err(LabError::Usage(format!(
                "node {node} is {other}, not running"
            ))),
        }
    }

    /// Lets a frozen node run again.
    pub async fn thaw(&self, node: &str) -> Result<()> {
        let record = self.node(node)?;
        let cgroup = self.cgroup(&record.name);
        match cgroup.state() {
            ProcessState::Frozen => {
                tracing::info!(lab = %self.name(), node, "Thawing node");
                cgroup.thaw()
            }
            other => Err(LabError::Usage(format!(
                "node {node} is {other}, not frozen"
            ))),
        }
    }

    /// Stops the node (if it runs) and starts it again with the same data: it rejoins the
    /// swarm as the same node.
    pub async fn restart(&self, node: &str) -> Result<()> {
        let record = self.node(node)?;
        tracing::info!(lab = %self.name(), node, "Restarting node");
        let cgroup = self.cgroup(&record.name);
        cgroup.kill_all()?;
        self.reap_child(&record.name);
        self.spawn_daemon(&record)?;
        self.ready(&record.name).await
    }

    /// Cuts the network as `spec` says (see [`crate::partition`]), replacing any earlier
    /// partition.
    pub async fn partition(&self, spec: &str) -> Result<()> {
        let state = self.state();
        let names: Vec<NodeName> = state.nodes.iter().map(|n| n.name.clone()).collect();
        let grudges = grudges(spec, &names)?;
        tracing::info!(lab = %self.name(), spec, "Partitioning");
        for record in &state.nodes {
            let peers = grudges
                .get(&record.name)
                .map(|peers| {
                    state
                        .nodes
                        .iter()
                        .filter(|n| peers.contains(&n.name))
                        .map(|n| n.addr)
                        .collect()
                })
                .unwrap_or_default();
            net::block_peers(&self.name().node_host_name(&record.name), &peers)?;
        }
        self.update_state(|s| s.partition = Some(spec.to_owned()))
    }

    /// Removes every partition.
    pub async fn heal(&self) -> Result<()> {
        tracing::info!(lab = %self.name(), "Healing partitions");
        for record in self.state().nodes {
            net::unblock_all(&self.name().node_host_name(&record.name))?;
        }
        self.update_state(|s| s.partition = None)
    }

    /// A fresh node joins the swarm with `role`, the way an autoscaling group replaces a
    /// dead host: new name, new address, empty disk.
    pub async fn join(&self, node: &str, role: Role) -> Result<NodeRecord> {
        let name = NodeName::new(node)?;
        let rootfs = busybox_rootfs(&find_static_busybox()?)?;
        let (manager, client, table) = self.answering_manager().await?;
        let token = swarm::join_token(&client, manager.name.as_str(), role).await?;
        let record = self.boot_node(name, role)?;
        self.ready_with_image(&record.name, &rootfs).await?;
        self.join_through(&record, &manager, &table, &token).await?;
        tracing::info!(lab = %self.name(), node, %role, "Node joined");
        Ok(record)
    }

    /// A rebuilt host: the node's processes are killed (as [`Lab::kill`] does), its Docker
    /// and swarm state wiped, and a fresh daemon on the same hostname and address joins the
    /// swarm with `role`, as a new swarm node (new node ID). The old node's entry stays in
    /// the swarm, Down, as it does in the field when a host is reinstalled. The old entry of
    /// a manager stays a raft member, shown `reachable` (the new node answers on its
    /// address) though it never votes, so it counts against quorum until it is demoted.
    pub async fn rebuild(&self, node: &str, role: Role) -> Result<NodeRecord> {
        let record = self.node(node)?;
        let rootfs = busybox_rootfs(&find_static_busybox()?)?;
        tracing::info!(lab = %self.name(), node, %role, "Rebuilding node");
        self.cgroup(&record.name).kill_all()?;
        self.reap_child(&record.name);
        self.wipe_node(&record.name)?;
        self.update_state(|s| {
            if let Some(r) = s.nodes.iter_mut().find(|r| r.name == record.name) {
                r.role = role;
            }
        })?;
        let record = NodeRecord { role, ..record };
        self.spawn_daemon(&record)?;
        self.ready_with_image(&record.name, &rootfs).await?;
        let (manager, client, table) = wait_until(
            "a manager with a leader to answer",
            LEADER_TIMEOUT,
            || async {
                match self.answering_manager().await {
                    Ok(found) => Probe::Done(found),
                    Err(e) => Probe::Pending(e.to_string()),
                }
            },
        )
        .await?;
        let token = swarm::join_token(&client, manager.name.as_str(), role).await?;
        self.join_through(&record, &manager, &table, &token).await?;
        tracing::info!(lab = %self.name(), node, %role, "Rebuilt node joined");
        Ok(record)
    }

    /// Disaster recovery: `docker swarm init --force-new-cluster --advertise-addr <addr>`
    /// on `node`, a manager. It becomes the only member of a new raft that keeps the
    /// swarm's state; the other managers stay listed, with the roles they had.
    pub async fn force_new_cluster(&self, node: &str) -> Result<()> {
        let record = self.node(node)?;
        tracing::info!(lab = %self.name(), node, "Forcing a new cluster");
        let client = self.client(record.name.as_str()).await?;
        swarm::force_new_cluster(&client, record.name.as_str(), record.addr).await
    }

    /// Imports a program as image `image` on every running node (an image `FROM scratch`
    /// with the program as its entrypoint, `/<name>`).
    pub async fn load_program_image(&self, image: &str, binary: &Path, name: &str) -> Result<()> {
        let rootfs = crate::image::program_rootfs(binary, name)?;
        let changes = vec![format!(r#"ENTRYPOINT ["/{name}"]"#)];
        for record in self.state().nodes {
            if self.cgroup(&record.name).state() != ProcessState::Running {
                continue;
            }
            let client = self.client(record.name.as_str()).await?;
            crate::image::import_as(
                &client,
                record.name.as_str(),
                &rootfs,
                image,
                changes.clone(),
            )
            .await?;
        }
        Ok(())
    }

    /// Creates an EFS-like volume (see [`crate::efs`]) in this lab.
    pub fn create_efs(&self, options: crate::efs::EfsOptions) -> Result<crate::efs::EfsVolume> {
        crate::efs::EfsVolume::create(&self.paths, options)
    }

    /// Starts a Prometheus server for this lab, scraping `targets` every `interval`.
    pub fn start_prometheus(
        &self,
        targets: &[crate::prometheus::Target],
        interval: Duration,
    ) -> Result<crate::prometheus::Prometheus> {
        crate::prometheus::Prometheus::start(&self.paths, targets, interval)
    }

    /// Starts a Prometheus server (on the host) serving its API as Prometheus'
    /// `--web.config.file` `web_config` says: TLS, basic authentication.
    pub fn start_prometheus_with_web_config(
        &self,
        targets: &[crate::prometheus::Target],
        interval: Duration,
        web_config: &std::path::Path,
    ) -> Result<crate::prometheus::Prometheus> {
        crate::prometheus::Prometheus::start_with_web_config(
            &self.paths,
            targets,
            interval,
            web_config,
        )
    }

    /// Makes `node`'s dockerd also serve `tcp://ADDR:2376` with `--tlsverify` (clients need
    /// a certificate `ca` signed), then restarts it with the same data. `ca`, `cert` and
    /// `key` are PEM files (the server's certificate must name the node's address).
    /// Returns the URL, reachable from the lab network ([`Lab::on_lab_network`]).
    pub async fn serve_docker_tls(
        &self,
        node: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<String> {
        let record = self.node(node)?;
        let etc = self.paths.node_etc(&record.name);
        let tls = etc.join("tls");
        std::fs::create_dir_all(&tls).map_err(LabError::io("create", &tls))?;
        for (from, name) in [(ca, "ca.pem"), (cert, "cert.pem"), (key, "key.pem")] {
            let to = tls.join(name);
            std::fs::copy(from, &to).map_err(LabError::io("copy", &to))?;
        }
        let args = etc.join(crate::daemon::EXTRA_ARGS_FILE);
        std::fs::write(
            &args,
            "--host tcp://0.0.0.0:2376 --tlsverify --tlscacert /etc/docker/tls/ca.pem --tlscert /etc/docker/tls/cert.pem --tlskey /etc/docker/tls/key.pem\n",
        )
        .map_err(LabError::io("write", &args))?;
        self.restart(node).await?;
        Ok(format!("tcp://{}:2376", record.addr))
    }

    /// `program` run on the lab's network (in the observer host's namespace), where the
    /// nodes' addresses are reachable.
    pub fn on_lab_network(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let netns = self.observer()?;
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{netns}"))
            .arg("--")
            .arg(program);
        Ok(command)
    }

    /// Starts a Prometheus server on the lab's own network (on the observer host), so it
    /// can scrape services that listen on the nodes' addresses.
    pub fn start_prometheus_on_lab_network(
        &self,
        targets: &[crate::prometheus::Target],
        interval: Duration,
    ) -> Result<crate::prometheus::Prometheus> {
        let netns = self.observer()?;
        crate::prometheus::Prometheus::start_in(&self.paths, targets, interval, Some(&netns))
    }

    /// An HTTP GET from the lab's observer host (status and body), e.g. of a service
    /// listening on a node's address.
    pub fn http_get_on_lab_network(
        &self,
        addr: std::net::SocketAddr,
        path: &str,
    ) -> Result<(u16, String)> {
        let netns = self.observer()?;
        crate::prometheus::http_get_in(&netns, addr, path)
    }

    /// The observer host: a network namespace on the lab's bridge at `.250`, running no
    /// Docker; created on first use, removed with the lab (it carries the lab's prefix).
    pub fn observer(&self) -> Result<String> {
        let lab = self.paths.lab();
        let netns = lab.observer_netns();
        if !Path::new("/var/run/netns").join(&netns).exists() {
            let [a, b, c] = self.state().subnet;
            net::create_node(
                &lab.bridge_netns(),
                &netns,
                "0obs",
                Ipv4Addr::new(a, b, c, 250),
            )?;
        }
        Ok(netns)
    }

    /// Loads an image archive (`docker save` output) into every running node.
    pub async fn load_image_archive(&self, archive: &Path) -> Result<()> {
        let data = std::fs::read(archive).map_err(LabError::io("read", archive))?;
        for record in self.state().nodes {
            if self.cgroup(&record.name).state() != ProcessState::Running {
                continue;
            }
            let client = self.client(record.name.as_str()).await?;
            crate::image::load_archive(&client, record.name.as_str(), &data).await?;
        }
        Ok(())
    }

    /// A client of the first manager that answers, with the node table it returned.
    pub async fn manager_client(&self) -> Result<(Docker, NodeTable)> {
        self.answering_manager()
            .await
            .map(|(_, client, table)| (client, table))
    }

    /// The node table as the first manager that answers sees it.
    pub async fn node_table(&self) -> Result<NodeTable> {
        self.answering_manager().await.map(|(_, _, table)| table)
    }

    /// Waits until `condition` holds for the node table; on timeout the error shows the
    /// last table observed (or why none could be read).
    pub async fn wait_for_nodes(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&NodeTable) -> bool,
    ) -> Result<NodeTable> {
        wait_until(what, timeout, || async {
            match self.node_table().await {
                Ok(table) if condition(&table) => Probe::Done(table),
                Ok(table) => Probe::Pending(table.to_string()),
                Err(e) => Probe::Pending(e.to_string()),
            }
        })
        .await
    }

    /// Leaves the lab running after this handle is gone (`swarm-chaos up`).
    pub fn detach(mut self) -> Result<()> {
        self.update_state(|s| s.owner = None)?;
        live::deregister(&self.paths);
        self.armed = false;
        Ok(())
    }

    /// Tears the lab down now: every process, namespace, cgroup, mount, loop device and
    /// file of it.
    pub fn teardown(mut self) -> Result<()> {
        self.armed = false;
        self.teardown_now()
    }

    fn teardown_now(&self) -> Result<()> {
        tracing::info!(lab = %self.name(), "Tearing lab down");
        let result = reap::reap_lab(&self.paths);
        let children: Vec<Child> = self
            .children
            .lock()
            .map(|mut c| c.drain().map(|(_, child)| child).collect())
            .unwrap_or_default();
        for mut child in children {
            let _ = child.wait();
        }
        live::deregister(&self.paths);
        result
    }

    fn boot_node(&self, name: NodeName, role: Role) -> Result<NodeRecord> {
        let record = {
            let mut state = self.lock_state();
            let record = state.add_node(name, role)?;
            state.save(&self.paths.state_file())?;
            record
        };
        let lab = self.name();
        net::create_node(
            &lab.bridge_netns(),
            &lab.node_host_name(&record.name),
            record.name.as_str(),
            record.addr,
        )?;
        self.spawn_daemon(&record)?;
        Ok(record)
    }

    fn spawn_daemon(&self, record: &NodeRecord) -> Result<()> {
        let child = daemon::spawn(
            &self.paths,
            &record.name,
            &self.name().node_host_name(&record.name),
            &self.cgroup(&record.name),
            record.addr,
        )?;
        if let Ok(mut children) = self.children.lock() {
            children.insert(record.name.clone(), child);
        }
        Ok(())
    }

    async fn ready(&self, node: &NodeName) -> Result<()> {
        let version = daemon::wait_ready(&self.paths, node).await?;
        if let Ok(mut v) = self.version.lock() {
            *v = Some(version);
        }
        Ok(())
    }

    async fn ready_with_image(&self, node: &NodeName, rootfs: &[u8]) -> Result<()> {
        self.ready(node).await?;
        let client = self.client(node.as_str()).await?;
        import(&client, node.as_str(), rootfs).await
    }

    async fn form_swarm(&self, records: &[NodeRecord]) -> Result<()> {
        let (managers, workers): (Vec<&NodeRecord>, Vec<&NodeRecord>) =
            records.iter().partition(|r| r.role == Role::Manager);
        let first = managers[0];
        let first_client = self.client(first.name.as_str()).await?;
        swarm::init(&first_client, first.name.as_str(), first.addr).await?;
        let manager_token =
            swarm::join_token(&first_client, first.name.as_str(), Role::Manager).await?;
        let worker_token =
            swarm::join_token(&first_client, first.name.as_str(), Role::Worker).await?;
        // Managers one at a time: each raft membership change should settle before the next.
        for m in &managers[1..] {
            let client = self.client(m.name.as_str()).await?;
            swarm::join(
                &client,
                m.name.as_str(),
                m.addr,
                &[first.addr],
                &manager_token,
            )
            .await?;
        }
        let manager_addrs: Vec<Ipv4Addr> = managers.iter().map(|m| m.addr).collect();
        let joined = Progress::new("workers joined", workers.len() as u64);
        try_join_all(workers.iter().map(|w| async {
            let client = self.client(w.name.as_str()).await?;
            swarm::join(
                &client,
                w.name.as_str(),
                w.addr,
                &manager_addrs,
                &worker_token,
            )
            .await?;
            joined.inc();
            Ok::<_, LabError>(())
        }))
        .await?;
        joined.finish();
        Ok(())
    }

    /// Joins `record`'s running daemon to the swarm through `manager` (it answered, so it
    /// goes first: the Engine tries only the first address), then the other reachable
    /// managers of `table`, never the node's own address (the old entry of a rebuilt host
    /// may still look reachable).
    async fn join_through(
        &self,
        record: &NodeRecord,
        manager: &NodeRecord,
        table: &NodeTable,
        token: &swarm::JoinToken,
    ) -> Result<()> {
        let mut managers = vec![manager.addr];
        managers.extend(
            table
                .managers()
                .filter(|m| m.is_reachable_manager())
                .filter_map(|m| m.addr.parse::<Ipv4Addr>().ok())
                .filter(|addr| *addr != manager.addr && *addr != record.addr),
        );
        let joining = self.client(record.name.as_str()).await?;
        swarm::join(
            &joining,
            record.name.as_str(),
            record.addr,
            &managers,
            token,
        )
        .await
    }

    /// Empties a stopped node's disk: its `/var/lib/docker`, `/etc/docker` and `/run`
    /// (its log stays, for the record).
    fn wipe_node(&self, node: &NodeName) -> Result<()> {
        for dir in [
            self.paths.node_data(node),
            self.paths.node_etc(node),
            self.paths.node_run(node),
        ] {
            remove_retrying("wipe node folder", &dir, |d| std::fs::remove_dir_all(d))?;
        }
        Ok(())
    }

    /// The first running node, managers first, whose API lists the nodes (which needs a
    /// raft leader), with a client to it and the table it returned.
    async fn answering_manager(&self) -> Result<(NodeRecord, Docker, NodeTable)> {
        let mut candidates = self.state().nodes;
        candidates.sort_by_key(|n| n.role != Role::Manager);
        let mut failures = Vec::new();
        for record in candidates {
            if self.cgroup(&record.name).state() != ProcessState::Running {
                continue;
            }
            let answer = async {
                let client = self
                    .client_with_timeout(record.name.as_str(), PROBE_TIMEOUT)
                    .await?;
                let nodes = client
                    .list_nodes(None::<ListNodesOptions>)
                    .await
                    .map_err(LabError::docker(record.name.as_str()))?;
                Ok::<_, LabError>((client, nodes))
            };
            match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
                Ok(Ok((client, nodes))) => return Ok((record, client, NodeTable::new(&nodes))),
                Ok(Err(e)) => failures.push(format!("{}: {e}", record.name)),
                Err(_) => failures.push(format!(
                    "{}: no answer within {PROBE_TIMEOUT:?}",
                    record.name
                )),
            }
        }
        Err(LabError::NoManager(if failures.is_empty() {
            "no node is running".into()
        } else {
            failures.join("; ")
        }))
    }

    async fn client_with_timeout(&self, node: &str, timeout: Duration) -> Result<Docker> {
        let socket = self.socket(node)?;
        let known = self.version.lock().ok().and_then(|v| *v);
        match known {
            Some(version) => daemon::client(&socket, node, timeout, &version),
            None => {
                let client = daemon::client(&socket, node, timeout, bollard::API_DEFAULT_VERSION)?
                    .negotiate_version()
                    .await
                    .map_err(LabError::docker(node))?;
                if let Ok(mut v) = self.version.lock() {
                    *v = Some(client.client_version());
                }
                Ok(client)
            }
        }
    }

    fn cgroup(&self, node: &NodeName) -> NodeCgroup {
        NodeCgroup::new(self.name().node_host_name(node), self.cgroup_tree())
    }

    /// The cgroup tree that holds the lab's nodes.
    pub fn cgroup_tree(&self) -> Tree {
        self.lock_state().cgroup
    }

    fn reap_child(&self, node: &NodeName) {
        let child = self.children.lock().ok().and_then(|mut c| c.remove(node));
        if let Some(mut child) = child {
            let _ = child.wait();
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, LabState> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update_state(&self, change: impl FnOnce(&mut LabState)) -> Result<()> {
        let mut state = self.lock_state();
        change(&mut state);
        state.save(&self.paths.state_file())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.teardown_now() {
                eprintln!("swarm-chaos: tearing down lab {} failed: {e}", self.name());
            }
        }
    }
}

fn check_prerequisites() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(LabError::Prerequisite(
            "the lab needs root (network namespaces, mounts, cgroups)".into(),
        ));
    }
    let missing: Vec<&str> = ["ip", "nsenter", "unshare", "dockerd", "iptables", "docker"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Prerequisite(format!(
            "the lab needs {} on PATH (Debian: apt-get install docker.io iproute2 iptables util-linux)",
            missing.join(", ")
        )))
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}
