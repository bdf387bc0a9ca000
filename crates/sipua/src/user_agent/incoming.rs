//! `IncomingRequest`: a request handed to a delegate to read and answer (SIP.js `Message`,
//! `Info`, `Bye`, `Notification`), answered as the delegate's default says when dropped.

use super::*;

/// A request handed to a delegate to read and answer (SIP.js `Message`, `Info`, `Bye`,
/// `Notification`): a MESSAGE or NOTIFY outside a session, or a BYE, INFO, MESSAGE or NOTIFY
/// inside one. Answer it with [`accept`](Self::accept) or [`reject`](Self::reject), with
/// headers and a body through [`accept_with`](Self::accept_with) and
/// [`reject_with`](Self::reject_with); dropped unanswered, it is answered as the delegate's
/// default says (200). It may be kept and
/// answered later from another task; until then the peer retransmits and then waits.
pub struct IncomingRequest {
    request: Request,
    id: TransactionId,
    shared: Arc<Shared>,
    answered: bool,
    /// The answer when dropped unanswered.
    default_status: u16,
}

/// An incoming MESSAGE (RFC 3428), in or out of a session (SIP.js `Message`).
pub type Message = IncomingRequest;
/// An INFO in a session (RFC 6086; SIP.js `Info`), DTMF in a call, say.
pub type Info = IncomingRequest;
/// A BYE: the peer hung up (SIP.js `Bye`). The session ends whatever the answer.
pub type Bye = IncomingRequest;

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("method", self.request.method())
            .finish_non_exhaustive()
    }
}

impl IncomingRequest {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: TransactionId,
        request: Request,
        default_status: u16,
    ) -> IncomingRequest {
        IncomingRequest {
            request,
            id,
            shared,
            answered: false,
            default_status,
        }
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Its body (the text of a MESSAGE, the DTMF of an INFO...).
    pub fn body(&self) -> &[u8] {
        self.request.body()
    }

    /// Answers 200 OK.
    pub fn accept(mut self) {
        self.send(200, RequestOptions::default());
    }

    /// Answers with `status` (400–699).
    pub fn reject(mut self, status: u16) {
        self.send(status, RequestOptions::default());
    }

    /// Answers 200 OK with these headers and body.
    pub fn accept_with(mut self, options: RequestOptions) {
        self.send(200, options);
    }

    /// Answers with `status` (400–699) and these headers and body.
    pub fn reject_with(mut self, status: u16, options: RequestOptions) {
        self.send(status, options);
    }

    fn send(&mut self, status: u16, options: RequestOptions) {
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        let mut headers = options.extra_headers;
        headers.push(self.shared.server_line.clone());
        // a body that does not make a message is left out rather than losing the answer
        let body = body_of(options.body.map(|b| (b.content_type, b.body))).unwrap_or_default();
        // nobody waits for the outcome: a response that cannot go is the peer's to retry
        let _ = self.shared.commands.try_send(Command::Respond {
            reliable: false,
            key: None,
            id: self.id,
            status,
            reason: None,
            headers,
            body,
            reply: None,
        });
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        self.send(self.default_status, RequestOptions::default());
    }
}
