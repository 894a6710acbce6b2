//! RFC 9421 §2: component identifiers, component values from a request, and the signature base (§2.5).

use std::borrow::Cow;

use super::sfv::{self, BareItem, Item, Member, Params};
use crate::request::{split_host_port, Headers, RequestHead};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt;

/// The derived components that exist for a request (RFC 9421 §2.2; `@status` is response-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    Method,
    Authority,
    Scheme,
    TargetUri,
    RequestTarget,
    Path,
    Query,
    QueryParam,
}

impl Derived {
    fn parse(name: &str) -> Option<Derived> {
        Some(match name {
            "@method" => Derived::Method,
            "@authority" => Derived::Authority,
            "@scheme" => Derived::Scheme,
            "@target-uri" => Derived::TargetUri,
            "@request-target" => Derived::RequestTarget,
            "@path" => Derived::Path,
            "@query" => Derived::Query,
            "@query-param" => Derived::QueryParam,
            _ => return None,
        })
    }
}

/// What a component identifier names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Derived(Derived),
    /// A header field; `sf`, `key` and `bs` say how its value is rendered.
    Field {
        sf: bool,
        key: Option<String>,
        bs: bool,
    },
}

/// A validated component identifier: its name, parameters as given (serialized back verbatim), and kind.
/// A request's identifiers borrow their text from its `Signature-Input`; a document's own
/// (`ComponentId<'static>`) own theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentId<'a> {
    pub name: Cow<'a, str>,
    pub params: Params<'a>,
    pub kind: Kind,
}

/// Why a component identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentError {
    /// In a covered-components list, an item that is not a string.
    NotAString,
    /// The document's quoted form (`"@method"`) is not an sf-string with parameters.
    Invalid(String),
    /// The parameters after the name are not RFC 8941 parameters.
    MalformedParams(String),
    /// `@status` (a response component).
    Status,
    UnknownDerived(String),
    /// A parameter a derived component does not take.
    ParamNotAllowed {
        param: String,
        component: String,
    },
    QueryParamNameNotAString,
    QueryParamWithoutName,
    /// Neither a lowercase field name nor a derived component.
    InvalidName(String),
    KeyNotAString,
    /// `req` (responses only).
    Req,
    /// `tr` (trailers are not supported).
    Trailer,
    UnknownParam(String),
    /// `sf` or `bs` given a value.
    ParamTakesNoValue(&'static str),
    /// `bs` with `sf` or `key`.
    BsCombined,
}

impl fmt::Display for ComponentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentError::NotAString => f.write_str("a component identifier must be a string"),
            ComponentError::Invalid(s) => write!(f, "{s:?} is not a valid component identifier"),
            ComponentError::MalformedParams(s) => {
                write!(f, "{s:?} has malformed component parameters")
            }
            ComponentError::Status => {
                f.write_str("@status is a response component and cannot be used in a request")
            }
            ComponentError::UnknownDerived(name) => {
                write!(f, "unknown derived component {name:?}")
            }
            ComponentError::ParamNotAllowed { param, component } => {
                write!(f, "parameter `{param}` is not allowed on {component}")
            }
            ComponentError::QueryParamNameNotAString => {
                f.write_str("@query-param's `name` must be a string")
            }
            ComponentError::QueryParamWithoutName => {
                f.write_str("@query-param needs a `name` parameter")
            }
            ComponentError::InvalidName(name) => write!(
                f,
                "{name:?} is not a lowercase header field name or a derived component"
            ),
            ComponentError::KeyNotAString => {
                f.write_str("component parameter `key` must be a string")
            }
            ComponentError::Req => f.write_str("`req` applies only to responses"),
            ComponentError::Trailer => f.write_str("trailer fields (`tr`) are not supported"),
            ComponentError::UnknownParam(k) => write!(f, "unknown component parameter `{k}`"),
            ComponentError::ParamTakesNoValue(p) => {
                write!(f, "component parameter `{p}` takes no value")
            }
            ComponentError::BsCombined => f.write_str("`bs` cannot be combined with `sf` or `key`"),
        }
    }
}

impl std::error::Error for ComponentError {}

