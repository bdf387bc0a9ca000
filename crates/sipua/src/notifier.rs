//! Subscriptions, the notifier's side (RFC 6665 §4.2), which SIP.js leaves as a placeholder:
//! an incoming SUBSCRIBE reaches [`UserAgentDelegate::on_subscribe`](crate::UserAgentDelegate)
//! as an [`IncomingSubscription`]; accepting it answers 200 with the granted Expires and
//! sends the first NOTIFY at once (§4.2.1.2), and the [`Notifier`] it returns sends the
//! resource's state from then on. Refreshes are answered and followed by a NOTIFY
//! (§4.2.1.2), an unsubscribe or the expiry ends with a `terminated` NOTIFY (§4.2.2), a
//! 481 or timeout to a NOTIFY ends the subscription (§4.2.2). NOTIFYs go one at a time;
//! states asked for while one is in flight are merged into the next.

use std::sync::Arc;
use std::time::Duration;

use sipua_message::header::{Event, Expires, MinExpires};
use sipua_message::{Header, HeaderName, Method, Request};
use sipua_proto::dialog::DialogId;
use sipua_proto::endpoint::TransactionId;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::body::{body_of, content_type_of};
use crate::commands::{Command, SessionInput, SessionKey, SESSION_QUEUE};
use crate::error::Error;
use crate::mailbox::MailboxReceiver;
use crate::sdh::BodyAndContentType;
use crate::tasks::{sleep_until, TaskHandle};
use crate::user_agent::Shared;

/// Where a subscription we serve is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierState {
    /// Accepted but not authorised yet: NOTIFYs say `pending` and carry no state.
    Pending,
    /// NOTIFYs carry the resource's state.
    Active,
    /// Ended: unsubscribed, expired, terminated by us, or the subscriber is gone.
    Terminated,
}

/// How to accept a subscription.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// The longest interval granted, in seconds; a subscriber asking for more gets this.
    pub max_expires: u32,
    /// The shortest one taken; a shorter (non-zero) request gets `423 Interval Too Brief`.
    pub min_expires: u32,
    /// Start `pending` (awaiting authorisation) rather than `active`.
    pub pending: bool,
    /// The state sent in the first NOTIFY (and again after each refresh until changed).
    pub body: Option<BodyAndContentType>,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            max_expires: 3600,
            min_expires: 60,
            pending: false,
            body: None,
        }
    }
}

/// A SUBSCRIBE that no subscription holds yet: read it, then [`accept`](Self::accept) or
/// [`reject`](Self::reject). Dropping it unanswered refuses it (603).
pub struct IncomingSubscription {
    shared: Arc<Shared>,
    id: TransactionId,
    request: Request,
    answered: bool,
}

impl std::fmt::Debug for IncomingSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingSubscription")
            .field("event", &self.event())
            .finish_non_exhaustive()
    }
}

impl IncomingSubscription {
    pub(crate) fn new(shared: Arc<Shared>, id: TransactionId, request: Request) -> Self {
        IncomingSubscription {
            shared,
            id,
            request,
            answered: false,
        }
    }

    /// The SUBSCRIBE.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Its event package (`presence`, `dialog`...), empty when it named none.
    pub fn event(&self) -> String {
        self.request
            .typed::<Event>()
            .and_then(Result::ok)
            .map(|e| e.package)
            .unwrap_or_default()
    }

    /// The interval asked for, in seconds (`None`: the package's default).
    pub fn expires(&self) -> Option<u32> {
        self.request
            .typed::<Expires>()
            .and_then(Result::ok)
            .map(|e| e.0)
    }

    /// Refuses it: 489 for a package we do not serve, 403 or 603 for a subscriber we do
    /// not allow...
    pub fn reject(mut self, status: u16) {
        self.answered = true;
        answer(&self.shared, self.id, status, Vec::new());
    }

