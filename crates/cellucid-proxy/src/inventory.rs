//! The build inventory, `cellucid-web-assets.json`: what a UI build consists
//! of, with each file's size, SHA-256 and content type.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The inventory's file name, at the source's root and in every generation.
pub const INVENTORY_FILE: &str = "cellucid-web-assets.json";

/// The most characters of a build id.
const MAX_BUILD_ID: usize = 200;

/// One file of a UI build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    /// Relative path (`index.html`, `assets/app-3f2a9c1d.js`).
    pub path: String,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The `Content-Type` to serve it with.
    pub content_type: String,
}

/// A UI build: its id and its files, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Always 1.
    pub version: u32,
    /// The build id, also in `index.html`'s `cellucid-web-build-id` meta tag.
    pub build_id: String,
    /// The files.
    pub assets: Vec<Asset>,
}

impl Inventory {
    /// Parses and validates an inventory (the 0.9.5 rules: version 1, a
    /// non-empty build id, sorted unique safe paths including `index.html`,
    /// lowercase hex SHA-256, valid media types).
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let inventory: Self = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
        inventory.validate()?;
        Ok(inventory)
    }

    /// Checks every rule [`Inventory::parse`] applies.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!("version is {}, expected 1", self.version));
        }
        check_build_id(&self.build_id)?;
        if self.assets.is_empty() {
            return Err("assets is empty".to_owned());
        }
        for pair in self.assets.windows(2) {
            if pair[0].path >= pair[1].path {
                return Err(format!(
                    "asset paths must be sorted and unique: {:?} then {:?}",
                    pair[0].path, pair[1].path
                ));
            }
        }
        for asset in &self.assets {
            check_asset_path(&asset.path).map_err(|why| format!("{:?}: {why}", asset.path))?;
            if asset.sha256.len() != 64
                || !asset
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!(
                    "{:?}: sha256 is not 64 lowercase hex digits",
                    asset.path
                ));
            }
            if !is_media_type(&asset.content_type) {
                return Err(format!(
                    "{:?}: content_type {:?} is not a media type",
                    asset.path, asset.content_type
                ));
            }
        }
        if self.get("index.html").is_none() {
            return Err("index.html is not listed".to_owned());
        }
        Ok(())
    }

    /// The asset at `path`.
    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.assets
            .binary_search_by(|a| a.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.assets.get(i))
    }

    /// Whether `text` is a `Content-Type` value an inventory may declare.
    pub fn content_type_ok(text: &str) -> bool {
        is_media_type(text)
    }

    /// Total declared bytes.
    pub fn total_bytes(&self) -> u64 {
        self.assets.iter().map(|a| a.bytes).sum()
    }

    /// Builds an inventory from files found by a crawl (sorted here).
    pub(crate) fn from_assets(build_id: String, assets: BTreeMap<String, Asset>) -> Self {
        Self {
            version: 1,
            build_id,
            assets: assets.into_values().collect(),
        }
    }

    /// The canonical JSON bytes.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

fn is_media_type(text: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+(; [a-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+-]+)*$",
        )
        .ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(text))
}

/// The media type of a `Content-Type` value (before `;`, lower-cased).
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn check_build_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.trim() != id || id.chars().count() > MAX_BUILD_ID {
        return Err(format!(
            "build id {id:?} must be non-empty, without surrounding whitespace, at most {MAX_BUILD_ID} characters"
        ));
    }
    Ok(())
}

/// Checks an asset path (the reference's `_require_asset_path`): relative,
/// no empty, `.` or `..` segment, no segment ending in `.`, no `\ ? #`,
/// whitespace, control or `< > : " | *` characters, no Windows device name,
/// and not the inventory itself.
///
/// # Errors
/// Why the path is refused.
pub fn check_asset_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') {
        return Err("must be a non-empty relative path".to_owned());
    }
    if path == INVENTORY_FILE {
        return Err("the inventory cannot list itself".to_owned());
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\\?#<>:\"|*".contains(c))
    {
        return Err("contains a character not allowed in a path".to_owned());
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment.ends_with('.') {
            return Err(format!("has a bad segment {segment:?}"));
        }
        let stem = segment.split('.').next().unwrap_or("").to_ascii_uppercase();
        let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
            || ((stem.starts_with("COM") || stem.starts_with("LPT"))
                && stem.len() == 4
                && stem.as_bytes()[3].is_ascii_digit()
                && stem.as_bytes()[3] != b'0');
        if reserved {
            return Err(format!("{segment:?} is a reserved device name"));
        }
    }
    Ok(())
}

