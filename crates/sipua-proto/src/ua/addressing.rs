//! What the core writes from its own address (RFC 3261 §8.1.1, §20.10, §20.42): tags,
//! branches with the magic cookie, Call-IDs from the seeded generator, our Via and Contact
//! (made once per address, [`Addressed`]), and our address of record.

use super::*;

impl UaCore {
    /// `len` random lower-case hex digits (tags, Call-IDs, branches, cnonces).
    pub(super) fn token(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        self.push_token(&mut s, len);
        s
    }

    /// Appends [`UaCore::token`]'s digits to `s`.
    pub(super) fn push_token(&mut self, s: &mut String, len: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let end = s.len() + len;
        while s.len() < end {
            let mut x = self.rng.next_u64();
            for _ in 0..16.min(end - s.len()) {
                s.push(char::from(HEX[(x & 0xf) as usize]));
                x >>= 4;
            }
        }
    }

    /// Our Via with a new branch and `rport` (RFC 3581): `Via::new` plus the `rport` flag,
    /// made directly (one allocation per part).
    pub(super) fn via(&mut self) -> Via {
        let mut branch = String::with_capacity(BRANCH_COOKIE.len() + 16);
        branch.push_str(BRANCH_COOKIE);
        self.push_token(&mut branch, 16);
        let param = |name: &str, value| Param {
            name: name.to_owned(),
            value,
            quoted: false,
        };
        Via {
            protocol: "SIP/2.0".to_owned(),
            transport: self.cfg.transport.clone(),
            host: Host::from(self.cfg.local.ip()),
            port: Some(self.cfg.local.port()),
            params: Params(if self.cfg.overload_via {
                // RFC 7339 §4.1: `;oc;oc-algo="loss"`, as `via_suffix` writes it
                vec![
                    param("branch", Some(branch)),
                    param("rport", None),
                    param("oc", None),
                    Param {
                        quoted: true,
                        ..param("oc-algo", Some("loss".to_owned()))
                    },
                ]
            } else {
                vec![param("branch", Some(branch)), param("rport", None)]
            }),
        }
    }

    /// Our Via as text with `branch`.
    pub(super) fn via_text_with(&self, branch: &str) -> String {
        let suffix = self.ours.via_suffix;
        let mut v = String::with_capacity(self.ours.via_prefix.len() + branch.len() + suffix.len());
        v.push_str(&self.ours.via_prefix);
        v.push_str(branch);
        v.push_str(suffix);
        v
    }

    /// [`UaCore::via`] as text, as it writes (the part before the branch is made once); the
    /// template with the same branch writes the same.
    #[cfg(test)]
    pub(super) fn via_text(&mut self) -> String {
        let branch = self.branch();
        let text = self.via_text_with(&branch);
        if let Some(t) = &self.ours.via_template {
            assert_eq!(t.with_branch(&branch), text);
        }
        text
    }

    /// A new branch: the RFC 3261 cookie and random digits, as [`UaCore::via`] has it.
    pub(super) fn branch(&mut self) -> String {
        let mut branch = String::with_capacity(BRANCH_COOKIE.len() + 16);
        branch.push_str(BRANCH_COOKIE);
        self.push_token(&mut branch, 16);
        branch
    }

