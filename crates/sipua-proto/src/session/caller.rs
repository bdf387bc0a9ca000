//! The caller's side of the initial INVITE: what each response to it means for the session
//! (RFC 3261 §13.2.2, RFC 4028 §7.4, RFC 3264 §5).
//!
//! [`Caller`] keeps what the caller's responses depend on: whether our INVITE offered, the
//! early dialog whose answer gave early media, the dialog the first 2xx confirmed, and
//! whether the INVITE already went again after a 422. From each response it says what to do:
//! - a provisional response's body is early media only when the application asked for it,
//!   our offer still awaits its answer and the 1xx made an early dialog;
//! - a 422 with a `Min-SE` sends the INVITE again, once, asking for that interval (RFC 4028
//!   §7.4), unless the caller has cancelled;
//! - any other final refusal ends the session;
//! - the first 2xx confirms its dialog. Its body answers our offer, unless the answer
//!   already came as early media in that same dialog (or the 2xx has none, and an early
//!   answer stands); or, when our INVITE made no offer, it is the peer's offer, answered in
//!   the ACK, unless its offer already came in a reliable 1xx of that dialog and our PRACK
//!   answered it (RFC 3262 §5), when the 2xx only repeats it;
//! - a 2xx from another fork, after the first, is acknowledged and ended with BYE
//!   (§13.2.2.4; its offer, if our INVITE made none, is answered in that ACK first);
//! - a 2xx again on the confirmed dialog is a retransmission: nothing to do;
//! - a 2xx that crossed our CANCEL ends the session (the core acknowledges it and says BYE).
//!
//! Like the other session machines it sends nothing: the async session task asks and does.

/// What to do with a final response to our INVITE ([`Caller::handle_final`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final<D> {
    /// Send the INVITE again, once, with `Session-Expires` and `Min-SE` at this many
    /// seconds (a 422, RFC 4028 §7.4).
    Resend422(u32),
    /// Refused: the session ends with this response.
    Rejected,
    /// A 2xx on dialog `D` confirms the session: its body is handled as [`Confirm`] says.
    Confirm(D, Confirm),
    /// A 2xx from another fork after the first: acknowledge dialog `D` (with an answer to
    /// its offer when `answer_in_ack`) and end it with BYE.
    EndFork {
        /// The fork's dialog.
        dialog: D,
        /// Our INVITE made no offer, so the fork's 2xx did: its ACK carries an answer.
        answer_in_ack: bool,
    },
    /// A 2xx that crossed our CANCEL: the session ends (the core ACKs it and says BYE).
    CrossedCancel,
    /// Nothing to do: a retransmitted 2xx, or one without a dialog.
    Nothing,
}

/// What a confirming 2xx's body is ([`Final::Confirm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// The answer already came as early media in this dialog, or (our INVITE made no offer)
    /// the peer's offer came in its reliable 1xx and our PRACK answered it: it stands. The
    /// ACK of a 2xx to an INVITE without an offer is still the caller's to send, bare.
    KeepEarly,
    /// The body answers our INVITE's offer (a missing body is the media handler's error).
    Answer,
    /// Our INVITE made no offer: the body is the peer's, answered in the ACK.
    AnswerInAck,
}

/// The caller's side of one initial INVITE (see the module documentation). `D` is the
/// dialog key type.
#[derive(Debug, Clone)]
pub struct Caller<D> {
    /// Our INVITE carried an offer.
    offered: bool,
    /// The application asked for early media.
    early_media: bool,
    /// The early dialog whose 1xx answer was applied as early media.
    early: Option<D>,
    /// The dialog the first 2xx confirmed.
    confirmed: Option<D>,
    /// The INVITE went again after a 422.
    resent: bool,
}

impl<D: Clone + PartialEq> Caller<D> {
    /// Before the INVITE goes: `early_media`, the application wants a 1xx answer applied.
    pub fn new(early_media: bool) -> Caller<D> {
        Caller {
            offered: false,
            early_media,
            early: None,
            confirmed: None,
            resent: false,
        }
    }

    /// The INVITE went, with an offer or without one.
    pub fn sent(&mut self, offered: bool) {
        self.offered = offered;
    }

    /// Whether our INVITE carried an offer.
    pub fn offered(&self) -> bool {
        self.offered
    }

    /// The early dialog whose answer was applied, if any (an UPDATE may go in it before the
    /// 2xx, RFC 3311 §5.1).
    pub fn early(&self) -> Option<&D> {
        self.early.as_ref()
    }

    /// The dialog the first 2xx confirmed.
    pub fn confirmed(&self) -> Option<&D> {
        self.confirmed.as_ref()
    }

    /// A provisional response on `dialog` (none when it made no early dialog), with a body
    /// or not; `answer_awaited`: our INVITE's offer still waits for its answer. Whether its
    /// body is to be applied as early media (then [`Caller::early_applied`] once it is).
    pub fn early_media(&self, dialog: Option<&D>, has_body: bool, answer_awaited: bool) -> bool {
        self.early_media && answer_awaited && has_body && dialog.is_some()
    }

