//! `UserAgent`: the entry point of the API, as in SIP.js. It owns the driver task (transport,
//! timers, the sans-IO core) and hands incoming INVITEs, MESSAGEs and NOTIFYs to its
//! [`UserAgentDelegate`] or, without one, to [`UserAgent::next_invitation`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipua_message::{Header, HeaderName, Host, Method, Request, Response, Transport, Uri};
use sipua_proto::endpoint::TransactionId;
use sipua_proto::ua::{
    Capabilities, Credentials, DigestServerConfig, OutOfDialog, UaConfig, UaCore,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::body::body_of;
use crate::commands::{Command, SessionInput, SessionKey, Stats};
use crate::dns::DnsResolver;
use crate::driver::{self, Incoming};
use crate::error::Error;
use crate::mailbox::MailboxReceiver;
use crate::sdh::{FixedSdpFactory, SessionDescriptionHandlerFactory};
use crate::session::{Invitation, RequestOptions};
use crate::transport::{Listen, Net, StreamLimits, TlsOptions};

const COMMAND_QUEUE: usize = 1024;
/// Invitations waiting in [`UserAgent::next_invitation`] beyond this are refused with 486
/// (a burst of INVITEs is read in one go before the application runs, so not too few).
const INVITATION_QUEUE: usize = 4096;

/// Whether the user agent runs (SIP.js `UserAgentState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAgentState {
    /// Not listening (before `start`, after `stop`).
    Stopped,
    /// Listening and sending.
    Started,
}

/// What the application wants told about requests outside sessions (SIP.js
/// `UserAgentDelegate`). Called on the user agent's tasks: return quickly, and spawn for
/// anything long. Every method has a default.
pub trait UserAgentDelegate: Send + Sync {
    /// A new call. Answer it with [`Invitation::accept`], [`Invitation::progress`] or
    /// [`Invitation::reject`]; dropping every handle of an unanswered invitation rejects it
    /// (480). Without a delegate, invitations queue for [`UserAgent::next_invitation`].
    fn on_invite(&self, invitation: Invitation) {
        drop(invitation);
    }
    /// An out-of-dialog MESSAGE (RFC 3428). The default accepts it (200).
    fn on_message(&self, message: IncomingRequest) {
        message.accept();
    }
    /// An out-of-dialog NOTIFY. The default refuses it: no subscription (481).
    fn on_notify(&self, notification: IncomingRequest) {
        notification.reject(481);
    }
    /// A SUBSCRIBE outside any dialog (RFC 6665 §4.2): accept it to get a
    /// [`crate::Notifier`] that sends the resource's state. The default refuses it with 489
    /// (no event package served).
    fn on_subscribe(&self, subscription: crate::IncomingSubscription) {
        subscription.reject(489);
    }
    /// The transport is up (after `start`).
    fn on_connect(&self) {}
    /// The transport went down: `None` after `stop`; an error when a connection we opened
    /// (to a registrar or proxy, over TCP, TLS, WS or WSS) was closed by the peer, failed,
    /// or stopped answering keep-alives. The next request opens a new connection; the
    /// application re-registers and refreshes its calls over it ([`crate::SessionManager`]
    /// does both).
    fn on_disconnect(&self, _error: Option<Error>) {}
}

