//! Property tests of [`RelativeKey`], the last step of the request-path
//! canonicaliser (docs/FUZZING.md): whatever it accepts stays under the
//! dataset's root on every platform, and a key's text parses back to itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns may panic

use std::path::{Component, Path};

use cellucid_core::RelativeKey;
use proptest::prelude::*;

/// Segments built from what path attacks are made of.
fn hostile_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "..",
            ".",
            "",
            "...",
            ". .",
            ".. ",
            "CON",
            "con.txt",
            "LPT1",
            "COM9.json",
            "a:b",
            "c:",
            "a\\..",
            "x\u{0}",
            "x\n",
            ".zarray",
            ".env",
            "x.",
            "x ",
            "\u{202e}",
            "..\u{2215}",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9._ -]{1,12}",
        any::<String>(),
    ]
}

/// The promises of an accepted key.
fn assert_confined(key: &RelativeKey) {
    let text = key.as_str();
    assert!(!text.is_empty() && text.len() <= RelativeKey::MAX_LEN);
    assert!(!text.starts_with('/'));
    for segment in key.segments() {
        assert!(!matches!(segment, "" | "." | ".."), "{text:?}");
        assert!(!segment.ends_with('.'), "{text:?}");
        assert!(
            !segment
                .chars()
                .any(|c| c.is_control() || "\\<>:\"|?*".contains(c)),
            "{text:?}"
        );
    }
    let root = Path::new("/srv/dataset");
    let rest = root.join(text);
    let rest = rest.strip_prefix(root).expect("joined under the root");
    assert!(
        rest.components().all(|c| matches!(c, Component::Normal(_))),
        "{text:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn accepted_keys_stay_under_the_root(segments in prop::collection::vec(hostile_segment(), 1..6)) {
        let text = segments.join("/");
        if let Ok(key) = RelativeKey::parse(&text) {
            assert_confined(&key);
            prop_assert!(!key.segments().any(|s| s.starts_with('.')), "dot-file {:?}", text);
        }
        if let Ok(key) = RelativeKey::parse_allowing(&text, &[".zarray", ".zattrs"]) {
            assert_confined(&key);
        }
    }

    #[test]
    fn any_string_is_a_safe_key_input(text in any::<String>()) {
        if let Ok(key) = RelativeKey::parse(&text) {
            assert_confined(&key);
        }
    }

    #[test]
    fn keys_round_trip_through_their_text(segments in prop::collection::vec("[a-z0-9_-]{1,8}(\\.[a-z0-9]{1,4})?", 1..5)) {
        let text = segments.join("/");
        let key = RelativeKey::parse(&text);
        // Lower-case letters, digits, `_` and `-` with an extension: valid
        // unless a segment is a Windows device name.
        let device = segments.iter().any(|s| {
            let stem = s.split('.').next().unwrap_or("").to_ascii_uppercase();
            matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
                || (stem.len() == 4 && (stem.starts_with("COM") || stem.starts_with("LPT"))
                    && matches!(stem.as_bytes()[3], b'1'..=b'9'))
        });
        prop_assert_eq!(key.is_ok(), !device, "{:?}", text);
        if let Ok(key) = key {
            let shown = format!("{key}");
            prop_assert_eq!(&shown, &text);
            prop_assert_eq!(RelativeKey::parse(&shown), Ok(key.clone()));
            let joined = key.join(&key);
            prop_assert_eq!(RelativeKey::parse(joined.as_str()), Ok(joined));
        }
    }
}
