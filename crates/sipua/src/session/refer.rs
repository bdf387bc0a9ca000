//! Transfer: REFER inside a session (RFC 3515) with its implicit subscription, whose NOTIFYs
//! carry the referred INVITE's progress as `message/sipfrag` (§2.4.4, §2.4.5), `Referred-By`
//! (RFC 3892), `Refer-Sub: false` (RFC 4488) to do without the NOTIFYs, and attended
//! transfer, where the Refer-To URI carries a `Replaces` header (RFC 3891 §5) naming the
//! dialog the new call replaces.
//!
//! The referrer gets a [`Referrer`] once the REFER is accepted, to follow the progress; the
//! recipient gets a [`Referral`] through [`SessionDelegate::on_refer`](super::SessionDelegate),
//! to accept or refuse, and to make the [`Inviter`] that carries the transfer out, whose
//! outcome is reported back without further work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sipua_message::header::{ReferTo, ReferredBy};
use sipua_message::{Header, HeaderName, NameAddr, Request, Response, Uri};
use tokio::sync::{mpsc, oneshot};

use super::{task, EndReason, Inviter, InviterOptions, Session, SessionCommand, SessionState};
use crate::error::Error;
use crate::user_agent::Shared;

/// Progress NOTIFYs kept for a [`Referrer`] before new ones are dropped.
pub(crate) const REFER_QUEUE: usize = 16;

/// Whom a REFER sends the peer to.
#[derive(Debug, Clone)]
pub enum ReferTarget {
    /// Blind transfer: a URI to call.
    Uri(Uri),
    /// Attended transfer: the peer of this other session, whose dialog the new call
    /// replaces (RFC 3891).
    Session(Session),
}

impl From<Uri> for ReferTarget {
    fn from(u: Uri) -> ReferTarget {
        ReferTarget::Uri(u)
    }
}

impl From<&Session> for ReferTarget {
    fn from(s: &Session) -> ReferTarget {
        ReferTarget::Session(s.clone())
    }
}

/// Options of [`Session::refer`] (SIP.js `SessionReferOptions`).
#[derive(Debug, Clone, Default)]
pub struct SessionReferOptions {
    /// Headers added to the REFER.
    pub extra_headers: Vec<Header>,
    /// Ask for no progress NOTIFYs (`Refer-Sub: false`, RFC 4488); the peer may still
    /// send them if it does not support that.
    pub no_subscription: bool,
}

/// One progress report of a transfer: the status line of the referred request's latest
/// response, from a NOTIFY's `message/sipfrag` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferNotification {
    /// Its status code (100, 180, 200, 486...).
    pub status: u16,
    /// Its reason phrase.
    pub reason: String,
    /// The subscription ended with this NOTIFY: no more will come.
    pub terminated: bool,
}

impl ReferNotification {
    /// Reads a NOTIFY of the refer package; `None` when its body is not a sipfrag status
    /// line.
    pub(crate) fn parse(request: &Request, terminated: bool) -> Option<ReferNotification> {
        let body = std::str::from_utf8(request.body()).ok()?;
        let line = body.lines().next()?.trim();
        let mut parts = line.splitn(3, ' ');
        if !parts.next()?.eq_ignore_ascii_case("SIP/2.0") {
            return None;
        }
        let status: u16 = parts.next()?.parse().ok()?;
        if !(100..700).contains(&status) {
            return None;
        }
        Some(ReferNotification {
            status,
            reason: parts.next().unwrap_or("").to_owned(),
            terminated,
        })
    }
}

/// A REFER of ours that the peer accepted: follow the transfer's progress with
/// [`Referrer::next_notification`] or wait for its end with [`Referrer::outcome`].
#[derive(Debug)]
pub struct Referrer {
    response: Response,
    notifications: tokio::sync::Mutex<mpsc::Receiver<ReferNotification>>,
}

impl Referrer {
    pub(crate) fn new(response: Response, rx: mpsc::Receiver<ReferNotification>) -> Referrer {
        Referrer {
            response,
            notifications: tokio::sync::Mutex::new(rx),
        }
    }

    /// The REFER's 2xx.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// Whether the peer will report progress: not when it agreed to `Refer-Sub: false`.
    pub fn subscribed(&self) -> bool {
        !self
            .response
            .headers()
            .get(&HeaderName::ReferSub)
            .is_some_and(|v| v.value().trim_ascii().eq_ignore_ascii_case(b"false"))
    }

    /// The next progress report; `None` once the subscription has ended.
    pub async fn next_notification(&self) -> Option<ReferNotification> {
        self.notifications.lock().await.recv().await
    }

