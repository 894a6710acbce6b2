//! Writing untrusted text into the record: control characters neutralized, length capped, JSON-escaped;
//! and RFC 3339 timestamps without a clock or a date library.

use std::fmt::Write as _;

/// Maximum bytes of one string value in the record (after neutralizing, including the cut marker).
pub const VALUE_CAP: usize = 256;

/// Appended to a value that was cut at [`VALUE_CAP`].
pub const CUT_MARKER: &str = "…[truncated]";

/// Characters that must never reach a log raw: C0, DEL, C1 (terminal escapes, line breaks that forge
/// records), bidi controls (Trojan-Source style reordering in viewers), and the Unicode line/paragraph
/// separators (line breaks for JavaScript and some viewers).
fn is_neutralized(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// Bytes a char takes once neutralized: itself, or its `\u{…}` spelling.
fn neutral_len(c: char) -> usize {
    if is_neutralized(c) {
        // `\u{` + hex digits + `}`
        let hex_digits = match u32::from(c) {
            0..=0xf => 1,
            0x10..=0xff => 2,
            0x100..=0xfff => 3,
            _ => 4,
        };
        4 + hex_digits
    } else {
        c.len_utf8()
    }
}

/// Appends `s` with control characters spelled out as visible `\u{1b}` text and capped at [`VALUE_CAP`]
/// bytes (cut at a character boundary and marked), optionally JSON-escaped.
pub fn push_value(out: &mut String, s: &str, json: bool) {
    // The common case, in one copy: short printable ASCII with nothing to escape (one table lookup
    // per byte).
    let plain = if json { &PLAIN_JSON } else { &PLAIN_TEXT };
    if s.len() <= VALUE_CAP
        && s.bytes()
            .all(|b| plain.get(usize::from(b)).copied().unwrap_or(false))
    {
        out.push_str(s);
        return;
    }
    push_value_general(out, s, json);
}

/// The bytes [`push_value`] copies as they are: printable ASCII; in JSON, but `"` and `\`.
const PLAIN_TEXT: [bool; 256] = plain_bytes(false);
const PLAIN_JSON: [bool; 256] = plain_bytes(true);

const fn plain_bytes(json: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        t[b] = !(json && (b == b'"' as usize || b == b'\\' as usize));
        b += 1;
    }
    t
}

/// [`push_value`] character by character: every case, also the ones its fast path takes.
fn push_value_general(out: &mut String, s: &str, json: bool) {
    let total: usize = s.chars().map(neutral_len).sum();
    let budget = if total <= VALUE_CAP {
        total
    } else {
        VALUE_CAP - CUT_MARKER.len()
    };
    let mut used = 0;
    for c in s.chars() {
        let n = neutral_len(c);
        if used + n > budget {
            break;
        }
        used += n;
        if is_neutralized(c) {
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "{}u{{{:x}}}",
                if json { "\\\\" } else { "\\" },
                u32::from(c)
            );
        } else if json && (c == '"' || c == '\\') {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    if total > VALUE_CAP {
        out.push_str(CUT_MARKER);
    }
}

/// Appends a JSON string literal of `s`, neutralized and capped.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    push_value(out, s, true);
    out.push('"');
}

/// Appends a JSON string literal, or `null`.
pub fn push_json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

/// Latest instant printable with a four-digit year: 9999-12-31T23:59:59Z.
const MAX_RFC3339_S: u64 = 253_402_300_799;

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = if m <= 2 { y + 1 } else { y };
    (y, m as u32, d as u32)
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix seconds and nanoseconds (UTC; clamped to year 9999).
pub fn push_rfc3339(out: &mut String, now_s: u64, now_nanos: u32) {
    let (secs, millis) = if now_s > MAX_RFC3339_S {
        (MAX_RFC3339_S, 999)
    } else {
        (now_s, now_nanos.min(999_999_999) / 1_000_000)
    };
    // secs ≤ MAX_RFC3339_S, so the casts below cannot truncate.
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // By hand rather than `write!`: this runs for every record (`{y:04}-{m:02}-{d:02}T…`).
    crate::num::push_padded(out, y.unsigned_abs(), 4);
    out.push('-');
    crate::num::push_padded(out, u64::from(m), 2);
    out.push('-');
    crate::num::push_padded(out, u64::from(d), 2);
    out.push('T');
    crate::num::push_padded(out, sod / 3600, 2);
    out.push(':');
    crate::num::push_padded(out, sod % 3600 / 60, 2);
    out.push(':');
    crate::num::push_padded(out, sod % 60, 2);
    out.push('.');
    crate::num::push_padded(out, u64::from(millis), 3);
    out.push('Z');
}

