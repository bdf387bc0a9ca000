//! The caller's side of the initial INVITE (RFC 3261 §13.2): sending it (again after a 422,
//! RFC 4028 §7.4), cancelling it (§9), its responses with early media, forks (§13.2.2.4: a
//! second 2xx is acknowledged and ended), and an offer in the 2xx answered in the ACK
//! (RFC 3264 §5). What each response means is the `Caller` machine's
//! (`sipua_proto::session::caller`); this file does what it says.

use super::*;

impl Task {
    pub(super) async fn invite(&mut self, o: InviterInviteOptions) -> Result<(), Error> {
        if self.current() != SessionState::Initial {
            return self.invalid("invite");
        }
        let Role::Uac(uac) = &self.role else {
            return self.invalid("invite");
        };
        let (target, without_sdp) = (uac.target.clone(), uac.options.invite_without_sdp);
        let mut headers = uac.options.extra_headers.clone();
        if !headers.iter().any(|h| *h.name() == HeaderName::Supported) {
            // we PRACK reliable provisional responses (RFC 3262 §4), and run session timers
            // unless they are off
            let tags = if self.shared.options.session_timers.is_some() {
                "100rel, timer"
            } else {
                "100rel"
            };
            headers.push(Header::new(HeaderName::Supported, tags));
        }
        if !headers.iter().any(|h| *h.name() == HeaderName::Allow) {
            // RFC 3261 §20.5: what we take in the dialog (UPDATE for refreshes, RFC 4028)
            headers.push(self.shared.allow_header());
        }
        if let Some(st) = &self.shared.options.session_timers {
            if !headers
                .iter()
                .any(|h| *h.name() == HeaderName::SessionExpires)
            {
                headers.extend(timer::invite_headers(st));
            }
        }
        // RFC 3323 / 3325: an anonymous From, our identity only for a trusted proxy
        let from = if uac.options.anonymous {
            headers.push(Header::new(HeaderName::from("Privacy"), "id"));
            let me = self.shared.options.uri.clone().map_or_else(
                || {
                    format!(
                        "<sip:{}@{}>",
                        self.shared.options.user,
                        self.shared.advertised_ip(self.peer)
                    )
                },
                |u| format!("<{u}>"),
            );
            headers.push(Header::new(HeaderName::from("P-Preferred-Identity"), me));
            sipua_message::NameAddr::parse(b"\"Anonymous\" <sip:anonymous@anonymous.invalid>").ok()
        } else {
            None
        };
        headers.extend(o.extra_headers);
        headers.push(Header::new(
            HeaderName::UserAgent,
            self.shared.options.user_agent_string.clone(),
        ));
        if self.shared.routes_matter() {
            // on a wildcard address the offer names our address towards the next hop
            if let Role::Uac(uac) = &self.role {
                let target = uac.target.clone();
                self.peer = self.shared.resolve(&target).await.ok().map(|(d, _)| d);
            }
        }
        let body = if without_sdp {
            None
        } else {
            self.session
                .media_mut()
                .offer(Message::Invite)
                .map_err(offer_answer_error)?;
            self.media_asks(None, None).await?
        };
        let body_for_core = to_body(body.clone())?;
        let resend = Resend {
            target,
            from,
            headers,
            body: body_for_core,
            defer_ack: without_sdp,
        };
        let id = self.send_initial_invite(&resend).await?;
        if let Role::Uac(uac) = &mut self.role {
            uac.invite = Some(id);
            uac.caller.sent(body.is_some());
            uac.resend = Some(Box::new(resend));
        }
        self.session
            .media_mut()
            .sent(Message::Invite, body.is_some());
        self.transition(SessionState::Establishing);
        Ok(())
    }