/// How a user agent is set up (SIP.js `UserAgentOptions`); `Default` gives a UDP agent on an
/// ephemeral loopback port.
#[derive(Clone)]
pub struct UserAgentOptions {
    /// Where to listen; its address goes into Via and Contact. On a wildcard address
    /// (`0.0.0.0`, `::`) each message names instead the address the kernel routes to its
    /// peer from (and so does the SDP of the default media handlers).
    pub listen: Listen,
    /// More listeners, one per transport besides `listen`'s (UDP and TLS and WSS at once,
    /// say), on the same IP address: a message sent over one of their transports names
    /// that listener's port and transport in Via and Contact, and a response names the
    /// listener its request came in on. Empty by default.
    pub also_listen: Vec<Listen>,
    /// The address to put in Via, Contact, From and the SDP instead of the one we listen
    /// on or route from: a NAT's public address, or a container's host address. The port
    /// stays the one we listen on.
    pub public_address: Option<IpAddr>,
    /// The user part of our Contact (and of our address of record when `uri` is unset).
    pub user: String,
    /// Our address of record, put in From (SIP.js `uri`); `None` is `sip:user@local-ip`.
    pub uri: Option<Uri>,
    /// The display name in From (SIP.js `displayName`).
    pub display_name: Option<String>,
    /// Makes the media handler of each session.
    pub session_description_handler_factory: Arc<dyn SessionDescriptionHandlerFactory>,
    /// Told about incoming requests; see [`UserAgentDelegate`].
    pub delegate: Option<Arc<dyn UserAgentDelegate>>,
    /// An unanswered invitation is rejected with 480 after this long (SIP.js
    /// `noAnswerTimeout`, 60 s).
    pub no_answer_timeout: Duration,
    /// Sent as `User-Agent` on requests and `Server` on responses.
    pub user_agent_string: String,
    /// Answers digest challenges (401/407) with these credentials.
    pub credentials: Option<Credentials>,
    /// Asks callers for digest credentials (401) before a request outside a dialog reaches
    /// the delegate or `next_invitation()` (OPTIONS, ACK and CANCEL excepted): nonces that
    /// expire and are used once per count, failures limited per address (403 past them).
    pub authenticate: Option<DigestServerConfig>,
    /// Sends every request outside a dialog through this proxy instead of the Request-URI's
    /// host (SIP.js `transportOptions.server`): `"wss://edge.example.com/ws".parse()?`,
    /// `"sips:proxy.example.com".parse()?`, or `Some(addr.into())` for an address.
    pub outbound_proxy: Option<crate::transport::OutboundProxy>,
    /// Session timers (RFC 4028) for calls: offered by our INVITEs, granted to callers, and
    /// refreshed or enforced; `None` turns them off.
    pub session_timers: Option<crate::SessionTimerOptions>,
    /// DNS servers for RFC 3263 server location (NAPTR, SRV, A/AAAA); `None` uses the
    /// system's configuration.
    pub dns_servers: Option<Vec<SocketAddr>>,
    /// Answers requests to any user (the default, as SIP.js does); `false` answers 404 to
    /// requests outside a dialog whose Request-URI names another user than
    /// [`UserAgentOptions::user`].
    pub accept_any_user: bool,
    /// On `stop`, ends every session (BYE, CANCEL or 480) and waits for the answers.
    pub graceful_shutdown: bool,
    /// Overload control (RFC 3261 §21.5.4): past this many requests received and not yet
    /// answered, a new request outside a dialog is answered 503 with Retry-After at once,
    /// before a session is made for it; calls already accepted (their ACK, BYE, re-INVITE)
    /// and CANCELs are never refused. 0 (the default): no limit.
    pub max_pending_requests: usize,
    /// Past this many new INVITEs a second, the same 503. 0 (the default): no limit.
    pub max_invites_per_second: u32,
    /// The Retry-After (seconds) of those 503s and of a draining agent's (5).
    pub overload_retry_after: u32,
    /// Seeds tags, branches and Call-IDs; `None` takes one from the clock and address.
    pub seed: Option<u64>,
    /// A TCP connection with no traffic for this long is closed.
    pub connection_idle_timeout: Duration,
    /// Send CRLF keep-alive pings this often on TCP and TLS connections we open, and drop a
    /// connection whose pong does not come within 10 s (RFC 5626 §4.4.1); such connections
    /// are kept rather than closed when idle. `None`: no pings.
    pub keepalive_interval: Option<Duration>,
    /// Most open TCP connections; beyond it new ones are refused.
    pub max_connections: usize,
    /// Most connections accepted from one IP address, so that one peer cannot lock every
    /// other out (a NAT in front of many phones may need more).
    pub max_connections_per_address: usize,
    /// How long a message on a TCP or TLS connection may take to arrive once it has begun;
    /// a connection whose message takes longer is closed (one byte a second keeps no
    /// connection open).
    pub message_timeout: Duration,
    /// Most bytes of messages still arriving on TCP and TLS connections, summed
    /// over all of them (64 MiB): a connection whose partial message would pass it is closed,
    /// so many connections each holding most of a large message cannot take the memory.
    pub max_partial_bytes: usize,
    /// Binds the TCP, TLS, WS and WSS listeners with `SO_REUSEPORT`, so that agents on
    /// several threads can each listen on the same address and the kernel spreads new
    /// connections among them (`sipua serve --threads`): every message of a connection,
    /// and so every call over it, stays with the agent that accepted it. Every agent on the
    /// address must set it. Off by default (a second agent on the port is then an error).
    pub reuse_port: bool,
    /// Most live transactions; requests beyond it get 503 with Retry-After. Over UDP each
    /// call holds its transactions for 32 s after they end, so 500 000 covers about 7 000
    /// calls per second.
    pub max_transactions: usize,
    /// Certificates for TLS and WSS.
    pub tls: TlsOptions,
}

