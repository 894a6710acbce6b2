//! The proxy-wasm header map serialization ("pairs"), decoded and encoded without panics.
//!
//! Layout (proxy-wasm ABI 0.2): `u32 count`, then `count` × (`u32 key_len`, `u32 value_len`), then every
//! key and value, each followed by a NUL byte. All integers little-endian.
//!
//! The SDK's own decoder (`proxy_wasm::hostcalls::get_map`) `unwrap`s `String::from_utf8` on every name
//! and value: one request header carrying an obs-text byte (0x80–0xFF, which Envoy's HTTP/1 codec
//! accepts) would trap the VM and fail every later request on that worker. This decoder keeps bytes
//! (`decode`) or converts them lossily (`decode_text`: invalid UTF-8 becomes U+FFFD, which no parser
//! of the core accepts, so such a value can only fail a check, never pass one).

use crate::request::HeaderText;

/// One decoded map: (name, value) byte slices borrowed from the serialized buffer, in order.
#[cfg(test)]
pub type RawPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    let arr: [u8; 4] = b.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(arr)).ok()
}

/// Decodes a serialized map. `None` when the buffer is malformed (truncated, lengths out of range);
/// an empty buffer is an empty map. (The plugin decodes with [`decode_text`]; the tests read bytes.)
#[cfg(test)]
pub fn decode(bytes: &[u8]) -> Option<RawPairs<'_>> {
    let mut out = Vec::new();
    for_each_pair(bytes, |k, v| out.push((k, v)))?;
    Some(out)
}

/// Calls `f` with each (name, value) of a serialized map, in order; the number of pairs, or `None` (after
/// some calls, perhaps) when the buffer is malformed.
#[cfg(test)]
fn for_each_pair<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> Option<usize> {
    for_each_span(bytes, |[k0, k1, v0, v1]| {
        if let (Some(k), Some(v)) = (bytes.get(k0..k1), bytes.get(v0..v1)) {
            f(k, v);
        }
    })
}

/// Calls `f` with the byte ranges of each name and value of a serialized map (`[name start, name
/// end, value start, value end]`, each range inside `bytes` and followed by a NUL), in order; the
/// number of pairs, or `None` (after some calls, perhaps) when the buffer is malformed.
fn for_each_span(bytes: &[u8], mut f: impl FnMut([usize; 4])) -> Option<usize> {
    if bytes.is_empty() {
        return Some(0);
    }
    let count = read_u32(bytes, 0)?;
    // Each pair needs 8 bytes of lengths and 2 NULs: bounds the work by the buffer's size.
    if count > bytes.len() / 10 {
        return None;
    }
    let mut p = 4usize.checked_add(count.checked_mul(8)?)?;
    for n in 0..count {
        let s = 4 + n * 8;
        let klen = read_u32(bytes, s)?;
        let vlen = read_u32(bytes, s + 4)?;
        // Each name and value is followed by a NUL: a buffer without them is not the host's.
        let key_end = p.checked_add(klen)?;
        let value_start = nul_after(bytes, key_end)?;
        let value_end = value_start.checked_add(vlen)?;
        let next = nul_after(bytes, value_end)?;
        f([p, key_end, value_start, value_end]);
        p = next;
    }
    Some(count)
}

/// The offset after the NUL at `at`, if there is one.
fn nul_after(bytes: &[u8], at: usize) -> Option<usize> {
    (bytes.get(at) == Some(&0)).then_some(at + 1)
}

/// Decodes a serialized map into a [`HeaderText`], invalid UTF-8 replaced by U+FFFD. (The tests'
/// and fuzz targets' form of [`decode_text_owned`].)
pub fn decode_text(bytes: &[u8]) -> Option<HeaderText> {
    decode_text_owned(bytes.to_vec())
}

