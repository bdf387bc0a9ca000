//! The callee's side of the initial INVITE (RFC 3261 §13.3): provisional responses (reliable
//! ones too, RFC 3262), accepting with the answer (or the offer an INVITE without one asks
//! for), rejecting, and the ACK that confirms the call (and may carry the answer). Which
//! provisional responses go reliably, and when one may, is the `Callee` machine's
//! (`sipua_proto::session::callee`).

use super::*;

impl Task {
    pub(super) fn uas(&mut self) -> Option<&mut Uas> {
        match &mut self.role {
            Role::Uas(u) => Some(u),
            Role::Uac(_) => None,
        }
    }

    /// The description a response to the initial INVITE (a 1xx or the 2xx, `m`) carries, as
    /// the media machine asks for it (RFC 3261 §13.3.1, RFC 6337 §3.1): our answer to the
    /// INVITE's offer (applied first, once), our offer when it had none, or the last
    /// description again once an exchange completed. It counts once sent
    /// (`self.session.media_mut().sent(m, true)`).
    pub(super) async fn response_description(
        &mut self,
        m: Message,
    ) -> Result<BodyAndContentType, Error> {
        self.session.media_mut().respond(m);
        self.media_asks(None, None).await?.ok_or_else(|| {
            Error::SessionDescriptionHandler(crate::SdhError::new("no session description"))
        })
    }

    pub(super) async fn accept(&mut self, o: InvitationAcceptOptions) -> Result<(), Error> {
        if !self.session.life().may_answer() {
            return self.invalid("accept");
        }
        let Some(u) = self.uas() else {
            return self.invalid("accept");
        };
        let id = u.id;
        self.transition(SessionState::Establishing);
        let answer = match self.response_description(Message::Success).await {
            Ok(x) => x,
            Err(e) => {
                let (status, headers) = match &e {
                    Error::ContentTypeUnsupported(_) => (415, Vec::new()),
                    // out of media ports for now: come back later (RFC 3261 §21.5.4)
                    Error::MediaUnavailable { retry_after, .. } => (
                        503,
                        vec![Header::typed(&sipua_message::header::RetryAfter::seconds(
                            *retry_after,
                        ))],
                    ),
                    _ => (488, vec![self.warning(&e)]),
                };
                let _ = self.respond(id, status, None, headers, None).await;
                self.session.life_mut().final_sent(false);
                self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
                return Err(e);
            }
        };
        let mut extra = o.extra_headers;
        if !extra.iter().any(|h| *h.name() == HeaderName::Allow) {
            extra.push(self.shared.allow_header());
        }
        let mut timer = None;
        let invite = self.received_invite();
        if let (Some(st), Some(invite)) = (self.shared.options.session_timers, invite) {
            self.session
                .set_peer_allows_update(timer::allows_update(&invite.headers()));
            match timer::decide(&invite, &st) {
                timer::Decision::TooBrief(min) => {
                    // RFC 4028 §8.1: 422 with our minimum; the caller may try again
                    let min_se = Header::new(HeaderName::MinSe, min.to_string());
                    let _ = self.respond(id, 422, None, vec![min_se], None).await;
                    self.session.media_mut().rollback();
                    self.media_settle().await;
                    self.session.life_mut().final_sent(false);
                    self.terminate(EndReason::LocalReject { status: 422 });
                    return Err(Error::Rejected {
                        status: 422,
                        reason: "Session Interval Too Small".into(),
                        response: None,
                    });
                }
                timer::Decision::Run {
                    interval,
                    we_refresh,
                    headers,
                } => {
                    extra.extend(headers);
                    timer = Some((interval, we_refresh));
                }
            }
        }
        let dialog = self.respond(id, 200, None, extra, Some(answer)).await?;
        self.session.media_mut().sent(Message::Success, true);
        // no response of ours repeats a description any more (the core resends the 2xx)
        self.last_local = None;
        if let Some((interval, we_refresh)) = timer {
            self.session
                .life_mut()
                .start_timer(interval, we_refresh, Instant::now());
        }
        if let Some(d) = &dialog {
            record_dialog(&self.span, d);
        }
        self.dialog = dialog.clone();
        self.info().dialog = dialog;
        // the ACK is awaited (and when our 2xx made the offer, it owes the answer: the
        // negotiation's LocalOffer(Success))
        self.session.life_mut().final_sent(true);
        self.publish();
        Ok(())
    }

