#!/usr/bin/env python3
"""A PJSIP peer for sipua's interop tests (tests/interop/media.rs, transfer.rs and the interop
matrix), on PJSIP's Python binding (PyPI `pjsua2-python`, `import pjsua2`; scripts/test installs
it).

  peer.py [options] sip:user@127.0.0.1:PORT   # make one call to that URI
  peer.py [options] URI1 URI2                 # call URI1, then URI2 once the first is up
  peer.py [options] --answer                  # answer the first incoming call (200)
  peer.py [options] --answer --calls N        # answer N calls, exit once all have ended

Options besides the ones below (see --help): --port/--sip-port, --rtp-port, --play, --record,
--dtmf, --dtmf-delay, --dtmf-duration, --100rel, --ring, --timeout, --log-level.

Transport: --transport udp (the default), tcp or tls: the one SIP transport we listen on
(127.0.0.1, --port) and send over; READY prints a URI that reaches us (with ;transport=tcp for
TCP, ;transport=tls for TLS). With tcp or tls, a URI to call or to send the MESSAGE to that
names no transport gets ;transport=tcp or ;transport=tls when there is no --proxy (PJSIP could
not send it otherwise); through a proxy the R-URI is left as given (the proxy picks the next
hop's transport).

TLS: --transport tls needs --cert FILE and --key FILE (PEM), the certificate and key our TLS
listener presents (PJSIP presents them as a client too, should a server ask); no client
certificate is asked for. --ca FILE (PEM): verify the certificate of the servers we connect
to against it (and their name, 127.0.0.1: give the certificate an IP:127.0.0.1
subjectAltName); without --ca the server's certificate is not verified. We send sip: URIs over
TLS (;transport=tls), not sips:. TLS 1.2 at most: the pjsua2-python wheel bundles OpenSSL 1.0.2.

Outbound proxy: --proxy sip:127.0.0.1:PORT[;transport=tcp|tls] routes every request we send
(INVITE, MESSAGE, and in-dialog requests while there is no Record-Route) through that proxy,
as a loose router (`;lr` added if missing; `;transport=tcp` or `;transport=tls` added with
--transport tcp or tls). In-dialog requests follow the dialog's Record-Route route set (PJSIP
does that by itself).

Call duration: --duration S hangs up each call S seconds after it was established (after the
--hold sequence, with --hold); the default, 0, never hangs up: we wait for the peer's BYE.

Hold (RFC 3264 §8.4): --hold puts each call on hold once it is CONFIRMED (after --hold-delay
seconds): a re-INVITE with a=sendonly (Call::setHold()); on its 2xx, HOLD-OK, then after
--hold-time seconds a re-INVITE with a=sendrecv (Call::reinvite() with PJSUA_CALL_UNHOLD), and
UNHOLD-OK on its 2xx. A 491 is retried after a random 0.5-2 s (up to 5 times); any other
failure (or the call ending first) prints HOLD-FAILED and makes the exit code 1.

Instant messages (RFC 3428): --message TEXT sends one out-of-dialog MESSAGE (text/plain) once
the first call is CONFIRMED (and its --hold sequence is over): to --message-to URI if given,
else to the URI we called (the first one), else (--answer) to the caller's From URI (which
often names no port, e.g. sipua's `sip:sipua@127.0.0.1`, so goes to 5060: give --message-to).
--message-in-call sends it inside the first call's dialog instead. A final response other than
200/202 makes the exit code 1. MESSAGEs we receive (in or out of a dialog) are answered 200 by
PJSIP and printed.

PJSIP's own habits worth knowing: it drops the port from the URIs of From and To (our From is
`sip:pjsua@127.0.0.1`); over TCP and TLS the Contact of a request we send names the ephemeral
port of the connection, not --port (in-dialog requests reach us by reusing that connection).
The other way round, PJSIP reuses a connection only if it goes to the address it sends to: as
callee over TCP or TLS it sends its in-dialog requests (re-INVITE, BYE) to the caller's Contact
(or the first Record-Route) over a connection of its own, unless that Contact names the
caller's end of the connection the INVITE came on; it even tries to connect to that Contact
as the INVITE arrives. When that port is closed, our re-INVITE fails with 503 (HOLD-FAILED)
and our BYE ends the call here without reaching the caller (DISCONNECTED still says 200).

Transfer (RFC 3515, RFC 3891): a REFER received in a call is always followed (PJSIP calls
the Refer-To target in a new call, and an INVITE with Replaces takes over the call it names);
--xfer URI sends a REFER in the first call once it is up (blind transfer), --xfer-replaces
refers the first call's peer to the second call's peer (attended transfer). The transferor
hangs up the transferred call on the final NOTIFY (the target answered, or the transfer
failed).

127.0.0.1 only, no registrar, no STUN/TURN/ICE/session timers, SRTP only with --srtp, G.711 only (PJSIP
adds telephone-event by itself), no sound card (the null device): the audio comes from
--play and goes to --record.

Prints one line per event, flushed at once, for the test to wait on; `call=N` numbers the
calls of the run from 0 in the order they began:
  READY sip:pjsua@127.0.0.1:PORT     the SIP transport is up (with --answer: call this URI);
                                     READY sip:pjsua@127.0.0.1:PORT;transport=tcp with TCP,
                                     ...;transport=tls with TLS
  INCOMING call=0 from URI           an INVITE came (answered with --answer)
  CONFIRMED call=0 remote URI        the call is established (ACK sent or received)
  MEDIA PCMU 8000 remote IP:PORT     the audio stream is up
  DTMF-TX 147#                       the digits were queued (RFC 4733)
  DTMF-RX 5                          a digit arrived (RFC 4733 or INFO)
  HOLD-OK call=0                     our hold re-INVITE (a=sendonly) got its 2xx (--hold)
  UNHOLD-OK call=0                   our unhold re-INVITE (a=sendrecv) got its 2xx (--hold)
  HOLD-RETRY call=0 491 Request Pending   our re-INVITE met a glare: sent again later
  HOLD-FAILED call=0 STATUS [REASON] our hold or unhold re-INVITE failed (STATUS: its final
                                     status code, `ended`: the call ended first, `error`:
                                     PJSIP refused to send it)
  REINVITE-RX call=0 sendonly        a re-INVITE came; the a= direction of its SDP offer for
                                     audio (sendonly, recvonly, inactive, sendrecv; sendrecv
                                     when absent; `none` for a re-INVITE without an offer)
  MESSAGE-TX 200 OK                  the final response to our MESSAGE (--message); a
                                     MESSAGE still unanswered at --timeout is not reported
  MESSAGE-TX-ERROR DETAILS           PJSIP could not send the MESSAGE
  MESSAGE-RX from URI body TEXT      a MESSAGE came (PJSIP answered 200); newlines in TEXT
                                     are printed as \\n
  XFER call=0 to URI                 we sent a REFER (--xfer, --xfer-replaces)
  XFER-STATUS call=0 200 OK final    a NOTIFY of our REFER: the target's answer
  XFER-REQUEST call=0 to URI         a REFER came: PJSIP follows it in call=1
  REPLACED call=0 by call=1          an INVITE with Replaces took call 0's place
  HANGUP call=0                      we send BYE (--duration is over, or a transfer done)
  DISCONNECTED call=0 200 Normal call clearing
  TIMEOUT                            --timeout is over: we hang up and exit 2
  EXIT 0                             the exit code, last
Exits 0 when every call has ended and at least one was established (and, with --xfer or
--xfer-replaces, the transfer succeeded; with --hold, every hold sequence succeeded; with
--message, the MESSAGE got 200 or 202; with --answer, --calls calls came), 1 when it failed,
2 on --timeout.
"""
import argparse
import os
import random
import sys
import time

