//! The request as the core sees it: built by the proxy-wasm adapter from one headers map and a few
//! properties, or by `edgeward eval` from a raw HTTP/1.1 request.

use std::fmt;
use std::net::IpAddr;

/// RFC 9110 `tchar`: a byte allowed in a token (header names, methods).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 `token`: one or more `tchar`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// TLS protocol version of the downstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl TlsVersion {
    /// Parses Envoy's `connection.tls_version` values (`TLSv1.2`) and the short forms (`1.2`).
    pub fn parse(s: &str) -> Option<TlsVersion> {
        match s.trim().trim_start_matches("TLSv") {
            "1" | "1.0" => Some(TlsVersion::V1_0),
            "1.1" => Some(TlsVersion::V1_1),
            "1.2" => Some(TlsVersion::V1_2),
            "1.3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V1_0 => "1.0",
            TlsVersion::V1_1 => "1.1",
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

/// The downstream connection's peer address, as parsed from Envoy's `source.address`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Ip(IpAddr),
    /// Missing or unparseable: never trusted, never allowed by an allow list.
    Invalid,
}

// Raw client addresses never appear in Debug output (nothing prints a head today; nothing can leak one).
impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Ip(_) => "Ip(<redacted>)",
            Peer::Invalid => "Invalid",
        })
    }
}

/// Request headers in arrival order, names lowercase (Envoy delivers them so; `eval` lowercases).
/// Pseudo-headers (`:authority`, ...) may be present and are ignored by header lookups of regular names.
/// Borrowed from owned (name, value) pairs or from slices of a [`HeaderText`] (the plugin's form).
#[derive(Clone, Copy)]
pub struct Headers<'a>(Repr<'a>, &'a [(u32, Vec<u8>)]);

#[derive(Clone, Copy)]
enum Repr<'a> {
    Owned(&'a [(String, String)]),
    Slices(&'a [(&'a str, &'a str)]),
}

/// A header map held as one string with the byte ranges of each name and value: the plugin decodes
/// Envoy's map into this (`crate::pairs::decode_text_owned`), the host's buffer itself when it is
/// UTF-8.
#[derive(Default)]
pub struct HeaderText {
    text: String,
    /// Per header: name start, name end, value start, value end (byte offsets into `text`).
    spans: Vec<[u32; 4]>,
    /// The bytes of values that are not UTF-8 (by header index): `text` holds them converted lossily,
    /// and `;bs` signature components read these.
    raw: Vec<(u32, Vec<u8>)>,
}

impl HeaderText {
    pub fn with_capacity(bytes: usize, headers: usize) -> Self {
        HeaderText {
            text: String::with_capacity(bytes),
            spans: Vec::with_capacity(headers),
            raw: Vec::new(),
        }
    }

    /// Over `text` with the (name, value) ranges `spans` (`[name start, name end, value start, value
    /// end]`); a range that is not inside `text` on character boundaries reads as empty.
    pub fn over(text: String, spans: Vec<[u32; 4]>) -> Self {
        HeaderText {
            text,
            spans,
            raw: Vec::new(),
        }
    }

    /// Appends a header. `None`, and nothing appended, when the text would pass 4 GiB.
    pub fn push(&mut self, name: &str, value: &str) -> Option<()> {
        let n0 = u32::try_from(self.text.len()).ok()?;
        let n1 = n0.checked_add(u32::try_from(name.len()).ok()?)?;
        let v1 = n1.checked_add(u32::try_from(value.len()).ok()?)?;
        self.text.push_str(name);
        self.text.push_str(value);
        self.spans.push([n0, n1, n1, v1]);
        Some(())
    }

    /// Appends a header whose value is not UTF-8: converted lossily, its bytes kept.
    pub fn push_bytes(&mut self, name: &str, value: &[u8]) -> Option<()> {
        let index = u32::try_from(self.spans.len()).ok()?;
        self.push(name, &String::from_utf8_lossy(value))?;
        self.raw.push((index, value.to_vec()));
        Some(())
    }

    /// The bytes of the values that are not UTF-8, for [`Headers::from_text`].
    pub fn raw(&self) -> &[(u32, Vec<u8>)] {
        &self.raw
    }

    /// The bytes of every name and value together (Envoy's `byteSize()` of the same map).
    pub fn byte_len(&self) -> usize {
        self.spans
            .iter()
            .map(|&[n0, n1, v0, v1]| {
                (n1.saturating_sub(n0) as usize) + (v1.saturating_sub(v0) as usize)
            })
            .sum()
    }

    /// The length of the text behind the ranges (the host's whole buffer when decoded in place).
    #[cfg(test)]
    pub(crate) fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The index of the first header named exactly `name`, found without building the slices.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.spans
            .iter()
            .position(|&[n0, n1, _, _]| self.text.get(n0 as usize..n1 as usize) == Some(name))
    }

    /// The (name, value) slices, for [`Headers::from_slices`]: one allocation per callback that reads
    /// headers, and lookups (a scan of the headers each) as quick as over owned pairs.
    pub fn slices(&self) -> Vec<(&str, &str)> {
        self.spans.iter().map(|s| self.span_pair(s)).collect()
    }

    /// The header a span marks.
    fn span_pair(&self, span: &[u32; 4]) -> (&str, &str) {
        let [n0, n1, v0, v1] = span.map(|x| x as usize);
        (
            self.text.get(n0..n1).unwrap_or_default(),
            self.text.get(v0..v1).unwrap_or_default(),
        )
    }
}

