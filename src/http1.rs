//! A minimal raw HTTP/1.1 request parser and printer for `edgeward eval` and `edgeward sign`.
//!
//! Accepts CRLF or LF line endings, obs-fold continuation lines (joined with one space), and a body
//! delimited by Content-Length (without one, whatever follows the blank line, unless it is only line
//! breaks). Chunked transfer coding is refused rather than guessed at.

use crate::request::{is_token, Headers, Peer, RequestHead, TlsVersion};
use std::fmt;

/// A parsed request: head and body as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub method: String,
    /// The request target exactly as written (origin-form `/p?q`, or absolute-form).
    pub target: String,
    pub version: String,
    /// Header fields in order, names lowercased, values with surrounding whitespace removed.
    pub headers: Vec<(String, String)>,
    /// The header names as written (same order as `headers`), for printing the request back.
    pub raw_names: Vec<String>,
    pub body: Vec<u8>,
}

impl ParsedRequest {
    /// The authority: the Host header, else the authority of an absolute-form target.
    pub fn authority(&self) -> String {
        if let Some((_, h)) = self.headers.iter().find(|(k, _)| k == "host") {
            return h.clone();
        }
        match self.target.split_once("://") {
            Some((_, rest)) => rest
                .split(['/', '?'])
                .next()
                .unwrap_or_default()
                .to_string(),
            None => String::new(),
        }
    }

    /// The `:path` a proxy would see: the target, reduced to path and query if in absolute-form.
    pub fn path(&self) -> &str {
        match self.target.split_once("://") {
            Some((_, rest)) if !self.target.starts_with('/') => match rest.find(['/', '?']) {
                Some(i) => rest.get(i..).unwrap_or("/"),
                None => "/",
            },
            _ => &self.target,
        }
    }

    /// The request head as the core sees it (`authority` from [`ParsedRequest::authority`]).
    pub fn head<'a>(
        &'a self,
        authority: &'a str,
        tls: Option<TlsVersion>,
        peer: Peer,
    ) -> RequestHead<'a> {
        RequestHead {
            method: &self.method,
            authority,
            path: self.path(),
            route_name: None,
            tls,
            peer,
            headers: Headers::new(&self.headers),
        }
    }
}

/// Why a raw request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http1Error {
    Empty,
    NotUtf8,
    /// The request line is not `METHOD TARGET VERSION`.
    RequestLine(String),
    Method(String),
    Target,
    Version(String),
    /// A header line holds a CR (not at its end) or a NUL.
    BareCrOrNul,
    /// An obs-fold continuation line before the first header.
    LeadingContinuation,
    /// A header line without a colon.
    HeaderLine(String),
    HeaderName(String),
    TransferEncoding,
    ConflictingContentLengths,
    ContentLength(String),
    /// Fewer bytes after the head than Content-Length says.
    ShortBody {
        got: usize,
        want: usize,
    },
    /// More bytes after the body than Content-Length says (other than line breaks).
    LongBody,
}

impl fmt::Display for Http1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Http1Error::Empty => f.write_str("empty request"),
            Http1Error::NotUtf8 => f.write_str("the request head is not valid UTF-8"),
            Http1Error::RequestLine(line) => write!(f, "malformed request line {line:?}"),
            Http1Error::Method(method) => write!(f, "malformed method {method:?}"),
            Http1Error::Target => f.write_str("malformed request target"),
            Http1Error::Version(version) => {
                write!(f, "unsupported version {version:?} (HTTP/1.x expected)")
            }
            Http1Error::BareCrOrNul => f.write_str("a header line contains a bare CR or NUL"),
            Http1Error::LeadingContinuation => {
                f.write_str("a continuation line comes before any header")
            }
            Http1Error::HeaderLine(line) => write!(f, "malformed header line {line:?}"),
            Http1Error::HeaderName(name) => write!(f, "malformed header name {name:?}"),
            Http1Error::TransferEncoding => {
                f.write_str("Transfer-Encoding is not supported; give the body with Content-Length")
            }
            Http1Error::ConflictingContentLengths => {
                f.write_str("conflicting Content-Length headers")
            }
            Http1Error::ContentLength(value) => write!(f, "malformed Content-Length {value:?}"),
            Http1Error::ShortBody { got, want } => write!(
                f,
                "the body is shorter than Content-Length ({got} < {want})"
            ),
            Http1Error::LongBody => {
                f.write_str("bytes after the body (longer than Content-Length)")
            }
        }
    }
}

