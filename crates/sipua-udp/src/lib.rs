//! Batched UDP system calls: one `recvmmsg(2)` takes up to [`RecvBatch::slots`] datagrams
//! waiting on a socket, where `recvfrom(2)` takes one, and one `sendmmsg(2)` sends up to
//! [`MAX_SLOTS`] ([`send_batch`]). Under a flood (issue 19's
//! overload runs: every refused call is two datagrams read and one written) a system call and
//! a readiness check per datagram are most of what a refusal costs, so the driver reads in
//! batches and answers each datagram as before.
//!
//! This is the one crate of the workspace with `unsafe` code, kept apart so that the others
//! can `forbid` it (as quinn keeps its socket calls in `quinn-udp`): one function fills the
//! kernel's `mmsghdr` array from buffers this crate owns and reads back the lengths and the
//! senders' addresses; another lends the kernel the caller's datagrams to send. Off Linux,
//! both say [`io::ErrorKind::Unsupported`] and the caller goes one datagram at a time.
//!
//! Datagrams are never cut: every slot holds the largest UDP payload (65 535 bytes). The
//! slots' memory is asked of the allocator zeroed and untouched, so only the pages the
//! kernel writes become resident.
#![cfg_attr(not(target_os = "linux"), forbid(unsafe_code))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::fd::BorrowedFd;

/// Largest UDP payload: a slot of this size never truncates a datagram.
pub const SLOT_LEN: usize = 65_535;

/// Most slots a batch may have.
pub const MAX_SLOTS: usize = 32;

/// Room for a batch of datagrams and what [`recv_batch`] last read into it.
pub struct RecvBatch {
    /// `slots` buffers of [`SLOT_LEN`] bytes, one after the other.
    buf: Vec<u8>,
    /// Each slot the last read filled: the datagram's length and sender (`None` for a
    /// sender of another address family), in the order they came.
    got: Vec<(usize, Option<SocketAddr>)>,
    slots: usize,
    #[cfg(target_os = "linux")]
    sys: Headers,
}

/// The kernel's view of a batch's slots, made once: `hdrs[i]` points at `iovs[i]` (which
/// points at slot `i` of the batch's buffer) and at `names[i]`. Every pointer is into a heap
/// block owned by the same [`RecvBatch`] and never reallocated, so they stay valid when the
/// batch moves. (`Vec`s, not boxes: a moved `Box` asserts unique access to its block, which
/// the pointers into it would contradict.)
#[cfg(target_os = "linux")]
struct Headers {
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `Headers` point only into blocks the same `RecvBatch` owns
// (see `Headers`); nothing is shared with another value, so the batch may move to another
// thread as a whole.
#[cfg(target_os = "linux")]
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.slots)
            .field("held", &self.got.len())
            .finish()
    }
}

impl RecvBatch {
    /// Room for `slots` datagrams (1 to [`MAX_SLOTS`]; clamped to that range).
    pub fn new(slots: usize) -> RecvBatch {
        let slots = slots.clamp(1, MAX_SLOTS);
        let mut buf = vec![0; slots * SLOT_LEN];
        #[cfg(target_os = "linux")]
        let sys = Headers::new(&mut buf, slots);
        RecvBatch {
            buf,
            got: Vec::with_capacity(slots),
            slots,
            #[cfg(target_os = "linux")]
            sys,
        }
    }

    /// How many datagrams one read may take.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// How many datagrams the last read took.
    pub fn len(&self) -> usize {
        self.got.len()
    }

    /// Whether the last read took nothing (or none was made).
    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// Datagram `i` of the last read (in the order they arrived) and who sent it; `None`
    /// past [`RecvBatch::len`] or for a sender neither IPv4 nor IPv6 (skip it).
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, from) = *self.got.get(i)?;
        let start = i * SLOT_LEN;
        Some((self.buf.get(start..start + len)?, from?))
    }
}

#[cfg(target_os = "linux")]
impl Headers {
    fn new(buf: &mut [u8], slots: usize) -> Headers {
        // SAFETY: plain C structures for which all-zero bytes are a valid value.
        let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let mut names = vec![zero_name; slots];
        let mut iovs: Vec<libc::iovec> = buf
            .chunks_exact_mut(SLOT_LEN)
            .take(slots)
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: SLOT_LEN,
            })
            .collect();
        let mut hdrs = vec![zero_hdr; slots];
        for ((h, name), iov) in hdrs.iter_mut().zip(names.iter_mut()).zip(iovs.iter_mut()) {
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        Headers { names, iovs, hdrs }
    }
}

