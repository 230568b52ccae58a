//! `Range` and conditional-request decisions for file responses (pure).
//!
//! We follow the Python reference's 416 cases exactly, except that a
//! multi-range or another unit gets the full 200: RFC 9110 lets a server
//! ignore such a `Range`, and the reference's 416 there is a bug.

use std::ops::Range;

use http::header::{self, HeaderMap};

/// What to send for a request given the file's size and ETag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 with the whole file.
    Full,
    /// 206 with these bytes.
    Partial(Range<u64>),
    /// 416 (`Content-Range: bytes */size`).
    Unsatisfiable,
}

/// Decides between 304, 200, 206 and 416.
pub(crate) fn select(headers: &HeaderMap, size: u64, etag: &str) -> Selection {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        if if_none_match_hits(value.as_bytes(), etag) {
            return Selection::NotModified;
        }
    }
    let mut ranges = headers.get_all(header::RANGE).iter();
    let Some(range) = ranges.next() else {
        return Selection::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        // Only a strong ETag match keeps the Range; a date or weak tag never does.
        if if_range.as_bytes().trim_ascii() != etag.as_bytes() {
            return Selection::Full;
        }
    }
    if ranges.next().is_some() {
        return Selection::Unsatisfiable;
    }
    parse_range(range.as_bytes(), size)
}

/// `If-None-Match`: a list of tags, compared weakly (`W/` ignored), or `*`.
pub(crate) fn if_none_match_hits(value: &[u8], etag: &str) -> bool {
    value.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == b"*" || tag == etag.as_bytes()
    })
}

/// One `Range` header value against a file of `size` bytes.
fn parse_range(value: &[u8], size: u64) -> Selection {
    let Some(spec) = value.strip_prefix(b"bytes=") else {
        // Another unit: ignore the header.
        return Selection::Full;
    };
    if spec.contains(&b',') {
        // A multi-range: ignore the header and send everything.
        return Selection::Full;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Selection::Unsatisfiable;
    };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return Selection::Unsatisfiable;
    };
    if size == 0 {
        return Selection::Unsatisfiable;
    }
    match (first, last) {
        (Some(start), Some(end)) if start < size && end >= start => {
            Selection::Partial(start..end.min(size - 1) + 1)
        }
        (Some(start), None) if start < size => Selection::Partial(start..size),
        (None, Some(suffix)) if suffix > 0 => Selection::Partial(size - suffix.min(size)..size),
        _ => Selection::Unsatisfiable,
    }
}

/// Up to 20 ASCII digits: `Some(None)` when empty, `None` when malformed.
fn number(digits: &[u8]) -> Option<Option<u64>> {
    if digits.is_empty() {
        return Some(None);
    }
    if digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const ETAG: &str = "\"a-b-c\"";

    fn sel(pairs: &[(&str, &str)], size: u64) -> Selection {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        select(&headers, size, ETAG)
    }

    fn range(value: &str, size: u64) -> Selection {
        sel(&[("range", value)], size)
    }

    #[test]
    fn single_ranges() {
        use Selection::*;
        assert_eq!(range("bytes=0-9", 100), Partial(0..10));
        assert_eq!(range("bytes=90-200", 100), Partial(90..100));
        assert_eq!(range("bytes=5-", 100), Partial(5..100));
        assert_eq!(range("bytes=-10", 100), Partial(90..100));
        assert_eq!(range("bytes=-500", 100), Partial(0..100));
        assert_eq!(range("bytes=99-99", 100), Partial(99..100));
    }

    #[test]
    fn the_reference_416_cases() {
        for value in [
            "bytes=5-2",
            "bytes=-",
            "bytes=-0",
            "bytes=100-",
            "bytes=100-200",
            "bytes=a-b",
            "bytes= 0-1",
            "bytes=0-1 ",
            "bytes=1",
            "bytes=123456789012345678901-",
        ] {
            assert_eq!(range(value, 100), Selection::Unsatisfiable, "{value}");
        }
        assert_eq!(range("bytes=0-0", 0), Selection::Unsatisfiable);
        assert_eq!(
            sel(&[("range", "bytes=0-1"), ("range", "bytes=2-3")], 100),
            Selection::Unsatisfiable
        );
    }

    #[test]
    fn multi_range_and_other_units_get_the_whole_file() {
        assert_eq!(range("bytes=0-1,4-5", 100), Selection::Full);
        assert_eq!(range("items=0-1", 100), Selection::Full);
    }

    #[test]
    fn conditionals() {
        use Selection::*;
        assert_eq!(sel(&[("if-none-match", ETAG)], 10), NotModified);
        assert_eq!(
            sel(&[("if-none-match", "\"x\", W/\"a-b-c\"")], 10),
            NotModified
        );
        assert_eq!(sel(&[("if-none-match", "*")], 10), NotModified);
        assert_eq!(sel(&[("if-none-match", "\"x\"")], 10), Full);
        // If-None-Match wins over Range.
        assert_eq!(
            sel(&[("if-none-match", ETAG), ("range", "bytes=0-1")], 10),
            NotModified
        );
        assert_eq!(
            sel(&[("if-range", ETAG), ("range", "bytes=0-1")], 10),
            Partial(0..2)
        );
        assert_eq!(
            sel(&[("if-range", "\"old\""), ("range", "bytes=0-1")], 10),
            Full
        );
        assert_eq!(
            sel(&[("if-range", "W/\"a-b-c\""), ("range", "bytes=0-1")], 10),
            Full
        );
        assert_eq!(
            sel(
                &[
                    ("if-range", "Wed, 21 Oct 2015 07:28:00 GMT"),
                    ("range", "bytes=0-1")
                ],
                10
            ),
            Full
        );
        // A mismatching If-Range turns even a malformed Range into a 200.
        assert_eq!(
            sel(&[("if-range", "\"old\""), ("range", "bytes=5-2")], 10),
            Full
        );
    }
}
