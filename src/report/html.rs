//! The report as one self-contained HTML page: the swarm at a glance for a mail attachment
//! or a browser. Inline CSS only (`html.css`), no script, nothing fetched (no fonts, images
//! or links to load), plain tables that read the same without the stylesheet. Every value
//! from the swarm (names, labels, messages) goes through maud's `(...)`, which escapes it.
//! States are coloured and always spelled out, never told by colour alone.

use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{bytes, rate, requeue_line, services_of_note, time_left, NodeView, Report, VolumeView};
use crate::model::journal::{Journal, StepState};
use crate::plan::{short_id, ActionStatus, Severity};

/// The stylesheet, inlined into `<head>`.
const CSS: &str = include_str!("html.css");

/// A badge: the state in words, coloured by `tone` (`good`, `info`, `warn`, `bad`,
/// `quiet`: classes of `html.css`).
fn badge(tone: &str, text: &str) -> Markup {
    html! { span.badge.(tone) { (text) } }
}

fn severity_tone(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "bad",
        Severity::Warning => "warn",
        Severity::Info => "info",
    }
}

fn action_tone(s: ActionStatus) -> &'static str {
    match s {
        ActionStatus::Planned | ActionStatus::InProgress => "info",
        ActionStatus::Blocked | ActionStatus::RolledBack => "warn",
        ActionStatus::Done => "good",
        ActionStatus::Failed => "bad",
    }
}

/// Tones of the string states of the report (see the field docs of [`Report`]'s views).
fn state_tone(state: &str) -> &'static str {
    match state {
        "ready" | "reachable" | "active" | "compliant" | "ok" | "succeeded" | "done" => "good",
        "down" | "unreachable" | "violating" | "unschedulable" | "throttled" | "out-of-credits"
        | "failed" => "bad",
        "exempt" | "pending" => "quiet",
        "running" => "info",
        _ => "warn",
    }
}

fn step_state(s: StepState) -> &'static str {
    match s {
        StepState::Pending => "pending",
        StepState::Running => "running",
        StepState::Done => "done",
        StepState::Failed => "failed",
    }
}

/// A journal's Unix seconds as RFC 3339.
fn unix(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Renders the page.
pub(super) fn render(r: &Report) -> String {
    let managers: Vec<&NodeView> = r.nodes.iter().filter(|n| n.role == "manager").collect();
    let workers: Vec<&NodeView> = r.nodes.iter().filter(|n| n.role != "manager").collect();
    let via = r
        .hostname_of(&r.observed_via.node_id)
        .map(|h| format!("{h} ({})", short_id(&r.observed_via.node_id)))
        .unwrap_or_else(|| short_id(&r.observed_via.node_id).to_owned());
    let title = match &r.cluster.leader_hostname {
        Some(leader) => format!("swarm-warden report: swarm led by {leader}"),
        None => "swarm-warden report".to_owned(),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "swarm-warden report" }
                    p.meta {
                        "Observed " (r.generated_at) " via " span.mono { (via) }
                        " at " span.mono { (r.observed_via.addr) } "."
                        @if r.dry_run {
                            span.dry { (badge("info", "dry run")) " nothing is changed" }
                        }
                    }
                }
                (quorum(r))
                h2 { "Managers" }
                (node_table(&managers, true))
                @if !workers.is_empty() {
                    h2 { "Workers" }
                    (node_table(&workers, false))
                }
                (findings(r))
                (actions(r))
                (services(r))
                (volumes(r))
                (runbooks(r))
                footer {
                    @if let Some(line) = requeue_line(r) { p { (line) } }
                    p {
                        "swarm-warden report, schema version " (r.schema_version)
                        ". The same report as --format json, text and markdown."
                    }
                }
            }
        }
    };
    page.into_string()
}

/// The quorum box: raft arithmetic, a verdict in words and a small gauge.
fn quorum(r: &Report) -> Markup {
    let c = &r.cluster;
    let (tone, verdict) = match (c.fault_tolerance, c.quorum) {
        (Some(ft), _) if ft < 0 => ("bad", "Quorum lost: the raft cannot make decisions.".to_owned()),
        (Some(0), _) => (
            "warn",
            "Quorum held, no fault tolerance: losing one more manager loses quorum.".to_owned(),
        ),
        (Some(ft), _) => (
            "good",
            format!(
                "Quorum held: survives {ft} more manager loss{}.",
                if ft == 1 { "" } else { "es" }
            ),
        ),
        (None, _) => (
            "bad",
            "Unknown: no raft leader answered (quorum lost, or this manager is cut off in a minority).".to_owned(),
        ),
    };
    let off_target = c.managers.filter(|m| *m != c.desired_managers);
    let dash = || "-".to_owned();
    html! {
        h2 { "Quorum" }
        div.box.(tone) {
            div.verdict { (badge(tone, match tone { "good" => "ok", "warn" => "at risk", _ => "critical" })) " " (verdict) }
            div.quorum {
                table {
                    tr { th { "Raft members" } td.num { (c.managers.map_or_else(dash, |n| n.to_string())) } }
                    tr { th { "Reachable" } td.num { (c.reachable_managers.map_or_else(dash, |n| n.to_string())) } }
                    tr { th { "Quorum (majority)" } td.num { (c.quorum.map_or_else(dash, |n| n.to_string())) } }
                    tr { th { "Fault tolerance" } td.num { (c.fault_tolerance.map_or_else(dash, |n| n.to_string())) } }
                    tr { th { "Desired managers" } td.num { (c.desired_managers) } }
                    tr { th { "Leader" } td { (c.leader_hostname.clone().unwrap_or_else(|| "none".to_owned())) } }
                }
                @if let (Some(members), Some(reachable), Some(quorum)) = (c.managers, c.reachable_managers, c.quorum) {
                    (gauge(members, reachable, quorum))
                }
            }
            @if let Some(m) = off_target {
                p { "The raft has " (m) " members; managers.desired is " (c.desired_managers) "." }
            }
        }
    }
}

