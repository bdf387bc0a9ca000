//! A task's bounded channel (a session's, a subscription's, a notifier's), both ways in: the
//! driver's inputs to it (one sender, which never waits: a full mailbox refuses) and its
//! handles' commands (any number of senders, weak ones for referrals, which wait for room).
//! One receiver, the task.
//!
//! `tokio::sync::mpsc` gives every channel a cache-padded shared state and a first block of
//! 32 slots: about 800 bytes per call before anything is sent, held for as long as the call
//! lasts. A mailbox is one small allocation; its buffer exists only while items wait, and is
//! let go when the task has taken them all. The error types are tokio's, so a caller matches
//! on them as with tokio's channels.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

pub(crate) use tokio::sync::mpsc::error::{SendError, TrySendError};

/// A mailbox's state. Each call has two mailboxes for its whole life, and a held call's are
/// empty for hours: what only a burst or a flood needs is boxed, so an idle mailbox is one
/// 80-byte allocation (it was 128).
struct State<T> {
    /// What waits for the task: no buffer (and no box) while nothing does.
    #[allow(clippy::box_collection)] // 8 bytes in every mailbox instead of 32: the point
    items: Option<Box<VecDeque<T>>>,
    /// The task waiting for a command.
    receiver: Option<Waker>,
    /// Senders waiting for room (each pending `send` once): only a flooded mailbox has any.
    #[allow(clippy::box_collection)] // 8 bytes instead of 24, as above
    senders_waiting: Option<Box<Vec<Waker>>>,
    /// Strong senders alive; at zero the receiver gets what is queued, then `None`.
    senders: u32,
    /// The most items that wait at once.
    capacity: u32,
    receiver_gone: bool,
}

impl<T> State<T> {
    fn len(&self) -> usize {
        self.items.as_ref().map_or(0, |q| q.len())
    }

