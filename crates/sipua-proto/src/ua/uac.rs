//! Requests we send (RFC 3261 §8.1, §12.2.1, §13.2, §9, §17.1): out of dialog and inside
//! one, CANCEL, the responses to them (dialogs made and confirmed by 1xx and 2xx, forks,
//! §13.2.2.4), and the ACK of a 2xx, kept and sent again for each retransmission.

use super::*;

impl UaCore {
    /// Sends an INVITE to `target` through `destination` (the next hop, already resolved).
    pub fn invite(
        &mut self,
        now: Instant,
        target: Uri,
        destination: SocketAddr,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        self.send_request(now, Method::Invite, target, destination, Vec::new(), body)
    }

    /// Sends an out-of-dialog request (REGISTER, MESSAGE, OPTIONS, SUBSCRIBE, INVITE...) to
    /// `target` through `destination`, with a new Call-ID and From tag. Requests that create
    /// dialogs or bindings carry our Contact.
    pub fn send_request(
        &mut self,
        now: Instant,
        method: Method,
        target: Uri,
        destination: SocketAddr,
        headers: Vec<Header>,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        let opts = OutOfDialog {
            headers,
            body,
            ..OutOfDialog::default()
        };
        self.send_request_with(now, method, target, destination, opts)
    }

    /// Like [`UaCore::send_request`], with the choices of [`OutOfDialog`]: the transport
    /// RFC 3263 server location picked, another From (an anonymous caller, RFC 3323).
    pub fn send_request_with(
        &mut self,
        now: Instant,
        method: Method,
        target: Uri,
        destination: SocketAddr,
        opts: OutOfDialog,
    ) -> Result<TransactionId, UaError> {
        let OutOfDialog {
            transport,
            from,
            headers,
            body,
            call_id,
            cseq,
            to,
            contact,
            contact_params,
        } = opts;
        if method == Method::Invite && self.cfg.overload_via {
            // RFC 7339 §5.5, the loss algorithm (§7.2): a new call to a server that asked us
            // to cut by `cut` % is held back with that chance; calls in progress are not
            let cut = self.endpoint.overload_cut_at(now, destination);
            if cut > 0 && self.rng.next_u64() % 100 < u64::from(cut) {
                self.held_back += 1;
                return Err(UaError::Overloaded { cut });
            }
        }
        let tag = self.token(10);
        let call_id = call_id.unwrap_or_else(|| self.call_id());
        let branch = self.branch();
        // From is our address of record (or the caller's choice) with a new tag, written
        // without a copy; To the registered address, the target or the caller's choice
        let b = RequestBuilder::new_ref(method.clone(), &target);
        let mut b = match self.via_value(branch) {
            ViaValue::Branch(t, branch) => b.via_branch(t, &branch),
            ViaValue::Text(v) => b.via_text(v),
            ViaValue::Typed(v) => b.via(v),
        }
        .from_tagged(from.as_ref().unwrap_or(&self.ours.aor), &tag);
        b = match to {
            Some(to) => b.to(to),
            None if method == Method::Register => b.to_ref(&self.ours.aor),
            None => b.to(NameAddr::new(target)),
        };
        b = b.call_id(call_id).cseq(cseq.unwrap_or(1));
        if let Some(c) = contact {
            b = b.header(c);
        } else if let Some(p) = contact_params {
            let ours = self.contact_for(&method);
            let value = format!("{}{p}", String::from_utf8_lossy(ours.value()));
            b = b.header(Header::new(HeaderName::Contact, value));
        } else if matches!(
            method,
            Method::Invite | Method::Subscribe | Method::Refer | Method::Register
        ) {
            b = b.header(self.contact_for(&method));
        }
        for h in headers {
            b = b.header(h);
        }
        if let Some((ct, body)) = body {
            b = b.body(ct, body);
        }
        let request = b.build()?;
        let from_aor = from.is_none();
        let id = self.start(now, request, destination, None, transport)?;
        if let Some(o) = self.outgoing.get_mut(&id) {
            o.from_aor = from_aor;
        }
        Ok(id)
    }

