//! JSON read from a server without letting its size decide our memory.
//!
//! A `serde_json::Value` costs 16–30 times the text it is built from (`[0,0,…]` of 6 MB is
//! over 100 MiB of `Value`s), so nothing a server sends is built as a `Value` of unbounded
//! size. Two tools cover what must be kept:
//!
//! - [`Capped`] builds a `Value` only while it fits in a byte room (counted as compact JSON
//!   text): strings are cut to fit, array elements and object entries that do not fit are
//!   dropped, and everything after is skipped without being built. For what is shown or
//!   kept but never needed whole: error objects, `usage` fields we do not know.
//! - [`JsonText`] writes a value back as compact JSON text, never as a `Value`: tool-call
//!   arguments a server sent as an object instead of a string (their size is bounded by the
//!   body limit; the text is no larger than the input).
//!
//! Both consume their whole input, so the surrounding document parses on.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt::{self, Write as _};

/// The compact JSON text length of a number (what [`Capped`] charges for it).
fn number_len(n: &Number) -> usize {
    if let Some(u) = n.as_u64() {
        u.checked_ilog10().map_or(1, |d| d as usize + 1)
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs()
            .checked_ilog10()
            .map_or(1, |d| d as usize + 1)
            + 1
    } else {
        // A float: ryu's shortest form is at most 24 bytes.
        24
    }
}

/// The compact JSON text length of `v`, escapes not counted: what a capped value costs, and
/// what holding it is charged against a response budget.
pub(crate) fn json_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(b) => 4 + usize::from(!b),
        Value::Number(n) => number_len(n),
        Value::String(s) => s.len() + 2,
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(json_len).sum::<usize>()
        }
        Value::Object(map) => {
            2 + map.len().saturating_sub(1)
                + map
                    .iter()
                    .map(|(k, v)| k.len() + 3 + json_len(v))
                    .sum::<usize>()
        }
    }
}

/// Builds a `Value` within `room` bytes (see the module docs). Yields `None` when not even a
/// shortened value fits; the input is consumed either way. `room` is decreased by what the
/// value costs.
pub(crate) struct Capped<'r> {
    pub room: &'r mut usize,
}

/// Shortest text worth keeping of a string that does not fit whole.
const MIN_STRING_KEPT: usize = 16;

impl Capped<'_> {
    /// Charges `cost` if it fits.
    fn take(&mut self, cost: usize) -> bool {
        match self.room.checked_sub(cost) {
            Some(left) => {
                *self.room = left;
                true
            }
            None => false,
        }
    }

    fn string(&mut self, s: &str) -> Option<Value> {
        if self.take(s.len() + 2) {
            return Some(Value::String(s.to_owned()));
        }
        // Keep a cut prefix, marked, if a useful one fits.
        let keep = self.room.checked_sub(2 + '…'.len_utf8())?;
        if keep < MIN_STRING_KEPT {
            return None;
        }
        let mut end = keep.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut cut = String::with_capacity(end + '…'.len_utf8());
        cut.push_str(&s[..end]);
        cut.push('…');
        *self.room -= cut.len() + 2;
        Some(Value::String(cut))
    }

    fn scalar(&mut self, v: Value) -> Option<Value> {
        self.take(json_len(&v)).then_some(v)
    }
}

