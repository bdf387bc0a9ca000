//! The session's media handler as the task uses it: made on first need with the session's
//! context, and called only for what the media machine (`sipua_proto::session::Media`) asks:
//! apply the peer's offer or answer, make our description (the last one kept, for a response
//! that repeats it), roll back a failed exchange (RFC 3264 §8), the dialog confirmed. And the
//! bodies of messages as the handler sees them.

use super::*;

impl Task {
    /// Whether this session's signalling is TLS or WSS to the next hop (see
    /// [`SessionContext::secure_signalling`]): the way a callee's INVITE came (its top Via),
    /// or the way a caller's goes.
    pub(super) fn secure_signalling(&self) -> bool {
        match &self.role {
            Role::Uas(uas) => uas.secure,
            Role::Uac(uac) => self.shared.secure_towards(&uac.target),
        }
    }

    pub(super) fn ensure_sdh(&mut self) -> Result<&mut Box<dyn SessionDescriptionHandler>, Error> {
        if self.sdh.is_none() {
            let ctx = SessionContext {
                local_ip: self.shared.advertised_ip(self.peer),
                bind_ip: self.shared.local.ip(),
                id: {
                    // the address as text was made once; a SocketAddr's Display is slow
                    let mut id = String::with_capacity(self.shared.local_text.len() + 21);
                    id.push_str(&self.shared.local_text);
                    let _ = std::fmt::Write::write_fmt(&mut id, format_args!("-{}", self.key));
                    id
                },
                session: Some(self.info.clone() as Arc<dyn crate::sdh::SessionView>),
                ender: self.me.as_ref().map(|m| m.poster()),
                secure_signalling: self.secure_signalling(),
            };
            let sdh = self
                .shared
                .options
                .session_description_handler_factory
                .create(&ctx, &self.sdh_options)
                .map_err(Error::from)?;
            if let Some(handle) = sdh.handle() {
                self.info().media = Some(handle);
            }
            self.sdh = Some(sdh);
        }
        self.sdh
            .as_mut()
            .ok_or_else(|| Error::SessionDescriptionHandler(crate::SdhError::new("no handler")))
    }

