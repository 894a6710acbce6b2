//! RFC 8941 structured field values: the parser and serializer RFC 9421 and RFC 9530 need.
//!
//! Deliberately stricter than RFC 8941 in one place: a repeated parameter key is a parse error (the RFC
//! keeps the last), because in signature metadata an ambiguous parameter is an attack, not a typo.
//! Dictionaries keep repeated keys in order so that callers can reject them (`has_duplicate_keys`); the
//! RFC's "last value wins, first position kept" rule (`dedup`) is kept for the tests only.
//!
//! The parsed values borrow from the field's text: keys, and strings without escapes, and tokens are
//! slices of it (no allocation per value on the request path); [`Item::into_owned`] and friends
//! detach them where a value must outlive the text (configuration).
//!
//! `sfv/differential.rs` holds the parser to the `sfv` crate: the same verdicts and canonical text on
//! every input, this one difference named.

use std::borrow::Cow;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// RFC 8941 §4.2.7: parsers should accept missing padding and non-zero pad bits, but never bad padding.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A bare item (text borrowed from the parsed field where it can be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BareItem<'a> {
    Integer(i64),
    /// A decimal, in thousandths (RFC 8941 decimals have at most three fractional digits).
    Decimal(i64),
    String(Cow<'a, str>),
    Token(Cow<'a, str>),
    ByteSeq(Vec<u8>),
    Boolean(bool),
}

/// Parameters, in order, keys unique.
pub type Params<'a> = Vec<(Cow<'a, str>, BareItem<'a>)>;

/// An item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    pub bare: BareItem<'a>,
    pub params: Params<'a>,
}

/// A list or dictionary member: an item or an inner list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member<'a> {
    Item(Item<'a>),
    InnerList(Vec<Item<'a>>, Params<'a>),
}

/// A dictionary as parsed: members in order, repeated keys kept (components refuse them).
pub type Dictionary<'a> = Vec<(Cow<'a, str>, Member<'a>)>;

impl BareItem<'_> {
    /// The same value, owning its text.
    pub fn into_owned(self) -> BareItem<'static> {
        match self {
            BareItem::Integer(i) => BareItem::Integer(i),
            BareItem::Decimal(d) => BareItem::Decimal(d),
            BareItem::String(s) => BareItem::String(Cow::Owned(s.into_owned())),
            BareItem::Token(t) => BareItem::Token(Cow::Owned(t.into_owned())),
            BareItem::ByteSeq(b) => BareItem::ByteSeq(b),
            BareItem::Boolean(b) => BareItem::Boolean(b),
        }
    }
}

/// Parameters owning their text.
pub fn params_into_owned(params: Params<'_>) -> Params<'static> {
    params
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
        .collect()
}

impl Item<'_> {
    /// The same item, owning its text.
    pub fn into_owned(self) -> Item<'static> {
        Item {
            bare: self.bare.into_owned(),
            params: params_into_owned(self.params),
        }
    }
}

/// A parse failure; deliberately without detail (callers map it to a deny or a config error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError;