    pub(super) async fn send_initial_invite(&mut self, r: &Resend) -> Result<TransactionId, Error> {
        let (destination, transport) = self.shared.resolve(&r.target).await?;
        let key = self.key;
        let (id, sent) = self
            .shared
            .ask(|reply| Command::Invite {
                key,
                target: r.target.clone(),
                destination,
                transport,
                from: r.from.clone().map(Box::new),
                headers: r.headers.clone(),
                body: r.body.clone(),
                defer_ack: r.defer_ack,
                reply,
            })
            .await?;
        self.info().caller_mut().sent_invite = sent;
        Ok(id)
    }

    /// A 422 to our INVITE (RFC 4028 §7.4): send it again, asking for the callee's
    /// Min-SE (once: the machine said so). True when it went out again.
    pub(super) async fn retry_after_422(&mut self, min: u32) -> bool {
        let Role::Uac(uac) = &mut self.role else {
            return false;
        };
        let Some(mut resend) = uac.resend.take() else {
            return false;
        };
        resend
            .headers
            .retain(|h| *h.name() != HeaderName::SessionExpires && *h.name() != HeaderName::MinSe);
        resend
            .headers
            .push(Header::new(HeaderName::SessionExpires, min.to_string()));
        resend
            .headers
            .push(Header::new(HeaderName::MinSe, min.to_string()));
        match self.send_initial_invite(&resend).await {
            Ok(id) => {
                if let Role::Uac(uac) = &mut self.role {
                    uac.invite = Some(id);
                    uac.resend = Some(resend);
                }
                true
            }
            Err(_) => false,
        }
    }

    pub(super) async fn cancel(&mut self, o: InviterCancelOptions) -> Result<(), Error> {
        let invite = match &self.role {
            Role::Uac(uac) => uac.invite,
            Role::Uas(_) => None,
        };
        // an Establishing caller has sent its INVITE (the machine's state says so)
        match self.session.life_mut().request_cancel() {
            Cancel::Ended => {
                self.terminate(EndReason::Disposed);
                Ok(())
            }
            Cancel::Send => {
                self.publish();
                let Some(id) = invite else {
                    return Ok(());
                };
                let mut reasons = o.extra_headers;
                if let Some(code) = o.status_code {
                    let text = o.reason_phrase.unwrap_or_default().replace('"', "'");
                    reasons.push(Header::new(
                        HeaderName::Reason,
                        format!("SIP;cause={code};text=\"{text}\""),
                    ));
                }
                self.shared
                    .ask(|reply| Command::Cancel { id, reasons, reply })
                    .await?;
                Ok(())
            }
            Cancel::Refused(_) => self.invalid("cancel"),
        }
    }

    /// ACK then BYE a dialog made by another fork's 2xx (SIP.js does the same).
    pub(super) async fn end_fork(
        &mut self,
        d: &DialogId,
        response: &Response,
        answer_in_ack: bool,
    ) {
        if answer_in_ack {
            // its 2xx made an offer: the ACK owes it an answer, from a handler of its own
            let ctx = SessionContext {
                local_ip: self.shared.advertised_ip(self.peer),
                bind_ip: self.shared.local.ip(),
                id: format!("{}-{}-fork", self.shared.local, self.key),
                session: None,
                ender: None,
                secure_signalling: self.secure_signalling(),
            };
            let pending = throwaway_answer(
                self.shared.clone(),
                ctx,
                self.sdh_options.clone(),
                body_and_type(response),
            );
            let answer = pending.await;
            self.ack(d, response.cseq().seq, answer).await;
        }
        self.bye_dialog(d).await;
    }

