//! The CLI's HTTP/1 request reader (`edgeward eval`, `edgeward sign`): what it accepts prints back
//! (`render`, which `sign` writes) to a request that reads as the same one, and its Content-Length is
//! RFC 9110's `1*DIGIT`.

use crate::http1::{parse_http_request, render};

pub fn http1(data: &[u8]) {
    let Ok(req) = parse_http_request(data) else {
        return;
    };
    let _ = (req.authority(), req.path());
    for (name, value) in &req.headers {
        if name == "content-length" {
            assert!(
                !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
                "Content-Length {value:?} accepted"
            );
        }
    }
    let printed = render(&req, &[]);
    let again = parse_http_request(&printed);
    let Ok(mut again) = again else {
        panic_with(&format!(
            "{data:?} printed as {printed:?}, which reads as {again:?}"
        ));
    };
    // `render` adds the Content-Length a body without one needs.
    let added = !req.headers.iter().any(|(k, _)| k == "content-length")
        && again
            .headers
            .last()
            .is_some_and(|(k, _)| k == "content-length");
    if added {
        again.headers.pop();
        again.raw_names.pop();
    }
    assert_eq!(again, req, "{data:?} printed as {printed:?}");
}

use super::sfv::panic_with;
