//! How far a runbook job (`swarm-warden pad`, `swarm-warden copy`) has got, and how that
//! reaches the journal.
//!
//! The job prints a progress line to its output — its task log — at most every
//! [`LINE_EVERY`] and once at the end of each phase: words for people, then one JSON
//! object for the warden:
//!
//! ```text
//! copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s {"event":"copy-progress","phase":"copying","bytes_done":1288490188,"bytes_total":3221225472,"files_done":812,"files_total":2000,"bytes_per_second":50331648,"elapsed_seconds":25}
//! ```
//!
//! `event` is `copy-progress` (phases `copying`, `verifying`) or `pad-progress` (phase
//! `padding`); the numbers are of the phase. A job cannot write to the swarm (only the
//! warden writes), and nothing a job can set shows in a list call the warden already makes
//! (task status messages and labels are the Engine's and the spec's). So the runner, in
//! the act phase, reads the tail of the job's log — one bounded call, only while the job
//! step runs, at most every [`RECORD_EVERY`] and once when the job has ended — and
//! records the last line it finds in the journal ([`record`]) through the one writer.
//!
//! Everything here is pure: no clock, no I/O.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use super::journal::ProgressLine;
use super::journal::{unix, JobPhase, JobProgress, Journal, StepState};
use crate::config::{Mode, Policy};
use crate::model::run_view::RunView;

/// How often a job prints a progress line (at most; the last line of a phase always).
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// How often the warden reads a running job's log and records its progress in the
/// journal (at most; once more when the job has ended). A journal write is a swarm write.
pub const RECORD_EVERY: Duration = Duration::from_secs(30);

/// How many lines of a job's log the warden reads: a few lines after the last progress
/// line (the job's closing words) still leave one in the tail.
pub const LOG_TAIL_LINES: u32 = 20;

/// At most this many bytes of a log tail are looked at (a job that prints huge lines
/// cannot make the warden hold them).
pub const LOG_TAIL_BYTES: usize = 64 * 1024;

/// Where the JSON object of a progress line starts.
const MARK: &str = "{\"event\":\"";

/// The JSON object of a progress line, `event` first (the parser looks for it).
#[derive(Serialize, Deserialize)]
struct Wire {
    event: String,
    #[serde(flatten)]
    line: ProgressLine,
}

/// The `event` of a phase's lines.
fn event(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Copying | JobPhase::Verifying => "copy-progress",
        JobPhase::Padding => "pad-progress",
    }
}

impl ProgressLine {
    /// The line as a job prints it (no newline): words, then the JSON object.
    pub fn format(&self) -> String {
        let wire = Wire {
            event: event(self.phase).to_owned(),
            line: *self,
        };
        // Serializing plain numbers and strings cannot fail; an empty object would only
        // make the line one the warden ignores.
        let json = serde_json::to_string(&wire).unwrap_or_default();
        format!("{} {json}", self.describe())
    }

    /// `copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s` (padding:
    /// `padding: 2.0 GiB of 5.0 GiB, 2 of 5 files, ...`).
    pub fn describe(&self) -> String {
        format!(
            "{}: {} of {}, {} of {} files, {}/s",
            self.phase.as_str(),
            human_bytes(self.bytes_done),
            human_bytes(self.bytes_total),
            human_count(self.files_done),
            human_count(self.files_total),
            human_bytes(self.bytes_per_second)
        )
    }

    /// The progress in one line of a log, if it is a progress line: anything else (the
    /// job's other output, a line cut short) is `None`.
    pub fn parse(line: &str) -> Option<Self> {
        let start = line.find(MARK)?;
        let wire: Wire = serde_json::from_str(line[start..].trim_end()).ok()?;
        let line = wire.line;
        let sane = wire.event == event(line.phase)
            && line.bytes_done <= line.bytes_total
            && line.files_done <= line.files_total;
        sane.then_some(line)
    }

    /// The last progress line in a log tail, as the Engine streamed it (frames
    /// concatenated: a frame may end mid-line). Only the last [`LOG_TAIL_BYTES`] are
    /// looked at.
    pub fn last_in(log: &[u8]) -> Option<Self> {
        let tail = &log[log.len().saturating_sub(LOG_TAIL_BYTES)..];
        String::from_utf8_lossy(tail)
            .split(['\n', '\r'])
            .rev()
            .find_map(Self::parse)
    }
}

