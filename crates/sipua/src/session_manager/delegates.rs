//! The delegates the manager installs: on its user agent (calls, pages, connection) and on
//! each call (INFO DTMF, the rest passed to the application's own session delegate).

use std::sync::{Arc, Weak};

use sipua_message::{Request, Response};

use super::dtmf::{dtmf_of, Dtmf};
use super::Inner;
use crate::error::Error;
use crate::session::{Invitation, Referral, SessionDelegate};
use crate::user_agent::{IncomingRequest, UserAgentDelegate};

/// The user agent's delegate: forwards to the manager.
pub(super) struct AgentDelegate(pub(super) Weak<Inner>);

impl UserAgentDelegate for AgentDelegate {
    fn on_invite(&self, invitation: Invitation) {
        // without a manager the invitation is dropped, which refuses it (480)
        if let Some(inner) = self.0.upgrade() {
            inner.incoming(invitation);
        }
    }

    fn on_message(&self, message: IncomingRequest) {
        let request = message.request();
        let from = request.from().ok().map(|a| a.uri.clone());
        let text = String::from_utf8_lossy(request.body()).into_owned();
        message.accept();
        if let (Some(inner), Some(from)) = (self.0.upgrade(), from) {
            inner.tell(|d| d.on_message_received(&from, &text));
        }
    }

    fn on_connect(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.tell(|d| d.on_server_connect());
        }
    }

    fn on_disconnect(&self, error: Option<Error>) {
        match (self.0.upgrade(), error) {
            // a flow broke: recover it
            (Some(inner), Some(e)) => inner.flow_lost(e),
            (Some(inner), None) => inner.tell(|d| d.on_server_disconnect(None)),
            (None, _) => {}
        }
    }
}

/// A call's delegate: takes INFO DTMF for the manager, passes the rest to the
/// application's own session delegate, if any.
pub(super) struct ManagedDelegate {
    pub(super) manager: Weak<Inner>,
    pub(super) id: u64,
    pub(super) user: Option<Arc<dyn SessionDelegate>>,
}

impl SessionDelegate for ManagedDelegate {
    fn on_bye(&self, bye: crate::Bye) {
        match &self.user {
            Some(u) => u.on_bye(bye),
            None => bye.accept(),
        }
    }

    fn on_info(&self, info: crate::Info) {
        match dtmf_of(info.request()) {
            Dtmf::Tone(tone, duration) => {
                info.accept();
                if let Some(inner) = self.manager.upgrade() {
                    if let Some(session) = inner.session_by_id(self.id) {
                        inner.tell(|d| d.on_call_dtmf_received(&session, tone, duration));
                    }
                }
            }
            Dtmf::Malformed => info.reject(400),
            Dtmf::Other => match &self.user {
                Some(u) => u.on_info(info),
                None => info.accept(),
            },
        }
    }

    fn on_message(&self, message: crate::Message) {
        match &self.user {
            Some(u) => u.on_message(message),
            None => message.accept(),
        }
    }

    fn on_notify(&self, notification: IncomingRequest) {
        match &self.user {
            Some(u) => u.on_notify(notification),
            None => notification.accept(),
        }
    }

    fn on_invite(&self, request: &Request, status: u16) {
        if let Some(u) = &self.user {
            u.on_invite(request, status);
        }
    }

    fn on_ack(&self, request: &Request) {
        if let Some(u) = &self.user {
            u.on_ack(request);
        }
    }

    fn on_cancel(&self) {
        if let Some(u) = &self.user {
            u.on_cancel();
        }
    }

    fn on_progress(&self, response: &Response) {
        if let Some(u) = &self.user {
            u.on_progress(response);
        }
    }

    fn on_update(&self, request: &Request, status: u16) {
        if let Some(u) = &self.user {
            u.on_update(request, status);
        }
    }

    fn on_refer(&self, referral: Referral) {
        match (&self.user, self.manager.upgrade()) {
            (Some(u), _) => u.on_refer(referral),
            // a phone follows a transfer: the new call becomes one of the manager's
            (None, Some(inner)) => inner.follow_referral(referral),
            (None, None) => drop(referral),
        }
    }
}
