//! A [`Timeline`] as one self-contained HTML page: inline CSS, inline SVG, no script and
//! nothing fetched, so it reads the same from a mail attachment. Hover text is SVG
//! `<title>`, which browsers show natively.
//!
//! Runs share one time scale, so side by side their lengths compare.

use maud::{html, Markup, DOCTYPE};

use super::{Lane, Look, Mark, MarkKind, Run, Timeline};

/// Drawing width of a run's SVG, in user units (it scales to its column).
const WIDTH: f64 = 640.0;
/// Room left of the lanes for node names.
const LABELS: f64 = 96.0;
/// Height of one lane.
const LANE: f64 = 22.0;
/// Height of the fault-tolerance band.
const FT_BAND: f64 = 90.0;
/// Room for the time axis.
const AXIS: f64 = 26.0;

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d2530;background:#fff}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:0 0 8px}
p.summary{max-width:70em;color:#39424e}
.runs{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:28px}
.run{border:1px solid #d5dbe3;border-radius:6px;padding:14px;max-width:1100px}
svg{width:100%;height:auto;display:block}
svg text{font-size:11px;fill:#1d2530}
table{border-collapse:collapse;margin-top:10px;font-size:13px}
td,th{border:1px solid #d5dbe3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12px;margin:12px 0}
.legend span{display:inline-flex;align-items:center;gap:4px}
.sw{display:inline-block;width:14px;height:10px;border:1px solid #8892a0}
ol.marks{font-size:12px;padding-left:20px;margin:8px 0 0}
ol.marks li{margin:2px 0}
";

/// The page.
pub fn render(timeline: &Timeline) -> String {
    let span = timeline
        .runs
        .iter()
        .map(|r| r.duration_s)
        .fold(1.0_f64, f64::max);
    let page: Markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (timeline.title) }
                style { (STYLE) }
            }
            body {
                h1 { (timeline.title) }
                p.summary { (timeline.summary) }
                (legend())
                div.runs {
                    @for run in &timeline.runs {
                        section.run {
                            h2 { (run.title) " — " (format!("{:.0}", run.duration_s)) " s" }
                            (run_svg(run, span))
                            @if !run.outcome.is_empty() {
                                table {
                                    @for (label, value) in &run.outcome {
                                        tr { th { (label) } td { (value) } }
                                    }
                                }
                            }
                            (mark_list(run))
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

fn colour(look: Look) -> &'static str {
    match look {
        Look::Leader => "#1f6feb",
        Look::Manager => "#58a6ff",
        Look::ManagerDown => "#d1242f",
        Look::Worker => "#8fd19e",
        Look::WorkerDown => "#f0883e",
        Look::Unknown => "#b7bec8",
    }
}

fn mark_colour(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Fault => "#d1242f",
        MarkKind::Action => "#8250df",
        MarkKind::ActionDone => "#1a7f37",
        MarkKind::ActionFailed => "#9a6700",
        MarkKind::Note => "#57606a",
    }
}

fn mark_word(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Fault => "fault",
        MarkKind::Action => "swarm-warden acts",
        MarkKind::ActionDone => "action done",
        MarkKind::ActionFailed => "action failed",
        MarkKind::Note => "note",
    }
}

fn legend() -> Markup {
    let looks = [
        Look::Leader,
        Look::Manager,
        Look::ManagerDown,
        Look::Worker,
        Look::WorkerDown,
        Look::Unknown,
    ];
    let marks = [
        MarkKind::Fault,
        MarkKind::Action,
        MarkKind::ActionDone,
        MarkKind::ActionFailed,
    ];
    html! {
        div.legend {
            @for look in looks {
                span { i.sw style={ "background:" (colour(look)) } {} (look.label()) }
            }
            @for kind in marks {
                span { i.sw style={ "background:" (mark_colour(kind)) } {} (mark_word(kind)) }
            }
            span { "hover a mark or a lane for details; a gap in a lane: not listed in the swarm" }
        }
    }
}

fn run_svg(run: &Run, span: f64) -> Markup {
    let plot = WIDTH - LABELS - 8.0;
    let x = |t: f64| LABELS + (t.max(0.0) / span) * plot;
    let lanes_h = run.lanes.len() as f64 * LANE;
    let ft_top = lanes_h + 12.0;
    let height = ft_top + FT_BAND + AXIS;
    let (ft_min, ft_max) = ft_range(run);
    let ft_y = |v: i64| {
        let rows = (ft_max - ft_min).max(1) as f64;
        ft_top + 14.0 + (ft_max - v) as f64 / rows * (FT_BAND - 28.0)
    };
    html! {
        svg viewBox={ "0 0 " (WIDTH) " " (format!("{height:.0}")) } role="img"
            aria-label={ (run.title) ": node states, fault tolerance and actions over time" } {
            @for (i, lane) in run.lanes.iter().enumerate() {
                (lane_row(lane, i as f64 * LANE, &x))
            }
            // Fault tolerance: a step line, with the quorum-lost level marked.
            text x="4" y=(format!("{:.1}", ft_top + 12.0)) { "fault tol." }
            @for v in ft_min..=ft_max {
                line x1=(LABELS) x2=(WIDTH - 8.0) y1=(format!("{:.1}", ft_y(v))) y2=(format!("{:.1}", ft_y(v)))
                    stroke="#e6e9ee" stroke-width="1" {}
                text x=(LABELS - 6.0) y=(format!("{:.1}", ft_y(v) + 4.0)) text-anchor="end" {
                    @if v < 0 { "lost" } @else { (v) }
                }
            }
            polyline points=(ft_points(run, &x, &ft_y)) fill="none" stroke="#1d2530" stroke-width="2" {}
            @for mark in &run.marks {
                (mark_glyph(mark, run, &x, height - AXIS))
            }
            (axis(span, &x, height - AXIS + 4.0))
        }
    }
}

/// The fault-tolerance rows to draw: from "lost" (-1) up to the highest value seen.
fn ft_range(run: &Run) -> (i64, i64) {
    let max = run
        .fault_tolerance
        .iter()
        .filter_map(|(_, v)| *v)
        .max()
        .unwrap_or(0)
        .max(1);
    (-1, max)
}

fn ft_points(run: &Run, x: &dyn Fn(f64) -> f64, y: &dyn Fn(i64) -> f64) -> String {
    let mut points = Vec::new();
    let mut last: Option<f64> = None;
    for (at, v) in &run.fault_tolerance {
        let level = y(v.unwrap_or(-1).max(-1));
        if let Some(previous) = last {
            points.push(format!("{:.1},{previous:.1}", x(*at)));
        }
        points.push(format!("{:.1},{level:.1}", x(*at)));
        last = Some(level);
    }
    if let Some(level) = last {
        points.push(format!("{:.1},{level:.1}", x(run.duration_s)));
    }
    points.join(" ")
}

fn lane_row(lane: &Lane, top: f64, x: &dyn Fn(f64) -> f64) -> Markup {
    html! {
        g {
            text x="4" y=(format!("{:.1}", top + LANE * 0.68)) { (lane.node) }
            @for span in &lane.spans {
                rect x=(format!("{:.1}", x(span.from_s)))
                    y=(format!("{:.1}", top + 3.0))
                    width=(format!("{:.1}", (x(span.to_s) - x(span.from_s)).max(1.5)))
                    height=(format!("{:.1}", LANE - 6.0))
                    fill=(colour(span.look)) {
                    title { (lane.node) ": " (span.detail) " (" (format!("{:.0}", span.from_s)) "–" (format!("{:.0}", span.to_s)) " s)" }
                }
            }
        }
    }
}

fn mark_glyph(mark: &Mark, run: &Run, x: &dyn Fn(f64) -> f64, bottom: f64) -> Markup {
    let at = x(mark.at_s);
    let lane = mark
        .node
        .as_deref()
        .and_then(|n| run.lanes.iter().position(|l| l.node == n));
    let cy = lane.map_or(6.0, |i| i as f64 * LANE + LANE / 2.0);
    let colour = mark_colour(mark.kind);
    html! {
        g {
            title { (format!("{:.1}", mark.at_s)) " s — " (mark_word(mark.kind)) ": " (mark.label) "\n" (mark.detail) }
            line x1=(format!("{at:.1}")) x2=(format!("{at:.1}")) y1="0" y2=(format!("{bottom:.1}"))
                stroke=(colour) stroke-width="1" stroke-dasharray="3 3" opacity="0.7" {}
            @match mark.kind {
                MarkKind::Fault => {
                    // A cross: something broke here.
                    path d=(format!("M{:.1} {:.1} l10 10 m0 -10 l-10 10", at - 5.0, cy - 5.0))
                        stroke=(colour) stroke-width="3" {}
                }
                _ => {
                    circle cx=(format!("{at:.1}")) cy=(format!("{cy:.1}")) r="5" fill=(colour) stroke="#fff" stroke-width="1" {}
                }
            }
        }
    }
}

fn axis(span: f64, x: &dyn Fn(f64) -> f64, y: f64) -> Markup {
    // At most ~8 ticks whatever the span (a hand-edited recording may say anything).
    let step = [10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| span / s <= 8.0)
        .unwrap_or_else(|| (span / 8.0 / 600.0).ceil() * 600.0);
    let ticks: Vec<f64> = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= span)
        .collect();
    html! {
        g {
            line x1=(format!("{:.1}", x(0.0))) x2=(format!("{:.1}", x(span))) y1=(format!("{y:.1}")) y2=(format!("{y:.1}"))
                stroke="#8892a0" stroke-width="1" {}
            @for t in ticks {
                text x=(format!("{:.1}", x(t))) y=(format!("{:.1}", y + 14.0)) text-anchor="middle" {
                    (format!("{t:.0}")) "s"
                }
            }
        }
    }
}

fn mark_list(run: &Run) -> Markup {
    html! {
        ol.marks {
            @for mark in &run.marks {
                li {
                    b { (format!("{:.1}", mark.at_s)) " s" } " "
                    span style={ "color:" (mark_colour(mark.kind)) } { (mark_word(mark.kind)) }
                    ": " (mark.label)
                    @if !mark.detail.is_empty() { " — " (mark.detail) }
                }
            }
        }
    }
}
