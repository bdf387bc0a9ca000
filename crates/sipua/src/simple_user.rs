//! `SimpleUser` (SIP.js `SimpleUser`, `src/platform/web/simple-user/`): a phone with one
//! line, for applications that want to make and take one call at a time without handling
//! sessions at all.
//!
//! It is a [`SessionManager`] limited to one call: a second incoming call while one is up is
//! refused with 486 Busy Here, [`SimpleUser::call`] while one is up is
//! [`Error::TooManySessions`], and every verb ([`answer`](SimpleUser::answer),
//! [`hangup`](SimpleUser::hangup), [`hold`](SimpleUser::hold)...) acts on that call, or is
//! [`Error::NoSession`] when there is none. Events reach a [`SimpleUserDelegate`] with SIP.js's
//! callbacks, without the session argument.

use std::sync::Arc;
use std::time::Duration;

use sipua_message::Uri;

use crate::error::Error;
use crate::registerer::RegistererOptions;
use crate::session::{InviterOptions, Session};
use crate::session_manager::{SessionManager, SessionManagerDelegate, SessionManagerOptions};
use crate::user_agent::{UserAgent, UserAgentOptions};

/// What the application is told by a [`SimpleUser`] (SIP.js `SimpleUserDelegate`). Every
/// method has a default that does nothing. Called on the library's tasks: return quickly,
/// and spawn for anything long (calling the `SimpleUser`'s async methods included).
pub trait SimpleUserDelegate: Send + Sync {
    /// A call was made, outgoing ([`SimpleUser::call`]) or incoming (just before
    /// [`on_call_received`](Self::on_call_received)).
    fn on_call_created(&self) {}
    /// An incoming call is ringing: [`SimpleUser::answer`] or [`SimpleUser::decline`] it.
    fn on_call_received(&self) {}
    /// The call is established.
    fn on_call_answered(&self) {}
    /// The call ended, however it ended; [`SimpleUser::session`] is `None` again.
    fn on_call_hangup(&self) {}
    /// [`SimpleUser::hold`] or [`SimpleUser::unhold`] succeeded; `held` is the new state.
    fn on_call_hold(&self, _held: bool) {}
    /// The peer sent a DTMF tone by SIP INFO.
    fn on_call_dtmf_received(&self, _tone: char, _duration: Duration) {}
    /// An out-of-dialog MESSAGE from `from` (SIP.js passes the text only).
    fn on_message_received(&self, _from: &Uri, _text: &str) {}
    /// The registrar holds our binding.
    fn on_registered(&self) {}
    /// Our binding is gone.
    fn on_unregistered(&self) {}
    /// The user agent started, or a lost server answers again.
    fn on_server_connect(&self) {}
    /// The user agent stopped (`None`), or the server stopped answering the OPTIONS pings.
    fn on_server_disconnect(&self, _error: Option<&Error>) {}
}

/// How a [`SimpleUser`] is set up (SIP.js `SimpleUserOptions`); the fields mean what they
/// mean in [`SessionManagerOptions`].
#[derive(Clone)]
pub struct SimpleUserOptions {
    /// Our address of record (used as [`UserAgentOptions::uri`] when that is unset).
    pub aor: Option<Uri>,
    /// The options of the user agent; its `delegate` is replaced.
    pub user_agent_options: UserAgentOptions,
    /// The options of the registration.
    pub registerer_options: RegistererOptions,
    /// Told about the call, pages, registration and the server.
    pub delegate: Option<Arc<dyn SimpleUserDelegate>>,
    /// `true` (the default): DTMF as RFC 4733 events in the media; `false`: SIP INFO.
    pub send_dtmf_using_session_description_handler: bool,
    /// Ping the server with OPTIONS this often; `None`: no pings.
    pub options_ping_interval: Option<Duration>,
    /// Retry a failed registration until it holds.
    pub registration_retry: bool,
    /// Retries wait between once and twice this long (3 s by default).
    pub registration_retry_interval: Duration,
}

