//! Universal Binary JSON (the `.ubj` files XGBoost writes and `mlflow.xgboost.log_model` logs by
//! default) decoded into JSON values, so one reader serves XGBoost's JSON and UBJSON models.
//! Hand-written: the format is a page of rules (ubjson.org, draft 12, with the optimized
//! `$type#count` containers XGBoost uses for its arrays), and no maintained crate reads it.

use serde_json::{Map, Number, Value};

use super::FlavorError;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Values decoded so far. `Z`, `T` and `F` take no bytes inside a typed container, so a
    /// count bounded by the file's length alone could still make a small file decode into
    /// billions of values: the whole document may hold at most as many values as it has bytes.
    values: usize,
}

fn bad(why: impl Into<String>) -> FlavorError {
    FlavorError::Format {
        format: "UBJSON",
        why: why.into(),
    }
}

/// Containers nested deeper than this are refused (a crafted file cannot exhaust the stack).
const MAX_DEPTH: usize = 64;

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FlavorError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| bad(format!("ends inside a value at byte {}", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, FlavorError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FlavorError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// An integer of the type `marker` names (a length or a count).
    fn integer(&mut self, marker: u8) -> Result<i64, FlavorError> {
        Ok(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array()?)),
            b'U' => i64::from(self.byte()?),
            b'I' => i64::from(i16::from_be_bytes(self.array()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            other => return Err(bad(format!("`{}` is not an integer type", other as char))),
        })
    }

    fn length(&mut self) -> Result<usize, FlavorError> {
        let marker = self.byte()?;
        let n = self.integer(marker)?;
        let n = usize::try_from(n).map_err(|_| bad(format!("negative length {n}")))?;
        // Every element takes at least a byte: a count beyond the file is a lie.
        if n > self.bytes.len() {
            return Err(bad(format!("length {n} exceeds the file")));
        }
        Ok(n)
    }

    fn text(&mut self) -> Result<String, FlavorError> {
        let n = self.length()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad("a string is not UTF-8"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, FlavorError> {
        let marker = self.byte()?;
        self.typed(marker, depth)
    }

    fn typed(&mut self, marker: u8, depth: usize) -> Result<Value, FlavorError> {
        self.values += 1;
        if self.values > self.bytes.len() {
            return Err(bad("more values than the file has bytes"));
        }
        let float = |f: f64| {
            Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| bad("a number is not finite"))
        };
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::from(self.integer(marker)?),
            b'd' => float(f64::from(f32::from_be_bytes(self.array()?)))?,
            b'D' => float(f64::from_be_bytes(self.array()?))?,
            b'C' => Value::String(char::from(self.byte()?).to_string()),
            b'S' | b'H' => Value::String(self.text()?),
            b'[' => self.container(depth, false)?,
            b'{' => self.container(depth, true)?,
            other => return Err(bad(format!("unknown type marker `{}`", other as char))),
        })
    }

    fn container(&mut self, depth: usize, object: bool) -> Result<Value, FlavorError> {
        if depth >= MAX_DEPTH {
            return Err(bad("nested too deep"));
        }
        let mut element_type = None;
        if self.peek() == Some(b'$') {
            self.at += 1;
            element_type = Some(self.byte()?);
        }
        let mut count = None;
        if self.peek() == Some(b'#') {
            self.at += 1;
            count = Some(self.length()?);
        } else if element_type.is_some() {
            return Err(bad("a typed container without a count"));
        }
        let mut items = Vec::new();
        let mut map = Map::new();
        let mut i = 0;
        loop {
            match count {
                Some(n) if i == n => break,
                None => {
                    while self.peek() == Some(b'N') {
                        self.at += 1;
                    }
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.at += 1;
                        break;
                    }
                }
                _ => {}
            }
            let key = if object { Some(self.text()?) } else { None };
            let value = match element_type {
                Some(t) => self.typed(t, depth + 1)?,
                None => self.value(depth + 1)?,
            };
            match key {
                Some(k) => {
                    map.insert(k, value);
                }
                None => items.push(value),
            }
            i += 1;
        }
        Ok(if object {
            Value::Object(map)
        } else {
            Value::Array(items)
        })
    }
}

/// The JSON value a UBJSON document holds; bytes after it are refused.
pub fn decode(bytes: &[u8]) -> Result<Value, FlavorError> {
    let mut reader = Reader {
        bytes,
        at: 0,
        values: 0,
    };
    let value = reader.value(0)?;
    if reader.at != bytes.len() {
        return Err(bad(format!(
            "{} bytes after the document",
            bytes.len() - reader.at
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_typed_arrays_and_numbers_decode() {
        // {"a": [1.5f32, -2.0f32] (typed, counted), "b": "xy", "c": true, "d": int16 -300}
        let mut doc = vec![b'{', b'i', 1, b'a', b'[', b'$', b'd', b'#', b'i', 2];
        doc.extend(1.5f32.to_be_bytes());
        doc.extend((-2.0f32).to_be_bytes());
        doc.extend([b'i', 1, b'b', b'S', b'i', 2, b'x', b'y']);
        doc.extend([b'i', 1, b'c', b'T']);
        doc.extend([b'i', 1, b'd', b'I']);
        doc.extend((-300i16).to_be_bytes());
        doc.push(b'}');
        let v = decode(&doc).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1.5, -2.0], "b": "xy", "c": true, "d": -300})
        );
    }

    #[test]
    fn truncated_and_hostile_documents_are_refused() {
        assert!(decode(b"{i\x01a[$d#i\x05").is_err());
        assert!(decode(b"[#L\x7f\xff\xff\xff\xff\xff\xff\xff").is_err());
        assert!(decode(&[b'['; 200]).is_err());
        assert!(decode(b"Tx").is_err());
        // 1000 nulls from an 11-byte header: more values than bytes.
        assert!(decode(b"[$Z#I\x03\xe8").is_err());
    }
}
