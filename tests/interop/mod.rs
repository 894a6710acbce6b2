//! Independent RFC 9421 implementations for tests/e2e_interop.rs: installs them (pinned) into
//! `$EDGEWARD_CACHE` once, runs their drivers (sign.py/verify.py, sign.mjs/verify.mjs, beside this
//! file) on a request given as JSON, and models the request both ways (the drivers' JSON, the bytes
//! sent to Envoy).
//!
//! Where an implementation cannot be installed, `installed_or_skip` skips the test with the reason on
//! stderr, unless `EDGEWARD_REQUIRE_INTEROP=1` (scripts/test.sh and so CI set it): then it fails.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The variable that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "EDGEWARD_REQUIRE_INTEROP";

/// The pinned packages (every file that decides what gets installed is part of the cache key).
const PY_REQUIREMENTS: &str = include_str!("requirements.txt");
const NPM_PACKAGE: &str = include_str!("package.json");
const NPM_LOCK: &str = include_str!("package-lock.json");

/// An independent implementation and how to drive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    /// PyPI http-message-signatures 3.0.0 (pyauth).
    Python,
    /// npm http-message-signatures 1.0.6 (dhensby/node-http-message-signatures).
    NodeHms,
    /// npm http-message-sig 0.3.0 (cloudflare/web-bot-auth).
    NodeSig,
}

pub const ALL_LIBS: [Lib; 3] = [Lib::Python, Lib::NodeHms, Lib::NodeSig];

impl Lib {
    /// The package name and pinned version, as the drivers report them.
    pub fn library(self) -> &'static str {
        match self {
            Lib::Python => "http-message-signatures 3.0.0",
            Lib::NodeHms => "http-message-signatures 1.0.6",
            Lib::NodeSig => "http-message-sig 0.3.0",
        }
    }

    /// Where it comes from, for messages.
    pub fn registry(self) -> &'static str {
        match self {
            Lib::Python => "PyPI",
            Lib::NodeHms | Lib::NodeSig => "npm",
        }
    }

    pub fn label(self) -> String {
        format!("{} {}", self.registry(), self.library())
    }

    fn npm_name(self) -> Option<&'static str> {
        match self {
            Lib::Python => None,
            Lib::NodeHms => Some("http-message-signatures"),
            Lib::NodeSig => Some("http-message-sig"),
        }
    }

    /// Signs `spec` (the request and the signing parameters): Ok(headers to add) or Err(the library's
    /// refusal). Panics when the driver itself fails.
    pub fn sign(self, tools: &Tools, spec: &Value) -> Result<Signed, String> {
        self.sign_all(tools, std::slice::from_ref(spec)).remove(0)
    }

    /// `sign` for many requests with one start of the driver.
    pub fn sign_all(self, tools: &Tools, specs: &[Value]) -> Vec<Result<Signed, String>> {
        self.run(tools, "sign", specs)
            .into_iter()
            .map(|out| {
                if let Some(e) = out["error"].as_str() {
                    return Err(e.to_string());
                }
                let headers = out["headers"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{}: no headers in {out}", self.label()))
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_string(),
                            p[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                Ok(Signed {
                    headers,
                    base: out["base"].as_str().unwrap_or_default().to_string(),
                })
            })
            .collect()
    }

    /// Verifies `spec` (a signed request and the key): Ok(details) or Err(why not).
    pub fn verify(self, tools: &Tools, spec: &Value) -> Result<Value, String> {
        self.verify_all(tools, std::slice::from_ref(spec)).remove(0)
    }

    /// `verify` for many requests with one start of the driver.
    pub fn verify_all(self, tools: &Tools, specs: &[Value]) -> Vec<Result<Value, String>> {
        self.run(tools, "verify", specs)
            .into_iter()
            .map(|out| {
                if out["ok"] == true {
                    Ok(out)
                } else {
                    Err(out["error"].as_str().unwrap_or("?").to_string())
                }
            })
            .collect()
    }

    /// Runs the driver once on the array of `specs`; returns its results, in order.
    fn run(self, tools: &Tools, action: &str, specs: &[Value]) -> Vec<Value> {
        let dir = drivers_dir();
        let mut cmd = match self {
            Lib::Python => {
                let mut c = Command::new("python3");
                // -I: nothing from the user's site-packages or PYTHON* variables; -B: no
                // __pycache__ in the clone.
                c.args(["-I", "-B"])
                    .arg(dir.join(format!("{action}.py")))
                    .env("EDGEWARD_INTEROP_SITE", &tools.python_site);
                c
            }
            Lib::NodeHms | Lib::NodeSig => {
                let mut c = Command::new("node");
                c.arg(dir.join(format!("{action}.mjs")))
                    .env("EDGEWARD_INTEROP_NODE", &tools.node_prefix);
                c
            }
        };
        let specs: Vec<Value> = specs
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if let Some(name) = self.npm_name() {
                    s["lib"] = json!(name);
                }
                s
            })
            .collect();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} {action}: {e}", self.label()));
        let mut stdin = child.stdin.take().unwrap();
        let input = Value::from(specs.clone()).to_string();
        // Written from another thread: a large batch must not fill both pipes at once.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let parsed: Vec<Value> = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
            panic!(
                "{} {action} driver failed ({}):\nstdout: {text}\nstderr: {}",
                self.label(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(parsed.len(), specs.len(), "{} {action}", self.label());
        for p in &parsed {
            assert_eq!(
                p["library"],
                self.library(),
                "the driver loaded another version than the pinned one"
            );
        }
        parsed
    }
}

