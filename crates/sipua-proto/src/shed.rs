//! Overload refusal from the raw datagram: a new INVITE answered 503 with Retry-After
//! (RFC 3261 §21.5.4) and the ACK of that 503 dropped, both without the parser.
//!
//! When an agent is past its admitted rate, every INVITE it must refuse still costs a read,
//! a 503 and the ACK's read. If that costs a third of a call, a flood at five times the
//! capacity leaves nothing for the calls already accepted. So the endpoint first looks at
//! such a datagram here: the five headers a response copies (§8.2.6.2: Via, From, To,
//! Call-ID, CSeq) are found by a scan of the header lines, and the 503 is those lines copied
//! as they came, with our To tag, Retry-After and Content-Length. Its ACK, recognised by that
//! To tag, is dropped the same way.
//!
//! Only the plain case is taken: an INVITE over UDP whose top Via names the address it came
//! from (so §18.2.2 and RFC 3581 send the answer straight back there, with nothing to add to
//! the Via), with no To tag, one each of From, To, Call-ID and CSeq, the CSeq naming INVITE,
//! no folded lines and no quoted name in the To. Anything else returns `None` and takes the full
//! path (parse, then the same 503), so nothing is refused here that the parser would treat
//! otherwise. A message that is malformed past these lines is refused all the same: a 503
//! asks for nothing and lets the peer retry.

use std::net::{IpAddr, SocketAddr};

/// Most Via lines copied from the INVITE; more take the full path.
const MAX_VIAS: usize = 8;

/// A line of the datagram: where it starts and ends (without its CR LF).
type Span = (usize, usize);

/// The header lines of an INVITE that its 503 copies.
#[derive(Debug)]
pub(crate) struct RawInvite {
    vias: [Span; MAX_VIAS],
    via_count: usize,
    from: Span,
    to: Span,
    call_id: Span,
    cseq: Span,
}

/// The header lines of a request, found by one scan (see the module documentation).
#[derive(Default)]
struct Lines {
    vias: [Span; MAX_VIAS],
    via_count: usize,
    /// The value of the top Via line.
    top_via: Option<Span>,
    from: Option<Span>,
    to: Option<Span>,
    /// The value of the To line.
    to_value: Option<Span>,
    call_id: Option<Span>,
    cseq: Option<Span>,
    cseq_value: Option<Span>,
}

/// The request's header lines, or `None` for anything outside the plain case; with
/// `to_only`, the scan ends at the To line (all an ACK needs).
fn scan(bytes: &[u8], to_only: bool) -> Option<Lines> {
    let mut lines = Lines::default();
    let mut at = line_end(bytes, 0)?.1; // past the request line
    loop {
        let (end, next) = line_end(bytes, at)?;
        if end == at {
            return Some(lines); // the blank line: the headers are done
        }
        let line = &bytes[at..end];
        match line[0] {
            b' ' | b'\t' => return None, // folded: let the parser unfold it
            // the first letters of the five names, long or compact: skip the others unread
            b'v' | b'V' | b'f' | b'F' | b't' | b'T' | b'c' | b'C' | b'i' | b'I' => {}
            _ => {
                at = next;
                continue;
            }
        }
        let colon = memchr::memchr(b':', line)?;
        let name = trim(line, 0, colon);
        let value = trim(line, colon + 1, line.len());
        let value = (at + value.0, at + value.1);
        let span = (at, end);
        let name = &line[name.0..name.1];
        let once = |slot: &mut Option<Span>| match slot.replace(span) {
            None => Some(()),
            Some(_) => None, // twice: let the parser judge
        };
        if is(name, b"via", b"v") {
            if lines.via_count == MAX_VIAS {
                return None;
            }
            lines.vias[lines.via_count] = span;
            lines.via_count += 1;
            lines.top_via.get_or_insert(value);
        } else if is(name, b"from", b"f") {
            once(&mut lines.from)?;
        } else if is(name, b"to", b"t") {
            once(&mut lines.to)?;
            lines.to_value = Some(value);
            if to_only {
                return Some(lines);
            }
        } else if is(name, b"call-id", b"i") {
            once(&mut lines.call_id)?;
        } else if is(name, b"cseq", b"cseq") {
            once(&mut lines.cseq)?;
            lines.cseq_value = Some(value);
        }
        at = next;
    }
}

