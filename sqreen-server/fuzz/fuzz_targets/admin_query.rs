//! Fuzz target: `sqreen_server::fuzzing::admin_query` (see that module's docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sqreen_server::fuzzing::admin_query(data));