/// One square per raft member (filled: reachable; hollow with a cross: not), and a mark
/// after the quorum-th square: the reachable squares must reach it. Decoration only: the
/// table next to it has the numbers.
fn gauge(members: usize, reachable: usize, quorum: usize) -> Markup {
    // A raft rarely has more than 7 members; past 15 the squares would not fit.
    let shown = members.min(15);
    let (size, gap) = (26usize, 6usize);
    let width = shown * (size + gap) + gap;
    let label = format!("{reachable} of {members} raft members reachable; quorum is {quorum}");
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height="58" viewBox=(format!("0 0 {width} 58")) role="img" aria-label=(label) {
            title { (label) }
            @for i in 0..shown {
                @let x = gap + i * (size + gap);
                @if i < reachable {
                    rect x=(x) y="8" width=(size) height=(size) rx="4" fill="#2da44e" {}
                } @else {
                    rect x=(x) y="8" width=(size) height=(size) rx="4" fill="#ffffff" stroke="#cf222e" stroke-width="2" {}
                    path d=(format!("M{} 14 l14 14 M{} 28 l14 -14", x + 6, x + 6)) stroke="#cf222e" stroke-width="2" {}
                }
            }
            @if quorum <= shown {
                @let qx = gap + quorum * (size + gap) - gap / 2;
                line x1=(qx) y1="2" x2=(qx) y2="40" stroke="#1f2328" stroke-width="2" stroke-dasharray="3 2" {}
                text x=(qx) y="54" font-size="11" text-anchor="middle" fill="#1f2328" { "quorum " (quorum) }
            }
        }
    }
}

fn node_table(nodes: &[&NodeView], managers: bool) -> Markup {
    html! {
        @if nodes.is_empty() {
            p.muted { "None known (no raft leader answered)." }
        } @else {
            table {
                tr {
                    th { "Hostname" } th { "ID" }
                    @if managers { th { "Role" } th { "Reachability" } }
                    th { "State" } th { "Availability" } th { "Address" }
                }
                @for n in nodes {
                    tr {
                        td { (n.hostname) }
                        td.mono { (short_id(&n.id)) }
                        @if managers {
                            td { @if n.leader { (badge("info", "leader")) } @else { "manager" } }
                            td { @if let Some(reach) = n.reachability { (badge(state_tone(reach), reach)) } }
                        }
                        td { (badge(state_tone(n.state), n.state)) }
                        td { (badge(state_tone(n.availability), n.availability)) }
                        td.mono { (n.addr) }
                    }
                }
            }
        }
    }
}

fn findings(r: &Report) -> Markup {
    html! {
        h2 { "Findings" }
        @if r.findings.is_empty() {
            p.muted { "None." }
        } @else {
            table {
                tr { th { "Severity" } th { "Kind" } th { "Subject" } th { "Message" } }
                @for f in &r.findings {
                    tr {
                        td { (badge(severity_tone(f.severity), f.severity.as_str())) }
                        td.mono.kind { (f.kind) }
                        td { (r.subject(&f.subject)) }
                        td.msg { (f.message) }
                    }
                }
            }
        }
    }
}