/// The end of the line starting at `at` (before its CR LF or LF) and the start of the next.
fn line_end(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let rest = bytes.get(at..)?;
    let lf = memchr::memchr(b'\n', rest)?;
    let end = if lf > 0 && rest[lf - 1] == b'\r' {
        at + lf - 1
    } else {
        at + lf
    };
    Some((end, at + lf + 1))
}

/// `line[from..to]` without the spaces and tabs around it.
fn trim(line: &[u8], mut from: usize, mut to: usize) -> Span {
    while from < to && (line[from] == b' ' || line[from] == b'\t') {
        from += 1;
    }
    while to > from && (line[to - 1] == b' ' || line[to - 1] == b'\t') {
        to -= 1;
    }
    (from, to)
}

/// `s` without the spaces and tabs around it.
fn trimmed(s: &[u8]) -> &[u8] {
    let (from, to) = trim(s, 0, s.len());
    &s[from..to]
}

/// Whether a header name is `long` or its compact form `short`, in any case.
fn is(name: &[u8], long: &[u8], short: &[u8]) -> bool {
    name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
}

/// The value of the `tag` parameter of a To or From value, if it has one: the parameters
/// after the `>` of a bracketed address, or after the first `;` of a bare one (§20.10).
/// `Err` for a quoted display name, which could hide either (left to the parser).
fn tag_of(value: &[u8]) -> Result<Option<&[u8]>, ()> {
    if memchr::memchr(b'"', value).is_some() {
        return Err(());
    }
    let params = match value.iter().rposition(|&b| b == b'>') {
        Some(gt) => &value[gt + 1..],
        None => match value.iter().position(|&b| b == b';') {
            Some(semi) => &value[semi..],
            None => return Ok(None),
        },
    };
    Ok(params.split(|&b| b == b';').find_map(|param| {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (&param[..eq], &param[eq + 1..]),
            None => (param, &[][..]),
        };
        trimmed(name)
            .eq_ignore_ascii_case(b"tag")
            .then(|| trimmed(value))
    }))
}

/// Whether a top Via value (`SIP/2.0/UDP host[:port];params`) sends the response straight
/// back to `source` with nothing added: UDP, `host` the source's address as a literal, the
/// port the source's (5060 when absent), and no `rport` or `maddr` to honour.
fn via_is_source(via: &[u8], source: SocketAddr) -> bool {
    let via = match via.iter().position(|&b| b == b',') {
        Some(comma) => &via[..comma],
        None => via,
    };
    let Some(space) = via.iter().position(|&b| b == b' ' || b == b'\t') else {
        return false;
    };
    // up to the first space: no whitespace inside (a spaced-out protocol takes the full path)
    let (protocol, rest) = via.split_at(space);
    if !protocol.eq_ignore_ascii_case(b"SIP/2.0/UDP") {
        return false;
    }
    let mut parts = rest.split(|&b| b == b';');
    let sent_by = trimmed(parts.next().unwrap_or_default());
    if parts.any(|p| {
        let name = trimmed(p.split(|&b| b == b'=').next().unwrap_or_default());
        name.eq_ignore_ascii_case(b"rport") || name.eq_ignore_ascii_case(b"maddr")
    }) {
        return false;
    }
    let Ok(sent_by) = std::str::from_utf8(sent_by) else {
        return false;
    };
    let (host, port) = match sent_by.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, port),
            Err(_) => return false,
        },
        None => (sent_by, 5060),
    };
    host.parse::<IpAddr>().is_ok_and(|ip| ip == source.ip()) && port == source.port()
}

/// The INVITE's lines a 503 copies, when `bytes` is an INVITE in the plain case (see the
/// module documentation) that came over UDP from `source`.
pub(crate) fn invite(bytes: &[u8], source: SocketAddr) -> Option<RawInvite> {
    if !bytes.starts_with(b"INVITE ") {
        return None;
    }
    let lines = scan(bytes, false)?;
    let top_via = lines.top_via?;
    let to_value = lines.to_value?;
    let cseq_value = lines.cseq_value?;
    if tag_of(&bytes[to_value.0..to_value.1]) != Ok(None)
        || !via_is_source(&bytes[top_via.0..top_via.1], source)
    {
        return None;
    }
    // `<number> INVITE`
    let cseq = &bytes[cseq_value.0..cseq_value.1];
    let space = cseq.iter().position(|&b| b == b' ' || b == b'\t')?;
    let (number, method) = (&cseq[..space], trim(cseq, space, cseq.len()));
    if number.is_empty()
        || number.len() > 10
        || !number.iter().all(u8::is_ascii_digit)
        || &cseq[method.0..method.1] != b"INVITE"
    {
        return None;
    }
    Some(RawInvite {
        vias: lines.vias,
        via_count: lines.via_count,
        from: lines.from?,
        to: lines.to?,
        call_id: lines.call_id?,
        cseq: lines.cseq?,
    })
}

