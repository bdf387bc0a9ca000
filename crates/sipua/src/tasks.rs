//! What every handle-plus-task object of the API shares (a session, a subscription, a
//! notifier, a registerer's refreshes): the one-shot reply of a command, asking a task and
//! awaiting its answer, a slot for a background task, an optional timer. Below the driver
//! and the API alike: it imports neither.

use tokio::sync::oneshot;

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
}

/// Sleeps until `at`, or forever without one (a `select!` arm for an optional timer).
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