    /// Waits for the transfer's final report: `Ok` when the referred call was answered
    /// (2xx), [`Error::Rejected`] with its status otherwise, [`Error::SessionTerminated`]
    /// when the reports stop without one (the session ended, or no subscription).
    pub async fn outcome(&self) -> Result<(), Error> {
        while let Some(n) = self.next_notification().await {
            if n.status >= 200 {
                return if (200..300).contains(&n.status) {
                    Ok(())
                } else {
                    Err(Error::Rejected {
                        status: n.status,
                        reason: n.reason,
                        response: None,
                    })
                };
            }
        }
        Err(Error::SessionTerminated)
    }
}

/// A REFER from the peer (SIP.js `Referral`): where it wants us to go. [`accept`]
/// (202) or [`reject`] it, then [`make_inviter`] and invite: the new call's outcome is
/// NOTIFYed back to the peer. Dropping it unanswered refuses it (603).
///
/// [`accept`]: Referral::accept
/// [`reject`]: Referral::reject
/// [`make_inviter`]: Referral::make_inviter
pub struct Referral {
    request: Request,
    id: sipua_proto::endpoint::TransactionId,
    refer_to: NameAddr,
    /// The session's commands; weak, so that a referral kept around does not keep the
    /// session from being disposed of when its handles go.
    commands: crate::mailbox::WeakMailbox<Box<SessionCommand>>,
    shared: Arc<Shared>,
    answered: AtomicBool,
}

impl std::fmt::Debug for Referral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Referral")
            .field("refer_to", &self.refer_to.uri.to_string())
            .finish_non_exhaustive()
    }
}

impl Referral {
    /// Reads a REFER; `Err` carries the status to refuse it with (400 without exactly
    /// one Refer-To that parses, RFC 3515 §2.4.1).
    pub(crate) fn new(
        request: Request,
        id: sipua_proto::endpoint::TransactionId,
        commands: crate::mailbox::WeakMailbox<Box<SessionCommand>>,
        shared: Arc<Shared>,
    ) -> Result<Referral, u16> {
        let all = request.typed_all::<ReferTo>().map_err(|_| 400u16)?;
        let [refer_to] = <[ReferTo; 1]>::try_from(all).map_err(|_| 400u16)?;
        if refer_to.0.uri.as_sip().is_none() {
            return Err(416);
        }
        Ok(Referral {
            request,
            id,
            refer_to: refer_to.0,
            commands,
            shared,
            answered: AtomicBool::new(false),
        })
    }

    /// The REFER.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Where to go (the Refer-To, with any `Replaces` still in its URI).
    pub fn refer_to(&self) -> &NameAddr {
        &self.refer_to
    }

    /// Who asked (Referred-By, RFC 3892), as written.
    pub fn referred_by(&self) -> Option<String> {
        self.request
            .typed::<ReferredBy>()
            .and_then(Result::ok)
            .map(|r| r.0.to_string())
    }

