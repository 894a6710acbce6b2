//! The reader against serde_json, on one text: what the differential tests (json/differential.rs) and
//! the `policy` fuzz target (src/fuzz_props/policy.rs) both check.

use super::*;
use serde_json::Value;

/// Any JSON value this reader can represent (numbers: non-negative integers).
#[derive(Debug, PartialEq)]
pub(crate) enum Any {
    Null,
    Bool(bool),
    Int(u64),
    Str(String),
    Arr(Vec<Any>),
    /// Sorted by key (serde_json's map is).
    Obj(Vec<(String, Any)>),
}

impl<'a> FromJson<'a> for Any {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        Ok(match r.kind()? {
            Kind::Null => {
                r.null()?;
                Any::Null
            }
            Kind::Bool => Any::Bool(r.bool()?),
            Kind::Number => Any::Int(r.uint(u64::MAX)?),
            Kind::String => Any::Str(r.str()?.into_owned()),
            Kind::Array => Any::Arr(r.read()?),
            Kind::Object => {
                let map: BTreeMap<String, Any> = r.read()?;
                Any::Obj(map.into_iter().collect())
            }
        })
    }
}

/// serde_json's value as `Any`, or `None` if it holds a number the reader does not take.
fn from_serde(v: &Value) -> Option<Any> {
    Some(match v {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Number(n) => Any::Int(n.as_u64()?),
        Value::String(s) => Any::Str(s.clone()),
        Value::Array(a) => Any::Arr(a.iter().map(from_serde).collect::<Option<_>>()?),
        Value::Object(o) => Any::Obj(
            o.iter()
                .map(|(k, v)| Some((k.clone(), from_serde(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// Where the reader departs from serde_json on purpose: it refuses what serde_json reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Difference {
    /// A key given twice in one object (serde_json keeps the last): ambiguous in a policy.
    RepeatedKey,
    /// A number that is not a non-negative integer (`-1`, `1.5`, `1e3`): no field of a document takes one.
    NotAnUnsignedInteger,
    /// Nesting deeper than [`MAX_DEPTH`] (serde_json takes 128 levels): bounds the reader's recursion.
    TooDeep,
}

/// The intended difference named by the reader's refusal, if it is one.
fn difference(e: &ConfigError) -> Option<Difference> {
    if e.reason.contains("is given twice") {
        Some(Difference::RepeatedKey)
    } else if e.reason.contains("invalid value") {
        Some(Difference::NotAnUnsignedInteger)
    } else if e.reason.contains("nested too deeply") {
        Some(Difference::TooDeep)
    } else {
        None
    }
}

/// The reader and serde_json on `text`: the reader accepts only what serde_json accepts, as the same
/// value, and refuses what serde_json accepts only for an intended [`Difference`]. `Err` says how not.
pub(crate) fn compare(text: &str) -> std::result::Result<(), String> {
    match (serde_json::from_str::<Value>(text), from_str::<Any>(text)) {
        (Err(_), Ok(v)) => Err(format!("accepted {text:?} as {v:?}")),
        (Ok(theirs), Ok(v)) => {
            let theirs = from_serde(&theirs);
            if theirs.as_ref() == Some(&v) {
                Ok(())
            } else {
                Err(format!("{text:?}: read {v:?}, serde_json {theirs:?}"))
            }
        }
        (Ok(_), Err(e)) => match difference(&e) {
            Some(_) => Ok(()),
            None => Err(format!("refused {text:?}: {e}")),
        },
        (Err(_), Err(_)) => Ok(()),
    }
}
