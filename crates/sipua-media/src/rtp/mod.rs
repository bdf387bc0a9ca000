//! RTP packet parsing and writing: the fixed header, CSRC list, header extension and
//! padding of RFC 3550 §5.1 and §5.3.1, plus the RTP/RTCP demultiplexing rule of
//! RFC 5761 §4 so that one socket can carry both (rtcp-mux).
//!
//! Parsing borrows the payload from the input and never panics: every length read from
//! the wire is checked against the buffer first.

pub mod rtcp;
pub mod stats;

use std::fmt;

/// The only RTP version this module speaks (RFC 3550 §5.1, field V).
pub const RTP_VERSION: u8 = 2;

/// Length of the fixed RTP header without CSRCs or extension (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;

/// A parsed RTP packet borrowing its payload from the received datagram (RFC 3550 §5.1).
///
/// CSRC identifiers and the header extension are skipped; padding is removed from `payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit M; for audio it flags the first packet of a talk spurt (RFC 3551 §4.1).
    pub marker: bool,
    /// Payload type PT (7 bits), mapped to a codec by the SDP `a=rtpmap` lines.
    pub payload_type: u8,
    /// Sequence number, incremented by one per packet sent.
    pub sequence: u16,
    /// Sampling instant of the first payload octet, in the payload clock rate.
    pub timestamp: u32,
    /// Synchronization source identifier of the sender.
    pub ssrc: u32,
    /// Number of CSRC identifiers that were present (CC); they are skipped on parse and
    /// never written.
    pub csrc_count: u8,
    /// Payload bytes, without header, CSRCs, extension or padding.
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer than the 12 bytes of the fixed header.
    TooShort,
    /// The version field is not 2; carries the version found.
    BadVersion(u8),
    /// The CSRC list announced by CC runs past the end of the datagram.
    CsrcOverrun,
    /// The header extension announced by X runs past the end of the datagram.
    ExtensionOverrun,
    /// The padding count (P bit set) is zero or larger than the space after the header.
    BadPadding,
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::TooShort => f.write_str("RTP packet shorter than the 12-byte header"),
            RtpError::BadVersion(v) => write!(f, "unsupported RTP version {v}"),
            RtpError::CsrcOverrun => f.write_str("RTP CSRC list runs past the packet end"),
            RtpError::ExtensionOverrun => {
                f.write_str("RTP header extension runs past the packet end")
            }
            RtpError::BadPadding => f.write_str("invalid RTP padding length"),
        }
    }
}

impl std::error::Error for RtpError {}

impl<'a> RtpPacket<'a> {
    /// Parses one RTP datagram (RFC 3550 §5.1); fails on a version other than 2 or on
    /// lengths (CSRC list, extension, padding) that do not fit the buffer.
    pub fn parse(bytes: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if bytes.len() < RTP_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let version = bytes[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        let padding = bytes[0] & 0x20 != 0;
        let extension = bytes[0] & 0x10 != 0;
        let csrc_count = bytes[0] & 0x0f;
        let marker = bytes[1] & 0x80 != 0;
        let payload_type = bytes[1] & 0x7f;
        let sequence = u16::from_be_bytes([bytes[2], bytes[3]]);
        let timestamp = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let ssrc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);

        let mut start = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
        if start > bytes.len() {
            return Err(RtpError::CsrcOverrun);
        }
        if extension {
            // RFC 3550 §5.3.1: 16-bit profile field, 16-bit length in 32-bit words.
            let ext_header = bytes
                .get(start..start + 4)
                .ok_or(RtpError::ExtensionOverrun)?;
            let words = usize::from(u16::from_be_bytes([ext_header[2], ext_header[3]]));
            start += 4 + 4 * words;
            if start > bytes.len() {
                return Err(RtpError::ExtensionOverrun);
            }
        }
        let mut end = bytes.len();
        if padding {
            // The last octet counts the padding octets, itself included.
            let count = usize::from(bytes[end - 1]);
            if count == 0 || count > end - start {
                return Err(RtpError::BadPadding);
            }
            end -= count;
        }
        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc_count,
            payload: &bytes[start..end],
        })
    }

    /// Appends this packet to `out` as version 2 with no padding, CSRC list or extension
    /// (`csrc_count` is ignored); only the low 7 bits of `payload_type` are used.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.reserve(RTP_HEADER_LEN + self.payload.len());
        out.push(RTP_VERSION << 6);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// Tells RTCP from RTP on a multiplexed port (RFC 5761 §4): a second octet in 192..=223
