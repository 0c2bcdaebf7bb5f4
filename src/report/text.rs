//! The report for terminals.

use std::fmt::Write;

use super::{cluster_line, progress_line, requeue_line, services_of_note, volume_line, Report};
use crate::plan::short_id;

pub(super) fn render(r: &Report) -> String {
    let mut out = String::new();
    let mode = if r.dry_run {
        " (dry run: nothing is changed)"
    } else {
        ""
    };
    let _ = writeln!(out, "swarm-warden report{mode}, {}", r.generated_at);
    let _ = writeln!(out, "Cluster: {}", cluster_line(r));
    if !r.nodes.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<8} {:<12} {:<7} MANAGER",
            "NODE", "ID", "ROLE", "STATE", "AVAIL"
        );
        for n in &r.nodes {
            let manager = if n.leader {
                "leader"
            } else {
                n.reachability.unwrap_or("")
            };
            let _ = writeln!(
                out,
                "{:<16} {:<12} {:<8} {:<12} {:<7} {manager}",
                n.hostname,
                short_id(&n.id),
                n.role,
                n.state,
                n.availability
            );
        }
    }
    let _ = writeln!(out);
    if r.findings.is_empty() {
        let _ = writeln!(out, "Findings: none.");
    } else {
        let _ = writeln!(out, "Findings:");
        for f in &r.findings {
            let _ = writeln!(
                out,
                "  {:<8} {} {}",
                f.severity,
                f.kind,
                r.subject(&f.subject)
            );
            for line in f.message.lines() {
                let _ = writeln!(out, "           {line}");
            }
        }
    }
    let (noted, compliant) = services_of_note(r);
    if !r.services.is_empty() {
        let _ = writeln!(
            out,
            "Services: {compliant} compliant, {} to note.",
            noted.len()
        );
        for s in noted {
            let tasks = if s.tasks_on_managers.is_empty() {
                String::new()
            } else {
                let hosts: Vec<&str> = s
                    .tasks_on_managers
                    .iter()
                    .map(|t| t.hostname.as_str())
                    .collect();
                format!(" - tasks on {}", hosts.join(", "))
            };
            let _ = writeln!(out, "  {:<10} {}{tasks}", s.status, s.name);
            if let Some(reason) = &s.reason {
                let _ = writeln!(out, "             {reason}");
            }
        }
    }
    if !r.volumes.is_empty() {
        let _ = writeln!(out, "Volumes:");
        for v in &r.volumes {
            let _ = writeln!(out, "  {}", volume_line(v));
        }
    }
    if !r.runbooks.is_empty() {
        let _ = writeln!(out, "Runbooks:");
        for j in &r.runbooks {
            let _ = writeln!(
                out,
                "  {} {} {} ({}): {}",
                j.run_id,
                j.kind.as_str(),
                j.efs_id,
                j.service,
                j.status.as_str()
            );
            for step in &j.steps {
                let _ = writeln!(
                    out,
                    "      {:<14} {:<8} attempts {} {}",
                    step.name,
                    format!("{:?}", step.state).to_lowercase(),
                    step.attempts,
                    step.detail
                );
                if let Some(line) = progress_line(j, &step.name) {
                    let _ = writeln!(out, "      {:<14} progress {line}", "");
                }
            }
        }
    }
    if r.actions.is_empty() {
        let _ = writeln!(out, "Actions: none.");
    } else {
        let _ = writeln!(out, "Actions:");
        for a in &r.actions {
            let _ = writeln!(
                out,
                "  [{}] {} {} ({})",
                a.status,
                a.kind,
                a.target_name,
                short_id(&a.target)
            );
            let _ = writeln!(out, "      why: {}", a.reason);
            if let Some(b) = &a.blocked_by {
                let _ = writeln!(out, "      blocked by: {b}");
            }
            if let Some(d) = &a.detail {
                let _ = writeln!(out, "      result: {d}");
            }
        }
    }
    if let Some(line) = requeue_line(r) {
        let _ = writeln!(out, "{line}");
    }
    out
}
