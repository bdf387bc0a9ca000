//! Dialogs (RFC 3261 §12): created by a UAC from a response with a To tag (§12.1.2) or by a
//! UAS from a request (§12.1.1); route sets from Record-Route, remote target from Contact,
//! local and remote CSeq rules, and in-dialog requests with loose routing and the strict
//! routing of §12.2.1.1; the route set recomputed by the 2xx that confirms an early dialog
//! (§13.2.2.4) and frozen after it; the flow a dialog came over, for peers reachable only
//! through it (RFC 5626, RFC 7118).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use sipua_message::header::{Contact, RecordRoute};
use sipua_message::{
    Header, HeaderName, Host, Method, NameAddr, ParseError, Request, RequestBuilder, Response,
    Transport, Uri, Via, ViaTemplate,
};

/// What names a dialog (RFC 3261 §12): Call-ID and the two tags.
///
/// The parts are shared strings: an id is copied into several tables and handles per call
/// (the UA core, the driver, the session), and a copy only counts a reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: Arc<str>,
    /// Our tag (From of our requests).
    pub local_tag: Arc<str>,
    /// The peer's tag.
    pub remote_tag: Arc<str>,
}

/// Hashes the two tags only (equal ids have equal tags, so this agrees with `Eq`): our tag is
/// ours and random, the pair tells forks apart, and the Call-ID, the longest part, adds
/// nothing but hashing time to the tables of the UA core. [`DialogIdRef`] hashes the same way, so it finds ids in tables without copies.
impl std::hash::Hash for DialogId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_tags(&self.local_tag, &self.remote_tag, state);
    }
}

fn hash_tags<H: std::hash::Hasher>(local: &str, remote: &str, state: &mut H) {
    // 0xff is never in UTF-8: `local 0xff remote` reads back one way only
    state.write(local.as_bytes());
    state.write_u8(0xff);
    state.write(remote.as_bytes());
}

/// A dialog id's parts borrowed from a message: what a table keyed by [`DialogId`] is
/// searched with (`table.get(id_ref.key())`), so that a request for an unknown dialog, or
/// one whose id the table already holds, costs no copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogIdRef<'a> {
    /// The Call-ID.
    pub call_id: &'a str,
    /// Our tag.
    pub local_tag: &'a str,
    /// The peer's tag.
    pub remote_tag: &'a str,
}

impl<'a> DialogIdRef<'a> {
    /// The lookup key for tables keyed by [`DialogId`].
    pub fn key(&self) -> &(dyn DialogKey + 'a) {
        self
    }

    /// An owned id with these parts (three string copies).
    pub fn to_owned_id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.into(),
            local_tag: self.local_tag.into(),
            remote_tag: self.remote_tag.into(),
        }
    }
}

impl DialogId {
    /// The parts, borrowed.
    pub fn as_ref(&self) -> DialogIdRef<'_> {
        DialogIdRef {
            call_id: &self.call_id,
            local_tag: &self.local_tag,
            remote_tag: &self.remote_tag,
        }
    }
}

/// Anything that names a dialog by its three parts: an owned [`DialogId`] or a borrowed
/// [`DialogIdRef`]. Tables keyed by `DialogId` are searched with `&dyn DialogKey`.
pub trait DialogKey {
    /// The three parts.
    fn parts(&self) -> DialogIdRef<'_>;
}

impl DialogKey for DialogId {
    fn parts(&self) -> DialogIdRef<'_> {
        self.as_ref()
    }
}

impl DialogKey for DialogIdRef<'_> {
    fn parts(&self) -> DialogIdRef<'_> {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn DialogKey + 'a> for DialogId {
    fn borrow(&self) -> &(dyn DialogKey + 'a) {
        self
    }
}

impl PartialEq for dyn DialogKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn DialogKey + '_ {}

impl std::hash::Hash for dyn DialogKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let p = self.parts();
        hash_tags(p.local_tag, p.remote_tag, state);
    }
}

/// The Via of a request a dialog builds: a typed value, or the text the UA core writes for
/// its own Via (no struct to make, write and drop for every request).
#[derive(Debug, Clone)]
pub(crate) enum ViaValue<'a> {
    /// A typed Via.
    Typed(Via),
    /// A Via value as written.
    Text(String),
    /// The UA's Via template with a branch ([`RequestBuilder::via_branch`]).
    Branch(&'a ViaTemplate, String),
}

/// Early (after a provisional response) or confirmed (after a 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
}

/// Why a dialog cannot be made or used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogError {
    /// A header the dialog needs is malformed.
    Message(ParseError),
    /// The response or request has no tag to identify the peer.
    MissingTag,
    /// The dialog-creating message has no usable Contact.
    MissingContact,
    /// An in-dialog request came with a CSeq lower than the last one (answer 500).
    CSeqTooLow,
}

impl std::fmt::Display for DialogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialogError::Message(e) => write!(f, "malformed message: {e}"),
            DialogError::MissingTag => f.write_str("no tag to identify the peer"),
            DialogError::MissingContact => f.write_str("no usable Contact"),
            DialogError::CSeqTooLow => f.write_str("CSeq lower than the dialog's last"),
        }
    }
}

