//! Session timers (RFC 4028): keeping a call alive with periodic refreshes so that a side
//! (or proxy) that lost the other can end it. The negotiation rules and the timer's deadline
//! live here, without a clock (the caller passes `now`, of any instant type); `sipua`'s
//! session task calls them when it sends or answers an INVITE, a re-INVITE or an UPDATE, and
//! refreshes or ends the session when [`Running::at`] passes.
//!
//! - A caller offers `Session-Expires` (and `Min-SE`) with `Supported: timer` (§7.1).
//! - A callee refuses an interval below its `Min-SE` with 422 (§8.1); otherwise its 2xx names
//!   the interval and the refresher: the caller's choice, else `uac` when the caller supports
//!   timers, else `uas` (§9).
//! - The refresher refreshes at half the interval (§10): UPDATE without a body when the peer
//!   allows UPDATE, else a re-INVITE. The other side sends BYE when no refresh came by the
//!   interval less min(32 s, a third of it) (§10).

use std::ops::Add;
use std::time::Duration;

use sipua_message::header::{MinSe, SessionExpires};
use sipua_message::{Header, HeaderName, Method, Request, Response};

/// Session-timer settings of a user agent (RFC 4028).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerOptions {
    /// The interval asked for, in seconds (RFC 4028's recommended 1800).
    pub session_expires: u32,
    /// The shortest interval accepted; shorter ones get 422 (at least 90, §4).
    pub min_se: u32,
}

impl Default for SessionTimerOptions {
    fn default() -> Self {
        SessionTimerOptions {
            session_expires: 1800,
            min_se: 90,
        }
    }
}

/// A running session timer; `I` is the caller's instant type (std's, or a runtime's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running<I> {
    /// The negotiated interval in seconds.
    pub interval: u32,
    /// Whether we refresh (else we watch for the peer's refreshes).
    pub we_refresh: bool,
    /// When to refresh, or when the session expires.
    pub at: I,
}

impl<I: Copy + Add<Duration, Output = I>> Running<I> {
    /// A timer of `interval` seconds started at `now`: due at half the interval when we
    /// refresh (§10), else at the interval less min(32 s, a third of it), when the session
    /// the peer stopped refreshing is to end.
    pub fn start(interval: u32, we_refresh: bool, now: I) -> Running<I> {
        let i = u64::from(interval.max(1));
        let after = if we_refresh {
            Duration::from_secs(i) / 2
        } else {
            // §10: BYE at the interval less min(32 s, a third of it)
            Duration::from_secs(i - (i / 3).min(32))
        };
        Running {
            interval,
            we_refresh,
            at: now + after,
        }
    }

    /// `Session-Expires` for a refresh we send (we are its UAC and stay the refresher).
    pub fn refresh_header(&self) -> Header {
        Header::new(
            HeaderName::SessionExpires,
            format!("{};refresher=uac", self.interval),
        )
    }
}

/// Whether `r` lists `tag` in a header named `name` (Supported, Require, Allow...).
pub fn lists(headers: &sipua_message::header::Headers<'_>, name: HeaderName, tag: &str) -> bool {
    headers.iter().any(|h| {
        h.is(&name)
            && h.elements()
                .iter()
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(tag.as_bytes()))
    })
}

/// The headers a caller's INVITE carries for session timers.
pub fn invite_headers(o: &SessionTimerOptions) -> Vec<Header> {
    vec![
        Header::new(HeaderName::SessionExpires, o.session_expires.to_string()),
        Header::new(HeaderName::MinSe, o.min_se.to_string()),
    ]
}

/// What a callee does with an INVITE's session-timer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The interval is below our minimum: answer 422 with this `Min-SE`.
    TooBrief(u32),
    /// Run a timer: the 2xx gets these headers; `we_refresh` tells who refreshes.
    Run {
        /// The interval, in seconds.
        interval: u32,
        /// We refresh (else the caller does).
        we_refresh: bool,
        /// `Session-Expires` (and `Require: timer` for a caller that supports timers).
        headers: Vec<Header>,
    },
}

/// Whether the peer that sent a request with `asked` (its Session-Expires) refreshes the
/// session (RFC 4028 §9): if it supports timers and does not ask us to.
fn peer_refreshes(asked: Option<&SessionExpires>, supports: bool) -> bool {
    supports
        && !asked
            .and_then(SessionExpires::refresher)
            .is_some_and(|r| r.eq_ignore_ascii_case("uas"))
}

/// The callee's decision for `invite` (RFC 4028 §8–9).
pub fn decide(invite: &Request, o: &SessionTimerOptions) -> Decision {
    let h = invite.headers();
    let asked = h.typed::<SessionExpires>().and_then(Result::ok);
    let their_min = h.typed::<MinSe>().and_then(Result::ok).map_or(0, |m| m.0);
    let supports = lists(&h, HeaderName::Supported, "timer");
    let min = o.min_se.max(90);
    if let Some(se) = &asked {
        if se.delta < min {
            return Decision::TooBrief(min);
        }
    }
    let interval = asked
        .as_ref()
        .map_or(o.session_expires, |se| {
            se.delta.min(o.session_expires.max(min))
        })
        .max(min)
        .max(their_min);
    let refresher = if peer_refreshes(asked.as_ref(), supports) {
        "uac"
    } else {
        "uas"
    };
    let mut headers = vec![Header::new(
        HeaderName::SessionExpires,
        format!("{interval};refresher={refresher}"),
    )];
    if supports {
        headers.push(Header::new(HeaderName::Require, "timer"));
    }
    Decision::Run {
        interval,
        we_refresh: refresher == "uas",
        headers,
    }
}

