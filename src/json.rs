//! The policy document's JSON reader (RFC 8259).
//!
//! The document is read once, at load, straight into the input types (no intermediate tree: a
//! 100,000-entry `ip_lists` list is parsed entry by entry into its tables, and wasm memory never
//! shrinks). Each input type says what it accepts in a few lines (`json_object!`, `json_choice!`); the
//! reader keeps the JSON path of the value it is on, so every error names it (`policies.p.ip.allow[1]`),
//! and no message ever quotes a value from the document: a secret written where something else belongs
//! is not echoed into Envoy's log or `edgeward check`'s output. Keys are quoted (they are names, not
//! values).
//!
//! Strict: a struct written as an array and an enum written as a one-key object are errors, a key
//! given twice is an error in every object, and `null` stands for "absent" only where a field is
//! optional.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::error::ConfigError;

pub type Result<T> = std::result::Result<T, ConfigError>;

/// Deeper nesting is refused (the input types nest seven levels), which bounds the reader's recursion.
const MAX_DEPTH: usize = 64;

/// A type read from the document.
pub trait FromJson<'a>: Sized {
    fn read(r: &mut Reader<'a>) -> Result<Self>;
}

/// Reads a whole text as one `T`; text after it (other than whitespace) is an error.
pub fn from_str<'a, T: FromJson<'a>>(text: &'a str) -> Result<T> {
    let mut r = Reader::new(text);
    let value = T::read(&mut r)?;
    r.end()?;
    Ok(value)
}

/// Tests build documents with `serde_json::json!`: this reads one through the reader, as the plugin would.
#[cfg(test)]
pub fn from_value<T: for<'a> FromJson<'a>>(v: serde_json::Value) -> Result<T> {
    from_str(&v.to_string())
}

/// What a value is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

