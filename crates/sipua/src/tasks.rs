//! What every handle-plus-task object of the API shares (a session, a subscription, a
//! notifier, a registerer's refreshes): the one-shot reply of a command, the handle to a
//! task ([`TaskHandle`]: its command mailbox and watched state, asked and read the same
//! way for all), a slot for a background task and the one refresh scheduler of
//! registrations, publications and subscriptions, an optional timer. Below the driver
//! and the API alike: it imports neither.

use std::future::Future;
use std::sync::{Arc, Weak};
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

/// What a handle to a task holds, whatever the task (a session, a subscription, a
/// notifier): the mailbox its commands go to and the state the task publishes. The task
/// ends (and disposes of what it holds) once every handle's mailbox sender is gone.
pub(crate) struct TaskHandle<C, S> {
    commands: Mailbox<C>,
    state: watch::Receiver<S>,
}

impl<C, S: Copy> TaskHandle<C, S> {
    pub(crate) fn new(commands: Mailbox<C>, state: watch::Receiver<S>) -> TaskHandle<C, S> {
        TaskHandle { commands, state }
    }

    /// Sends the command `make` builds around its reply, and awaits that reply (see
    /// [`ask_task`]).
    pub(crate) async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> C) -> Result<T, Error> {
        ask_task(&self.commands, make).await
    }

    /// The task's state now.
    pub(crate) fn state(&self) -> S {
        *self.state.borrow()
    }

    /// A receiver of the task's state changes (SIP.js `stateChange`).
    pub(crate) fn state_change(&self) -> watch::Receiver<S> {
        self.state.clone()
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