/// Bytes for people, binary units with one decimal: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut value = b as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A count for people, thousands separated: `2,000`.
pub fn human_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether something last done at `last` (`None`: never) is due again at `now`, done at
/// most every `every`. A clock that went back counts as not due (until `every` after
/// `last`). Times in any one unit, given as durations since a common origin.
pub fn due(last: Option<Duration>, now: Duration, every: Duration) -> bool {
    last.is_none_or(|last| now.checked_sub(last).is_some_and(|gone| gone >= every))
}

/// The job step a progress line may be read for now: the current step's name and its
/// job's name, and whether the job has ended — `None` unless the current step is `pad`
/// or `copy`, running, with its job in the view, and runs advance (`volumes.mode` is
/// `enforce`: a paused run's journal is not written, progress included).
pub fn job_to_read(j: &Journal, view: &RunView, policy: &Policy) -> Option<(String, bool)> {
    if policy.volumes.mode != Mode::Enforce {
        return None;
    }
    let i = j.current()?;
    let step = &j.steps[i];
    let fact = match step.name.as_str() {
        "pad" => "pad_job",
        "copy" => "copy_job",
        _ => return None,
    };
    if step.state != StepState::Running {
        return None;
    }
    let job = view.job.as_ref()?;
    let name = j.fact(fact)?.to_owned();
    Some((name, job.completed() || job.failed()))
}

/// `j` with `line` recorded as its job's progress (read at `now`), or `None` when it
/// should not be written: the current step is not the line's (`copy` for copy lines,
/// `pad` for padding) or not running, nothing changed since the last record of this
/// attempt, or that record is younger than [`RECORD_EVERY`] and the job has not `ended`.
pub fn record(j: &Journal, line: &ProgressLine, ended: bool, now: SystemTime) -> Option<Journal> {
    let i = j.current()?;
    let step = &j.steps[i];
    let step_of_line = match line.phase {
        JobPhase::Copying | JobPhase::Verifying => "copy",
        JobPhase::Padding => "pad",
    };
    if step.name != step_of_line || step.state != StepState::Running {
        return None;
    }
    let progress = JobProgress {
        step: step.name.clone(),
        attempt: step.attempts,
        line: *line,
        at: unix(now),
    };
    if let Some(prev) = j
        .progress
        .as_ref()
        .filter(|p| p.step == progress.step && p.attempt == progress.attempt)
    {
        // The rate and the phase's age move with every line: the same bytes and files
        // are no news.
        let same = JobProgress {
            at: prev.at,
            line: ProgressLine {
                bytes_per_second: prev.line.bytes_per_second,
                elapsed_seconds: prev.line.elapsed_seconds,
                ..*line
            },
            ..progress.clone()
        };
        if &same == prev {
            return None;
        }
        let secs = Duration::from_secs;
        if !ended && !due(Some(secs(prev.at)), secs(progress.at), RECORD_EVERY) {
            return None;
        }
    }
    let mut next = j.clone();
    next.progress = Some(progress);
    Some(next)
}

/// The journal's job progress for people, when it belongs to the step's current attempt:
/// `copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s`.
pub fn shown<'a>(j: &'a Journal, step: &str) -> Option<&'a JobProgress> {
    let p = j.progress.as_ref()?;
    let s = j.steps.iter().find(|s| s.name == step)?;
    (p.step == step && p.attempt == s.attempts && s.attempts > 0).then_some(p)
}

impl JobProgress {
    /// `copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s`.
    pub fn describe(&self) -> String {
        self.line.describe()
    }

