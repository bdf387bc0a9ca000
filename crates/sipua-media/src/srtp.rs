//! SRTP and SRTCP (RFC 3711) for plain SIP peers, keyed by SDES (RFC 4568): the
//! `AES_CM_128_HMAC_SHA1_80` and `AES_CM_128_HMAC_SHA1_32` suites (RFC 4568 §6.2), session keys
//! derived from the master key and salt (RFC 3711 §4.3, key derivation rate 0), the rollover
//! counter kept and estimated per SSRC (§3.3.1), and replay protection with a 64-packet window
//! (§3.3.2). Sans IO: a context turns packets into protected packets and back; the stream
//! owns one per direction. The AES and HMAC-SHA1 primitives are AWS-LC's (through
//! `aws-lc-rs`, the same library WebRTC's DTLS-SRTP uses here).

use std::fmt;

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

/// Bytes of an SDES master key and salt together (`inline:` carries them as one string).
pub const MASTER_LEN: usize = crate::sdp::crypto::KEY_LEN;
/// SSRCs a context keeps state for; the least recently seen is forgotten past it.
const MAX_STREAMS: usize = 8;
/// Replay window (RFC 3711 §3.3.2 asks for at least 64).
const WINDOW: u64 = 64;
/// The SRTCP authentication tag: 80 bits for both suites (RFC 4568 §6.2.2).
const SRTCP_TAG: usize = 10;

/// A crypto suite of RFC 4568 §6.2 that both ends must name alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpSuite {
    /// AES-128 in counter mode, HMAC-SHA1 tags of 80 bits (the one every SDES peer has).
    AesCm128HmacSha1_80,
    /// The same with 32-bit RTP tags (SRTCP keeps 80 bits).
    AesCm128HmacSha1_32,
}

impl SrtpSuite {
    /// Every suite, in the order we offer them.
    pub const ALL: [SrtpSuite; 2] = [
        SrtpSuite::AesCm128HmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32,
    ];

    /// The name in `a=crypto`.
    pub fn name(self) -> &'static str {
        // the names SDP carries (`sdp::crypto::SUITES`, in the same order)
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => crate::sdp::crypto::SUITES[0],
            SrtpSuite::AesCm128HmacSha1_32 => crate::sdp::crypto::SUITES[1],
        }
    }

    /// The suite of a name (as RFC 4568 writes it; case-insensitive).
    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Bytes of the RTP authentication tag.
    fn rtp_tag(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 10,
            SrtpSuite::AesCm128HmacSha1_32 => 4,
        }
    }
}

impl fmt::Display for SrtpSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A master key (16 bytes) and salt (14 bytes), as SDES carries them.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(pub [u8; MASTER_LEN]);

impl MasterKey {
    /// A fresh key from the system's secure random source.
    pub fn random() -> Result<MasterKey, SrtpError> {
        let mut k = [0u8; MASTER_LEN];
        aws_lc_rs::rand::fill(&mut k).map_err(|_| SrtpError::Crypto)?;
        Ok(MasterKey(k))
    }

    fn key(&self) -> &[u8] {
        &self.0[..16]
    }

    fn salt(&self) -> &[u8] {
        &self.0[16..]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)") // never in a log
    }
}

/// Why a packet was not protected or not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    /// Shorter than its header and tag.
    TooShort,
    /// The authentication tag does not match (forged, corrupted, or the wrong key).
    AuthFailed,
    /// Already received (RFC 3711 §3.3.2).
    Replayed,
    /// Older than the replay window.
    TooOld,
    /// The crypto library failed.
    Crypto,
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrtpError::TooShort => "packet too short for SRTP",
            SrtpError::AuthFailed => "SRTP authentication failed",
            SrtpError::Replayed => "SRTP packet replayed",
            SrtpError::TooOld => "SRTP packet older than the replay window",
            SrtpError::Crypto => "crypto library error",
        })
    }
}

impl std::error::Error for SrtpError {}

/// The keys of one of RTP or RTCP (RFC 3711 §4.3.1).
struct SessionKeys {
    cipher: EncryptingKey,
    salt: [u8; 14],
    auth: hmac::Key,
}