/// A cursor over the document text that knows the JSON path of where it is.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    path: String,
    depth: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Reader {
            text,
            pos: 0,
            path: String::new(),
            depth: 0,
        }
    }

    /// An error at the current path, with where in the text the reader stopped (1-based line and
    /// column, in characters): `policies.p.ip.allow[1]: invalid type: number, expected a string at line
    /// 5 column 25`.
    #[inline(never)]
    pub fn error(&self, reason: impl std::fmt::Display) -> ConfigError {
        let before = self.text.get(..self.pos).unwrap_or(self.text);
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::new(
            self.path.clone(),
            format!("{reason} at line {line} column {column}"),
        )
    }

    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte() {
            self.pos += 1;
        }
    }

    /// The kind of the next value (whitespace skipped), or a syntax error where no value starts.
    #[inline(never)]
    pub fn kind(&mut self) -> Result<Kind> {
        self.skip_ws();
        match self.byte() {
            Some(b'n') => Ok(Kind::Null),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b'"') => Ok(Kind::String),
            Some(b'[') => Ok(Kind::Array),
            Some(b'{') => Ok(Kind::Object),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of the document")),
        }
    }

    /// `invalid type: <what the document has>, expected <expected>`, naming no value.
    #[inline(never)]
    pub fn invalid_type(&mut self, expected: &str) -> ConfigError {
        let kind = match self.kind() {
            Ok(k) => k,
            Err(e) => return e,
        };
        // A misspelt literal (`nope`, `tru`) is not a null or a boolean: say so.
        let literal = match kind {
            Kind::Null => Some("null"),
            Kind::Bool if self.byte() == Some(b't') => Some("true"),
            Kind::Bool => Some("false"),
            _ => None,
        };
        if let Some(word) = literal {
            let start = self.pos;
            if let Err(e) = self.literal(word) {
                return e;
            }
            self.pos = start;
        }
        self.error(format!(
            "invalid type: {}, expected {expected}",
            kind.name()
        ))
    }

    fn expect(&mut self, kind: Kind, expected: &str) -> Result<()> {
        if self.kind()? == kind {
            Ok(())
        } else {
            Err(self.invalid_type(expected))
        }
    }

    fn literal(&mut self, word: &str) -> Result<()> {
        let end = self.pos + word.len();
        if self.text.as_bytes().get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// The next value as a `T`.
    pub fn read<T: FromJson<'a>>(&mut self) -> Result<T> {
        T::read(self)
    }

    /// Consumes a `null` if one is next: `true` if it did.
    #[inline(never)]
    pub fn null(&mut self) -> Result<bool> {
        if self.kind()? == Kind::Null {
            self.literal("null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    #[inline(never)]
    pub fn bool(&mut self) -> Result<bool> {
        self.expect(Kind::Bool, "a boolean")?;
        if self.byte() == Some(b't') {
            self.literal("true")?;
            Ok(true)
        } else {
            self.literal("false")?;
            Ok(false)
        }
    }

    /// A non-negative integer no larger than `max`. Fractions, exponents, signs and larger numbers are
    /// refused with the accepted range (the number itself is not repeated).
    #[inline(never)]
    pub fn uint(&mut self, max: u64) -> Result<u64> {
        let expected = format!("an integer from 0 to {max}");
        self.expect(Kind::Number, &expected)?;
        let start = self.pos;
        match self.number()?.filter(|&v| v <= max) {
            Some(v) => Ok(v),
            None => {
                self.pos = start;
                Err(self.error(format!("invalid value: expected {expected}")))
            }
        }
    }

    /// Any JSON number: its value when it is a non-negative integer that fits a `u64` (written without
    /// fraction or exponent), else `None`. A malformed number is a syntax error.
    #[inline(never)]
    pub fn number(&mut self) -> Result<Option<u64>> {
        self.expect(Kind::Number, "a number")?;
        let bytes = self.text.as_bytes();
        let mut i = self.pos;
        let negative = bytes.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        // The end of a run of digits from `i`, or an error if the run is empty.
        let run = |r: &mut Self, i: usize| {
            let end = i + bytes
                .get(i..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if end == i {
                r.pos = end;
                return Err(r.error("invalid number"));
            }
            Ok(end)
        };
        let digits = i;
        let int_end = run(self, digits)?;
        if bytes.get(digits) == Some(&b'0') && int_end - digits > 1 {
            self.pos = int_end;
            return Err(self.error("invalid number"));
        }
        i = int_end;
        let mut integer = true;
        if bytes.get(i) == Some(&b'.') {
            i = run(self, i + 1)?;
            integer = false;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            i = run(self, i)?;
            integer = false;
        }
        self.pos = i;
        if !integer || negative {
            return Ok(None);
        }
        Ok(bytes
            .get(digits..int_end)
            .unwrap_or_default()
            .iter()
            .try_fold(0u64, |acc, &d| {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            }))
    }

    /// Reads past the next value, whatever it is (documents read leniently, such as a JWK Set, skip
    /// the members they do not use). Syntax errors and the depth limit still apply.
    pub fn skip(&mut self) -> Result<()> {
        match self.kind()? {
            Kind::Null => self.literal("null"),
            Kind::Bool => self.bool().map(drop),
            Kind::Number => self.number().map(drop),
            Kind::String => self.str().map(drop),
            Kind::Array => self.array(|r, _| r.skip()),
            Kind::Object => self.members(&mut |r, _| r.skip()),
        }
    }

    /// A string: borrowed from the text when it holds no escapes.
    #[inline(never)]
    pub fn str(&mut self) -> Result<Cow<'a, str>> {
        self.expect(Kind::String, "a string")?;
        let text = self.text;
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start;
        loop {
            // Skip to the next byte that ends or interrupts a plain run.
            let skip = text
                .as_bytes()
                .get(self.pos..)
                .unwrap_or_default()
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let Some(skip) = skip else {
                self.pos = text.len();
                return Err(self.error("unterminated string"));
            };
            self.pos += skip;
            match self.byte() {
                Some(b'"') => {
                    let tail = text.get(run..self.pos).unwrap_or_default();
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut s) => {
                            s.push_str(tail);
                            Cow::Owned(s)
                        }
                    });
                }
                Some(b'\\') => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(text.get(run..self.pos).unwrap_or_default());
                    self.pos += 1;
                    let c = match self.byte() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            owned.get_or_insert_with(String::new).push(c);
                            run = self.pos;
                            continue;
                        }
                        _ => return Err(self.error("invalid escape in a string")),
                    };
                    s.push(c);
                    self.pos += 1;
                    run = self.pos;
                }
                _ => return Err(self.error("control character in a string")),
            }
        }
    }

    /// After `\u`: four hex digits, and a second `\uXXXX` for a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.text.as_bytes().get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error("lone surrogate in a string"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone surrogate in a string"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone surrogate in a string")),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid escape in a string"))
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.text.as_bytes().get(self.pos..self.pos + 4);
        let value = digits.and_then(|d| {
            d.iter()
                .try_fold(0u32, |acc, &b| Some(acc * 16 + (b as char).to_digit(16)?))
        });
        match value {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => Err(self.error("invalid escape in a string")),
        }
    }

    /// One of `names`, as its index.
    #[inline(never)]
    pub fn choice(&mut self, names: &[&str]) -> Result<usize> {
        let expected = one_of(names);
        self.expect(Kind::String, &expected)?;
        let s = self.str()?;
        names
            .iter()
            .position(|n| *n == s)
            .ok_or_else(|| self.error(format!("unknown value, expected {expected}")))
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        self.pos += 1;
        Ok(())
    }

    /// After a member or element: `,` (then `true`: another follows) or the closing byte.
    fn next_member(&mut self, close: u8, what: &str) -> Result<bool> {
        self.skip_ws();
        match self.byte() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                if self.byte() == Some(close) {
                    return Err(self.error("trailing comma"));
                }
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            None => Err(self.error("unexpected end of the document")),
            _ => Err(self.error(what)),
        }
    }

    /// An array: `f` reads each element (the path names it `[i]`).
    pub fn array(&mut self, mut f: impl FnMut(&mut Self, usize) -> Result<()>) -> Result<()> {
        self.array_dyn(&mut f)
    }

    // One copy of the loop for every element type: the configuration is read once, so a call through
    // `dyn` costs nothing that matters, and the .wasm (compiled for speed) stays small.
    #[inline(never)]
    fn array_dyn(&mut self, f: &mut dyn FnMut(&mut Self, usize) -> Result<()>) -> Result<()> {
        self.expect(Kind::Array, "an array")?;
        self.enter()?;
        self.skip_ws();
        if self.byte() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut i = 0;
        loop {
            let len = self.path.len();
            self.path.push('[');
            crate::num::push_u64(&mut self.path, i as u64);
            self.path.push(']');
            f(self, i)?;
            self.path.truncate(len);
            if !self.next_member(b']', "expected `,` or `]`")? {
                return Ok(());
            }
            i += 1;
        }
    }

    /// An object with keys the user chooses: `f` reads the value of each key (the path names it).
    pub fn map(&mut self, mut f: impl FnMut(&mut Self, &str) -> Result<()>) -> Result<()> {
        self.members(&mut |r, key| f(r, &key))
    }

    /// An object with the keys `fields`: `f` reads the value of the field with that index. Unknown and
    /// repeated fields are errors.
    pub fn object(
        &mut self,
        fields: &[&str],
        mut f: impl FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<()> {
        let mut seen = 0u64;
        self.members(&mut |r, key| {
            let Some(i) = fields.iter().position(|n| *n == key) else {
                let mut name = String::new();
                push_key(&mut name, &key);
                let expected = one_of(fields);
                return Err(r.error(format!("unknown field `{name}`, expected {expected}")));
            };
            let bit = 1u64 << (i % 64);
            if seen & bit != 0 {
                return Err(r.error(format!("duplicate field `{key}`")));
            }
            seen |= bit;
            f(r, i)
        })
    }

    #[inline(never)]
    fn members(&mut self, f: &mut dyn FnMut(&mut Self, Cow<'a, str>) -> Result<()>) -> Result<()> {
        self.expect(Kind::Object, "an object")?;
        self.enter()?;
        self.skip_ws();
        if self.byte() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.byte() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            let key = self.str()?;
            self.skip_ws();
            if self.byte() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            let len = self.path.len();
            if len > 0 {
                self.path.push('.');
            }
            push_key(&mut self.path, &key);
            f(self, key)?;
            self.path.truncate(len);
            if !self.next_member(b'}', "expected `,` or `}`")? {
                return Ok(());
            }
        }
    }

    /// A required field's value, or `missing field` at the object's path.
    pub fn required<T>(&self, value: Option<T>, field: &str) -> Result<T> {
        value.ok_or_else(|| self.error(format!("missing field `{field}`")))
    }

    /// The end of the document: only whitespace may follow.
    pub fn end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos < self.text.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(())
    }
}

