//! How `serve` shows the CSR gene-index build (a one-time background pass
//! over a CSR matrix, `cellucid_core::anndata::csr_index`): a progress bar
//! on a terminal, log lines every 10 % otherwise (a file, a pipe,
//! `--log-format json`).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cellucid_core::anndata::csr_index::{IndexProgress, IndexProgressHook};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::LogFormat;

/// The hook for `serve`'s flags.
pub(crate) fn index_hook(format: LogFormat, quiet: bool) -> IndexProgressHook {
    let draw = format == LogFormat::Text && !quiet && std::io::stderr().is_terminal();
    IndexProgressHook(Arc::new(IndexBar {
        draw,
        state: Mutex::new(State::default()),
    }))
}

/// Draws or logs one build at a time (builds of several datasets share it:
/// the bar shows whichever advanced last).
struct IndexBar {
    draw: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    matrix: String,
    bar: Option<ProgressBar>,
    /// The last 10 % step logged.
    logged: u64,
}

impl IndexBar {
    fn bar(&self, state: &mut State, total: u64) -> Option<ProgressBar> {
        // Not over the startup block: the bar appears once it is printed.
        if !self.draw || !crate::logging::released() {
            return None;
        }
        let bar = state.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "Gene index {msg} {bar:30.cyan/blue} {percent:>3}% {elapsed} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(state.matrix.clone());
            crate::logging::set_bar(Some(bar.clone()));
            bar
        });
        Some(bar.clone())
    }
}

impl IndexProgress for IndexBar {
    fn started(&self, matrix: &str, _total: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.matrix = matrix.to_owned();
            state.logged = 0;
        }
    }

    fn advanced(&self, done: u64, total: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(bar) = self.bar(&mut state, total) {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let step = pct - pct % 10;
        if step > state.logged {
            state.logged = step;
            tracing::info!(matrix = %state.matrix, done, total, "CSR gene index: {step}%");
        }
    }

    fn finished(&self, _elapsed: Duration) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(bar) = state.bar.take() {
                bar.finish_and_clear();
                crate::logging::set_bar(None);
            }
        }
    }
}
