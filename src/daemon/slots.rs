//! When a rule polls. Each rule has a phase inside its interval, taken
//! from a hash of its name, and polls when the wall clock reaches that
//! phase: at `phase x interval + k x interval` since the Unix epoch. So
//! hundreds of rules on one server spread over the interval instead of
//! firing together, stay spread however long their polls take (a slow
//! poll skips to its next slot, it never shifts its phase), and keep their
//! place across reloads, restarts and the nodes of a shared database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At a start (or when a rule first appears), a rule with a long interval
/// polls within this long rather than waiting for its slot: spread, but
/// soon. Its later polls keep to its slots.
pub const START_SPREAD: Duration = Duration::from_secs(10);

/// Where `name` falls in every interval, as a fraction in `[0, 1)`:
/// FNV-1a over the name, then a 64-bit finaliser (MurmurHash3's fmix64),
/// without which names that differ in their last character (`r001`,
/// `r002`) would share their high bits and bunch together.
pub fn phase(name: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// How long from `now` until the next slot of `name` at `interval`: in
/// `(0, interval]` (a slot that is exactly now counts as the next one, one
/// interval away, so a poll that ended on its own slot does not repeat).
pub fn until_slot(name: &str, interval: Duration, now: SystemTime) -> Duration {
    let period = interval.as_nanos();
    if period == 0 {
        return Duration::ZERO;
    }
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let slot = (phase(name) * period as f64) as u128 % period;
    let at = since_epoch % period;
    let wait = (slot + period - at) % period;
    let wait = if wait == 0 { period } else { wait };
    Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

/// The first poll of a rule that just started: its next slot, or within
/// [`START_SPREAD`] at its phase when the interval is longer.
pub fn first_poll(name: &str, interval: Duration, now: SystemTime) -> Duration {
    if interval <= START_SPREAD {
        until_slot(name, interval, now)
    } else {
        START_SPREAD.mul_f64(phase(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_rule_keeps_its_phase_whenever_it_asks() {
        let i = Duration::from_secs(10);
        let slot = |now: f64| now + until_slot("orders", i, at(now)).as_secs_f64();
        let first = slot(1_700_000_000.0);
        // Asked later in the same interval, or intervals later: the same phase.
        for now in [1_700_000_003.3, 1_700_000_123.7, first - 0.001] {
            let next = slot(now);
            let k = ((next - first) / 10.0).round();
            assert!(
                (next - first - k * 10.0).abs() < 1e-3,
                "{now}: {next} vs {first}"
            );
            assert!(next > now && next - now <= 10.0 + 1e-6);
        }
        // Asked right on the slot: the next one, a whole interval later.
        let wait = until_slot("orders", i, at(first)).as_secs_f64();
        assert!(!(1e-3..=9.99).contains(&wait), "{wait}");
    }

    #[test]
    fn many_rules_spread_over_the_interval() {
        let i = Duration::from_secs(10);
        let now = at(1_700_000_000.0);
        let mut buckets = [0u32; 100];
        for r in 0..500 {
            let w = until_slot(&format!("r{r:04}"), i, now);
            assert!(w > Duration::ZERO && w <= i);
            buckets[(w.as_secs_f64() * 10.0) as usize % 100] += 1;
        }
        // 5 a bucket when even; all in one when the phase ignores the name.
        let most = *buckets.iter().max().unwrap();
        assert!(
            most <= 15,
            "{most} of 500 polls in one 100 ms window: {buckets:?}"
        );
        assert!(
            buckets.iter().filter(|&&b| b == 0).count() < 10,
            "{buckets:?}"
        );
    }

    #[test]
    fn phases_differ_and_stay_in_range() {
        let p: Vec<f64> = ["a", "b", "r001", "r002"]
            .iter()
            .map(|n| phase(n))
            .collect();
        assert!(p.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(p.windows(2).all(|w| (w[0] - w[1]).abs() > 1e-6), "{p:?}");
        assert_eq!(phase("r001"), phase("r001"));
    }

    #[test]
    fn long_intervals_start_within_the_start_spread() {
        let now = at(1_700_000_000.0);
        let w = first_poll("nightly", Duration::from_secs(86_400), now);
        assert!(w < START_SPREAD);
        let w = first_poll("fast", Duration::from_secs(2), now);
        assert!(w <= Duration::from_secs(2));
    }
}
