//! Bad input end to end: what a user's swarm hands swarm-warden must never stop its
//! manager checks. Each test pins an input that once blinded or crashed it.

mod common;

use common::*;
use swarm_chaos::{Lab, LabSpec};

#[tokio::test]
async fn unreadable_runbook_journals_are_reported_and_the_manager_checks_go_on() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(3, 1)).await.expect("lab");
    let data = lab.paths().dir().join("journal-data");
    std::fs::write(&data, "see the labels").expect("write");
    let data = data.to_str().expect("utf-8 path");
    // A newer build's journal, and one edited by hand.
    let newer = "swarm-warden-runbook-efs-padding-fs-0newer-1";
    let edited = "swarm-warden-runbook-efs-padding-fs-0typo-1";
    for (name, efs, journal) in [
        (newer, "fs-0newer", r#"{"schema": 2, "run_id": "r1"}"#),
        (edited, "fs-0typo", r#"{"run_id": "r2", "status": "runing""#),
    ] {
        docker(
            &lab,
            &[
                "config",
                "create",
                "--label",
                &format!("swarm-warden.runbook.efs-id={efs}"),
                "--label",
                &format!("swarm-warden.runbook.journal={journal}"),
                name,
                data,
            ],
        );
    }

    let out = warden_once(&lab, "m1", &["report", "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "exit {:?}: {stderr}",
        out.status.code()
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json: {e}\n{stderr}"));
    // The manager checks ran: the raft was counted.
    assert_eq!(json["cluster"]["managers"], 3, "{json:#}");
    assert!(json["cluster"]["leader"].is_string(), "{json:#}");
    let unreadable: Vec<&serde_json::Value> = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "runbook-journal-unreadable")
        .collect();
    assert_eq!(unreadable.len(), 2, "{json:#}");
    let message = |name: &str| {
        unreadable
            .iter()
            .find(|f| f["message"].as_str().is_some_and(|m| m.contains(name)))
            .and_then(|f| f["message"].as_str())
            .unwrap_or_else(|| panic!("no finding for {name}: {json:#}"))
            .to_owned()
    };
    assert!(message(newer).contains("schema 2"), "{}", message(newer));
    assert!(
        message(edited).contains("not a runbook journal"),
        "{}",
        message(edited)
    );
    // Left alone.
    let left = docker(&lab, &["config", "ls", "--format", "{{.Name}}"]);
    assert!(left.contains(newer) && left.contains(edited), "{left}");
    teardown_leaving_nothing(lab);
}

/// bcrypt of `s3cret` (cost 4), for Prometheus' `basic_auth_users`.
const S3CRET_BCRYPT: &str = "$2b$04$m8E3J05i8tLdjEToQoCFl.HsFjzcqGbIPtaweY3s4FX0i8fJBvIgG";

#[tokio::test]
async fn an_https_prometheus_with_basic_auth_is_read_and_a_wrong_ca_or_password_is_reported() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 0)).await.expect("lab");
    let dir = lab.paths().dir().join("tls");
    let pki = make_pki(&dir, &["127.0.0.1"]);
    let web_config = dir.join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  warden: '{S3CRET_BCRYPT}'\n",
            pki.cert.display(),
            pki.key.display()
        ),
    )
    .expect("web config");
    let efs = lab
        .create_efs(swarm_chaos::EfsOptions::new("fs-0tls"))
        .expect("efs");
    let prometheus = lab
        .start_prometheus_with_web_config(
            &[swarm_chaos::prometheus::Target {
                job: "efs".into(),
                addr: efs.metrics_addr(),
            }],
            std::time::Duration::from_secs(1),
            &web_config,
        )
        .expect("prometheus");
    assert!(
        prometheus.url().starts_with("https://"),
        "{}",
        prometheus.url()
    );
    let mount = "type=volume,source=tlsdata,target=/data,volume-label=swarm-warden.efs-id=fs-0tls";
    create(&lab, "tsdb", &["--mount", mount]);
    let secret = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("secret");
        path.display().to_string()
    };
    let right = secret("password", "s3cret\n");
    let wrong = secret("wrong-password", "guess\n");
    let report = |ca: &std::path::Path, password: &str| {
        let policy = policy_file(
            &lab,
            &format!(
                "placement:\n  mode: off\nvolumes:\n  prometheus_url: {}\n  prometheus_http_config:\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: warden\n      password_file: {password}\n",
                prometheus.url(),
                ca.display()
            ),
        );
        let out = warden_once(
            &lab,
            "m1",
            &[
                "report",
                "--config",
                policy.to_str().expect("path"),
                "--format",
                "json",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        for text in [&stderr, &stdout] {
            assert!(
                !text.contains("s3cret") && !text.contains("guess"),
                "a secret in the output: {text}"
            );
        }
        assert!(matches!(out.status.code(), Some(0 | 1)), "{stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        json["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| f["kind"] == "volume-telemetry-missing")
            .and_then(|f| f["message"].as_str())
            .map(str::to_owned)
    };
    // Read once Prometheus has scraped the volume.
    swarm_chaos::wait_until(
        "telemetry over https with basic auth",
        std::time::Duration::from_secs(60),
        || async {
            match report(&pki.ca, &right) {
                None => swarm_chaos::Probe::Done(()),
                Some(missing) => swarm_chaos::Probe::Pending(missing),
            }
        },
    )
    .await
    .expect("read over https");
    let untrusted = report(&pki.other_ca, &right).expect("a CA that did not sign it");
    eprintln!("untrusted: {untrusted}");
    assert!(untrusted.contains("certificate"), "{untrusted}");
    let refused = report(&pki.ca, &wrong).expect("a wrong password");
    eprintln!("refused: {refused}");
    assert!(refused.contains("HTTP 401"), "{refused}");
    drop(prometheus);
    teardown_leaving_nothing(lab);
}

#[tokio::test]
async fn docker_over_tls_is_verified_and_a_wrong_ca_or_missing_file_is_bad_input() {
    init_tracing();
    let lab = Lab::start(LabSpec::new(1, 0)).await.expect("lab");
    let addr = lab.node("m1").expect("m1").addr.to_string();
    let dir = lab.paths().dir().join("docker-tls");
    let pki = make_pki(&dir, &[&addr]);
    let host = lab
        .serve_docker_tls("m1", &pki.ca, &pki.cert, &pki.key)
        .await
        .expect("dockerd with --tlsverify");
    let report = |verify: &str, cert_path: &std::path::Path| {
        let out = lab
            .on_lab_network(warden_bin())
            .expect("observer")
            .args(["report", "--format", "json"])
            .env("DOCKER_HOST", &host)
            .env("DOCKER_TLS_VERIFY", verify)
            .env("DOCKER_CERT_PATH", cert_path)
            .output()
            .expect("run swarm-warden");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Verified both ways: the report is the swarm's ("0" is on too, as for the docker
    // CLI). The restarted node may take a moment to lead its swarm again.
    for verify in ["1", "0"] {
        swarm_chaos::wait_until(
            "a report over Docker TLS",
            std::time::Duration::from_secs(60),
            || async {
                let (code, stdout, stderr) = report(verify, &pki.client_dir);
                match serde_json::from_str::<serde_json::Value>(&stdout) {
                    Ok(json) if json["cluster"]["managers"] == 1 => swarm_chaos::Probe::Done(()),
                    _ => swarm_chaos::Probe::Pending(format!("{code:?}: {stdout}{stderr}")),
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("DOCKER_TLS_VERIFY={verify}: {e}"));
    }
    // A CA that did not sign the Engine's certificate: bad input, said so.
    let (code, _, stderr) = report("1", &pki.client_dir_other_ca);
    eprintln!("exit {code:?}: {stderr}");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("TLS") && stderr.contains("certificate"),
        "{stderr}"
    );
    // No certificates where DOCKER_CERT_PATH points.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let (code, _, stderr) = report("1", &empty);
    eprintln!("exit {code:?}: {stderr}");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("ca.pem") && stderr.contains("missing"),
        "{stderr}"
    );
    // TLS off (empty) against a TLS port: bad input, with the fix.
    let (code, _, stderr) = report("", &pki.client_dir);
    eprintln!("exit {code:?}: {stderr}");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("DOCKER_TLS_VERIFY"), "{stderr}");
    teardown_leaving_nothing(lab);
}