impl std::error::Error for DialogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DialogError::Message(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ParseError> for DialogError {
    fn from(e: ParseError) -> DialogError {
        DialogError::Message(e)
    }
}

/// What a UAS dialog takes of the request that makes it, parsed when the request was
/// checked ([`Dialog::uas`] parses them itself otherwise).
#[derive(Debug)]
pub(crate) struct UasParts {
    /// From, without its tag.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// The Contact values.
    pub contacts: Vec<Contact>,
}

/// The state of one dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Call-ID and tags.
    pub id: DialogId,
    /// Early or confirmed.
    pub state: DialogState,
    /// The last CSeq we used (`None` until we send a request, on the UAS side).
    pub local_seq: Option<u32>,
    /// The last CSeq the peer used (`None` until it sends one, on the UAC side).
    pub remote_seq: Option<u32>,
    /// Our address, the peer's and the remote target, as our requests write them (see
    /// [`Dialog::local_uri`], [`Dialog::remote_uri`], [`Dialog::remote_target`]).
    addresses: Addresses,
    /// Record-Route, in the order our requests visit it, as their Route headers write it
    /// ([`Dialog::route_set`] parses it); none for a dialog without proxies.
    routes: Option<Box<Routes>>,
    /// Whether the dialog is `sips` (RFC 3261 §12.1.1).
    pub secure: bool,
    /// Whether we sent the INVITE that made it (and so chose the Call-ID, RFC 3261 §14.1).
    pub caller: bool,
    /// The connection the dialog's first request or response came over (TCP, TLS, WS,
    /// WSS), if it did: our requests go back over it when the peer cannot be reached
    /// otherwise (see [`Dialog::uses_flow`]). Boxed: most dialogs (over UDP) have none, and
    /// a dialog table holds many.
    pub flow: Option<Box<Flow>>,
}

/// A dialog's three addresses as its requests write them, in one allocation: our address
/// with our tag (From), the peer's with no tag (To, its tag is the dialog's) and the remote
/// target (the Request-URI, or the last Route past a strict router).
///
/// A dialog lives as long as its call, and a held call keeps little else: parsed, the three
/// took about 700 bytes in a dozen allocations; written, about 130 in one. What a request
/// needs of them is their text, copied as it is; the parsed forms are made when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addresses {
    text: Box<str>,
    /// Where the peer's address starts in `text` (ours ends there).
    remote: u32,
    /// Where the remote target starts (the peer's address ends there).
    target: u32,
}

impl Addresses {
    fn new(local: &NameAddr, remote: &NameAddr, target: &Uri) -> Addresses {
        let mut s = String::with_capacity(160);
        local.write_into(&mut s);
        let remote_at = s.len() as u32;
        remote.write_into(&mut s);
        let target_at = s.len() as u32;
        target.write_into(&mut s);
        Addresses {
            text: s.into_boxed_str(),
            remote: remote_at,
            target: target_at,
        }
    }

    fn local(&self) -> &str {
        &self.text[..self.remote as usize]
    }

    fn remote(&self) -> &str {
        &self.text[self.remote as usize..self.target as usize]
    }

    fn target(&self) -> &str {
        &self.text[self.target as usize..]
    }

    /// The same addresses with `target` as the remote target.
    fn retarget(&mut self, target: &Uri) {
        let mut s = String::with_capacity(self.target as usize + 64);
        s.push_str(&self.text[..self.target as usize]);
        target.write_into(&mut s);
        self.text = s.into_boxed_str();
    }
}

/// A dialog's route set as its requests' Route headers write it (RFC 3261 §12.1.1,
/// §12.2.1.1), in one buffer that each request's headers share.
///
/// Behind record-routing proxies (the usual deployment) a dialog keeps its route set for
/// the whole call: parsed, each route took about 500 bytes in several allocations (its URI,
/// host and parameters); written, it is its text. A request's Route headers are slices of
/// the buffer: no copy, no formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Routes {
    /// The values one after another.
    text: Bytes,
    /// Where each value ends in `text`.
    ends: Box<[u32]>,
    /// The first route is a strict router (no `lr`): requests put it in the Request-URI.
    strict: bool,
    /// Where the first route sends requests, read once when the set is made: every request
    /// of the dialog needs it, and the text would be parsed again each time.
    first: FirstHop,
}

/// Where a next hop sends requests, read from its URI (RFC 3263 §4 without DNS): what a
/// dialog's requests need each time, kept so that its text is not parsed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FirstHop {
    /// The address, when the URI names one (an IP address; a host name needs DNS).
    pub(crate) address: Option<SocketAddr>,
    /// Its `transport` parameter, when it is one of ours (`Other` is read again from the
    /// text, rarely).
    pub(crate) transport: HopTransport,
    /// The host is a domain name (a TLS or WSS connection to it is named by it).
    pub(crate) named: bool,
}

