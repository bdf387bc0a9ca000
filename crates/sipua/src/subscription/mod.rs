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

use sipua_message::header::Event;
use sipua_message::{Header, Uri};
use tokio::sync::{mpsc, oneshot, watch};

use crate::body::body_of;
use crate::commands::{Command, SESSION_QUEUE};
use crate::error::Error;
use crate::sdh::BodyAndContentType;
use crate::tasks::TaskHandle;
use crate::user_agent::UserAgent;

mod notification;
mod task;

pub use notification::Notification;
use task::SubTask;

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
    task: TaskHandle<SubCommand, SubscriptionState>,
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
        let (state, state_rx) = crate::tasks::state_channel(SubscriptionState::Initial);
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
                task: TaskHandle::new(commands, state_rx),
                ended,
                notifications: tokio::sync::Mutex::new(notify_rx),
            }),
        })
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> SubCommand) -> Result<(), Error> {
        self.handle.task.ask(make).await
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
        self.handle.task.state()
    }

    /// Follows state changes (SIP.js `stateChange`).
    pub fn state_change(&self) -> watch::Receiver<SubscriptionState> {
        self.handle.task.state_change()
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
