//! Reliable provisional responses (RFC 3262), both sides.
//!
//! As UAS, [`UaCore::respond_reliably`] sends a 1xx with `Require: 100rel` and an `RSeq`
//! (§3), retransmits it with doubling intervals from T1 until the PRACK comes or 64·T1 have
//! passed (then the INVITE is refused with 504 and the TU told, §3), allows one unacknowledged
//! reliable provisional per dialog at a time, answers the matching PRACK with 200 itself and
//! hands it to the TU ([`UaEvent::Prack`]: it may carry an answer); a PRACK that matches
//! nothing gets 481 (§3).
//!
//! As UAC, each reliable provisional response of an early dialog is acknowledged with a
//! PRACK carrying `RAck` (§4); retransmissions (an RSeq already seen) are absorbed and
//! out-of-order ones (an RSeq beyond the next) are dropped until the missing one arrives.
//! One that carries the offer our initial INVITE did not make (an INVITE marked
//! [`UaCore::defer_ack`]) is PRACKed by the TU instead, with its answer ([`UaCore::prack`],
//! §5: the answer to an offer in a reliable provisional response goes in its PRACK).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipua_message::header::{RAck, RSeq};
use sipua_message::{Header, HeaderName, Method, Request, Response, Transport};

use super::{UaCore, UaError, UaEvent};
use crate::dialog::{Dialog, DialogId};
use crate::endpoint::{self, TransactionId, Transmit};

/// A reliable provisional response of ours awaiting its PRACK.
#[derive(Debug)]
pub(super) struct ReliableOut {
    /// The INVITE's server transaction.
    invite: TransactionId,
    rseq: u32,
    cseq: u32,
    bytes: Bytes,
    transport: Transport,
    destination: SocketAddr,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// What the core keeps for RFC 3262.
#[derive(Debug, Default)]
pub(super) struct PrackState {
    /// Per dialog: the one reliable provisional not yet acknowledged (UAS).
    out: crate::hash::KeyedMap<DialogId, ReliableOut>,
    /// Per dialog: the last RSeq we sent (UAS).
    rseq_out: crate::hash::KeyedMap<DialogId, u32>,
    /// Per dialog: the last RSeq we acknowledged (UAC).
    rseq_in: crate::hash::KeyedMap<DialogId, u32>,
    /// Our PRACK transactions: their responses are the core's business, not the TU's.
    ours: std::collections::HashSet<TransactionId>,
    /// Per early dialog: the reliable provisional whose offer the TU answers in the PRACK
    /// it sends with [`UaCore::prack`] (UAC; one at a time, as the UAS sends them).
    deferred: crate::hash::KeyedMap<DialogId, Deferred>,
    /// The early dialogs whose offer came (UAC): the bodies of their later reliable
    /// provisionals repeat it, and the core PRACKs those itself.
    offered: crate::hash::KeyedMap<DialogId, ()>,
}

/// A reliable provisional response whose PRACK waits for the TU's answer.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    rseq: u32,
    cseq: u32,
    destination: SocketAddr,
}

impl PrackState {
    /// The next time a retransmission or a give-up is due.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.out.values().map(|r| r.next.min(r.give_up)).min()
    }

    /// Forgets a dialog's state (it ended).
    pub(super) fn forget(&mut self, dialog: &DialogId) {
        // most dialogs never use 100rel: an empty table is not worth hashing the id for
        for m in [&mut self.rseq_out, &mut self.rseq_in] {
            if !m.is_empty() {
                m.remove(dialog);
            }
        }
        if !self.out.is_empty() {
            self.out.remove(dialog);
        }
        if !self.deferred.is_empty() {
            self.deferred.remove(dialog);
        }
        if !self.offered.is_empty() {
            self.offered.remove(dialog);
        }
    }

    /// Whether `id` is a PRACK the core sent (its response is absorbed).
    pub(super) fn take_ours(&mut self, id: TransactionId) -> bool {
        self.ours.remove(&id)
    }
}

/// Whether a response carries `Require: 100rel`.
fn requires_100rel(r: &Response) -> bool {
    r.headers().get_all(&HeaderName::Require).any(|h| {
        h.elements()
            .iter()
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"100rel"))
    })
}

