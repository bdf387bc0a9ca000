//! Session Description Protocol model (RFC 8866, which obsoletes RFC 4566).
//!
//! Parses and serialises the parts of an SDP body a SIP audio user agent
//! needs: `v=` (§5.1), `o=` (§5.2), `s=` (§5.3), `c=` (§5.7), `a=` (§5.13)
//! and `m=` (§5.14), plus helpers for the attributes of §6 (`rtpmap` §6.6,
//! `fmtp` §6.15, `ptime` §6.4, the direction attributes §6.7) and the
//! RFC 3605 `a=rtcp` attribute. Payload types without an `a=rtpmap` line fall
//! back to the static audio table of RFC 3551 §6.
//!
//! Lossless by design: every line that is not modelled (`i=`, `u=`, `e=`,
//! `p=`, `b=`, `t=`, `r=`, `z=`, `k=`, unknown types, extra `c=`) is kept in
//! order in `other_lines` and written back in its RFC 8866 §5 position, and
//! every attribute is kept verbatim, so parsing then serialising a well-formed
//! CRLF body reproduces it byte for byte. Input may use bare LF line ends;
//! output always uses CRLF. Input is bounded (see [`MAX_SDP_BYTES`],
//! [`MAX_SDP_LINES`], [`MAX_MEDIA_SECTIONS`]) and parsing never panics.

pub mod crypto;
pub mod offer_answer;

use std::error::Error;
use std::fmt;
use std::net::IpAddr;

/// Largest SDP body [`SessionDescription::parse`] accepts, in bytes; SIP
/// bodies are small and anything larger is refused rather than processed.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// Most non-empty lines [`SessionDescription::parse`] accepts.
pub const MAX_SDP_LINES: usize = 1024;

/// Most `m=` sections [`SessionDescription::parse`] accepts.
pub const MAX_MEDIA_SECTIONS: usize = 64;

/// Why an SDP body could not be parsed; line numbers are 1-based and count
/// every physical line of the input, empty ones included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP_BYTES`].
    TooLarge {
        /// Size of the refused body in bytes.
        bytes: usize,
    },
    /// The body has more than [`MAX_SDP_LINES`] non-empty lines.
    TooManyLines,
    /// The body has more than [`MAX_MEDIA_SECTIONS`] `m=` sections.
    TooManyMediaSections,
    /// The body contains no lines at all.
    Empty,
    /// The first line is not `v=` (RFC 8866 §5 requires it first).
    MissingVersion {
        /// The offending first line.
        line: usize,
    },
    /// There is no `o=` line before the first `m=` line.
    MissingOrigin,
    /// A line is not of the form `<letter>=<value>`.
    InvalidLine {
        /// The offending line.
        line: usize,
    },
    /// The `v=` value is not a number.
    InvalidVersion {
        /// The offending line.
        line: usize,
    },
    /// The `o=` line cannot be used.
    InvalidOrigin {
        /// The offending line.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `c=` line cannot be used.
    InvalidConnection {
        /// The offending line.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `m=` line cannot be used.
    InvalidMedia {
        /// The offending line.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::TooLarge { bytes } => {
                write!(f, "SDP body of {bytes} bytes exceeds {MAX_SDP_BYTES}")
            }
            SdpError::TooManyLines => write!(f, "SDP body has more than {MAX_SDP_LINES} lines"),
            SdpError::TooManyMediaSections => {
                write!(f, "SDP body has more than {MAX_MEDIA_SECTIONS} m= sections")
            }
            SdpError::Empty => write!(f, "SDP body is empty"),
            SdpError::MissingVersion { line } => write!(f, "line {line}: first line is not v="),
            SdpError::MissingOrigin => write!(f, "SDP body has no o= line"),
            SdpError::InvalidLine { line } => {
                write!(f, "line {line}: not of the form <letter>=<value>")
            }
            SdpError::InvalidVersion { line } => write!(f, "line {line}: v= is not a number"),
            SdpError::InvalidOrigin { line, reason } => write!(f, "line {line}: bad o=: {reason}"),
            SdpError::InvalidConnection { line, reason } => {
                write!(f, "line {line}: bad c=: {reason}")
            }
            SdpError::InvalidMedia { line, reason } => write!(f, "line {line}: bad m=: {reason}"),
        }
    }
}

impl Error for SdpError {}

/// Media direction attribute (RFC 8866 §6.7, RFC 3264 §5.1): the model every sipua media
/// handler shares, from `sipua-message` (the fixed handler of `sipua` uses it too).
pub use sipua::message::sdp::Direction;

