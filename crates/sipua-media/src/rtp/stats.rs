//! Per-source reception statistics (RFC 3550 §6.4.1 and appendix A): sequence-number
//! validation and extension per A.1, expected/lost counts and the interval fraction lost
//! per A.3, and interarrival jitter per A.8. Sender counters for the SR sender info
//! (§6.4.1) are in [`SenderStats`].
//!
//! Choices, following A.1 with `MAX_DROPOUT` 3000, `MAX_MISORDER` 100 and
//! `MIN_SEQUENTIAL` 2: a new source is on probation until two packets with consecutive
//! sequence numbers arrive; a jump of more than `MAX_DROPOUT` ahead (or more than
//! `MAX_MISORDER` behind) is ignored unless the next packet follows it, in which case the
//! sender is assumed to have restarted and the counters are reset. Unlike the A.1 sample
//! code, the two packets that validate (or restart) a source are both counted, so a clean
//! stream reports `received()` equal to the packets sent. Duplicates are detected in a
//! 128-packet window and, as §6.4.1 specifies, still counted as received.

use std::time::{Duration, Instant};

use super::rtcp::ReportBlock;

/// Largest forward jump treated as packet loss rather than a restart (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Largest backward step treated as reordering rather than a restart (RFC 3550 A.1).
pub const MAX_MISORDER: u16 = 100;
/// Consecutive packets needed to accept a new or restarted source (RFC 3550 A.1).
pub const MIN_SEQUENTIAL: u32 = 2;

/// What [`ReceiverStats::on_packet`] concluded about one packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketVerdict {
    /// Next expected packet, or ahead of it by less than `MAX_DROPOUT` (a gap is loss).
    InOrder,
    /// Older than the highest sequence seen but not seen before (reordering).
    OutOfOrder,
    /// Already received (within the last 128 sequence numbers); counted, per §6.4.1.
    Duplicate,
    /// The source is not validated yet (first packet, or a non-consecutive one during
    /// probation); nothing is counted.
    Probation,
    /// A large jump not (yet) confirmed by a following packet; nothing is counted and the
    /// caller should drop the packet.
    BadSequence,
    /// Second consecutive packet after a large jump: the sender restarted, statistics were
    /// reset (this packet and the one before it are counted). Reset the jitter buffer too.
    Restart,
}

/// Reception statistics for one remote synchronization source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    clock_rate: u32,
    max_seq: u16,
    /// Sequence-number wraps seen, shifted: a multiple of 65536.
    cycles: u64,
    base_seq: u64,
    /// The sequence number that would confirm a large jump (A.1 `bad_seq`), if pending.
    bad_seq: Option<u16>,
    probation: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Bit i set = extended sequence (highest - i) was received.
    window: u128,
    /// Arrival time origin for converting arrivals to timestamp units.
    epoch: Option<Instant>,
    /// Arrival (timestamp units since `epoch`) and RTP timestamp of the previous packet.
    last_transit: Option<(f64, u32)>,
    /// Jitter estimate J in timestamp units, kept fractional.
    jitter: f64,
}

impl ReceiverStats {
    /// Starts tracking `ssrc` whose first packet carries `first_seq`; that packet must
    /// still be given to [`on_packet`](Self::on_packet). A zero clock rate is taken as 1.
    pub fn new(ssrc: u32, first_seq: u16, clock_rate: u32) -> ReceiverStats {
        ReceiverStats {
            ssrc,
            clock_rate: clock_rate.max(1),
            max_seq: first_seq.wrapping_sub(1),
            cycles: 0,
            base_seq: u64::from(first_seq),
            bad_seq: None,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            window: 0,
            epoch: None,
            last_transit: None,
            jitter: 0.0,
        }
    }

    /// The source these statistics describe.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Re-bases the counters on `seq` after validation or restart (A.1 `init_seq`),
    /// counting `seq` and the consecutive packet before it.
    fn init_seq(&mut self, seq: u16) {
        self.max_seq = seq;
        self.cycles = 0;
        self.base_seq = u64::from(seq.wrapping_sub(1));
        // Keep base below the extended maximum when the pair straddles a wrap.
        if seq == 0 {
            self.cycles = 1 << 16;
        }
        self.bad_seq = None;
        self.received = u64::from(MIN_SEQUENTIAL);
        self.expected_prior = 0;
        self.received_prior = 0;
        self.window = 0b11;
    }

    /// Records one received packet: validates and extends its sequence number (A.1) and
    /// updates the jitter estimate (A.8). `arrival` is when the datagram was received.
    pub fn on_packet(
        &mut self,
        sequence: u16,
        rtp_timestamp: u32,
        arrival: Instant,
    ) -> PacketVerdict {
        let verdict = self.update_seq(sequence);
        match verdict {
            PacketVerdict::BadSequence => {}
            PacketVerdict::Duplicate => {}
            PacketVerdict::Probation | PacketVerdict::Restart => {
                // New timing origin: no jitter sample across a restart.
                self.record_transit(rtp_timestamp, arrival, false);
            }
            PacketVerdict::InOrder | PacketVerdict::OutOfOrder => {
                self.record_transit(rtp_timestamp, arrival, true);
            }
        }
        verdict
    }