impl UaCore {
    /// Sends `response` (101–199) on INVITE server transaction `id` reliably (RFC 3262 §3):
    /// with `Require: 100rel` and the dialog's next `RSeq`, retransmitted until the PRACK.
    /// [`UaError::RequestPending`] while the previous reliable provisional of the dialog is
    /// unacknowledged.
    pub fn respond_reliably(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<Option<DialogId>, UaError> {
        let status = response.status();
        let inc = self.incoming.get(&id).ok_or(UaError::UnknownTransaction)?;
        if !(101..200).contains(&status) || *inc.request.method() != Method::Invite {
            return Err(UaError::InvalidArgument(
                "only a 101-199 response to an INVITE is sent reliably".into(),
            ));
        }
        let Some(did) = Dialog::id_of_response(&response).map(|d| DialogId {
            call_id: d.call_id,
            local_tag: d.remote_tag,
            remote_tag: d.local_tag,
        }) else {
            return Err(UaError::InvalidArgument(
                "a reliable provisional response needs a To tag".into(),
            ));
        };
        if self.prack.out.contains_key(&did) {
            return Err(UaError::RequestPending);
        }
        let rseq = match self.prack.rseq_out.get(&did) {
            Some(r) => r.wrapping_add(1).max(1),
            // RFC 3262 §3: a random start between 1 and 2^31 - 1
            None => (self.rng.next_u64() % 0x7fff_0000) as u32 + 1,
        };
        let mut response = response;
        response.push_header(Header::new(HeaderName::Require, "100rel"))?;
        response.push_header(Header::typed(&RSeq(rseq)))?;
        let (request, source, transport) = (inc.request.clone(), inc.source, inc.transport.clone());
        let dialog = self.respond(now, id, response.clone())?;
        let t1 = self.timers_cfg.t1;
        let destination = if transport.is_reliable() {
            source
        } else {
            super::destination_for(&request, source)
        };
        self.prack.rseq_out.insert(did.clone(), rseq);
        self.prack.out.insert(
            did,
            ReliableOut {
                invite: id,
                rseq,
                cseq: request.cseq().seq,
                bytes: endpoint::with_received(response, &request, source).to_bytes(),
                // over TCP/TLS/WS the transport delivers it; we only wait for the PRACK
                next: if transport.is_reliable() {
                    now + self.timers_cfg.t1x64()
                } else {
                    now + t1
                },
                transport,
                destination,
                interval: t1,
                give_up: now + self.timers_cfg.t1x64(),
            },
        );
        Ok(dialog)
    }

    /// Retransmits reliable provisionals that are due; refuses INVITEs whose PRACK never came.
    pub(super) fn prack_timeouts(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (did, r) in self.prack.out.iter_mut() {
            if now >= r.give_up {
                expired.push((did.clone(), r.invite));
                continue;
            }
            if now >= r.next {
                self.queue.push_back(Transmit {
                    transport: r.transport.clone(),
                    destination: r.destination,
                    bytes: r.bytes.clone(),
                    transaction: None,
                });
                r.interval *= 2;
                r.next = now + r.interval;
            }
        }
        for (did, invite) in expired {
            self.prack.out.remove(&did);
            // §3: no PRACK within 64·T1 — the INVITE is refused with a 5xx
            if let Ok(resp) = self.response(invite, 504) {
                let _ = self.respond(now, invite, resp);
            }
            self.events.push_back(UaEvent::PrackTimeout { id: invite });
        }
    }

    /// A final response went out on INVITE `id`: its reliable provisional needs no PRACK now.
    pub(super) fn prack_final(&mut self, id: TransactionId) {
        self.prack.out.retain(|_, r| r.invite != id);
    }

    /// An in-dialog PRACK (UAS): 200 and [`UaEvent::Prack`] when it matches our reliable
    /// provisional, else 481. Returns false when `request` is not a PRACK.
    pub(super) fn on_prack(
        &mut self,
        now: Instant,
        id: TransactionId,
        request: &Request,
        dialog: &DialogId,
    ) -> bool {
        if *request.method() != Method::Prack {
            return false;
        }
        let rack = request.typed::<RAck>().and_then(Result::ok);
        let matched = rack.is_some_and(|rack| {
            self.prack.out.get(dialog).is_some_and(|r| {
                r.rseq == rack.rseq && r.cseq == rack.cseq && rack.method == Method::Invite
            })
        });
        if !matched {
            // §3: a PRACK that matches no unacknowledged reliable provisional
            self.answer(now, id, 481, Vec::new());
            return true;
        }
        self.prack.out.remove(dialog);
        self.answer(now, id, 200, Vec::new());
        self.events.push_back(UaEvent::Prack {
            dialog: dialog.clone(),
            request: request.clone(),
        });
        true
    }

    /// A provisional response to our INVITE in early dialog `dialog` (UAC): PRACK it if it
    /// is reliable, or leave the PRACK to the TU when it carries an offer (`offer_awaited`:
    /// our initial INVITE made none). Returns false when it must not reach the TU (a
    /// retransmission, or out of order).
    pub(super) fn on_reliable_provisional(
        &mut self,
        now: Instant,
        response: &Response,
        dialog: &DialogId,
        destination: SocketAddr,
        offer_awaited: bool,
    ) -> bool {
        if !requires_100rel(response) {
            return true;
        }
        let Some(rseq) = response.typed::<RSeq>().and_then(Result::ok).map(|r| r.0) else {
            return true; // 100rel without RSeq: not usable as reliable, passed on as is
        };
        match self.prack.rseq_in.get(dialog) {
            Some(&last) if rseq <= last => return false, // a retransmission: PRACKed already
            Some(&last) if rseq > last.wrapping_add(1) => return false, // wait for the gap
            _ => {}
        }
        self.prack.rseq_in.insert(dialog.clone(), rseq);
        let offers = offer_awaited && !response.body_bytes().is_empty();
        if offers && self.prack.offered.insert(dialog.clone(), ()).is_none() {
            // the offer our INVITE asked for (the first body of a reliable provisional in
            // this dialog; later ones repeat it): the TU's answer goes in the PRACK (§5)
            let deferred = Deferred {
                rseq,
                cseq: response.cseq().seq,
                destination,
            };
            self.prack.deferred.insert(dialog.clone(), deferred);
            return true;
        }
        let rack = RAck {
            rseq,
            cseq: response.cseq().seq,
            method: Method::Invite,
        };
        let _ = self.send_prack(now, dialog, rack, destination, None);
        true
    }

    /// Sends the PRACK of the reliable provisional response in early dialog `dialog` whose
    /// offer the TU answers, with `body` (the answer; none when the TU has none) (RFC 3262
    /// §5). The core holds such a PRACK back for the TU when the response carries a body and
    /// our initial INVITE, marked [`UaCore::defer_ack`], made no offer.
    /// [`UaError::NothingToPrack`] when no PRACK waits in that dialog.
    pub fn prack(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        body: Option<(sipua_message::header::MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        let d = self
            .prack
            .deferred
            .remove(dialog)
            .ok_or(UaError::NothingToPrack)?;
        let rack = RAck {
            rseq: d.rseq,
            cseq: d.cseq,
            method: Method::Invite,
        };
        self.send_prack(now, dialog, rack, d.destination, body)
    }

    /// Sends the PRACK `rack` in early dialog `dialog`, to its next hop (else `fallback`,
    /// where the INVITE went), with `body`; its response is the core's to absorb.
    fn send_prack(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        rack: RAck,
        fallback: SocketAddr,
        body: Option<(sipua_message::header::MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        let (dest, transport) = match self.dialog_route(dialog) {
            Some(r) => (r.destination.unwrap_or(fallback), r.transport),
            None => (fallback, None),
        };
        let tx = self.request_in_dialog_over(
            now,
            dialog,
            Method::Prack,
            dest,
            transport,
            vec![Header::typed(&rack)],
            body,
        )?;
        self.prack.ours.insert(tx);
        Ok(tx)
    }
}
