//! The checker: reads a history and reports violations of swarm-warden's membership
//! invariants, judged against the ground truth the nemesis knows (which host it broke,
//! when, and for how long) and the node tables it polled, never against swarm-warden's
//! own account of itself.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use super::history::{Entry, Event, Row};

/// Slack for the nemesis' polling (tables every second) and process scheduling, ms.
const SLACK_MS: u64 = 2_000;
/// How long a fault must have lasted before an action counts as taken during it, ms:
/// swarm-warden re-reads the swarm right before acting, but not at the same instant.
const GRACE_MS: u64 = 5_000;
/// How long after its heal a host still looks out to the swarm (restart, rejoin,
/// heartbeats), ms.
const RECOVERY_MS: u64 = 10_000;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// When, ms since the campaign started.
    pub t_ms: u64,
    /// Which invariant (`removed-live-manager`, ...).
    pub rule: &'static str,
    /// What happened.
    pub detail: String,
}

/// What the checker found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Broken invariants, in time order.
    pub violations: Vec<Violation>,
    /// Faults applied, by name.
    pub faults: BTreeMap<String, usize>,
    /// Faults that could not be applied, by name.
    pub faults_skipped: BTreeMap<String, usize>,
    /// Actions started, by kind.
    pub actions: BTreeMap<String, usize>,
    /// Actions by outcome (`done`, `failed`, `rolled-back`).
    pub outcomes: BTreeMap<String, usize>,
    /// Removals of plain members (not ghosts): Down first seen -> removal done, minus
    /// `dead_after`, ms.
    pub reaction_ms: Vec<i64>,
    /// How long after the final heal the raft was seen restored ([`restored`]), ms.
    pub restored_after_ms: Option<u64>,
    /// The bound for that, ms.
    pub restore_bound_ms: u64,
}

impl Report {
    /// min / median / max of the reaction times, ms.
    pub fn reaction_stats(&self) -> Option<(i64, i64, i64)> {
        let mut r = self.reaction_ms.clone();
        r.sort_unstable();
        Some((*r.first()?, r[r.len() / 2], *r.last()?))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |m: &BTreeMap<String, usize>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        writeln!(f, "faults:   {}", list(&self.faults))?;
        if !self.faults_skipped.is_empty() {
            writeln!(f, "skipped:  {}", list(&self.faults_skipped))?;
        }
        writeln!(f, "actions:  {}", list(&self.actions))?;
        writeln!(f, "outcomes: {}", list(&self.outcomes))?;
        match self.reaction_stats() {
            Some((min, med, max)) => writeln!(
                f,
                "reaction (Down seen -> removal done, minus dead_after): min {:.1}s, median {:.1}s, max {:.1}s over {}",
                min as f64 / 1000.0,
                med as f64 / 1000.0,
                max as f64 / 1000.0,
                self.reaction_ms.len()
            )?,
            None => writeln!(f, "reaction: no removal")?,
        }
        match self.restored_after_ms {
            Some(ms) => writeln!(
                f,
                "restored: managers.desired members, all reachable, {:.1}s after the final heal (bound {:.0}s)",
                ms as f64 / 1000.0,
                self.restore_bound_ms as f64 / 1000.0
            )?,
            None => writeln!(
                f,
                "restored: NOT within the bound of {:.0}s after the final heal",
                self.restore_bound_ms as f64 / 1000.0
            )?,
        }
        if self.violations.is_empty() {
            writeln!(f, "violations: none")
        } else {
            writeln!(f, "violations: {}", self.violations.len())?;
            for v in &self.violations {
                writeln!(
                    f,
                    "  {:>8.1}s {}: {}",
                    v.t_ms as f64 / 1000.0,
                    v.rule,
                    v.detail
                )?;
            }
            Ok(())
        }
    }
}

/// The policy the campaign ran swarm-warden with, from the history's start entry.
#[derive(Debug, Clone, Copy, Default)]
struct Clocks {
    desired: usize,
    dead_after: u64,
    leader_settle: u64,
    stabilization: u64,
}

impl Clocks {
    fn restore_bound(&self) -> u64 {
        restore_bound_ms(
            self.desired,
            self.dead_after,
            self.leader_settle,
            self.stabilization,
        )
    }
}

