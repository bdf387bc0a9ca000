//! Matching an INVITE with Replaces (RFC 3891 §3) to the dialog it would replace: the tags
//! are the receiver's (`to-tag` is our local tag); a dialog that does not exist, or an early
//! one we did not start, gets 481; a confirmed one named with `early-only` gets 486; a
//! Replaces that does not parse gets 400.

use sipua_message::header::Replaces;
use sipua_message::Request;

use super::UaCore;
use crate::dialog::{DialogId, DialogState};

impl UaCore {
    /// The dialog `request`'s Replaces header names, or the status to refuse the INVITE
    /// with. `Ok(None)` when the request has no Replaces.
    pub fn replaced_dialog(&self, request: &Request) -> Result<Option<DialogId>, u16> {
        let r = match request.typed::<Replaces>() {
            None => return Ok(None),
            Some(Ok(r)) => r,
            Some(Err(_)) => return Err(400),
        };
        let (Some(to), Some(from)) = (r.to_tag(), r.from_tag()) else {
            return Err(400);
        };
        let did = DialogId {
            call_id: r.call_id.as_str().into(),
            local_tag: to.into(),
            remote_tag: from.into(),
        };
        let d = self.dialog(&did).ok_or(481u16)?;
        match d.state {
            DialogState::Confirmed if r.early_only() => Err(486),
            DialogState::Early if !d.caller => Err(481),
            _ => Ok(Some(did)),
        }
    }
}
