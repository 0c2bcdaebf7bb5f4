//! Amazon EFS in Bursting throughput mode, as AWS publishes its rules: a baseline rate
//! earned by stored size, a burst rate paid for with burst credits.
//!
//! - baseline B = max(1 MiB/s, 50 KiB/s per GiB of metered size)
//! - burst R = max(100 MiB/s, 100 MiB/s per TiB of metered size)
//! - credits C += (B - M)·dt, clamped to [0, max(2.1 TiB, 2.1 TiB per TiB stored)], where M
//!   is the metered throughput (reads count a third of writes)
//! - permitted rate: R while C > 0 (here: while C holds a second of baseline), else B
//! - the metered size follows the stored size with a lag (AWS: about an hour)
//!
//! Pure: time and byte counts come in; nothing here reads a clock or a device.

use std::time::Duration;

/// One KiB.
pub const KIB: f64 = 1024.0;
/// One MiB.
pub const MIB: f64 = 1024.0 * KIB;
/// One GiB.
pub const GIB: f64 = 1024.0 * MIB;
/// One TiB.
pub const TIB: f64 = 1024.0 * GIB;
/// Burst credits of a newly created file system.
pub const NEW_FILE_SYSTEM_CREDITS: f64 = 2.1 * TIB;
/// How long the metered size takes to follow the stored size.
pub const METERING_LAG: Duration = Duration::from_secs(3600);

/// Baseline throughput (bytes/s) for a metered size (bytes).
pub fn baseline_rate(metered_size: f64) -> f64 {
    (50.0 * KIB * metered_size / GIB).max(MIB)
}

/// Burst throughput (bytes/s) for a metered size (bytes).
pub fn burst_rate(metered_size: f64) -> f64 {
    (100.0 * MIB * metered_size / TIB).max(100.0 * MIB)
}

/// Largest credit balance (bytes) for a metered size (bytes).
pub fn credit_cap(metered_size: f64) -> f64 {
    (2.1 * metered_size).max(NEW_FILE_SYSTEM_CREDITS)
}

/// Metered bytes of some I/O: reads count a third.
pub fn metered_io(read: f64, written: f64) -> f64 {
    written + read / 3.0
}

/// Stored size (bytes) whose baseline is `rate` (bytes/s): what padding must reach.
pub fn size_for_baseline(rate: f64) -> f64 {
    rate / (50.0 * KIB) * GIB
}

/// The state of one modelled file system.
#[derive(Debug, Clone, PartialEq)]
pub struct EfsModel {
    /// Burst credit balance, bytes.
    pub credits: f64,
    /// Metered (billed) size, bytes.
    pub metered_size: f64,
    /// Metered throughput over the last step, bytes/s.
    pub metered_rate: f64,
    /// All metered I/O so far, bytes.
    pub metered_io_total: f64,
    /// All bytes read / written so far.
    pub read_total: f64,
    /// All bytes written so far.
    pub written_total: f64,
    metering_lag: Duration,
}

impl EfsModel {
    /// A file system holding `stored` bytes with `credits` to spend.
    pub fn new(credits: f64, stored: f64, metering_lag: Duration) -> Self {
        Self {
            credits: credits.clamp(0.0, credit_cap(stored)),
            metered_size: stored,
            metered_rate: 0.0,
            metered_io_total: 0.0,
            read_total: 0.0,
            written_total: 0.0,
            metering_lag,
        }
    }

    /// Baseline rate now, bytes/s.
    pub fn baseline(&self) -> f64 {
        baseline_rate(self.metered_size)
    }

    /// Burst rate now, bytes/s.
    pub fn burst(&self) -> f64 {
        burst_rate(self.metered_size)
    }

    /// The rate the file system allows now, bytes/s: the burst rate while the credits hold
    /// at least a second of baseline throughput (a balance hovering at a few bytes buys no
    /// burst), else the baseline.
    pub fn permitted_rate(&self) -> f64 {
        if self.credits >= self.baseline() {
            self.burst()
        } else {
            self.baseline()
        }
    }

