//! A minimal raw HTTP/1.1 request parser and printer for `edgeward eval` and `edgeward sign`.
//!
//! Accepts CRLF or LF line endings, obs-fold continuation lines (joined with one space), and a body
//! delimited by Content-Length (without one, whatever follows the blank line, unless it is only line
//! breaks). Chunked transfer coding is refused rather than guessed at.

use crate::request::{is_token, HeaderText, Headers, Peer, RequestHead, TlsVersion};
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
    /// The bytes of the values that are not UTF-8, by index into `headers` (which holds them converted
    /// lossily), as [`crate::request::HeaderText`] keeps them. Code that edits `headers` of a request
    /// with such values must keep these indexes in step.
    pub raw_values: Vec<(u32, Vec<u8>)>,
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
            headers: Headers::with_raw(&self.headers, &self.raw_values),
        }
    }

    /// The `i`th header's value as received: its bytes when they are not UTF-8, else its text.
    pub fn value_bytes(&self, i: usize) -> Option<&[u8]> {
        let (_, text) = self.headers.get(i)?;
        Some(
            self.raw_values
                .iter()
                .find(|(at, _)| *at as usize == i)
                .map_or(text.as_bytes(), |(_, b)| b.as_slice()),
        )
    }

    /// Replaces every header named `name` (ASCII case-insensitive) with one `name: value`, appended after
    /// the others; the indexes of `raw_names` and `raw_values` follow.
    pub fn set_header(&mut self, name: &str, value: &str) {
        let headers = std::mem::take(&mut self.headers);
        let mut raw_names = Vec::with_capacity(headers.len() + 1);
        let mut raw_values = Vec::new();
        for (i, (k, v)) in headers.into_iter().enumerate() {
            if k.eq_ignore_ascii_case(name) {
                continue;
            }
            let at = u32::try_from(self.headers.len()).unwrap_or(u32::MAX);
            if let Some((_, bytes)) = self.raw_values.iter().find(|(j, _)| *j as usize == i) {
                raw_values.push((at, bytes.clone()));
            }
            raw_names.push(self.raw_names.get(i).cloned().unwrap_or_else(|| k.clone()));
            self.headers.push((k, v));
        }
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        raw_names.push(name.to_string());
        self.raw_names = raw_names;
        self.raw_values = raw_values;
    }

    /// Appends the headers to `out` as the plugin holds them (values that are not UTF-8 with their
    /// bytes), leaving out those `skip` names.
    pub fn append_headers_to(&self, out: &mut HeaderText, skip: impl Fn(&str) -> bool) {
        for (i, (name, text)) in self.headers.iter().enumerate() {
            if skip(name) {
                continue;
            }
            // `push` fails only past 4 GiB of headers, more than the CLI ever reads.
            let _ = match self.raw_values.iter().find(|(at, _)| *at as usize == i) {
                Some((_, bytes)) => out.push_bytes(name, bytes),
                None => out.push(name, text),
            };
        }
    }
}

