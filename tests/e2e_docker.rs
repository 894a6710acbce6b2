//! envoy/docker-compose.yml run for real: the shipped compose file and envoy/envoy.yaml, unchanged, with a local
//! Envoy image built `FROM scratch` from the harness's Envoy binary (no registry needed), the built plugin and
//! the test certificates. The demo's requests: plain HTTP redirected to HTTPS, an HTTPS request answered by the
//! upstream, a signed request that reaches the upstream with `x-edgeward-key-id`, a replay refused, a burst that
//! hits the rate limit, and edgeward's JSON records in Envoy's access log (the container's stdout). Then
//! `compose down`, and no container of the project is left.
//!
//! Skipped (with the reason on stderr) where Docker cannot run, unless EDGEWARD_REQUIRE_DOCKER=1, as
//! scripts/test.sh sets: then it fails. The stack uses the fixed ports of envoy/envoy.yaml (10000, 10443, 9901,
//! 8080 on loopback), so one such test runs at a time on a machine (a lock file) and it fails at once, naming
//! the port, if another process holds one (`scripts/run.sh`, say).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod docker;
mod support;

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::{Client, Req, Tls};

/// The compose stack's fixed ports (envoy/envoy.yaml, envoy/upstream.yaml).
const HTTP: u16 = 10000;
const HTTPS: u16 = 10443;
const ADMIN: u16 = 9901;
const UPSTREAM: u16 = 8080;

/// Test secrets for the variables the demo policy names (32 bytes each, base64).
const PARTNER_A_KEY: &[u8; 32] = b"compose-test-partner-a-key-00001";
const PARTNER_A_KEY_NEXT: &[u8; 32] = b"compose-test-partner-a-key-00002";
const LOG_KEY: &[u8; 32] = b"compose-test-log-pseudonym-key-1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn secrets() -> Vec<(&'static str, String)> {
    vec![
        ("PARTNER_A_KEY", b64(PARTNER_A_KEY)),
        ("PARTNER_A_KEY_NEXT", b64(PARTNER_A_KEY_NEXT)),
        ("EDGEWARD_LOG_KEY", b64(LOG_KEY)),
        ("EDGEWARD_HASH_KEY", "compose-test".to_string()),
    ]
}

/// A compose project brought up from envoy/docker-compose.yml; `down` (or drop) takes it down.
struct Stack {
    compose: Vec<String>,
    project: String,
    env: Vec<(String, String)>,
    up: bool,
}

