//! HTTP Digest authentication as SIP uses it (RFC 3261 §22.4, RFC 7616, RFC 8760): MD5 and
//! SHA-256 (and their `-sess` forms), `qop=auth` and `qop=auth-int`, nonce counts and client
//! nonces; the client side (answering a 401/407 challenge) and the server side (checking
//! credentials, for tests and `sipua serve`).
//!
//! Everything is a pure function: the caller supplies the client nonce (from its seeded RNG)
//! and the nonce count, so a run replays exactly.

use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest, Sha256};
use sipua_message::header::Auth;

/// The hash of a digest challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` parameter (case-insensitive); `None` for unsupported ones.
    pub fn parse(s: &str) -> Option<Algorithm> {
        [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, a)| a)
    }

    /// The name as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Preference when a response carries several challenges: SHA-256 first (RFC 8760 §2.4).
    fn rank(self) -> u8 {
        match self {
            Algorithm::Sha256 | Algorithm::Sha256Sess => 0,
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Quality of protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: the request line is protected.
    Auth,
    /// `auth-int`: the body too.
    AuthInt,
}

impl Qop {
    fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// A digest challenge from WWW-Authenticate or Proxy-Authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The protection space.
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// Echoed back unchanged.
    pub opaque: Option<String>,
    /// The hash.
    pub algorithm: Algorithm,
    /// The qop values offered (empty: the RFC 2069 form without qop).
    pub qop: Vec<Qop>,
    /// `stale=true`: the nonce expired but the credentials were right; retry at once.
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Not the Digest scheme.
    NotDigest,
    /// `realm` or `nonce` is missing.
    Incomplete,
    /// The algorithm is not supported.
    UnsupportedAlgorithm,
    /// qop is offered but neither `auth` nor `auth-int`.
    UnsupportedQop,
}

impl std::fmt::Display for ChallengeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChallengeError::NotDigest => "not a Digest challenge",
            ChallengeError::Incomplete => "the challenge has no realm or no nonce",
            ChallengeError::UnsupportedAlgorithm => "the challenge's algorithm is not supported",
            ChallengeError::UnsupportedQop => "the challenge offers neither qop auth nor auth-int",
        })
    }
}

impl std::error::Error for ChallengeError {}

impl Challenge {
    /// Reads a challenge header value.
    pub fn from_auth(a: &Auth) -> Result<Challenge, ChallengeError> {
        if !a.is_digest() {
            return Err(ChallengeError::NotDigest);
        }
        let realm = a
            .param("realm")
            .ok_or(ChallengeError::Incomplete)?
            .to_owned();
        let nonce = a
            .param("nonce")
            .ok_or(ChallengeError::Incomplete)?
            .to_owned();
        let algorithm = match a.param("algorithm") {
            None => Algorithm::Md5,
            Some(s) => Algorithm::parse(s).ok_or(ChallengeError::UnsupportedAlgorithm)?,
        };
        let qop = match a.param("qop") {
            None => Vec::new(),
            Some(list) => {
                let q: Vec<Qop> = list
                    .split(',')
                    .filter_map(|t| match t.trim() {
                        t if t.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
                        t if t.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
                        _ => None,
                    })
                    .collect();
                if q.is_empty() {
                    return Err(ChallengeError::UnsupportedQop);
                }
                q
            }
        };
        let stale = a
            .param("stale")
            .is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Challenge {
            realm,
            nonce,
            opaque: a.param("opaque").map(str::to_owned),
            algorithm,
            qop,
            stale,
        })
    }

    /// The challenge to answer among several (one response may carry many, RFC 8760 §2.4):
    /// the first with the most preferred supported algorithm.
    pub fn choose<'a>(challenges: impl IntoIterator<Item = &'a Auth>) -> Option<Challenge> {
        challenges
            .into_iter()
            .filter_map(|a| Challenge::from_auth(a).ok())
            .enumerate()
            .min_by_key(|(i, c)| (c.algorithm.rank(), *i))
            .map(|(_, c)| c)
    }

    /// Builds the Authorization / Proxy-Authorization value answering this challenge.
    ///
    /// `cnonce` must be fresh random text (used only when qop is in play); `nc` counts the
    /// requests made with this nonce, from 1. `auth` is preferred over `auth-int` when both are
    /// offered.
    pub fn answer(
        &self,
        req: &RequestParts<'_>,
        username: &str,
        password: &str,
        cnonce: &str,
        nc: u32,
    ) -> Auth {
        let qop = if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            self.qop.first().copied()
        };
        let nc_text = format!("{nc:08x}");
        let response = compute(
            self.algorithm,
            qop,
            req,
            username,
            &self.realm,
            password,
            &self.nonce,
            cnonce,
            &nc_text,
        );
        let mut a = Auth {
            scheme: "Digest".into(),
            params: Vec::new(),
            token: None,
        };
        a.push("username", username, true);
        a.push("realm", &self.realm, true);
        a.push("nonce", &self.nonce, true);
        a.push("uri", req.uri, true);
        a.push("response", &response, true);
        a.push("algorithm", self.algorithm.as_str(), false);
        if let Some(o) = &self.opaque {
            a.push("opaque", o, true);
        }
        if let Some(q) = qop {
            a.push("qop", q.as_str(), false);
            a.push("nc", &nc_text, false);
            a.push("cnonce", cnonce, true);
        }
        a
    }
}

