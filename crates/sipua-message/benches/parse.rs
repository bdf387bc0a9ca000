//! Parser speed, side by side with rsipstack's `parse_message`.
//!
//! `cargo bench -p sipua-message --bench parse`. Results go to docs/PERFORMANCE.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sipua_message::Message;

/// An INVITE with an SDP offer, as a softphone sends it (787 bytes, 240 of them SDP).
const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.101:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: sipua-bench/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 240\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// A registrar's 200 OK to REGISTER.
const REGISTER_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKnashds7;received=192.0.2.101;rport=5060\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=a73kszlfl\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=37GkEhwl6\r\n\
Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.101\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:bob@192.0.2.101:5060>;expires=3600\r\n\
Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n\
Server: sipua-bench/1.0\r\n\
Content-Length: 0\r\n\
\r\n";

/// The transaction key a core reads from every message (RFC 3261 §17.1.3 / §17.2.3).
fn key(m: &Message) -> usize {
    let via = m.via_key();
    via.branch.map_or(0, str::len)
        + via.host.len()
        + via.port.unwrap_or(5060) as usize
        + m.cseq().seq as usize
        + m.call_id().len()
        + m.from_tag().map_or(0, str::len)
        + m.to_tag().map_or(0, str::len)
}

fn bench(c: &mut Criterion) {
    for (name, msg) in [("invite_sdp", INVITE), ("register_200", REGISTER_200)] {
        assert!(Message::parse(msg).is_ok());
        assert!(rsipstack::sip::parser::parse_message(msg).is_ok());
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function("sipua/parse", |b| {
            b.iter(|| Message::parse(black_box(msg)).unwrap())
        });
        g.bench_function("sipua/parse_bytes", |b| {
            // zero-copy: the transport hands over the Bytes it received into
            b.iter(|| Message::parse_bytes(bytes::Bytes::from_static(black_box(msg))).unwrap())
        });
        g.bench_function("sipua/parse+key", |b| {
            b.iter(|| {
                let m = Message::parse(black_box(msg)).unwrap();
                key(&m)
            })
        });
        g.bench_function("sipua/parse+serialise", |b| {
            b.iter(|| Message::parse(black_box(msg)).unwrap().to_bytes())
        });
        g.bench_function("rsipstack/parse", |b| {
            b.iter(|| rsipstack::sip::parser::parse_message(black_box(msg)).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
