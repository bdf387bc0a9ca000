#!/usr/bin/env python3
"""Proves kamailio.cfg beside this file works, without sipua: python3 stdlib only.

Starts Kamailio on free loopback ports (placeholders substituted into a temp copy of the
config, db/ copied as the db_text directory), then drives two hand-written user agents,
alice and bob, over UDP, TCP and WebSocket (RFC 7118, ws://, subprotocol "sip"):

  * REGISTER: 401 challenge, then 200 listing the contact; 423 + Min-Expires below 60 s;
    wrong password challenged again; someone else's AoR refused.
  * INVITE alice -> sip:bob@127.0.0.1: 407, ACK, INVITE with Proxy-Authorization; bob gets
    it on his registered contact with Record-Route; 180/200; ACK and BYE through the proxy
    (caller hangs up in one call, callee in another); CANCEL -> 487 -> ACK.
  * MESSAGE alice -> bob: 407, then delivered to bob (over his WebSocket connection when he
    registered over ws), 200 back to alice.
  * unregister with Contact: * / Expires: 0 -> 200 without contacts; INVITE and MESSAGE to
    bob then get 404. Unknown user -> 404.

Run:   python3 crates/sipua-cli/tests/interop/kamailio/check.py            (all transports)
       python3 .../check.py --tcp-flows   (kamailio -A WITH_TCP_FLOWS; TCP UAs do not listen)
       python3 .../check.py -v            (print every SIP message)
Ends with "N passed, N failed"; exit status 1 when anything failed.
"""

import argparse
import base64
import hashlib
import os
import random
import re
import select
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = False
HOST = "127.0.0.1"
DOMAIN = "127.0.0.1"
PASSWORDS = {"alice": "alicepw", "bob": "bobpw"}
# Request-URIs: "bare" sip:bob@127.0.0.1, or "port" sip:bob@127.0.0.1:<proxy port>[;transport=]
URI_STYLE = "bare"


def rand(n=10):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def log(*a):
    if VERBOSE:
        print(*a, flush=True)


# ----------------------------------------------------------------------------- ports