/// The caller's timer from the 2xx to its INVITE: `None` when the callee runs none.
pub fn from_answer(response: &Response) -> Option<(u32, bool)> {
    let se = response.typed::<SessionExpires>().and_then(Result::ok)?;
    // §7.2: a 2xx without refresher leaves refreshing to the caller
    let we_refresh = se
        .refresher()
        .is_none_or(|r| !r.eq_ignore_ascii_case("uas"));
    Some((se.delta.max(1), we_refresh))
}

/// A re-INVITE or UPDATE from the peer (RFC 4028 §9, as for an initial INVITE): the
/// interval it names (else ours), whether we refresh from now on, and the header for our
/// 2xx. The peer refreshes if it asks to, or if it supports timers and names no refresher;
/// a peer that does not support them (a hold re-INVITE from SIP.js, say) leaves the
/// refreshing to us: the call must not expire because it re-INVITEd once.
pub fn answer_refresh(request: &Request, current: u32) -> (u32, bool, Header) {
    let h = request.headers();
    let asked = h.typed::<SessionExpires>().and_then(Result::ok);
    let supports = lists(&h, HeaderName::Supported, "timer");
    let interval = asked.as_ref().map_or(current, |s| s.delta.max(1));
    let they_refresh = peer_refreshes(asked.as_ref(), supports);
    let refresher = if they_refresh { "uac" } else { "uas" };
    (
        interval,
        !they_refresh,
        Header::new(
            HeaderName::SessionExpires,
            format!("{interval};refresher={refresher}"),
        ),
    )
}

/// Whether the peer's Allow (in its INVITE or 2xx) lists UPDATE, so refreshes can use it.
pub fn allows_update(headers: &sipua_message::header::Headers<'_>) -> bool {
    lists(headers, HeaderName::Allow, Method::Update.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: x\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match sipua_message::Message::parse(text.as_bytes()).unwrap() {
            sipua_message::Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn header_text(d: &Decision) -> String {
        match d {
            Decision::Run { headers, .. } => headers
                .iter()
                .map(|h| String::from_utf8_lossy(h.value()).into_owned())
                .collect::<Vec<_>>()
                .join(" | "),
            Decision::TooBrief(m) => format!("422 {m}"),
        }
    }

    #[test]
    fn a_callee_refuses_an_interval_below_its_minimum_with_422() {
        let o = SessionTimerOptions {
            min_se: 120,
            ..Default::default()
        };
        let d = decide(&invite("Session-Expires: 100\r\nSupported: timer\r\n"), &o);
        assert_eq!(d, Decision::TooBrief(120));
    }

    #[test]
    fn a_supporting_caller_refreshes_unless_it_asks_the_callee_to() {
        let o = SessionTimerOptions::default();
        let d = decide(&invite("Session-Expires: 600\r\nSupported: timer\r\n"), &o);
        assert_eq!(header_text(&d), "600;refresher=uac | timer");
        assert!(matches!(
            d,
            Decision::Run {
                we_refresh: false,
                ..
            }
        ));
        let d = decide(
            &invite("Session-Expires: 600;refresher=uas\r\nSupported: timer\r\n"),
            &o,
        );
        assert!(matches!(
            d,
            Decision::Run {
                we_refresh: true,
                interval: 600,
                ..
            }
        ));
    }

    #[test]
    fn without_caller_support_the_callee_refreshes_itself() {
        let d = decide(&invite(""), &SessionTimerOptions::default());
        assert_eq!(header_text(&d), "1800;refresher=uas");
        assert!(matches!(
            d,
            Decision::Run {
                we_refresh: true,
                ..
            }
        ));
    }

    #[test]
    fn a_reinvite_from_a_peer_without_timers_leaves_the_refreshing_to_us() {
        // a hold re-INVITE from a UA that never heard of RFC 4028
        let (interval, we, h) = answer_refresh(&invite(""), 1800);
        assert_eq!((interval, we), (1800, true));
        assert_eq!(&*String::from_utf8_lossy(h.value()), "1800;refresher=uas");
        // a supporting peer that refreshes names itself, or nobody
        let (_, we, h) = answer_refresh(
            &invite("Session-Expires: 900;refresher=uac\r\nSupported: timer\r\n"),
            1800,
        );
        assert!(!we);
        assert_eq!(&*String::from_utf8_lossy(h.value()), "900;refresher=uac");
        let (_, we, _) = answer_refresh(&invite("Supported: timer\r\n"), 1800);
        assert!(!we);
        // asking us to refresh
        let (_, we, _) = answer_refresh(
            &invite("Session-Expires: 900;refresher=uas\r\nSupported: timer\r\n"),
            1800,
        );
        assert!(we);
    }

    #[test]
    fn refreshes_come_at_half_time_and_expiry_a_little_before_the_end() {
        let now = std::time::Instant::now();
        assert_eq!(
            Running::start(1800, true, now).at,
            now + Duration::from_secs(900)
        );
        assert_eq!(
            Running::start(1800, false, now).at,
            now + Duration::from_secs(1800 - 32)
        );
        assert_eq!(
            Running::start(90, false, now).at,
            now + Duration::from_secs(60)
        );
    }
}
