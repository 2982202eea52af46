//! `segments`, `segment_threshold` and `segment_below` of a server block:
//! how a large file is split into ranges fetched at once, and when.

use super::Resolver;
use crate::config::model::Segmenting;
use crate::config::raw::RawServer;

/// More ranges than this only add sessions for the server to refuse.
const MAX_SEGMENTS: i64 = 16;

impl Resolver<'_> {
    pub(super) fn segmenting(&mut self, name: &str, raw: &RawServer) -> Option<Segmenting> {
        let field = |f: &str| format!("servers.{name}.{f}");
        let default = Segmenting::default();
        let segments = match &raw.segments {
            None => Some(default.segments),
            Some(v) if (1..=MAX_SEGMENTS).contains(v.get_ref()) => Some(*v.get_ref() as usize),
            Some(v) => {
                let msg = format!(
                    "{}: must be between 1 (no segmented downloads) and {MAX_SEGMENTS}, got {}",
                    field("segments"),
                    v.get_ref()
                );
                self.c.at(v.span(), msg);
                None
            }
        };
        let threshold = match &raw.segment_threshold {
            None => Some(default.threshold),
            Some(v) => match parse_size(v.get_ref()) {
                Ok(n) => Some(n),
                Err(why) => {
                    let msg = format!(
                        "{}: bad size \"{}\": {why} (write e.g. \"256MiB\", \"1GiB\", \"500MB\")",
                        field("segment_threshold"),
                        v.get_ref()
                    );
                    self.c.at(v.span(), msg);
                    None
                }
            },
        };
        let below = match &raw.segment_below {
            None => Some(default.below),
            Some(v) => match crate::bandwidth::parse_rate(v.get_ref()) {
                Ok(Some(0)) | Err(_) => {
                    let msg = format!(
                        "{}: bad rate \"{}\" (write e.g. \"32MB/s\", or \"off\" to split without measuring)",
                        field("segment_below"),
                        v.get_ref()
                    );
                    self.c.at(v.span(), msg);
                    None
                }
                Ok(rate) => Some(rate),
            },
        };
        Some(Segmenting {
            segments: segments?,
            threshold: threshold?,
            below: below?,
        })
    }
}

/// A byte count: a whole number with an optional unit, B, KB/MB/GB/TB
/// (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024); spaces allowed
/// between them.
pub(super) fn parse_size(s: &str) -> Result<u64, &'static str> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err("expected a number first");
    }
    let n: u64 = digits.parse().map_err(|_| "the number is too large")?;
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "TB" => 1000 * 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err("unknown unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"),
    };
    n.checked_mul(unit).ok_or("the size is too large")
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_in_decimal_and_binary_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10 B"), Ok(10));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
