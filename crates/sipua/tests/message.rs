//! `Messager` (RFC 3428) between two user agents on loopback: the page arrives at the
//! receiver's delegate with its body and type, and the receiver's answer comes back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua::{
    Error, IncomingRequest, Listen, Messager, MessagerOptions, UserAgent, UserAgentDelegate,
    UserAgentOptions,
};

struct Inbox(Arc<Mutex<Vec<(String, String)>>>);

impl UserAgentDelegate for Inbox {
    fn on_message(&self, m: IncomingRequest) {
        let r = m.request();
        let text = String::from_utf8_lossy(r.body()).into_owned();
        let ct = r
            .content_type()
            .map(|t| format!("{}/{}", t.kind, t.subtype))
            .unwrap_or_default();
        self.0.lock().unwrap().push((ct, text.clone()));
        if text == "spam" {
            m.reject(488);
        } else {
            m.accept();
        }
    }
}

#[tokio::test]
async fn a_message_reaches_the_delegate_and_its_answer_comes_back() {
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let bob = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        user: "bob".into(),
        delegate: Some(Arc::new(Inbox(inbox.clone()))),
        ..Default::default()
    });
    bob.start().await.unwrap();
    let alice = UserAgent::new(UserAgentOptions {
        listen: Listen::Udp("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    });
    alice.start().await.unwrap();
    let to = format!("sip:bob@{}", bob.local_addr().unwrap())
        .parse()
        .unwrap();
    let m = Messager::new(
        &alice,
        to,
        "Hello, Bob",
        "text/plain",
        MessagerOptions::default(),
    )
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), m.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        inbox.lock().unwrap().as_slice(),
        [("text/plain".to_owned(), "Hello, Bob".to_owned())]
    );
    let to = format!("sip:bob@{}", bob.local_addr().unwrap())
        .parse()
        .unwrap();
    let spam = Messager::new(&alice, to, "spam", "text/plain", MessagerOptions::default()).unwrap();
    match spam.message().await {
        Err(Error::Rejected { status: 488, .. }) => {}
        other => panic!("expected 488, got {other:?}"),
    }
    assert!(matches!(
        Messager::new(
            &alice,
            "sip:x@127.0.0.1".parse().unwrap(),
            "x",
            "plain",
            MessagerOptions::default()
        ),
        Err(Error::InvalidArgument(_))
    ));
    alice.stop().await;
    bob.stop().await;
}
