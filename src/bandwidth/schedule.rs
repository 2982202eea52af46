//! What `bandwidth` and `bandwidth_schedule` say: a rate in bytes per
//! second (or none), and which one is in force at a minute of the day.
//! Pure functions, tested below; the clock is read in `limit.rs`.

/// The smallest limit accepted. Less is almost surely a missing unit, and
/// a transfer that slow would run into `io_timeout` on its own.
pub const MIN_RATE: u64 = 1000;

/// From a minute of the day (local time) on, this rate holds, until the
/// next slot; `None` is `off` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub minute: u16,
    pub rate: Option<u64>,
}

/// A server's or a rule's limit: a plain `bandwidth` is one slot at 00:00;
/// no slot at all is no limit. Slots are sorted by minute, one per minute.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bandwidth {
    slots: Vec<Slot>,
}

impl Bandwidth {
    /// No limit.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// The same rate all day (`None`: no limit).
    pub fn constant(rate: Option<u64>) -> Self {
        match rate {
            None => Self::unlimited(),
            Some(_) => Self {
                slots: vec![Slot { minute: 0, rate }],
            },
        }
    }

    /// A daily schedule; two slots at the same minute are refused.
    pub fn schedule(mut slots: Vec<Slot>) -> Result<Self, String> {
        slots.sort_by_key(|s| s.minute);
        if let Some(w) = slots.windows(2).find(|w| w[0].minute == w[1].minute) {
            return Err(format!("{} is given twice", clock(w[0].minute)));
        }
        Ok(Self { slots })
    }

    /// Whether no slot ever limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.slots.iter().all(|s| s.rate.is_none())
    }

    /// The rate in force at `minute` of the day: the last slot that began
    /// at or before it; before the day's first slot, the day's last slot
    /// still holds (a schedule wraps midnight).
    pub fn rate_at(&self, minute: u16) -> Option<u64> {
        let slot = self
            .slots
            .iter()
            .rev()
            .find(|s| s.minute <= minute)
            .or(self.slots.last())?;
        slot.rate
    }
}

/// `"20MB/s"`, `"1.5 MiB/s"`, `"off"` -> bytes per second (`None`: off).
/// Units: B/s; decimal KB/s, MB/s, GB/s (1 MB = 1,000,000 bytes); binary
/// KiB/s, MiB/s, GiB/s.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if matches!(s, "off" | "unlimited") {
        return Ok(None);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("\"{s}\" needs a unit, e.g. \"{s}MB/s\""))?;
    let (number, unit) = (&s[..split], s[split..].trim());
    let value: f64 = number
        .parse()
        .map_err(|_| format!("\"{s}\" is not a rate like \"20MB/s\" or \"off\""))?;
    let factor: u64 = match unit {
        "B/s" => 1,
        "KB/s" | "kB/s" => 1_000,
        "MB/s" => 1_000_000,
        "GB/s" => 1_000_000_000,
        "KiB/s" => 1 << 10,
        "MiB/s" => 1 << 20,
        "GiB/s" => 1 << 30,
        u if u.ends_with("b/s") || u.ends_with("bit/s") || u.ends_with("bps") => {
            return Err(format!(
                "\"{s}\": rates are in bytes, not bits (write B/s, KB/s, MB/s, KiB/s or MiB/s)"
            ));
        }
        _ => {
            return Err(format!(
                "\"{s}\": unknown unit \"{unit}\" (expected B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s, or \"off\")"
            ));
        }
    };
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < MIN_RATE as f64 {
        return Err(format!(
            "\"{s}\" is below the smallest limit, 1KB/s (write \"off\" for no limit)"
        ));
    }
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("\"{s}\" is too large"));
    }
    Ok(Some(bytes.round() as u64))
}

/// `"08:00 5MB/s"` or `"19:00 off"`: a time of day (24 h, `HH:MM`) and a
/// rate from then on.
pub fn parse_slot(s: &str) -> Result<Slot, String> {
    let (time, rate) = s
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("\"{s}\" is not \"HH:MM RATE\", e.g. \"08:00 5MB/s\""))?;
    let minute = parse_clock(time)
        .ok_or_else(|| format!("\"{s}\": \"{time}\" is not a time of day from 00:00 to 23:59"))?;
    let rate = parse_rate(rate).map_err(|e| format!("\"{s}\": {e}"))?;
    Ok(Slot { minute, rate })
}