impl<'a> ComponentId<'a> {
    /// Validates an identifier taken from a covered-components inner list (an sf-string with parameters).
    pub fn from_item(item: &Item<'a>) -> Result<ComponentId<'a>, ComponentError> {
        ComponentId::from_owned_item(item.clone())
    }

    /// [`ComponentId::from_item`], taking the item: its name and parameters are moved, not copied
    /// (the request path, once per covered component).
    pub fn from_owned_item(item: Item<'a>) -> Result<ComponentId<'a>, ComponentError> {
        match item.bare {
            BareItem::String(name) => ComponentId::new(name, item.params),
            _ => Err(ComponentError::NotAString),
        }
    }

    /// Parses the document form: `@method`, `content-digest`, `@query-param;name="id"`, `example-dict;key="a"`
    /// (the quoted form `"@method"` is accepted too).
    pub fn parse_config(s: &str) -> Result<ComponentId<'static>, ComponentError> {
        if s.starts_with('"') {
            let item = sfv::parse_item(s).map_err(|_| ComponentError::Invalid(s.to_string()))?;
            return ComponentId::from_owned_item(item.into_owned());
        }
        let (name, params) = match s.find(';') {
            Some(i) => (
                s.get(..i).unwrap_or_default(),
                s.get(i..).unwrap_or_default(),
            ),
            None => (s, ""),
        };
        let params = sfv::parse_params(params)
            .map_err(|_| ComponentError::MalformedParams(s.to_string()))?;
        ComponentId::new(Cow::Owned(name.to_string()), sfv::params_into_owned(params))
    }

    fn new(name: Cow<'a, str>, params: Params<'a>) -> Result<ComponentId<'a>, ComponentError> {
        let bool_param = |p: &'static str| -> Result<bool, ComponentError> {
            match params.iter().find(|(k, _)| k == p) {
                None => Ok(false),
                Some((_, BareItem::Boolean(true))) => Ok(true),
                Some(_) => Err(ComponentError::ParamTakesNoValue(p)),
            }
        };
        if let Some(rest) = name.strip_prefix('@') {
            let derived = Derived::parse(&name).ok_or_else(|| {
                if rest == "status" {
                    ComponentError::Status
                } else {
                    ComponentError::UnknownDerived(name.to_string())
                }
            })?;
            for (k, v) in &params {
                match (derived, k.as_ref(), v) {
                    (Derived::QueryParam, "name", BareItem::String(_)) => {}
                    (Derived::QueryParam, "name", _) => {
                        return Err(ComponentError::QueryParamNameNotAString)
                    }
                    _ => {
                        return Err(ComponentError::ParamNotAllowed {
                            param: k.to_string(),
                            component: name.to_string(),
                        })
                    }
                }
            }
            if derived == Derived::QueryParam && !params.iter().any(|(k, _)| k == "name") {
                return Err(ComponentError::QueryParamWithoutName);
            }
            return Ok(ComponentId {
                name,
                params,
                kind: Kind::Derived(derived),
            });
        }
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|c| sfv::is_tchar(c) && !c.is_ascii_uppercase());
        if !valid_name {
            return Err(ComponentError::InvalidName(name.into_owned()));
        }
        let mut key = None;
        for (k, v) in &params {
            match (k.as_ref(), v) {
                ("sf" | "bs", _) => {}
                ("key", BareItem::String(s)) => key = Some(s.to_string()),
                ("key", _) => return Err(ComponentError::KeyNotAString),
                ("req", _) => return Err(ComponentError::Req),
                ("tr", _) => return Err(ComponentError::Trailer),
                _ => return Err(ComponentError::UnknownParam(k.to_string())),
            }
        }
        let sf = bool_param("sf")?;
        let bs = bool_param("bs")?;
        if bs && (sf || key.is_some()) {
            return Err(ComponentError::BsCombined);
        }
        Ok(ComponentId {
            name,
            params,
            kind: Kind::Field { sf, key, bs },
        })
    }

    /// Whether the component's value holds the request's path (`@path`, `@target-uri`,
    /// `@request-target`).
    pub fn covers_path(&self) -> bool {
        matches!(
            self.kind,
            Kind::Derived(Derived::Path | Derived::TargetUri | Derived::RequestTarget)
        )
    }

    /// Same component: same name and the same parameters in any order.
    pub fn same_as(&self, other: &ComponentId) -> bool {
        self.name == other.name
            && self.params.len() == other.params.len()
            && self
                .params
                .iter()
                .all(|p| other.params.iter().any(|q| p == q))
    }

    /// How many bytes of the request this component reads (its field's lines, or the request line's
    /// parts for a derived component): what building its value can cost.
    pub fn input_len(&self, head: &RequestHead) -> usize {
        match &self.kind {
            Kind::Derived(_) => head
                .method
                .len()
                .saturating_add(head.authority.len())
                .saturating_add(head.path.len()),
            Kind::Field { .. } => head
                .headers
                .get_all(&self.name)
                .fold(0usize, |n, v| n.saturating_add(v.len())),
        }
    }

    /// The identifier as it appears in Signature-Input and the signature base: `"name";params`.
    pub fn write(&self, out: &mut String) {
        sfv::write_string(out, &self.name);
        sfv::write_params(out, &self.params);
    }

    /// Whether this covers the Content-Digest header field.
    pub fn is_content_digest(&self) -> bool {
        self.name == "content-digest"
    }

    /// The component value for a request (§2.1, §2.2); `None` when the request cannot supply it.
    pub fn value(&self, head: &RequestHead) -> Option<String> {
        let mut v = String::new();
        self.push_value(head, &mut v)?;
        Some(v)
    }

    /// Appends the component value to `out` (the signature base is built this way, without a `String`
    /// per component); `None` when the request cannot supply it, and then `out` holds a partial value.
    fn push_value(&self, head: &RequestHead, out: &mut String) -> Option<()> {
        let start = out.len();
        match &self.kind {
            Kind::Derived(d) => push_derived(*d, &self.params, head, out)?,
            // Plain fields (the usual case) are written in place, line by line.
            Kind::Field {
                sf: false,
                key: None,
                bs: false,
            } => push_joined(out, head.headers, &self.name)?,
            Kind::Field { sf, key, bs } => out.push_str(&field_value(
                head.headers,
                &self.name,
                *sf,
                key.as_deref(),
                *bs,
            )?),
        }
        // §2.5: output must be ASCII; a line break would let a value forge further base lines.
        out.get(start..)?
            .bytes()
            .all(|c| c == b'\t' || (0x20..=0x7e).contains(&c))
            .then_some(())
    }
}

