//! Exponential backoff with jitter, so a struggling agent is not hammered by every retry at
//! once.

use std::time::Duration;

/// The longest a retry is put off. SQS's visibility limit is 12 hours counted from when the
/// message was received, so the delay set after processing must leave room for the time
/// processing took; 15 minutes covers any processor invocation.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200 - 900);

/// `base · 2^(attempt-1)`, capped, then "equal jitter": half of it fixed and half random, so
/// every retry waits at least half its step while concurrent retries still spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry), honouring an
    /// agent's `Retry-After` when it asks for longer.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        let step = self.base.saturating_mul(1_u32 << exponent).min(self.cap);
        let half = step / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        jittered
            .max(retry_after.unwrap_or_default())
            .min(MAX_VISIBILITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(300),
    };

    #[test]
    fn each_retry_waits_between_half_and_all_of_a_doubling_step() {
        for (attempt, step) in [(1, 10), (2, 20), (3, 40), (4, 80)] {
            for _ in 0..100 {
                let delay = BACKOFF.delay(attempt, None);
                assert!(
                    delay >= Duration::from_secs(step) / 2,
                    "attempt {attempt}: {delay:?}"
                );
                assert!(
                    delay <= Duration::from_secs(step),
                    "attempt {attempt}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn the_step_stops_growing_at_the_cap() {
        for attempt in [6, 10, 40, u32::MAX] {
            assert!(BACKOFF.delay(attempt, None) <= BACKOFF.cap);
        }
    }

    #[test]
    fn a_longer_retry_after_wins_but_never_past_sqs_limit() {
        assert_eq!(
            BACKOFF.delay(1, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            BACKOFF.delay(1, Some(Duration::from_secs(100_000))),
            MAX_VISIBILITY
        );
    }
}
