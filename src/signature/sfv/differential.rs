//! Differential tests against the `sfv` crate (RFC 8941 mode): on hand-picked and generated
//! Dictionaries, Lists and Items, with every bare item type and parameter form, and on one-character
//! mutations of them, both accept and refuse the same inputs and write what they accept as the same
//! canonical text, but for one intended difference, [`Difference::RepeatedKey`]. No input panics.

use super::reference::{compare, difference, edgeward, sfv_crate, Difference, Kind};
use super::*;
use proptest::prelude::*;

fn check(kind: Kind, input: &str) -> Result<(), TestCaseError> {
    compare(kind, input).map_err(TestCaseError::fail)
}

#[test]
fn hand_picked_values_agree() {
    let dictionaries = [
        "a=?0, b, c; foo=bar",
        "rating=1.5, feelings=(joy sadness)",
        "a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid",
        "en=\"Applepie\", da=:w4ZibGV0w6ZydGUK:",
        "sig1=(\"@method\" \"@authority\" \"@path\");created=1618884475;keyid=\"test-key-rsa-pss\";alg=\"rsa-pss-sha512\"",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:AAE:",
        "a=1;b;c=?0;d=-2;e=4.500;f=\"x\";g=tok/en:x;h=:AAE=:",
        "*a=1, a*.b-c_d=2",
        "   a=1,b=2 ,c=3\t,\td=4   ",
        "a=(), b=( ), c=(  1  2  ), d=(\"x\";p=1 y;q);r",
        "a=1234567890123456",
        "a=123456789012345, b=-123456789012345",
        "a=123456789012.123, b=1234567890123.1",
        "a=1.1234",
        "a=\"\\x\"",
        "a=\"tab\there\"",
        "a=:AAE:, b=:AAE=:, c=:AA==:, d=:A:, e=:AAE==:",
        "a=1,",
        ",a=1",
        "a=1,,b=2",
        "a=1 b=2",
        "a=",
        "a=1;",
        "a=1;B=2",
        "A=1",
        "a=(1\t2)",
        "a=@1659578233",
        "a=%\"display\"",
        "a=?2",
        "a=-",
        "a=1.",
        "a=.5",
        "a=-0, b=-0.0, c=007, d=00.500",
        "",
        " ",
        // Repeated keys: the intended difference.
        "a=1, b=2, a=3",
        "a, a=?0",
        "a=1;p=1;p=2",
        "a=(x;p;p=?0)",
        "a=(x);p=1;q;p=2",
    ];
    let lists = [
        "sugar, tea, rum",
        "(\"foo\" \"bar\"), (\"baz\"), (\"bat\" \"one\"), ()",
        "abc;a=1;b=2; cde_456, (ghi;jk=4 l);q=\"9\";r=w",
        "1;a;b=?0, 2.5, \"s\", :AAE=:, ?1, ?0, tok*en",
        "a, ,b",
        "a,",
        "",
        "(",
        "(a b",
        "a;p=1;p=2",
        "(a;p b;p;p);q",
    ];
    let items = [
        "?1",
        "42",
        "-42",
        "4.5",
        "\"hello world\"",
        "foo123/456",
        ":cHJldGVuZCB0aGlzIGlzIGJpbmFyeSBjb250ZW50Lg==:",
        "5;foo=bar",
        "5; foo=bar",
        "5 ;foo=bar",
        "1234567890123456",
        "999999999999999",
        "-999999999999999.999",
        "a b",
        "\"unterminated",
        "\"\\",
        "",
        "(1 2)",
        "x;a=1;a=2",
    ];
    for (kind, inputs) in [
        (Kind::Dictionary, &dictionaries[..]),
        (Kind::List, &lists[..]),
        (Kind::Item, &items[..]),
    ] {
        for input in inputs {
            if let Err(e) = check(kind, input) {
                panic!("{e}");
            }
        }
    }
}

/// The difference by name: `sfv` keeps the last value of a repeated key, edgeward refuses the field.
#[test]
fn a_repeated_key_is_refused_where_rfc8941_keeps_the_last() {
    let cases = [
        (Kind::Dictionary, "a=1, b=2, a=3", "a=3, b=2"),
        (Kind::Dictionary, "a=1;p=1;p=2", "a=1;p=2"),
        (Kind::List, "x;p=1;q;p=2", "x;p=2;q"),
        (Kind::List, "(a;k=1;k=?0)", "(a;k=?0)"),
        (Kind::Item, "x;k=1;k=?0", "x;k=?0"),
    ];
    for (kind, input, rfc8941) in cases {
        assert_eq!(sfv_crate(kind, input).as_deref(), Some(rfc8941), "{input}");
        assert_eq!(
            difference(kind, input),
            Some(Difference::RepeatedKey),
            "{input}"
        );
        assert_eq!(edgeward(kind, input), None, "{input}");
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        // A few keys, so that repeats are common.
        prop::sample::select(vec!["a", "b", "*", "k-1", "x.y_z*"]).prop_map(String::from),
        "[a-z*][a-z0-9_.*-]{0,5}",
    ]
}