/// The `o=` line (RFC 8866 §5.2): identifies the session and its version.
///
/// `session_id` is kept as the literal token (normally digits) so that ids
/// beyond `u64` and leading zeros survive a round trip; only equality is ever
/// needed. `session_version` must be numeric because offer/answer compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name, `-` when none.
    pub username: String,
    /// Session id token, kept verbatim.
    pub session_id: String,
    /// Session version; RFC 3264 §8 increments it when the session changes.
    pub session_version: u64,
    /// Network type, normally `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Unicast address or host name of the originator.
    pub address: String,
}

impl Origin {
    fn parse(line: usize, value: &str) -> Result<Origin, SdpError> {
        let fields: Vec<&str> = value.split_whitespace().collect();
        let [username, session_id, version, net_type, addr_type, address] = fields[..] else {
            return Err(SdpError::InvalidOrigin {
                line,
                reason: "expected 6 fields",
            });
        };
        let session_version = parse_digits::<u64>(version).ok_or(SdpError::InvalidOrigin {
            line,
            reason: "session version is not a number",
        })?;
        Ok(Origin {
            username: username.to_owned(),
            session_id: session_id.to_owned(),
            session_version,
            net_type: net_type.to_owned(),
            addr_type: addr_type.to_owned(),
            address: address.to_owned(),
        })
    }
}

impl fmt::Display for Origin {
    /// Writes the `o=` value (without the `o=` prefix).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

/// A `c=` line (RFC 8866 §5.7): where media is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type, normally `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Address as written, possibly with a multicast `/ttl[/count]` suffix
    /// or a host name.
    pub address: String,
}

impl Connection {
    /// A unicast `IN IP4`/`IN IP6` connection for `ip`.
    pub fn new(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".to_owned(),
            addr_type: addr_type_of(ip).to_owned(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, without any `/ttl` suffix; `None` for host names.
    pub fn ip(&self) -> Option<IpAddr> {
        parse_ip(&self.address)
    }

    fn parse(line: usize, value: &str) -> Result<Connection, SdpError> {
        let fields: Vec<&str> = value.split_whitespace().collect();
        let [net_type, addr_type, address] = fields[..] else {
            return Err(SdpError::InvalidConnection {
                line,
                reason: "expected <nettype> <addrtype> <address>",
            });
        };
        Ok(Connection {
            net_type: net_type.to_owned(),
            addr_type: addr_type.to_owned(),
            address: address.to_owned(),
        })
    }
}

impl fmt::Display for Connection {
    /// Writes the `c=` value (without the `c=` prefix).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

/// An `a=` line (RFC 8866 §5.13): `a=name` or `a=name:value`, value verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Attribute name, the part before the first `:`.
    pub name: String,
    /// Everything after the first `:`, untouched; `None` for flag attributes.
    pub value: Option<String>,
}

impl Attribute {
    /// An `a=name:value` attribute.
    pub fn new(name: &str, value: &str) -> Attribute {
        Attribute {
            name: name.to_owned(),
            value: Some(value.to_owned()),
        }
    }

    /// A flag attribute such as `a=sendrecv`.
    pub fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.to_owned(),
            value: None,
        }
    }

    /// Whether the attribute has this name (ASCII case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    fn parse(value: &str) -> Attribute {
        match value.split_once(':') {
            Some((name, rest)) => Attribute::new(name, rest),
            // Sloppy phones send "a=sendrecv " with trailing blanks.
            None => Attribute::flag(value.trim_end()),
        }
    }
}

impl fmt::Display for Attribute {
    /// Writes the `a=` value (without the `a=` prefix).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

/// A line the model does not interpret, kept verbatim for a lossless round
/// trip: `kind` is the type letter, `value` everything after `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpLine {
    /// Type letter, e.g. `'t'` or `'b'`.
    pub kind: char,
    /// Everything after `<kind>=`, untouched.
    pub value: String,
}

/// Where an unmodelled line is written relative to the modelled ones,
/// following the line order of RFC 8866 §5.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    BeforeConnection,
    AfterConnection,
    AfterAttributes,
}

fn slot_of(kind: char) -> Slot {
    match kind {
        'v' | 'o' | 's' | 'i' | 'u' | 'e' | 'p' | 'm' => Slot::BeforeConnection,
        'c' | 'b' | 't' | 'r' | 'z' | 'k' => Slot::AfterConnection,
        _ => Slot::AfterAttributes,
    }
}

fn write_other(f: &mut fmt::Formatter<'_>, lines: &[SdpLine], slot: Slot) -> fmt::Result {
    for l in lines.iter().filter(|l| slot_of(l.kind) == slot) {
        write!(f, "{}={}\r\n", l.kind, l.value)?;
    }
    Ok(())
}