    /// Starts a client transaction for `request`; `original` names the first attempt of a
    /// request re-sent with credentials.
    pub(super) fn start(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
        original: Option<(TransactionId, u8)>,
        hint: Option<Transport>,
    ) -> Result<TransactionId, UaError> {
        let mut request = request;
        if original.is_none() {
            self.authorize_from_cache(&mut request, destination);
        }
        // the transport chosen by server location (RFC 3263), else the one in our Via
        let via_transport = request.via_transport().clone();
        let base = hint.unwrap_or_else(|| via_transport.clone());
        // RFC 3261 §18.1.1: a request too large for UDP goes over TCP, unless the URI insists
        // (the URI is only parsed when the size asks the question)
        let size = request.to_bytes().len();
        let forced_udp = crate::locate::transport_for_size(&base, size, false) != base
            && request
                .uri()
                .as_sip()
                .and_then(|u| u.transport())
                .is_some_and(|t| t.eq_ignore_ascii_case("udp"));
        let transport = crate::locate::transport_for_size(&base, size, forced_udp);
        if transport != via_transport {
            if let Ok(mut via) = request.top_via().cloned() {
                via.transport = transport.clone();
                request.set_top_via(&via)?;
            }
        }
        let id =
            self.endpoint
                .send_request(now, request.clone(), transport.clone(), destination)?;
        let (original, auth_attempts) = original.unwrap_or((id, 0));
        if matches!(request.method(), Method::Subscribe | Method::Refer) && !request.has_to_tag() {
            self.remember_subscribe(now, &request);
        }
        self.outgoing.insert(
            id,
            Outgoing {
                request,
                transport,
                destination,
                original,
                auth_attempts,
                forget_at: None,
                provisional: false,
                from_aor: false,
                cancel: None,
                defer_ack: false,
            },
        );
        Ok(id)
    }

    /// Sends a request inside dialog `dialog` (BYE, INFO, re-INVITE...) to `destination`.
    pub fn request_in_dialog(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        method: Method,
        destination: SocketAddr,
    ) -> Result<TransactionId, UaError> {
        self.request_in_dialog_with(now, dialog, method, destination, Vec::new(), None)
    }

    /// Like [`UaCore::request_in_dialog`], with extra headers and a body (INFO payloads,
    /// re-INVITE offers, in-dialog MESSAGE).
    pub fn request_in_dialog_with(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        method: Method,
        destination: SocketAddr,
        extra: Vec<Header>,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        let d = self.dialogs.get(dialog).ok_or(UaError::UnknownDialog)?;
        let transport = transport_of_route(d);
        self.request_in_dialog_over(now, dialog, method, destination, transport, extra, body)
    }

