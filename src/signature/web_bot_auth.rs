//! Web Bot Auth (draft-meunier-web-bot-auth-architecture, draft-meunier-http-message-signatures-directory):
//! ed25519 signatures by automated clients, `tag="web-bot-auth"`, `created` and `expires`, `keyid` the
//! key's JWK thumbprint (RFC 7638), and `Signature-Agent` naming the agent whose key directory holds the
//! key.
//!
//! The agent's directory is never fetched from a URL the client sends: the document maps each allowed
//! agent origin to a key source (an Envoy cluster it names), fetched in the background like any other
//! (crate::keys). A `Signature-Agent` outside that map is refused without any fetch.
//!
//! `Signature-Agent` comes in two forms: a Dictionary whose member named like the signature's label holds
//! the agent's URI (current drafts; the signature must cover `"signature-agent";key="<label>"`), or a bare
//! sf-string (earlier drafts; the signature must cover `"signature-agent"`).

use super::components::{ComponentId, Kind};
use super::sfv::{self, BareItem, Member};
use crate::error::{join, Errors};
use crate::keys::KeySource;
use crate::request::RequestHead;
use std::collections::BTreeMap;

/// The `tag` every Web Bot Auth signature carries.
pub const TAG: &str = "web-bot-auth";
/// The header the verified agent is written to by default (by Envoy's route configuration, from the
/// filter state `edgeward.upstream.agent`).
pub const DEFAULT_AGENT_HEADER: &str = "x-edgeward-agent";
/// The directory's well-known path (a `Signature-Agent` may name it instead of the bare origin).
pub const DIRECTORY_PATH: &str = "/.well-known/http-message-signatures-directory";

/// `signature.web_bot_auth` as written.
#[derive(Debug, Clone, Default)]
pub struct WebBotAuthInput {
    /// Agent origin (`https://agent.example`) → the key source holding its directory.
    pub directories: BTreeMap<String, String>,
    pub agent_header: Option<String>,
}

crate::json::json_object!(WebBotAuthInput {
    directories: "directories" => required,
    agent_header: "agent_header" => some,
});

/// The compiled section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebBotAuth {
    /// (normalized origin, key source index), sorted by origin.
    directories: Vec<(String, usize)>,
    /// The header Envoy's route configuration writes the verified agent's origin to.
    pub agent_header: String,
}

/// The agent a request names, once found in the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Its normalized origin (`https://agent.example`).
    pub origin: String,
    /// The key source holding its directory.
    pub source: usize,
}

/// Why a request's agent was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentError {
    /// No `Signature-Agent`, no member for this label, a malformed value, or an origin outside the
    /// allow-list.
    Unknown,
    /// The signature does not cover the `Signature-Agent` value it relies on.
    NotCovered,
}

/// Compiles `web_bot_auth` at `path` against the document's key sources.
pub fn compile(
    input: &WebBotAuthInput,
    path: &str,
    sources: &[KeySource],
    errs: &mut Errors,
) -> Option<WebBotAuth> {
    let before = errs.len();
    let dir_path = join(path, "directories");
    if input.directories.is_empty() {
        errs.push(&dir_path, "at least one agent directory is required");
    }
    let mut directories = Vec::with_capacity(input.directories.len());
    for (origin, source) in &input.directories {
        let at = join(&dir_path, origin);
        let normalized = match normalize_origin(origin) {
            Some(o) => o,
            None => {
                errs.push(
                    &at,
                    format!("{origin:?} is not an agent origin (http:// or https://, a host, an optional port, nothing else)"),
                );
                continue;
            }
        };
        if directories.iter().any(|(o, _)| *o == normalized) {
            errs.push(&at, format!("{normalized:?} is listed twice"));
            continue;
        }
        match sources.iter().position(|s| s.name == *source) {
            Some(i) => directories.push((normalized, i)),
            None => errs.push(
                &at,
                format!("unknown key source {source:?} (see key_sources)"),
            ),
        }
    }
    let agent_header = input
        .agent_header
        .clone()
        .unwrap_or_else(|| DEFAULT_AGENT_HEADER.to_string());
    if agent_header.is_empty()
        || !agent_header
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(
            join(path, "agent_header"),
            "must be a lowercase header name (letters, digits, '-')",
        );
    }
    if errs.len() != before {
        return None;
    }
    directories.sort();
    Some(WebBotAuth {
        directories,
        agent_header,
    })
}

