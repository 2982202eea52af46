//! What `ferry test-connection` shows of an FTPS server's certificate:
//! subject, issuer, validity, SHA-256 fingerprint and the configuration
//! line that pins it, with a warning when it expires within 30 days. The
//! X.509 parsing is x509-parser's (rustls checks certificates but does not
//! show their contents).

use super::tls::fingerprint;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Within this many days of its end, a certificate is worth a warning:
/// renewing takes the partner time, and a pin must be replaced with it.
const WARN_DAYS: i64 = 30;

/// Lines describing the certificate `der`, as of `now` (Unix seconds).
pub fn describe(der: &[u8], now: i64) -> String {
    let hex = fingerprint(der);
    let colons = hex
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let mut out = match X509Certificate::from_der(der) {
        Ok((_, cert)) => {
            let v = cert.validity();
            let (from, until) = (v.not_before.timestamp(), v.not_after.timestamp());
            let mut s = format!(
                "certificate subject: {}\ncertificate issuer: {}\ncertificate valid from {} until {}\n",
                cert.subject(),
                cert.issuer(),
                utc(from),
                utc(until)
            );
            if let Some(w) = expiry_warning(from, until, now) {
                s.push_str(&w);
                s.push('\n');
            }
            s
        }
        Err(e) => format!("certificate: not readable as X.509 ({e})\n"),
    };
    out.push_str(&format!("certificate SHA-256 fingerprint: {colons}\n"));
    out.push_str(&format!(
        "to pin it, in the server's section: certificate_sha256 = \"{hex}\""
    ));
    out
}

/// The warning for a certificate valid from `from` until `until` (Unix
/// seconds), if any is due at `now`.
fn expiry_warning(from: i64, until: i64, now: i64) -> Option<String> {
    if now > until {
        return Some(format!(
            "WARNING: the certificate EXPIRED on {} ({} ago)",
            utc(until),
            days((now - until) / 86_400)
        ));
    }
    if now < from {
        return Some(format!(
            "WARNING: the certificate is not valid yet (from {})",
            utc(from)
        ));
    }
    let left = until - now;
    (left < WARN_DAYS * 86_400).then(|| {
        format!(
            "WARNING: the certificate expires in {}, on {}",
            days(left / 86_400),
            utc(until)
        )
    })
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_string()
    } else {
        format!("{n} days")
    }
}

fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || format!("{secs} (Unix time)"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn a_certificate_ending_within_30_days_is_warned_about() {
        let now = 1_800_000_000;
        assert_eq!(expiry_warning(now - DAY, now + 365 * DAY, now), None);
        assert_eq!(expiry_warning(now - DAY, now + 30 * DAY, now), None);
        let soon = expiry_warning(now - DAY, now + 10 * DAY, now).unwrap();
        assert!(soon.contains("expires in 10 days"), "{soon}");
        let tomorrow = expiry_warning(now - DAY, now + DAY + 5, now).unwrap();
        assert!(tomorrow.contains("expires in 1 day,"), "{tomorrow}");
        let gone = expiry_warning(now - 9 * DAY, now - 2 * DAY, now).unwrap();
        assert!(
            gone.contains("EXPIRED") && gone.contains("2 days ago"),
            "{gone}"
        );
        let early = expiry_warning(now + DAY, now + 9 * DAY, now).unwrap();
        assert!(early.contains("not valid yet"), "{early}");
    }

    #[test]
    fn times_are_printed_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00:00 UTC");
    }

    #[test]
    fn an_unreadable_certificate_still_gets_its_fingerprint_and_pin() {
        let text = describe(b"not a certificate", 0);
        assert!(text.contains("not readable as X.509"), "{text}");
        assert!(text.contains(&format!(
            "certificate_sha256 = \"{}\"",
            fingerprint(b"not a certificate")
        )));
    }
}