    /// Done in this phase, per mille of its bytes (of its files when it has no bytes),
    /// rounded; 1000 only when all is done.
    pub fn per_mille(&self) -> u64 {
        let of = |done: u64, total: u64| {
            if done >= total {
                return 1000;
            }
            let total = u128::from(total);
            let rounded = (u128::from(done) * 1000 + total / 2) / total;
            u64::try_from(rounded).unwrap_or(999).min(999)
        };
        let line = &self.line;
        if line.bytes_total > 0 {
            of(line.bytes_done, line.bytes_total)
        } else if line.files_total > 0 {
            of(line.files_done, line.files_total)
        } else {
            1000
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::journal::RunbookKind;
    use crate::model::run_view::{JobTaskState, JobView};
    use std::time::UNIX_EPOCH;

    const GIB: u64 = 1 << 30;

    fn line() -> ProgressLine {
        ProgressLine {
            phase: JobPhase::Copying,
            bytes_done: GIB + GIB / 5,
            bytes_total: 3 * GIB,
            files_done: 812,
            files_total: 2000,
            bytes_per_second: 48 << 20,
            elapsed_seconds: 25,
        }
    }

    #[test]
    fn a_line_reads_for_people_and_parses_back() {
        let text = line().format();
        assert!(
            text.starts_with("copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s {\"event\":\"copy-progress\","),
            "{text}"
        );
        assert_eq!(ProgressLine::parse(&text), Some(line()));
        let pad = ProgressLine {
            phase: JobPhase::Padding,
            ..line()
        };
        assert!(pad
            .format()
            .contains(r#"{"event":"pad-progress","phase":"padding""#));
        assert_eq!(ProgressLine::parse(&pad.format()), Some(pad));
        // Docker may prefix a timestamp or a task name: only the object counts.
        assert_eq!(
            ProgressLine::parse(&format!("2026-01-01T00:00:00Z {}\r", line().format())),
            Some(line())
        );
    }

    #[test]
    fn garbage_and_impossible_lines_are_ignored() {
        let good = line().format();
        let json = &good[good.find(MARK).unwrap()..];
        for bad in [
            "",
            "copy complete: 2 file(s), 300005 bytes, 2 copied now, manifest verified",
            "{\"event\":\"copy-progress\"",
            &json[..json.len() - 1],
            &json.replace("copy-progress", "pad-progress"),
            &json.replace("\"bytes_done\":1288490188", "\"bytes_done\":9999999999999"),
            &json.replace("\"files_done\":812", "\"files_done\":2001"),
            &json.replace("\"bytes_done\":1288490188", "\"bytes_done\":-1"),
            "{\"event\":\"copy-progress\",\"phase\":\"copying\"}",
            "{\"event\":\"other\",\"phase\":\"copying\",\"bytes_done\":1}",
        ] {
            assert_eq!(ProgressLine::parse(bad), None, "{bad}");
        }
    }

    /// The Engine streams a log in frames that need not end at a newline: the tail is
    /// read whole, and the last complete progress line wins over a later broken one.
    #[test]
    fn the_last_progress_line_of_a_tail_is_found_across_frames() {
        let earlier = ProgressLine {
            bytes_done: 1,
            files_done: 1,
            ..line()
        };
        let last = line().format();
        let (a, b) = last.split_at(last.len() / 2);
        let frames: Vec<Vec<u8>> = vec![
            format!("starting\n{}\n", earlier.format()).into_bytes(),
            a.as_bytes().to_vec(),
            format!("{b}\n").into_bytes(),
            b"copy complete: 2000 file(s)\n{\"event\":\"copy-pro".to_vec(),
        ];
        let log: Vec<u8> = frames.concat();
        assert_eq!(ProgressLine::last_in(&log), Some(line()));
        assert_eq!(ProgressLine::last_in(b"no progress here\n"), None);
        assert_eq!(ProgressLine::last_in(&[0xff, 0xfe, b'\n']), None);
        // Only the tail's last bytes are read.
        let mut long = format!("{}\n", earlier.format()).into_bytes();
        long.extend(std::iter::repeat_n(b'x', LOG_TAIL_BYTES));
        assert_eq!(ProgressLine::last_in(&long), None);
    }

    #[test]
    fn people_read_sizes_and_counts() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * GIB), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(human_count(0), "0");
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(2000), "2,000");
        assert_eq!(human_count(1_234_567), "1,234,567");
    }

    #[test]
    fn due_at_most_every_interval() {
        let s = Duration::from_secs;
        assert!(due(None, s(0), s(30)));
        assert!(!due(Some(s(100)), s(129), s(30)));
        assert!(due(Some(s(100)), s(130), s(30)));
        assert!(!due(Some(s(100)), s(50), s(30)), "a clock gone back");
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A migration at its copy step, attempt 1, started at 1000.
    fn copying() -> Journal {
        let mut j = Journal::new(
            RunbookKind::EbsMigration,
            "fs-1",
            "svc",
            "tsdb",
            "data",
            super::super::steps(RunbookKind::EbsMigration),
            t(900),
        );
        let copy = j.steps.iter().position(|s| s.name == "copy").unwrap();
        for i in 0..copy {
            j.begin(i, t(900));
            j.complete(i, t(900), "ok");
        }
        j.begin(copy, t(1000));
        j.record("copy_job", "swarm-warden-run-copy-1");
        j
    }

    #[test]
    fn progress_is_recorded_at_most_every_30s_unless_the_job_ended() {
        let j = copying();
        let first = record(&j, &line(), false, t(1010)).expect("first");
        let p = first.progress.clone().unwrap();
        assert_eq!((p.step.as_str(), p.attempt, p.at), ("copy", 1, 1010));
        assert_eq!(
            (p.line.bytes_done, p.line.files_total),
            (line().bytes_done, 2000)
        );

        let more = ProgressLine {
            bytes_done: 2 * GIB,
            files_done: 1500,
            ..line()
        };
        assert_eq!(record(&first, &more, false, t(1039)), None, "too soon");
        let later = record(&first, &more, false, t(1040)).expect("due");
        assert_eq!(later.progress.as_ref().unwrap().line.files_done, 1500);
        assert!(record(&first, &more, true, t(1011)).is_some(), "job ended");
        // Nothing new: nothing written, however late (a rate change alone is not news).
        let same = ProgressLine {
            bytes_per_second: 1,
            ..more
        };
        assert_eq!(record(&later, &same, true, t(5000)), None);

        // A new attempt's first line is written at once.
        let mut retry = later.clone();
        let copy = retry.current().unwrap();
        retry.steps[copy].attempts = 2;
        let again = record(&retry, &more, false, t(1041)).expect("new attempt");
        assert_eq!(again.progress.unwrap().attempt, 2);
    }

    #[test]
    fn progress_of_another_step_or_a_step_not_running_is_not_recorded() {
        let j = copying();
        let pad = ProgressLine {
            phase: JobPhase::Padding,
            ..line()
        };
        assert_eq!(record(&j, &pad, false, t(1010)), None, "a pad line at copy");
        let mut pending = j.clone();
        let copy = pending.current().unwrap();
        pending.steps[copy].state = StepState::Pending;
        assert_eq!(record(&pending, &line(), false, t(1010)), None);
    }

    #[test]
    fn the_job_log_is_read_only_while_its_step_runs_with_a_job() {
        let j = copying();
        let policy = Policy::default();
        let mut view = RunView::default();
        assert_eq!(job_to_read(&j, &view, &policy), None, "no job yet");
        view.job = Some(JobView {
            tasks: vec![JobTaskState::Active],
        });
        assert_eq!(
            job_to_read(&j, &view, &policy),
            Some(("swarm-warden-run-copy-1".into(), false))
        );
        let mut audit = Policy::default();
        audit.volumes.mode = Mode::Audit;
        assert_eq!(job_to_read(&j, &view, &audit), None, "a paused run");
        view.job = Some(JobView {
            tasks: vec![JobTaskState::Complete],
        });
        assert_eq!(
            job_to_read(&j, &view, &policy),
            Some(("swarm-warden-run-copy-1".into(), true))
        );
        let mut done = j.clone();
        let copy = done.current().unwrap();
        done.complete(copy, t(1100), "verified");
        assert_eq!(
            job_to_read(&done, &view, &policy),
            None,
            "swap-mount has no job"
        );
    }

    #[test]
    fn only_the_current_attempts_progress_is_shown() {
        let j = record(&copying(), &line(), false, t(1010)).unwrap();
        assert!(shown(&j, "copy").is_some());
        assert!(shown(&j, "pad").is_none());
        let mut retried = j.clone();
        let copy = retried.current().unwrap();
        retried.steps[copy].attempts = 2;
        assert!(shown(&retried, "copy").is_none(), "an earlier attempt's");
        let p = shown(&j, "copy").unwrap();
        assert_eq!(
            p.describe(),
            "copying: 1.2 GiB of 3.0 GiB, 812 of 2,000 files, 48.0 MiB/s"
        );
        assert_eq!(p.per_mille(), 400);
    }
}
