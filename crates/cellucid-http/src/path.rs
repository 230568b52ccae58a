//! Decoding request paths. Anything odd is refused here and answered 404.

/// Percent-decodes a request path. Refuses (returns `None`) a path that does
/// not start with `/`, has a bad escape, encodes a separator (`%2F`, `%5C`),
/// holds a backslash or a control character (NUL included) once decoded, or
/// is not UTF-8.
pub(crate) fn decode(raw: &str) -> Option<String> {
    if !raw.starts_with('/') || raw.contains('\\') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            let decoded = hi << 4 | lo;
            if matches!(decoded, b'/' | b'\\') {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    if text.chars().any(char::is_control) {
        return None;
    }
    Some(text)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_ordinary_escapes() {
        assert_eq!(
            decode("/_cellucid/%68ealth").as_deref(),
            Some("/_cellucid/health")
        );
        assert_eq!(decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(decode("/%e2%80%94").as_deref(), Some("/\u{2014}"));
    }

    #[test]
    fn refuses_hostile_paths() {
        for raw in [
            "", "x", "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%00", "/a%0a", "/a%", "/a%4",
            "/a%zz", "/%ff",
        ] {
            assert_eq!(decode(raw), None, "{raw}");
        }
        // Traversal decodes, and is refused later by the key rules.
        assert_eq!(decode("/%2e%2e/x").as_deref(), Some("/../x"));
    }
}
