//! The seeded fault schedule: same seed, same schedule.
//!
//! Faults name their targets abstractly (the k-th manager, the k-th worker, sorted by
//! hostname when the fault is applied): which node that is depends on how the swarm has
//! changed by then, the schedule itself does not.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;
use serde::Serialize;

/// A node chosen when the fault is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "role", content = "index")]
pub enum Target {
    /// The k-th raft member (modulo how many there are).
    Manager(usize),
    /// The k-th worker.
    Worker(usize),
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "fault")]
pub enum Fault {
    /// Node loss: every process killed; healed by a restart with the same data.
    Kill {
        /// Which node.
        target: Target,
    },
    /// A stuck host: every process frozen; healed by a thaw.
    Freeze {
        /// Which node.
        target: Target,
    },
    /// A reboot: stopped and started again with the same data.
    Restart {
        /// Which node.
        target: Target,
    },
    /// The node's network cut off from every other node; healed by removing the cut.
    Isolate {
        /// Which node.
        target: Target,
    },
    /// The managers split: a minority (the first `minority` by hostname, rotated by
    /// `offset`) cut off from the rest, workers with the majority.
    SplitManagers {
        /// Rotation of the sorted managers before the cut.
        offset: usize,
    },
    /// The host is rebuilt under the same hostname and address (new node ID) and rejoins
    /// in its current role; its old entry stays.
    Rebuild {
        /// Which node.
        target: Target,
    },
    /// A fresh host with a new name joins (the way an autoscaling group replaces a host).
    Join {
        /// As a manager (else a worker).
        manager: bool,
    },
    /// swarm-warden is stopped (SIGTERM, or SIGKILL when `crash`) and started again
    /// against the k-th manager, its clock `clock_offset_s` off (needs `faketime`).
    WardenRestart {
        /// Against which manager.
        manager: usize,
        /// Killed rather than stopped.
        crash: bool,
        /// Seconds its clock is off (positive: ahead).
        clock_offset_s: i64,
    },
}

impl Fault {
    /// The fault's name, as the history and the summary give it.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Freeze { .. } => "freeze",
            Fault::Restart { .. } => "restart",
            Fault::Isolate { .. } => "isolate",
            Fault::SplitManagers { .. } => "split-managers",
            Fault::Rebuild { .. } => "rebuild",
            Fault::Join { .. } => "join",
            Fault::WardenRestart { .. } => "warden-restart",
        }
    }
}

/// A fault applied at `at` (from the campaign's start) and healed `hold` later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Episode {
    /// When it starts, from the campaign's start.
    #[serde(rename = "at_ms", serialize_with = "millis")]
    pub at: Duration,
    /// How long it lasts before its heal (zero for instant faults).
    #[serde(rename = "hold_ms", serialize_with = "millis")]
    pub hold: Duration,
    /// What happens.
    #[serde(flatten)]
    pub fault: Fault,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The clocks the schedule is drawn against (swarm-warden's policy in the campaign).
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    /// `managers.dead_after`: some faults outlast it (the manager is removed), most not.
    pub dead_after: Duration,
}

/// Episodes one after another from 10 s in until `duration`, each followed by 5-20 s of
/// calm: one fault at a time, so every heal brings the swarm back within reach.
pub fn schedule(seed: u64, duration: Duration, clocks: Clocks) -> Vec<Episode> {
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let dead_after = clocks.dead_after.as_secs().max(1);
    let mut at = Duration::from_secs(10);
    let mut episodes = Vec::new();
    while at < duration {
        let pick = rng.random_range(0..100u32);
        let k = rng.random_range(0..16usize);
        let node = if rng.random_bool(0.6) {
            Target::Manager(k)
        } else {
            Target::Worker(k)
        };
        // A third of the outages outlast dead_after by far (the swarm sees a node Down
        // 10-15 s after it is lost, swarm-warden removes it dead_after later: 2 x
        // dead_after + 15 s leaves the removal well inside the outage); the rest end
        // before dead_after (the manager must be kept).
        let outage = if rng.random_bool(0.35) {
            Duration::from_secs(rng.random_range(dead_after * 2 + 15..dead_after * 4 + 15))
        } else {
            Duration::from_secs(rng.random_range(3..dead_after.max(4)))
        };
        let (fault, hold) = match pick {
            0..=24 => (Fault::Kill { target: node }, outage),
            25..=39 => (Fault::Freeze { target: node }, outage),
            40..=49 => (Fault::Restart { target: node }, Duration::ZERO),
            50..=62 => (Fault::Isolate { target: node }, outage),
            63..=72 => (Fault::SplitManagers { offset: k }, outage),
            // A replacement host: a quarter of them join under a new name instead of the
            // old one (decided without drawing, so other seeds' schedules stay as they were).
            73..=79 if k % 4 == 3 => (
                Fault::Join {
                    manager: matches!(node, Target::Manager(_)),
                },
                Duration::ZERO,
            ),
            73..=79 => (Fault::Rebuild { target: node }, Duration::ZERO),
            _ => {
                let skew = i64::try_from(dead_after).unwrap_or(i64::MAX) * 9 / 10;
                let clock_offset_s = match rng.random_range(0..3u8) {
                    0 => 0,
                    1 => skew,
                    _ => -skew,
                };
                (
                    Fault::WardenRestart {
                        manager: k,
                        crash: rng.random_bool(0.3),
                        clock_offset_s,
                    },
                    Duration::ZERO,
                )
            }
        };
        episodes.push(Episode { at, hold, fault });
        at += hold + Duration::from_secs(rng.random_range(5..=20));
    }
    episodes
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCKS: Clocks = Clocks {
        dead_after: Duration::from_secs(20),
    };

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let a = schedule(7, Duration::from_secs(600), CLOCKS);
        assert_eq!(a, schedule(7, Duration::from_secs(600), CLOCKS));
        assert_ne!(a, schedule(8, Duration::from_secs(600), CLOCKS));
    }

    #[test]
    fn episodes_never_overlap_and_stay_within_the_duration() {
        for seed in 0..50 {
            let s = schedule(seed, Duration::from_secs(300), CLOCKS);
            for pair in s.windows(2) {
                assert!(pair[0].at + pair[0].hold < pair[1].at, "{pair:?}");
            }
            assert!(s.iter().all(|e| e.at < Duration::from_secs(300)));
        }
    }

    #[test]
    fn long_campaigns_draw_every_fault_and_outages_on_both_sides_of_dead_after() {
        let s = schedule(1, Duration::from_secs(3600), CLOCKS);
        for name in [
            "kill",
            "freeze",
            "restart",
            "isolate",
            "split-managers",
            "rebuild",
            "join",
            "warden-restart",
        ] {
            assert!(s.iter().any(|e| e.fault.name() == name), "no {name}");
        }
        assert!(s.iter().any(|e| e.hold > CLOCKS.dead_after));
        assert!(s
            .iter()
            .any(|e| !e.hold.is_zero() && e.hold < CLOCKS.dead_after));
    }
}
