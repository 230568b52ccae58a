//! Fuzz target `host`: the checks live in `harness/mod.rs`, shared with the
//! corpus replay test (docs/FUZZING.md).
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::host(data));
