//! Secrets in the document: `{"env": "NAME"}` (read through the caller's environment) or `{"base64": "..."}`.
//! A resolved [`Secret`] never prints its bytes.

use crate::error::ConfigError;
use base64::Engine as _;
use std::fmt;

/// The environment the document's `{"env": ...}` secrets are read from; the core never reads it itself.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// An environment with no variables (tests, documents without env secrets).
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

/// The document form of a secret. `Debug` names the variable but never shows an inline value.
#[derive(Clone)]
pub struct SecretInput {
    pub env: Option<String>,
    pub base64: Option<String>,
}

impl fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.env, &self.base64) {
            (Some(name), _) => write!(f, "SecretInput(env {name})"),
            (None, Some(_)) => f.write_str("SecretInput(base64 <redacted>)"),
            (None, None) => f.write_str("SecretInput(<empty>)"),
        }
    }
}

// A secret written as a plain string is the likely mistake: the error says what belongs there.
crate::json::json_object!(SecretInput, expecting r#"an object, {"env": NAME} or {"base64": VALUE}"# {
    env: "env" => read,
    base64: "base64" => read,
});

/// Secret bytes; `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn from_bytes(b: Vec<u8>) -> Self {
        Secret(b)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Decodes standard or URL-safe base64, with or without padding.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines.iter().find_map(|e| e.decode(s).ok())
}

impl SecretInput {
    /// Resolves the secret. An environment variable holds base64, like `{"base64": ...}`, so binary
    /// keys can be passed. Errors name the variable, never its value.
    pub fn resolve(
        &self,
        path: &str,
        env: &dyn Env,
        min_len: usize,
    ) -> Result<Secret, ConfigError> {
        let bytes = match (&self.env, &self.base64) {
            (Some(name), None) => {
                let value = env.var(name).ok_or_else(|| {
                    ConfigError::new(path, format!("environment variable {name} is not set"))
                })?;
                decode_base64(&value).ok_or_else(|| {
                    ConfigError::new(
                        path,
                        format!("environment variable {name} is not valid base64"),
                    )
                })?
            }
            (None, Some(b64)) => decode_base64(b64)
                .ok_or_else(|| ConfigError::new(path, "secret is not valid base64"))?,
            _ => {
                return Err(ConfigError::new(
                    path,
                    "a secret is exactly one of {\"env\": NAME} or {\"base64\": VALUE}",
                ))
            }
        };
        if bytes.len() < min_len {
            return Err(ConfigError::new(
                path,
                format!(
                    "secret is {} bytes after decoding; at least {min_len} are required",
                    bytes.len()
                ),
            ));
        }
        Ok(Secret(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0x";

    #[test]
    fn debug_never_shows_secret_material() {
        let inline: SecretInput =
            crate::json::from_str(&format!("{{\"base64\": \"{KEY}\"}}")).unwrap();
        assert!(!format!("{inline:?}").contains(KEY));
        let resolved = inline.resolve("p", &NoEnv, 32).unwrap();
        assert_eq!(format!("{resolved:?}"), "Secret(<36 bytes>)");
        let env: SecretInput = crate::json::from_str(r#"{"env": "K"}"#).unwrap();
        assert_eq!(format!("{env:?}"), "SecretInput(env K)");
    }

    #[test]
    fn resolve_rules() {
        let env = |n: &str| match n {
            "GOOD" => Some(KEY.to_string()),
            "SHORT" => Some("c2hvcnQ=".to_string()),
            "NOTB64" => Some("not base64!".to_string()),
            _ => None,
        };
        let s = |j: &str| crate::json::from_str::<SecretInput>(j).unwrap();
        assert!(s(r#"{"env": "GOOD"}"#).resolve("p", &env, 32).is_ok());
        let e = s(r#"{"env": "MISSING"}"#)
            .resolve("a.b", &env, 32)
            .unwrap_err();
        assert_eq!(e.path, "a.b");
        assert!(e.reason.contains("MISSING"));
        let e = s(r#"{"env": "SHORT"}"#).resolve("p", &env, 32).unwrap_err();
        assert!(e.reason.contains("at least 32"), "{e}");
        assert!(!e.reason.contains("c2hvcnQ"));
        let e = s(r#"{"env": "NOTB64"}"#)
            .resolve("p", &env, 32)
            .unwrap_err();
        assert!(!e.reason.contains("not base64!"), "{e}");
        assert!(s(r#"{}"#).resolve("p", &env, 0).is_err());
        assert!(s(&format!(r#"{{"env": "GOOD", "base64": "{KEY}"}}"#))
            .resolve("p", &env, 0)
            .is_err());
        assert!(crate::json::from_str::<SecretInput>(r#"{"file": "x"}"#).is_err());
    }
}
