//! The alerting rules shipped in `manifests/alerts.yml` load in Prometheus and fire when
//! they should (`manifests/alerts.test.yml`), checked with Prometheus' own `promtool`.
//! `.ci/run` unpacks Debian's Prometheus package, which carries it; `$PROMTOOL` points
//! at another.

use std::path::{Path, PathBuf};
use std::process::Command;

fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMTOOL") {
        return path.into();
    }
    let unpacked = Path::new("/var/cache/swarm-chaos/prometheus/usr/bin/promtool");
    if unpacked.exists() {
        return unpacked.to_owned();
    }
    "promtool".into()
}

fn run(args: &[&str]) {
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let out = Command::new(promtool())
        .args(args)
        .current_dir(&manifests)
        .output()
        .unwrap_or_else(|e| panic!("promtool ({}): {e}", promtool().display()));
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alerting_rules_load() {
    run(&["check", "rules", "alerts.yml"]);
}

#[test]
fn the_alerts_fire_when_swarm_warden_is_blind_and_stay_quiet_when_it_is_healthy() {
    run(&["test", "rules", "alerts.test.yml"]);
}