fn write_attributes(f: &mut fmt::Formatter<'_>, attributes: &[Attribute]) -> fmt::Result {
    for a in attributes {
        write!(f, "a={a}\r\n")?;
    }
    Ok(())
}

/// An `a=rtpmap` mapping (RFC 8866 §6.6) or its RFC 3551 static default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Encoding name as written, e.g. `PCMU` or `telephone-event`.
    pub encoding: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels, 1 when not given.
    pub channels: u16,
}

/// Static audio payload types of RFC 3551 §6 (encoding, clock, channels).
fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    let (encoding, clock_rate, channels) = match pt {
        0 => ("PCMU", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        9 => ("G722", 8000, 1),
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        _ => return None,
    };
    Some(RtpMap {
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

/// Parses an `rtpmap` value `<pt> <encoding>/<clock>[/<channels>]`.
fn parse_rtpmap(value: &str) -> Option<(u8, RtpMap)> {
    let (pt, rest) = split_payload_type(value)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim();
    let clock_rate = parse_digits::<u32>(parts.next()?.trim())?;
    let channels = match parts.next() {
        Some(c) => parse_digits::<u16>(c.trim())?,
        None => 1,
    };
    if encoding.is_empty() || parts.next().is_some() {
        return None;
    }
    Some((
        pt,
        RtpMap {
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        },
    ))
}

/// Splits `"<pt> <rest>"` as used by `rtpmap` and `fmtp`.
fn split_payload_type(value: &str) -> Option<(u8, &str)> {
    let value = value.trim_start();
    let (pt, rest) = match value.find(char::is_whitespace) {
        Some(i) => value.split_at(i),
        None => (value, ""),
    };
    Some((parse_digits::<u8>(pt)?, rest))
}

/// Parses a plain ASCII decimal number (no sign, no blanks).
fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an address, ignoring a multicast `/ttl` suffix.
fn parse_ip(address: &str) -> Option<IpAddr> {
    let host = address.split('/').next().unwrap_or(address);
    host.parse().ok()
}

/// `IP4` or `IP6`, as written in `o=` and `c=`.
fn addr_type_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn direction_in(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .filter(|a| a.value.is_none())
        .find_map(|a| Direction::from_attribute_name(&a.name))
}

fn ptime_in(attributes: &[Attribute]) -> Option<u32> {
    let value = attributes
        .iter()
        .find(|a| a.is("ptime"))?
        .value
        .as_deref()?;
    // Some stacks write "20.0"; the integral milliseconds are what matter.
    let whole = value.trim().split('.').next().unwrap_or("");
    parse_digits::<u32>(whole).filter(|&p| p > 0)
}

/// One `m=` section (RFC 8866 §5.14) with its own `c=` and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type, e.g. `audio` or `video`.
    pub media: String,
    /// Transport port; 0 means the stream is disabled or rejected.
    pub port: u16,
    /// Number of ports from the `<port>/<count>` form, if written.
    pub port_count: Option<u16>,
    /// Transport protocol, e.g. `RTP/AVP`.
    pub proto: String,
    /// Media formats (RTP payload type numbers for RTP protocols), in order.
    pub formats: Vec<String>,
    /// Media-level `c=`, overriding the session-level one.
    pub connection: Option<Connection>,
    /// Media-level attributes, verbatim and in order.
    pub attributes: Vec<Attribute>,
    /// Unmodelled lines of this section (`i=`, `b=`, `k=`, extra `c=`...).
    pub other_lines: Vec<SdpLine>,
}

impl MediaDescription {
    /// A section with no `c=`, attributes or other lines.
    pub fn new(media: &str, port: u16, proto: &str, formats: Vec<String>) -> MediaDescription {
        MediaDescription {
            media: media.to_owned(),
            port,
            port_count: None,
            proto: proto.to_owned(),
            formats,
            connection: None,
            attributes: Vec::new(),
            other_lines: Vec::new(),
        }
    }

    fn parse(line: usize, value: &str) -> Result<MediaDescription, SdpError> {
        let mut fields = value.split_whitespace();
        let media = fields.next().ok_or(SdpError::InvalidMedia {
            line,
            reason: "missing media type",
        })?;
        let port_field = fields.next().ok_or(SdpError::InvalidMedia {
            line,
            reason: "missing port",
        })?;
        let (port, count) = match port_field.split_once('/') {
            Some((p, c)) => (p, Some(c)),
            None => (port_field, None),
        };
        let port = parse_digits::<u16>(port).ok_or(SdpError::InvalidMedia {
            line,
            reason: "port is not a number from 0 to 65535",
        })?;
        let port_count = match count {
            Some(c) => Some(parse_digits::<u16>(c).ok_or(SdpError::InvalidMedia {
                line,
                reason: "port count is not a number",
            })?),
            None => None,
        };
        let proto = fields.next().ok_or(SdpError::InvalidMedia {
            line,
            reason: "missing transport protocol",
        })?;
        let mut m = MediaDescription::new(media, port, proto, fields.map(str::to_owned).collect());
        m.port_count = port_count;
        Ok(m)
    }

    /// The first attribute with this name (ASCII case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.is(name))
    }

    /// The direction attribute of this section, if any (no session fallback).
    pub fn direction_attribute(&self) -> Option<Direction> {
        direction_in(&self.attributes)
    }

    /// The direction written in this section, `SendRecv` when absent; use
    /// [`SessionDescription::media_direction`] to honour a session-level one.
    pub fn direction(&self) -> Direction {
        self.direction_attribute().unwrap_or_default()
    }

    /// Replaces the direction attributes by `direction`, in place of the
    /// first existing one (or at the end), keeping other attributes' order.
    pub fn set_direction(&mut self, direction: Direction) {
        let is_direction =
            |a: &Attribute| a.value.is_none() && Direction::from_attribute_name(&a.name).is_some();
        let position = self.attributes.iter().position(is_direction);
        self.attributes.retain(|a| !is_direction(a));
        let attribute = Attribute::flag(direction.as_str());
        match position {
            Some(p) if p <= self.attributes.len() => self.attributes.insert(p, attribute),
            _ => self.attributes.push(attribute),
        }
    }

    /// The encoding of payload type `pt`: its `a=rtpmap` line (which wins,
    /// even over a static number) or else the RFC 3551 static default.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.attributes
            .iter()
            .filter(|a| a.is("rtpmap"))
            .filter_map(|a| parse_rtpmap(a.value.as_deref()?))
            .find(|(p, _)| *p == pt)
            .map(|(_, map)| map)
            .or_else(|| static_rtpmap(pt))
    }

    /// The format parameters of `a=fmtp:<pt> <params>`, trimmed.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.is("fmtp"))
            .filter_map(|a| split_payload_type(a.value.as_deref()?))
            .find(|(p, _)| *p == pt)
            .map(|(_, params)| params.trim())
    }

    /// The `a=ptime` packet time in milliseconds (what this side wants to
    /// receive); `None` when absent, zero or not a number.
    pub fn ptime(&self) -> Option<u32> {
        ptime_in(&self.attributes)
    }

    /// The RFC 3605 `a=rtcp:<port> [IN IP4 <address>]` attribute: the RTCP
    /// port and, if given and an IP, the RTCP address.
    pub fn rtcp(&self) -> Option<(u16, Option<IpAddr>)> {
        let value = self.attribute("rtcp")?.value.as_deref()?;
        let mut fields = value.split_whitespace();
        let port = parse_digits::<u16>(fields.next()?)?;
        let address = match (fields.next(), fields.next(), fields.next()) {
            (Some(_), Some(_), Some(address)) => parse_ip(address),
            _ => None,
        };
        Some((port, address))
    }

    /// The formats that are RTP payload type numbers, in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| parse_digits::<u8>(f))
    }
}