impl<'de> DeserializeSeed<'de> for Capped<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Capped<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Self::Value, E> {
        Ok(self.scalar(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Self::Value, E> {
        Ok(self.string(v))
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<Self::Value, E> {
        Ok(self.scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.take(2) {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        let mut items = Vec::new();
        let mut full = false;
        loop {
            if full {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                continue;
            }
            // Room for the comma before every element but the first.
            let comma = usize::from(!items.is_empty());
            let mut room = self.room.saturating_sub(comma);
            match seq.next_element_seed(Capped { room: &mut room })? {
                None => break,
                Some(Some(item)) => {
                    *self.room = room;
                    items.push(item);
                }
                Some(None) => full = true,
            }
            if *self.room == 0 {
                full = true;
            }
        }
        Ok(Some(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        if !self.take(2) {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeyWithin { room: *self.room })? {
            let Some(key) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let overhead = key.len() + 3 + usize::from(!out.is_empty());
            let Some(mut room) = self.room.checked_sub(overhead) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if let Some(value) = map.next_value_seed(Capped { room: &mut room })? {
                *self.room = room;
                out.insert(key, value);
            }
        }
        Ok(Some(Value::Object(out)))
    }
}

/// An object key, owned only if it (with its quotes and colon) fits in `room`; a longer one
/// is skipped unbuilt.
pub(crate) struct KeyWithin {
    pub room: usize,
}

impl<'de> DeserializeSeed<'de> for KeyWithin {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyWithin {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((v.len() + 3 <= self.room).then(|| v.to_owned()))
    }
}

/// Writes the visited value as compact JSON text into `out` (object keys in input order).
pub(crate) struct JsonText<'o> {
    pub out: &'o mut String,
}

impl<'de> DeserializeSeed<'de> for JsonText<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonText<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match Number::from_f64(v) {
            Some(n) => {
                let _ = write!(self.out, "{n}");
            }
            None => self.out.push_str("null"),
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        push_json_string(self.out, v);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push('[');
        let mut first = true;
        loop {
            let mark = self.out.len();
            if !first {
                self.out.push(',');
            }
            if seq.next_element_seed(JsonText { out: self.out })?.is_none() {
                self.out.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.push(']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.out.push('{');
        let mut first = true;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !first {
                self.out.push(',');
            }
            first = false;
            push_json_string(self.out, &key);
            self.out.push(':');
            map.next_value_seed(JsonText { out: self.out })?;
        }
        self.out.push('}');
        Ok(())
    }
}

/// `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn capped(text: &str, room: usize) -> (Option<Value>, usize) {
        let mut left = room;
        let mut de = serde_json::Deserializer::from_str(text);
        let v = Capped { room: &mut left }
            .deserialize(&mut de)
            .expect("valid JSON");
        de.end().expect("whole input consumed");
        (v, left)
    }

    #[test]
    fn capped_values_keep_what_fits() {
        let long = "x".repeat(100);
        let cases: Vec<(String, usize, Option<Value>)> = vec![
            ("null".into(), 10, Some(json!(null))),
            ("null".into(), 3, None),
            ("true".into(), 4, Some(json!(true))),
            ("false".into(), 4, None),
            ("12345".into(), 5, Some(json!(12345))),
            ("-12".into(), 3, Some(json!(-12))),
            ("1.5".into(), 30, Some(json!(1.5))),
            (r#""abc""#.into(), 5, Some(json!("abc"))),
            // Cut strings keep a marked prefix when at least 16 bytes fit.
            (
                format!("\"{long}\""),
                40,
                Some(json!(format!("{}…", "x".repeat(35)))),
            ),
            (format!("\"{long}\""), 20, None),
            ("[1,2,3]".into(), 7, Some(json!([1, 2, 3]))),
            ("[1,2,3]".into(), 5, Some(json!([1, 2]))),
            ("[1,2,3]".into(), 1, None),
            (r#"[1,[2,3],4]"#.into(), 6, Some(json!([1, []]))),
            (r#"{"a":1,"b":2}"#.into(), 13, Some(json!({"a":1,"b":2}))),
            (r#"{"a":1,"b":2}"#.into(), 12, Some(json!({"a":1}))),
            (
                r#"{"big":[1,2,3,4,5,6,7,8,9],"c":1}"#.into(),
                16,
                Some(json!({"big":[1,2,3]})),
            ),
            // An entry that does not fit is dropped; a later one that fits is kept.
            (r#"{"aaaaaaaaaa":1,"b":2}"#.into(), 10, Some(json!({"b":2}))),
            (
                r#"{"a":{"b":{"c":[1,2]}}}"#.into(),
                100,
                Some(json!({"a":{"b":{"c":[1,2]}}})),
            ),
        ];
        for (text, room, want) in cases {
            let (got, left) = capped(&text, room);
            assert_eq!(got, want, "{text} in {room}");
            let used = got.as_ref().map_or(0, json_len);
            assert!(used <= room, "{text}: {used} > {room}");
            assert_eq!(room - left, used, "{text}: charged what it kept");
        }
    }

    #[test]
    fn capped_consumes_huge_input_without_building_it() {
        // `capped` checks that the whole input was consumed.
        let text = format!(
            r#"{{"message":"kept","error":[{}0]}}"#,
            "0,".repeat(200_000)
        );
        let (got, _) = capped(&text, 64);
        let got = got.expect("an object");
        assert_eq!(got["message"], json!("kept"));
        let zeros = got["error"].as_array().map_or(0, Vec::len);
        assert!(zeros < 32, "{zeros} elements kept");
    }

    #[test]
    fn json_text_rewrites_any_value_compactly() {
        let cases = [
            (
                r#"{"a" : [1, 2.5, -3, true, null, "x\"y\n\u0001é"], "b": {}}"#,
                r#"{"a":[1,2.5,-3,true,null,"x\"y\n\u0001é"],"b":{}}"#,
            ),
            ("[]", "[]"),
            ("[[],{}]", "[[],{}]"),
            (r#""plain""#, r#""plain""#),
            (r#"{"z":1,"a":2}"#, r#"{"z":1,"a":2}"#),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            let mut de = serde_json::Deserializer::from_str(input);
            JsonText { out: &mut out }
                .deserialize(&mut de)
                .expect("valid JSON");
            assert_eq!(out, want, "{input}");
            // The text is valid JSON with the same meaning.
            let back: Value = serde_json::from_str(&out).expect("valid output");
            let orig: Value = serde_json::from_str(input).expect("valid input");
            assert_eq!(back, orig);
        }
    }

    #[test]
    fn json_len_is_the_compact_text_length_without_escapes() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(9),
            json!(10),
            json!(u64::MAX),
            json!(-1),
            json!(i64::MIN),
            json!("abc"),
            json!([]),
            json!([1, "a", [2]]),
            json!({}),
            json!({"k":[1,2],"l":{"m":null}}),
        ] {
            assert_eq!(json_len(&v), v.to_string().len(), "{v}");
        }
    }
}
