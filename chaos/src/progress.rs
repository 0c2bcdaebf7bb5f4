//! Progress of long lab work (a big lab forming: 105 nodes take ~50 s): a bar on a terminal
//! (indicatif draws only to an attended terminal), and off one — a log file, CI, a test —
//! a line at most every [`LINE_EVERY`], so a short phase (a small lab) stays quiet.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Least time between two progress lines off a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// One phase's progress: `done` of `total` things.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    what: String,
    total: u64,
    /// Off a terminal: when the last line was written (the start at first).
    last_line: Mutex<(Instant, bool)>,
}

impl Progress {
    /// A phase of `total` things called `what` ("nodes answering"), drawn on stderr.
    pub fn new(what: &str, total: u64) -> Self {
        Self::with_target(what, total, ProgressDrawTarget::stderr())
    }

    fn with_target(what: &str, total: u64, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Self {
            bar,
            what: what.to_owned(),
            total,
            last_line: Mutex::new((Instant::now(), false)),
        }
    }

    /// One more thing done.
    pub fn inc(&self) {
        self.bar.inc(1);
        self.line(false);
    }

    /// `done` things done (for a count read from the swarm).
    pub fn set(&self, done: u64) {
        self.bar.set_position(done.min(self.total));
        self.line(false);
    }

    /// The phase is over: the bar is cleared (the next phase's takes its place); off a
    /// terminal, a last line if any line was written.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        self.line(true);
    }

    /// How many things are done.
    pub fn done(&self) -> u64 {
        self.bar.position()
    }

    fn line(&self, last: bool) {
        if !self.bar.is_hidden() {
            return;
        }
        let Ok(mut state) = self.last_line.lock() else {
            return;
        };
        let (at, written) = *state;
        if (last && written) || (!last && at.elapsed() >= LINE_EVERY) {
            *state = (Instant::now(), true);
            tracing::info!(
                phase = %self.what,
                done = self.bar.position(),
                total = self.total,
                elapsed = ?self.bar.elapsed(),
                "Lab progress"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_the_count_is_kept_and_nothing_is_drawn() {
        let progress = Progress::with_target("nodes answering", 3, ProgressDrawTarget::hidden());
        progress.inc();
        progress.set(5);
        assert_eq!(progress.done(), 3, "never past the total");
        progress.finish();
        let (_, written) = *progress.last_line.lock().expect("lock");
        assert!(
            !written,
            "a phase shorter than {LINE_EVERY:?} writes no line"
        );
    }
}
