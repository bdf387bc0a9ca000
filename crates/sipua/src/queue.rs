//! The driver's queue to one task (a session, subscription or notifier): a bounded
//! single-producer, single-consumer queue.
//!
//! `tokio::sync::mpsc` allocates its slots 32 at a time, so every call paid for a block of 32
//! inputs it almost never used (a few kilobytes, from the slow end of the allocator). This
//! queue starts empty and grows with what is queued, up to its bound; the driver never waits on
//! it (a full queue refuses), the task awaits [`QueueReceiver::recv`].

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    /// The receiver waiting for an item.
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    capacity: usize,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue holding at most `capacity` items.
pub(crate) fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            items: VecDeque::new(),
            waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
        capacity,
    });
    (
        QueueSender {
            inner: inner.clone(),
        },
        QueueReceiver { inner },
    )
}

/// The driver's end. Dropping it ends the queue: the receiver gets what is queued, then `None`.
pub(crate) struct QueueSender<T> {
    inner: Arc<Inner<T>>,
}

impl<T> QueueSender<T> {
    /// Queues `item` unless the queue is full or its receiver is gone (then `item` comes back).
    pub(crate) fn try_send(&self, item: T) -> Result<(), T> {
        let mut s = self.inner.lock();
        if s.receiver_gone || s.items.len() >= self.inner.capacity {
            return Err(item);
        }
        s.items.push_back(item);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.sender_gone = true;
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender").finish_non_exhaustive()
    }
}

/// The task's end.
pub(crate) struct QueueReceiver<T> {
    inner: Arc<Inner<T>>,
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once the sender is gone and the queue is empty. Cancel-safe: an
    /// item is taken only when this returns it.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut s = self.inner.lock();
            if let Some(item) = s.items.pop_front() {
                return Poll::Ready(Some(item));
            }
            if s.sender_gone {
                return Poll::Ready(None);
            }
            // an idle task keeps no buffer: a held call waits here for hours
            if s.items.capacity() > 0 {
                s.items = VecDeque::new();
            }
            match &mut s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.receiver_gone = true;
        // what was queued goes now, not when the driver lets go of its end
        let items = std::mem::take(&mut s.items);
        drop(s);
        drop(items);
    }
}

impl<T> std::fmt::Debug for QueueReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_up_to_the_bound_then_the_end() {
        let (tx, mut rx) = queue(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert_eq!(tx.try_send(3), Err(3), "a full queue refuses");
        assert_eq!(rx.recv().await, Some(1));
        assert!(tx.try_send(4).is_ok(), "room again after a receive");
        drop(tx);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, None, "the sender is gone");
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_send_and_on_close() {
        let (tx, mut rx) = queue::<u32>(4);
        let waiter = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(waiter.await.unwrap(), (Some(7), None));
    }

    #[test]
    fn a_gone_receiver_refuses_and_frees_what_was_queued() {
        let (tx, rx) = queue(4);
        let item = Arc::new(());
        tx.try_send(item.clone()).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1, "the queued copy is dropped");
        assert!(tx.try_send(item).is_err());
    }
}
