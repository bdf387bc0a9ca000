//! What the task asks of the driver: responses (with the `Server` line on final ones, and a
//! `Warning` saying why an offer was refused, RFC 3261 §20.43), requests inside the dialog,
//! BYE for dialogs to end, and the ACK of a 2xx (RFC 3261 §13.2.2.4).

use super::*;

impl Task {
    /// A `Warning` (RFC 3261 §20.43, code 399) saying why the media handler refused an
    /// offer, for the 488: the peer's logs (and a person reading them) learn the reason.
    pub(super) fn warning(&self, e: &Error) -> Header {
        let text = match e {
            Error::SessionDescriptionHandler(h) => h.to_string(),
            other => other.to_string(),
        };
        let text: String = text
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| if c == '"' { '\'' } else { c })
            .filter(|&c| c != '\\')
            .take(200)
            .collect();
        let agent = self.shared.advertised_ip(self.peer);
        let agent = match agent {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        Header::new(HeaderName::Warning, format!("399 {agent} \"{text}\""))
    }

    pub(super) async fn respond(
        &mut self,
        id: TransactionId,
        status: u16,
        reason: Option<String>,
        headers: Vec<Header>,
        body: Option<BodyAndContentType>,
    ) -> Result<Option<DialogId>, Error> {
        self.respond_with(id, status, reason, headers, body, false)
            .await
    }

    pub(super) async fn respond_with(
        &mut self,
        id: TransactionId,
        status: u16,
        reason: Option<String>,
        headers: Vec<Header>,
        body: Option<BodyAndContentType>,
        reliable: bool,
    ) -> Result<Option<DialogId>, Error> {
        let body = to_body(body)?;
        let key = self.key;
        let mut headers = headers;
        if status >= 200 {
            headers.push(self.shared.server_line.clone());
        }
        let respond = |reply| Command::Respond {
            key: Some(key),
            id,
            status,
            reason,
            headers,
            body,
            reliable,
            reply,
        };
        if status < 200 && !reliable {
            // an unreliable provisional response is sent without waiting for the driver: the
            // session needs no dialog id from it, and the core refuses it only once the
            // INVITE has its final response, which this task sent itself or hears of as an
            // input (a CANCEL answered with 487)
            self.shared
                .commands
                .send(respond(None))
                .await
                .map_err(|_| Error::Stopped)?;
            return Ok(None);
        }
        self.shared.ask(|reply| respond(Some(reply))).await
    }

    /// Answers `id` without waiting for the outcome: for a response whose failure would
    /// change nothing (the 200 to a BYE, after which the session ends anyway).
    /// `request` as an object for the delegate to answer (200 if it does not).
    pub(super) fn incoming(&self, id: TransactionId, request: Request) -> crate::IncomingRequest {
        crate::IncomingRequest::new(self.shared.clone(), id, request, 200)
    }

    pub(super) async fn respond_and_forget(&mut self, id: TransactionId, status: u16) {
        let mut headers = Vec::new();
        if status >= 200 {
            headers.push(self.shared.server_line.clone());
        }
        let _ = self
            .shared
            .commands
            .send(Command::plain_response(
                Some(self.key),
                id,
                status,
                headers,
                None,
            ))
            .await;
    }

    pub(super) async fn send_in_dialog(
        &mut self,
        dialog: &DialogId,
        method: Method,
        options: RequestOptions,
        defer_ack: bool,
    ) -> Result<TransactionId, Error> {
        let body = to_body(options.body)?;
        let (key, dialog) = (self.key, dialog.clone());
        let headers = options.extra_headers;
        self.shared
            .ask(|reply| Command::InDialog {
                key,
                dialog,
                method,
                headers,
                body,
                defer_ack,
                reply,
            })
            .await
    }

    /// Sends BYE in `dialog` and forgets its answer (forks, failed negotiations).
    pub(super) async fn bye_dialog(&mut self, dialog: &DialogId) {
        if let Ok(id) = self
            .send_in_dialog(dialog, Method::Bye, RequestOptions::default(), false)
            .await
        {
            self.requests.insert(id, None);
        }
    }

    pub(super) async fn ack(
        &mut self,
        dialog: &DialogId,
        seq: u32,
        body: Option<BodyAndContentType>,
    ) {
        let Ok(body) = to_body(body) else { return };
        let dialog = dialog.clone();
        let _ = self
            .shared
            .ask(|reply| Command::Ack {
                dialog,
                seq,
                body,
                reply,
            })
            .await;
    }

    /// The PRACK of the reliable provisional response in early dialog `dialog` whose offer
    /// our INVITE asked for, with our answer (none when we have none): the core holds it
    /// back for us (RFC 3262 §5).
    pub(super) async fn prack(&mut self, dialog: &DialogId, body: Option<BodyAndContentType>) {
        let Ok(body) = to_body(body) else { return };
        let dialog = dialog.clone();
        let _ = self
            .shared
            .ask(|reply| Command::Prack {
                dialog,
                body,
                reply,
            })
            .await;
    }
}
