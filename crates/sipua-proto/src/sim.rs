//! A simulated network for tests: several [`Endpoint`]s exchange their [`Transmit`]s through
//! links with delay, jitter (so reordering), loss and duplication, on virtual time, from a
//! seed. The same seed gives the same run, and a minute of SIP timers takes microseconds.
//!
//! Streams (TCP, TLS, WS) are modelled as reliable and ordered: no loss, no duplication, and
//! each link delivers in sending order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipua_message::Transport;

use crate::endpoint::{Endpoint, Event, Received, Transmit};
use crate::ua::{UaCore, UaEvent};

/// Anything sans-IO that the simulator can drive: an [`Endpoint`] or a [`UaCore`].
pub trait Node {
    /// What it reports.
    type Event;
    /// A message arrived.
    fn handle_datagram(&mut self, now: Instant, rx: Received);
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// Bytes to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// Something to report.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The next deadline.
    fn poll_timeout(&mut self) -> Option<Instant>;
}

impl Node for Endpoint {
    type Event = Event;
    fn handle_datagram(&mut self, now: Instant, rx: Received) {
        Endpoint::handle_datagram(self, now, rx)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Endpoint::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<Event> {
        Endpoint::poll_event(self)
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
}

impl Node for UaCore {
    type Event = UaEvent;
    fn handle_datagram(&mut self, now: Instant, rx: Received) {
        UaCore::handle_datagram(self, now, rx)
    }
    fn handle_timeout(&mut self, now: Instant) {
        UaCore::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        UaCore::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<UaEvent> {
        UaCore::poll_event(self)
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        UaCore::poll_timeout(self)
    }
}

/// How one direction of a link behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in `0..=jitter`; reorders datagrams.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> LinkConfig {
        LinkConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

pub use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    transport: TransportKey,
    bytes: Bytes,
}

/// `Transport` is not `Ord`; the heap only needs a stable order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TransportKey(String);

/// The test's transaction user: called with (node index, node, now, event).
pub type TransactionUser<'a, N> = dyn FnMut(usize, &mut N, Instant, <N as Node>::Event) + 'a;

/// The network and the nodes on it.
#[derive(Debug)]
pub struct Sim<N: Node = Endpoint> {
    /// Virtual time now.
    pub now: Instant,
    rng: Rng,
    default_link: LinkConfig,
    links: HashMap<(SocketAddr, SocketAddr), LinkConfig>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    last_stream_delivery: HashMap<(SocketAddr, SocketAddr), Instant>,
    seq: u64,
    nodes: Vec<(SocketAddr, N)>,
    /// Datagrams sent, lost and duplicated so far.
    pub stats: NetStats,
}

/// Counters of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages it dropped.
    pub lost: u64,
    /// Extra copies it delivered.
    pub duplicated: u64,
}

impl<N: Node> Sim<N> {
    /// An empty network starting at `start`, every link behaving as `default_link`.
    pub fn new(seed: u64, start: Instant, default_link: LinkConfig) -> Sim<N> {
        Sim {
            now: start,
            rng: Rng::new(seed),
            default_link,
            links: HashMap::new(),
            in_flight: BinaryHeap::new(),
            last_stream_delivery: HashMap::new(),
            seq: 0,
            nodes: Vec::new(),
            stats: NetStats::default(),
        }
    }

    /// Adds a node at `addr`; returns its index.
    pub fn add(&mut self, addr: SocketAddr, node: N) -> usize {
        self.nodes.push((addr, node));
        self.nodes.len() - 1
    }

    /// The address of node `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].0
    }

    /// Node `i`.
    pub fn endpoint(&mut self, i: usize) -> &mut N {
        &mut self.nodes[i].1
    }

    /// Sets how the link from `from` to `to` behaves.
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, cfg: LinkConfig) {
        self.links.insert((from, to), cfg);
    }

    /// Puts a message on the wire from `from`.
    pub fn send(&mut self, from: SocketAddr, t: Transmit) {
        self.stats.sent += 1;
        let link = self
            .links
            .get(&(from, t.destination))
            .copied()
            .unwrap_or(self.default_link);
        let reliable = t.transport.is_reliable();
        if !reliable && self.rng.unit() < link.loss {
            self.stats.lost += 1;
            return;
        }
        let copies = if !reliable && self.rng.unit() < link.duplicate {
            2
        } else {
            1
        };
        self.stats.duplicated += copies - 1;
        for _ in 0..copies {
            let jitter = if reliable || link.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.rng.next_u64() % (link.jitter.as_nanos() as u64 + 1))
            };
            let mut at = self.now + link.delay + jitter;
            if reliable {
                // a stream delivers in order
                let last = self
                    .last_stream_delivery
                    .entry((from, t.destination))
                    .or_insert(at);
                at = at.max(*last);
                *last = at;
            }
            self.seq += 1;
            self.in_flight.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from,
                to: t.destination,
                transport: TransportKey(t.transport.as_str().to_owned()),
                bytes: t.bytes.clone(),
            }));
        }
    }

    /// Moves every pending transmit of every endpoint onto the wire; returns whether any was.
    fn flush(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.nodes.len() {
            while let Some(t) = self.nodes[i].1.poll_transmit() {
                let from = self.nodes[i].0;
                self.send(from, t);
                any = true;
            }
        }
        any
    }

    /// Runs until `until` (virtual time), giving every event to `tu` as
    /// `(node index, endpoint, now, event)`; `tu` may call the endpoint to respond or send.
    pub fn run_until(&mut self, until: Instant, tu: &mut TransactionUser<'_, N>) {
        loop {
            // settle: events may produce transmits and more events
            loop {
                let mut progressed = self.flush();
                for i in 0..self.nodes.len() {
                    while let Some(ev) = self.nodes[i].1.poll_event() {
                        let now = self.now;
                        tu(i, &mut self.nodes[i].1, now, ev);
                        progressed = true;
                    }
                }
                if !progressed {
                    break;
                }
            }
            let next_packet = self.in_flight.peek().map(|Reverse(p)| p.at);
            let next_timer = self
                .nodes
                .iter_mut()
                .filter_map(|(_, e)| e.poll_timeout())
                .min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => {
                        self.now = self.now.max(until);
                        return;
                    }
                },
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            while self
                .in_flight
                .peek()
                .is_some_and(|Reverse(p)| p.at <= self.now)
            {
                let Some(Reverse(p)) = self.in_flight.pop() else {
                    break;
                };
                if let Some(node) = self.nodes.iter_mut().find(|(a, _)| *a == p.to) {
                    let transport = Transport::parse(p.transport.0.as_bytes());
                    node.1.handle_datagram(
                        self.now,
                        Received {
                            transport,
                            remote: p.from,
                            bytes: p.bytes,
                        },
                    );
                }
            }
            let now = self.now;
            for (_, e) in &mut self.nodes {
                if e.poll_timeout().is_some_and(|t| t <= now) {
                    e.handle_timeout(now);
                }
            }
        }
    }
}
