//! A WebSocket client as SIP.js and JsSIP are, played by hand over a real socket: its Via and
//! Contact name a made-up `.invalid` host, so everything `sipua` sends it (responses, and its
//! own requests such as BYE) must go back over the connection the client opened (RFC 7118
//! §5, RFC 5626). Also the WebSocket close handshake (RFC 6455 §5.5.1) and CRLF keep-alives
//! over WebSocket (RFC 5626 §4.4.1).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sipua::{EndReason, Listen, UserAgent, UserAgentOptions};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

async fn bob() -> (UserAgent, SocketAddr) {
    let ua = UserAgent::new(UserAgentOptions {
        listen: Listen::Ws("127.0.0.1:0".parse().unwrap()),
        user: "bob".into(),
        ..Default::default()
    });
    ua.start().await.unwrap();
    let addr = ua.local_addr().unwrap();
    (ua, addr)
}

/// A WebSocket connection to `addr` with subprotocol `sip`, as a browser opens it.
async fn connect(addr: SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    ws
}

/// The next SIP message (text or binary frame) within 5 s.
async fn next_sip(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the connection is open")
            .unwrap();
        match m {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Binary(b) => return String::from_utf8_lossy(&b).into_owned(),
            _ => continue,
        }
    }
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{msg}"))
        .trim()
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The client calls Bob with SIP.js's made-up addresses; Bob answers; the client ACKs.
/// Returns the client's connection, Bob's invitation and the 200.
async fn call_in(addr: SocketAddr, bob: &UserAgent) -> (Ws, sipua::Invitation, String) {
    let mut ws = connect(addr).await;
    let invite = format!(
        "INVITE sip:bob@{addr};transport=ws SIP/2.0\r\n\
         Via: SIP/2.0/WS q8v2xk3c.invalid;branch=z9hG4bK3456\r\nMax-Forwards: 70\r\n\
         From: <sip:web@example.invalid>;tag=wtag\r\nTo: <sip:bob@{addr}>\r\n\
         Call-ID: ws-flow-1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:k8d3@q8v2xk3c.invalid;transport=ws;ob>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    ws.send(Message::Text(invite.into())).await.unwrap();
    let inv = tokio::time::timeout(Duration::from_secs(5), bob.next_invitation())
        .await
        .unwrap()
        .unwrap();
    let accept = inv.accept(Default::default());
    let ok = async {
        loop {
            let m = next_sip(&mut ws).await;
            if m.starts_with("SIP/2.0 200") {
                return m;
            }
        }
    };
    let (accepted, ok) = tokio::join!(accept, ok);
    accepted.unwrap();
    let ack = format!(
        "ACK sip:bob@{addr};transport=ws SIP/2.0\r\n\
         Via: SIP/2.0/WS q8v2xk3c.invalid;branch=z9hG4bK3457\r\nMax-Forwards: 70\r\n\
         From: <sip:web@example.invalid>;tag=wtag\r\nTo: {}\r\n\
         Call-ID: ws-flow-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "To")
    );
    ws.send(Message::Text(ack.into())).await.unwrap();
    inv.established().await.unwrap();
    (ws, inv, ok)
}

#[tokio::test]
async fn the_callee_hangs_up_over_the_websocket_the_client_opened() {
    let (bob, addr) = bob().await;
    let (mut ws, inv, ok) = call_in(addr, &bob).await;
    assert!(ok.contains("Via: SIP/2.0/WS q8v2xk3c.invalid"), "{ok}");
    let bye = tokio::spawn(async move {
        let r = inv.bye().await;
        (r, inv)
    });
    let request = next_sip(&mut ws).await;
    assert!(
        request.starts_with("BYE sip:k8d3@q8v2xk3c.invalid;transport=ws;ob SIP/2.0"),
        "{request}"
    );
    assert!(request.contains("Via: SIP/2.0/WS "), "{request}");
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: ws-flow-1\r\nCSeq: {}\r\n\
         Content-Length: 0\r\n\r\n",
        header(&request, "Via"),
        header(&request, "From"),
        header(&request, "To"),
        header(&request, "CSeq")
    );
    ws.send(Message::Text(reply.into())).await.unwrap();
    let (r, inv) = bye.await.unwrap();
    assert_eq!(r.unwrap().status(), 200);
    assert_eq!(inv.terminated().await, EndReason::LocalBye);
    bob.stop().await;
}

#[tokio::test]
async fn a_bye_to_a_client_whose_websocket_closed_fails_at_once() {
    let (bob, addr) = bob().await;
    let (mut ws, inv, _) = call_in(addr, &bob).await;
    ws.close(None).await.unwrap();
    // our Close is answered (RFC 6455 §5.5.1) and the connection ends
    let mut answered = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match m {
            Ok(Message::Close(_)) => answered = true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(answered, "the Close frame was not answered");
    // the client accepts no connection: the BYE cannot go anywhere, and says so at once
    let started = std::time::Instant::now();
    let r = inv.bye().await;
    eprintln!("{r:?}");
    assert!(matches!(r, Err(sipua::Error::Transport(_))), "{r:?}");
    // the call is over all the same: we hung up
    assert_eq!(inv.terminated().await, EndReason::LocalBye);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    bob.stop().await;
}

#[tokio::test]
async fn a_crlf_ping_over_websocket_gets_a_crlf_pong() {
    let (bob, addr) = bob().await;
    let mut ws = connect(addr).await;
    ws.send(Message::Text("\r\n\r\n".into())).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Text("\r\n".into()));
    bob.stop().await;
}

#[tokio::test]
async fn stopping_closes_websockets_with_the_close_handshake() {
    let (bob, addr) = bob().await;
    let mut ws = connect(addr).await;
    // any traffic makes the connection known to the agent
    ws.send(Message::Text("\r\n\r\n".into())).await.unwrap();
    let _ = ws.next().await;
    let stop = tokio::spawn(async move { bob.stop().await });
    let mut closed = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match m {
            Ok(Message::Close(c)) => {
                closed = Some(c);
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(closed.is_some(), "no Close frame from the agent");
    // our reply completes the handshake
    let _ = ws.close(None).await;
    stop.await.unwrap();
}
