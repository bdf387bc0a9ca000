//! RTCP packets (RFC 3550 §6): parsing of compound packets (§6.1) holding sender
//! reports (§6.4.1), receiver reports (§6.4.2), SDES CNAME items (§6.5) and BYE (§6.6),
//! and writing of SR/RR + SDES (+ BYE) compounds. Also the NTP timestamp helpers of §4
//! and the round-trip time computation of §6.4.1 (LSR/DLSR).
//!
//! Parsing is bounded ([`MAX_PACKETS`] packets, at most 31 blocks or chunks each, items of
//! at most 255 octets) and checks every length against the buffer. A compound that does not
//! start with SR/RR is accepted too (reduced-size RTCP, RFC 5506).

use std::fmt;
use std::time::Duration;

/// Packet type of a sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// Packet type of a receiver report (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// Packet type of source description items (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// Packet type of a goodbye packet (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// Packet type of an application-defined packet (RFC 3550 §6.7).
pub const PT_APP: u8 = 204;

/// Most packets read from one compound datagram; the rest is an error, bounding memory.
pub const MAX_PACKETS: usize = 16;

/// Most report blocks, SDES chunks or BYE sources one packet can carry (5-bit count).
const MAX_COUNT: usize = 31;

/// SDES item type of the canonical name (RFC 3550 §6.5.1).
const SDES_CNAME: u8 = 1;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One reception report block (RFC 3550 §6.4.1), carried in SR and RR packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// SSRC of the source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed on the wire; clamped when written).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles in the high 16 bits).
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from the source, or 0.
    pub last_sr: u32,
    /// Delay since that SR was received, in 1/65536 s units, or 0.
    pub delay_since_last_sr: u32,
}

/// One SDES chunk reduced to what a UA needs: its source and CNAME item, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    /// Source the items describe.
    pub ssrc: u32,
    /// Canonical name (lossily decoded as UTF-8), if the chunk had a CNAME item.
    pub cname: Option<String>,
}

/// One packet of a parsed compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// Sender report: sender info plus reception reports (RFC 3550 §6.4.1).
    SenderReport {
        /// SSRC of the sender.
        ssrc: u32,
        /// 64-bit NTP wallclock time the report was sent.
        ntp: u64,
        /// RTP timestamp matching `ntp`.
        rtp_timestamp: u32,
        /// Sender's packet count (wraps at 2^32).
        packet_count: u32,
        /// Sender's payload octet count (wraps at 2^32).
        octet_count: u32,
        /// Reception report blocks.
        reports: Vec<ReportBlock>,
    },
    /// Receiver report (RFC 3550 §6.4.2).
    ReceiverReport {
        /// SSRC of the packet's sender.
        ssrc: u32,
        /// Reception report blocks.
        reports: Vec<ReportBlock>,
    },
    /// Source description packet, CNAME items only (RFC 3550 §6.5).
    Sdes {
        /// Chunks in packet order.
        chunks: Vec<SdesChunk>,
    },
    /// Goodbye: the listed sources are leaving (RFC 3550 §6.6).
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
        /// Optional reason text (lossily decoded as UTF-8).
        reason: Option<String>,
    },
    /// Any other packet type (APP, feedback, XR, ...), skipped.
    Other {
        /// The packet type octet.
        packet_type: u8,
    },
}

/// Why a datagram is not a valid (compound) RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpError {
    /// The datagram is empty.
    Empty,
    /// A header, length field or body runs past the end of the data.
    Truncated,
    /// A packet's version field is not 2; carries the version found.
    BadVersion(u8),
    /// The padding count of a packet is zero or larger than its body.
    BadPadding,
    /// More than [`MAX_PACKETS`] packets in one datagram.
    TooManyPackets,
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtcpError::Empty => f.write_str("empty RTCP datagram"),
            RtcpError::Truncated => f.write_str("truncated RTCP packet"),
            RtcpError::BadVersion(v) => write!(f, "unsupported RTCP version {v}"),
            RtcpError::BadPadding => f.write_str("invalid RTCP padding length"),
            RtcpError::TooManyPackets => {
                write!(f, "more than {MAX_PACKETS} packets in one RTCP compound")
            }
        }
    }
}