impl SessionKeys {
    /// Derives the encryption, authentication and salt keys with labels `base`, `base + 1`,
    /// `base + 2` (0 for SRTP, 3 for SRTCP).
    fn derive(master: &MasterKey, base: u8) -> Result<SessionKeys, SrtpError> {
        let prf = aes_ctr(master.key())?;
        let derive = |label: u8, out: &mut [u8]| -> Result<(), SrtpError> {
            // x = (label || r) XOR master salt, r = 0 with a derivation rate of 0; the
            // keystream from x * 2^16 is the key
            let mut iv = [0u8; 16];
            iv[..14].copy_from_slice(master.salt());
            iv[7] ^= label;
            out.fill(0);
            prf.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
                .map(|_| ())
                .map_err(|_| SrtpError::Crypto)
        };
        let mut key = [0u8; 16];
        let mut auth = [0u8; 20];
        let mut salt = [0u8; 14];
        derive(base, &mut key)?;
        derive(base + 1, &mut auth)?;
        derive(base + 2, &mut salt)?;
        Ok(SessionKeys {
            cipher: aes_ctr(&key)?,
            salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth),
        })
    }

    /// XORs `data` with the keystream of packet `index` of `ssrc` (RFC 3711 §4.1.1).
    fn crypt(&self, ssrc: u32, index: u64, data: &mut [u8]) -> Result<(), SrtpError> {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= s;
        }
        self.cipher
            .less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map(|_| ())
            .map_err(|_| SrtpError::Crypto)
    }

    /// The full HMAC-SHA1 of `parts` one after the other.
    fn tag(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.auth);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign()
    }
}

fn aes_ctr(key: &[u8]) -> Result<EncryptingKey, SrtpError> {
    let key = UnboundCipherKey::new(&AES_128, key).map_err(|_| SrtpError::Crypto)?;
    EncryptingKey::ctr(key).map_err(|_| SrtpError::Crypto)
}

/// What a context knows of one SSRC.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// RTP: the rollover counter and the highest sequence number (`s_l`), once one arrived.
    roc: u32,
    highest: Option<u16>,
    /// Bit i: packet `highest index - i` arrived.
    window: u64,
    /// SRTCP: the highest index received, and its window.
    rtcp_highest: Option<u32>,
    rtcp_window: u64,
    /// When this stream was last used (a counter), to forget the stalest.
    used: u64,
}