    /// Records a packet whose timestamp says nothing about its timing, such as an RFC 4733
    /// telephone-event (every packet of an event carries the event's start): its sequence
    /// number counts for loss, but it takes no part in the jitter estimate.
    pub fn on_untimed_packet(&mut self, sequence: u16) -> PacketVerdict {
        self.update_seq(sequence)
    }

    /// RFC 3550 A.1 `update_seq`, plus duplicate detection in a 128-packet window.
    fn update_seq(&mut self, seq: u16) -> PacketVerdict {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    return PacketVerdict::InOrder;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return PacketVerdict::Probation;
        }
        if udelta < MAX_DROPOUT {
            if udelta == 0 {
                self.received += 1;
                return PacketVerdict::Duplicate;
            }
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
            self.window = if udelta >= 128 {
                1
            } else {
                (self.window << udelta) | 1
            };
            self.received += 1;
            PacketVerdict::InOrder
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            // Large jump (udelta is in MAX_DROPOUT..=65536 - MAX_MISORDER).
            if Some(seq) == self.bad_seq {
                self.init_seq(seq);
                PacketVerdict::Restart
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                PacketVerdict::BadSequence
            }
        } else {
            // Behind the highest by 1..MAX_MISORDER: reordered or duplicated.
            let behind = u32::from(self.max_seq.wrapping_sub(seq));
            if self.extended_max() < self.base_seq + u64::from(behind) {
                // Older than the first counted packet: not part of this session's range.
                return PacketVerdict::OutOfOrder;
            }
            self.received += 1;
            let bit = 1u128 << behind;
            if self.window & bit != 0 {
                PacketVerdict::Duplicate
            } else {
                self.window |= bit;
                PacketVerdict::OutOfOrder
            }
        }
    }

    /// Updates the A.8 jitter estimate with this packet's transit time.
    fn record_transit(&mut self, rtp_timestamp: u32, arrival: Instant, sample: bool) {
        let epoch = *self.epoch.get_or_insert(arrival);
        let since = arrival
            .checked_duration_since(epoch)
            .unwrap_or(Duration::ZERO);
        let arrival_units = since.as_secs_f64() * f64::from(self.clock_rate);
        if sample {
            if let Some((prev_arrival, prev_ts)) = self.last_transit {
                // D = (Rj - Ri) - (Sj - Si); the timestamp difference is taken modulo 2^32.
                let ts_delta = f64::from(rtp_timestamp.wrapping_sub(prev_ts) as i32);
                let d = (arrival_units - prev_arrival) - ts_delta;
                self.jitter += (d.abs() - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some((arrival_units, rtp_timestamp));
    }

    /// The highest sequence number received, extended with the wrap count.
    pub fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Packets expected since the source was validated (A.3): extended max - base + 1.
    pub fn expected(&self) -> u64 {
        if self.probation > 0 {
            return 0;
        }
        (self.extended_max() + 1).saturating_sub(self.base_seq)
    }

    /// Packets received since the source was validated, duplicates included (A.3).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Expected minus received; negative when duplicates outnumber losses (A.3).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Fraction lost in the interval since the previous call, in 1/256 units (A.3);
    /// 0 when nothing was expected or more arrived than expected. Resets the interval.
    pub fn fraction_lost_since_last_report(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.received_prior = self.received;
        if expected_interval == 0 || received_interval >= expected_interval {
            return 0;
        }
        let lost_interval = expected_interval - received_interval;
        ((lost_interval << 8) / expected_interval).min(255) as u8
    }

    /// Interarrival jitter in timestamp units, truncated, as reported in RR blocks (A.8).
    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    /// Interarrival jitter in timestamp units with its fractional part.
    pub fn jitter_exact(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter converted to milliseconds using the clock rate.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// Builds the reception report block for this source (RFC 3550 §6.4.1) and starts a
    /// new loss interval. Pass 0 and `Duration::ZERO` if no SR was received yet.
    pub fn report_block(
        &mut self,
        last_sr_middle32: u32,
        delay_since_last_sr: Duration,
    ) -> ReportBlock {
        let fraction_lost = self.fraction_lost_since_last_report();
        let lost = self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32;
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: lost,
            highest_seq: self.extended_max() as u32,
            jitter: self.jitter(),
            last_sr: last_sr_middle32,
            delay_since_last_sr: if last_sr_middle32 == 0 {
                0
            } else {
                super::rtcp::duration_to_ntp_short(delay_since_last_sr)
            },
        }
    }
}

/// Counters of what we sent, for the SR sender info (RFC 3550 §6.4.1); both wrap at 2^32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderStats {
    /// RTP data packets sent.
    pub packets: u32,
    /// Payload octets sent (headers and padding excluded).
    pub octets: u32,
}

impl SenderStats {
    /// Counts one sent packet carrying `payload_len` payload octets.
    pub fn on_packet(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;

    /// Feeds packets `seqs` with timestamps 160 * index and arrivals 20 ms * index.
    fn feed(stats: &mut ReceiverStats, t0: Instant, items: &[(u16, u32)]) -> Vec<PacketVerdict> {
        items
            .iter()
            .map(|&(seq, n)| {
                let arrival = t0 + Duration::from_millis(20 * u64::from(n));
                stats.on_packet(seq, 160 * n, arrival)
            })
            .collect()
    }

    #[test]
    fn in_order_stream_has_no_loss_and_no_jitter() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 1000, RATE);
        let items: Vec<(u16, u32)> = (0..100u16).map(|i| (1000 + i, u32::from(i))).collect();
        let verdicts = feed(&mut s, t0, &items);
        assert_eq!(verdicts[0], PacketVerdict::Probation);
        assert!(verdicts[1..].iter().all(|v| *v == PacketVerdict::InOrder));
        assert_eq!(s.expected(), 100);
        assert_eq!(s.received(), 100);
        assert_eq!(s.cumulative_lost(), 0);
        assert_eq!(s.fraction_lost_since_last_report(), 0);
        assert!(s.jitter_exact() < 1e-6, "jitter {}", s.jitter_exact());
        assert_eq!(s.jitter(), 0);
        assert_eq!(s.extended_max(), 1099);
    }

    #[test]
    fn every_tenth_packet_lost_gives_ten_percent() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 0, RATE);
        let items: Vec<(u16, u32)> = (0..200u16)
            .filter(|i| i % 10 != 5)
            .map(|i| (i, u32::from(i)))
            .collect();
        feed(&mut s, t0, &items);
        assert_eq!(s.expected(), 200);
        assert_eq!(s.received(), 180);
        assert_eq!(s.cumulative_lost(), 20);
        // 20 lost of 200 expected: 20 * 256 / 200 = 25.6 -> 25.
        assert_eq!(s.fraction_lost_since_last_report(), 25);
        // Nothing new since the last call.
        assert_eq!(s.fraction_lost_since_last_report(), 0);
        let more: Vec<(u16, u32)> = (200..300u16)
            .filter(|i| i % 10 != 5)
            .map(|i| (i, u32::from(i)))
            .collect();
        feed(&mut s, t0, &more);
        let block = s.report_block(0x1234_5678, Duration::from_millis(500));
        assert_eq!(block.fraction_lost, 25);
        assert_eq!(block.cumulative_lost, 30);
        assert_eq!(block.highest_seq, 299);
        assert_eq!(block.last_sr, 0x1234_5678);
        assert_eq!(block.delay_since_last_sr, 0x8000);
        assert_eq!(block.ssrc, 1);
    }

    #[test]
    fn reordering_is_not_loss_and_duplicates_are_flagged() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(7, 10, RATE);
        // Pairs swapped after validation: 10 11 | 13 12 15 14 17 16.
        let items = [
            (10, 0),
            (11, 1),
            (13, 3),
            (12, 2),
            (15, 5),
            (14, 4),
            (17, 7),
            (16, 6),
        ];
        let verdicts = feed(&mut s, t0, &items);
        assert_eq!(
            verdicts,
            vec![
                PacketVerdict::Probation,
                PacketVerdict::InOrder,
                PacketVerdict::InOrder,
                PacketVerdict::OutOfOrder,
                PacketVerdict::InOrder,
                PacketVerdict::OutOfOrder,
                PacketVerdict::InOrder,
                PacketVerdict::OutOfOrder,
            ]
        );
        assert_eq!(s.cumulative_lost(), 0);
        assert_eq!(s.fraction_lost_since_last_report(), 0);
        assert_eq!(feed(&mut s, t0, &[(16, 6)]), vec![PacketVerdict::Duplicate]);
        assert_eq!(feed(&mut s, t0, &[(17, 7)]), vec![PacketVerdict::Duplicate]);
        // Duplicates count as received, so the loss goes negative (RFC 3550 §6.4.1).
        assert_eq!(s.cumulative_lost(), -2);
        assert_eq!(s.fraction_lost_since_last_report(), 0);
    }

    #[test]
    fn sequence_wrap_extends_the_highest_sequence() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 65530, RATE);
        let items: Vec<(u16, u32)> = (0..20u32)
            .filter(|&i| i != 8) // seq 2 lost after the wrap
            .map(|i| (65530u16.wrapping_add(i as u16), i))
            .collect();
        let verdicts = feed(&mut s, t0, &items);
        assert!(verdicts[1..].iter().all(|v| *v == PacketVerdict::InOrder));
        assert_eq!(s.extended_max(), 65536 + 13);
        assert_eq!(s.expected(), 20);
        assert_eq!(s.received(), 19);
        assert_eq!(s.cumulative_lost(), 1);
        assert_eq!(s.report_block(0, Duration::ZERO).highest_seq, 0x0001_000d);
    }

    #[test]
    fn validation_pair_straddling_the_wrap_counts_both() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 65535, RATE);
        feed(&mut s, t0, &[(65535, 0), (0, 1), (1, 2)]);
        assert_eq!(s.expected(), 3);
        assert_eq!(s.received(), 3);
        assert_eq!(s.extended_max(), 65537);
    }

    #[test]
    fn jitter_matches_hand_computation_for_alternating_skew() {
        // Packets every 20 ms (160 units); odd packets arrive 10 ms late. After the first,
        // every |D| is 80 units, so J_n = 80 * (1 - (15/16)^n) after n samples.
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 0, RATE);
        for i in 0..11u32 {
            let skew = if i % 2 == 1 { 10 } else { 0 };
            let arrival = t0 + Duration::from_millis(u64::from(20 * i + skew));
            s.on_packet(i as u16, 160 * i, arrival);
        }
        // 10 samples: 80 * (1 - 0.9375^10) = 38.04316...
        let expected = 80.0 * (1.0 - 0.9375f64.powi(10));
        assert!((s.jitter_exact() - expected).abs() < 1e-6);
        assert!((s.jitter_exact() - 38.04316).abs() < 1e-4);
        assert_eq!(s.jitter(), 38);
        assert!((s.jitter_ms() - expected / 8.0).abs() < 1e-6);
        // Converges to 80 units = 10 ms.
        for i in 11..400u32 {
            let skew = if i % 2 == 1 { 10 } else { 0 };
            let arrival = t0 + Duration::from_millis(u64::from(20 * i + skew));
            s.on_packet(i as u16, 160 * i, arrival);
        }
        assert!((s.jitter_ms() - 10.0).abs() < 1e-3);
    }

    #[test]
    fn jitter_survives_rtp_timestamp_wrap() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 0, RATE);
        let base = u32::MAX - 800;
        for i in 0..20u32 {
            let arrival = t0 + Duration::from_millis(u64::from(20 * i));
            s.on_packet(i as u16, base.wrapping_add(160 * i), arrival);
        }
        assert!(s.jitter_exact() < 1e-6);
    }

    #[test]
    fn huge_jump_resets_after_two_sequential_packets() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 100, RATE);
        let items: Vec<(u16, u32)> = (0..10u16).map(|i| (100 + i, u32::from(i))).collect();
        feed(&mut s, t0, &items);
        assert_eq!(s.received(), 10);
        // A lone stray packet far ahead is ignored.
        assert_eq!(
            feed(&mut s, t0, &[(30_000, 10)]),
            vec![PacketVerdict::BadSequence]
        );
        assert_eq!(feed(&mut s, t0, &[(110, 11)]), vec![PacketVerdict::InOrder]);
        assert_eq!(s.received(), 11);
        assert_eq!(s.expected(), 11);
        // Two consecutive packets after a jump mean the sender restarted.
        assert_eq!(
            feed(&mut s, t0, &[(40_000, 12)]),
            vec![PacketVerdict::BadSequence]
        );
        assert_eq!(
            feed(&mut s, t0, &[(40_001, 13)]),
            vec![PacketVerdict::Restart]
        );
        assert_eq!(s.expected(), 2);
        assert_eq!(s.received(), 2);
        assert_eq!(s.extended_max(), 40_001);
        assert_eq!(
            feed(&mut s, t0, &[(40_002, 14)]),
            vec![PacketVerdict::InOrder]
        );
        assert_eq!(s.cumulative_lost(), 0);
    }

    #[test]
    fn probation_restarts_on_non_consecutive_packets() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 10, RATE);
        assert_eq!(
            feed(&mut s, t0, &[(10, 0), (50, 1), (51, 2), (52, 3)]),
            vec![
                PacketVerdict::Probation,
                PacketVerdict::Probation,
                PacketVerdict::InOrder,
                PacketVerdict::InOrder
            ]
        );
        assert_eq!(s.expected(), 3);
        assert_eq!(s.received(), 3);
    }

    #[test]
    fn sender_stats_count_and_wrap() {
        let mut s = SenderStats {
            packets: u32::MAX,
            octets: u32::MAX - 10,
        };
        s.on_packet(160);
        assert_eq!(
            s,
            SenderStats {
                packets: 0,
                octets: 149
            }
        );
    }
}