impl std::error::Error for RtcpError {}

/// The sender-info section of an SR (RFC 3550 §6.4.1), used when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP wallclock time of sending (see [`ntp_timestamp`]).
    pub ntp: u64,
    /// RTP timestamp corresponding to `ntp` in the media clock.
    pub rtp_timestamp: u32,
    /// Packets sent since the start of the stream (wrapping).
    pub packet_count: u32,
    /// Payload octets sent since the start of the stream (wrapping).
    pub octet_count: u32,
}

/// The report that opens an outgoing compound: SR while we send media, RR otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// Sender report with its sender info and at most 31 blocks (extra ones are dropped).
    Sender {
        /// Our SSRC.
        ssrc: u32,
        /// Sender info section.
        info: SenderInfo,
        /// Reception reports about the sources we hear.
        reports: &'a [ReportBlock],
    },
    /// Receiver report with at most 31 blocks (extra ones are dropped).
    Receiver {
        /// Our SSRC.
        ssrc: u32,
        /// Reception reports about the sources we hear.
        reports: &'a [ReportBlock],
    },
}

impl Report<'_> {
    /// Our SSRC, as carried in the report.
    pub fn ssrc(&self) -> u32 {
        match self {
            Report::Sender { ssrc, .. } | Report::Receiver { ssrc, .. } => *ssrc,
        }
    }
}

/// Parses a compound RTCP datagram (RFC 3550 §6.1) into its packets, in order.
///
/// Each packet's version and length are checked and padding is stripped; unknown packet
/// types become [`RtcpPacket::Other`]; profile extensions after report blocks are skipped.
pub fn parse_compound(bytes: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if bytes.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if packets.len() == MAX_PACKETS {
            return Err(RtcpError::TooManyPackets);
        }
        if rest.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let padding = rest[0] & 0x20 != 0;
        let count = usize::from(rest[0] & 0x1f);
        let packet_type = rest[1];
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        if len > rest.len() {
            return Err(RtcpError::Truncated);
        }
        let mut body = &rest[4..len];
        if padding {
            let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = &body[..body.len() - pad];
        }
        packets.push(parse_one(packet_type, count, body)?);
        rest = &rest[len..];
    }
    Ok(packets)
}

/// Parses the body (after the 4-byte common header, padding removed) of one packet.
fn parse_one(packet_type: u8, count: usize, body: &[u8]) -> Result<RtcpPacket, RtcpError> {
    let mut r = Reader { buf: body, pos: 0 };
    match packet_type {
        PT_SR => {
            let ssrc = r.u32()?;
            let ntp = (u64::from(r.u32()?) << 32) | u64::from(r.u32()?);
            let rtp_timestamp = r.u32()?;
            let packet_count = r.u32()?;
            let octet_count = r.u32()?;
            let reports = read_blocks(&mut r, count)?;
            Ok(RtcpPacket::SenderReport {
                ssrc,
                ntp,
                rtp_timestamp,
                packet_count,
                octet_count,
                reports,
            })
        }
        PT_RR => {
            let ssrc = r.u32()?;
            let reports = read_blocks(&mut r, count)?;
            Ok(RtcpPacket::ReceiverReport { ssrc, reports })
        }
        PT_SDES => {
            let mut chunks = Vec::with_capacity(count.min(MAX_COUNT));
            for _ in 0..count {
                chunks.push(read_sdes_chunk(&mut r)?);
            }
            Ok(RtcpPacket::Sdes { chunks })
        }
        PT_BYE => {
            let mut ssrcs = Vec::with_capacity(count.min(MAX_COUNT));
            for _ in 0..count {
                ssrcs.push(r.u32()?);
            }
            let reason = if r.remaining() > 0 {
                let n = usize::from(r.u8()?);
                Some(String::from_utf8_lossy(r.take(n)?).into_owned())
            } else {
                None
            };
            Ok(RtcpPacket::Bye { ssrcs, reason })
        }
        other => Ok(RtcpPacket::Other { packet_type: other }),
    }
}