    /// The rate to enforce over the next `dt`: the burst rate as far as the credits can pay
    /// for it within `dt`, never below the baseline. (With coarse steps, "burst while credits
    /// remain" would let a whole step burst on the credits earned in one quiet step.)
    /// Credits worth less than one step at the baseline buy no burst: they carry over, so
    /// the enforced rate does not flicker around an empty balance.
    pub fn rate_for_next(&self, dt: Duration) -> f64 {
        let secs = dt.as_secs_f64();
        if secs <= 0.0 || self.credits < self.baseline() * secs {
            return self.baseline();
        }
        (self.baseline() + self.credits / secs).min(self.burst())
    }

    /// How long until the credits run out at the current metered rate; `None` when they
    /// do not fall.
    pub fn time_to_exhaustion(&self) -> Option<Duration> {
        let net = self.metered_rate - self.baseline();
        (net > 0.0 && self.credits > 0.0).then(|| Duration::from_secs_f64(self.credits / net))
    }

    /// Advances by `dt` during which `read` and `written` bytes went through and the file
    /// system held `stored` bytes.
    pub fn advance(&mut self, dt: Duration, read: f64, written: f64, stored: f64) {
        let secs = dt.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let metered = metered_io(read, written);
        self.read_total += read;
        self.written_total += written;
        self.metered_io_total += metered;
        self.metered_rate = metered / secs;
        // Credits for this step are earned at the baseline in force during it.
        let earned = (self.baseline() - self.metered_rate) * secs;
        let lag = self.metering_lag.as_secs_f64();
        let follow = if lag > 0.0 {
            1.0 - (-secs / lag).exp()
        } else {
            1.0
        };
        self.metered_size += (stored - self.metered_size) * follow;
        self.credits = (self.credits + earned).clamp(0.0, credit_cap(self.metered_size));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs()
    }

    #[test]
    fn aws_example_100_gib_has_a_baseline_of_about_5_mib_per_second() {
        let b = baseline_rate(100.0 * GIB);
        assert!(close(b, 5.0 * MIB, 0.03), "{} MiB/s", b / MIB);
    }

    #[test]
    fn the_talks_50_gb_file_system_crawls_at_about_2_5_mb_per_second() {
        let b = baseline_rate(50e9);
        assert!(close(b, 2.5e6, 0.05), "{} MB/s", b / 1e6);
    }

    #[test]
    fn small_file_systems_get_the_floors() {
        assert_eq!(baseline_rate(1.0 * GIB), MIB);
        assert_eq!(burst_rate(1.0 * GIB), 100.0 * MIB);
        assert_eq!(credit_cap(1.0 * GIB), NEW_FILE_SYSTEM_CREDITS);
        assert_eq!(burst_rate(2.0 * TIB), 200.0 * MIB);
    }

    #[test]
    fn aws_example_100_gib_bursts_about_72_minutes_a_day() {
        // A day at baseline earns the credits; bursting at 100 MiB/s spends them.
        let mut fs = EfsModel::new(0.0, 100.0 * GIB, METERING_LAG);
        fs.advance(Duration::from_secs(86_400), 0.0, 0.0, 100.0 * GIB);
        let mut bursting = Duration::ZERO;
        let step = Duration::from_secs(10);
        while fs.permitted_rate() > fs.baseline() {
            fs.advance(step, 0.0, 100.0 * MIB * 10.0, 100.0 * GIB);
            bursting += step;
        }
        let minutes = bursting.as_secs_f64() / 60.0;
        assert!((70.0..76.0).contains(&minutes), "{minutes} min");
    }

