//! The subscriber's task (RFC 6665 §4.1): it owns one subscription's dialog and timers
//! (Timer N, refresh, expiry, the linger after the end), sends SUBSCRIBE and its refreshes,
//! answers the NOTIFYs, and acts on `Subscription-State` (see the parent module).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipua_message::header::{Event, Expires, MinExpires, SubscriptionState as StateHeader};
use sipua_message::{Header, HeaderName, Method, Request, Response, Uri};
use sipua_proto::dialog::{Dialog, DialogId};
use sipua_proto::endpoint::TransactionId;
use sipua_proto::ua::OutOfDialog;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{
    Notification, Reply, SubCommand, SubscriberOptions, SubscriptionState, Termination, MAX_423,
    TIMER_N,
};
use crate::body::body_of;
use crate::commands::{Command, SessionInput, SessionKey};
use crate::error::Error;
use crate::mailbox::MailboxReceiver;
use crate::tasks::sleep_until;
use crate::user_agent::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Initial,
    Refresh,
    Unsubscribe,
}

pub(super) struct SubTask {
    pub(super) key: SessionKey,
    pub(super) shared: Arc<Shared>,
    pub(super) target: Uri,
    pub(super) event: Event,
    pub(super) options: SubscriberOptions,
    pub(super) state: crate::tasks::StateSender<SubscriptionState>,
    pub(super) ended: Arc<Mutex<Option<Termination>>>,
    pub(super) notifications: mpsc::Sender<Notification>,
    pub(super) dialog: Option<DialogId>,
    /// Our SUBSCRIBE awaiting its final response, and who waits for it.
    pub(super) pending: Option<(TransactionId, Kind, Option<Reply>)>,
    /// The interval in force, in seconds.
    pub(super) expires: u32,
    pub(super) refresh_at: Option<Instant>,
    pub(super) expires_at: Option<Instant>,
    pub(super) timer_n: Option<Instant>,
    pub(super) resubscribe_at: Option<Instant>,
    /// After the end: NOTIFYs are still answered until then, then the dialog goes.
    pub(super) linger_until: Option<Instant>,
    pub(super) attempts_423: u8,
    pub(super) asked_expires: u32,
}

impl SubTask {
    fn current(&self) -> SubscriptionState {
        self.state.get()
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

    pub(super) async fn run(
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

    /// Sets the interval in force and when to refresh ([`crate::tasks::refresh_after`]: at
    /// 90 %, at least 5 s early when there is room, never before half-way).
    fn schedule(&mut self, expires: u32) {
        if self.current() == SubscriptionState::Terminated {
            return;
        }
        let now = Instant::now();
        self.expires = expires;
        self.refresh_at = Some(now + crate::tasks::refresh_after(expires, 90));
        self.expires_at = Some(now + Duration::from_secs(u64::from(expires)));
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