def free_udp_tcp_port(taken=()):
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(200):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((HOST, 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind((HOST, port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        if port not in taken:
            return port
    raise RuntimeError("no free port")


# ----------------------------------------------------------------------------- SIP messages

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type", "k": "supported", "r": "refer-to"}


def split_commas(value):
    """Splits a header value on commas outside <> and quotes."""
    out, cur, depth, quote = [], "", 0, False
    for ch in value:
        if ch == '"':
            quote = not quote
        elif not quote and ch == "<":
            depth += 1
        elif not quote and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


class Msg:
    def __init__(self, raw, conn, transport):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.raw = raw
        self.first = lines[0]
        self.headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + line.strip())
                continue
            n, _, v = line.partition(":")
            n = n.strip().lower()
            self.headers.append((COMPACT.get(n, n), v.strip()))
        self.body = body
        self.conn = conn  # where it came from: ("udp", addr) or a stream connection
        self.transport = transport
        if self.first.startswith("SIP/2.0 "):
            self.status = int(self.first.split()[1])
            self.method = self.get("cseq").split()[1]
            self.ruri = None
        else:
            self.status = None
            self.method, self.ruri, _ = self.first.split(" ", 2)

    def get(self, name):
        v = self.all(name)
        return v[0] if v else None

    def all(self, name):
        name = name.lower()
        vals = [v for n, v in self.headers if n == name]
        if name in ("via", "route", "record-route", "contact"):
            vals = [x for v in vals for x in split_commas(v)]
        return vals

    def raw_headers(self, name):
        return [(n, v) for n, v in self.headers if n == name.lower()]

    @property
    def call_id(self):
        return self.get("call-id")

    @property
    def cseq(self):
        n, m = self.get("cseq").split()
        return int(n), m

    def tag(self, which):
        m = re.search(r";\s*tag=([^;>\s]+)", self.get(which) or "")
        return m.group(1) if m else None

    def __str__(self):
        return self.raw.decode("utf-8", "replace")


def uri_of(nameaddr):
    m = re.search(r"<([^>]*)>", nameaddr)
    return m.group(1) if m else nameaddr.split(";")[0].strip()


def frame_stream(buf):
    """(message, rest) from a SIP-over-TCP byte buffer (Content-Length framing) or (None, buf)."""
    while buf.startswith(b"\r\n"):
        buf = buf[2:]
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None, buf
    head = buf[:end].decode("utf-8", "replace")
    m = re.search(r"^(?:content-length|l)\s*:\s*(\d+)", head, re.I | re.M)
    clen = int(m.group(1)) if m else 0
    total = end + 4 + clen
    if len(buf) < total:
        return None, buf
    return buf[:total], buf[total:]


# ----------------------------------------------------------------------------- transports


class StreamConn:
    """One TCP connection carrying SIP framed by Content-Length."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def fileno(self):
        return self.sock.fileno()

    def send(self, data):
        self.sock.sendall(data)

    def read(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return []
        self.buf += data
        out = []
        while True:
            m, self.buf = frame_stream(self.buf)
            if m is None:
                return out
            out.append(m)


class WsConn:
    """A WebSocket client connection (RFC 6455), one SIP message per text frame (RFC 7118)."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
        self.sock.sendall(req.encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"WebSocket handshake: connection closed after {resp!r}")
            resp += chunk
        head, _, self.buf = resp.partition(b"\r\n\r\n")
        head = head.decode()
        log(f"--- ws handshake response\n{head}\n")
        if not head.startswith("HTTP/1.1 101"):
            raise RuntimeError(f"WebSocket handshake refused: {head}")
        want = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        if f"sec-websocket-accept: {want}".lower() not in head.lower():
            raise RuntimeError(f"bad Sec-WebSocket-Accept in {head}")
        if not re.search(r"^sec-websocket-protocol:\s*sip\s*$", head, re.I | re.M):
            raise RuntimeError(f"subprotocol sip not accepted: {head}")
        self.sock.settimeout(None)
        self.closed = False
        self.local = self.sock.getsockname()

    def fileno(self):
        return self.sock.fileno()

    def _frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            hdr = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            hdr = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send(self, data):
        self.sock.sendall(self._frame(0x1, data))

    def read(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return []
        self.buf += data
        out = []
        while True:
            b = self.buf
            if len(b) < 2:
                return out
            opcode, masked, n = b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F
            pos = 2
            if n == 126:
                if len(b) < 4:
                    return out
                n, pos = int.from_bytes(b[2:4], "big"), 4
            elif n == 127:
                if len(b) < 10:
                    return out
                n, pos = int.from_bytes(b[2:10], "big"), 10
            mask = b""
            if masked:
                mask, pos = b[pos:pos + 4], pos + 4
            if len(b) < pos + n:
                return out
            payload = b[pos:pos + n]
            if masked:
                payload = bytes(x ^ mask[i % 4] for i, x in enumerate(payload))
            self.buf = b[pos + n:]
            if opcode in (0x1, 0x2):
                out.append(payload)
            elif opcode == 0x9:  # ping -> pong
                self.sock.sendall(self._frame(0xA, payload))
            elif opcode == 0x8:
                self.closed = True
                return out


class Net:
    """A UA's transport: kind is udp, tcp or ws."""

    def __init__(self, kind, ports, tcp_listen=True):
        self.kind = kind
        self.ports = ports
        self.conns = []  # stream connections (accepted or opened)
        self.listener = None
        self.udp = None
        self.proxy_conn = None
        if kind == "udp":
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((HOST, 0))
            self.port = self.udp.getsockname()[1]
        elif kind == "tcp":
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
            if tcp_listen:
                probe.listen(16)
                self.listener = probe
            else:
                probe.close()  # advertised but nobody listens: only the flow can reach us
        elif kind == "ws":
            self.proxy_conn = WsConn(ports["ws"])
            self.conns.append(self.proxy_conn)
            # a Contact port nothing listens on: Kamailio must use the WS connection
            self.port = free_udp_tcp_port()
        self.via = {"udp": "UDP", "tcp": "TCP", "ws": "WS"}[kind]
        self.tparam = {"udp": "", "tcp": ";transport=tcp", "ws": ";transport=ws"}[kind]

    def domain_uri(self, user=None):
        """The R-URI for user (or the registrar) in our domain, in the current URI_STYLE."""
        u = f"{user}@" if user else ""
        if URI_STYLE == "bare":
            return f"sip:{u}{DOMAIN}"
        port = self.ports["ws"] if self.kind == "ws" else self.ports["sip"]
        return f"sip:{u}{HOST}:{port}{self.tparam}"

    def proxy_uri(self):
        if self.kind == "ws":
            return f"sip:{HOST}:{self.ports['ws']};transport=ws;lr"
        return f"sip:{HOST}:{self.ports['sip']}{self.tparam};lr"

    def fds(self):
        fds = [c for c in self.conns if not c.closed]
        if self.udp:
            fds.append(self.udp)
        if self.listener:
            fds.append(self.listener)
        return fds

    def readable(self, fd):
        """Messages that arrived on fd, as Msg."""
        if fd is self.udp:
            data, addr = self.udp.recvfrom(65536)
            if data.strip() == b"":
                return []
            return [Msg(data, ("udp", addr), "udp")]
        if fd is self.listener:
            s, _ = self.listener.accept()
            self.conns.append(StreamConn(s))
            return []
        return [Msg(d, fd, self.kind) for d in fd.read()]

    def send_proxy(self, data):
        if self.kind == "udp":
            self.udp.sendto(data, (HOST, self.ports["sip"]))
            return
        if self.proxy_conn is None or self.proxy_conn.closed:
            self.proxy_conn = StreamConn(socket.create_connection((HOST, self.ports["sip"])))
            self.conns.append(self.proxy_conn)
        self.proxy_conn.send(data)

    def reply(self, req, data):
        if self.kind == "udp":
            self.udp.sendto(data, req.conn[1])
        else:
            req.conn.send(data)

    def close(self):
        for s in [self.udp, self.listener] + [c.sock for c in self.conns]:
            if s:
                try:
                    s.close()
                except OSError:
                    pass


UAS = []


def pump(timeout):
    fds = {}
    for ua in UAS:
        for fd in ua.net.fds():
            fds[fd] = ua
    r, _, _ = select.select(list(fds), [], [], timeout)
    for fd in r:
        ua = fds[fd]
        for m in ua.net.readable(fd):
            log(f"--- {ua.name} <- ({m.transport})\n{m}")
            ua.inbox.append(m)


class Timeout(Exception):
    pass


# ----------------------------------------------------------------------------- digest


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def auth_header(user, password, method, uri, challenge):
    p = {k.lower(): a or b
         for k, a, b in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]+))', challenge)}
    realm, nonce = p["realm"], p["nonce"]
    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    h = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        nc, cnonce = "00000001", rand(16)
        resp = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        h += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        resp = md5(f"{ha1}:{nonce}:{ha2}")
    h += f', response="{resp}", algorithm=MD5'
    if "opaque" in p:
        h += f', opaque="{p["opaque"]}"'
    return h


# ----------------------------------------------------------------------------- user agent


class Dialog:
    def __init__(self, call_id, local_tag, remote_tag, local_uri, remote_uri, target, routes,
                 cseq):
        self.call_id, self.local_tag, self.remote_tag = call_id, local_tag, remote_tag
        self.local_uri, self.remote_uri, self.target = local_uri, remote_uri, target
        self.routes, self.cseq = routes, cseq


class UA:
    def __init__(self, name, kind, ports, tcp_listen=True, password=None):
        self.name = name
        self.password = password or PASSWORDS.get(name, "x")
        self.net = Net(kind, ports, tcp_listen)
        self.kind = kind
        self.aor = f"sip:{name}@{DOMAIN}"
        self.contact_uri = f"sip:{name}@{HOST}:{self.net.port}{self.net.tparam}"
        self.inbox = []
        UAS.append(self)

    def close(self):
        self.net.close()
        UAS.remove(self)

    # -- building and sending

    def build(self, method, ruri, to, call_id, from_tag, cseq, to_tag=None, routes=(),
              extra=(), body=b"", branch=None, contact=True, cseq_method=None):
        branch = branch or "z9hG4bK" + rand()
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/{self.net.via} {HOST}:{self.net.port};branch={branch};rport",
                 "Max-Forwards: 70"]
        lines += [f"Route: {r}" for r in routes]
        lines += [f"From: <{self.aor}>;tag={from_tag}",
                  f"To: <{to}>" + (f";tag={to_tag}" if to_tag else ""),
                  f"Call-ID: {call_id}",
                  f"CSeq: {cseq} {cseq_method or method}"]
        if contact:
            lines.append(f"Contact: <{self.contact_uri}>")
        lines += list(extra)
        lines += [f"User-Agent: check.py-{self.name}", f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body, branch

    def send(self, data):
        log(f"--- {self.name} -> ({self.kind})\n{data.decode(errors='replace')}")
        self.net.send_proxy(data)

    def respond(self, req, status, reason, to_tag=None, contact=False, body=b"", extra=()):
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for n, v in req.raw_headers("via")]
        if 100 < status < 300:
            lines += [f"Record-Route: {v}" for n, v in req.raw_headers("record-route")]
        to = req.get("to")
        if to_tag and not req.tag("to"):
            to += f";tag={to_tag}"
        lines += [f"From: {req.get('from')}", f"To: {to}", f"Call-ID: {req.call_id}",
                  f"CSeq: {req.get('cseq')}"]
        if contact:
            lines.append(f"Contact: <{self.contact_uri}>")
        lines += list(extra)
        lines += [f"Content-Length: {len(body)}", "", ""]
        data = "\r\n".join(lines).encode() + body
        log(f"--- {self.name} -> ({self.kind}) reply\n{data.decode(errors='replace')}")
        self.net.reply(req, data)

    # -- receiving

    def wait(self, pred, what, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            for i, m in enumerate(self.inbox):
                if pred(m):
                    del self.inbox[i]
                    return m
            left = deadline - time.time()
            if left <= 0:
                raise Timeout(f"{self.name}: no {what} within {timeout}s; inbox: "
                              + " | ".join(m.first for m in self.inbox))
            pump(min(left, 0.1))

    def wait_final(self, call_id, cseq, method, timeout=5.0):
        return self.wait(lambda m: m.status and m.status >= 200 and m.call_id == call_id
                         and m.cseq == (cseq, method), f"final reply to {method} {cseq}",
                         timeout)

    def wait_request(self, method, call_id=None, timeout=5.0):
        return self.wait(lambda m: m.method == method and m.status is None
                         and (call_id is None or m.call_id == call_id),
                         f"{method} request", timeout)

    def quiet(self, secs):
        """Pumps for secs; returns what arrived for this UA meanwhile (and keeps it)."""
        end = time.time() + secs
        while time.time() < end:
            pump(max(0.0, min(0.1, end - time.time())))
        return list(self.inbox)

    # -- transactions with digest auth

    def request_with_auth(self, method, ruri, to, call_id, from_tag, cseq, expect, **kw):
        """Sends; expects a challenge `expect` (401/407), answers it; returns (final, cseq,
        branch, challenge)."""
        data, branch = self.build(method, ruri, to, call_id, from_tag, cseq, **kw)
        self.send(data)
        r = self.wait_final(call_id, cseq, method)
        if r.status != expect:
            raise AssertionError(f"{method}: expected {expect} challenge, got {r.first}")
        if method == "INVITE":
            self.ack_non2xx(r, ruri, branch)
        hdr = "WWW-Authenticate" if expect == 401 else "Proxy-Authenticate"
        ahdr = "Authorization" if expect == 401 else "Proxy-Authorization"
        challenge = r.get(hdr.lower())
        if not challenge:
            raise AssertionError(f"{r.first} without {hdr}")
        cseq += 1
        extra = list(kw.pop("extra", ())) + [
            f"{ahdr}: {auth_header(self.name, self.password, method, ruri, challenge)}"]
        data, branch = self.build(method, ruri, to, call_id, from_tag, cseq, extra=extra, **kw)
        self.send(data)
        if method == "INVITE":
            return None, cseq, branch, challenge
        return self.wait_final(call_id, cseq, method), cseq, branch, challenge

    def ack_non2xx(self, resp, ruri, branch):
        n, _ = resp.cseq
        lines = [f"ACK {ruri} SIP/2.0",
                 f"Via: SIP/2.0/{self.net.via} {HOST}:{self.net.port};branch={branch};rport",
                 "Max-Forwards: 70", f"From: {resp.get('from')}", f"To: {resp.get('to')}",
                 f"Call-ID: {resp.call_id}", f"CSeq: {n} ACK", "Content-Length: 0", "", ""]
        self.send("\r\n".join(lines).encode())

    def register(self, expires=None, contact=None, password=None, expect_status=200,
                 extra=()):
        call_id, tag = rand(16) + "@check", rand()
        ruri = self.net.domain_uri()
        headers = list(extra)
        if expires is not None:
            headers.append(f"Expires: {expires}")
        if contact is not None:
            headers.append(f"Contact: {contact}")
        saved = self.password
        if password:
            self.password = password
        try:
            r, _, _, ch = self.request_with_auth("REGISTER", ruri, self.aor, call_id, tag, 1,
                                                 401, extra=headers,
                                                 contact=contact is None)
        finally:
            self.password = saved
        return r, ch

    def register_ok(self, expires=300):
        r, _ = self.register(expires=expires)
        if r.status != 200:
            raise AssertionError(f"REGISTER {self.name}: {r.first}")
        mine = [c for c in r.all("contact") if self.contact_uri in c]
        if not mine:
            raise AssertionError(f"200 to REGISTER lacks our contact: {r.all('contact')}")
        return r

    def unregister_all(self):
        r, _ = self.register(expires=0, contact="*")
        if r.status != 200:
            raise AssertionError(f"unREGISTER * {self.name}: {r.first}")
        if r.all("contact"):
            raise AssertionError(f"contacts left after Contact: *: {r.all('contact')}")
        return r


# ----------------------------------------------------------------------------- checks

RESULTS = []


def check(name, fn):
    try:
        fn()
        RESULTS.append((name, True))
        print(f"ok    {name}", flush=True)
    except Exception as e:  # noqa: BLE001
        RESULTS.append((name, False))
        print(f"FAIL  {name}: {e}", flush=True)
        if VERBOSE:
            traceback.print_exc()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def invite(caller, callee, ports, to_user=None, ruri=None):
    """alice -> proxy INVITE with 407 dance. Returns (call_id, from_tag, cseq, branch, ruri)."""
    to_user = to_user or callee.name
    ruri = ruri or caller.net.domain_uri(to_user)
    call_id, tag = rand(16) + "@check", rand()
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
           f"m=audio 4000 RTP/AVP 0\r\n").encode()
    _, cseq, branch, ch = caller.request_with_auth(
        "INVITE", ruri, ruri, call_id, tag, 1, 407, body=sdp,
        extra=["Content-Type: application/sdp"])
    return call_id, tag, cseq, branch, ruri


def expect_route_set(rr, net, who):
    expect(rr, f"{who}: no Record-Route")
    expect(all(";lr" in r for r in rr), f"{who}: Record-Route without ;lr: {rr}")


def call(caller, callee, ports, hangup_by="caller"):
    call_id, ftag, cseq, branch, ruri = invite(caller, callee, ports)
    trying = caller.wait(lambda m: m.status == 100 and m.call_id == call_id, "100 Trying")
    inv = callee.wait_request("INVITE", call_id)
    expect(inv.ruri.startswith(callee.contact_uri.split(";")[0]) or inv.ruri == callee.contact_uri
           or callee.kind == "ws",
           f"INVITE R-URI {inv.ruri} is not bob's contact {callee.contact_uri}")
    expect(inv.get("proxy-authorization") is None, "Proxy-Authorization not consumed")
    rr = inv.all("record-route")
    expect_route_set(rr, callee.net, "INVITE at callee")
    # the route towards the callee's side is the topmost: it names the callee's transport
    top = uri_of(rr[0])
    if callee.kind == "ws":
        expect("transport=ws" in top, f"top Record-Route for ws callee: {top}")
    totag = rand()
    callee.respond(inv, 180, "Ringing", to_tag=totag, contact=True)
    ring = caller.wait(lambda m: m.status == 180 and m.call_id == call_id, "180 Ringing")
    sdp = (f"v=0\r\no=- 2 2 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
           f"m=audio 4002 RTP/AVP 0\r\n").encode()
    callee.respond(inv, 200, "OK", to_tag=totag, contact=True, body=sdp,
                   extra=["Content-Type: application/sdp"])
    ok = caller.wait_final(call_id, cseq, "INVITE")
    expect(ok.status == 200, f"caller got {ok.first}")
    crr = ok.all("record-route")
    expect_route_set(crr, caller.net, "200 at caller")
    routes_c = list(reversed(crr))
    expect(uri_of(routes_c[0]).split(";")[0] in caller.net.proxy_uri(),
           f"caller's first route {routes_c[0]} is not the proxy as seen on {caller.kind} "
           f"({caller.net.proxy_uri()})")
    target_c = uri_of(ok.get("contact"))
    dlg_c = Dialog(call_id, ftag, ok.tag("to"), caller.aor, ruri, target_c, routes_c, cseq)
    # ACK for 2xx: end to end, through the proxy
    ack, _ = caller.build("ACK", target_c, ruri, call_id, ftag, cseq, to_tag=dlg_c.remote_tag,
                          routes=routes_c)
    caller.send(ack)
    a = callee.wait_request("ACK", call_id)
    expect(a.cseq == (cseq, "ACK"), f"ACK CSeq {a.get('cseq')}")
    # callee's dialog state
    routes_b = rr
    target_b = uri_of(inv.get("contact"))
    # the caller is over WS: its Contact came with ;alias=... added by the proxy
    if caller.kind == "ws":
        expect("alias=" in target_b, f"ws caller's Contact not aliased: {target_b}")
    if hangup_by == "caller":
        bye, _ = caller.build("BYE", target_c, ruri, call_id, ftag, cseq + 1,
                              to_tag=dlg_c.remote_tag, routes=routes_c)
        caller.send(bye)
        b = callee.wait_request("BYE", call_id)
        callee.respond(b, 200, "OK")
        r = caller.wait_final(call_id, cseq + 1, "BYE")
        expect(r.status == 200, f"BYE got {r.first}")
    else:
        bye, _ = callee.build("BYE", target_b, uri_of(inv.get("from")), call_id, totag, 1,
                              to_tag=ftag, routes=routes_b)
        # callee's From/To are swapped: rebuild header lines accordingly
        bye = bye.replace(f"From: <{callee.aor}>;tag={totag}".encode(),
                          f"From: {inv.get('to')};tag={totag}".encode())
        bye = bye.replace(f"To: <{uri_of(inv.get('from'))}>;tag={ftag}".encode(),
                          f"To: {inv.get('from')}".encode())
        callee.send(bye)
        b = caller.wait_request("BYE", call_id)
        expect(b.get("proxy-authorization") is None, "BYE challenged?")
        caller.respond(b, 200, "OK")
        r = callee.wait_final(call_id, 1, "BYE")
        expect(r.status == 200, f"callee's BYE got {r.first}")


def cancelled_call(caller, callee, ports):
    call_id, ftag, cseq, branch, ruri = invite(caller, callee, ports)
    inv = callee.wait_request("INVITE", call_id)
    totag = rand()
    callee.respond(inv, 180, "Ringing", to_tag=totag, contact=True)
    caller.wait(lambda m: m.status == 180 and m.call_id == call_id, "180 Ringing")
    lines = [f"CANCEL {ruri} SIP/2.0",
             f"Via: SIP/2.0/{caller.net.via} {HOST}:{caller.net.port};branch={branch};rport",
             "Max-Forwards: 70", f"From: <{caller.aor}>;tag={ftag}", f"To: <{ruri}>",
             f"Call-ID: {call_id}", f"CSeq: {cseq} CANCEL", "Content-Length: 0", "", ""]
    caller.send("\r\n".join(lines).encode())
    c200 = caller.wait_final(call_id, cseq, "CANCEL")
    expect(c200.status == 200, f"CANCEL got {c200.first}")
    cancel = callee.wait_request("CANCEL", call_id)
    callee.respond(cancel, 200, "OK")
    callee.respond(inv, 487, "Request Terminated", to_tag=totag)
    r = caller.wait_final(call_id, cseq, "INVITE")
    expect(r.status == 487, f"INVITE after CANCEL got {r.first}")
    caller.ack_non2xx(r, ruri, branch)
    ack = callee.wait_request("ACK", call_id)
    expect(ack.cseq == (cseq, "ACK"), "hop-by-hop ACK for 487")
    # the caller hears nothing more (no 487 retransmissions once ACKed)
    time.sleep(0.2)
    left = [m for m in caller.quiet(0.6) if m.call_id == call_id and m.status == 487]
    expect(not left, "487 retransmitted after ACK")
    caller.inbox.clear()


def message(sender, receiver, text):
    call_id, tag = rand(16) + "@check", rand()
    ruri = sender.net.domain_uri(receiver.name)
    data, _ = sender.build("MESSAGE", ruri, ruri, call_id, tag, 1, body=text.encode(),
                           extra=["Content-Type: text/plain"], contact=False)
    sender.send(data)
    r = sender.wait_final(call_id, 1, "MESSAGE")
    expect(r.status == 407, f"MESSAGE without credentials got {r.first}")
    auth = auth_header(sender.name, sender.password, "MESSAGE", ruri,
                       r.get("proxy-authenticate"))
    data, _ = sender.build("MESSAGE", ruri, ruri, call_id, tag, 2, body=text.encode(),
                           extra=["Content-Type: text/plain", f"Proxy-Authorization: {auth}"],
                           contact=False)
    sender.send(data)
    return call_id


def message_delivered(sender, receiver, text):
    call_id = message(sender, receiver, text)
    m = receiver.wait_request("MESSAGE", call_id)
    expect(m.body.decode() == text, f"MESSAGE body {m.body!r}")
    expect(m.get("proxy-authorization") is None, "credentials forwarded to the callee")
    if receiver.kind == "ws":
        expect(m.conn is receiver.net.proxy_conn, "MESSAGE not on bob's WebSocket connection")
    receiver.respond(m, 200, "OK", to_tag=rand())
    r = sender.wait_final(call_id, 2, "MESSAGE")
    expect(r.status == 200, f"MESSAGE got {r.first}")


def message_404(sender, to_name):
    class _R:
        name = to_name
        kind = "udp"
    call_id = message(sender, _R, "nobody home")
    r = sender.wait_final(call_id, 2, "MESSAGE")
    expect(r.status == 404, f"MESSAGE to {to_name} got {r.first} (want 404)")


def invite_404(caller, to_name):
    class _R:
        name = to_name
    call_id, ftag, cseq, branch, ruri = invite(caller, _R, None, to_user=to_name)
    r = caller.wait_final(call_id, cseq, "INVITE")
    expect(r.status == 404, f"INVITE to {to_name} got {r.first} (want 404)")
    caller.ack_non2xx(r, ruri, branch)


def scenario(ports, kind_a, kind_b, tcp_listen, first, style):
    global URI_STYLE
    URI_STYLE = style
    tag = f"[alice {kind_a} -> bob {kind_b}, {style} R-URIs]"
    alice = UA("alice", kind_a, ports, tcp_listen)
    bob = UA("bob", kind_b, ports, tcp_listen)
    try:
        def reg_alice():
            r, ch = alice.register(expires=300)
            expect(r.status == 200, f"got {r.first}")
            expect('realm="127.0.0.1"' in ch, f"challenge realm: {ch}")
            expect(any(alice.contact_uri in c for c in r.all("contact")),
                   f"contact missing in 200: {r.all('contact')}")
        check(f"{tag} REGISTER alice: 401 then 200 with contact", reg_alice)
        if first:
            def options():
                ruri = alice.net.proxy_uri().replace(";lr", "")
                call_id = rand(16) + "@check"
                data, _ = alice.build("OPTIONS", ruri, ruri, call_id, rand(), 1)
                alice.send(data)
                r = alice.wait_final(call_id, 1, "OPTIONS")
                expect(r.status == 200, f"OPTIONS to the proxy got {r.first}")
            check(f"{tag} OPTIONS to the proxy itself: 200 (no auth)", options)

            def too_brief():
                r, _ = alice.register(expires=30)
                expect(r.status == 423, f"Expires 30 got {r.first}")
                expect(r.get("min-expires") == "60", f"Min-Expires {r.get('min-expires')}")
            check(f"{tag} REGISTER Expires 30: 423 Min-Expires 60", too_brief)

            def wrong_pw():
                r, _ = alice.register(expires=300, password="nope")
                expect(r.status == 401, f"wrong password got {r.first}")
            check(f"{tag} REGISTER wrong password: 401 again", wrong_pw)

            def foreign_aor():
                saved = alice.aor
                alice.aor = alice.aor.replace("alice", "bob")  # bob's AoR, alice's credentials
                try:
                    r, _ = alice.register(expires=300)
                finally:
                    alice.aor = saved
                expect(r.status == 403, f"REGISTER of bob's AoR by alice got {r.first}")
            check(f"{tag} REGISTER someone else's AoR: 403", foreign_aor)

            def default_expires():
                r, _ = alice.register()
                c = [c for c in r.all("contact") if alice.contact_uri in c]
                expect(c and "expires=3600" in c[0], f"default expires: {c}")
                r, _ = alice.register(expires=7200)
                c = [c for c in r.all("contact") if alice.contact_uri in c]
                expect(c and "expires=3600" in c[0], f"max expires: {c}")
            check(f"{tag} REGISTER default/max expires 3600", default_expires)
        check(f"{tag} REGISTER bob", lambda: bob.register_ok())
        check(f"{tag} INVITE 407/auth, Record-Route, 200, ACK, BYE by caller",
              lambda: call(alice, bob, ports, "caller"))
        check(f"{tag} second call, BYE by callee (not challenged)",
              lambda: call(alice, bob, ports, "callee"))
        check(f"{tag} INVITE CANCELled: 200 CANCEL, 487, ACK",
              lambda: cancelled_call(alice, bob, ports))
        check(f"{tag} MESSAGE 407/auth, delivered to bob, 200",
              lambda: message_delivered(alice, bob, f"hello bob over {kind_b}"))
        check(f"{tag} MESSAGE bob -> alice",
              lambda: message_delivered(bob, alice, f"hello alice over {kind_a}"))
        if first:
            check(f"{tag} INVITE to unknown user: 404", lambda: invite_404(alice, "carol"))
        check(f"{tag} unREGISTER bob with Contact: * Expires: 0", bob.unregister_all)
        check(f"{tag} INVITE to unregistered bob: 404", lambda: invite_404(alice, "bob"))
        check(f"{tag} MESSAGE to unregistered bob: 404", lambda: message_404(alice, "bob"))

        def unreg_alice():
            r, _ = alice.register(expires=0, contact=f"<{alice.contact_uri}>")
            expect(r.status == 200, f"got {r.first}")
            expect(not any(alice.contact_uri in c for c in r.all("contact")),
                   f"alice still bound: {r.all('contact')}")
        check(f"{tag} unREGISTER alice with Expires: 0", unreg_alice)
    finally:
        alice.close()
        bob.close()


# ----------------------------------------------------------------------------- kamailio


def start_kamailio(tmp, ports, defines):
    cfg = open(os.path.join(HERE, "kamailio.cfg")).read()
    db = os.path.join(tmp, "db")
    shutil.copytree(os.path.join(HERE, "db"), db)
    cfg = (cfg.replace("@UDP_PORT@", str(ports["sip"])).replace("@WS_PORT@", str(ports["ws"]))
           .replace("@DB_DIR@", db))
    path = os.path.join(tmp, "kamailio.cfg")
    open(path, "w").write(cfg)
    run = os.path.join(tmp, "run")
    os.mkdir(run)
    cmd = ["kamailio", "-f", path, "-DD", "-E", "-Y", run, "-P", os.path.join(run, "kamailio.pid")]
    for d in defines:
        cmd += ["-A", d]
    logf = open(os.path.join(tmp, "kamailio.log"), "wb")
    print("starting:", " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    while time.time() - t0 < 10:
        text = open(logf.name, errors="replace").read()
        if "sipua-kamailio ready" in text:
            print(f"ready after {time.time() - t0:.2f}s", flush=True)
            return proc, logf.name
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    print(open(logf.name, errors="replace").read())
    raise SystemExit("kamailio did not become ready")


def stop_kamailio(proc):
    proc.send_signal(signal.SIGTERM)  # the main process then stops all its children
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--tcp-flows", action="store_true",
                    help="start with -A WITH_TCP_FLOWS; TCP UAs then do not listen")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (config, log)")
    ap.add_argument("--only", metavar="A,B", action="append",
                    help="run only alice transport A with bob transport B (udp, tcp, ws)")
    args = ap.parse_args()
    VERBOSE = args.verbose
    sip = free_udp_tcp_port()
    ports = {"sip": sip, "ws": free_udp_tcp_port(taken=(sip,))}
    tmp = tempfile.mkdtemp(prefix="sipua-kamailio-")
    proc, logname = start_kamailio(tmp, ports, ["WITH_TCP_FLOWS"] if args.tcp_flows else [])
    try:
        combos = [("udp", "udp"), ("tcp", "tcp"), ("ws", "ws"), ("udp", "ws"), ("ws", "udp"),
                  ("tcp", "ws"), ("udp", "tcp")]
        if args.only:
            combos = [tuple(o.split(",")) for o in args.only]
        for i, (a, b) in enumerate(combos):
            for style in ("bare", "port"):
                scenario(ports, a, b, not args.tcp_flows, first=(i == 0 and style == "bare"),
                         style=style)
    finally:
        stop_kamailio(proc)
        failed = sum(1 for _, ok in RESULTS if not ok)
        if failed or VERBOSE:
            print("---- kamailio log (tail) ----")
            print("".join(open(logname, errors="replace").readlines()[-80:]))
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(1 for _, ok in RESULTS if ok)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
