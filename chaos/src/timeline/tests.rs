use super::*;

fn row(host: &str, role: &str, state: &str, reach: &str, leader: bool) -> NodeRow {
    NodeRow {
        id: format!("{host}-id-000"),
        hostname: host.into(),
        role: role.into(),
        state: state.into(),
        availability: "active".into(),
        reachability: reach.into(),
        leader,
        addr: String::new(),
    }
}

fn table(rows: Vec<NodeRow>) -> NodeTable {
    NodeTable { rows }
}

fn healthy() -> Vec<NodeRow> {
    vec![
        row("m1", "manager", "ready", "reachable", true),
        row("m2", "manager", "ready", "reachable", false),
        row("m3", "manager", "ready", "reachable", false),
        row("w1", "worker", "ready", "", false),
    ]
}

#[test]
fn a_lane_goes_on_while_its_state_holds_and_starts_a_span_when_it_changes() {
    let mut rec = Recorder::new("run");
    rec.sample_at(0.0, &table(healthy()));
    rec.sample_at(1.0, &table(healthy()));
    let mut m3_down = healthy();
    m3_down[2] = row("m3", "manager", "down", "unreachable", false);
    rec.sample_at(2.0, &table(m3_down.clone()));
    rec.sample_at(3.0, &table(m3_down));
    let run = rec.finish();
    let m3 = &run.lanes[2];
    assert_eq!(m3.node, "m3");
    assert_eq!(m3.spans.len(), 2);
    assert_eq!((m3.spans[0].from_s, m3.spans[0].to_s), (0.0, 2.0));
    assert_eq!(m3.spans[0].look, Look::Manager);
    assert_eq!((m3.spans[1].from_s, m3.spans[1].to_s), (2.0, 3.0));
    assert_eq!(m3.spans[1].look, Look::ManagerDown);
    assert_eq!(run.lanes[0].spans[0].look, Look::Leader);
    // 3 of 3 reachable (ft 1), then 2 of 3 (ft 0): one step each.
    assert_eq!(run.fault_tolerance, vec![(0.0, Some(1)), (2.0, Some(0))]);
}

#[test]
fn a_removed_node_leaves_a_gap_and_a_promoted_one_changes_colour() {
    let mut rec = Recorder::new("run");
    rec.sample_at(0.0, &table(healthy()));
    let mut after = healthy();
    after.remove(2); // m3 removed
    after[2] = row("w1", "manager", "ready", "reachable", false); // w1 promoted
    rec.sample_at(5.0, &table(after.clone()));
    rec.sample_at(6.0, &table(after));
    let run = rec.finish();
    let m3 = run.lanes.iter().find(|l| l.node == "m3").expect("m3 lane");
    assert_eq!(m3.spans.len(), 1);
    assert_eq!(
        m3.spans[0].to_s, 0.0,
        "m3's lane stops where it was last listed"
    );
    let w1 = run.lanes.iter().find(|l| l.node == "w1").expect("w1 lane");
    let looks: Vec<Look> = w1.spans.iter().map(|s| s.look).collect();
    assert_eq!(looks, [Look::Worker, Look::Manager]);
}

#[test]
fn a_hostname_listed_twice_gets_a_lane_per_entry() {
    let mut rows = healthy();
    let mut old = row("m3", "manager", "down", "unreachable", false);
    old.id = "abcdef123".into();
    rows.push(old);
    let mut rec = Recorder::new("run");
    rec.sample_at(0.0, &table(rows));
    let run = rec.finish();
    let names: Vec<&str> = run.lanes.iter().map(|l| l.node.as_str()).collect();
    assert!(names.contains(&"m3 (abcdef)"), "{names:?}");
    assert!(names.contains(&"m3 (m3-id-)"), "{names:?}");
}

#[test]
fn without_a_leader_lanes_turn_unknown_and_fault_tolerance_is_lost() {
    let mut rec = Recorder::new("run");
    rec.sample_at(0.0, &table(healthy()));
    rec.no_leader();
    let run = rec.finish();
    assert_eq!(run.fault_tolerance.last().map(|(_, v)| *v), Some(None));
    assert!(run
        .lanes
        .iter()
        .all(|l| l.spans.last().is_some_and(|s| s.look == Look::Unknown)));
}

fn sample_timeline() -> Timeline {
    let mut rec = Recorder::new("With <swarm-warden>");
    rec.sample_at(0.0, &table(healthy()));
    rec.run.marks.push(Mark {
        at_s: 1.0,
        kind: MarkKind::Fault,
        node: Some("m3".into()),
        label: "kill m3".into(),
        detail: "node loss".into(),
    });
    rec.run.marks.push(Mark {
        at_s: 20.0,
        kind: MarkKind::Action,
        node: Some("m3".into()),
        label: "remove-dead-manager m3".into(),
        detail: "m3 has been Down & unreachable for 15s; <b>quorum</b> 2 -> 2".into(),
    });
    rec.sample_at(30.0, &table(healthy()));
    rec.outcome("raft leader", "m1");
    Timeline {
        title: "The incident".into(),
        summary: "A dead manager, then another.".into(),
        runs: vec![rec.finish()],
    }
}

#[test]
fn the_page_is_self_contained_escaped_and_carries_hover_text_for_every_mark() {
    let page = html::render(&sample_timeline());
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(!page.contains("<script"), "no script");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing fetched"
    );
    assert!(page.contains("With &lt;swarm-warden&gt;"), "titles escaped");
    assert!(
        page.contains("&lt;b&gt;quorum&lt;/b&gt;"),
        "reasons escaped"
    );
    assert_eq!(page.matches("<svg").count(), 1);
    assert!(page.contains("remove-dead-manager m3"));
    // Each mark (2) and each span (4 lanes) has a <title> (hover text); so has the page.
    assert!(page.matches("<title>").count() > 2 + 4, "{page}");
}

#[test]
fn a_timeline_survives_its_json() {
    let timeline = sample_timeline();
    let json = serde_json::to_string(&timeline).expect("json");
    let back: Timeline = serde_json::from_str(&json).expect("back");
    assert_eq!(back, timeline);
}
