//! The session's media handler as the task uses it: made on first need with the session's
//! context, asked for descriptions (the last one kept, for a response that repeats it), told
//! the peer's, rolled back with the negotiation when an exchange fails (RFC 3264 §8); and the
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

    pub(super) async fn local_description(
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
        if self.life.may_answer() {
            self.last_local = Some(Box::new(d.clone()));
        }
        Ok(d)
    }

    /// Gives the peer's description in `body`/`content_type` to the handler.
    pub(super) async fn remote_description(
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

    /// The exchange under way failed: the handler and the negotiation go back to the
    /// previous session (RFC 3264 §8).
    pub(super) async fn rollback(&mut self) {
        self.oa.rollback();
        if let Some(sdh) = self.sdh.as_mut() {
            let _ = sdh.rollback_description().await;
        }
    }
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
