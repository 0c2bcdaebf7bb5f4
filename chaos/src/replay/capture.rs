//! Captures what a real lab's Engine answers to the reads swarm-warden makes, byte for
//! byte, as the templates [`super::Fixture`] scales up: `swarm-chaos capture` starts a
//! small lab, deploys a stack of the shapes the field has ([`STACK`]: a replicated service
//! with a named volume, health check, constraints, reservations and stack labels; a global
//! service; a plain one), waits for its tasks to run, and writes one file per endpoint.

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::ListTasksOptions;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector};

use crate::error::{LabError, Result};
use crate::wait::{wait_until, Probe};
use crate::Lab;

/// The endpoints captured, and the file each is written to.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("/version", "version.json"),
    ("/info", "info.json"),
    ("/nodes", "nodes.json"),
    ("/services", "services.json"),
    ("/tasks", "tasks.json"),
    ("/configs", "configs.json"),
];

/// Deploys the capture workload on `lab` (a lab of at least one manager and two workers),
/// waits until its tasks run, and writes [`ENDPOINTS`]' answers from manager `m1` into
/// `dir`.
///
/// # Errors
/// The lab refused the workload, its tasks did not run within a minute, or `dir` cannot be
/// written.
pub async fn capture(lab: &Lab, dir: &Path) -> Result<()> {
    let (client, _) = lab.manager_client().await?;
    let compose = lab.paths().dir().join("capture-stack.yml");
    std::fs::write(&compose, STACK).map_err(LabError::io("write", &compose))?;
    let output = lab
        .docker_cli("m1")?
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(&compose)
        .arg("shop")
        .output()
        .map_err(|e| LabError::Command {
            command: "docker stack deploy".into(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: "docker stack deploy".into(),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    wait_until(
        "the capture workload to run",
        Duration::from_secs(90),
        || async {
            match client.list_tasks(None::<ListTasksOptions>).await {
                Ok(tasks) => {
                    let running = tasks
                        .iter()
                        .filter(|t| {
                            t.status.as_ref().and_then(|s| s.state)
                                == Some(bollard::models::TaskState::RUNNING)
                        })
                        .count();
                    // web: 3, plain: 1, agent: one per node.
                    let want = 4 + lab.state().nodes.len();
                    if running >= want {
                        Probe::Done(())
                    } else {
                        Probe::Pending(format!("{running} of {want} tasks running"))
                    }
                }
                Err(e) => Probe::Pending(e.to_string()),
            }
        },
    )
    .await?;
    std::fs::create_dir_all(dir).map_err(LabError::io("create", dir))?;
    let socket = lab.socket("m1")?;
    for (endpoint, file) in ENDPOINTS {
        let body = get_raw(&socket, endpoint).await?;
        let path = dir.join(file);
        std::fs::write(&path, body).map_err(LabError::io("write", &path))?;
    }
    Ok(())
}

/// The response body of `GET path` on the Engine at `socket`, as sent.
pub async fn get_raw(socket: &Path, path: &str) -> Result<Vec<u8>> {
    let client: Client<UnixConnector, http_body_util::Empty<bytes::Bytes>> = Client::unix();
    let failed = |detail: String| LabError::Command {
        command: format!("GET {path} on {}", socket.display()),
        detail,
    };
    let response = client
        .get(hyperlocal::Uri::new(socket, path).into())
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("status {}", response.status())));
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(body.to_bytes().to_vec())
}

/// The captured workload: a stack as the field deploys one (`docker stack deploy`), with
/// what production services carry — a named volume, a non-root user, health checks,
/// update and rollback settings, reservations and limits, placement constraints and
/// preferences, labels, logging options, an overlay network.
const STACK: &str = r#"version: "3.8"
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "while true; do date > /tmp/now; sleep 5; done"]
    user: "65534"
    environment:
      MODE: production
      LOG_LEVEL: info
      UPSTREAM: http://api:8080
    volumes:
      - data:/data
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/now"]
      interval: 2s
      timeout: 5s
      retries: 3
      start_period: 2s
    logging:
      driver: json-file
      options:
        max-size: 10m
        max-file: "3"
    deploy:
      replicas: 3
      labels:
        com.example.team: shop
        com.example.tier: frontend
      placement:
        constraints: [node.role == worker]
        preferences:
          - spread: node.labels.zone
      resources:
        reservations: {cpus: "0.01", memory: 16M}
        limits: {cpus: "0.5", memory: 256M}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 120s}
      update_config: {parallelism: 1, delay: 10s, failure_action: rollback, order: start-first}
      rollback_config: {parallelism: 1, delay: 5s}
  agent:
    image: busybox:latest
    command: ["sleep", "1000000"]
    deploy:
      mode: global
  plain:
    image: busybox:latest
    command: ["sleep", "1000000"]
volumes:
  data: {}
"#;