impl std::error::Error for Http1Error {}

/// Parses one raw HTTP/1.x request.
pub fn parse_http_request(bytes: &[u8]) -> Result<ParsedRequest, Http1Error> {
    let mut pos = 0usize;
    let next_line = |pos: &mut usize| -> Option<Result<&str, Http1Error>> {
        if *pos >= bytes.len() {
            return None;
        }
        let rest = bytes.get(*pos..).unwrap_or_default();
        let (line, advance) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (rest.get(..i).unwrap_or_default(), i + 1),
            None => (rest, rest.len()),
        };
        *pos += advance;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Some(std::str::from_utf8(line).map_err(|_| Http1Error::NotUtf8))
    };

    let request_line = match next_line(&mut pos) {
        Some(l) => l?,
        None => return Err(Http1Error::Empty),
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Http1Error::RequestLine(request_line.to_string()));
    };
    if !is_token(method) {
        return Err(Http1Error::Method(method.to_string()));
    }
    if target.is_empty() || target.bytes().any(|c| c <= 0x20 || c == 0x7f) {
        return Err(Http1Error::Target);
    }
    if !version.starts_with("HTTP/1.") {
        return Err(Http1Error::Version(version.to_string()));
    }

    let mut headers: Vec<(String, String)> = Vec::new();
    let mut raw_names: Vec<String> = Vec::new();
    while let Some(line) = next_line(&mut pos) {
        let line = line?;
        if line.is_empty() {
            break;
        }
        if line.bytes().any(|c| c == b'\r' || c == 0) {
            return Err(Http1Error::BareCrOrNul);
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = headers.last_mut() else {
                return Err(Http1Error::LeadingContinuation);
            };
            // An empty continuation adds nothing (a space alone would leave the value untrimmed).
            let cont = line.trim_matches([' ', '\t']);
            if !cont.is_empty() {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(cont);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Http1Error::HeaderLine(line.to_string()));
        };
        if !is_token(name) {
            return Err(Http1Error::HeaderName(name.to_string()));
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
        raw_names.push(name.to_string());
    }
    let rest = bytes.get(pos..).unwrap_or_default();

    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(Http1Error::TransferEncoding);
    }
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let only_line_breaks = |b: &[u8]| b.iter().all(|c| *c == b'\r' || *c == b'\n');
    let body = match lengths.first() {
        None => {
            if only_line_breaks(rest) {
                Vec::new()
            } else {
                rest.to_vec()
            }
        }
        Some(first) => {
            if lengths.iter().any(|l| l != first) {
                return Err(Http1Error::ConflictingContentLengths);
            }
            // RFC 9110 §8.6: 1*DIGIT (usize's parser would also take a sign: `+5`).
            let n: usize = Some(first)
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Http1Error::ContentLength(first.to_string()))?;
            let body = rest.get(..n).ok_or(Http1Error::ShortBody {
                got: rest.len(),
                want: n,
            })?;
            if !only_line_breaks(rest.get(n..).unwrap_or_default()) {
                return Err(Http1Error::LongBody);
            }
            body.to_vec()
        }
    };
    Ok(ParsedRequest {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        raw_names,
        body,
    })
}

