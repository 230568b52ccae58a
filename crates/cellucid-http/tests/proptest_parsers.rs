//! Property tests of the request parsers: the Host/authority parser, the
//! Origin canonicaliser, the Range parser and the request-path canonicaliser
//! (docs/FUZZING.md). Arbitrary input goes through the same checks the fuzz
//! targets run (`fuzz/harness/mod.rs`); generated valid input must parse to
//! what it was built from.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns may panic

#[path = "../../../fuzz/harness/mod.rs"]
mod harness;

use cellucid_http::fuzz_api::{self, RangeAnswer};
use proptest::prelude::*;

/// A DNS label in mixed case.
fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?"
}

/// An LDH name of one to four labels.
fn ldh_name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..=4).prop_map(|labels| labels.join("."))
}

/// Text made of the characters that matter to these parsers, so random
/// strings hit their branches more often than uniform Unicode would.
fn parser_text(alphabet: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop::collection::vec(prop::sample::select(chars), 0..40)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_authority_text_keeps_the_host_promises(value in parser_text("0123456789abcdefABx.:-[]@/% \t%lohst")) {
        harness::host(value.as_bytes());
    }

    #[test]
    fn any_string_is_a_safe_authority_input(value in any::<String>()) {
        harness::host(value.as_bytes());
    }

    #[test]
    fn ipv4_and_port_round_trip(ip in any::<std::net::Ipv4Addr>(), port in 1u16..) {
        let text = format!("{ip}:{port}");
        prop_assert_eq!(fuzz_api::authority(&text), Some((ip.to_string(), Some(port))));
        // A leading zero makes the port ambiguous: refused.
        prop_assert_eq!(fuzz_api::authority(&format!("{ip}:0{port}")), None);
    }

    #[test]
    fn ipv6_literals_canonicalise(ip in any::<std::net::Ipv6Addr>(), port in prop::option::of(1u16..)) {
        let text = harness::render_authority(&ip.to_string(), port);
        prop_assert_eq!(fuzz_api::authority(&text), Some((ip.to_string(), port)));
        // Without brackets a v6 literal is not an authority.
        prop_assert_eq!(fuzz_api::authority(&ip.to_string()).filter(|(h, _)| h.contains(':')), None);
    }

    #[test]
    fn names_are_lower_cased_and_round_trip(name in ldh_name(), port in prop::option::of(1u16..)) {
        let text = harness::render_authority(&name, port);
        let want = name.to_ascii_lowercase();
        let parsed = fuzz_api::authority(&text);
        // A name that happens to be a dotted quad parses as an IPv4 address.
        if want.parse::<std::net::Ipv4Addr>().is_err() {
            prop_assert_eq!(parsed, Some((want, port)));
        }
        prop_assert_eq!(fuzz_api::authority(&format!("user@{text}")), None);
        prop_assert_eq!(fuzz_api::authority(&format!("{text}/")), None);
    }

    #[test]
    fn any_origin_text_canonicalises_to_a_fixpoint(value in parser_text("htps:/HTPS0123456789abcxyz.[]:@?#%-")) {
        harness::origin(value.as_bytes());
    }

    #[test]
    fn any_string_is_a_safe_origin_input(value in any::<String>()) {
        harness::origin(value.as_bytes());
    }

    #[test]
    fn origins_canonicalise_scheme_host_and_default_port(
        https in any::<bool>(),
        upper_scheme in any::<bool>(),
        name in ldh_name(),
        port in prop::option::of(1u16..),
    ) {
        let scheme = if https { "https" } else { "http" };
        let written = if upper_scheme { scheme.to_ascii_uppercase() } else { scheme.to_owned() };
        let text = match port {
            Some(port) => format!("{written}://{name}:{port}"),
            None => format!("{written}://{name}"),
        };
        let host = name.to_ascii_lowercase();
        let default = if https { 443 } else { 80 };
        let want = match port.filter(|&p| p != default) {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        if host.parse::<std::net::Ipv4Addr>().is_err() {
            prop_assert_eq!(fuzz_api::canonical_origin(&text), Some(want));
        }
        for suffix in ["/", "?", "#", "/x"] {
            let with_suffix = format!("{text}{suffix}");
            prop_assert_eq!(fuzz_api::canonical_origin(&with_suffix), None);
        }
    }

    #[test]
    fn any_range_value_selects_inside_the_file(
        value in parser_text("bytes=0123456789-, items"),
        size in prop_oneof![0u64..300, any::<u64>()],
    ) {
        harness::range_against(value.as_bytes(), size);
    }

    #[test]
    fn any_header_bytes_are_a_safe_range_input(value in prop::collection::vec(any::<u8>(), 0..64), size in any::<u64>()) {
        harness::range_against(&value, size);
    }

    #[test]
    fn closed_ranges_clamp_to_the_file(size in 1u64.., start in any::<u64>(), len in any::<u64>()) {
        let start = start % size;
        let last = start.saturating_add(len % size.saturating_mul(2));
        let answer = fuzz_api::range(format!("bytes={start}-{last}").as_bytes(), size);
        prop_assert_eq!(answer, Some(RangeAnswer::Partial(start..last.min(size - 1) + 1)));
        let past = fuzz_api::range(format!("bytes={size}-").as_bytes(), size);
        prop_assert_eq!(past, Some(RangeAnswer::Unsatisfiable));
    }

    #[test]
    fn suffix_ranges_take_the_tail(size in 1u64.., suffix in 1u64..) {
        let answer = fuzz_api::range(format!("bytes=-{suffix}").as_bytes(), size);
        prop_assert_eq!(answer, Some(RangeAnswer::Partial(size - suffix.min(size)..size)));
    }

    #[test]
    fn traversal_shaped_paths_never_leave_the_root(
        segments in prop::collection::vec(
            prop::sample::select(vec![
                "..", ".", "", "%2e%2e", "%2E.", ".%2e", "%2e", "a", "obs", "x.bin", "..%5c", "%2f",
                "%c0%ae%c0%ae", "con", ".env", "a%00", "%e2%80%a6", "b%20c", "_cellucid", "anndata",
            ]),
            1..8,
        ),
    ) {
        let raw = format!("/{}", segments.join("/"));
        harness::request_path(raw.as_bytes());
    }

    #[test]
    fn any_string_is_a_safe_request_path(raw in any::<String>()) {
        harness::request_path(raw.as_bytes());
        harness::request_path(format!("/{raw}").as_bytes());
    }

    #[test]
    fn percent_decoding_inverts_encoding(text in "[^\\\\\\p{Cc}]{0,40}") {
        let path = format!("/{text}");
        let encoded = harness::percent_encode_path(&path);
        prop_assert_eq!(fuzz_api::decode_path(&encoded), Some(path));
    }
}
