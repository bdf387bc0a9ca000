//! Subscriptions, the subscriber's side (SIP.js `Subscriber`, `Subscription`,
//! `Notification`): SUBSCRIBE and the NOTIFYs it brings (RFC 6665 §4.1). Timer N waits for
//! the first NOTIFY, which may overtake the 2xx (§4.1.2.4); the subscription is refreshed
//! before it expires, its expiry follows the notifier's `expires` (§4.1.2.1, §4.1.3), and a
//! `terminated` state is acted on by its reason (§4.1.3): `deactivated` and `timeout`
//! subscribe again at once, `probation` and `giveup` after `retry-after` seconds (SIP.js
//! waits milliseconds), the rest end it. NOTIFYs with another event package get 489
//! (§4.1.3); ones from a second fork get 481, which ends that fork's subscription.
//!
//! Each subscriber is a small task like a session's: it owns the subscription's dialog
//! and timers, takes commands from the handles and inputs from the driver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua_message::header::{Event, Expires, MinExpires, SubscriptionState as StateHeader};
use sipua_message::{Header, HeaderName, Method, Request, Response, Uri};
use sipua_proto::dialog::{Dialog, DialogId};
use sipua_proto::endpoint::TransactionId;
use sipua_proto::ua::OutOfDialog;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::commands::{Command, SessionInput, SessionKey, SESSION_QUEUE};
use crate::error::Error;
use crate::mailbox::MailboxReceiver;
use crate::sdh::BodyAndContentType;
use crate::tasks::{ask_task, sleep_until};
use crate::user_agent::{body_of, content_type_of, Shared, UserAgent};

/// Timer N (RFC 6665 §4.1.2.4): how long to wait for the first NOTIFY, 64·T1.
const TIMER_N: Duration = Duration::from_secs(32);
/// Notifications kept for [`Subscriber::next_notification`] before new ones are dropped.
const NOTIFICATION_QUEUE: usize = 64;
/// Attempts of an initial SUBSCRIBE answered `423 Interval Too Brief`.
const MAX_423: u8 = 3;

/// Where a subscription is (SIP.js `SubscriptionState`, with RFC 6665's `pending` told
/// apart from `active`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubscriptionState {
    /// Nothing sent yet.
    Initial,
    /// SUBSCRIBE sent; no NOTIFY yet.
    NotifyWait,
    /// The notifier has not authorised it yet (`Subscription-State: pending`).
    Pending,
    /// Active: NOTIFYs carry the resource's state.
    Subscribed,
    /// Ended: unsubscribed, refused, expired or terminated by the notifier.
    Terminated,
}

/// Told about a subscription's NOTIFYs (SIP.js `SubscriptionDelegate`). Called on the
/// subscription's task: return quickly.
pub trait SubscriptionDelegate: Send + Sync {
    /// A NOTIFY of this subscription: [`Notification::accept`] it (the default) or
    /// [`Notification::reject`] it before returning. A rejected NOTIFY changes nothing of
    /// the subscription's state (and a 481 or 489 makes the notifier end it, RFC 6665
    /// §4.1.3).
    fn on_notify(&self, notification: &Notification) {
        notification.accept();
    }
}

/// One NOTIFY (SIP.js `Notification`): the resource's state as the notifier reports it.
#[derive(Debug)]
pub struct Notification {
    request: Request,
    /// The answer a delegate chose (200 unless it rejected).
    status: std::sync::atomic::AtomicU16,
}

impl Clone for Notification {
    fn clone(&self) -> Notification {
        Notification {
            request: self.request.clone(),
            status: std::sync::atomic::AtomicU16::new(self.status()),
        }
    }
}

impl Notification {
    fn new(request: Request) -> Notification {
        Notification {
            request,
            status: std::sync::atomic::AtomicU16::new(200),
        }
    }

