//! swarm-warden as a Docker CLI plugin, driven by the real docker CLI against a lab swarm:
//! installed by a symlink in a config's `cli-plugins`, it answers `docker warden report`
//! and `docker warden run --once` with the Engine the CLI would use — `DOCKER_HOST`, a
//! `--context`, or the context in use — and passes bad input on as exit code 2.

mod common;

use std::process::{Command, Output};

use common::*;
use swarm_chaos::{Lab, LabSpec};

/// `docker --config CONFIG ARGS`, with `DOCKER_HOST` only when given.
fn docker(config: &std::path::Path, host: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.arg("--config").arg(config).args(args);
    for var in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        cmd.env_remove(var);
    }
    if let Some(host) = host {
        cmd.env("DOCKER_HOST", host);
    }
    cmd.output().expect("run the docker CLI")
}

/// A JSON report's manager count; panics with the CLI's output otherwise.
fn managers(out: &Output) -> u64 {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    json["cluster"]["managers"].as_u64().expect("managers")
}

#[tokio::test]
async fn docker_warden_reports_on_the_engine_the_docker_cli_would_use() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 1)).await.expect("lab");
    let host = lab.docker_host("m1").expect("docker host");
    let config = lab.paths().dir().join("docker-config");
    std::fs::create_dir_all(config.join("cli-plugins")).expect("plugins dir");
    std::os::unix::fs::symlink(warden_bin(), config.join("cli-plugins/docker-warden"))
        .expect("install the plugin");

    // The CLI lists it (it ran `docker-warden docker-cli-plugin-metadata`).
    let help = docker(&config, None, &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("warden*"), "{help}");
    let help = docker(&config, None, &["help", "warden"]);
    assert!(help.status.success(), "{help:?}");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("report"),
        "{help:?}"
    );

    // DOCKER_HOST, as the CLI passes it on.
    let out = docker(
        &config,
        Some(&host),
        &["warden", "report", "--format", "json"],
    );
    assert_eq!(managers(&out), 1);

    // A context: named with --context, then in use.
    let out = docker(
        &config,
        None,
        &[
            "context",
            "create",
            "lab",
            "--docker",
            &format!("host={host}"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = docker(
        &config,
        None,
        &["--context", "lab", "warden", "report", "--format", "json"],
    );
    assert_eq!(managers(&out), 1);
    let out = docker(&config, None, &["context", "use", "lab"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = docker(
        &config,
        None,
        &["warden", "run", "--once", "--dry-run", "--format", "json"],
    );
    assert_eq!(managers(&out), 1);

    // Bad input is still exit code 2, with what and where.
    let policy = lab.paths().dir().join("bad.yml");
    std::fs::write(&policy, "managers:\n  desired: two\n").expect("policy");
    let out = docker(
        &config,
        None,
        &[
            "warden",
            "report",
            "--config",
            policy.to_str().expect("path"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yml:2:"), "{stderr}");

    teardown_leaving_nothing(lab);
}
