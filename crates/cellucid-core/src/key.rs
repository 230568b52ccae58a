//! Validated relative keys: the only way a caller names a file in a dataset.

use std::fmt;

/// Why a string is not an acceptable [`RelativeKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    #[error("the key is empty")]
    Empty,
    /// The key is longer than [`RelativeKey::MAX_LEN`] bytes.
    #[error("the key is longer than {} bytes", RelativeKey::MAX_LEN)]
    TooLong,
    /// The key starts with `/` (an absolute path).
    #[error("the key is absolute")]
    Absolute,
    /// A segment is empty, `.` or `..`.
    #[error("the key has an empty, '.' or '..' segment")]
    BadSegment,
    /// A segment starts with a dot (dot-files are never served).
    #[error("the key names a dot-file")]
    DotFile,
    /// The key holds a backslash, a control character or a character Windows
    /// reserves (`< > : " | ? *`).
    #[error("the key holds a forbidden character")]
    ForbiddenCharacter,
    /// A segment is a Windows device name (`CON`, `NUL`, `COM1`, …) or ends in `.`.
    #[error("the key names a reserved device or ends a segment with '.'")]
    Reserved,
}

/// A `/`-separated relative file key inside a dataset, checked to be safe on
/// every platform: no traversal, no dot-files, no control characters, no
/// Windows device names.
///
/// Containment is still enforced by the source (symlinks are resolved under a
/// capability root); this type makes sure a hostile name never gets that far.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RelativeKey(String);

impl RelativeKey {
    /// The longest key accepted, in bytes.
    pub const MAX_LEN: usize = 4096;

    /// Wraps a key the caller knows to be valid (a literal of this crate).
    pub(crate) fn trusted(key: &str) -> Self {
        debug_assert!(
            Self::parse_allowing(key, &[".zmetadata", ".zgroup", ".zattrs", ".zarray"]).is_ok()
        );
        Self(key.to_owned())
    }

    /// Checks `key` and wraps it.
    ///
    /// # Errors
    /// [`KeyError`] says which rule the key breaks.
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        Self::check_with(key, &|_| false)?;
        Ok(Self(key.to_owned()))
    }

    /// Like [`RelativeKey::parse`], but lets dot-files through for the names in
    /// `allowed_dot_files` (Zarr's `.zarray`, `.zattrs`, `.zgroup`, `.zmetadata`).
    ///
    /// # Errors
    /// [`KeyError`] says which rule the key breaks.
    pub fn parse_allowing(key: &str, allowed_dot_files: &[&str]) -> Result<Self, KeyError> {
        let allow = |segment: &str| allowed_dot_files.contains(&segment);
        Self::check_with(key, &allow)?;
        Ok(Self(key.to_owned()))
    }

    fn check_with(key: &str, dot_allowed: &dyn Fn(&str) -> bool) -> Result<(), KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > Self::MAX_LEN {
            return Err(KeyError::TooLong);
        }
        if key.starts_with('/') {
            return Err(KeyError::Absolute);
        }
        for segment in key.split('/') {
            check_segment(segment, dot_allowed)?;
        }
        Ok(())
    }

    /// The key as a string, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The part after the last `.` of the last segment, if any (`gz` for
    /// `obs/0.values.u8.gz`).
    pub fn extension(&self) -> Option<&str> {
        let last = self.0.rsplit('/').next().unwrap_or(&self.0);
        last.rsplit_once('.').map(|(_, ext)| ext)
    }

    /// Joins `self` and `other` as `self/other`.
    pub fn join(&self, other: &RelativeKey) -> RelativeKey {
        RelativeKey(format!("{}/{}", self.0, other.0))
    }
}

fn check_segment(segment: &str, dot_allowed: &dyn Fn(&str) -> bool) -> Result<(), KeyError> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(KeyError::BadSegment);
    }
    if segment.starts_with('.') && !dot_allowed(segment) {
        return Err(KeyError::DotFile);
    }
    if segment
        .chars()
        .any(|c| c.is_control() || matches!(c, '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*'))
    {
        return Err(KeyError::ForbiddenCharacter);
    }
    if segment.ends_with('.') || is_windows_device_name(segment) {
        return Err(KeyError::Reserved);
    }
    Ok(())
}

/// Whether the part of `segment` before its first `.` is a Windows device name.
fn is_windows_device_name(segment: &str) -> bool {
    let stem = segment.split('.').next().unwrap_or(segment).trim_end();
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => {
            let bytes = upper.as_bytes();
            bytes.len() == 4
                && (upper.starts_with("COM") || upper.starts_with("LPT"))
                && matches!(bytes[3], b'1'..=b'9')
        }
    }
}

impl fmt::Display for RelativeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RelativeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl AsRef<str> for RelativeKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_dataset_keys() {
        for key in [
            "dataset_identity.json",
            "obs/0.values.u8.gz",
            "connectivity/edges.weights.f64.bin",
            "var/764.values.f32",
            "a b/c",
        ] {
            assert!(RelativeKey::parse(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn refuses_hostile_keys() {
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::Empty),
            ("/etc/passwd", KeyError::Absolute),
            ("../secret", KeyError::BadSegment),
            ("obs/../../x", KeyError::BadSegment),
            ("obs//x", KeyError::BadSegment),
            ("./x", KeyError::BadSegment),
            ("obs/", KeyError::BadSegment),
            (".env", KeyError::DotFile),
            ("obs/.hidden", KeyError::DotFile),
            ("a\\b", KeyError::ForbiddenCharacter),
            ("a\0b", KeyError::ForbiddenCharacter),
            ("a\nb", KeyError::ForbiddenCharacter),
            ("C:x", KeyError::ForbiddenCharacter),
            ("CON", KeyError::Reserved),
            ("con.txt", KeyError::Reserved),
            ("obs/lpt9.bin", KeyError::Reserved),
            ("x.", KeyError::Reserved),
        ];
        for (key, want) in cases {
            assert_eq!(
                RelativeKey::parse(key).as_ref().err(),
                Some(want),
                "{key:?}"
            );
        }
        assert_eq!(
            RelativeKey::parse(&"a".repeat(RelativeKey::MAX_LEN + 1)).err(),
            Some(KeyError::TooLong)
        );
    }

    #[test]
    fn com_and_lpt_need_a_digit() {
        assert!(RelativeKey::parse("COMX").is_ok());
        assert!(RelativeKey::parse("com0").is_ok());
        assert!(RelativeKey::parse("LPT12").is_ok());
        assert!(RelativeKey::parse("com3.json").is_err());
    }

    #[test]
    fn zarr_metadata_dot_files_can_be_allowed() {
        let allowed = [".zarray", ".zattrs"];
        assert!(RelativeKey::parse_allowing("X/.zarray", &allowed).is_ok());
        assert_eq!(
            RelativeKey::parse_allowing("X/.secret", &allowed).err(),
            Some(KeyError::DotFile)
        );
    }

    #[test]
    fn extension_is_the_last_dot_part_of_the_last_segment() {
        let key = RelativeKey::parse("obs.d/0.values.u8.gz").unwrap();
        assert_eq!(key.extension(), Some("gz"));
        assert_eq!(RelativeKey::parse("a.b/c").unwrap().extension(), None);
    }
}