/// Prints `req` back with `set` headers replacing any of the same name (appended after the others), and a
/// Content-Length added when the body needs one. CRLF line endings.
pub fn render(req: &ParsedRequest, set: &[(String, String)]) -> Vec<u8> {
    let mut out = format!("{} {} {}\r\n", req.method, req.target, req.version);
    let replaced = |name: &str| set.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (i, (name, value)) in req.headers.iter().enumerate() {
        if replaced(name) {
            continue;
        }
        let raw = req.raw_names.get(i).map(String::as_str).unwrap_or(name);
        out.push_str(&format!("{raw}: {value}\r\n"));
    }
    for (name, value) in set {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length =
        req.headers.iter().any(|(k, _)| k == "content-length") || replaced("content-length");
    if !req.body.is_empty() && !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&req.body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TEST_REQUEST: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/rfc9421/test-request.txt"
    ));

    #[test]
    fn parses_the_rfc9421_test_request() {
        let r = parse_http_request(TEST_REQUEST.as_bytes()).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/foo?param=Value&Pet=dog");
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.headers.len(), 5);
        assert_eq!(
            r.headers[0],
            ("host".to_string(), "example.com".to_string())
        );
        assert_eq!(r.raw_names[1], "Date");
        assert_eq!(r.body, b"{\"hello\": \"world\"}");
        assert_eq!(r.authority(), "example.com");
        assert_eq!(r.path(), "/foo?param=Value&Pet=dog");
    }

    #[test]
    fn lf_crlf_fold_and_lenient_ends() {
        let r = parse_http_request(b"GET / HTTP/1.1\nHost: a\nX: one\n  two\n").unwrap();
        assert_eq!(r.headers[1].1, "one two");
        assert!(r.body.is_empty());
        let r = parse_http_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n").unwrap();
        assert!(r.body.is_empty());
        let r = parse_http_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\n")
            .unwrap();
        assert_eq!(r.body, b"hi");
        let r = parse_http_request(b"POST / HTTP/1.1\nHost: a\n\nraw body").unwrap();
        assert_eq!(r.body, b"raw body");
        let r = parse_http_request(b"GET http://h.example:8080/p?q=1 HTTP/1.1\n\n").unwrap();
        assert_eq!(r.authority(), "h.example:8080");
        assert_eq!(r.path(), "/p?q=1");
    }

    /// Fuzzing (fuzz/regressions/http1/empty-continuation-line): an empty obs-fold line added a space, so
    /// the value printed back by `render` (what `edgeward sign` sends) read differently.
    #[test]
    fn an_empty_continuation_line_adds_nothing() {
        let r = parse_http_request(b"GET / HTTP/1.1\r\nX-A:  v \r\n\t\r\n  \r\n\r\n").unwrap();
        assert_eq!(r.headers[0].1, "v");
        assert_eq!(parse_http_request(&render(&r, &[])).unwrap(), r);
    }

    /// A Content-Length is digits only (`+5` and `-0` are refused, as RFC 9110 says).
    #[test]
    fn a_signed_content_length_is_refused() {
        for v in ["+5", "-0", "5 5", ""] {
            let req = format!("POST / HTTP/1.1\nContent-Length: {v}\n\nhello");
            assert!(
                matches!(
                    parse_http_request(req.as_bytes()),
                    Err(Http1Error::ContentLength(_))
                ),
                "{v:?}"
            );
        }
    }

    #[test]
    fn malformed_requests_are_errors() {
        use Http1Error::*;
        let text = |s: &str| s.to_string();
        let bad: &[(&[u8], Http1Error)] = &[
            (b"", Empty),
            (b"GET /\n", RequestLine(text("GET /"))),
            (b"GET / HTTP/1.1 x\n", RequestLine(text("GET / HTTP/1.1 x"))),
            (b"GET / HTTP/2\n", Version(text("HTTP/2"))),
            (b"G T / HTTP/1.1\n", RequestLine(text("G T / HTTP/1.1"))),
            (
                b"GET / HTTP/1.1\n continuation-first\n",
                LeadingContinuation,
            ),
            (
                b"GET / HTTP/1.1\nBad Name: x\n",
                HeaderName(text("Bad Name")),
            ),
            (b"GET / HTTP/1.1\nNoColon\n", HeaderLine(text("NoColon"))),
            (b"GET / HTTP/1.1\nX: a\rb\n", BareCrOrNul),
            (
                b"POST / HTTP/1.1\nContent-Length: 5\n\nab",
                ShortBody { got: 2, want: 5 },
            ),
            (b"POST / HTTP/1.1\nContent-Length: 1\n\nabc", LongBody),
            (
                b"POST / HTTP/1.1\nContent-Length: 1\nContent-Length: 2\n\nab",
                ConflictingContentLengths,
            ),
            (
                b"POST / HTTP/1.1\nContent-Length: x\n\n",
                ContentLength(text("x")),
            ),
            (
                b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n0\r\n\r\n",
                TransferEncoding,
            ),
            (b"GET / HTTP/1.1\nX: \xff\n", NotUtf8),
        ];
        for (b, want) in bad {
            assert_eq!(
                parse_http_request(b).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn render_replaces_and_adds() {
        let r = parse_http_request(b"POST /x HTTP/1.1\nHost: a\nSignature: old\n\nbody").unwrap();
        let out = render(&r, &[("Signature".into(), "new".into())]);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /x HTTP/1.1\r\nHost: a\r\nSignature: new\r\nContent-Length: 4\r\n\r\nbody"
        );
        // The rendering parses back to the same request plus the header.
        let again = parse_http_request(&out).unwrap();
        assert_eq!(again.body, b"body");
        assert_eq!(
            again
                .headers
                .iter()
                .filter(|(k, _)| k == "signature")
                .count(),
            1
        );
    }
}
