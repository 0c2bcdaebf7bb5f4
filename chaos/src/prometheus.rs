//! A real Prometheus server for the lab (Debian's `prometheus` package, unpacked offline
//! like busybox), scraping lab exporters on loopback — so swarm-warden reads volume
//! telemetry the way users read their CloudWatch exporter.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cgroup::{CgroupMode, NodeCgroup, Tree};
use crate::cmd::{output_of, run};
use crate::error::{LabError, Result};
use crate::names::LabPaths;

/// Overrides where the prometheus binary is taken from.
pub const PROMETHEUS_ENV: &str = "SWARM_CHAOS_PROMETHEUS";
const CACHE_DIR: &str = "/var/cache/swarm-chaos";

/// A scrape target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Prometheus job name.
    pub job: String,
    /// `host:port` serving `/metrics`.
    pub addr: SocketAddr,
}

/// A running Prometheus; stopped on drop (and by the lab's teardown, through its cgroup).
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    /// The network namespace it runs in (`None`: the host's).
    netns: Option<String>,
    /// Whether it serves TLS.
    tls: bool,
    /// Whether it runs with a `--web.config.file`.
    web_config: bool,
    /// Its log file.
    log: PathBuf,
}

/// Finds `prometheus`: `$SWARM_CHAOS_PROMETHEUS`, the lab cache, PATH, or else Debian's
/// package downloaded and unpacked into the cache (nothing is installed on the host).
pub fn find_prometheus() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(PROMETHEUS_ENV) {
        return Ok(PathBuf::from(path));
    }
    let cached = Path::new(CACHE_DIR).join("prometheus/usr/bin/prometheus");
    if cached.is_file() {
        return Ok(cached);
    }
    if let Some(on_path) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    }) {
        return Ok(on_path);
    }
    let cache = Path::new(CACHE_DIR);
    std::fs::create_dir_all(cache).map_err(LabError::io("create", cache))?;
    tracing::info!("Downloading Debian's prometheus package into {CACHE_DIR}");
    let download = || {
        output_of(
            Command::new("apt-get")
                .args(["download", "prometheus"])
                .current_dir(cache),
        )
    };
    if download().is_err() {
        run("apt-get", ["update", "-qq"])?;
        download()?;
    }
    let deb = std::fs::read_dir(cache)
        .map_err(LabError::io("read", cache))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("prometheus_") && n.ends_with(".deb"))
        })
        .ok_or_else(|| LabError::Prerequisite("apt-get download prometheus left no .deb".into()))?;
    let unpacked = cache.join("prometheus");
    run(
        "dpkg",
        [
            std::ffi::OsStr::new("-x"),
            deb.as_os_str(),
            unpacked.as_os_str(),
        ],
    )?;
    let _ = std::fs::remove_file(&deb);
    Ok(cached)
}

impl Prometheus {
    /// Starts Prometheus for the lab, scraping `targets` every `interval`.
    pub fn start(paths: &LabPaths, targets: &[Target], interval: Duration) -> Result<Self> {
        Self::start_in(paths, targets, interval, None)
    }

    /// Starts Prometheus inside the network namespace `netns` (e.g. the lab's observer
    /// host, to scrape addresses on the lab's network).
    pub fn start_in(
        paths: &LabPaths,
        targets: &[Target],
        interval: Duration,
        netns: Option<&str>,
    ) -> Result<Self> {
        Self::start_with(paths, targets, interval, netns, None)
    }

    /// Starts Prometheus serving its API as `web_config` says (Prometheus'
    /// `--web.config.file`: `tls_server_config`, `basic_auth_users`). With TLS its URL is
    /// `https://127.0.0.1:PORT`, and [`Prometheus::query`] is not available.
    pub fn start_with_web_config(
        paths: &LabPaths,
        targets: &[Target],
        interval: Duration,
        web_config: &Path,
    ) -> Result<Self> {
        Self::start_with(paths, targets, interval, None, Some(web_config))
    }

