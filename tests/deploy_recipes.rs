//! The Kubernetes recipes (envoy/istio, envoy/envoy-gateway), checked as far as a machine without a cluster
//! allows:
//! - the policy document they embed is envoy/kubernetes-policy.json (the WasmPlugin's: minus the body binding),
//!   valid against policies/schema.json and compiled by the core;
//! - their structure: what edgeward needs is there (allow_on_headers_stop_iteration, the route configuration
//!   lines of envoy/envoy.yaml, the secrets as host environment variables, names that refer to each other);
//! - the Istio manifests against the schema Istio publishes for its CRDs (npm @kubernetes-models/istio, built
//!   from Istio's crd-all.gen.yaml: types, enums, patterns) and against its TypeScript declarations (tsc's
//!   excess-property check: no unknown field). No package ships Envoy Gateway's CRD schemas: its manifests are
//!   checked field by field against the API as Envoy Gateway documents it, in this file;
//! - in Envoy (`envoy --mode validate`, V8, the built plugin): for each recipe, the filter and route
//!   configuration it makes the control plane generate (Istio: the extension config as the agent hands it over,
//!   or a WasmPlugin's PluginConfig as istiod builds it; Envoy Gateway: its listener and route configuration with
//!   the EnvoyPatchPolicy's patches applied), with the secrets set (and refused without them).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const HCM: &str = "envoy.filters.network.http_connection_manager";
const ROUTER: &str = "envoy.filters.http.router";
/// The secrets the document names, and the optional hash key: what each recipe passes to the plugin.
const HOST_ENV_KEYS: [&str; 4] = [
    "EDGEWARD_LOG_KEY",
    "PARTNER_A_KEY",
    "PARTNER_A_KEY_NEXT",
    "EDGEWARD_HASH_KEY",
];
/// The npm packages for the Istio check, pinned: the models are generated from Istio 1.29.2's CRDs.
const ISTIO_MODELS: &str = "@kubernetes-models/istio@3.0.1";
const TYPESCRIPT: &str = "typescript@5.9.3";

fn root() -> PathBuf {
    support::repo_root()
}

// ---------------------------------------------------------------------------------------------
// Reading manifests

fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| panic!("not a number: {s}")),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match k {
                    Yaml::String(k) => (k.clone(), yaml_to_json(v)),
                    other => panic!("a mapping key that is not a string: {other:?}"),
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("an unresolved YAML node"),
    }
}

/// The YAML documents of a file under the repository root, as JSON.
fn manifests(rel: &str) -> Vec<Value> {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .iter()
        .map(yaml_to_json)
        .filter(|v| !v.is_null())
        .collect()
}

/// The single manifest of a file, checked to be of this apiVersion and kind.
fn manifest(rel: &str, api_version: &str, kind: &str) -> Value {
    let docs = manifests(rel);
    assert_eq!(docs.len(), 1, "{rel}: one manifest");
    let m = docs.into_iter().next().unwrap();
    assert_eq!(m["apiVersion"], api_version, "{rel}");
    assert_eq!(m["kind"], kind, "{rel}");
    m
}