/// One direction of an SRTP session: our sending, or the peer's (see the module
/// documentation). Each packet goes through [`protect_rtp`](Self::protect_rtp) /
/// [`protect_rtcp`](Self::protect_rtcp) on the way out, or the `unprotect` pair on the way in.
pub struct SrtpContext {
    suite: SrtpSuite,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    streams: Vec<Stream>,
    /// The next SRTCP index we send (31 bits).
    srtcp_index: u32,
    clock: u64,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

/// Where an RTP packet's payload starts (after CSRCs and any header extension).
fn rtp_header_len(p: &[u8]) -> Option<usize> {
    let first = *p.first()?;
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = p.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (p.len() >= len).then_some(len)
}

fn be32(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

impl SrtpContext {
    /// A context for `suite` under `key`.
    pub fn new(suite: SrtpSuite, key: &MasterKey) -> Result<SrtpContext, SrtpError> {
        Ok(SrtpContext {
            suite,
            rtp: SessionKeys::derive(key, 0)?,
            rtcp: SessionKeys::derive(key, 3)?,
            streams: Vec::new(),
            srtcp_index: 0,
            clock: 0,
        })
    }

    /// The suite in use.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// The state of `ssrc`, made when new (forgetting the stalest past [`MAX_STREAMS`]).
    fn stream(&mut self, ssrc: u32) -> &mut Stream {
        self.clock += 1;
        let clock = self.clock;
        let at = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None => {
                if self.streams.len() >= MAX_STREAMS {
                    let stalest = (0..self.streams.len())
                        .min_by_key(|&i| self.streams[i].used)
                        .unwrap_or(0);
                    self.streams.swap_remove(stalest);
                }
                self.streams.push(Stream {
                    ssrc,
                    roc: 0,
                    highest: None,
                    window: 0,
                    rtcp_highest: None,
                    rtcp_window: 0,
                    used: clock,
                });
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[at];
        s.used = clock;
        s
    }

    /// Encrypts and authenticates an RTP packet in place (the tag is appended).
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let header = rtp_header_len(packet).ok_or(SrtpError::TooShort)?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = be32(packet, 8).ok_or(SrtpError::TooShort)?;
        let s = self.stream(ssrc);
        // the sender's rollover counter: up one each time the sequence number wraps
        if let Some(last) = s.highest {
            if seq < last && last - seq > 0x8000 {
                s.roc = s.roc.wrapping_add(1);
            }
            if seq.wrapping_sub(last) < 0x8000 {
                s.highest = Some(seq);
            }
        } else {
            s.highest = Some(seq);
        }
        let roc = s.roc;
        let index = (u64::from(roc) << 16) | u64::from(seq);
        self.rtp.crypt(ssrc, index, &mut packet[header..])?;
        let tag = self.rtp.tag(&[packet, &roc.to_be_bytes()]);
        packet.extend_from_slice(&tag.as_ref()[..self.suite.rtp_tag()]);
        Ok(())
    }

    /// Checks and decrypts an SRTP packet in place (the tag is removed). A forged, replayed
    /// or too old packet is refused and leaves the state as it was.
    pub fn unprotect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let tag_len = self.suite.rtp_tag();
        let body = packet
            .len()
            .checked_sub(tag_len)
            .ok_or(SrtpError::TooShort)?;
        let header = rtp_header_len(&packet[..body]).ok_or(SrtpError::TooShort)?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = be32(packet, 8).ok_or(SrtpError::TooShort)?;
        let s = *self.stream(ssrc);
        // the index guessed from the highest so far (RFC 3711 §3.3.1)
        let (roc, index) = match s.highest {
            None => (0, u64::from(seq)),
            Some(s_l) => {
                let v = if s_l < 0x8000 {
                    if seq > s_l && seq - s_l > 0x8000 {
                        s.roc.checked_sub(1)
                    } else {
                        Some(s.roc)
                    }
                } else if s_l - 0x8000 > seq {
                    Some(s.roc.wrapping_add(1))
                } else {
                    Some(s.roc)
                };
                let v = v.ok_or(SrtpError::TooOld)?;
                (v, (u64::from(v) << 16) | u64::from(seq))
            }
        };
        let highest = s.highest.map(|h| (u64::from(s.roc) << 16) | u64::from(h));
        if let Some(h) = highest {
            if index <= h {
                let age = h - index;
                if age >= WINDOW {
                    return Err(SrtpError::TooOld);
                }
                if s.window & (1 << age) != 0 {
                    return Err(SrtpError::Replayed);
                }
            }
        }
        let tag = self.rtp.tag(&[&packet[..body], &roc.to_be_bytes()]);
        aws_lc_rs::constant_time::verify_slices_are_equal(
            &tag.as_ref()[..tag_len],
            &packet[body..],
        )
        .map_err(|_| SrtpError::AuthFailed)?;
        self.rtp.crypt(ssrc, index, &mut packet[header..body])?;
        packet.truncate(body);
        let s = self.stream(ssrc);
        match highest {
            Some(h) if index <= h => s.window |= 1 << (h - index),
            Some(h) => {
                let ahead = index - h;
                s.window = if ahead >= WINDOW {
                    1
                } else {
                    (s.window << ahead) | 1
                };
                s.roc = roc;
                s.highest = Some(seq);
            }
            None => {
                s.window = 1;
                s.roc = roc;
                s.highest = Some(seq);
            }
        }
        Ok(())
    }

    /// Encrypts and authenticates an RTCP compound packet in place (RFC 3711 §3.4: the
    /// first 8 bytes stay clear; the E flag and SRTCP index, then the tag, are appended).
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let ssrc = be32(packet, 4).ok_or(SrtpError::TooShort)?;
        let index = self.srtcp_index;
        self.srtcp_index = (self.srtcp_index + 1) & 0x7fff_ffff;
        self.rtcp.crypt(ssrc, u64::from(index), &mut packet[8..])?;
        packet.extend_from_slice(&(0x8000_0000 | index).to_be_bytes());
        let tag = self.rtcp.tag(&[packet]);
        packet.extend_from_slice(&tag.as_ref()[..SRTCP_TAG]);
        Ok(())
    }

