//! The requests the UA core answers by itself (RFC 3261 §8.2.1–§8.2.3, §8.2.2.2, §11.2,
//! §16.3): capabilities, the checks in their order, and the headers that explain a refusal.

use sipua_message::header::MediaType;
use sipua_message::{Header, HeaderName, Method, Request};

use crate::dialog::UasParts;
use crate::hash::KeyedState;
use std::hash::{BuildHasher, Hasher};

use std::time::Instant;

use super::UaCore;
use crate::endpoint::TransactionId;

/// The methods, extensions and body types a UA handles (RFC 3261 §8.2.1–§8.2.3); the core
/// answers requests outside them with 405/501, 420 or 415, and OPTIONS with them (§11.2).
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Methods in Allow.
    pub allow: Vec<Method>,
    /// Option tags in Supported; a Require outside this list gets 420.
    pub supported: Vec<String>,
    /// Body types in Accept; other bodies get 415.
    pub accept: Vec<MediaType>,
    /// Answer OPTIONS outside dialogs in the core (200 with Allow, Accept, Supported).
    pub answer_options: bool,
    /// Answer 404 to requests outside dialogs whose Request-URI names another user than
    /// ours (a Request-URI without a user part is always ours).
    pub check_request_uri: bool,
}

impl Default for Capabilities {
    fn default() -> Capabilities {
        Capabilities {
            allow: vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Bye,
                Method::Options,
                Method::Info,
                Method::Message,
                Method::Notify,
                Method::Refer,
                Method::Update,
                Method::Prack,
                Method::Subscribe,
            ],
            supported: vec![
                "replaces".into(),
                "timer".into(),
                "100rel".into(),
                "norefersub".into(),
            ],
            accept: vec![
                MediaType::new("application", "sdp"),
                MediaType::new("text", "plain"),
                MediaType::new("message", "sipfrag"),
                MediaType::new("application", "dtmf-relay"),
                MediaType::new("multipart", "mixed"),
            ],
            answer_options: true,
            check_request_uri: true,
        }
    }
}