/// The scheme as the core sees it: TLS means https.
pub fn scheme(head: &RequestHead) -> &'static str {
    if head.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// `@authority`: host lowercased, the scheme's default port dropped (RFC 9110 §4.2.3).
pub fn normalized_authority(head: &RequestHead) -> Option<String> {
    let mut out = String::new();
    push_authority(head, &mut out)?;
    Some(out)
}

/// Appends [`normalized_authority`] to `out` (nothing when the authority has no host).
fn push_authority(head: &RequestHead, out: &mut String) -> Option<()> {
    let (host, port) = split_host_port(head.authority.trim());
    if host.is_empty() {
        return None;
    }
    let start = out.len();
    out.push_str(host);
    if let Some(h) = out.get_mut(start..) {
        h.make_ascii_lowercase();
    }
    let default = if head.tls.is_some() { "443" } else { "80" };
    if let Some(p) = port.filter(|p| *p != default && !p.is_empty()) {
        out.push(':');
        out.push_str(p);
    }
    Some(())
}

/// The origin-form path and query of the request target (absolute-form reduced to its path).
fn path_and_query<'a>(head: &RequestHead<'a>) -> &'a str {
    let p = head.path;
    if p.starts_with('/') || p == "*" {
        return p;
    }
    if let Some(i) = p.find("://") {
        let after = p.get(i + 3..).unwrap_or_default();
        return match after.find(['/', '?']) {
            Some(j) => after.get(j..).unwrap_or_default(),
            None => "",
        };
    }
    p
}

fn split_query(pq: &str) -> (&str, Option<&str>) {
    match pq.find('?') {
        Some(i) => (
            pq.get(..i).unwrap_or_default(),
            Some(pq.get(i + 1..).unwrap_or_default()),
        ),
        None => (pq, None),
    }
}

