use super::*;
use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value this reader can represent (numbers: non-negative integers).
#[derive(Debug, PartialEq)]
enum Any {
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

fn check(text: &str) -> std::result::Result<(), TestCaseError> {
    let ours = from_str::<Any>(text);
    match (serde_json::from_str::<Value>(text), ours) {
        (Err(_), Ok(v)) => Err(TestCaseError::fail(format!("accepted {text:?} as {v:?}"))),
        (Ok(theirs), Ok(v)) => {
            prop_assert_eq!(Some(v), from_serde(&theirs), "{:?}", text);
            Ok(())
        }
        (Ok(_), Err(e)) => {
            prop_assert!(
                e.reason.contains("is given twice") || e.reason.contains("invalid value"),
                "refused {:?}: {}",
                text,
                e
            );
            Ok(())
        }
        (Err(_), Err(_)) => Ok(()),
    }
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        (0u64..1000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        "[\"\\\\/\u{0}-\u{1f}a-z\u{7f}é😀]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"\\\\\u{0}-\u{1f}é]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Characters a mutation inserts: JSON's structural and escape characters, and some that are not.
const MUTANTS: &[char] = &[
    '{', '}', '[', ']', ',', ':', '"', '\\', 'u', 'n', 't', 'f', 'e', 'E', '.', '-', '+', '0', '1',
    '9', ' ', '\n', '\t', '\r', '\u{0}', '\u{1f}', 'é', 'D', '8', 'x', '/', '*', '#', '\u{feff}',
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn reads_what_serde_json_reads(v in value(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        };
        let text = text.map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&text)?;
    }

    #[test]
    fn mutated_documents_never_parse_differently(
        v in value(),
        at in any::<prop::sample::Index>(),
        op in 0u8..3,
        c in prop::sample::select(MUTANTS),
    ) {
        let text = serde_json::to_string(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut chars: Vec<char> = text.chars().collect();
        let i = at.index(chars.len() + 1);
        match op {
            0 if i < chars.len() => {
                chars.remove(i);
            }
            1 if i < chars.len() => chars[i] = c,
            _ => chars.insert(i, c),
        }
        let mutated: String = chars.into_iter().collect();
        check(&mutated)?;
    }
}