/// The build id in `index.html`: the content of the single
/// `<meta name="cellucid-web-build-id" content="…">` tag.
///
/// # Errors
/// When the file is not UTF-8, or has no such tag, or more than one.
pub fn build_id_of_index(index: &[u8]) -> Result<String, String> {
    static META: OnceLock<Option<Regex>> = OnceLock::new();
    static ATTR: OnceLock<Option<Regex>> = OnceLock::new();
    let (Some(meta), Some(attr)) = (
        META.get_or_init(|| Regex::new(r"(?is)<meta\b[^>]*>").ok()),
        ATTR.get_or_init(|| {
            Regex::new(r#"(?is)\b([a-z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>/]+))"#).ok()
        }),
    ) else {
        return Err("internal: bad pattern".to_owned());
    };
    let text = std::str::from_utf8(index).map_err(|_| "index.html is not UTF-8".to_owned())?;
    let mut found = Vec::new();
    for tag in meta.find_iter(text) {
        let mut name = None;
        let mut content = None;
        for cap in attr.captures_iter(tag.as_str()) {
            let value = cap
                .get(2)
                .or_else(|| cap.get(3))
                .or_else(|| cap.get(4))
                .map_or("", |m| m.as_str());
            match cap
                .get(1)
                .map(|m| m.as_str().to_ascii_lowercase())
                .as_deref()
            {
                Some("name") => name = Some(value.to_owned()),
                Some("content") => content = Some(value.to_owned()),
                _ => {}
            }
        }
        if name.as_deref() == Some("cellucid-web-build-id") {
            found.push(content.unwrap_or_default());
        }
    }
    match found.as_slice() {
        [one] => {
            check_build_id(one)?;
            Ok(one.clone())
        }
        [] => Err("index.html has no <meta name=\"cellucid-web-build-id\"> tag".to_owned()),
        _ => Err("index.html has more than one cellucid-web-build-id meta tag".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let sha = "a".repeat(64);
        format!(
            r#"{{"version":1,"build_id":"b1","assets":[
              {{"path":"assets/app-1a2b3c4d.js","sha256":"{sha}","bytes":3,"content_type":"text/javascript; charset=utf-8"}},
              {{"path":"index.html","sha256":"{sha}","bytes":4,"content_type":"text/html; charset=utf-8"}}]}}"#
        )
    }

    #[test]
    fn a_good_inventory_parses() {
        let inv = Inventory::parse(sample().as_bytes()).unwrap();
        assert_eq!(inv.build_id, "b1");
        assert_eq!(inv.total_bytes(), 7);
        assert!(inv.get("index.html").is_some());
        assert!(inv.get("nope").is_none());
    }

    #[test]
    fn bad_inventories_are_refused() {
        let good = sample();
        for (from, to) in [
            ("\"version\":1", "\"version\":2"),
            ("\"build_id\":\"b1\"", "\"build_id\":\" b1\""),
            ("assets/app-1a2b3c4d.js", "zzz.js"),
            ("assets/app-1a2b3c4d.js", "../x.js"),
            ("assets/app-1a2b3c4d.js", "assets/CON.js"),
            ("index.html\"", "index.htm\""),
            ("text/javascript; charset=utf-8", "Text/JS"),
            ("\"bytes\":3", "\"bytes\":-3"),
            ("\"bytes\":3,", "\"bytes\":3,\"extra\":1,"),
        ] {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good);
            assert!(Inventory::parse(bad.as_bytes()).is_err(), "{from} -> {to}");
        }
    }

    #[test]
    fn the_build_id_comes_from_the_single_meta_tag() {
        let html = br#"<html><head><meta charset="utf-8"><META content='b-7' name="cellucid-web-build-id"></head></html>"#;
        assert_eq!(build_id_of_index(html).unwrap(), "b-7");
        assert!(build_id_of_index(b"<html></html>").is_err());
        let twice = br#"<meta name="cellucid-web-build-id" content="a"><meta name="cellucid-web-build-id" content="b">"#;
        assert!(build_id_of_index(twice).is_err());
    }
}