type PResult<T> = Result<T, ParseError>;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// RFC 8941's rule for a parameter key given twice (the last value wins, at the first position)
    /// in place of refusing it: only the differential tests ask for it.
    keep_last_param: bool,
    /// A parameter key was given twice (and `keep_last_param` kept the last).
    repeated_param: bool,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            s: input.as_bytes(),
            pos: 0,
            keep_last_param: false,
            repeated_param: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn slice_from(&self, start: usize) -> PResult<&'a str> {
        let b = self.s.get(start..self.pos).ok_or(ParseError)?;
        std::str::from_utf8(b).map_err(|_| ParseError)
    }

    fn key(&mut self) -> PResult<Cow<'a, str>> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.pos += 1,
            _ => return Err(ParseError),
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'.' | b'*')
            {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(Cow::Borrowed(self.slice_from(start)?))
    }

    fn params(&mut self) -> PResult<Params<'a>> {
        let mut params: Params<'a> = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                BareItem::Boolean(true)
            };
            match params.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) if self.keep_last_param => {
                    self.repeated_param = true;
                    slot.1 = value;
                }
                Some(_) => return Err(ParseError),
                None => params.push((key, value)),
            }
        }
        Ok(params)
    }

    fn item(&mut self) -> PResult<Item<'a>> {
        let bare = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    fn member(&mut self) -> PResult<Member<'a>> {
        if self.peek() == Some(b'(') {
            self.inner_list()
        } else {
            Ok(Member::Item(self.item()?))
        }
    }

    fn inner_list(&mut self) -> PResult<Member<'a>> {
        if !self.eat(b'(') {
            return Err(ParseError);
        }
        // Room for a usual covered-components list at once (it would otherwise grow 4 → 8).
        let mut items = Vec::with_capacity(8);
        loop {
            self.skip_sp();
            if self.eat(b')') {
                let params = self.params()?;
                return Ok(Member::InnerList(items, params));
            }
            items.push(self.item()?);
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(ParseError),
            }
        }
    }

    fn bare_item(&mut self) -> PResult<BareItem<'a>> {
        match self.peek() {
            Some(b'-') => self.number(),
            Some(c) if c.is_ascii_digit() => self.number(),
            Some(b'"') => self.string(),
            Some(b'*') => self.token(),
            Some(c) if c.is_ascii_alphabetic() => self.token(),
            Some(b':') => self.byte_seq(),
            Some(b'?') => self.boolean(),
            _ => Err(ParseError),
        }
    }

    fn number(&mut self) -> PResult<BareItem<'a>> {
        let negative = self.eat(b'-');
        let mut int: i64 = 0;
        let mut int_digits = 0usize;
        let mut frac: i64 = 0;
        let mut frac_digits = 0usize;
        let mut decimal = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.pos += 1;
                let d = i64::from(c - b'0');
                if decimal {
                    frac_digits += 1;
                    if frac_digits > 3 {
                        return Err(ParseError);
                    }
                    frac = frac * 10 + d;
                } else {
                    int_digits += 1;
                    if int_digits > 15 {
                        return Err(ParseError);
                    }
                    int = int * 10 + d;
                }
            } else if c == b'.' && !decimal {
                if int_digits == 0 || int_digits > 12 {
                    return Err(ParseError);
                }
                self.pos += 1;
                decimal = true;
            } else {
                break;
            }
        }
        if int_digits == 0 || (decimal && frac_digits == 0) {
            return Err(ParseError);
        }
        let sign = if negative { -1 } else { 1 };
        if decimal {
            let scale = match frac_digits {
                1 => 100,
                2 => 10,
                _ => 1,
            };
            Ok(BareItem::Decimal(sign * (int * 1000 + frac * scale)))
        } else {
            Ok(BareItem::Integer(sign * int))
        }
    }

    fn string(&mut self) -> PResult<BareItem<'a>> {
        if !self.eat(b'"') {
            return Err(ParseError);
        }
        // Most strings have no escapes: borrowed as one slice.
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b'"' {
                let s = self.slice_from(start)?;
                self.pos += 1;
                return Ok(BareItem::String(Cow::Borrowed(s)));
            }
            if c == b'\\' || !(0x20..=0x7e).contains(&c) {
                break;
            }
            self.pos += 1;
        }
        let mut out = self.slice_from(start)?.to_string();
        loop {
            match self.bump() {
                None => return Err(ParseError),
                Some(b'\\') => match self.bump() {
                    Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                    _ => return Err(ParseError),
                },
                Some(b'"') => return Ok(BareItem::String(Cow::Owned(out))),
                Some(c) if (0x20..=0x7e).contains(&c) => out.push(char::from(c)),
                Some(_) => return Err(ParseError),
            }
        }
    }

    fn token(&mut self) -> PResult<BareItem<'a>> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => self.pos += 1,
            _ => return Err(ParseError),
        }
        while let Some(c) = self.peek() {
            if is_tchar(c) || c == b':' || c == b'/' {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(BareItem::Token(Cow::Borrowed(self.slice_from(start)?)))
    }

    fn byte_seq(&mut self) -> PResult<BareItem<'a>> {
        if !self.eat(b':') {
            return Err(ParseError);
        }
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(ParseError),
                Some(b':') => break,
                Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=') => {
                    self.pos += 1
                }
                Some(_) => return Err(ParseError),
            }
        }
        let b64 = self.slice_from(start)?;
        self.pos += 1;
        LENIENT_B64
            .decode(b64)
            .map(BareItem::ByteSeq)
            .map_err(|_| ParseError)
    }

    fn boolean(&mut self) -> PResult<BareItem<'a>> {
        if !self.eat(b'?') {
            return Err(ParseError);
        }
        match self.bump() {
            Some(b'1') => Ok(BareItem::Boolean(true)),
            Some(b'0') => Ok(BareItem::Boolean(false)),
            _ => Err(ParseError),
        }
    }

    /// The list/dictionary loop shared by both (RFC 8941 §4.2.1, §4.2.2).
    fn members<T>(&mut self, mut one: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut out = Vec::new();
        self.skip_sp();
        while !self.at_end() {
            out.push(one(self)?);
            self.skip_ows();
            if self.at_end() {
                break;
            }
            if !self.eat(b',') {
                return Err(ParseError);
            }
            self.skip_ows();
            if self.at_end() {
                return Err(ParseError);
            }
        }
        Ok(out)
    }
}

