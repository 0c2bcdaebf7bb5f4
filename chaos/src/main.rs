//! `swarm-chaos`: start real multi-node Docker Swarm labs on this machine and break them.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use swarm_chaos::reap::{all_leftovers, reap_all, reap_lab};
use swarm_chaos::{Lab, LabError, LabName, LabSpec, Role};

#[derive(Parser)]
#[command(
    name = "swarm-chaos",
    version,
    about = "Real multi-node Docker Swarm labs on one machine, with faults",
    long_about = "Real multi-node Docker Swarm labs on one machine, with faults.\n\n\
        Each node is a dockerd in its own network, mount and UTS namespace and cgroup. \
        Needs root, cgroup v1 and Debian's docker.io, iproute2 and iptables."
)]
struct Cli {
    /// Where labs keep their files.
    #[arg(long, global = true, env = "SWARM_CHAOS_ROOT", default_value = swarm_chaos::names::DEFAULT_ROOT)]
    root: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a swarm and leave it running.
    Up {
        /// Number of managers (m1..mM).
        #[arg(long, default_value_t = 3)]
        managers: usize,
        /// Number of workers (w1..wW).
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Lab name.
        #[arg(long, default_value = "lab")]
        name: String,
    },
    /// Replay the talk's incident (a dead manager left in a 4-manager raft, then a second
    /// loss) without and with swarm-warden, with a live timeline; tears its labs down.
    Demo {
        /// The swarm-warden binary (default: next to this one, else on PATH).
        #[arg(long)]
        warden: Option<PathBuf>,
        /// Write the timeline of both runs, side by side, as a self-contained HTML page.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Write the timeline as JSON (`swarm-chaos timeline` renders it again).
        #[arg(long, value_name = "FILE")]
        timeline_json: Option<PathBuf>,
    },
    /// Render a timeline saved as JSON (`demo --timeline-json`) as an HTML page.
    Timeline {
        /// The JSON file.
        json: PathBuf,
        /// The page to write.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    /// Show labs, their nodes' processes and the swarm's node table.
    Status {
        #[arg(long)]
        name: Option<String>,
    },
    /// Meter one node's Docker API: a socket in front of it that counts every request by
    /// endpoint (requests, bytes, latency); point a client's DOCKER_HOST at it. Prints the
    /// counts every --every and when stopped (Ctrl-C) or after --for.
    Meter {
        #[arg(long)]
        name: Option<String>,
        node: String,
        /// The socket to listen on.
        #[arg(long)]
        socket: PathBuf,
        /// How often to print the counts so far (`30s`, `5m`).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        every: std::time::Duration,
        /// Stop after this long (default: at Ctrl-C).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
    },
    /// Task load without containers: services whose tasks stay Pending (a constraint no
    /// node satisfies), so a lab's task count grows without running anything.
    Pending {
        #[arg(long)]
        name: Option<String>,
        /// How many services (`pending-1`..).
        #[arg(long, default_value_t = 1)]
        services: usize,
        /// Tasks per service.
        #[arg(long, default_value_t = 1000)]
        replicas: u64,
    },
    /// Capture what a real Engine answers to swarm-warden's reads: starts a small lab
    /// (3 managers, 2 workers), deploys a field-shaped workload, writes one JSON file per
    /// endpoint into --dir, tears the lab down. The replay scales these up.
    Capture {
        /// Folder to write the answers into.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Serve a generated swarm (from a capture) on a unix socket as a manager's Engine
    /// would, reads only, until Ctrl-C: `--nodes 2400 --services 10000 --tasks 100000`
    /// is Swarm2k's size (the default).
    Replay {
        /// A capture folder (`swarm-chaos capture`).
        #[arg(long, default_value = "benches/fixtures/engine")]
        fixture: PathBuf,
        /// The socket to listen on.
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 3)]
        managers: usize,
        #[arg(long, default_value_t = 2_400)]
        nodes: usize,
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
    },
    /// Tear a lab down (or, with --all, every lab and whatever crashed runs left).
    Down {
        #[arg(long, conflicts_with = "all")]
        name: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// List whatever labs left on this host (processes, namespaces, cgroups, mounts, loop
    /// devices, folders); exit 1 if anything is there.
    Leftovers,
    /// Print the host path of a node's Docker socket.
    Sock {
        #[arg(long)]
        name: Option<String>,
        node: String,
    },
    /// Run the docker CLI against one node: `swarm-chaos docker m1 -- node ls`.
    Docker {
        #[arg(long)]
        name: Option<String>,
        node: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Node loss: kill every process of a node (dockerd, containerd, shims, containers).
    Kill {
        #[arg(long)]
        name: Option<String>,
        node: String,
    },
    /// A stuck host: freeze every process of a node.
    Freeze {
        #[arg(long)]
        name: Option<String>,
        node: String,
    },
    /// Resume a frozen node.
    Thaw {
        #[arg(long)]
        name: Option<String>,
        node: String,
    },
    /// Stop a node (if running) and start it again with the same data.
    Restart {
        #[arg(long)]
        name: Option<String>,
        node: String,
    },
    /// Cut the network: `m1` isolates m1; `m1,m2/m3,m4,m5` splits groups (others unaffected).
    Partition {
        #[arg(long)]
        name: Option<String>,
        spec: String,
    },
    /// Remove every partition.
    Heal {
        #[arg(long)]
        name: Option<String>,
    },
    /// A fresh node joins the swarm.
    Join {
        #[arg(long)]
        name: Option<String>,
        node: String,
        #[arg(long = "as", value_enum)]
        role: Role,
    },
    /// A rebuilt host: kill a node, wipe its Docker state and join it again with the same
    /// hostname and address, as a new swarm node (its old entry stays, Down).
    Rebuild {
        #[arg(long)]
        name: Option<String>,
        node: String,
        #[arg(long = "as", value_enum)]
        role: Role,
    },
    /// Disaster recovery: `docker swarm init --force-new-cluster` on a manager.
    ForceNewCluster {
        #[arg(long)]
        name: Option<String>,
        node: String,
    },
    /// A randomized fault campaign against swarm-warden on a fresh lab, then the checker
    /// on its history; exit 1 on any violation. Same seed, same fault schedule.
    Nemesis {
        /// Seeds the fault schedule.
        #[arg(long)]
        seed: u64,
        /// How long faults are applied (`90s`, `10m`); the final heal and the recovery
        /// wait come after.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "3m")]
        duration: std::time::Duration,
        /// Managers at the start.
        #[arg(long, default_value_t = 3)]
        managers: usize,
        /// Workers at the start.
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// The swarm-warden binary (default: next to this one, else on PATH).
        #[arg(long)]
        warden: Option<PathBuf>,
        /// Print the schedule the seed gives and exit (no lab).
        #[arg(long)]
        schedule_only: bool,
        /// Write the campaign's timeline as a self-contained HTML page.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Run the nemesis checker on a history file again; exit 1 on any violation.
    CheckHistory {
        /// A `<lab>.history.jsonl` file.
        file: PathBuf,
        /// Write the campaign's timeline as a self-contained HTML page.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own timeline: lab chatter only when asked for.
    let default_level = if matches!(cli.command, Cmd::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        // Log lines and progress bars share stderr: each line moves the bars out of its way.
        .with_writer(|| swarm_chaos::progress::BarsAside)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e
                .downcast_ref::<LabError>()
                .is_some_and(|e| matches!(e, LabError::Usage(_) | LabError::InvalidName { .. }));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let root = cli.root;
    let open = |name: &Option<String>| Lab::open(&root, name.as_deref());
    match cli.command {
        Cmd::Up {
            managers,
            workers,
            name,
        } => {
            let mut spec = LabSpec::new(managers, workers).named(LabName::new(&name)?);
            spec.root = root.clone();
            let started = std::time::Instant::now();
            let lab = Lab::start(spec).await?;
            let formed = started.elapsed();
            print_lab(&lab).await;
            let sizes: Vec<u64> = lab
                .state()
                .nodes
                .iter()
                .filter_map(|n| lab.memory(n.name.as_str()).ok())
                .collect();
            let (median, total) = swarm_chaos::footprint::median_and_total(&sizes);
            println!(
                "{} nodes formed and Ready in {:.1} s; memory (PSS) {} MiB per node (median), {} MiB in all.",
                sizes.len(),
                formed.as_secs_f64(),
                median >> 20,
                total >> 20
            );
            lab.detach()?;
        }
        Cmd::Timeline { json, html } => {
            let text = std::fs::read_to_string(&json)
                .map_err(|e| LabError::Usage(format!("{}: {e}", json.display())))?;
            let timeline: swarm_chaos::timeline::Timeline =
                serde_json::from_str(&text).map_err(|e| {
                    LabError::Usage(format!(
                        "{}:{}:{}: not a timeline: {e}",
                        json.display(),
                        e.line(),
                        e.column()
                    ))
                })?;
            std::fs::write(&html, swarm_chaos::timeline::html::render(&timeline))
                .with_context(|| format!("write {}", html.display()))?;
            println!("Timeline page: {}", html.display());
        }
        Cmd::Demo {
            warden,
            html,
            timeline_json,
        } => {
            let warden = warden.or_else(swarm_chaos::demo::find_warden).context(
                "swarm-warden binary not found next to swarm-chaos or on PATH: build it (cargo build --workspace) or pass --warden",
            )?;
            swarm_chaos::demo::run(&swarm_chaos::demo::DemoOptions {
                warden,
                root: root.clone(),
                html,
                timeline_json,
            })
            .await?;
        }
        Cmd::Status { name } => {
            let labs = match name {
                Some(n) => vec![LabName::new(&n)?],
                None => swarm_chaos::state::list_labs(&root),
            };
            let tree = match swarm_chaos::cgroup::Tree::for_new_lab() {
                Ok(tree) => format!("the {tree} tree"),
                Err(e) => format!("no tree: {e}"),
            };
            println!(
                "Host cgroups: {}; new labs get {tree} ({} to choose)",
                swarm_chaos::cgroup::CgroupMode::of_host(),
                swarm_chaos::cgroup::CGROUP_ENV
            );
            if labs.is_empty() {
                println!("No lab under {}.", root.display());
            }
            for lab in labs {
                print_lab(&Lab::open(&root, Some(lab.as_str()))?).await;
            }
        }
        Cmd::Down { name, all } => {
            if all {
                let labs = reap_all(&root)?;
                println!(
                    "Removed {} lab(s) and every lab object left on this host.",
                    labs.len()
                );
            } else {
                let lab = open(&name)?;
                let paths = lab.paths().clone();
                reap_lab(&paths)?;
                println!("Removed lab {}.", paths.lab());
            }
        }
        Cmd::Leftovers => {
            let left = all_leftovers(&root);
            if left.is_empty() {
                println!("Nothing of any lab is left on this host.");
            } else {
                for item in &left {
                    println!("{item}");
                }
                anyhow::bail!("{} lab object(s) left on this host", left.len());
            }
        }
        Cmd::Meter {
            name,
            node,
            socket,
            every,
            duration,
        } => {
            let lab = open(&name)?;
            let proxy =
                swarm_chaos::docker_proxy::DockerProxy::start(&lab.socket(&node)?, &socket).await?;
            println!("Metering {node}: DOCKER_HOST={}", proxy.docker_host());
            let stopped = async {
                match duration {
                    Some(d) => tokio::time::sleep(d).await,
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            tokio::pin!(stopped);
            let started = std::time::Instant::now();
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {
                        println!("\nAfter {:.0} s:\n{}", started.elapsed().as_secs_f64(), proxy.meter().read());
                    }
                }
            }
            println!(
                "\nIn {:.0} s:\n{}",
                started.elapsed().as_secs_f64(),
                proxy.meter().read()
            );
        }
        Cmd::Pending {
            name,
            services,
            replicas,
        } => {
            let (client, _) = open(&name)?.manager_client().await?;
            for i in 1..=services {
                let service = format!("pending-{i}");
                swarm_chaos::pending::create_pending_service(&client, &service, replicas).await?;
            }
            println!("Created {services} service(s) of {replicas} Pending task(s) each.");
        }
        Cmd::Capture { dir } => {
            let mut spec = LabSpec::new(3, 2).named(LabName::unique("cap"));
            spec.root = root.clone();
            let lab = Lab::start(spec).await?;
            swarm_chaos::replay::capture::capture(&lab, &dir).await?;
            lab.teardown()?;
            println!("Captured into {}.", dir.display());
        }
        Cmd::Replay {
            fixture,
            socket,
            managers,
            nodes,
            services,
            tasks,
        } => {
            use swarm_chaos::replay::{Fixture, Replay, Size, Swarm};
            let swarm = Swarm::generate(
                &Fixture::load(&fixture)?,
                Size {
                    managers,
                    nodes,
                    services,
                    tasks,
                },
            )?;
            let replay = Replay::start(swarm, &socket).await?;
            println!(
                "Replaying {nodes} nodes, {services} services, {tasks} tasks: DOCKER_HOST={}",
                replay.docker_host()
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        Cmd::Sock { name, node } => println!("{}", open(&name)?.socket(&node)?.display()),
        Cmd::Docker { name, node, args } => {
            let err = open(&name)?.docker_cli(&node)?.args(args).exec();
            return Err(err).context("cannot run the docker CLI");
        }
        Cmd::Kill { name, node } => {
            open(&name)?.kill(&node).await?;
            println!("Killed {node}.");
        }
        Cmd::Freeze { name, node } => {
            open(&name)?.freeze(&node).await?;
            println!("Froze {node}.");
        }
        Cmd::Thaw { name, node } => {
            open(&name)?.thaw(&node).await?;
            println!("Thawed {node}.");
        }
        Cmd::Restart { name, node } => {
            open(&name)?.restart(&node).await?;
            println!("Restarted {node}.");
        }
        Cmd::Partition { name, spec } => {
            open(&name)?.partition(&spec).await?;
            println!("Partitioned: {spec}.");
        }
        Cmd::Heal { name } => {
            open(&name)?.heal().await?;
            println!("Healed.");
        }
        Cmd::Join { name, node, role } => {
            let record = open(&name)?.join(&node, role).await?;
            println!("{} joined as {role} at {}.", record.name, record.addr);
        }
        Cmd::Rebuild { name, node, role } => {
            let record = open(&name)?.rebuild(&node, role).await?;
            println!(
                "{} rebuilt and joined as {role} at {}.",
                record.name, record.addr
            );
        }
        Cmd::ForceNewCluster { name, node } => {
            open(&name)?.force_new_cluster(&node).await?;
            println!("{node} forced a new cluster.");
        }
        Cmd::Nemesis {
            seed,
            duration,
            managers,
            workers,
            warden,
            schedule_only,
            html,
        } => {
            use swarm_chaos::nemesis;
            if schedule_only {
                for episode in nemesis::schedule_for(seed, duration) {
                    println!("{}", serde_json::to_string(&episode)?);
                }
                return Ok(());
            }
            let warden = warden.or_else(swarm_chaos::demo::find_warden).context(
                "swarm-warden binary not found next to swarm-chaos or on PATH: build it (cargo build --workspace) or pass --warden",
            )?;
            let outcome = nemesis::run(&nemesis::NemesisSpec {
                seed,
                duration,
                managers,
                workers,
                warden,
                root: root.clone(),
            })
            .await?;
            println!(
                "seed {seed}, {} episodes over {}; history {}",
                outcome.schedule.len(),
                humantime::format_duration(duration),
                outcome.history.display()
            );
            print!("{}", outcome.report);
            if let Some(page) = &html {
                let entries = nemesis::history::read(&outcome.history)?;
                write_campaign_page(page, seed, &entries, &outcome.report)?;
            }
            if let Some(e) = &outcome.error {
                anyhow::bail!("the campaign did not run to its end: {e}");
            }
            anyhow::ensure!(
                outcome.report.violations.is_empty(),
                "{} violation(s); replay the schedule with --seed {seed}",
                outcome.report.violations.len()
            );
        }
        Cmd::CheckHistory { file, html } => {
            let entries = swarm_chaos::nemesis::history::read(&file)?;
            let report = swarm_chaos::nemesis::check::check(&entries);
            print!("{report}");
            if let Some(page) = &html {
                let seed = entries
                    .iter()
                    .find_map(|e| match &e.event {
                        swarm_chaos::nemesis::history::Event::Start { seed, .. } => Some(*seed),
                        _ => None,
                    })
                    .unwrap_or_default();
                write_campaign_page(page, seed, &entries, &report)?;
            }
            anyhow::ensure!(
                report.violations.is_empty(),
                "{} violation(s)",
                report.violations.len()
            );
        }
    }
    Ok(())
}

/// Writes a campaign's timeline page.
fn write_campaign_page(
    page: &std::path::Path,
    seed: u64,
    entries: &[swarm_chaos::nemesis::history::Entry],
    report: &swarm_chaos::nemesis::check::Report,
) -> anyhow::Result<()> {
    let timeline = swarm_chaos::nemesis::picture::timeline(
        &format!("Nemesis campaign, seed {seed}"),
        entries,
        report,
    );
    std::fs::write(page, swarm_chaos::timeline::html::render(&timeline))
        .with_context(|| format!("write {}", page.display()))?;
    println!("Timeline page: {}", page.display());
    Ok(())
}

async fn print_lab(lab: &Lab) {
    let state = lab.state();
    let [a, b, c] = state.subnet;
    println!(
        "Lab {} (network {a}.{b}.{c}.0/24, cgroup {} tree)",
        state.name, state.cgroup
    );
    if let Some(spec) = &state.partition {
        println!("Partition in force: {spec}");
    }
    println!(
        "{:<6} {:<8} {:<15} {:<8} {:>10} SOCKET",
        "NODE", "JOINED", "ADDRESS", "PROCESS", "MEMORY"
    );
    for node in &state.nodes {
        let process = lab
            .process_state(node.name.as_str())
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let socket = lab.paths().socket(&node.name);
        let memory = lab
            .memory(node.name.as_str())
            .map(|b| format!("{} MiB", b >> 20))
            .unwrap_or_default();
        println!(
            "{:<6} {:<8} {:<15} {:<8} {:>10} {}",
            node.name,
            node.role,
            node.addr,
            process,
            memory,
            socket.display()
        );
    }
    println!();
    match lab.node_table().await {
        Ok(table) => print!("{table}"),
        Err(e) => println!("Swarm: {e}"),
    }
    println!();
}