    /// Checks and decrypts an SRTCP packet in place.
    pub fn unprotect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let body = packet
            .len()
            .checked_sub(SRTCP_TAG)
            .filter(|&b| b >= 12)
            .ok_or(SrtpError::TooShort)?;
        let ssrc = be32(packet, 4).ok_or(SrtpError::TooShort)?;
        let e_index = be32(packet, body - 4).ok_or(SrtpError::TooShort)?;
        let (encrypted, index) = (e_index & 0x8000_0000 != 0, e_index & 0x7fff_ffff);
        let s = *self.stream(ssrc);
        if let Some(h) = s.rtcp_highest {
            if index <= h {
                let age = u64::from(h - index);
                if age >= WINDOW {
                    return Err(SrtpError::TooOld);
                }
                if s.rtcp_window & (1 << age) != 0 {
                    return Err(SrtpError::Replayed);
                }
            }
        }
        let tag = self.rtcp.tag(&[&packet[..body]]);
        aws_lc_rs::constant_time::verify_slices_are_equal(
            &tag.as_ref()[..SRTCP_TAG],
            &packet[body..],
        )
        .map_err(|_| SrtpError::AuthFailed)?;
        if encrypted {
            self.rtcp
                .crypt(ssrc, u64::from(index), &mut packet[8..body - 4])?;
        }
        packet.truncate(body - 4);
        let s = self.stream(ssrc);
        match s.rtcp_highest {
            Some(h) if index <= h => s.rtcp_window |= 1 << (h - index),
            Some(h) => {
                let ahead = u64::from(index - h);
                s.rtcp_window = if ahead >= WINDOW {
                    1
                } else {
                    (s.rtcp_window << ahead) | 1
                };
                s.rtcp_highest = Some(index);
            }
            None => {
                s.rtcp_window = 1;
                s.rtcp_highest = Some(index);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The master key and salt of RFC 3711 appendix B.3 (and libsrtp's known-answer test).
    fn rfc_key() -> MasterKey {
        let mut k = [0u8; MASTER_LEN];
        k[..16].copy_from_slice(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        k[16..].copy_from_slice(&hex("0EC675AD498AFEEBB6960B3AABE6"));
        MasterKey(k)
    }

    #[test]
    fn session_keys_are_those_of_rfc_3711_b3() {
        let keys = SessionKeys::derive(&rfc_key(), 0).unwrap();
        assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        // the cipher key, seen through its keystream: AES-CM of zeros at IV 0 is AES(key, 0)
        let mut derived = [0u8; 16];
        let prf = aes_ctr(rfc_key().key()).unwrap();
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(rfc_key().salt());
        prf.less_safe_encrypt(
            &mut derived,
            EncryptionContext::Iv128(FixedLength::from(iv)),
        )
        .unwrap();
        assert_eq!(derived.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut auth = [0u8; 20];
        iv[7] ^= 1;
        prf.less_safe_encrypt(&mut auth, EncryptionContext::Iv128(FixedLength::from(iv)))
            .unwrap();
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    /// libsrtp's reference packets: what every SDES peer computes.
    #[test]
    fn protects_as_the_reference_implementation_does() {
        let mut tx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &rfc_key()).unwrap();
        let plain = hex("800f1234decafbadcafebabe abababababababababababababababab");
        let mut p = plain.clone();
        tx.protect_rtp(&mut p).unwrap();
        assert_eq!(
            p,
            hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb")
        );
        let mut rx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &rfc_key()).unwrap();
        rx.unprotect_rtp(&mut p).unwrap();
        assert_eq!(p, plain);

        // SRTCP: index 0 goes first; the reference packet is index 1
        let rtcp = hex("81c8000bcafebabe abababababababababababababababab");
        let mut first = rtcp.clone();
        tx.protect_rtcp(&mut first).unwrap();
        let mut c = rtcp.clone();
        tx.protect_rtcp(&mut c).unwrap();
        assert_eq!(
            c,
            hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798")
        );
        rx.unprotect_rtcp(&mut c).unwrap();
        assert_eq!(c, rtcp);
        rx.unprotect_rtcp(&mut first).unwrap();
        assert_eq!(first, rtcp);
    }

    fn packet(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn a_forged_replayed_or_stale_packet_is_refused() {
        for suite in SrtpSuite::ALL {
            let key = MasterKey::random().unwrap();
            let mut tx = SrtpContext::new(suite, &key).unwrap();
            let mut rx = SrtpContext::new(suite, &key).unwrap();
            let mut sent = Vec::new();
            for seq in 0..100u16 {
                let mut p = packet(seq, 7, &[seq as u8; 20]);
                tx.protect_rtp(&mut p).unwrap();
                assert_eq!(p.len(), 12 + 20 + suite.rtp_tag());
                sent.push(p);
            }
            // out of order within the window is fine, once
            for i in [0usize, 2, 1, 5, 4, 3] {
                let mut p = sent[i].clone();
                rx.unprotect_rtp(&mut p).unwrap();
                assert_eq!(p, packet(i as u16, 7, &[i as u8; 20]), "{suite}");
            }
            let mut again = sent[4].clone();
            assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
            assert_eq!(again, sent[4], "a refused packet is left as it was");
            let mut p = sent[99].clone();
            rx.unprotect_rtp(&mut p).unwrap();
            // 6 is 93 behind 99: outside the window
            let mut old = sent[6].clone();
            assert_eq!(rx.unprotect_rtp(&mut old), Err(SrtpError::TooOld));
            // one flipped bit anywhere fails the tag
            let mut forged = sent[98].clone();
            forged[20] ^= 1;
            assert_eq!(rx.unprotect_rtp(&mut forged), Err(SrtpError::AuthFailed));
            let mut ok = sent[98].clone();
            rx.unprotect_rtp(&mut ok).unwrap();
            // another key
            let mut stranger = SrtpContext::new(suite, &MasterKey::random().unwrap()).unwrap();
            let mut p = sent[97].clone();
            assert_eq!(stranger.unprotect_rtp(&mut p), Err(SrtpError::AuthFailed));
            let mut short = vec![0x80, 0, 0];
            assert_eq!(rx.unprotect_rtp(&mut short), Err(SrtpError::TooShort));
            assert_eq!(tx.protect_rtp(&mut short), Err(SrtpError::TooShort));
        }
    }

    #[test]
    fn the_rollover_counter_follows_a_wrapping_sequence() {
        let key = MasterKey::random().unwrap();
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        let mut tx = SrtpContext::new(suite, &key).unwrap();
        let mut rx = SrtpContext::new(suite, &key).unwrap();
        // four wraps, with a late packet from before each wrap arriving after it
        let mut seq = 65_000u16;
        let mut late = None;
        for i in 0..200_000u32 {
            let mut p = packet(seq, 9, &i.to_be_bytes());
            tx.protect_rtp(&mut p).unwrap();
            if seq == 65_535 {
                late = Some((p, i));
                seq = seq.wrapping_add(1);
                continue;
            }
            rx.unprotect_rtp(&mut p)
                .unwrap_or_else(|e| panic!("{i}: {e}"));
            assert_eq!(p[12..], i.to_be_bytes());
            if seq == 3 {
                let (mut p, j) = late.take().unwrap();
                rx.unprotect_rtp(&mut p).unwrap();
                assert_eq!(p[12..], j.to_be_bytes());
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(rx.streams[0].roc, 4); // wrapped after packets 535, 66 071, 131 607, 197 143
    }

    #[test]
    fn srtcp_refuses_replay_and_forgery_and_takes_unencrypted_reports() {
        let key = MasterKey::random().unwrap();
        let suite = SrtpSuite::AesCm128HmacSha1_32;
        let mut tx = SrtpContext::new(suite, &key).unwrap();
        let mut rx = SrtpContext::new(suite, &key).unwrap();
        let report = hex("81c90007 0000002a 0000000b 00000000 00000000 00000000 00000000 00000000");
        let mut p = report.clone();
        tx.protect_rtcp(&mut p).unwrap();
        assert_eq!(p.len(), report.len() + 4 + 10);
        let mut copy = p.clone();
        rx.unprotect_rtcp(&mut p).unwrap();
        assert_eq!(p, report);
        assert_eq!(rx.unprotect_rtcp(&mut copy), Err(SrtpError::Replayed));
        let mut q = report.clone();
        tx.protect_rtcp(&mut q).unwrap();
        let last = q.len() - 1;
        q[last] ^= 0x80;
        assert_eq!(rx.unprotect_rtcp(&mut q), Err(SrtpError::AuthFailed));
        assert_eq!(
            rx.unprotect_rtcp(&mut vec![0; 20]),
            Err(SrtpError::TooShort)
        );
    }

    #[test]
    fn state_is_kept_for_a_bounded_number_of_ssrcs() {
        let key = MasterKey::random().unwrap();
        let mut rx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key).unwrap();
        let mut tx = SrtpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key).unwrap();
        for ssrc in 0..1000 {
            let mut p = packet(1, ssrc, &[1; 4]);
            tx.protect_rtp(&mut p).unwrap();
            rx.unprotect_rtp(&mut p).unwrap();
        }
        assert!(rx.streams.len() <= MAX_STREAMS && tx.streams.len() <= MAX_STREAMS);
        assert_eq!(
            SrtpSuite::from_name("aes_cm_128_hmac_sha1_32"),
            Some(SrtpSuite::AesCm128HmacSha1_32)
        );
        assert_eq!(SrtpSuite::from_name("AEAD_AES_128_GCM"), None);
        assert_eq!(format!("{key:?}"), "MasterKey(…)");
    }
}