fn read_json(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// envoy/kubernetes-policy.json: the document the recipes embed.
fn k8s_document() -> Value {
    read_json("envoy/kubernetes-policy.json")
}

/// The route configuration lines of envoy/envoy.yaml that write edgeward's upstream headers.
fn reference_header_lines() -> Map<String, Value> {
    let envoy = manifests("envoy/envoy.yaml").remove(0);
    let rc = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"];
    let mut out = Map::new();
    for key in ["request_headers_to_remove", "request_headers_to_add"] {
        assert!(rc[key].is_array(), "envoy.yaml route_config.{key}");
        out.insert(key.to_string(), rc[key].clone());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The policy document

/// The recipes' variables with test values, for Envoy.
fn secret_env() -> Vec<(String, String)> {
    HOST_ENV_KEYS
        .iter()
        .map(|k| (k.to_string(), support::documents::dummy_secret(k)))
        .collect()
}

/// Panics unless `doc` validates against policies/schema.json and compiles in the core.
fn assert_valid_document(what: &str, doc: &Value) {
    let schema = read_json("policies/schema.json");
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: schema: {}", errors.join("\n"));
    if let Err(errs) = support::documents::compile(doc) {
        panic!("{what}: the core refuses it: {}", errs.join("\n"));
    }
}

/// Panics unless `keys` are the document's secrets plus the optional EDGEWARD_HASH_KEY.
fn assert_host_env_keys(what: &str, keys: &Value, doc: &Value) {
    let got: BTreeSet<String> = keys
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not a list: {keys}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let mut want = support::documents::env_names(doc);
    want.insert("EDGEWARD_HASH_KEY".to_string());
    assert_eq!(got, want, "{what}");
}

/// The document with `content-digest` (and the body limit) left out of every signature.
fn without_body_binding(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(policies) = doc["policies"].as_object_mut() {
        for policy in policies.values_mut() {
            if let Some(sig) = policy.get_mut("signature").and_then(Value::as_object_mut) {
                sig.remove("max_body_bytes");
                if let Some(c) = sig.get_mut("components").and_then(Value::as_array_mut) {
                    c.retain(|x| x != "content-digest");
                }
            }
        }
    }
    doc
}

#[test]
fn the_kubernetes_document_is_valid() {
    let doc = k8s_document();
    assert_valid_document("envoy/kubernetes-policy.json", &doc);
    // It selects policies by path, never by Envoy's route names (generated by both control planes).
    for route in doc["routes"].as_array().unwrap() {
        assert!(route.get("route").is_none(), "{route}");
    }
    // Body checks are on: the recipes must set allow_on_headers_stop_iteration (the WasmPlugin's document
    // leaves them out).
    assert_ne!(without_body_binding(&doc), doc);
}

// ---------------------------------------------------------------------------------------------
// Envoy configs equivalent to what each recipe produces

/// A static Envoy config with one listener whose HTTP chain is `filters` then the router, and this route
/// configuration, around an upstream cluster.
fn envoy_config(filters: Vec<Value>, route_config: Value) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({
        "name": ROUTER,
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    json!({
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": HCM,
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        // As both control planes set it at a gateway (edgeward needs it: README, "Client addresses").
                        "use_remote_address": true,
                        "http_filters": http_filters,
                        "route_config": route_config
                    }
                }]}]
            }],
            "clusters": [{
                "name": "backend",
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": {
                    "cluster_name": "backend",
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": "127.0.0.1", "port_value": 8080 }
                    }}}]}]
                }
            }]
        }
    })
}

/// A route configuration: `header_lines` at its top level, one catch-all route (with `route_extra` merged in).
fn route_config(name: &str, header_lines: &Map<String, Value>, route_extra: Value) -> Value {
    let mut route =
        json!({ "name": "backend", "match": { "prefix": "/" }, "route": { "cluster": "backend" } });
    if let (Some(r), Some(extra)) = (route.as_object_mut(), route_extra.as_object()) {
        r.extend(extra.clone());
    }
    let mut rc = json!({
        "name": name,
        "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [route] }]
    });
    rc.as_object_mut().unwrap().extend(header_lines.clone());
    rc
}

/// Replaces a Wasm filter config's code with the built plugin, as the control plane's download does (Istio's
/// agent, Envoy Gateway's Wasm server) before Envoy sees it.
fn with_local_code(mut wasm_typed_config: Value) -> Value {
    wasm_typed_config["config"]["vm_config"]["code"] =
        json!({ "local": { "filename": support::wasm_path() } });
    wasm_typed_config
}

