//! Digest authentication in the UA core (RFC 3261 §22.2–§22.4): answering 401/407 by
//! re-sending the request with credentials, reusing the last challenge at a next hop, and,
//! as a server, challenging requests that come without the right credentials.

use std::net::SocketAddr;
use std::time::Instant;

use sipua_message::header::{Authorization, CSeq, ProxyAuthenticate, WwwAuthenticate};
use sipua_message::{Header, HeaderName, Request, Response};

use super::UaCore;
use crate::auth::digest::{Challenge, RequestParts};
use crate::auth::server::{DigestServer, Verdict};
use crate::dialog::Dialog;
use crate::endpoint::TransactionId;

/// A digest username and password (RFC 3261 §22). Its `Debug` leaves the password out, so
/// that a logged configuration shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// How many times one request is re-sent with credentials before the 401/407 goes up
/// (a `stale=true` challenge allows one more).
pub(super) const AUTH_ATTEMPTS: u8 = 2;

impl UaCore {
    /// Server side ([`super::UaConfig::authenticate`]): whether out-of-dialog request `id`
    /// from `source` may go on to the TU. When it may not, the core has answered it: 401 with
    /// a challenge, or 403 for an address that failed too often.
    pub(super) fn authenticated(
        &mut self,
        now: Instant,
        id: TransactionId,
        request: &Request,
        source: SocketAddr,
    ) -> bool {
        let Some(cfg) = &self.cfg.authenticate else {
            return true;
        };
        let rng = &mut self.rng;
        let mut secret = || {
            let mut secret = [0u8; 32];
            for chunk in secret.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            secret
        };
        let credentials: Vec<_> = request
            .typed_all::<Authorization>()
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.0)
            .collect();
        let uri = String::from_utf8_lossy(request.uri_bytes());
        let parts = RequestParts {
            method: request.method().as_str(),
            uri: &uri,
            body: request.body(),
        };
        let verdict = match &cfg.shared {
            // one server for every core of this address
            Some(shared) => shared.with(cfg, secret, now, |server| {
                server.check(now, source.ip(), &credentials, &parts)
            }),
            None => self
                .auth_server
                .get_or_insert_with(|| Box::new(DigestServer::new(cfg.clone(), secret(), now)))
                .check(now, source.ip(), &credentials, &parts),
        };
        match verdict {
            Verdict::Authenticated(_) => true,
            Verdict::Challenge { challenges } => {
                let headers = challenges
                    .into_iter()
                    .map(|c| Header::new(HeaderName::WwwAuthenticate, c))
                    .collect();
                self.answer(now, id, 401, headers);
                false
            }
            Verdict::Forbidden => {
                self.answer(now, id, 403, Vec::new());
                false
            }
        }
    }

    /// Adds credentials from the last challenge answered at `destination`, if any.
    pub(super) fn authorize_from_cache(&mut self, request: &mut Request, destination: SocketAddr) {
        let Some(creds) = self.cfg.credentials.clone() else {
            return;
        };
        if !self.auth_cache.contains_key(&destination) {
            return;
        }
        let cnonce = self.token(16);
        let Some((challenge, proxy, nc)) = self.auth_cache.get_mut(&destination) else {
            return;
        };
        *nc += 1;
        let uri = String::from_utf8_lossy(request.uri_bytes()).into_owned();
        let method = request.method().clone();
        let parts = RequestParts {
            method: method.as_str(),
            uri: &uri,
            body: request.body(),
        };
        let answer = challenge.answer(&parts, &creds.username, &creds.password, &cnonce, *nc);
        let name = if *proxy {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        let _ = request.set_header(Header::new(name, answer.to_string()));
    }

    /// Re-sends the request of transaction `id` with credentials answering the challenge in
    /// `response` (RFC 3261 §22.2, §8.1.3.5): a new branch, the next CSeq, the same Call-ID
    /// and tags. Returns false when there is nothing to retry with, or enough retries.
    pub(super) fn retry_with_credentials(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: &Response,
    ) -> bool {
        let Some(creds) = self.cfg.credentials.clone() else {
            return false;
        };
        let Some(out) = self.outgoing.get(&id) else {
            return false;
        };
        let proxy = response.status() == 407;
        let challenges: Vec<sipua_message::header::Auth> = if proxy {
            response
                .typed_all::<ProxyAuthenticate>()
                .map(|v| v.into_iter().map(|a| a.0).collect())
                .unwrap_or_default()
        } else {
            response
                .typed_all::<WwwAuthenticate>()
                .map(|v| v.into_iter().map(|a| a.0).collect())
                .unwrap_or_default()
        };
        let Some(challenge) = Challenge::choose(&challenges) else {
            return false;
        };
        let limit = if challenge.stale {
            AUTH_ATTEMPTS + 1
        } else {
            AUTH_ATTEMPTS
        };
        if out.auth_attempts >= limit {
            return false;
        }
        let (mut req, destination, original, attempts) = (
            out.request.clone(),
            out.destination,
            out.original,
            out.auth_attempts + 1,
        );
        let method = req.method().clone();
        let seq = match Dialog::ref_of_request(&req).and_then(|d| self.dialogs.get_mut(d.key())) {
            Some(d) => {
                let s = d.local_seq.map_or(1, |s| s.wrapping_add(1));
                d.local_seq = Some(s);
                s
            }
            None => req.cseq().seq.wrapping_add(1),
        };
        let cnonce = self.token(16);
        let uri = String::from_utf8_lossy(req.uri_bytes()).into_owned();
        let parts = RequestParts {
            method: method.as_str(),
            uri: &uri,
            body: req.body(),
        };
        let answer = challenge.answer(&parts, &creds.username, &creds.password, &cnonce, 1);
        let name = if proxy {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        self.auth_cache
            .insert(destination, (challenge.clone(), proxy, 1));
        let via = self.via();
        let rebuilt = req
            .set_header(Header::typed(&CSeq { seq, method }))
            .and_then(|()| req.set_top_via(&via))
            .and_then(|()| req.set_header(Header::new(name, answer.to_string())));
        if rebuilt.is_err() {
            return false;
        }
        self.outgoing.remove(&id);
        self.start(now, req, destination, Some((original, attempts)), None)
            .is_ok()
    }
}
