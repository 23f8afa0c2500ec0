//! Errors that servers write into an event stream in shapes the SSE parser ignores.
//!
//! The WHATWG parser skips a line whose field name it does not know, as it must. Two
//! servers put their errors on exactly such lines, inside a `200 text/event-stream`, and
//! then end the stream:
//!
//! - Ollama writes a bare JSON line: `{"error":{"message":"...","type":"api_error",...}}\n`
//!   (no `data:`, no `[DONE]`).
//! - Older llama.cpp builds write an `error` field: `error: {"code":500,"message":"...",
//!   "type":"server_error"}\n\n`.
//!
//! Both would look like a stream that ended early (and be retried, the message lost). So
//! the client keeps the last few KiB of the raw body in a [`StreamTail`] and, when a stream
//! ends without completing, asks it for an error in its last lines. Recording costs one
//! copy of at most [`StreamTail::KEEP`] bytes per read; the parser is not involved.

use serde::Deserialize;

use super::api_error::ApiError;

/// The last bytes of an event stream's body.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamTail {
    buf: Vec<u8>,
    /// Bytes before `buf` were dropped: its first line may be cut.
    cut: bool,
}

/// A bare JSON line with an error: only `error` is read (capped, see `ApiError`).
#[derive(Deserialize)]
struct ErrorLine {
    #[serde(default)]
    error: Option<ApiError>,
}

impl StreamTail {
    /// How many of the last bytes are kept (an error line is a few hundred).
    pub(crate) const KEEP: usize = 4 << 10;
    /// How many of the last non-empty lines are looked at.
    const LINES: usize = 2;

    /// Records bytes just read.
    pub(crate) fn record(&mut self, bytes: &[u8]) {
        let bytes = match bytes.len().checked_sub(Self::KEEP) {
            Some(skip) if skip > 0 => {
                self.buf.clear();
                self.cut = true;
                &bytes[skip..]
            }
            _ => bytes,
        };
        // Keep between KEEP and 2 × KEEP bytes: one move per KEEP bytes recorded.
        if self.buf.len() + bytes.len() > 2 * Self::KEEP {
            let drop = self.buf.len() + bytes.len() - Self::KEEP;
            self.buf.drain(..drop.min(self.buf.len()));
            self.cut = true;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The server's error, if one of the last lines is one of the shapes above.
    pub(crate) fn error(&self) -> Option<ApiError> {
        let mut lines = self.buf.split(|&b| b == b'\n');
        if self.cut {
            lines.next();
        }
        let lines: Vec<&[u8]> = lines
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).trim_ascii())
            .filter(|l| !l.is_empty())
            .collect();
        lines
            .iter()
            .rev()
            .take(Self::LINES)
            .find_map(|line| error_line(line))
    }
}

fn error_line(line: &[u8]) -> Option<ApiError> {
    if line.starts_with(b"{") {
        return serde_json::from_slice::<ErrorLine>(line).ok()?.error;
    }
    let value = line.strip_prefix(b"error:")?;
    let value = value.strip_prefix(b" ").unwrap_or(value);
    (!value.trim_ascii().is_empty()).then(|| ApiError::from_body(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(parts: &[&[u8]]) -> StreamTail {
        let mut tail = StreamTail::default();
        for part in parts {
            tail.record(part);
        }
        tail
    }

    #[test]
    fn errors_in_the_last_lines() {
        let chunk = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let ollama = br#"{"error":{"message":"model runner has unexpectedly stopped","type":"api_error","param":null,"code":null}}"#;
        let llama = br#"error: {"code":500,"message":"slot unavailable","type":"server_error"}"#;
        // (parts, message found)
        let cases: Vec<(Vec<&[u8]>, Option<&str>)> = vec![
            (
                vec![chunk, ollama, b"\n"],
                Some("model runner has unexpectedly stopped"),
            ),
            (
                vec![chunk, ollama],
                Some("model runner has unexpectedly stopped"),
            ),
            (vec![chunk, llama, b"\n\n"], Some("slot unavailable")),
            (vec![chunk, llama, b"\r\n\r\n"], Some("slot unavailable")),
            (vec![b"error: plain words\n\n"], Some("plain words")),
            // Split anywhere.
            (
                vec![chunk, &ollama[..7], &ollama[7..], b"\n"],
                Some("model runner has unexpectedly stopped"),
            ),
            // Not errors: a cut chunk, a data line (the accumulator reads those), no error
            // field, an empty error field, a null error.
            (vec![chunk, b"data: {\"choi"], None),
            (vec![chunk], None),
            (vec![b"{\"choices\":[]}\n"], None),
            (vec![b"error:\n\n"], None),
            (vec![b"{\"error\":null}\n"], None),
            (vec![b"{\"error\":{\"message\":\"cut"], None),
            (vec![], None),
            // An error line followed by one more line is still found; two more are not.
            (
                vec![ollama, b"\n: bye\n"],
                Some("model runner has unexpectedly stopped"),
            ),
            (vec![ollama, b"\n: bye\n: again\n"], None),
        ];
        for (parts, want) in cases {
            let got = tail_of(&parts).error();
            assert_eq!(
                got.as_ref().map(|e| e.message.as_str()),
                want,
                "{:?}",
                parts.concat().escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn keeps_only_the_last_bytes() {
        let filler = vec![b'x'; 3 * StreamTail::KEEP];
        let ollama = br#"{"error":{"message":"late"}}"#;
        for piece in [1, 100, StreamTail::KEEP, 3 * StreamTail::KEEP] {
            let mut tail = StreamTail::default();
            for part in filler.chunks(piece) {
                tail.record(part);
            }
            assert!(tail.buf.len() <= 2 * StreamTail::KEEP, "{piece}");
            tail.record(b"\n");
            tail.record(ollama);
            assert_eq!(
                tail.error().map(|e| e.message),
                Some("late".to_owned()),
                "{piece}"
            );
            // A line cut by the front of the buffer is not read as a whole one.
            let mut front = StreamTail::default();
            let mut long = br#"{"error":"front"}"#.to_vec();
            long.extend(std::iter::repeat_n(b' ', 3 * StreamTail::KEEP));
            front.record(&long);
            assert_eq!(front.error(), None);
        }
    }
}