impl fmt::Display for MediaDescription {
    /// Writes the whole section, `m=` line first, CRLF line ends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.proto)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        write_other(f, &self.other_lines, Slot::BeforeConnection)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_other(f, &self.other_lines, Slot::AfterConnection)?;
        write_attributes(f, &self.attributes)?;
        write_other(f, &self.other_lines, Slot::AfterAttributes)
    }
}

/// A whole SDP body (RFC 8866 §5): session-level lines and media sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `v=` protocol version, 0.
    pub version: u32,
    /// `o=` originator and session version.
    pub origin: Origin,
    /// `s=` session name verbatim; `-` when the body had none.
    pub session_name: String,
    /// Session-level `c=`, the default for every media section.
    pub connection: Option<Connection>,
    /// Session-level attributes, verbatim and in order.
    pub attributes: Vec<Attribute>,
    /// Unmodelled session-level lines (`t=`, `b=`, `i=`, unknown...), in order.
    pub other_lines: Vec<SdpLine>,
    /// The `m=` sections in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body with CRLF or LF line ends. Lenient with trailing
    /// blanks, a missing `s=`/`t=` and unknown line types; strict about what
    /// negotiation needs (`v=` first, `o=`, and well-formed `c=` and `m=`).
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        if text.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge { bytes: text.len() });
        }
        let mut count = 0usize;
        let mut version = None;
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut attributes = Vec::new();
        let mut other_lines = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();

        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
            if raw.trim_end().is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_SDP_LINES {
                return Err(SdpError::TooManyLines);
            }
            let (kind, value) = split_line(line_no, raw)?;
            if version.is_none() {
                if kind != 'v' {
                    return Err(SdpError::MissingVersion { line: line_no });
                }
                version = Some(
                    parse_digits::<u32>(value.trim())
                        .ok_or(SdpError::InvalidVersion { line: line_no })?,
                );
                continue;
            }
            if kind == 'm' {
                if media.len() >= MAX_MEDIA_SECTIONS {
                    return Err(SdpError::TooManyMediaSections);
                }
                media.push(MediaDescription::parse(line_no, value)?);
                continue;
            }
            let other = SdpLine {
                kind,
                value: value.to_owned(),
            };
            match media.last_mut() {
                Some(m) => match kind {
                    'c' => {
                        let c = Connection::parse(line_no, value)?;
                        if m.connection.is_none() {
                            m.connection = Some(c);
                        } else {
                            m.other_lines.push(other);
                        }
                    }
                    'a' => m.attributes.push(Attribute::parse(value)),
                    _ => m.other_lines.push(other),
                },
                None => match kind {
                    'o' if origin.is_none() => origin = Some(Origin::parse(line_no, value)?),
                    's' if session_name.is_none() => session_name = Some(value.to_owned()),
                    'c' => {
                        let c = Connection::parse(line_no, value)?;
                        if connection.is_none() {
                            connection = Some(c);
                        } else {
                            other_lines.push(other);
                        }
                    }
                    'a' => attributes.push(Attribute::parse(value)),
                    _ => other_lines.push(other),
                },
            }
        }

        let version = version.ok_or(SdpError::Empty)?;
        let origin = origin.ok_or(SdpError::MissingOrigin)?;
        Ok(SessionDescription {
            version,
            origin,
            session_name: session_name.unwrap_or_else(|| "-".to_owned()),
            connection,
            attributes,
            other_lines,
            media,
        })
    }

    /// The address media of `media` goes to: its own `c=` if present, else
    /// the session-level one; `None` for host names or no `c=` at all.
    pub fn connection_for(&self, media: &MediaDescription) -> Option<IpAddr> {
        media
            .connection
            .as_ref()
            .or(self.connection.as_ref())
            .and_then(Connection::ip)
    }

    /// The direction of `media`: its own attribute, else a session-level
    /// one (RFC 8866 §6.7), else `SendRecv`.
    pub fn media_direction(&self, media: &MediaDescription) -> Direction {
        media
            .direction_attribute()
            .or_else(|| direction_in(&self.attributes))
            .unwrap_or_default()
    }

    /// The packet time for `media`: its `a=ptime`, else a (non-standard but
    /// common) session-level one.
    pub fn ptime_for(&self, media: &MediaDescription) -> Option<u32> {
        media.ptime().or_else(|| ptime_in(&self.attributes))
    }
}