/// Reads the datagrams waiting on the non-blocking UDP socket `fd` into `batch`, without
/// waiting: how many were read (at least one), `WouldBlock` when none was waiting, or the
/// socket's error (an ICMP error reported on it, say).
#[cfg(target_os = "linux")]
pub fn recv_batch(fd: BorrowedFd<'_>, batch: &mut RecvBatch) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    batch.got.clear();
    let sys = &mut batch.sys;
    debug_assert_eq!(sys.iovs.len(), sys.hdrs.len());
    for h in sys.hdrs.iter_mut() {
        // the kernel shortens the name's length to the address it wrote: give it all again
        h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    // SAFETY: every header points at one iovec over a distinct SLOT_LEN slot of
    // `batch.buf` and at one sockaddr_storage with its size as the name's length (see
    // `Headers`); all of them are owned by `batch`, which is borrowed mutably for the call,
    // and the kernel writes no further than those lengths.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            sys.hdrs.as_mut_ptr(),
            sys.hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT as _,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = (r as usize).min(sys.hdrs.len());
    for (h, name) in sys.hdrs.iter().zip(sys.names.iter()).take(r) {
        let len = (h.msg_len as usize).min(SLOT_LEN);
        batch
            .got
            .push((len, socket_addr(name, h.msg_hdr.msg_namelen)));
    }
    Ok(r)
}

/// An IPv4 or IPv6 address as the kernel reads it.
#[cfg(target_os = "linux")]
#[repr(C)]
union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

#[cfg(target_os = "linux")]
fn raw_addr(to: SocketAddr) -> (RawAddr, libc::socklen_t) {
    use std::mem::size_of;
    match to {
        SocketAddr::V4(a) => {
            // SAFETY: a plain C structure for which all-zero bytes are a valid value.
            let mut v4: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            (
                RawAddr { v4 },
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let mut v6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            v6.sin6_port = a.port().to_be();
            v6.sin6_addr.s6_addr = a.ip().octets();
            v6.sin6_flowinfo = a.flowinfo();
            v6.sin6_scope_id = a.scope_id();
            (
                RawAddr { v6 },
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

/// Sends up to [`MAX_SLOTS`] of `datagrams` (each its bytes and destination, in order) on
/// the non-blocking UDP socket `fd` with one `sendmmsg(2)`, without waiting: how many went,
/// counted from the first. An error only when the first could not go (`WouldBlock` when the
/// socket's buffer is full); a later one that could not go is not counted, and the caller
/// sends it again on its own to learn why.
#[cfg(target_os = "linux")]
pub fn send_batch<'a>(
    fd: BorrowedFd<'_>,
    datagrams: impl IntoIterator<Item = (&'a [u8], SocketAddr)>,
) -> io::Result<usize> {
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;

    let mut addrs = [const { MaybeUninit::<RawAddr>::uninit() }; MAX_SLOTS];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_SLOTS];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_SLOTS];
    let mut n = 0;
    for (bytes, to) in datagrams.into_iter().take(MAX_SLOTS) {
        let (addr, len) = raw_addr(to);
        let addr: *mut RawAddr = addrs[n].write(addr);
        let iov: *mut libc::iovec = iovs[n].write(libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        });
        // SAFETY: a plain C structure for which all-zero bytes are a valid value.
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        h.msg_hdr.msg_name = addr.cast();
        h.msg_hdr.msg_namelen = len;
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
        hdrs[n].write(h);
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: the first `n` headers are initialised; each points at an initialised address
    // of the length it gives and at one iovec over bytes the caller lends for the call's
    // length (the kernel only reads them). Everything lives until the call returns.
    let r = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr().cast::<libc::mmsghdr>(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Off Linux: not available; send one datagram at a time.
#[cfg(all(unix, not(target_os = "linux")))]
pub fn send_batch<'a>(
    _fd: BorrowedFd<'_>,
    _datagrams: impl IntoIterator<Item = (&'a [u8], SocketAddr)>,
) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Off Linux: not available; read one datagram at a time.
#[cfg(all(unix, not(target_os = "linux")))]
pub fn recv_batch(_fd: BorrowedFd<'_>, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.got.clear();
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The sender's address the kernel wrote, for IPv4 and IPv6.
#[cfg(target_os = "linux")]
fn socket_addr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match name.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and the storage is
            // large and aligned enough for any address type.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn pair(ip: &str) -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind(format!("{ip}:0")).unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind(format!("{ip}:0")).unwrap();
        (rx, tx)
    }

    #[test]
    fn nothing_waiting_is_would_block() {
        let (rx, _tx) = pair("127.0.0.1");
        let mut b = RecvBatch::new(4);
        let e = recv_batch(rx.as_fd(), &mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(b.is_empty());
    }

    #[test]
    fn takes_what_waits_in_order_with_each_sender_up_to_the_slots() {
        let (rx, tx) = pair("127.0.0.1");
        let (_, tx2) = pair("127.0.0.1");
        for i in 0..6u8 {
            let from = if i % 2 == 0 { &tx } else { &tx2 };
            from.send_to(&vec![i; 100 + i as usize], rx.local_addr().unwrap())
                .unwrap();
        }
        let mut b = RecvBatch::new(4);
        assert_eq!(recv_batch(rx.as_fd(), &mut b).unwrap(), 4);
        for i in 0..4 {
            let (d, from) = b.get(i).unwrap();
            assert_eq!(d, &vec![i as u8; 100 + i][..]);
            let sender = if i % 2 == 0 { &tx } else { &tx2 };
            assert_eq!(from, sender.local_addr().unwrap());
        }
        // the rest on the next read, then nothing
        assert_eq!(recv_batch(rx.as_fd(), &mut b).unwrap(), 2);
        assert_eq!(b.get(0).unwrap().0, &[4u8; 104][..]);
        assert_eq!(b.get(1).unwrap().0, &[5u8; 105][..]);
        assert!(b.get(2).is_none());
        assert_eq!(
            recv_batch(rx.as_fd(), &mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn the_largest_datagram_is_not_cut() {
        let (rx, tx) = pair("127.0.0.1");
        let big = vec![7u8; 65_000];
        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"small", rx.local_addr().unwrap()).unwrap();
        let mut b = RecvBatch::new(MAX_SLOTS + 10);
        assert_eq!(b.slots(), MAX_SLOTS);
        assert_eq!(recv_batch(rx.as_fd(), &mut b).unwrap(), 2);
        assert_eq!(b.get(0).unwrap().0, &big[..]);
        assert_eq!(b.get(1).unwrap().0, b"small");
    }

    #[test]
    fn ipv6_senders_are_read() {
        let (rx, tx) = pair("[::1]");
        tx.send_to(b"six", rx.local_addr().unwrap()).unwrap();
        let mut b = RecvBatch::new(2);
        assert_eq!(recv_batch(rx.as_fd(), &mut b).unwrap(), 1);
        assert_eq!(b.get(0), Some((&b"six"[..], tx.local_addr().unwrap())));
    }

    #[test]
    fn a_batch_goes_in_order_to_each_destination() {
        let (rx1, tx) = pair("127.0.0.1");
        let (rx2, _) = pair("127.0.0.1");
        tx.set_nonblocking(true).unwrap();
        let (a1, a2) = (rx1.local_addr().unwrap(), rx2.local_addr().unwrap());
        let msgs: Vec<(Vec<u8>, SocketAddr)> = (0..5u8)
            .map(|i| (vec![i; 10 + i as usize], if i == 3 { a2 } else { a1 }))
            .collect();
        let sent = send_batch(tx.as_fd(), msgs.iter().map(|(b, to)| (&b[..], *to))).unwrap();
        assert_eq!(sent, 5);
        let mut b = RecvBatch::new(8);
        assert_eq!(recv_batch(rx1.as_fd(), &mut b).unwrap(), 4);
        let got: Vec<&[u8]> = (0..4).map(|i| b.get(i).unwrap().0).collect();
        assert_eq!(
            got,
            [
                &msgs[0].0[..],
                &msgs[1].0[..],
                &msgs[2].0[..],
                &msgs[4].0[..]
            ]
        );
        assert_eq!(b.get(0).unwrap().1, tx.local_addr().unwrap());
        assert_eq!(recv_batch(rx2.as_fd(), &mut b).unwrap(), 1);
        assert_eq!(b.get(0).unwrap().0, &msgs[3].0[..]);
        // nothing to send is no system call and no error
        assert_eq!(send_batch(tx.as_fd(), std::iter::empty()).unwrap(), 0);
    }

    #[test]
    fn ipv6_destinations_and_at_most_max_slots_per_call() {
        let (rx, tx) = pair("[::1]");
        let to = rx.local_addr().unwrap();
        let one = [9u8; 3];
        let sent = send_batch(tx.as_fd(), (0..MAX_SLOTS + 5).map(|_| (&one[..], to))).unwrap();
        assert_eq!(sent, MAX_SLOTS);
        let mut b = RecvBatch::new(MAX_SLOTS);
        assert_eq!(recv_batch(rx.as_fd(), &mut b).unwrap(), MAX_SLOTS);
        assert_eq!(
            b.get(MAX_SLOTS - 1),
            Some((&one[..], tx.local_addr().unwrap()))
        );
    }

    #[test]
    fn a_first_datagram_that_cannot_go_is_an_error() {
        let (_, tx) = pair("127.0.0.1");
        // an IPv6 destination from an IPv4 socket
        let to: SocketAddr = "[::1]:9".parse().unwrap();
        assert!(send_batch(tx.as_fd(), [(&b"x"[..], to)]).is_err());
    }
}