impl Default for UserAgentOptions {
    fn default() -> UserAgentOptions {
        UserAgentOptions {
            listen: Listen::Udp(SocketAddr::from(([127, 0, 0, 1], 0))),
            also_listen: Vec::new(),
            public_address: None,
            user: "sipua".into(),
            uri: None,
            display_name: None,
            session_description_handler_factory: Arc::new(FixedSdpFactory::default()),
            delegate: None,
            no_answer_timeout: Duration::from_secs(60),
            user_agent_string: concat!("sipua/", env!("CARGO_PKG_VERSION")).into(),
            credentials: None,
            authenticate: None,
            outbound_proxy: None,
            session_timers: Some(crate::SessionTimerOptions::default()),
            dns_servers: None,
            accept_any_user: true,
            graceful_shutdown: true,
            max_pending_requests: 0,
            max_invites_per_second: 0,
            overload_retry_after: 5,
            seed: None,
            connection_idle_timeout: Duration::from_secs(180),
            keepalive_interval: None,
            max_connections: 10_000,
            max_connections_per_address: 256,
            message_timeout: Duration::from_secs(20),
            max_partial_bytes: 64 << 20,
            reuse_port: false,
            max_transactions: 500_000,
            tls: TlsOptions::default(),
        }
    }
}

impl std::fmt::Debug for UserAgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgentOptions")
            .field("listen", &self.listen)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

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
    next_key: AtomicU64,
    invitations: Mutex<Option<mpsc::Sender<Invitation>>>,
    /// `Allow` with the methods the API handles, made once.
    allow_line: Header,
    /// `Server` with the user agent string, made once (final responses carry it).
    pub(crate) server_line: Header,
    /// What a graceful stop does first: unregister the registerers, unpublish the
    /// publishers (SIP.js's order), each while its handle lives.
    stop_hooks: Mutex<Vec<StopHook>>,
}

/// Work for a graceful stop on behalf of an object that may be gone by then.
pub(crate) struct StopHook {
    alive: Box<dyn Fn() -> bool + Send + Sync>,
    run: Box<dyn Fn() -> Option<crate::BoxFuture<'static, ()>> + Send + Sync>,
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

/// A SIP user agent (SIP.js `UserAgent`): create it with options, `start` it, make calls
/// with [`crate::Inviter`], take calls from the delegate or [`UserAgent::next_invitation`].
/// Cheap to clone; every clone is the same agent.
///
/// ```no_run
/// # async fn demo() -> Result<(), sipua::Error> {
/// use sipua::{Inviter, InviterOptions, UserAgent, UserAgentOptions};
/// let ua = UserAgent::new(UserAgentOptions::default());
/// ua.start().await?;
/// let inviter = Inviter::new(&ua, "sip:bob@127.0.0.1:5062".parse()?, InviterOptions::default())?;
/// inviter.invite(Default::default()).await?;
/// inviter.session().established().await?;
/// inviter.session().bye().await?;
/// ua.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UserAgent {
    inner: Arc<UaInner>,
}

struct UaInner {
    options: UserAgentOptions,
    state: watch::Sender<UserAgentState>,
    running: Mutex<Option<Running>>,
    invitations: tokio::sync::Mutex<Option<mpsc::Receiver<Invitation>>>,
}

