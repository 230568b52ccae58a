//! `cellucid`: serve single-cell datasets to the Cellucid web viewer.
//!
//! A thin binary: it parses arguments and wires the library crates together.

mod access;
mod anndata_args;
mod args;
mod banner;
mod cache;
mod demo;
mod docs;
mod error;
mod inputs;
mod inspect;
mod logging;
mod malloc_arenas;
mod progress;
mod serve;
mod session;
mod viewer;
mod web_ui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    error::install_panic_hook();
    let cli = args::Cli::parse();
    if matches!(cli.command, args::Command::Serve(_)) {
        // Before the runtime (or anything else) starts a thread.
        malloc_arenas::limit_arenas();
    }
    let result = match cli.command {
        args::Command::Serve(args) => serve::run(*args),
        args::Command::Cache(args) => cache::run(args),
        args::Command::Session(args::SessionCommand::Inspect(args)) => session::inspect(&args),
        args::Command::Inspect(args) => inspect::run(&args),
        args::Command::Completions { shell } => docs::completions(shell),
        args::Command::Man => docs::man(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => err.report(),
    }
}
