//! Adaptive jitter buffer for one audio stream: reorders RTP packets by sequence number
//! (RFC 3550 §5.1), schedules playout by RTP timestamp, and sizes its delay from the
//! interarrival jitter estimator of RFC 3550 §6.4.1 / appendix A.8.
//!
//! Algorithm. Packets are stored by extended sequence number (at most `capacity`, keeping
//! the ones that play soonest). Playout starts once the first packet has been held for the
//! target delay, where target = clamp(3 × jitter estimate, `min_delay`, `max_delay`); the
//! target is recomputed at every (re)start, i.e. per talk spurt, so delay never changes
//! inside a spurt. Each [`JitterBuffer::pop`] then plays one frame slot of `frame_samples`:
//! the next packet if its timestamp falls in the slot, [`Playout::Lost`] if the slot belongs
//! to a missing packet (later sequence numbers are buffered and their timestamps show the
//! gap was audio), and [`Playout::Empty`] if the timestamps jump ahead (silence suppression,
//! DTMF) until the next packet's time. When the buffer runs dry (end of spurt or underrun)
//! playout stops and restarts after the target delay, re-anchored on the next packet, so
//! sequence numbers used by non-audio packets (RFC 4733 events) are never reported lost.
//! Packets arriving after their slot are dropped as late. A sequence jump of more than
//! `capacity` either way is ignored unless the next packet follows it, in which case the
//! buffer resets (the sender restarted) like RFC 3550 A.1.
//!
//! The stream pushes every received audio packet, and calls `pop` once per frame time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Largest payload accepted; bigger packets are dropped (no audio frame is that large).
pub const MAX_PAYLOAD: usize = 4096;

/// Largest accepted `capacity`: half the 16-bit sequence space.
const MAX_CAPACITY: usize = 1 << 15;

/// Sizing of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP timestamp units per packet and per `pop` (160 = 20 ms at 8 kHz).
    pub frame_samples: u32,
    /// RTP clock rate of the payload.
    pub clock_rate: u32,
    /// Smallest playout delay, used while jitter is low.
    pub min_delay: Duration,
    /// Largest playout delay, however high the jitter.
    pub max_delay: Duration,
    /// Most packets held at once (1 to 32768); also the sequence jump that counts as a restart.
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            frame_samples: 160,
            clock_rate: 8000,
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(200),
            capacity: 64,
        }
    }
}

/// What to play for one frame slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The payload of the packet due now.
    Frame(Vec<u8>),
    /// The packet due now is missing while later ones exist: conceal (repeat, fade, or PLC).
    Lost,
    /// Nothing to play: not started, underrun, or a timestamp gap (play silence).
    Empty,
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored for playout.
    Stored,
    /// Stored after a confirmed sequence jump reset the buffer.
    Reset,
    /// Already buffered or already played; dropped.
    Duplicate,
    /// Its playout slot has passed; dropped.
    Late,
    /// Dropped: oversize payload, unconfirmed sequence jump, or capacity exceeded.
    Dropped,
}

/// A buffered packet.
#[derive(Debug, Clone)]
struct Slot {
    timestamp: u32,
    payload: Vec<u8>,
    arrival: Instant,
}

/// Sans-IO adaptive jitter buffer; see the module documentation for the algorithm.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: BTreeMap<i64, Slot>,
    /// Highest extended sequence accepted: the reference for unwrapping.
    highest: Option<i64>,
    /// Next extended sequence to play; lower ones are late. `None` before the first start.
    next_seq: Option<i64>,
    playing: bool,
    /// Arrival of the first packet held while not playing.
    buffering_since: Option<Instant>,
    /// RTP timestamp of the slot the next `pop` plays.
    play_ts: u32,
    /// Bit i set = extended sequence `next_seq - 1 - i` was played as a frame.
    played: u128,
    /// A packet after a large sequence jump, waiting for a successor to confirm it.
    pending_jump: Option<(u16, u32, Vec<u8>, Instant)>,
    /// Arrival and timestamp of the last stored packet, for the jitter estimate.
    last_arrival: Option<(Instant, u32)>,
    /// Interarrival jitter estimate in timestamp units (RFC 3550 A.8).
    jitter: f64,
    target: Duration,
    last_delay: Duration,
    late: u64,
    lost: u64,
    duplicates: u64,
    dropped: u64,
}

