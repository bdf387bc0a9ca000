//! Offers after the first, both ways (RFC 3261 §14, RFC 3311, RFC 3264 §8): re-INVITE and
//! UPDATE go out through one path (`send_offer`), the peer's are answered or refused by what
//! the session's `Negotiation` says (491 on glare, 500 while pending, 488 when the handler
//! refuses), a refused re-INVITE is retried after the §14 back-off, and the session timer's
//! refreshes (RFC 4028 §10), which are re-offers. Whether one of ours may start, is held
//! for the ACK, or goes again is the task's `Reoffers` machine's: this file only sends
//! what it allows and gives the outcome to whoever asked.

use super::*;

impl Task {
    pub(super) async fn reinvite(&mut self, o: SessionInviteOptions, reply: Reply<()>) {
        if self.current() != SessionState::Established || self.dialog.is_none() {
            let _ = reply.send(self.invalid("re-INVITE"));
            return;
        }
        match self.session.ask_reoffer(Kind::ReInvite, !o.without_sdp) {
            Ask::Busy => {
                let _ = reply.send(Err(Error::RequestPending));
            }
            Ask::AfterAck => self.hold(Reoffer::ReInvite(o), reply),
            Ask::Send => self.start_reinvite(o, reply).await,
        }
    }

    /// Keeps a re-offer the machine holds (for the ACK, or for its retry) with whoever
    /// waits for it.
    fn hold(&mut self, request: Reoffer, reply: Reply<()>) {
        self.pending = Some(Box::new(Pending { request, reply }));
    }

