//! `SessionManager` (SIP.js `SessionManager`, `src/platform/web/session-manager/`): a user
//! agent, its registration and its calls behind one handle and one delegate, for applications
//! that want a phone rather than a SIP toolkit.
//!
//! The manager owns a [`UserAgent`] and sets that agent's delegate itself: incoming calls,
//! pages and connection changes arrive at one [`SessionManagerDelegate`], with each call as a
//! [`Session`] the application hands back to [`SessionManager::answer`],
//! [`SessionManager::hold`], [`SessionManager::hangup`]... On top of the plain API it adds
//! what SIP.js's `SessionManager` adds:
//!
//! - a limit on simultaneous calls (`maxSimultaneousSessions`): an incoming call over it is
//!   refused with 486 Busy Here, an outgoing one with [`Error::TooManySessions`];
//! - hold as a re-INVITE with [`SessionDescriptionHandlerOptions::hold`] (`hold`/`unhold`,
//!   `isHeld`);
//! - DTMF either in the media (RFC 4733, [`Session::send_dtmf`]) or as SIP INFO with an
//!   `application/dtmf-relay` body (`sendDTMFUsingSessionDescriptionHandler`), and incoming
//!   INFO DTMF (`application/dtmf-relay` or `application/dtmf`) reported as
//!   `on_call_dtmf_received`;
//! - registration retries (`registrationRetry`, `registrationRetryInterval`);
//! - OPTIONS pings to the server (`optionsPingInterval`): a ping that times out or gets 408 or
//!   503 means the server is lost; the manager then probes with back-off (1 s doubling to
//!   30 s) and, once the server answers, registers again and re-INVITEs every established
//!   call so that peers and proxies learn the new flow. SIP.js reconnects its WebSocket
//!   instead; over UDP, TCP or TLS a new request opens the new flow itself. A TCP, TLS or
//!   WebSocket connection that breaks starts the same recovery (RFC 5626 §4.4);
//! - transfer (`transfer`, REFER with its NOTIFYed outcome, then hang up), and a managed
//!   call transferred by its peer follows the REFER as a new managed call.
//!
//! [`SimpleUser`](crate::SimpleUser) wraps a manager limited to one call.

mod delegates;
mod dtmf;
mod tasks;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use sipua_message::{Response, Uri};
use tokio::task::JoinHandle;

use self::delegates::{AgentDelegate, ManagedDelegate};
use self::tasks::{ping_loop, watch_registration, watch_session};
use crate::error::Error;
use crate::messager::{Messager, MessagerOptions};
use crate::registerer::{registrar_of, Registerer, RegistererOptions, RegistererState};
use crate::sdh::SessionDescriptionHandlerOptions;
use crate::session::{
    Invitation, InvitationAcceptOptions, InvitationRejectOptions, Inviter, InviterInviteOptions,
    InviterOptions, ReferTarget, RequestOptions, Session, SessionInviteOptions,
    SessionReferOptions, SessionState,
};
use crate::user_agent::{UserAgent, UserAgentOptions};

/// How long [`SessionManager::disconnect`] waits for the registrar to remove our binding.
const UNREGISTER_WAIT: Duration = Duration::from_secs(5);

