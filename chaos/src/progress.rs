//! Progress of long lab work (a big lab forming: 105 nodes take ~50 s): a bar on a terminal
//! (indicatif draws only to an attended terminal), and off one — a log file, CI, a test —
//! a line at most every [`LINE_EVERY`], so a short phase (a small lab) stays quiet.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Least time between two progress lines off a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// One phase's progress: `done` of `total` things.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    /// Drawn in the process's [`MultiProgress`] (with any other phase under way, such as
    /// a lab forming during the demo), not on its own target.
    shared: bool,
    what: String,
    total: u64,
    /// Off a terminal: when the last line was written (the start at first).
    last_line: Mutex<(Instant, bool)>,
}

impl Progress {
    /// A phase of `total` things called `what` ("nodes answering"), drawn on stderr.
    /// Bars of phases under way at once stack (one [`MultiProgress`] per process).
    pub fn new(what: &str, total: u64) -> Self {
        let mut progress = Self::with_target(what, total, ProgressDrawTarget::hidden());
        progress.bar = multi().add(progress.bar);
        progress.shared = true;
        progress
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
            shared: false,
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
        if self.shared {
            multi().remove(&self.bar);
        }
        self.line(true);
    }

    /// How many things are done.
    pub fn done(&self) -> u64 {
        self.bar.position()
    }

    /// Whether a bar is drawn (stderr is an attended terminal).
    pub fn is_drawn(&self) -> bool {
        if self.shared {
            !multi().is_hidden()
        } else {
            !self.bar.is_hidden()
        }
    }

    /// Names what is going on now, after the phase's name ("demo: m2 seen Down").
    pub fn set_step(&self, step: &str) {
        self.bar.set_message(format!("{}: {step}", self.what));
    }

    /// Redraws every `every` (the elapsed time moves on through a long wait); a no-op off a
    /// terminal.
    pub fn tick_steadily(&self, every: Duration) {
        if self.is_drawn() {
            self.bar.enable_steady_tick(every);
        }
    }

    /// Runs `f` (which prints) with the bar out of the way, then redraws it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.shared {
            multi().suspend(f)
        } else {
            self.bar.suspend(f)
        }
    }

    fn line(&self, last: bool) {
        if self.is_drawn() {
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

/// stderr for log lines, with the bars cleared while a line is written and drawn again
/// after (`tracing_subscriber::fmt().with_writer(|| BarsAside)`): a log line written past
/// a bar would be overdrawn or leave the bar's remains in the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct BarsAside;

impl std::io::Write for BarsAside {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        multi().suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The process's bars, stacked on stderr.
fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
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