    /// The dialog the new call is to replace (attended transfer): the Refer-To URI's
    /// `Replaces` header, unescaped (`call-id;to-tag=..;from-tag=..`).
    pub fn replaces(&self) -> Option<String> {
        let sip = self.refer_to.uri.as_sip()?;
        sip.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("replaces"))
            .map(|(_, v)| v.clone())
    }

    /// Whether the peer asked for no progress NOTIFYs (`Refer-Sub: false`, RFC 4488).
    fn no_subscription(&self) -> bool {
        self.request
            .headers()
            .get(&HeaderName::ReferSub)
            .is_some_and(|v| v.value().trim_ascii().eq_ignore_ascii_case(b"false"))
    }

    fn event_id(&self) -> u32 {
        self.request.cseq().seq
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), Error>>) -> SessionCommand,
    ) -> Result<(), Error> {
        let commands = self.commands.upgrade().ok_or(Error::SessionTerminated)?;
        crate::tasks::ask_task(&commands, |r| Box::new(make(r))).await
    }

    /// Accepts (202 Accepted) and reports `100 Trying` at once, as RFC 3515 §2.4.4 asks;
    /// with `Refer-Sub: false` the 202 says so and no NOTIFY follows.
    pub async fn accept(&self) -> Result<(), Error> {
        if self.answered.swap(true, Ordering::SeqCst) {
            return Err(Error::StateTransition {
                action: "accept a referral twice",
                state: SessionState::Established,
            });
        }
        let no_sub = self.no_subscription();
        let headers = if no_sub {
            vec![Header::new(HeaderName::ReferSub, "false")]
        } else {
            Vec::new()
        };
        let id = self.id;
        self.ask(|r| SessionCommand::Respond(id, 202, headers, r))
            .await?;
        if !no_sub {
            self.notify(100, "Trying", false).await?;
        }
        Ok(())
    }

    /// Refuses it (603 Decline, 403...).
    pub async fn reject(&self, status: u16) -> Result<(), Error> {
        if self.answered.swap(true, Ordering::SeqCst) {
            return Err(Error::StateTransition {
                action: "reject an answered referral",
                state: SessionState::Established,
            });
        }
        let id = self.id;
        self.ask(|r| SessionCommand::Respond(id, status, Vec::new(), r))
            .await
    }

    /// Reports progress by hand (a NOTIFY with `SIP/2.0 <status> <reason>`); `terminated`
    /// ends the implicit subscription. [`Referral::make_inviter`] does this itself.
    pub async fn notify(&self, status: u16, reason: &str, terminated: bool) -> Result<(), Error> {
        let (event_id, frag) = (self.event_id(), format!("SIP/2.0 {status} {reason}\r\n"));
        self.ask(|r| SessionCommand::ReferNotify {
            event_id,
            sipfrag: frag,
            terminated,
            reply: r,
        })
        .await
    }

    /// The call that carries the transfer out: to the Refer-To URI, whose headers
    /// (`Replaces` for an attended transfer, `Require`...) become the INVITE's as RFC 3261
    /// §19.1.5 says, with the REFER's Referred-By. Its outcome (200, or the failure) is
    /// NOTIFYed to the referrer once it is known. Call [`Inviter::invite`] to place it.
    pub fn make_inviter(&self, mut options: InviterOptions) -> Result<Inviter, Error> {
        let mut target = self.refer_to.uri.clone();
        if let Some(sip) = target.as_sip_mut() {
            for (name, value) in std::mem::take(&mut sip.headers) {
                if let Some(h) = uri_header(&name, value) {
                    options.extra_headers.push(h);
                }
            }
        }
        if let Some(by) = self.request.headers().get(&HeaderName::ReferredBy) {
            options.extra_headers.push(Header::new(
                HeaderName::ReferredBy,
                String::from_utf8_lossy(by.value()).into_owned(),
            ));
        }
        let session = task::spawn_inviter(self.shared.clone(), target, options)?;
        if !self.no_subscription() {
            let commands = self.commands.clone();
            let watched = session.clone();
            let event_id = self.event_id();
            tokio::spawn(async move {
                let (status, reason) = final_status(&watched).await;
                let (tx, _rx) = oneshot::channel();
                let Some(commands) = commands.upgrade() else {
                    return; // the session is gone: no one to tell
                };
                let _ = commands
                    .send(Box::new(SessionCommand::ReferNotify {
                        event_id,
                        sipfrag: format!("SIP/2.0 {status} {reason}\r\n"),
                        terminated: true,
                        reply: tx,
                    }))
                    .await;
            });
        }
        Ok(Inviter { session })
    }
}

impl Drop for Referral {
    fn drop(&mut self) {
        if !self.answered.swap(true, Ordering::SeqCst) {
            let (tx, _rx) = oneshot::channel();
            if let Some(c) = self.commands.upgrade() {
                let _ = c.try_send(Box::new(SessionCommand::Respond(
                    self.id,
                    603,
                    Vec::new(),
                    tx,
                )));
            }
        }
    }
}

/// A header of a URI as a header of the request it makes (RFC 3261 §19.1.5): those that
/// would rewrite the dialog or the transaction (From, Call-ID, Via, Route...) and `body`
/// are left out.
fn uri_header(name: &str, value: String) -> Option<Header> {
    const UNSAFE: &[&str] = &[
        "from",
        "to",
        "call-id",
        "cseq",
        "via",
        "contact",
        "route",
        "record-route",
        "max-forwards",
        "content-length",
        "content-type",
        "body",
    ];
    if name.is_empty() || UNSAFE.iter().any(|u| u.eq_ignore_ascii_case(name)) {
        return None;
    }
    Some(Header::new(HeaderName::from(name), value))
}

/// The status line that sums up how a referred call went.
async fn final_status(session: &Session) -> (u16, String) {
    let mut rx = session.state_change();
    let reached = rx
        .wait_for(|s| *s == SessionState::Established || *s == SessionState::Terminated)
        .await
        .map(|s| *s);
    match reached {
        Ok(SessionState::Established) => (200, "OK".into()),
        _ => match session.end_reason() {
            Some(EndReason::Rejected { status, reason }) => (status, reason),
            Some(EndReason::Timeout) => (408, "Request Timeout".into()),
            Some(EndReason::TransportError) => (503, "Service Unavailable".into()),
            _ => (487, "Request Terminated".into()),
        },
    }
}
