//! Errors reported by servers, read from any body shape: OpenAI's `{"error":{..}}`, plain
//! strings, FastAPI's `detail`, gateways' HTML pages. Never panics, always short, and never
//! larger in memory than a few KiB whatever the server sends (see [`ErrorValue`]).

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

use super::capped::{Capped, KeyWithin};

/// An error reported by the server, in an HTTP error body or inside the stream.
///
/// Deserializing accepts any JSON value and reads it as [`ApiError::from_value`] does,
/// keeping at most a few KiB of it: an error object of megabytes costs no more memory than
/// a small one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct ApiError {
    /// Human-readable message (or a cleaned-up snippet of a non-JSON body).
    pub message: String,
    /// The error's `type` (`"invalid_request_error"`, `"server_error"`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The offending parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The error code; numeric codes are stored as their decimal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ApiError {
    /// Longest snippet kept from a body that is not a JSON error, in characters.
    pub const MAX_SNIPPET_CHARS: usize = 200;
    /// Longest message kept from a JSON error, in characters.
    pub const MAX_MESSAGE_CHARS: usize = 2000;
    /// How deeply `{"error":{"error":..}}` nesting is followed.
    const MAX_DEPTH: u8 = 4;

    /// Read an error body of any shape: `{"error":{"message","type","param","code"}}`,
    /// `{"error":"text"}`, `{"message":..}`, `{"detail":..}` (FastAPI), or anything else,
    /// kept as a short whitespace-collapsed snippet with HTML tags stripped. Never panics.
    pub fn from_body(body: &[u8]) -> Self {
        let trimmed = body.trim_ascii();
        if trimmed.is_empty() {
            return Self::with_message("empty error body".to_owned());
        }
        if matches!(trimmed.first(), Some(b'{' | b'"'))
            && let Some(v) = error_value(trimmed)
        {
            return Self::from_value(&v);
        }
        let text = String::from_utf8_lossy(trimmed);
        let snippet = if text.starts_with('<') {
            html_snippet(&text)
        } else {
            collapse(&text, Self::MAX_SNIPPET_CHARS)
        };
        Self::with_message(if snippet.is_empty() {
            "unreadable error body".to_owned()
        } else {
            snippet
        })
    }

    /// Read an error JSON value: the stream's `error` field, or a whole error body.
    pub fn from_value(v: &Value) -> Self {
        Self::from_value_at(v, 0)
    }

    fn from_value_at(v: &Value, depth: u8) -> Self {
        let Value::Object(map) = v else {
            return Self::with_message(value_text(v, Self::MAX_MESSAGE_CHARS));
        };
        let field = |k: &str| {
            map.get(k)
                .filter(|x| !x.is_null())
                .map(|x| value_text(x, Self::MAX_SNIPPET_CHARS))
        };
        let mut err = match map.get("error").filter(|e| !e.is_null()) {
            Some(inner @ Value::Object(_)) if depth < Self::MAX_DEPTH => {
                Self::from_value_at(inner, depth + 1)
            }
            Some(inner) => Self::with_message(value_text(inner, Self::MAX_MESSAGE_CHARS)),
            None => {
                let message = match (map.get("message"), map.get("detail")) {
                    (Some(m), _) if !m.is_null() => value_text(m, Self::MAX_MESSAGE_CHARS),
                    (_, Some(d)) if !d.is_null() => detail_text(d),
                    _ => value_text(v, Self::MAX_SNIPPET_CHARS),
                };
                Self::with_message(message)
            }
        };
        err.kind = err.kind.or_else(|| field("type"));
        err.param = err.param.or_else(|| field("param"));
        err.code = err.code.or_else(|| field("code"));
        err
    }

    fn with_message(message: String) -> Self {
        Self {
            message,
            ..Self::default()
        }
    }
}

impl<'de> Deserialize<'de> for ApiError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = ErrorValue { depth: 0 }.deserialize(d)?;
        Ok(Self::from_value(&v))
    }
}

