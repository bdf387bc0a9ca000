//! DTMF over RTP as telephone-events (RFC 4733): the 4-octet event payload (§2.3), the
//! DTMF event codes (§3.2), a sans-IO sender that paces events per §2.5.1 and a receiver
//! that turns event packets back into digits per §2.5.2.
//!
//! Sender contract: the media stream ticks once per packet interval (20 ms) and calls
//! [`DtmfSender::next_packet`] with the RTP timestamp its audio packet for this tick would
//! carry. `Some(packet)` means: send `packet.payload` with the negotiated telephone-event
//! payload type, `packet.marker` and `packet.timestamp` (the event's start, identical for
//! all packets of one event) *instead of* audio. `None` means: send audio as usual. The
//! audio timestamp keeps advancing every tick either way. While
//! [`DtmfSender::is_active`] is true the stream sends no audio packets.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Most digits (and pauses) that can wait in a [`DtmfSender`] queue.
pub const MAX_QUEUED_DIGITS: usize = 64;

/// Digits that [`DtmfReceiver`] remembers as reported, to drop their retransmissions.
const RECENT_EVENTS: usize = 8;

/// Most digits [`DtmfReceiver`] holds before they are taken; older ones are dropped.
const MAX_READY: usize = 8;

/// Why a DTMF operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfError {
    /// A character other than 0-9, *, #, A-D (either case) or ',' was queued.
    InvalidDigit(char),
    /// Queueing would exceed [`MAX_QUEUED_DIGITS`]; nothing was queued.
    QueueFull,
    /// A telephone-event payload shorter than 4 octets.
    TooShort,
}

impl fmt::Display for DtmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtmfError::InvalidDigit(c) => write!(f, "invalid DTMF digit {c:?}"),
            DtmfError::QueueFull => {
                write!(f, "DTMF queue full ({MAX_QUEUED_DIGITS} digits)")
            }
            DtmfError::TooShort => f.write_str("telephone-event payload shorter than 4 octets"),
        }
    }
}

impl std::error::Error for DtmfError {}

/// Maps a DTMF digit to its RFC 4733 §3.2 event code: '0'-'9' → 0-9, '*' → 10,
/// '#' → 11, 'A'-'D' (or 'a'-'d') → 12-15.
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// Maps an RFC 4733 §3.2 event code 0-15 back to its digit (upper-case letters).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// Event code; 0-15 are the DTMF digits.
    pub event: u8,
    /// E bit: this packet ends the event.
    pub end: bool,
    /// Power level in -dBm0, 0-63 (larger is quieter); masked to 6 bits on write.
    pub volume: u8,
    /// Event duration so far, in timestamp units, counted from the event's timestamp.
    pub duration: u16,
}

impl DtmfEvent {
    /// Parses the first 4 octets of a telephone-event payload; the reserved bit is ignored
    /// and any further octets are ignored.
    pub fn parse(payload: &[u8]) -> Result<DtmfEvent, DtmfError> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(DtmfEvent {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(DtmfError::TooShort),
        }
    }

    /// Encodes the payload as its 4 octets (reserved bit zero).
    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// The DTMF digit this event stands for, if it is one (codes 0-15).
    pub fn digit(&self) -> Option<char> {
        event_to_digit(self.event)
    }
}

/// Timing and level of generated events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfSenderConfig {
    /// RTP clock rate of the telephone-event payload (same as the audio, 8000 for G.711).
    pub clock_rate: u32,
    /// Interval between packets: the stream's tick (20 ms).
    pub packet_interval: Duration,
    /// Length of each tone; capped so the duration field fits 16 bits (8.19 s at 8 kHz).
    pub tone: Duration,
    /// Silence between the end of one tone and the start of the next.
    pub gap: Duration,
    /// Extra wait inserted by ',' in the queued string.
    pub pause: Duration,
    /// Volume field of the generated events, in -dBm0 (0-63).
    pub volume: u8,
    /// Times the final (E bit) packet is sent; RFC 4733 §2.5.1.4 says 3; at least 1.
    pub end_repeats: u8,
}

