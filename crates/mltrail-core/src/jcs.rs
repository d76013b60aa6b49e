//! RFC 8785 (JSON Canonicalization Scheme): object keys sorted by UTF-16 code units, every
//! number written as the IEEE double it denotes (ECMAScript's shortest form), strings escaped
//! as JSON requires and nothing more, no whitespace. Any JCS implementation rebuilds the same
//! bytes from the same JSON, so others can recompute a hash over them.
//!
//! Hand-written, twice: [`of_value`] for a `serde_json::Value`, and [`of_text`], which
//! canonicalizes JSON text without building a tree. serde_json_canonicalizer took 5.5 µs per
//! prediction record (it re-sorts every object in maps of its own), and going through a
//! `Value` costs 2.5 µs more to build it; archiving hashes every record
//! (`cargo run --release -p mltrail-serving --example segment_leaves`). Property tests check
//! both against that crate on arbitrary values.

use serde_json::Value;

/// ECMAScript's largest integer that every double below it holds exactly: integers up to it
/// are written as themselves, larger ones as the double they round to.
const EXACT_INTEGERS: u64 = 1 << 53;

/// JSON text that could not be canonicalized: not JSON, or a number no double holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not canonicalizable JSON at byte {at}: {what}")]
pub struct JcsError {
    pub at: usize,
    pub what: &'static str,
}

/// RFC 8785 bytes of a value.
pub fn of_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64().filter(|u| *u <= EXACT_INTEGERS) {
                write_integer(u, false, out);
            } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= EXACT_INTEGERS) {
                write_integer(i.unsigned_abs(), i < 0, out);
            } else {
                // A serde_json number is always finite.
                write_double(n.as_f64().unwrap_or(0.0), out);
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // A map iterates in byte order, which is UTF-16 order for ASCII keys.
            if !keys.iter().all(|k| k.is_ascii()) {
                keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            }
            out.push(b'{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(&map[*key], out);
            }
            out.push(b'}');
        }
    }
}

fn write_integer(magnitude: u64, negative: bool, out: &mut Vec<u8>) {
    if negative && magnitude != 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut n = magnitude;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_double(x: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(x).as_bytes());
}

/// serde_json escapes exactly what RFC 8785 escapes, as RFC 8785 spells it (the property tests
/// check it over arbitrary Unicode).
fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// RFC 8785 bytes of JSON text (what serde_json writes or accepts), without building a tree.
pub fn of_text(text: &[u8]) -> Result<Vec<u8>, JcsError> {
    let mut reader = Reader { text, at: 0 };
    let mut out = Vec::with_capacity(text.len());
    reader.value(&mut out)?;
    reader.skip_space();
    if reader.at != text.len() {
        return Err(reader.error("text after the value"));
    }
    Ok(out)
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &'static str) -> JcsError {
        JcsError { at: self.at, what }
    }

    fn skip_space(&mut self) {
        while matches!(self.text.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Result<u8, JcsError> {
        self.skip_space();
        self.text
            .get(self.at)
            .copied()
            .ok_or_else(|| self.error("unexpected end"))
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JcsError> {
        if self.peek()? != byte {
            return Err(self.error(what));
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, out: &mut Vec<u8>) -> Result<(), JcsError> {
        match self.peek()? {
            b'{' => self.object(out),
            b'[' => {
                self.at += 1;
                out.push(b'[');
                if self.peek()? == b']' {
                    self.at += 1;
                    out.push(b']');
                    return Ok(());
                }
                loop {
                    self.value(out)?;
                    match self.peek()? {
                        b',' => {
                            self.at += 1;
                            out.push(b',');
                        }
                        b']' => {
                            self.at += 1;
                            out.push(b']');
                            return Ok(());
                        }
                        _ => return Err(self.error("`,` or `]` expected")),
                    }
                }
            }
            b'"' => {
                let s = self.string()?;
                write_string(&s, out);
                Ok(())
            }
            b't' => self.literal(b"true", out),
            b'f' => self.literal(b"false", out),
            b'n' => self.literal(b"null", out),
            _ => self.number(out),
        }
    }

    fn literal(&mut self, word: &'static [u8], out: &mut Vec<u8>) -> Result<(), JcsError> {
        if !self.text[self.at..].starts_with(word) {
            return Err(self.error("not a JSON literal"));
        }
        self.at += word.len();
        out.extend_from_slice(word);
        Ok(())
    }

    /// An object's members are canonicalized into one scratch buffer, then written in key
    /// order: no allocation per member.
    fn object(&mut self, out: &mut Vec<u8>) -> Result<(), JcsError> {
        self.at += 1;
        let mut scratch = Vec::new();
        // (key, start and end of the member's value in `scratch`)
        let mut members: Vec<(std::borrow::Cow<'a, str>, usize, usize)> = Vec::new();
        if self.peek()? == b'}' {
            self.at += 1;
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        loop {
            if self.peek()? != b'"' {
                return Err(self.error("a key expected"));
            }
            let key = self.string()?;
            self.expect(b':', "`:` expected")?;
            let start = scratch.len();
            self.value(&mut scratch)?;
            members.push((key, start, scratch.len()));
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.error("`,` or `}` expected")),
            }
        }
        if members.iter().all(|(k, ..)| k.is_ascii()) {
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        } else {
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        }
        // RFC 8785 canonicalizes I-JSON, whose object names are unique: with two values for
        // one name there is no one canonical form.
        if members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(self.error("a key twice in one object"));
        }
        out.push(b'{');
        for (i, (key, start, end)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(key, out);
            out.push(b':');
            out.extend_from_slice(&scratch[*start..*end]);
        }
        out.push(b'}');
        Ok(())
    }

    /// A string's content, unescaped (borrowed when it holds no escapes).
    fn string(&mut self) -> Result<std::borrow::Cow<'a, str>, JcsError> {
        let start = self.at + 1;
        let mut end = start;
        let mut escaped = false;
        loop {
            match self.text.get(end) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(0..=0x1f) => {
                    self.at = end;
                    return Err(self.error("a control character in a string (JSON escapes them)"));
                }
                Some(b'\\') => {
                    escaped = true;
                    end += 2;
                }
                Some(_) => end += 1,
            }
        }
        let text: &'a [u8] = self.text;
        let raw = &text[self.at..=end];
        self.at = end + 1;
        if !escaped {
            return std::str::from_utf8(&raw[1..raw.len() - 1])
                .map(std::borrow::Cow::Borrowed)
                .map_err(|_| self.error("a string is not UTF-8"));
        }
        serde_json::from_slice::<String>(raw)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| self.error("a string's escapes are not JSON's"))
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), JcsError> {
        let start = self.at;
        while matches!(
            self.text.get(self.at),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        let token = &self.text[start..self.at];
        let text = std::str::from_utf8(token).map_err(|_| self.error("not a number"))?;
        if text.is_empty() {
            return Err(self.error("a value expected"));
        }
        if !json_number(token) {
            return Err(JcsError {
                at: start,
                what: "not a JSON number",
            });
        }
        // Plain integers within 2^53 are written as themselves (a quick path); anything else
        // as the double it denotes.
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if !digits.is_empty() && digits.len() <= 16 && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(u) = digits.parse::<u64>() {
                if u <= EXACT_INTEGERS {
                    write_integer(u, negative, out);
                    return Ok(());
                }
            }
        }
        let x: f64 = text.parse().map_err(|_| JcsError {
            at: start,
            what: "not a number",
        })?;
        if !x.is_finite() {
            return Err(JcsError {
                at: start,
                what: "a number no double holds",
            });
        }
        write_double(x, out);
        Ok(())
    }
}

/// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` (Rust's
/// float parser also takes `+1`, `.5`, `1.` and `01`, which are not JSON).
fn json_number(token: &[u8]) -> bool {
    let digits = |t: &[u8]| t.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut t = token.strip_prefix(b"-").unwrap_or(token);
    match digits(t) {
        0 => return false,
        n if n > 1 && t[0] == b'0' => return false,
        n => t = &t[n..],
    }
    if let Some(rest) = t.strip_prefix(b".") {
        match digits(rest) {
            0 => return false,
            n => t = &rest[n..],
        }
    }
    if let Some(rest) = t.strip_prefix(b"e").or_else(|| t.strip_prefix(b"E")) {
        let rest = rest
            .strip_prefix(b"+")
            .or_else(|| rest.strip_prefix(b"-"))
            .unwrap_or(rest);
        match digits(rest) {
            0 => return false,
            n => t = &rest[n..],
        }
    }
    t.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Value::from),
            prop_oneof![
                Just(1e21),
                Just(1e-7),
                Just(0.000001),
                Just(123e-20),
                Just(-0.0),
                Just(9007199254740993.0)
            ]
            .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Both writers agree with an independent implementation on any value: nested
        /// objects, keys in any script, integers past 2^53, every double; the text one reads
        /// compact and pretty JSON alike.
        #[test]
        fn both_writers_agree_with_an_independent_implementation(value in json_value()) {
            let want = serde_json_canonicalizer::to_string(&value).unwrap();
            prop_assert_eq!(String::from_utf8(of_value(&value)).unwrap(), want.clone());
            let compact = serde_json::to_vec(&value).unwrap();
            prop_assert_eq!(String::from_utf8(of_text(&compact).unwrap()).unwrap(), want.clone());
            let pretty = serde_json::to_vec_pretty(&value).unwrap();
            prop_assert_eq!(String::from_utf8(of_text(&pretty).unwrap()).unwrap(), want);
        }
    }

    #[test]
    fn numbers_are_doubles_and_integers_stay_integers() {
        let text = br#"{"b": 1.50, "a": [1e2, -0, 10000000000000000, 12345678901234567890, 1E-7, 0.000001]}"#;
        assert_eq!(
            String::from_utf8(of_text(text).unwrap()).unwrap(),
            r#"{"a":[100,0,10000000000000000,12345678901234567000,1e-7,0.000001],"b":1.5}"#
        );
    }

    #[test]
    fn text_that_is_not_json_is_refused_with_its_place() {
        assert_eq!(of_text(b"{\"a\" 1}").unwrap_err().what, "`:` expected");
        assert_eq!(of_text(b"[1, 2").unwrap_err().what, "unexpected end");
        assert_eq!(
            of_text(b"1e999").unwrap_err().what,
            "a number no double holds"
        );
        assert!(of_text(b"{} x").is_err());
        for not_json in ["+1", ".5", "1.", "01", "-", "1e", "1e+", "--1", "0x10"] {
            assert!(of_text(not_json.as_bytes()).is_err(), "{not_json}");
        }
        for json in ["0", "-0", "1.5", "1e5", "1E-5", "-0.0e+1", "10"] {
            assert!(of_text(json.as_bytes()).is_ok(), "{json}");
        }
        assert_eq!(
            of_text(br#"{"a": 1, "b": 2, "a": 3}"#).unwrap_err().what,
            "a key twice in one object"
        );
        assert!(of_text(b"\"a\tb\"").is_err(), "a raw tab in a string");
        assert_eq!(of_text(br#""a\tb""#).unwrap(), br#""a\tb""#);
    }
}
