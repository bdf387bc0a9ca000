//! The CPU cost of one whole call through two UA cores, and the memory a confirmed dialog
//! holds. `cargo bench -p sipua-proto --bench call`. Results go to docs/PERFORMANCE.md.
//!
//! Messages go straight from one core to the other (no simulated network), so what is
//! measured is parsing, transactions, dialogs and serialisation on both sides together:
//! INVITE, 100, 180, 200, ACK, BYE, 200. Memory per dialog is the growth of the resident set
//! from 50 000 to 100 000 answered calls (both sides in one process, halved).
//!
//! For instruction counts, `SIPUA_CALLS=N` runs N calls in a plain loop instead (no
//! criterion, no memory run), which `valgrind --tool=callgrind` can count:
//! `SIPUA_CALLS=20000 valgrind --tool=callgrind target/release/deps/call-<hash>`.
//!
//! `SIPUA_RR=N` puts N record-routing proxies in the path: each INVITE gets N
//! `Record-Route` lines on its way to Bob, so both sides' dialogs keep a route set of N and
//! their in-dialog requests carry it (the usual deployment, for its memory and its cost).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;

use criterion::{criterion_group, Criterion};
use sipua_message::{Method, Transport};
use sipua_proto::endpoint::Received;
use sipua_proto::ua::{UaConfig, UaCore, UaEvent};

/// Resident memory of this process in bytes (Linux), to measure memory per dialog.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The Record-Route lines an INVITE gains on its way to Bob (`SIPUA_RR`).
fn record_routes() -> &'static str {
    static RR: OnceLock<String> = OnceLock::new();
    RR.get_or_init(|| {
        let n = std::env::var("SIPUA_RR")
            .ok()
            .and_then(|n| n.parse::<usize>().ok());
        (1..=n.unwrap_or(0))
            .map(|i| format!("Record-Route: <sip:proxy{i}.example.net;lr>\r\n"))
            .collect()
    })
}

/// `bytes` as the proxies pass them on: an INVITE with their Record-Route after its first
/// line.
fn through_proxies(bytes: Bytes) -> Bytes {
    let rr = record_routes();
    if rr.is_empty() || !bytes.starts_with(b"INVITE ") {
        return bytes;
    }
    let Some(eol) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return bytes;
    };
    let mut v = Vec::with_capacity(bytes.len() + rr.len());
    v.extend_from_slice(&bytes[..eol + 2]);
    v.extend_from_slice(rr.as_bytes());
    v.extend_from_slice(&bytes[eol + 2..]);
    Bytes::from(v)
}

const A: &str = "192.0.2.1:5060";
const B: &str = "192.0.2.2:5060";

fn pair() -> (UaCore, UaCore) {
    let a = UaCore::new(UaConfig {
        seed: 1,
        ..UaConfig::new(A.parse().unwrap(), Transport::Udp, "alice")
    });
    let b = UaCore::new(UaConfig {
        seed: 2,
        ..UaConfig::new(B.parse().unwrap(), Transport::Udp, "bob")
    });
    (a, b)
}

/// Moves messages between the two cores until both are quiet; Bob rings and answers every
/// INVITE and accepts every BYE. Returns Alice's confirmed dialogs.
fn pump(
    now: Instant,
    a: &mut UaCore,
    b: &mut UaCore,
    dialogs: &mut Vec<sipua_proto::dialog::DialogId>,
) {
    let (aa, ba): (SocketAddr, SocketAddr) = (A.parse().unwrap(), B.parse().unwrap());
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(
                now,
                Received {
                    transport: t.transport,
                    remote: aa,
                    bytes: through_proxies(t.bytes),
                },
            );
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(
                now,
                Received {
                    transport: t.transport,
                    remote: ba,
                    bytes: t.bytes,
                },
            );
            moved = true;
        }
        while let Some(ev) = b.poll_event() {
            if let UaEvent::Request { id, request, .. } = ev {
                if *request.method() == Method::Invite {
                    let ringing = b.response(id, 180).unwrap();
                    b.respond(now, id, ringing).unwrap();
                }
                let ok = b.response(id, 200).unwrap();
                b.respond(now, id, ok).unwrap();
            }
            moved = true;
        }
        while let Some(ev) = a.poll_event() {
            if let UaEvent::Response {
                response,
                dialog: Some(d),
                ..
            } = ev
            {
                if response.is_success() && response.cseq().method == Method::Invite {
                    dialogs.push(d);
                }
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// One whole call, both sides: INVITE, 180, 200, ACK, BYE, 200; transactions expire now and
/// then so that tables stay small as in a real run.
fn one_call(
    a: &mut UaCore,
    b: &mut UaCore,
    now: &mut Instant,
    dialogs: &mut Vec<sipua_proto::dialog::DialogId>,
) {
    let bob: SocketAddr = B.parse().unwrap();
    a.invite(*now, "sip:bob@192.0.2.2:5060".parse().unwrap(), bob, None)
        .unwrap();
    pump(*now, a, b, dialogs);
    let d = dialogs.pop().unwrap();
    a.request_in_dialog(*now, &d, Method::Bye, bob).unwrap();
    pump(*now, a, b, dialogs);
    *now += Duration::from_millis(1);
    if a.transactions() > 10_000 {
        *now += Duration::from_secs(40);
        a.handle_timeout(*now);
        b.handle_timeout(*now);
    }
}

fn bench(c: &mut Criterion) {
    let start = Instant::now();
    let bob: SocketAddr = B.parse().unwrap();
    c.bench_function("call/invite-180-200-ack-bye-200 (both sides)", |bench| {
        let (mut a, mut b) = pair();
        let mut now = start;
        let mut dialogs = Vec::new();
        bench.iter(|| one_call(&mut a, &mut b, &mut now, &mut dialogs));
    });

    // memory per confirmed dialog: the marginal growth of the resident set between 50 000 and
    // 100 000 answered calls (transactions expired each time), so that memory freed by the
    // first batch's transactions is reused rather than counted
    let (mut a, mut b) = pair();
    let mut dialogs = Vec::new();
    let mut now = start;
    let mut batch = |a: &mut UaCore, b: &mut UaCore, now: &mut Instant, n: usize| {
        for _ in 0..n {
            a.invite(*now, "sip:bob@192.0.2.2:5060".parse().unwrap(), bob, None)
                .unwrap();
            pump(*now, a, b, &mut dialogs);
        }
        *now += Duration::from_secs(40);
        a.handle_timeout(*now);
        b.handle_timeout(*now);
        pump(*now, a, b, &mut dialogs);
        rss()
    };
    let first = batch(&mut a, &mut b, &mut now, 50_000);
    let second = batch(&mut a, &mut b, &mut now, 50_000);
    let per_side = second.saturating_sub(first) as f64 / 50_000.0 / 2.0;
    println!(
        "memory: {} + {} confirmed dialogs, {} transactions left, RSS {} MB, {:.0} bytes per dialog per side",
        a.dialogs(),
        b.dialogs(),
        a.transactions() + b.transactions(),
        second / 1_000_000,
        per_side
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("SIPUA_CALLS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let (mut a, mut b) = pair();
        let (mut now, mut dialogs) = (Instant::now(), Vec::new());
        for _ in 0..n {
            one_call(&mut a, &mut b, &mut now, &mut dialogs);
        }
        println!("{n} calls");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