/// is an RTCP packet type (SR 200, RR 201, ...); anything else is treated as RTP.
pub fn is_rtcp(bytes: &[u8]) -> bool {
    matches!(bytes.get(1), Some(192..=223))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RtpPacket<'static> {
        RtpPacket {
            marker: true,
            payload_type: 8,
            sequence: 0xabcd,
            timestamp: 0x0102_0304,
            ssrc: 0xdead_beef,
            csrc_count: 0,
            payload: &[1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn written_packet_parses_back_identically() {
        let mut out = Vec::new();
        sample().write(&mut out);
        assert_eq!(out.len(), 17);
        assert_eq!(&out[..2], &[0x80, 0x88]);
        assert_eq!(RtpPacket::parse(&out), Ok(sample()));
    }

    #[test]
    fn write_drops_csrcs_and_masks_payload_type() {
        let mut p = sample();
        p.csrc_count = 3;
        p.payload_type = 0xff;
        let mut out = Vec::new();
        p.write(&mut out);
        let back = RtpPacket::parse(&out).unwrap();
        assert_eq!(back.csrc_count, 0);
        assert_eq!(back.payload_type, 0x7f);
        assert_eq!(back.payload, &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn parse_skips_csrcs_extension_and_padding() {
        let mut b = vec![0x80 | 0x20 | 0x10 | 2, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        b.extend_from_slice(&[0xaa; 8]); // two CSRCs
        b.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x11, 0x22, 0x33, 0x44]); // extension
        b.extend_from_slice(&[9, 8, 7]); // payload
        b.extend_from_slice(&[0, 0, 3]); // three octets of padding
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.csrc_count, 2);
        assert_eq!(p.sequence, 1);
        assert_eq!(p.timestamp, 160);
        assert_eq!(p.ssrc, 7);
        assert_eq!(p.payload, &[9, 8, 7]);
        assert!(!p.marker);
    }

    #[test]
    fn parse_rejects_malformed_headers() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::TooShort));
        let mut b = [0u8; 12];
        b[0] = 0x40;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadVersion(1)));
        b[0] = 0x81;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::CsrcOverrun));
        b[0] = 0x90;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::ExtensionOverrun));
        let mut ext = b.to_vec();
        ext.extend_from_slice(&[0, 0, 0, 2, 1, 2, 3, 4]);
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::ExtensionOverrun));
        let mut pad = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        pad[13] = 3;
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        pad[13] = 2;
        assert_eq!(RtpPacket::parse(&pad).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes() {
        let mut seed = 0x1234_5678u32;
        for len in 0..64usize {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (seed >> 24) as u8
                    })
                    .collect();
                if let Ok(p) = RtpPacket::parse(&bytes) {
                    assert!(p.payload.len() + RTP_HEADER_LEN <= len);
                }
            }
        }
    }

    #[test]
    fn rtcp_mux_demultiplexes_on_second_octet() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201]));
        assert!(is_rtcp(&[0x80, 223]));
        assert!(!is_rtcp(&[0x80, 191]));
        assert!(!is_rtcp(&[0x80, 224]));
        assert!(!is_rtcp(&[0x80, 0x00])); // PCMU
        assert!(!is_rtcp(&[0x80, 0x80 | 101])); // telephone-event with marker
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[]));
    }
}