impl UaCore {
    /// The requests the core answers itself (RFC 3261 §8.2.1–§8.2.3, §16.3 step 3): a
    /// method outside Allow (405, or 501 for one we do not know), a Request-URI scheme we do not
    /// serve (416), headers that do not parse (400), Max-Forwards 0 (483, OPTIONS excepted), a
    /// body type outside Accept (415), a Require outside Supported (420).
    ///
    /// A request that makes a dialog has its From (without the tag), To and Contact parsed
    /// here, for the dialog: they are left in `parts`.
    pub(super) fn check_request(
        &self,
        req: &Request,
        parts: &mut Option<UasParts>,
    ) -> Option<(u16, Vec<Header>)> {
        let caps = &self.cfg.capabilities;
        let method = req.method();
        if !caps.allow.contains(method) {
            let status = if matches!(method, Method::Extension(_)) {
                501
            } else {
                405
            };
            return Some((status, vec![self.allow_header()]));
        }
        if !served_scheme(req) {
            return Some((416, Vec::new()));
        }
        if caps.check_request_uri
            && !req.has_to_tag()
            && !matches!(method, Method::Ack | Method::Cancel)
        {
            // the user part read in place when it can be (no parse of the URI)
            let user = match req.uri_sip_user() {
                Some(user) => user,
                None => req.uri().as_sip().and_then(|u| u.user.as_deref()),
            };
            let other_user = user.is_some_and(|u| u != self.cfg.user);
            if other_user {
                return Some((404, Vec::new()));
            }
        }
        // validate's verdict; the From, To and Contact of a request that makes a dialog
        // parsed for the dialog (their errors are validate's), the others' checked in place
        let makes_dialog = matches!(method, Method::Invite | Method::Subscribe | Method::Refer)
            && !req.has_to_tag();
        let valid = if makes_dialog {
            match (req.owned_from_untagged(), req.owned_to(), req.contacts()) {
                (Ok(from), Ok(to), Ok(contacts)) if req.validate_vias().is_ok() => {
                    *parts = Some(UasParts { from, to, contacts });
                    true
                }
                _ => false,
            }
        } else {
            req.validate_quick().is_ok()
        };
        if !valid {
            return Some((400, Vec::new()));
        }
        if req.max_forwards() == Some(0) && *method != Method::Options {
            return Some((483, Vec::new()));
        }
        if *method == Method::Ack || *method == Method::Cancel {
            return None;
        }
        let creates_dialog = matches!(method, Method::Invite | Method::Subscribe | Method::Refer);
        if creates_dialog && !req.has_to_tag() && !req.headers().contains(&HeaderName::Contact) {
            // a request that creates a dialog must say where its requests go (RFC 3261
            // §8.1.1.8, RFC 6665 §4.1.2.1, RFC 3515 §2.1)
            return Some((400, Vec::new()));
        }
        if creates_dialog && !req.has_to_tag() && self.dialogs.len() >= self.cfg.max_dialogs {
            let retry = sipua_message::header::RetryAfter::seconds(10);
            return Some((503, vec![Header::typed(&retry)]));
        }
        // a NOTIFY's body is the event package's (presence, dialog, message summary...): the
        // subscriber that asked for it judges it, not a fixed list (RFC 6665 §4.1.3)
        if !req.body().is_empty() && *method != Method::Notify {
            let ok = req
                .content_type()
                .is_some_and(|ct| caps.accept.iter().any(|a| a.matches(&ct)));
            if !ok {
                return Some((415, vec![self.accept_header()]));
            }
            // §8.2.3: a body in an encoding we cannot undo (we take none but identity)
            let headers = req.headers();
            let encoded = headers.get_all(&HeaderName::ContentEncoding).any(|h| {
                h.value()
                    .split(|&b| b == b',')
                    .any(|e| !e.trim_ascii().eq_ignore_ascii_case(b"identity"))
            });
            if encoded {
                let identity = Header::new(HeaderName::AcceptEncoding, "identity");
                return Some((415, vec![identity]));
            }
        }
        let unsupported: Vec<String> = req
            .typed_all::<sipua_message::header::Require>()
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.0)
            .filter(|tag| !caps.supported.iter().any(|s| s.eq_ignore_ascii_case(tag)))
            .collect();
        if !unsupported.is_empty() {
            return Some((
                420,
                vec![Header::new(HeaderName::Unsupported, unsupported.join(", "))],
            ));
        }
        None
    }

    pub(super) fn allow_header(&self) -> Header {
        let list: Vec<&str> = self
            .cfg
            .capabilities
            .allow
            .iter()
            .map(Method::as_str)
            .collect();
        Header::new(HeaderName::Allow, list.join(", "))
    }

    pub(super) fn accept_header(&self) -> Header {
        let list: Vec<String> = self
            .cfg
            .capabilities
            .accept
            .iter()
            .map(ToString::to_string)
            .collect();
        Header::new(HeaderName::Accept, list.join(", "))
    }

    pub(super) fn capability_headers(&self) -> Vec<Header> {
        vec![
            self.allow_header(),
            self.accept_header(),
            Header::new(
                HeaderName::Supported,
                self.cfg.capabilities.supported.join(", "),
            ),
        ]
    }

    /// Answers server transaction `id` from the core, with extra headers.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        id: TransactionId,
        status: u16,
        headers: Vec<Header>,
    ) {
        let Ok(mut resp) = self.response(id, status) else {
            return;
        };
        for h in headers {
            if resp.push_header(h).is_err() {
                break;
            }
        }
        let _ = self.respond(now, id, resp);
    }
}

/// What identifies a request for merged-request detection (no To tag yet).
/// Whether the Request-URI's scheme is one we serve (sip, sips, tel), read from its first
/// bytes when it can be: every Request-URI passed `check_uri` when its message was indexed,
/// which accepts what `Uri::parse` accepts, so one that starts `sip:`, `sips:` or `tel:`
/// parses as that scheme. Others are parsed to be sure.
fn served_scheme(req: &Request) -> bool {
    let b = req.uri_bytes();
    let starts = |p: &[u8]| b.len() > p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    starts(b"sip:")
        || starts(b"sips:")
        || starts(b"tel:")
        || matches!(req.uri().scheme(), "sip" | "sips" | "tel")
}

/// What spots a merged request (RFC 3261 §8.2.2.2): From tag, Call-ID and CSeq, as one keyed
/// hash (no copies of the strings; a false match needs 64 bits of luck against secret keys).
pub(super) fn merge_key(keys: &KeyedState, req: &Request) -> Option<u64> {
    if req.has_to_tag() || matches!(req.method(), Method::Ack | Method::Cancel) {
        return None;
    }
    let mut h = keys.build_hasher();
    h.write(req.from_tag()?.as_bytes());
    h.write(req.call_id().as_bytes());
    // CSeq is number and method: a MESSAGE 1 beside an INVITE 1 is not a merged request
    h.write_u32(req.cseq().seq);
    h.write(req.method().as_str().as_bytes());
    Some(h.finish())
}
