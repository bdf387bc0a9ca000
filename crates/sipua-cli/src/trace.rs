//! What the command shows of the library's `tracing` events: `-v` (state changes and
//! failures, `-vv` everything), `--trace` (every SIP message, as SIP.js's `traceSip` or sngrep
//! shows them: time, direction, transport, addresses, size, the message) and `--pcap FILE`
//! (the same messages as a capture Wireshark and tshark open: SIP over UDP, or over TCP for
//! the stream transports, as IPv4 or IPv6 packets with the agent's and the peer's addresses,
//! and the calls' RTP and RTCP as the UDP datagrams they were),
//! and `--hep udp:IP:PORT` (each message as a HEP v3 packet to a Homer collector, as SIP
//! services are traced in production).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sipua::trace::MESSAGE_TARGET;
use sipua_media::PACKET_TARGET;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The options every command takes.
#[derive(clap::Args, Clone, Default)]
pub struct TraceArgs {
    /// Show what happens inside: state changes and failures (`-vv`: everything).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Print every SIP message sent and received (time, direction, transport, addresses,
    /// size, the message; digest responses hidden).
    #[arg(long, global = true)]
    trace: bool,
    /// Write every SIP message sent and received, and the calls' RTP and RTCP, to FILE as a
    /// capture (pcap) that Wireshark and tshark open.
    #[arg(long, value_name = "FILE", global = true)]
    pcap: Option<std::path::PathBuf>,
    /// Send every SIP message sent and received to a HEP v3 collector (Homer) at
    /// `udp:IP:PORT`.
    #[arg(long, value_name = "udp:IP:PORT", global = true)]
    hep: Option<String>,
}

/// Installs the subscriber the options ask for (none when they ask for nothing).
pub fn install(args: &TraceArgs) -> Result<(), String> {
    if args.verbose == 0 && !args.trace && args.pcap.is_none() && args.hep.is_none() {
        return Ok(());
    }
    let hep = match &args.hep {
        Some(target) => {
            let addr: SocketAddr = target
                .strip_prefix("udp:")
                .unwrap_or(target)
                .parse()
                .map_err(|e| format!("--hep {target}: {e}"))?;
            let bind: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("an address")
            } else {
                "[::]:0".parse().expect("an address")
            };
            let socket = std::net::UdpSocket::bind(bind)
                .and_then(|s| s.connect(addr).map(|_| s))
                .map_err(|e| format!("--hep {target}: {e}"))?;
            Some(socket)
        }
        None => None,
    };
    let pcap = match &args.pcap {
        Some(path) => Some(Mutex::new(Pcap::create(path)?)),
        None => None,
    };
    // RTP and RTCP packets go to the capture only (printed, they would drown the messages)
    let rtp = if pcap.is_some() {
        LevelFilter::TRACE
    } else {
        LevelFilter::OFF
    };
    let messages = Messages {
        print: args.trace,
        pcap,
        hep,
    }
    .with_filter(
        Targets::new()
            .with_target(MESSAGE_TARGET, LevelFilter::TRACE)
            .with_target(PACKET_TARGET, rtp),
    );
    let level = match args.verbose {
        0 => LevelFilter::OFF,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let verbose = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            Targets::new()
                .with_target(MESSAGE_TARGET, LevelFilter::OFF)
                .with_target(PACKET_TARGET, LevelFilter::OFF)
                .with_target("sipua", level),
        );
    tracing_subscriber::registry()
        .with(messages)
        .with(verbose)
        .try_init()
        .map_err(|e| format!("tracing: {e}"))
}

/// The fields of one message event.
#[derive(Default)]
struct Fields {
    direction: String,
    transport: String,
    local: String,
    peer: String,
    text: String,
    /// An RTP or RTCP packet's bytes.
    packet: Vec<u8>,
}

impl Visit for Fields {
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        if field.name() == "packet" {
            self.packet = value.to_vec();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "direction" {
            self.direction = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        match field.name() {
            "message" => self.text = v,
            "transport" => self.transport = v,
            "local" => self.local = v,
            "peer" => self.peer = v,
            "direction" => self.direction = v.trim_matches('"').to_owned(),
            _ => {}
        }
    }
}

/// Prints and captures the SIP message events.
struct Messages {
    print: bool,
    pcap: Option<Mutex<Pcap>>,
    hep: Option<std::net::UdpSocket>,
}

impl<S: tracing::Subscriber> Layer<S> for Messages {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let sent = f.direction == "sent";
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if event.metadata().target() == PACKET_TARGET {
            // media: into the capture as the UDP datagram it was
            let (Ok(local), Ok(peer), Some(p)) = (f.local.parse(), f.peer.parse(), &self.pcap)
            else {
                return;
            };
            let (from, to) = if sent { (local, peer) } else { (peer, local) };
            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
            p.write(now, from, to, true, &f.packet);
            return;
        }
        if self.print {
            let secs = now.as_secs() % 86_400;
            let arrow = if sent { "→" } else { "←" };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{:02}:{:02}:{:02}.{:06} {} {} {} {} {} ({} bytes)\n{}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                now.subsec_micros(),
                f.direction,
                f.transport,
                f.local,
                arrow,
                f.peer,
                f.text.len(),
                f.text.trim_end()
            );
        }
        let (Ok(local), Ok(peer)) = (f.local.parse(), f.peer.parse()) else {
            return;
        };
        let (from, to) = if sent { (local, peer) } else { (peer, local) };
        let udp = f.transport.eq_ignore_ascii_case("udp");
        if let Some(p) = &self.pcap {
            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
            p.write(now, from, to, udp, f.text.as_bytes());
        }
        if let Some(socket) = &self.hep {
            // a lost trace packet is not worth waiting for
            let _ = socket.send(&hep3(now, from, to, udp, f.text.as_bytes()));
        }
    }
}

