use super::reference::compare;
use proptest::prelude::*;
use serde_json::Value;

fn check(text: &str) -> std::result::Result<(), TestCaseError> {
    compare(text).map_err(TestCaseError::fail)
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