/// Reads `count` 24-byte report blocks.
fn read_blocks(r: &mut Reader<'_>, count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    let mut blocks = Vec::with_capacity(count.min(MAX_COUNT));
    for _ in 0..count {
        let ssrc = r.u32()?;
        let lost_word = r.u32()?;
        // Low 24 bits are a two's-complement count: shift up, then arithmetic shift down.
        let cumulative_lost = ((lost_word << 8) as i32) >> 8;
        blocks.push(ReportBlock {
            ssrc,
            fraction_lost: (lost_word >> 24) as u8,
            cumulative_lost,
            highest_seq: r.u32()?,
            jitter: r.u32()?,
            last_sr: r.u32()?,
            delay_since_last_sr: r.u32()?,
        });
    }
    Ok(blocks)
}

/// Reads one SDES chunk: SSRC, items up to the null item, then padding to 32 bits.
fn read_sdes_chunk(r: &mut Reader<'_>) -> Result<SdesChunk, RtcpError> {
    let start = r.pos;
    let ssrc = r.u32()?;
    let mut cname = None;
    loop {
        let item_type = r.u8()?;
        if item_type == 0 {
            break;
        }
        let len = usize::from(r.u8()?);
        let text = r.take(len)?;
        if item_type == SDES_CNAME && cname.is_none() {
            cname = Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    // Skip the null octets padding the chunk to a 32-bit boundary.
    let used = r.pos - start;
    let pad = (4 - used % 4) % 4;
    r.take(pad.min(r.remaining()))?;
    Ok(SdesChunk { ssrc, cname })
}

/// Bounds-checked big-endian reader over a packet body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RtcpError> {
        let end = self.pos.checked_add(n).ok_or(RtcpError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(RtcpError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, RtcpError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, RtcpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Appends a common header and returns its offset so the length can be patched later.
fn begin_packet(out: &mut Vec<u8>, count: usize, packet_type: u8) -> usize {
    let at = out.len();
    out.push(0x80 | (count.min(MAX_COUNT) as u8));
    out.push(packet_type);
    out.extend_from_slice(&[0, 0]);
    at
}

/// Pads the packet started at `at` to 32 bits with zeros and writes its length field.
fn finish_packet(out: &mut Vec<u8>, at: usize) {
    while !(out.len() - at).is_multiple_of(4) {
        out.push(0);
    }
    let words = (out.len() - at) / 4 - 1;
    let words = u16::try_from(words).unwrap_or(u16::MAX);
    out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
}

/// Appends one 24-byte report block, clamping `cumulative_lost` to 24 signed bits.
fn write_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
    out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

/// Appends an SR or RR packet (RFC 3550 §6.4); report blocks beyond 31 are dropped.
pub fn write_report(out: &mut Vec<u8>, report: &Report<'_>) {
    match report {
        Report::Sender {
            ssrc,
            info,
            reports,
        } => {
            let reports = &reports[..reports.len().min(MAX_COUNT)];
            let at = begin_packet(out, reports.len(), PT_SR);
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&info.ntp.to_be_bytes());
            out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&info.packet_count.to_be_bytes());
            out.extend_from_slice(&info.octet_count.to_be_bytes());
            reports.iter().for_each(|b| write_block(out, b));
            finish_packet(out, at);
        }
        Report::Receiver { ssrc, reports } => {
            let reports = &reports[..reports.len().min(MAX_COUNT)];
            let at = begin_packet(out, reports.len(), PT_RR);
            out.extend_from_slice(&ssrc.to_be_bytes());
            reports.iter().for_each(|b| write_block(out, b));
            finish_packet(out, at);
        }
    }
}

/// Returns the longest prefix of `s` of at most 255 bytes ending on a char boundary.
fn clip_255(s: &str) -> &str {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends an SDES packet with one chunk holding a CNAME item (RFC 3550 §6.5.1);
/// the name is cut to 255 bytes on a char boundary.
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let cname = clip_255(cname);
    let at = begin_packet(out, 1, PT_SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname.as_bytes());
    out.push(0); // null item ends the list; finish_packet pads the chunk to 32 bits
    finish_packet(out, at);
}

/// Appends a BYE packet (RFC 3550 §6.6) for up to 31 sources; an empty `reason` is
/// omitted, a long one is cut to 255 bytes.
pub fn write_bye(out: &mut Vec<u8>, ssrcs: &[u32], reason: &str) {
    let ssrcs = &ssrcs[..ssrcs.len().min(MAX_COUNT)];
    let at = begin_packet(out, ssrcs.len(), PT_BYE);
    ssrcs
        .iter()
        .for_each(|s| out.extend_from_slice(&s.to_be_bytes()));
    let reason = clip_255(reason);
    if !reason.is_empty() {
        out.push(reason.len() as u8);
        out.extend_from_slice(reason.as_bytes());
    }
    finish_packet(out, at);
}

/// Appends a full compound packet (RFC 3550 §6.1): `first` (SR or RR), an SDES CNAME for
/// its SSRC and, if `bye` is `Some(reason)`, a BYE for that SSRC (empty reason = none).
pub fn write_compound(out: &mut Vec<u8>, first: &Report<'_>, cname: &str, bye: Option<&str>) {
    write_report(out, first);
    write_sdes_cname(out, first.ssrc(), cname);
    if let Some(reason) = bye {
        write_bye(out, &[first.ssrc()], reason);
    }
}

/// Converts wallclock time since the Unix epoch to a 64-bit NTP timestamp (RFC 3550 §4):
/// seconds since 1900 in the high word (wrapping per NTP era), binary fraction in the low.
pub fn ntp_timestamp(wallclock_since_unix_epoch: Duration) -> u64 {
    let secs = wallclock_since_unix_epoch
        .as_secs()
        .wrapping_add(NTP_UNIX_OFFSET)
        & 0xffff_ffff;
    let frac = (u64::from(wallclock_since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp, as carried in LSR (RFC 3550 §6.4.1).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Converts a duration to 16.16 fixed-point seconds (the DLSR unit), saturating at
/// `u32::MAX` (about 18 hours).
pub fn duration_to_ntp_short(d: Duration) -> u32 {
    let units = (d.as_nanos() << 16) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// Converts 16.16 fixed-point seconds (LSR/DLSR arithmetic) to a duration.
pub fn ntp_short_to_duration(v: u32) -> Duration {
    let nanos = (u64::from(v & 0xffff) * 1_000_000_000) >> 16;
    Duration::new(u64::from(v >> 16), nanos as u32)
}

/// Round-trip time from a report block about our stream (RFC 3550 §6.4.1):
/// `now - LSR - DLSR`, where `now_ntp_middle32` is [`ntp_middle32`] of the arrival time.
/// `None` if the block carries no LSR or the result would be negative (clock trouble).
pub fn rtt(now_ntp_middle32: u32, block: &ReportBlock) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let since_sr = now_ntp_middle32.wrapping_sub(block.last_sr);
    // A "negative" elapsed time shows up as a huge wrapped value.
    if since_sr >= 0x8000_0000 || since_sr < block.delay_since_last_sr {
        return None;
    }
    Some(ntp_short_to_duration(since_sr - block.delay_since_last_sr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32, lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: lost,
            highest_seq: 0x0001_0005,
            jitter: 42,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 0x0001_8000,
        }
    }

    #[test]
    fn sender_compound_with_bye_parses_back() {
        let blocks = [block(7, 12), block(8, -3)];
        let info = SenderInfo {
            ntp: 0xe000_0000_8000_0000,
            rtp_timestamp: 16_000,
            packet_count: 100,
            octet_count: 16_000,
        };
        let first = Report::Sender {
            ssrc: 0xabcd,
            info,
            reports: &blocks,
        };
        let mut out = Vec::new();
        write_compound(&mut out, &first, "alice@host", Some("hangup"));
        assert_eq!(out.len() % 4, 0);
        let parsed = parse_compound(&out).unwrap();
        assert_eq!(
            parsed,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 0xabcd,
                    ntp: info.ntp,
                    rtp_timestamp: 16_000,
                    packet_count: 100,
                    octet_count: 16_000,
                    reports: blocks.to_vec(),
                },
                RtcpPacket::Sdes {
                    chunks: vec![SdesChunk {
                        ssrc: 0xabcd,
                        cname: Some("alice@host".into())
                    }]
                },
                RtcpPacket::Bye {
                    ssrcs: vec![0xabcd],
                    reason: Some("hangup".into())
                },
            ]
        );
    }

    #[test]
    fn receiver_compound_without_bye_parses_back() {
        let first = Report::Receiver {
            ssrc: 5,
            reports: &[],
        };
        let mut out = Vec::new();
        write_compound(&mut out, &first, "abcd", None);
        // RR: 8 bytes; SDES: header 4 + ssrc 4 + item 2+4 + null 1 -> padded to 16.
        assert_eq!(out.len(), 8 + 16);
        assert!(crate::rtp::is_rtcp(&out));
        let parsed = parse_compound(&out).unwrap();
        assert_eq!(
            parsed[0],
            RtcpPacket::ReceiverReport {
                ssrc: 5,
                reports: vec![]
            }
        );
        assert_eq!(
            parsed[1],
            RtcpPacket::Sdes {
                chunks: vec![SdesChunk {
                    ssrc: 5,
                    cname: Some("abcd".into())
                }]
            }
        );
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed_and_clamped() {
        let blocks = [
            block(1, -1),
            block(2, 0x7f_ffff),
            block(3, i32::MAX),
            block(4, i32::MIN),
        ];
        let mut out = Vec::new();
        write_report(
            &mut out,
            &Report::Receiver {
                ssrc: 9,
                reports: &blocks,
            },
        );
        assert_eq!(&out[12..16], &[25, 0xff, 0xff, 0xff]);
        let RtcpPacket::ReceiverReport { reports, .. } = &parse_compound(&out).unwrap()[0] else {
            panic!("not an RR");
        };
        let lost: Vec<i32> = reports.iter().map(|b| b.cumulative_lost).collect();
        assert_eq!(lost, vec![-1, 0x7f_ffff, 0x7f_ffff, -0x80_0000]);
    }

    #[test]
    fn report_blocks_beyond_31_are_dropped_on_write() {
        let blocks: Vec<ReportBlock> = (0..40).map(|i| block(i, 0)).collect();
        let mut out = Vec::new();
        write_report(
            &mut out,
            &Report::Receiver {
                ssrc: 1,
                reports: &blocks,
            },
        );
        assert_eq!(out.len(), 8 + 31 * 24);
        let RtcpPacket::ReceiverReport { reports, .. } = &parse_compound(&out).unwrap()[0] else {
            panic!("not an RR");
        };
        assert_eq!(reports.len(), 31);
    }

    #[test]
    fn long_cname_and_reason_are_clipped_on_char_boundary() {
        let name = "é".repeat(200); // 400 bytes
        let mut out = Vec::new();
        write_sdes_cname(&mut out, 1, &name);
        write_bye(&mut out, &[1, 2], &name);
        let parsed = parse_compound(&out).unwrap();
        let RtcpPacket::Sdes { chunks } = &parsed[0] else {
            panic!("not SDES");
        };
        assert_eq!(chunks[0].cname.as_deref(), Some("é".repeat(127).as_str()));
        let RtcpPacket::Bye { ssrcs, reason } = &parsed[1] else {
            panic!("not BYE");
        };
        assert_eq!(ssrcs, &vec![1, 2]);
        assert_eq!(reason.as_deref().map(str::len), Some(254));
    }

    #[test]
    fn sdes_with_several_items_and_chunks_keeps_cnames() {
        // Two chunks: (ssrc 1: NAME "bob", CNAME "b@x"), (ssrc 2: no items).
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&[2, 3, b'b', b'o', b'b', 1, 3, b'b', b'@', b'x', 0, 0]);
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0]);
        let mut pkt = vec![0x82, PT_SDES, 0, (body.len() / 4) as u8];
        pkt.extend_from_slice(&body);
        assert_eq!(
            parse_compound(&pkt).unwrap(),
            vec![RtcpPacket::Sdes {
                chunks: vec![
                    SdesChunk {
                        ssrc: 1,
                        cname: Some("b@x".into())
                    },
                    SdesChunk {
                        ssrc: 2,
                        cname: None
                    },
                ]
            }]
        );
    }

    #[test]
    fn unknown_types_and_padding_are_handled() {
        // APP packet with 4 bytes of padding, followed by an empty RR.
        let mut pkt = vec![
            0xa0, PT_APP, 0, 3, 0, 0, 0, 1, b'n', b'a', b'm', b'e', 0, 0, 0, 4,
        ];
        pkt.extend_from_slice(&[0x80, PT_RR, 0, 1, 0, 0, 0, 9]);
        assert_eq!(
            parse_compound(&pkt).unwrap(),
            vec![
                RtcpPacket::Other {
                    packet_type: PT_APP
                },
                RtcpPacket::ReceiverReport {
                    ssrc: 9,
                    reports: vec![]
                }
            ]
        );
    }

    #[test]
    fn malformed_compounds_are_rejected() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        assert_eq!(parse_compound(&[0x80, PT_RR, 0]), Err(RtcpError::Truncated));
        assert_eq!(
            parse_compound(&[0x40, PT_RR, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::BadVersion(1))
        );
        // Length says 3 words but only 2 present.
        assert_eq!(
            parse_compound(&[0x80, PT_RR, 0, 2, 0, 0, 0, 1]),
            Err(RtcpError::Truncated)
        );
        // RR announcing one block but carrying none.
        assert_eq!(
            parse_compound(&[0x81, PT_RR, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Truncated)
        );
        // Padding count larger than the body.
        assert_eq!(
            parse_compound(&[0xa0, PT_RR, 0, 1, 0, 0, 0, 9]),
            Err(RtcpError::BadPadding)
        );
        assert_eq!(
            parse_compound(&[0xa0, PT_RR, 0, 0]),
            Err(RtcpError::BadPadding)
        );
        let many: Vec<u8> = (0..=MAX_PACKETS)
            .flat_map(|_| [0x80, PT_RR, 0, 1, 0, 0, 0, 1])
            .collect();
        assert_eq!(parse_compound(&many), Err(RtcpError::TooManyPackets));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes() {
        let mut seed = 0x9e37_79b9u32;
        for len in 0..80usize {
            for _ in 0..300 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (seed >> 24) as u8
                    })
                    .collect();
                if let Some(b) = bytes.first_mut() {
                    *b = 0x80 | (*b & 0x3f); // mostly version 2 to reach the body parsers
                }
                if let Some(b) = bytes.get_mut(1) {
                    *b = 200 + *b % 5;
                }
                let _ = parse_compound(&bytes);
            }
        }
    }

    #[test]
    fn ntp_timestamp_converts_unix_time() {
        assert_eq!(ntp_timestamp(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        let t = ntp_timestamp(Duration::new(1, 500_000_000));
        assert_eq!(t, ((NTP_UNIX_OFFSET + 1) << 32) | 0x8000_0000);
        assert_eq!(
            ntp_middle32(t),
            (((NTP_UNIX_OFFSET + 1) as u32) << 16) | 0x8000
        );
    }

    #[test]
    fn ntp_short_round_trips_durations() {
        assert_eq!(
            duration_to_ntp_short(Duration::from_millis(1500)),
            0x0001_8000
        );
        assert_eq!(
            ntp_short_to_duration(0x0001_8000),
            Duration::from_millis(1500)
        );
        assert_eq!(
            duration_to_ntp_short(Duration::from_secs(1 << 20)),
            u32::MAX
        );
    }

    #[test]
    fn rtt_subtracts_lsr_and_dlsr() {
        // RFC 3550 §6.4.1 example: A = 0xb710_8000 (46864.5 s), LSR = 0xb705_2000
        // (46853.125 s), DLSR = 0x0005_4000 (5.25 s) -> RTT 6.125 s.
        let b = ReportBlock {
            last_sr: 0xb705_2000,
            delay_since_last_sr: 0x0005_4000,
            ..ReportBlock::default()
        };
        assert_eq!(rtt(0xb710_8000, &b), Some(Duration::from_millis(6125)));
        assert_eq!(rtt(0xb705_2000, &b), None); // would be negative
        let no_sr = ReportBlock::default();
        assert_eq!(rtt(0xb710_8000, &no_sr), None);
        // Wrap of the middle-32 clock.
        let w = ReportBlock {
            last_sr: 0xffff_8000,
            delay_since_last_sr: 0x0000_4000,
            ..ReportBlock::default()
        };
        assert_eq!(rtt(0x0000_8000, &w), Some(Duration::from_millis(750)));
    }
}