impl Default for SimpleUserOptions {
    fn default() -> SimpleUserOptions {
        let m = SessionManagerOptions::default();
        SimpleUserOptions {
            aor: m.aor,
            user_agent_options: m.user_agent_options,
            registerer_options: m.registerer_options,
            delegate: None,
            send_dtmf_using_session_description_handler: m
                .send_dtmf_using_session_description_handler,
            options_ping_interval: m.options_ping_interval,
            registration_retry: m.registration_retry,
            registration_retry_interval: m.registration_retry_interval,
        }
    }
}

impl std::fmt::Debug for SimpleUserOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleUserOptions")
            .field("aor", &self.aor.as_ref().map(ToString::to_string))
            .field("user_agent_options", &self.user_agent_options)
            .field("registerer_options", &self.registerer_options)
            .field(
                "send_dtmf_using_session_description_handler",
                &self.send_dtmf_using_session_description_handler,
            )
            .field("options_ping_interval", &self.options_ping_interval)
            .field("registration_retry", &self.registration_retry)
            .finish_non_exhaustive()
    }
}

/// A user agent with one call at a time (SIP.js `SimpleUser`). Cheap to clone; every clone
/// is the same phone.
///
/// ```no_run
/// # async fn demo() -> Result<(), sipua::Error> {
/// use sipua::{SimpleUser, SimpleUserOptions};
/// let phone = SimpleUser::new(SimpleUserOptions {
///     aor: Some("sip:alice@example.com".parse()?),
///     ..Default::default()
/// });
/// phone.connect().await?;
/// phone.register().await?;
/// let call = phone.call("sip:bob@example.com".parse()?).await?;
/// call.established().await?;
/// phone.send_dtmf('1').await?;
/// phone.hangup().await?;
/// phone.disconnect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SimpleUser {
    manager: SessionManager,
}

/// Passes the manager's events on without the session.
struct Adapter(Arc<dyn SimpleUserDelegate>);

impl SessionManagerDelegate for Adapter {
    fn on_call_created(&self, _: &Session) {
        self.0.on_call_created();
    }
    fn on_call_received(&self, _: &Session) {
        self.0.on_call_received();
    }
    fn on_call_answered(&self, _: &Session) {
        self.0.on_call_answered();
    }
    fn on_call_hangup(&self, _: &Session) {
        self.0.on_call_hangup();
    }
    fn on_call_hold(&self, _: &Session, held: bool) {
        self.0.on_call_hold(held);
    }
    fn on_call_dtmf_received(&self, _: &Session, tone: char, duration: Duration) {
        self.0.on_call_dtmf_received(tone, duration);
    }
    fn on_message_received(&self, from: &Uri, text: &str) {
        self.0.on_message_received(from, text);
    }
    fn on_registered(&self) {
        self.0.on_registered();
    }
    fn on_unregistered(&self) {
        self.0.on_unregistered();
    }
    fn on_server_connect(&self) {
        self.0.on_server_connect();
    }
    fn on_server_disconnect(&self, error: Option<&Error>) {
        self.0.on_server_disconnect(error);
    }
}

impl SimpleUser {
    /// A phone with a stopped user agent; nothing is sent until [`SimpleUser::connect`].
    pub fn new(options: SimpleUserOptions) -> SimpleUser {
        let delegate = options
            .delegate
            .map(|d| Arc::new(Adapter(d)) as Arc<dyn SessionManagerDelegate>);
        SimpleUser {
            manager: SessionManager::new(SessionManagerOptions {
                aor: options.aor,
                user_agent_options: options.user_agent_options,
                registerer_options: options.registerer_options,
                delegate,
                max_simultaneous_sessions: 1,
                send_dtmf_using_session_description_handler: options
                    .send_dtmf_using_session_description_handler,
                options_ping_interval: options.options_ping_interval,
                registration_retry: options.registration_retry,
                registration_retry_interval: options.registration_retry_interval,
            }),
        }
    }

    /// The manager underneath.
    pub fn session_manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The user agent.
    pub fn user_agent(&self) -> &UserAgent {
        self.manager.user_agent()
    }

    /// The call, while there is one.
    pub fn session(&self) -> Option<Session> {
        self.manager.managed_sessions().into_iter().next()
    }