/// A next hop's `transport` parameter, in a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HopTransport {
    /// No parameter.
    None,
    /// One of [`KNOWN_TRANSPORTS`], by its index.
    Known(u8),
    /// Another token: read from the text when asked.
    Other,
}

/// The transports a next hop's parameter is kept as ([`HopTransport::Known`]).
const KNOWN_TRANSPORTS: [Transport; 6] = [
    Transport::Udp,
    Transport::Tcp,
    Transport::Tls,
    Transport::Sctp,
    Transport::Ws,
    Transport::Wss,
];

impl FirstHop {
    /// A next hop that says nothing: no address, no parameter, no name.
    pub(crate) const NONE: FirstHop = FirstHop {
        address: None,
        transport: HopTransport::None,
        named: false,
    };

    /// What `uri` says of where requests go.
    pub(crate) fn of(uri: &Uri) -> FirstHop {
        let sip = uri.as_sip();
        let transport = match sip.and_then(|u| u.transport()) {
            None => HopTransport::None,
            Some(t) => {
                let t = Transport::parse(t.as_bytes());
                KNOWN_TRANSPORTS
                    .iter()
                    .position(|k| *k == t)
                    .map_or(HopTransport::Other, |i| HopTransport::Known(i as u8))
            }
        };
        FirstHop {
            address: crate::locate::address_without_dns(uri),
            transport,
            named: sip.is_some_and(|u| matches!(u.host, Host::Domain(_))),
        }
    }

    /// Its `transport` parameter; `reread` reads one we do not know from the hop's text.
    pub(crate) fn transport(
        &self,
        reread: impl FnOnce() -> Option<Transport>,
    ) -> Option<Transport> {
        match self.transport {
            HopTransport::None => None,
            HopTransport::Known(i) => KNOWN_TRANSPORTS.get(usize::from(i)).cloned(),
            HopTransport::Other => reread(),
        }
    }
}

impl Routes {
    /// The route set `routes`, in the order requests visit it; none when empty.
    fn new(routes: impl IntoIterator<Item = NameAddr>) -> Option<Box<Routes>> {
        let mut text = String::new();
        let mut ends = Vec::new();
        let mut strict = false;
        let mut first = None;
        for r in routes {
            if ends.is_empty() {
                strict = !r.uri.as_sip().is_some_and(|s| s.lr());
                first = Some(FirstHop::of(&r.uri));
            }
            r.write_into(&mut text);
            ends.push(text.len() as u32);
        }
        let first = first?;
        Some(Box::new(Routes {
            text: Bytes::from(text),
            ends: ends.into_boxed_slice(),
            strict,
            first,
        }))
    }

    /// Each value, as a slice of the buffer.
    fn values(&self) -> impl Iterator<Item = Bytes> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| self.text.slice(a as usize..b as usize))
    }

    /// The first value, parsed.
    fn first(&self) -> Result<NameAddr, ParseError> {
        let end = self.ends.first().copied().unwrap_or(0) as usize;
        NameAddr::parse(&self.text[..end])
    }
}

/// A connection to a peer, as the transports key it: the transport and the peer's address
/// (RFC 5626 §3 "flow", RFC 3261 §18 connection reuse).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    /// TCP, TLS, WS or WSS.
    pub transport: Transport,
    /// The peer's end of the connection.
    pub remote: SocketAddr,
}

/// Whether a peer's Contact can only be reached over the connection it came in on: a
/// WebSocket client (it accepts no connection, and its Contact host is often made up under
/// `.invalid`, RFC 7118 §5 and Appendix B) or an RFC 5626 outbound Contact (`;ob`).
pub fn reached_only_over_flow(target: &Uri) -> bool {
    let Some(sip) = target.as_sip() else {
        return false;
    };
    let invalid = match &sip.host {
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').as_bytes();
            d.len() >= 8 && d[d.len() - 8..].eq_ignore_ascii_case(b".invalid")
        }
        _ => false,
    };
    invalid
        || sip.params.get("ob").is_some()
        || sip
            .transport()
            .is_some_and(|t| t.eq_ignore_ascii_case("ws") || t.eq_ignore_ascii_case("wss"))
}

fn contact_uri(contacts: Vec<Contact>) -> Result<Uri, DialogError> {
    // the first address, moved out of the values parsed for us
    contacts
        .into_iter()
        .find_map(|c| match c {
            Contact::Addr(a) => Some(a.uri),
            Contact::Star => None,
        })
        .ok_or(DialogError::MissingContact)
}

/// Whether the Request-URI is a `sips` URI (RFC 3261 §12.1.1), parsing it only when it
/// starts as one: a `sip:` URI never is, and most dialogs need nothing else from it.
fn is_sips(request: &Request) -> bool {
    let b = request.uri_bytes();
    b.len() > 5 && b[..5].eq_ignore_ascii_case(b"sips:") && request.uri().scheme() == "sips"
}

fn without_tag(mut a: NameAddr) -> NameAddr {
    a.params.remove("tag");
    a
}

impl Dialog {
    /// The UAC side, from our request and a response with a To tag (RFC 3261 §12.1.2).
    pub fn uac(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        Dialog::uac_with(request, response, None)
    }