    pub(super) async fn on_invite_response(
        &mut self,
        response: Response,
        dialog: Option<DialogId>,
    ) {
        let status = response.status();
        let body = body_and_type(&response);
        let cancelled = self.session.life().cancelled();
        let answer_awaited =
            self.session.media().state() == OfferAnswer::LocalOffer(Message::Invite);
        if !matches!(self.role, Role::Uac(_)) {
            return;
        }
        if status < 200 {
            if let Some(d) = &self.delegate() {
                d.on_progress(&response);
            }
            // an offer in a reliable 1xx to our INVITE without one: our answer goes in its
            // PRACK, which the core holds back for us (RFC 3262 §5)
            let reliable = response.headers().get(&HeaderName::RSeq).is_some();
            let offer_awaited = self.session.media().state() == OfferAnswer::AwaitingOffer;
            if let (true, true, Some(b), Some(d)) = (reliable, offer_awaited, &body, &dialog) {
                let (b, d) = (b.clone(), d.clone());
                return self.answer_in_prack(&d, b).await;
            }
            // early media: the first 1xx answer to our INVITE's offer
            let early = matches!(&self.role, Role::Uac(u)
                if u.caller.early_media(dialog.as_ref(), body.is_some(), answer_awaited));
            if early {
                let reliable = response.headers().get(&HeaderName::RSeq).is_some();
                let m = Message::Provisional { reliable };
                // an answer the handler cannot apply leaves the offer open for the 2xx's
                let applied = match self.session.media_mut().received(m, body.is_some()) {
                    Ok(Some(Received::Answer)) => {
                        self.media_asks(body.as_ref(), None).await.is_ok()
                    }
                    _ => false,
                };
                if let (true, Role::Uac(u), Some(d)) = (applied, &mut self.role, dialog) {
                    u.caller.early_applied(d);
                }
            }
            return;
        }
        let min_se = response
            .typed::<sipua_message::header::MinSe>()
            .and_then(Result::ok)
            .map(|m| m.0);
        let Role::Uac(uac) = &mut self.role else {
            return;
        };
        let next = uac
            .caller
            .handle_final(status, dialog, body.is_some(), min_se, cancelled);
        let (d, confirm) = match next {
            Final::Resend422(min) if self.retry_after_422(min).await => return,
            Final::Resend422(_) | Final::Rejected => {
                self.info().caller_mut().final_response = Some(response.clone());
                self.terminate(EndReason::Rejected {
                    status,
                    reason: response.reason().into_owned(),
                });
                return;
            }
            Final::EndFork {
                dialog,
                answer_in_ack,
            } => return self.end_fork(&dialog, &response, answer_in_ack).await,
            Final::Nothing => return,
            Final::CrossedCancel => {
                // the CANCEL lost the race: the core acknowledged the 2xx and sent BYE
                self.terminate(EndReason::LocalBye);
                return;
            }
            Final::Confirm(d, confirm) => (d, confirm),
        };
        record_dialog(&self.span, &d);
        self.dialog = Some(d.clone());
        {
            let mut i = self.info();
            i.dialog = Some(d.clone());
            if let Ok(to) = response.to() {
                i.remote_identity = Some(Box::new(crate::session::identity(to)));
            }
            i.asserted_identity = response
                .typed::<sipua_message::header::PAssertedIdentity>()
                .and_then(Result::ok)
                .map(|p| Box::new(p.0));
        }
        let seq = response.cseq().seq;
        let outcome = match confirm {
            Confirm::KeepEarly => {
                // the early answer of this very dialog stands; the ACK of a 2xx to an INVITE
                // without an offer (answered in our PRACK) is ours to send, bare
                if matches!(&self.role, Role::Uac(u) if !u.caller.offered()) {
                    self.ack(&d, seq, None).await;
                }
                Ok(())
            }
            Confirm::Answer => {
                // the answer; or another fork answered and its answer replaces the early one
                // (SIP.js gives up the call here; the media follows the dialog that won)
                self.take_answer(Message::Success, body.as_ref()).await
            }
            // the 2xx offers; our answer goes in the ACK
            Confirm::AnswerInAck => self.answer_in_ack(&d, seq, body).await,
        };
        if outcome.is_ok() {
            self.session
                .set_peer_allows_update(timer::allows_update(&response.headers()));
            if self.shared.options.session_timers.is_some() {
                if let Some((interval, we)) = timer::from_answer(&response) {
                    self.session
                        .life_mut()
                        .start_timer(interval, we, Instant::now());
                }
            }
        }
        match outcome {
            Ok(()) => {
                // the peer's 2xx, acknowledged by us: the dialog is confirmed
                self.session.media_mut().confirm();
                self.media_settle().await;
                self.transition(SessionState::Established)
            }
            Err(e) => {
                self.bye_dialog(&d).await;
                self.terminate(EndReason::MediaFailure(Box::new(e.clone())));
            }
        }
    }

