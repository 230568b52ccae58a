//! Commands from the program to a viewer, encoded for the WebSocket channel
//! (docs/PROTOCOL.md, "Commands").

use serde_json::{json, Value};

/// A command for a viewer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Highlight `cells` in `color` (`#rrggbb`). Any order; duplicates are refused.
    Highlight {
        /// Cell indices, non-empty.
        cells: Vec<u32>,
        /// `#` plus 6 hex digits.
        color: String,
    },
    /// Show or hide cells: `cells: None` means every cell.
    SetVisibility {
        /// Cell indices (non-empty), or `None` for all.
        cells: Option<Vec<u32>>,
        /// Show (`true`) or hide.
        visible: bool,
    },
    /// Remove every highlight.
    ClearHighlights,
    /// Color the cells by a field.
    SetColorBy {
        /// The field name, exactly as the dataset names it.
        field: String,
    },
    /// Reset the camera.
    ResetCamera,
    /// Freeze the viewer (it stops interacting).
    Freeze,
    /// Ask the viewer for a `pong` event carrying `request_id`.
    Ping {
        /// Echoed in the `pong` event.
        request_id: String,
    },
    /// Ask the viewer for a `debug_snapshot` event.
    DebugSnapshot {
        /// Echoed in the answer.
        request_id: String,
    },
    /// Ask the viewer to apply a data mapping (answered by a `data_mapping` event).
    SetDataMapping {
        /// Echoed in the answer.
        request_id: String,
        /// The canonical data mapping.
        mapping: Value,
    },
    /// Ask the viewer to upload a session bundle. Sent by
    /// [`Viewer::request_session_bundle`](super::Viewer::request_session_bundle).
    RequestSessionBundle {
        /// Names the pending request.
        request_id: String,
    },
}

/// A command that cannot be sent as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A field breaks the command's rules.
    #[error("invalid {command} command: {reason}")]
    Invalid {
        /// The command type.
        command: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The viewer is not registered any more.
    #[error("the viewer is not registered")]
    UnknownViewer,
    /// Too many commands are queued for a viewer that is not connected.
    #[error("{0} commands are already queued for a viewer that is not connected")]
    OutboxFull(usize),
}

/// A command ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wire {
    Text(String),
    Binary(Vec<u8>),
}

impl Command {
    /// The command's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Highlight { .. } => "highlight",
            Self::SetVisibility { .. } => "setVisibility",
            Self::ClearHighlights => "clearHighlights",
            Self::SetColorBy { .. } => "setColorBy",
            Self::ResetCamera => "resetCamera",
            Self::Freeze => "freeze",
            Self::Ping { .. } => "ping",
            Self::DebugSnapshot { .. } => "debug_snapshot",
            Self::SetDataMapping { .. } => "setDataMapping",
            Self::RequestSessionBundle { .. } => "requestSessionBundle",
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> CommandError {
        CommandError::Invalid {
            command: self.kind(),
            reason: reason.into(),
        }
    }

