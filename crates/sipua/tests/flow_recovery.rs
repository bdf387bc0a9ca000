//! Flow recovery (RFC 5626 §4.4, issue: "reconnect, re-register, keep established calls"):
//! a `SessionManager` registered and in a call over TCP loses its connection to the server;
//! it tells the application, connects again with back-off, registers again over the new
//! connection and re-INVITEs the call through it, which survives. The server is a script on
//! a loopback TCP socket that answers like a registrar and a callee, then cuts the line.

use std::sync::Arc;
use std::time::Duration;

use sipua::message::{Frame, StreamFramer};
use sipua::message::{Header, HeaderName, Message, Request, Response};
use sipua::{
    Error, InviterOptions, Listen, RegistererOptions, Session, SessionManager,
    SessionManagerDelegate, SessionManagerOptions, SessionState, UserAgentOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// One connection of the scripted server: reads requests, writes responses.
struct Conn {
    stream: TcpStream,
    framer: StreamFramer,
}

impl Conn {
    async fn next_request(&mut self) -> Request {
        let mut buf = [0u8; 8192];
        loop {
            match self.framer.next_frame().unwrap() {
                Some(Frame::Message(m)) => match Message::parse(&m).unwrap() {
                    Message::Request(r) => return r,
                    Message::Response(_) => continue,
                },
                Some(_) => continue,
                None => {}
            }
            let n = timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("a request in time")
                .unwrap();
            assert!(n > 0, "the client closed the connection");
            self.framer.push(&buf[..n]);
        }
    }

    async fn answer(&mut self, req: &Request, status: u16, extra: &[Header]) {
        let tag = req.to_tag().is_none().then_some("srv1");
        let mut r = Response::from_request_with(req, status, tag, None, extra);
        if req.method().as_str() == "INVITE" {
            let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
            r.set_body(
                Some(&sipua::message::header::MediaType::new(
                    "application",
                    "sdp",
                )),
                sdp.as_bytes(),
            )
            .unwrap();
        }
        self.stream.write_all(&r.to_bytes()).await.unwrap();
    }
}

async fn accept(listener: &TcpListener) -> Conn {
    let (stream, _) = timeout(WAIT, listener.accept())
        .await
        .expect("the client connects in time")
        .unwrap();
    Conn {
        stream,
        framer: StreamFramer::new(65_535),
    }
}

fn contact_of(req: &Request) -> Vec<Header> {
    let c = req
        .headers()
        .get(&HeaderName::Contact)
        .map(|h| String::from_utf8_lossy(h.value()).into_owned())
        .unwrap_or_default();
    vec![
        Header::new(HeaderName::Contact, c),
        Header::new(HeaderName::Expires, "600"),
    ]
}

#[derive(Debug, PartialEq)]
enum Ev {
    Connect,
    Disconnect(bool),
    Registered,
    Answered,
    Hangup,
}

struct Recorder(mpsc::UnboundedSender<Ev>);

impl SessionManagerDelegate for Recorder {
    fn on_server_connect(&self) {
        let _ = self.0.send(Ev::Connect);
    }
    fn on_server_disconnect(&self, error: Option<&Error>) {
        let _ = self.0.send(Ev::Disconnect(error.is_some()));
    }
    fn on_registered(&self) {
        let _ = self.0.send(Ev::Registered);
    }
    fn on_call_answered(&self, _: &Session) {
        let _ = self.0.send(Ev::Answered);
    }
    fn on_call_hangup(&self, _: &Session) {
        let _ = self.0.send(Ev::Hangup);
    }
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<Ev>, want: Ev) {
    loop {
        let got = timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in time"))
            .unwrap();
        if got == want {
            return;
        }
        assert!(
            !matches!(got, Ev::Hangup),
            "the call ended while waiting for {want:?}"
        );
    }
}

#[tokio::test]
async fn a_lost_tcp_flow_is_rebuilt_and_the_call_survives() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut events) = mpsc::unbounded_channel();
    let m = SessionManager::new(SessionManagerOptions {
        aor: Some(format!("sip:alice@127.0.0.1:{port}").parse().unwrap()),
        user_agent_options: UserAgentOptions {
            listen: Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            user: "alice".into(),
            ..Default::default()
        },
        registerer_options: RegistererOptions {
            registrar: Some(
                format!("sip:127.0.0.1:{port};transport=tcp")
                    .parse()
                    .unwrap(),
            ),
            ..Default::default()
        },
        delegate: Some(Arc::new(Recorder(tx))),
        ..Default::default()
    });
    m.connect().await.unwrap();
    expect(&mut events, Ev::Connect).await;

    // first flow: REGISTER, then a call
    let registering = {
        let m = m.clone();
        tokio::spawn(async move { m.register().await })
    };
    let mut first = accept(&listener).await;
    let reg = first.next_request().await;
    assert_eq!(reg.method().as_str(), "REGISTER");
    first.answer(&reg, 200, &contact_of(&reg)).await;
    registering.await.unwrap().unwrap();
    expect(&mut events, Ev::Registered).await;
    let target = format!("sip:bob@127.0.0.1:{port};transport=tcp")
        .parse()
        .unwrap();
    let calling = {
        let m = m.clone();
        tokio::spawn(async move { m.call(target, InviterOptions::default()).await })
    };
    let invite = first.next_request().await;
    assert_eq!(invite.method().as_str(), "INVITE");
    let contact = vec![Header::new(
        HeaderName::Contact,
        format!("<sip:bob@127.0.0.1:{port};transport=tcp>"),
    )];
    first.answer(&invite, 200, &contact).await;
    let ack = first.next_request().await;
    assert_eq!(ack.method().as_str(), "ACK");
    let call = calling.await.unwrap().unwrap();
    expect(&mut events, Ev::Answered).await;
    assert_eq!(call.state(), SessionState::Established);

    // the server cuts the line
    drop(first);
    expect(&mut events, Ev::Disconnect(true)).await;

    // the client comes back on a new connection: REGISTER with the same Call-ID, then a
    // re-INVITE of the call (same dialog), and only then says the server is back
    let mut second = accept(&listener).await;
    let reg2 = second.next_request().await;
    assert_eq!(reg2.method().as_str(), "REGISTER");
    assert_eq!(reg2.call_id(), reg.call_id());
    assert!(reg2.cseq().seq > reg.cseq().seq);
    second.answer(&reg2, 200, &contact_of(&reg2)).await;
    let reinvite = second.next_request().await;
    assert_eq!(reinvite.method().as_str(), "INVITE");
    assert_eq!(reinvite.call_id(), invite.call_id());
    assert_eq!(reinvite.to_tag(), Some("srv1"));
    second.answer(&reinvite, 200, &contact).await;
    let ack2 = second.next_request().await;
    assert_eq!(ack2.method().as_str(), "ACK");
    expect(&mut events, Ev::Connect).await;
    assert_eq!(call.state(), SessionState::Established);

    // and the call still hangs up cleanly over the new flow
    let hanging = tokio::spawn(async move { call.bye().await });
    let bye = second.next_request().await;
    assert_eq!(bye.method().as_str(), "BYE");
    second.answer(&bye, 200, &[]).await;
    assert!(hanging.await.unwrap().unwrap().is_success());
}