    /// Does what the media machine asks ([`Media::poll_ask`](sipua_proto::session::Media::poll_ask)), in order, and nothing else:
    /// `incoming` is the peer's description that arrived (the callee's INVITE's offer when
    /// none is given), `options` what ours is made with (the session's when none). Returns
    /// the description made or repeated for the message about to go, if one was asked for.
    /// When the handler fails an ask, the machine hears it ([`Media::failed`](sipua_proto::session::Media::failed): back to where
    /// the run began) and the roll-back it then asks for is done before the error returns.
    pub(super) async fn media_asks(
        &mut self,
        incoming: Option<&BodyAndContentType>,
        options: Option<&SessionDescriptionHandlerOptions>,
    ) -> Result<Option<BodyAndContentType>, Error> {
        let mut made = None;
        while let Some(ask) = self.session.media_mut().poll_ask() {
            let done = match ask {
                MediaAsk::ApplyOffer(m) | MediaAsk::ApplyAnswer(m) => {
                    let body = match incoming {
                        Some(b) => Some(b.clone()),
                        None if m == Message::Invite => {
                            self.received_invite().and_then(|r| body_and_type(&*r))
                        }
                        None => None,
                    };
                    self.remote_description(body).await
                }
                MediaAsk::Describe(_) => match self.local_description(options).await {
                    Ok(d) => {
                        made = Some(d);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                MediaAsk::Repeat(_) => match self.last_local.as_deref() {
                    Some(d) => {
                        made = Some(d.clone());
                        Ok(())
                    }
                    None => Err(Error::SessionDescriptionHandler(crate::SdhError::new(
                        "no description to repeat",
                    ))),
                },
                MediaAsk::Rollback => {
                    if let Some(sdh) = self.sdh.as_mut() {
                        let _ = sdh.rollback_description().await;
                    }
                    Ok(())
                }
                MediaAsk::Confirmed => {
                    if let Some(sdh) = self.sdh.as_mut() {
                        sdh.confirmed();
                    }
                    Ok(())
                }
            };
            if let Err(e) = done {
                self.session.media_mut().failed();
                while let Some(ask) = self.session.media_mut().poll_ask() {
                    if let (MediaAsk::Rollback, Some(sdh)) = (ask, self.sdh.as_mut()) {
                        let _ = sdh.rollback_description().await;
                    }
                }
                return Err(e);
            }
        }
        Ok(made)
    }

    /// The answer to our INVITE's offer arrived in its 2xx (`m`): applied. A 2xx without one
    /// rolls the exchange back and is an error; a 2xx whose exchange another fork's 1xx
    /// completed brings the answer that replaces that one (the media follows the dialog that
    /// won).
    pub(super) async fn take_answer(
        &mut self,
        m: Message,
        body: Option<&BodyAndContentType>,
    ) -> Result<(), Error> {
        match (self.session.media_mut().received(m, body.is_some()), body) {
            (Ok(Some(Received::Answer)), _) => {}
            (_, Some(_)) => self.session.media_mut().replace_answer(m),
            (Err(why), None) => {
                self.media_settle().await;
                return Err(offer_answer_error(why));
            }
            (Ok(_), None) => return Err(offer_answer_error(OfferAnswerError::Missing)),
        }
        self.media_asks(body, None).await.map(drop)
    }

    /// Does what the media machine asks when no description is to come of it (a roll-back,
    /// the dialog confirmed).
    pub(super) async fn media_settle(&mut self) {
        let _ = self.media_asks(None, None).await;
    }

    async fn local_description(
        &mut self,
        options: Option<&SessionDescriptionHandlerOptions>,
    ) -> Result<BodyAndContentType, Error> {
        let options = options.cloned().unwrap_or_else(|| self.sdh_options.clone());
        let modifiers = self.modifiers.clone();
        let sdh = self.ensure_sdh()?;
        let d = sdh
            .get_description(&options, &modifiers)
            .await
            .map_err(Error::from)?;
        if self.session.media().keeps_descriptions() {
            self.last_local = Some(Box::new(d.clone()));
        }
        Ok(d)
    }

    /// Gives the peer's description to the handler.
    async fn remote_description(
        &mut self,
        message_body: Option<BodyAndContentType>,
    ) -> Result<(), Error> {
        let d = message_body.ok_or_else(|| {
            Error::SessionDescriptionHandler(crate::SdhError::new("no session description"))
        })?;
        let options = self.sdh_options.clone();
        let modifiers = self.modifiers.clone();
        let sdh = self.ensure_sdh()?;
        if !sdh.has_description(&d.content_type) {
            return Err(Error::ContentTypeUnsupported(d.content_type.clone()));
        }
        sdh.set_description(&d, &options, &modifiers)
            .await
            .map_err(Error::from)?;
        self.info().remote_description = Some(d);
        Ok(())
    }
}

/// The error a session reports for a body the negotiation did not allow, or one it owed and
/// lacked.
pub(super) fn offer_answer_error(why: OfferAnswerError) -> Error {
    let text = match why {
        OfferAnswerError::Missing => "no session description".to_owned(),
        other => other.to_string(),
    };
    Error::SessionDescriptionHandler(crate::SdhError::new(text))
}

/// The body of a message with its content type, if it has a body.
pub(super) fn body_and_type<M: HasBody>(m: &M) -> Option<BodyAndContentType> {
    let body = m.body_bytes();
    if body.is_empty() {
        return None;
    }
    // `type/subtype` as written when the header is only that (the usual case, no parse);
    // else what the parse finds, without its parameters
    let plain = m.content_type_text().and_then(|v| {
        let v = std::str::from_utf8(v).ok()?.trim_matches([' ', '\t']);
        let (kind, subtype) = v.split_once('/')?;
        // RFC 3261 §25.1 token characters
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        };
        (token(kind) && token(subtype)).then(|| v.to_owned())
    });
    let content_type = plain.unwrap_or_else(|| {
        m.media_type()
            .map_or_else(|| "application/sdp".to_owned(), |t| content_type_of(&t))
    });
    Some(BodyAndContentType { body, content_type })
}

pub(super) fn to_body(b: Option<BodyAndContentType>) -> Result<Body, Error> {
    body_of(b.map(|b| (b.content_type, b.body)))
}

/// The seconds of a response's Retry-After (RFC 3261 §20.33).
pub(super) fn retry_after_secs(response: &Response) -> Option<u64> {
    response
        .typed::<sipua_message::header::RetryAfter>()
        .and_then(Result::ok)
        .map(|r| u64::from(r.delta))
}

pub(super) trait HasBody {
    fn body_bytes(&self) -> Bytes;
    fn content_type_text(&self) -> Option<&[u8]>;
    fn media_type(&self) -> Option<sipua_message::header::MediaType>;
}

impl HasBody for Request {
    fn body_bytes(&self) -> Bytes {
        Request::body_bytes(self)
    }
    fn content_type_text(&self) -> Option<&[u8]> {
        self.headers()
            .get(&HeaderName::ContentType)
            .map(|h| h.value())
    }
    fn media_type(&self) -> Option<sipua_message::header::MediaType> {
        self.content_type()
    }
}

impl HasBody for Response {
    fn body_bytes(&self) -> Bytes {
        Response::body_bytes(self)
    }
    fn content_type_text(&self) -> Option<&[u8]> {
        self.headers()
            .get(&HeaderName::ContentType)
            .map(|h| h.value())
    }
    fn media_type(&self) -> Option<sipua_message::header::MediaType> {
        self.content_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipua_message::Message;

    fn request_with(content_type: Option<&str>) -> Request {
        let ct = content_type.map_or(String::new(), |c| format!("Content-Type:{c}\r\n"));
        let text = format!(
            "MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: k\r\nCSeq: 1 MESSAGE\r\n\
             Max-Forwards: 70\r\n{ct}Content-Length: 3\r\n\r\nv=0"
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_body_s_type_is_type_slash_subtype_without_parameters() {
        for (header, want) in [
            (Some(" application/sdp"), "application/sdp"),
            (Some("Application/SDP "), "Application/SDP"),
            (Some(" text/plain;charset=utf-8"), "text/plain"),
            (Some(" multipart/mixed ; boundary=x"), "multipart/mixed"),
            (Some(" application / sdp"), "application/sdp"),
            (None, "application/sdp"),
        ] {
            let b = body_and_type(&request_with(header)).unwrap();
            assert_eq!(b.content_type, want, "{header:?}");
            assert_eq!(&b.body[..], b"v=0");
        }
    }
}
