//! Whole calls between two sipua user agents over real loopback sockets, one test per
//! transport, plus the stream rules: connection reuse, CRLF keep-alive (RFC 5626 §4.4.1), idle
//! close, and the switch to TCP for requests too large for UDP (RFC 3261 §18.1.1).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use sipua::message::{Header, HeaderName, Uri};
use sipua::rustls;
use sipua::{
    EndReason, Inviter, InviterInviteOptions, InviterOptions, Listen, TlsOptions, UserAgent,
    UserAgentOptions,
};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn agent(listen: Listen, tweak: impl FnOnce(&mut UserAgentOptions)) -> UserAgent {
    let mut o = UserAgentOptions {
        listen,
        ..Default::default()
    };
    tweak(&mut o);
    let ua = UserAgent::new(o);
    ua.start().await.unwrap();
    ua
}

fn target(ua: &UserAgent, transport: &str) -> Uri {
    let a = ua.local_addr().unwrap();
    let param = if transport == "udp" {
        String::new()
    } else {
        format!(";transport={transport}")
    };
    format!("sip:bob@{a}{param}").parse().unwrap()
}

/// Alice calls Bob, Bob answers, Alice hangs up; returns the INVITE Bob received.
async fn call(alice: &UserAgent, bob: &UserAgent, to: Uri, extra: Vec<Header>) -> String {
    let call = Inviter::new(alice, to, InviterOptions::default()).unwrap();
    call.invite(InviterInviteOptions {
        extra_headers: extra,
    })
    .await
    .unwrap();
    let inv = tokio::time::timeout(Duration::from_secs(5), bob.next_invitation())
        .await
        .expect("the INVITE arrives")
        .unwrap();
    let invite = String::from_utf8_lossy(&inv.request().to_bytes()).into_owned();
    inv.progress(Default::default()).await.unwrap();
    inv.accept(Default::default()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), call.established())
        .await
        .unwrap()
        .unwrap();
    let bye = call.bye().await.unwrap();
    assert_eq!(bye.status(), 200);
    assert_eq!(inv.terminated().await, EndReason::RemoteBye);
    invite
}

/// A transport of the user's own: a UDP socket that counts what it carries (a relay or a
/// tunnel has the same shape).
struct Counting {
    socket: tokio::net::UdpSocket,
    /// The same socket for sending: a send on a non-blocking socket needs no readiness.
    sender: std::net::UdpSocket,
    buf: Vec<u8>,
    counts: std::sync::Arc<(
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
    )>,
}

impl sipua::DatagramTransport for Counting {
    fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn send_to(&mut self, datagram: bytes::Bytes, to: SocketAddr) -> std::io::Result<()> {
        self.counts
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sender.send_to(&datagram, to).map(|_| ())
    }

