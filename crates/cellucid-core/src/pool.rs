//! Recycled byte buffers for response bodies written per request.
//!
//! A fresh multi-hundred-kilobyte allocation is served by new pages from the
//! kernel, and faulting them in (zeroing each 4 KiB page on first touch) cost
//! more than building a gene column's whole body on a 2-vCPU VM: ~300 µs for
//! 800 KB. A buffer handed to a response comes back here when the last
//! [`Bytes`] referring to it is dropped (after the socket write), so the next
//! response reuses warm memory. The idle pool is bounded so resident memory
//! stays flat.

use std::sync::Mutex;

use bytes::Bytes;

/// Idle bytes kept for reuse at most.
const IDLE_BUDGET: usize = 8 * 1024 * 1024;
/// Buffers larger than this are not kept (one would take a large share of
/// the budget).
const LARGEST_KEPT: usize = 8 * 1024 * 1024;

static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of a requested length that returns to the pool when dropped.
#[derive(Debug)]
pub(crate) struct PooledBuf {
    buf: Vec<u8>,
}

/// A buffer of exactly `len` bytes, with unspecified contents: the caller
/// writes every byte.
pub(crate) fn take(len: usize) -> PooledBuf {
    let recycled = IDLE.lock().ok().and_then(|mut idle| {
        // The smallest idle buffer that fits and is not more than twice the
        // size, so a small request does not take the one a large body needs.
        let best = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() / 2 <= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        Some(idle.swap_remove(best))
    });
    let mut buf = recycled.unwrap_or_default();
    // Grows a fresh buffer (zero-filled, as it must be initialised); a
    // recycled one only changes its length.
    buf.resize(len, 0);
    PooledBuf { buf }
}

impl PooledBuf {
    /// The bytes to write.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Hands the buffer to a response without copying; it comes back to the
    /// pool when the last clone of the returned [`Bytes`] is dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 || buf.capacity() > LARGEST_KEPT {
            return;
        }
        if let Ok(mut idle) = IDLE.lock() {
            let held: usize = idle.iter().map(Vec::capacity).sum();
            if held + buf.capacity() <= IDLE_BUDGET {
                idle.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_body_buffer_is_reused() {
        // A size no other test uses, so the pool's other users do not race us.
        let len = 123_457;
        let mut first = take(len);
        first.as_mut_slice().fill(7);
        let bytes = first.into_bytes();
        let address = bytes.as_ptr();
        let clone = bytes.clone();
        drop(bytes);
        drop(clone);
        let mut again = take(len);
        assert_eq!(again.as_mut_slice().len(), len);
        assert_eq!(again.as_mut_slice().as_ptr(), address);
    }
}