fn actions(r: &Report) -> Markup {
    html! {
        h2 { "Actions" }
        @if r.actions.is_empty() {
            p.muted { "None." }
        } @else {
            table {
                tr { th { "Status" } th { "Action" } th { "Target" } th { "Reason" } th { "Blocked by" } th { "Result" } }
                @for a in &r.actions {
                    tr {
                        td { (badge(action_tone(a.status), &a.status.to_string())) }
                        td.mono.kind { (a.kind) }
                        td {
                            (a.target_name)
                            // Services are their own target; nodes get their short ID.
                            @if !a.target_name.starts_with(short_id(&a.target)) {
                                " " span.mono.muted { "(" (short_id(&a.target)) ")" }
                            }
                        }
                        td.msg { (a.reason) }
                        td.msg {
                            @if let Some(b) = &a.blocked_by {
                                @if let Some(kind) = a.blocked_kind { span.mono { (kind) } ": " }
                                (b)
                            }
                        }
                        td.msg { (a.detail.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

fn services(r: &Report) -> Markup {
    let (noted, compliant) = services_of_note(r);
    html! {
        @if !r.services.is_empty() {
            h2 { "Services" }
            p {
                (compliant) " compliant service" @if compliant != 1 { "s" } " not listed; "
                (noted.len()) " to note."
            }
            @if !noted.is_empty() {
                table {
                    tr { th { "Verdict" } th { "Service" } th { "Stack" } th { "Reason code" } th { "Reason" } th { "Tasks on managers" } }
                    @for s in noted {
                        tr {
                            td { (badge(state_tone(s.status), s.status)) }
                            td { (s.name) }
                            td { (s.stack.as_deref().unwrap_or("")) }
                            td.mono { (s.reason_code.unwrap_or("")) }
                            td.msg { (s.reason.as_deref().unwrap_or("")) }
                            td {
                                @for (i, t) in s.tasks_on_managers.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (t.hostname) " " span.mono.muted { "(" (short_id(&t.task)) ")" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn volumes(r: &Report) -> Markup {
    html! {
        @if !r.volumes.is_empty() {
            h2 { "Volumes (EFS burst credits)" }
            table {
                tr {
                    th { "EFS" } th { "Used by" } th { "State" } th.num { "Credits" }
                    th.num { "Time to exhaustion" } th.num { "Metered" } th.num { "Baseline" }
                    th.num { "Permitted" } th.num { "Size" } th { "Remediation" }
                }
                @for v in &r.volumes { (volume_row(v)) }
            }
            p.muted {
                "Time to exhaustion is C / (M - B): the credit balance over how far the metered rate is above the baseline (50 KiB/s per GiB stored, at least 1 MiB/s)."
            }
        }
    }
}

fn volume_row(v: &VolumeView) -> Markup {
    let opt = |x: Option<f64>, f: fn(f64) -> String| x.map_or_else(|| "-".to_owned(), f);
    let left = time_left(v);
    html! {
        tr {
            td.mono.id { (v.efs_id) }
            td {
                @for (i, m) in v.mounts.iter().enumerate() {
                    @if i > 0 { br; }
                    (m.service) " " span.muted { "(" (m.volume) " at " (m.target) ")" }
                }
            }
            td {
                (badge(state_tone(v.state), v.state))
                @if let Some(p) = &v.problem { br; span.muted { (p) } }
            }
            td.num { (opt(v.credits_bytes, bytes)) }
            td.num { (left) }
            td.num { (opt(v.metered_bytes_per_second, rate)) }
            td.num { (opt(v.baseline_bytes_per_second, rate)) }
            td.num { (opt(v.permitted_bytes_per_second, rate)) }
            td.num { (opt(v.storage_bytes, bytes)) }
            td.mono { (v.remediation) }
        }
    }
}

fn runbooks(r: &Report) -> Markup {
    html! {
        @if !r.runbooks.is_empty() {
            h2 { "Runbooks" }
            @for j in &r.runbooks { (runbook(j)) }
        }
    }
}

fn runbook(j: &Journal) -> Markup {
    let status = j.status.as_str();
    let done = j
        .steps
        .iter()
        .filter(|s| s.state == StepState::Done)
        .count();
    html! {
        div.box.(match state_tone(status) { "good" => "good", "bad" => "bad", _ => "warn" }) {
            h3 {
                span.mono { (j.kind.as_str()) } " of " (j.service) " " (badge(state_tone(status), status))
            }
            p.meta {
                "Run " span.mono { (j.run_id) } ", EFS " span.mono { (j.efs_id) } ", volume " (j.volume)
                ". Started " (unix(j.started_at))
                @if let Some(end) = j.finished_at { ", ended " (unix(end)) }
                ". " (done) " of " (j.steps.len()) " steps done."
            }
            ol.steps {
                @for s in &j.steps {
                    li {
                        span.mono { (s.name) } " " (badge(state_tone(step_state(s.state)), step_state(s.state)))
                        @if s.attempts > 0 {
                            span.muted { " attempt" @if s.attempts != 1 { "s" } " " (s.attempts) }
                        }
                        @if !s.detail.is_empty() { " - " (s.detail) }
                        @if let Some(p) = crate::runbook::progress::shown(j, &s.name) {
                            br;
                            progress max="1000" value=(p.per_mille()) { (p.per_mille() / 10) "%" }
                            " " (p.describe()) span.muted { ", as of " (unix(p.at)) }
                        }
                    }
                }
            }
            @if !j.facts.is_empty() {
                p.muted {
                    "Facts: "
                    @for (i, (k, v)) in j.facts.iter().enumerate() {
                        @if i > 0 { ", " }
                        span.mono { (k) "=" (v) }
                    }
                }
            }
        }
    }
}