impl Default for DtmfSenderConfig {
    fn default() -> Self {
        DtmfSenderConfig {
            clock_rate: 8000,
            packet_interval: Duration::from_millis(20),
            tone: Duration::from_millis(100),
            gap: Duration::from_millis(100),
            pause: Duration::from_secs(2),
            volume: 10,
            end_repeats: 3,
        }
    }
}

/// One packet to send in place of audio; see the module docs for how the stream uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The 4-octet telephone-event payload.
    pub payload: [u8; 4],
    /// RTP timestamp to put on the packet: the event's start, the same for all its packets.
    pub timestamp: u32,
    /// RTP marker bit: set on the first packet of each event (RFC 4733 §2.5.1.1).
    pub marker: bool,
    /// Whether this packet carries the E bit (final packet or one of its repeats).
    pub end: bool,
}

/// An entry of the sender queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    Digit(u8),
    Pause,
}

/// The event being sent.
#[derive(Debug, Clone, Copy)]
struct ActiveEvent {
    event: u8,
    timestamp: u32,
    /// Packets sent so far whose duration grew (the first end packet included).
    steps: u64,
    /// End packets sent so far.
    ends_sent: u8,
}

/// Sans-IO RFC 4733 §2.5.1 generator: turns queued digits into paced telephone-event
/// packets (growing duration, marker on the first, E bit sent `end_repeats` times).
#[derive(Debug, Clone)]
pub struct DtmfSender {
    config: DtmfSenderConfig,
    interval_samples: u64,
    tone_samples: u64,
    queue: VecDeque<Queued>,
    active: Option<ActiveEvent>,
    /// Earliest time the next queued item may start.
    next_ready: Option<Instant>,
}

impl DtmfSender {
    /// A sender with the default 100 ms tones, 100 ms gaps, volume 10 and 3 end packets.
    pub fn new(clock_rate: u32, packet_interval: Duration) -> DtmfSender {
        DtmfSender::with_config(DtmfSenderConfig {
            clock_rate,
            packet_interval,
            ..DtmfSenderConfig::default()
        })
    }

    /// A sender with explicit timing; zero rates or intervals are raised to one unit and
    /// tone, gap and pause are capped at one hour.
    pub fn with_config(config: DtmfSenderConfig) -> DtmfSender {
        let hour = Duration::from_secs(3600);
        let config = DtmfSenderConfig {
            tone: config.tone.min(hour),
            gap: config.gap.min(hour),
            pause: config.pause.min(hour),
            ..config
        };
        let rate = u128::from(config.clock_rate.max(1));
        let samples =
            |d: Duration| (d.as_nanos() * rate / 1_000_000_000).min(u128::from(u64::MAX)) as u64;
        DtmfSender {
            interval_samples: samples(config.packet_interval).max(1),
            tone_samples: samples(config.tone).min(u64::from(u16::MAX)),
            config,
            queue: VecDeque::new(),
            active: None,
            next_ready: None,
        }
    }

    /// Queues digits (0-9, *, #, A-D, case-insensitive; ',' = pause). All or nothing:
    /// an invalid character or overflowing [`MAX_QUEUED_DIGITS`] queues none of them.
    pub fn queue(&mut self, digits: &str) -> Result<(), DtmfError> {
        let mut items = Vec::new();
        for c in digits.chars() {
            let item = match c {
                ',' => Queued::Pause,
                _ => Queued::Digit(digit_to_event(c).ok_or(DtmfError::InvalidDigit(c))?),
            };
            if self.queue.len() + items.len() >= MAX_QUEUED_DIGITS {
                return Err(DtmfError::QueueFull);
            }
            items.push(item);
        }
        self.queue.extend(items);
        Ok(())
    }

