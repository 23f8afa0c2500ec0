//! Keeping credentials and terminal control sequences out of everything a human reads.
//!
//! ```
//! use oai_sse::redact::{escape_controls, redact_secrets, redact_userinfo};
//!
//! assert_eq!(redact_userinfo("http://user:pw@proxy:3128"), "http://<redacted>@proxy:3128");
//! let key = "sk-proj-0123456789abcdef";
//! assert_eq!(redact_secrets(&format!("key {key} denied"), &[key]), "key <redacted> denied");
//! assert_eq!(escape_controls("\u{1b}]0;pwned\u{7}"), "\\u{1b}]0;pwned\\u{7}");
//! ```
//!
//! Pure string functions for every place where configuration or server text becomes output
//! (`Debug` impls, error messages, logs, the CLI):
//!
//! - [`redact_userinfo`] hides the `user:password@` of one URL (a base URL, a proxy).
//! - [`redact_secrets`] hides known secret values (API key, proxy password, header values
//!   marked secret) wherever they appear in a text, also when percent-encoded or
//!   JSON-escaped.
//! - [`escape_controls`] makes server text harmless for a terminal: no escape sequences, no
//!   carriage returns rewriting a line, no bidi overrides reordering it.
//! - [`sanitize`] is what diagnostics should call: all of the above on one text, plus the
//!   userinfo of any `…://user:pass@host` URL inside it.
//!
//! Each returns `Cow::Borrowed` when nothing needs changing, so the common case costs a scan
//! (one per secret for [`redact_secrets`]) and no allocation. None of them panics on any input. Where it is unclear whether
//! something is a credential, they redact.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memmem;

/// What every hidden credential is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this many bytes are not searched for. A short "key" (`"x"`,
/// `"none"`, `"EMPTY"`, which local servers are often given) would shred ordinary words all
/// over the text and hides nothing worth hiding; real API keys are 20 bytes or more. A short
/// proxy password inside a URL is still caught by the userinfo rules.
pub const MIN_SECRET_LEN: usize = 8;

/// `url` with its whole userinfo (`user:password@`, or a bare token `user@`) replaced by
/// `<redacted>`: `http://alice:pw@host:8080/v1` → `http://<redacted>@host:8080/v1`.
///
/// Accepts what configuration holds: any scheme (`https`, `socks5h`, ...), no scheme
/// (`user:pass@host:3128`), IPv6 hosts, percent-encoded and unencoded passwords. An `@` in
/// the path, query or fragment of a well-formed URL is left alone. If a password contains an
/// unencoded `/`, `?` or `#` (so the apparent authority is not a valid `host[:port]`) and an
/// `@` follows, everything up to the last `@` is redacted. Not caught: a username with an
/// unencoded `/` whose text before the `/` looks like a host (`http://ab/cd:pw@host` reads
/// as host `ab`, path `/cd:pw@host`, which is also how a client would use it).
pub fn redact_userinfo(url: &str) -> Cow<'_, str> {
    match userinfo_range(url) {
        Some(range) => Cow::Owned(replace_ranges(url, &[range])),
        None => Cow::Borrowed(url),
    }
}

/// `text` with every occurrence of each secret replaced by `<redacted>`.
///
/// A secret matches where it appears verbatim, and also where each of its characters is
/// written raw or escaped: percent-encoded (`%40`, either hex case, as in a URL) or
/// JSON-escaped (`\"`, `\\`, `\/`, `\n`, `\uHHHH` including surrogate pairs, as a server
/// echoing the request in a JSON error would write it). Not caught: other encodings (base64,
/// as in a `Basic` header; HTML entities; `+` for space), a secret split by inserted
/// characters, and a secret split across two calls (redact whole texts, not stream pieces).
/// Secrets shorter than [`MIN_SECRET_LEN`] bytes are ignored. Overlapping or adjacent
/// occurrences, of one secret or several, become a single `<redacted>`.
pub fn redact_secrets<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut found: Vec<Range<usize>> = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        find_secret(text.as_bytes(), secret, &mut found);
    }
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    found.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(found.len());
    for range in found {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    Cow::Owned(replace_ranges(text, &merged))
}

