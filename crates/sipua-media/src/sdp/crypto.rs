//! The SDES `a=crypto` attribute (RFC 4568 §9.1) and the base64 of its keys (RFC 4648 §4):
//! `a=crypto:<tag> <suite> inline:<key||salt>[|<lifetime>][|<MKI>:<length>] [<session params>]`.
//! Only what both ends can use is taken: one of the suites [`SUITES`], an inline key of the
//! suite's length, no MKI and no session parameter; other lines are passed over.

/// The suites we offer and accept, in order of preference (RFC 4568 §6.2).
pub const SUITES: [&str; 2] = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"];

/// Bytes of an AES-128 master key and its 112-bit salt.
pub const KEY_LEN: usize = 30;

/// One usable `a=crypto` line.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoLine {
    /// The tag that names it in the answer.
    pub tag: u32,
    /// The suite, as in [`SUITES`].
    pub suite: &'static str,
    /// The master key and salt.
    pub key: [u8; KEY_LEN],
}

impl std::fmt::Debug for CryptoLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoLine")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .finish_non_exhaustive() // the key stays out of logs
    }
}

impl CryptoLine {
    /// Reads an attribute's value; `None` for a line we cannot use (or cannot read).
    pub fn parse(value: &str) -> Option<CryptoLine> {
        let mut parts = value.split_ascii_whitespace();
        let tag: u32 = parts.next()?.parse().ok()?;
        if tag > 999_999_999 {
            return None; // 1*9DIGIT
        }
        let name = parts.next()?;
        let suite = SUITES.into_iter().find(|s| s.eq_ignore_ascii_case(name))?;
        // the first key of the key-params (several are separated by ';')
        let first = parts.next()?.split(';').next()?;
        if parts.next().is_some() {
            return None; // session parameters (UNENCRYPTED_SRTP, KDR, …): not ours
        }
        let info = first
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("inline:"))
            .and(first.get(7..))?;
        let mut fields = info.split('|');
        let key = decode_base64(fields.next()?)?;
        for field in fields {
            if let Some((_, length)) = field.split_once(':') {
                // an MKI: a length of 0 means none is carried
                if length.trim() != "0" {
                    return None;
                }
            }
        }
        Some(CryptoLine {
            tag,
            suite,
            key: key.try_into().ok()?,
        })
    }

    /// The attribute's value, as this side writes it.
    pub fn value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite,
            encode_base64(&self.key)
        )
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with padding (RFC 4648 §4).
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 back to bytes (padding optional); `None` for any other character.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // leftover bits must be zero padding of a whole number of characters
    (bits < 6 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648_section_10() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(encode_base64(plain.as_bytes()), coded);
            assert_eq!(decode_base64(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(decode_base64("Zm9vYg").unwrap(), b"foob");
        assert_eq!(decode_base64("Zm9v!g=="), None);
        assert_eq!(decode_base64("Zh=="), None, "stray bits");
    }

    #[test]
    fn a_crypto_line_as_rfc_4568_writes_it() {
        // RFC 4568 §4's example key, with its lifetime and a zero-length MKI
        let line = CryptoLine::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:0",
        );
        let line = line.unwrap();
        assert_eq!((line.tag, line.suite), (1, "AES_CM_128_HMAC_SHA1_80"));
        assert_eq!(
            line.value(),
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
        );
        assert_eq!(CryptoLine::parse(&line.value()), Some(line.clone()));
        assert!(format!("{line:?}").contains("tag: 1") && !format!("{line:?}").contains("key"));
        let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        for unusable in [
            format!("1 AES_CM_128_HMAC_SHA1_80 {key}|2^20|1:4"),
            format!("1 AES_CM_128_HMAC_SHA1_80 {key} UNENCRYPTED_SRTP"),
            format!("1 AEAD_AES_256_GCM {key}"),
            format!("x AES_CM_128_HMAC_SHA1_80 {key}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 {}", &key[..30]),
            "1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com".to_owned(),
            "1 AES_CM_128_HMAC_SHA1_80".to_owned(),
            String::new(),
        ] {
            assert_eq!(CryptoLine::parse(&unusable), None, "{unusable}");
        }
        let second = CryptoLine::parse(&format!("2 aes_cm_128_hmac_sha1_32 {key};{key}")).unwrap();
        assert_eq!(second.suite, "AES_CM_128_HMAC_SHA1_32");
    }
}