    fn full(&self) -> bool {
        self.len() >= self.capacity as usize
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
}

/// A weak, type-erased sender of `U` into a mailbox of some `T: From<U>`: a lower layer
/// posts to a task whose command type it cannot name (a media handler ending its session).
/// Made by [`WeakMailbox::poster`], with no allocation.
pub(crate) type WeakPost<U> = Weak<dyn Post<U>>;

/// What a [`WeakPost`] reaches.
pub(crate) trait Post<U>: Send + Sync {
    /// Queues `u` as the mailbox's item while a strong sender is alive and there is room;
    /// else drops it (the task is gone, or going).
    fn post(&self, u: U);
}

impl<T: From<U> + Send, U> Post<U> for Inner<T> {
    fn post(&self, u: U) {
        let s = self.lock();
        if s.senders == 0 || s.receiver_gone || s.full() {
            return;
        }
        self.deliver(s, T::from(u));
    }
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` (the caller has checked for room) and wakes the task, outside the lock.
    fn deliver(&self, mut s: MutexGuard<'_, State<T>>, item: T) {
        s.items.get_or_insert_with(Default::default).push_back(item);
        let waker = s.receiver.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A mailbox holding at most `capacity` commands.
pub(crate) fn mailbox<T>(capacity: usize) -> (Mailbox<T>, MailboxReceiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            items: None,
            receiver: None,
            senders_waiting: None,
            senders: 1,
            capacity: capacity.clamp(1, u32::MAX as usize) as u32,
            receiver_gone: false,
        }),
    });
    (
        Mailbox {
            inner: inner.clone(),
        },
        MailboxReceiver { inner },
    )
}

/// A sending end; clones are more senders.
pub(crate) struct Mailbox<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Mailbox<T> {
    /// Queues `item`, waiting for room when the mailbox is full; the item comes back when
    /// the task is gone.
    pub(crate) async fn send(&self, item: T) -> Result<(), SendError<T>> {
        let mut item = Some(item);
        poll_fn(|cx| {
            let Some(it) = item.take() else {
                return Poll::Ready(Ok(()));
            };
            match self.push(it, Some(cx)) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Closed(it)) => Poll::Ready(Err(SendError(it))),
                Err(TrySendError::Full(it)) => {
                    item = Some(it);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Queues `item` unless the mailbox is full or the task is gone.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.push(item, None)
    }

    fn push(&self, item: T, cx: Option<&mut Context<'_>>) -> Result<(), TrySendError<T>> {
        let mut s = self.inner.lock();
        if s.receiver_gone {
            return Err(TrySendError::Closed(item));
        }
        if s.full() {
            if let Some(cx) = cx {
                let waiting = s.senders_waiting.get_or_insert_with(Default::default);
                if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    waiting.push(cx.waker().clone());
                }
            }
            return Err(TrySendError::Full(item));
        }
        self.inner.deliver(s, item);
        Ok(())
    }

    /// A sender that does not keep the mailbox open.
    pub(crate) fn downgrade(&self) -> WeakMailbox<T> {
        WeakMailbox {
            inner: Arc::downgrade(&self.inner),
        }
    }
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        self.inner.lock().senders += 1;
        Mailbox {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.senders = s.senders.saturating_sub(1);
        let waker = if s.senders == 0 {
            s.receiver.take()
        } else {
            None
        };
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

/// A sender that does not keep the mailbox open (a referral kept after its call).
pub(crate) struct WeakMailbox<T> {
    inner: Weak<Inner<T>>,
}

impl<T: Send + 'static> WeakMailbox<T> {
    /// This sender, weak and type-erased: it posts a `U`, made into the mailbox's item.
    pub(crate) fn poster<U>(&self) -> WeakPost<U>
    where
        T: From<U>,
    {
        self.inner.clone()
    }
}

impl<T> WeakMailbox<T> {
    /// A sender, while a strong one is still alive.
    pub(crate) fn upgrade(&self) -> Option<Mailbox<T>> {
        let inner = self.inner.upgrade()?;
        {
            let mut s = inner.lock();
            if s.senders == 0 {
                return None;
            }
            s.senders += 1;
        }
        Some(Mailbox { inner })
    }
}

impl<T> Clone for WeakMailbox<T> {
    fn clone(&self) -> Self {
        WeakMailbox {
            inner: self.inner.clone(),
        }
    }
}

/// The task's end.
pub(crate) struct MailboxReceiver<T> {
    inner: Arc<Inner<T>>,
}

impl<T> MailboxReceiver<T> {
    /// The next command; `None` once every strong sender is gone and the mailbox is empty.
    /// Cancel-safe: a command is taken only when this returns it.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`MailboxReceiver::recv`] as a poll: the next command if one waits (or `None` at the
    /// end), else `cx`'s waker is kept to be woken by the next one.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.inner.lock();
        if let Some(item) = s.items.as_mut().and_then(|q| q.pop_front()) {
            let waiting = s.senders_waiting.take();
            drop(s);
            for w in waiting.into_iter().flat_map(|w| *w) {
                w.wake();
            }
            return Poll::Ready(Some(item));
        }
        // an idle task keeps no buffer: a held call waits here for hours
        s.items = None;
        if s.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut s.receiver {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for MailboxReceiver<T> {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.receiver_gone = true;
        let items = std::mem::take(&mut s.items);
        let waiting = s.senders_waiting.take();
        drop(s);
        drop(items);
        for w in waiting.into_iter().flat_map(|w| *w) {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for MailboxReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_arrive_in_order_and_the_end_comes_with_the_last_strong_sender() {
        let (tx, mut rx) = mailbox(4);
        let tx2 = tx.clone();
        let weak = tx.downgrade();
        tx.send(1).await.unwrap();
        tx2.try_send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        drop(tx);
        // a clone still holds it open, and a weak sender can still reach it
        let up = weak.upgrade().expect("a strong sender is alive");
        up.try_send(3).unwrap();
        drop(up);
        drop(tx2);
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, None);
        assert!(weak.upgrade().is_none(), "no strong sender left");
    }

    /// A mailbox item made from what a poster posts.
    #[derive(Debug, PartialEq)]
    struct Item(String);

    impl From<&'static str> for Item {
        fn from(s: &'static str) -> Item {
            Item(s.to_owned())
        }
    }

    #[tokio::test]
    async fn a_poster_reaches_the_task_while_a_strong_sender_lives_and_never_overfills() {
        let (tx, mut rx) = mailbox::<Item>(1);
        let post: WeakPost<&'static str> = tx.downgrade().poster();
        post.upgrade().unwrap().post("media gone");
        // full: dropped, not waited for
        post.upgrade().unwrap().post("again");
        assert_eq!(rx.recv().await, Some(Item("media gone".into())));
        drop(tx);
        // no strong sender: the task is ending, the post is dropped
        post.upgrade().unwrap().post("late");
        assert_eq!(rx.recv().await, None);
        drop(rx);
        assert!(post.upgrade().is_none(), "the mailbox is gone");
    }

    #[tokio::test]
    async fn a_full_mailbox_refuses_try_send_and_makes_send_wait_for_room() {
        let (tx, mut rx) = mailbox(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        let sender = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(3).await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert!(
            !sender.is_finished(),
            "the send waits while the mailbox is full"
        );
        assert_eq!(rx.recv().await, Some(1));
        assert!(sender.await.unwrap(), "room made: the waiting send went in");
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_send_and_on_close() {
        let (tx, mut rx) = mailbox::<u32>(4);
        let waiter = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn a_gone_task_gives_the_command_back_and_frees_what_was_queued() {
        let (tx, rx) = mailbox(1);
        let queued = Arc::new(());
        tx.try_send(queued.clone()).unwrap();
        let waiting = {
            let tx = tx.clone();
            let item = Arc::new(());
            tokio::spawn(async move { tx.send(item).await.is_err() })
        };
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(Arc::strong_count(&queued), 1, "the queued command is freed");
        assert!(
            waiting.await.unwrap(),
            "the waiting send learns the task is gone"
        );
        assert!(matches!(
            tx.try_send(Arc::new(())),
            Err(TrySendError::Closed(_))
        ));
    }
}
