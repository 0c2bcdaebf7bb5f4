//! A campaign's history as a timeline page: the node tables the poller recorded become the
//! lanes and the fault-tolerance line, faults and swarm-warden's actions become marks. A
//! pure function of the history, so a page can be drawn for any history file
//! (`swarm-chaos check-history FILE --html PAGE`).

use super::check::Report;
use super::history::{Entry, Event, Row};
use crate::table::{NodeRow, NodeTable};
use crate::timeline::{MarkKind, Recorder, Run, Timeline};

/// The page of one campaign: its timeline, and the checker's verdict as the outcome.
pub fn timeline(title: &str, entries: &[Entry], report: &Report) -> Timeline {
    let mut run = run(title, entries);
    let verdict = if report.violations.is_empty() {
        "no invariant broken".to_owned()
    } else {
        format!("{} violation(s)", report.violations.len())
    };
    run.outcome.push(("checker".into(), verdict));
    for violation in report.violations.iter().take(10) {
        run.outcome.push((
            format!(
                "{} at {:.1} s",
                violation.rule,
                violation.t_ms as f64 / 1000.0
            ),
            violation.detail.clone(),
        ));
    }
    let actions: Vec<String> = report
        .actions
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if !actions.is_empty() {
        run.outcome
            .push(("swarm-warden actions".into(), actions.join(", ")));
    }
    Timeline {
        title: title.to_owned(),
        summary: summary(entries),
        runs: vec![run],
    }
}

fn summary(entries: &[Entry]) -> String {
    let faults = entries
        .iter()
        .filter(|e| matches!(e.event, Event::Fault { .. }))
        .count();
    match entries.iter().find_map(|e| match &e.event {
        Event::Start {
            seed,
            managers,
            workers,
            desired,
            ..
        } => Some((*seed, *managers, *workers, *desired)),
        _ => None,
    }) {
        Some((seed, managers, workers, desired)) => format!(
            "Nemesis campaign, seed {seed}: {managers} managers + {workers} workers, swarm-warden keeping {desired} managers; {faults} fault(s), then a final heal. Each lane is a node as the raft leader listed it; crosses are faults, dots swarm-warden's actions (hover for the reasons)."
        ),
        None => format!("Nemesis campaign: {faults} fault(s)."),
    }
}

/// The lanes, fault tolerance and marks of a history.
pub fn run(title: &str, entries: &[Entry]) -> Run {
    let mut recorder = Recorder::new(title);
    let mut end = 0.0;
    for entry in entries {
        let at = entry.t_ms as f64 / 1000.0;
        end = at;
        match &entry.event {
            Event::Table { rows, .. } => recorder.sample_at(at, &table(rows)),
            Event::NoLeader => recorder.no_leader_at(at),
            Event::Fault {
                fault,
                nodes,
                detail,
            } => recorder.mark_at(
                at,
                MarkKind::Fault,
                nodes.first().map(String::as_str),
                format!("{fault} {}", nodes.join(",")),
                detail.clone(),
            ),
            Event::Heal { fault, nodes } => recorder.mark_at(
                at,
                MarkKind::Note,
                nodes.first().map(String::as_str),
                format!("heal {fault} {}", nodes.join(",")),
                String::new(),
            ),
            Event::Action {
                phase,
                kind,
                target,
                on,
                detail,
            } => {
                let mark = match phase.as_str() {
                    "started" => MarkKind::Action,
                    "done" => MarkKind::ActionDone,
                    _ => MarkKind::ActionFailed,
                };
                recorder.mark_at(
                    at,
                    mark,
                    Some(target),
                    format!("{phase}: {kind}"),
                    format!("{detail} (swarm-warden on {on})"),
                );
            }
            Event::WardenStart { on, clock_offset_s } => recorder.mark_at(
                at,
                MarkKind::Note,
                Some(on),
                "swarm-warden started",
                format!("against {on}, clock offset {clock_offset_s} s"),
            ),
            Event::WardenStop { crash } => recorder.mark_at(
                at,
                MarkKind::Note,
                None,
                if *crash {
                    "swarm-warden killed"
                } else {
                    "swarm-warden stopped"
                },
                String::new(),
            ),
            Event::Operator { detail, nodes } => recorder.mark_at(
                at,
                MarkKind::Note,
                nodes.first().map(String::as_str),
                "operator",
                detail.clone(),
            ),
            Event::FinalHeal => {
                recorder.mark_at(at, MarkKind::Note, None, "final heal", String::new())
            }
            Event::Start { .. } | Event::FaultSkipped { .. } | Event::End => {}
        }
    }
    recorder.finish_at(end)
}

fn table(rows: &[Row]) -> NodeTable {
    NodeTable {
        rows: rows
            .iter()
            .map(|r| NodeRow {
                id: r.id.clone(),
                hostname: r.hostname.clone(),
                role: r.role.clone(),
                state: r.state.clone(),
                availability: String::new(),
                reachability: r.reachability.clone(),
                leader: r.leader,
                addr: String::new(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, state: &str, reach: &str, leader: bool) -> Row {
        Row {
            id: format!("{host}-id"),
            hostname: host.into(),
            role: if reach.is_empty() {
                "worker"
            } else {
                "manager"
            }
            .into(),
            state: state.into(),
            reachability: reach.into(),
            leader,
        }
    }

    fn at(t_ms: u64, event: Event) -> Entry {
        Entry { t_ms, event }
    }

    #[test]
    fn tables_become_lanes_and_faults_and_actions_become_marks_at_their_times() {
        let healthy = vec![
            row("m1", "ready", "reachable", true),
            row("m2", "ready", "reachable", false),
            row("m3", "ready", "reachable", false),
            row("w1", "ready", "", false),
        ];
        let mut m3_down = healthy.clone();
        m3_down[2] = row("m3", "down", "unreachable", false);
        let entries = vec![
            at(
                0,
                Event::Table {
                    rows: healthy,
                    from: "m1".into(),
                },
            ),
            at(
                1_000,
                Event::Fault {
                    fault: "kill".into(),
                    nodes: vec!["m3".into()],
                    detail: "node loss".into(),
                },
            ),
            at(
                2_000,
                Event::Table {
                    rows: m3_down.clone(),
                    from: "m1".into(),
                },
            ),
            at(
                25_000,
                Event::Action {
                    phase: "started".into(),
                    kind: "remove-dead-manager".into(),
                    target: "m3-id".into(),
                    on: "m1".into(),
                    detail: "Down for 20s".into(),
                },
            ),
            at(
                26_000,
                Event::Table {
                    rows: m3_down,
                    from: "m1".into(),
                },
            ),
            at(30_000, Event::NoLeader),
            at(31_000, Event::End),
        ];
        let run = run("seed 1", &entries);
        assert_eq!(run.lanes.len(), 4);
        assert_eq!(run.duration_s, 31.0);
        let action = run
            .marks
            .iter()
            .find(|m| m.kind == MarkKind::Action)
            .expect("the action");
        assert_eq!(
            action.node.as_deref(),
            Some("m3"),
            "the node ID maps to its lane"
        );
        assert_eq!(action.at_s, 25.0);
        let fault = run
            .marks
            .iter()
            .find(|m| m.kind == MarkKind::Fault)
            .expect("the fault");
        assert_eq!((fault.at_s, fault.label.as_str()), (1.0, "kill m3"));
        assert_eq!(
            run.fault_tolerance,
            vec![(0.0, Some(1)), (2.0, Some(0)), (30.0, None)]
        );
    }
}