pub use crate::request::is_tchar;

fn trim_sp(input: &str) -> &str {
    input.trim_matches(' ')
}

/// Parses a dictionary field value. Repeated keys are kept (callers decide).
pub fn parse_dictionary(input: &str) -> Result<Dictionary<'_>, ParseError> {
    dictionary(&mut Parser::new(trim_sp(input)))
}

fn dictionary<'a>(p: &mut Parser<'a>) -> PResult<Dictionary<'a>> {
    p.members(|p| {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            p.member()?
        } else {
            let params = p.params()?;
            Member::Item(Item {
                bare: BareItem::Boolean(true),
                params,
            })
        };
        Ok((key, member))
    })
}

/// Parses a list field value.
pub fn parse_list(input: &str) -> Result<Vec<Member<'_>>, ParseError> {
    Parser::new(trim_sp(input)).members(|p| p.member())
}

/// Parses an item field value.
pub fn parse_item(input: &str) -> Result<Item<'_>, ParseError> {
    whole_item(&mut Parser::new(trim_sp(input)))
}

fn whole_item<'a>(p: &mut Parser<'a>) -> PResult<Item<'a>> {
    let item = p.item()?;
    p.skip_sp();
    if p.at_end() {
        Ok(item)
    } else {
        Err(ParseError)
    }
}

/// Parses a parameter list (`;a=1;b`) that must make up all of `input`.
pub fn parse_params(input: &str) -> Result<Params<'_>, ParseError> {
    let mut p = Parser::new(input);
    let params = p.params()?;
    if p.at_end() {
        Ok(params)
    } else {
        Err(ParseError)
    }
}

/// Whether a dictionary repeats a key. A client chooses the size, so the work is bounded here: up to 16
/// members the keys are compared pairwise, exactly and with no allocation (the request path: a signature
/// or digest field has one or two members). Larger dictionaries compare 64-bit FNV-1a hashes, sorted:
/// O(n log n); a collision between two different keys reads as a repeat, which only refuses the field
/// (fail closed).
pub fn has_duplicate_keys(dict: &Dictionary) -> bool {
    if dict.len() <= 16 {
        return dict
            .iter()
            .enumerate()
            .any(|(i, (k, _))| dict.iter().skip(i + 1).any(|(k2, _)| k2 == k));
    }
    let mut hashes: Vec<u64> = dict
        .iter()
        .map(|(k, _)| {
            k.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        })
        .collect();
    hashes.sort_unstable();
    hashes.windows(2).any(|w| w.first() == w.last())
}

