//! The nemesis' short campaigns: a few minutes of seeded faults against the real binary on
//! a real lab, with zero violations of the membership invariants — and with the
//! invariants actually exercised: each campaign must see swarm-warden remove a dead
//! manager and promote a worker. The longer campaign is a documented command (README,
//! "The nemesis"). `swarm-chaos nemesis --seed S --duration 120s --schedule-only` prints
//! a seed's schedule.

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
    assert!(outcome.error.is_none(), "seed {seed}: {:?}", outcome.error);
    assert!(
        outcome.report.violations.is_empty(),
        "seed {seed}:\n{}",
        outcome.report
    );
    for kind in ["remove-dead-manager", "promote-worker"] {
        assert!(
            outcome.report.actions.get(kind).is_some_and(|n| *n > 0),
            "seed {seed} never exercised {kind}:\n{}",
            outcome.report
        );
    }
    campaign_page_loads_cleanly(seed, &outcome);
}

/// The campaign's timeline page (`swarm-chaos nemesis --html`) in a real headless
/// Chromium: no console error, nothing fetched, one lane per node the tables listed.
fn campaign_page_loads_cleanly(seed: u64, outcome: &swarm_chaos::nemesis::Outcome) {
    let entries = swarm_chaos::nemesis::history::read(&outcome.history).expect("history");
    let timeline = swarm_chaos::nemesis::picture::timeline(
        &format!("Nemesis campaign, seed {seed}"),
        &entries,
        &outcome.report,
    );
    let run = &timeline.runs[0];
    assert!(run.lanes.len() >= 6, "{:?}", run.lanes.len());
    assert!(run
        .marks
        .iter()
        .any(|m| m.kind == swarm_chaos::timeline::MarkKind::Fault));
    let page = outcome.history.with_extension("html");
    std::fs::write(&page, swarm_chaos::timeline::html::render(&timeline)).expect("page");
    let shot = outcome.history.with_extension("png");
    let check = swarm_chaos::browser::check_page(&page, &shot, (1400, 900)).expect("Chromium");
    assert!(
        check.console_errors.is_empty(),
        "{:#?}",
        check.console_errors
    );
    assert!(check.requests.is_empty(), "fetched {:?}", check.requests);
    println!(
        "timeline page {} (screenshot {})",
        page.display(),
        shot.display()
    );
}

/// swarm-warden crashes and comes back with its clock 18 s behind (dead_after 20 s); a
/// manager is cut off for 61 s (removed, a worker promoted, by the skewed process); a new
/// host joins as a manager.
#[tokio::test]
async fn seed_86_a_skewed_restart_then_a_manager_cut_off_past_dead_after() {
    campaign_breaks_no_invariant(86).await;
}

/// A manager cut off for 60 s (removed, a worker promoted); swarm-warden restarted with
/// its clock 18 s ahead; a manager restarted, one killed for 4 s (kept), a short split.
#[tokio::test]
async fn seed_34_a_manager_cut_off_then_short_faults_under_a_clock_ahead() {
    campaign_breaks_no_invariant(34).await;
}
