//! A tiny ordered JSON tree and writer for message plaintexts.
//!
//! Why not `serde_json`: the plaintexts must keep Tencent's key order (FORMAT.md examples), embed
//! JSON *text* as string values (`mixed`/`chatrecord` item `content`), and some strings must carry
//! raw, unescaped control characters, which real archives contain and which make the JSON
//! technically invalid (RUST-NOTES.md §7.5). `serde_json` can do none of these.

/// A JSON value with ordered object keys.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer (uint64 ids such as `meetingid` must not pass through a float).
    UInt(u64),
    /// A float, printed with at most 6 decimals (longitude/latitude).
    Float(f64),
    /// `true`/`false`.
    Bool(bool),
    /// A string, escaped normally (non-ASCII stays raw UTF-8, as Tencent sends it).
    Str(String),
    /// A string whose control characters (U+0001..U+001F) are written raw, unescaped.
    Raw(String),
    /// An array.
    Arr(Vec<J>),
    /// An object with keys in insertion order.
    Obj(Vec<(&'static str, J)>),
    /// A value rendered to JSON text and embedded as a string (`item[].content`).
    Nested(Box<J>),
}

impl J {
    /// Shorthand for [`J::Str`].
    pub fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    /// Renders to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        self.write(&mut out);
        out.into_bytes()
    }

    /// Renders to a string.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Appends the JSON text to `out`.
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            J::Int(v) => {
                let _ = write!(out, "{v}");
            }
            J::UInt(v) => {
                let _ = write!(out, "{v}");
            }
            J::Float(v) => {
                let r = (v * 1e6).round() / 1e6;
                if r.fract() == 0.0 {
                    let _ = write!(out, "{r:.1}");
                } else {
                    let _ = write!(out, "{r}");
                }
            }
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Str(s) => escape(s, false, out),
            J::Raw(s) => escape(s, true, out),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    escape(k, false, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
            J::Nested(inner) => escape(&inner.render(), false, out),
        }
    }
}

/// Writes a quoted JSON string. With `raw_controls`, U+0001..U+001F go out unescaped.
fn escape(s: &str, raw_controls: bool, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if raw_controls && c != '\0' && (c as u32) < 0x20 => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_order_and_nests() {
        let v = J::Obj(vec![
            ("b", J::Int(-1)),
            ("a", J::s("中\"\n\u{1}")),
            ("f", J::Float(121.473701)),
            ("g", J::Float(3.0)),
            ("n", J::Nested(Box::new(J::Obj(vec![("x", J::s("y\n"))])))),
            ("u", J::UInt(u64::MAX)),
        ]);
        let s = v.render();
        assert_eq!(
            s,
            r#"{"b":-1,"a":"中\"\n\u0001","f":121.473701,"g":3.0,"n":"{\"x\":\"y\\n\"}","u":18446744073709551615}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&s).unwrap();
        let inner: serde_json::Value = serde_json::from_str(parsed["n"].as_str().unwrap()).unwrap();
        assert_eq!(inner["x"], "y\n");
    }

    #[test]
    fn raw_controls_are_invalid_json() {
        let s = J::Obj(vec![("t", J::Raw("a\u{1}b\u{1f}".into()))]).render();
        assert_eq!(s.as_bytes(), b"{\"t\":\"a\x01b\x1f\"}");
        assert!(serde_json::from_str::<serde_json::Value>(&s).is_err());
    }
}
