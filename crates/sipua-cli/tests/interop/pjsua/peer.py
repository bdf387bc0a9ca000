#!/usr/bin/env python3
"""A PJSIP peer for sipua's audio interop tests (tests/interop/media.rs), on PJSIP's Python
binding (PyPI `pjsua2-python`, `import pjsua2`; scripts/test installs it).

  peer.py [options] sip:user@127.0.0.1:PORT   # make one call to that URI
  peer.py [options] --answer                  # answer the first call that comes (200)

UDP on 127.0.0.1 only, no registrar, no STUN/TURN/ICE/SRTP/session timers, G.711 only (PJSIP
adds telephone-event by itself), no sound card (the null device): the audio comes from
--play and goes to --record.

Prints one line per event, flushed at once, for the test to wait on:
  READY sip:pjsua@127.0.0.1:PORT     the SIP transport is up (with --answer: call this URI)
  CONFIRMED                          the call is established (ACK sent or received)
  MEDIA PCMU 8000 remote IP:PORT     the audio stream is up
  DTMF-TX 147#                       the digits were queued (RFC 4733)
  DTMF-RX 5                          a digit arrived (RFC 4733 or INFO)
  HANGUP                             we send BYE (--duration is over)
  DISCONNECTED 200 Normal call clearing
Exits 0 when the call was established and then ended, 1 when it failed, 2 on --timeout.
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
        self.call = None
        self.player = None
        self.recorder = None
        self.confirmed_at = None
        self.ended = False
        self.media_up = False
        # with --ring: when to send the 200 after the 180
        self.ring = 0.0
        self.answer_at = None


class Call(pj.Call):
    def __init__(self, peer, acc, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.peer = peer

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.peer.confirmed_at is None:
            self.peer.confirmed_at = time.monotonic()
            say("CONFIRMED")
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            say("DISCONNECTED", ci.lastStatusCode, ci.lastReason)
            self.peer.ended = True

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            if self.peer.media_up:
                continue  # a re-INVITE: the bridge connections are still in place
            self.peer.media_up = True
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
        call = Call(self.peer, self, prm.callId)
        op = pj.CallOpParam()
        if self.peer.call is not None:
            op.statusCode = 486  # one call per run
            call.answer(op)
            return
        self.peer.call = call
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
    cfg.uaConfig.maxCalls = 2
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
    if a.uri:
        peer.call = Call(peer, acc)
        peer.call.makeCall(a.uri, pj.CallOpParam(True))

    deadline = time.monotonic() + a.timeout
    dtmf_sent = hung_up = False
    while time.monotonic() < deadline:
        ep.libHandleEvents(10)
        if peer.answer_at is not None and time.monotonic() >= peer.answer_at:
            peer.answer_at = None
            op = pj.CallOpParam()
            op.statusCode = 200
            peer.call.answer(op)
        if peer.ended:
            return 0 if peer.confirmed_at is not None else 1
        if peer.confirmed_at is None:
            continue
        up = time.monotonic() - peer.confirmed_at
        if a.dtmf and not dtmf_sent and up >= a.dtmf_delay:
            dtmf_sent = True
            prm = pj.CallSendDtmfParam()
            prm.digits = a.dtmf
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
            prm.duration = a.dtmf_duration
            try:
                peer.call.sendDtmf(prm)
                say("DTMF-TX", a.dtmf)
            except pj.Error as e:  # the peer's SDP had no telephone-event
                say("DTMF-TX-ERROR", e.info())
        if a.duration > 0 and not hung_up and up >= a.duration:
            hung_up = True
            say("HANGUP")
            peer.call.hangup(pj.CallOpParam(True))
    say("TIMEOUT")
    ep.hangupAllCalls()
    for _ in range(100):
        ep.libHandleEvents(10)
    return 2


def main():
    ap = argparse.ArgumentParser(description="PJSIP peer for sipua's audio interop tests")
    ap.add_argument("uri", nargs="?", help="call this URI")
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
    a = ap.parse_args()
    if bool(a.uri) == a.answer:
        ap.error("give either a URI to call or --answer")

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
        peer.call = None
        if peer.acc is not None:
            peer.acc.shutdown()
            peer.acc = None
        ep.libDestroy()
    say("EXIT", rc)
    sys.exit(rc)


if __name__ == "__main__":
    main()