    fn poll_recv_from(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(bytes::Bytes, SocketAddr)>> {
        let mut rb = tokio::io::ReadBuf::new(&mut self.buf);
        match self.socket.poll_recv_from(cx, &mut rb) {
            std::task::Poll::Ready(Ok(from)) => {
                self.counts
                    .1
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::task::Poll::Ready(Some((bytes::Bytes::copy_from_slice(rb.filled()), from)))
            }
            std::task::Poll::Ready(Err(_)) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

struct CountingFactory(
    std::sync::Arc<(
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
    )>,
);

impl sipua::DatagramTransportFactory for CountingFactory {
    fn bind(&self) -> std::io::Result<Box<dyn sipua::DatagramTransport>> {
        let std = std::net::UdpSocket::bind("127.0.0.1:0")?;
        std.set_nonblocking(true)?;
        Ok(Box::new(Counting {
            sender: std.try_clone()?,
            socket: tokio::net::UdpSocket::from_std(std)?,
            buf: vec![0; 65_535],
            counts: self.0.clone(),
        }))
    }
}

#[tokio::test]
async fn a_datagram_transport_of_the_users_own_carries_a_whole_call() {
    let counts = std::sync::Arc::new(Default::default());
    let factory = std::sync::Arc::new(CountingFactory(std::sync::Arc::clone(&counts)));
    let alice = agent(Listen::Datagram(factory), |_| {}).await;
    let bob = agent(Listen::Udp(loopback()), |o| o.user = "bob".into()).await;
    let invite = call(&alice, &bob, target(&bob, "udp"), Vec::new()).await;
    // its address is in Via, as UDP
    let at = alice.local_addr().unwrap();
    assert!(
        invite.contains(&format!("Via: SIP/2.0/UDP {at};")),
        "{invite}"
    );
    // INVITE, ACK, BYE went out through it; 100/180/200 and the 200 to the BYE came in
    let (sent, received) = (
        counts.0.load(std::sync::atomic::Ordering::Relaxed),
        counts.1.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        sent >= 3 && received >= 3,
        "sent {sent}, received {received}"
    );
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn udp_carries_a_whole_call() {
    let alice = agent(Listen::Udp(loopback()), |_| {}).await;
    let bob = agent(Listen::Udp(loopback()), |o| o.user = "bob".into()).await;
    let invite = call(&alice, &bob, target(&bob, "udp"), Vec::new()).await;
    assert!(invite.contains("Via: SIP/2.0/UDP 127.0.0.1:"), "{invite}");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn tcp_carries_a_whole_call_and_reuses_its_connections() {
    let alice = agent(Listen::Tcp(loopback()), |_| {}).await;
    let bob = agent(Listen::Tcp(loopback()), |o| o.user = "bob".into()).await;
    let invite = call(&alice, &bob, target(&bob, "tcp"), Vec::new()).await;
    assert!(invite.contains("Via: SIP/2.0/TCP 127.0.0.1:"), "{invite}");
    assert!(
        invite.contains(";transport=tcp>"),
        "Contact names TCP: {invite}"
    );
    // Alice's connection to Bob carried the call; Bob's BYE-less side reused what it had:
    // Bob opened at most one connection back to Alice's listener for nothing but the
    // requests he sends (none here), so each side holds one or two.
    let (a, b) = (alice.stats().await.unwrap(), bob.stats().await.unwrap());
    assert!((1..=2).contains(&a.connections), "{a:?}");
    assert!((1..=2).contains(&b.connections), "{b:?}");
    // a second call goes over the same connection
    call(&alice, &bob, target(&bob, "tcp"), Vec::new()).await;
    assert_eq!(alice.stats().await.unwrap().connections, a.connections);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn idle_tcp_connections_close() {
    let alice = agent(Listen::Tcp(loopback()), |o| {
        o.connection_idle_timeout = Duration::from_millis(500)
    })
    .await;
    let bob = agent(Listen::Tcp(loopback()), |o| o.user = "bob".into()).await;
    call(&alice, &bob, target(&bob, "tcp"), Vec::new()).await;
    assert!(alice.stats().await.unwrap().connections >= 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(alice.stats().await.unwrap().connections, 0);
    // and Bob noticed the close too
    assert_eq!(bob.stats().await.unwrap().connections, 0);
    // a new call opens a new connection
    call(&alice, &bob, target(&bob, "tcp"), Vec::new()).await;
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn crlf_ping_gets_a_pong_and_broken_framing_closes_the_connection() {
    let bob = agent(Listen::Tcp(loopback()), |_| {}).await;
    let addr = bob.local_addr().unwrap();
    let (pong, closed) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"\r\n\r\n").unwrap();
        let mut buf = [0u8; 8];
        let n = s.read(&mut buf).unwrap();
        let pong = buf[..n].to_vec();
        // a Content-Length that is not a number: framing is lost, the server closes
        s.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: abc\r\n\r\n")
            .unwrap();
        let closed = matches!(s.read(&mut buf), Ok(0));
        (pong, closed)
    })
    .await
    .unwrap();
    assert_eq!(pong, b"\r\n");
    assert!(closed);
    bob.stop().await;
}

#[tokio::test]
async fn a_request_too_large_for_udp_goes_over_tcp() {
    let alice = agent(Listen::Udp(loopback()), |_| {}).await;
    let bob = agent(Listen::Udp(loopback()), |o| o.user = "bob".into()).await;
    let big = Header::new(HeaderName::from("X-Padding"), "x".repeat(1500));
    let invite = call(&alice, &bob, target(&bob, "udp"), vec![big]).await;
    assert!(invite.contains("Via: SIP/2.0/TCP 127.0.0.1:"), "{invite}");
    alice.stop().await;
    bob.stop().await;
}

/// A certificate for 127.0.0.1 made at test time, and options that serve it and trust it.
fn test_tls() -> TlsOptions {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (chain, key) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    TlsOptions::from_pem(&chain, &key, &chain).unwrap()
}

async fn stream_call(listen: fn(SocketAddr) -> Listen, scheme: &str, via: &str) {
    let tls = test_tls();
    let t = tls.clone();
    let alice = agent(listen(loopback()), |o| o.tls = t).await;
    let bob = agent(listen(loopback()), |o| {
        o.user = "bob".into();
        o.tls = tls
    })
    .await;
    let invite = call(&alice, &bob, target(&bob, scheme), Vec::new()).await;
    assert!(
        invite.contains(&format!("Via: SIP/2.0/{via} 127.0.0.1:")),
        "{invite}"
    );
    assert!(
        invite.contains(&format!(";transport={scheme}>")),
        "{invite}"
    );
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn tls_carries_a_whole_call() {
    stream_call(Listen::Tls, "tls", "TLS").await;
}

#[tokio::test]
async fn websocket_carries_a_whole_call() {
    stream_call(Listen::Ws, "ws", "WS").await;
}

#[tokio::test]
async fn secure_websocket_carries_a_whole_call() {
    stream_call(Listen::Wss, "wss", "WSS").await;
}

#[tokio::test]
async fn tls_to_an_untrusted_certificate_fails_the_call() {
    let bob = agent(Listen::Tls(loopback()), |o| o.tls = test_tls()).await;
    // Alice trusts another certificate than Bob's
    let alice = agent(Listen::Tls(loopback()), |o| o.tls = test_tls()).await;
    let call = Inviter::new(&alice, target(&bob, "tls"), InviterOptions::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(15), call.terminated())
        .await
        .expect("the failure is reported, not waited out");
    assert_eq!(end, EndReason::TransportError);
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn websocket_without_the_sip_subprotocol_is_refused() {
    let bob = agent(Listen::Ws(loopback()), |_| {}).await;
    let addr = bob.local_addr().unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    bob.stop().await;
}

#[tokio::test]
async fn the_side_that_opened_a_tcp_flow_keeps_it_alive_with_crlf_pings() {
    // Alice pings every 300 ms and would close idle connections after 500 ms; Bob answers
    // each ping with a pong, so Alice's connection outlives the idle limit
    let alice = agent(Listen::Tcp(loopback()), |o| {
        o.keepalive_interval = Some(Duration::from_millis(300));
        o.connection_idle_timeout = Duration::from_millis(500);
    })
    .await;
    let bob = agent(Listen::Tcp(loopback()), |o| o.user = "bob".into()).await;
    call(&alice, &bob, target(&bob, "tcp"), Vec::new()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(alice.stats().await.unwrap().connections, 1);
    alice.stop().await;
    bob.stop().await;

    // against a server that never answers, the ping is on the wire after the interval
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let alice = agent(Listen::Tcp(loopback()), |o| {
        o.keepalive_interval = Some(Duration::from_millis(300))
    })
    .await;
    let reader = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"\r\n\r\n\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the ping");
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let call = Inviter::new(
        &alice,
        format!("sip:x@127.0.0.1:{port};transport=tcp")
            .parse()
            .unwrap(),
        // no body: the INVITE ends with its blank line, so a ping makes four CRLFs in a row
        InviterOptions {
            invite_without_sdp: true,
            ..Default::default()
        },
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let seen = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    // the INVITE (ending in its blank line), then a ping
    assert!(seen.starts_with(b"INVITE "));
    alice.stop().await;
}

/// Options that serve a certificate for exactly `names` (DNS names or IP addresses) and
/// trust it.
fn tls_for(names: &[&str]) -> TlsOptions {
    let cert =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let (chain, key) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    TlsOptions::from_pem(&chain, &key, &chain).unwrap()
}

/// Bob on TLS with `tls`'s certificate, answering the first call, on a task of its own.
async fn tls_bob(tls: &TlsOptions) -> (UserAgent, tokio::task::JoinHandle<()>) {
    let t = tls.clone();
    let bob = agent(Listen::Tls(loopback()), |o| {
        o.user = "bob".into();
        o.tls = t
    })
    .await;
    let answering = tokio::spawn({
        let bob = bob.clone();
        async move {
            if let Some(inv) = bob.next_invitation().await {
                inv.accept(Default::default()).await.unwrap();
                inv.terminated().await;
            }
        }
    });
    (bob, answering)
}

/// Calls `uri` from a TLS agent trusting `tls`'s certificate; how the call ended and why.
async fn tls_call(tls: &TlsOptions, uri: &str) -> (EndReason, Option<sipua::TransportError>) {
    let alice = agent(Listen::Tls(loopback()), |o| o.tls = tls.clone()).await;
    let call = Inviter::new(&alice, uri.parse().unwrap(), InviterOptions::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), call.established()).await;
    let end = if matches!(r, Ok(Ok(()))) {
        call.bye().await.unwrap();
        call.terminated().await
    } else {
        call.terminated().await
    };
    let why = call.send_failure();
    alice.stop().await;
    (end, why)
}

#[tokio::test]
async fn tls_checks_the_certificate_against_the_host_of_the_uri_not_the_address() {
    // RFC 5922 §7.2: the name the caller asked for is what the server must prove
    for (names, host, ok) in [
        (&["localhost"][..], "localhost", true),
        (&["localhost"][..], "127.0.0.1", false),
        (&["127.0.0.1"][..], "localhost", false),
        (&["127.0.0.1"][..], "127.0.0.1", true),
    ] {
        let tls = tls_for(names);
        let (bob, answering) = tls_bob(&tls).await;
        let port = bob.local_addr().unwrap().port();
        let (end, why) = tls_call(&tls, &format!("sip:bob@{host}:{port};transport=tls")).await;
        if ok {
            assert_eq!(end, EndReason::LocalBye, "{names:?} for {host}");
        } else {
            assert_eq!(end, EndReason::TransportError, "{names:?} for {host}");
            // the error is of the TLS kind, and rustls's reason is there to match on
            let why = why.expect("a reason");
            assert_eq!(why.kind(), sipua::TransportErrorKind::Tls, "{why}");
            assert!(
                matches!(
                    why.tls_error(),
                    Some(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName
                            | rustls::CertificateError::NotValidForNameContext { .. }
                    ))
                ),
                "{why}: {:?}",
                why.tls_error()
            );
            assert!(why.to_string().contains("certificate"), "{why}");
        }
        answering.abort();
        bob.stop().await;
    }
}

#[tokio::test]
async fn a_tls_connection_to_a_host_name_sends_it_by_sni() {
    use tokio_rustls::rustls;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sni = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = acceptor.await.unwrap();
        start.client_hello().server_name().map(str::to_owned)
    });
    let tls = tls_for(&["localhost"]);
    let _ = tls_call(&tls, &format!("sip:bob@localhost:{port};transport=tls")).await;
    assert_eq!(sni.await.unwrap().as_deref(), Some("localhost"));
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_slot() {
    let bob = agent(Listen::Tcp(loopback()), |o| {
        o.max_connections_per_address = 3
    })
    .await;
    let addr = bob.local_addr().unwrap();
    let verdicts = tokio::task::spawn_blocking(move || {
        // five connections from 127.0.0.1: three are kept, the others closed at once
        let conns: Vec<std::net::TcpStream> = (0..5)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut closed = 0;
        for mut c in conns.iter() {
            c.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 8];
            if matches!(c.read(&mut buf), Ok(0)) {
                closed += 1;
            }
        }
        // another address is not locked out: a CRLF ping from 127.0.0.2 gets its pong
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut other: std::net::TcpStream = sock.into();
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        other.write_all(b"\r\n\r\n").unwrap();
        let mut buf = [0u8; 8];
        let n = other.read(&mut buf).unwrap_or(0);
        (closed, buf[..n].to_vec())
    })
    .await
    .unwrap();
    assert_eq!(verdicts.0, 2, "the connections beyond three are refused");
    assert_eq!(verdicts.1, b"\r\n", "another address still gets in");
    bob.stop().await;
}

#[tokio::test]
async fn a_full_table_closes_the_oldest_idle_connection_for_a_new_one() {
    let bob = agent(Listen::Tcp(loopback()), |o| o.max_connections = 3).await;
    let addr = bob.local_addr().unwrap();
    let (fresh_refused, evicted, pong) = tokio::task::spawn_blocking(move || {
        let closed = |c: &std::net::TcpStream, wait: u64| {
            c.set_read_timeout(Some(Duration::from_millis(wait)))
                .unwrap();
            let mut buf = [0u8; 8];
            matches!((&*c).read(&mut buf), Ok(0))
        };
        let idle: Vec<std::net::TcpStream> = (0..3)
            .map(|_| {
                let c = std::net::TcpStream::connect(addr).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                c
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // the table is full of fresh connections: a fourth is refused
        let fourth = std::net::TcpStream::connect(addr).unwrap();
        let fresh_refused = closed(&fourth, 500);
        // once they have idled 2 s, a new one gets in and the oldest idle one goes
        std::thread::sleep(Duration::from_millis(2200));
        let mut fifth = std::net::TcpStream::connect(addr).unwrap();
        fifth
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        fifth.write_all(b"\r\n\r\n").unwrap();
        let mut buf = [0u8; 8];
        let n = fifth.read(&mut buf).unwrap_or(0);
        let evicted: Vec<bool> = idle.iter().map(|c| closed(c, 300)).collect();
        (fresh_refused, evicted, buf[..n].to_vec())
    })
    .await
    .unwrap();
    assert!(
        fresh_refused,
        "no connection was idle long enough to make room"
    );
    assert_eq!(pong, b"\r\n", "the new connection is served");
    assert_eq!(
        evicted,
        [true, false, false],
        "the oldest idle one is closed"
    );
    bob.stop().await;
}

#[tokio::test]
async fn a_message_sent_a_byte_at_a_time_does_not_hold_the_connection() {
    let bob = agent(Listen::Tcp(loopback()), |o| {
        o.message_timeout = Duration::from_millis(600)
    })
    .await;
    let addr = bob.local_addr().unwrap();
    let (closed_after, kept) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let start = std::time::Instant::now();
        let message = b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\n";
        let mut buf = [0u8; 64];
        for b in message.iter().cycle().take(200) {
            // one byte every 50 ms: each resets no idle timer that matters any more
            if s.write_all(&[*b]).is_err() {
                break;
            }
            if matches!(s.read(&mut buf), Ok(0)) {
                return (Some(start.elapsed()), false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (None, true)
    })
    .await
    .unwrap();
    assert!(!kept, "the slow sender kept its connection");
    let t = closed_after.unwrap();
    assert!(t < Duration::from_secs(3), "closed after {t:?}");
    bob.stop().await;
}

/// A self-signed certificate for `name`: (chain, key) in PEM.
fn identity(name: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}

/// How a TLS call from an agent with `tls` to `bob` ends: Established, or why not.
async fn outcome(tls: TlsOptions, bob: &UserAgent) -> Result<(), EndReason> {
    let alice = agent(Listen::Tls(loopback()), |o| o.tls = tls).await;
    let call = Inviter::new(&alice, target(bob, "tls"), InviterOptions::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    // Bob answers what reaches him
    let answered = tokio::select! {
        inv = bob.next_invitation() => {
            let inv = inv.unwrap();
            inv.accept(Default::default()).await.unwrap();
            true
        }
        _ = call.terminated() => false,
    };
    let r = if answered {
        tokio::time::timeout(Duration::from_secs(5), call.established()).await
    } else {
        Ok(Err(sipua::Error::Timeout))
    };
    let result = if matches!(r, Ok(Ok(()))) {
        call.bye().await.unwrap();
        Ok(())
    } else {
        Err(call.terminated().await)
    };
    alice.stop().await;
    result
}

#[tokio::test]
async fn mutual_tls_takes_only_clients_with_a_trusted_certificate() {
    let (server_chain, server_key) = identity("127.0.0.1");
    let (client_chain, client_key) = identity("alice.example");
    let (other_chain, other_key) = identity("mallory.example");
    let bob = agent(Listen::Tls(loopback()), |o| {
        o.user = "bob".into();
        o.tls = TlsOptions::default()
            .require_client_certificates(&server_chain, &server_key, &client_chain)
            .unwrap();
    })
    .await;
    // the right certificate
    let ok = TlsOptions::default()
        .present_client_certificate(&client_chain, &client_key, &server_chain)
        .unwrap();
    assert_eq!(outcome(ok, &bob).await, Ok(()));
    // none, and one the server does not trust: the server ends the handshake, and the call
    // fails at once with a transport error (not after Timer B's 32 s)
    let none = TlsOptions::from_pem("", "", &server_chain).unwrap();
    let other = TlsOptions::default()
        .present_client_certificate(&other_chain, &other_key, &server_chain)
        .unwrap();
    for refused in [none, other] {
        let start = std::time::Instant::now();
        assert_eq!(outcome(refused, &bob).await, Err(EndReason::TransportError));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    bob.stop().await;
}

#[tokio::test]
async fn insecure_accepts_a_certificate_that_cannot_be_checked_and_nothing_else_does() {
    // Bob's certificate names another host and nobody trusts it
    let bob = agent(Listen::Tls(loopback()), |o| {
        o.user = "bob".into();
        o.tls = tls_for(&["other.example"]);
    })
    .await;
    assert_eq!(
        outcome(TlsOptions::default().insecure(), &bob).await,
        Ok(())
    );
    let trusting_another = tls_for(&["127.0.0.1"]);
    assert_eq!(
        outcome(trusting_another, &bob).await,
        Err(EndReason::TransportError)
    );
    bob.stop().await;
}

#[tokio::test]
async fn listening_on_a_port_in_use_is_a_listen_error_of_kind_addr_in_use() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp(addr),
        ..Default::default()
    });
    match ua.start().await {
        Err(sipua::Error::Listen { listen, source }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            assert_eq!(listen, format!("udp:{addr}"));
            let e = ua.start().await.unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("cannot listen on udp:{addr}: ")),
                "{text}"
            );
            assert!(std::error::Error::source(&e).is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn half_received_messages_cannot_take_more_than_their_budget() {
    let bob = agent(Listen::Tcp(loopback()), |o| o.max_partial_bytes = 10_000).await;
    let addr = bob.local_addr().unwrap();
    let (closed, answered) = tokio::task::spawn_blocking(move || {
        let partial = format!(
            "OPTIONS sip:bob@{addr} SIP/2.0\r\nX-Pad: {}",
            "p".repeat(4_000)
        );
        let conns: Vec<std::net::TcpStream> = (0..3)
            .map(|_| {
                let mut c = std::net::TcpStream::connect(addr).unwrap();
                c.write_all(partial.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                c
            })
            .collect();
        // the third would take the total past 10 000 bytes: it is closed, the others kept
        let closed: Vec<bool> = conns
            .iter()
            .map(|c| {
                c.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut buf = [0u8; 64];
                matches!((&*c).read(&mut buf), Ok(0))
            })
            .collect();
        // a whole small request on a new connection still gets its answer
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let options = format!(
            "OPTIONS sip:bob@{addr} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKpb\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@{addr}>\r\nCall-ID: pb\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        c.write_all(options.as_bytes()).unwrap();
        let mut buf = [0u8; 32];
        let n = c.read(&mut buf).unwrap_or(0);
        (closed, String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await
    .unwrap();
    assert_eq!(closed, [false, false, true]);
    assert!(answered.starts_with("SIP/2.0 200"), "{answered}");
    bob.stop().await;
}

#[tokio::test]
async fn a_refused_tcp_connection_is_the_io_kind_with_the_os_error_as_source() {
    // a port that was free a moment ago: nothing listens there now
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let alice = agent(Listen::Tcp(loopback()), |_| {}).await;
    let uri: Uri = format!("sip:bob@127.0.0.1:{port};transport=tcp")
        .parse()
        .unwrap();
    let call = Inviter::new(&alice, uri, InviterOptions::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), call.established())
        .await
        .expect("the failure is reported at once, not at Timer B")
        .unwrap_err();
    let sipua::Error::Transport(e) = &err else {
        panic!("not a transport error: {err:?}");
    };
    assert_eq!(
        e.kind(),
        sipua::TransportErrorKind::Io(std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    assert_eq!(
        e.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    // the chain: Error -> TransportError -> io::Error
    let source = std::error::Error::source(&err).expect("a source");
    assert!(source.source().is_some(), "{err}");
    assert_eq!(call.end_reason(), Some(EndReason::TransportError));
    alice.stop().await;
}

#[test]
fn an_outbound_proxy_is_written_as_users_write_it() {
    use sipua::OutboundProxy;
    let p: OutboundProxy = "wss://edge.example.com/ws".parse().unwrap();
    assert_eq!(
        p.uri().to_string(),
        "sip:edge.example.com:443;transport=wss"
    );
    assert_eq!(p.ws_path(), Some("/ws"));
    assert_eq!(p.to_string(), "wss://edge.example.com:443/ws");
    let p: OutboundProxy = "ws://10.0.0.1".parse().unwrap();
    assert_eq!(p.uri().to_string(), "sip:10.0.0.1:80;transport=ws");
    assert_eq!(p.ws_path(), Some("/"));
    let p: OutboundProxy = "sips:proxy.example.com".parse().unwrap();
    assert_eq!(p.uri().to_string(), "sips:proxy.example.com");
    assert_eq!(p.ws_path(), None);
    let p: OutboundProxy = "192.0.2.1:5060".parse().unwrap();
    assert_eq!(p.uri().to_string(), "sip:192.0.2.1:5060");
    let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
    assert_eq!(OutboundProxy::from(a), p);
    for bad in ["", "tel:+15551234", "wss://", "sip:"] {
        assert!(
            matches!(
                bad.parse::<OutboundProxy>(),
                Err(sipua::Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
#[allow(clippy::result_large_err)] // tungstenite's handshake callback returns its Response
async fn a_websocket_proxy_url_gives_the_handshake_its_host_and_path() {
    use futures_util::StreamExt;
    // a WebSocket server that records the handshake's request line and Host, then reads
    // the first SIP message
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let record = seen.clone();
        let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                             mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            let host = req.headers().get("host").and_then(|h| h.to_str().ok());
            *record.lock().unwrap() = Some((req.uri().to_string(), host.map(str::to_owned)));
            resp.headers_mut()
                .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
        let seen = seen.lock().unwrap().clone();
        (seen, first.to_string())
    });
    let proxy = format!("ws://localhost:{port}/sip-edge?token=abc");
    let alice = agent(Listen::Ws(loopback()), |o| {
        o.outbound_proxy = Some(proxy.parse().unwrap())
    })
    .await;
    let call = Inviter::new(
        &alice,
        "sip:bob@example.invalid".parse().unwrap(),
        InviterOptions::default(),
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let (seen, first) = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the proxy is reached")
        .unwrap();
    let (path, host) = seen.expect("a handshake");
    assert_eq!(path, "/sip-edge?token=abc");
    assert_eq!(host.as_deref(), Some(format!("localhost:{port}").as_str()));
    // the request is for the target; only the hop is the proxy
    assert!(
        first.starts_with("INVITE sip:bob@example.invalid SIP/2.0\r\n"),
        "{first}"
    );
    assert!(first.contains("Via: SIP/2.0/WS "), "{first}");
    alice.stop().await;
}

#[tokio::test]
async fn a_tls_proxy_named_by_uri_is_checked_against_that_name() {
    // Bob serves a certificate for "localhost" and plays the proxy; Alice calls a target
    // with no address of its own through "sips:localhost:PORT"
    for (names, ok) in [(&["localhost"][..], true), (&["127.0.0.1"][..], false)] {
        let tls = tls_for(names);
        let (bob, answering) = tls_bob(&tls).await;
        let port = bob.local_addr().unwrap().port();
        let alice = agent(Listen::Tls(loopback()), |o| {
            o.tls = tls.clone();
            o.outbound_proxy = Some(format!("sips:localhost:{port}").parse().unwrap());
        })
        .await;
        let call = Inviter::new(
            &alice,
            "sips:bob@example.invalid".parse().unwrap(),
            InviterOptions::default(),
        )
        .unwrap();
        call.invite(Default::default()).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), call.established())
            .await
            .expect("an outcome in time");
        if ok {
            r.unwrap();
            call.bye().await.unwrap();
        } else {
            let err = r.unwrap_err();
            assert!(
                matches!(&err, sipua::Error::Transport(e) if e.kind() == sipua::TransportErrorKind::Tls),
                "{err:?}"
            );
        }
        answering.abort();
        alice.stop().await;
        bob.stop().await;
    }
}

#[tokio::test]
async fn one_agent_listens_on_udp_tls_and_wss_at_once_and_each_call_names_its_own_listener() {
    let tls = tls_for(&["127.0.0.1"]);
    let t = tls.clone();
    let bob = agent(Listen::Udp(loopback()), |o| {
        o.user = "bob".into();
        o.tls = t;
        o.also_listen = vec![Listen::Tls(loopback()), Listen::Wss(loopback())];
    })
    .await;
    // where each listener is: UDP is the primary; the others are found by connecting
    let udp = bob.local_addr().unwrap().port();
    let answering = tokio::spawn({
        let bob = bob.clone();
        async move {
            let mut contacts = Vec::new();
            while let Some(inv) = bob.next_invitation().await {
                let text = String::from_utf8_lossy(&inv.request().to_bytes()).into_owned();
                inv.accept(Default::default()).await.unwrap();
                contacts.push(text);
                let _ = inv.terminated().await;
                if contacts.len() == 3 {
                    break;
                }
            }
            contacts
        }
    });
    let ports = bob.listeners().unwrap();
    assert_eq!(ports.len(), 3, "{ports:?}");
    for (transport, listen) in [
        ("udp", Listen::Udp(loopback())),
        ("tls", Listen::Tls(loopback())),
        ("wss", Listen::Wss(loopback())),
    ] {
        let (_, at) = ports
            .iter()
            .find(|(t, _)| t.as_str().eq_ignore_ascii_case(transport))
            .unwrap();
        let tls = tls.clone();
        let caller = agent(listen, |o| o.tls = tls).await;
        let param = if transport == "udp" {
            String::new()
        } else {
            format!(";transport={transport}")
        };
        let to: Uri = format!("sip:bob@{at}{param}").parse().unwrap();
        let call = Inviter::new(&caller, to, InviterOptions::default()).unwrap();
        call.invite(Default::default()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), call.established())
            .await
            .unwrap_or_else(|_| panic!("{transport}: no answer"))
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        // the caller's BYE goes to the Contact of Bob's 200: it must name this listener
        let bye = tokio::time::timeout(Duration::from_secs(5), call.bye())
            .await
            .unwrap_or_else(|_| panic!("{transport}: the BYE got no answer"))
            .unwrap();
        assert_eq!(bye.status(), 200, "{transport}");
        caller.stop().await;
    }
    let invites = answering.await.unwrap();
    assert_eq!(invites.len(), 3);
    assert_eq!(ports[0].1.port(), udp);
    bob.stop().await;
}

#[tokio::test]
async fn two_listeners_for_one_transport_are_refused() {
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp(loopback()),
        also_listen: vec![Listen::Tcp(loopback()), Listen::Tcp(loopback())],
        ..Default::default()
    });
    let err = ua.start().await.unwrap_err();
    assert!(
        matches!(&err, sipua::Error::Listen { source, .. } if source.kind() == std::io::ErrorKind::InvalidInput),
        "{err:?}"
    );
}

/// Overload control by queueing delay, end to end over a real UDP socket: a burst of INVITEs
/// sent faster than the agent reads them queues in its socket. With `max_queue_delay` at a
/// nanosecond, an INVITE read while others wait behind it is refused 503 at once, one read
/// from an empty socket is taken; every INVITE gets an answer, none is left to time out.
#[tokio::test]
async fn invites_queued_past_the_queue_delay_get_503_and_every_invite_an_answer() {
    let bob = agent(Listen::Udp(loopback()), |o| {
        o.max_queue_delay = Duration::from_nanos(1);
        o.overload_retry_after = 7;
    })
    .await;
    // what the agent takes, it turns down itself
    let taker = bob.clone();
    tokio::spawn(async move {
        while let Some(inv) = taker.next_invitation().await {
            let _ = inv
                .reject(sipua::InvitationRejectOptions {
                    status_code: Some(486),
                    ..Default::default()
                })
                .await;
        }
    });
    let target = bob.local_addr().unwrap();
    let burst = 200;
    // Sent as a UAC over UDP would: the burst, then the INVITEs still without a final answer
    // again after a quiet 500 ms (Timer A), up to four times. A socket buffer smaller than the
    // burst (the kernel's default cap) drops datagrams, on either side; the resends make up
    // for that and nothing else.
    let (answers, resent) = tokio::task::spawn_blocking(move || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = sock.local_addr().unwrap();
        let invite = |i: usize| {
            format!(
                "INVITE sip:bob@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKq{i}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:alice@{me}>;tag=a{i}\r\nTo: <sip:bob@{target}>\r\n\
                 Call-ID: burst-{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{me}>\r\n\
                 Content-Length: 0\r\n\r\n"
            )
        };
        for i in 0..burst {
            sock.send_to(invite(i).as_bytes(), target).unwrap();
        }
        // each Call-ID's first final answer (and whether a 503 said Retry-After)
        let mut answers = std::collections::HashMap::new();
        let mut resent = 0;
        let mut rounds = 0;
        let mut buf = [0u8; 4096];
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while answers.len() < burst {
            let Ok(n) = sock.recv(&mut buf) else {
                if rounds == 4 {
                    break;
                }
                rounds += 1;
                for i in (0..burst).filter(|i| !answers.contains_key(&format!("burst-{i}"))) {
                    sock.send_to(invite(i).as_bytes(), target).unwrap();
                    resent += 1;
                }
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let status: u16 = text[8..11].parse().unwrap();
            if status < 200 {
                continue;
            }
            let call = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .unwrap()
                .to_owned();
            let retry = text.lines().any(|l| l == "Retry-After: 7");
            answers.entry(call).or_insert((status, retry));
        }
        (answers, resent)
    })
    .await
    .unwrap();
    assert_eq!(
        answers.len(),
        burst,
        "INVITEs without an answer ({resent} resent)"
    );
    let refused = answers.values().filter(|(s, _)| *s == 503).count();
    let taken = answers.values().filter(|(s, _)| *s == 486).count();
    assert_eq!(refused + taken, burst, "{answers:?}");
    assert!(refused > 0 && taken > 0, "{refused} refused, {taken} taken");
    assert!(answers.values().all(|&(s, retry)| s != 503 || retry));
    // every 503 seen was counted; a resend whose first answer was lost may be refused again
    let shed = bob.stats().await.unwrap().shed;
    assert!(
        (refused as u64..=(refused + resent) as u64).contains(&shed),
        "{shed} shed, {refused} refused, {resent} resent"
    );
    bob.stop().await;
}

/// RFC 7339 end to end over a real UDP socket, both sides sipua: a callee that takes two
/// calls a second tells the caller in its answers' Via how much to cut, and the caller holds
/// that share of its new calls back itself, with a typed error and nothing sent.
#[tokio::test]
async fn a_caller_holds_back_the_calls_an_overloaded_callee_asks_it_to_cut() {
    let bob = agent(Listen::Udp(loopback()), |o| {
        o.overload_via = true;
        o.max_invites_per_second = 2;
    })
    .await;
    // what the agent takes it turns down; it counts the INVITEs whose Via asked (§4.1)
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (taker, count) = (bob.clone(), asked.clone());
    tokio::spawn(async move {
        while let Some(inv) = taker.next_invitation().await {
            let via = inv
                .request()
                .headers()
                .get(&HeaderName::Via)
                .unwrap()
                .unfolded();
            if via.ends_with(";rport;oc;oc-algo=\"loss\"") {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = inv
                .reject(sipua::InvitationRejectOptions {
                    status_code: Some(486),
                    ..Default::default()
                })
                .await;
        }
    });
    let alice = agent(Listen::Udp(loopback()), |o| o.overload_via = true).await;
    let to = target(&bob, "udp");
    // 20 calls a second for 3 s, each to its answer
    let (mut held, mut answered) = (0, std::collections::HashMap::new());
    let mut cut_seen = 0;
    for _ in 0..60 {
        // the cut Bob announces, as his Stats report it
        cut_seen = cut_seen.max(bob.stats().await.unwrap().overload_cut);
        let call = Inviter::new(&alice, to.clone(), InviterOptions::default()).unwrap();
        match call.invite(InviterInviteOptions::default()).await {
            Err(sipua::Error::Core(sipua::proto::ua::UaError::Overloaded { cut })) => {
                assert!((1..=100).contains(&cut));
                held += 1;
            }
            Err(e) => panic!("{e}"),
            Ok(()) => {
                let end = tokio::time::timeout(Duration::from_secs(5), call.terminated())
                    .await
                    .expect("an answer");
                let status = match end {
                    EndReason::Rejected { status, .. } => status,
                    other => panic!("{other:?}"),
                };
                *answered.entry(status).or_insert(0) += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the first second is refused by the callee (it has said nothing yet); after it the
    // caller holds most calls back itself
    assert!(held >= 20, "held {held}, answered {answered:?}");
    assert_eq!(held + answered.values().sum::<usize>(), 60, "{answered:?}");
    assert!(answered.get(&486).is_some_and(|&n| n >= 3), "{answered:?}");
    assert_eq!(
        Some(&asked.load(std::sync::atomic::Ordering::Relaxed)),
        answered.get(&486)
    );
    // both sides report it: the cut Bob asks for, the calls Alice held back
    assert!(cut_seen >= 50, "the cut Bob's Stats reported: {cut_seen}");
    assert_eq!(alice.stats().await.unwrap().held_back, held as u64);
    assert_eq!(
        alice.stats().await.unwrap().overload_cut,
        0,
        "Alice refuses nothing"
    );
    alice.stop().await;
    bob.stop().await;
}

/// UDP datagrams are read several per system call (`recvmmsg`) and answers sent several per
/// call (`sendmmsg`): a burst from two senders, interleaved, waiting in the socket at once, is
/// answered in full, each answer to the address its request came from (`rport`), once; and a
/// datagram of 60 000 bytes among them is read whole.
#[tokio::test]
async fn a_burst_from_two_senders_is_read_and_answered_in_batches() {
    let bob = agent(Listen::Udp(loopback()), |_| {}).await;
    let target = bob.local_addr().unwrap();
    let burst = 48;
    let socks: Vec<std::net::UdpSocket> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for i in 0..burst {
        let s = &socks[i % 2];
        let me = s.local_addr().unwrap();
        // one large request in the middle of the burst
        let body = if i == burst / 2 {
            "p".repeat(60_000)
        } else {
            String::new()
        };
        let options = format!(
            "OPTIONS sip:bob@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};rport;branch=z9hG4bKb{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@{me}>;tag=a{i}\r\nTo: <sip:bob@{target}>\r\n\
             Call-ID: batch-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        // sent from this thread, the runtime's: the agent reads nothing until the test
        // awaits, so the whole burst waits in its socket and is read in batches
        s.send_to(options.as_bytes(), target).unwrap();
    }
    let got = tokio::task::spawn_blocking(move || {
        // each sender: the branches of the 200s it got
        socks
            .iter()
            .map(|s| {
                s.set_read_timeout(Some(Duration::from_millis(1500)))
                    .unwrap();
                let mut branches = Vec::new();
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = s.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    assert!(text.starts_with("SIP/2.0 200 "), "{text}");
                    let branch = text
                        .split("branch=z9hG4bKb")
                        .nth(1)
                        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                        .unwrap()
                        .parse::<usize>()
                        .unwrap();
                    branches.push(branch);
                }
                branches
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (k, branches) in got.iter().enumerate() {
        let want: Vec<usize> = (0..burst).filter(|i| i % 2 == k).collect();
        let mut have = branches.clone();
        have.sort_unstable();
        assert_eq!(
            have, want,
            "sender {k} got the answers to exactly its own requests"
        );
    }
    bob.stop().await;
}
