//! The memory budget: how many bytes the readers may hold at once for what a
//! dataset file claims (decoded arrays, inflated chunks and zip members).
//!
//! A dataset file is input: its shapes, chunk sizes and element counts are
//! claims, and a tiny crafted file can claim 10^9 cells. Every reader that
//! sizes an allocation from such a claim first asks this budget
//! ([`MemoryBudget::reserve`]) and holds the returned [`Lease`] while the
//! bytes exist, so
//!
//! * one claim larger than the whole budget is refused at once, with a
//!   message saying what was claimed ([`BudgetError::TooLarge`]: the file is
//!   the problem, HTTP 422), and
//! * parallel requests share the budget instead of multiplying it: a
//!   reservation that fits the budget but not what others hold now waits a
//!   bounded time for them, then gives up ([`BudgetError::Busy`]: the server
//!   is the problem, HTTP 503).
//!
//! The budget is process-wide (every dataset of a server shares it); the
//! default is [`DEFAULT_MEMORY_BUDGET`] and `cellucid serve --memory-budget`
//! changes it ([`set_limit`]). SECURITY.md ("Hostile dataset files")
//! documents the budget and the per-chunk caps.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The default budget: 512 MiB, well under the memory of any machine that
/// runs a browser next to the server, and far above what real datasets need
/// at once (a 2-D embedding of 10M cells as f64 is 160 MB).
pub const DEFAULT_MEMORY_BUDGET: u64 = 512 * 1024 * 1024;

/// The most one stored chunk (a Zarr chunk, an HDF5 chunk, a `.zarr.zip`
/// member) may decode to: far above what zarr, h5py and anndata write
/// (chunks of a few MB), far below a machine's memory.
pub const MAX_CHUNK_BYTES: u64 = 256 * 1024 * 1024;

/// The most a chunk may decode to under the current budget.
pub fn chunk_cap() -> u64 {
    MAX_CHUNK_BYTES.min(decoding().limit())
}

/// How long a reservation that fits the budget waits for others to release
/// theirs before it answers [`BudgetError::Busy`], by default.
pub const WAIT_FOR_ROOM: Duration = Duration::from_secs(20);

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// One claim exceeds the whole budget: the file is the problem.
    #[error("{what} needs {} of memory, more than the memory budget of {}", human(*bytes), human(*limit))]
    TooLarge {
        /// What needed it (`obsm/X_umap (1,000,000,000 × 2 float64)`).
        what: String,
        /// Bytes it needs.
        bytes: u64,
        /// The budget.
        limit: u64,
    },
    /// The claim fits the budget, but other requests hold too much of it
    /// now: try again later.
    #[error("{what} needs {} of memory and the memory budget of {} is in use by other requests; try again shortly", human(*bytes), human(*limit))]
    Busy {
        /// What needed it.
        what: String,
        /// Bytes it needs.
        bytes: u64,
        /// The budget.
        limit: u64,
    },
}

/// Bytes in a readable unit (`512 MiB`, `7.5 GiB`, `200 B`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() < 0.05 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A count of reserved bytes against a limit (see the module docs).
#[derive(Debug)]
pub struct MemoryBudget {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug)]
struct State {
    limit: u64,
    used: u64,
    wait: Duration,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (at least 1 MiB).
    pub fn new(limit: u64) -> Self {
        Self {
            state: Mutex::new(State {
                limit: limit.max(1 << 20),
                used: 0,
                wait: WAIT_FOR_ROOM,
            }),
            freed: Condvar::new(),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.lock().limit
    }

    /// Bytes held by live leases.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counter torn (it
        // is one integer updated in one statement): keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the limit (leases already granted stay valid).
    pub fn set_limit(&self, limit: u64) {
        self.lock().limit = limit.max(1 << 20);
        self.freed.notify_all();
    }

    /// Reserves `bytes` for `what`, waiting (a bounded time) while other
    /// leases hold the room.
    ///
    /// # Errors
    /// [`BudgetError::TooLarge`] when `bytes` exceeds the limit itself;
    /// [`BudgetError::Busy`] when the room did not free in time.
    pub fn reserve(
        &self,
        what: impl FnOnce() -> String,
        bytes: u64,
    ) -> Result<Lease<'_>, BudgetError> {
        let wait = self.lock().wait;
        self.reserve_within(what, bytes, wait)
    }

    /// Changes how long [`MemoryBudget::reserve`] waits for room (default
    /// [`WAIT_FOR_ROOM`]).
    pub fn set_wait(&self, wait: Duration) {
        self.lock().wait = wait;
    }