    /// Drops the queued digits; an event already being sent still finishes properly.
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Digits and pauses still waiting in the queue.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// True while an event is being sent: the stream must not send audio packets now.
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// True when nothing is being sent and nothing is queued.
    pub fn is_idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    /// Called once per packet interval with the RTP timestamp this tick's audio packet
    /// would carry; returns the event packet to send instead of audio, if any.
    pub fn next_packet(&mut self, now: Instant, rtp_timestamp: u32) -> Option<DtmfPacket> {
        if self.active.is_none() {
            self.start_next(now, rtp_timestamp);
        }
        let ev = self.active.as_mut()?;
        let marker = ev.steps == 0;
        if ev.ends_sent == 0 {
            ev.steps += 1;
        }
        let elapsed = ev.steps.saturating_mul(self.interval_samples);
        let end = elapsed >= self.tone_samples;
        let duration = elapsed.min(self.tone_samples) as u16;
        if end {
            ev.ends_sent += 1;
        }
        let packet = DtmfPacket {
            payload: DtmfEvent {
                event: ev.event,
                end,
                volume: self.config.volume,
                duration,
            }
            .to_bytes(),
            timestamp: ev.timestamp,
            marker,
            end,
        };
        if ev.ends_sent >= self.config.end_repeats.max(1) {
            self.active = None;
        }
        Some(packet)
    }

    /// Starts the next queued digit if its time has come, consuming pauses on the way.
    fn start_next(&mut self, now: Instant, rtp_timestamp: u32) {
        // Ticks may come slightly early: accept anything within half an interval.
        let slack = self.config.packet_interval / 2;
        loop {
            if let Some(ready) = self.next_ready {
                if ready
                    .checked_duration_since(now)
                    .is_some_and(|wait| wait > slack)
                {
                    return;
                }
            }
            match self.queue.pop_front() {
                None => return,
                Some(Queued::Pause) => {
                    let base = self.next_ready.filter(|t| *t > now).unwrap_or(now);
                    self.next_ready = Some(base.checked_add(self.config.pause).unwrap_or(base));
                }
                Some(Queued::Digit(event)) => {
                    self.active = Some(ActiveEvent {
                        event,
                        timestamp: rtp_timestamp,
                        steps: 0,
                        ends_sent: 0,
                    });
                    let busy = self.config.tone.saturating_add(self.config.gap);
                    self.next_ready = Some(now.checked_add(busy).unwrap_or(now));
                    return;
                }
            }
        }
    }
}

/// A digit recovered from received telephone-events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    /// The digit: '0'-'9', '*', '#', 'A'-'D'.
    pub digit: char,
    /// Longest duration seen for the event, in milliseconds.
    pub duration_ms: u32,
}

/// The event whose packets are arriving.
#[derive(Debug, Clone, Copy)]
struct CurrentEvent {
    timestamp: u32,
    event: u8,
    duration: u16,
    last_seen: Instant,
}

/// Sans-IO RFC 4733 §2.5.2 receiver: reports each DTMF event exactly once, on its first
/// end packet, or after `timeout` without packets if all its end packets were lost.
///
/// Events are told apart by RTP timestamp; retransmitted end packets and late packets of
/// already reported events are dropped, a lost start packet does not matter. Call
/// [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout) is due.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    clock_rate: u32,
    timeout: Duration,
    current: Option<CurrentEvent>,
    /// Timestamps of reported events, newest last.
    recent: VecDeque<u32>,
    ready: VecDeque<DtmfDigit>,
    ready_since: Option<Instant>,
}

impl DtmfReceiver {
    /// A receiver for `clock_rate` that gives up waiting for end packets after 1 s.
    pub fn new(clock_rate: u32) -> DtmfReceiver {
        DtmfReceiver::with_timeout(clock_rate, Duration::from_secs(1))
    }

    /// A receiver with an explicit end-packet timeout.
    pub fn with_timeout(clock_rate: u32, timeout: Duration) -> DtmfReceiver {
        DtmfReceiver {
            clock_rate: clock_rate.max(1),
            timeout,
            current: None,
            recent: VecDeque::with_capacity(RECENT_EVENTS),
            ready: VecDeque::with_capacity(MAX_READY),
            ready_since: None,
        }
    }

    /// Forgets all state, e.g. when the remote SSRC changes.
    pub fn reset(&mut self) {
        self.current = None;
        self.recent.clear();
        self.ready.clear();
        self.ready_since = None;
    }