/// A pcap file of raw IP packets (LINKTYPE_RAW), written as messages come.
struct Pcap {
    file: std::io::BufWriter<std::fs::File>,
    /// The next TCP sequence number per direction of each pair of addresses.
    seq: HashMap<(SocketAddr, SocketAddr), u32>,
}

impl Pcap {
    fn create(path: &std::path::Path) -> Result<Pcap, String> {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut file = std::io::BufWriter::new(file);
        // magic, version 2.4, GMT offset, accuracy, snapshot length, LINKTYPE_RAW (101)
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&65_535u32.to_le_bytes());
        header.extend_from_slice(&101u32.to_le_bytes());
        file.write_all(&header)
            .and_then(|_| file.flush())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Pcap {
            file,
            seq: HashMap::new(),
        })
    }

    fn write(
        &mut self,
        at: std::time::Duration,
        from: SocketAddr,
        to: SocketAddr,
        udp: bool,
        payload: &[u8],
    ) {
        let payload = &payload[..payload.len().min(65_000)];
        let mut l4 = Vec::with_capacity(20 + payload.len());
        l4.extend_from_slice(&from.port().to_be_bytes());
        l4.extend_from_slice(&to.port().to_be_bytes());
        if udp {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]); // no checksum
        } else {
            let ack = *self.seq.get(&(to, from)).unwrap_or(&1);
            let seq = self.seq.entry((from, to)).or_insert(1);
            l4.extend_from_slice(&seq.to_be_bytes());
            *seq = seq.wrapping_add(payload.len() as u32);
            l4.extend_from_slice(&ack.to_be_bytes());
            l4.extend_from_slice(&[0x50, 0x18]); // 20-byte header; PSH, ACK
            l4.extend_from_slice(&65_535u16.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        }
        l4.extend_from_slice(payload);
        let protocol = if udp { 17 } else { 6 };
        let packet = match (from.ip(), to.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mut h = vec![0x45, 0];
                h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
                h.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
                h.extend_from_slice(&a.octets());
                h.extend_from_slice(&b.octets());
                let sum = checksum(&h);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                h
            }
            (a, b) => {
                let mut h = vec![0x60, 0, 0, 0];
                h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                h.extend_from_slice(&[protocol, 64]);
                h.extend_from_slice(&as_v6(a).octets());
                h.extend_from_slice(&as_v6(b).octets());
                h
            }
        };
        let len = (packet.len() + l4.len()) as u32;
        let mut record = Vec::with_capacity(16);
        record.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
        record.extend_from_slice(&at.subsec_micros().to_le_bytes());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&len.to_le_bytes());
        // flushed at once: the process may end at any time (a signal, an error)
        let _ = self
            .file
            .write_all(&record)
            .and_then(|_| self.file.write_all(&packet))
            .and_then(|_| self.file.write_all(&l4))
            .and_then(|_| self.file.flush());
    }
}

/// One HEP v3 packet (the HEP/EEP protocol of Homer): a `HEP3` header, then chunks of
/// vendor 0 (address family, protocol, addresses, ports, time, protocol type 1 for SIP, the
/// Call-ID as correlation id, and the message as payload).
fn hep3(
    at: std::time::Duration,
    from: SocketAddr,
    to: SocketAddr,
    udp: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut chunks = Vec::with_capacity(64 + payload.len());
    let mut chunk = |kind: u16, value: &[u8]| {
        chunks.extend_from_slice(&0u16.to_be_bytes());
        chunks.extend_from_slice(&kind.to_be_bytes());
        chunks.extend_from_slice(&((6 + value.len()) as u16).to_be_bytes());
        chunks.extend_from_slice(value);
    };
    match (from.ip(), to.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            chunk(1, &[2]);
            chunk(3, &a.octets());
            chunk(4, &b.octets());
        }
        (a, b) => {
            chunk(1, &[10]);
            chunk(5, &as_v6(a).octets());
            chunk(6, &as_v6(b).octets());
        }
    }
    chunk(2, &[if udp { 17 } else { 6 }]);
    chunk(7, &from.port().to_be_bytes());
    chunk(8, &to.port().to_be_bytes());
    chunk(9, &(at.as_secs() as u32).to_be_bytes());
    chunk(10, &at.subsec_micros().to_be_bytes());
    chunk(11, &[1]); // SIP
    chunk(12, &0u32.to_be_bytes()); // capture agent id
    let text = String::from_utf8_lossy(payload);
    if let Some(call_id) = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name == "i").then(|| value.trim())
    }) {
        chunk(17, call_id.as_bytes());
    }
    let payload = &payload[..payload.len().min(65_000)];
    chunk(15, payload);
    let mut packet = Vec::with_capacity(6 + chunks.len());
    packet.extend_from_slice(b"HEP3");
    packet.extend_from_slice(&((6 + chunks.len()).min(65_535) as u16).to_be_bytes());
    packet.extend_from_slice(&chunks);
    packet
}

/// An address as IPv6 (an IPv4 one mapped), for a packet whose other address is IPv6.
fn as_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped(),
        IpAddr::V6(v) => v,
    }
}

/// The IPv4 header checksum (RFC 791).
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
