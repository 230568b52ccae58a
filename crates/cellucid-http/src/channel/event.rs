//! Events from a viewer, and the async stream a program reads them from.

use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::registry::QueuedEvent;

/// One event from a viewer: the JSON object the viewer sent, with its own
/// fields at the top level, `viewerId` and `type` set, and never the token.
/// Selections read `{"viewerId","type":"selection","source","cells":[…]}`.
#[derive(Debug, Clone)]
pub struct ViewerEvent {
    fields: Map<String, Value>,
    /// About how many bytes the event holds, for the queue's byte bound.
    weight: usize,
}

impl PartialEq for ViewerEvent {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl ViewerEvent {
    /// Builds an event from the viewer's object, parsed from `received`
    /// bytes: sets `viewerId`, drops any `viewerToken`. The object must
    /// already have a string `type`.
    pub(crate) fn new(viewer_id: &str, mut fields: Map<String, Value>, received: usize) -> Self {
        fields.remove("viewerToken");
        fields.insert("viewerId".into(), Value::String(viewer_id.to_owned()));
        Self {
            fields,
            weight: received,
        }
    }

    /// A selection event.
    pub(crate) fn selection(viewer_id: &str, source: &str, cells: &[u32]) -> Self {
        let mut fields = Map::new();
        fields.insert("viewerId".into(), viewer_id.into());
        fields.insert("type".into(), "selection".into());
        fields.insert("source".into(), source.into());
        fields.insert(
            "cells".into(),
            Value::Array(cells.iter().map(|&c| Value::from(c)).collect()),
        );
        Self {
            fields,
            // Each cell is a JSON value in memory.
            weight: cells.len().saturating_mul(std::mem::size_of::<Value>()) + 256,
        }
    }

    /// About how many bytes the event holds.
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    /// The event type (`click`, `hover`, `selection`, …).
    pub fn kind(&self) -> &str {
        self.fields
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The id of the viewer that sent it.
    pub fn viewer_id(&self) -> &str {
        self.fields
            .get("viewerId")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// All fields, `type` and `viewerId` included.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The event as one line of compact JSON (no newline).
    pub fn to_json_line(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }

    /// The event as a JSON value.
    pub fn into_json(self) -> Value {
        Value::Object(self.fields)
    }
}

/// The events of one viewer, in arrival order, as a
/// [`Stream`](futures_core::Stream). Ends when the viewer is unregistered.
#[derive(Debug)]
pub struct ViewerEvents {
    pub(crate) rx: mpsc::UnboundedReceiver<QueuedEvent>,
}

impl ViewerEvents {
    /// The next event; `None` once the viewer is gone. Taking it out makes
    /// room in the viewer's queue.
    pub async fn recv(&mut self) -> Option<ViewerEvent> {
        self.rx.recv().await.map(|queued| queued.event)
    }
}

impl futures_core::Stream for ViewerEvents {
    type Item = ViewerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ViewerEvent>> {
        self.rx.poll_recv(cx).map(|queued| queued.map(|q| q.event))
    }
}