    /// Our Via for a new request with `branch` ([`UaCore::branch`]): the template with it,
    /// or the text (what [`UaCore::via_text`] writes).
    pub(super) fn via_value(&self, branch: String) -> ViaValue<'_> {
        match &self.ours.via_template {
            Some(t) => ViaValue::Branch(t, branch),
            None => ViaValue::Text(self.via_text_with(&branch)),
        }
    }

    /// A new Call-ID: random digits `@` our address (of our shard, when we are one of
    /// several: on average as many draws as there are shards).
    pub(super) fn call_id(&mut self) -> String {
        let mut id = String::with_capacity(20 + self.ours.call_id_suffix.len());
        for _ in 0..1000 {
            id.clear();
            self.push_token(&mut id, 20);
            id.push_str(&self.ours.call_id_suffix);
            match self.cfg.shard {
                Some((index, count)) if crate::hash::shard_of(id.as_bytes(), count) != index => {}
                _ => break,
            }
        }
        id
    }

    pub(super) fn contact(&self) -> Header {
        self.ours.contact.clone()
    }

    /// Our Contact for a request of `method`: without `;ob` in a REGISTER (RFC 5626 §4.2).
    pub(super) fn contact_for(&self, method: &Method) -> Header {
        if self.cfg.outbound && *method == Method::Register {
            let v = String::from_utf8_lossy(self.ours.contact.value()).replace(";ob>", ">");
            return Header::new(HeaderName::Contact, v);
        }
        self.contact()
    }

    pub(super) fn make_contact(cfg: &UaConfig) -> Header {
        let transport = match cfg.transport {
            Transport::Udp => String::new(),
            ref t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        let host = Host::from(cfg.local.ip());
        let ob = if cfg.outbound { ";ob" } else { "" };
        Header::new(
            HeaderName::Contact,
            format!(
                "<sip:{}@{}:{}{transport}{ob}>",
                cfg.user,
                host,
                cfg.local.port()
            ),
        )
    }

    pub(super) fn make_aor(cfg: &UaConfig) -> NameAddr {
        if let Some(a) = &cfg.aor {
            let mut a = a.clone();
            a.params.remove("tag");
            return a;
        }
        let uri: Uri = format!("sip:{}@{}", cfg.user, Host::from(cfg.local.ip()))
            .parse()
            .unwrap_or_else(|_| Uri::Sip(sipua_message::SipUri::new(Host::from(cfg.local.ip()))));
        NameAddr::new(uri)
    }
}

/// What the core writes from its own address, made once per address.
#[derive(Debug)]
pub(super) struct Addressed {
    /// Our Contact header.
    pub(super) contact: Header,
    /// Our address of record.
    pub(super) aor: NameAddr,
    /// Our address of record written with a tag parses back to it with that tag (checked
    /// once): a dialog's local address is then made from it, not parsed.
    pub(super) aor_round_trips: bool,
    /// `@` and our address, the end of the Call-IDs we make.
    pub(super) call_id_suffix: String,
    /// Our Via up to its branch value (`SIP/2.0/UDP host:port;branch=`).
    pub(super) via_prefix: String,
    /// What follows the branch: `;rport`, and RFC 7339's `;oc;oc-algo="loss"` when we take
    /// part in overload control ([`UaConfig::overload_via`]).
    pub(super) via_suffix: &'static str,
    /// The same with `;rport` after the branch, checked once (`None` if it does not parse:
    /// then requests carry [`UaCore::via_text`], checked each time).
    pub(super) via_template: Option<ViaTemplate>,
}

impl Addressed {
    pub(super) fn new(cfg: &UaConfig) -> Addressed {
        let aor = UaCore::make_aor(cfg);
        let via_suffix = if cfg.overload_via {
            ";rport;oc;oc-algo=\"loss\""
        } else {
            ";rport"
        };
        // what UaCore::via writes before its branch value
        let via_prefix = {
            let mut v = Via::new(
                cfg.transport.clone(),
                Host::from(cfg.local.ip()),
                Some(cfg.local.port()),
                "",
            );
            v.params = Params::new();
            format!("{v};branch=")
        };
        Addressed {
            contact: UaCore::make_contact(cfg),
            aor_round_trips: {
                let mut tagged = aor.clone();
                tagged.set_tag("0123456789");
                NameAddr::parse(tagged.to_string().as_bytes()).is_ok_and(|a| a == tagged)
            },
            aor,
            call_id_suffix: format!("@{}", Host::from(cfg.local.ip())),
            via_template: ViaTemplate::new(&via_prefix, via_suffix).ok(),
            via_prefix,
            via_suffix,
        }
    }
}
