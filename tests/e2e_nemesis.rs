//! The nemesis' short campaigns: a few minutes of seeded faults against the real binary on
//! a real lab, with zero violations of the membership invariants. The longer campaign is
//! a documented command (README, "The nemesis"). The seeds are fixed; each draws a mix of
//! faults (`swarm-chaos nemesis --seed S --duration 120s --schedule-only` prints it).

use std::time::Duration;

use swarm_chaos::nemesis::{run, NemesisSpec};

async fn campaign_breaks_no_invariant(seed: u64) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("swarm_chaos=info")
        .with_test_writer()
        .try_init();
    let outcome = run(&NemesisSpec {
        seed,
        duration: Duration::from_secs(120),
        managers: 3,
        workers: 3,
        warden: env!("CARGO_BIN_EXE_swarm-warden").into(),
        root: swarm_chaos::default_root(),
    })
    .await
    .expect("campaign");
    println!(
        "seed {seed}: {} episodes, history {}\n{}",
        outcome.schedule.len(),
        outcome.history.display(),
        outcome.report
    );
    assert!(
        outcome.report.violations.is_empty(),
        "seed {seed}:\n{}",
        outcome.report
    );
}

/// swarm-warden restarted twice with its clock 18 s ahead (dead_after 20 s), then against
/// another manager; a manager's host rebuilt (a ghost); a manager frozen past dead_after.
#[tokio::test]
async fn seed_23_restarts_skewed_clocks_a_rebuilt_manager_and_a_long_freeze() {
    campaign_breaks_no_invariant(23).await;
}

/// Worker kills, a manager killed for less than dead_after (kept), then the managers split
/// for longer than dead_after with swarm-warden's own manager in the minority: it must do
/// nothing meanwhile, and the raft is whole again after the heal.
#[tokio::test]
async fn seed_7_kills_and_a_manager_split_past_dead_after() {
    campaign_breaks_no_invariant(7).await;
}
