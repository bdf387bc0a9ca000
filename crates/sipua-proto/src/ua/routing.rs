//! Where a dialog's requests go and when a dialog ends (RFC 3261 §12.2.1.1, §18.2.2, RFC 3581,
//! RFC 5626): the next hop, the connection a peer reached us over, responses to the
//! received/rport address.

use super::*;
use crate::dialog::{reached_only_over_flow, FirstHop};

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
        route_of(self.dialogs.get(dialog)?).destination
    }

    /// Where an in-dialog request of `dialog` goes and over what, read from its next hop
    /// once: a driver that needs the address, the transport and the hop's name for one
    /// request takes them all here and hands the transport to
    /// [`UaCore::request_in_dialog_over`], rather than having the hop parsed for each.
    pub fn dialog_route(&self, dialog: &DialogId) -> Option<DialogRoute> {
        Some(route_of(self.dialogs.get(dialog)?))
    }
}

/// Where an in-dialog request goes (RFC 3261 §12.2.1.1, RFC 3263 §4 without DNS, RFC 5626):
/// what [`UaCore::dialog_route`] reads from a dialog's next hop and its connection.
#[derive(Debug, Clone)]
pub struct DialogRoute {
    /// The address: the connection's remote end when the peer is reached over it, else the
    /// next hop's when it names one (`None` for a host name, which needs DNS).
    pub destination: Option<SocketAddr>,
    /// The transport the request goes over: the connection's, else the next hop's
    /// `transport` parameter; `None` leaves it to the destination.
    pub transport: Option<Transport>,
    /// The next hop's host is a domain name ([`Dialog::next_hop`] gives it): a TLS or WSS
    /// connection to the destination is named by it.
    pub named: bool,
    /// The request goes over the connection the peer reached us on ([`Dialog::flow`]), not
    /// to the next hop.
    pub over_flow: bool,
}

/// [`UaCore::dialog_route`] of dialog `d`. Behind proxies the first route was read when the
/// route set was made, so nothing is parsed (but a rare unknown `transport` parameter);
/// without them the remote target is parsed once.
pub(super) fn route_of(d: &Dialog) -> DialogRoute {
    let (first, only_over_flow) = match d.first_hop() {
        // with a route set the peer is not the next hop: its connection is used only when
        // the route names no address
        Some(first) => (*first, false),
        None => match d.remote_target() {
            Ok(target) => (
                FirstHop::of(&target),
                // (asked only when there is a connection to use)
                d.flow.is_some() && reached_only_over_flow(&target),
            ),
            Err(_) => (FirstHop::NONE, false),
        },
    };
    match d.flow.as_deref() {
        Some(f) if only_over_flow || first.address.is_none() => DialogRoute {
            destination: Some(f.remote),
            transport: Some(f.transport.clone()),
            named: first.named,
            over_flow: true,
        },
        _ => DialogRoute {
            destination: first.address,
            transport: first.transport(|| hop_transport(d)),
            named: first.named,
            over_flow: false,
        },
    }
}

/// [`DialogRoute::transport`] of dialog `d`, without looking for an address when no
/// connection could be used instead (the usual case: then only the parameter counts).
pub(super) fn transport_of_route(d: &Dialog) -> Option<Transport> {
    if d.flow.is_some() {
        return route_of(d).transport;
    }
    match d.first_hop() {
        Some(first) => first.transport(|| hop_transport(d)),
        None => hop_transport(d),
    }
}

/// The `transport` parameter of dialog `d`'s next hop, read from its text.
fn hop_transport(d: &Dialog) -> Option<Transport> {
    d.next_hop().ok().and_then(|h| transport_of(&h))
}

/// The `transport` parameter of next hop `hop`.
fn transport_of(hop: &Uri) -> Option<Transport> {
    hop.as_sip()
        .and_then(|u| u.transport())
        .map(|t| Transport::parse(t.as_bytes()))
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