/// Why a raw request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Http1Error {
    Empty,
    /// The request line holds bytes outside ASCII.
    RequestLineNotAscii,
    /// The request line is not `METHOD TARGET VERSION`.
    RequestLine(String),
    Method(String),
    Target,
    Version(String),
    /// A header line holds a control character other than tab (a CR not at its end, a NUL, ...).
    ControlCharacter,
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
            Http1Error::RequestLineNotAscii => f.write_str("the request line is not ASCII"),
            Http1Error::RequestLine(line) => write!(f, "malformed request line {line:?}"),
            Http1Error::Method(method) => write!(f, "malformed method {method:?}"),
            Http1Error::Target => f.write_str("malformed request target"),
            Http1Error::Version(version) => {
                write!(f, "unsupported version {version:?} (HTTP/1.x expected)")
            }
            Http1Error::ControlCharacter => {
                f.write_str("a header line contains a control character (a bare CR, a NUL, ...)")
            }
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
///
/// The request line and header names are ASCII; header values may carry obs-text (bytes 0x80-0xff,
/// RFC 9110 §5.5), kept as bytes in [`ParsedRequest::raw_values`] when they are not UTF-8. Control
/// characters other than tab are refused anywhere in the head.
pub fn parse_http_request(bytes: &[u8]) -> Result<ParsedRequest, Http1Error> {
    let mut pos = 0usize;
    let next_line = |pos: &mut usize| -> Option<&[u8]> {
        if *pos >= bytes.len() {
            return None;
        }
        let rest = bytes.get(*pos..).unwrap_or_default();
        let (line, advance) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (rest.get(..i).unwrap_or_default(), i + 1),
            None => (rest, rest.len()),
        };
        *pos += advance;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    };

    let Some(request_line) = next_line(&mut pos) else {
        return Err(Http1Error::Empty);
    };
    // RFC 9112 §3: the request line is ASCII (a target with other bytes is percent-encoded).
    let request_line = match std::str::from_utf8(request_line) {
        Ok(l) if l.is_ascii() => l,
        _ => return Err(Http1Error::RequestLineNotAscii),
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

    // Values as bytes until the head is read (a continuation line may follow a value).
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    let mut raw_names: Vec<String> = Vec::new();
    let trim = |b: &[u8]| -> Vec<u8> {
        let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
        let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
        match (start, end) {
            (Some(s), Some(e)) => b.get(s..=e).unwrap_or_default().to_vec(),
            _ => Vec::new(),
        }
    };
    while let Some(line) = next_line(&mut pos) {
        if line.is_empty() {
            break;
        }
        // RFC 9110 §5.5: a field value is visible ASCII, obs-text, space and tab; CR, LF and NUL are
        // never allowed (a recipient must refuse them) and neither are the other control characters.
        if line.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
            return Err(Http1Error::ControlCharacter);
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            let Some(last) = fields.last_mut() else {
                return Err(Http1Error::LeadingContinuation);
            };
            // An empty continuation adds nothing (a space alone would leave the value untrimmed).
            let cont = trim(line);
            if !cont.is_empty() {
                if !last.1.is_empty() {
                    last.1.push(b' ');
                }
                last.1.extend_from_slice(&cont);
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(Http1Error::HeaderLine(
                String::from_utf8_lossy(line).into_owned(),
            ));
        };
        let name = line.get(..colon).unwrap_or_default();
        let name = match std::str::from_utf8(name) {
            Ok(n) if is_token(n) => n,
            _ => {
                return Err(Http1Error::HeaderName(
                    String::from_utf8_lossy(name).into_owned(),
                ))
            }
        };
        fields.push((
            name.to_ascii_lowercase(),
            trim(line.get(colon + 1..).unwrap_or_default()),
        ));
        raw_names.push(name.to_string());
    }
    let rest = bytes.get(pos..).unwrap_or_default();

    // As the plugin holds them (crate::pairs::decode_text): values that are not UTF-8 as text converted
    // lossily, their bytes kept by index for `;bs`.
    let mut headers: Vec<(String, String)> = Vec::with_capacity(fields.len());
    let mut raw_values: Vec<(u32, Vec<u8>)> = Vec::new();
    for (name, value) in fields {
        match String::from_utf8(value) {
            Ok(text) => headers.push((name, text)),
            Err(e) => {
                let index = u32::try_from(headers.len()).unwrap_or(u32::MAX);
                let value = e.into_bytes();
                headers.push((name, String::from_utf8_lossy(&value).into_owned()));
                raw_values.push((index, value));
            }
        }
    }

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
        raw_values,
        body,
    })
}