impl Stack {
    fn command(&self, args: &[&str]) -> Command {
        let file = support::repo_root()
            .join("envoy")
            .join("docker-compose.yml");
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-f")
            .arg(file)
            .args(["-p", &self.project])
            .args(args);
        // Only what the test gives: the developer's shell must not choose the image or the secrets.
        for key in [
            "ENVOY_IMAGE",
            "EDGEWARD_WASM",
            "EDGEWARD_CERTS",
            "COMPOSE_FILE",
            "COMPOSE_PROJECT_NAME",
        ]
        .iter()
        .chain(support::PLUGIN_ENV_KEYS.iter())
        .chain(["EDGEWARD_HASH_KEY"].iter())
        {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn up(compose: &[String], project: &str, env: Vec<(String, String)>) -> Stack {
        let mut stack = Stack {
            compose: compose.to_vec(),
            project: project.to_string(),
            env,
            up: true,
        };
        if let Err(e) = docker::run(&mut stack.command(&["up", "-d"]), Duration::from_secs(180)) {
            let logs = stack.logs();
            stack.down().ok();
            panic!("compose up failed: {e}\n{logs}");
        }
        stack
    }

    /// The id of a service's container.
    fn container(&self, service: &str) -> String {
        let out = docker::run(
            &mut self.command(&["ps", "-q", service]),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Envoy's access log: the envoy container's stdout (envoy.yaml logs to /dev/stdout; Envoy's own log
    /// goes to stderr).
    fn access_log(&self) -> String {
        let id = self.container("envoy");
        match docker::docker(&["logs", &id], Duration::from_secs(60)) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => panic!("docker logs: {e}"),
        }
    }

    /// Every service's output, for a failure message.
    fn logs(&self) -> String {
        match docker::run(
            &mut self.command(&["logs", "--no-color"]),
            Duration::from_secs(60),
        ) {
            Ok(out) => format!(
                "--- compose logs ---\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("(compose logs failed: {e})"),
        }
    }

    fn down(&mut self) -> Result<(), String> {
        if !self.up {
            return Ok(());
        }
        self.up = false;
        docker::run(
            &mut self.command(&["down", "-t", "5", "--remove-orphans"]),
            Duration::from_secs(120),
        )
        .map(|_| ())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.up && std::thread::panicking() {
            let _ = writeln!(std::io::stderr().lock(), "{}", self.logs());
        }
        if let Err(e) = self.down() {
            let _ = writeln!(std::io::stderr().lock(), "compose down failed: {e}");
        }
    }
}

/// Serializes the tests that bind the stack's fixed ports (also across test processes and worktrees).
fn port_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("edgeward-e2e-docker.lock");
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    file
}

/// Panics naming the first of the stack's ports that another process holds.
fn assert_ports_free() {
    let mut addrs: Vec<SocketAddr> = [HTTP, HTTPS, ADMIN, UPSTREAM]
        .iter()
        .map(|&p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
        .collect();
    if support::ipv6_available() {
        addrs.push(SocketAddr::from((Ipv6Addr::LOCALHOST, HTTP)));
        addrs.push(SocketAddr::from((Ipv6Addr::LOCALHOST, HTTPS)));
    }
    for addr in addrs {
        if let Err(e) = TcpListener::bind(addr) {
            panic!(
                "{addr} is taken ({e}): the compose stack binds envoy/envoy.yaml's fixed ports \
                 (is scripts/run.sh or another stack running?)"
            );
        }
    }
}

/// Waits until Envoy's admin says LIVE and every listener accepts.
fn wait_ready(stack: &Stack) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, ADMIN));
    loop {
        let live = Client::h1()
            .send_blocking(admin, &Req::get("/ready"))
            .is_ok_and(|r| r.status == 200 && r.text().trim() == "LIVE");
        let accept = [HTTP, HTTPS, UPSTREAM].iter().all(|&p| {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
                Duration::from_secs(1),
            )
            .is_ok()
        });
        if live && accept {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the compose stack is not ready after 90 s\n{}",
            stack.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `edgeward sign --print headers` for `raw` as partner-a, the way the README's worked example signs.
fn sign_headers(raw: &[u8]) -> Vec<(String, String)> {
    let args = [
        "sign",
        "--key-id",
        "partner-a",
        "--secret-env",
        "PARTNER_A_KEY",
        "--components",
        "@method,@authority,@path,@query,content-digest",
        "--random-nonce",
        "--print",
        "headers",
        "--request",
        "-",
    ];
    let out = support::cli::ok(&args, [("PARTNER_A_KEY", b64(PARTNER_A_KEY))], raw);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// The access log's records (JSON lines) once `want` holds for them, waiting up to 15 s (Envoy flushes the
/// log every second with the compose file's flags).
fn records_when(stack: &Stack, what: &str, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = stack.access_log();
        let records: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect();
        if want(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "access log has no {what}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn compose_stack_runs_the_demo() {
    let Some(docker) = docker::docker_or_skip("compose_stack_runs_the_demo") else {
        return;
    };
    let started = Instant::now();
    let image = docker::local_envoy_image().unwrap_or_else(|e| panic!("local Envoy image: {e}"));
    let image_time = started.elapsed();
    let wasm = support::wasm_path();
    let _lock = port_lock();
    assert_ports_free();

    let certs = support::TempDir::new("compose-certs").unwrap();
    support::test_pki().write_to(certs.path()).unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("ENVOY_IMAGE".into(), image.clone()),
        ("EDGEWARD_WASM".into(), path_text(&wasm)),
        ("EDGEWARD_CERTS".into(), path_text(certs.path())),
    ];
    env.extend(secrets().into_iter().map(|(k, v)| (k.to_string(), v)));
    let project = format!("edgeward-e2e-{}", std::process::id());
    let mut stack = Stack::up(&docker.compose, &project, env);
    wait_ready(&stack);
    let up_time = started.elapsed();

    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, HTTP));
    let https = SocketAddr::from((Ipv4Addr::LOCALHOST, HTTPS));
    let tls = Client::h1().tls(Tls::V1_3);

    // Plain HTTP: redirected to HTTPS, the query kept in the Location.
    let resp = Client::h1()
        .send_blocking(
            http,
            &Req::get("/docs?token=abc").authority("localhost:10000"),
        )
        .unwrap();
    assert_eq!(resp.status, 301, "{}", resp.text());
    assert_eq!(
        resp.header("location"),
        Some("https://localhost:10443/docs?token=abc")
    );

    // HTTPS: the upstream answers, and edgeward adds HSTS.
    let resp = tls
        .send_blocking(https, &Req::get("/docs").authority("localhost:10443"))
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["path"], "/docs");
    assert!(resp.header("strict-transport-security").is_some());

    // A signed request reaches the upstream with the verified key id; the same headers again are refused.
    let body = br#"{"amount":10}"#;
    let mut raw = b"POST /partner/orders HTTP/1.1\r\nHost: localhost:10443\r\nContent-Type: application/json\r\n\r\n"
        .to_vec();
    raw.extend_from_slice(body);
    let signed = sign_headers(&raw);
    assert!(signed
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("signature")));
    let mut req = Req::post("/partner/orders", body.to_vec())
        .authority("localhost:10443")
        .header("content-type", "application/json");
    for (name, value) in &signed {
        req = req.header(name, value);
    }
    let resp = tls.send_blocking(https, &req).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = resp.json();
    assert_eq!(seen["path"], "/partner/orders");
    assert_eq!(seen["headers"]["x-edgeward-key-id"], "partner-a", "{seen}");
    let replay = tls.send_blocking(https, &req).unwrap();
    assert_eq!(replay.status, 401, "a replayed nonce: {}", replay.text());

    // A burst from one client: the public policy's per-client limit (20 per 10 s) answers 429.
    let mut statuses = Vec::new();
    let limited = (0..30).find_map(|_| {
        let r = tls
            .send_blocking(https, &Req::get("/docs").authority("localhost:10443"))
            .unwrap();
        statuses.push(r.status);
        (r.status == 429).then_some(r)
    });
    let limited = limited.unwrap_or_else(|| panic!("no 429 in the burst: {statuses:?}"));
    assert!(limited.header("retry-after").is_some());
    assert!(
        statuses.iter().filter(|&&s| s == 200).count() >= 10,
        "{statuses:?}"
    );

    // edgeward's records in the access log, anonymized as the demo document says.
    let records = records_when(
        &stack,
        "record of the redirect, the signed request and the 429",
        |recs| {
            let has = |f: &dyn Fn(&Value) -> bool| recs.iter().any(f);
            has(&|r| r["decision"] == "redirect" && r["status"] == 301)
                && has(&|r| r["policy"] == "partner" && r["decision"] == "allow")
                && has(&|r| r["reason"] == "rate_limited" && r["status"] == 429)
        },
    );
    let partner = records
        .iter()
        .find(|r| r["policy"] == "partner" && r["decision"] == "allow")
        .unwrap();
    assert_eq!(partner["route"], "partner-api");
    assert_eq!(partner["tls"], "1.3");
    assert!(
        partner["key_id"].is_string() && partner["key_id"] != "partner-a",
        "{partner}"
    );
    assert_eq!(partner["client_ip"], "127.0.0.0", "truncated: {partner}");
    let redirect = records
        .iter()
        .find(|r| r["decision"] == "redirect")
        .unwrap();
    assert_eq!(redirect["path"], "/docs?token=REDACTED", "{redirect}");
    let requests_time = started.elapsed();

    // Down, and nothing of the project is left.
    stack.down().unwrap_or_else(|e| panic!("compose down: {e}"));
    let left = docker::docker(
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ],
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        left.stdout.trim_ascii().is_empty(),
        "containers left after down: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    eprintln!(
        "compose test ({}): image ready {:.1?}, stack ready {:.1?}, requests done {:.1?}, down {:.1?}",
        docker.compose.join(" "),
        image_time,
        up_time,
        requests_time,
        started.elapsed()
    );
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Media types the Wasm image fetchers of Istio and Envoy Gateway accept for the "compat" image (see
/// scripts/oci-image.sh): a Docker manifest with a Docker layer, or an OCI manifest with an OCI layer.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Removes the given image tags when dropped.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = docker::docker(&["image", "rm", image], Duration::from_secs(60));
        }
    }
}

