//! Requests we take and answer (RFC 3261 §8.2, §12.2.2, §13.3, §14.2): overload shedding
//! before the TU hears of a request (§21.5.4), in-dialog checks (481, 500 for an old CSeq,
//! 491/500 for a second INVITE), our responses (tags, Contact, Record-Route copied), and
//! the 2xx retransmitted until its ACK (§13.3.1.4).

use super::*;

impl UaCore {
    /// Whether a new request outside a dialog is refused for load: too many requests wait
    /// for the TU ([`UaConfig::max_pending_requests`]). Draining and the INVITE rate are
    /// refused earlier, by the endpoint, before a transaction is made ([`Admission`]).
    pub(super) fn sheds(&self, method: &Method) -> bool {
        if matches!(method, Method::Ack | Method::Cancel) {
            return false;
        }
        let max = self.cfg.max_pending_requests;
        // `incoming` holds this request too
        max > 0 && self.incoming.len() > max
    }

    /// A response to request `id` with our To tag (the same for every response of the
    /// transaction) and, for dialog-creating INVITE responses, our Contact.
    pub fn response(&self, id: TransactionId, status: u16) -> Result<Response, UaError> {
        self.response_with(id, status, Vec::new())
    }

    /// [`UaCore::response`] with `headers` added in the same pass (one serialisation, one
    /// parse; adding them afterwards would rebuild the response once each).
    pub fn response_with(
        &self,
        id: TransactionId,
        status: u16,
        headers: Vec<Header>,
    ) -> Result<Response, UaError> {
        self.response_full(id, status, None, headers, None)
    }

    /// [`UaCore::response_with`] with a reason phrase of the caller's (`None`: the standard
    /// one) and a body of the given type, all in the one pass.
    pub fn response_full(
        &self,
        id: TransactionId,
        status: u16,
        reason: Option<&str>,
        headers: Vec<Header>,
        body: Option<(&MediaType, &[u8])>,
    ) -> Result<Response, UaError> {
        let inc = self.incoming.get(&id).ok_or(UaError::UnknownTransaction)?;
        // a To that does not parse (answered with 400) gets no tag rather than no answer
        let tag = (status > 100 && !inc.request.has_to_tag()).then_some(inc.local_tag.as_str());
        let contact = match inc.request.method() {
            Method::Invite => (101..300).contains(&status),
            // the notifier's 2xx names its target (RFC 6665 §4.2.1, RFC 3515 §2.4.2)
            Method::Subscribe | Method::Refer | Method::Update => (200..300).contains(&status),
            _ => false,
        };
        // our Contact first; borrowed, without a list, when it is the only extra header
        let mut extra = headers;
        let with_contact = contact && !extra.iter().any(|h| h.name() == &HeaderName::Contact);
        if with_contact && !extra.is_empty() {
            extra.insert(0, self.contact());
        }
        let extra: &[Header] = if with_contact && extra.is_empty() {
            std::slice::from_ref(&self.ours.contact)
        } else {
            &extra
        };
        // made once by the endpoint when the request arrived; made here if it is gone
        let made;
        let via = match self.endpoint.received_via_of(id) {
            Some(v) => v,
            None => {
                made = endpoint::received_via_text(&inc.request, inc.source);
                made.as_deref()
            }
        };
        Ok(Response::from_request_with_parts(
            &inc.request,
            status,
            reason,
            tag,
            via,
            extra,
            body,
        )?)
    }