import pjsua2 as pj

DIRECTIONS = ("sendonly", "recvonly", "inactive", "sendrecv")


def say(*words):
    # one write per line: the interpreter runs unbuffered (-u), where print() writes each
    # word apart, and PJSIP's media thread logs to the same pipe in between
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def bare_uri(s):
    """The URI of a name-addr (`"Alice" <sip:a@h>;tag=x`), or s itself when it is one."""
    s = s.strip()
    if "<" in s and ">" in s:
        return s[s.index("<") + 1 : s.index(">")]
    return s


def uri_params(uri):
    """The lower-cased names of a SIP URI's parameters (not its headers)."""
    return [p.split("=", 1)[0].strip().lower() for p in uri.split("?", 1)[0].split(";")[1:]]


def uri_param(uri, name):
    """The value of a SIP URI's parameter `name` (None when it has none)."""
    for p in uri.split("?", 1)[0].split(";")[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == name:
            return v.strip()
    return None


def with_param(uri, name, param):
    """uri with `;param` added, unless it has a parameter `name` already."""
    if name in uri_params(uri):
        return uri
    if "?" in uri:  # parameters go before the headers
        head, headers = uri.split("?", 1)
        return f"{head};{param}?{headers}"
    return f"{uri};{param}"


def sdp_direction(sdp):
    """The direction of the audio stream of an SDP: the a= attribute of its m=audio, else the
    session-level one, else sendrecv (RFC 3264 §5.1)."""
    session = media = None
    section = "session"
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            section = "audio" if line.startswith("m=audio") and media is None else "other"
        elif line.startswith("a=") and line[2:] in DIRECTIONS:
            if section == "session":
                session = line[2:]
            elif section == "audio":
                media = line[2:]
    return media or session or "sendrecv"


def one_line(text):
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


class Peer:
    """What the callbacks share with the main loop."""

    def __init__(self):
        self.acc = None
        # every Call of the run, in the order they began; kept until libDestroy (a Call
        # dropped earlier, in a callback, is freed under PJSIP's feet)
        self.calls = []
        self.answered = None  # the first incoming call we answer (--answer)
        self.n_answered = 0  # how many incoming calls we answered (at most --calls)
        self.max_answers = 1
        self.player = None
        self.recorder = None
        # with --ring: the incoming calls to answer 200 and when, after their 180
        self.ring = 0.0
        self.answer_at = []
        # the final status of our REFER (--xfer, --xfer-replaces)
        self.xfer_final = None
        # --hold: when to send the hold re-INVITE after CONFIRMED, and the unhold one after
        # HOLD-OK (None: no --hold)
        self.hold_delay = None
        self.hold_time = 0.0
        self.failed = False  # a hold sequence failed
        # --message: the Buddy we sent it with, and the final status (None: none yet)
        self.buddy = None
        self.msg_sent = False
        self.msg_status = None

    def new_call(self, acc, call_id=pj.PJSUA_INVALID_ID):
        call = Call(self, acc, len(self.calls), call_id)
        self.calls.append(call)
        return call

    def confirmed(self):
        return any(c.confirmed_at is not None for c in self.calls)

    def all_ended(self):
        return bool(self.calls) and all(c.ended for c in self.calls)


class Call(pj.Call):
    def __init__(self, peer, acc, n, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.peer = peer
        self.acc = acc
        self.n = n  # its number in the output (call=N)
        self.tag = f"call={n}"
        self.remote = None  # the URI we called, or the caller's From URI
        self.confirmed_at = None
        # when --duration starts counting: CONFIRMED, or the end of the --hold sequence
        self.settled_at = None
        self.ended = False
        self.media_up = False
        self.hung_up = False
        # --hold: the re-INVITE to send at hold_at ("hold", "unhold"), the one in flight,
        # and how it all ended ("ok", "failed")
        self.hold_next = None
        self.hold_at = None
        self.hold_pending = None
        self.hold_result = None
        self.hold_tries = 0  # re-INVITEs sent again after a 491
        self.hold_busy = 0  # times PJSIP refused to send one (another one under way)

    def hangup_once(self):
        if not self.hung_up and not self.ended:
            self.hung_up = True
            say("HANGUP", self.tag)
            self.hangup(pj.CallOpParam(True))

    def hold_over(self, result):
        self.hold_next = self.hold_at = self.hold_pending = None
        self.hold_result = result
        self.settled_at = time.monotonic()
        if result != "ok":
            self.peer.failed = True

    def hold_step(self, now):
        """Sends the next re-INVITE of the --hold sequence when it is time."""
        if self.hold_next is None or self.hold_at is None or now < self.hold_at:
            return
        if self.ended:
            return
        step, self.hold_at = self.hold_next, None
        try:
            if step == "hold":
                self.setHold(pj.CallOpParam(True))
            else:
                prm = pj.CallOpParam(True)
                prm.opt.flag |= pj.PJSUA_CALL_UNHOLD
                self.reinvite(prm)
        except pj.Error as e:
            # another INVITE transaction of the dialog is under way (the peer's re-INVITE):
            # try again shortly
            self.hold_busy += 1
            if self.hold_busy > 50:
                say("HOLD-FAILED", self.tag, "error", e.info())
                self.hold_over("failed")
            else:
                self.hold_at = now + 0.2
            return
        self.hold_next = None
        self.hold_pending = step

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
            say("CONFIRMED", self.tag, "remote", ci.remoteUri)
            if self.peer.hold_delay is None:
                self.settled_at = self.confirmed_at
            else:
                self.hold_next = "hold"
                self.hold_at = self.confirmed_at + self.peer.hold_delay
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            say("DISCONNECTED", self.tag, ci.lastStatusCode, ci.lastReason)
            self.ended = True
            if self.confirmed_at is not None and self.hold_result is None and (
                self.hold_next or self.hold_pending
            ):
                say("HOLD-FAILED", self.tag, "ended")
                self.hold_over("failed")

    def onCallTsxState(self, prm):
        if prm.e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        ev = prm.e.body.tsxState
        tsx = ev.tsx
        if (
            tsx.role == pj.PJSIP_ROLE_UAS
            and tsx.method == "INVITE"
            and ev.type == pj.PJSIP_EVENT_RX_MSG
            and self.confirmed_at is not None
        ):
            # a re-INVITE came: onCallRxReinvite reports those with an offer, PJSIP tells
            # it nothing of the others
            msg = ev.src.rdata.wholeMsg
            _, _, body = msg.replace("\r\n", "\n").partition("\n\n")
            if msg.startswith("INVITE ") and not body.strip():
                say("REINVITE-RX", self.tag, "none")
            return
        # the final response to our hold/unhold re-INVITE
        if self.hold_pending is None:
            return
        if (
            tsx.role != pj.PJSIP_ROLE_UAC
            or tsx.method != "INVITE"
            or tsx.statusCode < 200
            or tsx.state
            not in (pj.PJSIP_TSX_STATE_COMPLETED, pj.PJSIP_TSX_STATE_TERMINATED)
        ):
            return
        step, self.hold_pending = self.hold_pending, None
        code, now = tsx.statusCode, time.monotonic()
        if 200 <= code < 300:
            if step == "hold":
                say("HOLD-OK", self.tag)
                self.hold_next = "unhold"
                self.hold_at = now + self.peer.hold_time
            else:
                say("UNHOLD-OK", self.tag)
                self.hold_over("ok")
        elif code == 491 and self.hold_tries < 5:
            # glare (RFC 3261 §14.1): try again after a random while
            self.hold_tries += 1
            say("HOLD-RETRY", self.tag, code, tsx.statusText)
            self.hold_next = step
            self.hold_at = now + random.uniform(0.5, 2.0)
        else:
            say("HOLD-FAILED", self.tag, code, tsx.statusText)
            self.hold_over("failed")

    def onCallRxReinvite(self, prm):
        # PJSIP answers it itself (200, or 488 when the offer does not fit)
        sdp = prm.offer.wholeSdp if prm.offer is not None else ""
        say("REINVITE-RX", self.tag, sdp_direction(sdp) if sdp.strip() else "none")

    def onInstantMessage(self, prm):
        say("MESSAGE-RX from", bare_uri(prm.fromUri), "body", one_line(prm.msgBody))

    def onInstantMessageStatus(self, prm):
        # the final response to our MESSAGE in this call (--message-in-call)
        say("MESSAGE-TX", prm.code, prm.reason)
        self.peer.msg_status = prm.code

    def onCallTransferRequest(self, prm):
        # follow it (202) in a Call of our own: without one PJSIP reuses this object for
        # the new call and reports both calls' events to it
        new = self.peer.new_call(self.acc)
        say("XFER-REQUEST", self.tag, "to", prm.dstUri, "->", new.tag)
        prm.statusCode = 202
        prm.newCall = new

    def onCallTransferStatus(self, prm):
        say(
            "XFER-STATUS",
            self.tag,
            prm.statusCode,
            prm.reason,
            "final" if prm.finalNotify else "progress",
        )
        if prm.finalNotify or prm.statusCode >= 200:
            self.peer.xfer_final = prm.statusCode
            prm.cont = False
            # the transfer is done: the transferor leaves the call (RFC 5589 §6.1); when it
            # failed, we end too (exit 1) rather than wait for --timeout
            self.hangup_once()

    def onCallReplaceRequest(self, prm):
        say("REPLACE-REQUEST", self.tag)

    def onCallReplaced(self, prm):
        new = self.peer.new_call(self.acc, prm.newCallId)
        say("REPLACED", self.tag, "by", new.tag)
        prm.newCall = new

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            if self.media_up:
                continue  # a re-INVITE: the bridge connections are still in place
            self.media_up = True
            am = self.getAudioMedia(i)
            si = self.getStreamInfo(i)
            say("MEDIA", si.codecName, si.codecClockRate, "remote", si.remoteRtpAddress)
            if self.peer.player is not None:
                self.peer.player.startTransmit(am)
            if self.peer.recorder is not None:
                am.startTransmit(self.peer.recorder)

    def onDtmfDigit(self, prm):
        say("DTMF-RX", prm.digit)


class Account(pj.Account):
    def __init__(self, peer):
        pj.Account.__init__(self)
        self.peer = peer

    def onIncomingCall(self, prm):
        call = self.peer.new_call(self, prm.callId)
        remote = call.getInfo().remoteUri
        call.remote = bare_uri(remote)
        say("INCOMING", call.tag, "from", remote)
        op = pj.CallOpParam()
        if self.peer.n_answered >= self.peer.max_answers:
            op.statusCode = 486  # --calls answered already
            call.answer(op)
            return
        self.peer.n_answered += 1
        if self.peer.answered is None:
            self.peer.answered = call
        if self.peer.ring > 0:
            # ring first (reliably with --100rel); the main loop answers later
            op.statusCode = 180
            call.answer(op)
            self.peer.answer_at.append((time.monotonic() + self.peer.ring, call))
            return
        op.statusCode = 200
        call.answer(op)

    def onInstantMessage(self, prm):
        say("MESSAGE-RX from", bare_uri(prm.fromUri), "body", one_line(prm.msgBody))

    def onInstantMessageStatus(self, prm):
        # the final response to our MESSAGE (PJSIP reports only that one)
        say("MESSAGE-TX", prm.code, prm.reason)
        self.peer.msg_status = prm.code


def endpoint_config(log_level, max_calls):
    cfg = pj.EpConfig()
    # no worker thread: every callback runs in this thread, inside libHandleEvents()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.uaConfig.maxCalls = max_calls
    cfg.uaConfig.userAgent = "sipua-interop-pjsua2"
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    # the conference bridge runs at 8 kHz, so the recorder writes 8 kHz mono
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True  # audio packets during silence too
    cfg.medConfig.ecTailLen = 0  # no echo canceller
    return cfg


def account_config(
    sip_port,
    transport,
    rtp_port,
    rel100=False,
    proxy=None,
    user=None,
    password=None,
    srtp="off",
    rtcp_mux=False,
):
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{user or 'pjsua'}@127.0.0.1:{sip_port}"
    acfg.regConfig.registrarUri = ""
    acfg.regConfig.registerOnAdd = False
    acfg.sipConfig.transportId = transport
    if user and password:
        # answers a 401/407 of any realm with these (MD5 or SHA-256, as challenged)
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
    if proxy:
        proxies = pj.StringVector()
        proxies.append(proxy)
        acfg.sipConfig.proxies = proxies
    nat = acfg.natConfig
    nat.iceEnabled = False
    nat.turnEnabled = False
    nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
    nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
    nat.contactRewriteUse = 0
    nat.viaRewriteUse = 0
    nat.sdpNatRewriteUse = 0
    nat.sipOutboundUse = 0  # else ";ob" in Contact and keep-alives
    media = acfg.mediaConfig
    media.transportConfig.port = rtp_port
    media.transportConfig.portRange = 200  # the next ports when that one is taken
    media.transportConfig.boundAddress = "127.0.0.1"
    media.transportConfig.publicAddress = "127.0.0.1"
    # SDES-SRTP (RFC 4568) when asked: "mandatory" offers RTP/SAVP and takes nothing else;
    # keys only over TLS (srtpSecureSignaling 1: the hop to the peer must be TLS)
    media.srtpUse = {
        "off": pj.PJMEDIA_SRTP_DISABLED,
        "optional": pj.PJMEDIA_SRTP_OPTIONAL,
        "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
    }[srtp]
    media.srtpSecureSignaling = 1
    # RFC 5761: offer a=rtcp-mux and take it when offered (PJSIP's default is off)
    media.rtcpMuxEnabled = rtcp_mux
    # else PJSIP re-INVITEs to lock one codec when an answer lists several
    media.lockCodecEnabled = False
    acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
    if rel100:
        # RFC 3262 required: our INVITEs carry Require: 100rel, our 1xx go reliably
        acfg.callConfig.prackUse = pj.PJSUA_100REL_MANDATORY
    return acfg


def send_message(a, peer, first):
    """Sends the --message MESSAGE: in the first call (--message-in-call), else out of any
    dialog to --message-to or the first call's remote URI."""
    peer.msg_sent = True
    prm = pj.SendInstantMessageParam()
    prm.content = a.message
    if a.message_in_call:
        try:
            first.sendInstantMessage(prm)
        except pj.Error as e:  # the call has ended
            say("MESSAGE-TX-ERROR", first.tag, e.info())
            peer.msg_status = 0
        return
    to = a.message_to or first.remote
    if a.transport != "udp" and not a.proxy:
        to = with_param(to, "transport", f"transport={a.transport}")
    try:
        cfg = pj.BuddyConfig()
        cfg.uri = to
        cfg.subscribe = False
        peer.buddy = pj.Buddy()
        peer.buddy.create(peer.acc, cfg)
        peer.buddy.sendInstantMessage(prm)
    except pj.Error as e:
        say("MESSAGE-TX-ERROR", to, e.info())
        peer.msg_status = 0


def run(a, ep, peer):
    """The call itself; returns the exit code."""
    kind = {
        "udp": pj.PJSIP_TRANSPORT_UDP,
        "tcp": pj.PJSIP_TRANSPORT_TCP,
        "tls": pj.PJSIP_TRANSPORT_TLS,
    }[a.transport]
    tc = pj.TransportConfig()
    tc.port = a.sip_port
    tc.boundAddress = "127.0.0.1"
    tc.publicAddress = "127.0.0.1"
    if a.transport == "tls":
        tls = tc.tlsConfig
        tls.certFile = a.cert
        tls.privKeyFile = a.key
        # our own TLS server does not ask for client certificates
        tls.verifyClient = False
        tls.requireClientCert = False
        if a.ca:
            tls.CaListFile = a.ca
            tls.verifyServer = True
        else:
            tls.verifyServer = False
    transport = ep.transportCreate(kind, tc)
    ep.libStart()
    ep.audDevManager().setNullDev()
    sip_port = int(ep.transportGetInfo(transport).localName.rsplit(":", 1)[1])

    for c in ep.codecEnum2():
        ep.codecSetPriority(c.codecId, 0)
    ep.codecSetPriority("PCMU/8000/1", 255)
    ep.codecSetPriority("PCMA/8000/1", 254)

    peer.ring = a.ring
    peer.max_answers = a.calls
    if a.hold:
        peer.hold_delay = a.hold_delay
        peer.hold_time = a.hold_time
    acc = Account(peer)
    acc.create(
        account_config(
            sip_port,
            transport,
            a.rtp_port,
            a.rel100,
            a.proxy,
            a.user,
            a.password,
            a.srtp,
            a.rtcp_mux,
        )
    )
    peer.acc = acc
    if a.play:
        peer.player = pj.AudioMediaPlayer()
        peer.player.createPlayer(a.play, pj.PJMEDIA_FILE_NO_LOOP)
    if a.record:
        peer.recorder = pj.AudioMediaRecorder()
        peer.recorder.createRecorder(a.record)

    suffix = "" if a.transport == "udp" else f";transport={a.transport}"
    say("READY", f"sip:pjsua@127.0.0.1:{sip_port}{suffix}")
    to_call = list(a.uri)
    if a.transport != "udp" and not a.proxy:
        to_call = [with_param(u, "transport", f"transport={a.transport}") for u in to_call]
    ours = []  # the calls we made, in the order of a.uri

    def call_next():
        call = peer.new_call(acc)
        ours.append(call)
        call.remote = to_call.pop(0)
        call.makeCall(call.remote, pj.CallOpParam(True))

    if to_call:
        call_next()

    deadline = time.monotonic() + a.timeout
    dtmf_sent = xfer_sent = False
    while time.monotonic() < deadline:
        ep.libHandleEvents(10)
        now = time.monotonic()
        for when, call in [x for x in peer.answer_at if now >= x[0]]:
            peer.answer_at.remove((when, call))
            if not call.ended:
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answer(op)
        first = ours[0] if ours else peer.answered
        # --message: once the first call is up and done with --hold
        if (
            a.message
            and not peer.msg_sent
            and first is not None
            and first.confirmed_at is not None
            and (not a.hold or first.hold_result is not None or first.ended)
        ):
            send_message(a, peer, first)
        msg_waiting = a.message is not None and peer.msg_sent and peer.msg_status is None
        answering = a.answer and peer.n_answered < a.calls
        if peer.all_ended() and not to_call and not answering and not msg_waiting:
            if not peer.confirmed():
                return 1
            if (a.xfer or a.xfer_replaces) and not (
                peer.xfer_final is not None and 200 <= peer.xfer_final < 300
            ):
                return 1
            if peer.failed:
                return 1
            if a.message is not None and peer.msg_status not in (200, 202):
                return 1
            return 0
        if to_call and ours[-1].ended:
            say("FAILED", ours[-1].tag, "ended before the next call")
            ep.hangupAllCalls()
            for _ in range(100):
                ep.libHandleEvents(10)
            return 1
        if to_call and ours[-1].confirmed_at is not None:
            call_next()
        for c in peer.calls:
            c.hold_step(now)
        if a.duration > 0:
            # each call hangs up this long after it was established (and done with --hold)
            for c in peer.calls:
                if c.settled_at is not None and now - c.settled_at >= a.duration:
                    c.hangup_once()
        if first is None or first.confirmed_at is None:
            continue
        up = now - first.confirmed_at
        if a.dtmf and not dtmf_sent and up >= a.dtmf_delay:
            dtmf_sent = True
            prm = pj.CallSendDtmfParam()
            prm.digits = a.dtmf
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
            prm.duration = a.dtmf_duration
            try:
                first.sendDtmf(prm)
                say("DTMF-TX", a.dtmf)
            except pj.Error as e:  # the peer's SDP had no telephone-event
                say("DTMF-TX-ERROR", e.info())
        if a.xfer and not xfer_sent and up >= a.xfer_delay and not first.ended:
            xfer_sent = True
            say("XFER", first.tag, "to", a.xfer)
            first.xfer(a.xfer, pj.CallOpParam(True))
        if (
            a.xfer_replaces
            and not xfer_sent
            and len(ours) == 2
            and ours[1].confirmed_at is not None
            and now - ours[1].confirmed_at >= a.xfer_delay
        ):
            xfer_sent = True
            say("XFER", first.tag, "to the peer of", ours[1].tag, "(replaces)")
            first.xferReplaces(ours[1], pj.CallOpParam(True))
    say("TIMEOUT")
    ep.hangupAllCalls()
    for _ in range(100):
        ep.libHandleEvents(10)
    return 2


def proxy_uri(proxy, transport):
    """--proxy as a loose-routing Route URI for our transport (udp, tcp, tls)."""
    uri = bare_uri(proxy)
    if not uri.lower().startswith(("sip:", "sips:")):
        uri = "sip:" + uri
    if transport != "udp":
        uri = with_param(uri, "transport", f"transport={transport}")
    return with_param(uri, "lr", "lr")


def main():
    ap = argparse.ArgumentParser(description="PJSIP peer for sipua's interop tests")
    ap.add_argument(
        "uri", nargs="*", help="call this URI (several: each once the one before is up)"
    )
    ap.add_argument("--answer", action="store_true", help="answer incoming calls (--calls)")
    ap.add_argument("--user", help="digest user name for 401/407 challenges")
    ap.add_argument("--password", help="digest password of --user")
    ap.add_argument(
        "--calls",
        type=int,
        default=1,
        help="answer this many incoming calls (486 to more); --answer exits once all ended",
    )
    ap.add_argument(
        "--sip-port", "--port", dest="sip_port", type=int, default=0, help="local SIP port (0: any)"
    )
    ap.add_argument(
        "--transport",
        choices=("udp", "tcp", "tls"),
        default="udp",
        help="the SIP transport we listen on and send over",
    )
    ap.add_argument(
        "--srtp",
        choices=["off", "optional", "mandatory"],
        default="off",
        help="SDES-SRTP for media (keys only over TLS)",
    )
    ap.add_argument(
        "--rtcp-mux",
        action="store_true",
        help="offer and accept RTCP on the RTP port (RFC 5761 a=rtcp-mux)",
    )
    ap.add_argument("--cert", help="tls: PEM certificate our TLS listener presents")
    ap.add_argument("--key", help="tls: PEM private key of --cert")
    ap.add_argument(
        "--ca",
        help="tls: PEM certificates to verify the servers we connect to against (none: no check)",
    )
    ap.add_argument(
        "--proxy",
        help="outbound proxy for every request: sip:127.0.0.1:PORT[;transport=tcp|tls] (;lr added)",
    )
    ap.add_argument(
        "--rtp-port",
        type=int,
        # the range baresip's test config uses too: below the kernel's ephemeral ports
        default=20000 + 2 * random.randrange(4900),
        help="first local RTP port to try",
    )
    ap.add_argument("--play", help="WAV (16-bit PCM, any rate) to send, once")
    ap.add_argument("--record", help="WAV to write what we receive to (8 kHz mono)")
    ap.add_argument("--dtmf", help="digits to send by RFC 4733 once the call is up")
    ap.add_argument("--dtmf-delay", type=float, default=1.0, help="seconds after CONFIRMED")
    ap.add_argument("--dtmf-duration", type=int, default=160, help="ms per digit")
    ap.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="hang up this long after CONFIRMED (after --hold) (0: never, wait for the BYE)",
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after this long")
    ap.add_argument("--log-level", type=int, default=1, help="PJSIP log level (0-6)")
    ap.add_argument("--100rel", dest="rel100", action="store_true", help="require 100rel (PRACK)")
    ap.add_argument("--ring", type=float, default=0.0, help="answering: 180, then 200 after this")
    ap.add_argument(
        "--hold",
        action="store_true",
        help="put each call on hold once CONFIRMED (re-INVITE), then take it off hold",
    )
    ap.add_argument(
        "--hold-delay", type=float, default=0.0, help="seconds after CONFIRMED before --hold"
    )
    ap.add_argument(
        "--hold-time", type=float, default=0.0, help="seconds on hold (after HOLD-OK) before unhold"
    )
    ap.add_argument(
        "--message", help="send this text in a MESSAGE once the first call is up (after --hold)"
    )
    ap.add_argument(
        "--message-to", help="the MESSAGE's Request-URI (default: the first call's remote URI)"
    )
    ap.add_argument(
        "--message-in-call",
        action="store_true",
        help="send the --message MESSAGE inside the first call (its dialog) instead",
    )
    ap.add_argument("--xfer", help="transfer the first call to this URI (REFER) once it is up")
    ap.add_argument(
        "--xfer-replaces",
        action="store_true",
        help="attended transfer: refer the first call's peer to the second's (Replaces)",
    )
    ap.add_argument(
        "--xfer-delay", type=float, default=0.5, help="seconds after CONFIRMED before the REFER"
    )
    a = ap.parse_args()
    if bool(a.uri) == a.answer:
        ap.error("give either a URI to call or --answer")
    if a.xfer_replaces and len(a.uri) != 2:
        ap.error("--xfer-replaces needs two URIs to call")
    if a.xfer and a.xfer_replaces:
        ap.error("--xfer or --xfer-replaces, not both")
    if a.calls < 1:
        ap.error("--calls must be at least 1")
    if (a.message_to or a.message_in_call) and a.message is None:
        ap.error("--message-to and --message-in-call need --message")
    if a.message_to and a.message_in_call:
        ap.error("--message-to or --message-in-call, not both")
    if a.transport == "tls":
        if not (a.cert and a.key):
            ap.error("--transport tls needs --cert and --key")
        for f in (a.cert, a.key, a.ca):
            if f and not os.path.isfile(f):
                ap.error(f"no such file: {f}")
    elif a.cert or a.key or a.ca:
        ap.error("--cert, --key and --ca are for --transport tls")
    if a.proxy:
        a.proxy = proxy_uri(a.proxy, a.transport)
        if (uri_param(a.proxy, "transport") or "udp").lower() != a.transport:
            ap.error(f"--proxy {a.proxy} is not over --transport {a.transport}")

    ep = pj.Endpoint()
    ep.libCreate()
    # a transfer has up to three calls at once
    ep.libInit(endpoint_config(a.log_level, max(4, a.calls + 3)))
    peer = Peer()
    rc = None
    try:
        rc = run(a, ep, peer)
    finally:
        # pjsua2 objects must go before libDestroy(), the recorder first (it writes the WAV
        # sizes when it is closed); one left to the garbage collector after libDestroy() makes
        # PJSIP assert at exit
        peer.recorder = None
        peer.player = None
        peer.answered = None
        peer.answer_at = []
        peer.calls = []
        if rc is not None and peer.msg_sent and peer.msg_status is None:
            # a MESSAGE still unanswered (--timeout): its transaction would report to the
            # account after Account.shutdown() and make PJSIP assert in libDestroy()
            say("EXIT", rc)
            os._exit(rc)
        peer.buddy = None  # before the account goes
        if peer.acc is not None:
            peer.acc.shutdown()
            peer.acc = None
        ep.libDestroy()
    say("EXIT", rc)
    sys.exit(rc)


if __name__ == "__main__":
    main()