/// What the application is told by a [`SessionManager`] (SIP.js `SessionManagerDelegate`).
/// Every method has a default that does nothing. Called on the library's tasks: return
/// quickly, and spawn for anything long (calling the manager's async methods included).
pub trait SessionManagerDelegate: Send + Sync {
    /// A call was made: by [`SessionManager::call`] (before its INVITE leaves) or by a
    /// caller (just before [`on_call_received`](Self::on_call_received)).
    fn on_call_created(&self, _session: &Session) {}
    /// An incoming call is ringing (180 sent): [`SessionManager::answer`] or
    /// [`SessionManager::decline`] it.
    fn on_call_received(&self, _session: &Session) {}
    /// A call is established (answered by either side).
    fn on_call_answered(&self, _session: &Session) {}
    /// A call ended, however it ended (BYE from either side, CANCEL, refusal, timeout); it
    /// is no longer among [`SessionManager::managed_sessions`].
    fn on_call_hangup(&self, _session: &Session) {}
    /// [`SessionManager::hold`] or [`SessionManager::unhold`] succeeded (the re-INVITE was
    /// accepted): `held` is the new state.
    fn on_call_hold(&self, _session: &Session, _held: bool) {}
    /// The peer sent a DTMF tone by SIP INFO (`application/dtmf-relay` or
    /// `application/dtmf`); the INFO is answered 200. Tones in the media (RFC 4733) are the
    /// media handler's business (`sipua-media`'s `MediaHandle::events`).
    fn on_call_dtmf_received(&self, _session: &Session, _tone: char, _duration: Duration) {}
    /// An out-of-dialog MESSAGE (RFC 3428) from `from`; it is answered 200.
    fn on_message_received(&self, _from: &Uri, _text: &str) {}
    /// The registrar holds our binding (after [`SessionManager::register`], a refresh or a
    /// retry).
    fn on_registered(&self) {}
    /// Our binding is gone: unregistered, refused, or a refresh failed.
    fn on_unregistered(&self) {}
    /// The user agent started, or a lost server answers again.
    fn on_server_connect(&self) {}
    /// The user agent stopped (`None`), or the server stopped answering the OPTIONS pings
    /// (the error says how: [`Error::Timeout`], or [`Error::Rejected`] with 408 or 503).
    fn on_server_disconnect(&self, _error: Option<&Error>) {}
}

/// How a [`SessionManager`] is set up (SIP.js `SessionManagerOptions`). `Default` gives a UDP
/// agent on an ephemeral loopback port, two calls at most, DTMF in the media, no pings and no
/// registration retries.
#[derive(Clone)]
pub struct SessionManagerOptions {
    /// Our address of record; it becomes [`UserAgentOptions::uri`] when that is unset, and
    /// its host is the registrar and the target of the OPTIONS pings.
    pub aor: Option<Uri>,
    /// The options of the user agent the manager makes. Its `delegate` is replaced by the
    /// manager's own, which reports to [`SessionManagerOptions::delegate`].
    pub user_agent_options: UserAgentOptions,
    /// The options of the registration made by [`SessionManager::register`].
    pub registerer_options: RegistererOptions,
    /// Told about calls, pages, registration and the server.
    pub delegate: Option<Arc<dyn SessionManagerDelegate>>,
    /// Most calls at a time (SIP.js's default, 2); 0 means no limit. An incoming call over
    /// the limit is refused with 486 Busy Here.
    pub max_simultaneous_sessions: usize,
    /// `true` (the default): [`SessionManager::send_dtmf`] sends RFC 4733 events through
    /// the media handler ([`Session::send_dtmf`]), or INFO when the handler cannot (the
    /// default `FixedSdp`); `false`: always a SIP INFO with an `application/dtmf-relay`
    /// body (`Signal=5`, `Duration=160`).
    pub send_dtmf_using_session_description_handler: bool,
    /// Send OPTIONS to the registrar (or the host of the address of record) this often; a
    /// ping unanswered within the interval, or answered 408 or 503, means the server is
    /// lost (see the module documentation). `None`: no pings.
    pub options_ping_interval: Option<Duration>,
    /// Retry a failed registration, and a registration that fell off later, until it holds
    /// or [`SessionManager::unregister`] is called.
    pub registration_retry: bool,
    /// Retries wait between once and twice this long, at random (SIP.js's default, 3 s).
    pub registration_retry_interval: Duration,
}

impl Default for SessionManagerOptions {
    fn default() -> SessionManagerOptions {
        SessionManagerOptions {
            aor: None,
            user_agent_options: UserAgentOptions::default(),
            registerer_options: RegistererOptions::default(),
            delegate: None,
            max_simultaneous_sessions: 2,
            send_dtmf_using_session_description_handler: true,
            options_ping_interval: None,
            registration_retry: false,
            registration_retry_interval: Duration::from_secs(3),
        }
    }
}