/// A key as it goes into a path or a message: control characters escaped (`\n`, `\u{1b}`), so that a key
/// cannot break a log line or drive a terminal.
fn push_key(out: &mut String, key: &str) {
    if key.chars().any(char::is_control) {
        out.extend(key.chars().flat_map(char::escape_debug));
    } else {
        out.push_str(key);
    }
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// `FromJson` for a `Copy` enum written as one of a few strings:
/// `json_choice!(Mode { "enforce" => Mode::Enforce, "shadow" => Mode::Shadow });`
macro_rules! json_choice {
    ($ty:ty { $($name:literal => $value:expr),+ $(,)? }) => {
        impl<'a> $crate::json::FromJson<'a> for $ty {
            fn read(r: &mut $crate::json::Reader<'a>) -> $crate::json::Result<Self> {
                const NAMES: &[&str] = &[$($name),+];
                const VALUES: &[$ty] = &[$($value),+];
                let i = r.choice(NAMES)?;
                VALUES.get(i).copied().ok_or_else(|| r.error("unknown value"))
            }
        }
    };
}
pub(crate) use json_choice;

/// `FromJson` for a struct written as a JSON object. One line per field names its JSON key and how it is
/// read; the list of accepted keys and the reading of each key are both generated from these lines (the
/// match is over an enum of the fields, with no catch-all arm), so a key cannot be accepted and left
/// unread, and the struct is built from the same lines, so a field cannot be left out.
///
/// ```ignore
/// json_object!(RlsInput {
///     cluster: "cluster" => required,
///     timeout_ms: "timeout_ms" => read,
/// });
/// ```
///
/// How a field is read (absent: the value it has when the key is not in the object):
/// - `read`: `r.read()?`; absent: `Default::default()`. An `Option` field takes `null` as absent.
/// - `read_or(EXPR)`: `r.read()?`; absent: `EXPR`.
/// - `some`: `Some(r.read()?)` into an `Option` field, so `null` is refused; absent: `None`.
/// - `required`: `r.read()?`; absent: the error ``missing field `KEY` `` at the object's path.
///
/// `Type, expecting "TEXT" { .. }` names what belongs there when the value is not an object (in place of
/// "an object"). `{ .. } => EXPR` builds the value with `EXPR` from the fields' values (each a local of the
/// field's name) in place of `Type { fields }`, for a field that is not a key of its own.
macro_rules! json_object {
    (
        $ty:ident $(, expecting $expected:literal)? {
            $($field:ident : $key:literal => $mode:ident $(($default:expr))?),+ $(,)?
        } $(=> $build:expr)?
    ) => {
        impl<'a> $crate::json::FromJson<'a> for $ty {
            fn read(r: &mut $crate::json::Reader<'a>) -> $crate::json::Result<Self> {
                #[allow(non_camel_case_types)]
                enum Field {
                    $($field),+
                }
                const KEYS: &[&str] = &[$($key),+];
                const ORDER: &[Field] = &[$(Field::$field),+];
                $(
                    if r.kind()? != $crate::json::Kind::Object {
                        return Err(r.invalid_type($expected));
                    }
                )?
                $(let mut $field = $crate::json::json_object!(@init $mode $(($default))?);)+
                r.object(KEYS, |r, i| {
                    match ORDER.get(i) {
                        $(Some(Field::$field) => $crate::json::json_object!(@read r, $field, $mode),)+
                        // `object` passes only indices of `KEYS`, which `ORDER` matches one to one.
                        None => {}
                    }
                    Ok(())
                })?;
                $(let $field = $crate::json::json_object!(@finish r, $field, $key, $mode);)+
                Ok($crate::json::json_object!(@build $ty { $($field),+ } $($build)?))
            }
        }
    };
    (@init read) => { Default::default() };
    (@init read_or($default:expr)) => { $default };
    (@init some) => { None };
    (@init required) => { None };
    (@read $r:ident, $field:ident, read) => { $field = $r.read()? };
    (@read $r:ident, $field:ident, read_or) => { $field = $r.read()? };
    (@read $r:ident, $field:ident, some) => { $field = Some($r.read()?) };
    (@read $r:ident, $field:ident, required) => { $field = Some($r.read()?) };
    (@finish $r:ident, $field:ident, $key:literal, required) => { $r.required($field, $key)? };
    (@finish $r:ident, $field:ident, $key:literal, $mode:ident) => { $field };
    (@build $ty:ident { $($field:ident),+ }) => { $ty { $($field),+ } };
    (@build $ty:ident { $($field:ident),+ } $build:expr) => { $build };
}
pub(crate) use json_object;

impl<'a> FromJson<'a> for String {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        r.str().map(Cow::into_owned)
    }
}

