//! Query redaction, private by default: every query value is logged as `REDACTED` unless its parameter's
//! name is on the allow-list (`keep_query`). Names keep their spelling; only values go.

use std::borrow::Cow;

/// What a redacted query value is replaced with.
pub const REDACTED: &str = "REDACTED";

/// Which query values are logged as sent: the allow-list of normalized names (see [`normalize_name`]), or
/// every one (`"*"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryRule {
    keep: Vec<String>,
    keep_all: bool,
}

impl QueryRule {
    /// Every value redacted.
    pub fn redact_all() -> QueryRule {
        QueryRule::default()
    }

    /// Keeps the values of `names` (normalized here); `"*"` keeps every value.
    pub fn keeping<'n>(names: impl IntoIterator<Item = &'n str>) -> QueryRule {
        let mut rule = QueryRule::default();
        for n in names {
            if n == "*" {
                rule.keep_all = true;
            } else {
                let n = normalize_name(n);
                if !rule.keep.contains(&n) {
                    rule.keep.push(n);
                }
            }
        }
        rule
    }

    /// Whether a query parameter (a raw `name=value` or bare segment, as sent) keeps its value.
    ///
    /// Compares the name as [`normalize_name`] would write it, decoded into a stack buffer: no
    /// allocation per parameter. A name that does not fit, or does not decode to UTF-8, takes
    /// `normalize_name` itself.
    fn keeps(&self, raw_name: &str) -> bool {
        if self.keep_all {
            return true;
        }
        if self.keep.is_empty() {
            return false;
        }
        let mut buf = [0u8; 128];
        let mut len = 0;
        for b in decoded_name(raw_name) {
            let Some(slot) = buf.get_mut(len) else {
                return self.keep.contains(&normalize_name(raw_name));
            };
            *slot = b;
            len += 1;
        }
        match std::str::from_utf8(buf.get(..len).unwrap_or_default()) {
            Ok(n) => {
                let n = n.trim();
                self.keep.iter().any(|k| k == n)
            }
            Err(_) => self.keep.contains(&normalize_name(raw_name)),
        }
    }
}

/// A parameter name as compared with the allow-list: percent-decoded (`+` is a space), cut at the first
/// `[` (`token[]`, `token%5B0%5D` and `token` are one parameter to PHP and Rails), surrounding whitespace
/// trimmed and ASCII-lowercased. Bytes that do not decode to UTF-8 are replaced with U+FFFD, so they match
/// only an allow-list entry written with U+FFFD.
pub fn normalize_name(raw: &str) -> String {
    let out: Vec<u8> = decoded_name(raw).collect();
    String::from_utf8_lossy(&out).trim().to_string()
}

/// The bytes of [`normalize_name`] before the UTF-8 check and the trim: percent-decoded, `+` as a
/// space, up to the first `[`, ASCII-lowercased. Fused: nothing after the `[`.
fn decoded_name(raw: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = raw.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        let decoded = match b {
            b'%' => match (
                bytes.get(i + 1).and_then(|h| hex(*h)),
                bytes.get(i + 2).and_then(|l| hex(*l)),
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
        (decoded != b'[').then(|| decoded.to_ascii_lowercase())
    })
    .fuse()
}

/// `path` with the query's values redacted under `rule`; both `&` and `;` separate parameters (some
/// servers accept `;`), and a segment without `=` counts as a value (a bare token in a query is as
/// likely a secret as not). Borrows when nothing changes.
pub fn redact_query<'p>(path: &'p str, rule: &QueryRule) -> Cow<'p, str> {
    match path.find('?') {
        Some(q) => redact_params(path, q + 1, rule),
        None => Cow::Borrowed(path),
    }
}

/// [`redact_query`] for a URL in a header value (`Referer`): the query is what lies between the first `?`
/// and the first `#`, and the fragment's pairs (after the fragment's own `?`, if it has one) are redacted
/// the same way (single-page apps carry tokens there). Envoy joins repeated header lines with `,`: each
/// URL of such a list (a `,` followed by `scheme://`) is redacted on its own, so a second URL never reads
/// as part of the first's query. Borrows when nothing changes.
pub fn redact_url<'u>(value: &'u str, rule: &QueryRule) -> Cow<'u, str> {
    let starts = url_starts(value);
    if starts.len() <= 1 {
        return redact_one_url(value, rule);
    }
    let mut out = String::with_capacity(value.len());
    let mut changed = false;
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(value.len(), |&next| next);
        let Some(piece) = value.get(start..end) else {
            continue;
        };
        // The separator (`,` and spaces) stays with the piece before it.
        let trimmed = piece.trim_end_matches([',', ' ', '\t']);
        let sep = piece.get(trimmed.len()..).unwrap_or("");
        let r = redact_one_url(trimmed, rule);
        changed |= matches!(r, Cow::Owned(_));
        out.push_str(&r);
        out.push_str(sep);
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(value)
    }
}

