//! Volume telemetry end to end: a service writes steadily to the lab's EFS-like volume;
//! swarm-warden, reading a real Prometheus, predicts when the credits run out before they
//! do, then reports the volume throttled.

mod common;

use std::time::{Duration, Instant};

use common::*;
use swarm_chaos::efs_model::MIB;
use swarm_chaos::prometheus::Target;
use swarm_chaos::{wait_until, EfsOptions, Lab, LabSpec, Probe};

fn finding<'a>(json: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    json["findings"]
        .as_array()?
        .iter()
        .find(|f| f["kind"] == kind)
}

/// Seconds in a humantime duration like `3m 12s`.
fn seconds(text: &str) -> f64 {
    text.split_whitespace()
        .filter_map(|part| {
            let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
            let n: f64 = digits.parse().ok()?;
            Some(match &part[digits.len()..] {
                "h" => n * 3600.0,
                "m" => n * 60.0,
                "s" => n,
                _ => 0.0,
            })
        })
        .sum()
}

#[tokio::test]
async fn credits_running_out_are_predicted_then_the_volume_is_reported_throttled() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 1)).await.expect("lab");
    let mut options = EfsOptions::new("fs-0feedbeef");
    options.initial_credits = 200.0 * MIB;
    options.size = 1 << 30;
    let efs = lab.create_efs(options).expect("efs");
    let prometheus = lab
        .start_prometheus(
            &[Target {
                job: "efs".into(),
                addr: efs.metrics_addr(),
            }],
            Duration::from_secs(1),
        )
        .expect("prometheus");

    // About 3 MiB/s, appending: the baseline of a small file system is 1 MiB/s, so the
    // credits drain at about 2 MiB/s. Once throttled, a write takes over a second and the
    // writer stops sleeping: it then wants more than it gets, like the talk's Prometheus.
    let mount = format!(
        "type=volume,source=efsdata,target=/data,volume-driver=local,volume-opt=type=ext4,volume-opt=device={},volume-label=swarm-warden.efs-id=fs-0feedbeef",
        efs.device()
    );
    let out = lab
        .docker_cli("m1")
        .expect("cli")
        .args(["service", "create", "-d", "--no-resolve-image", "--name", "tsdb"])
        .args(["--constraint", "node.role==worker", "--mount", &mount])
        .args([
            "busybox",
            "sh",
            "-c",
            "while true; do t=$(date +%s); dd if=/dev/zero of=/data/wal bs=1M count=3 conv=fsync,notrunc oflag=append 2>/dev/null; [ $(date +%s) -le $((t+1)) ] && sleep 1; done",
        ])
        .output()
        .expect("service create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let policy = policy_file(
        &lab,
        &format!(
            "volumes:\n  prometheus_url: {}\n  throttled_for: 15s\ncontroller:\n  resync: 5s\n",
            prometheus.url()
        ),
    );
    let policy = policy.to_str().expect("path").to_owned();
    let report = || {
        let out = warden_once(
            &lab,
            "m1",
            &["report", "--config", &policy, "--format", "json"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json report")
    };

    // The prediction, once a full minute of metering backs it (the metered rate is the
    // last 60 s of I/O).
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        efs.model().credits > 0.0,
        "credits lasted past the first minute"
    );
    let (predicted, at) = wait_until(
        "a volume-credits-low finding",
        Duration::from_secs(60),
        || async {
            let json = report();
            match finding(&json, "volume-credits-low") {
                Some(f) => {
                    let message = f["message"].as_str().unwrap_or_default().to_owned();
                    let t = message
                        .split("runs out of burst credits in ")
                        .nth(1)
                        .and_then(|rest| rest.split(" (").next())
                        .map(seconds)
                        .unwrap_or(0.0);
                    assert_eq!(f["severity"], "critical", "T under an hour: {message}");
                    Probe::Done((t, Instant::now()))
                }
                None => Probe::Pending(json.to_string()),
            }
        },
    )
    .await
    .expect("prediction");
    assert!(efs.model().credits > 0.0, "predicted before it happened");

    wait_until(
        "the credits to run out",
        Duration::from_secs(300),
        || async {
            if efs.model().credits == 0.0 {
                Probe::Done(())
            } else {
                Probe::Pending(format!("{:.1} MiB left", efs.model().credits / MIB))
            }
        },
    )
    .await
    .expect("credits spent");
    let actual = at.elapsed().as_secs_f64();
    println!("time to credit exhaustion: predicted {predicted:.0}s, took {actual:.0}s");
    assert!(
        (actual - predicted).abs() <= 0.35 * predicted + 10.0,
        "predicted {predicted:.0}s, took {actual:.0}s"
    );

    // "Sustained" needs memory across reconciles: a running swarm-warden reports it.
    let warden = Warden::start(&lab, "m1", &std::path::PathBuf::from(&policy), &[]);
    wait_until(
        "swarm-warden to report volume-throttled",
        Duration::from_secs(90),
        || async {
            let log = warden.log();
            if log.finding("volume-throttled") {
                Probe::Done(())
            } else {
                Probe::Pending(log.to_string())
            }
        },
    )
    .await
    .expect("throttled reported");
    let log = warden.stop();
    assert!(
        log.events("finding")
            .iter()
            .any(|f| f["fields"]["kind"] == "volume-throttled"
                && f["fields"]["subject"] == "fs-0feedbeef"),
        "{log}"
    );

    drop(prometheus);
    drop(efs);
    teardown_leaving_nothing(lab);
}