    /// Accepts: 200 with the granted Expires, then the first NOTIFY. A request shorter than
    /// `min_expires` gets 423 and an error instead; `Expires: 0` (a fetch) gets one NOTIFY
    /// and the subscription ends.
    pub async fn accept(mut self, options: NotifierOptions) -> Result<Notifier, Error> {
        self.answered = true;
        let asked = self.expires().unwrap_or(options.max_expires);
        if asked != 0 && asked < options.min_expires {
            answer(
                &self.shared,
                self.id,
                423,
                vec![Header::typed(&MinExpires(options.min_expires))],
            );
            return Err(Error::InvalidArgument(format!(
                "asked for {asked} s, less than {} s",
                options.min_expires
            )));
        }
        let granted = asked.min(options.max_expires);
        let event = self
            .request
            .typed::<Event>()
            .and_then(Result::ok)
            .ok_or_else(|| Error::InvalidArgument("the SUBSCRIBE has no Event".into()))?;
        let body = body_of(
            options
                .body
                .clone()
                .map(|b| (b.content_type.clone(), b.body)),
        )?;
        let shared = self.shared.clone();
        let key = shared.next_key();
        let (sink, inputs) = crate::mailbox::mailbox(SESSION_QUEUE);
        shared
            .commands
            .send(Command::Attach { key, sink })
            .await
            .map_err(|_| Error::Stopped)?;
        let (tx, rx) = oneshot::channel();
        shared
            .commands
            .send(Command::Respond {
                key: Some(key),
                id: self.id,
                status: 200,
                reason: None,
                headers: vec![Header::typed(&Expires(granted))],
                body: None,
                reliable: false,
                reply: Some(tx),
            })
            .await
            .map_err(|_| Error::Stopped)?;
        let dialog = rx
            .await
            .map_err(|_| Error::Stopped)??
            .ok_or(Error::SessionTerminated)?;
        let initial = if options.pending {
            NotifierState::Pending
        } else {
            NotifierState::Active
        };
        let (state, state_rx) = crate::tasks::state_channel(initial);
        let (commands, command_rx) = crate::mailbox::mailbox(16);
        let task = NotifyTask {
            key,
            shared,
            dialog,
            event,
            state,
            body,
            expires_at: Instant::now() + Duration::from_secs(u64::from(granted)),
            max_expires: options.max_expires,
            min_expires: options.min_expires,
            in_flight: None,
            queued: None,
        };
        let request = Arc::new(self.request.clone());
        let mut task = task;
        // the first NOTIFY goes out at once (RFC 6665 §4.2.1.2); a fetch ends with it
        if granted == 0 {
            task.queue_terminated("timeout", None);
        } else {
            task.queue_current(None);
        }
        task.flush().await;
        tokio::spawn(task.run(command_rx, inputs));
        Ok(Notifier {
            inner: Arc::new(NotifierHandle {
                task: TaskHandle::new(commands, state_rx),
                request,
            }),
        })
    }
}

impl Drop for IncomingSubscription {
    fn drop(&mut self) {
        if !self.answered {
            answer(&self.shared, self.id, 603, Vec::new());
        }
    }
}

fn answer(shared: &Shared, id: TransactionId, status: u16, headers: Vec<Header>) {
    let _ = shared
        .commands
        .try_send(Command::plain_response(None, id, status, headers, None));
}

/// Hands an out-of-dialog SUBSCRIBE to the delegate; without one it is refused with 489
/// (RFC 6665 §4.2.1.1: no package served).
pub(crate) fn incoming_subscribe(shared: Arc<Shared>, id: TransactionId, request: Request) {
    let has_event = request.typed::<Event>().is_some_and(|e| e.is_ok());
    if !has_event {
        answer(&shared, id, 489, Vec::new());
        return;
    }
    let s = IncomingSubscription::new(shared.clone(), id, request);
    match &shared.options.delegate {
        Some(d) => d.on_subscribe(s),
        None => s.reject(489),
    }
}

enum NotifyCommand {
    Notify(
        Option<BodyAndContentType>,
        oneshot::Sender<Result<(), Error>>,
    ),
    Activate(oneshot::Sender<Result<(), Error>>),
    Terminate(String, Option<u32>, oneshot::Sender<Result<(), Error>>),
}

struct NotifierHandle {
    task: TaskHandle<NotifyCommand, NotifierState>,
    request: Arc<Request>,
}

/// A subscription we serve: send the resource's state with [`Notifier::notify`], end it
/// with [`Notifier::terminate`]. Clones share it; dropping the last one terminates it
/// (`reason=noresource`).
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<NotifierHandle>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    async fn ask(&self, make: impl FnOnce(Waiter) -> NotifyCommand) -> Result<(), Error> {
        self.inner.task.ask(make).await
    }

    /// Sends the resource's new state (the body becomes the state repeated after
    /// refreshes); resolves when the NOTIFY is answered, or merged into a later one.
    pub async fn notify(&self, body: BodyAndContentType) -> Result<(), Error> {
        self.ask(|r| NotifyCommand::Notify(Some(body), r)).await
    }

    /// Authorises a pending subscription: it becomes active, with a NOTIFY saying so.
    pub async fn activate(&self) -> Result<(), Error> {
        self.ask(NotifyCommand::Activate).await
    }

    /// Ends the subscription with a `terminated` NOTIFY giving `reason` (`noresource`,
    /// `rejected`, `deactivated`, `probation`, `giveup`...) and `retry_after` in seconds.
    pub async fn terminate(&self, reason: &str, retry_after: Option<u32>) -> Result<(), Error> {
        let reason = reason.to_owned();
        self.ask(|r| NotifyCommand::Terminate(reason, retry_after, r))
            .await
    }

    /// The current state.
    pub fn state(&self) -> NotifierState {
        self.inner.task.state()
    }

    /// Follows state changes.
    pub fn state_change(&self) -> watch::Receiver<NotifierState> {
        self.inner.task.state_change()
    }

    /// Waits until the subscription has ended.
    pub async fn terminated(&self) {
        let mut rx = self.state_change();
        let _ = rx.wait_for(|s| *s == NotifierState::Terminated).await;
    }

    /// The SUBSCRIBE that started it.
    pub fn request(&self) -> &Request {
        &self.inner.request
    }
}