/// What digest hashes of a request: method, Request-URI as written, and the body (auth-int).
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The request method.
    pub method: &'a str,
    /// The digest-uri: the Request-URI as written.
    pub uri: &'a str,
    /// The message body.
    pub body: &'a [u8],
}

#[allow(clippy::too_many_arguments)]
fn compute(
    alg: Algorithm,
    qop: Option<Qop>,
    req: &RequestParts<'_>,
    username: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
    nc: &str,
) -> String {
    let mut ha1 = alg.hash(format!("{username}:{realm}:{password}").as_bytes());
    if alg.is_sess() {
        ha1 = alg.hash(format!("{ha1}:{nonce}:{cnonce}").as_bytes());
    }
    let ha2 = match qop {
        Some(Qop::AuthInt) => {
            alg.hash(format!("{}:{}:{}", req.method, req.uri, alg.hash(req.body)).as_bytes())
        }
        _ => alg.hash(format!("{}:{}", req.method, req.uri).as_bytes()),
    };
    match qop {
        Some(q) => alg.hash(format!("{ha1}:{nonce}:{nc}:{cnonce}:{}:{ha2}", q.as_str()).as_bytes()),
        None => alg.hash(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Server side: whether `credentials` answer a challenge of ours correctly for `password`.
/// The caller checks separately that the nonce is one it issued and is still fresh.
pub fn verify(credentials: &Auth, req: &RequestParts<'_>, password: &str) -> bool {
    if !credentials.is_digest() {
        return false;
    }
    let p = |n| credentials.param(n);
    let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) = (
        p("username"),
        p("realm"),
        p("nonce"),
        p("uri"),
        p("response"),
    ) else {
        return false;
    };
    if !same_resource(uri, req.uri) {
        return false;
    }
    // the hash covers the uri as the client wrote it
    let req = &RequestParts { uri, ..*req };
    let Some(alg) = p("algorithm").map_or(Some(Algorithm::Md5), Algorithm::parse) else {
        return false;
    };
    let qop = match p("qop") {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
        Some(q) if q.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
        Some(_) => return false,
    };
    let (cnonce, nc) = (p("cnonce").unwrap_or(""), p("nc").unwrap_or(""));
    if qop.is_some() && (cnonce.is_empty() || nc.is_empty()) {
        return false;
    }
    let expected = compute(alg, qop, req, username, realm, password, nonce, cnonce, nc);
    // constant-time comparison of the hex digests
    expected.len() == response.len()
        && expected
            .bytes()
            .zip(response.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

/// Whether a digest `uri` names the request's resource (RFC 7616 §3.4.6): the Request-URI
/// as written, or the same without its user part, as some clients (SIPp) write it.
fn same_resource(uri: &str, request_uri: &str) -> bool {
    fn without_user(u: &str) -> &str {
        let rest = u
            .strip_prefix("sip:")
            .or_else(|| u.strip_prefix("sips:"))
            .unwrap_or(u);
        match rest.find('@') {
            Some(at) => &rest[at + 1..],
            None => rest,
        }
    }
    uri == request_uri || without_user(uri).eq_ignore_ascii_case(without_user(request_uri))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipua_message::header::{TypedHeader, WwwAuthenticate};

    fn challenge(s: &str) -> Challenge {
        Challenge::from_auth(&WwwAuthenticate::parse(s.as_bytes()).unwrap().0).unwrap()
    }

    const GET: RequestParts<'static> = RequestParts {
        method: "GET",
        uri: "/dir/index.html",
        body: b"",
    };

    #[test]
    fn rfc_2617_md5_vector() {
        let c = challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let a = c.answer(&GET, "Mufasa", "Circle Of Life", "0a4f113b", 1);
        assert_eq!(
            a.param("response"),
            Some("6629fae49393a05397450978507c4ef1")
        );
        assert_eq!(a.param("nc"), Some("00000001"));
        assert_eq!(a.param("qop"), Some("auth"));
        assert_eq!(a.param("opaque"), Some("5ccc069c403ebaf9f0171e9517f40e41"));
        assert!(verify(&a, &GET, "Circle Of Life"));
        assert!(!verify(&a, &GET, "circle of life"));
        assert!(!verify(
            &a,
            &RequestParts {
                method: "POST",
                ..GET
            },
            "Circle Of Life"
        ));
    }

    #[test]
    fn rfc_7616_sha256_vector() {
        let c = challenge(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        );
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let a = c.answer(
            &GET,
            "Mufasa",
            "Circle of Life",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert_eq!(
            a.param("response"),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        // the same challenge with MD5 (RFC 7616 §3.9.1)
        let mut md5 = c.clone();
        md5.algorithm = Algorithm::Md5;
        let a = md5.answer(
            &GET,
            "Mufasa",
            "Circle of Life",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert_eq!(
            a.param("response"),
            Some("8ca523f5e9506fed4657c9700eebdbec")
        );
    }

    #[test]
    fn auth_int_hashes_the_body_and_sess_variants_verify() {
        let c = challenge(
            r#"Digest realm="atlanta.com", nonce="84a4cc6f3082121f32b42a2187831a9e", qop="auth-int", algorithm=SHA-256-sess"#,
        );
        let req = RequestParts {
            method: "INVITE",
            uri: "sip:bob@biloxi.com",
            body: b"v=0\r\n",
        };
        let a = c.answer(&req, "alice", "secret", "c1", 7);
        assert_eq!(a.param("qop"), Some("auth-int"));
        assert_eq!(a.param("nc"), Some("00000007"));
        assert!(verify(&a, &req, "secret"));
        assert!(
            !verify(
                &a,
                &RequestParts {
                    body: b"v=1\r\n",
                    ..req
                },
                "secret"
            ),
            "the body is protected"
        );
    }

    #[test]
    fn rfc_2069_form_without_qop() {
        let c = challenge(r#"Digest realm="biloxi.com", nonce="abc""#);
        assert!(c.qop.is_empty());
        let req = RequestParts {
            method: "REGISTER",
            uri: "sip:biloxi.com",
            body: b"",
        };
        let a = c.answer(&req, "bob", "zanzibar", "unused", 1);
        assert_eq!(a.param("qop"), None);
        assert_eq!(a.param("cnonce"), None);
        assert!(verify(&a, &req, "zanzibar"));
    }

    #[test]
    fn choose_prefers_sha256_and_skips_unknown_schemes() {
        let h = |s: &str| WwwAuthenticate::parse(s.as_bytes()).unwrap().0;
        let all = [
            h(r#"Digest realm="r", nonce="n1", algorithm=MD5"#),
            h(r#"Basic realm="r""#),
            h(r#"Digest realm="r", nonce="n2", algorithm=SHA-256"#),
            h(r#"Digest realm="r", nonce="n3", algorithm=SHA-512-256"#),
        ];
        assert_eq!(Challenge::choose(&all).unwrap().nonce, "n2");
        assert_eq!(Challenge::choose(&all[..2]).unwrap().nonce, "n1");
        assert!(Challenge::choose(&all[1..2]).is_none());
        assert_eq!(
            Challenge::from_auth(&all[3]),
            Err(ChallengeError::UnsupportedAlgorithm)
        );
        let stale = Challenge::from_auth(&h(r#"Digest realm="r", nonce="n", stale=TRUE"#)).unwrap();
        assert!(stale.stale);
    }

    #[test]
    fn a_digest_uri_without_the_user_part_names_the_same_resource() {
        let c = challenge(r#"Digest realm="r", nonce="n", qop="auth""#);
        let written = RequestParts {
            method: "INVITE",
            uri: "sip:127.0.0.1:5060",
            body: b"",
        };
        let a = c.answer(&written, "u", "p", "cn", 1);
        let request = RequestParts {
            uri: "sip:bob@127.0.0.1:5060",
            ..written
        };
        assert!(verify(&a, &request, "p"), "SIPp's form");
        let elsewhere = RequestParts {
            uri: "sip:bob@192.0.2.9:5060",
            ..written
        };
        assert!(!verify(&a, &elsewhere, "p"), "another host");
    }
}