/// A whole JSON text as an error value, read within the bounds of [`ErrorValue`]; `None` if
/// it is not valid JSON.
fn error_value(text: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let v = ErrorValue { depth: 0 }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

/// Reads an error value of any shape as a small [`Value`]: the fields an error is read from
/// (`error`, `message`, `detail`, `type`, `param`, `code`) each get a room of their own, so
/// a huge unknown field cannot crowd them out; other fields share a small one (they only
/// matter for the fallback snippet). Whatever does not fit is skipped unbuilt, so the value
/// is at most a few tens of KiB for any input.
struct ErrorValue {
    depth: u8,
}

impl ErrorValue {
    /// Room for `message`, `detail` and a non-object `error`: the longest message kept,
    /// at up to 4 bytes a character.
    const TEXT_ROOM: usize = 4 * ApiError::MAX_MESSAGE_CHARS + 64;
    /// Room for `type`, `param` and `code`.
    const FIELD_ROOM: usize = 4 * ApiError::MAX_SNIPPET_CHARS;
    /// Room shared by all other fields.
    const OTHER_ROOM: usize = 4 * ApiError::MAX_SNIPPET_CHARS;
}

impl<'de> DeserializeSeed<'de> for ErrorValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A value read within `room` bytes (`null` when nothing fits).
fn capped_value<'de, D: Deserializer<'de>>(d: D, mut room: usize) -> Result<Value, D::Error> {
    Ok(Capped { room: &mut room }
        .deserialize(d)?
        .unwrap_or(Value::Null))
}

impl<'de> Visitor<'de> for ErrorValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an error value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        let mut room = Self::TEXT_ROOM;
        Ok(Capped { room: &mut room }
            .visit_str(v)?
            .unwrap_or(Value::Null))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        let mut room = Self::TEXT_ROOM;
        Ok(Capped { room: &mut room }
            .visit_seq(seq)?
            .unwrap_or(Value::Null))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut other_room = Self::OTHER_ROOM;
        while let Some(key) = map.next_key_seed(KeyWithin {
            room: Self::TEXT_ROOM,
        })? {
            let Some(key) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = match key.as_str() {
                "error" if self.depth < ApiError::MAX_DEPTH => map.next_value_seed(ErrorValue {
                    depth: self.depth + 1,
                })?,
                "error" | "message" | "detail" => map.next_value_seed(Room(Self::TEXT_ROOM))?,
                "type" | "param" | "code" => map.next_value_seed(Room(Self::FIELD_ROOM))?,
                _ => {
                    // Unknown fields share one room; one that does not fit is left out.
                    let Some(mut room) = other_room.checked_sub(key.len() + 4) else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    match map.next_value_seed(Capped { room: &mut room })? {
                        Some(v) => {
                            other_room = room;
                            v
                        }
                        None => continue,
                    }
                }
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// A value read within a room of its own (`null` when nothing fits).
struct Room(usize);

impl<'de> DeserializeSeed<'de> for Room {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        capped_value(d, self.0)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match (&self.kind, &self.code) {
            (Some(k), Some(c)) => write!(f, " (type: {k}, code: {c})"),
            (Some(k), None) => write!(f, " (type: {k})"),
            (None, Some(c)) => write!(f, " (code: {c})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for ApiError {}

/// A JSON value as text: strings as-is, anything else as compact JSON; at most `max` chars.
fn value_text(v: &Value, max: usize) -> String {
    match v {
        Value::String(s) => truncate_chars(s, max),
        other => truncate_chars(&other.to_string(), max),
    }
}

/// FastAPI's `detail`: a string, or a list of `{"loc","msg","type"}` whose `msg`s are joined.
fn detail_text(d: &Value) -> String {
    if let Value::Array(items) = d {
        let msgs: Vec<&str> = items
            .iter()
            .filter_map(|i| i.get("msg").and_then(Value::as_str))
            .collect();
        if !msgs.is_empty() {
            return truncate_chars(&msgs.join("; "), ApiError::MAX_MESSAGE_CHARS);
        }
    }
    value_text(d, ApiError::MAX_MESSAGE_CHARS)
}

/// The first `max` characters of `s`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// Whitespace collapsed to single spaces, at most `max` characters (the last one `…` if cut).
fn collapse(s: &str, max: usize) -> String {
    let mut chars = s
        .split_whitespace()
        .enumerate()
        .flat_map(|(i, w)| (i > 0).then_some(' ').into_iter().chain(w.chars()));
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out = truncate_chars(&out, max.saturating_sub(1));
        out.push('…');
    }
    out
}

/// Visible text of an HTML page: tags dropped, `<head>`, `<script>` and `<style>` skipped
/// (falling back to the `<title>` when the body has no text), a few entities decoded.
fn html_snippet(html: &str) -> String {
    let body = collapse(&strip_tags(html, true), ApiError::MAX_SNIPPET_CHARS);
    if !body.is_empty() {
        return body;
    }
    collapse(&strip_tags(html, false), ApiError::MAX_SNIPPET_CHARS)
}

fn strip_tags(html: &str, skip_head: bool) -> String {
    // Enough raw text for the snippet even with lots of whitespace; stops scanning huge pages.
    const RAW_BUDGET: usize = ApiError::MAX_SNIPPET_CHARS * 8;
    let mut out = String::new();
    let mut rest = html;
    while out.len() < RAW_BUDGET {
        let Some(lt) = rest.find('<') else {
            push_decoded(&mut out, rest);
            break;
        };
        push_decoded(&mut out, &rest[..lt]);
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        out.push(' ');
        if tag.starts_with('/') {
            continue;
        }
        let name_len = tag.bytes().take_while(u8::is_ascii_alphanumeric).count();
        let name = &tag[..name_len];
        let skipped = ["script", "style"]
            .iter()
            .chain(if skip_head { &["head"][..] } else { &[][..] })
            .any(|s| s.eq_ignore_ascii_case(name));
        if skipped {
            let close = format!("</{name}");
            rest = find_ascii_ci(rest, &close).map_or("", |p| &rest[p..]);
        }
    }
    out
}

/// Byte offset of the first ASCII-case-insensitive occurrence of `needle` (ASCII) in `hay`.
fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn push_decoded(out: &mut String, text: &str) {
    const ENTITIES: [(&str, &str); 6] = [
        ("&nbsp;", " "),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&amp;", "&"),
    ];
    if !text.contains('&') {
        out.push_str(text);
        return;
    }
    let mut s = text.to_owned();
    for (from, to) in ENTITIES {
        s = s.replace(from, to);
    }
    out.push_str(&s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_error_from_every_body_shape() {
        let nginx = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";
        let long = "x ".repeat(300);
        let e =
            |message: &str, kind: Option<&str>, param: Option<&str>, code: Option<&str>| ApiError {
                message: message.to_owned(),
                kind: kind.map(str::to_owned),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
            };
        let cases: Vec<(Vec<u8>, ApiError, &str)> = vec![
            (
                br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.to_vec(),
                e("Incorrect API key provided", Some("invalid_request_error"), None, Some("invalid_api_key")),
                "Incorrect API key provided (type: invalid_request_error, code: invalid_api_key)",
            ),
            (
                // llama.cpp
                br#"{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}"#.to_vec(),
                e("the request exceeds the available context size", Some("exceed_context_size_error"), None, Some("400")),
                "the request exceeds the available context size (type: exceed_context_size_error, code: 400)",
            ),
            (
                // vLLM
                br#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":"model","code":404}"#.to_vec(),
                e("The model `x` does not exist.", Some("NotFoundError"), Some("model"), Some("404")),
                "The model `x` does not exist. (type: NotFoundError, code: 404)",
            ),
            (
                // Ollama native
                br#"{"error":"model \"llama9\" not found, try pulling it first"}"#.to_vec(),
                e("model \"llama9\" not found, try pulling it first", None, None, None),
                "model \"llama9\" not found, try pulling it first",
            ),
            (
                br#"{"message":"Too many requests"}"#.to_vec(),
                e("Too many requests", None, None, None),
                "Too many requests",
            ),
            (
                br#"{"detail":"Not Found"}"#.to_vec(),
                e("Not Found", None, None, None),
                "Not Found",
            ),
            (
                br#"{"detail":[{"loc":["body","messages"],"msg":"field required","type":"value_error.missing"},{"loc":["body","model"],"msg":"str type expected","type":"type_error.str"}]}"#.to_vec(),
                e("field required; str type expected", None, None, None),
                "field required; str type expected",
            ),
            (
                br#"{"detail":{"reason":"x"}}"#.to_vec(),
                e(r#"{"reason":"x"}"#, None, None, None),
                r#"{"reason":"x"}"#,
            ),
            (
                br#"{"status":503}"#.to_vec(),
                e(r#"{"status":503}"#, None, None, None),
                r#"{"status":503}"#,
            ),
            (
                br#""overloaded""#.to_vec(),
                e("overloaded", None, None, None),
                "overloaded",
            ),
            (
                nginx.as_bytes().to_vec(),
                e("502 Bad Gateway nginx/1.25.3", None, None, None),
                "502 Bad Gateway nginx/1.25.3",
            ),
            (
                b"<html><head><title>Service Unavailable</title><style>body{x:1}</style></head><body><script>var a=1<2;</script></body></html>".to_vec(),
                e("Service Unavailable", None, None, None),
                "Service Unavailable",
            ),
            (
                b"<!DOCTYPE html><html><body><p>Upstream &amp; proxy&nbsp;failed</p><p>unterminated <b".to_vec(),
                e("Upstream & proxy failed unterminated", None, None, None),
                "Upstream & proxy failed unterminated",
            ),
            (
                b"upstream connect error or disconnect/reset before headers.\n  reset reason: overflow".to_vec(),
                e("upstream connect error or disconnect/reset before headers. reset reason: overflow", None, None, None),
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            ),
            (
                b"bad \xff\xfe bytes {".to_vec(),
                e("bad \u{fffd}\u{fffd} bytes {", None, None, None),
                "bad \u{fffd}\u{fffd} bytes {",
            ),
            (b"  \n ".to_vec(), e("empty error body", None, None, None), "empty error body"),
            (b"<br>".to_vec(), e("unreadable error body", None, None, None), "unreadable error body"),
            (
                br#"{"error":{"message":"cut"#.to_vec(),
                e(r#"{"error":{"message":"cut"#, None, None, None),
                r#"{"error":{"message":"cut"#,
            ),
        ];
        for (body, want, display) in cases {
            let got = ApiError::from_body(&body);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(&body));
            assert_eq!(got.to_string(), display);
        }
        let got = ApiError::from_body(long.as_bytes());
        assert_eq!(got.message.chars().count(), ApiError::MAX_SNIPPET_CHARS);
        assert!(got.message.ends_with("x x…"), "{}", got.message);
    }

    #[test]
    fn huge_error_objects_are_read_within_a_few_kib() {
        let zeros = format!("[{}0]", "0,".repeat(1_000_000));
        let long = "m".repeat(100_000);
        // (body, message, kind) — each body is megabytes; what is kept is bounded.
        let cases = [
            (
                format!(
                    r#"{{"junk":{zeros},"error":{{"junk":"{long}","message":"real","type":"t"}}}}"#
                ),
                "real".to_owned(),
                Some("t"),
            ),
            // A non-object error is shown as its JSON text, cut at the message length.
            (
                format!(r#"{{"error":{zeros}}}"#),
                format!("[{}0", "0,".repeat(999)),
                None,
            ),
            (
                format!(r#"{{"error":{{"message":"{long}","code":{zeros}}}}}"#),
                "m".repeat(ApiError::MAX_MESSAGE_CHARS),
                None,
            ),
            (
                format!(r#"{{"detail":"{long}"}}"#),
                "m".repeat(ApiError::MAX_MESSAGE_CHARS),
                None,
            ),
        ];
        for (body, message, kind) in cases {
            for got in [
                ApiError::from_body(body.as_bytes()),
                serde_json::from_str::<ApiError>(&body).expect("any JSON is an error"),
            ] {
                assert_eq!(got.message, message, "{}", &body[..40]);
                assert_eq!(got.kind.as_deref(), kind);
                assert!(got.to_string().len() <= 4 * ApiError::MAX_MESSAGE_CHARS + 200);
            }
        }
        // A body that is a bare array is shown as a text snippet; as JSON, as its text.
        let snippet = ApiError::from_body(zeros.as_bytes()).message;
        assert_eq!(snippet.chars().count(), ApiError::MAX_SNIPPET_CHARS);
        let parsed = serde_json::from_str::<ApiError>(&zeros).map(|e| e.message);
        assert_eq!(parsed.ok(), Some(format!("[{}0", "0,".repeat(999))));
        // The error of a stream chunk is read the same way; `null` is no error.
        let chunk: Option<crate::chat::ChunkRef<'_>> =
            serde_json::from_str(r#"{"error":null,"choices":[]}"#).ok();
        assert_eq!(chunk.map(|c| c.error), Some(None));
    }

    #[test]
    fn api_error_from_value() {
        let cases = [
            (
                json!({"message": "boom", "type": "server_error"}),
                "boom (type: server_error)",
            ),
            (
                json!({"error": {"message": "inner", "code": 500}}),
                "inner (code: 500)",
            ),
            (json!("plain"), "plain"),
            (json!(42), "42"),
            (json!({}), "{}"),
        ];
        for (v, want) in cases {
            assert_eq!(ApiError::from_value(&v).to_string(), want, "{v}");
        }
    }

    #[test]
    fn collapse_and_truncate_at_char_boundaries() {
        let cases = [
            ("  a \n\t b  ", 10, "a b"),
            ("héllo wörld", 11, "héllo wörld"),
            ("héllo wörld", 7, "héllo …"),
            ("abc", 0, "…"),
            ("", 5, ""),
        ];
        for (input, max, want) in cases {
            assert_eq!(collapse(input, max), want, "{input:?} {max}");
        }
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("é", 5), "é");
    }
}
