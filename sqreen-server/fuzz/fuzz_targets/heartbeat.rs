//! Fuzz target: `sqreen_server::fuzzing::heartbeat` (see that module's docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sqreen_server::fuzzing::heartbeat(data));