    /// A reliable 1xx in early dialog `d` carried the offer our INVITE did not make: apply
    /// it and send our answer in its PRACK (RFC 3262 §5). If no answer can be made the PRACK
    /// goes without one (the peer's 2xx then carries the offer again, answered in the ACK).
    async fn answer_in_prack(&mut self, d: &DialogId, offer: BodyAndContentType) {
        let m = Message::Provisional { reliable: true };
        let answer = match self.session.media_mut().received(m, true) {
            Ok(Some(Received::Offer)) => {
                self.session.media_mut().respond(Message::Prack);
                let options = self.answer_options.clone();
                self.media_asks(Some(&offer), options.as_ref())
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        let answered = answer.is_some();
        self.prack(d, answer).await;
        if answered {
            self.session.media_mut().sent(Message::Prack, true);
            if let Role::Uac(u) = &mut self.role {
                u.caller.early_applied(d.clone());
            }
        }
    }

    /// A 2xx to our INVITE without offer carried the offer: apply it and put our answer in
    /// the ACK (RFC 3264 §5). The ACK goes out even when negotiation fails (without a body),
    /// so the peer stops retransmitting; the error tells the caller to end the session.
    pub(super) async fn answer_in_ack(
        &mut self,
        d: &DialogId,
        seq: u32,
        offer: Option<BodyAndContentType>,
    ) -> Result<(), Error> {
        let taken = match self
            .session
            .media_mut()
            .received(Message::Success, offer.is_some())
        {
            // another fork's 2xx after our PRACK answered an earlier fork's offer: its own
            Ok(Some(Received::Repeat)) => self
                .session
                .media_mut()
                .replace_offer(Message::Success)
                .map(|()| Some(Received::Offer)),
            other => other,
        };
        let answer = match taken {
            Ok(Some(Received::Offer)) => {
                self.session.media_mut().respond(Message::Ack);
                let options = self.answer_options.clone();
                match self.media_asks(offer.as_ref(), options.as_ref()).await {
                    Ok(Some(answer)) => Ok(answer),
                    Ok(None) => Err(offer_answer_error(OfferAnswerError::Missing)),
                    Err(e) => Err(e),
                }
            }
            Err(OfferAnswerError::Missing) => {
                self.media_settle().await;
                Err(offer_answer_error(OfferAnswerError::Missing))
            }
            other => Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                format!("the 2xx carried no offer ({other:?})"),
            ))),
        };
        match answer {
            Ok(answer) => {
                self.session.media_mut().sent(Message::Ack, true);
                self.ack(d, seq, Some(answer)).await;
                Ok(())
            }
            Err(e) => {
                self.ack(d, seq, None).await;
                Err(e)
            }
        }
    }
}

/// An answer to `offer` from a fresh handler that is closed at once: for a dialog that is
/// acknowledged only to be ended (a losing fork).
async fn throwaway_answer(
    shared: Arc<Shared>,
    ctx: SessionContext,
    options: SessionDescriptionHandlerOptions,
    offer: Option<BodyAndContentType>,
) -> Option<BodyAndContentType> {
    let offer = offer?;
    let factory = &shared.options.session_description_handler_factory;
    let mut sdh = factory.create(&ctx, &options).ok()?;
    let answer = match sdh.set_description(&offer, &options, &[]).await {
        Ok(()) => sdh.get_description(&options, &[]).await.ok(),
        Err(_) => None,
    };
    sdh.close();
    answer
}
