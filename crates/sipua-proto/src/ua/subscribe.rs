//! Subscription dialogs in the core (RFC 6665 §4.1.2.4 and §4.2.1, RFC 3515 §2.4.4): a 2xx
//! to our SUBSCRIBE or REFER creates a dialog, and so does a NOTIFY that arrives before that
//! 2xx (or from another fork); our 2xx to a SUBSCRIBE or REFER creates one on the
//! notifier's side (in [`UaCore::respond`]). Such dialogs end when the TU says so
//! ([`UaCore::end_dialog`]), not with a BYE.

use std::time::Instant;

use sipua_message::{Request, Response};

use super::UaCore;
use crate::dialog::{Dialog, DialogId};
use crate::endpoint::TransactionId;

impl UaCore {
    /// Keeps our out-of-dialog SUBSCRIBE or REFER (or its retry with credentials) for 64·T1,
    /// so that the NOTIFYs it triggers find it.
    pub(super) fn remember_subscribe(&mut self, now: Instant, request: &Request) {
        let Some(tag) = request.from_tag() else {
            return;
        };
        let key = (request.call_id().to_owned(), tag.to_owned());
        if !self.subscribing.contains_key(&key) && self.subscribing.len() >= self.cfg.max_dialogs {
            return; // bounded: the 2xx still creates the dialog
        }
        let forget = now + self.timers_cfg.t1x64();
        self.subscribing.insert(key, (request.clone(), forget));
    }

    /// A NOTIFY in a dialog we do not know yet: if it answers a SUBSCRIBE or REFER of ours,
    /// it creates that subscription's dialog (RFC 6665 §4.1.2.4).
    pub(super) fn dialog_from_notify(&mut self, id: &DialogId, notify: &Request) {
        if self.dialogs.contains_key(id) || self.dialogs.len() >= self.cfg.max_dialogs {
            return;
        }
        let key = (id.call_id.to_string(), id.local_tag.to_string());
        let Some((subscribe, _)) = self.subscribing.get(&key) else {
            return;
        };
        if let Ok(d) = Dialog::from_notify(subscribe, notify) {
            self.dialogs.insert(id.clone(), Box::new(d));
        }
    }

    /// A 2xx to our SUBSCRIBE or REFER: the dialog it creates (or refreshes, for a refresh
    /// inside one), if it has a To tag.
    pub(super) fn subscription_dialog(
        &mut self,
        id: Option<TransactionId>,
        response: &Response,
    ) -> Option<DialogId> {
        let did = Dialog::id_of_response(response)?;
        if let Some(d) = self.dialogs.get_mut(&did) {
            d.on_response(response);
            return Some(did);
        }
        if self.dialogs.len() >= self.cfg.max_dialogs {
            return None;
        }
        let request = &self.outgoing.get(&id?)?.request;
        if request.has_to_tag() {
            return None; // a refresh in a dialog that has since ended
        }
        let d = Dialog::uac(request, response).ok()?;
        self.dialogs.insert(did.clone(), Box::new(d));
        Some(did)
    }
}