/// A bare item as text, in its canonical form or in one a parser accepts or refuses.
fn bare() -> impl Strategy<Value = String> {
    prop_oneof![
        (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(|i| i.to_string()),
        "-?[0-9]{1,17}",
        ("-?[0-9]{1,13}", "[0-9]{0,4}").prop_map(|(i, f)| format!("{i}.{f}")),
        "\"([ !#-\\[\\]-~]|\\\\[\"\\\\]){0,10}\"",
        "[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]{0,8}",
        (prop::collection::vec(any::<u8>(), 0..10), any::<bool>()).prop_map(|(b, pad)| {
            let text = STANDARD.encode(b);
            format!(
                ":{}:",
                if pad {
                    &text
                } else {
                    text.trim_end_matches('=')
                }
            )
        }),
        prop::sample::select(vec!["?0", "?1"]).prop_map(String::from),
    ]
}

/// Parameters (`;k`, `;k=v`, with or without a space after the `;`).
fn params() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), prop::option::of(bare()), any::<bool>()), 0..4).prop_map(|ps| {
        ps.into_iter()
            .map(|(k, v, sp)| {
                let sp = if sp { " " } else { "" };
                match v {
                    Some(v) => format!(";{sp}{k}={v}"),
                    None => format!(";{sp}{k}"),
                }
            })
            .collect()
    })
}

fn item() -> impl Strategy<Value = String> {
    (bare(), params()).prop_map(|(b, p)| b + &p)
}

/// An item or an inner list.
fn member() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => item(),
        1 => (prop::collection::vec(item(), 0..4), " {0,2}", " {1,2}", params())
            .prop_map(|(items, edge, sep, p)| format!("({edge}{}{edge}){p}", items.join(&sep))),
    ]
}

/// What goes between members (OWS around the comma).
fn separator() -> impl Strategy<Value = String> {
    prop::sample::select(vec![", ", ",", " ,", "\t,\t", ",  "]).prop_map(String::from)
}

fn join(parts: Vec<(String, String)>) -> String {
    let mut out = String::new();
    for (i, (part, sep)) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        out.push_str(&part);
    }
    out
}

fn list() -> impl Strategy<Value = String> {
    prop::collection::vec((member(), separator()), 0..5).prop_map(join)
}

fn dictionary() -> impl Strategy<Value = String> {
    let entry = (key(), prop::option::of(member()), params()).prop_map(|(k, m, p)| match m {
        Some(m) => format!("{k}={m}"),
        // A key alone is `true`, with parameters of its own.
        None => k + &p,
    });
    prop::collection::vec((entry, separator()), 0..5).prop_map(join)
}

fn value() -> impl Strategy<Value = (Kind, String)> {
    let edges = prop::sample::select(vec!["", " ", "  "]);
    (
        prop_oneof![
            dictionary().prop_map(|s| (Kind::Dictionary, s)),
            list().prop_map(|s| (Kind::List, s)),
            item().prop_map(|s| (Kind::Item, s)),
        ],
        edges.clone(),
        edges,
    )
        .prop_map(|((kind, s), lead, trail)| (kind, format!("{lead}{s}{trail}")))
}

/// Characters a mutation inserts: the syntax's own, and some it does not allow.
const MUTANTS: &[char] = &[
    ',', ';', '=', '(', ')', ' ', '\t', '"', '\\', ':', '?', '*', '.', '-', '+', '/', 'a', 'A',
    'z', '0', '1', '9', '%', '@', '#', '\u{7f}', '\u{1}', 'é',
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn generated_values_agree((kind, text) in value()) {
        check(kind, &text)?;
    }

    #[test]
    fn mutated_values_agree(
        (kind, text) in value(),
        at in any::<prop::sample::Index>(),
        op in 0u8..3,
        c in prop::sample::select(MUTANTS),
    ) {
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
        check(kind, &mutated)?;
    }
}
