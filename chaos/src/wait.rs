//! Waiting for a condition on a real cluster, with a failure message that shows what was
//! last observed.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{LabError, Result};

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(500);

/// One observation of a condition.
#[derive(Debug)]
pub enum Probe<T> {
    /// The condition holds; here is what was observed.
    Done(T),
    /// Not yet; this is what was observed (shown if the wait times out).
    Pending(String),
}

/// Polls `probe` until it is [`Probe::Done`] or `timeout` has passed.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Probe<T>>,
{
    let start = Instant::now();
    let mut last = String::from("(nothing observed yet)");
    loop {
        let remaining = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining.max(POLL), probe()).await {
            Ok(Probe::Done(value)) => {
                tracing::debug!(what, elapsed = ?start.elapsed(), "Condition met");
                return Ok(value);
            }
            Ok(Probe::Pending(observed)) => last = observed,
            Err(_) => last = format!("(probe did not answer in time)\n{last}"),
        }
        if start.elapsed() >= timeout {
            return Err(LabError::Timeout {
                what: what.to_owned(),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_timeout_reports_the_last_observation() {
        let mut n = 0;
        let err = wait_until::<(), _, _>("the impossible", Duration::from_secs(3), || {
            n += 1;
            let seen = format!("observation {n}");
            async move { Probe::Pending(seen) }
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("the impossible"), "{err}");
        assert!(err.contains(&format!("observation {n}")), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_condition_met_later_returns_its_observation() {
        let mut n = 0;
        let got = wait_until("third poll", Duration::from_secs(10), || {
            n += 1;
            let n = n;
            async move {
                if n == 3 {
                    Probe::Done(n)
                } else {
                    Probe::Pending(String::new())
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
    }
}
