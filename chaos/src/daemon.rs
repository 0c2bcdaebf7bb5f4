//! One node = one dockerd in its own network, mount and UTS namespace, inside its own
//! cgroup, with its own `/run` (and so its own `/var/run/docker.sock`), `/var/lib/docker`
//! and `/etc/docker`.

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

use crate::cgroup::NodeCgroup;
use crate::error::{LabError, Result};
use crate::names::{LabPaths, NodeName};
use crate::wait::{wait_until, Probe};

/// Storage driver of the lab's daemons; overlay2 works on the ext4 these machines have.
pub const STORAGE_DRIVER_ENV: &str = "SWARM_CHAOS_STORAGE_DRIVER";
const DEFAULT_STORAGE_DRIVER: &str = "overlay2";
/// How long a fresh dockerd may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts the node's dockerd, detached from our session and process group so that a
/// Ctrl-C in the terminal reaches us, not the lab (we tear down ourselves).
pub fn spawn(
    paths: &LabPaths,
    node: &NodeName,
    netns: &str,
    cgroup: &NodeCgroup,
    addr: Ipv4Addr,
) -> Result<Child> {
    for dir in [
        paths.node_run(node),
        paths.node_data(node),
        paths.node_etc(node),
    ] {
        std::fs::create_dir_all(&dir).map_err(LabError::io("create", &dir))?;
    }
    for mount_point in ["/var/lib/docker", "/etc/docker"] {
        std::fs::create_dir_all(mount_point).map_err(LabError::io("create", mount_point))?;
    }
    // A stale socket from a killed daemon would make us think it answers already.
    let _ = std::fs::remove_file(paths.socket(node));
    cgroup.create()?;
    let script = boot_script(paths, node, cgroup, addr);
    let script_path = paths.boot_script(node);
    std::fs::write(&script_path, script).map_err(LabError::io("write", &script_path))?;
    let log_path = paths.log(node);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LabError::io("open", &log_path))?;
    let log_err = log.try_clone().map_err(LabError::io("open", &log_path))?;
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{netns}"))
        .args(["unshare", "--mount", "--uts", "--", "sh"])
        .arg(&script_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Command {
            command: format!(
                "nsenter --net=/var/run/netns/{netns} unshare --mount --uts -- sh {}",
                script_path.display()
            ),
            detail: format!("could not start: {e}"),
        })
}

fn boot_script(paths: &LabPaths, node: &NodeName, cgroup: &NodeCgroup, addr: Ipv4Addr) -> String {
    let driver =
        std::env::var(STORAGE_DRIVER_ENV).unwrap_or_else(|_| DEFAULT_STORAGE_DRIVER.to_owned());
    // Joining the cgroup first means dockerd, containerd and every shim are born inside it.
    format!(
        r#"set -e
echo $$ > {procs}
mount --make-rprivate /
hostname {node}
mount --bind {data} /var/lib/docker
mount --bind {etc} /etc/docker
mount --bind {run} /run
# Every process of the node was killed before a (re)start: pid files left behind would
# point at PIDs another process may hold now, and dockerd would refuse to start or wait
# for a containerd that is gone.
rm -f /run/docker.pid /run/docker/containerd/containerd.pid
# Extra daemon flags a test asked for (Lab::serve_docker_tls), one per line.
EXTRA=""
if [ -f /etc/docker/{EXTRA_ARGS_FILE} ]; then EXTRA=$(cat /etc/docker/{EXTRA_ARGS_FILE}); fi
exec dockerd --host unix:///var/run/docker.sock --bridge=none --iptables=false --ip-masq=false \
  --cgroup-parent={parent} --exec-opt native.cgroupdriver=cgroupfs --storage-driver={driver} \
  --swarm-default-advertise-addr={addr} $EXTRA
"#,
        procs = cgroup.procs_file().display(),
        data = paths.node_data(node).display(),
        etc = paths.node_etc(node).display(),
        run = paths.node_run(node).display(),
        parent = cgroup.parent_arg(),
    )
}

/// File in a node's `/etc/docker` whose words are added to its dockerd's flags.
pub const EXTRA_ARGS_FILE: &str = "swarm-chaos.args";

/// A client for a node's socket with the given request timeout.
pub fn client(
    socket: &Path,
    node: &str,
    timeout: Duration,
    version: &ClientVersion,
) -> Result<Docker> {
    Docker::connect_with_unix(&socket.to_string_lossy(), timeout.as_secs().max(1), version)
        .map_err(LabError::docker(node))
}

/// Waits until the node's dockerd answers, then returns the API version it speaks.
pub async fn wait_ready(paths: &LabPaths, node: &NodeName) -> Result<ClientVersion> {
    let socket = paths.socket(node);
    let result = wait_until("dockerd to answer", START_TIMEOUT, || {
        let socket = socket.clone();
        async move {
            if !socket.exists() {
                return Probe::Pending("no socket yet".into());
            }
            let negotiated = match client(
                &socket,
                node.as_str(),
                Duration::from_secs(5),
                API_DEFAULT_VERSION,
            ) {
                Ok(c) => c.negotiate_version().await,
                Err(e) => return Probe::Pending(e.to_string()),
            };
            match negotiated {
                Ok(c) => Probe::Done(c.client_version()),
                Err(e) => Probe::Pending(e.to_string()),
            }
        }
    })
    .await;
    result.map_err(|_| LabError::DaemonStart {
        node: node.to_string(),
        after: START_TIMEOUT,
        log: paths.log(node),
        tail: tail(&paths.log(node), 15),
    })
}

/// The last `lines` lines of a file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