/// `"HH:MM"` -> minute of the day.
fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let ok = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A minute of the day as `HH:MM`.
pub fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// A rate for logs: `5000000 B/s`, or `off`.
pub fn describe(rate: Option<u64>) -> String {
    rate.map_or("off".into(), |r| format!("{r} B/s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(entries: &[&str]) -> Bandwidth {
        Bandwidth::schedule(entries.iter().map(|e| parse_slot(e).unwrap()).collect()).unwrap()
    }

    #[test]
    fn rates_in_decimal_and_binary_units() {
        assert_eq!(parse_rate("20MB/s"), Ok(Some(20_000_000)));
        assert_eq!(parse_rate("5 MB/s"), Ok(Some(5_000_000)));
        assert_eq!(parse_rate("1.5MB/s"), Ok(Some(1_500_000)));
        assert_eq!(parse_rate("500KB/s"), Ok(Some(500_000)));
        assert_eq!(parse_rate("64KiB/s"), Ok(Some(65_536)));
        assert_eq!(parse_rate("2MiB/s"), Ok(Some(2_097_152)));
        assert_eq!(parse_rate("1GB/s"), Ok(Some(1_000_000_000)));
        assert_eq!(parse_rate("1000B/s"), Ok(Some(1000)));
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("unlimited"), Ok(None));
    }

    #[test]
    fn bad_rates_say_why() {
        assert!(parse_rate("20").unwrap_err().contains("needs a unit"));
        assert!(
            parse_rate("20Mb/s")
                .unwrap_err()
                .contains("bytes, not bits")
        );
        assert!(parse_rate("20MB").unwrap_err().contains("unknown unit"));
        assert!(parse_rate("fast").unwrap_err().contains("not a rate"));
        assert!(parse_rate("0MB/s").unwrap_err().contains("smallest limit"));
        assert!(parse_rate("10B/s").unwrap_err().contains("smallest limit"));
        assert!(parse_rate("1.2.3MB/s").is_err());
        assert!(parse_rate("-5MB/s").is_err());
    }

    #[test]
    fn slots_parse_and_refuse_bad_times() {
        assert_eq!(
            parse_slot("08:00 5MB/s"),
            Ok(Slot {
                minute: 480,
                rate: Some(5_000_000)
            })
        );
        assert_eq!(
            parse_slot("19:30 off"),
            Ok(Slot {
                minute: 1170,
                rate: None
            })
        );
        assert!(
            parse_slot("24:00 off")
                .unwrap_err()
                .contains("00:00 to 23:59")
        );
        assert!(parse_slot("8:00 off").is_err());
        assert!(parse_slot("08:60 off").is_err());
        assert!(parse_slot("08:00").unwrap_err().contains("HH:MM RATE"));
        assert!(parse_slot("08:00 5").unwrap_err().contains("needs a unit"));
        let twice = vec![parse_slot("08:00 off").unwrap(); 2];
        assert!(Bandwidth::schedule(twice).unwrap_err().contains("08:00"));
    }

    #[test]
    fn the_slot_in_force_wraps_midnight() {
        let b = slots(&["19:00 off", "08:00 5MB/s"]);
        assert_eq!(b.rate_at(8 * 60), Some(5_000_000));
        assert_eq!(b.rate_at(12 * 60), Some(5_000_000));
        assert_eq!(b.rate_at(18 * 60 + 59), Some(5_000_000));
        assert_eq!(b.rate_at(19 * 60), None);
        assert_eq!(b.rate_at(23 * 60 + 59), None);
        // Before the day's first slot, the last one of the day before holds.
        assert_eq!(b.rate_at(0), None);
        assert_eq!(b.rate_at(7 * 60 + 59), None);
        let night = slots(&["22:00 1MB/s", "06:00 off"]);
        assert_eq!(night.rate_at(3 * 60), Some(1_000_000));
        assert_eq!(night.rate_at(12 * 60), None);
        assert!(!night.is_unlimited());
    }

    #[test]
    fn constant_and_unlimited() {
        let c = Bandwidth::constant(Some(5_000_000));
        assert_eq!(c.rate_at(0), Some(5_000_000));
        assert_eq!(c.rate_at(1439), Some(5_000_000));
        assert_eq!(Bandwidth::unlimited().rate_at(600), None);
        assert!(Bandwidth::constant(None).is_unlimited());
        assert!(slots(&["08:00 off"]).is_unlimited());
    }
}