/// `text` made safe to print on a terminal: C0 controls other than `\n` and `\t` (so `\r`,
/// ESC, BEL, backspace, NUL), DEL, C1 controls (U+0080–U+009F, which some terminals obey
/// like ESC sequences) and the bidi embedding, override and isolate controls (U+202A–U+202E,
/// U+2066–U+2069, the "Trojan Source" characters) become visible `\u{1b}`-style escapes.
/// `ESC]0;title BEL` comes out as the text `\u{1b}]0;title\u{7}`.
///
/// A backslash is not escaped, so a text that already contains the characters `\u{1b}`
/// looks the same as an escaped ESC; that is harmless on a terminal and keeps ordinary text
/// (paths, code) unchanged.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let Some(first) = text.char_indices().find(|&(_, c)| is_unsafe_char(c)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first.0]);
    for c in text[first.0..].chars() {
        if is_unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Server or error text made fit for a human: [`escape_controls`], then the userinfo of
/// every `…://user@host` URL in it (by the rules of [`redact_userinfo`]), then
/// [`redact_secrets`]. Redaction comes last so that no later step can re-form a secret (only
/// a secret that overlaps the text `<redacted>` itself could be).
///
/// Meant for diagnostics (errors, logs, status lines). Model output shown as the answer
/// should get [`escape_controls`] only, so an answer that mentions a URL with a password
/// in it is shown as written.
pub fn sanitize<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let text = escape_controls(text);
    let text = then(text, redact_urls_in_text);
    then(text, |t| redact_secrets(t, secrets))
}

/// The password of `url`'s userinfo (or its bare token, `https://TOKEN@host`), as written
/// and, if it has `%` escapes, decoded: a server may echo either.
pub(crate) fn userinfo_secrets(url: &str) -> Vec<Cow<'_, str>> {
    let Some(range) = userinfo_range(url) else {
        return Vec::new();
    };
    let userinfo = &url[range];
    let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    let mut secrets = vec![Cow::Borrowed(password)];
    if password.contains('%') {
        if let Some(decoded) = percent_decode(password) {
            secrets.push(Cow::Owned(decoded));
        }
    }
    secrets
}

/// `%XX` escapes decoded, if the result is UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let escaped = (c == b'%')
            .then(|| Some(hex_value(*b.get(i + 1)?)? << 4 | hex_value(*b.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The secret of a header value the user set: the whole value and, for an
/// `Authorization`-style `<scheme> <token>`, the token alone.
pub(crate) fn header_secrets(value: &str) -> impl Iterator<Item = &str> {
    let token = value
        .split_once(' ')
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty() && !token.contains(' '));
    std::iter::once(value).chain(token)
}

/// Applies `f` to a text that may already be owned, keeping the borrow when neither step
/// changed anything.
fn then<'a>(text: Cow<'a, str>, f: impl for<'b> Fn(&'b str) -> Cow<'b, str>) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(t) => f(t),
        Cow::Owned(t) => {
            let changed = match f(&t) {
                Cow::Owned(changed) => Some(changed),
                Cow::Borrowed(_) => None,
            };
            Cow::Owned(changed.unwrap_or(t))
        }
    }
}

/// The byte range of `url`'s userinfo (without the `@`), if it has a non-empty one.
fn userinfo_range(url: &str) -> Option<Range<usize>> {
    let b = url.as_bytes();
    userinfo_in_authority(b, authority_start(b))
}