fn push_derived(d: Derived, params: &Params, head: &RequestHead, out: &mut String) -> Option<()> {
    let pq = path_and_query(head);
    let (path, query) = split_query(pq);
    match d {
        Derived::Method => out.push_str(head.method),
        Derived::Authority => push_authority(head, out)?,
        Derived::Scheme => out.push_str(scheme(head)),
        Derived::TargetUri => {
            // Absolute-form only when the target is not origin-form or `*` (the test of
            // `path_and_query`): a query may itself hold a URL (`/cb?next=https://…`).
            if !head.path.starts_with('/') && head.path != "*" && head.path.contains("://") {
                out.push_str(head.path);
            } else {
                // The URI as the request carries it (RFC 9421 §2.2.2 prescribes no normalization; only
                // @authority is normalized): `https://EXAMPLE.com:443/p` stays as it is.
                let authority = head.authority.trim();
                if authority.is_empty() {
                    return None;
                }
                out.push_str(scheme(head));
                out.push_str("://");
                out.push_str(authority);
                out.push_str(if pq == "*" { "" } else { pq });
            }
        }
        Derived::RequestTarget => {
            if head.method.eq_ignore_ascii_case("CONNECT") && head.path.is_empty() {
                out.push_str(head.authority);
            } else {
                out.push_str(head.path);
            }
        }
        Derived::Path => out.push_str(if path.is_empty() { "/" } else { path }),
        Derived::Query => {
            out.push('?');
            out.push_str(query.unwrap_or_default());
        }
        Derived::QueryParam => {
            let wanted = params.iter().find_map(|(k, v)| match (k.as_ref(), v) {
                ("name", BareItem::String(s)) => Some(s.as_ref()),
                _ => None,
            })?;
            out.push_str(&query_param(query.unwrap_or_default(), wanted)?);
        }
    }
    Some(())
}

/// §2.2.8: the one value of the parameter whose re-encoded name is `wanted`; absent or repeated → `None`.
pub fn query_param(query: &str, wanted: &str) -> Option<String> {
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.find('=') {
            Some(i) => (
                pair.get(..i).unwrap_or_default(),
                pair.get(i + 1..).unwrap_or_default(),
            ),
            None => (pair, ""),
        };
        if reencode(name) == wanted {
            if found.is_some() {
                return None;
            }
            found = Some(reencode(value));
        }
    }
    found
}

/// WHATWG form-urlencoded decode (`+` is space, UTF-8 lossy), then percent-encode everything outside
/// the form-urlencoded safe set, with `%20` for space as RFC 9421 §2.2.8 requires.
fn reencode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'+' => raw.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|h| hex(*h)),
                bytes.get(i + 2).and_then(|h| hex(*h)),
            ) {
                (Some(h), Some(l)) => {
                    raw.push(h * 16 + l);
                    i += 2;
                }
                _ => raw.push(b'%'),
            },
            _ => raw.push(c),
        }
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&raw);
    let mut out = String::with_capacity(decoded.len());
    for b in decoded.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Every field line of `name`, cleaned, joined with ", ", appended to `out`; `None` if there is none.
fn push_joined(out: &mut String, headers: Headers, name: &str) -> Option<()> {
    let mut found = false;
    for line in headers.get_all(name) {
        if found {
            out.push_str(", ");
        }
        push_clean_line(out, line);
        found = true;
    }
    found.then_some(())
}

/// [`clean_line`] appended to `out`; a line without line breaks (the usual case) is only trimmed.
fn push_clean_line(out: &mut String, v: &str) {
    if v.contains(['\r', '\n']) {
        out.push_str(&clean_line(v));
    } else {
        out.push_str(v.trim_matches([' ', '\t']));
    }
}

/// One field line's value as §2.1 wants it: obs-fold replaced by one space, OWS trimmed.
fn clean_line(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' || c == '\n' {
            let mut folded = false;
            while let Some(&n) = chars.peek() {
                if n == '\r' || n == '\n' || n == ' ' || n == '\t' {
                    folded |= n == ' ' || n == '\t';
                    chars.next();
                } else {
                    break;
                }
            }
            // A bare line break without continuation whitespace stays and is rejected later.
            if folded {
                while out.ends_with([' ', '\t']) {
                    out.pop();
                }
                out.push(' ');
            } else {
                out.push('\n');
            }
        } else {
            out.push(c);
        }
    }
    out.trim_matches([' ', '\t']).to_string()
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    b.get(start..end).unwrap_or_default()
}

