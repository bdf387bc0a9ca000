//! `Shared`: the state of a running agent that the handle, the driver's `Incoming` dispatch
//! and every task of the agent hold (commands to the driver, addresses, the options, key and
//! Call-ID sequences, what a graceful stop does first), and that dispatch itself.

use super::*;

/// State shared by the user agent handle, the driver and the session tasks.
pub(crate) struct Shared {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) options: UserAgentOptions,
    pub(crate) local: SocketAddr,
    /// Every listener's transport and bound address, the primary first.
    pub(crate) listeners: Vec<(Transport, SocketAddr)>,
    /// This agent's index among those sharing its socket, and their number.
    pub(crate) shard: Option<(usize, usize)>,
    /// `local` as text, made once (each session's id for its media handler starts with it).
    pub(crate) local_text: String,
    pub(crate) dns: DnsResolver,
    /// Our address towards each peer, for an agent on a wildcard address.
    pub(crate) routes: Arc<crate::transport::Routes>,
    pub(super) next_key: AtomicU64,
    pub(super) invitations: Mutex<Option<mpsc::Sender<Invitation>>>,
    /// `Allow` with the methods the API handles, made once.
    pub(super) allow_line: Header,
    /// `Server` with the user agent string, made once (final responses carry it).
    pub(crate) server_line: Header,
    /// What a graceful stop does first: unregister the registerers, unpublish the
    /// publishers (SIP.js's order), each while its handle lives.
    pub(super) stop_hooks: Mutex<Vec<StopHook>>,
}

/// Work for a graceful stop on behalf of an object that may be gone by then.
pub(crate) struct StopHook {
    pub(super) alive: Box<dyn Fn() -> bool + Send + Sync>,
    pub(super) run: Box<dyn Fn() -> Option<crate::BoxFuture<'static, ()>> + Send + Sync>,
}

impl Shared {
    /// The public address set in the options, if any.
    pub(crate) fn public_ip(&self) -> Option<IpAddr> {
        self.options.public_address
    }

    /// Whether what we advertise depends on the peer: a wildcard address and no public one.
    pub(crate) fn routes_matter(&self) -> bool {
        self.public_ip().is_none() && self.local.ip().is_unspecified()
    }

    /// The address that our messages and media descriptions name towards `peer`: the
    /// public address if set, else the one we listen on, else (on a wildcard address) the
    /// one the kernel routes to `peer` from.
    pub(crate) fn advertised_ip(&self, peer: Option<SocketAddr>) -> IpAddr {
        if let Some(ip) = self.public_ip() {
            return ip;
        }
        let ip = self.local.ip();
        match peer {
            Some(p) if ip.is_unspecified() => self.routes.source_for(p.ip()),
            _ => ip,
        }
    }

    /// Whether requests to `target` leave over TLS or secure WebSocket: the first hop (the
    /// outbound proxy, else the target) is a `sips:` URI or names `transport=tls`/`wss`, or
    /// names no transport and our primary listener is TLS or WSS. SDES keys (RFC 4568 §8.3)
    /// go only where this holds.
    pub(crate) fn secure_towards(&self, target: &Uri) -> bool {
        let hop = match &self.options.outbound_proxy {
            Some(p) => p.uri(),
            None => target,
        };
        if hop.scheme() == "sips" {
            return true;
        }
        match hop.as_sip().and_then(|s| s.transport()) {
            Some(t) => t.eq_ignore_ascii_case("tls") || t.eq_ignore_ascii_case("wss"),
            None => matches!(
                self.listeners.first(),
                Some((Transport::Tls | Transport::Wss, _))
            ),
        }
    }

