//! What the driver hands the session: responses to its requests (the initial INVITE, a
//! re-offer, a REFER, anything else), the peer's requests in the dialog (BYE, re-INVITE,
//! UPDATE, REFER and its NOTIFYs, INFO, MESSAGE), the ACK and PRACK of our responses and
//! their timeouts (RFC 3261 §13.3.1.4, RFC 3262 §3), CANCEL (§9.2), transaction failures
//! (§8.1.3.1), and the driver's shutdown.

use super::*;

impl Task {
    pub(super) async fn on_input(&mut self, input: SessionInput) {
        match input {
            SessionInput::Response {
                id,
                response,
                dialog,
            } => {
                let initial = matches!(&self.role, Role::Uac(u) if u.invite == Some(id));
                let reoffer = self.session.reoffers().sent_in(id);
                if initial {
                    self.on_invite_response(response, dialog).await;
                } else if reoffer == Some(Kind::ReInvite) {
                    self.on_reinvite_response(id, response).await;
                } else if reoffer == Some(Kind::Update) {
                    if response.status() >= 200 {
                        self.on_update_response(id, response).await;
                    }
                } else if self
                    .transfers
                    .as_ref()
                    .is_some_and(|t| t.waiters.contains_key(&id))
                {
                    if response.status() >= 200 {
                        self.on_refer_response(id, response);
                    }
                } else if response.status() >= 200 {
                    if let Some(waiter) = self.requests.remove(&id) {
                        if let Some(w) = waiter {
                            let _ = w.send(Ok(response));
                        }
                    } else if response.is_success() && response.cseq().method == Method::Invite {
                        // a 2xx from another fork, after ours: end that dialog
                        if let Some(d) = dialog.filter(|d| Some(d) != self.dialog.as_ref()) {
                            let answer_in_ack =
                                matches!(&self.role, Role::Uac(u) if !u.caller.offered());
                            self.end_fork(&d, &response, answer_in_ack).await;
                        }
                    }
                }
            }
            SessionInput::Request { id, request } => self.on_request(id, request).await,
            SessionInput::Replaced => {
                self.info()
                    .end
                    .get_or_insert_with(|| Box::new(EndReason::Replaced));
                let _ = self.dispose().await;
            }
            SessionInput::Ack { request } => self.on_ack(request).await,
            SessionInput::Prack { request } => {
                let awaited = self.uas().is_some_and(|u| u.callee.handle_prack());
                let waiting = self.uas().and_then(|u| u.awaiting_prack.take());
                if let Some(reply) = waiting.filter(|_| awaited) {
                    // a PRACK may carry the answer to an offer in our reliable 1xx
                    let body = body_and_type(&request);
                    let r = match self
                        .session
                        .media_mut()
                        .received(Message::Prack, body.is_some())
                    {
                        Ok(Some(Received::Answer)) => {
                            self.media_asks(body.as_ref(), None).await.map(drop)
                        }
                        // an offer's answer would belong in the PRACK's 2xx, which the core
                        // sent without one: the machine does not take it
                        Err(why) => {
                            tracing::debug!(target: "sipua", %why, "a body in a PRACK ignored");
                            Ok(())
                        }
                        Ok(_) => Ok(()),
                    };
                    let _ = reply.send(r);
                }
            }
            SessionInput::PrackTimeout => {
                if let Some(u) = self.uas() {
                    u.callee.handle_prack();
                }
                if let Some(reply) = self.uas().and_then(|u| u.awaiting_prack.take()) {
                    let _ = reply.send(Err(Error::Timeout));
                }
                self.session.life_mut().final_sent(false);
                self.terminate(EndReason::LocalReject { status: 504 });
            }
            SessionInput::AckTimeout => {
                // a BYE that waited is abandoned ([`lifecycle::Event::ByeAbandoned`])
                self.info()
                    .end
                    .get_or_insert_with(|| Box::new(EndReason::AckTimeout));
                // the session ends, and a re-offer held for that ACK with it
                let held = self.session.handle_ack_timeout();
                self.ended_reoffer(held, Error::Timeout);
                self.terminate(EndReason::AckTimeout);
            }
            SessionInput::Cancelled => {
                self.session.life_mut().final_sent(false);
                if let Some(d) = &self.delegate() {
                    d.on_cancel();
                }
                self.terminate(EndReason::Cancelled);
            }
            SessionInput::Failed {
                id,
                timeout,
                reason,
            } => {
                let initial = matches!(&self.role, Role::Uac(u) if u.invite == Some(id));
                // the driver gives a reason for every failure but a timeout
                let e = match reason {
                    Some(r) => Error::Transport(r),
                    None => Error::Timeout,
                };
                if initial {
                    if let Error::Transport(why) = &e {
                        self.info().caller_mut().send_failure = Some(why.clone());
                    }
                    self.terminate(if timeout {
                        EndReason::Timeout
                    } else {
                        EndReason::TransportError
                    });
                } else if self.session.reoffer_failed(id).is_some() {
                    // the media goes back to what it was
                    self.media_settle().await;
                    if let Some(p) = self.pending.take() {
                        let _ = p.reply.send(Err(e));
                    }
                } else if let Some(reply) = self.transfers.as_deref_mut().and_then(|t| t.failed(id))
                {
                    // our REFER got no answer: whoever waits hears why, and it is not
                    // followed any more
                    let _ = reply.send(Err(e));
                } else if let Some(Some(w)) = self.requests.remove(&id) {
                    let _ = w.send(Err(e));
                }
            }
            SessionInput::Shutdown => {
                let _ = self.dispose().await;
            }
            // the loop goes on to its timer; a next park asks for its time again
            SessionInput::Wake => self.wake_asked = None,
        }
    }

    pub(super) async fn on_request(&mut self, id: TransactionId, request: Request) {
        let delegate = self.delegate();
        match request.method() {
            Method::Bye => {
                match &delegate {
                    Some(d) => d.on_bye(self.incoming(id, request)),
                    None => self.respond_and_forget(id, 200).await,
                }
                self.terminate(EndReason::RemoteBye);
            }
            Method::Invite => self.on_reinvite(id, request).await,
            Method::Update => self.on_update(id, request).await,
            Method::Refer => self.on_refer(id, request).await,
            Method::Notify if is_refer_event(&request) => {
                let status = self.on_refer_notify(&request);
                let _ = self.respond(id, status, None, Vec::new(), None).await;
            }
            m => match (delegate, m) {
                (Some(d), Method::Info) => d.on_info(self.incoming(id, request)),
                (Some(d), Method::Message) => d.on_message(self.incoming(id, request)),
                (Some(d), Method::Notify) => d.on_notify(self.incoming(id, request)),
                (_, m) => {
                    let status = match m {
                        Method::Info | Method::Message | Method::Notify => 200,
                        _ => 501,
                    };
                    let _ = self.respond(id, status, None, Vec::new(), None).await;
                }
            },
        }
    }
}