    /// Like [`UaCore::request_in_dialog_with`], over `transport` as
    /// [`UaCore::dialog_route`] read it (the dialog's connection, else its next hop's
    /// `transport` parameter): a driver that read the route for the destination hands it
    /// on instead of having the next hop parsed again.
    #[allow(clippy::too_many_arguments)]
    pub fn request_in_dialog_over(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        method: Method,
        destination: SocketAddr,
        transport: Option<Transport>,
        extra: Vec<Header>,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<TransactionId, UaError> {
        if !self.dialogs.contains_key(dialog) {
            return Err(UaError::UnknownDialog);
        }
        if method == Method::Invite && self.invites_out.contains_key(dialog) {
            return Err(UaError::RequestPending);
        }
        let branch = self.branch();
        // target refresh requests, and REFER, say where the peer's requests go (RFC 3261
        // §12.2.1.1, RFC 3311 §5.1, RFC 6665 §4.1.2.1 and §4.2.2, RFC 3515 §2.4.1)
        let refresh = matches!(
            method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
        );
        let mut headers = if refresh && !extra.iter().any(|h| h.name() == &HeaderName::Contact) {
            vec![self.contact()]
        } else {
            Vec::new()
        };
        headers.extend(extra);
        let via = match &self.ours.via_template {
            Some(t) => ViaValue::Branch(t, branch),
            None => ViaValue::Text(self.via_text_with(&branch)),
        };
        let d = self.dialogs.get_mut(dialog).ok_or(UaError::UnknownDialog)?;
        let mut request = d.request_via(method.clone(), via, headers)?;
        if let Some((ct, body)) = body {
            request.set_body(Some(&ct), &body)?;
        }
        let is_invite = *request.method() == Method::Invite;
        let id = self.start(now, request, destination, None, transport)?;
        if is_invite {
            self.invites_out.insert(dialog.clone(), id);
        }
        if method == Method::Bye {
            self.forget_dialog(dialog);
        }
        Ok(id)
    }

    /// How long to wait before retrying a re-INVITE refused with 491 (RFC 3261 §14.1):
    /// 2.1–4 s if we chose the Call-ID, else 0–2 s, in steps of 10 ms.
    pub fn glare_backoff(&mut self, dialog: &DialogId) -> Duration {
        let caller = self.dialogs.get(dialog).is_some_and(|d| d.caller);
        let r = self.rng.next_u64();
        if caller {
            Duration::from_millis(2100 + (r % 191) * 10)
        } else {
            Duration::from_millis((r % 201) * 10)
        }
    }

    /// Cancels the INVITE of client transaction `id` (RFC 3261 §9.1) with optional Reason
    /// headers (RFC 3326). The CANCEL goes out once a provisional response has arrived; if the
    /// callee answers anyway (the CANCEL/200 race), the core acknowledges the 2xx and sends
    /// BYE.
    pub fn cancel(
        &mut self,
        now: Instant,
        id: TransactionId,
        reasons: Vec<Header>,
    ) -> Result<(), UaError> {
        let current = self
            .outgoing
            .iter()
            .find(|(_, o)| o.original == id)
            .map(|(k, _)| *k)
            .unwrap_or(id);
        let out = self
            .outgoing
            .get_mut(&current)
            .ok_or(UaError::UnknownTransaction)?;
        if *out.request.method() != Method::Invite || out.cancel.is_some() {
            return Err(UaError::UnknownTransaction);
        }
        out.cancel = Some(reasons);
        if out.provisional {
            self.send_cancel(now, current);
        }
        Ok(())
    }

    pub(super) fn send_cancel(&mut self, now: Instant, id: TransactionId) {
        let Some(out) = self.outgoing.get(&id) else {
            return;
        };
        let reasons = out.cancel.clone().unwrap_or_default();
        let (destination, transport) = (out.destination, out.transport.clone());
        if let Ok(cancel) = out.request.cancel(&reasons) {
            let _ = self
                .endpoint
                .send_request(now, cancel, transport, destination);
        }
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        id: Option<TransactionId>,
        response: Response,
    ) {
        let is_invite = response.cseq().method == Method::Invite;
        if response.cseq().method == Method::Prack {
            // our own PRACK's answer: nobody else asked (auth challenges are retried first)
            if let Some(i) = id {
                if matches!(response.status(), 401 | 407)
                    && self.retry_with_credentials(now, i, &response)
                {
                    return;
                }
                if response.status() >= 200 {
                    self.outgoing.remove(&i);
                    if self.prack.take_ours(i) {
                        return;
                    }
                }
            }
        }
        if let Some(i) = id {
            if matches!(response.status(), 401 | 407)
                && self.retry_with_credentials(now, i, &response)
            {
                return;
            }
        }
        let original = id.map(|i| self.outgoing.get(&i).map_or(i, |o| o.original));
        if let (Some(i), true) = (id, is_invite && response.status() < 200) {
            let first = self
                .outgoing
                .get_mut(&i)
                .is_some_and(|o| !std::mem::replace(&mut o.provisional, true));
            if first && self.outgoing.get(&i).is_some_and(|o| o.cancel.is_some()) {
                self.send_cancel(now, i);
            }
        }
        let cancelled = id
            .and_then(|i| self.outgoing.get(&i))
            .is_some_and(|o| o.cancel.is_some());
        if response.status() >= 200 && is_invite {
            if let Some(o) = original {
                self.invites_out.retain(|_, t| *t != o && Some(*t) != id);
            }
        }
        // the dialog id of a 2xx, made once for the two uses below
        let mut success_id = None;
        if is_invite && response.is_success() {
            // a retransmitted 2xx (its ACK was lost): ACK it again, tell no one
            if let Some(r) = Dialog::ref_of_response(&response) {
                let seq = response.cseq().seq;
                let did = known(&self.dialogs, r).unwrap_or_else(|| r.to_owned_id());
                let key = (did, seq);
                if !self.awaiting_ack.is_empty() && self.awaiting_ack.contains_key(&key) {
                    return; // the TU has it and has not acknowledged it yet
                }
                if let Some(a) = self.sent_acks.get(&key) {
                    let t = Transmit {
                        transport: a.transport.clone(),
                        destination: a.destination,
                        bytes: a.bytes.clone(),
                        transaction: None,
                    };
                    self.queue.push_back(t);
                    return;
                }
                success_id = Some(key.0);
            }
        }
        let mut dialog = None;
        if is_invite && response.status() > 100 && response.status() < 300 && response.has_to_tag()
        {
            let did = success_id.or_else(|| Dialog::id_of_response(&response));
            let out = id.and_then(|i| self.outgoing.get(&i));
            match (did, out) {
                (Some(did), Some(out)) => {
                    match self.dialogs.get_mut(&did) {
                        Some(d) => d.on_response(&response),
                        None => {
                            // our From is our address of record with the request's tag: the
                            // dialog takes it from there rather than parsing it
                            let local = (out.from_aor && self.ours.aor_round_trips)
                                .then(|| out.request.from_tag())
                                .flatten()
                                .map(|tag| {
                                    // room for the tag and no more: the dialog keeps it
                                    let mut a = self.ours.aor.clone();
                                    a.params.0.reserve_exact(1);
                                    a.set_tag(tag);
                                    a
                                });
                            if let Ok(mut d) = Dialog::uac_with(&out.request, &response, local) {
                                d.flow = flow_of(&out.transport, out.destination);
                                self.dialogs.insert(did.clone(), Box::new(d));
                            }
                        }
                    }
                    dialog = Some(did);
                }
                (Some(did), None) => dialog = Some(did),
                _ => {}
            }
        }
        if matches!(response.cseq().method, Method::Subscribe | Method::Refer)
            && response.is_success()
        {
            dialog = self.subscription_dialog(id, &response);
        }
        if let (Some(did), Some(i), true) = (&dialog, id, is_invite && response.status() < 200) {
            // an initial INVITE (no To tag) without an offer: an offer in a reliable 1xx is
            // answered in the PRACK, which the TU sends
            let out = self.outgoing.get(&i).map(|o| {
                let initial = o.defer_ack && o.request.to().is_ok_and(|t| t.tag().is_none());
                (o.destination, initial)
            });
            if let Some((dest, offer_awaited)) = out {
                if !self.on_reliable_provisional(now, &response, did, dest, offer_awaited) {
                    return;
                }
            }
        }
        let deferred = id
            .and_then(|i| self.outgoing.get(&i))
            .is_some_and(|o| o.defer_ack && o.cancel.is_none());
        if is_invite && response.is_success() && deferred {
            if let (Some(did), Some(i)) = (&dialog, id) {
                // the TU sends the ACK (with its answer) through `ack`
                self.awaiting_ack
                    .insert((did.clone(), response.cseq().seq), (i, now));
            }
        } else if is_invite && response.is_success() {
            if let Some(did) = &dialog {
                self.ack_2xx(now, id, did, &response, None);
                if cancelled {
                    // the CANCEL lost the race: end the call that came up anyway
                    let dest = id
                        .and_then(|i| self.outgoing.get(&i))
                        .map(|o| self.dialog_destination(did).unwrap_or(o.destination));
                    if let Some(dest) = dest {
                        let _ = self.request_in_dialog(now, did, Method::Bye, dest);
                    }
                }
            }
            if id.is_none() {
                return; // a retransmission after the transaction ended: re-ACKed, not news
            }
        }
        if let (Some(i), true) = (id, response.status() >= 200) {
            if is_invite && response.is_success() {
                let forget = now + self.timers_cfg.t1x64();
                if let Some(o) = self.outgoing.get_mut(&i) {
                    o.forget_at = Some(forget);
                }
            } else {
                self.outgoing.remove(&i);
            }
            if !response.is_success() {
                if let Some(r) = Dialog::ref_of_response(&response) {
                    if self
                        .dialogs
                        .get(r.key())
                        .is_some_and(|d| d.state == DialogState::Early)
                    {
                        self.dialogs.remove(r.key());
                    }
                }
            }
        }
        if let Some(id) = original {
            self.events.push_back(UaEvent::Response {
                id,
                response,
                dialog,
            });
        }
    }

    /// Marks our INVITE `id` (initial or re-INVITE) so that its 2xx responses are reported but
    /// not acknowledged: the TU calls [`UaCore::ack`] with the answer when the INVITE carried no
    /// offer (RFC 3264 §5: the offer is in the 2xx, the answer in the ACK).
    pub fn defer_ack(&mut self, id: TransactionId) -> Result<(), UaError> {
        let o = self
            .outgoing
            .get_mut(&id)
            .ok_or(UaError::UnknownTransaction)?;
        o.defer_ack = true;
        Ok(())
    }

    /// Acknowledges the 2xx of dialog `dialog` to the INVITE with CSeq `seq`, with an
    /// optional body (the answer to an offer in the 2xx). Only for INVITEs marked with
    /// [`UaCore::defer_ack`]; the ACK is kept and repeated for retransmitted 2xx.
    pub fn ack(
        &mut self,
        now: Instant,
        dialog: &DialogId,
        seq: u32,
        body: Option<(MediaType, Bytes)>,
    ) -> Result<(), UaError> {
        let (id, _) = self
            .awaiting_ack
            .remove(&(dialog.clone(), seq))
            .ok_or(UaError::NothingToAck)?;
        self.ack_seq(now, Some(id), dialog, seq, body);
        Ok(())
    }

    /// Sends the ACK for a 2xx (RFC 3261 §13.2.2.4) and keeps it for retransmitted 2xx.
    pub(super) fn ack_2xx(
        &mut self,
        now: Instant,
        id: Option<TransactionId>,
        did: &DialogId,
        response: &Response,
        body: Option<(MediaType, Bytes)>,
    ) {
        self.ack_seq(now, id, did, response.cseq().seq, body)
    }

    pub(super) fn ack_seq(
        &mut self,
        now: Instant,
        id: Option<TransactionId>,
        did: &DialogId,
        seq: u32,
        body: Option<(MediaType, Bytes)>,
    ) {
        let key = (did.clone(), seq);
        let Some(out) = id.and_then(|i| self.outgoing.get(&i)) else {
            return;
        };
        let (mut transport, fallback) = (out.transport.clone(), out.destination);
        let branch = self.branch();
        // one lookup of the dialog for where the ACK goes and what it holds
        let Some(d) = self.dialogs.get(did) else {
            return;
        };
        let route = route_of(d);
        if let (Some(t), true) = (route.transport, route.over_flow) {
            transport = t;
        }
        let destination = route.destination.unwrap_or(fallback);
        let via = self.via_value(branch);
        let Ok(mut ack) = d.ack_via(seq, via) else {
            return;
        };
        if let Some((ct, body)) = body {
            if ack.set_body(Some(&ct), &body).is_err() {
                return;
            }
        }
        let bytes = ack.to_bytes();
        self.queue.push_back(Transmit {
            transport: transport.clone(),
            destination,
            bytes: bytes.clone(),
            transaction: None,
        });
        self.sent_acks.insert(
            key,
            SentAck {
                bytes,
                transport,
                destination,
                expires: now + self.timers_cfg.t1x64(),
            },
        );
    }
}
