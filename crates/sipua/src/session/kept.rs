//! A callee's INVITE kept for the session's whole life (RFC 3261 §13.3.1: its From and To
//! are the identities, its Call-ID and From tag the session's id, and a media handler may
//! read it), though it is seldom read once answered.
//!
//! The parsed form (the header index and the shared head, about 760 bytes for a plain
//! INVITE with SDP) lives only while somebody holds it: the task until the final response,
//! the application while it keeps the [`Invitation`](super::Invitation), a reader's
//! `Arc`. After that only the received bytes stay, and a later read parses them again.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use sipua_message::{Message, Request};

/// A request held as its bytes, with its parsed form shared while anyone holds it.
pub(crate) struct KeptRequest {
    /// The request's own bytes (a slice of the buffer it was parsed from: no copy).
    raw: Bytes,
    /// The parsed form, while someone holds it.
    parsed: Mutex<Weak<Request>>,
    /// The parsed form held for good: a request built or changed in code, whose bytes
    /// were never parsed as they are.
    held: Option<Arc<Request>>,
}

impl KeptRequest {
    /// Keeps `request`: by its bytes when it is exactly as parsed, else whole.
    pub(crate) fn new(request: &Arc<Request>) -> KeptRequest {
        let pristine = request.is_pristine();
        KeptRequest {
            raw: if pristine {
                request.to_bytes()
            } else {
                Bytes::new()
            },
            parsed: Mutex::new(Arc::downgrade(request)),
            held: (!pristine).then(|| request.clone()),
        }
    }

    /// The request: the parsed form if someone still holds it, else parsed again from its
    /// bytes (which parsed before, so they parse again; `None` would mean they did not).
    pub(crate) fn get(&self) -> Option<Arc<Request>> {
        if let Some(r) = &self.held {
            return Some(r.clone());
        }
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = parsed.upgrade() {
            return Some(r);
        }
        let Ok(Message::Request(r)) = Message::parse_bytes(self.raw.clone()) else {
            tracing::error!(target: "sipua", "a kept INVITE did not parse again");
            return None;
        };
        let r = Arc::new(r);
        *parsed = Arc::downgrade(&r);
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
        From: \"Alice\" <sip:alice@127.0.0.1>;tag=a1\r\n\
        To: <sip:bob@127.0.0.1>\r\n\
        Call-ID: kept-1\r\n\
        CSeq: 1 INVITE\r\n\
        X-Account: 4711\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    fn account(r: &Request) -> Option<String> {
        let name = sipua_message::HeaderName::Other("X-Account".into());
        let h = r.headers().get(&name)?;
        h.value_str().map(str::to_owned)
    }

    fn parsed(bytes: &[u8]) -> Arc<Request> {
        match Message::parse(bytes).unwrap() {
            Message::Request(r) => Arc::new(r),
            Message::Response(_) => unreachable!("a request"),
        }
    }

    #[test]
    fn the_parsed_form_is_shared_while_held_and_parsed_again_after() {
        let first = parsed(INVITE);
        let kept = KeptRequest::new(&first);
        // while the first holder lives, the same parsed request comes back
        assert!(Arc::ptr_eq(&kept.get().unwrap(), &first));
        drop(first);
        // let go: parsed again from the bytes, every header as it came
        let again = kept.get().unwrap();
        assert_eq!(again.call_id(), "kept-1");
        assert_eq!(again.from_tag(), Some("a1"));
        assert_eq!(account(&again).as_deref(), Some("4711"));
        assert_eq!(again.body(), b"v=0\n");
        assert_eq!(&again.to_bytes()[..], INVITE);
        // and shared again while that one is held
        assert!(Arc::ptr_eq(&kept.get().unwrap(), &again));
    }

    #[test]
    fn a_changed_request_is_kept_whole() {
        let mut changed = (*parsed(INVITE)).clone();
        changed
            .set_header(sipua_message::Header::new(
                sipua_message::HeaderName::Other("X-Account".into()),
                "42",
            ))
            .unwrap();
        assert!(!changed.is_pristine());
        let changed = Arc::new(changed);
        let kept = KeptRequest::new(&changed);
        drop(changed);
        assert_eq!(account(&kept.get().unwrap()).as_deref(), Some("42"));
    }
}