    /// Handles one telephone-event packet (any RTP payload of that type); returns a digit
    /// when an event completes. Malformed payloads and non-DTMF events are ignored.
    pub fn on_packet(
        &mut self,
        rtp_timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> Option<DtmfDigit> {
        if let Ok(ev) = DtmfEvent::parse(payload) {
            self.process(rtp_timestamp, ev, now);
        }
        self.take_ready()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return self.ready_since;
        }
        self.current
            .map(|c| c.last_seen.checked_add(self.timeout).unwrap_or(c.last_seen))
    }

    /// Reports an event whose end packets never came once `timeout` has passed since its
    /// last packet; also returns digits `on_packet` could not return (call until `None`).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<DtmfDigit> {
        if let Some(cur) = self.current {
            let idle = now
                .checked_duration_since(cur.last_seen)
                .unwrap_or(Duration::ZERO);
            if idle >= self.timeout {
                self.finish(now);
            }
        }
        self.take_ready()
    }

    fn take_ready(&mut self) -> Option<DtmfDigit> {
        let digit = self.ready.pop_front();
        if self.ready.is_empty() {
            self.ready_since = None;
        }
        digit
    }

    /// True if `ts` is before `reference` by less than 10 s of media clock: a late packet
    /// of an older event. Anything further back is taken as a new timeline.
    fn is_older(&self, ts: u32, reference: u32) -> bool {
        let back = reference.wrapping_sub(ts);
        back != 0 && u64::from(back) <= u64::from(self.clock_rate) * 10
    }

    fn process(&mut self, ts: u32, ev: DtmfEvent, now: Instant) {
        if ev.event > 15 || self.recent.contains(&ts) {
            return;
        }
        if let Some(last) = self.recent.back() {
            if self.is_older(ts, *last) {
                return;
            }
        }
        if let Some(cur) = self.current {
            if cur.timestamp == ts {
                if cur.event != ev.event {
                    return;
                }
                self.current = Some(CurrentEvent {
                    duration: cur.duration.max(ev.duration),
                    last_seen: now,
                    ..cur
                });
                if ev.end {
                    self.finish(now);
                }
                return;
            }
            if self.is_older(ts, cur.timestamp) {
                return;
            }
            // A newer event started: the current one lost all its end packets.
            self.finish(now);
        }
        self.current = Some(CurrentEvent {
            timestamp: ts,
            event: ev.event,
            duration: ev.duration,
            last_seen: now,
        });
        if ev.end {
            self.finish(now);
        }
    }

    /// Reports the current event and remembers its timestamp.
    fn finish(&mut self, now: Instant) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let Some(digit) = event_to_digit(cur.event) else {
            return;
        };
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(cur.timestamp);
        if self.ready.len() == MAX_READY {
            self.ready.pop_front();
        }
        let duration_ms = u64::from(cur.duration) * 1000 / u64::from(self.clock_rate);
        self.ready.push_back(DtmfDigit {
            digit,
            duration_ms: duration_ms as u32,
        });
        self.ready_since.get_or_insert(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(20);

    /// A sent packet with the tick time and the RTP timestamp of the tick.
    #[derive(Debug, Clone, Copy)]
    struct Sent {
        at: Instant,
        packet: DtmfPacket,
    }

    /// Runs a sender for `ticks` ticks from `t0`, audio timestamp 1000 + 160 per tick.
    fn run(sender: &mut DtmfSender, t0: Instant, ticks: u32) -> Vec<Option<Sent>> {
        (0..ticks)
            .map(|i| {
                let at = t0 + TICK * i;
                sender
                    .next_packet(at, 1000 + 160 * i)
                    .map(|packet| Sent { at, packet })
            })
            .collect()
    }

    fn sent_for(digits: &str) -> (Instant, Vec<Sent>) {
        let t0 = Instant::now();
        let mut s = DtmfSender::new(8000, TICK);
        s.queue(digits).unwrap();
        let out = run(&mut s, t0, 40);
        assert!(s.is_idle());
        (t0, out.into_iter().flatten().collect())
    }

    #[test]
    fn digit_mapping_round_trips() {
        for (code, c) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(digit_to_event(c), Some(code as u8));
            assert_eq!(event_to_digit(code as u8), Some(c));
        }
        assert_eq!(digit_to_event('d'), Some(15));
        assert_eq!(digit_to_event('E'), None);
        assert_eq!(digit_to_event(','), None);
        assert_eq!(event_to_digit(16), None);
    }

    #[test]
    fn event_payload_round_trips() {
        let ev = DtmfEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(ev.to_bytes(), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(DtmfEvent::parse(&ev.to_bytes()), Ok(ev));
        assert_eq!(ev.digit(), Some('#'));
        // Reserved bit ignored, trailing bytes ignored, short payload rejected.
        let p = DtmfEvent::parse(&[1, 0x40 | 63, 0, 160, 9, 9]).unwrap();
        assert_eq!((p.event, p.end, p.volume, p.duration), (1, false, 63, 160));
        assert_eq!(DtmfEvent::parse(&[1, 2, 3]), Err(DtmfError::TooShort));
    }

    #[test]
    fn sender_emits_rfc4733_sequence_for_1_hash() {
        let t0 = Instant::now();
        let mut s = DtmfSender::new(8000, TICK);
        s.queue("1#").unwrap();
        assert_eq!(s.pending(), 2);
        let out = run(&mut s, t0, 20);
        // Ticks 0-6: digit 1; 7-9: gap (audio); 10-16: '#'; then idle.
        let busy: Vec<bool> = out.iter().map(Option::is_some).collect();
        let mut expected = vec![true; 7];
        expected.extend([false; 3]);
        expected.extend([true; 7]);
        expected.extend([false; 3]);
        assert_eq!(busy, expected);
        let pkts: Vec<Sent> = out.into_iter().flatten().collect();
        assert_eq!(pkts.len(), 14);
        for (n, digit_pkts) in pkts.chunks(7).enumerate() {
            let event = [1u8, 11][n];
            let start_ts = 1000 + 160 * 10 * n as u32;
            let evs: Vec<DtmfEvent> = digit_pkts
                .iter()
                .map(|p| DtmfEvent::parse(&p.packet.payload).unwrap())
                .collect();
            let durations: Vec<u16> = evs.iter().map(|e| e.duration).collect();
            assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
            let ends: Vec<bool> = evs.iter().map(|e| e.end).collect();
            assert_eq!(ends, vec![false, false, false, false, true, true, true]);
            assert!(evs.iter().all(|e| e.event == event && e.volume == 10));
            let markers: Vec<bool> = digit_pkts.iter().map(|p| p.packet.marker).collect();
            assert_eq!(
                markers,
                vec![true, false, false, false, false, false, false]
            );
            assert!(digit_pkts.iter().all(|p| p.packet.timestamp == start_ts));
            assert!(digit_pkts
                .iter()
                .all(|p| p.packet.end == (p.packet.payload[1] & 0x80 != 0)));
        }
        assert!(s.is_idle());
        assert!(!s.is_active());
    }

    #[test]
    fn sender_is_active_only_while_sending_an_event() {
        let t0 = Instant::now();
        let mut s = DtmfSender::new(8000, TICK);
        assert!(s.next_packet(t0, 0).is_none());
        s.queue("5").unwrap();
        assert!(!s.is_active());
        assert!(s.next_packet(t0, 0).is_some());
        assert!(s.is_active());
        for i in 1..7u32 {
            assert!(s.next_packet(t0 + TICK * i, 160 * i).is_some());
        }
        assert!(!s.is_active());
        assert!(s.is_idle());
    }

    #[test]
    fn comma_pauses_two_seconds() {
        let t0 = Instant::now();
        let mut s = DtmfSender::new(8000, TICK);
        s.queue("1,2").unwrap();
        let out = run(&mut s, t0, 130);
        let starts: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some_and(|p| p.packet.marker))
            .map(|(i, _)| i)
            .collect();
        // '1' at tick 0, next slot at 200 ms, plus 2 s pause: '2' at 2.2 s = tick 110.
        assert_eq!(starts, vec![0, 110]);
    }

    #[test]
    fn queue_validates_and_is_bounded() {
        let mut s = DtmfSender::new(8000, TICK);
        assert_eq!(s.queue("12x"), Err(DtmfError::InvalidDigit('x')));
        assert_eq!(s.pending(), 0);
        s.queue(&"1".repeat(60)).unwrap();
        assert_eq!(s.queue("23456"), Err(DtmfError::QueueFull));
        assert_eq!(s.pending(), 60);
        s.queue("abcd").unwrap();
        assert_eq!(s.pending(), MAX_QUEUED_DIGITS);
        assert_eq!(s.queue("1"), Err(DtmfError::QueueFull));
        s.clear();
        assert!(s.is_idle());
    }

    #[test]
    fn odd_tone_length_ends_with_exact_duration() {
        let cfg = DtmfSenderConfig {
            tone: Duration::from_millis(90),
            end_repeats: 2,
            ..DtmfSenderConfig::default()
        };
        let mut s = DtmfSender::with_config(cfg);
        s.queue("9").unwrap();
        let t0 = Instant::now();
        let durs: Vec<(u16, bool)> = run(&mut s, t0, 10)
            .into_iter()
            .flatten()
            .map(|p| {
                let e = DtmfEvent::parse(&p.packet.payload).unwrap();
                (e.duration, e.end)
            })
            .collect();
        assert_eq!(
            durs,
            vec![
                (160, false),
                (320, false),
                (480, false),
                (640, false),
                (720, true),
                (720, true)
            ]
        );
    }

    fn receive(rx: &mut DtmfReceiver, pkts: &[Sent]) -> String {
        let mut got = String::new();
        for p in pkts {
            if let Some(d) = rx.on_packet(p.packet.timestamp, &p.packet.payload, p.at) {
                got.push(d.digit);
            }
            while let Some(d) = rx.handle_timeout(p.at) {
                got.push(d.digit);
            }
        }
        got
    }

    #[test]
    fn receiver_reports_each_digit_once_on_end() {
        let (t0, pkts) = sent_for("1#");
        let mut rx = DtmfReceiver::new(8000);
        let mut got = Vec::new();
        for p in &pkts {
            if let Some(d) = rx.on_packet(p.packet.timestamp, &p.packet.payload, p.at) {
                got.push((d, p.at - t0));
            }
        }
        assert_eq!(
            got,
            vec![
                (
                    DtmfDigit {
                        digit: '1',
                        duration_ms: 100
                    },
                    Duration::from_millis(80)
                ),
                (
                    DtmfDigit {
                        digit: '#',
                        duration_ms: 100
                    },
                    Duration::from_millis(280)
                ),
            ]
        );
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn receiver_ignores_duplicated_packets() {
        let (_, pkts) = sent_for("1#");
        let doubled: Vec<Sent> = pkts.iter().flat_map(|p| [*p, *p]).collect();
        assert_eq!(receive(&mut DtmfReceiver::new(8000), &doubled), "1#");
    }

    #[test]
    fn receiver_survives_a_lost_start_packet_or_any_single_loss() {
        let (_, pkts) = sent_for("1#");
        for lost in 0..pkts.len() {
            let mut some: Vec<Sent> = pkts.clone();
            some.remove(lost);
            assert_eq!(
                receive(&mut DtmfReceiver::new(8000), &some),
                "1#",
                "lost {lost}"
            );
        }
    }

    #[test]
    fn receiver_handles_reordered_packets() {
        let (_, mut pkts) = sent_for("1#");
        pkts.swap(0, 1); // start packet after the second
        pkts.swap(4, 3); // first end packet before the last update
        pkts.swap(6, 7); // last end repeat of '1' after the start of '#'
        let mut rx = DtmfReceiver::new(8000);
        assert_eq!(receive(&mut rx, &pkts), "1#");
        // Reported on the early end packet, so its duration is already the full 100 ms.
        let (_, again) = sent_for("7");
        let mut rx = DtmfReceiver::new(8000);
        let mut rev = again.clone();
        rev.reverse();
        let d = rx
            .on_packet(rev[0].packet.timestamp, &rev[0].packet.payload, rev[0].at)
            .unwrap();
        assert_eq!((d.digit, d.duration_ms), ('7', 100));
        assert_eq!(receive(&mut rx, &rev[1..]), "");
    }

    #[test]
    fn event_without_end_packets_is_reported_by_timeout() {
        let (t0, pkts) = sent_for("4");
        let no_end: Vec<Sent> = pkts.into_iter().filter(|p| !p.packet.end).collect();
        assert_eq!(no_end.len(), 4);
        let mut rx = DtmfReceiver::new(8000);
        assert_eq!(receive(&mut rx, &no_end), "");
        let last = t0 + Duration::from_millis(60);
        assert_eq!(rx.poll_timeout(), Some(last + Duration::from_secs(1)));
        assert_eq!(rx.handle_timeout(last + Duration::from_millis(999)), None);
        assert_eq!(
            rx.handle_timeout(last + Duration::from_secs(1)),
            Some(DtmfDigit {
                digit: '4',
                duration_ms: 80
            })
        );
        assert_eq!(rx.poll_timeout(), None);
        assert_eq!(rx.handle_timeout(last + Duration::from_secs(5)), None);
    }

    #[test]
    fn next_event_flushes_one_that_lost_its_end() {
        let (_, pkts) = sent_for("1#");
        // Drop the three end packets of '1' and all but the last end packet of '#'.
        let kept: Vec<Sent> = pkts
            .iter()
            .enumerate()
            .filter(|(i, _)| !(4..=12).contains(i))
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(kept.len(), 5);
        let mut rx = DtmfReceiver::new(8000);
        let mut got = Vec::new();
        for p in &kept {
            if let Some(d) = rx.on_packet(p.packet.timestamp, &p.packet.payload, p.at) {
                got.push(d);
            }
        }
        // '#' arrived as a lone end packet: both digits complete on that one call.
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].digit, '1');
        assert_eq!(got[0].duration_ms, 80);
        let t = kept[4].at;
        assert_eq!(rx.poll_timeout(), Some(t));
        assert_eq!(rx.handle_timeout(t).map(|d| d.digit), Some('#'));
        assert_eq!(rx.handle_timeout(t), None);
    }

    #[test]
    fn receiver_ignores_garbage_and_non_dtmf_events() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(8000);
        assert_eq!(rx.on_packet(0, &[], t0), None);
        assert_eq!(rx.on_packet(0, &[1, 2], t0), None);
        assert_eq!(rx.on_packet(0, &[32, 0x80, 0, 160], t0), None); // event 32 (not DTMF)
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn random_packets_and_odd_configs_do_not_panic() {
        let t0 = Instant::now();
        let mut seed = 99u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        let mut rx = DtmfReceiver::with_timeout(0, Duration::ZERO);
        for i in 0..5_000u64 {
            let len = (rnd() % 6) as usize;
            let payload: Vec<u8> = (0..len).map(|_| rnd() as u8 % 20).collect();
            let now = t0 + Duration::from_millis(i);
            let _ = rx.on_packet(rnd() % 64, &payload, now);
            while rx.handle_timeout(now).is_some() {}
        }
        let cfg = DtmfSenderConfig {
            clock_rate: 0,
            packet_interval: Duration::ZERO,
            tone: Duration::MAX,
            gap: Duration::MAX,
            pause: Duration::MAX,
            volume: 255,
            end_repeats: 0,
        };
        let mut tx = DtmfSender::with_config(cfg);
        tx.queue("1,2").unwrap();
        for i in 0..70_000u32 {
            let _ = tx.next_packet(t0 + Duration::from_millis(u64::from(i)), i);
        }
        // At the 1 Hz minimum rate the one-hour tone is 3600 samples, so '1' has ended;
        // the gap and pause (each capped at one hour) still hold back "2".
        assert!(!tx.is_active());
        assert_eq!(tx.pending(), 2);
    }
}
