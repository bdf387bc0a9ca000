//! What every handle-plus-task object of the API shares (a session, a subscription, a
//! notifier, a registerer's refreshes): the one-shot reply of a command, the handle to a
//! task ([`TaskHandle`]: its command mailbox and watched state, asked and read the same
//! way for all), a slot for a background task and the one refresh scheduler of
//! registrations, publications and subscriptions, an optional timer. Below the driver
//! and the API alike: it imports neither.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::mailbox::Mailbox;

use crate::error::Error;

/// Where a task sends the answer to one command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Sends a handle's command to its task (a session, subscription or notifier) and awaits
/// the reply; a task that is gone is [`Error::SessionTerminated`].
pub(crate) async fn ask_task<C, T>(
    commands: &Mailbox<C>,
    make: impl FnOnce(Reply<T>) -> C,
) -> Result<T, Error> {
    let (tx, rx) = oneshot::channel();
    commands
        .send(make(tx))
        .await
        .map_err(|_| Error::SessionTerminated)?;
    rx.await.map_err(|_| Error::SessionTerminated)?
}

/// A task's state as its handles see it (a session's, a subscription's, a notifier's): read
/// at any time, and followed through tokio's `watch` (SIP.js `stateChange`), which is made
/// only when a handle first follows it: most held calls are never followed, and a `watch`
/// costs about 350 bytes. Once the task is gone ([`StateSender`] dropped) every receiver sees
/// the channel closed, as with a `watch` whose sender went.
pub(crate) struct Watched<S> {
    inner: Mutex<WatchedState<S>>,
}

struct WatchedState<S> {
    value: S,
    /// The `watch` of handles following the state, once one asked.
    tx: Option<watch::Sender<S>>,
    /// The task is gone.
    closed: bool,
}

impl<S: Copy + Send + Sync> Watched<S> {
    fn lock(&self) -> MutexGuard<'_, WatchedState<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state now.
    pub(crate) fn get(&self) -> S {
        self.lock().value
    }

    /// A receiver of the state's changes, made with the first.
    pub(crate) fn subscribe(&self) -> watch::Receiver<S> {
        let mut s = self.lock();
        if s.closed {
            // what the task last published, and the channel closed
            return watch::channel(s.value).1;
        }
        let value = s.value;
        s.tx.get_or_insert_with(|| watch::channel(value).0)
            .subscribe()
    }
}

/// The task's end of a [`Watched`] state: publishes, and closes it when dropped.
pub(crate) struct StateSender<S: Copy + Send + Sync>(Arc<Watched<S>>);

/// A state starting at `initial`: the task's sender and what its handles hold.
pub(crate) fn state_channel<S: Copy + Send + Sync>(
    initial: S,
) -> (StateSender<S>, Arc<Watched<S>>) {
    let watched = Arc::new(Watched {
        inner: Mutex::new(WatchedState {
            value: initial,
            tx: None,
            closed: false,
        }),
    });
    (StateSender(watched.clone()), watched)
}

impl<S: Copy + Send + Sync> StateSender<S> {
    /// The state now.
    pub(crate) fn get(&self) -> S {
        self.0.get()
    }

    /// Sets the state, telling the handles that follow it; returns the one before.
    pub(crate) fn send_replace(&self, value: S) -> S {
        let mut s = self.0.lock();
        let old = std::mem::replace(&mut s.value, value);
        if let Some(tx) = &s.tx {
            tx.send_replace(value);
        }
        old
    }

    /// Changes the state in place; the handles that follow it hear of it if `change` says
    /// it changed.
    pub(crate) fn send_if_modified(&self, change: impl FnOnce(&mut S) -> bool) -> bool {
        let mut s = self.0.lock();
        if !change(&mut s.value) {
            return false;
        }
        let value = s.value;
        if let Some(tx) = &s.tx {
            tx.send_replace(value);
        }
        true
    }

    /// What the handles hold.
    pub(crate) fn watched(&self) -> Arc<Watched<S>> {
        self.0.clone()
    }
}

impl<S: Copy + Send + Sync> Drop for StateSender<S> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.closed = true;
        // receivers see the channel closed
        s.tx = None;
    }
}

/// What a handle to a task holds, whatever the task (a session, a subscription, a
/// notifier): the mailbox its commands go to and the state the task publishes. The task
/// ends (and disposes of what it holds) once every handle's mailbox sender is gone.
pub(crate) struct TaskHandle<C, S> {
    commands: Mailbox<C>,
    state: Arc<Watched<S>>,
}

impl<C, S: Copy + Send + Sync> TaskHandle<C, S> {
    pub(crate) fn new(commands: Mailbox<C>, state: Arc<Watched<S>>) -> TaskHandle<C, S> {
        TaskHandle { commands, state }
    }