/// RFC 8941 semantics for repeated keys: the last value wins, at the first key's position. Only the
/// tests use it: a covered field that repeats a key is refused instead (see `components::field_value`).
#[cfg(any(test, not(target_arch = "wasm32")))]
pub fn dedup(dict: Dictionary<'_>) -> Dictionary<'_> {
    let mut out: Dictionary<'_> = Vec::with_capacity(dict.len());
    for (k, v) in dict {
        match out.iter_mut().find(|(k2, _)| *k2 == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

/// Whether `s` is a valid dictionary/parameter key.
pub fn is_key(s: &str) -> bool {
    let mut p = Parser::new(s);
    p.key().is_ok() && p.at_end()
}

/// Serializes a bare item.
pub fn write_bare(out: &mut String, b: &BareItem) {
    match b {
        BareItem::Integer(i) => crate::num::push_i64(out, *i),
        BareItem::Decimal(m) => {
            if *m < 0 {
                out.push('-');
            }
            let a = m.unsigned_abs();
            out.push_str(&(a / 1000).to_string());
            out.push('.');
            let frac = format!("{:03}", a % 1000);
            let trimmed = frac.trim_end_matches('0');
            out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
        }
        BareItem::String(s) => write_string(out, s),
        BareItem::Token(t) => out.push_str(t),
        BareItem::ByteSeq(bytes) => {
            out.push(':');
            out.push_str(&STANDARD.encode(bytes));
            out.push(':');
        }
        BareItem::Boolean(v) => out.push_str(if *v { "?1" } else { "?0" }),
    }
}

/// Serializes a string item (quotes and escapes).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Serializes parameters.
pub fn write_params(out: &mut String, params: &Params) {
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if *v != BareItem::Boolean(true) {
            out.push('=');
            write_bare(out, v);
        }
    }
}

/// Serializes an item with its parameters.
pub fn write_item(out: &mut String, item: &Item) {
    write_bare(out, &item.bare);
    write_params(out, &item.params);
}

/// Serializes a member (item or inner list).
pub fn write_member(out: &mut String, m: &Member) {
    match m {
        Member::Item(item) => write_item(out, item),
        Member::InnerList(items, params) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_item(out, item);
            }
            out.push(')');
            write_params(out, params);
        }
    }
}

/// Serializes a dictionary (as parsed: repeated keys are written again).
pub fn write_dictionary(out: &mut String, dict: &Dictionary) {
    for (i, (k, m)) in dict.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        match m {
            Member::Item(Item {
                bare: BareItem::Boolean(true),
                params,
            }) => write_params(out, params),
            _ => {
                out.push('=');
                write_member(out, m);
            }
        }
    }
}