    /// Sends the provisional response; `Ok(true)` when it went reliably and the PRACK is
    /// awaited.
    pub(super) async fn progress_with(
        &mut self,
        o: InvitationProgressOptions,
    ) -> Result<bool, Error> {
        if !self.session.life().may_answer() {
            return self.invalid("progress");
        }
        let Some(u) = self.uas() else {
            return self.invalid("progress");
        };
        let id = u.id;
        let status = o.status_code.unwrap_or(180).clamp(101, 199);
        let reliable = match u.callee.progress(status, o.rel100) {
            Ok(reliable) => reliable,
            Err(ProgressError::Unsupported) => {
                return Err(Error::InvalidArgument(
                    "rel100: the caller does not support 100rel".into(),
                ))
            }
            Err(ProgressError::PrackPending) => return Err(Error::RequestPending),
        };
        // early media: our answer (or offer) in the 183; a body of the application's own
        // is outside the negotiation
        let (body, negotiated) = match (o.body, status) {
            (Some(b), _) => (Some(b), false),
            (None, 183) => (
                Some(
                    self.response_description(Message::Provisional { reliable })
                        .await?,
                ),
                true,
            ),
            _ => (None, false),
        };
        self.transition(SessionState::Establishing);
        self.respond_with(id, status, o.reason_phrase, o.extra_headers, body, reliable)
            .await?;
        if let (true, Some(u)) = (reliable, self.uas()) {
            u.callee.sent_reliably();
        }
        if negotiated {
            self.session
                .media_mut()
                .sent(Message::Provisional { reliable }, true);
        }
        Ok(reliable)
    }

    pub(super) async fn reject(&mut self, o: InvitationRejectOptions) -> Result<(), Error> {
        let Some(id) = self
            .uas()
            .map(|u| u.id)
            .filter(|_| self.session.life().may_answer())
        else {
            return self.invalid("reject");
        };
        let status = o.status_code.unwrap_or(480).clamp(300, 699);
        self.session.life_mut().final_sent(false);
        self.respond(id, status, o.reason_phrase, o.extra_headers, None)
            .await?;
        self.terminate(EndReason::LocalReject { status });
        Ok(())
    }

    pub(super) async fn on_ack(&mut self, request: Request) {
        // a BYE that waited for this ACK is released ([`lifecycle::Event::SendBye`]): it
        // goes after the ACK's answer is applied and the delegate is told
        let body = body_and_type(&request);
        let Some(taken) = self.session.handle_ack(body.is_some()) else {
            return;
        };
        // our 2xx offered: the ACK answers (RFC 3264 §5)
        let applied = match taken {
            Ok(true) => self.media_asks(body.as_ref(), None).await.map(drop),
            Ok(false) => Ok(()),
            Err(why) => {
                self.media_settle().await;
                Err(offer_answer_error(why))
            }
        };
        if let Err(e) = applied {
            self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
            // one BYE: the one asked for if it waited for this ACK, else ours
            if self.bye_after_ack.is_none() {
                if let Some(d) = self.dialog.clone() {
                    self.bye_dialog(&d).await;
                }
            }
            return;
        }
        // our 2xx is acknowledged: the peer is who its offer says (RFC 3261 §13.3.1.4), and
        // a re-offer held for this ACK may go now
        self.session.acked();
        self.media_settle().await;
        if let Some(d) = &self.delegate() {
            d.on_ack(&request);
        }
    }
}