/// A local registry (Debian's docker-registry) on a free loopback port, killed (by pid) when dropped.
struct Registry {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: support::TempDir,
}

impl Registry {
    fn start(binary: &Path) -> Registry {
        let dir = support::TempDir::new("registry").unwrap();
        let port = support::free_port(false).unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: warn }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while registry.get("/v2/", &[]).map(|r| r.status) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "the registry did not answer on {addr}"
            );
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("the registry exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    fn get(&self, path: &str, accept: &[&str]) -> Option<support::Response> {
        let mut req = Req::get(path).authority(&self.addr.to_string());
        for a in accept {
            req = req.header("accept", a);
        }
        Client::h1().send_blocking(self.addr, &req).ok()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The entries of a tar file, and the content of its `plugin.wasm` (GNU tar; `gzip` for a .tar.gz).
fn tar_contents(tar: &Path, gzip: bool) -> (Vec<String>, Vec<u8>) {
    let flag = |f: &str| {
        if gzip {
            format!("-z{f}")
        } else {
            format!("-{f}")
        }
    };
    let list = docker::run(
        Command::new("tar").arg(flag("tf")).arg(tar),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let names = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let wasm = docker::run(
        Command::new("tar")
            .arg(flag("xOf"))
            .arg(tar)
            .arg("plugin.wasm"),
        Duration::from_secs(60),
    )
    .map(|o| o.stdout)
    .unwrap_or_default();
    (names, wasm)
}

#[test]
fn plugin_image_has_the_layout_istio_and_envoy_gateway_pull() {
    const TEST: &str = "plugin_image_has_the_layout_istio_and_envoy_gateway_pull";
    let Some(_docker) = docker::docker_or_skip(TEST) else {
        return;
    };
    let Some(registry_bin) = docker::tool_or_skip(TEST, "docker-registry", "docker-registry")
    else {
        return;
    };
    let wasm_path = support::wasm_path();
    let wasm = std::fs::read(&wasm_path).unwrap();
    let image = format!("edgeward-wasm-test:{}", std::process::id());
    let mut images = Images(vec![image.clone()]);

    // Built by the shipped script.
    let out = docker::run(
        Command::new("bash")
            .arg(support::repo_root().join("scripts").join("oci-image.sh"))
            .arg(&image)
            .env("EDGEWARD_WASM", &wasm_path),
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("scripts/oci-image.sh: {e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), image);

    // As stored: `docker save`, one layer holding only plugin.wasm, byte for byte the plugin.
    let dir = support::TempDir::new("oci-save").unwrap();
    let saved = dir.path().join("image.tar");
    docker::docker(
        &["save", "-o", &path_text(&saved), &image],
        Duration::from_secs(120),
    )
    .unwrap();
    let unpacked = dir.path().join("image");
    std::fs::create_dir(&unpacked).unwrap();
    docker::run(
        Command::new("tar")
            .arg("-xf")
            .arg(&saved)
            .arg("-C")
            .arg(&unpacked),
        Duration::from_secs(60),
    )
    .unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "docker save manifest: {manifest}");
    let (names, content) = tar_contents(&unpacked.join(layers[0].as_str().unwrap()), false);
    assert_eq!(names, ["plugin.wasm"]);
    assert!(
        content == wasm,
        "the layer's plugin.wasm differs from {}",
        wasm_path.display()
    );
    let config: Value = serde_json::from_slice(
        &std::fs::read(unpacked.join(manifest[0]["Config"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1)
    );

    // As a fetcher sees it: pushed to a registry, then the manifest and the layer read back over the
    // registry API with the media types the fetchers check.
    let registry = Registry::start(&registry_bin);
    let pushed = format!("{}/edgeward-wasm:test", registry.addr);
    images.0.push(pushed.clone());
    docker::docker(&["tag", &image, &pushed], Duration::from_secs(30)).unwrap();
    docker::docker(&["push", &pushed], Duration::from_secs(120)).unwrap();
    let resp = registry
        .get(
            "/v2/edgeward-wasm/manifests/test",
            &[DOCKER_MANIFEST, OCI_MANIFEST],
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let manifest = resp.json();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let want_layer = match manifest["mediaType"].as_str() {
        Some(DOCKER_MANIFEST) => DOCKER_LAYER,
        Some(OCI_MANIFEST) => OCI_LAYER,
        other => panic!("manifest media type {other:?}: {manifest}"),
    };
    assert_eq!(layers[0]["mediaType"], want_layer, "{manifest}");
    let digest = layers[0]["digest"].as_str().unwrap();
    let blob = registry
        .get(&format!("/v2/edgeward-wasm/blobs/{digest}"), &[])
        .unwrap();
    assert_eq!(blob.status, 200);
    let layer_file = dir.path().join("layer.tar.gz");
    std::fs::write(&layer_file, &blob.body).unwrap();
    let (names, content) = tar_contents(&layer_file, true);
    assert_eq!(names, ["plugin.wasm"]);
    assert!(content == wasm, "the pushed layer's plugin.wasm differs");
}