    /// Sends the command `make` builds around its reply, and awaits that reply (see
    /// [`ask_task`]).
    pub(crate) async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> C) -> Result<T, Error> {
        ask_task(&self.commands, make).await
    }

    /// The task's state now.
    pub(crate) fn state(&self) -> S {
        self.state.get()
    }

    /// A receiver of the task's state changes (SIP.js `stateChange`).
    pub(crate) fn state_change(&self) -> watch::Receiver<S> {
        self.state.subscribe()
    }

    /// The command mailbox itself: for a command sent without waiting for room or reply.
    pub(crate) fn commands(&self) -> &Mailbox<C> {
        &self.commands
    }
}

/// One background task of a handle (a refresh, a retry): a new one replaces it, and the
/// one replaced or cancelled is aborted.
#[derive(Default)]
pub(crate) struct TaskSlot(std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>);

impl TaskSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::JoinHandle<()>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `task` in the slot, aborting the one there.
    pub(crate) fn replace(&self, task: tokio::task::JoinHandle<()>) {
        if let Some(old) = self.lock().replace(task) {
            old.abort();
        }
    }

    /// Aborts the task in the slot, if any.
    pub(crate) fn cancel(&self) {
        if let Some(t) = self.lock().take() {
            t.abort();
        }
    }

    /// Empties the slot without aborting: for the task in it, which must not abort itself.
    pub(crate) fn forget(&self) {
        drop(self.lock().take());
    }

    /// The refresh scheduler of registrations and publications: runs `run` on `owner` after
    /// `after`, replacing (aborting) any run pending in the owner's slot (which `slot`
    /// finds). Nothing runs when the owner is gone by then. While it runs it stays in the
    /// slot, so that cancelling the slot (an unregister) stops a refresh under way too; a
    /// `run` that must outlive a cancel of its own slot calls [`TaskSlot::forget`] first.
    pub(crate) fn schedule<T, F, Fut>(
        owner: &Arc<T>,
        slot: fn(&T) -> &TaskSlot,
        after: Duration,
        run: F,
    ) where
        T: Send + Sync + 'static,
        F: FnOnce(Arc<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let weak: Weak<T> = Arc::downgrade(owner);
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(owner) = weak.upgrade() else { return };
            run(owner).await;
        });
        slot(owner).replace(task);
    }
}

/// When to refresh what was granted for `granted` seconds (a registration, a publication, a
/// subscription): at `percent` of the interval, but at least 5 s before it ends when that
/// leaves more than half of it, and never sooner than a second. Registrations use SIP.js's
/// 99 % by default (`refresh_frequency`), publications and subscriptions 90 % (RFC 3903
/// §4.1 and RFC 6665 §4.1.2.2 leave it to us).
pub(crate) fn refresh_after(granted: u32, percent: u8) -> Duration {
    let ms = u64::from(granted) * 1000;
    let at = (ms * u64::from(percent.min(100)) / 100).min(ms.saturating_sub(5000).max(ms / 2));
    Duration::from_millis(at.max(1000))
}

/// Sleeps until `at`, or forever without one (a `select!` arm for an optional timer).
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_followed_from_the_first_subscriber_and_closes_with_its_task() {
        let (tx, watched) = state_channel(1u8);
        tx.send_replace(2);
        assert_eq!(watched.get(), 2);
        // the first follower sees the state now, then each change
        let mut rx = watched.subscribe();
        assert_eq!(*rx.borrow_and_update(), 2);
        assert!(!tx.send_if_modified(|_| false));
        assert!(!rx.has_changed().unwrap());
        assert!(tx.send_if_modified(|s| {
            *s = 3;
            true
        }));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 3);
        let mut late = watched.subscribe();
        assert_eq!(*late.borrow_and_update(), 3);
        // the task gone: every receiver, and any made after, sees the channel closed with
        // the last state
        drop(tx);
        assert!(rx.has_changed().is_err() && late.has_changed().is_err());
        let after = watched.subscribe();
        assert!(after.has_changed().is_err());
        assert_eq!(*after.borrow(), 3);
        assert_eq!(watched.get(), 3);
    }

    #[test]
    fn refreshes_come_at_the_percentage_with_a_margin_and_never_before_half() {
        // SIP.js's 99 % of an hour, 90 % of an hour
        assert_eq!(refresh_after(3600, 99), Duration::from_secs(3564));
        assert_eq!(refresh_after(3600, 90), Duration::from_secs(3240));
        // at least 5 s early: 99 % of a minute would leave 0.6 s
        assert_eq!(refresh_after(60, 99), Duration::from_secs(55));
        // but not before half of a short interval
        assert_eq!(refresh_after(8, 90), Duration::from_secs(4));
        // a user who asks for early refreshes gets them
        assert_eq!(refresh_after(3600, 10), Duration::from_secs(360));
        // and never a busy loop
        assert_eq!(refresh_after(0, 90), Duration::from_secs(1));
        assert_eq!(refresh_after(1, 90), Duration::from_secs(1));
    }
}
