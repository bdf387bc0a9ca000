//! RFC 3263 server location through real DNS queries: the test runs its own small DNS server
//! on 127.0.0.1 (answering from a fixed zone) and the user agent asks it, through hickory,
//! for NAPTR, SRV and A records before calling.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, NAPTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use sipua::message::Uri;
use sipua::{DnsResolver, Inviter, Listen, UserAgent, UserAgentOptions};
use tokio::net::UdpSocket;

/// One record of the test zone.
#[derive(Clone)]
enum Rr {
    Naptr(&'static str, u16, &'static str, &'static str),
    Srv(&'static str, u16, u16, &'static str),
    A(&'static str, Ipv4Addr),
}

fn name(s: &str) -> Name {
    Name::from_str(&format!("{s}.")).unwrap()
}

/// Answers every query from `zone` until dropped; returns its address.
async fn dns_server(zone: Vec<Rr>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_authoritative(true)
                .set_recursion_available(true);
            let mut found = false;
            for query in q.queries() {
                r.add_query(query.clone());
                for rr in &zone {
                    let record = match (rr, query.query_type()) {
                        (Rr::Naptr(owner, order, service, target), RecordType::NAPTR)
                            if name(owner) == *query.name() =>
                        {
                            RData::NAPTR(NAPTR::new(
                                *order,
                                10,
                                b"s".to_vec().into(),
                                service.as_bytes().to_vec().into(),
                                Vec::new().into(),
                                name(target),
                            ))
                        }
                        (Rr::Srv(owner, prio, port, target), RecordType::SRV)
                            if name(owner) == *query.name() =>
                        {
                            RData::SRV(SRV::new(*prio, 10, *port, name(target)))
                        }
                        (Rr::A(owner, ip), RecordType::A) if name(owner) == *query.name() => {
                            RData::A(A(*ip))
                        }
                        _ => continue,
                    };
                    found = true;
                    r.add_answer(Record::from_rdata(query.name().clone(), 60, record));
                }
            }
            if !found {
                r.set_response_code(ResponseCode::NXDomain);
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from).await;
            }
        }
    });
    (addr, task)
}

async fn agent(listen: Listen, dns: SocketAddr, user: &str) -> UserAgent {
    let ua = UserAgent::new(UserAgentOptions {
        listen,
        user: user.into(),
        accept_any_user: true,
        dns_servers: Some(vec![dns]),
        ..Default::default()
    });
    ua.start().await.unwrap();
    ua
}

#[tokio::test]
async fn naptr_then_srv_then_a_picks_tcp_and_the_srv_port() {
    // Bob listens on TCP only; the zone says: example.test -> SIP+D2T -> SRV -> A 127.0.0.1
    let bob_probe = agent(
        Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        "127.0.0.1:9".parse().unwrap(),
        "bob",
    )
    .await;
    let port = bob_probe.local_addr().unwrap().port();
    let (dns, _server) = dns_server(vec![
        Rr::Naptr("example.test", 10, "SIP+D2T", "_sip._tcp.example.test"),
        Rr::Naptr("example.test", 20, "SIP+D2U", "_sip._udp.example.test"),
        Rr::Srv("_sip._tcp.example.test", 10, port, "pbx.example.test"),
        Rr::A("pbx.example.test", Ipv4Addr::LOCALHOST),
    ])
    .await;
    let resolver = DnsResolver::with_servers(&[dns], 1);
    let located = resolver
        .locate(&"sip:bob@example.test".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        located.targets[0],
        (
            sipua::message::Transport::Tcp,
            SocketAddr::from(([127, 0, 0, 1], port))
        )
    );
    assert!(located.transport_chosen);

    // a UDP agent calls by name: DNS sends it over TCP to Bob's port
    let alice = agent(Listen::Udp("127.0.0.1:0".parse().unwrap()), dns, "alice").await;
    let call = Inviter::new(
        &alice,
        "sip:bob@example.test".parse::<Uri>().unwrap(),
        Default::default(),
    )
    .unwrap();
    call.invite(Default::default()).await.unwrap();
    let inv = tokio::time::timeout(Duration::from_secs(5), bob_probe.next_invitation())
        .await
        .unwrap()
        .unwrap();
    let invite = String::from_utf8_lossy(&inv.request().to_bytes()).into_owned();
    assert!(invite.contains("Via: SIP/2.0/TCP"), "{invite}");
    inv.accept(Default::default()).await.unwrap();
    call.established().await.unwrap();
    call.bye().await.unwrap();
    alice.stop().await;
    bob_probe.stop().await;
}