    /// Sends `response` on server transaction `id`. A 1xx/2xx to an INVITE with a To tag
    /// creates or confirms the dialog; a 2xx is then retransmitted until its ACK.
    pub fn respond(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<Option<DialogId>, UaError> {
        let status = response.status();
        let inc = self
            .incoming
            .get_mut(&id)
            .ok_or(UaError::UnknownTransaction)?;
        let mut dialog_id = None;
        if *inc.request.method() == Method::Invite
            && (101..300).contains(&status)
            && response.has_to_tag()
        {
            let state = if status < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            };
            let local_tag = response.to_tag().unwrap_or_default();
            match Dialog::ref_of_request(&inc.request).and_then(|r| known(&self.dialogs, r)) {
                // re-INVITE inside an existing dialog
                Some(existing) => dialog_id = Some(existing),
                None => {
                    // the id Dialog::uas gives: a dialog of this INVITE that a provisional
                    // response made early is confirmed, not made again
                    let r = DialogIdRef {
                        call_id: inc.request.call_id(),
                        local_tag,
                        remote_tag: inc.request.from_tag().unwrap_or_default(),
                    };
                    let did = match self.dialogs.get_key_value(r.key()) {
                        Some((did, _)) => {
                            let did = did.clone();
                            if let Some(x) = self.dialogs.get_mut(&did) {
                                x.state = state;
                            }
                            did
                        }
                        None => {
                            let parts = inc.parts.take();
                            let mut d = Dialog::uas_with(&inc.request, local_tag, state, parts)?;
                            d.flow = flow_of(&inc.transport, inc.source);
                            debug_assert_eq!(d.id.as_ref(), r);
                            let did = d.id.clone();
                            self.dialogs.insert(did.clone(), Box::new(d));
                            did
                        }
                    };
                    dialog_id = Some(did);
                }
            }
        } else if matches!(inc.request.method(), Method::Subscribe | Method::Refer)
            && !inc.request.has_to_tag()
            && response.is_success()
        {
            // a 2xx to SUBSCRIBE or REFER creates the subscription's dialog (RFC 6665
            // §4.2.1, RFC 3515 §2.4.4)
            let local_tag = response.to_tag().unwrap_or(&inc.local_tag).to_owned();
            let parts = inc.parts.take();
            let mut d = Dialog::uas_with(&inc.request, &local_tag, DialogState::Confirmed, parts)?;
            d.flow = flow_of(&inc.transport, inc.source);
            let did = d.id.clone();
            self.dialogs.entry(did.clone()).or_insert(Box::new(d));
            dialog_id = Some(did);
        } else if let Some(did) =
            Dialog::ref_of_request(&inc.request).and_then(|r| known(&self.dialogs, r))
        {
            dialog_id = Some(did);
        }
        let (request, source, transport) = (inc.request.clone(), inc.source, inc.transport.clone());
        // our tag, for an early dialog that a final non-2xx ends (below)
        let ends_early =
            *request.method() == Method::Invite && status >= 300 && !request.has_to_tag();
        let local_tag = ends_early.then(|| response.to_tag().unwrap_or(&inc.local_tag).to_owned());
        // whether the request's top Via gets received/rport in responses (known on arrival;
        // the endpoint lets go of the request at the final response)
        let via_changes = matches!(self.endpoint.received_via_of(id), Some(Some(_)));
        self.endpoint.respond(now, id, response.clone())?;
        if status >= 200 && *request.method() == Method::Invite {
            self.invites_in.retain(|_, t| *t != id);
            self.prack_final(id);
        }
        if status >= 200 {
            // (its merged-request entry stays while the transaction lingers: a copy of the
            // request along another path still gets 482, RFC 3261 §8.2.2.2; swept below)
            self.incoming.remove(&id);
        }
        if *request.method() == Method::Invite && (200..300).contains(&status) {
            if let Some(did) = &dialog_id {
                // the endpoint sent it once; the core retransmits it until the ACK
                let t1 = self.timers_cfg.t1;
                let bytes = if via_changes {
                    endpoint::with_received(response, &request, source).to_bytes()
                } else {
                    response.to_bytes()
                };
                let key = Arc::new((did.clone(), request.cseq().seq));
                let destination = if transport.is_reliable() {
                    source
                } else {
                    destination_for(&request, source)
                };
                if !transport.is_reliable() {
                    self.timers.push(now, now + t1, key.clone());
                }
                let give_up = now + self.timers_cfg.t1x64();
                self.timers.push(now, give_up, key.clone());
                let cost = bytes.len() + request.to_bytes().len();
                self.unconfirmed_bytes += cost;
                self.unconfirmed.push_back(key.clone());
                let old = self.pending_2xx.insert(
                    key,
                    Pending2xx {
                        bytes,
                        transport,
                        destination,
                        interval: t1,
                        next: now + t1,
                        give_up,
                        cost,
                    },
                );
                if let Some(old) = old {
                    self.unconfirmed_bytes -= old.cost;
                }
            }
        }
        if let Some(local_tag) = local_tag {
            let r = DialogIdRef {
                call_id: request.call_id(),
                local_tag: &local_tag,
                remote_tag: request.from_tag().unwrap_or_default(),
            };
            // an early dialog created by a provisional response ends with the final answer
            if self
                .dialogs
                .get(r.key())
                .is_some_and(|d| d.state == DialogState::Early)
            {
                self.dialogs.remove(r.key());
            }
        }
        Ok(dialog_id)
    }

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        id: TransactionId,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let in_dialog = request.has_to_tag();
        // our tag for the responses: a request inside a dialog already names it
        let local_tag = if in_dialog {
            String::new()
        } else {
            self.token(10)
        };
        let mut parts = None;
        let stateless = self.check_request(&request, &mut parts);
        self.incoming.insert(
            id,
            Incoming {
                request: request.clone(),
                source,
                transport,
                local_tag,
                parts,
            },
        );
        if let Some((status, headers)) = stateless {
            self.answer(now, id, status, headers);
            return;
        }
        if !in_dialog && self.sheds(request.method()) {
            // the cheapest answer: nothing made for it but the transaction that absorbs its
            // retransmissions
            self.shed += 1;
            let after = Header::typed(&sipua_message::header::RetryAfter::seconds(
                self.cfg.overload_retry_after,
            ));
            self.answer(now, id, 503, vec![after]);
            return;
        }
        if !in_dialog
            && *request.method() != Method::Options
            && !self.authenticated(now, id, &request, source)
        {
            return;
        }
        if !in_dialog {
            if let Some(key) = merge_key(&self.keys, &request) {
                let branch = self.keys.hash_one(request.branch().unwrap_or_default());
                // §8.2.2.2: the same request over another path (one lookup for both uses)
                match self.merged.entry(key) {
                    Entry::Occupied(e)
                        if e.get().1 != branch && self.endpoint.state(e.get().0).is_some() =>
                    {
                        self.answer(now, id, 482, Vec::new());
                        return;
                    }
                    Entry::Occupied(mut e) => {
                        e.insert((id, branch));
                    }
                    Entry::Vacant(v) => {
                        v.insert((id, branch));
                    }
                }
            }
            if *request.method() == Method::Options && self.cfg.capabilities.answer_options {
                let headers = self.capability_headers();
                self.answer(now, id, 200, headers);
                return;
            }
        }
        if in_dialog {
            let r = Dialog::ref_of_request(&request);
            if *request.method() == Method::Notify {
                if let Some(r) = r.filter(|r| !self.dialogs.contains_key(r.key())) {
                    self.dialog_from_notify(&r.to_owned_id(), &request);
                }
            }
            // the table's own id: its parts are shared, so this copy counts references
            let did = r.and_then(|r| known(&self.dialogs, r));
            let checked = did
                .as_ref()
                .and_then(|d| self.dialogs.get_mut(d))
                .map(|d| d.on_request(&request));
            let mut status = match checked {
                None => Some(481),
                Some(Err(DialogError::CSeqTooLow)) => Some(500),
                Some(Err(_)) => Some(400),
                Some(Ok(())) => None,
            };
            let mut headers = Vec::new();
            if let (None, Some(d), Method::Invite) = (status, &did, request.method()) {
                // §14.2: glare with our own re-INVITE gets 491; a second INVITE while one is
                // unanswered, or while our 2xx waits for its ACK, gets 500 with Retry-After
                if self.invites_out.contains_key(d) {
                    status = Some(491);
                } else if self.invites_in.contains_key(d)
                    || self.pending_2xx.keys().any(|k| k.0 == *d)
                {
                    status = Some(500);
                    let secs = (self.rng.next_u64() % 10) as u32;
                    headers.push(Header::typed(&sipua_message::header::RetryAfter::seconds(
                        secs,
                    )));
                } else {
                    self.invites_in.insert(d.clone(), id);
                }
            }
            if let Some(status) = status {
                self.answer(now, id, status, headers);
                return;
            }
            if *request.method() == Method::Bye {
                if let Some(d) = &did {
                    self.forget_dialog(d);
                }
            }
            if let Some(d) = &did {
                if self.on_prack(now, id, &request, d) {
                    return;
                }
            }
            self.events.push_back(UaEvent::Request {
                id,
                request,
                dialog: did,
            });
        } else {
            if *request.method() == Method::Invite {
                self.make_room(now, request.to_bytes().len());
            }
            self.events.push_back(UaEvent::Request {
                id,
                request,
                dialog: None,
            });
        }
    }
}