/// How long after the final heal `desired` reachable managers must be back, ms: the
/// leader settles, every entry left dead is removed (dead_after twice over: status times
/// count dead_after late), then promotions one per stabilization, each allowed a
/// 30 s convergence wait, twice over (a removal per promotion), plus a minute.
pub fn restore_bound_ms(
    desired: usize,
    dead_after: u64,
    leader_settle: u64,
    stabilization: u64,
) -> u64 {
    let desired = u64::try_from(desired).unwrap_or(7);
    leader_settle + 2 * dead_after + 2 * desired * (stabilization + 30_000) + 60_000
}

/// A stretch of time a host was impaired (dead, frozen, cut off, mid-restart), ms.
#[derive(Debug, Clone, Copy)]
struct Outage {
    from: u64,
    until: u64,
}

/// Ground truth, rebuilt from the faults.
#[derive(Debug, Default)]
struct Truth {
    outages: HashMap<String, Vec<Outage>>,
    /// Node ID -> hostname, from the tables.
    hostnames: HashMap<String, String>,
    /// Node ID -> when its host was rebuilt (the ID is dead from then on).
    superseded: HashMap<String, u64>,
}

impl Truth {
    fn of(entries: &[Entry], end: u64) -> Self {
        let mut truth = Truth::default();
        let mut open: HashMap<(String, String), u64> = HashMap::new();
        for e in entries {
            match &e.event {
                Event::Table { rows, .. } => {
                    for r in rows {
                        truth
                            .hostnames
                            .entry(r.id.clone())
                            .or_insert(r.hostname.clone());
                    }
                }
                Event::Fault { fault, nodes, .. } => {
                    for n in nodes {
                        open.insert((fault.clone(), n.clone()), e.t_ms);
                        if fault == "rebuild" {
                            for (id, host) in &truth.hostnames {
                                if host == n {
                                    truth.superseded.entry(id.clone()).or_insert(e.t_ms);
                                }
                            }
                        }
                    }
                }
                Event::Operator { nodes, .. } => {
                    for n in nodes {
                        for (id, host) in &truth.hostnames {
                            if host == n {
                                truth.superseded.entry(id.clone()).or_insert(e.t_ms);
                            }
                        }
                    }
                }
                Event::Heal { fault, nodes } => {
                    for n in nodes {
                        if let Some(from) = open.remove(&(fault.clone(), n.clone())) {
                            truth.outages.entry(n.clone()).or_default().push(Outage {
                                from,
                                until: e.t_ms,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        for ((_, n), from) in open {
            truth
                .outages
                .entry(n)
                .or_default()
                .push(Outage { from, until: end });
        }
        truth
    }

    /// Whether `host` was impaired without a break over `[from, until]`. A healed host
    /// counts as impaired for `RECOVERY_MS` more: the swarm sees it come back that late.
    fn impaired_throughout(&self, host: &str, from: u64, until: u64) -> bool {
        let Some(outages) = self.outages.get(host) else {
            return false;
        };
        // Outages can overlap or touch (a kill during a split): merge, then look for one
        // merged span that covers the window.
        let mut spans: Vec<Outage> = outages
            .iter()
            .map(|o| Outage {
                from: o.from,
                until: o.until.saturating_add(RECOVERY_MS),
            })
            .collect();
        spans.sort_by_key(|o| o.from);
        let mut merged: Vec<Outage> = Vec::new();
        for o in spans {
            match merged.last_mut() {
                Some(last) if o.from <= last.until + SLACK_MS => {
                    last.until = last.until.max(o.until)
                }
                _ => merged.push(o),
            }
        }
        merged.iter().any(|o| o.from <= from && o.until >= until)
    }
}

/// Whether a view shows a majority of the raft reachable (Down members counted out): a
/// view from a manager cut off in a minority does not.
pub fn shows_majority(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.is_member()) && fault_tolerance(rows) >= 0
}

fn membership(kind: &str) -> bool {
    kind == "remove-dead-manager" || kind == "promote-worker"
}

/// Fault tolerance of a table, pessimistic as swarm-warden's: Down members count out.
fn fault_tolerance(rows: &[Row]) -> i64 {
    let members = rows.iter().filter(|r| r.is_member()).count();
    let reachable = rows
        .iter()
        .filter(|r| r.leader || (r.reachability == "reachable" && r.state != "down"))
        .count();
    i64::try_from(reachable).unwrap_or(0) - i64::try_from(members / 2 + 1).unwrap_or(0)
}

/// Restored: at least `desired` raft members, every one of them Ready and reachable (a
/// ghost or a dead member left in the raft is not restored, whatever the count).
pub fn restored(rows: &[Row], desired: usize) -> bool {
    let members: Vec<&Row> = rows.iter().filter(|r| r.is_member()).collect();
    members.len() >= desired
        && members
            .iter()
            .all(|r| r.state == "ready" && (r.leader || r.reachability == "reachable"))
}

/// Checks a history.
pub fn check(entries: &[Entry]) -> Report {
    let mut report = Report::default();
    let end = entries.last().map_or(0, |e| e.t_ms);
    let clocks = entries
        .iter()
        .find_map(|e| match &e.event {
            Event::Start {
                desired,
                dead_after_ms,
                leader_settle_ms,
                stabilization_ms,
                ..
            } => Some(Clocks {
                desired: *desired,
                dead_after: *dead_after_ms,
                leader_settle: *leader_settle_ms,
                stabilization: *stabilization_ms,
            }),
            _ => None,
        })
        .unwrap_or_default();
    report.restore_bound_ms = clocks.restore_bound();
    let truth = Truth::of(entries, end);
    // Only views of a majority count: a manager cut off in a minority may keep answering
    // as leader for a while, with a stale node list.
    let tables: Vec<(u64, &Vec<Row>)> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Table { rows, .. } if shows_majority(rows) => Some((e.t_ms, rows)),
            _ => None,
        })
        .collect();
    // The last majority view at most 5 s old at `t`.
    let table_before = |t: u64| {
        tables
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .filter(|(at, _)| t - at <= GRACE_MS)
    };
    let table_after = |t: u64| tables.iter().find(|(at, _)| *at >= t);
    let polls_in = |from: u64, until: u64| {
        entries.iter().any(|e| {
            (from..=until).contains(&e.t_ms)
                && matches!(e.event, Event::Table { .. } | Event::NoLeader)
        })
    };

    // Leader changes, as majority views show them: the first view with the new leader.
    let mut leader_changes: Vec<u64> = Vec::new();
    let mut last_leader: Option<&str> = None;
    for (at, rows) in &tables {
        if let Some(leader) = rows.iter().find(|r| r.leader) {
            if last_leader.is_some_and(|l| l != leader.id) {
                leader_changes.push(*at);
            }
            last_leader = Some(&leader.id);
        }
    }

    // Every action, started -> ended.
    struct Started<'a> {
        t: u64,
        kind: &'a str,
        target: &'a str,
        on: &'a str,
        ended: Option<(u64, &'a str)>,
    }
    let mut started: Vec<Started> = Vec::new();
    for e in entries {
        match &e.event {
            Event::Fault { fault, .. } => *report.faults.entry(fault.clone()).or_default() += 1,
            Event::FaultSkipped { fault, .. } => {
                *report.faults_skipped.entry(fault.clone()).or_default() += 1
            }
            Event::Action {
                phase,
                kind,
                target,
                on,
                ..
            } => {
                if phase == "started" {
                    *report.actions.entry(kind.clone()).or_default() += 1;
                    started.push(Started {
                        t: e.t_ms,
                        kind,
                        target,
                        on,
                        ended: None,
                    });
                } else {
                    *report.outcomes.entry(phase.clone()).or_default() += 1;
                    if let Some(s) = started
                        .iter_mut()
                        .rev()
                        .find(|s| s.kind == kind && s.target == target && s.ended.is_none())
                    {
                        s.ended = Some((e.t_ms, phase));
                    }
                }
            }
            _ => {}
        }
    }
    let faults_between = |from: u64, until: u64| {
        entries.iter().any(|e| {
            (from..=until).contains(&e.t_ms)
                && matches!(e.event, Event::Fault { .. } | Event::Heal { .. })
        })
    };

    let mut previous_change: Option<(u64, u64)> = None;
    let mut promotions: Vec<(u64, &str)> = Vec::new();
    for s in &started {
        let mut violate = |rule: &'static str, detail: String| {
            report.violations.push(Violation {
                t_ms: s.t,
                rule,
                detail,
            })
        };
        // No write from a manager that was cut off, frozen or dead, nor while no manager
        // anywhere showed a majority.
        let window = s.t.saturating_sub(GRACE_MS);
        if truth.impaired_throughout(s.on, window, s.t) {
            violate(
                "write-without-majority",
                format!(
                    "{} {} started while its manager {} was cut off or down",
                    s.kind, s.target, s.on
                ),
            );
        } else if polls_in(window, s.t) && table_before(s.t).is_none() {
            violate(
                "write-without-majority",
                format!(
                    "{} {} started while no manager showed a majority",
                    s.kind, s.target
                ),
            );
        }
        if !membership(s.kind) {
            continue;
        }
        if s.kind == "remove-dead-manager" {
            // Only an entry whose host has been out for dead_after: never a live one,
            // never one out for less.
            if let Some(host) = truth.hostnames.get(s.target) {
                let since =
                    s.t.saturating_sub(clocks.dead_after.saturating_sub(SLACK_MS));
                let dead_long_enough = match truth.superseded.get(s.target) {
                    Some(at) => *at <= since,
                    None => truth.impaired_throughout(host, since, s.t.saturating_sub(SLACK_MS)),
                };
                let shown_live = table_before(s.t).is_some_and(|(_, rows)| {
                    rows.iter().any(|r| {
                        r.id == s.target
                            && r.state == "ready"
                            && (r.leader || r.reachability == "reachable")
                    })
                });
                if !dead_long_enough || shown_live {
                    violate(
                        "removed-live-manager",
                        format!(
                            "remove-dead-manager of {} ({host}) started though {}",
                            s.target,
                            if shown_live {
                                "the swarm showed it Ready and reachable".to_owned()
                            } else {
                                format!(
                                    "its host had not been out for dead_after ({} ms)",
                                    clocks.dead_after
                                )
                            }
                        ),
                    );
                }
            }
        }
        // Nothing within leader_settle of a leader change. swarm-warden sees a change no
        // sooner than it happens; a majority view shows it at most a poll late.
        if let Some(changed) = leader_changes.iter().rev().find(|c| **c <= s.t) {
            if s.t - changed + SLACK_MS < clocks.leader_settle {
                violate(
                    "change-after-leader-change",
                    format!(
                        "{} {} started {} ms after the leader changed (leader_settle {} ms)",
                        s.kind,
                        s.target,
                        s.t - changed,
                        clocks.leader_settle
                    ),
                );
            }
        }
        // Nothing within stabilization of the previous membership change's end.
        if let Some((_, prev_end)) = previous_change {
            if s.t < prev_end + clocks.stabilization.saturating_sub(SLACK_MS / 2) {
                violate(
                    "change-within-stabilization",
                    format!(
                        "{} {} started {} ms after the previous membership change ended (stabilization {} ms)",
                        s.kind,
                        s.target,
                        s.t.saturating_sub(prev_end),
                        clocks.stabilization
                    ),
                );
            }
        }
        // Never a promotion while an earlier one has not converged: converged means the
        // node shown as a reachable member, or gone, or back to worker after it was seen
        // with role manager (a table from before the write took effect proves nothing).
        if s.kind == "promote-worker" {
            for (t1, x) in &promotions {
                let mut seen_manager = false;
                let settled =
                    tables
                        .iter()
                        .filter(|(at, _)| *at > *t1 && *at <= s.t)
                        .any(|(_, rows)| match rows.iter().find(|r| r.id == *x) {
                            None => true,
                            Some(r) if r.reachability == "reachable" || r.leader => true,
                            Some(r) if r.role == "manager" => {
                                seen_manager = true;
                                false
                            }
                            Some(_) => seen_manager,
                        });
                // An operator who rebuilt the host (the fix `promotion-failed` gives) and
                // removed its stranded entry settles it too.
                let host = truth.hostnames.get(*x);
                let by_operator = entries.iter().any(|e| {
                    (*t1..=s.t).contains(&e.t_ms)
                        && matches!(&e.event, Event::Operator { nodes, .. } if host.is_some_and(|h| nodes.contains(h)))
                });
                if !settled && !by_operator {
                    violate(
                        "second-promotion",
                        format!("promote-worker {} started while the promotion of {x} had not converged", s.target),
                    );
                }
            }
            promotions.push((s.t, s.target));
        }
        // No change that lowered fault tolerance (unless a fault came in between), whatever
        // its outcome: a demotion that went through counts even if the rest failed.
        if let (Some((before_at, before)), Some((end_at, _))) = (table_before(s.t), s.ended) {
            if let Some((after_at, after)) = table_after(end_at + 1_000) {
                let (ft_before, ft_after) = (fault_tolerance(before), fault_tolerance(after));
                if ft_after < ft_before && !faults_between(*before_at, *after_at) {
                    violate(
                        "fault-tolerance-lowered",
                        format!(
                            "{} {} took fault tolerance from {ft_before} to {ft_after}",
                            s.kind, s.target
                        ),
                    );
                }
            }
        }
        previous_change = Some((s.t, s.ended.map_or(s.t, |(at, _)| at)));

        // Reaction time of a removal of a plain member (not a ghost): Down first seen (in
        // the stretch that ended with the removal) to removal done, minus dead_after.
        if let (Some((done_at, "done")), "remove-dead-manager") = (s.ended, s.kind) {
            if truth.superseded.contains_key(s.target) {
                continue;
            }
            let mut down_since = None;
            for (at, rows) in tables.iter().filter(|(at, _)| *at <= s.t) {
                match rows.iter().find(|r| r.id == s.target) {
                    Some(r) if r.state == "down" => {
                        down_since.get_or_insert(*at);
                    }
                    _ => down_since = None,
                }
            }
            if let Some(d) = down_since {
                let ms = i64::try_from(done_at).unwrap_or(0)
                    - i64::try_from(d).unwrap_or(0)
                    - i64::try_from(clocks.dead_after).unwrap_or(0);
                report.reaction_ms.push(ms);
            }
        }
    }

    // After the final heal, managers.desired reachable managers within the bound.
    if let Some(heal) = entries.iter().find(|e| e.event == Event::FinalHeal) {
        report.restored_after_ms = tables
            .iter()
            .find(|(at, rows)| *at >= heal.t_ms && restored(rows, clocks.desired))
            .map(|(at, _)| at - heal.t_ms)
            .filter(|ms| *ms <= report.restore_bound_ms);
        if report.restored_after_ms.is_none() {
            report.violations.push(Violation {
                t_ms: end,
                rule: "not-restored",
                detail: format!(
                    "{} raft members (managers.desired), all Ready and reachable, not seen within {} ms of the final heal",
                    clocks.desired, report.restore_bound_ms
                ),
            });
        }
    }
    report.violations.sort_by_key(|v| v.t_ms);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, role: &str, state: &str, reach: &str, leader: bool) -> Row {
        Row {
            id: id.into(),
            hostname: id.into(),
            role: role.into(),
            state: state.into(),
            reachability: reach.into(),
            leader,
        }
    }

    fn at(t_ms: u64, event: Event) -> Entry {
        Entry { t_ms, event }
    }

    fn fault(t_ms: u64, fault: &str, host: &str) -> Entry {
        at(
            t_ms,
            Event::Fault {
                fault: fault.into(),
                nodes: vec![host.into()],
                detail: String::new(),
            },
        )
    }

    fn heal(t_ms: u64, fault: &str, host: &str) -> Entry {
        at(
            t_ms,
            Event::Heal {
                fault: fault.into(),
                nodes: vec![host.into()],
            },
        )
    }

    fn table(rows: Vec<Row>) -> Event {
        Event::Table {
            rows,
            from: "m1".into(),
        }
    }

    fn start() -> Entry {
        at(
            0,
            Event::Start {
                seed: 1,
                managers: 3,
                workers: 1,
                desired: 3,
                dead_after_ms: 20_000,
                leader_settle_ms: 15_000,
                stabilization_ms: 5_000,
                resync_ms: 5_000,
                schedule: serde_json::Value::Null,
            },
        )
    }

    fn healthy() -> Vec<Row> {
        vec![
            row("m1", "manager", "ready", "reachable", true),
            row("m2", "manager", "ready", "reachable", false),
            row("m3", "manager", "ready", "reachable", false),
            row("w1", "worker", "ready", "", false),
        ]
    }

    fn action(t: u64, phase: &str, kind: &str, target: &str) -> Entry {
        at(
            t,
            Event::Action {
                phase: phase.into(),
                kind: kind.into(),
                target: target.into(),
                on: "m1".into(),
                detail: String::new(),
            },
        )
    }

    fn rules(report: &Report) -> Vec<&'static str> {
        report.violations.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn removing_a_manager_killed_for_longer_than_dead_after_is_no_violation() {
        let mut down = healthy();
        down[2] = row("m3", "manager", "down", "unreachable", false);
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            fault(2_000, "kill", "m3"),
            at(8_000, table(down)),
            action(30_000, "started", "remove-dead-manager", "m3"),
            action(33_000, "done", "remove-dead-manager", "m3"),
        ];
        let report = check(&h);
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(report.reaction_ms, vec![33_000 - 8_000 - 20_000]);
    }

    #[test]
    fn removing_a_manager_that_was_down_for_less_than_dead_after_is_a_violation() {
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            fault(20_000, "freeze", "m3"),
            action(30_000, "started", "remove-dead-manager", "m3"),
        ];
        assert_eq!(rules(&check(&h)), vec!["removed-live-manager"]);
    }

