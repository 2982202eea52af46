//! Log output: native journal entries when stderr is the journal (under
//! systemd), else human text, or JSON lines for collectors. Filter with
//! `RUST_LOG` (default `info`).
//!
//! Field values and messages carry remote file names and handler output.
//! The text format escapes their control characters here, in one place
//! ([`EscapedFields`]); the JSON format needs nothing, as serde escapes
//! every string it writes, and the journal's native protocol carries any
//! byte in a length-prefixed value.

mod journal;

use crate::text::EscapeWriter;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
    /// Native journal entries (journald's socket), fields as journal fields.
    Journal,
}

/// Sets up logging. Without an explicit format, the journal is used when
/// systemd connected stderr to it (`JOURNAL_STREAM`), text otherwise.
pub fn init(format: Option<LogFormat>) {
    let format = format.unwrap_or(if journal::stderr_is_journal() {
        LogFormat::Journal
    } else {
        LogFormat::Text
    });
    if format != LogFormat::Journal {
        return init_stderr(format);
    }
    match journal::layer() {
        Ok(layer) => tracing_subscriber::registry()
            .with(filter())
            .with(layer)
            .init(),
        Err(e) => {
            init_stderr(LogFormat::Text);
            tracing::warn!(error = %e, "cannot reach journald's socket; logging text to standard error");
        }
    }
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn init_stderr(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(|| AroundProgress(Vec::new()))
        .with_target(false);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text | LogFormat::Journal => {
            use std::io::IsTerminal;
            builder
                .fmt_fields(EscapedFields)
                .with_ansi(std::io::stderr().is_terminal())
                .init()
        }
    }
}

/// Standard error, written around the progress line of `ferry once`
/// when one shows: the formatter writes an event into this buffer, and the
/// buffer reaches stderr whole when dropped, with the line cleared.
struct AroundProgress(Vec<u8>);

impl std::io::Write for AroundProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AroundProgress {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        crate::cli::progress_line::suspended(|| {
            let _ = std::io::stderr().write_all(&self.0);
        });
    }
}

/// Formats the fields of events and spans as the default text format does
/// (`message name=value ...`), with every control character in a value or
/// message escaped, so that a name holding a newline or ESC can neither
/// forge a log line nor reach the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            out: writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'w> {
    out: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn field(&mut self, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(' ')?;
        }
        if field.name() != "message" {
            write!(self.out, "{}=", field.name())?;
        }
        write!(EscapeWriter(&mut self.out), "{value:?}")
    }
}

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `log.*` fields describe records from the `log` crate; the event
        // line already shows them, as with the default formatter.
        if self.result.is_ok() && !field.name().starts_with("log.") {
            self.result = self.field(field, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects everything the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_logs_escape_values_messages_and_span_fields() {
        let buf = Buffer::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_writer(move || out.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let name = "evil\n2026-01-01 INFO forged\x1b[31m.csv";
            let span = tracing::info_span!("file", path = %name);
            span.in_scope(|| {
                tracing::info!(error = %"line one\r\nline\ttwo", size = 3, "seen {name}");
            });
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        for want in [
            "file{path=evil\\n2026-01-01 INFO forged\\x1b[31m.csv}",
            "seen evil\\n2026-01-01 INFO forged\\x1b[31m.csv",
            "error=line one\\r\\nline\\ttwo size=3",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text:?}");
        }
    }
}
