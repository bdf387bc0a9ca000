//! What the handles ask of the session (SIP.js's `Inviter.invite`/`cancel`,
//! `Invitation.accept`/`progress`/`reject`, `Session.bye`/`invite`/`refer`/`info`/`dispose`):
//! each command checked against where the session is, then handed to the part it belongs
//! to. A BYE waits for the ACK of our 2xx (RFC 3261 §15) when the lifecycle machine says so.

use super::*;

impl Task {
    pub(super) async fn on_command(&mut self, cmd: SessionCommand) {
        match cmd {
            SessionCommand::Invite(o, reply) => {
                let r = if self.current() == SessionState::Established {
                    let options = SessionInviteOptions {
                        extra_headers: o.extra_headers,
                        ..Default::default()
                    };
                    return self.reinvite(options, reply).await;
                } else {
                    self.invite(o).await
                };
                let _ = reply.send(r);
            }
            SessionCommand::Cancel(o, reply) => {
                let r = self.cancel(o).await;
                let _ = reply.send(r);
            }
            SessionCommand::Accept(o, reply) => {
                let r = self.accept(o).await;
                let replaces = match &self.role {
                    Role::Uas(u) => u.replaces,
                    Role::Uac(_) => None,
                };
                if let (Ok(()), Some(key)) = (&r, replaces) {
                    // the new call is up: the one it replaces ends (RFC 3891 §3)
                    let _ = self.shared.commands.send(Command::Replaced { key }).await;
                }
                let _ = reply.send(r);
            }
            SessionCommand::Progress(o, reply) => match self.progress_with(o).await {
                // resolved by the PRACK (or its timeout)
                Ok(true) => match self.uas() {
                    Some(u) => u.awaiting_prack = Some(reply),
                    None => {
                        let _ = reply.send(Ok(()));
                    }
                },
                Ok(false) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            SessionCommand::Reject(o, reply) => {
                let r = self.reject(o).await;
                let _ = reply.send(r);
            }
            SessionCommand::Bye(o, reply) => self.bye(o, reply).await,
            SessionCommand::MediaEnded(why) => {
                if self.current() == SessionState::Terminated {
                    return;
                }
                // a call up: BYE; one not answered yet: refused (as a failed offer is)
                if let Some(d) = self.dialog.clone() {
                    if self.current() == SessionState::Established {
                        self.bye_dialog(&d).await;
                    }
                }
                if let Some(id) = self
                    .uas()
                    .map(|u| u.id)
                    .filter(|_| self.session.life().may_answer())
                {
                    let _ = self.respond(id, 488, None, Vec::new(), None).await;
                    self.session.life_mut().final_sent(false);
                }
                self.terminate(EndReason::MediaFailure(Box::new(Error::from(why))));
            }
            SessionCommand::Request(method, o, reply) => {
                if self.current() != SessionState::Established {
                    let _ = reply.send(self.invalid("send a request"));
                    return;
                }
                let Some(d) = self.dialog.clone() else {
                    let _ = reply.send(self.invalid("send a request"));
                    return;
                };
                match self.send_in_dialog(&d, method, o, false).await {
                    Ok(id) => {
                        self.requests.insert(id, Some(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            SessionCommand::ReInvite(o, reply) => self.reinvite(o, reply).await,
            SessionCommand::Dispose(reply) => {
                let r = self.dispose().await;
                let _ = reply.send(r);
            }
            SessionCommand::Update(o, reply) => self.send_update(o, reply).await,
            SessionCommand::Refer(to, o, reply) => self.refer(to, o, reply).await,
            SessionCommand::Respond(id, status, headers, reply) => {
                let r = self.respond(id, status, None, headers, None).await;
                let _ = reply.send(r.map(|_| ()));
            }
            SessionCommand::ReferNotify {
                event_id,
                sipfrag,
                terminated,
                reply,
            } => {
                self.refer_notify(event_id, sipfrag, terminated, reply)
                    .await
            }
            SessionCommand::Dtmf(tones, reply) => {
                let terminated = self.current() == SessionState::Terminated;
                let r = match self.sdh.as_mut() {
                    _ if terminated => Err(Error::SessionTerminated),
                    None => Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                        "no media yet",
                    ))),
                    Some(sdh) => {
                        if sdh.send_dtmf(&tones) {
                            Ok(())
                        } else {
                            Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                                "the media handler cannot send these DTMF tones",
                            )))
                        }
                    }
                };
                let _ = reply.send(r);
            }
        }
    }

    pub(super) async fn bye(&mut self, o: RequestOptions, reply: Reply<Response>) {
        let state = self.current();
        let Some(d) = self
            .dialog
            .clone()
            .filter(|_| state == SessionState::Established)
        else {
            let _ = reply.send(self.invalid("bye"));
            return;
        };
        match self.session.life_mut().request_bye() {
            Bye::Now => {
                self.terminate(EndReason::LocalBye);
                self.send_bye_on(&d, o, reply).await;
            }
            Bye::AfterAck => {
                // RFC 3261 §15: a callee does not send BYE before the ACK (or its timeout)
                self.publish();
                self.bye_after_ack = Some(Box::new((o, reply)));
            }
            Bye::Refused(_) => {
                let _ = reply.send(self.invalid("bye"));
            }
        }
    }

    /// The BYE the machine released (the ACK came): the session has ended.
    pub(super) async fn send_bye(&mut self, o: RequestOptions, reply: Reply<Response>) {
        match self.dialog.clone() {
            Some(d) => self.send_bye_on(&d, o, reply).await,
            None => {
                let _ = reply.send(Err(Error::SessionTerminated));
            }
        }
    }

    pub(super) async fn send_bye_on(
        &mut self,
        d: &DialogId,
        o: RequestOptions,
        reply: Reply<Response>,
    ) {
        match self.send_in_dialog(d, Method::Bye, o, false).await {
            Ok(id) => {
                self.requests.insert(id, Some(reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    pub(super) async fn dispose(&mut self) -> Result<(), Error> {
        match self.current() {
            SessionState::Terminated | SessionState::Terminating => Ok(()),
            SessionState::Established => {
                let (tx, _rx) = tokio::sync::oneshot::channel();
                self.bye(RequestOptions::default(), tx).await;
                Ok(())
            }
            SessionState::Initial | SessionState::Establishing => match &self.role {
                Role::Uac(_) => {
                    let r = self.cancel(InviterCancelOptions::default()).await;
                    if r.is_err() {
                        self.terminate(EndReason::Disposed);
                    }
                    Ok(())
                }
                Role::Uas(_) => {
                    let r = self.reject(InvitationRejectOptions::default()).await;
                    if r.is_err() {
                        self.terminate(EndReason::Disposed);
                    }
                    Ok(())
                }
            },
        }
    }
}
