//! `unsafe` only where the ABI needs it: the crate root denies `unsafe_code` and only `adapter` and
//! `host` allow it. This builds the library with `src/lib.rs`'s probe module (an `unsafe` block outside
//! them, behind `--cfg edgeward_unsafe_probe`) and expects the build to fail on that lint. That the
//! library builds without the probe is every other build.
//!
//! The check uses a target directory of its own that stays between runs (`$EDGEWARD_CACHE`, else the
//! system temp dir), so after the first run it only re-checks this crate.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;
use std::process::Command;

fn probe_target_dir() -> PathBuf {
    let base = std::env::var_os("EDGEWARD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("edgeward-unsafe-probe-target")
}

#[test]
fn unsafe_outside_the_abi_modules_does_not_compile() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["check", "--lib", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", probe_target_dir())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", "--cfg edgeward_unsafe_probe")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the probe's unsafe block compiled:\n{stderr}"
    );
    assert!(
        stderr.contains("error: usage of an `unsafe` block")
            && stderr.contains("src/lib.rs")
            && stderr.contains("unsafe_code"),
        "the build failed, but not on the unsafe_code lint:\n{stderr}"
    );
    // Nothing else failed: the probe's block is the only error.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error") && !l.starts_with("error: could not compile"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
}

/// No module lifts the rule for itself: `unsafe_code` is allowed only on the two ABI modules'
/// declarations in src/lib.rs, and no source file allows it (or `unsafe_op_in_unsafe_fn`, or
/// forbids less) on its own.
#[test]
fn only_lib_rs_allows_unsafe_code_for_the_abi_modules() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("a source file");
            let allows: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("unsafe_code") && !l.trim_start().starts_with("//"))
                .collect();
            if path == src.join("lib.rs") {
                let next_lines: Vec<&str> = text
                    .lines()
                    .skip_while(|l| !l.contains("#[allow(unsafe_code)]"))
                    .filter(|l| {
                        l.trim_start().starts_with("mod ") || l.trim_start().starts_with("pub mod ")
                    })
                    .take(2)
                    .collect();
                assert_eq!(
                    allows
                        .iter()
                        .filter(|l| l.contains("allow(unsafe_code)"))
                        .count(),
                    2,
                    "src/lib.rs allows unsafe_code other than for the two ABI modules: {allows:?}"
                );
                assert!(
                    next_lines
                        .iter()
                        .all(|l| l.contains("adapter") || l.contains("host")),
                    "src/lib.rs allows unsafe_code on {next_lines:?}"
                );
            } else {
                assert!(
                    allows.is_empty(),
                    "{}: lifts the unsafe_code rule: {allows:?}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 20, "only {files} source files found");
}
