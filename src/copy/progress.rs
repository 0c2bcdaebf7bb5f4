//! Progress of the job commands (`swarm-warden copy`, `swarm-warden pad`) as lines on
//! their output, which is their task log: at most one every [`LINE_EVERY`] and the last
//! one of each phase, in the format `runbook::progress` documents (words for people, a
//! JSON object the warden reads back into the journal).
//!
//! Plain lines only, no progress bar: the jobs run in containers without a terminal, and
//! a bar's redraws would be noise in `docker service logs` (the warden reads the same
//! lines).

use std::io::Write;
use std::time::{Duration, Instant};

use crate::model::journal::JobPhase;
use crate::runbook::progress::{due, ProgressLine, LINE_EVERY};

/// What a job has done in its current phase; the numbers of a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// What it is doing.
    pub phase: JobPhase,
    /// Bytes done in this phase.
    pub bytes_done: u64,
    /// Bytes to do in this phase (as counted before it began).
    pub bytes_total: u64,
    /// Files done in this phase.
    pub files_done: u64,
    /// Files to do in this phase.
    pub files_total: u64,
}

impl Tally {
    /// Whether the phase is over (all its bytes and files done).
    pub fn finished(&self) -> bool {
        self.bytes_done >= self.bytes_total && self.files_done >= self.files_total
    }
}

/// Prints a [`Tally`] as progress lines on `out`, time-limited: see the module docs.
#[derive(Debug)]
pub struct Reporter<W: Write> {
    out: W,
    started: Instant,
    every: Duration,
    phase: Option<(JobPhase, Duration)>,
    last_line: Option<Duration>,
    last_shown: Option<Tally>,
}

impl<W: Write> Reporter<W> {
    /// A reporter writing to `out` (standard output, in a job), a line at most every
    /// [`LINE_EVERY`].
    pub fn new(out: W) -> Self {
        Self::every(out, LINE_EVERY)
    }

    /// A reporter printing at most every `every`.
    pub fn every(out: W, every: Duration) -> Self {
        Self {
            out,
            started: Instant::now(),
            every,
            phase: None,
            last_line: None,
            last_shown: None,
        }
    }

    /// Takes the job's tally now: prints it when a line is due, when the phase began
    /// (its totals are news) or when it is over.
    pub fn update(&mut self, tally: &Tally) {
        self.update_at(tally, self.started.elapsed());
    }

    /// [`Reporter::update`] at `now` (since the reporter was made).
    fn update_at(&mut self, tally: &Tally, now: Duration) {
        let began = match self.phase {
            Some((phase, _)) if phase == tally.phase => false,
            _ => {
                self.phase = Some((tally.phase, now));
                true
            }
        };
        let last_of_phase = tally.finished() && self.last_shown != Some(*tally);
        if !(began || last_of_phase || due(self.last_line, now, self.every)) {
            return;
        }
        let since = self.phase.map_or(now, |(_, at)| now.saturating_sub(at));
        let secs = since.as_secs_f64();
        let line = ProgressLine {
            phase: tally.phase,
            bytes_done: tally.bytes_done,
            // A file that grew since it was counted: never more done than in all.
            bytes_total: tally.bytes_total.max(tally.bytes_done),
            files_done: tally.files_done,
            files_total: tally.files_total.max(tally.files_done),
            bytes_per_second: if secs > 0.0 {
                (tally.bytes_done as f64 / secs) as u64
            } else {
                0
            },
            elapsed_seconds: since.as_secs(),
        };
        // A log that cannot be written must not fail the copy or the padding: progress is
        // for people and the report, the job's exit code is what the runbook judges.
        let _ = writeln!(self.out, "{}", line.format());
        let _ = self.out.flush();
        self.last_line = Some(now);
        self.last_shown = Some(*tally);
    }

    /// What was written (tests).
    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(phase: JobPhase, bytes_done: u64, files_done: u64) -> Tally {
        Tally {
            phase,
            bytes_done,
            bytes_total: 100,
            files_done,
            files_total: 10,
        }
    }

    fn lines(out: &[u8]) -> Vec<ProgressLine> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| ProgressLine::parse(l).expect("a progress line"))
            .collect()
    }

    #[test]
    fn a_line_when_a_phase_begins_every_interval_and_at_its_end() {
        let s = Duration::from_secs;
        let mut r = Reporter::every(Vec::new(), s(5));
        r.update_at(&tally(JobPhase::Copying, 0, 0), s(0)); // began
        r.update_at(&tally(JobPhase::Copying, 10, 1), s(1));
        r.update_at(&tally(JobPhase::Copying, 40, 4), s(4));
        r.update_at(&tally(JobPhase::Copying, 50, 5), s(5)); // due
        r.update_at(&tally(JobPhase::Copying, 100, 10), s(6)); // finished
        r.update_at(&tally(JobPhase::Copying, 100, 10), s(6)); // said already
        r.update_at(&tally(JobPhase::Verifying, 0, 0), s(7)); // began
        r.update_at(&tally(JobPhase::Verifying, 100, 10), s(9)); // finished
        let got = lines(&r.into_inner());
        let seen: Vec<(JobPhase, u64, u64)> = got
            .iter()
            .map(|l| (l.phase, l.bytes_done, l.elapsed_seconds))
            .collect();
        assert_eq!(
            seen,
            [
                (JobPhase::Copying, 0, 0),
                (JobPhase::Copying, 50, 5),
                (JobPhase::Copying, 100, 6),
                (JobPhase::Verifying, 0, 0),
                (JobPhase::Verifying, 100, 2),
            ]
        );
        assert_eq!(got[2].bytes_per_second, 16, "100 bytes in 6 s");
        assert_eq!(got[4].bytes_per_second, 50, "the phase's own rate");
    }

    #[test]
    fn a_file_that_grew_never_shows_more_done_than_in_all() {
        let mut r = Reporter::every(Vec::new(), Duration::from_secs(5));
        r.update_at(&tally(JobPhase::Copying, 120, 11), Duration::ZERO);
        let got = lines(&r.into_inner());
        assert_eq!((got[0].bytes_total, got[0].files_total), (120, 11));
    }
}