/// `scheme://host[:port]` with the scheme and host lowercased and a default port dropped; a trailing `/`
/// or the directory's well-known path is accepted. Anything else (user info, another path, a query, a
/// fragment, whitespace) is `None`.
pub fn normalize_origin(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !matches!(path, "" | "/" | DIRECTORY_PATH)
        || authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
    {
        return None;
    }
    let mut authority = authority.to_ascii_lowercase();
    if let Some(stripped) = authority.strip_suffix(default_port) {
        authority = stripped.to_string();
    }
    let (host, port) = crate::request::split_host_port(&authority);
    if host.is_empty() || port.is_some_and(|p| p.is_empty() || p.parse::<u16>().is_err()) {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

impl WebBotAuth {
    /// The agent of the signature labelled `label`, from the request's `Signature-Agent`, if it is
    /// covered by `covered` and listed in the allow-list.
    pub fn agent(
        &self,
        head: &RequestHead,
        label: &str,
        covered: &[ComponentId],
    ) -> Result<Agent, AgentError> {
        let lines: Vec<&str> = head
            .headers
            .get_all("signature-agent")
            .map(str::trim)
            .collect();
        if lines.is_empty() {
            return Err(AgentError::Unknown);
        }
        let value = lines.join(", ");
        let (uri, needs_key) = match sfv::parse_dictionary(&value) {
            Ok(dict) => {
                if sfv::has_duplicate_keys(&dict) {
                    return Err(AgentError::Unknown);
                }
                let Some((_, Member::Item(item))) = dict.iter().find(|(k, _)| k == label) else {
                    return Err(AgentError::Unknown);
                };
                let BareItem::String(uri) = &item.bare else {
                    return Err(AgentError::Unknown);
                };
                // `type` other than the default `directory` (a JWKS URI, a client metadata document)
                // is not supported.
                if item.params.iter().any(|(k, v)| {
                    k == "type"
                        && *v != BareItem::Token("directory".into())
                        && *v != BareItem::String("directory".into())
                }) {
                    return Err(AgentError::Unknown);
                }
                (uri.clone(), true)
            }
            Err(_) => match sfv::parse_item(&value) {
                Ok(sfv::Item {
                    bare: BareItem::String(uri),
                    ..
                }) => (uri, false),
                _ => return Err(AgentError::Unknown),
            },
        };
        let covers = covered.iter().any(|c| {
            c.name == "signature-agent"
                && match &c.kind {
                    Kind::Field {
                        sf: false,
                        key,
                        bs: false,
                    } => {
                        if needs_key {
                            key.as_deref() == Some(label)
                        } else {
                            key.is_none()
                        }
                    }
                    _ => false,
                }
        });
        if !covers {
            return Err(AgentError::NotCovered);
        }
        let origin = normalize_origin(&uri).ok_or(AgentError::Unknown)?;
        let i = self
            .directories
            .binary_search_by(|(o, _)| o.as_str().cmp(origin.as_str()))
            .map_err(|_| AgentError::Unknown)?;
        let source = self
            .directories
            .get(i)
            .map(|(_, s)| *s)
            .ok_or(AgentError::Unknown)?;
        Ok(Agent { origin, source })
    }

    /// The key sources this section reads (for `edgeward check` and metrics).
    pub fn sources(&self) -> impl Iterator<Item = usize> + '_ {
        self.directories.iter().map(|(_, s)| *s)
    }
}

#[cfg(test)]
mod tests;