impl JitterBuffer {
    /// An empty buffer; zero sizes are raised to 1, `capacity` is capped at 32768 and
    /// `max_delay` raised to at least `min_delay`.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let config = JitterConfig {
            frame_samples: config.frame_samples.max(1),
            clock_rate: config.clock_rate.max(1),
            max_delay: config.max_delay.max(config.min_delay),
            capacity: config.capacity.clamp(1, MAX_CAPACITY),
            ..config
        };
        JitterBuffer {
            config,
            slots: BTreeMap::new(),
            highest: None,
            next_seq: None,
            playing: false,
            buffering_since: None,
            play_ts: 0,
            played: 0,
            pending_jump: None,
            last_arrival: None,
            jitter: 0.0,
            target: config.min_delay,
            last_delay: Duration::ZERO,
            late: 0,
            lost: 0,
            duplicates: 0,
            dropped: 0,
        }
    }

    /// Empties the buffer and forgets the sequence and timestamp timeline (new SSRC or
    /// sender restart); counters and the jitter estimate are kept.
    pub fn reset(&mut self) {
        self.slots.clear();
        self.highest = None;
        self.next_seq = None;
        self.playing = false;
        self.buffering_since = None;
        self.played = 0;
        self.pending_jump = None;
        self.last_arrival = None;
    }

    /// Offers one received packet (RTP sequence, timestamp, payload) that arrived at
    /// `arrival`; the payload is copied if stored.
    pub fn push(
        &mut self,
        sequence: u16,
        timestamp: u32,
        payload: &[u8],
        arrival: Instant,
    ) -> PushOutcome {
        if payload.len() > MAX_PAYLOAD {
            self.dropped += 1;
            return PushOutcome::Dropped;
        }
        let Some(highest) = self.highest else {
            return self.store(i64::from(sequence), timestamp, payload, arrival);
        };
        let ext = highest + i64::from(sequence.wrapping_sub(highest as u16) as i16);
        let window = self.config.capacity as i64;
        if ext > highest + window || ext < highest - window {
            return self.on_jump(sequence, timestamp, payload, arrival);
        }
        if let Some(next) = self.next_seq {
            if ext < next {
                let back = next - 1 - ext;
                if back < 128 && self.played & (1u128 << back) != 0 {
                    self.duplicates += 1;
                    return PushOutcome::Duplicate;
                }
                self.late += 1;
                return PushOutcome::Late;
            }
        }
        if self.slots.contains_key(&ext) {
            self.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.store(ext, timestamp, payload, arrival)
    }

    /// Handles a packet far from the current sequence range (RFC 3550 A.1 style).
    fn on_jump(
        &mut self,
        sequence: u16,
        timestamp: u32,
        payload: &[u8],
        arrival: Instant,
    ) -> PushOutcome {
        match self.pending_jump.take() {
            Some((seq, ts, data, at)) if seq.wrapping_add(1) == sequence => {
                self.reset();
                // The held packet was counted as dropped when it arrived.
                self.dropped = self.dropped.saturating_sub(1);
                self.store(i64::from(seq), ts, &data, at);
                let ext = i64::from(seq) + 1;
                match self.store(ext, timestamp, payload, arrival) {
                    PushOutcome::Stored => PushOutcome::Reset,
                    other => other,
                }
            }
            _ => {
                self.pending_jump = Some((sequence, timestamp, payload.to_vec(), arrival));
                self.dropped += 1;
                PushOutcome::Dropped
            }
        }
    }

    /// Stores an accepted packet, updates the jitter estimate and enforces capacity.
    fn store(&mut self, ext: i64, timestamp: u32, payload: &[u8], arrival: Instant) -> PushOutcome {
        if let Some((prev_at, prev_ts)) = self.last_arrival {
            let secs = match arrival.checked_duration_since(prev_at) {
                Some(d) => d.as_secs_f64(),
                None => -prev_at.duration_since(arrival).as_secs_f64(),
            };
            let ts_delta = f64::from(timestamp.wrapping_sub(prev_ts) as i32);
            let d = secs * f64::from(self.config.clock_rate) - ts_delta;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last_arrival = Some((arrival, timestamp));
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.slots.insert(
            ext,
            Slot {
                timestamp,
                payload: payload.to_vec(),
                arrival,
            },
        );
        if !self.playing && self.buffering_since.is_none() {
            self.buffering_since = Some(arrival);
        }
        if self.slots.len() > self.config.capacity {
            // Keep the packets that play soonest.
            let evicted = self.slots.pop_last().map(|(k, _)| k);
            self.dropped += 1;
            if evicted == Some(ext) {
                return PushOutcome::Dropped;
            }
        }
        PushOutcome::Stored
    }

    /// The delay playout would start with now: clamp(3 × jitter, min_delay, max_delay).
    fn compute_target(&self) -> Duration {
        let secs = 3.0 * self.jitter / f64::from(self.config.clock_rate);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.config.max_delay)
            .clamp(self.config.min_delay, self.config.max_delay)
    }

    /// Records that `n` more sequence numbers are behind `next_seq`, the newest `played`.
    fn advance_played(&mut self, n: i64, played: bool) {
        self.played = if (0..128).contains(&n) {
            self.played << n
        } else {
            0
        };
        if played {
            self.played |= 1;
        }
    }

    /// Extended sequence and timestamp of the packet that plays soonest.
    fn peek(&self) -> Option<(i64, u32)> {
        self.slots.first_key_value().map(|(k, s)| (*k, s.timestamp))
    }

    /// Produces the audio for the next frame slot; call once per frame time.
    pub fn pop(&mut self, now: Instant) -> Playout {
        if !self.playing {
            let Some(since) = self.buffering_since else {
                return Playout::Empty;
            };
            self.target = self.compute_target();
            let held = now.checked_duration_since(since).unwrap_or(Duration::ZERO);
            if held < self.target {
                return Playout::Empty;
            }
            let Some((first, first_ts)) = self.peek() else {
                self.buffering_since = None;
                return Playout::Empty;
            };
            if let Some(next) = self.next_seq {
                self.advance_played(first - next, false);
            }
            self.next_seq = Some(first);
            self.play_ts = first_ts;
            self.playing = true;
            self.buffering_since = None;
        }
        let next = self.next_seq.unwrap_or_default();
        let Some((key, key_ts)) = self.peek() else {
            // Underrun or end of talk spurt: rebuffer on the next packet.
            self.playing = false;
            return Playout::Empty;
        };
        let frame = i64::from(self.config.frame_samples);
        let missing = key - next;
        let mut gap = i64::from(key_ts.wrapping_sub(self.play_ts) as i32);
        let max_wait = self.config.max_delay.as_secs_f64() * f64::from(self.config.clock_rate);
        let covered = missing.saturating_mul(frame);
        if gap
            > covered
                .saturating_add(frame)
                .saturating_add(max_wait as i64)
        {
            // Timestamp discontinuity: nothing legitimate waits that long; re-anchor.
            self.play_ts = key_ts;
            gap = 0;
        }
        if gap < frame {
            let Some((_, slot)) = self.slots.pop_first() else {
                return Playout::Empty;
            };
            self.advance_played(missing + 1, true);
            self.next_seq = Some(key + 1);
            self.play_ts = slot.timestamp.wrapping_add(self.config.frame_samples);
            self.last_delay = now
                .checked_duration_since(slot.arrival)
                .unwrap_or(Duration::ZERO);
            return Playout::Frame(slot.payload);
        }
        self.play_ts = self.play_ts.wrapping_add(self.config.frame_samples);
        if missing > 0 && gap <= covered {
            self.advance_played(1, false);
            self.next_seq = Some(next + 1);
            self.lost += 1;
            Playout::Lost
        } else {
            Playout::Empty
        }
    }

    /// Packets currently held.
    pub fn buffered(&self) -> usize {
        self.slots.len()
    }

    /// Packets dropped because they arrived after their playout slot.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// [`Playout::Lost`] frames returned so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Duplicate packets dropped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets dropped for size, capacity, or as unconfirmed sequence jumps.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Time the most recently played frame spent in the buffer (arrival to playout).
    pub fn current_delay(&self) -> Duration {
        self.last_delay
    }

    /// Playout delay clamp(3 × jitter, min, max), fixed when playout last (re)started.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// Interarrival jitter estimate (RFC 3550 A.8) as a duration.
    pub fn jitter(&self) -> Duration {
        Duration::try_from_secs_f64(self.jitter / f64::from(self.config.clock_rate))
            .unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(20);

    /// One packet to deliver: arrival tick, sequence, timestamp; payload = `id` bytes.
    #[derive(Debug, Clone, Copy)]
    struct Pkt {
        tick: u32,
        seq: u16,
        ts: u32,
        id: u32,
    }

    /// A regular stream: packet i has sequence seq0 + i, timestamp ts0 + 160 i, tick i.
    fn stream(seq0: u16, ts0: u32, n: u32) -> Vec<Pkt> {
        (0..n)
            .map(|i| Pkt {
                tick: i,
                seq: seq0.wrapping_add(i as u16),
                ts: ts0.wrapping_add(160 * i),
                id: i,
            })
            .collect()
    }

    /// Each tick: pushes the packets arriving then (in list order), then pops once.
    fn run(jb: &mut JitterBuffer, t0: Instant, pkts: &[Pkt], ticks: u32) -> Vec<Playout> {
        (0..ticks)
            .map(|tick| {
                let now = t0 + TICK * tick;
                for p in pkts.iter().filter(|p| p.tick == tick) {
                    jb.push(p.seq, p.ts, &p.id.to_be_bytes(), now);
                }
                jb.pop(now)
            })
            .collect()
    }

    /// Non-empty playout as ids: `Some(id)` for a frame, `None` for a lost frame.
    fn played(out: &[Playout]) -> Vec<Option<u32>> {
        out.iter()
            .filter_map(|p| match p {
                Playout::Frame(b) => Some(Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
                Playout::Lost => Some(None),
                Playout::Empty => None,
            })
            .collect()
    }

    fn all(n: u32) -> Vec<Option<u32>> {
        (0..n).map(Some).collect()
    }

    /// Small deterministic generator (LCG) for shuffles and floods.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u32
        }
    }

    #[test]
    fn in_order_input_plays_every_frame_in_order_after_min_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = run(&mut jb, t0, &stream(1000, 5000, 50), 60);
        assert_eq!(out[0], Playout::Empty);
        assert_eq!(out[1], Playout::Empty);
        assert_eq!(out[2], Playout::Frame(0u32.to_be_bytes().to_vec()));
        assert_eq!(played(&out), all(50));
        assert_eq!(out[52..], vec![Playout::Empty; 8][..]);
        assert_eq!(
            (jb.lost(), jb.late(), jb.duplicates(), jb.dropped()),
            (0, 0, 0, 0)
        );
        assert_eq!(jb.target_delay(), Duration::from_millis(40));
        assert_eq!(jb.current_delay(), Duration::from_millis(40));
        assert_eq!(jb.buffered(), 0);
    }

    #[test]
    fn swapped_pairs_play_in_order_without_loss() {
        let t0 = Instant::now();
        let mut pkts = stream(7, 0, 50);
        for p in &mut pkts {
            p.tick ^= 1; // packet 0 arrives at tick 1, packet 1 at tick 0, ...
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = run(&mut jb, t0, &pkts, 60);
        assert_eq!(played(&out), all(50));
        assert_eq!((jb.lost(), jb.late()), (0, 0));
    }

    #[test]
    fn shuffle_within_60ms_plays_in_order_without_loss() {
        for seed in 1..20u64 {
            let mut rng = Lcg(seed);
            let mut pkts = stream(100, 0, 60);
            for group in pkts.chunks_mut(3) {
                // Random permutation of the group's arrival ticks.
                let mut ticks: Vec<u32> = group.iter().map(|p| p.tick).collect();
                for i in (1..ticks.len()).rev() {
                    ticks.swap(i, rng.next() as usize % (i + 1));
                }
                for (p, t) in group.iter_mut().zip(ticks) {
                    p.tick = t;
                }
            }
            let mut jb = JitterBuffer::new(JitterConfig::default());
            let out = run(&mut jb, Instant::now(), &pkts, 80);
            assert_eq!(played(&out), all(60), "seed {seed}");
            assert_eq!((jb.lost(), jb.late()), (0, 0), "seed {seed}");
        }
    }

    #[test]
    fn ten_percent_loss_is_lost_exactly_where_packets_are_missing() {
        let t0 = Instant::now();
        let pkts: Vec<Pkt> = stream(0, 0, 60)
            .into_iter()
            .filter(|p| p.id % 10 != 5)
            .collect();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = run(&mut jb, t0, &pkts, 70);
        let expected: Vec<Option<u32>> = (0..60).map(|i| (i % 10 != 5).then_some(i)).collect();
        assert_eq!(played(&out), expected);
        assert_eq!(jb.lost(), 6);
        assert_eq!(jb.late(), 0);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let t0 = Instant::now();
        let once = stream(0, 0, 20);
        let twice: Vec<Pkt> = once.iter().flat_map(|p| [*p, *p]).collect();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = run(&mut jb, t0, &twice, 10);
        assert_eq!(jb.duplicates(), 10);
        // Packet 0 was played at tick 2; a copy now is a duplicate, not a late packet.
        assert_eq!(
            jb.push(0, 0, &[0; 4], t0 + TICK * 10),
            PushOutcome::Duplicate
        );
        assert_eq!(jb.duplicates(), 11);
        assert_eq!(jb.late(), 0);
        let mut out = out;
        for tick in 10..30u32 {
            let now = t0 + TICK * tick;
            for p in twice.iter().filter(|p| p.tick == tick) {
                jb.push(p.seq, p.ts, &p.id.to_be_bytes(), now);
            }
            out.push(jb.pop(now));
        }
        assert_eq!(played(&out), all(20));
        assert_eq!(jb.duplicates(), 21);
    }

    #[test]
    fn late_packet_after_its_slot_is_dropped_and_counted() {
        let t0 = Instant::now();
        let mut pkts = stream(0, 0, 20);
        pkts[3].tick = 6; // its slot is tick 5 (3 + 40 ms)
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = run(&mut jb, t0, &pkts, 30);
        let mut expected = all(20);
        expected[3] = None;
        assert_eq!(played(&out), expected);
        assert_eq!((jb.late(), jb.lost()), (1, 1));
        assert_eq!(jb.push(3, 480, &[0; 4], t0 + TICK * 31), PushOutcome::Late);
        assert_eq!(jb.late(), 2);
    }

    #[test]
    fn capacity_is_never_exceeded_under_a_random_flood() {
        let t0 = Instant::now();
        let mut rng = Lcg(42);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for i in 0..20_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let seq = rng.next() as u16;
            let ts = rng.next();
            let len = rng.next() as usize % 200;
            jb.push(seq, ts, &vec![0u8; len], now);
            assert!(jb.buffered() <= 64);
            if i % 7 == 0 {
                jb.pop(now);
            }
        }
        // A dense flood of nearby sequence numbers never overfills the buffer either.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for _ in 0..5_000u32 {
            let seq = (rng.next() % 200) as u16;
            jb.push(seq, u32::from(seq) * 160, &[1], t0);
            assert!(jb.buffered() <= 64);
        }
        // Without playout, a full buffer keeps the 64 packets that play first.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for seq in 0..100u16 {
            let outcome = jb.push(seq, u32::from(seq) * 160, &[1], t0);
            assert_eq!(outcome == PushOutcome::Stored, seq < 64);
        }
        assert_eq!((jb.buffered(), jb.dropped()), (64, 36));
        assert!(jb.push(1000, 0, &[0; MAX_PAYLOAD + 1], t0) == PushOutcome::Dropped);
    }

    #[test]
    fn sequence_and_timestamp_wrap_play_in_order() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut pkts = stream(65_500, u32::MAX - 3 * 160, 80);
        // Reorder right at the sequence wrap: 65535 arrives after 0.
        assert_eq!((pkts[35].seq, pkts[36].seq), (65_535, 0));
        pkts[35].tick = 36;
        pkts[36].tick = 35;
        let out = run(&mut jb, t0, &pkts, 90);
        assert_eq!(played(&out), all(80));
        assert_eq!((jb.lost(), jb.late(), jb.dropped()), (0, 0, 0));
    }

    #[test]
    fn timestamp_gap_plays_empty_not_lost() {
        // Sequence numbers continue but the timestamps skip two frames after packet 9.
        let t0 = Instant::now();
        let mut pkts = stream(0, 0, 20);
        for p in &mut pkts[10..] {
            p.ts += 2 * 160;
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = run(&mut jb, t0, &pkts, 30);
        assert_eq!(played(&out), all(20));
        assert_eq!(jb.lost(), 0);
        // Frame 9 at tick 11, two silent slots, frame 10 at tick 14.
        assert_eq!(out[11], Playout::Frame(9u32.to_be_bytes().to_vec()));
        assert_eq!(out[12..14], [Playout::Empty, Playout::Empty]);
        assert_eq!(out[14], Playout::Frame(10u32.to_be_bytes().to_vec()));
    }

    #[test]
    fn sequence_gap_from_dtmf_during_silence_is_not_lost() {
        // Audio 0-9, then 7 telephone-event packets (not pushed), then audio from 17 on.
        let t0 = Instant::now();
        let pkts: Vec<Pkt> = stream(500, 0, 40)
            .into_iter()
            .filter(|p| !(10..17).contains(&p.id))
            .collect();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let out = run(&mut jb, t0, &pkts, 50);
        let expected: Vec<Option<u32>> = (0..40)
            .filter(|i| !(10..17).contains(i))
            .map(Some)
            .collect();
        assert_eq!(played(&out), expected);
        assert_eq!((jb.lost(), jb.late()), (0, 0));
        // Rebuffered for the target delay: packet 17 arrives at tick 17, plays at 19.
        assert_eq!(out[19], Playout::Frame(17u32.to_be_bytes().to_vec()));
    }

    #[test]
    fn large_sequence_jump_resets_after_two_consecutive_packets() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        run(&mut jb, t0, &stream(10, 0, 10), 5);
        let now = t0 + TICK * 5;
        assert_eq!(jb.push(40_000, 99, &[1], now), PushOutcome::Dropped);
        assert_eq!(
            jb.push(15, 800, &5u32.to_be_bytes(), now),
            PushOutcome::Stored
        );
        // The next jump packet does not follow 40 000: still unconfirmed.
        assert_eq!(jb.push(45_000, 999, &[2], now), PushOutcome::Dropped);
        assert_eq!(jb.push(45_001, 1159, &[3], now), PushOutcome::Reset);
        assert_eq!(jb.buffered(), 2);
        assert_eq!(jb.dropped(), 1);
        let out: Vec<Playout> = (0..4).map(|i| jb.pop(now + TICK * i)).collect();
        assert_eq!(
            out,
            vec![
                Playout::Empty,
                Playout::Empty,
                Playout::Frame(vec![2]),
                Playout::Frame(vec![3])
            ]
        );
        jb.reset();
        assert_eq!(jb.buffered(), 0);
        assert_eq!(jb.pop(now), Playout::Empty);
    }

    #[test]
    fn target_delay_adapts_to_jitter_and_is_clamped() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        // Odd packets 30 ms late: |D| = 240 units, so J -> 240 (30 ms), 3J -> 90 ms.
        for p in stream(0, 0, 200) {
            let at = t0 + TICK * p.tick + Duration::from_millis(if p.id % 2 == 1 { 30 } else { 0 });
            jb.push(p.seq, p.ts, &p.id.to_be_bytes(), at);
            jb.pop(t0 + TICK * p.tick);
        }
        assert_eq!(jb.target_delay(), Duration::from_millis(40));
        let j = jb.jitter().as_secs_f64();
        assert!((j - 0.030).abs() < 1e-3, "jitter {j}");
        // After the spurt drains, the next one starts with 3 × jitter.
        for i in 200..220u32 {
            jb.pop(t0 + TICK * i);
        }
        let t1 = t0 + TICK * 300;
        jb.push(210, 300 * 160, &[0; 4], t1);
        assert_eq!(jb.pop(t1 + Duration::from_millis(85)), Playout::Empty);
        assert!(matches!(
            jb.pop(t1 + Duration::from_millis(95)),
            Playout::Frame(_)
        ));
        let target = jb.target_delay().as_secs_f64();
        let three_j = 3.0 * jb.jitter().as_secs_f64();
        assert!(
            (target - three_j).abs() < 1e-6,
            "target {target}, 3J {three_j}"
        );
        assert!((target - 0.090).abs() < 1e-3, "target {target}");

        // Extreme jitter is clamped to max_delay.
        let mut jb = JitterBuffer::new(JitterConfig::default());
        for i in 0..100u32 {
            let skew = if i % 2 == 1 { 500 } else { 0 };
            jb.push(
                i as u16,
                160 * i,
                &[0],
                t0 + Duration::from_millis(u64::from(20 * i + skew)),
            );
        }
        jb.pop(t0);
        assert_eq!(jb.target_delay(), Duration::from_millis(200));
    }

    #[test]
    fn extreme_configs_and_inputs_do_not_panic() {
        let t0 = Instant::now();
        let configs = [
            JitterConfig {
                frame_samples: 0,
                clock_rate: 0,
                min_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                capacity: 0,
            },
            JitterConfig {
                frame_samples: u32::MAX,
                clock_rate: u32::MAX,
                min_delay: Duration::MAX,
                max_delay: Duration::from_millis(1),
                capacity: usize::MAX,
            },
        ];
        for config in configs {
            let mut jb = JitterBuffer::new(config);
            let mut rng = Lcg(7);
            for i in 0..3_000u64 {
                // Arrivals jump backwards and forwards in time.
                let at = t0 + Duration::from_millis(u64::from(rng.next() % 100_000));
                jb.push(rng.next() as u16, rng.next(), &[0; 3], at);
                jb.pop(t0 + Duration::from_millis(i * 20));
                assert!(jb.buffered() <= MAX_CAPACITY);
            }
        }
    }
}
