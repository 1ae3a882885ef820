//! Text from outside (an agent's value, a backend's answer, a bot's error)
//! made safe to log and to keep: one line, control characters escaped, and
//! bounded in length, so that a hostile or broken device can neither forge a
//! log line, nor clear a terminal, nor fill memory and logs with one error.

use std::fmt::Write as _;

/// The most bytes of a run's or a task's error that are kept, logged and
/// shown (the rest is cut, with a marker saying how much).
pub(crate) const MAX_ERROR_BYTES: usize = 512;

/// `text` on one line, its control characters escaped (`\n`, `\r`, `\t`,
/// `\e`, `\0` and `\x..`), and cut at about `max` bytes with
/// `… (N more bytes)`.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 32);
    for (at, c) in text.char_indices() {
        if out.len() >= max {
            let _ = write!(out, "… ({} more bytes)", text.len() - at);
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A log writer that escapes the control bytes inside each event, so that a
/// value with a newline cannot forge a line, nor an escape sequence reach a
/// terminal. The subscriber writes one event, ending in `\n`, per call; that
/// last newline is kept. With `keep_escapes` (colour on a terminal), ESC is
/// kept for the formatter's own colours.
#[derive(Debug)]
#[cfg_attr(not(feature = "runtime"), allow(dead_code))] // the runtime's logging uses it
pub(crate) struct EscapingWriter<W> {
    inner: W,
    keep_escapes: bool,
}

#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
impl<W> EscapingWriter<W> {
    /// Escapes what goes through to `inner`.
    pub(crate) fn new(inner: W, keep_escapes: bool) -> Self {
        Self {
            inner,
            keep_escapes,
        }
    }
}

impl<W: std::io::Write> std::io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end): (&[u8], &[u8]) = match buf.split_last() {
            Some((b'\n', body)) => (body, b"\n"),
            _ => (buf, b""),
        };
        if !body.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.push(b),
                0x1b if self.keep_escapes => out.push(b),
                0x1b => out.extend_from_slice(b"\\e"),
                b if b < 0x20 || b == 0x7f => {
                    out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                }
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_forged_line_and_escape_codes_stay_on_one_line() {
        let forged =
            "x\n2026-12-06T00:00:00Z ERROR grafolean_collector::runtime: FORGED LINE \u{1b}[2J\0";
        let text = bounded(forged, MAX_ERROR_BYTES);
        assert!(!text.contains('\n') && !text.contains('\u{1b}') && !text.contains('\0'));
        assert_eq!(
            text,
            "x\\n2026-12-06T00:00:00Z ERROR grafolean_collector::runtime: FORGED LINE \\e[2J\\0"
        );
    }

    #[test]
    fn a_long_error_is_cut_with_a_marker_on_a_character_boundary() {
        let long = "é".repeat(400_000); // 800,000 bytes
        let text = bounded(&long, MAX_ERROR_BYTES);
        assert!(text.len() < MAX_ERROR_BYTES + 40, "{}", text.len());
        assert!(text.ends_with("more bytes)"), "{text}");
        assert!(text.contains("… (799488 more bytes)"), "{}", &text[500..]);
        assert_eq!(bounded("short", MAX_ERROR_BYTES), "short");
    }

    #[test]
    fn the_log_writer_escapes_inside_an_event_and_keeps_its_end() {
        let mut out = Vec::new();
        let event = b"2026 WARN job run failed error=x\n2026 ERROR FORGED \x1b[2J\0\n";
        EscapingWriter::new(&mut out, false)
            .write_all(event)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026 WARN job run failed error=x\\n2026 ERROR FORGED \\e[2J\\x00\n"
        );
        // Colour on a terminal: the formatter's escapes are kept.
        let mut out = Vec::new();
        EscapingWriter::new(&mut out, true)
            .write_all(b"\x1b[33mWARN\x1b[0m a\nb\n")
            .unwrap();
        assert_eq!(out, b"\x1b[33mWARN\x1b[0m a\\nb\n");
    }
}
