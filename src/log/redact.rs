//! Query redaction: listed parameters keep their name, their value becomes `REDACTED`.

use std::borrow::Cow;

/// What a redacted query value is replaced with.
pub const REDACTED: &str = "REDACTED";

/// Replaces the value of every listed query parameter (names lowercase) with [`REDACTED`].
///
/// Names are compared after percent-decoding and ASCII-case-insensitively, so `t%6Fken=` or `TOKEN=`
/// cannot smuggle a value past the list; both `&` and `;` separate parameters (some servers accept `;`).
/// Over-redacting is the safe direction. Borrows when nothing changes.
pub fn redact_query<'p>(path: &'p str, names: &[String]) -> Cow<'p, str> {
    if names.is_empty() {
        return Cow::Borrowed(path);
    }
    match path.find('?') {
        Some(q) => redact_params(path, q + 1, names),
        None => Cow::Borrowed(path),
    }
}

/// [`redact_query`] for a URL in a header value (`Referer`): the query is what lies between the first `?`
/// and the first `#`, and the fragment's `name=value` pairs (after the fragment's own `?`, if it has one)
/// are redacted the same way (a client that sends a fragment may carry a token there). Borrows when nothing changes.
pub fn redact_url<'u>(url: &'u str, names: &[String]) -> Cow<'u, str> {
    if names.is_empty() {
        return Cow::Borrowed(url);
    }
    let Some((main, fragment)) = url.split_once('#') else {
        return redact_query(url, names);
    };
    let main_r = redact_query(main, names);
    // A route-style fragment (`#/reset?token=…`, common in single-page apps) has its pairs after its
    // own `?`; any other fragment is taken as pairs from its start.
    let start = fragment.find('?').map_or(0, |q| q + 1);
    let fragment_r = redact_params(fragment, start, names);
    if matches!((&main_r, &fragment_r), (Cow::Borrowed(_), Cow::Borrowed(_))) {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(&main_r);
    out.push('#');
    out.push_str(&fragment_r);
    Cow::Owned(out)
}

/// `whole` with the listed parameters of `whole[start..]` (`&`- or `;`-separated) redacted.
fn redact_params<'p>(whole: &'p str, start: usize, names: &[String]) -> Cow<'p, str> {
    let (Some(kept), Some(query)) = (whole.get(..start), whole.get(start..)) else {
        return Cow::Borrowed(whole);
    };
    let listed = |segment: &str| -> bool {
        match segment.split_once('=') {
            Some((name, _)) => names.iter().any(|n| name_matches(name, n)),
            None => false,
        }
    };
    if !query.split(['&', ';']).any(listed) {
        return Cow::Borrowed(whole);
    }
    let mut out = String::with_capacity(whole.len());
    out.push_str(kept);
    let mut rest = query;
    loop {
        let (segment, sep, next) = match rest.find(['&', ';']) {
            Some(i) => (
                rest.get(..i).unwrap_or(""),
                rest.get(i..=i),
                rest.get(i + 1..).unwrap_or(""),
            ),
            None => (rest, None, ""),
        };
        match segment.split_once('=') {
            Some((name, _)) if listed(segment) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(segment),
        }
        match sep {
            Some(sep) => {
                out.push_str(sep);
                rest = next;
            }
            None => break,
        }
    }
    Cow::Owned(out)
}

/// Whether a raw (percent-encoded, `+` for space) parameter name equals `want`, ignoring ASCII case.
fn name_matches(raw: &str, want: &str) -> bool {
    let mut want = want.bytes();
    let raw = raw.as_bytes();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let decoded = match b {
            b'%' => match (
                raw.get(i + 1).and_then(|h| hex(*h)),
                raw.get(i + 2).and_then(|l| hex(*l)),
            ) {
                (Some(h), Some(l)) => {
                    i += 2;
                    h << 4 | l
                }
                _ => b'%',
            },
            b'+' => b' ',
            other => other,
        };
        i += 1;
        match want.next() {
            Some(w) if w.eq_ignore_ascii_case(&decoded) => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn names() -> Vec<String> {
        vec!["token".into(), "email".into(), "api key".into()]
    }

    #[test]
    fn redaction_table() {
        let cases = [
            ("/a", "/a"),
            ("/a?", "/a?"),
            ("/a?x=1", "/a?x=1"),
            ("/a?token=s3cret", "/a?token=REDACTED"),
            ("/a?x=1&token=s3cret&y=2", "/a?x=1&token=REDACTED&y=2"),
            ("/a?token=1&token=2", "/a?token=REDACTED&token=REDACTED"),
            ("/a?email=a%40b.c;x=1", "/a?email=REDACTED;x=1"),
            ("/a?x=1;token=s", "/a?x=1;token=REDACTED"),
            ("/a?TOKEN=s", "/a?TOKEN=REDACTED"),
            ("/a?t%6Fken=s", "/a?t%6Fken=REDACTED"),
            ("/a?%74%6F%6B%65%6E=s", "/a?%74%6F%6B%65%6E=REDACTED"),
            ("/a?api+key=s", "/a?api+key=REDACTED"),
            ("/a?api%20key=s", "/a?api%20key=REDACTED"),
            ("/a?token", "/a?token"),
            ("/a?token=", "/a?token=REDACTED"),
            ("/a?tokens=s", "/a?tokens=s"),
            ("/a?xtoken=s", "/a?xtoken=s"),
            ("/a?tok=s", "/a?tok=s"),
            ("/a?token=a=b&x", "/a?token=REDACTED&x"),
            ("/a?token=s#frag", "/a?token=REDACTED"),
            ("/a?x=%&token=%zz", "/a?x=%&token=REDACTED"),
            ("/a?&&token=s&&", "/a?&&token=REDACTED&&"),
            ("/token=s", "/token=s"),
            ("/p?q=1?token=s", "/p?q=1?token=s"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_query(input, &names()), want, "{input}");
        }
    }

    #[test]
    fn url_redaction_table() {
        let cases = [
            ("https://x/", "https://x/"),
            ("https://x/?token=s", "https://x/?token=REDACTED"),
            ("https://x/?token=s#frag", "https://x/?token=REDACTED#frag"),
            ("https://x/?x=1#token=s", "https://x/?x=1#token=REDACTED"),
            ("https://x/#a?token=s", "https://x/#a?token=REDACTED"),
            (
                "https://app/#/reset?token=abc&x=1",
                "https://app/#/reset?token=REDACTED&x=1",
            ),
            (
                "https://app/p?next=/x#frag?token=abc",
                "https://app/p?next=/x#frag?token=REDACTED",
            ),
            ("https://x/#token=s&b", "https://x/#token=REDACTED&b"),
            ("https://x/?a=1#b=2", "https://x/?a=1#b=2"),
            ("https://x/?a=1#", "https://x/?a=1#"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input, &names()), want, "{input}");
        }
        assert!(matches!(
            redact_url("https://x/?a=1#b", &names()),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            redact_url("https://x/?token=1", &[]),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        assert!(matches!(redact_query("/a?x=1", &names()), Cow::Borrowed(_)));
        assert!(matches!(redact_query("/a?token=1", &[]), Cow::Borrowed(_)));
        assert!(matches!(
            redact_query("/a?token=1", &names()),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn name_decoding() {
        assert!(name_matches("t%6fken", "token"));
        assert!(!name_matches("t%6", "t\u{6}"));
        assert!(name_matches("%", "%"));
        assert!(!name_matches("token", "tokens"));
        assert!(!name_matches("tokens", "token"));
        assert!(!name_matches("", "token"));
    }
}