fn split_line(line: usize, raw: &str) -> Result<(char, &str), SdpError> {
    let bytes = raw.as_bytes();
    match (bytes.first(), bytes.get(1), raw.get(2..)) {
        (Some(&kind), Some(b'='), Some(value)) if kind.is_ascii_alphabetic() => {
            Ok((char::from(kind), value))
        }
        _ => Err(SdpError::InvalidLine { line }),
    }
}

impl fmt::Display for SessionDescription {
    /// Serialises the body with CRLF line ends, in RFC 8866 §5 order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v={}\r\n", self.version)?;
        write!(f, "o={}\r\n", self.origin)?;
        write!(f, "s={}\r\n", self.session_name)?;
        write_other(f, &self.other_lines, Slot::BeforeConnection)?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_other(f, &self.other_lines, Slot::AfterConnection)?;
        write_attributes(f, &self.attributes)?;
        write_other(f, &self.other_lines, Slot::AfterAttributes)?;
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const BARESIP: &str = "v=0\r\n\
o=- 1433267012 2810468493 IN IP4 192.168.1.20\r\n\
s=-\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=tool:baresip 3.10.1\r\n\
m=audio 10000 RTP/AVP 96 0 8 101\r\n\
b=AS:102\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp:10001\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=ssrc:1844339585 cname:4f7c0b6c-8e57-4f3e-a0a1-2a9b1c3d5e6f\r\n\
a=rtcp-rsize\r\n\
a=ptime:20\r\n";