/// Prints `req` back with `set` headers replacing any of the same name (appended after the others), and a
/// Content-Length added when the body needs one. CRLF line endings; values that are not UTF-8 as their
/// bytes.
pub fn render(req: &ParsedRequest, set: &[(String, String)]) -> Vec<u8> {
    let mut out = format!("{} {} {}\r\n", req.method, req.target, req.version).into_bytes();
    let mut line = |name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    let replaced = |name: &str| set.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (i, (name, value)) in req.headers.iter().enumerate() {
        if replaced(name) {
            continue;
        }
        let raw = req.raw_names.get(i).map(String::as_str).unwrap_or(name);
        line(raw, req.value_bytes(i).unwrap_or(value.as_bytes()));
    }
    for (name, value) in set {
        line(name, value.as_bytes());
    }
    let has_length =
        req.headers.iter().any(|(k, _)| k == "content-length") || replaced("content-length");
    if !req.body.is_empty() && !has_length {
        line("Content-Length", req.body.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
    out
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
            (b"GET / HTTP/1.1\nX: a\rb\n", ControlCharacter),
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
            (b"GET / HTTP/1.1\nX: a\0b\n", ControlCharacter),
            (b"GET / HTTP/1.1\nX: a\x01b\n", ControlCharacter),
            (b"GET / HTTP/1.1\nX: a\x7fb\n", ControlCharacter),
            (b"GET / HTTP/1.1\nX: \xff\n \x1b\n", ControlCharacter),
            (b"GET /caf\xc3\xa9 HTTP/1.1\n", RequestLineNotAscii),
            (b"GET /\xff HTTP/1.1\n", RequestLineNotAscii),
            (b"GET / HTTP/1.1\nX\xff: a\n", HeaderName(text("X\u{fffd}"))),
            (
                b"GET / HTTP/1.1\nX\xc3\xa9: a\n",
                HeaderName(text("X\u{e9}")),
            ),
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

    /// Header values may carry obs-text (RFC 9110 §5.5): the text is converted lossily as the plugin
    /// converts it, the bytes kept for `;bs` and printed back unchanged.
    #[test]
    fn obs_text_values_keep_their_bytes() {
        let raw: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nX-Raw:  raw \x80\xff end \t\r\nX-Utf8: caf\xc3\xa9\r\nX-Fold: \xe9\r\n  \xfe\r\n\r\n";
        let r = parse_http_request(raw).unwrap();
        let lossy = "raw \u{fffd}\u{fffd} end";
        assert_eq!(r.headers[1], ("x-raw".to_string(), lossy.to_string()));
        assert_eq!(r.headers[2].1, "caf\u{e9}");
        assert_eq!(r.headers[3].1, "\u{fffd} \u{fffd}");
        let want_raw = vec![
            (1, b"raw \x80\xff end".to_vec()),
            (3, b"\xe9 \xfe".to_vec()),
        ];
        assert_eq!(r.raw_values, want_raw);
        assert_eq!(r.value_bytes(1), Some(&b"raw \x80\xff end"[..]));
        assert_eq!(r.value_bytes(2), Some("caf\u{e9}".as_bytes()));
        assert_eq!(r.value_bytes(4), None);
        // The head the core sees: the text, and the bytes for `;bs`.
        let authority = r.authority();
        let head = r.head(&authority, None, Peer::Invalid);
        assert_eq!(head.headers.get("x-raw"), Some(lossy));
        let bytes: Vec<&[u8]> = head.headers.get_all_bytes("x-fold").collect();
        assert_eq!(bytes, [b"\xe9 \xfe"]);
        // As the plugin holds them (indexes follow what is left out).
        let mut text = HeaderText::default();
        r.append_headers_to(&mut text, |k| k == "host");
        assert_eq!(
            text.raw(),
            [(0, want_raw[0].1.clone()), (2, want_raw[1].1.clone())]
        );
        // Printed back byte for byte (the fold joined), and read again the same.
        let out = render(&r, &[]);
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Raw: raw \x80\xff end\r\nX-Utf8: caf\xc3\xa9\r\nX-Fold: \xe9 \xfe\r\n\r\n"
        );
        assert_eq!(parse_http_request(&out).unwrap(), r);
    }

    #[test]
    fn set_header_replaces_and_keeps_the_bytes_in_step() {
        let mut r = parse_http_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nSignature-Agent: x\r\nX-A: \xff\r\nsignature-agent: y\r\nX-B: \xfe\r\n\r\n",
        )
        .unwrap();
        r.set_header("Signature-Agent", "sig1=\"https://agent.example\"");
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["host", "x-a", "x-b", "signature-agent"]);
        assert_eq!(r.raw_names, ["Host", "X-A", "X-B", "Signature-Agent"]);
        assert_eq!(r.raw_values, [(1, b"\xff".to_vec()), (2, b"\xfe".to_vec())]);
        assert_eq!(
            render(&r, &[]),
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \xff\r\nX-B: \xfe\r\nSignature-Agent: sig1=\"https://agent.example\"\r\n\r\n"
        );
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
