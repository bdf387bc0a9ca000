//! A flood of INVITEs that are never acknowledged, each with 30 KB of headers and an SDP that
//! names a victim's address, against `sipua serve` with media on, while SIPp places ordinary
//! calls from another port (issue 20). Asserted: serve's memory stays under a stated bound
//! during and after the flood, the ordinary calls keep succeeding, and the victim's address
//! gets (almost) no RTP.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::matrix::sipua;
use crate::sipp::{counters, sipp};

/// INVITEs in the flood, sent at [`FLOOD_RATE`] a second.
const FLOOD: usize = 8_000;
const FLOOD_RATE: u64 = 800;

/// The bound on serve's resident memory during and after the flood: measured 116–124 MB peak
/// with the machine otherwise idle, 168 MB with the other interop tests running beside it
/// (serve then falls behind and the allocator keeps more). Before the budget for
/// unacknowledged calls (`max_unconfirmed_bytes`), these 8 000 calls held their 30 KB INVITEs
/// for 32 s: 604 MB peak, 643 MB after; the bound is half of that.
const RSS_LIMIT_MB: u64 = 300;

/// serve's resident set in MB, from /proc.
fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// One hostile INVITE: 300 headers of 100 bytes, an offer naming `victim`, never ACKed.
fn hostile_invite(target: u16, from: u16, victim: u16, i: usize) -> Vec<u8> {
    let pad: String = (0..300)
        .map(|h| format!("X-Flood-{h:03}: {}\r\n", "f".repeat(84)))
        .collect();
    let sdp = format!(
        "v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {victim} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    format!(
        "INVITE sip:bob@127.0.0.1:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{from};branch=z9hG4bKflood{i}\r\nMax-Forwards: 70\r\n\
         From: <sip:flood@127.0.0.1:{from}>;tag=f{i}\r\nTo: <sip:bob@127.0.0.1:{target}>\r\n\
         Call-ID: flood-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:flood@127.0.0.1:{from}>\r\n\
         {pad}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

#[test]
fn a_flood_of_unacknowledged_invites_is_bounded_and_real_calls_go_on() {
    let port = free_udp_port();
    let (serve, served) = spawn(sipua().args([
        "serve",
        "--listen",
        &format!("udp:127.0.0.1:{port}"),
        "--lifetime",
        "60",
    ]));
    assert!(served.wait_for("listening on", 10.0), "{}", served.text());
    let pid = serve.0.id();
    let base = rss_mb(pid);

    // the victim counts what reaches it
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    victim
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let victim_port = victim.local_addr().unwrap().port();
    let reflected = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let counter = {
        let (reflected, done) = (reflected.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if victim.recv(&mut buf).is_ok() {
                    reflected.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // serve's memory, sampled every 100 ms
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // ordinary calls from SIPp on another port, through the flood and past it
    let (mut uac, uac_out) = spawn(
        sipp()
            .args(["-sn", "uac", "-i", "127.0.0.1"])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-m", "300", "-r", "20", "-timeout", "60", "-nostdin"])
            .arg(format!("127.0.0.1:{port}")),
    );

    // the flood: never acknowledged, responses unread
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = flood.local_addr().unwrap().port();
    let start = Instant::now();
    for i in 0..FLOOD {
        let _ = flood.send_to(
            &hostile_invite(port, from, victim_port, i),
            ("127.0.0.1", port),
        );
        let due = start + Duration::from_micros(i as u64 * 1_000_000 / FLOOD_RATE);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let flood_time = start.elapsed();
    let during = peak.load(Ordering::Relaxed);

    let sipp_status = wait_exit(&mut uac, 60.0);
    uac_out.wait_closed(10.0);
    let (ok, failed) = counters(&uac_out.text());
    let after = rss_mb(pid);
    done.store(true, Ordering::Relaxed);
    counter.join().unwrap();
    sampler.join().unwrap();
    let reflected = reflected.load(Ordering::Relaxed);
    let answered = served.text().matches("flood@").count();
    eprintln!(
        "flood of {FLOOD} INVITEs in {flood_time:?}: RSS {base} MB before, {during} MB peak, \
         {after} MB after; {answered} flood calls seen; SIPp {ok} ok / {failed} failed; \
         {reflected} datagrams at the victim"
    );
    assert!(
        during < RSS_LIMIT_MB && after < RSS_LIMIT_MB,
        "RSS {during} MB peak, {after} MB after"
    );
    assert!(
        ok >= 297 && sipp_status.is_some(),
        "ordinary calls: {ok} ok, {failed} failed\n{}",
        uac_out.text()
    );
    // nothing goes to an address that never acknowledged (the BYEs that end the dropped
    // calls go to the flood's own Contact, not to the victim)
    assert_eq!(reflected, 0, "datagrams reflected at the victim");
    drop(serve);
}
