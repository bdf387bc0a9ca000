//! Numbers and addresses written as text without the formatting machinery: the values every
//! message and description of a call carries (ports, `received=` addresses, CSeq numbers, SDP
//! origins), where `Display` costs about a thousand instructions for an IPv4 address.

use std::net::IpAddr;

/// The decimal digits of `n`: they are `buf[start..]` of the returned `(buf, start)`.
pub(crate) fn decimal_digits(mut n: u64) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    (digits, i)
}

/// Appends `n` in decimal, as `Display` writes it.
pub fn push_decimal(out: &mut String, n: u64) {
    let (digits, start) = decimal_digits(n);
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// Appends an address as `IpAddr`'s `Display` writes it (dotted quad, or RFC 5952 text for
/// IPv6, which takes the formatter).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(o));
            }
        }
        IpAddr::V6(a) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{a}");
        }
    }
}

/// An address as text ([`push_ip`] into a new string).
pub fn ip_text(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip(&mut s, ip);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        for n in [0, 9, 10, 255, 5060, 65535, 1_000_000_007, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        for ip in [
            "0.0.0.0",
            "192.0.2.1",
            "255.255.255.255",
            "10.0.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
