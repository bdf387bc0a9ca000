//! Fuzzes the sans-IO core: arbitrary datagrams and timer events into a UA core that answers
//! every request it is given. Never a panic, and the tables stay within their limits.
//!
//! Input: messages separated by the two bytes 0x00 0xff; before each, virtual time moves on
//! by (length mod 7) × 300 ms, so retransmission and expiry timers fire too. An odd first
//! byte turns on digest authentication (the core challenges, counts failures, blocks);
//! the budget for unacknowledged calls is small, so calls are dropped oldest first.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipua_message::Transport;
use sipua_proto::endpoint::{Config, Received};
use sipua_proto::ua::{DigestServerConfig, UaConfig, UaCore, UaEvent};

const MAX_TX: usize = 16;
const MAX_DIALOGS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let authenticate = data.first().is_some_and(|b| b & 1 == 1).then(|| DigestServerConfig {
        users: [("alice".to_owned(), "secret".to_owned())].into(),
        max_failures: 3,
        max_tracked: 4,
        ..Default::default()
    });
    let mut ua = UaCore::new(UaConfig {
        endpoint: Config { max_transactions: MAX_TX, ..Config::default() },
        max_dialogs: MAX_DIALOGS,
        max_unconfirmed: 3,
        max_unconfirmed_bytes: 4_000,
        authenticate,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    let mut now = Instant::now();
    let mut rest = data;
    let mut n = 0;
    while !rest.is_empty() && n < 64 {
        n += 1;
        let end = rest.windows(2).position(|w| w == [0x00, 0xff]).unwrap_or(rest.len());
        let (msg, tail) = rest.split_at(end);
        rest = tail.get(2..).unwrap_or_default();
        now += Duration::from_millis((msg.len() % 7) as u64 * 300);
        ua.handle_timeout(now);
        let transport = if msg.len() % 3 == 0 { Transport::Tcp } else { Transport::Udp };
        ua.handle_datagram(now, Received { transport, remote: "192.0.2.1:5060".parse().unwrap(), bytes: Bytes::copy_from_slice(msg) });
        while let Some(ev) = ua.poll_event() {
            if let UaEvent::Request { id, .. } = ev {
                // a TU that answers everything; if the core refuses the answer, a 500 must do
                let status = if msg.len() % 2 == 0 { 200 } else { 486 };
                let sent = ua.response(id, status).ok().is_some_and(|r| ua.respond(now, id, r).is_ok());
                if !sent {
                    let r = ua.response(id, 500).expect("a 500 can always be built");
                    ua.respond(now, id, r).expect("a 500 can always be sent");
                }
            }
        }
        while ua.poll_transmit().is_some() {}
        assert!(ua.transactions() <= MAX_TX, "transactions {}", ua.transactions());
        assert!(ua.dialogs() <= MAX_DIALOGS, "dialogs {}", ua.dialogs());
    }
    // a long time later everything has expired (an un-ACKed 2xx may still start a BYE at the
    // first of these, which the next one sees out)
    for k in 1..=3 {
        ua.handle_timeout(now + Duration::from_secs(300 * k));
        while ua.poll_event().is_some() {}
        while ua.poll_transmit().is_some() {}
    }
    assert_eq!(ua.transactions(), 0);
});
