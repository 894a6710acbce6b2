//! Numbers and addresses appended as text without `core::fmt`, for the per-request path: in wasm the
//! formatting machinery (`write!`, `to_string`, `format!`) costs more than the digits themselves.

use std::fmt::Write as _;
use std::net::IpAddr;

/// `v` in decimal ASCII digits, written at the end of `buf`.
pub fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or(&[])
}

/// Appends `v` in decimal.
pub fn push_u64(out: &mut String, v: u64) {
    for &b in decimal(v, &mut [0u8; 20]) {
        out.push(char::from(b));
    }
}

/// Appends the last `width` decimal digits of `v`, zero-padded (`{v:0width$}` for `v` < 10^width).
pub fn push_padded(out: &mut String, v: u64, width: u32) {
    for i in (0..width).rev() {
        let digit = (v / 10u64.pow(i)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Appends `b` as two lowercase hexadecimal digits.
pub fn push_hex_byte(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for nibble in [b >> 4, b & 0x0f] {
        out.push(char::from(
            DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
        ));
    }
}

/// Appends `v` in decimal, with a `-` when negative.
pub fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends an address as `Display` writes it (IPv4 by hand; IPv6, rarer and longer, through `fmt`).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn integers_match_display() {
        let mut values: Vec<u64> = vec![
            0,
            1,
            9,
            10,
            99,
            100,
            255,
            1_000_000_000,
            u64::MAX,
            u64::MAX - 1,
        ];
        values.extend((0..64).map(|s| 1u64 << s));
        values.extend((1..20).map(|p| 10u64.pow(p) - 1));
        for v in values {
            let mut s = String::from("x");
            push_u64(&mut s, v);
            assert_eq!(s, format!("x{v}"));
        }
        for v in [
            0i64,
            -1,
            1,
            i64::MIN,
            i64::MAX,
            -1_795_402_622,
            1_795_402_622,
        ] {
            let mut s = String::new();
            push_i64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn padded_matches_format() {
        for (v, w) in [
            (0u64, 2u32),
            (7, 2),
            (59, 2),
            (999, 3),
            (5, 3),
            (1970, 4),
            (9999, 4),
        ] {
            let mut s = String::new();
            push_padded(&mut s, v, w);
            assert_eq!(s, format!("{v:0w$}", w = w as usize));
        }
    }

    #[test]
    fn addresses_match_display() {
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.30.40",
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }
}