    #[test]
    fn aws_example_new_file_system_bursts_about_6_hours_at_100_mib_per_second() {
        let mut fs = EfsModel::new(NEW_FILE_SYSTEM_CREDITS, 10.0 * GIB, METERING_LAG);
        fs.metered_rate = 100.0 * MIB;
        let predicted = fs.time_to_exhaustion().expect("credits fall").as_secs_f64() / 3600.0;
        let step = Duration::from_secs(60);
        let mut elapsed = Duration::ZERO;
        while fs.credits > 0.0 {
            fs.advance(step, 0.0, 100.0 * MIB * 60.0, 10.0 * GIB);
            elapsed += step;
        }
        let hours = elapsed.as_secs_f64() / 3600.0;
        assert!((5.9..6.3).contains(&hours), "{hours} h");
        assert!(
            close(predicted, hours, 0.01),
            "predicted {predicted} h, took {hours} h"
        );
        assert_eq!(
            fs.permitted_rate(),
            fs.baseline(),
            "throttled to the baseline"
        );
    }

    #[test]
    fn reads_are_metered_at_a_third_of_writes() {
        let mut fs = EfsModel::new(GIB, GIB, METERING_LAG);
        fs.advance(Duration::from_secs(1), 3.0 * MIB, 0.0, GIB);
        assert!(close(fs.metered_rate, MIB, 1e-9));
        assert!(close(fs.metered_io_total, MIB, 1e-9));
    }

    #[test]
    fn credits_never_go_below_zero_nor_above_the_cap() {
        let mut fs = EfsModel::new(10.0 * MIB, GIB, METERING_LAG);
        fs.advance(Duration::from_secs(1), 0.0, 500.0 * MIB, GIB);
        assert_eq!(fs.credits, 0.0);
        fs.advance(Duration::from_secs(1_000_000_000), 0.0, 0.0, GIB);
        assert_eq!(fs.credits, NEW_FILE_SYSTEM_CREDITS);
    }

    #[test]
    fn the_metered_size_follows_the_stored_size_with_a_lag() {
        let mut fs = EfsModel::new(0.0, 0.0, METERING_LAG);
        fs.advance(METERING_LAG, 0.0, 0.0, 100.0 * GIB);
        assert!(
            close(fs.metered_size, 63.2 * GIB, 0.01),
            "{} GiB",
            fs.metered_size / GIB
        );
        fs.advance(METERING_LAG * 10, 0.0, 0.0, 100.0 * GIB);
        assert!(close(fs.metered_size, 100.0 * GIB, 0.001));
    }

    #[test]
    fn padding_to_a_target_baseline() {
        assert!(close(size_for_baseline(5000.0 * KIB), 100.0 * GIB, 1e-9));
        assert!(close(
            baseline_rate(size_for_baseline(3.0 * MIB)),
            3.0 * MIB,
            1e-9
        ));
    }

    #[test]
    fn a_step_may_burst_only_as_far_as_the_credits_pay_for_it() {
        let mut fs = EfsModel::new(0.0, GIB, METERING_LAG);
        assert_eq!(fs.rate_for_next(Duration::from_secs(1)), MIB);
        fs.credits = 0.4 * MIB;
        assert_eq!(
            fs.rate_for_next(Duration::from_millis(500)),
            MIB,
            "less than a step's worth"
        );
        fs.credits = 1.0 * MIB;
        assert_eq!(fs.rate_for_next(Duration::from_millis(500)), 3.0 * MIB);
        fs.credits = 10.0 * GIB;
        assert_eq!(fs.rate_for_next(Duration::from_secs(1)), 100.0 * MIB);
    }

    #[test]
    fn time_to_exhaustion_is_credits_over_the_net_drain() {
        let mut fs = EfsModel::new(600.0 * MIB, GIB, METERING_LAG);
        fs.metered_rate = 3.0 * MIB; // baseline 1 MiB/s: net drain 2 MiB/s
        assert_eq!(fs.time_to_exhaustion(), Some(Duration::from_secs(300)));
        fs.metered_rate = 0.5 * MIB;
        assert_eq!(fs.time_to_exhaustion(), None);
    }
}