/// Who waits for a NOTIFY's answer.
type Waiter = oneshot::Sender<Result<(), Error>>;

/// A NOTIFY to send: its Subscription-State and body, and who waits for it.
struct Pending {
    state: String,
    body: Option<BodyAndContentType>,
    waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    terminal: bool,
}

struct NotifyTask {
    key: SessionKey,
    shared: Arc<Shared>,
    dialog: DialogId,
    event: Event,
    state: crate::tasks::StateSender<NotifierState>,
    /// The current state document.
    body: crate::commands::Body,
    expires_at: Instant,
    max_expires: u32,
    min_expires: u32,
    /// The NOTIFY awaiting its answer, who waits for it, and whether it terminates.
    in_flight: Option<(TransactionId, Vec<Waiter>, bool)>,
    queued: Option<Pending>,
}

impl NotifyTask {
    fn current(&self) -> NotifierState {
        self.state.get()
    }

    fn state_value(&self) -> String {
        // rounded up: the subscriber must not refresh later than it could
        let left = (self.expires_at.saturating_duration_since(Instant::now())
            + Duration::from_millis(999))
        .as_secs();
        match self.current() {
            NotifierState::Pending => format!("pending;expires={left}"),
            _ => format!("active;expires={left}"),
        }
    }

    fn queue(
        &mut self,
        state: String,
        body: Option<BodyAndContentType>,
        terminal: bool,
        waiter: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        let q = self.queued.get_or_insert(Pending {
            state: String::new(),
            body: None,
            waiters: Vec::new(),
            terminal: false,
        });
        if q.terminal {
            // nothing follows a terminating NOTIFY
            if let Some(w) = waiter {
                let _ = w.send(Err(Error::SessionTerminated));
            }
            return;
        }
        q.state = state;
        q.body = body;
        q.terminal = terminal;
        q.waiters.extend(waiter);
    }

    /// Queues a NOTIFY with the current state and document.
    fn queue_current(&mut self, waiter: Option<oneshot::Sender<Result<(), Error>>>) {
        let state = self.state_value();
        let body = match (self.current(), &self.body) {
            (NotifierState::Active, Some((ct, b))) => Some(BodyAndContentType {
                body: b.clone(),
                content_type: content_type_of(ct),
            }),
            _ => None,
        };
        self.queue(state, body, false, waiter);
    }

    fn queue_terminated(&mut self, reason: &str, retry_after: Option<u32>) {
        let mut state = format!("terminated;reason={reason}");
        if let Some(r) = retry_after {
            state.push_str(&format!(";retry-after={r}"));
        }
        self.queue(state, None, true, None);
        self.state.send_replace(NotifierState::Terminated);
    }

    /// Sends the queued NOTIFY if none is in flight.
    async fn flush(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(p) = self.queued.take() else {
            return;
        };
        let mut headers = vec![
            Header::typed(&self.event),
            Header::new(HeaderName::SubscriptionState, p.state),
        ];
        headers.push(self.shared.allow_header());
        let body = match p.body {
            Some(b) => body_of(Some((b.content_type, b.body))).unwrap_or(None),
            None => None,
        };
        let (tx, rx) = oneshot::channel();
        let cmd = Command::InDialog {
            key: self.key,
            dialog: self.dialog.clone(),
            method: Method::Notify,
            headers,
            body,
            defer_ack: false,
            reply: tx,
        };
        let sent = match self.shared.commands.send(cmd).await {
            Ok(()) => rx.await.unwrap_or(Err(Error::Stopped)),
            Err(_) => Err(Error::Stopped),
        };
        match sent {
            Ok(id) => self.in_flight = Some((id, p.waiters, p.terminal)),
            Err(e) => {
                for w in p.waiters {
                    let _ = w.send(Err(e.clone()));
                }
                self.state.send_replace(NotifierState::Terminated);
            }
        }
    }

