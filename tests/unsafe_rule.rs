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
