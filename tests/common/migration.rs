//! What the `ebs-migration` lab tests share: a throttled EFS-like source that a service
//! running as nobody writes to, Prometheus scraping it, and reads of the service's spec.

use std::time::Duration;

use swarm_chaos::efs_model::MIB;
use swarm_chaos::prometheus::{Prometheus, Target};
use swarm_chaos::{wait_until, EfsOptions, EfsVolume, Lab, Probe};

/// The source's EFS ID; its volume is `efsdata`, labelled for `ebs-migration`.
pub const SOURCE_EFS: &str = "fs-0ddba11";

/// The swarm-warden image loaded on every node (the copy job runs it), a 1 GiB EFS-like
/// source with 24 MiB of burst credits whose root belongs to nobody (uid 65534, as
/// Prometheus' data does), and a Prometheus scraping its metrics every second.
pub async fn migration_source(lab: &Lab) -> (EfsVolume, Prometheus) {
    lab.load_program_image(
        "swarm-warden:latest",
        std::path::Path::new(super::warden_bin()),
        "swarm-warden",
    )
    .await
    .expect("swarm-warden image on every node");
    let mut options = EfsOptions::new(SOURCE_EFS);
    options.initial_credits = 24.0 * MIB;
    options.size = 1 << 30;
    let source = lab.create_efs(options).expect("source efs");
    std::os::unix::fs::chown(source.mount(), Some(65534), Some(65534)).expect("chown");
    let prometheus = lab
        .start_prometheus(
            &[Target {
                job: "efs".into(),
                addr: source.metrics_addr(),
            }],
            Duration::from_secs(1),
        )
        .expect("prometheus");
    (source, prometheus)
}

/// Waits until the source is out of credits as swarm-warden counts it: under a minute of
/// baseline (1 MiB/s) left.
pub async fn wait_credits_spent(source: &EfsVolume) {
    wait_until(
        "the source's credits to run out",
        Duration::from_secs(120),
        || async {
            if source.model().credits < 8.0 * MIB {
                Probe::Done(())
            } else {
                Probe::Pending(format!("{:.1} MiB left", source.model().credits / MIB))
            }
        },
    )
    .await
    .expect("credits spent");
}

/// A service's spec, read now.
pub async fn service_spec(lab: &Lab, service: &str) -> bollard::models::ServiceSpec {
    lab.client("m1")
        .await
        .expect("client")
        .inspect_service(
            service,
            None::<bollard::query_parameters::InspectServiceOptions>,
        )
        .await
        .expect("service")
        .spec
        .expect("spec")
}

/// The spec's first mount, as the Engine's JSON.
pub fn first_mount(spec: &bollard::models::ServiceSpec) -> serde_json::Value {
    let mounts = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.mounts.clone())
        .unwrap_or_default();
    serde_json::to_value(mounts.first().expect("a mount")).expect("mount")
}

/// The spec's placement constraints.
pub fn constraints(spec: &bollard::models::ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.clone())
        .unwrap_or_default()
}
