//! The development rate limit service (rls-dev/, a separate Cargo workspace) for the e2e tests and
//! the benchmark: built once per machine into a persistent target directory, started on a free
//! port, stopped by pid.
//!
//! Target directory: `EDGEWARD_RLS_TARGET`, else `$EDGEWARD_CACHE/rls-dev-target` (scripts/ set
//! `EDGEWARD_CACHE`, so CI on one machine builds it once), else `<repo>/target/rls-dev`.

use super::{repo_root, TempDir};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `ratelimit` cluster (HTTP/2, as gRPC needs) for the rendered envoy.yaml, pointing at `port`.
pub fn cluster_yaml(name: &str, port: u16, http2: bool) -> String {
    let h2 = if http2 {
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config:\n          http2_protocol_options: {}\n"
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{h2}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
    )
}

/// Appends a cluster to the rendered config (its `clusters:` list is the last section).
pub fn add_cluster(yaml: String, cluster: &str) -> String {
    let mut yaml = yaml;
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    yaml + cluster
}

/// The dev server binary, built (`cargo build --locked`) once per test process; a no-op when the
/// persistent target directory is up to date.
pub fn rls_dev_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| build(None, false)) {
        Ok(p) => p.clone(),
        Err(e) => panic!("building rls-dev failed: {e}"),
    }
}

/// The dev server built with `--release` (for measurements, e.g. the benchmark's D-rls: the debug
/// build's own latency would be counted as edgeward's cost).
pub fn rls_dev_release_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| build(None, true)) {
        Ok(p) => p.clone(),
        Err(e) => panic!("building rls-dev --release failed: {e}"),
    }
}

/// The dev server with Limitador's Redis storage (and not its RocksDB one), built by
/// `rls-dev/build-redis.sh` into its own target directory (`<target>-redis`): a cold build takes
/// about as long as the plain one.
pub fn rls_dev_redis_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build_redis) {
        Ok(p) => p.clone(),
        Err(e) => panic!("building rls-dev with Redis storage failed: {e}"),
    }
}

fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("EDGEWARD_RLS_TARGET").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(c) = std::env::var_os("EDGEWARD_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(c).join("rls-dev-target");
    }
    repo_root().join("target").join("rls-dev")
}

fn build(feature: Option<&str>, release: bool) -> Result<PathBuf, String> {
    let mut target = target_dir();
    if let Some(f) = feature {
        target.as_mut_os_string().push(format!("-{f}"));
    }
    let profile = if release { "release" } else { "debug" };
    let bin = target.join(profile).join("edgeward-rls-dev");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root().join("rls-dev"))
        .args(["build", "--locked", "--quiet"]);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
    }
    if release {
        cmd.arg("--release");
    }
    cmd.env("CARGO_TARGET_DIR", &target);
    run_build(cmd, &target)?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} missing after build", bin.display()))
    }
}

/// `bash rls-dev/build-redis.sh <target>-redis`, which prints the binary's path.
fn build_redis() -> Result<PathBuf, String> {
    let mut target = target_dir();
    target.as_mut_os_string().push("-redis");
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("rls-dev").join("build-redis.sh"))
        .arg(&target);
    let stdout = run_build(cmd, &target)?;
    let bin = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no binary at {:?} after build-redis.sh",
            bin.display()
        ))
    }
}

/// Runs a build command; its stdout, or its stderr as the error. Says how long a slow one took.
fn run_build(mut cmd: Command, target: &std::path::Path) -> Result<String, String> {
    let started = Instant::now();
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    if started.elapsed() > Duration::from_secs(20) {
        eprintln!(
            "built rls-dev in {:?} into {}",
            started.elapsed(),
            target.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running dev server; dropping it kills the process (by pid).
pub struct RlsServer {
    child: Option<Child>,
    addr: SocketAddr,
    _dir: TempDir,
}

impl RlsServer {
    /// Starts the server with `limits` (a JSON list of Limitador limits) on `listen` (port 0: a
    /// free one), answering `delay_ms` late.
    pub fn start(limits: &str, listen: SocketAddr, delay_ms: u64) -> Result<RlsServer, String> {
        Self::start_with(&rls_dev_bin(), limits, listen, delay_ms, &[])
    }

    /// Like `start`, with a given binary and extra arguments (e.g. `--redis URL`).
    pub fn start_with(
        bin: &std::path::Path,
        limits: &str,
        listen: SocketAddr,
        delay_ms: u64,
        extra: &[&str],
    ) -> Result<RlsServer, String> {
        let dir = TempDir::new("rls").map_err(|e| e.to_string())?;
        let file = dir.path().join("limits.json");
        std::fs::write(&file, limits).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(extra)
            .arg("--limits")
            .arg(&file)
            .args(["--listen", &listen.to_string()])
            .args(["--delay-ms", &delay_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawning rls-dev: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads the "listening on ADDR" line, then keeps draining so the server never blocks.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("rls-dev did not report its address".into());
            }
        };
        let addr = line
            .rsplit("listening on ")
            .next()
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            .ok_or_else(|| format!("unexpected first line from rls-dev: {line:?}"))?;
        Ok(RlsServer {
            child: Some(child),
            addr,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the server (by pid) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RlsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