/// Where each URL of a comma-joined list begins: 0, then after every `,` (and optional spaces) that is
/// followed by `scheme://`.
fn url_starts(value: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let bytes = value.as_bytes();
    for (i, _) in value.match_indices(',') {
        let mut j = i + 1;
        while matches!(bytes.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if value.get(j..).is_some_and(starts_with_scheme) {
            starts.push(j);
        }
    }
    starts
}

/// RFC 3986 `scheme "://"`.
fn starts_with_scheme(s: &str) -> bool {
    let Some(colon) = s.find("://") else {
        return false;
    };
    let scheme = s.get(..colon).unwrap_or("");
    scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn redact_one_url<'u>(url: &'u str, rule: &QueryRule) -> Cow<'u, str> {
    let Some((main, fragment)) = url.split_once('#') else {
        return redact_query(url, rule);
    };
    let main_r = redact_query(main, rule);
    // A route-style fragment (`#/reset?token=…`) has its pairs after its own `?`; any other fragment is
    // taken as pairs from its start.
    let start = fragment.find('?').map_or(0, |q| q + 1);
    let fragment_r = redact_params(fragment, start, rule);
    if matches!((&main_r, &fragment_r), (Cow::Borrowed(_), Cow::Borrowed(_))) {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(&main_r);
    out.push('#');
    out.push_str(&fragment_r);
    Cow::Owned(out)
}

/// What a segment becomes: `None` when it is logged as sent.
fn redacted_segment<'s>(segment: &'s str, rule: &QueryRule) -> Option<(&'s str, bool)> {
    if segment.is_empty() {
        return None;
    }
    match segment.split_once('=') {
        Some((name, _)) if !rule.keeps(name) => Some((name, true)),
        None if !rule.keeps(segment) => Some(("", false)),
        _ => None,
    }
}