    const CHROME: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS 3b5ddc1e-2d1c-4b9f-9a4e-0f7c2a1d6e21\r\n\
m=audio 54400 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 203.0.113.7\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:842163049 1 udp 1677729535 203.0.113.7 54400 typ srflx raddr 10.0.0.5 rport 54400 generation 0 network-cost 999\r\n\
a=candidate:1467250027 1 udp 2122260223 10.0.0.5 54400 typ host generation 0 network-cost 999\r\n\
a=ice-ufrag:Vq3t\r\n\
a=ice-pwd:4Zk9mEwKx0yBn1sUo5lYc7Qd\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:3b5ddc1e-2d1c-4b9f-9a4e-0f7c2a1d6e21 5f0d7c1a-8b2e-4e3f-9d6a-1c2b3a4d5e6f\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:3029411133 cname:kP0p2x8mVq1sZ7bT\r\n\
a=ssrc:3029411133 msid:3b5ddc1e-2d1c-4b9f-9a4e-0f7c2a1d6e21 5f0d7c1a-8b2e-4e3f-9d6a-1c2b3a4d5e6f\r\n";

    fn parse(text: &str) -> SessionDescription {
        match SessionDescription::parse(text) {
            Ok(sdp) => sdp,
            Err(e) => panic!("test SDP failed to parse: {e}"),
        }
    }

    #[test]
    fn baresip_sdp_round_trips_byte_for_byte() {
        let sdp = parse(BARESIP);
        assert_eq!(sdp.to_string(), BARESIP);
        assert_eq!(sdp.origin.session_id, "1433267012");
        assert_eq!(sdp.origin.session_version, 2_810_468_493);
        assert_eq!(sdp.media.len(), 1);
        assert_eq!(sdp.media[0].formats, ["96", "0", "8", "101"]);
        assert_eq!(
            sdp.media[0].other_lines,
            [SdpLine {
                kind: 'b',
                value: "AS:102".into()
            }]
        );
    }

