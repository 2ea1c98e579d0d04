//! Replays the agent's fuzz targets' inputs with stable Rust: the seeds,
//! the minimised corpus `scripts/fuzz.sh` keeps, and every input that once
//! crashed (`fuzz/regressions/<target>/`), so a crash found once never
//! returns and CI needs no nightly toolchain.
#![allow(clippy::unwrap_used)]

use std::path::Path;

/// Runs `target` on every file under `fuzz/{seeds,corpus,regressions}/<name>`.
fn replay(name: &str, target: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            if path.is_file() {
                target(&std::fs::read(&path).unwrap());
                count += 1;
            }
        }
    }
    assert!(count > 0, "no inputs for the fuzz target {name}");
}

macro_rules! replays {
    ($($name:ident),* $(,)?) => {$(
        /// Every kept input of this fuzz target runs without a panic.
        #[test]
        fn $name() {
            replay(stringify!($name), sqreen_core::fuzzing::$name);
        }
    )*};
}

replays!(scrubber, client_ip, config_file, answers);
