//! The fuzz targets on stable: every file of `fuzz/corpus/<target>/` (the minimized corpora) and
//! `fuzz/regressions/<target>/` (every input a fuzzer found a failure with, named after the finding)
//! runs through the same property check as the target (`edgeward::fuzz_props`).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn run(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        for file in inputs(&root.join(dir).join(target)) {
            let data = std::fs::read(&file).unwrap();
            let name = file.display().to_string();
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{target}: {name}: {msg}");
            }
            n += 1;
        }
    }
    n
}

#[test]
fn every_target_has_a_corpus() {
    for (target, _) in edgeward::fuzz_props::TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        assert!(dir.is_file(), "{target}: no fuzz target");
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        assert!(!inputs(&corpus).is_empty(), "{target}: empty corpus");
    }
}

macro_rules! targets {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let n = run(stringify!($name), edgeward::fuzz_props::$name);
            assert!(n > 0, "no input for {}", stringify!($name));
        }
    )*};
}

targets!(
    client_ip,
    content_digest,
    http1,
    jwks,
    log_record,
    pairs,
    policy,
    sfv,
    signature,
    stream
);