/// The padding runbook on a real swarm: the writer exhausts the credits, swarm-warden pads
/// the file system with a Swarm job running `swarm-warden pad` on the worker, and the
/// metered size and with it the baseline (the permitted rate) rise.
#[tokio::test]
async fn the_padding_runbook_raises_the_baseline_of_a_throttled_volume() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 1)).await.expect("lab");
    lab.load_program_image(
        "swarm-warden:latest",
        std::path::Path::new(warden_bin()),
        "swarm-warden",
    )
    .await
    .expect("swarm-warden image on every node");
    // Scale 1024: a real MiB stored is a metered GiB, a real second is 17 model minutes.
    let scale = 1024.0;
    let mut options = EfsOptions::new("fs-0badc0ffee");
    // Few credits: they must run out within seconds, before the growing metered size
    // (a real MiB is a metered GiB) lifts the baseline above the writer's rate.
    options.initial_credits = 6.0 * 1024.0 * MIB;
    options.size = 1 << 30;
    options.scale = scale;
    let efs = lab.create_efs(options).expect("efs");
    let prometheus = lab
        .start_prometheus(
            &[Target {
                job: "efs".into(),
                addr: efs.metrics_addr(),
            }],
            Duration::from_secs(1),
        )
        .expect("prometheus");
    let mount = format!(
        "type=volume,source=efsdata,target=/data,volume-driver=local,volume-opt=type=ext4,volume-opt=device={},volume-label=swarm-warden.efs-id=fs-0badc0ffee,volume-label=swarm-warden.remediation=efs-padding",
        efs.device()
    );
    let out = lab
        .docker_cli("m1")
        .expect("cli")
        .args(["service", "create", "-d", "--no-resolve-image", "--name", "tsdb"])
        .args(["--constraint", "node.role==worker", "--mount", &mount])
        .args([
            "busybox",
            "sh",
            "-c",
            // Small fsync'd appends with short pauses: a steady ~3 MiB/s. (3 MiB bursts then a
            // 1 s pause made the metered rate swing between 0 and 6 MiB/s on an idle disk, and
            // the credits hovered above zero while the growing size raised the baseline.)
            "while true; do dd if=/dev/zero of=/data/wal bs=256K count=1 conv=fsync,notrunc oflag=append 2>/dev/null; sleep 0.07; done",
        ])
        .output()
        .expect("service create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_until(
        "the credits to run out",
        Duration::from_secs(180),
        || async {
            let m = efs.model();
            if m.credits == 0.0 {
                Probe::Done(())
            } else {
                let tasks = lab
                    .docker_cli("m1")
                    .ok()
                    .and_then(|mut c| {
                        c.args(["service", "ps", "tsdb", "--no-trunc"])
                            .output()
                            .ok()
                    })
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                Probe::Pending(format!(
                    "{:.1} GiB left, metered {:.2} MiB/s, baseline {:.2} MiB/s\n{tasks}",
                    m.credits / (1024.0 * MIB),
                    m.metered_rate / MIB,
                    m.baseline() / MIB
                ))
            }
        },
    )
    .await
    .expect("credits spent");
    let before = efs.model();
    println!(
        "before padding: metered size {:.1} GiB, baseline {:.2} MiB/s",
        before.metered_size / (1024.0 * MIB),
        before.baseline() / MIB
    );

    let policy = policy_file(
        &lab,
        &format!(
            "placement:\n  mode: off\nvolumes:\n  prometheus_url: {}\n  throttled_for: 5s\n  padding:\n    target_baseline: 3MiB\n    file_size: 4MiB\n    metered_per_byte: {scale}\n    job_timeout: 5m\n    verify_timeout: 2m\ncontroller:\n  resync: 3s\n  backoff_min: 1s\n  backoff_max: 5s\n",
            prometheus.url()
        ),
    );
    let warden = Warden::start(&lab, "m1", &policy, &[]);
    let report = wait_until(
        "the padding runbook to succeed",
        Duration::from_secs(300),
        || async {
            let out = warden_once(
                &lab,
                "m1",
                &[
                    "report",
                    "--config",
                    policy.to_str().unwrap_or_default(),
                    "--format",
                    "json",
                ],
            );
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let run = json["runbooks"].as_array().and_then(|r| r.first()).cloned();
            match run {
                Some(run) if run["status"] == "succeeded" => Probe::Done(run),
                Some(run) if run["status"] == "failed" => {
                    panic!("runbook failed: {run:#}\n{}", warden.log())
                }
                other => Probe::Pending(format!("{other:?}\n{}", warden.log())),
            }
        },
    )
    .await
    .expect("runbook succeeded");
    let log = warden.stop();
    assert!(
        log.count("runbook") > 0,
        "the runbook's transitions are logged:\n{log}"
    );
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(steps, ["done", "done", "done", "done"], "{report:#}");
    assert!(
        report["facts"]["monthly_cost_usd"].is_string(),
        "{report:#}"
    );

    let after = efs.model();
    println!(
        "after padding: metered size {:.1} GiB, baseline {:.2} MiB/s",
        after.metered_size / (1024.0 * MIB),
        after.baseline() / MIB
    );
    // target_baseline 3 MiB/s needs 3 MiB/s / 50 KiB/s per GiB = 61.44 metered GiB.
    assert!(
        after.metered_size > before.metered_size && after.metered_size >= 61.0 * 1024.0 * MIB,
        "the metered size grew to what a 3 MiB/s baseline needs"
    );
    assert!(
        after.baseline() >= 2.95 * MIB,
        "the baseline rose to 3 MiB/s"
    );
    assert!(
        after.permitted_rate() > before.permitted_rate(),
        "the permitted rate rose"
    );

    drop(prometheus);
    drop(efs);
    teardown_leaving_nothing(lab);
}

