//! `UserAgent`: the entry point of the API, as in SIP.js. It owns the driver task (transport,
//! timers, the sans-IO core) and hands incoming INVITEs, MESSAGEs and NOTIFYs to its
//! [`UserAgentDelegate`] or, without one, to [`UserAgent::next_invitation`].

mod incoming;
mod shared;

pub use incoming::{Bye, IncomingRequest, Info, Message};
pub(crate) use shared::Shared;

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
    /// Overload control by queueing delay: while the UDP datagrams waiting to be read have
    /// been waiting longer than this, new INVITEs get the same 503, taken from the raw
    /// datagram before any parse (a tenth of a call's cost), so that an agent past its
    /// capacity spends itself on the calls it took. It needs no figure of the machine's
    /// capacity. Take it well under T1 (callers resend at 500 ms) and, in a container with a
    /// CPU quota, at least twice the quota's period: 200 ms suits most. `Duration::ZERO` (the
    /// default): off.
    pub max_queue_delay: Duration,
    /// RFC 7339 overload control, both ways. Toward the proxies that ask for it (their top
    /// Via carries `oc`), our responses tell them the share of their traffic to cut, from the
    /// share of new INVITEs `max_invites_per_second`, `max_queue_delay` or draining refuse.
    /// Our own requests ask for it, and a new call to a next hop that asked us to cut is held
    /// back with that chance: [`Inviter::invite`](crate::Inviter::invite) then fails with
    /// `Error::Core(UaError::Overloaded { .. })` and nothing is sent. `false` (the default):
    /// neither (a server may tell only the neighbours it trusts).
    pub overload_via: bool,
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
            max_queue_delay: Duration::ZERO,
            overload_via: false,
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
            max_queue_delay: o.max_queue_delay,
            overload_via: o.overload_via,
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
    /// running until the others are done. In effect when it returns: a request read after
    /// it gets the 503 (so a dispatcher's probe sent then sees the instance draining).
    pub async fn set_draining(&self, on: bool) -> Result<(), Error> {
        let shared = self.shared().ok_or(Error::Stopped)?;
        shared
            .commands
            .send(Command::Draining(on))
            .await
            .map_err(|_| Error::Stopped)?;
        // the driver takes its commands in order: once a later one is answered, this one
        // has been applied
        self.stats().await.map(|_| ())
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
