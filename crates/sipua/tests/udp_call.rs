//! Two user agents call each other over real UDP sockets on loopback.

use std::time::Duration;

use sipua::udp::UdpUserAgent;
use sipua_message::Method;
use sipua_proto::ua::UaEvent;
use tokio::time::timeout;

async fn next(ua: &mut UdpUserAgent) -> UaEvent {
    timeout(Duration::from_secs(5), ua.next_event())
        .await
        .expect("an event within 5 s")
        .expect("driver alive")
}

#[tokio::test]
async fn invite_answer_bye_over_loopback_udp() {
    let mut alice = UdpUserAgent::bind("127.0.0.1:0".parse().unwrap(), "alice")
        .await
        .unwrap();
    let mut bob = UdpUserAgent::bind("127.0.0.1:0".parse().unwrap(), "bob")
        .await
        .unwrap();
    let bob_addr = bob.local_addr();
    let target = format!("sip:bob@{bob_addr}").parse().unwrap();
    let call = alice.invite(target, bob_addr).await.unwrap();

    // Bob rings and answers
    let UaEvent::Request {
        id,
        request,
        dialog: None,
    } = next(&mut bob).await
    else {
        panic!("an INVITE")
    };
    assert_eq!(request.method(), &Method::Invite);
    bob.respond(id, 180).await.unwrap();
    let bob_dialog = bob
        .respond(id, 200)
        .await
        .unwrap()
        .expect("the 200 makes the dialog");

    // Alice sees 100, 180 and 200; the core ACKs the 200
    let mut alice_dialog = None;
    while alice_dialog.is_none() {
        if let UaEvent::Response {
            id,
            response,
            dialog,
        } = next(&mut alice).await
        {
            assert_eq!(id, call);
            if response.is_success() {
                alice_dialog = dialog;
            }
        }
    }
    assert!(matches!(next(&mut bob).await, UaEvent::Ack { dialog } if dialog == bob_dialog));

    // Alice hangs up
    let alice_dialog = alice_dialog.unwrap();
    alice
        .request_in_dialog(alice_dialog, Method::Bye, bob_addr)
        .await
        .unwrap();
    let UaEvent::Request {
        id,
        request,
        dialog: Some(d),
    } = next(&mut bob).await
    else {
        panic!("a BYE")
    };
    assert_eq!((request.method(), &d), (&Method::Bye, &bob_dialog));
    bob.respond(id, 200).await.unwrap();
    let UaEvent::Response { response, .. } = next(&mut alice).await else {
        panic!("the 200 to BYE")
    };
    assert_eq!(
        (response.status(), &response.cseq().method),
        (200, &Method::Bye)
    );

    alice.shutdown().await;
    bob.shutdown().await;
}
