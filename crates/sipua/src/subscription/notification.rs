//! One NOTIFY as the subscriber's delegate and `next_notification` see it (SIP.js
//! `Notification`, RFC 6665 §4.1.3): the request, its `Subscription-State` and body, and the
//! answer the application chooses (200 unless it rejects it).

use sipua_message::header::SubscriptionState as StateHeader;
use sipua_message::Request;

use crate::body::content_type_of;

/// One NOTIFY (SIP.js `Notification`): the resource's state as the notifier reports it.
#[derive(Debug)]
pub struct Notification {
    request: Request,
    /// The answer a delegate chose (200 unless it rejected).
    status: std::sync::atomic::AtomicU16,
}

impl Clone for Notification {
    fn clone(&self) -> Notification {
        Notification {
            request: self.request.clone(),
            status: std::sync::atomic::AtomicU16::new(self.status()),
        }
    }
}

impl Notification {
    pub(super) fn new(request: Request) -> Notification {
        Notification {
            request,
            status: std::sync::atomic::AtomicU16::new(200),
        }
    }

    /// Answers it 200 OK (what happens unless the delegate rejects it).
    pub fn accept(&self) {
        self.status.store(200, std::sync::atomic::Ordering::Relaxed);
    }

    /// Answers it with `status` (400–699; anything lower is taken as 400): the body was not
    /// understood (415), the event is not wanted (489)...
    pub fn reject(&self, status: u16) {
        self.status
            .store(status.clamp(400, 699), std::sync::atomic::Ordering::Relaxed);
    }

    /// The status it is answered with.
    pub(super) fn status(&self) -> u16 {
        self.status.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The NOTIFY itself.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Its `Subscription-State` (`active`, `pending` or `terminated`, with `expires`,
    /// `reason`, `retry-after`).
    pub fn subscription_state(&self) -> Option<StateHeader> {
        self.request.typed::<StateHeader>().and_then(Result::ok)
    }

    /// The body (the event package's document: PIDF, dialog-info, message summary...).
    pub fn body(&self) -> &[u8] {
        self.request.body()
    }

    /// The body's media type, e.g. `application/pidf+xml`.
    pub fn content_type(&self) -> Option<String> {
        self.request.content_type().map(|t| content_type_of(&t))
    }
}