    /// Answers it 200 OK (what happens unless the delegate rejects it).
    pub fn accept(&self) {
        self.status.store(200, std::sync::atomic::Ordering::Relaxed);
    }

    /// Answers it with `status` (400–699; anything lower is taken as 400): the body was not
    /// understood (415), the event is not wanted (489)...
    pub fn reject(&self, status: u16) {
        self.status
            .store(status.clamp(400, 699), std::sync::atomic::Ordering::Relaxed);
    }

    /// The status it is answered with.
    fn status(&self) -> u16 {
        self.status.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The NOTIFY itself.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Its `Subscription-State` (`active`, `pending` or `terminated`, with `expires`,
    /// `reason`, `retry-after`).
    pub fn subscription_state(&self) -> Option<StateHeader> {
        self.request.typed::<StateHeader>().and_then(Result::ok)
    }

    /// The body (the event package's document: PIDF, dialog-info, message summary...).
    pub fn body(&self) -> &[u8] {
        self.request.body()
    }

    /// The body's media type, e.g. `application/pidf+xml`.
    pub fn content_type(&self) -> Option<String> {
        self.request.content_type().map(|t| content_type_of(&t))
    }
}

/// Options of a [`Subscriber`] (SIP.js `SubscriberOptions`).
#[derive(Clone)]
pub struct SubscriberOptions {
    /// The subscription's duration asked for, in seconds (SIP.js's 3600).
    pub expires: u32,
    /// Headers added to every SUBSCRIBE.
    pub extra_headers: Vec<Header>,
    /// A body for the SUBSCRIBE (a filter, say).
    pub body: Option<BodyAndContentType>,
    /// Body types the subscriber takes, sent as Accept (the package's default when empty).
    pub accept: Vec<String>,
    /// Told about NOTIFYs; without one they queue for [`Subscriber::next_notification`].
    pub delegate: Option<Arc<dyn SubscriptionDelegate>>,
    /// Sends the initial SUBSCRIBE through this proxy rather than the target's host.
    pub via: Option<Uri>,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            expires: 3600,
            extra_headers: Vec::new(),
            body: None,
            accept: Vec::new(),
            delegate: None,
            via: None,
        }
    }
}

impl std::fmt::Debug for SubscriberOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberOptions")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a subscription ended, as the notifier put it (RFC 6665 §4.1.3), or what failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Termination {
    /// The `reason` of a `terminated` NOTIFY (`rejected`, `noresource`...).
    pub reason: Option<String>,
    /// Its `retry-after`, in seconds.
    pub retry_after: Option<u32>,
    /// The final response that refused the SUBSCRIBE, if that is how it ended.
    pub status: Option<u16>,
}

enum SubCommand {
    Subscribe(oneshot::Sender<Result<(), Error>>),
    Unsubscribe(oneshot::Sender<Result<(), Error>>),
}

struct Handle {
    commands: crate::mailbox::Mailbox<SubCommand>,
    state: watch::Receiver<SubscriptionState>,
    ended: Arc<Mutex<Option<Termination>>>,
    notifications: tokio::sync::Mutex<mpsc::Receiver<Notification>>,
}

