//! JSON written the way Python's `json.dumps` writes it (`", "` and `": "`
//! separators, non-ASCII escaped), so synthesised manifests read like the
//! 0.9.4 server's. Floats use the shortest round-trip form, as `repr` does.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                let mut buf = [0u8; 1];
                w.write_all(c.encode_utf8(&mut buf).as_bytes())?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(py_float(value).as_bytes())
    }
}

/// Python's `repr` of a finite float: shortest round-trip digits, `.0` on
/// integral values, exponent form outside `[1e-4, 1e16)`.
fn py_float(value: f64) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    let abs = value.abs();
    if (1e-4..1e16).contains(&abs) {
        let text = format!("{value}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        // Rust: 1e-5 / 1.5e20; Python: 1e-05 / 1.5e+20.
        let text = format!("{value:e}");
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    }
}

/// Serialises `value` as Python's `json.dumps(value)` would.
pub(crate) fn to_vec(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    // Serialising plain JSON values into a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_json_dumps() {
        let v = serde_json::json!({"a": [1, 2.0, 1e-5, 0.5], "b": "\u{2014}", "c": null});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"a": [1, 2.0, 1e-05, 0.5], "b": "\u2014", "c": null}"#
        );
        assert_eq!(py_float(1.5e20), "1.5e+20");
        assert_eq!(py_float(-0.20000000298023224), "-0.20000000298023224");
    }
}
