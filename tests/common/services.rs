//! Services on a lab swarm, through the docker CLI and the Engine API, for the e2e tests.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{
    InspectServiceOptions, ListServicesOptions, ListTasksOptionsBuilder,
};
use swarm_chaos::{Lab, Probe};

/// Runs the docker CLI on `node` and returns its standard output; fails the test if the
/// command fails.
pub fn docker_on(lab: &Lab, node: &str, args: &[&str]) -> String {
    let out = lab
        .docker_cli(node)
        .expect("cli")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?} on {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs the docker CLI on m1.
pub fn docker(lab: &Lab, args: &[&str]) -> String {
    docker_on(lab, "m1", args)
}

/// `docker service create -d --no-resolve-image --name NAME EXTRA... busybox sleep 1d`.
pub fn create(lab: &Lab, name: &str, extra: &[&str]) {
    create_running(lab, name, extra, &["busybox", "sleep", "1d"]);
}

/// `docker service create -d --no-resolve-image --name NAME EXTRA... IMAGE_AND_COMMAND...`.
pub fn create_running(lab: &Lab, name: &str, extra: &[&str], image_and_command: &[&str]) {
    let mut args = vec![
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(image_and_command);
    docker(lab, &args);
}

/// The IDs of the placement records in the swarm (`docker config ls -q`, one per line).
pub fn placement_record_ids(lab: &Lab) -> String {
    docker(
        lab,
        &[
            "config",
            "ls",
            "-q",
            "--filter",
            "label=swarm-warden.placement.service",
        ],
    )
}

/// Name -> (version, constraints) of every service.
pub async fn services(lab: &Lab) -> HashMap<String, (u64, Vec<String>)> {
    let client = lab.client("m1").await.expect("client");
    client
        .list_services(None::<ListServicesOptions>)
        .await
        .expect("services")
        .into_iter()
        .map(|s| {
            let spec = s.spec.unwrap_or_default();
            let constraints = spec
                .task_template
                .and_then(|t| t.placement)
                .and_then(|p| p.constraints)
                .unwrap_or_default();
            (
                spec.name.unwrap_or_default(),
                (s.version.and_then(|v| v.index).unwrap_or(0), constraints),
            )
        })
        .collect()
}

/// A job's `JobStatus.JobIteration` index: it grows each time the job runs again.
pub async fn job_iteration(lab: &Lab, service: &str) -> u64 {
    let client = lab.client("m1").await.expect("client");
    client
        .inspect_service(service, None::<InspectServiceOptions>)
        .await
        .expect("inspect service")
        .job_status
        .and_then(|j| j.job_iteration)
        .and_then(|v| v.index)
        .unwrap_or(0)
}

/// Whether the constraints hold `node.role != manager`.
pub fn has_constraint(constraints: &[String]) -> bool {
    constraints
        .iter()
        .any(|c| c.replace(' ', "") == "node.role!=manager")
}

/// Running tasks of a service: (task ID, hostname).
pub async fn running_tasks(lab: &Lab, service: &str) -> Vec<(String, String)> {
    let table = lab.node_table().await.expect("table");
    let client = lab.client("m1").await.expect("client");
    // No desired-state filter: a job's tasks have desired state `complete`.
    let filters = HashMap::from([("service", vec![service])]);
    let tasks = client
        .list_tasks(Some(
            ListTasksOptionsBuilder::default().filters(&filters).build(),
        ))
        .await
        .expect("tasks");
    tasks
        .iter()
        .filter(|t| {
            t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING)
        })
        .filter_map(|t| {
            let host = table
                .rows
                .iter()
                .find(|r| Some(&r.id) == t.node_id.as_ref())?
                .hostname
                .clone();
            Some((t.id.clone().unwrap_or_default(), host))
        })
        .collect()
}

/// Hostnames of a service's running tasks.
pub async fn running_on(lab: &Lab, service: &str) -> Vec<String> {
    running_tasks(lab, service)
        .await
        .into_iter()
        .map(|(_, host)| host)
        .collect()
}

/// Waits until `count` tasks of `service` run; returns their hostnames.
pub async fn wait_running(lab: &Lab, service: &str, count: usize) -> Vec<String> {
    swarm_chaos::wait_until(
        &format!("{count} running tasks of {service}"),
        Duration::from_secs(90),
        || async {
            let on = running_on(lab, service).await;
            if on.len() >= count {
                Probe::Done(on)
            } else {
                Probe::Pending(format!("{on:?}"))
            }
        },
    )
    .await
    .expect("tasks running")
}

/// Asserts that `service` has `node.role != manager` in `after` (from [`services`]) and
/// that none of its tasks runs on a manager (lab managers are m1.., workers w1..).
pub async fn assert_kept_off_managers(
    lab: &Lab,
    after: &HashMap<String, (u64, Vec<String>)>,
    service: &str,
) {
    assert!(
        has_constraint(&after[service].1),
        "{service} did not get the constraint: {:?}",
        after[service]
    );
    let on = running_on(lab, service).await;
    assert!(
        on.iter().all(|h| h.starts_with('w')),
        "{service} still runs on managers: {on:?}"
    );
}
