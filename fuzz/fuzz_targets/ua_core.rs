//! Fuzzes the sans-IO core: arbitrary datagrams and timer events into a UA core that answers
//! every request it is given. Never a panic, and the tables stay within their limits.
//!
//! Input: messages separated by the two bytes 0x00 0xff; before each, virtual time moves on
//! by (length mod 7) × 300 ms, so retransmission and expiry timers fire too. An odd first
//! byte turns on digest authentication (the core challenges, counts failures, blocks);
//! the budget for unacknowledged calls is small, so calls are dropped oldest first. Its
//! second bit limits INVITEs to one a second and its third drains the core: refusals then
//! come as stateless 503s from the endpoint. The fourth refuses by queueing delay and the
//! fifth writes RFC 7339's overload figures into the Via of answers to Vias that ask.
//!
//! Behind the core sits one session's media machine (`sipua_proto::session::Media`, holding
//! its offer/answer state), as the session task uses it: each request's body is classified by
//! it and answered by its verdict (an answer or the owed offer in the 2xx, 491 on glare, 500
//! while an offer is pending, 488 when the handler fails), ACK and PRACK bodies are taken by
//! it, and a refused body asks nothing. What it asks goes to a model handler with WebRTC's
//! rules (an offer applied only when stable, an answer only to an offer of ours), which fails
//! an ask when a message's length says so: the machine never asks what the handler's state
//! forbids, and after each request the two agree on what is pending. Beside it, the session's
//! lifecycle machine (`Lifecycle`) takes what the core reports of the first call: the INVITE
//! and its answer, ACK, ACK timeout, CANCEL, BYE, with a hang-up asked for when a message's
//! length says so, its timers fired as time moves and its events handled as the session task
//! does; its state never moves back, and at the end it has ended or is still established.
//! The first call's `Callee` machine reads 100rel from the fuzzed INVITE's Require and
//! Supported and is asked for a provisional response (reliably or not) as a message's length
//! says, PRACKed by the PRACKs that come: one reliable 1xx at a time. And a caller's `Caller`
//! machine takes every fuzzed response to an INVITE as if it answered ours (its dialog from
//! the To tag, its Min-SE parsed): once a dialog is confirmed it stays, and the INVITE goes
//! again after a 422 at most once.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipua_message::Transport;
use sipua_proto::endpoint::{Config, Received};
use sipua_message::Method;
use sipua_proto::session::callee::{Callee, ProgressError, Rel100};
use sipua_proto::session::caller::{Caller, Final};
use sipua_proto::session::lifecycle::{Bye, Event, Lifecycle, SessionState};
use sipua_proto::session::media::Ask;
use sipua_proto::session::{Media, Message, OfferAnswer, OfferAnswerError};
use sipua_proto::ua::{DigestServerConfig, UaConfig, UaCore, UaEvent};

/// What a model media handler holds, as WebRTC's signalling states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Stable,
    Local,
    Remote,
}

/// Does what the media machine asks of a model handler that fails the `fail`th ask (0: none):
/// whether all went, and whether a description was made.
fn asks(media: &mut Media, held: &mut Held, mut fail: u8) -> (bool, bool) {
    let mut made = false;
    while let Some(ask) = media.poll_ask() {
        let allowed = match ask {
            Ask::ApplyOffer(_) => *held == Held::Stable,
            Ask::ApplyAnswer(_) => *held == Held::Local,
            Ask::Describe(_) => *held != Held::Local,
            Ask::Repeat(_) | Ask::Rollback | Ask::Confirmed => true,
        };
        assert!(allowed, "{ask:?} asked of a handler holding {held:?}");
        fail = fail.saturating_sub(1);
        if fail == 0 && matches!(ask, Ask::ApplyOffer(_) | Ask::ApplyAnswer(_) | Ask::Describe(_)) {
            media.failed();
            while let Some(after) = media.poll_ask() {
                assert_eq!(after, Ask::Rollback, "only a roll-back follows a failure");
                *held = Held::Stable;
            }
            return (false, false);
        }
        match ask {
            Ask::ApplyOffer(_) => *held = Held::Remote,
            Ask::ApplyAnswer(_) | Ask::Rollback => *held = Held::Stable,
            Ask::Describe(_) => {
                *held = if *held == Held::Remote { Held::Stable } else { Held::Local };
                made = true;
            }
            Ask::Repeat(_) => made = true,
            Ask::Confirmed => {}
        }
    }
    (true, made)
}

/// The handler holds what the negotiation says is pending.
fn agree(media: &Media, held: Held) {
    assert!(!media.busy());
    let ok = match media.state() {
        OfferAnswer::Stable | OfferAnswer::AwaitingOffer => held == Held::Stable,
        OfferAnswer::LocalOffer(_) => held == Held::Local,
        OfferAnswer::RemoteOffer(_) => held == Held::Remote,
        OfferAnswer::OweOffer => held != Held::Remote,
    };
    assert!(ok, "the handler holds {held:?} in {:?}", media.state());
}

