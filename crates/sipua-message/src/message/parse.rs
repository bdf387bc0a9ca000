//! Parsing messages (RFC 3261 §7, §8.2, RFC 4475): the start line, the header lines (folds,
//! compact names, limits), framing by Content-Length, and the checks of the core headers every
//! layer needs, in one pass over the bytes and without allocating.

use super::*;

/// The whole parse: start line, header lines, framing, core headers.
pub(super) fn parse_message(buf: Bytes) -> Result<Message> {
    let data = &buf[..];
    if data.len() > u32::MAX as usize {
        return Err(ParseError::new(ErrorKind::TooLarge, "message too large"));
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line
    let begin = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    if begin == data.len() {
        return Err(ParseError::new(ErrorKind::StartLine, "empty message"));
    }
    let (start_end, mut pos) = line_end(data, begin)
        .ok_or_else(|| ParseError::new(ErrorKind::Incomplete, "no header section"))?;

    let incomplete = || {
        ParseError::new(
            ErrorKind::Incomplete,
            "header section not terminated by an empty line",
        )
    };
    let mut entries = Vec::with_capacity(16);
    let body_start = loop {
        // `pos` starts a line that does not continue a header (folds are taken below)
        let Some(&first) = data.get(pos) else {
            return Err(incomplete());
        };
        if scan::is_token(first) && entries.len() < MAX_HEADERS {
            if let Some(l) = simple_line(&data[pos..]) {
                let at = |i: usize| (pos + i) as u32;
                entries.push(Entry {
                    known: l.known,
                    line: (at(0), at(l.line_end)),
                    name: (at(0), at(l.name_end)),
                    value: (at(l.value.0), at(l.value.1)),
                });
                pos += l.next;
                continue;
            }
        }
        // any other line: the general case
        // fast path: `Name: value` with the name and the value on this line, looked at
        // before the end of the line is searched for (from the value on)
        let fast = if scan::is_token(first) {
            name_and_value(data, pos)
        } else {
            None
        };
        let from = fast.map_or(pos, |(_, vs, _)| vs);
        let Some(nl) = scan::find_byte_wide(&data[from..], b'\n') else {
            return Err(incomplete());
        };
        let (mut end, mut next) = ends(data, pos, from + nl);
        if end == pos {
            break next;
        }
        if first == b' ' || first == b'\t' {
            // (after a header, its continuation lines are taken below)
            return Err(ParseError::new(
                ErrorKind::HeaderLine,
                "continuation line before the first header",
            ));
        }
        // continuation lines (RFC 3261 §7.3.1)
        while let Some(b' ' | b'\t') = data.get(next) {
            let Some(nl) = scan::find_byte_wide(&data[next..], b'\n') else {
                return Err(incomplete());
            };
            (end, next) = ends(data, next, next + nl);
        }
        // a header is only judged once the line after it is complete
        let seen = |e: ParseError| {
            if scan::find_byte_wide(&data[next..], b'\n').is_some() {
                e
            } else {
                incomplete()
            }
        };
        entries.push(field(data, pos, end, fast).map_err(seen)?);
        if entries.len() > MAX_HEADERS
            && !data[next..].starts_with(b"\n")
            && !data[next..].starts_with(b"\r\n")
        {
            return Err(seen(ParseError::new(
                ErrorKind::TooLarge,
                "too many headers",
            )));
        }
        pos = next;
    };
    check_limits(data, begin..start_end, body_start, &entries)?;
    index_message(buf, begin, start_end, entries, body_start, &[])
}

/// The per-message limits a hostile peer meets (RFC 3261 §21.4): the request line
/// ([`MAX_REQUEST_LINE`], 414), each header line ([`MAX_LINE_LENGTH`]) and the Via values
/// ([`MAX_VIAS`]), both 513.
pub(super) fn check_limits(
    data: &[u8],
    start: std::ops::Range<usize>,
    body_start: usize,
    entries: &[Entry],
) -> Result<()> {
    if start.len() > MAX_REQUEST_LINE {
        let kind = if data[start].starts_with(b"SIP/") {
            ErrorKind::TooLarge
        } else {
            ErrorKind::UriTooLong
        };
        return Err(ParseError::new(kind, "Request-URI too long"));
    }
    // a header section this short can hold neither a line too long nor too many Vias (the
    // shortest Via value, `SIP/2.0/UDP h`, and its comma take 14 bytes): most messages stop here
    if body_start - start.end < 14 * MAX_VIAS {
        return Ok(());
    }
    let mut vias = 0;
    for e in entries {
        let (from, to) = (e.line.0 as usize, e.line.1 as usize);
        if to - from > MAX_LINE_LENGTH {
            return Err(ParseError::new(ErrorKind::TooLarge, "header line too long"));
        }
        if e.known == Some(Known::Via) {
            let value = &data[e.value.0 as usize..e.value.1 as usize];
            vias += 1 + memchr::memchr_iter(b',', value).count();
        }
    }
    if vias > MAX_VIAS {
        return Err(ParseError::new(ErrorKind::TooLarge, "too many Via headers"));
    }
    Ok(())
}

/// The checks that follow the line scan: framing (Content-Length), the core headers, the
/// start line. `entries` index the header lines of `buf`, whose start line is
/// `begin..start_end` and whose body starts at `body_start`; `checked` gives what is already
/// known of some core lines (by entry).
pub(super) fn index_message(
    buf: Bytes,
    begin: usize,
    start_end: usize,
    entries: Vec<Entry>,
    body_start: usize,
    checked: &[(usize, Checked)],
) -> Result<Message> {
    let data = &buf[..];
    // framing: Content-Length
    let mut content_length: Option<u32> = None;
    for e in entries
        .iter()
        .filter(|e| e.known == Some(Known::ContentLength))
    {
        let n = ContentLength::parse(&data[span(e.value)])
            .map_err(|_| {
                ParseError::in_header(ErrorKind::ContentLength, "Content-Length", "not a number")
            })?
            .0;
        if content_length.is_some_and(|m| m != n) {
            return Err(ParseError::in_header(
                ErrorKind::ContentLength,
                "Content-Length",
                "two different values",
            ));
        }
        content_length = Some(n);
    }
    let available = data.len() - body_start;
    let body_end = match content_length {
        Some(n) if n as usize > available => {
            return Err(ParseError::in_header(
                ErrorKind::ContentLength,
                "Content-Length",
                "larger than the body",
            ))
        }
        Some(n) => body_start + n as usize,
        None => data.len(),
    };

    let core = parse_core(data, &entries, checked)?;
    let head = Head(std::sync::Arc::new(HeadData {
        start: (begin as u32, start_end as u32),
        entries,
        body: (body_start as u32, body_end as u32),
        core,
        pristine: true,
        uri: OnceLock::new(),
        vias_parse: AtomicBool::new(false),
        via_text: OnceLock::new(),
        buf,
    }));
    let msg = parse_start_line(head)?;
    if let Message::Request(r) = &msg {
        if r.head.core.cseq.method != r.method {
            return Err(ParseError::in_header(
                ErrorKind::CSeqMismatch,
                "CSeq",
                "method does not match the request",
            ));
        }
    }
    Ok(msg)
}

/// End of the line starting at `pos` (before CR LF or a bare LF) and the start of the next.
pub(super) fn line_end(data: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = pos + scan::find_byte(&data[pos..], b'\n')?;
    let end = if nl > pos && data[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// The end of the header name, the start of the value and the known name of the header line
/// at `pos`, when it is `token *(SP / HTAB) ":" *(SP / HTAB)` and a value on the same line;
/// `None` otherwise (then [`field_slow`] looks at the whole header once it is complete).
#[inline]
pub(super) fn name_and_value(data: &[u8], pos: usize) -> Option<(usize, usize, Option<Known>)> {
    let rest = &data[pos..];
    // the first colon: a token has none, so it ends the name (and its blanks) if anything does
    let colon = scan::find_byte(rest, b':')?;
    let (name, value) = rest.split_at(colon);
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let name = match name.last() {
        Some(b) if blank(b) => {
            let ne = name.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1);
            &name[..ne]
        }
        _ => name,
    };
    // a known spelling is a token; anything else must be checked
    let known = Known::lookup_in(rest, name.len());
    if known.is_none() && !scan::all_token(name) {
        return None;
    }
    let value = &value[1..];
    let skip = value.iter().position(|b| !blank(b))?;
    match value[skip] {
        b'\r' | b'\n' => None,
        _ => Some((pos + name.len(), pos + colon + 1 + skip, known)),
    }
}

/// A header that is one line `Name: value` (at most one blank after the colon) followed by
/// a line that does not continue it, as offsets from its first byte.
pub(super) struct SimpleLine {
    known: Option<Known>,
    name_end: usize,
    value: (usize, usize),
    line_end: usize,
    next: usize,
}

/// The common header line, found in one straight pass (the general case in [`parse_message`]
/// finds the same entry for it); `None` for anything else.
#[inline(always)]
pub(super) fn simple_line(rest: &[u8]) -> Option<SimpleLine> {
    let colon = scan::find_byte(rest, b':')?;
    let (name, after) = rest.split_at(colon);
    // a known spelling is a token; anything else must be checked
    let known = Known::lookup_in(rest, name.len());
    if known.is_none() && !scan::all_token(name) {
        return None;
    }
    let vs = match after {
        [_, b' ' | b'\t', b, ..] if !scan::is_ws(*b) => colon + 2,
        [_, b, ..] if !scan::is_ws(*b) => colon + 1,
        _ => return None,
    };
    let value = &rest[vs..];
    let nl = scan::find_byte_wide_inline(value, b'\n')?;
    match value.get(nl + 1) {
        Some(b' ' | b'\t') | None => return None,
        Some(_) => {}
    }
    let line = &value[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // value[0] is not whitespace
    let ve = line
        .iter()
        .rposition(|&b| !scan::is_ws(b))
        .map_or(0, |i| i + 1);
    Some(SimpleLine {
        known,
        name_end: colon,
        value: (vs, vs + ve),
        line_end: vs + line.len(),
        next: vs + nl + 1,
    })
}

/// The end of the line whose LF is at `nl` (before its CR, if any, that is not its first
/// byte `pos`) and the start of the next.
#[inline]
pub(super) fn ends(data: &[u8], pos: usize, nl: usize) -> (usize, usize) {
    let end = if nl > pos && data[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    (end, nl + 1)
}

/// The entry of the header on lines `start..end` (folds included), with what
/// [`name_and_value`] found on its first line.
#[inline]
pub(super) fn field(
    data: &[u8],
    start: usize,
    end: usize,
    fast: Option<(usize, usize, Option<Known>)>,
) -> Result<Entry> {
    let Some((ne, vs, known)) = fast else {
        return field_slow(data, start, end);
    };
    // data[vs] is not whitespace, so the trim stops there
    let mut ve = end;
    while ve > vs && scan::is_ws(data[ve - 1]) {
        ve -= 1;
    }
    Ok(Entry {
        known,
        line: (start as u32, end as u32),
        name: (start as u32, ne as u32),
        value: (vs as u32, ve as u32),
    })
}

#[cold]
#[inline(never)]
pub(super) fn field_slow(data: &[u8], start: usize, end: usize) -> Result<Entry> {
    let line = &data[start..end];
    // the name is a token, then optional whitespace, then the colon
    let mut ne = 0;
    while ne < line.len() && scan::is_token(line[ne]) {
        ne += 1;
    }
    let mut colon = ne;
    while colon < line.len() && (line[colon] == b' ' || line[colon] == b'\t') {
        colon += 1;
    }
    if ne == 0 || colon >= line.len() || line[colon] != b':' {
        return Err(ParseError::new(
            ErrorKind::HeaderLine,
            if line[ne..].contains(&b':') {
                "bad header name"
            } else {
                "header line without a colon"
            },
        ));
    }
    let mut vs = colon + 1;
    while vs < line.len() && scan::is_ws(line[vs]) {
        vs += 1;
    }
    let mut ve = line.len();
    while ve > vs && scan::is_ws(line[ve - 1]) {
        ve -= 1;
    }
    let at = |i: usize| (start + i) as u32;
    Ok(Entry {
        known: HeaderName::known(&line[..ne]),
        line: (at(0), at(line.len())),
        name: (at(0), at(ne)),
        value: (at(vs), at(ve)),
    })
}

pub(super) fn parse_core(
    data: &[u8],
    entries: &[Entry],
    checked: &[(usize, Checked)],
) -> Result<Core> {
    let known = |i: usize| checked.iter().find(|(at, _)| *at == i).map(|(_, c)| c);
    let mut top_via: Option<TopVia> = None;
    let mut from = None;
    let mut to = None;
    let mut call_id = None;
    let mut cseq = None;
    let mut max_forwards = None;
    fn once(slot: &mut Option<usize>, i: usize, name: &'static str) -> Result<()> {
        if slot.is_some() {
            return Err(ParseError::in_header(
                ErrorKind::DuplicateHeader,
                name,
                "allows one value",
            ));
        }
        *slot = Some(i);
        Ok(())
    }
    for (i, e) in entries.iter().enumerate() {
        let Some(name) = e.known else { continue };
        match name {
            Known::Via if top_via.is_none() => {
                // the top Via is the transaction key: check it now; the others on first use
                if let Some(Checked::TopVia(v)) = known(i) {
                    top_via = Some(v.clone());
                    continue;
                }
                let p = ViaParts::check_first(&data[span(e.value)])?;
                top_via = Some(TopVia {
                    transport: Transport::parse(p.transport),
                    host: span_of(data, p.host),
                    port: p.port,
                    branch: p.branch.map(|b| span_of(data, b)),
                });
            }
            Known::From => once(&mut from, i, "From")?,
            Known::To => once(&mut to, i, "To")?,
            Known::CallId => once(&mut call_id, i, "Call-ID")?,
            Known::CSeq => once(&mut cseq, i, "CSeq")?,
            Known::MaxForwards => once(&mut max_forwards, i, "Max-Forwards")?,
            _ => {}
        }
    }
    let missing = |name| ParseError::in_header(ErrorKind::MissingHeader, name, "missing");
    let value = |i: usize| &data[span(entries[i].value)];
    let top_via = top_via.ok_or_else(|| missing("Via"))?;
    let from = from.ok_or_else(|| missing("From"))?;
    let to = to.ok_or_else(|| missing("To"))?;
    // a line copied with what its source's parse found in it is not checked again
    let tag = |i: usize, header: &'static str| -> Result<Option<Span>> {
        if let Some(Checked::Tag(t)) = known(i) {
            return Ok(*t);
        }
        let t = name_addr::key_check(value(i)).map_err(|e| e.with_header_name(header))?;
        Ok(t.map(|t| span_of(data, t)))
    };
    let from_tag = tag(from, "From")?;
    let to_tag = tag(to, "To")?;
    let call_id = call_id.ok_or_else(|| missing("Call-ID"))?;
    let call_id = match known(call_id) {
        Some(Checked::CallId(c)) => *c,
        _ => span_of(data, check_call_id(value(call_id))?),
    };
    let cseq = cseq.ok_or_else(|| missing("CSeq"))?;
    let cseq = match known(cseq) {
        Some(Checked::CSeq(c)) => c.clone(),
        _ => CSeq::parse(value(cseq))?,
    };
    Ok(Core {
        top_via,
        call_id,
        cseq,
        max_forwards: max_forwards
            .map(|i| parse_max_forwards(value(i)))
            .transpose()?,
        from,
        to,
        from_tag,
        to_tag,
        lazy: OnceLock::new(),
    })
}

pub(super) fn is_version(v: &[u8]) -> bool {
    v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|&b| b.is_ascii_digit() || b == b'.')
}

pub(super) fn parse_start_line(head: Head) -> Result<Message> {
    let bad = |r| ParseError::new(ErrorKind::StartLine, r);
    let buf = &head.buf[..];
    let line = &buf[span(head.start)];
    if line.starts_with(b"SIP/") || line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp =
            scan::find_byte(line, b' ').ok_or_else(|| bad("status line without a status code"))?;
        if &line[..sp] != b"SIP/2.0" && !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::new(
                ErrorKind::Version,
                "SIP version not supported",
            ));
        }
        let rest = &line[sp + 1..];
        let (code, reason) = match scan::find_byte(rest, b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]), // tolerate a missing space before an empty reason
        };
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::new(
                ErrorKind::StatusCode,
                "status code is not three digits",
            ));
        }
        let status = code.iter().fold(0u16, |v, &b| v * 10 + u16::from(b - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::new(
                ErrorKind::StatusCode,
                "status code out of range",
            ));
        }
        let reason = span_of(buf, reason);
        return Ok(Message::Response(Response {
            status,
            reason,
            head,
        }));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = scan::find_byte(line, b' ')
        .ok_or_else(|| bad("request line is not 'METHOD URI SIP/2.0'"))?;
    let rest = &line[sp1 + 1..];
    let sp2 = scan::find_byte(rest, b' ')
        .ok_or_else(|| bad("request line is not 'METHOD URI SIP/2.0'"))?;
    let method = Method::parse(&line[..sp1])?;
    let uri_bytes = &rest[..sp2];
    // trailing whitespace after the version is tolerated (RFC 4475 §3.1.2.10 allows either)
    let version = scan::trim(&rest[sp2 + 1..]);
    if version != b"SIP/2.0" && !version.eq_ignore_ascii_case(b"SIP/2.0") {
        if is_version(version) {
            return Err(ParseError::new(
                ErrorKind::Version,
                "SIP version not supported",
            ));
        }
        return Err(bad("request line is not 'METHOD URI SIP/2.0'"));
    }
    check_uri(uri_bytes).map_err(|e| ParseError::new(ErrorKind::Uri, uri_reason(e.reason())))?;
    Ok(Message::Request(Request {
        method,
        uri_span: span_of(buf, uri_bytes),
        head,
    }))
}

pub(super) fn uri_reason(reason: &'static str) -> &'static str {
    match reason {
        "bad port" => "bad Request-URI: bad port (IPv6 addresses need brackets)",
        _ => "bad Request-URI",
    }
}
