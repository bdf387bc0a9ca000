#!/usr/bin/env python3
"""A PJSIP peer for sipua's interop tests (tests/interop/media.rs, transfer.rs), on PJSIP's
Python binding (PyPI `pjsua2-python`, `import pjsua2`; scripts/test installs it).

  peer.py [options] sip:user@127.0.0.1:PORT   # make one call to that URI
  peer.py [options] URI1 URI2                 # call URI1, then URI2 once the first is up
  peer.py [options] --answer                  # answer the first call that comes (200)

Transfer (RFC 3515, RFC 3891): a REFER received in a call is always followed (PJSIP calls
the Refer-To target in a new call, and an INVITE with Replaces takes over the call it names);
--xfer URI sends a REFER in the first call once it is up (blind transfer), --xfer-replaces
refers the first call's peer to the second call's peer (attended transfer). The transferor
hangs up the transferred call on the final NOTIFY (the target answered, or the transfer
failed).

UDP on 127.0.0.1 only, no registrar, no STUN/TURN/ICE/SRTP/session timers, G.711 only (PJSIP
adds telephone-event by itself), no sound card (the null device): the audio comes from
--play and goes to --record.

Prints one line per event, flushed at once, for the test to wait on; `call=N` numbers the
calls of the run from 0 in the order they began:
  READY sip:pjsua@127.0.0.1:PORT     the SIP transport is up (with --answer: call this URI)
  INCOMING call=0 from URI           an INVITE came (answered with --answer)
  CONFIRMED call=0 remote URI        the call is established (ACK sent or received)
  MEDIA PCMU 8000 remote IP:PORT     the audio stream is up
  DTMF-TX 147#                       the digits were queued (RFC 4733)
  DTMF-RX 5                          a digit arrived (RFC 4733 or INFO)
  XFER call=0 to URI                 we sent a REFER (--xfer, --xfer-replaces)
  XFER-STATUS call=0 200 OK final    a NOTIFY of our REFER: the target's answer
  XFER-REQUEST call=0 to URI         a REFER came: PJSIP follows it in call=1
  REPLACED call=0 by call=1          an INVITE with Replaces took call 0's place
  HANGUP call=0                      we send BYE (--duration is over, or a transfer done)
  DISCONNECTED call=0 200 Normal call clearing
Exits 0 when every call has ended and at least one was established (and, with --xfer or
--xfer-replaces, the transfer succeeded), 1 when it failed, 2 on --timeout.
"""
import argparse
import random
import sys
import time

import pjsua2 as pj


def say(*words):
    print(*words, flush=True)


class Peer:
    """What the callbacks share with the main loop."""

    def __init__(self):
        self.acc = None
        # every Call of the run, in the order they began; kept until libDestroy (a Call
        # dropped earlier, in a callback, is freed under PJSIP's feet)
        self.calls = []
        self.answered = None  # the incoming call we answer (--answer)
        self.player = None
        self.recorder = None
        # with --ring: when to send the 200 after the 180
        self.ring = 0.0
        self.answer_at = None
        # the final status of our REFER (--xfer, --xfer-replaces)
        self.xfer_final = None

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
        self.confirmed_at = None
        self.ended = False
        self.media_up = False
        self.hung_up = False

    def hangup_once(self):
        if not self.hung_up and not self.ended:
            self.hung_up = True
            say("HANGUP", self.tag)
            self.hangup(pj.CallOpParam(True))

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
            say("CONFIRMED", self.tag, "remote", ci.remoteUri)
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            say("DISCONNECTED", self.tag, ci.lastStatusCode, ci.lastReason)
            self.ended = True

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
        say("INCOMING", call.tag, "from", call.getInfo().remoteUri)
        op = pj.CallOpParam()
        if self.peer.answered is not None:
            op.statusCode = 486  # one call answered per run
            call.answer(op)
            return
        self.peer.answered = call
        if self.peer.ring > 0:
            # ring first (reliably with --100rel); the main loop answers later
            op.statusCode = 180
            call.answer(op)
            self.peer.answer_at = time.monotonic() + self.peer.ring
            return
        op.statusCode = 200
        call.answer(op)


def endpoint_config(log_level):
    cfg = pj.EpConfig()
    # no worker thread: every callback runs in this thread, inside libHandleEvents()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.uaConfig.maxCalls = 4  # a transfer has up to three at once
    cfg.uaConfig.userAgent = "sipua-interop-pjsua2"
    cfg.logConfig.level = log_level
    cfg.logConfig.consoleLevel = log_level
    # the conference bridge runs at 8 kHz, so the recorder writes 8 kHz mono
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True  # audio packets during silence too
    cfg.medConfig.ecTailLen = 0  # no echo canceller
    return cfg