/// What a request's body is to the session's machine, the status it is answered with, and
/// the handler's part, failing the `fail`th ask.
fn negotiate(
    media: &mut Media,
    held: &mut Held,
    method: &Method,
    has_body: bool,
    default: u16,
    fail: u8,
) -> u16 {
    let carrier = match method {
        Method::Invite => Message::Invite,
        Method::Update => Message::Update,
        Method::Prack => Message::Prack,
        _ => return default,
    };
    let before = *media.negotiation();
    let status = match media.received(carrier, has_body) {
        Err(e) => {
            assert_eq!(*media.negotiation(), before, "a refused body changed the state");
            assert!(!media.busy(), "a refused body asked something");
            if e == OfferAnswerError::Glare { 491 } else { 500 }
        }
        Ok(_) if default >= 300 => {
            media.rollback();
            asks(media, held, 0);
            default
        }
        Ok(_) => {
            let ok = match carrier {
                Message::Invite => Message::Success,
                Message::Update => Message::UpdateSuccess,
                _ => Message::PrackSuccess,
            };
            // our answer, or the offer an INVITE without one asks for (a PRACK's answer is
            // applied, its 2xx carries nothing)
            media.respond(ok);
            match asks(media, held, fail) {
                (true, made) => {
                    media.sent(ok, made);
                    default
                }
                (false, _) => 488,
            }
        }
    };
    agree(media, *held);
    status
}