/// Decodes a serialized map into a [`HeaderText`], taking the host's buffer. When the buffer is valid
/// UTF-8 once its binary header (count and lengths) is zeroed (the usual case), it becomes the text
/// itself: one pass of UTF-8 validation and one allocation (the ranges), no copy. Otherwise every
/// name and value is copied, invalid UTF-8 replaced by U+FFFD; a value that is not UTF-8 keeps its
/// bytes too (`;bs` signs them, RFC 9421 §2.1.3).
pub fn decode_text_owned(mut bytes: Vec<u8>) -> Option<HeaderText> {
    let count = read_u32(&bytes, 0).unwrap_or(0).min(bytes.len() / 10);
    let mut spans: Vec<[u32; 4]> = Vec::with_capacity(count);
    let mut fits = true;
    for_each_span(&bytes, |span| match span.map(u32::try_from) {
        [Ok(k0), Ok(k1), Ok(v0), Ok(v1)] => spans.push([k0, k1, v0, v1]),
        _ => fits = false,
    })?;
    if !fits {
        return None;
    }
    // Names and values start after the header: zeroed, it is text too (NUL is ASCII), and the text
    // is the whole buffer. Every range then starts and ends beside a NUL: on character boundaries.
    let header = 4usize
        .saturating_add(count.saturating_mul(8))
        .min(bytes.len());
    if let Some(h) = bytes.get_mut(..header) {
        h.fill(0);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Some(HeaderText::over(text, spans)),
        Err(e) => lossy(&e.into_bytes(), &spans),
    }
}

/// The copying decode of a map that is not all UTF-8 (its ranges already found).
fn lossy(bytes: &[u8], spans: &[[u32; 4]]) -> Option<HeaderText> {
    let mut out = HeaderText::with_capacity(bytes.len(), spans.len());
    for span in spans {
        let [k0, k1, v0, v1] = span.map(|x| x as usize);
        let (k, v) = (bytes.get(k0..k1)?, bytes.get(v0..v1)?);
        match (std::str::from_utf8(k), std::str::from_utf8(v)) {
            (Ok(k), Ok(v)) => out.push(k, v),
            (Ok(k), Err(_)) => out.push_bytes(k, v),
            _ => out.push(&String::from_utf8_lossy(k), &String::from_utf8_lossy(v)),
        }?;
    }
    Some(out)
}

/// How a plugin writes `adds` onto a header map one call at a time, so that the map ends as "every
/// header named like one of `adds` removed, then `adds` appended in order": `true` (replace, which
/// removes every header of that name and appends) for a name's first entry, `false` (add) for its
/// later entries, names compared case-insensitively. A second replace would drop the first value.
pub fn header_writes(adds: &[(String, String)]) -> impl Iterator<Item = (&str, &str, bool)> {
    adds.iter().enumerate().map(|(i, (k, v))| {
        let first = !adds
            .get(..i)
            .unwrap_or(&[])
            .iter()
            .any(|(p, _)| p.eq_ignore_ascii_case(k));
        (k.as_str(), v.as_str(), first)
    })
}