    #[test]
    fn chrome_sdp_with_ice_and_fingerprint_round_trips_byte_for_byte() {
        let sdp = parse(CHROME);
        assert_eq!(sdp.to_string(), CHROME);
        let audio = &sdp.media[0];
        assert_eq!(audio.proto, "UDP/TLS/RTP/SAVPF");
        assert_eq!(audio.port, 54400);
        assert!(audio.attribute("fingerprint").is_some());
        assert_eq!(
            sdp.attributes[2].value.as_deref(),
            Some(" WMS 3b5ddc1e-2d1c-4b9f-9a4e-0f7c2a1d6e21")
        );
        assert_eq!(
            sdp.connection_for(audio),
            Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
        );
        assert_eq!(
            audio.rtcp(),
            Some((9, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
        );
    }

    #[test]
    fn lf_only_input_parses_and_serialises_with_crlf() {
        let lf = BARESIP.replace("\r\n", "\n");
        let sdp = parse(&lf);
        assert_eq!(sdp.to_string(), BARESIP);
    }

    #[test]
    fn static_payload_types_resolve_without_rtpmap() {
        let sdp = parse("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0 8 9 18 3 13 96\n");
        let m = &sdp.media[0];
        let enc = |pt| m.rtpmap(pt).map(|r| (r.encoding, r.clock_rate, r.channels));
        assert_eq!(enc(0), Some(("PCMU".into(), 8000, 1)));
        assert_eq!(enc(8), Some(("PCMA".into(), 8000, 1)));
        assert_eq!(enc(9), Some(("G722".into(), 8000, 1)));
        assert_eq!(enc(18), Some(("G729".into(), 8000, 1)));
        assert_eq!(enc(3), Some(("GSM".into(), 8000, 1)));
        assert_eq!(enc(13), Some(("CN".into(), 8000, 1)));
        assert_eq!(enc(96), None);
    }

    #[test]
    fn rtpmap_line_wins_over_static_default_and_reads_channels() {
        let sdp = parse(BARESIP);
        let m = &sdp.media[0];
        assert_eq!(
            m.rtpmap(96),
            Some(RtpMap {
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: 2
            })
        );
        let odd = parse(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMA/8000\r\n",
        );
        assert_eq!(
            odd.media[0].rtpmap(0).map(|r| r.encoding),
            Some("PCMA".into())
        );
    }

    #[test]
    fn fmtp_ptime_and_rtcp_helpers_read_attribute_values() {
        let sdp = parse(BARESIP);
        let m = &sdp.media[0];
        assert_eq!(m.fmtp(101), Some("0-15"));
        assert_eq!(m.fmtp(96), Some("stereo=1;sprop-stereo=1;useinbandfec=1"));
        assert_eq!(m.fmtp(0), None);
        assert_eq!(m.ptime(), Some(20));
        assert_eq!(m.rtcp(), Some((10001, None)));
        assert_eq!(m.payload_types().collect::<Vec<_>>(), [96, 0, 8, 101]);
    }

    #[test]
    fn media_level_connection_overrides_session_level() {
        let sdp = parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2/127\r\nm=audio 4002 RTP/AVP 0\r\nm=audio 4004 RTP/AVP 0\r\nc=IN IP6 2001:db8::1\r\n");
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(sdp.connection_for(&sdp.media[0]), ip("10.0.0.2"));
        assert_eq!(sdp.connection_for(&sdp.media[1]), ip("10.0.0.1"));
        assert_eq!(sdp.connection_for(&sdp.media[2]), ip("2001:db8::1"));
    }

    #[test]
    fn host_name_connection_has_no_ip() {
        let sdp = parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 media.example.com\r\nm=audio 4000 RTP/AVP 0\r\n",
        );
        assert_eq!(sdp.connection_for(&sdp.media[0]), None);
    }

    #[test]
    fn direction_defaults_to_sendrecv_and_honours_session_level() {
        let sdp = parse("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\na=inactive\r\n");
        assert_eq!(sdp.media[0].direction(), Direction::SendRecv);
        assert_eq!(sdp.media_direction(&sdp.media[0]), Direction::SendOnly);
        assert_eq!(sdp.media_direction(&sdp.media[1]), Direction::Inactive);
    }

    #[test]
    fn set_direction_replaces_the_attribute_in_place() {
        let mut sdp = parse(BARESIP);
        sdp.media[0].set_direction(Direction::SendOnly);
        assert_eq!(sdp.media[0].direction(), Direction::SendOnly);
        assert_eq!(sdp.to_string(), BARESIP.replace("a=sendrecv", "a=sendonly"));
        let mut m = MediaDescription::new("audio", 1, "RTP/AVP", vec!["0".into()]);
        m.set_direction(Direction::Inactive);
        assert_eq!(m.attributes, [Attribute::flag("inactive")]);
    }

    #[test]
    fn direction_reverse_and_flags_are_consistent() {
        assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reverse(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.reverse(), Direction::SendRecv);
        assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
        assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
        assert_eq!(
            Direction::SendRecv.intersect(Direction::SendOnly),
            Direction::SendOnly
        );
        assert_eq!(
            Direction::from_attribute_name("RecvOnly"),
            Some(Direction::RecvOnly)
        );
    }

    #[test]
    fn sloppy_sdp_with_trailing_blanks_and_no_s_or_t_is_accepted() {
        let sdp = parse("v=0 \r\no=- 7 3 IN IP4 10.0.0.1  \r\nc=IN IP4 10.0.0.1 \r\nx=vendor thing\r\nm=audio 4000  RTP/AVP 0 8 \r\na=sendonly \r\n\r\n");
        assert_eq!(sdp.origin.session_version, 3);
        assert_eq!(sdp.session_name, "-");
        assert_eq!(sdp.media[0].formats, ["0", "8"]);
        assert_eq!(sdp.media[0].direction(), Direction::SendOnly);
        assert_eq!(
            sdp.to_string(),
            "v=0\r\no=- 7 3 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nx=vendor thing\r\nm=audio 4000 RTP/AVP 0 8\r\na=sendonly\r\n"
        );
    }

    #[test]
    fn unmodelled_lines_keep_their_place() {
        let text = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns= \r\ni=info\r\nu=http://example.com\r\ne=a@example.com\r\nc=IN IP4 10.0.0.1\r\nb=CT:128\r\nt=2873397496 2873404696\r\nr=7d 1h 0 25h\r\nz=2882844526 -1h\r\na=recvonly\r\nm=audio 4000/2 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 224.2.1.1/127\r\nc=IN IP4 224.2.1.2/127\r\nb=AS:64\r\nk=prompt\r\na=ptime:30\r\n";
        let sdp = parse(text);
        assert_eq!(sdp.to_string(), text);
        assert_eq!(sdp.session_name, " ");
        assert_eq!(sdp.media[0].port_count, Some(2));
        assert_eq!(sdp.media[0].ptime(), Some(30));
    }

    #[test]
    fn first_line_must_be_version() {
        assert_eq!(
            SessionDescription::parse("o=- 1 1 IN IP4 10.0.0.1\r\nv=0\r\n"),
            Err(SdpError::MissingVersion { line: 1 })
        );
        assert_eq!(SessionDescription::parse("\r\n \n"), Err(SdpError::Empty));
        assert_eq!(
            SessionDescription::parse("v=x\r\n"),
            Err(SdpError::InvalidVersion { line: 1 })
        );
    }

    #[test]
    fn origin_is_required_and_its_version_must_be_numeric() {
        assert_eq!(
            SessionDescription::parse("v=0\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::MissingOrigin)
        );
        assert_eq!(
            SessionDescription::parse("v=0\r\no=- 1 v2 IN IP4 10.0.0.1\r\n"),
            Err(SdpError::InvalidOrigin {
                line: 2,
                reason: "session version is not a number"
            })
        );
        assert!(matches!(
            SessionDescription::parse("v=0\r\no=- 1 2 IN IP4\r\n"),
            Err(SdpError::InvalidOrigin { line: 2, .. })
        ));
    }

    #[test]
    fn malformed_media_lines_are_rejected_with_line_and_reason() {
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n";
        let err = |m: &str| SessionDescription::parse(&format!("{base}{m}\r\n")).err();
        assert_eq!(
            err("m=audio 70000 RTP/AVP 0"),
            Some(SdpError::InvalidMedia {
                line: 4,
                reason: "port is not a number from 0 to 65535"
            })
        );
        assert_eq!(
            err("m=audio 4000"),
            Some(SdpError::InvalidMedia {
                line: 4,
                reason: "missing transport protocol"
            })
        );
        assert!(matches!(
            err("m=audio 4000/x RTP/AVP 0"),
            Some(SdpError::InvalidMedia { line: 4, .. })
        ));
        assert!(matches!(
            err("m=audio -1 RTP/AVP 0"),
            Some(SdpError::InvalidMedia { line: 4, .. })
        ));
    }

    #[test]
    fn malformed_connection_and_garbage_lines_are_rejected() {
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n";
        assert!(matches!(
            SessionDescription::parse(&format!("{base}c=IN IP4\r\n")),
            Err(SdpError::InvalidConnection { line: 3, .. })
        ));
        assert!(matches!(
            SessionDescription::parse(&format!("{base}m=audio 1 RTP/AVP 0\r\nc=IN\r\n")),
            Err(SdpError::InvalidConnection { line: 4, .. })
        ));
        assert_eq!(
            SessionDescription::parse(&format!("{base}garbage\r\n")),
            Err(SdpError::InvalidLine { line: 3 })
        );
        assert_eq!(
            SessionDescription::parse(&format!("{base}é=x\r\n")),
            Err(SdpError::InvalidLine { line: 3 })
        );
    }

    #[test]
    fn oversized_inputs_are_refused() {
        let base = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n";
        let big = format!("{base}a={}\r\n", "x".repeat(MAX_SDP_BYTES));
        assert!(matches!(
            SessionDescription::parse(&big),
            Err(SdpError::TooLarge { .. })
        ));
        let many = format!("{base}{}", "a=x\r\n".repeat(MAX_SDP_LINES));
        assert_eq!(
            SessionDescription::parse(&many),
            Err(SdpError::TooManyLines)
        );
        let media = format!(
            "{base}{}",
            "m=audio 0 RTP/AVP 0\r\n".repeat(MAX_MEDIA_SECTIONS + 1)
        );
        assert_eq!(
            SessionDescription::parse(&media),
            Err(SdpError::TooManyMediaSections)
        );
        let ok = format!(
            "{base}{}",
            "m=audio 0 RTP/AVP 0\r\n".repeat(MAX_MEDIA_SECTIONS)
        );
        assert_eq!(parse(&ok).media.len(), MAX_MEDIA_SECTIONS);
    }

    #[test]
    fn errors_display_line_and_reason() {
        let e = SdpError::InvalidMedia {
            line: 7,
            reason: "missing transport protocol",
        };
        assert_eq!(e.to_string(), "line 7: bad m=: missing transport protocol");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u32 = 0x1234_5678;
        let alphabet = b"vomcast=: /0123456789\r\nINP4RTAV";
        for _ in 0..2000 {
            let mut s = String::from("v=0\no=- 1 1 IN IP4 1.2.3.4\n");
            for _ in 0..60 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (seed >> 16) as usize % alphabet.len();
                s.push(char::from(alphabet[i]));
            }
            if let Ok(sdp) = SessionDescription::parse(&s) {
                let again = sdp.to_string();
                for m in &sdp.media {
                    let _ = (m.rtpmap(0), m.fmtp(0), m.ptime(), m.rtcp());
                }
                assert!(SessionDescription::parse(&again).is_ok());
            }
        }
    }
}
