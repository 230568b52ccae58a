//! The query strings of the binary upload routes (`viewerId=…&…`).

use std::collections::HashMap;

use percent_encoding::percent_decode_str;

use super::error::ChannelError;

/// Parses `query` as form fields, each of `allowed` at most once; anything
/// else (unknown or repeated fields, a field without `=`) is refused.
pub(crate) fn parse(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ChannelError> {
    let mut fields = HashMap::new();
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(fields);
    };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            ChannelError::BadRequest("The query is malformed (a field without '=')".into())
        })?;
        let name = decode(name)?;
        let value = decode(value)?;
        if !allowed.contains(&name.as_str()) {
            return Err(ChannelError::BadRequest(format!(
                "The query may hold only {}",
                allowed.join(", ")
            )));
        }
        if fields.insert(name.clone(), value).is_some() {
            return Err(ChannelError::BadRequest(format!(
                "The query holds {name} more than once"
            )));
        }
    }
    Ok(fields)
}

fn decode(text: &str) -> Result<String, ChannelError> {
    let plus = text.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ChannelError::BadRequest("The query is not UTF-8".into()))
}

/// A routing string: non-empty, at most 256 bytes, no whitespace or controls.
pub(crate) fn is_routing_string(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 256
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}
