//! RTP/RTCP port pairs kept bound between calls. Binding a pair per call costs two sockets,
//! two binds and two closes, and once the range is crowded a search of many binds: at
//! thousands of calls a second with media, that is where a server's kernel time goes, and
//! what caps the call rate of stacks that bind per call. A pair a call is done with goes back
//! to a pool (one per bind address and port range) and is handed to a later call once it has
//! been quiet for [`QUIET`], with whatever arrived for the old call thrown away: a late packet
//! of the old peer must not be the first the new call hears (it would latch onto it,
//! RFC 4961's symmetric RTP). The pool is bounded ([`MAX_IDLE`]); past it, pairs are closed.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, UdpSocket};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a returned pair rests before another call gets it: the old peer stops sending
/// once our BYE reaches it, a round trip after the call ends. (A pool that rests pairs for
/// long hoards the range: at 3 000 calls/s, 2 s of rest held every pair of the default range
/// between a caller and a server on one address.)
pub(crate) const QUIET: Duration = Duration::from_millis(500);

/// Most idle pairs kept for one address and range: a quarter of the range, so that the
/// pool never takes the ports that other programs on the address (or a second agent in
/// this process with another range) bind from it, and at most this many.
pub(crate) const MAX_IDLE: usize = 4096;

/// Which pool a pair belongs to: the address it is bound to and the range it came from.
pub(crate) type Key = (IpAddr, (u16, u16));

struct Idle {
    since: Instant,
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

fn pools() -> &'static Mutex<HashMap<Key, VecDeque<Idle>>> {
    static POOLS: OnceLock<Mutex<HashMap<Key, VecDeque<Idle>>>> = OnceLock::new();
    POOLS.get_or_init(Mutex::default)
}

/// A pair from the pool of `key` that has been quiet long enough at `now` (or any, oldest
/// first, when `rested` is false: every port of the range is taken, and a pair that rested
/// less beats a failed call), its receive queues emptied; `None` when there is none (the
/// caller binds a new one).
pub(crate) fn take(key: Key, now: Instant, rested: bool) -> Option<(UdpSocket, UdpSocket)> {
    let mut pools = pools().lock().unwrap_or_else(|e| e.into_inner());
    let idle = pools.get_mut(&key)?;
    // oldest first: if the front is not ready, none is
    if rested && idle.front()?.since + QUIET > now {
        return None;
    }
    let Idle { rtp, rtcp, .. } = idle.pop_front()?;
    drop(pools);
    discard_queued(&rtp);
    discard_queued(&rtcp);
    Some((rtp, rtcp))
}

/// Gives a pair back at `now` (non-blocking sockets, bound from the range of `key`); closed
/// instead when the pool is full.
pub(crate) fn give(key: Key, rtp: UdpSocket, rtcp: UdpSocket, now: Instant) {
    let (lo, hi) = key.1;
    let pairs = usize::from(hi.saturating_sub(lo) / 2);
    give_bounded(key, rtp, rtcp, now, (pairs / 4).min(MAX_IDLE));
}

fn give_bounded(key: Key, rtp: UdpSocket, rtcp: UdpSocket, now: Instant, max: usize) {
    let mut pools = pools().lock().unwrap_or_else(|e| e.into_inner());
    let idle = pools.entry(key).or_default();
    if idle.len() < max {
        idle.push_back(Idle {
            since: now,
            rtp,
            rtcp,
        });
    }
}

/// Reads and drops every datagram waiting on `s` (non-blocking).
fn discard_queued(s: &UdpSocket) {
    let mut buf = [0u8; 2048];
    // bounded: a peer still flooding the port cannot keep us here
    for _ in 0..10_000 {
        if s.recv_from(&mut buf).is_err() {
            return;
        }
    }
}

/// How many pairs rest in the pool of `key`.
#[cfg(test)]
pub(crate) fn idle(key: Key) -> usize {
    pools()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .map_or(0, VecDeque::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn a_pair_is_reused_only_after_resting_and_without_the_old_calls_packets() {
        // a range no other test uses: pools are per process
        let key: Key = ("127.0.0.1".parse().unwrap(), (40000, 40099));
        let t0 = Instant::now();
        assert!(take(key, t0, true).is_none());
        let (rtp, rtcp) = pair();
        let port = rtp.local_addr().unwrap().port();
        // the old peer's packets, sent after the call ended
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            peer.send_to(b"late", rtp.local_addr().unwrap()).unwrap();
            peer.send_to(b"late", rtcp.local_addr().unwrap()).unwrap();
        }
        give(key, rtp, rtcp, t0);
        assert_eq!(idle(key), 1);
        assert!(take(key, t0 + QUIET / 2, true).is_none(), "still resting");
        let (rtp, rtcp) = take(key, t0 + QUIET, true).expect("rested");
        assert_eq!(rtp.local_addr().unwrap().port(), port, "the same socket");
        let mut buf = [0u8; 16];
        assert!(
            rtp.recv_from(&mut buf).is_err(),
            "the old call's packets are gone"
        );
        assert!(rtcp.recv_from(&mut buf).is_err());
        // what the new peer sends arrives
        peer.send_to(b"new", rtp.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rtp.recv_from(&mut buf).unwrap().0, 3);
        assert_eq!(idle(key), 0);
    }

    #[test]
    fn the_pool_is_bounded_and_hands_out_the_oldest_first() {
        let key: Key = ("127.0.0.1".parse().unwrap(), (40100, 40199));
        let t0 = Instant::now();
        let mut ports = Vec::new();
        for i in 0..5 {
            let (rtp, rtcp) = pair();
            ports.push(rtp.local_addr().unwrap().port());
            give_bounded(key, rtp, rtcp, t0 + Duration::from_millis(i), 3);
        }
        assert_eq!(idle(key), 3, "past the bound, pairs are closed");
        let later = t0 + QUIET + Duration::from_secs(1);
        for want in &ports[..3] {
            let (rtp, _) = take(key, later, true).unwrap();
            assert_eq!(rtp.local_addr().unwrap().port(), *want);
        }
        assert!(take(key, later, true).is_none());
    }
}