    /// [`MemoryBudget::reserve`] with an explicit wait.
    ///
    /// # Errors
    /// As [`MemoryBudget::reserve`].
    pub fn reserve_within(
        &self,
        what: impl FnOnce() -> String,
        bytes: u64,
        wait: Duration,
    ) -> Result<Lease<'_>, BudgetError> {
        let deadline = Instant::now() + wait;
        let mut state = self.lock();
        if bytes > state.limit {
            return Err(BudgetError::TooLarge {
                what: what(),
                bytes,
                limit: state.limit,
            });
        }
        while state.used.saturating_add(bytes) > state.limit {
            let now = Instant::now();
            if now >= deadline || bytes > state.limit {
                return Err(BudgetError::Busy {
                    what: what(),
                    bytes,
                    limit: state.limit,
                });
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state.used += bytes;
        Ok(Lease {
            budget: self,
            bytes,
        })
    }

    /// Checks that `bytes` could ever be granted, without reserving them.
    ///
    /// # Errors
    /// [`BudgetError::TooLarge`] when `bytes` exceeds the limit.
    pub fn check(&self, what: impl FnOnce() -> String, bytes: u64) -> Result<(), BudgetError> {
        let limit = self.limit();
        if bytes > limit {
            return Err(BudgetError::TooLarge {
                what: what(),
                bytes,
                limit,
            });
        }
        Ok(())
    }
}

/// Reserved bytes, given back when dropped.
#[derive(Debug)]
#[must_use = "the reservation ends when the lease is dropped"]
pub struct Lease<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl Lease<'_> {
    /// The bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.used = state.used.saturating_sub(self.bytes);
        drop(state);
        self.budget.freed.notify_all();
    }
}

/// The process-wide budget every reader shares.
pub fn global() -> &'static MemoryBudget {
    static GLOBAL: OnceLock<MemoryBudget> = OnceLock::new();
    GLOBAL.get_or_init(|| MemoryBudget::new(DEFAULT_MEMORY_BUDGET))
}

/// The budget chunk decoders draw on while a chunk inflates: half the
/// process budget, kept apart from [`global`] because a decode runs inside
/// a read that already holds its lease there (one shared count could leave
/// two reads each waiting for the other's room). So the readers hold at
/// most 1.5 × the budget at once: 768 MiB by default.
pub fn decoding() -> &'static MemoryBudget {
    static DECODING: OnceLock<MemoryBudget> = OnceLock::new();
    DECODING.get_or_init(|| MemoryBudget::new(DEFAULT_MEMORY_BUDGET / 2))
}

/// Sets the process-wide budget (`cellucid serve --memory-budget`), and
/// the decoding budget to half of it.
pub fn set_limit(bytes: u64) {
    global().set_limit(bytes);
    decoding().set_limit(bytes / 2);
}

/// An empty vector with room for `n` elements, allocated fallibly: `n`
/// comes from a file, so an impossible size is an error, not an abort.
///
/// # Errors
/// When the allocation fails or `n` elements overflow the address space.
pub fn try_vec<T>(n: usize, what: &str) -> Result<Vec<T>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|err| format!("{what}: cannot allocate {n} elements: {err}"))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_claim_over_the_whole_budget_is_refused_at_once() {
        let budget = MemoryBudget::new(8 << 20);
        let started = Instant::now();
        let err = budget.reserve(|| "obs".into(), 9 << 20).unwrap_err();
        assert!(matches!(err, BudgetError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("9 MiB"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn leases_share_the_budget_and_give_it_back() {
        let budget = MemoryBudget::new(8 << 20);
        let a = budget.reserve(|| "a".into(), 5 << 20).unwrap();
        // 5 + 5 > 8: the second waits, then reports busy.
        let err = budget
            .reserve_within(|| "b".into(), 5 << 20, Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, BudgetError::Busy { .. }), "{err}");
        drop(a);
        assert_eq!(budget.used(), 0);
        let b = budget.reserve(|| "b".into(), 5 << 20).unwrap();
        assert_eq!(b.bytes(), 5 << 20);
    }

    #[test]
    fn a_waiting_reservation_proceeds_when_room_frees() {
        let budget = Arc::new(MemoryBudget::new(8 << 20));
        let held = Arc::clone(&budget);
        let (tx, rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let lease = held.reserve(|| "a".into(), 6 << 20).unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(lease);
        });
        rx.recv().unwrap();
        let lease = budget
            .reserve_within(|| "b".into(), 6 << 20, Duration::from_secs(30))
            .unwrap();
        assert_eq!(budget.used(), 6 << 20);
        drop(lease);
        holder.join().unwrap();
    }

    #[test]
    fn impossible_allocations_are_errors() {
        assert!(try_vec::<u64>(usize::MAX / 4, "x").is_err());
        assert!(try_vec::<u8>(16, "x").unwrap().capacity() >= 16);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(200), "200 B");
        assert_eq!(human(512 << 20), "512 MiB");
        assert_eq!(human(3 << 30), "3 GiB");
    }
}