/// The 503 for `invite` (whose bytes are `bytes`): its Via, From, To, Call-ID and CSeq lines
/// as they came, `tag` added to the To, and the Retry-After.
pub(crate) fn refusal(bytes: &[u8], invite: &RawInvite, tag: &str, retry_after: u32) -> Vec<u8> {
    let line = |s: Span| &bytes[s.0..s.1];
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"SIP/2.0 503 Service Unavailable\r\n");
    for &via in &invite.vias[..invite.via_count] {
        out.extend_from_slice(line(via));
        out.extend_from_slice(b"\r\n");
    }
    for (span, tagged) in [
        (invite.from, false),
        (invite.to, true),
        (invite.call_id, false),
        (invite.cseq, false),
    ] {
        out.extend_from_slice(line(span));
        if tagged {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Retry-After: ");
    out.extend_from_slice(retry_after.to_string().as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    out
}

/// Whether `bytes` is an ACK whose To tag is `tag`: the ACK of a 503 we sent, which nothing
/// waits for (§17.2.1: a stateless answer has no transaction to absorb it).
pub(crate) fn is_ack_of_refusal(bytes: &[u8], tag: &str) -> bool {
    if !bytes.starts_with(b"ACK ") {
        return false;
    }
    scan(bytes, true)
        .and_then(|lines| lines.to_value)
        .and_then(|v| tag_of(&bytes[v.0..v.1]).ok().flatten())
        .is_some_and(|t| t == tag.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipua_message::{Message, Response};

    const SOURCE: &str = "192.0.2.4:5070";
    const TAG: &str = "5eedf00d5eedf00d";

    fn source() -> SocketAddr {
        SOURCE.parse().unwrap()
    }

    fn invite_with(via: &str, to: &str, more: &str) -> String {
        format!(
            "INVITE sip:bob@192.0.2.1 SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@192.0.2.4>;tag=a1\r\n{to}\r\nCall-ID: c1@192.0.2.4\r\n\
             CSeq: 7 INVITE\r\n{more}Content-Length: 0\r\n\r\n"
        )
    }

    fn plain() -> String {
        invite_with(
            "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1",
            "To: <sip:bob@192.0.2.1>",
            "",
        )
    }

    fn refused(text: &str) -> Option<Response> {
        let raw = invite(text.as_bytes(), source())?;
        let bytes = refusal(text.as_bytes(), &raw, TAG, 9);
        match Message::parse(&bytes) {
            Ok(Message::Response(r)) => Some(r),
            other => panic!(
                "not a response: {other:?}\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }

    #[test]
    fn the_503_copies_the_five_headers_and_adds_our_tag_and_retry_after() {
        let text = invite_with(
            "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1\r\nv: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK0",
            "t: Bob <sip:bob@192.0.2.1>",
            "",
        );
        let r = refused(&text).expect("taken");
        // what the parser's own answer would say (Response::from_request), in the same order
        let Ok(Message::Request(req)) = Message::parse(text.as_bytes()) else {
            panic!()
        };
        assert_eq!(r.status(), 503);
        assert_eq!(r.reason(), "Service Unavailable");
        assert_eq!(r.via().unwrap().len(), 2);
        assert_eq!(r.branch(), Some("z9hG4bK1"));
        assert_eq!(r.call_id(), req.call_id());
        assert_eq!(r.cseq(), req.cseq());
        assert_eq!(r.from_tag(), Some("a1"));
        assert_eq!(r.to_tag(), Some(TAG));
        assert_eq!(r.to().unwrap().uri, req.to().unwrap().uri);
        let retry = r
            .headers()
            .get(&sipua_message::HeaderName::RetryAfter)
            .map(|h| h.value().to_vec());
        assert_eq!(retry.as_deref(), Some(&b"9"[..]));
        assert!(r.body().is_empty());
    }

    #[test]
    fn only_the_plain_case_is_taken() {
        assert!(refused(&plain()).is_some());
        let declined = [
            // in a dialog
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>;tag=b2",
                "",
            ),
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1",
                "To: sip:bob@192.0.2.1;TAG=b2",
                "",
            ),
            // the Via asks for rport, maddr, or names another address, port or transport
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4:5070;rport;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>",
                "",
            ),
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4:5070;maddr=192.0.2.9;branch=z",
                "To: <sip:bob@192.0.2.1>",
                "",
            ),
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>",
                "",
            ),
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>",
                "",
            ),
            invite_with(
                "Via: SIP/2.0/TCP 192.0.2.4:5070;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>",
                "",
            ),
            invite_with(
                "Via: SIP/2.0/UDP host.example:5070;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>",
                "",
            ),
            // quoted names, folded lines, a second To
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1",
                "To: \"Bob\" <sip:bob@192.0.2.1>",
                "",
            ),
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>",
                "Subject: a\r\n b\r\n",
            ),
            invite_with(
                "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1",
                "To: <sip:bob@192.0.2.1>",
                "To: <sip:carol@192.0.2.1>\r\n",
            ),
        ];
        for text in &declined {
            assert!(invite(text.as_bytes(), source()).is_none(), "{text}");
        }
        // a URI parameter named tag is not the To's tag
        let uri_tag = invite_with(
            "Via: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1",
            "To: <sip:bob@192.0.2.1;tag=x>",
            "",
        );
        assert!(refused(&uri_tag).is_some());
        // not an INVITE, a CSeq of another method, cut short, no headers
        let options = plain().replacen("INVITE ", "OPTIONS ", 1);
        assert!(invite(options.as_bytes(), source()).is_none());
        let cseq = plain().replace("CSeq: 7 INVITE", "CSeq: 7 OPTIONS");
        assert!(invite(cseq.as_bytes(), source()).is_none());
        let text = plain();
        for cut in [10, text.len() / 2, text.len() - 3] {
            assert!(invite(&text.as_bytes()[..cut], source()).is_none(), "{cut}");
        }
        // port 5060 when the Via has none
        let default_port: SocketAddr = "192.0.2.4:5060".parse().unwrap();
        let text = invite_with(
            "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK1",
            "To: <sip:bob@192.0.2.1>",
            "",
        );
        assert!(invite(text.as_bytes(), default_port).is_some());
    }

    #[test]
    fn the_ack_of_the_503_is_known_by_its_tag() {
        let ack = |to: &str| {
            format!(
                "ACK sip:bob@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1\r\n\
                 From: <sip:alice@192.0.2.4>;tag=a1\r\n{to}\r\nCall-ID: c1@192.0.2.4\r\nCSeq: 7 ACK\r\n\r\n"
            )
        };
        assert!(is_ack_of_refusal(
            ack(&format!("To: <sip:bob@192.0.2.1>;tag={TAG}")).as_bytes(),
            TAG
        ));
        assert!(is_ack_of_refusal(
            ack(&format!("t: sip:bob@192.0.2.1 ; tag = {TAG}")).as_bytes(),
            TAG
        ));
        assert!(!is_ack_of_refusal(
            ack("To: <sip:bob@192.0.2.1>;tag=other").as_bytes(),
            TAG
        ));
        assert!(!is_ack_of_refusal(
            ack("To: <sip:bob@192.0.2.1>").as_bytes(),
            TAG
        ));
        let bye = ack(&format!("To: <sip:bob@192.0.2.1>;tag={TAG}")).replacen("ACK ", "BYE ", 1);
        assert!(!is_ack_of_refusal(bye.as_bytes(), TAG));
    }

    #[test]
    fn no_input_panics() {
        // every prefix and every one-byte change of a plain INVITE and its ACK
        let text = plain();
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let _ = invite(&bytes[..cut], source()).map(|r| refusal(&bytes[..cut], &r, TAG, 1));
            let _ = is_ack_of_refusal(&bytes[..cut], TAG);
        }
        for i in 0..bytes.len() {
            for b in [b'\r', b'\n', b':', b';', b'>', b'<', b' ', 0xff] {
                let mut changed = bytes.to_vec();
                changed[i] = b;
                if let Some(r) = invite(&changed, source()) {
                    let _ = refusal(&changed, &r, TAG, 1);
                }
                let _ = is_ack_of_refusal(&changed, TAG);
            }
        }
    }
}