/// The byte range of the userinfo of the URL whose authority starts at `b[start]`.
fn userinfo_in_authority(b: &[u8], start: usize) -> Option<Range<usize>> {
    let rest = b.get(start..)?;
    let end = start
        + rest
            .iter()
            .position(|&c| matches!(c, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
    let at = match memchr::memrchr(b'@', &b[start..end]) {
        // The last `@`, as the WHATWG URL parser does: earlier ones belong to the password.
        Some(at) => start + at,
        // No `@` before the first `/`, `?` or `#`. If that apparent authority is no valid
        // host, one of those was inside the password: hide up to the last `@`.
        None if !is_host_port(&b[start..end]) => end + memchr::memrchr(b'@', &b[end..])?,
        None => return None,
    };
    (at > start).then_some(start..at)
}

/// Where the authority begins: after `scheme://`, after a leading `//`, else at 0 (proxy
/// settings are often written `user:pass@host:3128`).
fn authority_start(b: &[u8]) -> usize {
    if let Some(sep) = memmem::find(b, b"://") {
        if is_scheme(&b[..sep]) {
            return sep + 3;
        }
    }
    if b.starts_with(b"//") { 2 } else { 0 }
}

fn is_scheme(s: &[u8]) -> bool {
    matches!(s.first(), Some(c) if c.is_ascii_alphabetic()) && s.iter().all(|&c| is_scheme_byte(c))
}

fn is_scheme_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
}

/// Whether `a` is plausibly `host[:port]`: a registered name or IPv4 address, or a
/// bracketed IPv6 literal, then an optional all-digit port.
fn is_host_port(a: &[u8]) -> bool {
    let (host_ok, port) = match a.strip_prefix(b"[") {
        Some(inner) => match memchr::memchr(b']', inner) {
            // IPv6 (hex, `:`, `.`), a zone id (`%25eth0`) or an IPvFuture literal.
            Some(close) => (
                inner[..close].iter().all(|&c| is_host_byte(c) || c == b':'),
                &inner[close + 1..],
            ),
            None => return false,
        },
        None => {
            let colon = memchr::memrchr(b':', a).unwrap_or(a.len());
            let host = &a[..colon];
            (
                !host.is_empty() && host.iter().all(|&c| is_host_byte(c)),
                &a[colon..],
            )
        }
    };
    host_ok
        && match port {
            [] => true,
            [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

fn is_host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'%')
}

/// Redacts the userinfo of every URL in free text: whatever follows a `://` up to whitespace
/// or a quote, angle bracket or backtick (the characters that delimit URLs in messages) is
/// read as a URL whose authority starts after the `://`.
fn redact_urls_in_text(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for sep in memmem::find_iter(b, b"://") {
        if ranges.last().is_some_and(|r| sep < r.end) {
            continue; // inside a credential already found
        }
        let url_end = b[sep..]
            .iter()
            .position(|&c| {
                c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'<' | b'>' | b'`')
            })
            .map_or(b.len(), |n| sep + n);
        if let Some(r) = userinfo_in_authority(&b[..url_end], sep + 3) {
            ranges.push(r);
        }
    }
    if ranges.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(replace_ranges(text, &ranges))
    }
}

