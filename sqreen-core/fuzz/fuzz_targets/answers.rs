//! Fuzz target: `sqreen_core::fuzzing::answers` (see that module's docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sqreen_core::fuzzing::answers(data));
