//! Where a dialog's requests go and when a dialog ends (RFC 3261 §12.2.1.1, §18.2.2, RFC 3581,
//! RFC 5626): the next hop, the connection a peer reached us over, responses to the
//! received/rport address.

use super::*;

impl UaCore {
    /// Ends a dialog the TU is done with: a subscription that terminated (RFC 6665 §4.4.1),
    /// whose dialog no BYE ends. Later requests in it get 481.
    pub fn end_dialog(&mut self, id: &DialogId) {
        // nor may a late NOTIFY of that SUBSCRIBE create it again
        self.subscribing
            .remove(&(id.call_id.to_string(), id.local_tag.to_string()));
        self.forget_dialog(id);
    }

    pub(super) fn forget_dialog(&mut self, id: &DialogId) {
        self.prack.forget(id);
        self.dialogs.remove(id);
        if !self.pending_2xx.is_empty() {
            let mut freed = 0;
            self.pending_2xx.retain(|k, p| {
                let keep = k.0 != *id;
                if !keep {
                    freed += p.cost;
                }
                keep
            });
            self.unconfirmed_bytes -= freed;
        }
        if !self.awaiting_ack.is_empty() {
            self.awaiting_ack.retain(|(d, _), _| d != id);
        }
    }

    /// Where in-dialog requests of `dialog` go when its next hop (first route, else the
    /// remote target) names an address: RFC 3261 §12.2.1.1 routing, which for the ACK of a
    /// 2xx (§13.2.2.4) and the BYE after a lost race may differ from where the INVITE went
    /// (a forking proxy that did not record-route). `None` for a host name: the caller's
    /// resolved address applies.
    pub fn dialog_destination(&self, dialog: &DialogId) -> Option<SocketAddr> {
        destination_of(self.dialogs.get(dialog)?)
    }
}

/// The connection dialog `d`'s requests go over instead of its next hop: the peer can be
/// reached only over it ([`Dialog::uses_flow`]), or the next hop names no address we could
/// reach without DNS while the peer reached us over a connection.
pub(super) fn flow_in_use(d: &Dialog) -> Option<&Flow> {
    let f = d.flow.as_deref()?;
    (d.uses_flow() || next_hop_address(d).is_none()).then_some(f)
}

/// The flow a dialog made by a message over `transport` from (or to) `remote` keeps.
pub(super) fn flow_of(transport: &Transport, remote: SocketAddr) -> Option<Box<Flow>> {
    transport.is_reliable().then(|| {
        Box::new(Flow {
            transport: transport.clone(),
            remote,
        })
    })
}

/// [`UaCore::dialog_destination`] of dialog `d`.
pub(super) fn destination_of(d: &Dialog) -> Option<SocketAddr> {
    match flow_in_use(d) {
        Some(f) => Some(f.remote),
        None => next_hop_address(d),
    }
}

/// Where the next hop of dialog `d` is, when it names an address (RFC 3263 without DNS).
fn next_hop_address(d: &Dialog) -> Option<SocketAddr> {
    // the usual next hop, an IP address with a port and no maddr or transport parameter,
    // is where the locator would send (RFC 3263 §4.2), without making one
    let hop = d.next_hop().ok()?;
    if let Some(sip) = hop.as_sip() {
        if let (Some(ip), Some(port), None, None) =
            (sip.host.ip(), sip.port, sip.maddr(), sip.transport())
        {
            return Some(SocketAddr::new(ip, port));
        }
    }
    let mut l = crate::locate::Locator::new(&hop, 0).ok()?;
    match l.step() {
        crate::locate::Step::Done(t) => t.first().map(|(_, a)| *a),
        _ => None,
    }
}

/// Where responses to `request` go over UDP (RFC 3261 §18.2.2, RFC 3581).
pub(super) fn destination_for(request: &Request, source: SocketAddr) -> SocketAddr {
    // the Via as written when it can be read so (no typed Via), else parsed
    if let Some(v) = request.top_via_text() {
        return match v.rport() {
            None => SocketAddr::new(source.ip(), v.port_or_default()),
            Some(_) => source,
        };
    }
    match request.top_via() {
        Ok(v) if v.rport().is_none() => SocketAddr::new(source.ip(), v.port_or_default()),
        _ => source,
    }
}
