//! Property tests of the UI inventory parser and the `index.html` build-id
//! scanner (docs/FUZZING.md): generated inventories round-trip, any change
//! is refused or still obeys every rule, and no input makes either panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns may panic

use cellucid_proxy::{build_id_of_index, check_asset_path, Asset, Inventory};
use proptest::prelude::*;

fn asset_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9_-]{1,8}(\\.[a-z]{1,4})?", 1..4).prop_map(|s| s.join("/"))
}

fn asset(path: String) -> impl Strategy<Value = Asset> {
    (
        "[0-9a-f]{64}",
        any::<u64>(),
        prop::sample::select(vec![
            "text/html; charset=utf-8",
            "text/javascript; charset=utf-8",
            "image/png",
            "application/octet-stream",
        ]),
    )
        .prop_map(move |(sha256, bytes, content_type)| Asset {
            path: path.clone(),
            sha256,
            bytes,
            content_type: content_type.to_owned(),
        })
}

fn inventory() -> impl Strategy<Value = Inventory> {
    (
        "[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
        prop::collection::btree_set(asset_path(), 0..6),
    )
        .prop_flat_map(|(build_id, mut paths)| {
            paths.insert("index.html".to_owned());
            // Device names (`con.js`) are refused by design: leave them out.
            paths.retain(|p| check_asset_path(p).is_ok());
            let assets: Vec<_> = paths.into_iter().map(asset).collect();
            (Just(build_id), assets)
        })
        .prop_map(|(build_id, assets)| Inventory {
            version: 1,
            build_id,
            assets,
        })
}

/// Every rule an accepted inventory obeys.
fn assert_obeys_rules(inventory: &Inventory) {
    assert!(inventory.validate().is_ok());
    assert!(inventory.get("index.html").is_some());
    for pair in inventory.assets.windows(2) {
        assert!(pair[0].path < pair[1].path);
    }
    for asset in &inventory.assets {
        assert!(check_asset_path(&asset.path).is_ok());
        assert!(!asset.path.split('/').any(|s| s == ".." || s == "."));
        assert_eq!(inventory.get(&asset.path), Some(asset));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_inventories_round_trip(inventory in inventory()) {
        let json = serde_json::to_vec(&inventory).unwrap();
        let parsed = Inventory::parse(&json).unwrap();
        assert_obeys_rules(&parsed);
        prop_assert_eq!(parsed, inventory);
    }

    #[test]
    fn a_changed_byte_is_refused_or_obeys_every_rule(
        inventory in inventory(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut json = serde_json::to_vec(&inventory).unwrap();
        let at = at.index(json.len());
        json[at] = value;
        if let Ok(parsed) = Inventory::parse(&json) {
            assert_obeys_rules(&parsed);
        }
    }

    #[test]
    fn accepted_asset_paths_never_escape(path in "[a-zA-Z0-9./\\\\:%-]{0,24}") {
        if check_asset_path(&path).is_ok() {
            prop_assert!(!path.starts_with('/'));
            prop_assert!(!path.split('/').any(|s| matches!(s, "" | "." | "..")));
            prop_assert!(!path.contains('\\') && !path.contains(':'));
        }
    }

    #[test]
    fn the_build_id_scanner_finds_the_one_tag(
        before in "[ -~]{0,40}",
        id in "[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
        quote in prop::sample::select(vec!["\"", "'"]),
        name_first in any::<bool>(),
    ) {
        // Text around the tag holds no `<` so it cannot open another tag.
        let before = before.replace('<', " ");
        let name = "name=\"cellucid-web-build-id\"";
        let content = format!("content={quote}{id}{quote}");
        let attrs = if name_first { format!("{name} {content}") } else { format!("{content} {name}") };
        let html = format!("<html><head>{before}<meta {attrs}></head></html>");
        prop_assert_eq!(build_id_of_index(html.as_bytes()), Ok(id));
    }

    #[test]
    fn any_bytes_are_safe_inputs(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = build_id_of_index(&bytes);
        if let Ok(parsed) = Inventory::parse(&bytes) {
            assert_obeys_rules(&parsed);
        }
    }
}
