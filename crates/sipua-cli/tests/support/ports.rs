//! Free loopback ports for the programs a test starts, shared by the CLI's test binaries
//! (included with `#[path]`).

#![allow(dead_code)] // each test binary uses some of these

use std::net::{TcpListener, UdpSocket};

/// The ports the tests hand to programs they start: 10000–16383, below sipua's RTP range
/// (16384–32767), baresip's in our config (20000–29999) and the kernel's ephemeral range
/// (32768–60999). A port taken by binding port 0 is in the ephemeral range, so between our
/// check and the program's own bind any connection some other test opens can take it (CI
/// once saw `Address already in use` that way); a port from here can only be taken by another
/// test's allocation, and the counter below hands each out once per run.
const TEST_PORTS: std::ops::Range<u16> = 10_000..16_384;

/// The next port to try; starts at an offset from the process id so that two runs close
/// together do not walk the same ports.
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// The first of `n` consecutive ports from [`TEST_PORTS`] for which `free` holds, none of
/// them handed out before in this run.
fn test_ports(n: u16, free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::Ordering;
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT_PORT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(997) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let first = NEXT_PORT.fetch_add(u32::from(n), Ordering::SeqCst) % span;
        if first + u32::from(n) > span {
            continue; // would run past the end of the range
        }
        let port = TEST_PORTS.start + first as u16;
        if free(port) {
            return port;
        }
    }
    panic!("no free test port in {TEST_PORTS:?} on 127.0.0.1");
}

fn udp_and_tcp_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port free for UDP and TCP on 127.0.0.1 (so any transport can listen on it).
pub(crate) fn free_udp_port() -> u16 {
    test_ports(1, udp_and_tcp_free)
}

/// A port free for UDP and TCP whose next port is free for TCP too: baresip listens on UDP and
/// TCP at its SIP port and opens a TLS listener at SIP port + 1.
pub(crate) fn free_baresip_sip_port() -> u16 {
    test_ports(2, |p| {
        udp_and_tcp_free(p) && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
    })
}

/// Another port free for UDP and TCP (the counter never hands one out twice, so no list of
/// ports already taken is needed).
pub(crate) fn free_tcp_port() -> u16 {
    test_ports(1, udp_and_tcp_free)
}