    fn start_with(
        paths: &LabPaths,
        targets: &[Target],
        interval: Duration,
        netns: Option<&str>,
        web_config: Option<&Path>,
    ) -> Result<Self> {
        let binary = find_prometheus()?;
        let dir = paths.dir().join("prometheus");
        std::fs::create_dir_all(dir.join("data")).map_err(LabError::io("create", &dir))?;
        let secs = interval.as_secs_f64().max(1.0);
        let mut config = format!("global:\n  scrape_interval: {secs}s\n  evaluation_interval: {secs}s\nscrape_configs:\n");
        // One scrape config per job, listing all of its targets.
        let mut jobs: Vec<&str> = targets.iter().map(|t| t.job.as_str()).collect();
        jobs.dedup();
        jobs.sort_unstable();
        jobs.dedup();
        for job in jobs {
            let addrs: Vec<String> = targets
                .iter()
                .filter(|t| t.job == job)
                .map(|t| format!("'{}'", t.addr))
                .collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                addrs.join(", ")
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).map_err(LabError::io("write", &config_file))?;
        let addr = free_port()?;
        let log = std::fs::File::create(dir.join("prometheus.log"))
            .map_err(LabError::io("create", &dir))?;
        let cgroup = NodeCgroup::new(
            format!("{}prometheus", paths.lab().host_prefix()),
            Tree::default_for(CgroupMode::of_host()),
        );
        cgroup.create()?;
        // nsenter execs the server in place, so the child's PID is Prometheus's own.
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{ns}"))
                    .arg("--")
                    .arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        if let Some(web) = web_config {
            command.arg(format!("--web.config.file={}", web.display()));
        }
        let child = command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(LabError::io("open", &dir))?)
            .stderr(log)
            .spawn()
            .map_err(|e| LabError::Command {
                command: binary.display().to_string(),
                detail: format!("could not start: {e}"),
            })?;
        // In the lab's cgroup, so a teardown after a crash still finds and kills it.
        let procs = cgroup.procs_file();
        std::fs::write(&procs, child.id().to_string())
            .map_err(LabError::io("join cgroup", &procs))?;
        let prometheus = Self {
            child,
            addr,
            netns: netns.map(str::to_owned),
            tls: web_config.is_some_and(|w| {
                std::fs::read_to_string(w).is_ok_and(|t| t.contains("tls_server_config"))
            }),
            web_config: web_config.is_some(),
            log: dir.join("prometheus.log"),
        };
        prometheus.wait_ready(Duration::from_secs(60), &dir)?;
        tracing::info!(url = %prometheus.url(), "Prometheus up");
        Ok(prometheus)
    }

    /// Its base URL, `http://127.0.0.1:PORT` (`https://` when it serves TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// An instant query; returns the raw JSON answer of the HTTP API.
    pub fn query(&self, promql: &str) -> Result<String> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        self.get(&path).map(|(_, body)| body)
    }

    fn get(&self, path: &str) -> Result<(u16, String)> {
        match &self.netns {
            Some(ns) => http_get_in(ns, self.addr, path),
            None => http_get(self.addr, path),
        }
    }

    fn wait_ready(&self, timeout: Duration, dir: &Path) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            // The plain-HTTP probe cannot speak TLS or send credentials: with a web
            // config, Prometheus' own log says when it serves.
            let ready = if self.web_config {
                self.log_says_ready()
            } else {
                matches!(self.get("/-/ready"), Ok((200, _)))
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(LabError::DaemonStart {
            node: "prometheus".into(),
            after: timeout,
            log: dir.join("prometheus.log"),
            tail: crate::daemon::tail(&dir.join("prometheus.log"), 10),
        })
    }
}

impl Prometheus {
    fn log_says_ready(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .is_ok_and(|log| log.contains("Server is ready to receive web requests"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(LabError::io("listen", "127.0.0.1:0"))?;
    listener
        .local_addr()
        .map_err(LabError::io("listen", "127.0.0.1:0"))
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// [`http_get`] from inside the network namespace `netns`.
pub fn http_get_in(netns: &str, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let path = path.to_owned();
    crate::net::in_netns(netns, move || http_get(addr, &path))
}

/// A minimal HTTP/1.0 GET: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let io = |e| LabError::io("http get", path.to_owned())(e);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(io)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