/// `envoy --mode validate` on `config` with the recipes' secrets; also checks that without them the plugin
/// refuses the document (so the plugin did load it).
fn assert_envoy_accepts(what: &str, config: &Value) {
    let dir = support::TempDir::new("recipe").unwrap();
    let path = dir.path().join("envoy.json");
    std::fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
    match support::Envoy::validate_with_env(&path, &secret_env()) {
        Ok(out) => assert!(out.contains("OK"), "{what}: {out}"),
        Err(out) => panic!("{what}: Envoy refuses the equivalent config:\n{out}"),
    }
    match support::Envoy::validate_with_env(&path, &[]) {
        Ok(out) => panic!("{what}: accepted without the secrets:\n{out}"),
        Err(out) => assert!(
            out.contains("environment variable PARTNER_A_KEY is not set"),
            "{what}: {out}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Istio

/// The ingress gateway selector both Istio recipes use.
fn assert_ingress_gateway(what: &str, labels: &Value) {
    assert_eq!(labels, &json!({ "istio": "ingressgateway" }), "{what}");
}

/// route-headers.yaml's patch value, checked: envoy.yaml's lines, merged into the gateway's route configurations.
fn istio_route_header_lines() -> Map<String, Value> {
    let ef = manifest(
        "envoy/istio/route-headers.yaml",
        "networking.istio.io/v1alpha3",
        "EnvoyFilter",
    );
    assert_eq!(ef["metadata"]["namespace"], "istio-system");
    assert_ingress_gateway(
        "route-headers.yaml",
        &ef["spec"]["workloadSelector"]["labels"],
    );
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(p["applyTo"], "ROUTE_CONFIGURATION");
    assert_eq!(p["match"], json!({ "context": "GATEWAY" }));
    assert_eq!(p["patch"]["operation"], "MERGE");
    let value = p["patch"]["value"].as_object().unwrap().clone();
    assert_eq!(value, reference_header_lines(), "route-headers.yaml");
    value
}

#[test]
fn istio_envoyfilter_recipe() {
    let ef = manifest(
        "envoy/istio/edgeward.yaml",
        "networking.istio.io/v1alpha3",
        "EnvoyFilter",
    );
    assert_eq!(ef["metadata"]["namespace"], "istio-system");
    assert_ingress_gateway("edgeward.yaml", &ef["spec"]["workloadSelector"]["labels"]);
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    assert_eq!(patches.len(), 2);

    // The extension config: Envoy's own Wasm filter config, with the option WasmPlugin cannot set.
    let ext = &patches[0];
    assert_eq!(ext["applyTo"], "EXTENSION_CONFIG");
    assert_eq!(ext["match"], json!({ "context": "GATEWAY" }));
    assert_eq!(ext["patch"]["operation"], "ADD");
    let name = ext["patch"]["value"]["name"].as_str().unwrap();
    let typed = &ext["patch"]["value"]["typed_config"];
    assert_eq!(typed["@type"], WASM_TYPE);
    let config = &typed["config"];
    assert_eq!(config["allow_on_headers_stop_iteration"], true);
    assert_eq!(config["failure_policy"], "FAIL_CLOSED");
    assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    let uri = config["vm_config"]["code"]["remote"]["http_uri"]["uri"]
        .as_str()
        .unwrap();
    assert!(uri.starts_with("oci://"), "{uri}");
    assert_eq!(config["configuration"]["@type"], STRING_VALUE);
    let doc: Value =
        serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(doc, k8s_document(), "edgeward.yaml's document");
    assert_host_env_keys(
        "edgeward.yaml host_env_keys",
        &config["vm_config"]["environment_variables"]["host_env_keys"],
        &doc,
    );

    // The HTTP filter that reads it over ECDS, last before the router.
    let filter = &patches[1];
    assert_eq!(filter["applyTo"], "HTTP_FILTER");
    assert_eq!(filter["match"]["context"], "GATEWAY");
    assert_eq!(
        filter["match"]["listener"]["filterChain"]["filter"]["name"],
        HCM
    );
    assert_eq!(
        filter["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        ROUTER
    );
    assert_eq!(filter["patch"]["operation"], "INSERT_BEFORE");
    let value = &filter["patch"]["value"];
    assert_eq!(
        value["name"], name,
        "the HTTP filter names the extension config"
    );
    assert_eq!(value["config_discovery"]["type_urls"], json!([WASM_TYPE]));
    assert!(value["config_discovery"]["config_source"]["ads"].is_object());
    assert_eq!(
        value["config_discovery"]["config_source"]["initial_fetch_timeout"],
        "0s"
    );

    // In Envoy: the extension config as the agent hands it over (code made local), in the gateway's chain,
    // with route-headers.yaml's lines in the route configuration.
    let lines = istio_route_header_lines();
    let config = envoy_config(
        vec![json!({ "name": name, "typed_config": with_local_code(typed.clone()) })],
        route_config("http.80", &lines, json!({})),
    );
    assert_envoy_accepts("Istio EnvoyFilter", &config);
}

#[test]
fn istio_wasmplugin_recipe() {
    let wp = manifest(
        "envoy/istio/wasmplugin.yaml",
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
    );
    let meta = &wp["metadata"];
    let spec = &wp["spec"];
    assert_ingress_gateway("wasmplugin.yaml", &spec["selector"]["matchLabels"]);
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert_eq!(spec["type"], "HTTP");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    // Last before the router: see the file.
    assert_eq!(spec["phase"], "UNSPECIFIED_PHASE");
    let env = spec["vmConfig"]["env"].as_array().unwrap();
    for e in env {
        assert_eq!(e["valueFrom"], "HOST", "{e}");
        assert!(e.get("value").is_none(), "no inline secret: {e}");
    }
    let names: Vec<Value> = env.iter().map(|e| e["name"].clone()).collect();

    // The document: kubernetes-policy.json without the body binding, which this API cannot serve.
    let doc = &spec["pluginConfig"];
    assert_eq!(doc, &without_body_binding(&k8s_document()));
    assert_eq!(&without_body_binding(doc), doc, "no body binding left");
    assert_valid_document("wasmplugin.yaml pluginConfig", doc);
    assert_host_env_keys("wasmplugin.yaml vmConfig.env", &Value::Array(names), doc);

    // In Envoy: the PluginConfig istiod builds from a WasmPlugin (pilot/pkg/model/extensions.go:
    // name <namespace>.<name>, root_id = pluginName, the pluginConfig as a JSON string, env HOST as
    // host_env_keys, failStrategy as failure_policy; no allow_on_headers_stop_iteration), code as the agent
    // leaves it.
    let resource = format!(
        "{}.{}",
        meta["namespace"].as_str().unwrap(),
        meta["name"].as_str().unwrap()
    );
    let host_env_keys: Vec<Value> = env.iter().map(|e| e["name"].clone()).collect();
    let typed = with_local_code(json!({
        "@type": WASM_TYPE,
        "config": {
            "name": resource,
            "root_id": spec["pluginName"],
            "configuration": { "@type": STRING_VALUE, "value": doc.to_string() },
            "failure_policy": "FAIL_CLOSED",
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "environment_variables": { "host_env_keys": host_env_keys }
            }
        }
    }));
    let config = envoy_config(
        vec![json!({
            "name": format!("extensions.istio.io/wasmplugin/{resource}"),
            "typed_config": typed
        })],
        route_config("http.80", &istio_route_header_lines(), json!({})),
    );
    assert_envoy_accepts("Istio WasmPlugin", &config);
}

#[test]
fn istio_gateway_env_patch() {
    let patch = manifests("envoy/istio/gateway-env-patch.yaml").remove(0);
    let containers = patch["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "istio-proxy");
    assert_secret_env("gateway-env-patch.yaml", &containers[0]["env"]);
}

/// Every recipe variable from the Secret edgeward-secrets, under its own name; only the hash key optional.
fn assert_secret_env(what: &str, env: &Value) {
    let env = env.as_array().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, HOST_ENV_KEYS, "{what}");
    for e in env {
        let r = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], "edgeward-secrets", "{what}: {e}");
        assert_eq!(r["key"], e["name"], "{what}: {e}");
        let optional = e["name"] == "EDGEWARD_HASH_KEY";
        assert_eq!(
            r["optional"].as_bool().unwrap_or(false),
            optional,
            "{what}: {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Istio: the published schema (npm), run with Node

/// Where the npm packages are installed (once per version set).
fn npm_dir() -> PathBuf {
    let base = std::env::var_os("EDGEWARD_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let tag: String = format!("{ISTIO_MODELS}-{TYPESCRIPT}")
        .trim_start_matches('@')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.join(format!("k8s-schemas-{tag}"))
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the packages into `npm_dir()` unless there; Err(why) when npm cannot.
fn npm_install() -> Result<PathBuf, String> {
    let dir = npm_dir();
    let ready = dir.join("node_modules/@kubernetes-models/istio/package.json");
    if ready.is_file() && dir.join("node_modules/typescript/package.json").is_file() {
        return Ok(dir);
    }
    // Into a private directory, then renamed: concurrent runs never see half an install.
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    std::fs::write(
        tmp.join("package.json"),
        "{\"name\": \"edgeward-k8s-schemas\", \"private\": true, \"type\": \"module\"}\n",
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--save-exact",
            ISTIO_MODELS,
            TYPESCRIPT,
        ])
        .current_dir(&tmp)
        .output()
        .map_err(|e| format!("running npm: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "npm install {ISTIO_MODELS} {TYPESCRIPT} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// The Istio manifests with their models: (module, class, manifest, file).
fn istio_manifests() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    let ef = "networking.istio.io/v1alpha3/EnvoyFilter";
    let wp = "extensions.istio.io/v1alpha1/WasmPlugin";
    vec![
        (ef, "EnvoyFilter", "envoy/istio/edgeward.yaml"),
        (ef, "EnvoyFilter", "envoy/istio/route-headers.yaml"),
        (wp, "WasmPlugin", "envoy/istio/wasmplugin.yaml"),
    ]
    .into_iter()
    .map(|(module, class, file)| (module, class, manifests(file).remove(0), file))
    .collect()
}

/// Runs the package's validator (the CRD's JSON schema) and tsc (its TypeScript declarations) on `items`;
/// Ok(()) or Err(what they said).
fn check_istio(dir: &Path, items: &[(&str, &str, Value, &str)]) -> Result<(), String> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    // Inside the install directory, so that Node and tsc find node_modules by walking up.
    let check = dir.join(format!(
        "check-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&check).unwrap();
    let mut imports = String::new();
    let mut body = String::new();
    let mut ts = String::new();
    for (i, (module, class, m, file)) in items.iter().enumerate() {
        imports.push_str(&format!(
            "import {{ {class} as C{i} }} from \"@kubernetes-models/istio/{module}\";\n"
        ));
        body.push_str(&format!(
            "try {{ new C{i}({m}).validate(); }} catch (e) {{ failed = true; console.log({file:?} + \": \" + e.message); }}\n"
        ));
        ts.push_str(&format!(
            "import type {{ I{class} as T{i} }} from \"@kubernetes-models/istio/{module}\";\n\
             // {file}\nexport const m{i}: T{i} = {m};\n"
        ));
    }
    let js = format!("{imports}let failed = false;\n{body}process.exit(failed ? 1 : 0);\n");
    std::fs::write(check.join("validate.mjs"), js).unwrap();
    std::fs::write(check.join("check.ts"), ts).unwrap();
    let node = Command::new("node")
        .arg(check.join("validate.mjs"))
        .current_dir(&check)
        .output()
        .unwrap();
    let tsc = Command::new("node")
        .arg(dir.join("node_modules/typescript/bin/tsc"))
        .args([
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
        ])
        .arg(check.join("check.ts"))
        .current_dir(&check)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&check);
    let mut errors = String::new();
    for (what, out) in [("schema", &node), ("types", &tsc)] {
        if !out.status.success() {
            errors.push_str(&format!(
                "{what}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[test]
fn istio_manifests_match_istios_published_schema() {
    if !have("node") || !have("npm") {
        let _ = writeln!(
            std::io::stderr().lock(),
            "\nistio_manifests_match_istios_published_schema: SKIPPED (no node/npm; scripts/test.sh requires node)"
        );
        return;
    }
    let dir = npm_install().unwrap_or_else(|e| panic!("{e}"));
    let items = istio_manifests();
    if let Err(e) = check_istio(&dir, &items) {
        panic!("the Istio manifests do not match Istio's CRDs:\n{e}");
    }
    // The checks bite: a misspelled field (types) and a value outside an enum (schema) are refused.
    let mut bad_field = items[2].clone();
    let spec = bad_field.2["spec"].as_object_mut().unwrap();
    let phase = spec.remove("phase").unwrap();
    spec.insert("phse".into(), phase);
    let err = check_istio(&dir, &[bad_field]).unwrap_err();
    assert!(
        err.contains("phse") && err.contains("does not exist"),
        "{err}"
    );
    let mut bad_value = items[0].clone();
    bad_value.2["spec"]["configPatches"][0]["applyTo"] = json!("EXTENSION_CONFIGS");
    let err = check_istio(&dir, &[bad_value]).unwrap_err();
    assert!(err.contains("allowed values"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Envoy Gateway

/// Panics if `v` (an object) has a key outside `allowed` (the fields Envoy Gateway's API defines there).
fn assert_fields(what: &str, v: &Value, allowed: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    for key in obj.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: unknown field `{key}` (allowed: {allowed:?})"
        );
    }
}

fn assert_gateway_ref(what: &str, r: &Value) {
    assert_fields(what, r, &["group", "kind", "name", "sectionName"]);
    assert_eq!(r["group"], "gateway.networking.k8s.io", "{what}");
    assert_eq!(r["kind"], "Gateway", "{what}");
    assert_eq!(r["name"], "eg", "{what}");
}

/// The Gateway's xDS listener and route configuration names, <namespace>/<gateway>/<listener>.
const EG_LISTENERS: [&str; 2] = ["default/eg/http", "default/eg/https"];

/// Envoy Gateway's name for the wasm filter of entry `index` of an EnvoyExtensionPolicy
/// (internal/xds/translator/wasm.go: envoy.filters.http.wasm/<ir name>).
fn eg_filter_name(policy: &Value, index: usize) -> (String, String) {
    let ir = format!(
        "envoyextensionpolicy/{}/{}/wasm/{index}",
        policy["metadata"]["namespace"].as_str().unwrap(),
        policy["metadata"]["name"].as_str().unwrap()
    );
    (format!("envoy.filters.http.wasm/{ir}"), ir)
}

/// The one JSONPath form the recipe uses, `..http_filters[?(@.name=='NAME')].typed_config.config`, resolved
/// by hand (test-only): the `config` objects of the filters called NAME anywhere in `doc`.
fn select_filter_configs<'a>(doc: &'a mut Value, json_path: &str) -> Vec<&'a mut Value> {
    let name = json_path
        .strip_prefix("..http_filters[?(@.name=='")
        .and_then(|r| r.strip_suffix("')].typed_config.config"))
        .unwrap_or_else(|| panic!("the test knows only one JSONPath form, not {json_path}"))
        .to_string();
    fn walk<'a>(v: &'a mut Value, name: &str, out: &mut Vec<&'a mut Value>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "http_filters" {
                        if let Value::Array(filters) = child {
                            for f in filters.iter_mut() {
                                if f["name"] == name {
                                    if let Some(c) =
                                        f.get_mut("typed_config").and_then(|t| t.get_mut("config"))
                                    {
                                        out.push(c);
                                    }
                                }
                            }
                        }
                    } else {
                        walk(child, name, out);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|x| walk(x, name, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &name, &mut out);
    out
}

/// Applies an EnvoyPatchPolicy operation (op add only) to a resource as JSON.
fn apply_patch(resource: &mut Value, operation: &Value) {
    assert_fields(
        "jsonPatches[].operation",
        operation,
        &["op", "path", "jsonPath", "from", "value"],
    );
    assert_eq!(operation["op"], "add", "the recipe only adds");
    let path = operation["path"].as_str().unwrap();
    let value = operation["value"].clone();
    match operation["jsonPath"].as_str() {
        Some(json_path) => {
            let targets = select_filter_configs(resource, json_path);
            assert_eq!(
                targets.len(),
                1,
                "{json_path} selects edgeward's filter once"
            );
            for t in targets {
                t.as_object_mut()
                    .unwrap()
                    .insert(path.trim_start_matches('/').to_string(), value.clone());
            }
        }
        None => {
            let key = path
                .strip_prefix('/')
                .filter(|k| !k.contains('/'))
                .unwrap_or_else(|| panic!("a top-level JSON pointer, not {path}"));
            resource
                .as_object_mut()
                .unwrap()
                .insert(key.to_string(), value);
        }
    }
}

#[test]
fn envoy_gateway_recipe() {
    let policy = manifest(
        "envoy/envoy-gateway/extension-policy.yaml",
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyExtensionPolicy",
    );
    assert_fields("metadata", &policy["metadata"], &["name", "namespace"]);
    let spec = &policy["spec"];
    assert_fields("EnvoyExtensionPolicy spec", spec, &["targetRefs", "wasm"]);
    let refs = spec["targetRefs"].as_array().unwrap();
    assert_eq!(refs.len(), 1);
    assert_gateway_ref("targetRefs[0]", &refs[0]);
    let wasms = spec["wasm"].as_array().unwrap();
    assert_eq!(wasms.len(), 1);
    let wasm = &wasms[0];
    assert_fields(
        "wasm[0]",
        wasm,
        &["name", "rootID", "code", "config", "failOpen", "env"],
    );
    assert_fields(
        "wasm[0].code",
        &wasm["code"],
        &["type", "http", "image", "sha256", "pullPolicy"],
    );
    assert_eq!(wasm["code"]["type"], "Image");
    assert_fields(
        "wasm[0].code.image",
        &wasm["code"]["image"],
        &["url", "pullSecretRef"],
    );
    let url = wasm["code"]["image"]["url"].as_str().unwrap();
    assert!(!url.contains("://"), "an image reference, no scheme: {url}");
    assert_eq!(wasm["failOpen"], false);
    assert_fields("wasm[0].env", &wasm["env"], &["hostKeys"]);
    let doc = &wasm["config"];
    assert_eq!(doc, &k8s_document(), "extension-policy.yaml's document");
    assert_host_env_keys("wasm[0].env.hostKeys", &wasm["env"]["hostKeys"], doc);

    let proxy = manifest(
        "envoy/envoy-gateway/envoy-proxy.yaml",
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyProxy",
    );
    assert_fields("EnvoyProxy spec", &proxy["spec"], &["provider"]);
    assert_fields(
        "EnvoyProxy provider",
        &proxy["spec"]["provider"],
        &["type", "kubernetes"],
    );
    assert_eq!(proxy["spec"]["provider"]["type"], "Kubernetes");
    let container = &proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"];
    assert_fields("envoyDeployment.container", container, &["env"]);
    assert_secret_env("envoy-proxy.yaml", &container["env"]);

    // The patches: for each listener, the option on edgeward's filter (found by Envoy Gateway's name for it)
    // and envoy.yaml's route configuration lines.
    let patch = manifest(
        "envoy/envoy-gateway/patch-policy.yaml",
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyPatchPolicy",
    );
    assert_eq!(
        patch["metadata"]["namespace"],
        policy["metadata"]["namespace"]
    );
    assert_fields(
        "EnvoyPatchPolicy spec",
        &patch["spec"],
        &["targetRef", "type", "jsonPatches", "priority"],
    );
    assert_gateway_ref("targetRef", &patch["spec"]["targetRef"]);
    assert_eq!(patch["spec"]["type"], "JSONPatch");
    let ops = patch["spec"]["jsonPatches"].as_array().unwrap();
    for op in ops {
        assert_fields("jsonPatches[]", op, &["type", "name", "operation"]);
    }
    let (filter, ir_name) = eg_filter_name(&policy, 0);
    let lines = reference_header_lines();

    // In Envoy, per listener: what Envoy Gateway generates for the policy (internal/xds/translator/wasm.go:
    // the filter disabled in the chain and enabled per route with a FilterConfig; the config as a JSON string;
    // vm_id the IR name; code served by Envoy Gateway, here local), patched as the policy says.
    for listener in EG_LISTENERS {
        let typed = with_local_code(json!({
            "@type": WASM_TYPE,
            "config": {
                "name": wasm["name"],
                "root_id": wasm["rootID"],
                "vm_config": {
                    "vm_id": ir_name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "environment_variables": { "host_env_keys": wasm["env"]["hostKeys"] }
                },
                "configuration": { "@type": STRING_VALUE, "value": doc.to_string() }
            }
        }));
        let mut config = envoy_config(
            vec![json!({ "name": filter, "disabled": true, "typed_config": typed })],
            json!({}),
        );
        let mut per_filter = Map::new();
        per_filter.insert(
            filter.clone(),
            // An empty `config`: "enabled" (what Envoy Gateway sends, FilterConfig{Config: &anypb.Any{}}).
            json!({ "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {} }),
        );
        let mut rc = route_config(
            listener,
            &Map::new(),
            json!({
                "name": "httproute/default/backend/rule/0/match/0/*",
                "typed_per_filter_config": per_filter
            }),
        );
        let listener_json =
            &mut config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
        let mut applied = (0, 0);
        for op in ops.iter().filter(|op| op["name"] == listener) {
            match op["type"].as_str().unwrap() {
                "type.googleapis.com/envoy.config.listener.v3.Listener" => {
                    apply_patch(listener_json, &op["operation"]);
                    applied.0 += 1;
                }
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration" => {
                    apply_patch(&mut rc, &op["operation"]);
                    applied.1 += 1;
                }
                other => panic!("a patch of {other}"),
            }
        }
        assert_eq!(
            applied,
            (1, 2),
            "{listener}: one listener and two route patches"
        );
        let patched = &listener_json["typed_config"]["http_filters"][0]["typed_config"]["config"];
        assert_eq!(
            patched["allow_on_headers_stop_iteration"], true,
            "{listener}"
        );
        for (key, want) in &lines {
            assert_eq!(&rc[key], want, "{listener}: {key}");
        }
        listener_json["typed_config"]["route_config"] = rc;
        assert_envoy_accepts(&format!("Envoy Gateway {listener}"), &config);
    }
    assert_eq!(ops.len(), 3 * EG_LISTENERS.len(), "no other patch");
}

/// envoy/envoy.yaml's edge settings, on both listeners (plain and TLS): the client address from the TCP
/// peer, normalized paths, header names with underscores refused, the edge timeouts, HTTP/2 stream and
/// window limits, and the per-connection buffer that bounds a held body.
#[test]
fn the_reference_config_keeps_its_edge_limits_on_every_listener() {
    let docs = manifests("envoy/envoy.yaml");
    let [config] = docs.as_slice() else {
        panic!("envoy/envoy.yaml: one document")
    };
    let listeners = config["static_resources"]["listeners"].as_array().unwrap();
    let names: Vec<&str> = listeners
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "https"]);
    for l in listeners {
        let name = l["name"].as_str().unwrap();
        assert_eq!(l["per_connection_buffer_limit_bytes"], 1_048_576, "{name}");
        let chains = l["filter_chains"].as_array().unwrap();
        assert!(!chains.is_empty(), "{name}");
        for chain in chains {
            let hcm = &chain["filters"][0]["typed_config"];
            assert!(
                hcm["@type"]
                    .as_str()
                    .unwrap()
                    .ends_with("HttpConnectionManager"),
                "{name}"
            );
            for (field, want) in [
                ("use_remote_address", json!(true)),
                ("normalize_path", json!(true)),
                ("merge_slashes", json!(true)),
                (
                    "path_with_escaped_slashes_action",
                    json!("UNESCAPE_AND_REDIRECT"),
                ),
                ("request_headers_timeout", json!("10s")),
                ("stream_idle_timeout", json!("30s")),
                ("request_timeout", json!("60s")),
            ] {
                assert_eq!(hcm[field], want, "{name}: {field}");
            }
            let common = &hcm["common_http_protocol_options"];
            assert_eq!(
                common["headers_with_underscores_action"], "REJECT_REQUEST",
                "{name}"
            );
            assert_eq!(common["idle_timeout"], "3600s", "{name}");
            let h2 = &hcm["http2_protocol_options"];
            assert_eq!(h2["max_concurrent_streams"], 100, "{name}");
            assert_eq!(h2["initial_stream_window_size"], 1_048_576, "{name}");
            assert_eq!(h2["initial_connection_window_size"], 1_048_576, "{name}");
        }
    }
}