// Header values (Authorization, Signature, cookies, X-Forwarded-For) never appear in Debug output: names
// and value lengths only.
impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(k, v)| format!("{k}: <{} bytes>", v.len())),
            )
            .finish()
    }
}

impl fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Headers::from_slices(&self.slices()).fmt(f)
    }
}

impl<'a> Headers<'a> {
    /// Headers borrowed from (name, value) pairs.
    pub fn new(pairs: &'a [(String, String)]) -> Self {
        Headers(Repr::Owned(pairs), &[])
    }

    /// Headers borrowed from (name, value) pairs, with the bytes of the values that are not UTF-8 (by
    /// index, as [`HeaderText::raw`] holds them).
    pub fn with_raw(pairs: &'a [(String, String)], raw: &'a [(u32, Vec<u8>)]) -> Self {
        Headers(Repr::Owned(pairs), raw)
    }

    /// Headers borrowed from (name, value) slices ([`HeaderText::slices`]).
    pub fn from_slices(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Headers(Repr::Slices(pairs), &[])
    }

    /// Headers over a [`HeaderText`]'s slices, with the bytes of its values that are not UTF-8.
    pub fn from_text(pairs: &'a [(&'a str, &'a str)], raw: &'a [(u32, Vec<u8>)]) -> Self {
        Headers(Repr::Slices(pairs), raw)
    }

    /// Every value of a header as the bytes the host delivered (values that are not UTF-8 included).
    pub fn get_all_bytes<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        let raw = self.1;
        self.iter()
            .enumerate()
            .filter(move |(_, (k, _))| k.eq_ignore_ascii_case(name))
            .map(move |(i, (_, v))| {
                raw.iter()
                    .find(|(at, _)| *at as usize == i)
                    .map_or(v.as_bytes(), |(_, b)| b.as_slice())
            })
    }

    pub fn len(&self) -> usize {
        match self.0 {
            Repr::Owned(p) => p.len(),
            Repr::Slices(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th header.
    pub fn pair(&self, i: usize) -> Option<(&'a str, &'a str)> {
        match self.0 {
            Repr::Owned(p) => p.get(i).map(|(k, v)| (k.as_str(), v.as_str())),
            Repr::Slices(p) => p.get(i).copied(),
        }
    }

    /// The first value of a header, if present.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of a header, in order.
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The field lines of `name`, each trimmed, joined as RFC 9110 §5.3 combines them (`", "`); `None`
    /// when absent. A single line (the usual case) is borrowed, not copied.
    pub fn combined(&self, name: &str) -> Option<std::borrow::Cow<'a, str>> {
        let mut lines = self.get_all(name).map(str::trim);
        let first = lines.next()?;
        let Some(second) = lines.next() else {
            return Some(std::borrow::Cow::Borrowed(first));
        };
        let mut out = String::with_capacity(first.len() + second.len() + 2);
        out.push_str(first);
        for line in std::iter::once(second).chain(lines) {
            out.push_str(", ");
            out.push_str(line);
        }
        Some(std::borrow::Cow::Owned(out))
    }

    /// How many times a header occurs.
    pub fn count(&self, name: &str) -> usize {
        self.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn iter(&self) -> HeaderIter<'a> {
        match self.0 {
            Repr::Owned(p) => HeaderIter::Owned(p.iter()),
            Repr::Slices(p) => HeaderIter::Slices(p.iter()),
        }
    }
}

/// [`Headers::iter`]: (name, value) in arrival order, either way round.
pub enum HeaderIter<'a> {
    Owned(std::slice::Iter<'a, (String, String)>),
    Slices(std::slice::Iter<'a, (&'a str, &'a str)>),
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            HeaderIter::Owned(it) => it.next().map(|(k, v)| (k.as_str(), v.as_str())),
            HeaderIter::Slices(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            HeaderIter::Owned(it) => it.size_hint(),
            HeaderIter::Slices(it) => it.size_hint(),
        }
    }
}

impl DoubleEndedIterator for HeaderIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            HeaderIter::Owned(it) => it.next_back().map(|(k, v)| (k.as_str(), v.as_str())),
            HeaderIter::Slices(it) => it.next_back().copied(),
        }
    }
}