/// RFC 3339 UTC timestamp with milliseconds for Unix seconds and nanoseconds.
pub fn rfc3339(now_s: u64, now_nanos: u32) -> String {
    let mut s = String::with_capacity(24);
    push_rfc3339(&mut s, now_s, now_nanos);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rfc3339_known_instants() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000Z"),
            (951_868_799, 999_999_999, "2000-02-29T23:59:59.999Z"),
            (951_868_800, 0, "2000-03-01T00:00:00.000Z"),
            (1_700_000_000, 123_456_789, "2023-11-14T22:13:20.123Z"),
            (2_147_483_647, 0, "2038-01-19T03:14:07.000Z"),
            (2_147_483_648, 0, "2038-01-19T03:14:08.000Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"), // 2100 is not a leap year
            (4_107_456_000, 0, "2100-02-28T00:00:00.000Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000Z"),
            (u64::MAX, 0, "9999-12-31T23:59:59.999Z"),
            (5, 2_000_000_000, "1970-01-01T00:00:05.999Z"),
        ];
        for (s, n, want) in cases {
            assert_eq!(rfc3339(s, n), want, "{s}");
        }
    }

    #[test]
    fn civil_matches_day_counting() {
        // Walk day by day from 1970 to 2200 and compare with a naive calendar.
        let mut y = 1970i64;
        let mut m = 1u32;
        let mut d = 1u32;
        for days in 0..(230 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    fn value(s: &str, json: bool) -> String {
        let mut out = String::new();
        push_value(&mut out, s, json);
        out
    }

    #[test]
    fn fast_path_writes_what_the_general_path_writes() {
        let mut inputs: Vec<String> = (0u8..=0x7f)
            .map(|b| format!("a{}z", char::from(b)))
            .collect();
        inputs.extend(["", "\"", "\\", "plain text", "ünï", "x\u{202e}"].map(String::from));
        for n in [VALUE_CAP - 1, VALUE_CAP, VALUE_CAP + 1] {
            inputs.push("a".repeat(n));
            inputs.push(format!("{}\"", "a".repeat(n - 1)));
        }
        for s in &inputs {
            for json in [false, true] {
                let mut general = String::from("prefix:");
                push_value_general(&mut general, s, json);
                let mut out = String::from("prefix:");
                push_value(&mut out, s, json);
                assert_eq!(out, general, "{s:?} json={json}");
            }
        }
    }

    #[test]
    fn control_characters_are_spelled_out() {
        let cases = [
            ("plain", "plain"),
            ("a\nb", "a\\u{a}b"),
            ("a\r\n{\"forged\":1}", "a\\u{d}\\u{a}{\"forged\":1}"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("nul\u{0}", "nul\\u{0}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("c1\u{85}\u{9b}", "c1\\u{85}\\u{9b}"),
            ("tab\t", "tab\\u{9}"),
            ("bidi\u{202e}gnp.exe", "bidi\\u{202e}gnp.exe"),
            ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
            ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
            ("ünïcødé ✓", "ünïcødé ✓"),
        ];
        for (input, want) in cases {
            let got = value(input, false);
            assert_eq!(got, want, "{input:?}");
            assert!(!got.chars().any(is_neutralized));
        }
    }

    #[test]
    fn json_escaping_round_trips() {
        for input in ["say \"hi\"", "back\\slash", "a\nb\u{1b}", "\u{202e}"] {
            let mut lit = String::new();
            push_json_str(&mut lit, input);
            assert!(!lit.chars().any(is_neutralized), "{lit:?}");
            let back: String = serde_json::from_str(&lit).unwrap();
            assert_eq!(back, value(input, false));
        }
    }

    #[test]
    fn values_are_capped_at_char_boundaries() {
        let short = "x".repeat(VALUE_CAP);
        assert_eq!(value(&short, false), short);

        let long = "x".repeat(VALUE_CAP + 1);
        let got = value(&long, false);
        assert!(got.len() <= VALUE_CAP, "{}", got.len());
        assert!(got.ends_with(CUT_MARKER));

        // Multi-byte characters straddling the cut: never split, never over the cap.
        for pad in 0..4 {
            let s = format!("{}{}", "a".repeat(pad), "€".repeat(200));
            let got = value(&s, false);
            assert!(got.len() <= VALUE_CAP);
            assert!(got.ends_with(CUT_MARKER));
        }

        // Escapes count toward the cap and are never cut in half.
        let esc = "\u{1b}".repeat(100);
        let got = value(&esc, false);
        assert!(got.len() <= VALUE_CAP);
        let body = got.strip_suffix(CUT_MARKER).unwrap();
        assert_eq!(body.len() % 6, 0, "{body}");
        assert!(body.ends_with("\\u{1b}"));
    }
}