/// Encodes a map in the same layout (the headers of a key source fetch; the tests' stand-in for the
/// host).
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.as_ref().len()));
        out.extend_from_slice(&len(v.as_ref().len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A map serialized by hand, as Envoy's host does (the SDK's own encoder agrees: see below).
    fn envoy_bytes() -> Vec<u8> {
        let mut b = vec![2, 0, 0, 0];
        b.extend_from_slice(&[7, 0, 0, 0, 3, 0, 0, 0]);
        b.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        b.extend_from_slice(b":status\x00200\x00");
        b.extend_from_slice(b"x\x00\xff\xfe\x00");
        b
    }

    #[test]
    fn repeated_names_are_added_after_the_first_replace() {
        let adds: Vec<(String, String)> = [
            ("RateLimit", "a"),
            ("x-other", "1"),
            ("ratelimit", "b"),
            ("X-Other", "2"),
            ("strict-transport-security", "max-age=1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let got: Vec<(&str, &str, bool)> = header_writes(&adds).collect();
        assert_eq!(
            got,
            [
                ("RateLimit", "a", true),
                ("x-other", "1", true),
                ("ratelimit", "b", false),
                ("X-Other", "2", false),
                ("strict-transport-security", "max-age=1", true),
            ]
        );
        assert_eq!(header_writes(&[]).count(), 0);
    }

    #[test]
    fn decodes_what_the_host_sends() {
        let bytes = envoy_bytes();
        let pairs = decode(&bytes).unwrap();
        assert_eq!(
            pairs,
            vec![
                (&b":status"[..], &b"200"[..]),
                (&b"x"[..], &b"\xff\xfe"[..])
            ]
        );
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters_not_a_panic() {
        let text = decode_text(&envoy_bytes()).unwrap();
        let slices = text.slices();
        let h = crate::request::Headers::from_slices(&slices);
        assert_eq!(h.len(), 2);
        assert_eq!(h.pair(0), Some((":status", "200")));
        assert_eq!(h.pair(1), Some(("x", "\u{fffd}\u{fffd}")));
        assert_eq!(h.get("x"), Some("\u{fffd}\u{fffd}"));
        assert_eq!(h.pair(2), None);
        assert_eq!(decode_text(&[]).map(|t| t.slices().len()), Some(0));
    }

    /// A map that is UTF-8 becomes text in place (the host's buffer, header zeroed), and reads exactly
    /// as the copying decode of the same ranges; one that is not takes the copying decode.
    #[test]
    fn the_hosts_buffer_becomes_the_text_and_reads_like_a_copy() {
        let pairs = [(":method", "POST"), ("é", "ü"), ("x-empty", ""), ("", "v")];
        let bytes = encode(&pairs);
        let names_and_values: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut spans = Vec::new();
        for_each_span(&bytes, |s| spans.push(s.map(|x| x as u32))).unwrap();
        let in_place = decode_text_owned(bytes.clone()).unwrap();
        let copied = lossy(&bytes, &spans).unwrap();
        assert_eq!(in_place.slices(), copied.slices());
        assert_eq!(in_place.text_len(), bytes.len(), "decoded in place");
        assert_eq!(copied.text_len(), names_and_values);
        assert_eq!(in_place.slices(), pairs.to_vec());
        assert_eq!(in_place.byte_len(), names_and_values);
        assert_eq!(copied.byte_len(), names_and_values);
        // A buffer whose lengths are not UTF-8 (a 200-byte value: 0xc8) still decodes in place.
        let long = "v".repeat(200);
        let long_map = encode(&[("x-long", long.as_str())]);
        let text = decode_text_owned(long_map.clone()).unwrap();
        assert_eq!(text.slices(), [("x-long", long.as_str())]);
        assert_eq!(text.text_len(), long_map.len(), "decoded in place");
        // Bytes after the last pair that are not UTF-8 take the copying decode, same pairs.
        let mut trailing = encode(&pairs);
        trailing.extend_from_slice(b"\xff");
        let copied = decode_text_owned(trailing).unwrap();
        assert_eq!(copied.slices(), in_place.slices());
        assert_eq!(copied.text_len(), names_and_values, "copied");
    }

    /// The one-string form answers every lookup as the pairs it was decoded from.
    #[test]
    fn header_text_reads_like_the_pairs() {
        let pairs: Vec<(String, String)> = [
            (":method", "GET"),
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
            ("accept", ""),
            ("X-Forwarded-For", "192.0.2.1"),
            ("", "empty name"),
            ("é", "ü"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text = decode_text(&encode(&pairs)).unwrap();
        let slices = text.slices();
        let b = crate::request::Headers::new(&pairs);
        let a = crate::request::Headers::from_slices(&slices);
        assert_eq!(a.len(), b.len());
        assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
        assert_eq!(
            a.iter().rev().collect::<Vec<_>>(),
            b.iter().rev().collect::<Vec<_>>()
        );
        for i in 0..=pairs.len() {
            assert_eq!(a.pair(i), b.pair(i), "{i}");
        }
        for name in ["x-forwarded-for", "accept", ":method", "", "é", "absent"] {
            assert_eq!(a.get(name), b.get(name), "{name}");
            assert_eq!(a.count(name), b.count(name), "{name}");
            assert_eq!(
                a.get_all(name).collect::<Vec<_>>(),
                b.get_all(name).collect::<Vec<_>>(),
                "{name}"
            );
        }
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(text.position("X-Forwarded-For"), Some(3));
        assert_eq!(text.position(":method"), Some(0));
        assert_eq!(text.position("absent"), None);
        assert!(!format!("{text:?}").contains("192.0.2.1"));
    }

    #[test]
    fn encode_round_trips_bytes() {
        let bytes = envoy_bytes();
        let pairs = decode(&bytes).unwrap();
        assert_eq!(encode(&pairs), bytes);
        assert_eq!(decode(&encode::<&str, &str>(&[])).unwrap(), vec![]);
        assert_eq!(decode(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_buffers_are_refused() {
        let bytes = envoy_bytes();
        for cut in 1..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "truncated at {cut}");
            assert!(decode_text(&bytes[..cut]).is_none(), "truncated at {cut}");
        }
        // A separator that is not NUL.
        let mut wrong = bytes.clone();
        let at = 4 + 16 + ":status".len();
        assert_eq!(wrong[at], 0);
        wrong[at] = b'-';
        assert_eq!(decode(&wrong), None);
        assert!(decode_text(&wrong).is_none());
        // A count far beyond the buffer, and lengths that overflow.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0x7f]), None);
        let mut huge = vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(decode(&huge), None);
    }
}