/// Serializes a list.
pub fn write_list(out: &mut String, list: &[Member]) {
    for (i, m) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_member(out, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn roundtrip_dict(s: &str) -> Option<String> {
        let d = parse_dictionary(s).ok()?;
        let mut out = String::new();
        write_dictionary(&mut out, &dedup(d));
        Some(out)
    }

    #[test]
    fn dictionaries_parse_and_serialize_canonically() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "a=1,    b=2;x=1;y=2,   c=(a   b   c)",
                Some("a=1, b=2;x=1;y=2, c=(a b c)"),
            ),
            ("a=?1, b=?0", Some("a, b=?0")),
            ("sig1=:AAEC:", Some("sig1=:AAEC:")),
            ("k=\"a\\\"b\\\\c\"", Some("k=\"a\\\"b\\\\c\"")),
            ("d=1.50, e=-0.005, f=12.0", Some("d=1.5, e=-0.005, f=12.0")),
            ("t=foo/bar:baz", Some("t=foo/bar:baz")),
            ("n=-42, z=0, s=\"plain\"", Some("n=-42, z=0, s=\"plain\"")),
            ("a=1, a=2, b=3", Some("a=2, b=3")),
            ("x=()", Some("x=()")),
            ("  a=1  ", Some("a=1")),
            ("", Some("")),
            // Failures: trailing comma, uppercase key, bad string escape, bad byte sequence, bad boolean,
            // decimal with 4 fractional digits, 16-digit integer, control character, param repeated.
            ("a=1,", None),
            ("A=1", None),
            ("a=\"\\n\"", None),
            ("a=\"unterminated", None),
            ("a=\"ends in escape\\", None),
            ("a=:@@:", None),
            ("a=?2", None),
            ("a=1.2345", None),
            ("a=1234567890123456", None),
            ("a=\"\u{1}\"", None),
            ("a=1;p=1;p=2", None),
            ("a=(1 2", None),
            ("a=(1,2)", None),
            ("a=1 b=2", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                roundtrip_dict(input).as_deref(),
                *expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn lists_and_items() {
        let l = parse_list("Foo, \"bar\";q=1, (a b);z").unwrap();
        let mut out = String::new();
        write_list(&mut out, &l);
        assert_eq!(out, "Foo, \"bar\";q=1, (a b);z");
        assert!(parse_list("a,,b").is_err());
        assert_eq!(
            parse_item("\"@method\"").unwrap().bare,
            BareItem::String("@method".into())
        );
        assert!(parse_item("1 2").is_err());
    }

    #[test]
    fn byte_sequences_lenient_padding_but_not_wrong_padding() {
        assert_eq!(
            parse_item(":AAE=:").unwrap().bare,
            BareItem::ByteSeq(vec![0, 1])
        );
        assert_eq!(
            parse_item(":AAE:").unwrap().bare,
            BareItem::ByteSeq(vec![0, 1])
        );
        // The RFC 9530 source typo: one '=' too many.
        assert!(parse_item(":RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg==:").is_err());
        assert!(parse_item(":RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:").is_ok());
    }

    #[test]
    fn duplicate_keys_detected() {
        assert!(has_duplicate_keys(
            &parse_dictionary("a=1, b=2, a=3").unwrap()
        ));
        assert!(!has_duplicate_keys(&parse_dictionary("a=1, b=2").unwrap()));
        // Many keys (a client chooses how many): distinct, then one repeat at the very end.
        let many: Vec<String> = (0..20_000).map(|i| format!("k{i}")).collect();
        let distinct = many.join(", ");
        assert!(!has_duplicate_keys(&parse_dictionary(&distinct).unwrap()));
        let repeat = format!("{distinct}, k7");
        assert!(has_duplicate_keys(&parse_dictionary(&repeat).unwrap()));
    }

    #[test]
    fn duplicate_keys_detected_on_both_sides_of_the_pairwise_bound() {
        // Up to 16 members the keys are compared pairwise, above that by sorted hashes: every size
        // across the bound, with the repeat at each position against the first, middle and last key.
        for n in 1..=20usize {
            let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            let text = keys.join(", ");
            assert!(
                !has_duplicate_keys(&parse_dictionary(&text).unwrap()),
                "{n} distinct keys"
            );
            for target in [0, n / 2, n - 1] {
                for at in 0..=n {
                    let mut repeated = keys.clone();
                    repeated.insert(at, keys[target].clone());
                    let text = repeated.join(", ");
                    assert!(
                        has_duplicate_keys(&parse_dictionary(&text).unwrap()),
                        "{repeated:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_validated() {
        assert!(is_key("sig1"));
        assert!(is_key("*x-y.z_"));
        assert!(!is_key("Sig"));
        assert!(!is_key("1a"));
        assert!(!is_key(""));
        assert!(!is_key("a b"));
    }
}

/// The `sfv` crate as the reference: agreement but for one difference by name.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod differential;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod reference;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,64}") {
            let _ = parse_dictionary(&s);
            let _ = parse_list(&s);
            let _ = parse_item(&s);
        }

        #[test]
        fn serialization_is_a_fixed_point(s in "[a-z0-9=;:\"(), ?*.-]{0,40}") {
            if let Ok(d) = parse_dictionary(&s) {
                let mut once = String::new();
                write_dictionary(&mut once, &dedup(d));
                let again = parse_dictionary(&once).map(dedup);
                prop_assert!(again.is_ok(), "reparse of {:?} failed", once);
                let mut twice = String::new();
                write_dictionary(&mut twice, &again.unwrap_or_default());
                prop_assert_eq!(once, twice);
            }
        }
    }
}
