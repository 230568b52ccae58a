//! A read budget for a WebSocket that has not said hello yet.
//!
//! tokio-tungstenite fixes its message cap when the socket is made, and an
//! authenticated viewer may send a bundle as large as the bundle cap. So an
//! unauthenticated peer could make the server buffer that much. This wrapper
//! bounds what is read before the hello authenticates; after it the budget
//! is lifted.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::hooked_io::{HookedIo, ReadHook};

/// Bytes the peer may still send; `u64::MAX` once lifted.
#[derive(Clone, Debug)]
pub(crate) struct Budget(Arc<AtomicU64>);

impl Budget {
    pub(crate) fn new(bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(bytes)))
    }

    /// No more limit (the peer authenticated).
    pub(crate) fn lift(&self) {
        self.0.store(u64::MAX, Ordering::Relaxed);
    }

    /// Whether the budget ran out.
    pub(crate) fn exhausted(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// An I/O object whose reads draw on a [`Budget`].
pub(crate) type BudgetIo<T> = HookedIo<T, Budget>;

impl ReadHook for Budget {
    fn before_read(&self) -> io::Result<()> {
        if self.exhausted() {
            return Err(io::Error::other(
                "the peer sent too much before its hello frame",
            ));
        }
        Ok(())
    }

    fn after_read(&self, bytes: usize) {
        let left = self.0.load(Ordering::Relaxed);
        if left != u64::MAX {
            self.0
                .store(left.saturating_sub(bytes as u64), Ordering::Relaxed);
        }
    }
}
