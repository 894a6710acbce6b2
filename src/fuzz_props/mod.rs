//! The bodies of the fuzz targets (fuzz/fuzz_targets/*.rs), one `pub fn <target>(data: &[u8])` each:
//! it panics only when a property fails. tests/fuzz_regressions.rs runs the same functions over the
//! kept corpora and every crash input on stable, so a finding stays fixed without nightly.

mod client_ip;
mod content_digest;
mod http1;
mod jwks;
mod log_record;
mod pairs;
mod policy;
mod sfv;
mod signature;
mod stream;

pub use client_ip::client_ip;
pub use content_digest::content_digest;
pub use http1::http1;
pub use jwks::jwks;
pub use log_record::log_record;
pub use pairs::pairs;
pub use policy::policy;
pub use sfv::sfv;
pub use signature::signature;
pub use stream::stream;

use crate::request::{HeaderText, Headers, Peer, RequestHead, TlsVersion};
use std::net::IpAddr;

/// Every target by name, for the regression test and the scripts.
pub const TARGETS: [(&str, fn(&[u8])); 10] = [
    ("client_ip", client_ip),
    ("content_digest", content_digest),
    ("http1", http1),
    ("jwks", jwks),
    ("log_record", log_record),
    ("pairs", pairs),
    ("policy", policy),
    ("sfv", sfv),
    ("signature", signature),
    ("stream", stream),
];

/// A request read from fuzz input as text lines: the method, the authority, the path, then header
/// lines `name: value` (name lowercased, value as given, bytes that are not UTF-8 kept for `;bs`); a
/// blank line, then the body. Missing lines are empty.
struct FuzzRequest {
    method: String,
    authority: String,
    path: String,
    headers: HeaderText,
    body: Vec<u8>,
}

impl FuzzRequest {
    fn parse(data: &[u8]) -> FuzzRequest {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (data.get(..i).unwrap_or_default(), data.get(i + 2..)),
            None => (data, None),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let text = |l: Option<&[u8]>| String::from_utf8_lossy(l.unwrap_or_default()).into_owned();
        let method = text(lines.next());
        let authority = text(lines.next());
        let path = text(lines.next());
        let mut headers = HeaderText::with_capacity(head.len(), 8);
        for line in lines {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (
                    line.get(..i).unwrap_or_default(),
                    line.get(i + 1..).unwrap_or_default(),
                ),
                None => (line, &b""[..]),
            };
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = value.strip_prefix(b" ").unwrap_or(value);
            let _ = match std::str::from_utf8(value) {
                Ok(v) => headers.push(&name, v),
                Err(_) => headers.push_bytes(&name, value),
            };
        }
        FuzzRequest {
            method,
            authority,
            path,
            headers,
            body: body.unwrap_or_default().to_vec(),
        }
    }

    /// The head the core sees, with the header slices built by [`HeaderText::slices`].
    fn head<'a>(&'a self, slices: &'a [(&'a str, &'a str)], peer: Peer) -> RequestHead<'a> {
        RequestHead {
            method: &self.method,
            authority: &self.authority,
            path: &self.path,
            route_name: None,
            tls: Some(TlsVersion::V1_3),
            peer,
            headers: Headers::from_text(slices, self.headers.raw()),
        }
    }
}

/// The peer of the fuzzed requests.
fn test_peer() -> Peer {
    Peer::Ip(IpAddr::from([192, 0, 2, 7]))
}

/// A cursor over fuzz input for targets that read structured choices.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Up to `n` bytes.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    /// A string of up to 255 bytes (length first), lossily decoded.
    fn str(&mut self) -> String {
        let n = usize::from(self.u8());
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}