/// `text` with each of the sorted, disjoint `ranges` replaced by [`REDACTED`]. Every range
/// lies on char boundaries: it starts and ends next to ASCII bytes or at the edges of a
/// matched `str`.
fn replace_ranges(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len() + ranges.len() * REDACTED.len());
    let mut copied = 0;
    for r in ranges {
        out.push_str(text.get(copied..r.start).unwrap_or_default());
        out.push_str(REDACTED);
        copied = r.end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// Adds the byte range of every match of `secret` in `text` to `found`, overlapping ones
/// included. A match can start only at the secret's first byte or at an escape (`%`, `\`).
fn find_secret(text: &[u8], secret: &str, found: &mut Vec<Range<usize>>) {
    let Some(&first) = secret.as_bytes().first() else {
        return;
    };
    for start in memchr::memchr3_iter(first, b'%', b'\\', text) {
        let rest = &text[start..];
        let len = if rest.starts_with(secret.as_bytes()) {
            Some(secret.len())
        } else {
            match_escaped(rest, secret)
        };
        if let Some(len) = len {
            found.push(start..start + len);
        }
    }
}

/// The length of the prefix of `text` that spells `secret` with each character raw,
/// percent-encoded or JSON-escaped. Greedy: an escape that spells the expected character
/// is taken before the raw byte (a verbatim match was tried first).
fn match_escaped(text: &[u8], secret: &str) -> Option<usize> {
    let mut at = 0;
    for c in secret.chars() {
        let rest = text.get(at..)?;
        let mut buf = [0; 4];
        let raw = c.encode_utf8(&mut buf).as_bytes();
        at += match rest.first()? {
            b'%' => match_percent(rest, raw),
            b'\\' => match_json_escape(rest, c),
            _ => None,
        }
        .or_else(|| rest.starts_with(raw).then_some(raw.len()))?;
    }
    Some(at)
}

/// `%XX` for every byte of `raw` (either hex case).
fn match_percent(text: &[u8], raw: &[u8]) -> Option<usize> {
    for (i, &byte) in raw.iter().enumerate() {
        match text.get(3 * i..3 * i + 3)? {
            [b'%', hi, lo] if hex_value(*hi)? * 16 + hex_value(*lo)? == byte => {}
            _ => return None,
        }
    }
    Some(3 * raw.len())
}

/// A JSON string escape of `c`: a short one (`\"`, `\n`, ...) or `\uHHHH`, two of them
/// (a surrogate pair) outside the Basic Multilingual Plane.
fn match_json_escape(text: &[u8], c: char) -> Option<usize> {
    let short = match c {
        '"' => Some(b'"'),
        '\\' => Some(b'\\'),
        '/' => Some(b'/'),
        '\n' => Some(b'n'),
        '\r' => Some(b'r'),
        '\t' => Some(b't'),
        '\u{8}' => Some(b'b'),
        '\u{c}' => Some(b'f'),
        _ => None,
    };
    if let Some(letter) = short {
        if text.get(..2) == Some(&[b'\\', letter][..]) {
            return Some(2);
        }
    }
    let mut units = [0; 2];
    let units = c.encode_utf16(&mut units);
    for (i, &unit) in units.iter().enumerate() {
        match text.get(6 * i..6 * i + 6)? {
            [b'\\', b'u', digits @ ..] => {
                let value = digits
                    .iter()
                    .try_fold(0u32, |v, &d| Some(v * 16 + u32::from(hex_value(d)?)))?;
                if value != u32::from(unit) {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(6 * units.len())
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        '\0'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `got` against `expected`, and that an unchanged input comes back borrowed.
    fn assert_cow(got: Cow<'_, str>, input: &str, expected: &str, what: &str) {
        assert_eq!(got, expected, "{what}: {input:?}");
        assert_eq!(
            matches!(got, Cow::Borrowed(_)),
            input == expected,
            "{what}: {input:?} borrowed iff unchanged"
        );
    }

    #[test]
    fn userinfo_table() {
        const CASES: &[(&str, &str)] = &[
            (
                "http://alice:PASSWORD@host:8080/v1",
                "http://<redacted>@host:8080/v1",
            ),
            (
                "https://alice:pw@api.example.com",
                "https://<redacted>@api.example.com",
            ),
            (
                "https://sk-token@api.example.com/v1",
                "https://<redacted>@api.example.com/v1",
            ),
            ("http://alice:@host", "http://<redacted>@host"),
            ("http://:pw@host", "http://<redacted>@host"),
            (
                "socks5h://user:pass@proxy:1080",
                "socks5h://<redacted>@proxy:1080",
            ),
            ("HTTP://U:P@HOST/", "HTTP://<redacted>@HOST/"),
            ("user:pass@host:3128", "<redacted>@host:3128"),
            ("user@host", "<redacted>@host"),
            ("//user:pass@host/x", "//<redacted>@host/x"),
            ("http://user:p%40ss%2Fw@host/", "http://<redacted>@host/"),
            // Unencoded `@` in the password: the last `@` of the authority ends the userinfo.
            ("http://user:p@ss@host/a", "http://<redacted>@host/a"),
            ("http://a@b@c@host", "http://<redacted>@host"),
            // IPv6 hosts.
            ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
            ("http://[::1]/v1@x", "http://[::1]/v1@x"),
            ("http://[fe80::1%25eth0]:80/", "http://[fe80::1%25eth0]:80/"),
            (
                "http://u:p@[::1]:8080/v1",
                "http://<redacted>@[::1]:8080/v1",
            ),
            ("u:p@[::1]:3128", "<redacted>@[::1]:3128"),
            // `@` after the authority of a well-formed URL: not userinfo.
            ("http://host/path@x", "http://host/path@x"),
            (
                "http://host:8080/a/b@c?d=e@f#g@h",
                "http://host:8080/a/b@c?d=e@f#g@h",
            ),
            ("http://host?email=a@b.c", "http://host?email=a@b.c"),
            ("http://host#frag@x", "http://host#frag@x"),
            ("host:3128/x@y", "host:3128/x@y"),
            (
                "https://10.0.0.1:443/v1/users/me@example.com",
                "https://10.0.0.1:443/v1/users/me@example.com",
            ),
            (
                "http://host/?next=http://u:p@evil/",
                "http://host/?next=http://u:p@evil/",
            ),
            // Unencoded `/`, `?` or `#` in the password: the apparent authority is no
            // `host[:port]`, so everything up to the last `@` goes.
            ("http://user:pa/ss@host/v1", "http://<redacted>@host/v1"),
            ("http://user:pa?ss@host/v1", "http://<redacted>@host/v1"),
            ("http://user:pa#ss@host", "http://<redacted>@host"),
            ("user:pa/ss@host:3128", "<redacted>@host:3128"),
            ("http:///user:pw@host", "http://<redacted>@host"),
            ("http://us er:pw/x@host", "http://<redacted>@host"),
            ("  http://u:p@h", "<redacted>@h"),
            ("http:u:p@h", "<redacted>@h"),
            // No URL at all, or nothing to hide.
            ("", ""),
            ("http://", "http://"),
            ("http://@host", "http://@host"),
            ("localhost:8080", "localhost:8080"),
            ("http://localhost:11434/v1", "http://localhost:11434/v1"),
            ("not a url", "not a url"),
            ("@@@", "<redacted>@"),
            ("://u:p@h", "<redacted>@h"),
            ("http://héllo:wörld@hôst/", "http://<redacted>@hôst/"),
        ];
        for &(input, expected) in CASES {
            assert_cow(redact_userinfo(input), input, expected, "redact_userinfo");
        }
    }

    /// Every combination of scheme form, user, password (full of delimiters), host and
    /// path: the password never survives, and host and path always do.
    #[test]
    fn userinfo_generated_urls_never_leak_the_password() {
        const SCHEMES: &[&str] = &["http://", "https://", "socks5h://", "", "//"];
        const USERS: &[&str] = &["", "alice", "tok%40en", "a@b", "a:b"];
        const AROUND: &[&str] = &["", "@", ":", "%40", "%", "[", "]", "::1", "é"];
        const HOSTS: &[&str] = &["host", "host:8080", "[::1]", "[::1]:3128", "10.0.0.1:80"];
        const PATHS: &[&str] = &["", "/", "/v1", "/a@b", "?q=a@b", "#f@x", "/p?x=@"];
        let mut count = 0;
        for scheme in SCHEMES {
            for user in USERS {
                for before in AROUND {
                    for after in AROUND {
                        for host in HOSTS {
                            for path in PATHS {
                                let url =
                                    format!("{scheme}{user}:{before}SECRET{after}@{host}{path}");
                                let got = redact_userinfo(&url);
                                assert_eq!(
                                    got,
                                    format!("{scheme}<redacted>@{host}{path}"),
                                    "{url}"
                                );
                                count += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(count, 5 * 5 * 9 * 9 * 5 * 7);
    }

    #[test]
    fn secrets_table() {
        const KEY: &str = "sk-abcdef123456";
        // (text, secrets, expected)
        const CASES: &[(&str, &[&str], &str)] = &[
            ("", &[KEY], ""),
            ("nothing here", &[KEY], "nothing here"),
            ("nothing here", &[], "nothing here"),
            ("key sk-abcdef123456 here", &[KEY], "key <redacted> here"),
            ("sk-abcdef123456", &[KEY], "<redacted>"),
            (
                "a sk-abcdef123456 b sk-abcdef123456 c",
                &[KEY],
                "a <redacted> b <redacted> c",
            ),
            // Adjacent occurrences merge into one marker.
            ("sk-abcdef123456sk-abcdef123456!", &[KEY], "<redacted>!"),
            // A near miss is not a match.
            (
                "sk-abcdef12345 and sk-abcdef123457",
                &[KEY],
                "sk-abcdef12345 and sk-abcdef123457",
            ),
            ("SK-ABCDEF123456", &[KEY], "SK-ABCDEF123456"),
            // Overlaps, of one secret with itself and of two secrets.
            ("xaaaaaaaaaaax", &["aaaaaaaa"], "x<redacted>x"),
            ("0abcdefghijkl9", &["abcdefgh", "efghijkl"], "0<redacted>9"),
            ("0abcdefghijkl9", &["efghijkl", "abcdefgh"], "0<redacted>9"),
            (
                "0abcdefgh-ijklmnop9",
                &["abcdefgh", "ijklmnop"],
                "0<redacted>-<redacted>9",
            ),
            // Short secrets are ignored, so they cannot shred the text.
            (
                "none of the above",
                &["none", "", "e", "1234567"],
                "none of the above",
            ),
            ("12345678", &["12345678", "1234567"], "<redacted>"),
            // Percent-encoded, either hex case, or partly.
            ("u=p%40ss%2Fword%21", &["p@ss/word!"], "u=<redacted>"),
            ("u=p%40ss%2fword%21", &["p@ss/word!"], "u=<redacted>"),
            ("u=%70%40%73%73%2F%77ord!", &["p@ss/word!"], "u=<redacted>"),
            ("u=p@ss%2Fword!", &["p@ss/word!"], "u=<redacted>"),
            ("%sk-abcdef123456%", &[KEY], "%<redacted>%"),
            ("%7", &[KEY], "%7"),
            // JSON-escaped.
            (
                r#"{"k":"pa\"ss\\word"}"#,
                &[r#"pa"ss\word"#],
                r#"{"k":"<redacted>"}"#,
            ),
            (
                r#"{"k":"http:\/\/u:pw@h"}"#,
                &["http://u:pw@h"],
                r#"{"k":"<redacted>"}"#,
            ),
            (r#""\u0073k-abcdef123456""#, &[KEY], r#""<redacted>""#),
            (
                r#""\u0073K-abcdef123456""#,
                &[KEY],
                r#""\u0073K-abcdef123456""#,
            ),
            (
                r#"line\nbreak-secret"#,
                &["line\nbreak-secret"],
                "<redacted>",
            ),
            (
                r#"x\ud83d\ude00-secret-key"#,
                &["😀-secret-key"],
                "x<redacted>",
            ),
            // A literal `%25` in a secret still matches verbatim.
            ("key=ab%25cdefgh", &["ab%25cdefgh"], "key=<redacted>"),
            ("key=ab%2525cdefgh", &["ab%25cdefgh"], "key=<redacted>"),
            // Multi-byte text and secrets.
            (
                "日本 pässwörd-123 語",
                &["pässwörd-123"],
                "日本 <redacted> 語",
            ),
            ("p%C3%A4ssw%c3%b6rd-123", &["pässwörd-123"], "<redacted>"),
            (
                "p%C3ssw%c3%b6rd-123",
                &["pässwörd-123"],
                "p%C3ssw%c3%b6rd-123",
            ),
            (r#"p\u00e4ssw\u00F6rd-123"#, &["pässwörd-123"], "<redacted>"),
        ];
        for &(text, secrets, expected) in CASES {
            assert_cow(
                redact_secrets(text, secrets),
                text,
                expected,
                "redact_secrets",
            );
        }
    }

    #[test]
    fn escape_controls_table() {
        const CASES: &[(&str, &str)] = &[
            ("", ""),
            ("plain text\n\twith tab", "plain text\n\twith tab"),
            (
                "héllo 中文 😀 ¡ – ’ \u{a0} \u{2028} \u{200f}",
                "héllo 中文 😀 ¡ – ’ \u{a0} \u{2028} \u{200f}",
            ),
            ("\x1b]0;title\x07", r"\u{1b}]0;title\u{7}"),
            ("\x1b[2Jcleared", r"\u{1b}[2Jcleared"),
            ("progress\rOVERWRITE", r"progress\u{d}OVERWRITE"),
            ("line\r\n", "line\\u{d}\n"),
            ("ab\x08\x08xy", r"ab\u{8}\u{8}xy"),
            (
                "\0\x01\x0b\x0c\x1f\x7f",
                r"\u{0}\u{1}\u{b}\u{c}\u{1f}\u{7f}",
            ),
            (
                "c1 \u{80}\u{85}\u{9b}31m\u{9f} end",
                r"c1 \u{80}\u{85}\u{9b}31m\u{9f} end",
            ),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}",
                r"\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}",
            ),
            (
                "if (admin\u{2066}) {\u{2069}",
                r"if (admin\u{2066}) {\u{2069}",
            ),
            ("\u{2067}\u{2068}", r"\u{2067}\u{2068}"),
            ("é\x1bé", r"é\u{1b}é"),
        ];
        for &(input, expected) in CASES {
            assert_cow(escape_controls(input), input, expected, "escape_controls");
        }
    }

    #[test]
    fn sanitize_table() {
        const KEY: &str = "sk-abcdef123456";
        const CASES: &[(&str, &str)] = &[
            ("all fine", "all fine"),
            (
                "error sending request for url (http://alice:hunter2@10.0.0.1:8080/v1/chat/completions): connection refused",
                "error sending request for url (http://<redacted>@10.0.0.1:8080/v1/chat/completions): connection refused",
            ),
            (
                "proxy socks5h://u:p@proxy:1080 and \"https://t@h/x\" failed",
                "proxy socks5h://<redacted>@proxy:1080 and \"https://<redacted>@h/x\" failed",
            ),
            (
                "see http://host/a@b and mail me@example.com",
                "see http://host/a@b and mail me@example.com",
            ),
            (
                "url=http://u:pa/ss@h/v1 next",
                "url=http://<redacted>@h/v1 next",
            ),
            ("a://b@c://d@e", "a://<redacted>@c://<redacted>@e"),
            (
                "401: invalid key sk-abcdef123456\x1b[2J",
                r"401: invalid key <redacted>\u{1b}[2J",
            ),
            // A control char inside the key means it is not the key.
            ("sk-abc\x1bdef123456", r"sk-abc\u{1b}def123456"),
            (
                "{\"error\":\"bad key \\u0073k-abcdef123456\"}",
                "{\"error\":\"bad key <redacted>\"}",
            ),
            (
                "\x1b]8;;http://u:p@h\x07link",
                r"\u{1b}]8;;http://<redacted>@h\u{7}link",
            ),
        ];
        for &(input, expected) in CASES {
            assert_cow(sanitize(input, &[KEY]), input, expected, "sanitize");
        }
    }

    fn is_raw_control(c: char) -> bool {
        c.is_control() && c != '\n' && c != '\t'
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }

    /// Every string of up to four pieces from a hostile alphabet (URL delimiters, escapes,
    /// controls, the secret whole, split and encoded): no function panics, no output
    /// contains the secret, and escaped outputs contain no raw control.
    #[test]
    fn generated_texts_never_leak_or_carry_controls() {
        const SECRET: &str = "s3cr3t-KEY";
        const PIECES: &[&str] = &[
            "@", ":", "/", "%", "\x1b", "\r", "\\", "\u{9b}", "\u{202e}", "é", "http://", "u:",
            SECRET, "s3cr", "3t-KEY", "%73", "\\u0073",
        ];
        let mut texts = vec![String::new()];
        let mut frontier = texts.clone();
        for _ in 0..4 {
            let next: Vec<String> = frontier
                .iter()
                .flat_map(|s| PIECES.iter().map(move |p| format!("{s}{p}")))
                .collect();
            texts.extend(next.iter().cloned());
            frontier = next;
        }
        let n = PIECES.len();
        assert_eq!(texts.len(), 1 + n + n * n + n * n * n + n * n * n * n);
        let secrets = [SECRET, "short"];
        for text in &texts {
            let redacted = redact_secrets(text, &secrets);
            assert!(
                !redacted.contains(SECRET),
                "redact_secrets({text:?}) = {redacted:?}"
            );
            let escaped = escape_controls(text);
            assert!(
                !escaped.chars().any(is_raw_control),
                "escape_controls({text:?}) = {escaped:?}"
            );
            let clean = sanitize(text, &secrets);
            assert!(
                !clean.contains(SECRET) && !clean.chars().any(is_raw_control),
                "sanitize({text:?}) = {clean:?}"
            );
            // Never panics; a URL that is only redacted keeps its length bound.
            let url = redact_userinfo(text);
            assert!(url.len() <= text.len() + REDACTED.len(), "{text:?}");
        }
    }
}
