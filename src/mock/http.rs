//! Sans-IO parser for the head of an HTTP/1.1 request and its query string: the mock server's
//! only protocol code.
//!
//! [`parse_head`] looks at the bytes read so far and answers "need more" (`Ok(None)`), a parsed
//! [`Head`] (whose `len` says where the body starts), or the error status to answer with. It never
//! reads a socket, so partial reads and malformed input are tested from byte strings.
//! [`query_pairs`] splits and decodes the query of a request target.

/// Largest request head we buffer before answering 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest request body we accept before answering 413.
pub(crate) const MAX_BODY: usize = 8 * 1024 * 1024;

/// A parsed request line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: String,
    pub target: String,
    pub http10: bool,
    /// Header names are lowercased; values are trimmed.
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, blank line included: the body starts here.
    pub len: usize,
    pub content_length: usize,
}

/// Why a request cannot be served; the connection is answered with [`HttpError::status`] and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpError {
    Malformed(&'static str),
    HeadTooLarge,
    BodyTooLarge,
    LengthRequired,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::LengthRequired => 411,
            Self::BodyTooLarge => 413,
            Self::HeadTooLarge => 431,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed(why) => why,
            Self::LengthRequired => "request bodies must use Content-Length",
            Self::BodyTooLarge => "request body is larger than 8 MiB",
            Self::HeadTooLarge => "request head is larger than 64 KiB",
        }
    }
}

impl Head {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or_default()
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn connection_has(&self, token: &str) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    pub fn keep_alive(&self) -> bool {
        if self.http10 {
            self.connection_has("keep-alive")
        } else {
            !self.connection_has("close")
        }
    }

    pub fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }
}

/// Parses the request head at the start of `buf` (leading blank lines are skipped).
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    use HttpError::Malformed;
    let start = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let Some(len) = head_end(buf, start) else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if len > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let text = buf.get(start..len).unwrap_or_default();
    let text = std::str::from_utf8(text).map_err(|_| Malformed("request head is not UTF-8"))?;
    let mut lines = text.lines();
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Malformed("malformed method"));
    }
    if !target.starts_with('/') {
        return Err(Malformed("request target must be an absolute path"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(Malformed("unsupported HTTP version")),
    };
    let mut headers = Vec::new();
    let mut content_length = None;
    for line in lines.take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(Malformed("obsolete header line folding"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(Malformed("header line without a colon"))?;
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(Malformed("malformed header name"));
        }
        let (name, value) = (name.to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "transfer-encoding" => return Err(HttpError::LengthRequired),
            "content-length" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Malformed("malformed Content-Length"));
                }
                // Digits only, so a parse failure means it overflowed: certainly too large.
                let n = value.parse::<usize>().unwrap_or(usize::MAX);
                if content_length.is_some_and(|c| c != n) {
                    return Err(Malformed("conflicting Content-Length headers"));
                }
                if n > MAX_BODY {
                    return Err(HttpError::BodyTooLarge);
                }
                content_length = Some(n);
            }
            _ => {}
        }
        headers.push((name, value.to_owned()));
    }
    Ok(Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        http10,
        headers,
        len,
        content_length: content_length.unwrap_or(0),
    }))
}

/// The decoded `key=value` pairs of the query in `target` (everything after the first `?`, up
/// to a `#`), in order. `+` is a space and `%XX` a byte, as in HTML forms; a malformed escape
/// stays as written and invalid UTF-8 becomes U+FFFD. A pair without `=` has an empty value.
pub(crate) fn query_pairs(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    parse_query(query.split('#').next().unwrap_or_default())
}

/// The decoded pairs of a bare query string (no `?`), as [`query_pairs`] decodes them.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        let byte = match b {
            b'+' => b' ',
            b'%' => match tail
                .get(..2)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(byte) => {
                    rest = tail.get(2..).unwrap_or_default();
                    byte
                }
                None => b'%',
            },
            _ => b,
        };
        out.push(byte);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The offset just past the first blank line (`\n\n` or `\n\r\n`) at or after `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let rest = buf.get(i + p + 1..)?;
        if rest.starts_with(b"\n") {
            return Some(i + p + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(i + p + 3);
        }
        i += p + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

    fn parsed(input: &[u8]) -> Head {
        match parse_head(input) {
            Ok(Some(head)) => head,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_a_complete_request() {
        let head = parsed(POST);
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/v1/chat/completions");
        assert_eq!(head.len, POST.len() - 2);
        assert_eq!(head.content_length, 2);
        assert_eq!(head.header("HOST"), Some("x"));
        assert!(!head.keep_alive());
        assert!(!head.http10);
    }

    #[test]
    fn every_prefix_of_the_head_needs_more() {
        let head_len = POST.len() - 2;
        for cut in 0..head_len {
            assert_eq!(parse_head(&POST[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parsed(&POST[..head_len]).len, head_len);
    }

    #[test]
    fn accepts_bare_lf_and_leading_blank_lines() {
        let head = parsed(b"\r\nGET /v1/models HTTP/1.0\nConnection: keep-alive\n\n");
        assert_eq!(head.len, 50);
        assert!(head.http10 && head.keep_alive());
        let head = parsed(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!head.keep_alive());
    }

    #[test]
    fn expect_continue() {
        let head = parsed(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
        assert!(head.expects_continue());
    }

    #[test]
    fn rejects_malformed_input() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET\r\n\r\n", 400),
            (b"GET /  HTTP/1.1\r\n\r\n", 400),
            (b"get / HTTP/1.1\r\n\r\n", 400),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: 8388609\r\n\r\n", 413),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                413,
            ),
        ];
        for (input, status) in cases {
            let got = parse_head(input).map_err(HttpError::status);
            assert_eq!(got, Err(*status), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn decodes_query_pairs() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let cases: &[(&str, &[(String, String)])] = &[
            ("/v1/stream", &[]),
            ("/v1/stream?", &[]),
            (
                "/v1/stream?conv_id=a%20b+c&from=12",
                &[pair("conv_id", "a b c"), pair("from", "12")],
            ),
            (
                "/x?a&&b=&=c",
                &[pair("a", ""), pair("b", ""), pair("", "c")],
            ),
            ("/x?k=%zz%+1%4", &[pair("k", "%zz% 1%4")]),
            ("/x?k=%C3%BC%ff", &[pair("k", "\u{fc}\u{fffd}")]),
            ("/x?k=v#frag?x=y", &[pair("k", "v")]),
            ("/x?k=a=b", &[pair("k", "a=b")]),
        ];
        for (target, want) in cases {
            assert_eq!(query_pairs(target), *want, "{target}");
        }
        let head = parsed(b"GET /v1/stream?conv_id=x HTTP/1.1\r\n\r\n");
        assert_eq!(head.path(), "/v1/stream");
    }

    #[test]
    fn bounds_the_head() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse_head(&big), Ok(None));
        big.push(b'a');
        assert_eq!(parse_head(&big), Err(HttpError::HeadTooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&big), Err(HttpError::HeadTooLarge));
    }
}
