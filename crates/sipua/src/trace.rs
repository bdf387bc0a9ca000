//! What sipua tells [`tracing`]. The library installs no subscriber: the application picks one
//! (the `sipua` command's `-v`, `--trace` and `--pcap` are three).
//!
//! - Every SIP message sent and received is an event of its own: target [`MESSAGE_TARGET`],
//!   level TRACE, with the fields `direction` (`"sent"` or `"received"`), `transport`, `local`
//!   and `peer` (addresses), `size` (bytes on the wire), and `call_id`, `cseq` and `branch`
//!   (the top Via's: the transaction); its message is the SIP message as
//!   text, with the digest `response` and `cnonce` of Authorization and Proxy-Authorization
//!   hidden, so that no trace holds what a password could be guessed from.
//! - Each user agent's driver runs in a span `user_agent` (its local address) and each session
//!   in a span `session` (its Call-ID and, once the dialog exists, both tags); session state
//!   changes are DEBUG events and failures to
//!   send are WARN events, target `sipua`.

use std::borrow::Cow;
use std::net::SocketAddr;

use sipua_message::Transport;

/// The target of the events that carry SIP messages (see the module documentation).
pub const MESSAGE_TARGET: &str = "sipua::message";

/// Reports a SIP message that went out (`sent`) or came in.
pub(crate) fn message(
    sent: bool,
    transport: &Transport,
    local: SocketAddr,
    peer: SocketAddr,
    bytes: &[u8],
) {
    if tracing::enabled!(target: "sipua::message", tracing::Level::TRACE) {
        let text = String::from_utf8_lossy(bytes);
        let text = redacted(&text);
        let direction = if sent { "sent" } else { "received" };
        // the transaction and dialog it belongs to, for filtering a busy trace
        let call_id = header(&text, "call-id", "i").unwrap_or_default();
        let cseq = header(&text, "cseq", "").unwrap_or_default();
        let branch = header(&text, "via", "v")
            .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("branch=")))
            .unwrap_or_default();
        tracing::trace!(
            target: "sipua::message",
            direction,
            transport = %transport,
            local = %local,
            peer = %peer,
            size = bytes.len(),
            call_id,
            cseq,
            branch,
            "{text}"
        );
    }
}

/// The value of the first header `name` (or its compact form `short`) of a message's text.
fn header<'a>(text: &'a str, name: &str, short: &str) -> Option<&'a str> {
    text.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || (!short.is_empty() && n.eq_ignore_ascii_case(short)))
                .then(|| v.trim())
        })
}

/// `text` with the value of every `response=` and `cnonce=` parameter of Authorization and
/// Proxy-Authorization lines replaced by `"…"`.
pub fn redacted(text: &str) -> Cow<'_, str> {
    let is_credentials = |line: &str| {
        let name = line.split(':').next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization")
    };
    if !text.lines().any(is_credentials) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !is_credentials(line) {
            out.push_str(line);
            continue;
        }
        // parameters are comma-separated `name=value` (a quoted value holds no comma here)
        let (head, tail) = line.split_at(line.find(':').map_or(0, |i| i + 1));
        out.push_str(head);
        let end = tail.trim_end_matches(['\r', '\n']);
        let parts: Vec<String> = end
            .split(',')
            .map(|p| {
                let name = p.split('=').next().unwrap_or_default().trim();
                let name = name.rsplit(' ').next().unwrap_or(name);
                if name.eq_ignore_ascii_case("response") || name.eq_ignore_ascii_case("cnonce") {
                    let eq = p.find('=').map_or(p.len(), |i| i + 1);
                    format!("{}\"…\"", &p[..eq])
                } else {
                    p.to_owned()
                }
            })
            .collect();
        out.push_str(&parts.join(","));
        out.push_str(&tail[end.len()..]);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn digest_responses_are_hidden_and_the_rest_kept() {
        let text = "INVITE sip:b@h SIP/2.0\r\n\
            Proxy-Authorization: Digest username=\"alice\", realm=\"r\", nonce=\"n\", \
            uri=\"sip:b@h\", response=\"6629fae49393a05397450978507c4ef1\", cnonce=\"0a4f\", nc=00000001\r\n\
            authorization: Digest response=\"abc\",username=\"bob\"\r\n\
            Subject: response=\"kept\"\r\n\r\n";
        let r = redacted(text);
        assert!(
            !r.contains("6629fae4") && !r.contains("0a4f") && !r.contains("\"abc\""),
            "{r}"
        );
        assert!(
            r.contains("username=\"alice\"") && r.contains("nc=00000001"),
            "{r}"
        );
        assert!(
            r.contains("response=\"…\"") && r.contains("username=\"bob\""),
            "{r}"
        );
        assert!(r.contains("Subject: response=\"kept\"\r\n\r\n"), "{r}");
        assert!(matches!(
            redacted("OPTIONS sip:x SIP/2.0\r\n\r\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