impl std::fmt::Debug for SessionManagerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManagerOptions")
            .field("aor", &self.aor.as_ref().map(ToString::to_string))
            .field("user_agent_options", &self.user_agent_options)
            .field("registerer_options", &self.registerer_options)
            .field("max_simultaneous_sessions", &self.max_simultaneous_sessions)
            .field(
                "send_dtmf_using_session_description_handler",
                &self.send_dtmf_using_session_description_handler,
            )
            .field("options_ping_interval", &self.options_ping_interval)
            .field("registration_retry", &self.registration_retry)
            .field(
                "registration_retry_interval",
                &self.registration_retry_interval,
            )
            .finish_non_exhaustive()
    }
}

/// A user agent with its registration and its calls (SIP.js `SessionManager`). Cheap to
/// clone; every clone is the same manager.
///
/// ```no_run
/// # async fn demo() -> Result<(), sipua::Error> {
/// use sipua::{InviterOptions, SessionManager, SessionManagerOptions};
/// let phone = SessionManager::new(SessionManagerOptions {
///     aor: Some("sip:alice@example.com".parse()?),
///     ..Default::default()
/// });
/// phone.connect().await?;
/// phone.register().await?;
/// let call = phone.call("sip:bob@example.com".parse()?, InviterOptions::default()).await?;
/// call.established().await?;
/// phone.hold(&call).await?;
/// phone.unhold(&call).await?;
/// phone.hangup(&call).await?;
/// phone.disconnect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("connected", &self.is_connected())
            .field("sessions", &lock(&self.inner.sessions).len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Follows a REFER from a peer (we are being transferred): accepts it and places the
    /// call it asks for as a new managed call, reported by `on_call_created`. The transfer
    /// may exceed `max_simultaneous_sessions` for as long as the old call lasts.
    fn follow_referral(self: &Arc<Inner>, referral: crate::Referral) {
        let inner = self.clone();
        tokio::spawn(async move {
            if referral.accept().await.is_err() {
                return;
            }
            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
            let options = InviterOptions {
                delegate: Some(Arc::new(ManagedDelegate {
                    manager: Arc::downgrade(&inner),
                    id,
                    user: None,
                })),
                ..Default::default()
            };
            let Ok(inviter) = referral.make_inviter(options) else {
                return;
            };
            lock(&inner.sessions).push(Managed {
                id,
                call: Call::Outgoing(inviter.clone()),
                held: false,
            });
            let session = inviter.session().clone();
            inner.tell(|d| d.on_call_created(&session));
            tokio::spawn(watch_session(
                Arc::downgrade(&inner),
                id,
                session.clone(),
                None,
            ));
            if inviter
                .invite(InviterInviteOptions::default())
                .await
                .is_err()
            {
                let _ = session.dispose().await;
            }
        });
    }
}

struct Inner {
    ua: UserAgent,
    delegate: Option<Arc<dyn SessionManagerDelegate>>,
    registerer_options: RegistererOptions,
    max_sessions: usize,
    dtmf_by_media: bool,
    ping_interval: Option<Duration>,
    registration_retry: bool,
    retry_interval: Duration,
    /// The calls not yet ended, in the order they were made.
    sessions: Mutex<Vec<Managed>>,
    next_id: AtomicU64,
    registerer: Mutex<Option<Registerer>>,
    /// `register` was asked for and `unregister` was not: retries and recovery re-register.
    want_registered: AtomicBool,
    /// The OPTIONS pings found the server gone and it has not answered since.
    server_lost: AtomicBool,
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    ping: Option<JoinHandle<()>>,
    retry: Option<JoinHandle<()>>,
    /// Reports the registration's state changes ([`watch_registration`]).
    registration: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        let all = [
            tasks.ping.take(),
            tasks.retry.take(),
            tasks.registration.take(),
        ];
        for t in all.into_iter().flatten() {
            t.abort();
        }
    }
}

/// A call the manager follows.
struct Managed {
    id: u64,
    call: Call,
    held: bool,
}

enum Call {
    Outgoing(Inviter),
    Incoming(Invitation),
}