def account_config(sip_port, transport, rtp_port, rel100=False):
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:pjsua@127.0.0.1:{sip_port}"
    acfg.regConfig.registrarUri = ""
    acfg.regConfig.registerOnAdd = False
    acfg.sipConfig.transportId = transport
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
    media.srtpUse = pj.PJMEDIA_SRTP_DISABLED
    # else PJSIP re-INVITEs to lock one codec when an answer lists several
    media.lockCodecEnabled = False
    acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
    if rel100:
        # RFC 3262 required: our INVITEs carry Require: 100rel, our 1xx go reliably
        acfg.callConfig.prackUse = pj.PJSUA_100REL_MANDATORY
    return acfg


def run(a, ep, peer):
    """The call itself; returns the exit code."""
    tc = pj.TransportConfig()
    tc.port = a.sip_port
    tc.boundAddress = "127.0.0.1"
    tc.publicAddress = "127.0.0.1"
    transport = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    ep.libStart()
    ep.audDevManager().setNullDev()
    sip_port = int(ep.transportGetInfo(transport).localName.rsplit(":", 1)[1])

    for c in ep.codecEnum2():
        ep.codecSetPriority(c.codecId, 0)
    ep.codecSetPriority("PCMU/8000/1", 255)
    ep.codecSetPriority("PCMA/8000/1", 254)

    peer.ring = a.ring
    acc = Account(peer)
    acc.create(account_config(sip_port, transport, a.rtp_port, a.rel100))
    peer.acc = acc
    if a.play:
        peer.player = pj.AudioMediaPlayer()
        peer.player.createPlayer(a.play, pj.PJMEDIA_FILE_NO_LOOP)
    if a.record:
        peer.recorder = pj.AudioMediaRecorder()
        peer.recorder.createRecorder(a.record)

    say("READY", f"sip:pjsua@127.0.0.1:{sip_port}")
    to_call = list(a.uri)
    ours = []  # the calls we made, in the order of a.uri

    def call_next():
        call = peer.new_call(acc)
        ours.append(call)
        call.makeCall(to_call.pop(0), pj.CallOpParam(True))

    if to_call:
        call_next()

    deadline = time.monotonic() + a.timeout
    dtmf_sent = xfer_sent = False
    while time.monotonic() < deadline:
        ep.libHandleEvents(10)
        now = time.monotonic()
        if peer.answer_at is not None and now >= peer.answer_at:
            peer.answer_at = None
            op = pj.CallOpParam()
            op.statusCode = 200
            peer.answered.answer(op)
        if peer.all_ended() and not to_call:
            if not peer.confirmed():
                return 1
            if (a.xfer or a.xfer_replaces) and not (
                peer.xfer_final is not None and 200 <= peer.xfer_final < 300
            ):
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
        first = ours[0] if ours else peer.answered
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
        if a.duration > 0:
            # each call hangs up this long after it was established
            for c in peer.calls:
                if c.confirmed_at is not None and now - c.confirmed_at >= a.duration:
                    c.hangup_once()
    say("TIMEOUT")
    ep.hangupAllCalls()
    for _ in range(100):
        ep.libHandleEvents(10)
    return 2


def main():
    ap = argparse.ArgumentParser(description="PJSIP peer for sipua's interop tests")
    ap.add_argument(
        "uri", nargs="*", help="call this URI (several: each once the one before is up)"
    )
    ap.add_argument("--answer", action="store_true", help="answer the first incoming call")
    ap.add_argument("--sip-port", type=int, default=0, help="local SIP/UDP port (0: any)")
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
        "--duration", type=float, default=0.0, help="hang up this long after CONFIRMED (0: never)"
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after this long")
    ap.add_argument("--log-level", type=int, default=1, help="PJSIP log level (0-6)")
    ap.add_argument("--100rel", dest="rel100", action="store_true", help="require 100rel (PRACK)")
    ap.add_argument("--ring", type=float, default=0.0, help="answering: 180, then 200 after this")
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

    ep = pj.Endpoint()
    ep.libCreate()
    ep.libInit(endpoint_config(a.log_level))
    peer = Peer()
    try:
        rc = run(a, ep, peer)
    finally:
        # pjsua2 objects must go before libDestroy(), the recorder first (it writes the WAV
        # sizes when it is closed); one left to the garbage collector after libDestroy() makes
        # PJSIP assert at exit
        peer.recorder = None
        peer.player = None
        peer.answered = None
        peer.calls = []
        if peer.acc is not None:
            peer.acc.shutdown()
            peer.acc = None
        ep.libDestroy()
    say("EXIT", rc)
    sys.exit(rc)


if __name__ == "__main__":
    main()