struct Running {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl UserAgent {
    /// A stopped user agent with these options.
    pub fn new(options: UserAgentOptions) -> UserAgent {
        UserAgent {
            inner: Arc::new(UaInner {
                options,
                state: watch::channel(UserAgentState::Stopped).0,
                running: Mutex::new(None),
                invitations: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> &UserAgentOptions {
        &self.inner.options
    }

    /// The current state.
    pub fn state(&self) -> UserAgentState {
        *self.inner.state.borrow()
    }

    /// Follows state changes (SIP.js `stateChange`).
    pub fn state_change(&self) -> watch::Receiver<UserAgentState> {
        self.inner.state.subscribe()
    }

    /// The address the transport is bound to, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared().map(|s| s.local)
    }

    /// Every listener's transport and bound address, the primary (`listen`) first, then
    /// `also_listen`'s; `None` before `start`.
    pub fn listeners(&self) -> Option<Vec<(Transport, SocketAddr)>> {
        self.shared().map(|s| s.listeners.clone())
    }

    pub(crate) fn shared(&self) -> Option<Arc<Shared>> {
        let g = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|r| r.shared.clone())
    }

    /// Binds the transport and starts the driver. Starting a started agent does nothing.
    pub async fn start(&self) -> Result<(), Error> {
        if self.shared().is_some() {
            return Ok(());
        }
        let o = &self.inner.options;
        let limits = StreamLimits {
            idle: o.connection_idle_timeout,
            max_message: 65_535,
            max_connections: o.max_connections,
            connect_timeout: Duration::from_secs(10),
            keepalive: o.keepalive_interval,
            max_connections_per_address: o.max_connections_per_address,
            message_deadline: o.message_timeout,
            max_partial_bytes: o.max_partial_bytes,
            reuse_port: o.reuse_port,
        };
        let net = Net::bind(&o.listen, &o.also_listen, limits, &o.tls)
            .await
            .map_err(|e| Error::Listen {
                listen: std::iter::once(&o.listen)
                    .chain(&o.also_listen)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                source: e.into(),
            })?;
        let local = net.local_addr();
        // what the core names until the driver knows the peer (see UaCore::set_local_ip)
        let named = match o.public_address {
            Some(ip) => SocketAddr::new(ip, local.port()),
            None if local.ip().is_unspecified() => SocketAddr::new(
                if local.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                },
                local.port(),
            ),
            None => local,
        };
        let transport = net.transport();
        let shard = net.shard();
        // agents sharing a socket start at once: each its own sequence
        let seed = o.seed.unwrap_or_else(|| clock_seed(local))
            ^ shard.map_or(0, |(i, _)| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let aor = match (&o.uri, &o.display_name) {
            (None, None) => None,
            (uri, name) => {
                let uri = match uri {
                    Some(u) => u.clone(),
                    None => format!("sip:{}@{}", o.user, Host::from(named.ip()))
                        .parse()
                        .map_err(|e| Error::InvalidArgument(format!("user {}: {e}", o.user)))?,
                };
                let mut a = sipua_message::NameAddr::new(uri);
                a.display = name.clone();
                Some(a)
            }
        };
        let mut cfg = UaConfig {
            seed,
            aor,
            credentials: o.credentials.clone(),
            authenticate: o.authenticate.clone(),
            max_pending_requests: o.max_pending_requests,
            max_invites_per_second: o.max_invites_per_second,
            overload_retry_after: o.overload_retry_after,
            shard,
            ..UaConfig::new(named, transport, &o.user)
        };
        cfg.endpoint.seed = seed.rotate_left(17);
        // a TLS or WSS agent without a certificate listens on nothing: peers can reach it
        // only over the connections it opens, which its Contact says with `;ob` (RFC 5626
        // §4.3, as WebSocket clients do, RFC 7118 §5)
        cfg.outbound =
            matches!(o.listen, Listen::Tls(_) | Listen::Wss(_)) && o.tls.server.is_none();
        // an INVITE answered within 200 ms needs no 100 Trying (RFC 3261 §17.2.1): one
        // message less per call for agents that ring or answer at once
        cfg.endpoint.trying_delay = Duration::from_millis(200);
        // transactions linger 64·T1 after their final response over UDP (Timers J and L):
        // room for several thousand calls per second
        cfg.endpoint.max_transactions = o.max_transactions;
        // what the core accepts is what this API handles
        let defaults = Capabilities::default();
        let allow: Vec<Method> = defaults.allow.clone();
        cfg.capabilities = Capabilities {
            allow: allow.clone(),
            check_request_uri: !o.accept_any_user,
            ..defaults
        };
        let core = UaCore::new(cfg);
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (inv_tx, inv_rx) = mpsc::channel(INVITATION_QUEUE);
        let shared = Arc::new(Shared {
            commands,
            options: o.clone(),
            local,
            listeners: net.listeners().to_vec(),
            shard,
            local_text: local.to_string(),
            routes: Arc::default(),
            dns: match &o.dns_servers {
                Some(servers) => DnsResolver::with_servers(servers, seed),
                None => DnsResolver::system(seed),
            },
            next_key: AtomicU64::new(1),
            invitations: Mutex::new(Some(inv_tx)),
            server_line: Header::new(HeaderName::Server, o.user_agent_string.clone()),
            allow_line: {
                let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
                Header::new(HeaderName::Allow, list.join(", "))
            },
            stop_hooks: Mutex::new(Vec::new()),
        });
        *self.inner.invitations.lock().await = Some(inv_rx);
        // the driver's own copies: its routes only on a wildcard address with no public one
        let routes = shared.public_ip().is_none().then(|| shared.routes.clone());
        let up = Arc::downgrade(&shared);
        let proxy = shared.options.outbound_proxy.clone();
        let task = driver::spawn(core, net, up, routes, proxy, command_rx);
        *self.inner.running.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Running { shared, task });
        self.inner.state.send_replace(UserAgentState::Started);
        if let Some(d) = &o.delegate {
            d.on_connect();
        }
        Ok(())
    }

    /// Drains, then stops (for a rolling restart behind a dispatcher): from now on every new
    /// request outside a dialog, OPTIONS included, is answered 503 with Retry-After (so a
    /// dispatcher probing with OPTIONS takes this instance out at once, and new calls go
    /// elsewhere), while the calls already here go on; once none is left, or after `within`,
    /// [`UserAgent::stop`] ends what remains. Returns the agent's last [`Stats`] before the
    /// stop: its `sessions` are the calls still live at the deadline (0 when all ended on
    /// their own), its `shed` every request refused with 503, draining's included.
    pub async fn drain(&self, within: Duration) -> Stats {
        if self.set_draining(true).await.is_err() {
            return Stats::default();
        }
        let deadline = tokio::time::Instant::now() + within;
        let last = loop {
            let stats = self.stats().await.unwrap_or_default();
            if stats.sessions == 0 || tokio::time::Instant::now() >= deadline {
                break stats;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.stop().await;
        last
    }

    /// Starts (or ends) draining without stopping: while on, every new request outside a
    /// dialog is answered 503 with Retry-After and the calls here go on. [`UserAgent::drain`]
    /// is this, a wait for the calls to end, and a stop; agents that share a socket
    /// ([`crate::transport::udp_shards`]) use it to keep the first one, which reads for all,
    /// running until the others are done.
    pub async fn set_draining(&self, on: bool) -> Result<(), Error> {
        let shared = self.shared().ok_or(Error::Stopped)?;
        shared
            .commands
            .send(Command::Draining(on))
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Stops: with `graceful_shutdown`, first unregisters every live [`crate::Registerer`]
    /// and unpublishes every live [`crate::Publisher`], then ends every session and
    /// subscription (BYE, CANCEL, 480, unSUBSCRIBE, terminated NOTIFY), waiting up to 5 s
    /// for each step's answers; then closes the transport.
    pub async fn stop(&self) {
        if self.inner.options.graceful_shutdown {
            // registrations and publications go first, all at once, bounded, while the
            // agent still runs
            if let Some(shared) = self.shared() {
                let hooks = std::mem::take(
                    &mut *shared.stop_hooks.lock().unwrap_or_else(|e| e.into_inner()),
                );
                let mut work = tokio::task::JoinSet::new();
                for h in hooks {
                    if let Some(f) = (h.run)() {
                        work.spawn(f);
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while work.join_next().await.is_some() {}
                })
                .await;
            }
        }
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(Running { shared, task }) = running else {
            return;
        };
        if self.inner.options.graceful_shutdown {
            let (tx, rx) = oneshot::channel();
            if shared
                .commands
                .send(Command::Stop { reply: tx })
                .await
                .is_ok()
            {
                let _ = rx.await;
            }
        }
        task.abort();
        let _ = task.await;
        *shared.invitations.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.inner.state.send_replace(UserAgentState::Stopped);
        if let Some(d) = &self.inner.options.delegate {
            d.on_disconnect(None);
        }
    }

    /// What the agent holds now: live sessions, dialogs, transactions, TCP connections.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let shared = self.shared().ok_or(Error::Stopped)?;
        let (tx, rx) = oneshot::channel();
        shared
            .commands
            .send(Command::Stats { reply: tx })
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The next incoming call, when no delegate is set; `None` once stopped.
    pub async fn next_invitation(&self) -> Option<Invitation> {
        let mut g = self.inner.invitations.lock().await;
        g.as_mut()?.recv().await
    }

    /// Sends an out-of-dialog request (MESSAGE, OPTIONS, INFO...) and returns its final
    /// response, whatever its status (SIP.js `Messager` and core requests).
    pub async fn request(
        &self,
        method: Method,
        target: Uri,
        headers: Vec<Header>,
        body: Option<(String, Bytes)>,
    ) -> Result<Response, Error> {
        let opts = OutOfDialog {
            headers,
            body: body_of(body)?,
            ..OutOfDialog::default()
        };
        self.request_with(method, target, None, opts).await
    }

    /// [`UserAgent::request`] with every choice of the core's [`OutOfDialog`] (Call-ID, CSeq,
    /// To, Contact...), sent to `via` (an outbound proxy or registrar) or else where `target`
    /// resolves.
    pub(crate) async fn request_with(
        &self,
        method: Method,
        target: Uri,
        via: Option<&Uri>,
        mut opts: OutOfDialog,
    ) -> Result<Response, Error> {
        let shared = self.shared().ok_or(Error::Stopped)?;
        let (destination, transport) = shared.resolve(via.unwrap_or(&target)).await?;
        opts.transport = opts.transport.or(transport);
        shared
            .ask(|reply| Command::Request {
                method,
                target,
                destination,
                opts: Box::new(opts),
                reply,
            })
            .await
    }
}

/// A seed from the clock and the address, so two agents never share tags or branches.
fn clock_seed(local: SocketAddr) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(local.port()) << 48) ^ 0x9e37_79b9_7f4a_7c15
}

/// A request handed to a delegate to read and answer (SIP.js `Message`, `Info`, `Bye`,
/// `Notification`): a MESSAGE or NOTIFY outside a session, or a BYE, INFO, MESSAGE or NOTIFY
/// inside one. Answer it with [`accept`](Self::accept) or [`reject`](Self::reject), with
/// headers and a body through [`accept_with`](Self::accept_with) and
/// [`reject_with`](Self::reject_with); dropped unanswered, it is answered as the delegate's
/// default says (200). It may be kept and
/// answered later from another task; until then the peer retransmits and then waits.
pub struct IncomingRequest {
    request: Request,
    id: TransactionId,
    shared: Arc<Shared>,
    answered: bool,
    /// The answer when dropped unanswered.
    default_status: u16,
}

/// An incoming MESSAGE (RFC 3428), in or out of a session (SIP.js `Message`).
pub type Message = IncomingRequest;
/// An INFO in a session (RFC 6086; SIP.js `Info`), DTMF in a call, say.
pub type Info = IncomingRequest;
/// A BYE: the peer hung up (SIP.js `Bye`). The session ends whatever the answer.
pub type Bye = IncomingRequest;

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("method", self.request.method())
            .finish_non_exhaustive()
    }
}

impl IncomingRequest {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: TransactionId,
        request: Request,
        default_status: u16,
    ) -> IncomingRequest {
        IncomingRequest {
            request,
            id,
            shared,
            answered: false,
            default_status,
        }
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Its body (the text of a MESSAGE, the DTMF of an INFO...).
    pub fn body(&self) -> &[u8] {
        self.request.body()
    }

    /// Answers 200 OK.
    pub fn accept(mut self) {
        self.send(200, RequestOptions::default());
    }

    /// Answers with `status` (400–699).
    pub fn reject(mut self, status: u16) {
        self.send(status, RequestOptions::default());
    }

    /// Answers 200 OK with these headers and body.
    pub fn accept_with(mut self, options: RequestOptions) {
        self.send(200, options);
    }

    /// Answers with `status` (400–699) and these headers and body.
    pub fn reject_with(mut self, status: u16, options: RequestOptions) {
        self.send(status, options);
    }

    fn send(&mut self, status: u16, options: RequestOptions) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        let mut headers = options.extra_headers;
        headers.push(self.shared.server_line.clone());
        // a body that does not make a message is left out rather than losing the answer
        let body = body_of(options.body.map(|b| (b.content_type, b.body))).unwrap_or_default();
        // nobody waits for the outcome: a response that cannot go is the peer's to retry
        let _ = self.shared.commands.try_send(Command::Respond {
            reliable: false,
            key: None,
            id: self.id,
            status,
            reason: None,
            headers,
            body,
            reply: None,
        });
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        self.send(self.default_status, RequestOptions::default());
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