/// Handles the lifecycle machine's events as the session task does.
fn pump(life: &mut Lifecycle<Instant>) {
    while let Some(e) = life.poll_event() {
        match e {
            Event::AnswerTimeout(_) => {
                life.final_sent(false);
                life.advance(SessionState::Terminated);
            }
            Event::SendBye | Event::ByeAbandoned | Event::Expired => {
                assert_eq!(life.state(), SessionState::Terminated)
            }
            Event::Refresh => assert_eq!(life.state(), SessionState::Established),
        }
    }
}

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
        // the second bit turns on the INVITE rate limit (stateless 503s before the
        // transaction layer, most from the raw datagram); the third drains the core; the
        // fourth refuses by queueing delay, the backlog's age moved by each message's length;
        // the fifth writes RFC 7339's figures into the Via of answers to Vias that ask
        max_invites_per_second: u32::from(data.first().is_some_and(|b| b & 2 == 2)),
        max_queue_delay: Duration::from_millis(
            if data.first().is_some_and(|b| b & 8 == 8) { 100 } else { 0 },
        ),
        overload_via: data.first().is_some_and(|b| b & 16 == 16),
        authenticate,
        ..UaConfig::new("192.0.2.2:5060".parse().unwrap(), Transport::Udp, "bob")
    });
    ua.set_draining(data.first().is_some_and(|b| b & 4 == 4));
    let mut now = Instant::now();
    let mut media = Media::new();
    let mut held = Held::Stable;
    // the first call's lifecycle, once its INVITE has come
    let mut life: Option<Lifecycle<Instant>> = None;
    // the first call's callee side, once its INVITE has come
    let mut callee: Option<Callee> = None;
    // a caller whose INVITE every fuzzed response to an INVITE answers
    let mut caller = Caller::<Vec<u8>>::new(data.len() % 2 == 0);
    caller.sent(data.len() % 3 != 0);
    let mut resent = 0;
    let mut rest = data;
    let mut n = 0;
    while !rest.is_empty() && n < 64 {
        n += 1;
        let end = rest.windows(2).position(|w| w == [0x00, 0xff]).unwrap_or(rest.len());
        let (msg, tail) = rest.split_at(end);
        rest = tail.get(2..).unwrap_or_default();
        now += Duration::from_millis((msg.len() % 7) as u64 * 300);
        ua.handle_timeout(now);
        if let Some(l) = life.as_mut() {
            let before = l.state();
            l.handle_timeout(now);
            pump(l);
            assert!(l.state() >= before);
            if msg.len() % 5 == 4 && l.request_bye() == Bye::Now {
                assert_eq!(l.state(), SessionState::Terminated);
            }
        }
        let transport = if msg.len() % 3 == 0 { Transport::Tcp } else { Transport::Udp };
        if msg.len() % 4 == 1 {
            // the socket was found empty: the backlog starts again (or is already old)
            let age = Duration::from_millis((msg.len() % 11) as u64 * 20);
            ua.set_backlog(Some(now.checked_sub(age).unwrap_or(now)));
        }
        if let Ok(sipua_message::Message::Response(r)) = sipua_message::Message::parse(msg) {
            if r.cseq().method == Method::Invite {
                let dialog = r.to().ok().and_then(|t| t.tag().map(|t| t.as_bytes().to_vec()));
                let min_se =
                    r.typed::<sipua_message::header::MinSe>().and_then(Result::ok).map(|m| m.0);
                let before = caller.confirmed().cloned();
                if r.status() < 200 {
                    let _ = caller.early_media(dialog.as_ref(), !r.body_bytes().is_empty(), true);
                } else {
                    let cancelled = msg.len() % 11 == 0;
                    let next = caller.handle_final(
                        r.status(), dialog, !r.body_bytes().is_empty(), min_se, cancelled);
                    if let Final::Resend422(_) = next {
                        resent += 1;
                        assert!(resent <= 1, "the INVITE went again after a 422 twice");
                    }
                }
                if before.is_some() {
                    assert_eq!(caller.confirmed().cloned(), before, "a confirmed dialog changed");
                }
            }
        }
        ua.handle_datagram(now, Received { transport, remote: "192.0.2.1:5060".parse().unwrap(), bytes: Bytes::copy_from_slice(msg) });
        while let Some(ev) = ua.poll_event() {
            if let Some(l) = life.as_mut() {
                let before = l.state();
                match &ev {
                    UaEvent::Ack { .. } => drop(l.handle_ack()),
                    UaEvent::AckTimeout { .. } => l.handle_ack_timeout(),
                    UaEvent::Cancelled { .. } => {
                        l.final_sent(false);
                        l.advance(SessionState::Terminated);
                    }
                    UaEvent::Request { request, .. } if *request.method() == Method::Bye => {
                        l.advance(SessionState::Terminated);
                    }
                    _ => {}
                }
                pump(l);
                assert!(l.state() >= before);
            }
            if let UaEvent::Ack { request, .. } = &ev {
                let before = *media.negotiation();
                match media.received(Message::Ack, !request.body_bytes().is_empty()) {
                    Ok(_) => {
                        asks(&mut media, &mut held, (msg.len() % 9) as u8);
                    }
                    Err(OfferAnswerError::Missing) => {
                        asks(&mut media, &mut held, 0);
                    }
                    Err(_) => assert_eq!(*media.negotiation(), before),
                }
                media.confirm();
                asks(&mut media, &mut held, 0);
                // an answer the handler failed leaves our offer open, and the handler its offer
                agree(&media, held);
            }
            if let UaEvent::Request { id, request, .. } = ev {
                // a TU that answers everything, by the session machine's verdict; if the core
                // refuses the answer, a 500 must do
                let status = if msg.len() % 2 == 0 { 200 } else { 486 };
                let status = negotiate(
                    &mut media,
                    &mut held,
                    request.method(),
                    !request.body_bytes().is_empty(),
                    status,
                    (msg.len() % 5) as u8,
                );
                let sent = ua.response(id, status).ok().is_some_and(|r| ua.respond(now, id, r).is_ok());
                if !sent {
                    let r = ua.response(id, 500).expect("a 500 can always be built");
                    ua.respond(now, id, r).expect("a 500 can always be sent");
                }
                if let Some(c) = callee.as_mut().filter(|_| *request.method() == Method::Prack) {
                    c.handle_prack();
                }
                let first_invite = *request.method() == Method::Invite && life.is_none();
                if first_invite {
                    // its provisional responses, as the application asks for them
                    let mut c = Callee::new(Rel100::of(&request));
                    for (i, &b) in msg.iter().take(4).enumerate() {
                        let status = 100 + u16::from(b) % 100;
                        let awaited = c.prack_awaited();
                        match c.progress(status, i % 2 == 0) {
                            Ok(true) => {
                                assert!(!awaited && c.rel100() != Rel100::Unsupported);
                                c.sent_reliably();
                            }
                            Ok(false) => {}
                            Err(ProgressError::PrackPending) => assert!(awaited),
                            Err(ProgressError::Unsupported) => {
                                assert_eq!(c.rel100(), Rel100::Unsupported)
                            }
                        }
                    }
                    callee = Some(c);
                    let mut l = Lifecycle::callee(now, Duration::from_secs(60), None);
                    l.advance(SessionState::Establishing);
                    let ok = sent && (200..300).contains(&status);
                    l.final_sent(ok);
                    if !ok {
                        l.advance(SessionState::Terminated);
                    }
                    life = Some(l);
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
        let later = now + Duration::from_secs(300 * k);
        ua.handle_timeout(later);
        while let Some(ev) = ua.poll_event() {
            if let (Some(l), UaEvent::AckTimeout { .. }) = (life.as_mut(), ev) {
                l.handle_ack_timeout();
            }
        }
        while ua.poll_transmit().is_some() {}
        if let Some(l) = life.as_mut() {
            l.handle_timeout(later);
            pump(l);
        }
    }
    if let Some(l) = &life {
        // no timer left: an established call lasts until a BYE, nothing else is waited for
        assert!(
            matches!(l.state(), SessionState::Terminated | SessionState::Established)
                && !(l.state() == SessionState::Established && l.awaiting_ack()),
            "{:?} awaiting ACK {}",
            l.state(),
            l.awaiting_ack()
        );
    }
    assert_eq!(ua.transactions(), 0);
});