impl Managed {
    fn session(&self) -> &Session {
        match &self.call {
            Call::Outgoing(i) => i.session(),
            Call::Incoming(i) => i.session(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The error for a session the manager does not follow.
fn not_managed(session: &Session) -> Error {
    if session.state() == SessionState::Terminated {
        Error::SessionTerminated
    } else {
        Error::InvalidArgument("the session is not one of this SessionManager's".into())
    }
}

fn hold_options(held: bool) -> SessionInviteOptions {
    SessionInviteOptions {
        session_description_handler_options: Some(if held {
            SessionDescriptionHandlerOptions::hold()
        } else {
            SessionDescriptionHandlerOptions::default()
        }),
        ..Default::default()
    }
}

impl SessionManager {
    /// A manager with a stopped user agent made from `options.user_agent_options`; nothing
    /// is sent until [`SessionManager::connect`].
    pub fn new(options: SessionManagerOptions) -> SessionManager {
        let SessionManagerOptions {
            aor,
            mut user_agent_options,
            registerer_options,
            delegate,
            max_simultaneous_sessions,
            send_dtmf_using_session_description_handler,
            options_ping_interval,
            registration_retry,
            registration_retry_interval,
        } = options;
        if user_agent_options.uri.is_none() {
            user_agent_options.uri = aor;
        }
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| {
            user_agent_options.delegate = Some(Arc::new(AgentDelegate(me.clone())));
            Inner {
                ua: UserAgent::new(user_agent_options),
                delegate,
                registerer_options,
                max_sessions: max_simultaneous_sessions,
                dtmf_by_media: send_dtmf_using_session_description_handler,
                ping_interval: options_ping_interval,
                registration_retry,
                retry_interval: registration_retry_interval,
                sessions: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                registerer: Mutex::new(None),
                want_registered: AtomicBool::new(false),
                server_lost: AtomicBool::new(false),
                tasks: Mutex::new(Tasks::default()),
            }
        });
        SessionManager { inner }
    }

    /// The user agent, for everything the manager does not cover.
    pub fn user_agent(&self) -> &UserAgent {
        &self.inner.ua
    }

    /// Starts the user agent (SIP.js `connect`) and, with `options_ping_interval`, the
    /// pings; the delegate hears `on_server_connect`. Connecting a connected manager does
    /// nothing. Fails with [`Error::InvalidArgument`] when pings are asked for with a zero
    /// interval or with nothing to ping (no address of record and no registrar).
    pub async fn connect(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let ping = match inner.ping_interval {
            Some(every) if every.is_zero() => {
                return Err(Error::InvalidArgument(
                    "options_ping_interval must not be zero".into(),
                ))
            }
            Some(every) => Some((inner.ping_target()?, every)),
            None => None,
        };
        inner.ua.start().await?;
        inner.server_lost.store(false, Ordering::Relaxed);
        if let Some((target, every)) = ping {
            let mut tasks = lock(&inner.tasks);
            if tasks.ping.as_ref().is_none_or(JoinHandle::is_finished) {
                let weak = Arc::downgrade(inner);
                tasks.ping = Some(tokio::spawn(ping_loop(weak, target, every)));
            }
        }
        Ok(())
    }

    /// Stops (SIP.js `disconnect`): ends the pings and retries, removes our binding if
    /// registered (waiting up to 5 s), then stops the user agent, which hangs up every call
    /// (with `graceful_shutdown`). The delegate hears `on_call_hangup` for each call and
    /// `on_server_disconnect(None)`. The agent is stopped whatever happens; the error is
    /// the unregistration's.
    pub async fn disconnect(&self) -> Result<(), Error> {
        let inner = &self.inner;
        inner.want_registered.store(false, Ordering::Relaxed);
        {
            let mut tasks = lock(&inner.tasks);
            for t in [tasks.ping.take(), tasks.retry.take()]
                .into_iter()
                .flatten()
            {
                t.abort();
            }
        }
        let registerer = lock(&inner.registerer).take();
        let watcher = lock(&inner.tasks).registration.take();
        let unregistered = match registerer {
            Some(r) => {
                let disposed = tokio::time::timeout(UNREGISTER_WAIT, r.dispose()).await;
                if let Some(w) = watcher {
                    if disposed.is_ok() {
                        // it reports on_unregistered and ends: before on_server_disconnect
                        let _ = w.await;
                    } else {
                        w.abort();
                    }
                }
                disposed.unwrap_or(Err(Error::Timeout))
            }
            None => Ok(()),
        };
        inner.ua.stop().await;
        inner.server_lost.store(false, Ordering::Relaxed);
        unregistered
    }

    /// Whether the user agent runs and, with pings, the server answers them (SIP.js
    /// `isConnected`).
    pub fn is_connected(&self) -> bool {
        self.inner.ua.state() == crate::UserAgentState::Started
            && !self.inner.server_lost.load(Ordering::Relaxed)
    }

    /// Registers our address of record (SIP.js `register`) with
    /// `SessionManagerOptions::registerer_options`; resolves with the registrar's answer
    /// (`on_registered` follows). The binding is refreshed in the background; with
    /// `registration_retry`, a failure is retried until it holds.
    pub async fn register(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let registerer = inner.registerer()?;
        inner.want_registered.store(true, Ordering::Relaxed);
        match registerer.register().await {
            Ok(_) => Ok(()),
            Err(e) => {
                inner.schedule_retry();
                Err(e)
            }
        }
    }

    /// Removes our binding (SIP.js `unregister`) and stops refreshes and retries;
    /// `on_unregistered` follows. Without a registration, does nothing.
    pub async fn unregister(&self) -> Result<(), Error> {
        let inner = &self.inner;
        inner.want_registered.store(false, Ordering::Relaxed);
        if let Some(t) = lock(&inner.tasks).retry.take() {
            t.abort();
        }
        let Some(registerer) = lock(&inner.registerer).clone() else {
            return Ok(());
        };
        registerer.unregister(Default::default()).await.map(|_| ())
    }

    /// Calls `destination` (SIP.js `call`): `on_call_created`, then the INVITE. Resolves
    /// once the INVITE is sent with the call's session; await [`Session::established`]
    /// for the answer (a refusal is [`Error::Rejected`] there). A delegate in `options` is
    /// still told about the session's requests. Over the limit of simultaneous calls,
    /// [`Error::TooManySessions`].
    pub async fn call(
        &self,
        destination: Uri,
        mut options: InviterOptions,
    ) -> Result<Session, Error> {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        options.delegate = Some(Arc::new(ManagedDelegate {
            manager: Arc::downgrade(inner),
            id,
            user: options.delegate.take(),
        }));
        let inviter = {
            let mut sessions = lock(&inner.sessions);
            inner.check_limit(&sessions)?;
            let inviter = Inviter::new(&inner.ua, destination, options)?;
            sessions.push(Managed {
                id,
                call: Call::Outgoing(inviter.clone()),
                held: false,
            });
            inviter
        };
        let session = inviter.session().clone();
        inner.tell(|d| d.on_call_created(&session));
        tokio::spawn(watch_session(
            Arc::downgrade(inner),
            id,
            session.clone(),
            None,
        ));
        if let Err(e) = inviter.invite(InviterInviteOptions::default()).await {
            // ends it, so the watcher reports the hangup and forgets it
            let _ = session.dispose().await;
            return Err(e);
        }
        Ok(session)
    }

    /// Transfers a call (SIP.js `transfer`): REFER to a URI (blind) or to the peer of
    /// another managed call (attended, with Replaces). Resolves when the transfer is over:
    /// `Ok` once the target answered, and the call is then hung up (our part is done);
    /// [`Error::Rejected`] with the target's status if it failed, the call staying up.
    pub async fn transfer(
        &self,
        session: &Session,
        target: impl Into<ReferTarget>,
        options: SessionReferOptions,
    ) -> Result<(), Error> {
        self.inner.with_call(session, |_| ())?;
        let referrer = session.refer(target, options).await?;
        if referrer.subscribed() {
            referrer.outcome().await?;
        }
        match session.bye().await {
            Ok(_) | Err(Error::SessionTerminated) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Answers an incoming call with 200 (SIP.js `answer`); `on_call_answered` follows.
    /// [`Error::InvalidArgument`] for an outgoing call.
    pub async fn answer(&self, session: &Session) -> Result<(), Error> {
        let invitation = self.incoming(session, "answer")?;
        invitation.accept(InvitationAcceptOptions::default()).await
    }

    /// Refuses an incoming call with 603 Decline (SIP.js `decline`; RFC 3261 §21.6.2);
    /// `on_call_hangup` follows. [`Error::InvalidArgument`] for an outgoing call.
    pub async fn decline(&self, session: &Session) -> Result<(), Error> {
        let invitation = self.incoming(session, "decline")?;
        invitation
            .reject(InvitationRejectOptions {
                status_code: Some(603),
                ..Default::default()
            })
            .await
    }

    /// Ends a call whatever its state (SIP.js `hangup`): CANCEL while an outgoing call
    /// rings, 480 for an unanswered incoming call, BYE once established; nothing once it
    /// has ended ([`Session::dispose`]). `on_call_hangup` follows.
    pub async fn hangup(&self, session: &Session) -> Result<(), Error> {
        session.dispose().await
    }

    /// Puts an established call on hold (SIP.js `hold`): a re-INVITE offering `sendonly`
    /// (inactive if the peer holds too). Resolves with the re-INVITE's outcome;
    /// `on_call_hold(true)` follows success. Holding a held call does nothing.
    pub async fn hold(&self, session: &Session) -> Result<(), Error> {
        self.set_hold(session, true).await
    }

    /// Takes a call off hold (SIP.js `unhold`): a re-INVITE offering `sendrecv`;
    /// `on_call_hold(false)` follows success.
    pub async fn unhold(&self, session: &Session) -> Result<(), Error> {
        self.set_hold(session, false).await
    }

    /// Whether we put the call on hold (SIP.js `isHeld`); false for a session the manager
    /// does not follow.
    pub fn is_held(&self, session: &Session) -> bool {
        self.inner.with_call(session, |m| m.held).unwrap_or(false)
    }

    /// Sends one DTMF tone (`0-9`, `*`, `#`, `A-D`; SIP.js `sendDTMF`): RFC 4733 in the
    /// media, or SIP INFO when `send_dtmf_using_session_description_handler` is false. A
    /// refused INFO is [`Error::Rejected`]; another tone, [`Error::InvalidArgument`].
    pub async fn send_dtmf(&self, session: &Session, tone: char) -> Result<(), Error> {
        let tone = dtmf::checked_tone(tone)?;
        if self.inner.dtmf_by_media {
            match session.send_dtmf(tone.encode_utf8(&mut [0; 4])).await {
                // a media handler without RFC 4733 (the default FixedSdp): INFO instead
                Err(Error::SessionDescriptionHandler(_)) => {}
                r => return r,
            }
        }
        let response = session
            .info(RequestOptions {
                extra_headers: Vec::new(),
                body: Some(dtmf::info_body(tone)),
            })
            .await?;
        success(response)
    }

    /// Sends `text` as an out-of-dialog MESSAGE (SIP.js `message`; RFC 3428). Resolves with
    /// the answer: `Ok` for 2xx, [`Error::Rejected`] otherwise.
    pub async fn message(&self, destination: Uri, text: &str) -> Result<(), Error> {
        Messager::new(
            &self.inner.ua,
            destination,
            text.to_owned(),
            "text/plain",
            MessagerOptions::default(),
        )?
        .message()
        .await
        .map(|_| ())
    }

    /// The calls not yet ended, oldest first (SIP.js `managedSessions`).
    pub fn managed_sessions(&self) -> Vec<Session> {
        lock(&self.inner.sessions)
            .iter()
            .map(Managed::session)
            .filter(|s| s.state() != SessionState::Terminated)
            .cloned()
            .collect()
    }

    /// The invitation behind an incoming call (its INVITE says who calls), or `None` for
    /// an outgoing call or one the manager does not follow.
    pub fn invitation(&self, session: &Session) -> Option<Invitation> {
        self.inner
            .with_call(session, |m| match &m.call {
                Call::Incoming(i) => Some(i.clone()),
                Call::Outgoing(_) => None,
            })
            .ok()
            .flatten()
    }

    fn incoming(&self, session: &Session, action: &str) -> Result<Invitation, Error> {
        self.inner.with_call(session, |m| match &m.call {
            Call::Incoming(i) => Ok(i.clone()),
            Call::Outgoing(_) => Err(Error::InvalidArgument(format!(
                "{action}: the session is an outgoing call"
            ))),
        })?
    }

    async fn set_hold(&self, session: &Session, hold: bool) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.with_call(session, |m| m.held)? == hold {
            return Ok(());
        }
        session.invite(hold_options(hold)).await?;
        let _ = inner.with_call_mut(session, |m| m.held = hold);
        inner.tell(|d| d.on_call_hold(session, hold));
        Ok(())
    }
}

/// `Ok` for a 2xx, [`Error::Rejected`] for anything else.
fn success(response: Response) -> Result<(), Error> {
    Error::check(&response)
}

impl Inner {
    fn tell(&self, f: impl FnOnce(&dyn SessionManagerDelegate)) {
        if let Some(d) = &self.delegate {
            f(d.as_ref());
        }
    }

    fn check_limit(&self, sessions: &[Managed]) -> Result<(), Error> {
        let live = sessions
            .iter()
            .filter(|m| m.session().state() != SessionState::Terminated)
            .count();
        if self.max_sessions != 0 && live >= self.max_sessions {
            return Err(Error::TooManySessions {
                limit: self.max_sessions,
            });
        }
        Ok(())
    }

    fn with_call<T>(&self, session: &Session, f: impl FnOnce(&Managed) -> T) -> Result<T, Error> {
        let sessions = lock(&self.sessions);
        let m = sessions.iter().find(|m| m.session() == session);
        m.map(f).ok_or_else(|| not_managed(session))
    }

    fn with_call_mut<T>(
        &self,
        session: &Session,
        f: impl FnOnce(&mut Managed) -> T,
    ) -> Result<T, Error> {
        let mut sessions = lock(&self.sessions);
        let m = sessions.iter_mut().find(|m| m.session() == session);
        m.map(f).ok_or_else(|| not_managed(session))
    }

    fn session_by_id(&self, id: u64) -> Option<Session> {
        lock(&self.sessions)
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.session().clone())
    }

    /// An incoming call: refused 486 over the limit, else followed and handed over.
    fn incoming(self: &Arc<Self>, invitation: Invitation) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut sessions = lock(&self.sessions);
            if self.check_limit(&sessions).is_err() {
                drop(sessions);
                invitation.reject_nowait(486);
                return;
            }
            sessions.push(Managed {
                id,
                call: Call::Incoming(invitation.clone()),
                held: false,
            });
        }
        invitation.set_delegate(Arc::new(ManagedDelegate {
            manager: Arc::downgrade(self),
            id,
            user: None,
        }));
        let session = invitation.session().clone();
        tokio::spawn(watch_session(
            Arc::downgrade(self),
            id,
            session,
            Some(invitation),
        ));
    }

    /// Where OPTIONS pings go: the registrar, or the host of our address of record.
    fn ping_target(&self) -> Result<Uri, Error> {
        if let Some(r) = &self.registerer_options.registrar {
            return Ok(r.clone());
        }
        match &self.ua.options().uri {
            Some(aor) => registrar_of(aor),
            None => Err(Error::InvalidArgument(
                "options_ping_interval needs an address of record or a registrar to ping".into(),
            )),
        }
    }

    /// The registration, made on first use (the user agent must be started).
    fn registerer(self: &Arc<Self>) -> Result<Registerer, Error> {
        let mut slot = lock(&self.registerer);
        if let Some(r) = slot
            .as_ref()
            .filter(|r| r.state() != RegistererState::Terminated)
        {
            return Ok(r.clone());
        }
        let r = Registerer::new(&self.ua, self.registerer_options.clone())?;
        let watcher = tokio::spawn(watch_registration(Arc::downgrade(self), r.state_change()));
        if let Some(old) = lock(&self.tasks).registration.replace(watcher) {
            old.abort();
        }
        *slot = Some(r.clone());
        Ok(r)
    }
}
