//! A std-only HTTP/1.1 echo upstream: replies with a JSON description of the request it received.
//!
//! Response body: `{"method", "path", "headers": [[name, value], ...], "body", "body_len"}` with
//! header names lowercased and in received order, the body as lossy UTF-8. A request whose path
//! starts with `/__status/NNN` gets status NNN (same body). One thread per connection, keep-alive,
//! Content-Length and chunked request bodies. Used by the e2e tests and by the demo run.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// Largest request head or body the echo accepts (it is a test server, not a fortress).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A running echo server; dropping it stops the listener and closes every open connection.
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    accept: Option<JoinHandle<()>>,
    requests: Arc<AtomicU64>,
}

impl EchoServer {
    /// The bound address (the real port when spawned on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests reached this upstream so far (counted when the whole request was read).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Binds `addr` (port 0 picks a free port) and serves in background threads.
pub fn spawn(addr: SocketAddr) -> io::Result<EchoServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
    let requests = Arc::new(AtomicU64::new(0));
    let accept = {
        let stop = Arc::clone(&stop);
        let conns = Arc::clone(&conns);
        let requests = Arc::clone(&requests);
        thread::Builder::new()
            .name("echo-accept".into())
            .spawn(move || accept_loop(&listener, &stop, &conns, &requests))?
    };
    Ok(EchoServer {
        addr,
        stop,
        conns,
        accept: Some(accept),
        requests,
    })
}

/// Serves forever on `addr` (for the `edgeward-echo` binary).
pub fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    let stop = AtomicBool::new(false);
    let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
    accept_loop(&listener, &stop, &conns, &Arc::new(AtomicU64::new(0)));
    Ok(())
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection to ourselves wakes it up to see the flag.
        let wake = match self.addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        let _ = TcpStream::connect(wake);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
        // Connections kept alive by a client would otherwise keep their threads serving.
        if let Ok(mut conns) = self.conns.lock() {
            for (_, stream) in conns.drain() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    conns: &Arc<Mutex<HashMap<u64, TcpStream>>>,
    requests: &Arc<AtomicU64>,
) {
    let next_id = AtomicU64::new(0);
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        if let (Ok(clone), Ok(mut map)) = (stream.try_clone(), conns.lock()) {
            map.insert(id, clone);
        }
        let conns = Arc::clone(conns);
        let requests = Arc::clone(requests);
        let spawned = thread::Builder::new()
            .name("echo-conn".into())
            .spawn(move || {
                let _ = serve_connection(stream, &requests);
                if let Ok(mut map) = conns.lock() {
                    map.remove(&id);
                }
            });
        if spawned.is_err() {
            // Out of threads: drop this connection, keep serving others.
            continue;
        }
    }
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            conn.split(',').any(|t| t.trim() == "keep-alive")
        } else {
            !conn.split(',').any(|t| t.trim() == "close")
        }
    }
}

fn serve_connection(stream: TcpStream, requests: &AtomicU64) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader, &mut writer) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = write_response(&mut writer, 400, b"{\"error\":\"bad request\"}", false);
                return Err(e);
            }
        };
        requests.fetch_add(1, Ordering::SeqCst);
        let keep_alive = request.keep_alive();
        let status = status_from_path(&request.path).unwrap_or(200);
        let body = describe(&request);
        let with_body = request.method != "HEAD";
        write_response(
            &mut writer,
            status,
            if with_body { &body } else { b"" },
            keep_alive,
        )?;
        if !keep_alive {
            return Ok(());
        }
    }
}

fn status_from_path(path: &str) -> Option<u16> {
    let rest = path.strip_prefix("/__status/")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|s| (200..=599).contains(s))
}

fn describe(request: &Request) -> Vec<u8> {
    let headers: Vec<[&str; 2]> = request
        .headers
        .iter()
        .map(|(n, v)| [n.as_str(), v.as_str()])
        .collect();
    let value = serde_json::json!({
        "method": request.method,
        "path": request.path,
        "headers": headers,
        "body": String::from_utf8_lossy(&request.body),
        "body_len": request.body.len(),
    });
    value.to_string().into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_response(w: &mut TcpStream, status: u16, body: &[u8], keep_alive: bool) -> io::Result<()> {
    // 1xx, 204 and 304 carry no body by definition.
    let bodyless = status == 204 || status == 304;
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    out.push_str("content-type: application/json\r\n");
    if !bodyless {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if !keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !bodyless {
        bytes.extend_from_slice(body);
    }
    w.write_all(&bytes)?;
    w.flush()
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one CRLF- (or LF-) terminated line; `None` at a clean EOF before any byte.
fn read_line<R: BufRead>(r: &mut R, limit: usize) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > limit || buf.last() != Some(&b'\n') {
        return Err(invalid("line too long or truncated"));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn read_request<R: BufRead>(r: &mut R, w: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEAD;
    let line = loop {
        match read_line(r, budget)? {
            None => return Ok(None),
            // Tolerate stray CRLFs between requests (RFC 9112 section 2.2).
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    budget = budget.saturating_sub(line.len());
    let mut parts = line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(r, budget)? else {
            return Err(invalid("eof in head"));
        };
        budget = budget.saturating_sub(line.len() + 2);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("bad header line"));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        version: version.to_string(),
        headers,
        body: Vec::new(),
    };
    if request
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(r)?;
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        if len > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(Some(request))
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, 1024)?.ok_or_else(|| invalid("eof in chunk size"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailer section, ended by an empty line.
            loop {
                let t = read_line(r, MAX_HEAD)?.ok_or_else(|| invalid("eof in trailers"))?;
                if t.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(body.get_mut(start..).unwrap_or_default())?;
        let crlf = read_line(r, 2)?.ok_or_else(|| invalid("eof after chunk"))?;
        if !crlf.is_empty() {
            return Err(invalid("missing CRLF after chunk"));
        }
    }
}