/// §2.1: all field lines of `name`, cleaned, joined with ", "; then the `sf`/`key`/`bs` transforms.
pub fn field_value(
    headers: Headers,
    name: &str,
    sf: bool,
    key: Option<&str>,
    bs: bool,
) -> Option<String> {
    if bs {
        // The bytes of each field line as received (RFC 9421 §2.1.3: the case `bs` exists for is a value
        // that is not text), without leading and trailing spaces and tabs.
        let parts: Vec<String> = headers
            .get_all_bytes(name)
            .map(|l| format!(":{}:", STANDARD.encode(trim_bytes(l))))
            .collect();
        return (!parts.is_empty()).then(|| parts.join(", "));
    }
    let mut joined = String::new();
    push_joined(&mut joined, headers, name)?;
    // A dictionary that repeats a key is refused, although RFC 8941 lets the last value win: a
    // recipient that takes the first would act on a value the signature does not cover, and `sf` on a
    // list field (`a, b` signed, `a;admin, b, a` sent) would collapse the list back to what was signed.
    if let Some(key) = key {
        let dict = sfv::parse_dictionary(&joined).ok()?;
        if sfv::has_duplicate_keys(&dict) {
            return None;
        }
        let (_, member) = dict.iter().find(|(k, _)| k == key)?;
        let mut out = String::new();
        sfv::write_member(&mut out, member);
        return Some(out);
    }
    if sf {
        // The field's type is not known here; a dictionary and a list of the same text serialize alike,
        // and an item serializes as a one-member list, so dictionary-then-list covers all three. Text
        // that parses as a dictionary only with a repeated key is serialized as the list it also is
        // (`a, a`: every member is covered, so nothing unsigned can win), or is unavailable when it is
        // no list (`a=1, a=2`).
        let mut out = String::new();
        match sfv::parse_dictionary(&joined) {
            Ok(d) if !sfv::has_duplicate_keys(&d) => sfv::write_dictionary(&mut out, &d),
            _ => {
                let l: Vec<Member> = sfv::parse_list(&joined).ok()?;
                sfv::write_list(&mut out, &l);
            }
        }
        return Some(out);
    }
    Some(joined)
}

/// §2.5: the signature base for `covered` with the serialized `@signature-params` value.
/// `None` when a component cannot be produced from this request.
pub fn signature_base(
    head: &RequestHead,
    covered: &[ComponentId],
    params_value: &str,
) -> Option<String> {
    signature_base_sized(head, covered, params_value, 256)
}

/// [`signature_base`] in a string of `capacity` bytes to start with (a verifier that knows the size of
/// the values grows it at most rarely).
pub fn signature_base_sized(
    head: &RequestHead,
    covered: &[ComponentId],
    params_value: &str,
    capacity: usize,
) -> Option<String> {
    let mut base = String::with_capacity(capacity);
    push_base_lines(head, covered, &mut base)?;
    base.push_str(params_value);
    Some(base)
}

