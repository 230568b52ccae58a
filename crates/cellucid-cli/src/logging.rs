//! Everything `cellucid` writes to stderr: `tracing` log lines in text or
//! JSON, the startup block, and progress bars, in the order a reader
//! expects.
//!
//! - With `--log-format json` every line is one JSON object: the startup
//!   block and the other messages go through `tracing` as events with
//!   fields ([`say`], [`crate::banner`]).
//! - Log lines of background work (dataset preparation, the gene index)
//!   are held until the startup block is out ([`banner`]), so the block
//!   comes first however fast that work is.
//! - While a progress bar is drawn, lines are printed above it instead of
//!   through it.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use indicatif::ProgressBar;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Most bytes of log lines held before the startup block.
const HOLD_LIMIT: usize = 1 << 20;
/// Whether lines are JSON (set once by [`init`]).
static JSON: AtomicBool = AtomicBool::new(false);
/// Lines held until the startup block is printed, and the bar being drawn.
static GATE: Mutex<Gate> = Mutex::new(Gate {
    held: None,
    bar: None,
});

thread_local! {
    /// Set while this thread prints the startup block or a foreground
    /// message: those lines pass the gate.
    static BYPASS: Cell<bool> = const { Cell::new(false) };
}

struct Gate {
    /// `Some` while holding: the lines so far.
    held: Option<Vec<u8>>,
    /// The progress bar on the terminal, if one is drawn.
    bar: Option<ProgressBar>,
}

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by
/// `--quiet` / `--verbose`. With `hold`, log lines wait for [`banner`].
pub(crate) fn init(format: LogFormat, quiet: bool, verbose: bool, hold: bool) {
    let level = if quiet {
        "warn"
    } else if verbose {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,cellucid_core={level},cellucid_http={level},cellucid_proxy={level},cellucid={level}"))
    });
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    if hold {
        if let Ok(mut gate) = GATE.lock() {
            gate.held = Some(Vec::new());
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(GateWriter)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal())
        .with_target(verbose);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A subscriber already set (only possible in tests) is fine.
    drop(result);
}

/// Whether stderr lines are JSON (`--log-format json`).
pub(crate) fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Runs `print` (which writes the startup block) past the gate, then lets
/// the held log lines out after it.
pub(crate) fn banner(print: impl FnOnce()) {
    bypassing(print);
    release();
}

/// Lets the held lines out and stops holding (before an error is reported,
/// so what led to it is seen).
pub(crate) fn release() {
    let held = GATE.lock().ok().and_then(|mut gate| gate.held.take());
    if let Some(held) = held {
        write_stderr(&held);
    }
}

/// Runs `f` with this thread's lines passing the gate.
fn bypassing<T>(f: impl FnOnce() -> T) -> T {
    let before = BYPASS.with(|b| b.replace(true));
    let out = f();
    BYPASS.with(|b| b.set(before));
    out
}

/// Emits the events `log` makes as foreground lines (never held).
pub(crate) fn event(log: impl FnOnce()) {
    bypassing(log);
}

/// A foreground message (a warning, a URL, "Shutting down"): a plain line,
/// or an event with `message` in JSON, never held.
pub(crate) fn say(level: tracing::Level, text: &str) {
    if is_json() {
        bypassing(|| match level {
            tracing::Level::ERROR => tracing::error!("{text}"),
            tracing::Level::WARN => tracing::warn!("{text}"),
            _ => tracing::info!("{text}"),
        });
    } else {
        let mut line = text.as_bytes().to_vec();
        line.push(b'\n');
        write_stderr(&line);
    }
}

/// Registers the progress bar being drawn (`None`: it is gone), so lines go
/// above it.
pub(crate) fn set_bar(bar: Option<ProgressBar>) {
    if let Ok(mut gate) = GATE.lock() {
        gate.bar = bar;
    }
}

/// Whether the startup block is out (background progress may be drawn).
pub(crate) fn released() -> bool {
    GATE.lock().is_ok_and(|gate| gate.held.is_none())
}

/// Writes to stderr, above the progress bar when one is drawn.
fn write_stderr(bytes: &[u8]) {
    let bar = GATE.lock().ok().and_then(|gate| gate.bar.clone());
    let write = || {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    };
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// The subscriber's writer: one `write` per formatted event.
struct GateWriter;

impl<'a> MakeWriter<'a> for GateWriter {
    type Writer = GateWriter;

    fn make_writer(&'a self) -> Self::Writer {
        GateWriter
    }
}

impl Write for GateWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !BYPASS.with(Cell::get) {
            if let Ok(mut gate) = GATE.lock() {
                // Bounded: past HOLD_LIMIT lines go out as they come.
                if let Some(held) = gate.held.as_mut().filter(|h| h.len() < HOLD_LIMIT) {
                    held.extend_from_slice(buf);
                    return Ok(buf.len());
                }
            }
        }
        write_stderr(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
