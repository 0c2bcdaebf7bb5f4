//! The demo's timeline page in a real headless Chromium: the timeline of a real demo run
//! (`swarm-chaos demo --timeline-json`, saved in `tests/fixtures/demo-timeline.json`)
//! rendered as the demo renders it, loaded without console errors and without fetching
//! anything, and a screenshot taken. `UPDATE_DOCS=1` also writes the screenshot to
//! `docs/demo-timeline.png` for the README.

use std::path::Path;

use swarm_chaos::browser::check_page;
use swarm_chaos::timeline::{html, MarkKind, Timeline};

fn recorded() -> Timeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo-timeline.json");
    let text = std::fs::read_to_string(&path).expect("the recorded demo timeline");
    serde_json::from_str(&text).expect("a timeline")
}

#[test]
fn the_recorded_demo_shows_quorum_lost_without_and_kept_with_swarm_warden() {
    let timeline = recorded();
    let [without, with] = &timeline.runs[..] else {
        panic!("two runs, side by side: {:?}", timeline.runs.len());
    };
    assert_eq!(
        without.fault_tolerance.last().map(|(_, v)| *v),
        Some(None),
        "without swarm-warden the run ends with quorum lost"
    );
    assert!(with.fault_tolerance.iter().all(|(_, v)| v.is_some()));
    assert!(with
        .marks
        .iter()
        .any(|m| m.kind == MarkKind::Action && m.label.starts_with("remove-dead-manager")));
    let faults = |run: &swarm_chaos::timeline::Run| {
        run.marks
            .iter()
            .filter(|m| m.kind == MarkKind::Fault)
            .count()
    };
    assert_eq!((faults(without), faults(with)), (2, 2));
}

#[test]
fn the_demo_page_loads_in_chromium_without_errors_or_requests() {
    let dir = std::env::temp_dir().join(format!("timeline-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let page = dir.join("demo.html");
    std::fs::write(&page, html::render(&recorded())).expect("write the page");
    let shot = dir.join("demo.png");
    let check = check_page(&page, &shot, (1400, 900)).expect("Chromium checks the page");
    assert!(
        check.console_errors.is_empty(),
        "{:#?}",
        check.console_errors
    );
    assert!(check.requests.is_empty(), "fetched {:?}", check.requests);
    assert_eq!(check.png_size.0, 1400);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/demo-timeline.png");
        std::fs::copy(&shot, &docs).expect("update docs/demo-timeline.png");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
