//! The library's `tracing` events: every SIP message of a call, sent and received, is an
//! event of its own (target `sipua::message`) with its direction, transport, addresses and
//! size, and the message as text; a challenged request's digest response does not appear.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::trace::MESSAGE_TARGET;
use sipua::{Inviter, InviterOptions, Listen, UserAgent, UserAgentOptions};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One message event: (direction, transport, peer, size, text, call_id).
type Seen = (String, String, String, u64, String, String);

/// A subscriber that keeps the message events, and the values recorded into spans later
/// (a session's tags).
#[derive(Clone, Default)]
struct Collect {
    seen: Arc<Mutex<Vec<Seen>>>,
    recorded: Arc<Mutex<Vec<(String, String)>>>,
    next: Arc<AtomicU64>,
}

#[derive(Default)]
struct Fields(String, String, String, u64, String, String);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "direction" => self.0 = value.into(),
            "call_id" => self.5 = value.into(),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "size" {
            self.3 = value;
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "transport" => self.1 = format!("{value:?}"),
            "peer" => self.2 = format!("{value:?}"),
            "message" => self.4 = format!("{value:?}"),
            _ => {}
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        struct Named<'a>(&'a Mutex<Vec<(String, String)>>);
        impl Visit for Named<'_> {
            fn record_str(&mut self, field: &Field, value: &str) {
                self.0
                    .lock()
                    .unwrap()
                    .push((field.name().to_owned(), value.to_owned()));
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.record_str(field, &format!("{value:?}"));
            }
        }
        values.record(&mut Named(&self.recorded));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == MESSAGE_TARGET {
            let mut f = Fields::default();
            event.record(&mut f);
            self.seen
                .lock()
                .unwrap()
                .push((f.0, f.1, f.2, f.3, f.4, f.5));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

async fn agent(user: &str, tweak: impl FnOnce(&mut UserAgentOptions)) -> UserAgent {
    let mut o = UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: user.into(),
        ..Default::default()
    };
    tweak(&mut o);
    let ua = UserAgent::new(o);
    ua.start().await.unwrap();
    ua
}

/// The first line of a message.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[tokio::test]
async fn every_message_of_a_call_is_traced_sent_and_received_without_credentials() {
    let collect = Collect::default();
    let _guard = tracing::subscriber::set_default(collect.clone());
    // Bob asks for credentials: the INVITE is challenged and sent again with them
    let bob = agent("bob", |o| {
        o.authenticate = Some(sipua::DigestServerConfig {
            users: [("alice".to_owned(), "secret".to_owned())].into(),
            ..Default::default()
        })
    })
    .await;
    let alice = agent("alice", |o| {
        o.credentials = Some(sipua::Credentials {
            username: "alice".into(),
            password: "secret".into(),
        })
    })
    .await;
    let bob_addr: SocketAddr = bob.local_addr().unwrap();
    let target = format!("sip:bob@{bob_addr}").parse().unwrap();
    let call = Inviter::new(&alice, target, InviterOptions::default()).unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = tokio::time::timeout(Duration::from_secs(5), bob.next_invitation())
        .await
        .unwrap()
        .unwrap();
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    let dialog = call.dialog().unwrap();
    assert_eq!(call.bye().await.unwrap().status(), 200);
    alice.stop().await;
    bob.stop().await;

    let seen = collect.seen.lock().unwrap().clone();
    // each message event names its Call-ID; the sessions' spans got their tags
    assert!(seen.iter().all(|s| s.5 == *dialog.call_id), "{seen:?}");
    let recorded = collect.recorded.lock().unwrap().clone();
    for (field, value) in [
        ("local_tag", &dialog.local_tag),
        ("remote_tag", &dialog.remote_tag),
        ("call_id", &dialog.call_id),
    ] {
        assert!(
            recorded.iter().any(|(f, v)| f == field && v == &**value),
            "{field} {value} not in {recorded:?}"
        );
    }
    let lines = |direction: &str| -> Vec<String> {
        seen.iter()
            .filter(|s| s.0 == direction)
            .map(|s| {
                first_line(&s.4)
                    .split(' ')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    };
    let (sent, received) = (lines("sent"), lines("received"));
    for m in [
        "INVITE sip:bob@",
        "SIP/2.0 401",
        "ACK sip:bob@",
        "SIP/2.0 200",
        "BYE sip:",
    ] {
        assert!(
            sent.iter().any(|l| l.starts_with(m)),
            "{m} not sent: {sent:?}"
        );
        assert!(
            received.iter().any(|l| l.starts_with(m)),
            "{m} not received: {received:?}"
        );
    }
    // each side's message is the other side's: on loopback nothing is lost
    let mut a = sent.clone();
    let mut b = received.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for (_, transport, peer, size, text, _) in &seen {
        assert_eq!(transport, "UDP");
        assert!(peer.starts_with("127.0.0.1:"), "{peer}");
        assert!(
            *size as usize >= text.len() - 8,
            "{size} for {} bytes",
            text.len()
        );
    }
    // the retried INVITE carries credentials, but not the digest response
    let with_credentials: Vec<&String> = seen
        .iter()
        .map(|s| &s.4)
        .filter(|t| t.contains("Authorization: Digest"))
        .collect();
    assert!(!with_credentials.is_empty());
    for t in with_credentials {
        assert!(t.contains("response=\"…\""), "{t}");
    }
}
