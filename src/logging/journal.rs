//! Native journald output. Under systemd, stderr is a stream into the
//! journal and systemd says so in `JOURNAL_STREAM`; ferry then sends each
//! event as a native journal entry instead, so that span and event fields
//! become journal fields (`journalctl -u ferry RULE=partner-a`) and
//! journald's own timestamp is the only one.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Whether standard error is the journal stream systemd set up: systemd
/// puts `DEVICE:INODE` of that stream in `JOURNAL_STREAM`. A child that
/// inherited the variable but had its stderr redirected (a shell, a pipe
/// into a file) no longer matches, and keeps text logs.
pub fn stderr_is_journal() -> bool {
    let Ok(var) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => names_stream(&var, m.dev(), m.ino()),
        Err(_) => false,
    }
}

/// Whether a `JOURNAL_STREAM` value (`DEVICE:INODE`, both decimal, as
/// systemd writes them) names the file with this device and inode.
fn names_stream(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The journald layer: fields unprefixed, so a span's `rule` is the journal
/// field `RULE` and an event's `state` is `STATE` (tracing-journald would
/// otherwise write `F_RULE`), and `ferry` as the syslog identifier whatever
/// the binary is called. Fails when journald's socket cannot be reached.
pub fn layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier("ferry".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_only_its_own_device_and_inode() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(names_stream("64768:9\n", 64768, 9));
        assert!(!names_stream("8:12345", 8, 12346));
        assert!(!names_stream("9:12345", 8, 12345));
        assert!(!names_stream("", 8, 12345));
        assert!(!names_stream("8", 8, 12345));
        assert!(!names_stream("8:12345:1", 8, 12345));
        assert!(!names_stream("x:y", 8, 12345));
    }
}
