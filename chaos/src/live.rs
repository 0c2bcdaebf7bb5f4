//! Labs this process owns, torn down if the process is interrupted (SIGINT, SIGTERM,
//! SIGHUP): a Ctrl-C during a test or a nextest timeout must not leave a swarm running.

use std::path::PathBuf;
use std::sync::{Mutex, Once};

use crate::names::LabPaths;
use crate::reap::reap_lab;

static LIVE: Mutex<Vec<(PathBuf, crate::names::LabName)>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

/// Remembers a lab to tear down on interruption.
pub fn register(paths: &LabPaths) {
    HANDLER.call_once(|| {
        if let Err(e) = ctrlc::set_handler(on_interrupt) {
            // Someone else handles signals in this process: labs still go on drop.
            tracing::warn!(error = %e, "Could not install the lab's interrupt handler");
        }
    });
    if let Ok(mut live) = LIVE.lock() {
        live.push((paths.root().to_path_buf(), paths.lab().clone()));
    }
}

/// Forgets a lab (torn down, or left running on purpose).
pub fn deregister(paths: &LabPaths) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|(root, lab)| !(root == paths.root() && lab == paths.lab()));
    }
}

fn on_interrupt() {
    let labs = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for (root, lab) in labs {
        eprintln!("swarm-chaos: interrupted, tearing down lab {lab}");
        if let Err(e) = reap_lab(&LabPaths::new(root, lab.clone())) {
            eprintln!("swarm-chaos: tearing down lab {lab} failed: {e}");
        }
    }
    std::process::exit(130);
}
