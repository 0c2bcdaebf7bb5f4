//! Helpers for end-to-end tests: the real `swarm-warden` binary against a real lab swarm.

#![allow(dead_code)] // each test binary uses a different part

mod log;
mod migration;
mod services;
mod tls;
#[allow(unused_imports)] // not every test binary uses them
pub use log::Log;
#[allow(unused_imports)]
pub use migration::*;
#[allow(unused_imports)]
pub use services::*;
#[allow(unused_imports)]
pub use tls::*;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use swarm_chaos::{Lab, NodeTable};

/// The binary under test.
pub fn warden_bin() -> &'static str {
    env!("CARGO_BIN_EXE_swarm-warden")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("swarm_chaos=info")
        .with_test_writer()
        .try_init();
}

/// Writes a policy file for this test and returns its path.
pub fn policy_file(lab: &Lab, yaml: &str) -> PathBuf {
    let path = lab.paths().dir().join("policy.yml");
    std::fs::write(&path, yaml).expect("write policy");
    path
}

/// Runs `swarm-warden ARGS` to completion against `node`'s Docker API.
pub fn warden_once(lab: &Lab, node: &str, args: &[&str]) -> Output {
    Command::new(warden_bin())
        .args(args)
        .env("DOCKER_HOST", lab.docker_host(node).expect("docker host"))
        .env("LOG_LEVEL", "swarm_warden=debug")
        .output()
        .expect("run swarm-warden")
}

/// A `swarm-warden run` in the background; stopped with SIGTERM on drop.
pub struct Warden {
    child: Option<Child>,
    log: PathBuf,
}

impl Warden {
    /// Starts `swarm-warden run --config POLICY` against `node`.
    pub fn start(lab: &Lab, node: &str, policy: &PathBuf, extra: &[&str]) -> Self {
        Self::start_with_env(lab, node, policy, extra, &[])
    }

    /// The same, with extra environment variables (libfaketime's, say).
    pub fn start_with_env(
        lab: &Lab,
        node: &str,
        policy: &PathBuf,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let log = lab
            .paths()
            .dir()
            .join(format!("warden-{node}-{}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(warden_bin())
            .arg("run")
            .arg("--config")
            .arg(policy)
            .args(extra)
            .env("DOCKER_HOST", lab.docker_host(node).expect("docker host"))
            .env("LOG_LEVEL", "swarm_warden=debug")
            // Any free port: wardens of parallel test runs must not fight over :8080.
            .env("SWARM_WARDEN_HTTP_LISTEN", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            // The tests read typed events (the `event` field), not wording.
            .env("LOG_FORMAT", "json")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start swarm-warden");
        Self {
            child: Some(child),
            log,
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> Log {
        Log::parse(strip_ansi(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
        ))
    }

    /// How many actions it carried out (started) so far.
    pub fn actions_started(&self) -> usize {
        self.log().count("action-started")
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to it.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(child) = &self.child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, signal).expect("signal swarm-warden");
        }
    }

    /// Kills it at once (SIGKILL), as a crash or an OOM kill would.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it with SIGTERM and returns its log; fails if it does not stop in time.
    pub fn stop(mut self) -> Log {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("swarm-warden did not stop within 20s of SIGTERM");
        }
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- swarm-warden log ----\n{}\n---- end ----", self.log());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// When a JSON log line was written.
pub fn event_time(event: &serde_json::Value) -> std::time::SystemTime {
    humantime::parse_rfc3339_weak(event["timestamp"].as_str().unwrap_or_default())
        .or_else(|_| humantime::parse_rfc3339(event["timestamp"].as_str().unwrap_or_default()))
        .expect("timestamp")
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The shipped image as a `docker save` archive, built by `image/build` (the documented
/// command) if it is missing or older than the binary under test. `.ci/run` builds it
/// before the tests; `$E2E_WARDEN_IMAGE_ARCHIVE` points at a prebuilt one.
pub fn warden_image_archive() -> PathBuf {
    if let Some(path) = std::env::var_os("E2E_WARDEN_IMAGE_ARCHIVE") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let archive = target.join("image/swarm-warden.tar");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (
        modified(&archive),
        modified(std::path::Path::new(warden_bin())),
    ) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    };
    if !fresh {
        let status = Command::new(root.join("image/build"))
            .arg("--save")
            .arg(&archive)
            .current_dir(&root)
            .status()
            .expect("run image/build");
        assert!(status.success(), "image/build failed: {status}");
    }
    archive
}

/// Reachable managers (leader included) in a node table.
pub fn reachable_managers(t: &NodeTable) -> usize {
    t.managers()
        .filter(|m| m.is_reachable_manager() || m.leader)
        .count()
}

/// Node IDs and versions, to prove nothing was changed.
pub async fn node_versions(lab: &Lab, node: &str) -> Vec<(String, u64)> {
    let nodes = lab
        .client(node)
        .await
        .expect("client")
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .expect("list nodes");
    let mut v: Vec<(String, u64)> = nodes
        .iter()
        .map(|n| {
            (
                n.id.clone().unwrap_or_default(),
                n.version.as_ref().and_then(|v| v.index).unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

/// Tears the lab down and fails if anything of it is left on the host.
pub fn teardown_leaving_nothing(lab: Lab) {
    let paths = lab.paths().clone();
    lab.teardown().expect("teardown");
    let left = swarm_chaos::reap::leftovers(&paths);
    assert!(
        left.is_empty(),
        "lab {} left behind: {left:#?}",
        paths.lab()
    );
}

/// A manager other than `except` that is not the leader.
pub fn follower(t: &NodeTable, except: &[&str]) -> (String, String) {
    let row = t
        .managers()
        .find(|m| !m.leader && !except.contains(&m.hostname.as_str()))
        .unwrap_or_else(|| panic!("no follower besides {except:?}:\n{t}"));
    (row.hostname.clone(), row.id.clone())
}

/// Kills the manager `victim` and waits until the lab sees it Down; returns when.
pub async fn kill_until_down(lab: &Lab, victim: &str) -> Instant {
    lab.kill(victim).await.expect("kill");
    let (_, down_seen, _) = watch_until(lab, "victim Down", Duration::from_secs(60), |t| {
        t.by_hostname(victim).any(|r| r.is_down())
    })
    .await;
    down_seen
}

/// Kills the manager `victim` (node ID `victim_id`) and returns how long after it was seen
/// Down its entry left the node list (waits up to `dead_after` + 60 s).
pub async fn kill_until_removed(
    lab: &Lab,
    victim: &str,
    victim_id: &str,
    dead_after: Duration,
) -> Duration {
    let down_seen = kill_until_down(lab, victim).await;
    let (_, removed, _) = watch_until(
        lab,
        "victim removed",
        dead_after + Duration::from_secs(60),
        |t| t.rows.iter().all(|r| r.id != victim_id),
    )
    .await;
    removed - down_seen
}

/// Polls the node table (every 500 ms) until `goal` holds, counting samples in which no
/// manager could answer with a leader.
pub async fn watch_until(
    lab: &Lab,
    what: &str,
    timeout: Duration,
    goal: impl Fn(&NodeTable) -> bool,
) -> (NodeTable, Instant, usize) {
    let start = Instant::now();
    let mut leaderless = 0;
    let mut last: String;
    loop {
        match lab.node_table().await {
            Ok(t) if goal(&t) => return (t, Instant::now(), leaderless),
            Ok(t) => last = t.to_string(),
            Err(e) => {
                leaderless += 1;
                last = e.to_string();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
