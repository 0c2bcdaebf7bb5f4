//! The report for issues and wikis.

use std::fmt::Write;

use super::{cluster_line, progress_line, requeue_line, services_of_note, volume_line, Report};
use crate::plan::short_id;

/// Table cells must not break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

pub(super) fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## swarm-warden report");
    let _ = writeln!(out);
    let mode = if r.dry_run {
        " Dry run: nothing is changed."
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "Observed {} via `{}`.{mode}",
        r.generated_at,
        short_id(&r.observed_via.node_id)
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "**Cluster:** {}", cluster_line(r));
    if !r.nodes.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "| Node | ID | Role | State | Availability | Manager |");
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for n in &r.nodes {
            let manager = if n.leader {
                "leader"
            } else {
                n.reachability.unwrap_or("")
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {manager} |",
                cell(&n.hostname),
                short_id(&n.id),
                n.role,
                n.state,
                n.availability
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "### Findings");
    let _ = writeln!(out);
    if r.findings.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let _ = writeln!(out, "| Severity | Kind | Subject | Message |");
        let _ = writeln!(out, "|---|---|---|---|");
        for f in &r.findings {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} |",
                f.severity,
                f.kind,
                cell(&r.subject(&f.subject)),
                cell(&f.message)
            );
        }
    }
    let _ = writeln!(out);
    let (noted, compliant) = services_of_note(r);
    if !r.services.is_empty() {
        let _ = writeln!(out, "### Services");
        let _ = writeln!(out);
        let _ = writeln!(out, "{compliant} compliant.");
        if !noted.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| Service | Stack | Status | Tasks on managers | Reason |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|");
            for s in noted {
                let hosts: Vec<&str> = s
                    .tasks_on_managers
                    .iter()
                    .map(|t| t.hostname.as_str())
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    cell(&s.name),
                    cell(s.stack.as_deref().unwrap_or("")),
                    s.status,
                    cell(&hosts.join(", ")),
                    cell(s.reason.as_deref().unwrap_or(""))
                );
            }
        }
        let _ = writeln!(out);
    }
    if !r.volumes.is_empty() {
        let _ = writeln!(out, "### Volumes");
        let _ = writeln!(out);
        for v in &r.volumes {
            let _ = writeln!(out, "- {}", volume_line(v));
        }
        let _ = writeln!(out);
    }
    if !r.runbooks.is_empty() {
        let _ = writeln!(out, "### Runbooks");
        let _ = writeln!(out);
        for j in &r.runbooks {
            let done = j
                .steps
                .iter()
                .filter(|s| s.state == crate::model::journal::StepState::Done)
                .count();
            let mut line = format!(
                "- `{}` `{}` of {} (volume {}): {}, {done} of {} steps done",
                j.run_id,
                j.kind.as_str(),
                cell(&j.service),
                cell(&j.volume),
                j.status.as_str(),
                j.steps.len()
            );
            if let Some(step) = j.current().and_then(|i| j.steps.get(i)) {
                let _ = write!(
                    line,
                    "; `{}` {} (attempt {})",
                    step.name,
                    format!("{:?}", step.state).to_lowercase(),
                    step.attempts
                );
            }
            if let Some(p) = j
                .progress
                .as_ref()
                .and_then(|p| Some((p.step.as_str(), progress_line(j, &p.step)?)))
            {
                let _ = write!(line, "; `{}`: {}", p.0, cell(&p.1));
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "### Actions");
    let _ = writeln!(out);
    if r.actions.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let _ = writeln!(
            out,
            "| Status | Kind | Target | Reason | Blocked by | Result |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for a in &r.actions {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} (`{}`) | {} | {} | {} |",
                a.status,
                a.kind,
                cell(&a.target_name),
                short_id(&a.target),
                cell(&a.reason),
                cell(a.blocked_by.as_deref().unwrap_or("")),
                cell(a.detail.as_deref().unwrap_or(""))
            );
        }
    }
    if let Some(line) = requeue_line(r) {
        let _ = writeln!(out);
        let _ = writeln!(out, "{line}");
    }
    out
}
