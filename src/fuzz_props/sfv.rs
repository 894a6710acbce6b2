//! Structured fields (RFC 8941): Dictionaries, Lists and Items with every parameter form, against the
//! `sfv` crate, and the canonical text read back as itself.

use crate::signature::sfv::parse_params;
use crate::signature::sfv::reference::{compare, edgeward, Kind};

/// The first byte picks the type; the rest is the field value (as the plugin sees it: lossy UTF-8).
pub fn sfv(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let kind = match pick % 3 {
        0 => Kind::Dictionary,
        1 => Kind::List,
        _ => Kind::Item,
    };
    let input = String::from_utf8_lossy(rest);
    if let Err(e) = compare(kind, &input) {
        panic_with(&e);
    }
    if let Some(canonical) = edgeward(kind, &input) {
        assert_eq!(
            edgeward(kind, &canonical).as_deref(),
            Some(canonical.as_str()),
            "the canonical text of {input:?} does not read back as itself"
        );
    }
    let _ = parse_params(&input);
}

/// A property failed: the message is the finding.
#[allow(clippy::panic)]
pub(super) fn panic_with(message: &str) -> ! {
    panic!("{message}")
}