    /// Checks the command and encodes it: text JSON, or the binary layout of
    /// §8.4 for `highlight` and `setVisibility`.
    pub(crate) fn encode(&self) -> Result<Wire, CommandError> {
        let kind = self.kind();
        let text = |value: Value| Ok(Wire::Text(ascii_json(&value)));
        match self {
            Self::Highlight { cells, color } => {
                let valid_color = color.len() == 7
                    && color.starts_with('#')
                    && color[1..].bytes().all(|b| b.is_ascii_hexdigit());
                if !valid_color {
                    return Err(self.invalid("color must be '#' and 6 hex digits"));
                }
                let cells = self.sorted_cells(cells)?;
                Ok(Wire::Binary(binary(
                    &json!({"type": kind, "color": color}),
                    &cells,
                )))
            }
            Self::SetVisibility { cells, visible } => match cells {
                None => Ok(Wire::Binary(binary(
                    &json!({"type": kind, "visible": visible, "all": true}),
                    &[],
                ))),
                Some(cells) => {
                    let cells = self.sorted_cells(cells)?;
                    Ok(Wire::Binary(binary(
                        &json!({"type": kind, "visible": visible, "all": false}),
                        &cells,
                    )))
                }
            },
            Self::ClearHighlights | Self::ResetCamera | Self::Freeze => text(json!({"type": kind})),
            Self::SetColorBy { field } => {
                if field.is_empty() || field.trim() != field || field.chars().any(char::is_control)
                {
                    return Err(self.invalid("field must be non-empty text without padding"));
                }
                text(json!({"type": kind, "field": field}))
            }
            Self::Ping { request_id }
            | Self::DebugSnapshot { request_id }
            | Self::RequestSessionBundle { request_id } => {
                self.check_request_id(request_id)?;
                text(json!({"type": kind, "requestId": request_id}))
            }
            Self::SetDataMapping {
                request_id,
                mapping,
            } => {
                self.check_request_id(request_id)?;
                if !mapping.is_object() {
                    return Err(self.invalid("mapping must be a JSON object"));
                }
                text(json!({"type": kind, "requestId": request_id, "mapping": mapping}))
            }
        }
    }

    fn check_request_id(&self, id: &str) -> Result<(), CommandError> {
        if super::query::is_routing_string(id) {
            Ok(())
        } else {
            Err(self.invalid("requestId must be non-empty text without whitespace"))
        }
    }

    fn sorted_cells(&self, cells: &[u32]) -> Result<Vec<u32>, CommandError> {
        if cells.is_empty() {
            return Err(self.invalid("cells must not be empty"));
        }
        let mut sorted = cells.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(self.invalid("cells must not repeat"));
        }
        Ok(sorted)
    }
}

/// Compact JSON with every non-ASCII character escaped (`ensure_ascii`).
fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    if text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// `u32 LE H`, the header padded with spaces so `(4 + H) % 4 == 0`, then the
/// cells as u32 LE.
fn binary(header: &Value, cells: &[u32]) -> Vec<u8> {
    let mut head = ascii_json(header).into_bytes();
    while !(4 + head.len()).is_multiple_of(4) {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(4 + head.len() + 4 * cells.len());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    for cell in cells {
        out.extend_from_slice(&cell.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_layout_matches_the_reference() {
        let wire = Command::Highlight {
            cells: vec![5, 1, 3],
            color: "#00ff00".into(),
        }
        .encode()
        .unwrap();
        let Wire::Binary(bytes) = wire else {
            panic!("binary")
        };
        assert_eq!(&bytes[..4], &40u32.to_le_bytes());
        assert_eq!(
            &bytes[4..44],
            b"{\"type\":\"highlight\",\"color\":\"#00ff00\"}  "
        );
        assert_eq!(&bytes[44..], &[1, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0]);
        let Wire::Binary(bytes) = (Command::SetVisibility {
            cells: None,
            visible: false,
        })
        .encode()
        .unwrap() else {
            panic!("binary")
        };
        assert_eq!(&bytes[..4], &52u32.to_le_bytes());
        assert_eq!(bytes.len(), 56);
    }

    #[test]
    fn bad_commands_are_refused() {
        assert!(Command::Highlight {
            cells: vec![],
            color: "#000000".into()
        }
        .encode()
        .is_err());
        assert!(Command::Highlight {
            cells: vec![1, 1],
            color: "#000000".into()
        }
        .encode()
        .is_err());
        assert!(Command::Highlight {
            cells: vec![1],
            color: "red".into()
        }
        .encode()
        .is_err());
        assert!(Command::Ping {
            request_id: "a b".into()
        }
        .encode()
        .is_err());
        assert_eq!(
            Command::SetColorBy {
                field: "cell type é".into()
            }
            .encode()
            .unwrap(),
            Wire::Text("{\"type\":\"setColorBy\",\"field\":\"cell type \\u00e9\"}".into())
        );
    }
}
