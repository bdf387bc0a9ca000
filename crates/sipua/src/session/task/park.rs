//! A held call without a task: once a session is established, has been idle for [`IDLE`]
//! and its next deadline (the session timer's refresh or expiry, RFC 4028 §10; a re-offer's
//! retry after glare, RFC 3261 §14.1) is further than that, its task ends and the session waits as
//! a plain value, woken by its next command or driver input, or by the driver at that
//! deadline ([`Command::WakeAt`]: the driver keeps one timer for all parked sessions).
//!
//! The session's two mailboxes are polled with a waker of its own ([`Park`]); the session
//! is left in that waker, and its task returns. What wakes it spawns a new task on the same
//! runtime that goes on with the session's loop. A held call then keeps neither a task
//! cell nor the loop's future (about 650 bytes), at the price of one spawn when it wakes
//! (its BYE, usually).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::{Command, SessionCommand, SessionInput, Task};

/// What woke the session's loop.
pub(super) enum Next {
    /// A driver input, or `None` once the driver is gone.
    Input(Option<SessionInput>),
    /// A command from a handle, or `None` once every handle is gone.
    Command(Option<Box<SessionCommand>>),
    /// The session's one timer fired.
    Timer,
}

/// A parked session, as the waker its mailboxes hold.
struct Park {
    task: Mutex<Option<Box<Task>>>,
    runtime: tokio::runtime::Handle,
}

impl Wake for Park {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // the first wake takes the session; later ones (the other mailbox) find none
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let span = task.span.clone();
            // on a runtime that is shutting down the task is dropped at once, and the
            // session with it, as a waiting task's would be
            drop(self.runtime.spawn(tracing::Instrument::instrument(
                Box::pin(task.resume()),
                span,
            )));
        }
    }
}

/// An established session parks once it has been idle this long, unless its next
/// deadline is nearer than this: parking is for the long wait of a held call, not for the
/// messages of a call's set-up and end (a short call never parks, and costs nothing more).
pub(super) const IDLE: Duration = Duration::from_secs(2);

/// What [`park`] did.
pub(super) enum Parked {
    /// The session waits without a task.
    Yes,
    /// It goes on in this task: with what already waited, or (`None`) to wait as usual,
    /// when the driver could not take its wake-up time.
    No(Box<Task>, Option<Next>),
}

/// Parks `task`, to be woken by its next command or input, or by the driver at
/// `deadline`.
pub(super) fn park(mut task: Box<Task>, deadline: Option<Instant>) -> Parked {
    if let Some(at) = deadline.filter(|at| task.wake_asked != Some(*at)) {
        let asked = task
            .shared
            .commands
            .try_send(Command::WakeAt { key: task.key, at });
        if asked.is_err() {
            // a full (or gone) driver queue: this time the task waits for its own timer
            return Parked::No(task, None);
        }
        task.wake_asked = Some(at);
    }
    let parked = Arc::new(Park {
        task: Mutex::new(None),
        runtime: tokio::runtime::Handle::current(),
    });
    let waker = Waker::from(parked.clone());
    let mut cx = Context::from_waker(&waker);
    // held while the mailboxes learn the waker: a wake from another thread meanwhile waits
    // here until the session is in place to be taken
    let mut slot = parked.task.lock().unwrap_or_else(|e| e.into_inner());
    if let Poll::Ready(input) = task.inputs.poll_recv(&mut cx) {
        return Parked::No(task, Some(Next::Input(input)));
    }
    if !task.handles_gone {
        if let Poll::Ready(cmd) = task.commands.poll_recv(&mut cx) {
            return Parked::No(task, Some(Next::Command(cmd)));
        }
    }
    *slot = Some(task);
    Parked::Yes
}