/// `whole` with the values of `whole[start..]` (`&`- or `;`-separated) redacted under `rule`.
fn redact_params<'p>(whole: &'p str, start: usize, rule: &QueryRule) -> Cow<'p, str> {
    let (Some(kept), Some(query)) = (whole.get(..start), whole.get(start..)) else {
        return Cow::Borrowed(whole);
    };
    if !query
        .split(['&', ';'])
        .any(|s| redacted_segment(s, rule).is_some())
    {
        return Cow::Borrowed(whole);
    }
    // Room for a few values shorter than `REDACTED` without growing.
    let mut out = String::with_capacity(whole.len() + 4 * REDACTED.len());
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
        match redacted_segment(segment, rule) {
            Some((name, true)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            Some((_, false)) => out.push_str(REDACTED),
            None => out.push_str(segment),
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

    fn keep() -> QueryRule {
        QueryRule::keeping(["page", "Sort", "api key"])
    }

    #[test]
    fn everything_is_redacted_by_default() {
        let all = QueryRule::redact_all();
        let cases = [
            ("/a", "/a"),
            ("/a?", "/a?"),
            ("/a?x=1", "/a?x=REDACTED"),
            ("/a?token=s3cret&y=2", "/a?token=REDACTED&y=REDACTED"),
            ("/a?T0K3N", "/a?REDACTED"),
            ("/a?&&x=1&&", "/a?&&x=REDACTED&&"),
            ("/token=s", "/token=s"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_query(input, &all), want, "{input}");
        }
    }

    #[test]
    fn allow_listed_names_keep_their_values() {
        let cases = [
            ("/a?page=2", "/a?page=2"),
            ("/a?PAGE=2&token=s", "/a?PAGE=2&token=REDACTED"),
            ("/a?sort=asc;token=s", "/a?sort=asc;token=REDACTED"),
            ("/a?pa%67e=2", "/a?pa%67e=2"),
            ("/a?page[]=2&page%5B0%5D=3", "/a?page[]=2&page%5B0%5D=3"),
            ("/a?api+key=k&api%20key=k", "/a?api+key=k&api%20key=k"),
            ("/a?pages=2", "/a?pages=REDACTED"),
            ("/a?xpage=2", "/a?xpage=REDACTED"),
            ("/a?page", "/a?page"),
            ("/a?page=a=b&x", "/a?page=a=b&REDACTED"),
            ("/a?x=%&page=%zz", "/a?x=REDACTED&page=%zz"),
            ("/p?q=1?token=s", "/p?q=REDACTED"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_query(input, &keep()), want, "{input}");
        }
    }

    /// The allocation-free comparison in `keeps` agrees with comparing `normalize_name`'s output, also
    /// where it falls back to it: names longer than its buffer, and bytes that are not UTF-8 (which
    /// `normalize_name` replaces, so a kept name written with U+FFFD is listed too).
    #[test]
    fn keeps_agrees_with_normalize_name() {
        let long = "a".repeat(127);
        let longer = "a".repeat(128);
        let rule = QueryRule::keeping([
            "page",
            "tok en",
            "caf\u{e9}",
            "\u{fffd}x",
            long.as_str(),
            longer.as_str(),
        ]);
        let names = [
            "page",
            "PAGE",
            "pa%67e",
            "page[]",
            " page ",
            "page%20",
            "pages",
            "tok+en",
            "tok%20en",
            "TOK%20EN[1]",
            "caf%C3%A9",
            "caf%c3%a9",
            "CAF%C3%89",
            "%FFx",
            "%ff%20x",
            "x",
            "",
            "%",
            "%zz",
            "[",
            "+page+",
        ];
        let mut cases: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        for n in [126, 127, 128, 129, 200] {
            cases.push("a".repeat(n));
            cases.push("A".repeat(n));
            cases.push(format!("{} ", "a".repeat(n)));
            cases.push(format!("%61{}", "a".repeat(n.saturating_sub(1))));
        }
        let mut kept = 0;
        for raw in &cases {
            let expected = rule.keep.contains(&normalize_name(raw));
            assert_eq!(rule.keeps(raw), expected, "{raw:?}");
            kept += usize::from(expected);
        }
        // Both answers occur, on each side of the buffer's size.
        assert!(
            kept >= 10 && kept < cases.len(),
            "{kept} of {}",
            cases.len()
        );
        assert!(rule.keeps(&"A".repeat(128)) && rule.keeps(&"a".repeat(127)));
        assert!(!rule.keeps(&"a".repeat(129)) && rule.keeps("%FFx"));
        assert!(!QueryRule::redact_all().keeps("page"));
        assert!(QueryRule::keeping(["*"]).keeps("anything"));
    }

    /// The attack run's spellings of `token`: none of them keeps its value, and none of them escapes a
    /// rule that keeps `token` either (they are one parameter to the applications that read them).
    #[test]
    fn decoded_and_normalized_names() {
        for raw in [
            "token[]",
            "token%5B%5D",
            "token%20",
            "TOKEN",
            "t%6Fken",
            " token",
            "token[x]",
        ] {
            assert_eq!(normalize_name(raw), "token", "{raw}");
            let path = format!("/a?{raw}=S3CR3T");
            let redacted = redact_query(&path, &QueryRule::redact_all());
            assert!(!redacted.contains("S3CR3T"), "{redacted}");
            assert_eq!(
                redact_query(&path, &QueryRule::keeping(["token"])),
                path.as_str()
            );
        }
        assert_eq!(normalize_name("%"), "%");
        assert_eq!(normalize_name("%zz"), "%zz");
        assert_eq!(normalize_name(""), "");
    }

    #[test]
    fn star_keeps_everything() {
        let all = QueryRule::keeping(["*"]);
        assert!(matches!(
            redact_query("/a?token=1&x", &all),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn url_redaction_table() {
        let cases = [
            ("https://x/", "https://x/"),
            ("https://x/?token=s", "https://x/?token=REDACTED"),
            (
                "https://x/?token=s#frag",
                "https://x/?token=REDACTED#REDACTED",
            ),
            (
                "https://x/?page=1#token=s",
                "https://x/?page=1#token=REDACTED",
            ),
            (
                "https://app/#/reset?token=abc&page=1",
                "https://app/#/reset?token=REDACTED&page=1",
            ),
            ("https://x/?page=1#", "https://x/?page=1#"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input, &keep()), want, "{input}");
        }
        assert!(matches!(
            redact_url("https://x/?page=1#", &keep()),
            Cow::Borrowed(_)
        ));
    }

    /// Envoy joins two `Referer` lines with `,`: the second URL's query is redacted on its own, also when
    /// the first URL's last parameter is kept.
    #[test]
    fn comma_joined_urls_are_redacted_one_by_one() {
        let cases = [
            (
                "https://a/?page=1,https://b/?token=T0K3N_A",
                "https://a/?page=1,https://b/?token=REDACTED",
            ),
            (
                "https://a/?page=1, https://b/p?x=1&page=2",
                "https://a/?page=1, https://b/p?x=REDACTED&page=2",
            ),
            // A comma inside a value is not a new URL.
            ("https://a/?page=1,2", "https://a/?page=1,2"),
            ("https://a/?q=1,2", "https://a/?q=REDACTED"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input, &keep()), want, "{input}");
        }
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        assert!(matches!(
            redact_query("/a?page=1", &keep()),
            Cow::Borrowed(_)
        ));
        assert!(matches!(redact_query("/a", &keep()), Cow::Borrowed(_)));
        assert!(matches!(redact_query("/a?token=1", &keep()), Cow::Owned(_)));
    }
}