/// The request head: everything the checks need before the body.
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority` (Host), as received, possibly with a port.
    pub authority: &'a str,
    /// `:path`: path and query exactly as received.
    pub path: &'a str,
    /// Envoy's route name (`xds.route_name`), when the route has one.
    pub route_name: Option<&'a str>,
    /// `None` for a plaintext connection, else the negotiated TLS version.
    pub tls: Option<TlsVersion>,
    pub peer: Peer,
    pub headers: Headers<'a>,
}

// A query may carry tokens (`?token=...`): Debug shows the path without it, the peer and header values
// redacted (see `Peer` and `Headers`).
impl fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.split_once('?').map_or(self.path, |(p, _)| p);
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("authority", &self.authority)
            .field("path", &path)
            .field("query", &self.path.contains('?').then_some("<redacted>"))
            .field("route_name", &self.route_name)
            .field("tls", &self.tls)
            .field("peer", &self.peer)
            .field("headers", &self.headers)
            .finish()
    }
}

impl<'a> RequestHead<'a> {
    /// The authority without its port (`example.com:8080` → `example.com`, `[::1]:80` → `[::1]`), lowercased
    /// comparison is left to the caller.
    pub fn host(&self) -> &'a str {
        split_host_port(self.authority).0
    }
}

/// Splits `host[:port]`, keeping IPv6 brackets on the host.
///
/// After the `]` of a bracketed host only nothing or `:port` may follow; anything else
/// (`[::1]@evil.example`, `[::1]/x`, `[::1]]`) is not split at all: the whole authority is returned
/// as the host, which [`crate::https::valid_authority`] refuses, so no caller sees a clean-looking
/// host for an authority that carries more.
pub fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        if let Some(end) = authority.find(']') {
            let host = &authority[..=end];
            let rest = &authority[end + 1..];
            if rest.is_empty() {
                return (host, None);
            }
            if let Some(port) = rest.strip_prefix(':') {
                return (host, Some(port));
            }
        }
        return (authority, None);
    }
    match authority.rfind(':') {
        Some(i) if !authority[..i].contains(':') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn host_port_split() {
        assert_eq!(
            split_host_port("a.example:8080"),
            ("a.example", Some("8080"))
        );
        assert_eq!(split_host_port("a.example"), ("a.example", None));
        assert_eq!(split_host_port("[::1]:443"), ("[::1]", Some("443")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        // Trailing text after `]` that is not `:port` keeps the whole authority as the host.
        for odd in ["[::1]@evil.example", "[::1]/x", "[::1] x", "[::1]]"] {
            assert_eq!(split_host_port(odd), (odd, None), "{odd:?}");
        }
    }

    #[test]
    fn tls_versions() {
        assert_eq!(TlsVersion::parse("TLSv1.2"), Some(TlsVersion::V1_2));
        assert_eq!(TlsVersion::parse("1.3"), Some(TlsVersion::V1_3));
        assert_eq!(TlsVersion::parse(""), None);
        assert!(TlsVersion::V1_2 < TlsVersion::V1_3);
    }

    /// Debug output of a head names the request without its query, client address or header values.
    #[test]
    fn head_debug_hides_query_peer_and_values() {
        let r = crate::testkit::TestRequest::get("api.example", "/orders?token=t0k3n&id=1")
            .route("api")
            .header("authorization", "Bearer s3cr3t");
        let head = r.head();
        let shown = format!("{head:?}");
        for secret in ["t0k3n", "id=1", "s3cr3t", "192.0.2.7"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("\"/orders\""), "{shown}");
        assert!(shown.contains("authorization: <13 bytes>"), "{shown}");
    }
}
