//! End-to-end tests: the real `cellucid` binary over real loopback sockets,
//! with a real HTTP client (ureq) and raw sockets where a client would
//! normalise the request away.
//!
//! Test data comes from `testdata/` (its README says what each file is, how
//! it was made and its licence) and the demo exports in `datasets/demo/`.
//! A test that needs an external program (Chromium) runs when it is installed
//! and otherwise says in one line that it was skipped: see
//! `support::require_tool`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs
)]

mod support;

mod anndata_folder;
mod anndata_large;
mod anndata_raw;
mod auth;
mod browser;
mod channel_cli;
mod channel_http;
mod channel_support;
mod channel_ws;
mod cli;
mod cli_conventions;
mod cli_errors;
mod cli_flags;
mod faults;
mod file_changes;
mod files;
mod hostile_files;
mod inputs_095;
mod limits;
mod proxies;
mod security;
mod soak;
mod tls;
mod web_ui;