impl<'a> FromJson<'a> for bool {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        r.bool()
    }
}

impl<'a> FromJson<'a> for u64 {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        r.uint(u64::MAX)
    }
}

impl<'a> FromJson<'a> for u32 {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let v = r.uint(u32::MAX.into())?;
        u32::try_from(v).map_err(|_| r.error("invalid value"))
    }
}

impl<'a> FromJson<'a> for u16 {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let v = r.uint(u16::MAX.into())?;
        u16::try_from(v).map_err(|_| r.error("invalid value"))
    }
}

/// `null` is `None`, as an absent field.
impl<'a, T: FromJson<'a>> FromJson<'a> for Option<T> {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        if r.null()? {
            Ok(None)
        } else {
            T::read(r).map(Some)
        }
    }
}

impl<'a, T: FromJson<'a>> FromJson<'a> for Vec<T> {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let mut out = Vec::new();
        r.array(|r, _| {
            out.push(T::read(r)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// Names the user chooses (`policies`, `ip_lists`): a name given twice is an error.
impl<'a, T: FromJson<'a>> FromJson<'a> for BTreeMap<String, T> {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let mut out = BTreeMap::new();
        r.map(|r, key| {
            if out.contains_key(key) {
                return Err(r.error(format_args!("{key:?} is given twice")));
            }
            out.insert(key.to_string(), T::read(r)?);
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

/// Differential tests against serde_json: on generated documents and on
/// every one-character mutation of them, the reader never accepts what serde_json refuses, never reads a
/// different value, and refuses only for its documented strictness (a key given twice, a number that is
/// not a non-negative integer). No input panics.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod differential;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod reference;