/// The migration runbook on a 3+3 lab, a Prometheus-like service running as nobody
/// (uid 65534) that keeps writing a tree with nested directories, a symbolic link, a hard
/// link and modes 0600/0750, a node-local target (`local`, no options: a directory on
/// whichever worker the copy ran on), and swarm-warden killed in the middle of the copy:
/// a new swarm-warden resumes the same run, no step runs twice, the data arrives intact
/// with its owners, modes and times, and the service runs pinned to the worker that holds
/// the target — read there, as the service sees it.
#[tokio::test]
async fn an_ebs_migration_killed_mid_copy_resumes_and_moves_the_data_intact() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 3)).await.expect("lab");
    let (source, prometheus) = migration_source(&lab).await;
    // Deployed as a stack, as users do: the redeploy below writes the compose file's mount
    // back. A WAL segment with a hard link in a checkpoint, a symbolic link to it, 0750
    // directories, 0600 files; then chunks until stopped. Any write that fails (permission
    // denied on a copy that lost its owners) ends the task: verify sees the break.
    let compose = format!(
        r#"version: "3.8"
services:
  tsdb:
    image: busybox
    user: "65534:65534"
    command:
      - sh
      - -c
      - "umask 077; mkdir -p /data/wal/checkpoint /data/chunks && chmod 0750 /data/wal /data/wal/checkpoint /data/chunks || exit 1; [ -e /data/wal/00000001 ] || {{ echo segment > /data/wal/00000001 && ln /data/wal/00000001 /data/wal/checkpoint/00000001 && ln -s wal/00000001 /data/head; }} || exit 1; i=0; while true; do t=$$(date +%s); dd if=/dev/urandom of=/data/chunks/c$$((i%40)) bs=1M count=2 conv=fsync 2>/dev/null || exit 1; i=$$((i+1)); [ $$(date +%s) -le $$((t+1)) ] && sleep 1; done"
    volumes:
      - efsdata:/data
    deploy:
      placement:
        constraints: ["node.role==worker"]
volumes:
  efsdata:
    name: efsdata
    driver: local
    driver_opts:
      type: ext4
      device: {}
    labels:
      swarm-warden.efs-id: fs-0ddba11
      swarm-warden.remediation: ebs-migration
"#,
        source.device()
    );
    let compose_file = lab.paths().dir().join("tsdb-stack.yml");
    std::fs::write(&compose_file, compose).expect("compose file");
    let deploy = || {
        let out = lab
            .docker_cli("m1")
            .expect("cli")
            .args(["stack", "deploy", "--resolve-image", "never", "-c"])
            .arg(&compose_file)
            .arg("mon")
            .output()
            .expect("docker stack deploy");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    deploy();
    wait_credits_spent(&source).await;

    let policy = policy_file(
        &lab,
        &format!(
            // The target: `local` with no options, a directory on the copy's worker.
            "placement:\n  mode: off\nvolumes:\n  prometheus_url: {}\n  throttled_for: 5s\n  migration:\n    driver: local\n    copy_timeout: 5m\n    scale_timeout: 2m\n    verify_for: 10s\ncontroller:\n  resync: 2s\n  backoff_min: 1s\n  backoff_max: 5s\n",
            prometheus.url(),
        ),
    );
    let policy_arg = policy.to_str().expect("path").to_owned();
    let run_state = || {
        let out = warden_once(
            &lab,
            "m1",
            &["report", "--config", &policy_arg, "--format", "json"],
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        json["runbooks"].as_array().and_then(|r| r.first()).cloned()
    };

    let first = Warden::start(&lab, "m1", &policy, &[]);
    wait_until(
        "the copy step to be running",
        Duration::from_secs(180),
        || async {
            match run_state() {
                Some(run) if run["steps"][4]["state"] == "running" => Probe::Done(()),
                Some(run) if run["status"] == "failed" => {
                    panic!("runbook failed: {run:#}\n{}", first.log())
                }
                other => Probe::Pending(format!("{other:?}\n{}", first.log())),
            }
        },
    )
    .await
    .expect("copy running");
    first.kill();

    let second = Warden::start(&lab, "m1", &policy, &[]);
    let run = wait_until(
        "the migration to succeed",
        Duration::from_secs(300),
        || async {
            match run_state() {
                Some(run) if run["status"] == "succeeded" => Probe::Done(run),
                Some(run) if run["status"] == "failed" => {
                    panic!("runbook failed: {run:#}\n{}", second.log())
                }
                other => Probe::Pending(format!("{other:?}\n{}", second.log())),
            }
        },
    )
    .await
    .expect("migration succeeded");
    let log = second.stop();
    for step in run["steps"].as_array().expect("steps") {
        assert_eq!(step["attempts"], 1, "no step repeated: {run:#}\n{log}");
    }
    println!(
        "migration downtime: {}s",
        run["facts"]["downtime_seconds"].as_str().unwrap_or("?")
    );

    // The service runs on the new volume, pinned to the worker the copy filled it on
    // (the one it ran on before), and only there: read the target there.
    let spec = service_spec(&lab, "mon_tsdb").await;
    let target_volume = run["facts"]["target_volume"].as_str().expect("target");
    let node_id = run["facts"]["source_node"].as_str().expect("source node");
    let pinned = constraints(&spec);
    assert!(
        pinned.contains(&format!("node.id=={node_id}")),
        "{pinned:?}"
    );
    assert_eq!(first_mount(&spec)["Source"], target_volume, "{spec:?}");
    let table = lab.node_table().await.expect("node table");
    let hostname = table
        .rows
        .iter()
        .find(|r| r.id == node_id)
        .expect("the pinned node")
        .hostname
        .clone();
    let hosts = running_on(&lab, "mon_tsdb").await;
    assert!(
        !hosts.is_empty() && hosts.iter().all(|h| *h == hostname),
        "{hosts:?} not only on {hostname}"
    );
    let on_node = lab
        .paths()
        .node_data(&swarm_chaos::NodeName::new(&hostname).expect("node name"))
        .join("volumes")
        .join(target_volume)
        .join("_data");

    // No data lost: every entry of the manifest has, on the source, the checksum, owner,
    // mode and time the copy verified on the target; the tree the service does not
    // rewrite (its WAL, the link, the directories' owners and modes) is compared on the
    // target as well.
    let manifest =
        std::fs::read_to_string(on_node.join(swarm_warden::copy::MANIFEST)).expect("manifest");
    assert!(manifest.lines().count() > 3, "{manifest}");
    let mut files = 0;
    for line in manifest.lines() {
        let [first, meta, path] = line.splitn(3, "  ").collect::<Vec<_>>()[..] else {
            panic!("manifest line {line:?}");
        };
        let on_source =
            swarm_warden::copy::Meta::read(&source.mount().join(path)).expect("source entry");
        assert_eq!(on_source.to_string(), meta, "{path}");
        if first.len() == 64 {
            files += 1;
            let actual =
                swarm_warden::copy::checksum(&source.mount().join(path)).expect("source file");
            assert_eq!(actual, first, "{path}");
        }
    }
    assert!(files > 3, "{manifest}");
    for (path, mode) in [
        ("wal", 0o750),
        ("wal/checkpoint", 0o750),
        ("wal/00000001", 0o600),
        ("wal/checkpoint/00000001", 0o600),
        ("head", 0o777),
    ] {
        let meta = |root: &std::path::Path| {
            swarm_warden::copy::Meta::read(&root.join(path)).expect("entry")
        };
        let (was, is) = (meta(source.mount()), meta(&on_node));
        assert_eq!(was.differs(&is), None, "{path}");
        assert_eq!(
            (is.uid, is.gid, is.mode & 0o777),
            (65534, 65534, mode),
            "{path}"
        );
        assert!(
            manifest.contains(&format!("  {path}\n")),
            "{path}: {manifest}"
        );
    }
    assert!(manifest.contains("hardlink:wal/00000001"), "{manifest}");
    assert_eq!(
        std::fs::read_link(on_node.join("head")).expect("link"),
        std::path::Path::new("wal/00000001")
    );
    // The service writes there as nobody: its chunks are newer than the copy.
    let root = swarm_warden::copy::Meta::read(&on_node).expect("root");
    assert_eq!((root.uid, root.gid), (65534, 65534));

    // A stack deploy of the old compose file writes the old mount back and drops the pin:
    // critical, with the compose snippet that keeps the migration; nothing swapped back.
    deploy();
    let out = warden_once(
        &lab,
        "m1",
        &["report", "--config", &policy_arg, "--format", "json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let drift = finding(&report, "migration-drift").unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(drift["severity"], "critical");
    let message = drift["message"].as_str().unwrap_or_default();
    assert!(message.contains("mounts efsdata again"), "{message}");
    assert!(message.contains("  tsdb:\n    volumes:"), "{message}");
    assert!(
        message.contains(&format!("{target_volume}:\n    external: true")),
        "{message}"
    );

    drop(prometheus);
    drop(source);
    teardown_leaving_nothing(lab);
}