/// What a signer adds.
#[derive(Clone, Debug)]
pub struct Signed {
    /// Content-Digest (when asked), Signature-Input, Signature.
    pub headers: Vec<(String, String)>,
    /// The signature base the library signed (for failure messages).
    pub base: String,
}

// ---------------------------------------------------------------------------------------------
// Installing

/// Where the pinned packages are installed.
pub struct Tools {
    pub python_site: PathBuf,
    pub node_prefix: PathBuf,
}

/// tests/interop/ (the drivers).
pub fn drivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("EDGEWARD_CACHE").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".cache")
            .join("edgeward"),
    }
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `install(tmp)` into a private directory and renames it to `dir`, unless `dir` is there: two
/// concurrent runs never see half an install.
fn install_once(
    dir: &Path,
    what: &str,
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let started = Instant::now();
    if let Err(e) = install(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "installed {what} into {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn install_python() -> Result<PathBuf, String> {
    let dir = cache_dir().join(format!("interop-python-{}", digest(&[PY_REQUIREMENTS])));
    install_once(
        &dir,
        "PyPI http-message-signatures==3.0.0 (tests/interop/requirements.txt)",
        |tmp| {
            run_tool(
                Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .args([
                        "--no-input",
                        "--root-user-action=ignore",
                        "--only-binary=:all:",
                    ])
                    .arg("--target")
                    .arg(tmp)
                    .arg("-r")
                    .arg(drivers_dir().join("requirements.txt")),
                "pip install -r tests/interop/requirements.txt",
            )
        },
    )?;
    Ok(dir)
}

fn install_node() -> Result<PathBuf, String> {
    let dir = cache_dir().join(format!("interop-node-{}", digest(&[NPM_PACKAGE, NPM_LOCK])));
    install_once(
        &dir,
        "npm http-message-signatures@1.0.6 and http-message-sig@0.3.0 (tests/interop/package-lock.json)",
        |tmp| {
            std::fs::write(tmp.join("package.json"), NPM_PACKAGE).map_err(|e| e.to_string())?;
            std::fs::write(tmp.join("package-lock.json"), NPM_LOCK).map_err(|e| e.to_string())?;
            // `npm ci`: exactly the lock file's versions and integrity hashes.
            run_tool(
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(tmp),
                "npm ci (tests/interop/package-lock.json)",
            )
        },
    )?;
    Ok(dir)
}

/// Both ecosystems' packages, installed once per process (and once per cache).
pub fn installed() -> Result<&'static Tools, String> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let python_site = install_python()?;
            let node_prefix = install_node()?;
            Ok(Tools {
                python_site,
                node_prefix,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The installed tools, or None after saying on stderr why `test` is skipped. Panics instead when
/// EDGEWARD_REQUIRE_INTEROP=1.
pub fn installed_or_skip(test: &str) -> Option<&'static Tools> {
    match installed() {
        Ok(t) => Some(t),
        Err(why) => {
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{test}: the independent implementations are required ({REQUIRE_VAR}=1) but could not be installed: {why}");
            }
            // Straight to the process's stderr: a skip must be seen without --nocapture.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n{test}: SKIPPED (could not install the independent implementations: {why})\n  set {REQUIRE_VAR}=1 to fail instead; scripts/test.sh does"
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A request as the client sends it, over HTTP/1.1 (plain or TLS).
#[derive(Clone, Debug)]
pub struct Msg {
    pub method: String,
    /// Sent over TLS (Envoy's https listener): the scheme the signer uses.
    pub tls: bool,
    /// The Host header (and the URI's authority for the signer), as sent.
    pub authority: String,
    /// The request target (path and query) as sent.
    pub target: String,
    /// In order; values as bytes (not necessarily UTF-8).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Msg {
    pub fn new(method: &str, target: &str) -> Msg {
        Msg {
            method: method.to_string(),
            tls: false,
            authority: "localhost".to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Msg {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Msg {
        self.body = body.into();
        self
    }

    pub fn authority(mut self, authority: &str) -> Msg {
        self.authority = authority.to_string();
        self
    }

    pub fn tls(mut self, tls: bool) -> Msg {
        self.tls = tls;
        self
    }

    /// The target URI the signer is given: scheme, the authority as sent, the target as sent.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.target)
    }

    /// The request in the drivers' JSON form (values that are not UTF-8 as {"b64"}).
    pub fn spec(&self) -> Value {
        let headers: Vec<Value> = self
            .headers
            .iter()
            .map(|(n, v)| match std::str::from_utf8(v) {
                Ok(s) => json!([n, s]),
                Err(_) => json!([n, { "b64": b64(v) }]),
            })
            .collect();
        json!({
            "method": self.method,
            "url": self.url(),
            "request_target": self.target,
            "headers": headers,
            "body_b64": b64(&self.body),
        })
    }

    /// The HTTP/1.1 bytes: request line, Host, the headers in order, Content-Length, the body.
    pub fn raw(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.target, self.authority
        )
        .into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The value of the first header `name` (lossy), if any.
    pub fn get(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Replaces every line of `name` with one line holding `value` (in the first line's place).
    pub fn set(mut self, name: &str, value: impl AsRef<[u8]>) -> Msg {
        let at = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name));
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        let line = (name.to_string(), value.as_ref().to_vec());
        match at {
            Some(i) => self.headers.insert(i.min(self.headers.len()), line),
            None => self.headers.push(line),
        }
        self
    }
}