    async fn run(
        mut self,
        mut commands: crate::mailbox::MailboxReceiver<NotifyCommand>,
        mut inputs: MailboxReceiver<SessionInput>,
    ) {
        let mut handles_gone = false;
        loop {
            if self.current() == NotifierState::Terminated
                && self.in_flight.is_none()
                && self.queued.is_none()
            {
                break;
            }
            let expiry = (self.current() != NotifierState::Terminated).then_some(self.expires_at);
            tokio::select! {
                cmd = commands.recv(), if !handles_gone => match cmd {
                    Some(c) => self.on_command(c),
                    None => {
                        handles_gone = true;
                        if self.current() != NotifierState::Terminated {
                            self.queue_terminated("noresource", None);
                        }
                    }
                },
                input = inputs.recv() => match input {
                    Some(i) => self.on_input(i).await,
                    None => break,
                },
                _ = sleep_until(expiry), if expiry.is_some() => {
                    // not refreshed in time (RFC 6665 §4.2.2)
                    self.queue_terminated("timeout", None);
                }
            }
            self.flush().await;
        }
        self.state.send_replace(NotifierState::Terminated);
        let _ = self
            .shared
            .commands
            .send(Command::EndDialog {
                dialog: self.dialog.clone(),
            })
            .await;
        let _ = self
            .shared
            .commands
            .send(Command::Detach { key: self.key })
            .await;
    }

    fn on_command(&mut self, c: NotifyCommand) {
        if self.current() == NotifierState::Terminated {
            let r = match c {
                NotifyCommand::Notify(_, r)
                | NotifyCommand::Activate(r)
                | NotifyCommand::Terminate(_, _, r) => r,
            };
            let _ = r.send(Err(Error::SessionTerminated));
            return;
        }
        match c {
            NotifyCommand::Notify(body, r) => {
                if let Some(b) = body {
                    match body_of(Some((b.content_type.clone(), b.body))) {
                        Ok(parsed) => self.body = parsed,
                        Err(e) => {
                            let _ = r.send(Err(e));
                            return;
                        }
                    }
                }
                self.queue_current(Some(r));
            }
            NotifyCommand::Activate(r) => {
                self.state.send_replace(NotifierState::Active);
                self.queue_current(Some(r));
            }
            NotifyCommand::Terminate(reason, retry, r) => {
                self.queue_terminated(&reason, retry);
                if let Some(q) = &mut self.queued {
                    q.waiters.push(r);
                }
            }
        }
    }

    async fn on_input(&mut self, input: SessionInput) {
        match input {
            SessionInput::Response { id, response, .. } if response.status() >= 200 => {
                let Some((fid, waiters, terminal)) = self.in_flight.take() else {
                    return;
                };
                if fid != id {
                    self.in_flight = Some((fid, waiters, terminal));
                    return;
                }
                let status = response.status();
                let result = Error::check(&response);
                for w in waiters {
                    let _ = w.send(result.clone());
                }
                if !response.is_success() && !matches!(status, 401 | 407 | 491 | 500..=599) {
                    // the subscriber no longer has it (481) or refuses it: it is over
                    self.state.send_replace(NotifierState::Terminated);
                    self.queued = None;
                }
            }
            SessionInput::Failed { id, .. } => {
                if let Some((fid, waiters, _)) = self.in_flight.take() {
                    if fid == id {
                        for w in waiters {
                            let _ = w.send(Err(Error::Timeout));
                        }
                        self.state.send_replace(NotifierState::Terminated);
                        self.queued = None;
                    } else {
                        self.in_flight = Some((fid, waiters, false));
                    }
                }
            }
            SessionInput::Request { id, request } => self.on_request(id, request).await,
            SessionInput::Shutdown if self.current() != NotifierState::Terminated => {
                self.queue_terminated("noresource", None);
            }
            _ => {}
        }
    }

    async fn respond(&self, id: TransactionId, status: u16, headers: Vec<Header>) {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::plain_response(Some(self.key), id, status, headers, Some(tx));
        if self.shared.commands.send(cmd).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// A refresh or unsubscribe (SUBSCRIBE in the dialog).
    async fn on_request(&mut self, id: TransactionId, request: Request) {
        if *request.method() != Method::Subscribe {
            self.respond(id, 405, vec![self.shared.allow_header()])
                .await;
            return;
        }
        let same = request
            .typed::<Event>()
            .and_then(Result::ok)
            .is_some_and(|e| e.package.eq_ignore_ascii_case(&self.event.package));
        if !same {
            self.respond(id, 489, Vec::new()).await;
            return;
        }
        if self.current() == NotifierState::Terminated {
            self.respond(id, 481, Vec::new()).await;
            return;
        }
        let asked = request
            .typed::<Expires>()
            .and_then(Result::ok)
            .map_or(self.max_expires, |e| e.0);
        if asked != 0 && asked < self.min_expires {
            self.respond(id, 423, vec![Header::typed(&MinExpires(self.min_expires))])
                .await;
            return;
        }
        let granted = asked.min(self.max_expires);
        self.respond(id, 200, vec![Header::typed(&Expires(granted))])
            .await;
        if granted == 0 {
            self.queue_terminated("timeout", None);
        } else {
            self.expires_at = Instant::now() + Duration::from_secs(u64::from(granted));
            self.queue_current(None);
        }
    }
}
