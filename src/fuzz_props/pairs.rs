//! The proxy-wasm header map decoder (`pairs::decode_text`) against a plain model of the layout.

use crate::pairs::decode_text;
use crate::request::Headers;

/// The layout read the obvious way: `u32 count`, `count` length pairs, then each name and value
/// followed by a NUL; bytes after the last pair are ignored. `None` when malformed.
fn model(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    let mut lens = Vec::new();
    for i in 0..count {
        let at = 4usize.checked_add(i.checked_mul(8)?)?;
        lens.push((word(at)?, word(at.checked_add(4)?)?));
    }
    let mut p = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut out = Vec::new();
    for (k, v) in lens {
        let key = bytes.get(p..p.checked_add(k)?)?;
        p += k;
        if *bytes.get(p)? != 0 {
            return None;
        }
        p += 1;
        let value = bytes.get(p..p.checked_add(v)?)?;
        p += v;
        if *bytes.get(p)? != 0 {
            return None;
        }
        p += 1;
        out.push((key, value));
    }
    Some(out)
}

/// Decodes as the plugin does: the same verdict as the model, every name and value (lossy UTF-8) in
/// order, and the delivered bytes of each value for `;bs`.
pub fn pairs(data: &[u8]) {
    let decoded = decode_text(data);
    let expected = model(data);
    let (Some(text), Some(expected)) = (&decoded, &expected) else {
        assert_eq!(
            decoded.is_some(),
            expected.is_some(),
            "decode_text and the model disagree on whether the map is well formed"
        );
        return;
    };
    let slices = text.slices();
    assert_eq!(slices.len(), expected.len(), "number of pairs");
    let headers = Headers::from_text(&slices, text.raw());
    for (i, ((name, value), (k, v))) in slices.iter().zip(expected).enumerate() {
        assert_eq!(*name, String::from_utf8_lossy(k), "name {i}");
        assert_eq!(*value, String::from_utf8_lossy(v), "value {i}");
        assert_eq!(headers.pair(i), Some((*name, *value)), "pair {i}");
    }
    // Every value of a name, as delivered (invalid UTF-8 too).
    if let Some((first, _)) = expected.first() {
        let name = String::from_utf8_lossy(first);
        // A value keeps its bytes when its name is UTF-8; under a name that is not, both are lossy.
        let want: Vec<Vec<u8>> = expected
            .iter()
            .filter(|(k, _)| String::from_utf8_lossy(k).eq_ignore_ascii_case(&name))
            .map(|(k, v)| match std::str::from_utf8(k) {
                Ok(_) => v.to_vec(),
                Err(_) => String::from_utf8_lossy(v).into_owned().into_bytes(),
            })
            .collect();
        let got: Vec<&[u8]> = headers.get_all_bytes(&name).collect();
        assert_eq!(got, want, "the bytes of {name:?}");
    }
}