    fn current(&self) -> Result<Session, Error> {
        self.session().ok_or(Error::NoSession)
    }

    /// Starts the user agent (and the pings); see [`SessionManager::connect`].
    pub async fn connect(&self) -> Result<(), Error> {
        self.manager.connect().await
    }

    /// Unregisters, hangs up and stops; see [`SessionManager::disconnect`].
    pub async fn disconnect(&self) -> Result<(), Error> {
        self.manager.disconnect().await
    }

    /// Whether the user agent runs and the server answers; see
    /// [`SessionManager::is_connected`].
    pub fn is_connected(&self) -> bool {
        self.manager.is_connected()
    }

    /// Registers our address of record; see [`SessionManager::register`].
    pub async fn register(&self) -> Result<(), Error> {
        self.manager.register().await
    }

    /// Removes our binding; see [`SessionManager::unregister`].
    pub async fn unregister(&self) -> Result<(), Error> {
        self.manager.unregister().await
    }

    /// Calls `destination` and returns the call once the INVITE is sent; await
    /// [`Session::established`] for the answer. [`Error::TooManySessions`] while a call is
    /// up.
    pub async fn call(&self, destination: Uri) -> Result<Session, Error> {
        self.call_with(destination, InviterOptions::default()).await
    }

    /// [`SimpleUser::call`] with options for the INVITE (early media, anonymity, headers,
    /// a session delegate...).
    pub async fn call_with(
        &self,
        destination: Uri,
        options: InviterOptions,
    ) -> Result<Session, Error> {
        self.manager.call(destination, options).await
    }

    /// Answers the incoming call. [`Error::NoSession`] without an incoming call;
    /// [`Error::StateTransition`] when it is already answered.
    pub async fn answer(&self) -> Result<(), Error> {
        let session = self.incoming()?;
        self.manager.answer(&session).await
    }

    /// Refuses the incoming call with 603 Decline. [`Error::NoSession`] without an
    /// incoming call.
    pub async fn decline(&self) -> Result<(), Error> {
        let session = self.incoming()?;
        self.manager.decline(&session).await
    }

    /// Ends the call whatever its state (CANCEL, 480 or BYE). [`Error::NoSession`] without a
    /// call.
    pub async fn hangup(&self) -> Result<(), Error> {
        self.manager.hangup(&self.current()?).await
    }

    /// Transfers the call to `target` (blind transfer, REFER) and hangs up once the target
    /// answered; [`Error::Rejected`] with the target's status if it did not (the call stays
    /// up). [`Error::NoSession`] without a call.
    pub async fn transfer(&self, target: Uri) -> Result<(), Error> {
        self.manager
            .transfer(&self.current()?, target, Default::default())
            .await
    }

    /// Puts the call on hold (re-INVITE, `sendonly`). [`Error::NoSession`] without a call.
    pub async fn hold(&self) -> Result<(), Error> {
        self.manager.hold(&self.current()?).await
    }

    /// Takes the call off hold (re-INVITE, `sendrecv`). [`Error::NoSession`] without a call.
    pub async fn unhold(&self) -> Result<(), Error> {
        self.manager.unhold(&self.current()?).await
    }

    /// Whether we hold the call; false without one.
    pub fn is_held(&self) -> bool {
        self.session().is_some_and(|s| self.manager.is_held(&s))
    }

    /// Sends one DTMF tone in the call; see [`SessionManager::send_dtmf`].
    /// [`Error::NoSession`] without a call.
    pub async fn send_dtmf(&self, tone: char) -> Result<(), Error> {
        self.manager.send_dtmf(&self.current()?, tone).await
    }

    /// Sends `text` as an out-of-dialog MESSAGE; see [`SessionManager::message`].
    pub async fn message(&self, destination: Uri, text: &str) -> Result<(), Error> {
        self.manager.message(destination, text).await
    }

    fn incoming(&self) -> Result<Session, Error> {
        let session = self.current()?;
        match self.manager.invitation(&session) {
            Some(_) => Ok(session),
            None => Err(Error::NoSession),
        }
    }
}