    #[test]
    fn a_second_promotion_before_the_first_converged_is_a_violation() {
        let mut promoting = healthy();
        promoting.push(row("w2", "manager", "down", "", false));
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            action(20_000, "started", "promote-worker", "w2"),
            action(50_000, "failed", "promote-worker", "w2"),
            at(51_000, table(promoting)),
            action(60_000, "started", "promote-worker", "w1"),
        ];
        assert_eq!(rules(&check(&h)), vec!["second-promotion"]);
    }

    #[test]
    fn a_promotion_after_an_operator_repaired_the_failed_one_is_no_violation() {
        let mut promoting = healthy();
        promoting.push(row("w2", "manager", "down", "", false));
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            action(20_000, "started", "promote-worker", "w2"),
            action(50_000, "failed", "promote-worker", "w2"),
            at(51_000, table(promoting)),
            at(
                59_000,
                Event::Operator {
                    detail: "w2 rebuilt".into(),
                    nodes: vec!["w2".into()],
                },
            ),
            action(60_000, "started", "promote-worker", "w1"),
        ];
        assert!(check(&h).violations.is_empty(), "{}", check(&h));
    }

    #[test]
    fn a_membership_change_right_after_a_leader_change_is_a_violation() {
        let mut new_leader = healthy();
        new_leader[0].leader = false;
        new_leader[1].leader = true;
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            at(10_000, table(new_leader)),
            action(12_000, "started", "promote-worker", "w1"),
        ];
        assert_eq!(rules(&check(&h)), vec!["change-after-leader-change"]);
    }

    #[test]
    fn an_action_from_a_cut_off_manager_is_a_violation() {
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            fault(2_000, "isolate", "m1"),
            action(40_000, "started", "enforce-placement", "web"),
        ];
        assert_eq!(rules(&check(&h)), vec!["write-without-majority"]);
    }

    #[test]
    fn not_restoring_the_desired_managers_after_the_final_heal_is_a_violation() {
        let mut two = healthy();
        two.remove(2);
        let h = vec![
            start(),
            at(1_000, Event::FinalHeal),
            at(2_000, table(two.clone())),
            at(1_000_000, table(two)),
            at(1_000_001, Event::End),
        ];
        let report = check(&h);
        assert_eq!(rules(&report), vec!["not-restored"]);
        let h = vec![
            start(),
            at(1_000, Event::FinalHeal),
            at(9_000, table(healthy())),
        ];
        assert_eq!(check(&h).restored_after_ms, Some(8_000));
    }

    #[test]
    fn an_earlier_outage_of_the_same_host_does_not_hide_the_one_that_covers_the_removal() {
        let mut down = healthy();
        down[2] = row("m3", "manager", "down", "unreachable", false);
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            fault(10_000, "kill", "m3"),
            heal(20_000, "kill", "m3"),
            fault(40_000, "kill", "m3"),
            at(50_000, table(down)),
            action(65_000, "started", "remove-dead-manager", "m3"),
        ];
        assert!(check(&h).violations.is_empty(), "{}", check(&h));
    }

    #[test]
    fn a_minority_view_of_a_cut_off_leader_is_no_leader_change_and_no_majority() {
        // m1, cut off, keeps answering as leader with the others unreachable.
        let mut stale = healthy();
        stale[1].reachability = "unreachable".into();
        stale[2].reachability = "unreachable".into();
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            at(2_000, table(stale.clone())),
            at(3_000, table(stale.clone())),
            at(4_000, table(stale.clone())),
            at(5_000, table(stale.clone())),
            at(6_000, table(stale.clone())),
            at(7_000, table(stale)),
            action(7_500, "started", "enforce-placement", "web"),
        ];
        assert_eq!(rules(&check(&h)), vec!["write-without-majority"]);
    }

    #[test]
    fn a_ghost_removed_dead_after_after_its_host_was_rebuilt_is_no_violation() {
        let h = vec![
            start(),
            at(1_000, table(healthy())),
            fault(2_000, "rebuild", "m3"),
            heal(3_000, "rebuild", "m3"),
            action(40_000, "started", "remove-dead-manager", "m3"),
        ];
        assert!(check(&h).violations.is_empty());
    }
}