    /// The body of a provisional response on `dialog` was applied as early media, or (our
    /// INVITE made no offer) its offer was answered in our PRACK.
    pub fn early_applied(&mut self, dialog: D) {
        self.early = Some(dialog);
    }

    /// A final response: `status`, on `dialog` (a 2xx's), with a body or not, the `Min-SE`
    /// of a 422 if it had one, `cancelled` when our CANCEL went before it. What to do.
    pub fn handle_final(
        &mut self,
        status: u16,
        dialog: Option<D>,
        has_body: bool,
        min_se: Option<u32>,
        cancelled: bool,
    ) -> Final<D> {
        if status >= 300 {
            if status == 422 && !self.resent && !cancelled && self.confirmed.is_none() {
                if let Some(min) = min_se {
                    self.resent = true;
                    return Final::Resend422(min);
                }
            }
            return Final::Rejected;
        }
        let Some(d) = dialog else {
            return Final::Nothing;
        };
        match &self.confirmed {
            Some(c) if *c == d => return Final::Nothing,
            Some(_) => {
                return Final::EndFork {
                    dialog: d,
                    answer_in_ack: !self.offered,
                }
            }
            None => {}
        }
        if cancelled {
            return Final::CrossedCancel;
        }
        self.confirmed = Some(d.clone());
        let early_here = self.early.as_ref().is_some_and(|e| *e == d);
        let body = if !self.offered && early_here {
            Confirm::KeepEarly
        } else if !self.offered {
            Confirm::AnswerInAck
        } else if self.early.as_ref().is_some_and(|e| *e == d || !has_body) {
            Confirm::KeepEarly
        } else {
            // the answer; or another fork answered and its answer replaces the early one
            // (the media follows the dialog that won)
            Confirm::Answer
        };
        Final::Confirm(d, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_422_sends_the_invite_again_once_and_not_after_a_cancel() {
        let mut c = Caller::<u8>::new(false);
        c.sent(true);
        assert_eq!(
            c.handle_final(422, None, false, None, false),
            Final::Rejected
        );
        let mut c = Caller::<u8>::new(false);
        c.sent(true);
        assert_eq!(
            c.handle_final(422, None, false, Some(1800), false),
            Final::Resend422(1800)
        );
        assert_eq!(
            c.handle_final(422, None, false, Some(3600), false),
            Final::Rejected
        );
        let mut c = Caller::<u8>::new(false);
        assert_eq!(
            c.handle_final(422, None, false, Some(1800), true),
            Final::Rejected
        );
    }

    #[test]
    fn early_media_only_when_asked_for_awaited_and_in_a_dialog() {
        let c = Caller::<u8>::new(true);
        assert!(c.early_media(Some(&1), true, true));
        assert!(!c.early_media(None, true, true));
        assert!(!c.early_media(Some(&1), false, true));
        assert!(!c.early_media(Some(&1), true, false));
        assert!(!Caller::<u8>::new(false).early_media(Some(&1), true, true));
    }

    #[test]
    fn the_first_2xx_confirms_and_what_its_body_is() {
        for (offered, early, has_body, expect) in [
            (true, None, true, Confirm::Answer),
            (true, Some(1), true, Confirm::KeepEarly),
            (true, Some(1), false, Confirm::KeepEarly),
            (true, Some(2), false, Confirm::KeepEarly),
            (true, Some(2), true, Confirm::Answer),
            (false, None, true, Confirm::AnswerInAck),
        ] {
            let mut c = Caller::<u8>::new(true);
            c.sent(offered);
            if let Some(e) = early {
                c.early_applied(e);
            }
            assert_eq!(
                c.handle_final(200, Some(1), has_body, None, false),
                Final::Confirm(1, expect),
                "offered {offered} early {early:?} body {has_body}"
            );
            assert_eq!(c.confirmed(), Some(&1));
        }
    }

    #[test]
    fn later_2xx_are_repeats_or_forks_and_one_after_a_cancel_ends_it() {
        let mut c = Caller::<u8>::new(false);
        c.sent(false);
        assert_eq!(c.handle_final(200, None, true, None, false), Final::Nothing);
        assert!(matches!(
            c.handle_final(200, Some(1), true, None, false),
            Final::Confirm(1, _)
        ));
        assert_eq!(
            c.handle_final(200, Some(1), true, None, true),
            Final::Nothing
        );
        assert_eq!(
            c.handle_final(200, Some(2), true, None, false),
            Final::EndFork {
                dialog: 2,
                answer_in_ack: true
            }
        );
        let mut c = Caller::<u8>::new(false);
        c.sent(true);
        assert_eq!(
            c.handle_final(200, Some(3), true, None, true),
            Final::CrossedCancel
        );
        assert_eq!(c.confirmed(), None);
    }
}