    /// Runs `f(target)` when the agent stops gracefully, if `target` still lives then.
    pub(crate) fn on_stop<T: Send + Sync + 'static>(
        &self,
        target: &Arc<T>,
        f: fn(Arc<T>) -> crate::BoxFuture<'static, ()>,
    ) {
        let (a, b) = (Arc::downgrade(target), Arc::downgrade(target));
        let mut hooks = self.stop_hooks.lock().unwrap_or_else(|e| e.into_inner());
        // forget the hooks of objects gone since, so the list stays as long as what lives
        hooks.retain(|h| (h.alive)());
        hooks.push(StopHook {
            alive: Box::new(move || a.strong_count() > 0),
            run: Box::new(move || b.upgrade().map(f)),
        });
    }

    pub(crate) fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Our address of record: `uri` of the options, else `sip:user@local-ip`.
    pub(crate) fn aor(&self) -> Uri {
        self.options.uri.clone().unwrap_or_else(|| {
            format!("sip:{}@{}", self.options.user, Host::from(self.local.ip()))
                .parse()
                .unwrap_or_else(|_| {
                    Uri::Sip(sipua_message::SipUri::new(Host::from(self.local.ip())))
                })
        })
    }

    /// A value no other call of this agent (or agent) is likely to get, for Call-IDs.
    pub(crate) fn random(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.next_key());
        h.write_u64(clock_seed(self.local));
        h.finish()
    }

    /// A new Call-ID ending in `suffix`, for the requests this layer starts dialogs or
    /// registrations with: on an agent that shares its socket with others, one that hashes to
    /// this agent, so that the answers come back to it ([`crate::transport::udp_shards`]).
    pub(crate) fn new_call_id(&self, suffix: &str) -> String {
        loop {
            let id = format!("{:016x}{suffix}", self.random());
            match self.shard {
                Some((index, count))
                    if sipua_proto::hash::shard_of(id.as_bytes(), count) != index => {}
                _ => return id,
            }
        }
    }

    /// `Allow` with the methods the API handles.
    pub(crate) fn allow_header(&self) -> Header {
        self.allow_line.clone()
    }

    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(crate::tasks::Reply<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Hands a new invitation to the delegate or the queue; refuses it when neither takes it.
    pub(crate) fn offer_invitation(&self, invitation: Invitation) {
        if let Some(d) = &self.options.delegate {
            d.on_invite(invitation);
            return;
        }
        let queue = self.invitations.lock().unwrap_or_else(|e| e.into_inner());
        let refused = match queue.as_ref() {
            Some(q) => match q.try_send(invitation) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i)) => {
                    Some(i)
                }
            },
            None => Some(invitation),
        };
        if let Some(inv) = refused {
            inv.reject_nowait(486);
        }
    }

    /// Where to send a request for `target`: the outbound proxy, or the first target of
    /// RFC 3263 server location, with the transport when the URI or DNS chose it.
    pub(crate) async fn resolve(
        &self,
        target: &Uri,
    ) -> Result<(SocketAddr, Option<Transport>), Error> {
        let target = match &self.options.outbound_proxy {
            Some(p) => p.uri(),
            None => target,
        };
        let located = self.dns.locate(target).await?;
        let (transport, addr) = located.targets.into_iter().next().ok_or_else(|| {
            Error::Dns(crate::DnsError::new(
                crate::DnsErrorKind::NotFound,
                target.to_string(),
            ))
        })?;
        Ok((addr, located.transport_chosen.then_some(transport)))
    }
}

/// What the driver hands up, dispatched here so that the driver names no API object: a new
/// INVITE becomes a session (and an [`Invitation`]), a SUBSCRIBE an incoming subscription, a
/// MESSAGE or NOTIFY an [`IncomingRequest`]; a lost connection goes to the delegate.
impl Incoming for Shared {
    fn next_key(&self) -> SessionKey {
        Shared::next_key(self)
    }

    fn allow_header(&self) -> Header {
        Shared::allow_header(self)
    }

    fn invite(
        self: Arc<Self>,
        key: SessionKey,
        id: TransactionId,
        request: Request,
        inputs: MailboxReceiver<SessionInput>,
        replaces: Option<SessionKey>,
        source: Option<SocketAddr>,
    ) {
        crate::session::spawn_invitation(self, key, id, request, inputs, replaces, source);
    }

    fn request(self: Arc<Self>, id: TransactionId, request: Request) {
        incoming_request(self, id, request);
    }

    fn subscribe(self: Arc<Self>, id: TransactionId, request: Request) {
        crate::notifier::incoming_subscribe(self, id, request);
    }

    fn disconnected(&self, error: Error) {
        if let Some(d) = &self.options.delegate {
            d.on_disconnect(Some(error));
        }
    }
}

/// An out-of-dialog MESSAGE or NOTIFY, to the delegate or its default.
fn incoming_request(shared: Arc<Shared>, id: TransactionId, request: Request) {
    let method = request.method().clone();
    let r = IncomingRequest::new(shared.clone(), id, request, 200);
    match (&shared.options.delegate, method) {
        (Some(d), Method::Message) => d.on_message(r),
        (Some(d), _) => d.on_notify(r),
        (None, Method::Message) => r.accept(),
        (None, _) => r.reject(481),
    }
}
