//! REFER from both sides of a session (RFC 3515, RFC 4488, RFC 3891 for attended transfer):
//! sending one and following its implicit subscription, answering the peer's, and the
//! NOTIFYs of `message/sipfrag` progress. Which REFER of ours a NOTIFY reports on, and when
//! its subscription ends, is the `Refers` machine's (`sipua_proto::session::transfer`).

use super::*;

impl Task {
    /// Our REFERs' tables, made at the first use.
    fn transfers(&mut self) -> &mut Transfers {
        self.transfers.get_or_insert_with(Box::default)
    }

    /// Sends a REFER (SIP.js `Session.refer`); the reply comes with its final response.
    pub(super) async fn refer(
        &mut self,
        to: ReferTarget,
        o: SessionReferOptions,
        reply: Reply<Referrer>,
    ) {
        let Some(d) = self
            .dialog
            .clone()
            .filter(|_| self.current() == SessionState::Established)
        else {
            let _ = reply.send(self.invalid("refer"));
            return;
        };
        if self.transfers().refers.may_send().is_err() {
            let _ = reply.send(Err(Error::RequestPending));
            return;
        }
        let refer_to = match self.refer_to(to).await {
            Ok(v) => v,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut headers = vec![
            Header::new(HeaderName::ReferTo, refer_to),
            Header::new(HeaderName::ReferredBy, format!("<{}>", self.shared.aor())),
        ];
        if o.no_subscription {
            headers.push(Header::new(HeaderName::ReferSub, "false"));
            headers.push(Header::new(HeaderName::Supported, "norefersub"));
        }
        headers.extend(o.extra_headers);
        let options = RequestOptions {
            extra_headers: headers,
            body: None,
        };
        match self.send_in_dialog(&d, Method::Refer, options, false).await {
            Ok(id) => {
                let (tx, rx) = mpsc::channel(REFER_QUEUE);
                let t = self.transfers();
                // a NOTIFY may overtake the 2xx: the subscription is listened to already
                if t.refers.sent(id).is_ok() {
                    t.sinks.insert(id, tx);
                }
                t.waiters.insert(id, (reply, rx));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The Refer-To value for a target: a URI, or the other session's peer with the
    /// `Replaces` that names its dialog from that peer's side (RFC 3891 §5).
    pub(super) async fn refer_to(&mut self, to: ReferTarget) -> Result<String, Error> {
        let other = match to {
            ReferTarget::Uri(u) => return Ok(format!("<{u}>")),
            ReferTarget::Session(s) => s,
        };
        let Some(od) = other.dialog() else {
            return Err(Error::InvalidArgument(
                "the session to replace has no dialog yet".into(),
            ));
        };
        let dialog = self
            .shared
            .ask(|reply| Command::DialogInfo {
                dialog: od.clone(),
                reply,
            })
            .await?
            .ok_or(Error::SessionTerminated)?;
        let bad = |e| Error::InvalidArgument(format!("the session to replace: {e}"));
        let mut target = dialog.remote_target().map_err(bad)?;
        let Some(sip) = target.as_sip_mut() else {
            return Err(Error::InvalidArgument(
                "the session to replace has no SIP target".into(),
            ));
        };
        sip.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("replaces"));
        sip.headers.push((
            "Replaces".into(),
            format!(
                "{};to-tag={};from-tag={}",
                od.call_id, od.remote_tag, od.local_tag
            ),
        ));
        let mut addr = dialog.remote_uri().map_err(bad)?;
        addr.uri = target;
        addr.params = Default::default();
        Ok(addr.to_string())
    }

    pub(super) fn on_refer_response(&mut self, id: TransactionId, response: Response) {
        let Some(t) = self.transfers.as_deref_mut() else {
            return;
        };
        let Some((reply, rx)) = t.waiters.remove(&id) else {
            return;
        };
        let no_sub = response
            .headers()
            .get(&HeaderName::ReferSub)
            .is_some_and(|v| v.value().trim_ascii().eq_ignore_ascii_case(b"false"));
        let success = response.is_success();
        if !t.refers.answered(id, success, response.cseq().seq, no_sub) {
            t.sinks.remove(&id);
        }
        if success {
            let _ = reply.send(Ok(Referrer::new(response, rx)));
        } else {
            let _ = reply.send(Err(Error::rejected(&response)));
        }
    }

    /// A NOTIFY of one of our REFERs: its progress goes to the [`Referrer`]. Returns the
    /// status to answer with (481 when no REFER of ours matches, RFC 6665 §4.1.3).
    pub(super) fn on_refer_notify(&mut self, request: &Request) -> u16 {
        let id = request
            .typed::<sipua_message::header::Event>()
            .and_then(Result::ok)
            .and_then(|e| e.id().and_then(|v| v.parse::<u32>().ok()));
        let terminated = request
            .typed::<sipua_message::header::SubscriptionState>()
            .and_then(Result::ok)
            .is_some_and(|s| s.state.eq_ignore_ascii_case("terminated"));
        let Some(t) = self.transfers.as_deref_mut() else {
            return 481;
        };
        let Some(n) = t.refers.notify(id, terminated) else {
            return 481;
        };
        let sink = if n.ended {
            t.sinks.remove(&n.refer)
        } else {
            t.sinks.get(&n.refer).cloned()
        };
        if let (Some(sink), Some(progress)) = (sink, ReferNotification::parse(request, terminated))
        {
            let _ = sink.try_send(progress);
        }
        200
    }

    /// A REFER from the peer: to the delegate as a [`Referral`], or refused.
    pub(super) async fn on_refer(&mut self, id: TransactionId, request: Request) {
        if self.current() != SessionState::Established {
            let _ = self.respond(id, 403, None, Vec::new(), None).await;
            return;
        }
        let Some(me) = self.me.clone() else {
            let _ = self.respond(id, 500, None, Vec::new(), None).await;
            return;
        };
        match Referral::new(request, id, me, self.shared.clone()) {
            Err(status) => {
                let _ = self.respond(id, status, None, Vec::new(), None).await;
            }
            // without a delegate, dropping it refuses it (603)
            Ok(referral) => match self.delegate() {
                Some(d) => d.on_refer(referral),
                None => drop(referral),
            },
        }
    }

    /// Sends a progress NOTIFY of the peer's REFER (RFC 3515 §2.4.4).
    pub(super) async fn refer_notify(
        &mut self,
        event_id: u32,
        sipfrag: String,
        terminated: bool,
        reply: Reply<()>,
    ) {
        let Some(d) = self
            .dialog
            .clone()
            .filter(|_| self.current() != SessionState::Terminated)
        else {
            let _ = reply.send(Err(Error::SessionTerminated));
            return;
        };
        let state = if terminated {
            "terminated;reason=noresource".to_owned()
        } else {
            "active;expires=60".to_owned()
        };
        let options = RequestOptions {
            extra_headers: vec![
                Header::new(HeaderName::Event, format!("refer;id={event_id}")),
                Header::new(HeaderName::SubscriptionState, state),
            ],
            body: Some(BodyAndContentType {
                body: Bytes::from(sipfrag),
                content_type: "message/sipfrag;version=2.0".into(),
            }),
        };
        match self
            .send_in_dialog(&d, Method::Notify, options, false)
            .await
        {
            Ok(id) => {
                // resolved with the NOTIFY's answer
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.requests.insert(id, Some(tx));
                tokio::spawn(async move {
                    let r = match rx.await {
                        Ok(Ok(resp)) => Error::check(&resp),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(Error::SessionTerminated),
                    };
                    let _ = reply.send(r);
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Whether a NOTIFY belongs to the refer package (RFC 3515 §2.4.4).
pub(super) fn is_refer_event(request: &Request) -> bool {
    request
        .typed::<sipua_message::header::Event>()
        .and_then(Result::ok)
        .is_some_and(|e| e.package.eq_ignore_ascii_case("refer"))
}
