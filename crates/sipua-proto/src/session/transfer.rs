//! Our REFERs in a session and their implicit subscriptions (RFC 3515 §2.4.4–§2.4.6,
//! RFC 4488, RFC 6665 §4.1.3).
//!
//! Each REFER we send makes a subscription to the `refer` event that the peer's NOTIFYs of
//! `message/sipfrag` progress belong to. [`Refers`] keeps them, at most [`MAX_REFERS`] at a
//! time, and says which REFER a NOTIFY belongs to:
//! - a NOTIFY names its REFER by `Event: refer;id=<CSeq of the REFER>` (§2.4.6), known once
//!   the REFER's 2xx came; one that comes before (it may overtake the 2xx) or without an id
//!   goes to the oldest REFER still unanswered, or without an id to the oldest of all;
//! - a NOTIFY that matches none is answered 481 (RFC 6665 §4.1.3);
//! - a subscription ends with a `terminated` NOTIFY, a refused REFER, a 2xx with
//!   `Refer-Sub: false` (RFC 4488: no subscription was made), or a failed transaction.
//!
//! It sends nothing and keeps no sink: the session task forwards each NOTIFY's progress to
//! whoever follows the REFER it is told.

/// At most this many REFERs of one session followed at once (a transfer is one or two).
pub const MAX_REFERS: usize = 16;

/// Why a REFER may not be sent now ([`Refers::sent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRefers;

/// Where a NOTIFY of the refer event goes ([`Refers::notify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notified<T> {
    /// The REFER (its transaction) the NOTIFY reports on.
    pub refer: T,
    /// The NOTIFY ended the subscription: nothing more comes for that REFER.
    pub ended: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sub<T> {
    id: T,
    /// The REFER's CSeq, once its 2xx came (the NOTIFYs' `id`).
    cseq: Option<u32>,
}

/// The REFERs of one session that are followed (see the module documentation). `T` is the
/// caller's transaction key.
#[derive(Debug, Clone, Default)]
pub struct Refers<T> {
    subs: Vec<Sub<T>>,
}

impl<T: Copy + Eq> Refers<T> {
    /// None yet.
    pub fn new() -> Refers<T> {
        Refers { subs: Vec::new() }
    }

    /// Whether another REFER may be sent: fewer than [`MAX_REFERS`] are followed.
    pub fn may_send(&self) -> Result<(), TooManyRefers> {
        if self.subs.len() >= MAX_REFERS {
            return Err(TooManyRefers);
        }
        Ok(())
    }

    /// A REFER went out in transaction `id`: its NOTIFYs are followed from now (one may
    /// overtake its 2xx).
    pub fn sent(&mut self, id: T) -> Result<(), TooManyRefers> {
        self.may_send()?;
        self.subs.push(Sub { id, cseq: None });
        Ok(())
    }

    /// The final response to REFER `id`: a 2xx with its `cseq`, and whether it said
    /// `Refer-Sub: false`; anything else refused it. Whether its subscription goes on.
    pub fn answered(&mut self, id: T, success: bool, cseq: u32, no_subscription: bool) -> bool {
        let Some(at) = self.subs.iter().position(|s| s.id == id) else {
            return false;
        };
        if !success || no_subscription {
            self.subs.remove(at);
            return false;
        }
        self.subs[at].cseq = Some(cseq);
        true
    }

    /// REFER `id`'s transaction failed (a timeout, a transport error): it is not followed.
    pub fn failed(&mut self, id: T) {
        self.subs.retain(|s| s.id != id);
    }

    /// Whether REFER `id` is followed.
    pub fn follows(&self, id: T) -> bool {
        self.subs.iter().any(|s| s.id == id)
    }

    /// A NOTIFY of the refer event came, with the `id` of its Event header if any and
    /// whether its Subscription-State is `terminated`: which REFER it reports on, or `None`
    /// when none (answer 481).
    pub fn notify(&mut self, event_id: Option<u32>, terminated: bool) -> Option<Notified<T>> {
        let at = match event_id {
            Some(seq) => self
                .subs
                .iter()
                .position(|s| s.cseq == Some(seq))
                .or_else(|| self.subs.iter().position(|s| s.cseq.is_none())),
            None => (!self.subs.is_empty()).then_some(0),
        }?;
        let refer = self.subs[at].id;
        if terminated {
            self.subs.remove(at);
        }
        Some(Notified {
            refer,
            ended: terminated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_go_to_their_refer_by_cseq_or_to_the_oldest_unanswered() {
        let mut r = Refers::<u32>::new();
        r.sent(1).unwrap();
        r.sent(2).unwrap();
        // a NOTIFY that overtook REFER 1's 2xx: the oldest unanswered
        assert_eq!(
            r.notify(Some(7), false),
            Some(Notified {
                refer: 1,
                ended: false
            })
        );
        assert!(r.answered(1, true, 7, false));
        assert!(r.answered(2, true, 8, false));
        assert_eq!(r.notify(Some(8), false).map(|n| n.refer), Some(2));
        assert_eq!(r.notify(Some(9), false), None, "481");
        assert_eq!(
            r.notify(Some(7), true),
            Some(Notified {
                refer: 1,
                ended: true
            })
        );
        assert!(!r.follows(1));
        assert_eq!(r.notify(None, true).map(|n| n.refer), Some(2));
        assert_eq!(r.notify(None, false), None);
    }

    #[test]
    fn a_refused_failed_or_subscriptionless_refer_is_not_followed() {
        let mut r = Refers::<u32>::new();
        for id in 1..=3 {
            r.sent(id).unwrap();
        }
        assert!(!r.answered(1, false, 1, false));
        assert!(!r.answered(2, true, 2, true), "Refer-Sub: false");
        r.failed(3);
        assert!(!(1..=3).any(|id| r.follows(id)));
        assert_eq!(r.notify(None, false), None);
        assert!(!r.answered(9, true, 9, false), "not ours");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = Refers::<usize>::new();
        for id in 0..MAX_REFERS {
            r.sent(id).unwrap();
        }
        assert_eq!(r.sent(99), Err(TooManyRefers));
        assert_eq!(r.may_send(), Err(TooManyRefers));
        r.failed(0);
        assert_eq!(r.sent(99), Ok(()));
    }
}
