//! DTMF in SIP INFO, both ways: the `application/dtmf-relay` body we send (`Signal=5`,
//! `Duration=160`) and the ones we read (`application/dtmf-relay`, or `application/dtmf`
//! with the tone alone), as SIP.js's `SessionManager` and most PBXes use them. RFC 4733
//! events in the media are the media handler's business.

use std::time::Duration;

use sipua_message::Request;

use crate::error::Error;
use crate::sdh::BodyAndContentType;

/// The tones DTMF can carry (RFC 4733 §3.2 events 0–15).
const DTMF_TONES: &str = "0123456789*#ABCD";
/// The `Duration` of the INFO DTMF we send, in milliseconds.
const INFO_DTMF_DURATION_MS: u32 = 160;
/// The duration reported for an incoming INFO DTMF that gives none.
const DEFAULT_DTMF_DURATION: Duration = Duration::from_millis(100);

/// `tone` in upper case if it is a DTMF tone, else [`Error::InvalidArgument`].
pub(super) fn checked_tone(tone: char) -> Result<char, Error> {
    let tone = tone.to_ascii_uppercase();
    if DTMF_TONES.contains(tone) {
        Ok(tone)
    } else {
        Err(Error::InvalidArgument(format!(
            "{tone:?} is not a DTMF tone (0-9, *, #, A-D)"
        )))
    }
}

/// The body of an INFO carrying `tone`.
pub(super) fn info_body(tone: char) -> BodyAndContentType {
    BodyAndContentType {
        body: format!("Signal={tone}\r\nDuration={INFO_DTMF_DURATION_MS}\r\n").into(),
        content_type: "application/dtmf-relay".into(),
    }
}

/// What an INFO carries.
#[derive(Debug, PartialEq)]
pub(super) enum Dtmf {
    /// A tone and how long it lasts.
    Tone(char, Duration),
    /// A DTMF content type with a body we cannot read (answered 400).
    Malformed,
    /// Something else.
    Other,
}

/// Reads an INFO DTMF: `application/dtmf-relay` (`Signal=5`, `Duration=160` in ms) or
/// `application/dtmf` (the tone alone).
pub(super) fn dtmf_of(request: &Request) -> Dtmf {
    let Some(ct) = request.content_type() else {
        return Dtmf::Other;
    };
    if !ct.kind.eq_ignore_ascii_case("application") {
        return Dtmf::Other;
    }
    let relay = ct.subtype.eq_ignore_ascii_case("dtmf-relay");
    if !relay && !ct.subtype.eq_ignore_ascii_case("dtmf") {
        return Dtmf::Other;
    }
    let Ok(body) = std::str::from_utf8(request.body()) else {
        return Dtmf::Malformed;
    };
    let (tone, duration) = if relay {
        let mut tone = None;
        let mut duration = None;
        for (key, value) in body.lines().filter_map(|l| l.split_once('=')) {
            let key = key.trim();
            if key.eq_ignore_ascii_case("signal") {
                tone = tone_of(value.trim());
            } else if key.eq_ignore_ascii_case("duration") {
                duration = value.trim().parse::<u64>().ok().map(Duration::from_millis);
            }
        }
        (tone, duration)
    } else {
        (tone_of(body.trim()), None)
    };
    match tone {
        Some(t) => Dtmf::Tone(t, duration.unwrap_or(DEFAULT_DTMF_DURATION)),
        None => Dtmf::Malformed,
    }
}

/// A tone from its character or its RFC 4733 event number (10 is `*`, 11 `#`, 12–15 A–D).
fn tone_of(s: &str) -> Option<char> {
    if let Ok(n) = s.parse::<usize>() {
        return DTMF_TONES.chars().nth(n);
    }
    let mut chars = s.chars();
    let c = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && DTMF_TONES.contains(c)).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipua_message::Message;

    fn info(content_type: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\n\
             Call-ID: c1\r\nCSeq: 2 INFO\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match Message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn dtmf_relay_gives_the_signal_and_its_duration() {
        assert_eq!(
            dtmf_of(&info(
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n"
            )),
            Dtmf::Tone('5', Duration::from_millis(160))
        );
        assert_eq!(
            dtmf_of(&info("application/dtmf-relay", "signal= #\r\n")),
            Dtmf::Tone('#', DEFAULT_DTMF_DURATION)
        );
        assert_eq!(
            dtmf_of(&info(
                "Application/DTMF-Relay",
                "Signal=11\r\nDuration=250\r\n"
            )),
            Dtmf::Tone('#', Duration::from_millis(250))
        );
        assert_eq!(
            dtmf_of(&info("application/dtmf-relay", "Signal=x\r\n")),
            Dtmf::Malformed
        );
    }

    #[test]
    fn application_dtmf_is_the_tone_alone_and_other_bodies_are_not_dtmf() {
        assert_eq!(
            dtmf_of(&info("application/dtmf", "b\r\n")),
            Dtmf::Tone('B', DEFAULT_DTMF_DURATION)
        );
        assert_eq!(dtmf_of(&info("application/dtmf", "55")), Dtmf::Malformed);
        assert_eq!(dtmf_of(&info("text/plain", "Signal=5")), Dtmf::Other);
    }
}
