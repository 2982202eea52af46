//! When to try a failed file again: exponential backoff with jitter, capped.

use crate::config::RetryPolicy;
use std::time::Duration;

/// The wait after failed attempt number `attempt` (1-based): `first`
/// doubled per attempt, capped at `max`, then drawn from its upper half so
/// that files failing together do not retry in lockstep.
pub fn delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    let base = policy
        .first
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
        .min(policy.max);
    base.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Whether another attempt is allowed after `attempt` failed.
pub fn may_retry(policy: &RetryPolicy, attempt: u32, temporary: bool) -> bool {
    temporary && attempt < policy.attempts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            first: Duration::from_secs(2),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let p = policy();
        for _ in 0..200 {
            let d1 = delay(&p, 1);
            assert!(d1 >= Duration::from_secs(1) && d1 <= Duration::from_secs(2));
            let d3 = delay(&p, 3);
            assert!(d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8));
            let d50 = delay(&p, 50);
            assert!(d50 >= Duration::from_secs(30) && d50 <= Duration::from_secs(60));
        }
    }

    #[test]
    fn permanent_errors_and_exhausted_attempts_stop() {
        let p = policy();
        assert!(may_retry(&p, 1, true));
        assert!(!may_retry(&p, 1, false));
        assert!(!may_retry(&p, 5, true));
    }
}