    /// Sends the re-INVITE the machine allowed (asked for, or due again after glare).
    pub(super) async fn start_reinvite(&mut self, o: SessionInviteOptions, reply: Reply<()>) {
        let Some(d) = self.dialog.clone() else {
            self.session.reoffers_mut().not_sent();
            let _ = reply.send(Err(Error::SessionTerminated));
            return;
        };
        let sent = self
            .send_offer(
                &d,
                Method::Invite,
                o.without_sdp,
                o.session_description_handler_options.as_ref(),
                o.extra_headers.clone(),
            )
            .await;
        match sent {
            Ok(id) => {
                self.session.reoffers_mut().sent(Kind::ReInvite, id);
                self.hold(Reoffer::ReInvite(o), reply);
            }
            Err(e) => {
                self.session.reoffers_mut().not_sent();
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Sends a re-INVITE or an UPDATE in dialog `d`, with our offer from the handler unless
    /// `without_sdp` (RFC 3264 §8, RFC 3311 §5.1). An offer that could not be sent is rolled
    /// back. A re-INVITE without an offer gets one in its 2xx, whose ACK then carries our
    /// answer; an UPDATE without one (a refresh) opens no exchange. While an exchange is
    /// under way no other may start: [`Error::RequestPending`].
    pub(super) async fn send_offer(
        &mut self,
        d: &DialogId,
        method: Method,
        without_sdp: bool,
        sdh_options: Option<&SessionDescriptionHandlerOptions>,
        extra_headers: Vec<Header>,
    ) -> Result<TransactionId, Error> {
        let invite = method == Method::Invite;
        let carrier = if invite {
            Message::Invite
        } else {
            Message::Update
        };
        let opens = invite || !without_sdp;
        if opens && !self.session.media().can_offer() {
            return Err(Error::RequestPending);
        }
        let body = if without_sdp {
            None
        } else {
            self.session
                .media_mut()
                .offer(carrier)
                .map_err(|_| Error::RequestPending)?;
            self.media_asks(None, sdh_options).await?
        };
        let offered = body.is_some();
        let defer_ack = method == Method::Invite && !offered;
        let options = RequestOptions {
            extra_headers,
            body,
        };
        match self.send_in_dialog(d, method, options, defer_ack).await {
            Ok(id) => {
                self.session.media_mut().sent(carrier, offered);
                Ok(id)
            }
            Err(e) => {
                if offered {
                    self.session.media_mut().not_sent();
                    self.media_settle().await;
                }
                Err(e)
            }
        }
    }

    /// The dialog an UPDATE goes in: the confirmed one, or the early one of a caller.
    pub(super) fn update_dialog(&self) -> Option<DialogId> {
        self.dialog.clone().or_else(|| match &self.role {
            Role::Uac(u) => u.caller.early().cloned(),
            Role::Uas(_) => None,
        })
    }

    pub(super) async fn send_update(&mut self, o: SessionUpdateOptions, reply: Reply<()>) {
        let Some(d) = self
            .update_dialog()
            .filter(|_| self.current() < SessionState::Terminating)
        else {
            let _ = reply.send(self.invalid("UPDATE"));
            return;
        };
        match self.session.ask_reoffer(Kind::Update, !o.without_sdp) {
            Ask::Busy => {
                let _ = reply.send(Err(Error::RequestPending));
                return;
            }
            Ask::AfterAck => return self.hold(Reoffer::Update(o), reply),
            Ask::Send => {}
        }
        let mut o = o;
        let extra_headers = std::mem::take(&mut o.extra_headers);
        let sent = self
            .send_offer(
                &d,
                Method::Update,
                o.without_sdp,
                o.session_description_handler_options.as_ref(),
                extra_headers,
            )
            .await;
        match sent {
            Ok(id) => {
                self.session.reoffers_mut().sent(Kind::Update, id);
                self.hold(Reoffer::Update(o), reply);
            }
            Err(e) => {
                self.session.reoffers_mut().not_sent();
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Our re-offer in transaction `id` got its final `response`: how it ended, and who
    /// waits for it with what it was asked with; `None` when it is not ours.
    fn reoffer_answered(
        &mut self,
        id: TransactionId,
        response: &Response,
    ) -> Option<(Outcome, Pending)> {
        let after = retry_after_secs(response);
        let outcome = self.session.reoffers_mut().handle_response(
            id,
            response.status(),
            after,
            Instant::now(),
            &mut self.rng,
        )?;
        Some((outcome, *self.pending.take()?))
    }

    /// The final response to our UPDATE in transaction `id`.
    pub(super) async fn on_update_response(&mut self, id: TransactionId, response: Response) {
        let Some((_, Pending { request, reply })) = self.reoffer_answered(id, &response) else {
            return;
        };
        let Reoffer::Update(o) = request else { return };
        let offered = self.session.media().state() == OfferAnswer::LocalOffer(Message::Update);
        if response.is_success() {
            self.refreshed_by_us(&response);
        }
        if response.is_success() && offered {
            self.answer_options = o.session_description_handler_options;
        }
        let r = if response.is_success() {
            match body_and_type(&response) {
                Some(answer) if offered => {
                    let r = self
                        .take_answer(Message::UpdateSuccess, Some(&answer))
                        .await;
                    if r.is_err() {
                        // an answer the handler cannot take ends the exchange
                        self.session.media_mut().rollback();
                        self.media_settle().await;
                    }
                    r
                }
                None if offered => {
                    // the machine rolls the exchange back
                    let _ = self
                        .session
                        .media_mut()
                        .received(Message::UpdateSuccess, false);
                    self.media_settle().await;
                    Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                        "the 2xx to our UPDATE carried no answer",
                    )))
                }
                _ => Ok(()),
            }
        } else {
            // RFC 3311 §5.1: a refused offer leaves the previous session as it was
            self.session.media_mut().refused(Message::Update);
            self.media_settle().await;
            Err(Error::rejected(&response))
        };
        let _ = reply.send(r);
    }

    /// An UPDATE from the peer (RFC 3311 §5.2): see [`Task::answer_peer`].
    pub(super) async fn on_update(&mut self, id: TransactionId, request: Request) {
        let status = self.answer_peer(id, &request, false).await;
        if let Some(d) = &self.delegate() {
            d.on_update(&request, status);
        }
    }

    /// Answers the peer's re-INVITE or UPDATE (`invite` tells which) by where the negotiation
    /// stands (RFC 3261 §14.2, RFC 3311 §5.2): 491 or 500 when an exchange is under way;
    /// else our answer to its offer, our offer for a re-INVITE without one (the ACK answers
    /// it), or a bare 200 for an UPDATE without one (a refresh); 488 with a Warning when the
    /// handler refuses the offer. A 2xx carries the session timer's refresh (RFC 4028 §9).
    /// The status sent.
    async fn answer_peer(&mut self, id: TransactionId, request: &Request, invite: bool) -> u16 {
        let offer = body_and_type(request);
        let ok = if invite {
            Message::Success
        } else {
            Message::UpdateSuccess
        };
        // an UPDATE without an offer (a refresh) opens no exchange
        if let Err(refusal) = self
            .session
            .peer_offer(invite, offer.is_some(), &mut self.rng)
        {
            return self.refuse_offer(id, refusal).await;
        }
        // our answer to its offer, our offer for a re-INVITE without one, or nothing
        self.session.media_mut().respond(ok);
        let options = self.answer_options.clone();
        let desc = match self.media_asks(offer.as_ref(), options.as_ref()).await {
            Ok(desc) => desc,
            Err(e) => {
                // the machine is back where it was, the handler rolled back
                let warning = vec![self.warning(&e)];
                let _ = self.respond(id, 488, None, warning, None).await;
                return 488;
            }
        };
        let opened = desc.is_some();
        let refresh: Vec<Header> = self.refreshed_by_peer(request).into_iter().collect();
        if self.respond(id, 200, None, refresh, desc).await.is_err() {
            if opened {
                self.session.media_mut().not_sent();
                self.media_settle().await;
            }
            return 500;
        }
        if invite {
            // the 2xx waits for its ACK, which answers our offer when we made one
            self.session.life_mut().reinvite_answered();
        }
        self.session.media_mut().sent(ok, opened);
        200
    }

    /// Refuses a request whose offer the negotiation cannot take now (RFC 3261 §14.2,
    /// RFC 3311 §5.2): 491 on glare with an offer of ours; 500 with a Retry-After of 0–10 s
    /// while an offer of the peer's still awaits our answer. The status sent.
    async fn refuse_offer(&mut self, id: TransactionId, refusal: Refusal) -> u16 {
        let Refusal {
            status,
            retry_after,
            why,
        } = refusal;
        let headers = retry_after
            .map(|s| Header::typed(&sipua_message::header::RetryAfter::seconds(s)))
            .into_iter()
            .collect();
        tracing::debug!(target: "sipua", status, %why, "offer refused");
        let _ = self.respond(id, status, None, headers, None).await;
        status
    }

    /// A response to our re-INVITE in transaction `id`: a 2xx applies the answer (or takes
    /// the peer's offer and answers in the ACK); a 491, or a 500 with a short Retry-After,
    /// rolls back and waits for the machine's retry; anything else is the caller's error.
    pub(super) async fn on_reinvite_response(&mut self, id: TransactionId, response: Response) {
        let status = response.status();
        if status < 200 {
            return;
        }
        let Some((outcome, Pending { request, reply })) = self.reoffer_answered(id, &response)
        else {
            return;
        };
        let Reoffer::ReInvite(o) = request else {
            return;
        };
        let Some(d) = self.dialog.clone() else {
            let _ = reply.send(Err(Error::SessionTerminated));
            return;
        };
        if response.is_success() {
            self.refreshed_by_us(&response);
            if !o.without_sdp || o.session_description_handler_options.is_some() {
                self.answer_options = o.session_description_handler_options.clone();
            }
            let body = body_and_type(&response);
            let applied =
                if self.session.media().state() == OfferAnswer::LocalOffer(Message::Invite) {
                    self.take_answer(Message::Success, body.as_ref()).await
                } else {
                    self.answer_in_ack(&d, response.cseq().seq, body).await
                };
            match applied {
                Ok(()) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    // RFC 3261 §14.1 leaves this to the UA; like SIP.js we end the call
                    let _ = reply.send(Err(e.clone()));
                    self.bye_dialog(&d).await;
                    self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
                }
            }
            return;
        }
        self.session.media_mut().refused(Message::Invite);
        self.media_settle().await;
        // glare (491) or a peer still busy with an earlier INVITE (500 with Retry-After):
        // the machine sends it again after the back-off of RFC 3261 §14
        if outcome == Outcome::Retrying {
            return self.hold(Reoffer::ReInvite(o), reply);
        }
        let _ = reply.send(Err(Error::rejected(&response)));
        if matches!(status, 408 | 481) {
            // RFC 3261 §12.2.1.2: the dialog is gone
            self.terminate(EndReason::Rejected {
                status,
                reason: response.reason().into_owned(),
            });
        }
    }

    /// A re-INVITE from the peer: see [`Task::answer_peer`] (the core refuses the
    /// INVITE-on-INVITE cases itself, RFC 3261 §14.2).
    pub(super) async fn on_reinvite(&mut self, id: TransactionId, request: Request) {
        let status = self.answer_peer(id, &request, true).await;
        if let Some(d) = &self.delegate() {
            d.on_invite(&request, status);
        }
    }

    /// The session timer asks for a refresh (RFC 4028 §10): an UPDATE without a body when
    /// the peer allows it, else a re-INVITE. While an exchange is under way (an offer of
    /// ours refreshes the session when answered) it is tried again a second later.
    pub(super) async fn refresh_session(&mut self) {
        let Some(t) = self.session.life().timer() else {
            return;
        };
        // put off a second by the machine while an exchange is under way
        let Some(kind) = self.session.refresh(Instant::now()) else {
            return;
        };
        let headers = vec![
            t.refresh_header(),
            Header::new(HeaderName::Supported, "timer"),
        ];
        let (reply, _) = tokio::sync::oneshot::channel();
        match kind {
            Kind::Update => {
                let o = SessionUpdateOptions {
                    extra_headers: headers,
                    without_sdp: true,
                    ..Default::default()
                };
                self.send_update(o, reply).await;
            }
            Kind::ReInvite => {
                let o = SessionInviteOptions {
                    extra_headers: headers,
                    ..Default::default()
                };
                self.reinvite(o, reply).await;
            }
        }
    }

    /// The peer stopped refreshing: BYE (RFC 4028 §10); the machine has ended the session.
    pub(super) async fn session_expired(&mut self) {
        self.terminate(EndReason::SessionExpired);
        if let Some(d) = self.dialog.clone() {
            self.bye_dialog(&d).await;
        }
    }

    /// A re-INVITE or UPDATE from the peer refreshed the session: it refreshes from now on
    /// if it supports timers, else we still do; the header goes into our 2xx.
    pub(super) fn refreshed_by_peer(&mut self, request: &Request) -> Option<Header> {
        self.session.refreshed_by_peer(request, Instant::now())
    }

    /// Our re-INVITE or UPDATE was answered 2xx: the session is refreshed.
    pub(super) fn refreshed_by_us(&mut self, response: &Response) {
        self.session.refreshed_by_us(response, Instant::now());
    }
}
