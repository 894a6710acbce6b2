//! This parser against the `sfv` crate (RFC 8941 mode), on one input: what the differential tests
//! (sfv/differential.rs) and the `sfv` fuzz target (src/fuzz_props/sfv.rs) both check. Both accept and
//! refuse the same inputs and write what they accept as the same canonical text, but for one intended
//! difference, [`Difference::RepeatedKey`].

use super::*;
use sfv::FieldType as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dictionary,
    List,
    Item,
}

/// Where edgeward departs from RFC 8941 (and the `sfv` crate) on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Difference {
    /// A key given twice in one dictionary or in one parameter list. RFC 8941 keeps the last value (at
    /// the first key's position); edgeward refuses the field: a parameter at parse time, a dictionary
    /// key through [`has_duplicate_keys`], which every caller applies. In signature metadata an
    /// ambiguous key is an attack, not a typo.
    RepeatedKey,
}

/// What edgeward accepts, as its canonical text.
pub(crate) fn edgeward(kind: Kind, input: &str) -> Option<String> {
    let mut out = String::new();
    match kind {
        Kind::Dictionary => {
            let d = parse_dictionary(input).ok()?;
            if has_duplicate_keys(&d) {
                return None;
            }
            write_dictionary(&mut out, &d);
        }
        Kind::List => write_list(&mut out, &parse_list(input).ok()?),
        Kind::Item => write_item(&mut out, &parse_item(input).ok()?),
    }
    Some(out)
}

/// edgeward's parser under RFC 8941's rule for repeated keys (the last value wins): the canonical text
/// of what it accepts, and whether a key was repeated.
fn edgeward_rfc8941(kind: Kind, input: &str) -> (Option<String>, bool) {
    let mut p = Parser::new(trim_sp(input));
    p.keep_last_param = true;
    let mut out = String::new();
    let mut repeated_key = false;
    let ok = match kind {
        Kind::Dictionary => super::dictionary(&mut p).map(|d| {
            let mut keys: Vec<&str> = d.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            keys.dedup();
            repeated_key = keys.len() != d.len();
            write_dictionary(&mut out, &dedup(d));
        }),
        Kind::List => p.members(|p| p.member()).map(|l| write_list(&mut out, &l)),
        Kind::Item => whole_item(&mut p).map(|i| write_item(&mut out, &i)),
    };
    (ok.ok().map(|()| out), repeated_key || p.repeated_param)
}

/// What the `sfv` crate accepts under RFC 8941, as its canonical text.
pub(crate) fn sfv_crate(kind: Kind, input: &str) -> Option<String> {
    let parser = sfv::Parser::new(input).with_version(sfv::Version::Rfc8941);
    match kind {
        Kind::Dictionary => parser
            .parse::<sfv::Dictionary>()
            .ok()
            .map(|d| d.serialize().unwrap_or_default()),
        Kind::List => parser
            .parse::<sfv::List>()
            .ok()
            .map(|l| l.serialize().unwrap_or_default()),
        Kind::Item => parser.parse::<sfv::Item>().ok().map(|i| i.serialize()),
    }
}

/// The intended difference the input falls under, if any.
pub(crate) fn difference(kind: Kind, input: &str) -> Option<Difference> {
    edgeward_rfc8941(kind, input)
        .1
        .then_some(Difference::RepeatedKey)
}

/// Both parsers on `input`; `Err` says where they part other than by an intended difference.
pub(crate) fn compare(kind: Kind, input: &str) -> Result<(), String> {
    let theirs = sfv_crate(kind, input);
    // The same parser with RFC 8941's rule for repeated keys is the `sfv` crate, accepting, refusing and
    // writing alike.
    let (rfc8941, _) = edgeward_rfc8941(kind, input);
    if rfc8941 != theirs {
        return Err(format!(
            "{kind:?} {input:?}: RFC 8941 mode {rfc8941:?}, sfv {theirs:?}"
        ));
    }
    let ours = edgeward(kind, input);
    let expected = match difference(kind, input) {
        None => theirs,
        Some(Difference::RepeatedKey) => None,
    };
    if ours == expected {
        Ok(())
    } else {
        Err(format!(
            "{kind:?} {input:?}: {ours:?}, expected {expected:?}"
        ))
    }
}
