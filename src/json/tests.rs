use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The reason without the position every parse error ends with.
fn reason(e: &ConfigError) -> &str {
    e.reason
        .rsplit_once(" at line ")
        .map_or(&e.reason, |(r, _)| r)
}

#[test]
fn strings_decode_every_escape_and_refuse_bad_ones() {
    let ok = [
        (r#""plain""#, "plain"),
        (r#""""#, ""),
        (r#""a\"b\\c\/d\b\f\n\r\t""#, "a\"b\\c/d\u{8}\u{c}\n\r\t"),
        (r#""\u0041\u00e9\u20ac""#, "Aé€"),
        (r#""\ud83d\ude00x""#, "😀x"),
        ("\"é€😀\"", "é€😀"),
    ];
    for (text, want) in ok {
        assert_eq!(from_str::<String>(text).as_deref(), Ok(want), "{text}");
    }
    // Borrowed when there is nothing to decode.
    let mut r = Reader::new(r#""abc""#);
    assert!(matches!(r.str(), Ok(Cow::Borrowed("abc"))));
    let bad = [
        (r#""abc"#, "unterminated string"),
        (r#""a\x""#, "invalid escape"),
        (r#""\u12""#, "invalid escape"),
        (r#""\u12G4""#, "invalid escape"),
        (r#""\ud83d""#, "lone surrogate"),
        (r#""\ud83dx""#, "lone surrogate"),
        (r#""\ud83d\u0041""#, "lone surrogate"),
        (r#""\ude00""#, "lone surrogate"),
        ("\"a\nb\"", "control character"),
        ("\"a\u{1}b\"", "control character"),
    ];
    for (text, want) in bad {
        let e = from_str::<String>(text)
            .err()
            .unwrap_or_else(|| panic!("accepted {text}"));
        assert!(e.reason.contains(want), "{text}: {e}");
    }
}

#[test]
fn integers_are_range_checked_and_never_echoed() {
    assert_eq!(from_str::<u64>("0"), Ok(0));
    assert_eq!(from_str::<u64>(" 18446744073709551615 "), Ok(u64::MAX));
    assert_eq!(from_str::<u16>("65535"), Ok(65535));
    assert_eq!(from_str::<u32>("4294967295"), Ok(u32::MAX));
    for (text, max) in [
        ("65536", "65535"),
        ("-1", "65535"),
        ("1.5", "65535"),
        ("1e3", "65535"),
        ("1.0", "65535"),
        ("-0", "65535"),
        ("99999999999999999999999", "65535"),
    ] {
        let e = from_str::<u16>(text)
            .err()
            .unwrap_or_else(|| panic!("accepted {text}"));
        assert_eq!(
            reason(&e),
            format!("invalid value: expected an integer from 0 to {max}"),
            "{text}"
        );
    }
    assert!(from_str::<u64>("18446744073709551616").is_err());
    for text in ["01", "-", "1.", "1e", "1e+", ".5", "+1"] {
        assert!(from_str::<u64>(text).is_err(), "accepted {text}");
    }
    let e = from_str::<u64>(r#""5""#)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        reason(&e),
        "invalid type: string, expected an integer from 0 to 18446744073709551615"
    );
}

#[test]
fn literals_and_options() {
    assert_eq!(from_str::<bool>("true"), Ok(true));
    assert_eq!(from_str::<bool>("false"), Ok(false));
    assert_eq!(from_str::<Option<bool>>("null"), Ok(None));
    assert_eq!(from_str::<Option<bool>>("true"), Ok(Some(true)));
    for text in ["tru", "nul", "True", "falsey", "null", "1"] {
        assert!(from_str::<bool>(text).is_err(), "accepted {text}");
    }
    assert!(from_str::<Option<bool>>("nulll").is_err());
}

#[test]
fn arrays_and_maps_name_their_elements_in_the_path() {
    assert_eq!(from_str::<Vec<u64>>("[]"), Ok(vec![]));
    assert_eq!(from_str::<Vec<u64>>(" [ 1 , 2 ] "), Ok(vec![1, 2]));
    let e = from_str::<Vec<Vec<u64>>>("[[1],[2,true]]").err();
    assert_eq!(e.as_ref().map(|e| e.path.as_str()), Some("[1][1]"), "{e:?}");
    let m = from_str::<BTreeMap<String, Vec<u64>>>(r#"{"a":[1],"b\u0041":[]}"#);
    assert_eq!(
        m,
        Ok(BTreeMap::from([
            ("a".to_string(), vec![1]),
            ("bA".to_string(), vec![])
        ]))
    );
    let e = from_str::<BTreeMap<String, Vec<u64>>>(r#"{"a":{"b":1}}"#).err();
    assert_eq!(e.as_ref().map(|e| e.path.as_str()), Some("a"), "{e:?}");
    // A key given twice, however it is spelled.
    let e = from_str::<BTreeMap<String, u64>>(r#"{"a":1,"b":2,"\u0061":3}"#)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        (e.path.as_str(), reason(&e)),
        ("a", r#""a" is given twice"#)
    );
}

#[test]
fn syntax_errors_say_where() {
    let cases = [
        ("", "unexpected end of the document at line 1 column 1"),
        ("[1,]", "trailing comma at line 1 column 4"),
        ("[1,,2]", "expected a value at line 1 column 4"),
        ("[1 2]", "expected `,` or `]` at line 1 column 4"),
        ("{\"a\":1,}", "trailing comma at line 1 column 8"),
        ("{\"a\":1,,}", "expected a key at line 1 column 8"),
        ("{\"a\" 1}", "expected `:` at line 1 column 6"),
        (
            "{\"a\":1\n  \"b\":2}",
            "expected `,` or `}` at line 2 column 3",
        ),
        ("{} x", "trailing characters at line 1 column 4"),
        ("{}{}", "trailing characters at line 1 column 3"),
        ("[1", "unexpected end of the document at line 1 column 3"),
        (
            "{\"a\":1",
            "unexpected end of the document at line 1 column 7",
        ),
        ("[1 ", "unexpected end of the document at line 1 column 4"),
        // a misspelt literal is a syntax error, not a null or a boolean of the wrong type
        ("{\"a\":nope}", "expected a value at line 1 column 6"),
        ("[tru]", "expected a value at line 1 column 2"),
    ];
    for (text, want) in cases {
        let got: Vec<String> = [
            from_str::<BTreeMap<String, u64>>(text).err(),
            from_str::<Vec<u64>>(text).err(),
        ]
        .into_iter()
        .flatten()
        .map(|e| e.reason)
        .collect();
        assert!(got.iter().any(|g| g == want), "{text}: {got:?}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    let e = from_str::<Vec<Vec<u64>>>(&deep)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(
        e.reason.contains("invalid type") || e.reason.contains("nested"),
        "{e}"
    );
    // A reader that recurses on its own (as a skipped value would) stops at the limit.
    fn nest(r: &mut Reader<'_>) -> Result<()> {
        r.array(|r, _| nest(r))
    }
    let mut r = Reader::new(&deep);
    let e = nest(&mut r).err().unwrap_or_else(|| panic!("accepted"));
    assert!(e.reason.starts_with("nested too deeply"), "{e}");
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert_eq!(nest(&mut Reader::new(&ok)), Ok(()));
}

#[test]
fn objects_refuse_unknown_and_repeated_fields_and_name_missing_ones() {
    #[derive(Debug, PartialEq)]
    struct P {
        a: u64,
        b: Option<String>,
    }
    impl<'a> FromJson<'a> for P {
        fn read(r: &mut Reader<'a>) -> Result<Self> {
            let (mut a, mut b) = (None, None);
            r.object(&["a", "b"], |r, i| {
                match i {
                    0 => a = Some(r.read()?),
                    _ => b = r.read()?,
                }
                Ok(())
            })?;
            Ok(P {
                a: r.required(a, "a")?,
                b,
            })
        }
    }
    assert_eq!(from_str::<P>(r#"{"a":1}"#), Ok(P { a: 1, b: None }));
    assert_eq!(
        from_str::<P>(r#"{"b":"x","a":2}"#),
        Ok(P {
            a: 2,
            b: Some("x".into())
        })
    );
    assert_eq!(
        from_str::<P>(r#"{"b":null,"a":2}"#),
        Ok(P { a: 2, b: None })
    );
    let err = |text: &str| {
        from_str::<Vec<P>>(text)
            .err()
            .map(|e| (e.path.clone(), reason(&e).to_string()))
            .unwrap_or_else(|| panic!("accepted {text}"))
    };
    assert_eq!(
        err(r#"[{"a":1},{"a":1,"c":2}]"#),
        (
            "[1].c".into(),
            "unknown field `c`, expected `a` or `b`".into()
        )
    );
    assert_eq!(
        err(r#"[{"a":1,"a":2}]"#),
        ("[0].a".into(), "duplicate field `a`".into())
    );
    assert_eq!(
        err(r#"[{"b":"x"}]"#),
        ("[0]".into(), "missing field `a`".into())
    );
    assert_eq!(
        err(r#"[{"a":1,"b":"s3cr3t-value"}, 5]"#),
        (
            "[1]".into(),
            "invalid type: number, expected an object".into()
        )
    );
    assert_eq!(
        err(r#"[{"a":"s3cr3t-value"}]"#),
        (
            "[0].a".into(),
            "invalid type: string, expected an integer from 0 to 18446744073709551615".into()
        )
    );
}

#[test]
fn json_object_reads_each_field_as_its_line_says() {
    #[derive(Debug, PartialEq)]
    struct Q {
        a: u64,
        b: Option<u64>,
        c: bool,
        d: Option<Option<u64>>,
        e: Vec<u64>,
        e_given: bool,
    }
    json_object!(Q, expecting "a Q" {
        a: "a" => required,
        b: "b" => read,
        c: "c" => read_or(true),
        d: "d" => some,
        e: "e" => some,
    } => Q {
        a,
        b,
        c,
        d,
        e_given: e.is_some(),
        e: e.unwrap_or_default(),
    });
    let q = |a, b, c, d, e: &[u64], e_given| Q {
        a,
        b,
        c,
        d,
        e: e.to_vec(),
        e_given,
    };
    assert_eq!(
        from_str::<Q>(r#"{"a":1}"#),
        Ok(q(1, None, true, None, &[], false))
    );
    assert_eq!(
        from_str::<Q>(r#"{"e":[],"d":null,"c":false,"b":null,"a":2}"#),
        Ok(q(2, None, false, Some(None), &[], true))
    );
    assert_eq!(
        from_str::<Q>(r#"{"a":3,"b":4,"d":5,"e":[6]}"#),
        Ok(q(3, Some(4), true, Some(Some(5)), &[6], true))
    );
    let err = |text: &str| {
        from_str::<Q>(text)
            .err()
            .map(|e| (e.path.clone(), reason(&e).to_string()))
            .unwrap_or_else(|| panic!("accepted {text}"))
    };
    assert_eq!(err("{}"), ("".into(), "missing field `a`".into()));
    assert_eq!(
        err("[]"),
        ("".into(), "invalid type: array, expected a Q".into())
    );
    assert_eq!(
        err(r#"{"a":1,"e":null}"#),
        ("e".into(), "invalid type: null, expected an array".into())
    );
    assert_eq!(
        err(r#"{"a":null}"#),
        (
            "a".into(),
            "invalid type: null, expected an integer from 0 to 18446744073709551615".into()
        )
    );
    assert_eq!(
        err(r#"{"a":1,"f":1}"#),
        (
            "f".into(),
            "unknown field `f`, expected one of `a`, `b`, `c`, `d`, `e`".into()
        )
    );
}

/// Keys are echoed (they are names, not values), with control characters escaped.
#[test]
fn keys_cannot_break_a_log_line() {
    let e = from_str::<BTreeMap<String, Vec<u64>>>("{\"a\\nb\\u001b[2J\":[true]}")
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.path, "a\\nb\\u{1b}[2J[0]");
    let mut r = Reader::new("{\"x\\ny\":1}");
    let e = r
        .object(&["a"], |_, _| Ok(()))
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(reason(&e), "unknown field `x\\ny`, expected `a`");
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn choices_list_what_is_accepted_and_not_what_was_written() {
    let mut r = Reader::new(r#""deny""#);
    assert_eq!(r.choice(&["allow", "deny"]), Ok(1));
    let mut r = Reader::new(r#""s3cr3t""#);
    let e = r
        .choice(&["allow", "deny", "x"])
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        reason(&e),
        "unknown value, expected one of `allow`, `deny`, `x`"
    );
    let mut r = Reader::new("1");
    let e = r
        .choice(&["allow", "deny"])
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        reason(&e),
        "invalid type: number, expected `allow` or `deny`"
    );
}