/// A subscription to an event package at a target (SIP.js `Subscriber`). Clones share it;
/// dropping the last one unsubscribes.
///
/// ```no_run
/// # async fn demo(ua: sipua::UserAgent) -> Result<(), sipua::Error> {
/// use sipua::{Subscriber, SubscriberOptions};
/// let target = "sip:bob@example.com".parse()?;
/// let sub = Subscriber::new(&ua, target, "presence", SubscriberOptions::default())?;
/// sub.subscribe().await?;
/// while let Some(n) = sub.next_notification().await {
///     println!("{}", String::from_utf8_lossy(n.body()));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Subscriber {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// A subscription of `ua` (started) to `event` (`presence`, `dialog`,
    /// `message-summary`...) at `target`. Nothing is sent until [`Subscriber::subscribe`].
    pub fn new(
        ua: &UserAgent,
        target: Uri,
        event: &str,
        options: SubscriberOptions,
    ) -> Result<Subscriber, Error> {
        let shared = ua.shared().ok_or(Error::Stopped)?;
        let event = Event {
            package: event.to_owned(),
            params: Default::default(),
        };
        if event.package.is_empty() || !event.package.bytes().all(is_token) {
            return Err(Error::InvalidArgument(format!(
                "event package {:?}",
                event.package
            )));
        }
        body_of(
            options
                .body
                .clone()
                .map(|b| (b.content_type.clone(), b.body)),
        )?;
        let (commands, command_rx) = crate::mailbox::mailbox(8);
        let (state, state_rx) = watch::channel(SubscriptionState::Initial);
        let (notify_tx, notify_rx) = mpsc::channel(NOTIFICATION_QUEUE);
        let ended = Arc::new(Mutex::new(None));
        let key = shared.next_key();
        let (inputs_tx, inputs) = crate::mailbox::mailbox(SESSION_QUEUE);
        shared
            .commands
            .try_send(Command::Attach {
                key,
                sink: inputs_tx,
            })
            .map_err(|_| Error::Stopped)?;
        let task = SubTask {
            key,
            shared,
            target,
            event,
            options,
            state,
            ended: ended.clone(),
            notifications: notify_tx,
            dialog: None,
            pending: None,
            expires: 0,
            refresh_at: None,
            expires_at: None,
            timer_n: None,
            resubscribe_at: None,
            linger_until: None,
            attempts_423: 0,
            asked_expires: 0,
        };
        tokio::spawn(task.run(command_rx, inputs));
        Ok(Subscriber {
            handle: Arc::new(Handle {
                commands,
                state: state_rx,
                ended,
                notifications: tokio::sync::Mutex::new(notify_rx),
            }),
        })
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> SubCommand) -> Result<(), Error> {
        ask_task(&self.handle.commands, make).await
    }

    /// Sends the SUBSCRIBE (or, once subscribed, a refresh) and waits for its final
    /// response: `Ok` for 2xx, [`Error::Rejected`] otherwise. NOTIFYs follow.
    pub async fn subscribe(&self) -> Result<(), Error> {
        self.ask(SubCommand::Subscribe).await
    }

    /// Ends the subscription (SUBSCRIBE with `Expires: 0`); the state is `Terminated` at
    /// once, and the notifier's last NOTIFY is still taken.
    pub async fn unsubscribe(&self) -> Result<(), Error> {
        self.ask(SubCommand::Unsubscribe).await
    }

    /// The current state.
    pub fn state(&self) -> SubscriptionState {
        *self.handle.state.borrow()
    }

    /// Follows state changes (SIP.js `stateChange`).
    pub fn state_change(&self) -> watch::Receiver<SubscriptionState> {
        self.handle.state.clone()
    }

    /// Why the subscription ended, once it has.
    pub fn termination(&self) -> Option<Termination> {
        self.handle
            .ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The next NOTIFY (without a delegate); `None` once the subscription has ended and
    /// every NOTIFY has been read.
    pub async fn next_notification(&self) -> Option<Notification> {
        self.handle.notifications.lock().await.recv().await
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Who waits for a SUBSCRIBE's answer.
type Reply = oneshot::Sender<Result<(), Error>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Initial,
    Refresh,
    Unsubscribe,
}

struct SubTask {
    key: SessionKey,
    shared: Arc<Shared>,
    target: Uri,
    event: Event,
    options: SubscriberOptions,
    state: watch::Sender<SubscriptionState>,
    ended: Arc<Mutex<Option<Termination>>>,
    notifications: mpsc::Sender<Notification>,
    dialog: Option<DialogId>,
    /// Our SUBSCRIBE awaiting its final response, and who waits for it.
    pending: Option<(TransactionId, Kind, Option<Reply>)>,
    /// The interval in force, in seconds.
    expires: u32,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
    timer_n: Option<Instant>,
    resubscribe_at: Option<Instant>,
    /// After the end: NOTIFYs are still answered until then, then the dialog goes.
    linger_until: Option<Instant>,
    attempts_423: u8,
    asked_expires: u32,
}

impl SubTask {
    fn current(&self) -> SubscriptionState {
        *self.state.borrow()
    }

    fn set(&self, s: SubscriptionState) {
        if self.current() != SubscriptionState::Terminated {
            self.state.send_replace(s);
        }
    }

    fn end(&mut self, why: Termination) {
        if self.current() == SubscriptionState::Terminated {
            return;
        }
        *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.state.send_replace(SubscriptionState::Terminated);
        self.refresh_at = None;
        self.expires_at = None;
        self.timer_n = None;
        self.resubscribe_at = None;
        self.linger_until = Some(Instant::now() + TIMER_N);
    }

    async fn run(
        mut self,
        mut commands: crate::mailbox::MailboxReceiver<SubCommand>,
        mut inputs: MailboxReceiver<SessionInput>,
    ) {
        let mut handles_gone = false;
        loop {
            if self.current() == SubscriptionState::Terminated
                && self.pending.is_none()
                && (handles_gone || self.linger_until.is_some_and(|t| Instant::now() >= t))
            {
                break;
            }
            let deadline = [
                self.refresh_at,
                self.expires_at,
                self.timer_n,
                self.resubscribe_at,
                self.linger_until,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                cmd = commands.recv(), if !handles_gone => match cmd {
                    Some(SubCommand::Subscribe(reply)) => self.subscribe(Some(reply)).await,
                    Some(SubCommand::Unsubscribe(reply)) => self.unsubscribe(Some(reply)).await,
                    None => {
                        handles_gone = true;
                        // the last handle went: unsubscribe if still subscribed
                        if self.current() != SubscriptionState::Terminated {
                            self.unsubscribe(None).await;
                        }
                    }
                },
                input = inputs.recv() => match input {
                    Some(i) => self.on_input(i).await,
                    None => break,
                },
                _ = sleep_until(deadline), if deadline.is_some() => self.on_timer().await,
            }
        }
        self.end_dialog().await;
        let _ = self
            .shared
            .commands
            .send(Command::Detach { key: self.key })
            .await;
    }

    /// Lets go of the subscription's dialog: the core forgets it.
    async fn end_dialog(&mut self) {
        if let Some(d) = self.dialog.take() {
            let _ = self
                .shared
                .commands
                .send(Command::EndDialog { dialog: d })
                .await;
        }
    }

    fn headers(&self, expires: u32) -> Vec<Header> {
        let mut h = vec![Header::typed(&self.event), Header::typed(&Expires(expires))];
        if !self.options.accept.is_empty() {
            h.push(Header::new(
                HeaderName::Accept,
                self.options.accept.join(", "),
            ));
        }
        h.push(self.shared.allow_header());
        h.extend(self.options.extra_headers.iter().cloned());
        h
    }

    async fn subscribe(&mut self, reply: Option<oneshot::Sender<Result<(), Error>>>) {
        if self.pending.is_some() {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::RequestPending));
            }
            return;
        }
        match (self.current(), self.dialog.clone()) {
            (SubscriptionState::Terminated, _) => {
                if let Some(r) = reply {
                    let _ = r.send(Err(Error::SessionTerminated));
                }
            }
            (SubscriptionState::Initial, _) | (_, None) => {
                self.attempts_423 = 0;
                self.initial(self.options.expires, reply).await;
            }
            (_, Some(d)) => self.in_dialog(d, Kind::Refresh, self.expires, reply).await,
        }
    }

    async fn initial(&mut self, expires: u32, reply: Option<oneshot::Sender<Result<(), Error>>>) {
        self.dialog = None;
        self.asked_expires = expires;
        let sent = async {
            let via = self.options.via.as_ref().unwrap_or(&self.target);
            let (destination, transport) = self.shared.resolve(via).await?;
            let body = body_of(
                self.options
                    .body
                    .clone()
                    .map(|b| (b.content_type.clone(), b.body)),
            )?;
            let opts = OutOfDialog {
                transport,
                headers: self.headers(expires),
                body,
                call_id: Some(self.shared.new_call_id("-sub")),
                ..OutOfDialog::default()
            };
            let (tx, rx) = oneshot::channel();
            self.shared
                .commands
                .send(Command::RequestFor {
                    key: self.key,
                    method: Method::Subscribe,
                    target: self.target.clone(),
                    destination,
                    opts: Box::new(opts),
                    reply: tx,
                })
                .await
                .map_err(|_| Error::Stopped)?;
            rx.await.map_err(|_| Error::Stopped)?
        }
        .await;
        match sent {
            Ok(id) => {
                self.pending = Some((id, Kind::Initial, reply));
                self.set(SubscriptionState::NotifyWait);
                self.timer_n = Some(Instant::now() + TIMER_N);
            }
            Err(e) => {
                self.end(Termination::default());
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
            }
        }
    }

    async fn in_dialog(
        &mut self,
        dialog: DialogId,
        kind: Kind,
        expires: u32,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::InDialog {
            key: self.key,
            dialog,
            method: Method::Subscribe,
            headers: self.headers(expires),
            body: None,
            defer_ack: false,
            reply: tx,
        };
        let sent = match self.shared.commands.send(cmd).await {
            Ok(()) => rx.await.unwrap_or(Err(Error::Stopped)),
            Err(_) => Err(Error::Stopped),
        };
        match sent {
            Ok(id) => {
                self.pending = Some((id, kind, reply));
                if kind == Kind::Refresh {
                    self.refresh_at = None;
                }
            }
            Err(e) => {
                if kind == Kind::Refresh {
                    self.end(Termination::default());
                }
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
            }
        }
    }

    async fn unsubscribe(&mut self, reply: Option<oneshot::Sender<Result<(), Error>>>) {
        if self.current() == SubscriptionState::Terminated {
            if let Some(r) = reply {
                let _ = r.send(Ok(()));
            }
            return;
        }
        let dialog = self.dialog.clone();
        self.end(Termination::default());
        match dialog {
            // an initial SUBSCRIBE still unanswered: its dialog is unsubscribed when it comes
            None => {
                if let Some(r) = reply {
                    let _ = r.send(Ok(()));
                }
            }
            Some(d) => {
                if let Some((_, _, Some(r))) = self.pending.take() {
                    let _ = r.send(Err(Error::SessionTerminated));
                }
                self.in_dialog(d, Kind::Unsubscribe, 0, reply).await;
            }
        }
    }

    /// Takes the dialog a response or NOTIFY names, if we have none yet; a second one (a
    /// fork) is refused.
    fn adopt(&mut self, d: &DialogId) -> bool {
        match &self.dialog {
            Some(ours) => ours == d,
            None => {
                self.dialog = Some(d.clone());
                true
            }
        }
    }

    /// Sets the interval in force and when to refresh: at 90 %, at least 5 s early when
    /// there is room, and never later than half-way (short intervals).
    fn schedule(&mut self, expires: u32) {
        if self.current() == SubscriptionState::Terminated {
            return;
        }
        let now = Instant::now();
        self.expires = expires;
        let ms = u64::from(expires) * 1000;
        let refresh = (ms * 9 / 10).min(ms.saturating_sub(5000)).max(ms / 2);
        self.refresh_at = Some(now + Duration::from_millis(refresh));
        self.expires_at = Some(now + Duration::from_millis(ms));
    }

    async fn on_input(&mut self, input: SessionInput) {
        match input {
            SessionInput::Response {
                id,
                response,
                dialog,
            } => self.on_response(id, response, dialog).await,
            SessionInput::Request { id, request } => self.on_request(id, request).await,
            SessionInput::Failed {
                id,
                timeout,
                reason,
            } => {
                if let Some((pid, kind, reply)) = self.pending.take() {
                    if pid != id {
                        self.pending = Some((pid, kind, reply));
                        return;
                    }
                    if kind != Kind::Unsubscribe {
                        self.end(Termination::default());
                    }
                    if let Some(r) = reply {
                        let _ = r.send(Err(if timeout {
                            Error::Timeout
                        } else {
                            Error::Transport(
                                reason
                                    .unwrap_or_else(|| {
                                        crate::TransportError::new(
                                            crate::TransportErrorKind::Closed,
                                            "the connection failed or was closed",
                                        )
                                    })
                                    .in_context("the SUBSCRIBE could not be sent"),
                            )
                        }));
                    }
                }
            }
            SessionInput::Shutdown => self.unsubscribe(None).await,
            _ => {}
        }
    }

    async fn on_response(
        &mut self,
        id: TransactionId,
        response: Response,
        dialog: Option<DialogId>,
    ) {
        if response.status() < 200 {
            return;
        }
        let Some((pid, kind, reply)) = self.pending.take() else {
            return;
        };
        if pid != id {
            self.pending = Some((pid, kind, reply));
            return;
        }
        let status = response.status();
        let result = Error::check(&response);
        match kind {
            Kind::Initial if response.is_success() => {
                if let Some(d) = &dialog {
                    if self.current() == SubscriptionState::Terminated {
                        // unsubscribed before the answer came: end what it set up
                        self.dialog = Some(d.clone());
                        self.in_dialog(d.clone(), Kind::Unsubscribe, 0, None).await;
                    } else {
                        self.adopt(d);
                    }
                }
                let granted = granted(&response).unwrap_or(self.asked_expires);
                if self.expires_at.is_none() || granted < self.expires {
                    self.schedule(granted.min(self.asked_expires));
                }
            }
            Kind::Initial if status == 423 && self.attempts_423 < MAX_423 => {
                self.attempts_423 += 1;
                let min = response
                    .typed::<MinExpires>()
                    .and_then(Result::ok)
                    .map_or(self.asked_expires.saturating_mul(2), |m| m.0);
                self.initial(min.max(1), reply).await;
                return;
            }
            Kind::Initial => self.end(Termination {
                status: Some(status),
                ..Termination::default()
            }),
            Kind::Refresh if response.is_success() => {
                let granted = granted(&response).unwrap_or(self.expires);
                self.schedule(granted);
            }
            Kind::Refresh => {
                // RFC 6665 §4.1.2.2: these end the subscription; others leave it to expire
                if matches!(
                    status,
                    404 | 405 | 408 | 410 | 416 | 480..=485 | 489 | 501 | 604
                ) {
                    self.end(Termination {
                        status: Some(status),
                        ..Termination::default()
                    });
                }
            }
            Kind::Unsubscribe => {}
        }
        if let Some(r) = reply {
            let _ = r.send(result);
        }
    }

    async fn respond(&self, id: TransactionId, status: u16, reason: Option<&str>) {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Respond {
            key: Some(self.key),
            id,
            status,
            reason: reason.map(str::to_owned),
            headers: Vec::new(),
            body: None,
            reliable: false,
            reply: Some(tx),
        };
        if self.shared.commands.send(cmd).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn on_request(&mut self, id: TransactionId, request: Request) {
        if *request.method() != Method::Notify {
            self.respond(id, 405, None).await;
            return;
        }
        let Some(did) = Dialog::id_of_request(&request) else {
            self.respond(id, 481, None).await;
            return;
        };
        let event = request.typed::<Event>().and_then(Result::ok);
        let same = event.as_ref().is_some_and(|e| {
            e.package.eq_ignore_ascii_case(&self.event.package) && e.id() == self.event.id()
        });
        if !same {
            self.respond(id, 489, None).await;
            return;
        }
        let Some(sub_state) = request.typed::<StateHeader>().and_then(Result::ok) else {
            self.respond(id, 400, Some("Missing Subscription-State"))
                .await;
            return;
        };
        let lingering = self.current() == SubscriptionState::Terminated;
        if !lingering && !self.adopt(&did) {
            // a second fork: refused, which ends its subscription (RFC 6665 §4.1.3)
            self.respond(id, 481, None).await;
            let _ = self
                .shared
                .commands
                .send(Command::EndDialog { dialog: did })
                .await;
            return;
        }
        if lingering && self.dialog.is_none() {
            self.dialog = Some(did.clone());
        }
        let notification = Notification::new(request);
        let status = match &self.options.delegate {
            Some(d) => {
                d.on_notify(&notification);
                notification.status()
            }
            None => {
                let _ = self.notifications.try_send(notification.clone());
                200
            }
        };
        self.respond(id, status, None).await;
        if status >= 300 {
            return;
        }
        self.timer_n = None;
        let state = sub_state.state.to_ascii_lowercase();
        match state.as_str() {
            "active" | "pending" => {
                self.set(if state == "active" {
                    SubscriptionState::Subscribed
                } else {
                    SubscriptionState::Pending
                });
                if let Some(e) = sub_state.expires() {
                    // the notifier's expiry is authoritative (RFC 6665 §4.1.3)
                    if self.expires_at.is_none() || e != self.expires {
                        self.schedule(e);
                    }
                }
            }
            _ => self.on_terminated(&sub_state).await,
        }
    }

    async fn on_terminated(&mut self, s: &StateHeader) {
        let reason = s.reason().map(str::to_ascii_lowercase);
        self.end_dialog().await;
        if self.current() == SubscriptionState::Terminated {
            self.linger_until = Some(Instant::now());
            return;
        }
        self.refresh_at = None;
        self.expires_at = None;
        match (reason.as_deref(), s.retry_after()) {
            (Some("deactivated" | "timeout"), _) => {
                self.attempts_423 = 0;
                self.initial(self.options.expires, None).await;
            }
            (Some("probation" | "giveup"), Some(secs)) => {
                self.set(SubscriptionState::NotifyWait);
                self.resubscribe_at = Some(Instant::now() + Duration::from_secs(u64::from(secs)));
            }
            _ => {
                self.end(Termination {
                    reason,
                    retry_after: s.retry_after(),
                    status: None,
                });
                self.linger_until = Some(Instant::now());
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.timer_n.is_some_and(|t| t <= now) {
            // no NOTIFY came: the subscription failed (RFC 6665 §4.1.2.4)
            self.timer_n = None;
            self.end(Termination {
                reason: Some("no NOTIFY within Timer N".into()),
                ..Termination::default()
            });
            if let Some(d) = self.dialog.clone() {
                self.in_dialog(d, Kind::Unsubscribe, 0, None).await;
            }
            return;
        }
        if self.resubscribe_at.is_some_and(|t| t <= now) {
            self.resubscribe_at = None;
            self.attempts_423 = 0;
            self.initial(self.options.expires, None).await;
            return;
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            self.end(Termination {
                reason: Some("expired".into()),
                ..Termination::default()
            });
            return;
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            if self.pending.is_none() {
                if let Some(d) = self.dialog.clone() {
                    self.in_dialog(d, Kind::Refresh, self.expires, None).await;
                }
            }
        }
        // a passed `linger_until` is seen by `run`, which stops
    }
}

/// The interval a 2xx granted (its Expires).
fn granted(response: &Response) -> Option<u32> {
    response
        .typed::<Expires>()
        .and_then(Result::ok)
        .map(|e| e.0)
}