    /// [`Dialog::uac`] with our address when the caller has it already (what the request's
    /// From parses to), else parsed from the request.
    pub(crate) fn uac_with(
        request: &Request,
        response: &Response,
        local_uri: Option<NameAddr>,
    ) -> Result<Dialog, DialogError> {
        let remote_tag = response.to_tag().ok_or(DialogError::MissingTag)?.to_owned();
        let local_tag = request
            .from_tag()
            .ok_or(DialogError::MissingTag)?
            .to_owned();
        let route_set = Routes::new(
            response
                .typed_all::<RecordRoute>()?
                .into_iter()
                .rev()
                .map(|r| r.0),
        );
        let remote_target = contact_uri(response.contacts()?)?;
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id().into(),
                local_tag: local_tag.into(),
                remote_tag: remote_tag.into(),
            },
            state: if response.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq: Some(request.cseq().seq),
            remote_seq: None,
            addresses: Addresses::new(
                &match local_uri {
                    Some(a) => {
                        debug_assert_eq!(Ok(&a), request.owned_from().as_ref());
                        a
                    }
                    None => request.owned_from()?,
                },
                &without_tag(response.owned_to_untagged()?),
                &remote_target,
            ),
            routes: route_set,
            secure: is_sips(request),
            caller: true,
            flow: None,
        })
    }

    /// The UAS side, from the request and the tag we put in our To (RFC 3261 §12.1.1).
    pub fn uas(
        request: &Request,
        local_tag: &str,
        state: DialogState,
    ) -> Result<Dialog, DialogError> {
        Dialog::uas_with(request, local_tag, state, None)
    }

    /// [`Dialog::uas`] with what the caller parsed of the request already.
    pub(crate) fn uas_with(
        request: &Request,
        local_tag: &str,
        state: DialogState,
        parts: Option<UasParts>,
    ) -> Result<Dialog, DialogError> {
        #[cfg(debug_assertions)]
        if let Some(p) = &parts {
            assert_eq!(Ok(&p.from), request.owned_from_untagged().as_ref());
            assert_eq!(Ok(&p.to), request.owned_to().as_ref());
            assert_eq!(Ok(&p.contacts), request.contacts().as_ref());
        }
        let (from, to, contacts) = match parts {
            Some(p) => (Some(p.from), Some(p.to), Some(p.contacts)),
            None => (None, None, None),
        };
        // an RFC 2543 peer may send no From tag: the empty tag then names it
        let remote_tag = request.from_tag().unwrap_or_default().to_owned();
        let route_set = Routes::new(request.typed_all::<RecordRoute>()?.into_iter().map(|r| r.0));
        // (what was not parsed already is parsed here, in the order errors are told)
        let contacts = match contacts {
            Some(c) => c,
            None => request.contacts()?,
        };
        let remote_target = contact_uri(contacts)?;
        let mut local_uri = match to {
            Some(t) => t,
            None => request.owned_to()?,
        };
        local_uri.set_tag(local_tag);
        let remote_uri = match from {
            Some(f) => f,
            None => request.owned_from_untagged()?,
        };
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id().into(),
                local_tag: local_tag.into(),
                remote_tag: remote_tag.into(),
            },
            state,
            local_seq: None,
            remote_seq: Some(request.cseq().seq),
            addresses: Addresses::new(&local_uri, &without_tag(remote_uri), &remote_target),
            routes: route_set,
            secure: is_sips(request),
            caller: false,
            flow: None,
        })
    }

    /// The subscriber's side, from our SUBSCRIBE (or REFER) and a NOTIFY that arrived
    /// before its 2xx (RFC 6665 §4.1.2.4): the NOTIFY plays the response's part, but its
    /// Record-Route is taken as a request's (in order) and its CSeq is the peer's.
    pub fn from_notify(subscribe: &Request, notify: &Request) -> Result<Dialog, DialogError> {
        let local_tag = subscribe
            .from_tag()
            .ok_or(DialogError::MissingTag)?
            .to_owned();
        let remote_tag = notify.from_tag().ok_or(DialogError::MissingTag)?.to_owned();
        let route_set = Routes::new(notify.typed_all::<RecordRoute>()?.into_iter().map(|r| r.0));
        let remote_target = contact_uri(notify.contacts()?)?;
        Ok(Dialog {
            id: DialogId {
                call_id: subscribe.call_id().into(),
                local_tag: local_tag.into(),
                remote_tag: remote_tag.into(),
            },
            state: DialogState::Confirmed,
            local_seq: Some(subscribe.cseq().seq),
            remote_seq: None,
            addresses: Addresses::new(
                &subscribe.owned_from()?,
                &without_tag(notify.owned_from_untagged()?),
                &remote_target,
            ),
            routes: route_set,
            secure: is_sips(subscribe),
            caller: true,
            flow: None,
        })
    }

    /// The dialog id an incoming request belongs to (its To tag is ours).
    pub fn id_of_request(req: &Request) -> Option<DialogId> {
        Dialog::ref_of_request(req).map(|r| r.to_owned_id())
    }

    /// The same, borrowed from the request: no copies.
    pub fn ref_of_request(req: &Request) -> Option<DialogIdRef<'_>> {
        Some(DialogIdRef {
            local_tag: req.to_tag()?,
            call_id: req.call_id(),
            remote_tag: req.from_tag().unwrap_or_default(),
        })
    }

    /// The dialog id a response to our request belongs to.
    pub fn id_of_response(resp: &Response) -> Option<DialogId> {
        Dialog::ref_of_response(resp).map(|r| r.to_owned_id())
    }

    /// The same, borrowed from the response: no copies.
    pub fn ref_of_response(resp: &Response) -> Option<DialogIdRef<'_>> {
        Some(DialogIdRef {
            local_tag: resp.from_tag()?,
            remote_tag: resp.to_tag()?,
            call_id: resp.call_id(),
        })
    }

    /// Checks and records the CSeq of a request from the peer (RFC 3261 §12.2.2): a lower one
    /// gets 500; a target refresh (INVITE, UPDATE) with a Contact moves the remote target.
    pub fn on_request(&mut self, req: &Request) -> Result<(), DialogError> {
        let seq = req.cseq().seq;
        if *req.method() != Method::Ack && *req.method() != Method::Cancel {
            if self.remote_seq.is_some_and(|r| seq <= r) {
                return Err(DialogError::CSeqTooLow);
            }
            self.remote_seq = Some(seq);
        }
        // target refresh requests (RFC 3261 §12.2.2, RFC 6665 §4.1.2.4 and §4.2.1)
        if matches!(
            req.method(),
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify
        ) {
            if let Ok(uri) = req
                .contacts()
                .map_err(DialogError::from)
                .and_then(contact_uri)
            {
                self.addresses.retarget(&uri);
            }
        }
        Ok(())
    }

    /// Records a response to our request in this dialog: a 2xx confirms the dialog, and a 2xx
    /// or 1xx to a target refresh moves the remote target (RFC 3261 §12.2.1.2).
    pub fn on_response(&mut self, resp: &Response) {
        if resp.is_success() {
            // the 2xx that confirms an early dialog of our INVITE sets its route set anew
            // (RFC 3261 §13.2.2.4); a confirmed dialog's route set never changes (§12.2.1.2)
            if self.state == DialogState::Early
                && self.caller
                && resp.cseq().method == Method::Invite
            {
                if let Ok(rr) = resp.typed_all::<RecordRoute>() {
                    self.routes = Routes::new(rr.into_iter().rev().map(|r| r.0));
                }
            }
            self.state = DialogState::Confirmed;
        }
        let refresh = match resp.cseq().method {
            Method::Invite | Method::Update => resp.status() > 100,
            Method::Subscribe => resp.is_success(),
            _ => false,
        };
        if refresh {
            // the target we have again (the 2xx after a 1xx of the same peer): it would parse
            // to what we hold, so nothing changes; compared as written, not parsed
            if resp
                .first_contact_uri()
                .is_some_and(|u| u == self.addresses.target().as_bytes())
            {
                debug_assert!(resp
                    .contacts()
                    .map_err(DialogError::from)
                    .and_then(contact_uri)
                    .map_or(true, |u| Ok(u) == self.remote_target()));
                return;
            }
            if let Ok(uri) = resp
                .contacts()
                .map_err(DialogError::from)
                .and_then(contact_uri)
            {
                self.addresses.retarget(&uri);
            }
        }
    }

    /// Our address with our tag: the From of our requests.
    pub fn local_uri(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.addresses.local().as_bytes())
    }

    /// The peer's address, without its tag (that is [`DialogId::remote_tag`]): the To of our
    /// requests.
    pub fn remote_uri(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.addresses.remote().as_bytes())
    }

    /// Where our requests go: the peer's Contact, as the last target refresh left it.
    ///
    /// The three addresses are kept as their requests write them (a held call keeps little
    /// but its dialog), so each is parsed when asked; it parses, as every address written
    /// from a parsed one does (the message fuzz target checks that round trip).
    pub fn remote_target(&self) -> Result<Uri, ParseError> {
        Uri::parse(self.addresses.target().as_bytes())
    }

    /// The remote target as its requests' Request-URI writes it.
    pub fn remote_target_text(&self) -> &str {
        self.addresses.target()
    }

    /// Whether our requests must go over [`Dialog::flow`] rather than to the next hop: no
    /// route set (the peer is the next hop) and a peer that is [`reached_only_over_flow`].
    pub fn uses_flow(&self) -> bool {
        self.flow.is_some()
            && self.routes.is_none()
            && self
                .remote_target()
                .is_ok_and(|t| reached_only_over_flow(&t))
    }

    /// The URI the next hop is taken from: the first route, or the remote target.
    pub fn next_hop(&self) -> Result<Cow<'_, Uri>, ParseError> {
        match &self.routes {
            Some(r) => r.first().map(|r| Cow::Owned(r.uri)),
            None => self.remote_target().map(Cow::Owned),
        }
    }

    /// Where the first route sends requests, as read when the route set was made; `None`
    /// without a route set.
    pub(crate) fn first_hop(&self) -> Option<&FirstHop> {
        self.routes.as_deref().map(|r| &r.first)
    }

    /// The route set (Record-Route, in the order our requests visit it), parsed from the
    /// text its requests write; empty without proxies.
    pub fn route_set(&self) -> Vec<NameAddr> {
        self.routes.as_deref().map_or_else(Vec::new, |r| {
            r.values()
                .filter_map(|v| NameAddr::parse(&v).ok())
                .collect()
        })
    }

    /// Whether the dialog has a route set (a proxy record-routed it).
    pub fn has_route_set(&self) -> bool {
        self.routes.is_some()
    }

    /// Builds the next in-dialog request (RFC 3261 §12.2.1.1), taking a new local CSeq.
    pub fn request(
        &mut self,
        method: Method,
        via: Via,
        headers: Vec<Header>,
    ) -> Result<Request, DialogError> {
        self.request_via(method, ViaValue::Typed(via), headers)
    }

    /// [`Dialog::request`] with the Via as text or typed.
    pub(crate) fn request_via(
        &mut self,
        method: Method,
        via: ViaValue<'_>,
        headers: Vec<Header>,
    ) -> Result<Request, DialogError> {
        let seq = self.local_seq.map_or(1, |s| s.wrapping_add(1)).max(1);
        self.local_seq = Some(seq);
        self.build(method, seq, via, headers)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (RFC 3261 §13.2.2.4).
    pub fn ack(&self, invite_seq: u32, via: Via) -> Result<Request, DialogError> {
        self.build(Method::Ack, invite_seq, ViaValue::Typed(via), Vec::new())
    }

    /// [`Dialog::ack`] with the Via as text or typed.
    pub(crate) fn ack_via(
        &self,
        invite_seq: u32,
        via: ViaValue<'_>,
    ) -> Result<Request, DialogError> {
        self.build(Method::Ack, invite_seq, via, Vec::new())
    }

    fn build(
        &self,
        method: Method,
        seq: u32,
        via: ViaValue<'_>,
        headers: Vec<Header>,
    ) -> Result<Request, DialogError> {
        // loose routing (the usual case) shares every value; a strict router is rewritten
        let mut b = match self.routes.as_deref() {
            Some(r) if r.strict => {
                // strict router: it becomes the Request-URI, the remote target the last Route
                let mut first = r.first()?.uri;
                if let Some(s) = first.as_sip_mut() {
                    s.headers.clear();
                }
                let mut b = RequestBuilder::new(method, first);
                for v in r.values().skip(1) {
                    b = b.header(Header::new(HeaderName::Route, v));
                }
                let target = NameAddr::new(self.remote_target()?);
                b.header(Header::new(HeaderName::Route, target.to_string()))
            }
            routes => {
                let mut b = RequestBuilder::new_text(method, self.addresses.target());
                for v in routes.into_iter().flat_map(Routes::values) {
                    b = b.header(Header::new(HeaderName::Route, v));
                }
                b
            }
        };
        b = match via {
            ViaValue::Typed(v) => b.via(v),
            ViaValue::Text(t) => b.via_text(t),
            ViaValue::Branch(template, branch) => b.via_branch(template, &branch),
        };
        b = b
            .from_text(self.addresses.local())
            .to_text_tagged(self.addresses.remote(), &self.id.remote_tag)
            .call_id(&self.id.call_id)
            .cseq(seq);
        for h in headers {
            b = b.header(h);
        }
        Ok(b.build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipua_message::Message;

    fn parse_req(s: &str) -> Request {
        match Message::parse(s.replace('\n', "\r\n").as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_borrowed_id_finds_its_dialog_in_tables_of_either_hasher() {
        let id = |c: &str, l: &str, r: &str| DialogId {
            call_id: c.into(),
            local_tag: l.into(),
            remote_tag: r.into(),
        };
        let mut std_table = std::collections::HashMap::new();
        let mut keyed: crate::hash::KeyedMap<DialogId, u32> = Default::default();
        // forks: one Call-ID and local tag, several remote tags
        for (n, r) in ["a", "b", "ab", ""].iter().enumerate() {
            std_table.insert(id("c1", "l1", r), n as u32);
            keyed.insert(id("c1", "l1", r), n as u32);
        }
        for (n, r) in ["a", "b", "ab", ""].iter().enumerate() {
            let look = DialogIdRef {
                call_id: "c1",
                local_tag: "l1",
                remote_tag: r,
            };
            assert_eq!(std_table.get(look.key()), Some(&(n as u32)));
            assert_eq!(keyed.get(look.key()), Some(&(n as u32)));
            assert_eq!(look.to_owned_id().as_ref(), look);
        }
        // the tags do not run into each other, and the Call-ID counts for equality
        for (c, l, r) in [("c1", "l1a", ""), ("c1", "l", "1a"), ("c2", "l1", "a")] {
            let look = DialogIdRef {
                call_id: c,
                local_tag: l,
                remote_tag: r,
            };
            assert_eq!(keyed.get(look.key()), None, "{c} {l} {r}");
            assert_eq!(std_table.get(look.key()), None, "{c} {l} {r}");
        }
    }

    #[test]
    fn a_request_names_its_dialog_borrowed_as_owned() {
        let req = parse_req(
            "BYE sip:a@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\n\
             From: <sip:b@h>;tag=theirs\nTo: <sip:a@h>;tag=ours\nCall-ID: k1\nCSeq: 2 BYE\n\
             Max-Forwards: 70\nContent-Length: 0\n\n",
        );
        let r = Dialog::ref_of_request(&req).unwrap();
        assert_eq!(
            (r.call_id, r.local_tag, r.remote_tag),
            ("k1", "ours", "theirs")
        );
        assert_eq!(Dialog::id_of_request(&req).unwrap().as_ref(), r);
    }

    fn invite() -> Request {
        parse_req(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\n\
             Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\n\
             Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n\
             To: Bob <sip:bob@biloxi.example.com>\n\
             Call-ID: 3848276298220188511@atlanta.example.com\nCSeq: 2 INVITE\n\
             Contact: <sip:alice@pc33.atlanta.example.com>\nContent-Length: 0\n\n",
        )
    }

    fn ok(req: &Request) -> Response {
        // a 2xx to an INVITE copies its Record-Route (RFC 3261 §12.1.1)
        let mut r = Response::from_request(req, 200);
        r.set_to_tag("314159").unwrap();
        r.push_header(Header::new(HeaderName::Contact, "<sip:bob@192.0.2.4>"))
            .unwrap();
        r
    }

    fn via() -> Via {
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnew"
            .parse()
            .unwrap()
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_targets_the_contact() {
        let inv = invite();
        let mut d = Dialog::uac(&inv, &ok(&inv)).unwrap();
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(&*d.id.remote_tag, "314159");
        assert_eq!(d.route_set()[0].uri.to_string(), "sip:p1.example.com;lr");
        assert_eq!(d.remote_target_text(), "sip:bob@192.0.2.4");
        let bye = d.request(Method::Bye, via(), Vec::new()).unwrap();
        assert_eq!(bye.uri().to_string(), "sip:bob@192.0.2.4");
        assert_eq!(bye.cseq().seq, 3);
        assert_eq!(bye.to_tag(), Some("314159"));
        assert_eq!(bye.from_tag(), Some("9fxced76sl"));
        let routes: Vec<String> = bye
            .headers()
            .get_all(&HeaderName::Route)
            .map(|h| h.unfolded())
            .collect();
        assert_eq!(
            routes,
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        let ack = d.ack(2, via()).unwrap();
        assert_eq!((ack.cseq().seq, ack.method()), (2, &Method::Ack));
    }

    #[test]
    fn the_route_set_kept_written_reads_back_and_goes_out_as_it_came() {
        // display names, parameters on the URI and the name-addr, IPv6, a URI header
        let rr = "\"edge\" <sip:[2001:db8::1]:5070;lr;transport=tcp>;x=1, \
                  <sip:p1.example.com;lr;ftag=a%20b>, <sips:core.example.net;lr?h=v>";
        let with = |rr: &str| {
            parse_req(&format!(
                "INVITE sip:bob@biloxi.example.com SIP/2.0\n\
                 Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\n{rr}\
                 From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n\
                 To: Bob <sip:bob@biloxi.example.com>\n\
                 Call-ID: 3848276298220188511@atlanta.example.com\nCSeq: 2 INVITE\n\
                 Contact: <sip:alice@pc33.atlanta.example.com>\nContent-Length: 0\n\n"
            ))
        };
        let inv = with(&format!("Record-Route: {rr}\n"));
        let parsed: Vec<NameAddr> = inv
            .typed_all::<RecordRoute>()
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        let mut uas = Dialog::uas(&inv, "ourtag", DialogState::Confirmed).unwrap();
        assert!(uas.has_route_set());
        assert_eq!(uas.route_set(), parsed);
        assert_eq!(*uas.next_hop().unwrap(), parsed[0].uri);
        let bye = uas.request(Method::Bye, via(), Vec::new()).unwrap();
        let routes: Vec<String> = bye
            .headers()
            .get_all(&HeaderName::Route)
            .map(|h| h.unfolded())
            .collect();
        let written: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(routes, written);
        // the caller's side: reversed, and none without Record-Route
        let uac = Dialog::uac(&inv, &ok(&inv)).unwrap();
        let reversed: Vec<NameAddr> = parsed.iter().rev().cloned().collect();
        assert_eq!(uac.route_set(), reversed);
        let plain = with("");
        let direct = Dialog::uac(&plain, &ok(&plain)).unwrap();
        assert!(!direct.has_route_set() && direct.route_set().is_empty());
        assert_eq!(direct.next_hop().unwrap().to_string(), "sip:bob@192.0.2.4");
    }

    #[test]
    fn uas_dialog_keeps_record_route_order_and_checks_cseq() {
        let inv = invite();
        let mut d = Dialog::uas(&inv, "314159", DialogState::Confirmed).unwrap();
        assert_eq!(d.route_set()[0].uri.to_string(), "sip:p2.example.com;lr");
        assert_eq!(d.remote_target_text(), "sip:alice@pc33.atlanta.example.com");
        assert_eq!(d.local_seq, None);
        let bye = d.request(Method::Bye, via(), Vec::new()).unwrap();
        assert_eq!(bye.cseq().seq, 1);
        assert_eq!(bye.from_tag(), Some("314159"));
        assert_eq!(bye.to_tag(), Some("9fxced76sl"));
        // a request from the peer with an old CSeq is refused (500)
        let old = parse_req(
            "BYE sip:bob@192.0.2.4 SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK9\n\
             From: <sip:alice@atlanta.example.com>;tag=9fxced76sl\nTo: <sip:bob@biloxi.example.com>;tag=314159\n\
             Call-ID: 3848276298220188511@atlanta.example.com\nCSeq: 2 BYE\nContent-Length: 0\n\n",
        );
        assert_eq!(Dialog::id_of_request(&old).unwrap(), d.id);
        assert_eq!(d.on_request(&old), Err(DialogError::CSeqTooLow));
    }

    #[test]
    fn the_addresses_kept_written_read_back_and_follow_a_target_refresh() {
        let inv = invite();
        let mut d = Dialog::uas(&inv, "314159", DialogState::Confirmed).unwrap();
        let from = |r: &Request| r.headers().get(&HeaderName::From).unwrap().unfolded();
        let to = |r: &Request| r.headers().get(&HeaderName::To).unwrap().unfolded();
        // what the accessors parse is what the INVITE said, our tag added to ours and the
        // peer's left off its own
        assert_eq!(
            d.local_uri().unwrap(),
            "Bob <sip:bob@biloxi.example.com>;tag=314159"
                .parse()
                .unwrap()
        );
        assert_eq!(
            d.remote_uri().unwrap(),
            "Alice <sip:alice@atlanta.example.com>".parse().unwrap()
        );
        let bye = d.request(Method::Bye, via(), Vec::new()).unwrap();
        assert_eq!(
            from(&bye),
            "\"Bob\" <sip:bob@biloxi.example.com>;tag=314159"
        );
        assert_eq!(
            to(&bye),
            "\"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl"
        );
        // a re-INVITE from the peer with a new Contact moves the target, nothing else
        let reinvite = parse_req(
            "INVITE sip:bob@192.0.2.4 SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK7\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\n\
             To: Bob <sip:bob@biloxi.example.com>;tag=314159\n\
             Call-ID: 3848276298220188511@atlanta.example.com\nCSeq: 3 INVITE\n\
             Contact: <sip:alice@192.0.2.9:5070;transport=tcp>\nContent-Length: 0\n\n",
        );
        d.on_request(&reinvite).unwrap();
        assert_eq!(
            d.remote_target().unwrap(),
            "sip:alice@192.0.2.9:5070;transport=tcp".parse().unwrap()
        );
        assert_eq!(
            d.next_hop().unwrap().to_string(),
            "sip:p2.example.com;lr",
            "a route set still comes first"
        );
        let again = d.request(Method::Bye, via(), Vec::new()).unwrap();
        assert_eq!(
            again.uri().to_string(),
            "sip:alice@192.0.2.9:5070;transport=tcp"
        );
        assert_eq!((from(&again), to(&again)), (from(&bye), to(&bye)));
    }

    #[test]
    fn strict_router_becomes_the_request_uri() {
        let inv = invite();
        let mut resp = Response::from_request(&inv, 200);
        resp.set_to_tag("1").unwrap();
        resp.remove_header(&HeaderName::RecordRoute).unwrap();
        resp.push_header(Header::new(
            HeaderName::RecordRoute,
            "<sip:strict.example.com>",
        ))
        .unwrap();
        resp.push_header(Header::new(HeaderName::Contact, "<sip:bob@192.0.2.4>"))
            .unwrap();
        let mut d = Dialog::uac(&inv, &resp).unwrap();
        let bye = d.request(Method::Bye, via(), Vec::new()).unwrap();
        assert_eq!(bye.uri().to_string(), "sip:strict.example.com");
        let routes: Vec<String> = bye
            .headers()
            .get_all(&HeaderName::Route)
            .map(|h| h.unfolded())
            .collect();
        assert_eq!(routes, vec!["<sip:bob@192.0.2.4>"]);
    }

    #[test]
    fn missing_tag_or_contact_is_an_error() {
        let inv = invite();
        let untagged = Response::from_request(&inv, 180);
        assert_eq!(Dialog::uac(&inv, &untagged), Err(DialogError::MissingTag));
        let mut no_contact = Response::from_request(&inv, 200);
        no_contact.set_to_tag("1").unwrap();
        assert_eq!(
            Dialog::uac(&inv, &no_contact),
            Err(DialogError::MissingContact)
        );
    }
}
