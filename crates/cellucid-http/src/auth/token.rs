//! The access token: made from the OS random number generator or read from
//! the user, compared in constant time, never printed by `Debug`.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// URL-safe characters (RFC 4648 §5): a token travels in a query string and
/// a cookie without escaping.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Characters in a generated token: 43 × 6 bits = 258 bits of entropy.
const GENERATED_LEN: usize = 43;
/// The shortest token accepted from a user (`--token-file`, an environment
/// variable): 16 characters of the alphabet are 96 bits.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted from a user.
pub const MAX_TOKEN_LEN: usize = 256;

/// Why a user-supplied token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Empty after trimming surrounding whitespace.
    #[error("the access token is empty")]
    Empty,
    /// Too short to be a secret.
    #[error("the access token has {len} characters; at least {MIN_TOKEN_LEN} are needed")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// Longer than any header or cookie should carry.
    #[error("the access token has {len} characters; at most {MAX_TOKEN_LEN} are accepted")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("the access token may only hold the characters A-Z, a-z, 0-9, '-' and '_'")]
    BadCharacter,
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

/// A secret that lets a client in.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// A new random token from the OS random number generator.
    ///
    /// # Errors
    /// [`TokenError::Random`] when the generator fails.
    pub fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; GENERATED_LEN];
        getrandom::fill(&mut bytes).map_err(|err| TokenError::Random(err.to_string()))?;
        // 256 is a multiple of 64: masking keeps every character equally likely.
        let text = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
            .collect();
        Ok(Self(text))
    }

    /// A token given by the user, with surrounding whitespace (a file's
    /// trailing newline) trimmed.
    ///
    /// # Errors
    /// [`TokenError`] when it is empty, too short or long, or holds a
    /// character outside `[A-Za-z0-9_-]`.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let len = text.chars().count();
        if len == 0 {
            return Err(TokenError::Empty);
        }
        if !text.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(TokenError::BadCharacter);
        }
        if len < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { len });
        }
        if len > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong { len });
        }
        Ok(Self(text.to_owned()))
    }

    /// The secret itself, to print once in the URL a user opens.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, in time independent of where they
    /// differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        // Lengths are not secret (every generated token has the same one).
        self.0.as_bytes().ct_eq(candidate).into()
    }

    /// A short public name derived from the token: two servers on one host
    /// with different tokens get different cookie names.
    pub(crate) fn public_tag(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..4])
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_url_safe_distinct_and_hidden_from_debug() {
        let a = AccessToken::generate().unwrap();
        let b = AccessToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), GENERATED_LEN);
        assert!(a
            .expose()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(a.matches(a.expose().as_bytes()));
        assert!(!a.matches(b.expose().as_bytes()));
        assert!(!a.matches(&a.expose().as_bytes()[1..]));
    }

    #[test]
    fn user_tokens_are_trimmed_and_checked() {
        let token = AccessToken::parse("  abcdefghijklmnop_-09\n").unwrap();
        assert_eq!(token.expose(), "abcdefghijklmnop_-09");
        assert_eq!(AccessToken::parse(" \n"), Err(TokenError::Empty));
        assert_eq!(
            AccessToken::parse("short"),
            Err(TokenError::TooShort { len: 5 })
        );
        assert_eq!(
            AccessToken::parse("abcdefghijklmnop qrs"),
            Err(TokenError::BadCharacter)
        );
        assert_eq!(
            AccessToken::parse("abcdefghijklmnop%3D"),
            Err(TokenError::BadCharacter)
        );
        assert!(matches!(
            AccessToken::parse(&"a".repeat(300)),
            Err(TokenError::TooLong { len: 300 })
        ));
    }
}