/// Appends the signature base up to its last line's value: a line per covered component, then
/// `"@signature-params": ` (the caller writes the parameters' value after it).
pub fn push_base_lines(
    head: &RequestHead,
    covered: &[ComponentId],
    base: &mut String,
) -> Option<()> {
    for c in covered {
        c.write(base);
        base.push_str(": ");
        c.push_value(head, base)?;
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::TlsVersion;
    use crate::testkit::TestRequest;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/rfc9421/component-values.json"
    ));

    fn request(
        method: &str,
        authority: &str,
        path: &str,
        tls: bool,
        headers: &[(String, String)],
    ) -> TestRequest {
        let mut r = TestRequest::new(method, authority, path).tls(tls.then_some(TlsVersion::V1_3));
        r.headers = headers.to_vec();
        r
    }

    /// Parses "Name: value" lines with obs-fold continuation kept raw (as a CRLF + the indent).
    fn fields(lines: &[&str]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for l in lines {
            if l.starts_with(' ') || l.starts_with('\t') {
                if let Some(last) = out.last_mut() {
                    last.1.push_str("\r\n");
                    last.1.push_str(l);
                }
                continue;
            }
            let (n, v) = l.split_once(':').unwrap();
            out.push((n.to_ascii_lowercase(), v.to_string()));
        }
        out
    }

    fn line(id: &str, r: &TestRequest) -> Option<String> {
        let c = ComponentId::parse_config(id).unwrap();
        let mut s = String::new();
        c.write(&mut s);
        Some(format!("{s}: {}", c.value(&r.head())?))
    }

    fn str_vec(v: &serde_json::Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect()
    }

    #[test]
    fn rfc9421_2_1_http_fields() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let f = &v["http_fields_2_1"];
        let hs = fields(&str_vec(&f["message_fragment_lines"]));
        let h = request("GET", "www.example.com", "/", false, &hs);
        let names = [
            "host",
            "date",
            "x-ows-header",
            "x-obs-fold-header",
            "cache-control",
            "example-dict",
        ];
        for (name, expected) in names.iter().zip(str_vec(&f["expected_base_lines"])) {
            assert_eq!(line(name, &h).as_deref(), Some(expected), "{name}");
        }
        let hs = fields(&[f["empty_field"]["message_line"].as_str().unwrap()]);
        let h = request("GET", "a", "/", false, &hs);
        assert_eq!(
            line("x-empty-header", &h).as_deref(),
            f["empty_field"]["base_line"].as_str()
        );
        // Absent field: no value (signature invalid), never an empty line.
        assert_eq!(line("x-absent", &h), None);
    }

    #[test]
    fn rfc9421_2_1_1_to_2_1_3_sf_key_bs() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let sf = &v["sf_param_2_1_1"];
        let hs = fields(&[sf["field"].as_str().unwrap()]);
        let h = request("GET", "a", "/", false, &hs);
        assert_eq!(
            line("example-dict", &h).as_deref(),
            sf["base_line_without_sf"].as_str()
        );
        assert_eq!(
            line("example-dict;sf", &h).as_deref(),
            sf["base_line_with_sf"].as_str()
        );

        let kp = &v["key_param_2_1_2"];
        let hs = fields(&[kp["field"].as_str().unwrap()]);
        let h = request("GET", "a", "/", false, &hs);
        for (k, expected) in ["a", "d", "b", "c"].iter().zip(str_vec(&kp["base_lines"])) {
            assert_eq!(
                line(&format!("example-dict;key=\"{k}\""), &h).as_deref(),
                Some(expected)
            );
        }
        assert_eq!(line("example-dict;key=\"zz\"", &h), None);

        let bs = &v["bs_param_2_1_3"];
        let two = fields(&str_vec(&bs["two_lines"]));
        let one = fields(&[bs["one_line"].as_str().unwrap()]);
        let h2 = request("GET", "a", "/", false, &two);
        let h1 = request("GET", "a", "/", false, &one);
        let plain = bs["base_line_plain_either_case"].as_str();
        assert_eq!(line("example-header", &h2).as_deref(), plain);
        assert_eq!(line("example-header", &h1).as_deref(), plain);
        assert_eq!(
            line("example-header;bs", &h2).as_deref(),
            bs["base_line_bs_two_lines"].as_str()
        );
        assert_eq!(
            line("example-header;bs", &h1).as_deref(),
            bs["base_line_bs_one_line"].as_str()
        );
    }

    #[test]
    fn rfc9421_2_2_derived() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let none: Vec<(String, String)> = Vec::new();
        let var_path = "/parameters?var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something";
        for case in v["derived_2_2"].as_array().unwrap() {
            let comp = case["component"].as_str().unwrap();
            let req = case.get("request").and_then(|r| r.as_str()).unwrap_or("");
            let expected = case["base_line"].as_str().unwrap();
            if comp == "@status" {
                assert_eq!(ComponentId::parse_config(comp), Err(ComponentError::Status));
                continue;
            }
            let tls = req.contains("HTTPS");
            let (method, path, authority) = if req == "(no query string)" {
                ("GET", "/path", "www.example.com")
            } else if req == "(same)" || req.starts_with("GET /parameters") {
                ("GET", var_path, "www.example.com")
            } else {
                let mut parts = req.split(' ');
                let m = parts.next().unwrap();
                let p = parts.next().unwrap();
                let a = if m == "CONNECT" { p } else { "www.example.com" };
                (m, if m == "CONNECT" { "" } else { p }, a)
            };
            let h = request(method, authority, path, tls, &none);
            assert_eq!(
                line(comp, &h).as_deref(),
                Some(expected),
                "{comp} for {req}"
            );
        }
    }

    #[test]
    fn path_and_query_are_verbatim() {
        let none: Vec<(String, String)> = Vec::new();
        let cases = [
            ("/a%2Fb/../c?x=%41&b=2&a=1", "/a%2Fb/../c", "?x=%41&b=2&a=1"),
            ("?a=1", "/", "?a=1"),
            ("/p?", "/p", "?"),
            ("https://h.example/p/q?z", "/p/q", "?z"),
        ];
        for (target, path, query) in cases {
            let h = request("GET", "h.example", target, true, &none);
            assert_eq!(line("@path", &h).unwrap(), format!("\"@path\": {path}"));
            assert_eq!(line("@query", &h).unwrap(), format!("\"@query\": {query}"));
        }
    }

    #[test]
    fn authority_normalized() {
        let none: Vec<(String, String)> = Vec::new();
        let cases = [
            ("Example.COM", false, "example.com"),
            ("example.com:80", false, "example.com"),
            ("example.com:443", true, "example.com"),
            ("example.com:443", false, "example.com:443"),
            ("example.com:8443", true, "example.com:8443"),
            ("[::1]:443", true, "[::1]"),
        ];
        for (a, tls, expected) in cases {
            let h = request("GET", a, "/", tls, &none);
            assert_eq!(
                normalized_authority(&h.head()).as_deref(),
                Some(expected),
                "{a}"
            );
        }
        let h = request("GET", "", "/", false, &none);
        assert_eq!(line("@authority", &h), None);
    }

    #[test]
    fn query_param_absent_or_repeated_has_no_value() {
        assert_eq!(query_param("a=1&b=2", "a").as_deref(), Some("1"));
        assert_eq!(query_param("a=1&b=2", "c"), None);
        assert_eq!(query_param("a=1&a=2", "a"), None);
        assert_eq!(query_param("a", "a").as_deref(), Some(""));
        assert_eq!(query_param("a=%zz", "a").as_deref(), Some("%25zz"));
    }

    #[test]
    fn identifiers_validated() {
        let ok = [
            "@method",
            "@authority",
            "@scheme",
            "@target-uri",
            "@request-target",
            "@path",
            "@query",
            "@query-param;name=\"x\"",
            "content-digest",
            "example-dict;sf",
            "example-dict;key=\"a\"",
            "x;bs",
            "\"@method\"",
        ];
        for s in ok {
            assert!(ComponentId::parse_config(s).is_ok(), "{s}");
        }
        use ComponentError::*;
        let text = |s: &str| s.to_string();
        let bad = [
            ("@status", Status),
            (
                "@signature-params",
                UnknownDerived(text("@signature-params")),
            ),
            ("@foo", UnknownDerived(text("@foo"))),
            (
                "@method;sf",
                ParamNotAllowed {
                    param: text("sf"),
                    component: text("@method"),
                },
            ),
            ("@query-param", QueryParamWithoutName),
            ("@query-param;name=x", QueryParamNameNotAString),
            ("Content-Type", InvalidName(text("Content-Type"))),
            ("content type", InvalidName(text("content type"))),
            ("", InvalidName(text(""))),
            ("x;req", Req),
            ("x;tr", Trailer),
            ("x;bs;sf", BsCombined),
            ("x;bs;key=\"a\"", BsCombined),
            ("x;key=1", KeyNotAString),
            ("x;sf=?0", ParamTakesNoValue("sf")),
            ("x;unknown", UnknownParam(text("unknown"))),
            ("x;;", MalformedParams(text("x;;"))),
            ("\"x", Invalid(text("\"x"))),
        ];
        for (s, want) in bad {
            assert_eq!(ComponentId::parse_config(s), Err(want), "{s}");
        }
    }

    #[test]
    fn line_breaks_in_values_are_rejected() {
        let hs = vec![("x".to_string(), "a\nb".to_string())];
        let h = request("GET", "a", "/", false, &hs);
        assert_eq!(line("x", &h), None);
        let hs = vec![("x".to_string(), "caf\u{e9}".to_string())];
        let h = request("GET", "a", "/", false, &hs);
        assert_eq!(line("x", &h), None);
    }

    #[test]
    fn same_as_ignores_param_order() {
        let a = ComponentId::parse_config("x;sf;key=\"a\"").unwrap();
        let b = ComponentId::parse_config("x;key=\"a\";sf").unwrap();
        let c = ComponentId::parse_config("x;key=\"a\"").unwrap();
        assert!(a.same_as(&b));
        assert!(!a.same_as(&c));
    }
}