#[tokio::test]
async fn srv_priority_orders_targets_and_a_missing_naptr_falls_back_to_srv() {
    let (dns, _server) = dns_server(vec![
        Rr::Srv("_sip._udp.example.test", 20, 5070, "backup.example.test"),
        Rr::Srv("_sip._udp.example.test", 10, 5060, "main.example.test"),
        Rr::A("main.example.test", Ipv4Addr::new(127, 0, 0, 2)),
        Rr::A("backup.example.test", Ipv4Addr::new(127, 0, 0, 3)),
    ])
    .await;
    let resolver = DnsResolver::with_servers(&[dns], 1);
    let located = resolver
        .locate(&"sip:alice@example.test".parse().unwrap())
        .await
        .unwrap();
    let targets: Vec<SocketAddr> = located.targets.iter().map(|t| t.1).collect();
    assert_eq!(
        targets,
        vec![
            "127.0.0.2:5060".parse::<SocketAddr>().unwrap(),
            "127.0.0.3:5070".parse().unwrap()
        ]
    );
    assert_eq!(located.targets[0].0, sipua::message::Transport::Udp);
}

#[tokio::test]
async fn an_explicit_port_skips_naptr_and_srv_and_an_unknown_name_is_unresolvable() {
    let (dns, _server) = dns_server(vec![Rr::A(
        "host.example.test",
        Ipv4Addr::new(127, 0, 0, 4),
    )])
    .await;
    let resolver = DnsResolver::with_servers(&[dns], 1);
    let located = resolver
        .locate(&"sip:alice@host.example.test:5080".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        located.targets[0].1,
        "127.0.0.4:5080".parse::<SocketAddr>().unwrap()
    );
    assert!(!located.transport_chosen);
    let err = resolver
        .locate(&"sip:alice@nowhere.example.test".parse().unwrap())
        .await
        .unwrap_err();
    match &err {
        sipua::Error::Dns(e) => {
            assert_eq!(e.kind(), sipua::DnsErrorKind::NotFound, "{err}");
            assert_eq!(e.name(), "nowhere.example.test");
        }
        _ => panic!("not a DNS error: {err:?}"),
    }

    // the same through the API: calling the unknown name fails with the DNS kind
    let alice = agent(Listen::Udp("127.0.0.1:0".parse().unwrap()), dns, "alice").await;
    let call = Inviter::new(
        &alice,
        "sip:bob@nowhere.example.test".parse::<Uri>().unwrap(),
        Default::default(),
    )
    .unwrap();
    let sent = call.invite(Default::default()).await;
    let err = match sent {
        Err(e) => e,
        Ok(_) => call.established().await.unwrap_err(),
    };
    assert!(
        matches!(&err, sipua::Error::Dns(e) if e.kind() == sipua::DnsErrorKind::NotFound),
        "{err:?}"
    );
    alice.stop().await;
}

#[tokio::test]
async fn name_servers_that_do_not_answer_give_the_failed_kind_with_the_resolvers_error() {
    // a UDP socket that reads queries and never answers; nothing listens on its TCP port
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = DnsResolver::with_servers(&[silent.local_addr().unwrap()], 1);
    let err = resolver
        .locate(&"sip:alice@host.example.test:5060".parse().unwrap())
        .await
        .unwrap_err();
    match &err {
        sipua::Error::Dns(e) => {
            assert_eq!(e.kind(), sipua::DnsErrorKind::Failed, "{err}");
            assert!(std::error::Error::source(e).is_some(), "{err}");
        }
        _ => panic!("not a DNS error: {err:?}"),
    }
}
