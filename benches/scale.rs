//! End-to-end cost at scale: swarm-warden's observe + plan against
//! - a Docker API replay at Swarm2k size (2,400 nodes, 10,000 services, 100,000 tasks;
//!   `swarm_chaos::replay`: answers captured from a real lab's Engine in
//!   `benches/fixtures/engine`, scaled up, served with the Engine's filters), or
//! - a real lab (`--lab`: 5 managers and `SCALE_WORKERS` workers, 100 by default, with
//!   `SCALE_PENDING` Pending tasks, 10,000 by default).
//!
//! Every Docker call goes through the request meter (`swarm_chaos::meter`). It prints, per
//! reconcile: API calls, bytes read, wall time of observe (calls + decode) and of the plan
//! — measured in this process over `SCALE_RECONCILES` reconciles (5); then the peak RSS of
//! one `swarm-warden report` process; then, for `swarm-warden run` left idle for
//! `SCALE_IDLE_SECONDS` (60): requests per minute, CPU seconds per hour, RSS and mean
//! reconcile time (from its own /metrics).
//!
//! `cargo bench --bench scale` (replay) · `cargo bench --bench scale -- --lab` (root, lab
//! prerequisites as the lab tests). Goals (issue 15): observe + plan at Swarm2k size under
//! 250 ms with peak RSS under 100 MiB, the plan alone under 20 ms; on the 100-node lab a
//! steady-state reconcile under 100 ms with at most 5 API calls; idle RSS under 20 MiB.
//! Goals are reported, not asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use swarm_chaos::docker_proxy::DockerProxy;
use swarm_chaos::meter::Metered;
use swarm_chaos::replay::{Fixture, Replay, Size, Swarm};
use swarm_chaos::{Lab, LabSpec};
use swarm_warden::config::Policy;
use swarm_warden::observe::Observer;
use swarm_warden::plan::{plan, Memory};

const WARDEN: &str = env!("CARGO_BIN_EXE_swarm-warden");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The event stream stays open for the whole run: counted apart.
fn without_events(m: Metered) -> Metered {
    m.without(|e| e.starts_with("GET /events"))
}

/// Observe + plan `n` times in this process; the first reconcile (it reads `/info` and
/// negotiates the API version) is left out of the per-reconcile numbers.
async fn in_process(host: &str, proxy: &DockerProxy, n: usize) {
    let docker = swarm_warden::observe::connect(Some(host))
        .await
        .expect("connect");
    let policy = Policy::default();
    let observer = Observer::new(docker).watching(&policy).expect("observer");
    let mut memory = Memory::default();
    let first = observer
        .snapshot(SystemTime::now())
        .await
        .expect("snapshot");
    memory.observe(&first);
    let _ = proxy.meter().take();
    let (mut observe, mut planning) = (Vec::new(), Vec::new());
    let mut findings = 0;
    for _ in 0..n {
        let now = SystemTime::now();
        let started = Instant::now();
        let snapshot = observer.snapshot(now).await.expect("snapshot");
        observe.push(started.elapsed());
        memory.observe(&snapshot);
        let started = Instant::now();
        let planned = plan(&snapshot, &policy, &memory, now);
        planning.push(started.elapsed());
        findings = planned.findings.len();
        std::hint::black_box(planned);
    }
    let counted = proxy.meter().take();
    let per = n.max(1) as u64;
    println!("\nPer reconcile, in process (median of {n}; {findings} findings):");
    println!(
        "  API calls {}   bytes read {}   observe (calls + decode) {}   plan {}   observe + plan {}",
        counted.requests() / per,
        mib(counted.bytes_out() / per),
        ms(median(observe.clone())),
        ms(median(planning.clone())),
        ms(median(
            observe
                .iter()
                .zip(&planning)
                .map(|(o, p)| *o + *p)
                .collect()
        ))
    );
    println!("{counted}");
}

/// Peak RSS of one `swarm-warden report` (observe, plan, render) against `host`, by GNU
/// time (`/usr/bin/time`, Debian's `time`): the child's own peak, which getrusage here
/// cannot give (a child counts its parent's pages between fork and exec).
fn report_peak(host: &str, dir: &Path) {
    let out = dir.join("report-time.txt");
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&out)
        .args([WARDEN, "report", "--format", "json", "--docker-host", host])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let wall = started.elapsed();
    let peak = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse::<u64>().ok()));
    match (status, peak) {
        (Ok(status), Some(kib)) => println!(
            "\nOne `swarm-warden report` process: {status}, wall {}, peak RSS {}",
            ms(wall),
            mib(kib * 1024)
        ),
        (status, _) => println!(
            "\nOne `swarm-warden report` process: {status:?}; no peak RSS (is /usr/bin/time installed?)"
        ),
    }
}

struct Proc {
    stat: String,
    status: String,
}

fn read_proc(child: &Child) -> Proc {
    let pid = child.id();
    Proc {
        stat: std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
        status: std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default(),
    }
}

impl Proc {
    /// utime + stime, in seconds (clock ticks of 1/100 s, as Linux reports them).
    fn cpu_seconds(&self) -> f64 {
        // Fields after the command name (in parentheses, may hold spaces).
        let rest = self.stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }

    fn kib(&self, key: &str) -> u64 {
        self.status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The sum and count of the reconcile-duration histogram on `/metrics`.
fn reconcile_stats(addr: &str) -> Option<(f64, f64)> {
    let output = Command::new("curl")
        .args(["-s", &format!("http://{addr}/metrics")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let value = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("swarm_warden_reconcile_duration_seconds_{suffix}")))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((value("sum")?, value("count")?))
}

/// `swarm-warden run` left alone for `idle`: what it costs the Engine and the host.
async fn idle_loop(host: &str, proxy: &DockerProxy, dir: &Path, idle: Duration, dry_run: bool) {
    let listen = "127.0.0.1:18089";
    let policy = dir.join("scale-policy.yml");
    std::fs::write(&policy, format!("http:\n  listen: \"{listen}\"\n")).expect("policy");
    let mut command = Command::new(WARDEN);
    command
        .args(["run", "--docker-host", host, "--config"])
        .arg(&policy)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if dry_run {
        command.arg("--dry-run");
    }
    let mut child = command.spawn().expect("swarm-warden run");
    // Past the start: connection, first reconciles, the lease.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = proxy.meter().take();
    let before = read_proc(&child);
    let stats_before = reconcile_stats(listen);
    tokio::time::sleep(idle).await;
    let after = read_proc(&child);
    let stats_after = reconcile_stats(listen);
    let counted = proxy.meter().take();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let minutes = idle.as_secs_f64() / 60.0;
    let cpu = after.cpu_seconds() - before.cpu_seconds();
    println!(
        "\n`swarm-warden run{}` idle for {}:",
        if dry_run { " --dry-run" } else { "" },
        humantime::format_duration(idle)
    );
    let reads = without_events(counted.clone());
    println!(
        "  requests/min {:.1} (writes/min {:.1})   CPU s/hour {:.1}   RSS {} (peak {})",
        reads.requests() as f64 / minutes,
        reads.writes() as f64 / minutes,
        cpu / idle.as_secs_f64() * 3600.0,
        mib(after.kib("VmRSS:") * 1024),
        mib(after.kib("VmHWM:") * 1024),
    );
    if let (Some((s0, c0)), Some((s1, c1))) = (stats_before, stats_after) {
        if c1 > c0 {
            println!(
                "  reconciles {}   mean reconcile {:.1} ms (its own metric)",
                c1 - c0,
                (s1 - s0) / (c1 - c0) * 1e3
            );
        }
    }
    println!("{counted}");
}

async fn measure(upstream: &Path, dir: &Path, dry_run: bool) {
    let reconciles = env_or("SCALE_RECONCILES", 5usize);
    let idle = Duration::from_secs(env_or("SCALE_IDLE_SECONDS", 60u64));
    let proxy = DockerProxy::start(upstream, &dir.join("meter.sock"))
        .await
        .expect("meter");
    let host = proxy.docker_host();
    in_process(&host, &proxy, reconciles).await;
    report_peak(&host, dir);
    idle_loop(&host, &proxy, dir, idle, dry_run).await;
}

async fn replay(dir: &Path) {
    let fixture =
        Fixture::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/engine"))
            .expect("fixture");
    let size = Size {
        managers: env_or("SCALE_MANAGERS", Size::SWARM2K.managers),
        nodes: env_or("SCALE_NODES", Size::SWARM2K.nodes),
        services: env_or("SCALE_SERVICES", Size::SWARM2K.services),
        tasks: env_or("SCALE_TASKS", Size::SWARM2K.tasks),
    };
    let started = Instant::now();
    let swarm = Swarm::generate(&fixture, size).expect("generate");
    println!(
        "Replay: {} managers, {} nodes, {} services, {} tasks (generated in {})",
        size.managers,
        size.nodes,
        size.services,
        size.tasks,
        ms(started.elapsed())
    );
    let replay = Replay::start(swarm, &dir.join("replay.sock"))
        .await
        .expect("replay");
    measure(replay.socket(), dir, true).await;
}

async fn lab() {
    let managers = env_or("SCALE_MANAGERS", 5usize);
    let workers = env_or("SCALE_WORKERS", 100usize);
    let pending = env_or("SCALE_PENDING", 10_000u64);
    let started = Instant::now();
    let lab = Lab::start(LabSpec::new(managers, workers))
        .await
        .expect("lab");
    let formed = started.elapsed();
    let sizes: Vec<u64> = lab
        .state()
        .nodes
        .iter()
        .filter_map(|n| lab.memory(n.name.as_str()).ok())
        .collect();
    let (median_node, total) = swarm_chaos::footprint::median_and_total(&sizes);
    let (client, _) = lab.manager_client().await.expect("manager");
    let per_service = 1_000;
    for i in 0..pending.div_ceil(per_service) {
        swarm_chaos::pending::create_pending_service(
            &client,
            &format!("pending-{i}"),
            per_service.min(pending - i * per_service),
        )
        .await
        .expect("pending service");
    }
    println!(
        "Lab: {managers} managers, {workers} workers, formed in {:.1} s; node memory (PSS) {} median, {} in all; {pending} Pending tasks",
        formed.as_secs_f64(),
        mib(median_node),
        mib(total)
    );
    // Let the managers write the tasks before measuring.
    tokio::time::sleep(Duration::from_secs(10)).await;
    measure(
        &lab.socket("m1").expect("socket"),
        &lab.paths().dir(),
        false,
    )
    .await;
    drop(lab);
}

fn main() {
    // `cargo test --benches` runs this once without --bench: nothing to do then.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("swarm-warden-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    if args.iter().any(|a| a == "--lab") {
        runtime.block_on(lab());
    } else {
        runtime.block_on(replay(&dir));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
