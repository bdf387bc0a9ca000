#!/usr/bin/env node
// SIP.js 0.21.2 / JsSIP 3.13 peer over WebSocket for the sipua interop tests (Node 20).
//
//   node peer.mjs <sipjs|jssip> answer               [options]
//   node peer.mjs <sipjs|jssip> call URI             [options]
//   node peer.mjs <sipjs|jssip> message URI --message TEXT [options]
//   node peer.mjs <sipjs|jssip> subscribe URI --event presence [options]
//
// Every event is one line on stdout: `EVENT <name> t=<ms since start> key=value ...`
// (a value with spaces or quotes, and every body, is JSON-quoted). Everything else
// (library logs, the SIP messages with --log debug) goes to stderr. Exit 0 when the
// scenario completed as asked; otherwise `EVENT error reason=...` and a non-zero code
// (1 failure, 2 usage, 3 unsupported). See README.md for the options and the events.
//
// No media: SIP.js gets a SessionDescriptionHandler and JsSIP a fake RTCPeerConnection,
// both producing a fixed PCMU offer/answer (c=IN IP4 127.0.0.1, m=audio 40000 RTP/AVP 0 101)
// with the right direction attribute for hold.

import fs from "node:fs";
import util from "node:util";
import { WebSocket as WsWebSocket } from "ws";

const T0 = Date.now();

// ---------------------------------------------------------------- output ----------------
// stdout carries only EVENT lines: route every console method to stderr before the
// libraries are loaded (JsSIP's logger binds console.* when it is imported).
for (const m of ["log", "info", "debug", "warn", "error", "trace"]) {
  console[m] = (...a) => process.stderr.write(util.format(...a) + "\n");
}
const stderr = (...a) => process.stderr.write(`[peer t=${Date.now() - T0}] ${util.format(...a)}\n`);

function fmtValue(key, value) {
  const s = String(value);
  if (key === "body") return JSON.stringify(s);
  return s !== "" && /^[^\s"'\\]+$/.test(s) ? s : JSON.stringify(s);
}
function emit(name, fields = {}) {
  let line = `EVENT ${name} t=${Date.now() - T0}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null) continue;
    line += ` ${k}=${fmtValue(k, v)}`;
  }
  try {
    process.stdout.write(line + "\n"); // synchronous for pipes and files on Linux
  } catch {
    // stdout gone (the harness closed the pipe): nothing left to tell
  }
}

class PeerError extends Error {
  constructor(reason, fields = {}) {
    super(reason);
    this.reason = reason;
    this.fields = fields;
  }
}

// ---------------------------------------------------------------- arguments -------------
const USAGE = `usage: node peer.mjs <sipjs|jssip> <mode> [URI] [options]
modes:   answer | call URI | message URI --message TEXT | subscribe URI [--event presence]
options: --server ws://127.0.0.1:PORT|wss://...  (loopback only, required)
         --ca FILE  --user NAME --password PW  --domain D (127.0.0.1)  --register
         --lifetime S (30)  --timeout S (10)  --log debug|trace
         --hangup-after S  --hold  --hold-after S (0.5)  --hold-for S (0.5)
         --calls N (1, 0 = unlimited)
         --message TEXT  --event PKG  --accept TYPE  --notifies N (1)  --expires S
         --rtp-port P (40000)`;
const VALUE_OPTS = new Set([
  "server", "ca", "user", "password", "domain", "log", "lifetime", "timeout", "hangup-after",
  "hold-for", "hold-after", "calls", "message", "event", "accept", "notifies", "expires", "rtp-port",
]);
const FLAG_OPTS = new Set(["register", "hold"]);

function usage(msg) {
  emit("error", { reason: "usage", detail: msg });
  process.stderr.write(`${msg}\n${USAGE}\n`);
  process.exit(2);
}

const positional = [];
const opts = {};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") {
      process.stderr.write(USAGE + "\n");
      process.exit(0);
    }
    if (a.startsWith("--")) {
      const name = a.slice(2);
      if (FLAG_OPTS.has(name)) opts[name] = true;
      else if (VALUE_OPTS.has(name)) {
        if (i + 1 >= argv.length) usage(`option --${name} needs a value`);
        opts[name] = argv[++i];
      } else usage(`unknown option ${a}`);
    } else positional.push(a);
  }
}
const num = (name, def, { min = 0, integer = false } = {}) => {
  if (opts[name] === undefined) return def;
  const n = Number(opts[name]);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    usage(`--${name} must be a ${integer ? "whole " : ""}number >= ${min}`);
  }
  return n;
};

const LIB = positional[0];
const MODE = positional[1];
const TARGET = positional[2];
if (!["sipjs", "jssip"].includes(LIB)) usage("first argument must be sipjs or jssip");
if (!["answer", "call", "message", "subscribe"].includes(MODE)) usage("unknown mode");
if (MODE !== "answer" && !TARGET) usage(`mode ${MODE} needs a target URI`);
if (positional.length > (MODE === "answer" ? 2 : 3)) usage("too many arguments");
if (TARGET && !/^sips?:/i.test(TARGET)) usage("the target must be a sip: URI");
if (MODE === "message" && opts.message === undefined) usage("mode message needs --message TEXT");
if (!opts.server) usage("--server ws://127.0.0.1:PORT is required");

const SERVER = opts.server;
let serverUrl;
try {
  serverUrl = new URL(SERVER);
} catch {
  usage(`bad --server ${SERVER}`);
}
if (serverUrl.protocol !== "ws:" && serverUrl.protocol !== "wss:") usage("--server must be ws:// or wss://");
{
  const h = serverUrl.hostname;
  const loopback = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === "localhost" || h === "[::1]" || h === "::1";
  if (!loopback) usage(`refusing non-loopback server ${h}`);
}
const USER = opts.user ?? LIB;
const PASSWORD = opts.password;
const DOMAIN = opts.domain ?? "127.0.0.1";
const AOR = `sip:${USER}@${DOMAIN}`;
const LOG = opts.log ?? "warn";
if (!["warn", "debug", "trace"].includes(LOG)) usage("--log must be warn, debug or trace");
const WIRE_LOG = LOG === "debug" || LOG === "trace";
const LIFETIME = num("lifetime", 30, { min: 1 });
const TIMEOUT = num("timeout", 10, { min: 0.1 });
const HANGUP_AFTER = num("hangup-after", undefined);
const HOLD = !!opts.hold;
const HOLD_FOR = num("hold-for", 0.5);
const HOLD_AFTER = num("hold-after", 0.5);
const CALLS = num("calls", 1, { integer: true });
const NOTIFIES = num("notifies", 1, { min: 1, integer: true });
const RTP_PORT = num("rtp-port", 40000, { min: 1, integer: true });
const EVENT_PKG = opts.event ?? "presence";
const ACCEPT =
  opts.accept ??
  ({
    presence: "application/pidf+xml",
    "message-summary": "application/simple-message-summary",
    dialog: "application/dialog-info+xml",
  }[EVENT_PKG.split(";")[0]] || "*/*");
const EXPIRES = num("expires", 600, { min: 1, integer: true });
let TLS_OPTIONS = {};
if (serverUrl.protocol === "wss:") {
  if (opts.ca) {
    try {
      TLS_OPTIONS = { ca: fs.readFileSync(opts.ca) };
    } catch (e) {
      usage(`cannot read --ca ${opts.ca}: ${e.message}`);
    }
  } else TLS_OPTIONS = { rejectUnauthorized: false }; // loopback test: any certificate
}

// ---------------------------------------------------------------- helpers ---------------
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function withTimeout(promise, secs, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new PeerError(`${what}-timeout`, { after: secs })), secs * 1000);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}
const is2xx = (s) => typeof s === "number" && s >= 200 && s < 300;

// ---------------------------------------------------------------- WebSocket -------------
// Both libraries do `new WebSocket(url, "sip")` on the global: give them the `ws` package,
// with the TLS options and (--log debug) every frame logged to stderr.
let localAddress;
let lastSocketError; // why the last connection failed (TLS, refused...)
function logWire(dir, data) {
  const text = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
  process.stderr.write(`----- ${dir} t=${Date.now() - T0} (${text.length} bytes)\n${text.replace(/\r\n/g, "\n")}\n`);
}
class PeerWebSocket extends WsWebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, { ...TLS_OPTIONS, ...(options || {}) });
    this.on("open", () => {
      const s = this._socket;
      if (s) localAddress = `${s.localAddress}:${s.localPort}`;
    });
    this.on("error", (e) => (lastSocketError = e && e.message));
    if (WIRE_LOG) this.on("message", (data) => logWire(`received from ${url}`, data));
  }
  send(data, ...rest) {
    if (WIRE_LOG) logWire(`sent to ${this.url}`, data);
    return super.send(data, ...rest);
  }
}
globalThis.WebSocket = PeerWebSocket;

// ---------------------------------------------------------------- SDP -------------------
// What the remote side's SDP says about the (first) audio stream.
function parseSdp(sdp) {
  const lines = String(sdp || "").split(/\r?\n/);
  const info = { audio: false, port: 0, fmts: [], rtpmap: {}, direction: "sendrecv" };
  let section = "session";
  let sessionDir;
  let mediaDir;
  let done = false;
  for (const l of lines) {
    if (l.startsWith("m=")) {
      if (section === "audio") done = true;
      if (done) break;
      const [media, port, , ...fmts] = l.slice(2).trim().split(/\s+/);
      section = media === "audio" && !info.audio ? "audio" : "other";
      if (section === "audio") Object.assign(info, { audio: true, port: Number(port), fmts });
      continue;
    }
    const dir = /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/.exec(l);
    if (dir) {
      if (section === "session") sessionDir = dir[1];
      else if (section === "audio") mediaDir = dir[1];
    }
    const map = /^a=rtpmap:(\d+)\s+([^\s]+)/.exec(l);
    if (map && section === "audio") info.rtpmap[map[1]] = map[2].toLowerCase();
  }
  info.direction = mediaDir || sessionDir || "sendrecv";
  return info;
}
const sdpDirection = (sdp) => (sdp && String(sdp).trim() ? parseSdp(sdp).direction : "none");
// RFC 3264 section 6.1, with our own hold state on top.
function answerDirection(offered, hold) {
  switch (offered) {
    case "sendonly":
      return hold ? "inactive" : "recvonly";
    case "recvonly":
      return "sendonly";
    case "inactive":
      return "inactive";
    default:
      return hold ? "sendonly" : "sendrecv";
  }
}
// A fixed PCMU (+ telephone-event) description; the origin version goes up with every
// description made, as a browser's does.
class SdpMaker {
  constructor(name) {
    this.name = name;
    this.id = String(Math.floor(Math.random() * 1e9) + 1e9);
    this.version = Number(this.id);
  }
  make(direction, tePt = "101") {
    const fmts = tePt ? `0 ${tePt}` : "0";
    const lines = [
      "v=0",
      `o=${this.name} ${this.id} ${this.version++} IN IP4 127.0.0.1`,
      "s=sipua-interop",
      "c=IN IP4 127.0.0.1",
      "t=0 0",
      `m=audio ${RTP_PORT} RTP/AVP ${fmts}`,
      "a=rtpmap:0 PCMU/8000",
    ];
    if (tePt) lines.push(`a=rtpmap:${tePt} telephone-event/8000`, `a=fmtp:${tePt} 0-16`);
    lines.push("a=ptime:20", `a=${direction}`, "");
    return lines.join("\r\n");
  }
  offer(direction) {
    return this.make(direction);
  }
  // Answer an offer: PCMU (payload 0) must be offered; telephone-event keeps the offer's
  // payload type. Throws (the library then answers 488) if there is nothing to accept.
  answer(offerSdp, direction) {
    const o = parseSdp(offerSdp);
    if (!o.audio) throw new Error("no audio stream in the offer");
    const pcmu = o.fmts.includes("0") || Object.values(o.rtpmap).some((r) => r === "pcmu/8000");
    if (!pcmu) throw new Error("PCMU not offered");
    const te = o.fmts.find((pt) => o.rtpmap[pt] === "telephone-event/8000");
    return this.make(direction, te);
  }
}

// ---------------------------------------------------------------- calls -----------------
let failures = 0;
function fail(reason, fields = {}) {
  failures++;
  emit("error", { reason, ...fields });
}
function failWith(e, fields = {}) {
  if (e instanceof PeerError) fail(e.reason, { ...fields, ...e.fields });
  else fail("exception", { ...fields, detail: e && e.message ? e.message : String(e) });
}

const calls = [];
let callsEnded = 0;

// One call, whatever the library; the drivers fill in hold(on) and bye() (both resolve to
// the final response's status code) and report what happens with the on*() methods.
class Call {
  constructor(direction, remote) {
    this.n = calls.length + 1;
    this.direction = direction;
    this.remote = remote;
    this.established = false;
    this.ended = false;
    this.localBye = false;
    this.scenario = Promise.resolve();
    this.endedPromise = new Promise((r) => (this.resolveEnded = r));
    this.establishedPromise = new Promise((r) => (this.resolveEstablished = r));
    calls.push(this);
  }
  onProgress(status) {
    emit("progress", { call: this.n, status });
  }
  onEstablished(status) {
    if (this.established || this.ended) return;
    this.established = true;
    this.establishedAt = Date.now();
    emit("established", { call: this.n, status });
    this.resolveEstablished();
    this.scenario = runCallScenario(this);
  }
  onByeReceived() {
    this.remoteBye = true;
    emit("bye-received", { call: this.n });
  }
  onReinvite(direction) {
    emit("reinvite-received", { call: this.n, direction });
  }
  onMessage(from, body) {
    emit("message-received", { call: this.n, from, body });
  }
  // The library says the session is over (after a BYE either way, or a failure).
  onTerminated(cause) {
    if (this.ended) return;
    if (!this.established) return this.onFailed(undefined, cause);
    if (this.localBye) return; // hangup() reports the end once our BYE's response is in
    this.end(cause);
  }
  onFailed(status, cause) {
    if (this.ended) return;
    if (this.established) return this.onTerminated(cause);
    this.ended = true;
    emit("call-failed", { call: this.n, status, cause });
    this.resolveEnded();
    callEnded(this);
  }
  end(cause) {
    if (this.ended) return;
    this.ended = true;
    emit("terminated", { call: this.n, cause });
    // a call ends with a BYE from one side; anything else (a library giving up) is a failure
    if (cause !== "bye" && cause !== "local-bye") fail("call-ended-abnormally", { call: this.n, cause });
    this.resolveEnded();
    callEnded(this);
  }
  async hangup() {
    if (this.ended || this.localBye) return;
    this.localBye = true;
    try {
      const status = await withTimeout(this.bye(), TIMEOUT, "bye");
      emit("bye-sent", { call: this.n, status });
      if (!is2xx(status)) fail("bye-rejected", { call: this.n, status });
    } catch (e) {
      failWith(e, { call: this.n });
    }
    this.end("local-bye");
  }
}

// After establishment: optional hold/unhold, optional MESSAGE (call mode), optional BYE.
async function runCallScenario(call) {
  try {
    if (HOLD) {
      // RFC 5407 3.1.4: a re-INVITE right behind the ACK can meet a 500 (SIP.js answers
      // so while it is still processing the ACK), so wait a little first.
      await sleep(HOLD_AFTER * 1000);
      if (call.ended) return;
      const held = await withTimeout(call.hold(true), TIMEOUT, "hold");
      if (call.ended) return;
      emit("hold-ok", { call: call.n, status: held });
      await sleep(HOLD_FOR * 1000);
      if (call.ended) return;
      const resumed = await withTimeout(call.hold(false), TIMEOUT, "unhold");
      if (call.ended) return;
      emit("unhold-ok", { call: call.n, status: resumed });
    }
    if (MODE === "call" && opts.message !== undefined && !call.ended) {
      await sendMessage(TARGET, opts.message);
    }
    if (HANGUP_AFTER !== undefined && !call.ended) {
      const wait = call.establishedAt + HANGUP_AFTER * 1000 - Date.now();
      if (wait > 0) await sleep(wait);
      await call.hangup();
    }
  } catch (e) {
    failWith(e, { call: call.n });
    if (!call.ended) await call.hangup(); // a broken scenario does not leave the call up
  }
}

function callEnded(call) {
  callsEnded++;
  if (MODE === "answer") {
    if (CALLS > 0 && callsEnded >= CALLS) {
      Promise.race([Promise.all(calls.map((c) => c.scenario)), sleep(TIMEOUT * 1000)]).then(() =>
        finish(failures ? 1 : 0),
      );
    }
  } else if (MODE === "call") {
    Promise.race([call.scenario, sleep(TIMEOUT * 1000)]).then(() => {
      if (!call.established) finish(1, "call-failed");
      else finish(failures ? 1 : 0);
    });
  }
}

async function sendMessage(uri, text) {
  const status = await withTimeout(driver.message(uri, text), TIMEOUT, "message");
  emit("message-sent", { status });
  if (!is2xx(status)) throw new PeerError("message-rejected", { status });
  return status;
}

// ---------------------------------------------------------------- SIP.js ----------------
async function makeSipjs() {
  const SIP = await import("sip.js");
  const { UserAgent, Inviter, Registerer, Messager, Subscriber, SessionState, SubscriptionState } = SIP;
  const sdp = new SdpMaker("sipjs");

  // SessionDescriptionHandler without media. SIP.js calls getDescription() for an offer and
  // then setDescription() with the answer, or setDescription() with an offer and then
  // getDescription() for the answer. options.hold (re-INVITE options) puts us on hold.
  class FixedSdh {
    constructor() {
      this.remoteOffer = undefined;
      this.localOfferPending = false;
    }
    async getDescription(options = {}, modifiers = []) {
      const hold = !!(options && options.hold);
      let desc;
      if (this.remoteOffer !== undefined) {
        const offer = this.remoteOffer;
        this.remoteOffer = undefined;
        desc = { type: "answer", sdp: sdp.answer(offer, answerDirection(parseSdp(offer).direction, hold)) };
      } else {
        desc = { type: "offer", sdp: sdp.offer(hold ? "sendonly" : "sendrecv") };
        this.localOfferPending = true;
      }
      for (const m of modifiers || []) desc = await m(desc);
      return { body: desc.sdp, contentType: "application/sdp" };
    }
    async setDescription(body) {
      if (!/^\s*v=0/.test(body || "")) throw new Error("not an SDP body");
      if (this.localOfferPending) {
        this.localOfferPending = false; // the answer to our offer
      } else {
        sdp.answer(body, "sendrecv"); // throws (-> 488) if we cannot answer it
        this.remoteOffer = body;
      }
    }
    hasDescription(contentType) {
      return contentType === "application/sdp";
    }
    async rollbackDescription() {
      this.localOfferPending = false;
      this.remoteOffer = undefined;
    }
    sendDtmf() {
      return false;
    }
    close() {}
  }

  const ua = new UserAgent({
    uri: UserAgent.makeURI(AOR),
    authorizationUsername: PASSWORD !== undefined ? USER : undefined,
    authorizationPassword: PASSWORD,
    transportOptions: { server: SERVER, connectionTimeout: TIMEOUT, keepAliveInterval: 0, traceSip: false },
    sessionDescriptionHandlerFactory: () => new FixedSdh(),
    logBuiltinEnabled: false,
    logLevel: LOG === "trace" ? "debug" : "warn",
    logConfiguration: false,
    // the connector gets every level whatever logLevel says: filter here
    logConnector: (level, category, label, content) => {
      if (LOG === "trace" || level === "error" || level === "warn") {
        process.stderr.write(`[sipjs ${level} ${category}${label ? " " + label : ""}] ${content}\n`);
      }
    },
    userAgentString: "sipua-interop-sipjs/0.21.2",
    delegate: {},
  });
  let registerer;
  let connected = false;

  function wireSession(session, call, incoming) {
    let acked = false;
    session.delegate = {
      onAck: () => {
        if (incoming && !acked) {
          acked = true;
          call.onEstablished();
        }
      },
      onBye: (bye) => {
        call.onByeReceived();
        bye.accept();
      },
      onInvite: (request, _response, statusCode) => {
        call.onReinvite(sdpDirection(request.body));
        if (statusCode !== 200) emit("reinvite-answered", { call: call.n, status: statusCode });
      },
      onMessage: (message) => {
        message.accept();
        call.onMessage(message.request.from.uri.toString(), message.request.body);
      },
    };
    session.stateChange.addListener((state) => {
      // (outgoing: established once requestDelegate.onAccept has the 2xx, see call())
      if (state === SessionState.Terminated) {
        if (call.established) call.onTerminated(call.remoteBye ? "bye" : "terminated");
        // an outgoing call's rejection reaches requestDelegate.onReject just after this
        else setTimeout(() => call.onFailed(undefined, "terminated"), incoming ? 0 : 50);
      }
    });
    call.hold = (on) =>
      new Promise((resolve, reject) => {
        session
          .invite({
            sessionDescriptionHandlerOptions: { hold: on },
            requestDelegate: {
              onAccept: (r) => resolve(r.message.statusCode),
              onReject: (r) =>
                reject(new PeerError(on ? "hold-rejected" : "unhold-rejected", { status: r.message.statusCode })),
            },
          })
          .catch((e) => reject(new PeerError(on ? "hold-failed" : "unhold-failed", { detail: e.message })));
      });
    call.bye = () =>
      new Promise((resolve, reject) => {
        session
          .bye({
            requestDelegate: {
              onAccept: (r) => resolve(r.message.statusCode),
              onReject: (r) => resolve(r.message.statusCode),
            },
          })
          .catch((e) => reject(new PeerError("bye-failed", { detail: e.message })));
      });
  }

  ua.delegate.onConnect = () => {
    connected = true;
  };
  ua.delegate.onDisconnect = (error) => {
    if (connected && !finishing) finish(1, "disconnected", { detail: error ? error.message : undefined });
  };
  ua.delegate.onMessage = (message) => {
    message.accept();
    emit("message-received", { from: message.request.from.uri.toString(), body: message.request.body });
  };
  if (MODE === "answer") {
    ua.delegate.onInvite = (invitation) => {
      const from = invitation.remoteIdentity.uri.toString();
      const call = new Call("in", from);
      emit("invite-received", { call: call.n, from });
      wireSession(invitation, call, true);
      // SIP.js has already sent 180 Ringing (sendInitialProvisionalResponse)
      invitation
        .accept()
        .catch((e) => failWith(new PeerError("accept-failed", { detail: e.message }), { call: call.n }));
    };
  }

  return {
    version: "0.21.2",
    start: () => ua.start(),
    register: () =>
      new Promise((resolve, reject) => {
        registerer = new Registerer(ua, { expires: EXPIRES });
        registerer
          .register({
            requestDelegate: {
              onAccept: (r) => resolve(r.message.statusCode),
              onReject: (r) => reject(new PeerError("register-failed", { status: r.message.statusCode })),
            },
          })
          .catch((e) => reject(new PeerError("register-failed", { detail: e.message })));
      }),
    unregister: () =>
      new Promise((resolve, reject) => {
        registerer
          .unregister({
            requestDelegate: {
              onAccept: (r) => resolve(r.message.statusCode),
              onReject: (r) => resolve(r.message.statusCode),
            },
          })
          .catch((e) => reject(new PeerError("unregister-failed", { detail: e.message })));
      }),
    call: (uri, call) => {
      const target = UserAgent.makeURI(uri);
      if (!target) throw new PeerError("bad-uri", { uri });
      const inviter = new Inviter(ua, target);
      wireSession(inviter, call, false);
      inviter
        .invite({
          requestDelegate: {
            onProgress: (r) => call.onProgress(r.message.statusCode),
            // called after the ACK, also when the answer was unusable (then Terminated)
            onAccept: (r) => {
              if (inviter.state === SessionState.Established) call.onEstablished(r.message.statusCode);
            },
            onReject: (r) => call.onFailed(r.message.statusCode, r.message.reasonPhrase),
          },
        })
        .catch((e) => call.onFailed(undefined, e.message));
    },
    message: (uri, text) =>
      new Promise((resolve, reject) => {
        const target = UserAgent.makeURI(uri);
        if (!target) return reject(new PeerError("bad-uri", { uri }));
        new Messager(ua, target, text, "text/plain")
          .message({
            requestDelegate: {
              onAccept: (r) => resolve(r.message.statusCode),
              onReject: (r) => resolve(r.message.statusCode),
            },
          })
          .catch((e) => reject(new PeerError("message-failed", { detail: e.message })));
      }),
    subscribe: (uri, cb) => {
      const target = UserAgent.makeURI(uri);
      if (!target) throw new PeerError("bad-uri", { uri });
      // The Subscriber API hides the status of a refused SUBSCRIBE: look at it in the core.
      const core = ua.userAgentCore;
      const coreSubscribe = core.subscribe.bind(core);
      core.subscribe = (request, delegate) =>
        coreSubscribe(request, {
          ...delegate,
          onReject: (r) => {
            cb.onRejected(r.message.statusCode, r.message.reasonPhrase);
            if (delegate.onReject) delegate.onReject(r);
          },
          onRedirect: (r) => {
            cb.onRejected(r.message.statusCode, r.message.reasonPhrase);
            if (delegate.onRedirect) delegate.onRedirect(r);
          },
        });
      const sub = new Subscriber(ua, target, EVENT_PKG, { expires: EXPIRES, extraHeaders: [`Accept: ${ACCEPT}`] });
      sub.onAccepted = (r) => cb.onAccepted(r.message.statusCode);
      sub.delegate = {
        onNotify: (notification) => {
          notification.accept();
          const req = notification.request;
          cb.onNotify(req.getHeader("Subscription-State") || "", req.body);
        },
      };
      sub.stateChange.addListener((s) => {
        if (s === SubscriptionState.Terminated) cb.onTerminated();
      });
      sub.subscribe();
      return {
        unsubscribe: () =>
          new Promise((resolve) => {
            const dialog = sub._dialog;
            if (dialog) {
              // Once unsubscribed, the Subscriber swallows the final NOTIFY: report it here.
              const dialogDelegate = dialog.delegate || {};
              const onNotify = dialogDelegate.onNotify;
              dialog.delegate = {
                ...dialogDelegate,
                onNotify: (request) => {
                  cb.onNotify(request.message.getHeader("Subscription-State") || "", request.message.body);
                  if (onNotify) onNotify(request);
                },
              };
              const dialogUnsubscribe = dialog.unsubscribe.bind(dialog);
              dialog.unsubscribe = () => {
                const uac = dialogUnsubscribe();
                uac.delegate = {
                  onAccept: (r) => resolve(r.message.statusCode),
                  onReject: (r) => resolve(r.message.statusCode),
                };
                return uac;
              };
            } else resolve(undefined);
            sub.unsubscribe();
          }),
      };
    },
    stop: () => ua.stop(),
  };
}

// ---------------------------------------------------------------- JsSIP -----------------
async function makeJssip() {
  const sdp = new SdpMaker("jssip");

  // JsSIP has no pluggable media layer: a fake RTCPeerConnection that makes the fixed
  // offer (JsSIP itself rewrites its direction for hold) and answers an offer mirroring
  // its direction, as a browser would. ICE gathering is always "complete".
  class FakePeerConnection extends EventTarget {
    constructor() {
      super();
      this.signalingState = "stable";
      this.iceGatheringState = "complete";
      this.iceConnectionState = "connected";
      this.connectionState = "connected";
      this.localDescription = null;
      this.remoteDescription = null;
    }
    async createOffer() {
      return { type: "offer", sdp: sdp.offer("sendrecv") };
    }
    async createAnswer() {
      const offer = this.remoteDescription && this.remoteDescription.sdp;
      return { type: "answer", sdp: sdp.answer(offer, answerDirection(parseSdp(offer).direction, false)) };
    }
    async setLocalDescription(desc) {
      this.localDescription = { type: desc.type, sdp: desc.sdp };
      this.signalingState = desc.type === "offer" ? "have-local-offer" : "stable";
    }
    async setRemoteDescription(desc) {
      if (!/^\s*v=0/.test(desc.sdp || "")) throw new Error("not an SDP body");
      if (desc.type === "offer") sdp.answer(desc.sdp, "sendrecv"); // throws if unanswerable
      this.remoteDescription = { type: desc.type, sdp: desc.sdp };
      this.signalingState = desc.type === "offer" ? "have-remote-offer" : "stable";
    }
    getSenders() {
      return [];
    }
    getReceivers() {
      return [];
    }
    getTransceivers() {
      return [];
    }
    addTrack() {}
    async getStats() {
      return new Map();
    }
    close() {
      this.signalingState = "closed";
    }
  }
  globalThis.window = globalThis; // JsSIP looks at window.RTCPeerConnection
  globalThis.RTCPeerConnection = FakePeerConnection;
  globalThis.RTCSessionDescription = class RTCSessionDescription {
    constructor(init = {}) {
      this.type = init.type;
      this.sdp = init.sdp;
    }
  };
  // A MediaStream without tracks, so JsSIP never calls getUserMedia.
  const noTracks = { getTracks: () => [], getAudioTracks: () => [], getVideoTracks: () => [] };
  const mediaOptions = () => ({ mediaStream: noTracks, pcConfig: { iceServers: [] } });

  const { default: JsSIP } = await import("jssip");
  JsSIP.debug.enable(LOG === "trace" ? "JsSIP:*" : "JsSIP:WARN*,JsSIP:ERROR*");
  const BYE_CAUSE = JsSIP.C.causes.BYE;

  const ua = new JsSIP.UA({
    sockets: [new JsSIP.WebSocketInterface(SERVER)],
    uri: AOR,
    authorization_user: USER,
    password: PASSWORD,
    register: false,
    register_expires: EXPIRES,
    session_timers: false,
    no_answer_timeout: 60,
    user_agent: `sipua-interop-jssip/${JsSIP.version}`,
  });
  let connected = false;

  function wireSession(session, call) {
    // Learn the status of our BYE and re-INVITEs: JsSIP's terminate() does not wait for it.
    let byeWaiter;
    let lastInviteStatus;
    const sendRequest = session.sendRequest.bind(session);
    session.sendRequest = (method, options = {}) => {
      if (method === "BYE" || method === "INVITE") {
        const eh = { ...(options.eventHandlers || {}) };
        const hook = (name, f) => {
          const orig = eh[name];
          eh[name] = (...args) => {
            f(...args);
            if (orig) orig(...args);
          };
        };
        if (method === "BYE") {
          const done = (r) => byeWaiter && byeWaiter.resolve(r.status_code);
          hook("onSuccessResponse", done);
          hook("onErrorResponse", done);
          hook("onDialogError", (r) => (r ? done(r) : byeWaiter && byeWaiter.reject(new PeerError("bye-dialog-error"))));
          hook("onRequestTimeout", () => byeWaiter && byeWaiter.reject(new PeerError("bye-timeout")));
          hook("onTransportError", () => byeWaiter && byeWaiter.reject(new PeerError("bye-transport-error")));
        } else {
          hook("onSuccessResponse", (r) => (lastInviteStatus = r.status_code));
          hook("onErrorResponse", (r) => (lastInviteStatus = r.status_code));
        }
        options = { ...options, eventHandlers: eh };
      }
      return sendRequest(method, options);
    };
    session.on("progress", (e) => {
      if (e.originator === "remote" && e.response) call.onProgress(e.response.status_code);
    });
    session.on("accepted", (e) => {
      if (e.originator === "remote" && e.response) call.acceptStatus = e.response.status_code;
    });
    session.on("confirmed", () => call.onEstablished(call.acceptStatus));
    session.on("reinvite", (data) => call.onReinvite(sdpDirection(data.request.body)));
    session.on("ended", (e) => {
      if (e.originator === "remote" && e.cause === BYE_CAUSE) call.onByeReceived();
      call.onTerminated(e.originator === "remote" && e.cause === BYE_CAUSE ? "bye" : e.cause);
    });
    session.on("failed", (e) => call.onFailed(e.message && e.message.status_code, e.cause));
    call.hold = (on) =>
      new Promise((resolve, reject) => {
        const what = on ? "hold" : "unhold";
        session.once("ended", () => reject(new PeerError(`${what}-failed`, { detail: "session ended" })));
        const started = on
          ? session.hold({}, () => resolve(lastInviteStatus))
          : session.unhold({}, () => resolve(lastInviteStatus));
        if (!started) reject(new PeerError(`${what}-failed`, { detail: "JsSIP refused (not ready to re-offer)" }));
      });
    call.bye = () =>
      new Promise((resolve, reject) => {
        byeWaiter = { resolve, reject };
        try {
          session.terminate();
        } catch (e) {
          reject(new PeerError("bye-failed", { detail: e.message }));
        }
      });
  }

  ua.on("connected", () => (connected = true));
  ua.on("disconnected", (e) => {
    if (connected && !finishing) finish(1, "disconnected", { detail: e && e.reason });
  });
  ua.on("newMessage", ({ originator, request }) => {
    if (originator !== "remote") return; // JsSIP answers 200 itself
    emit("message-received", { from: request.from.uri.toString(), body: request.body });
  });
  const outgoing = [];
  ua.on("newRTCSession", ({ originator, session, request }) => {
    if (originator === "local") {
      const call = outgoing.shift();
      if (call) wireSession(session, call);
      return;
    }
    if (MODE !== "answer") {
      session.terminate({ status_code: 486 });
      return;
    }
    const from = request.from.uri.toString();
    const call = new Call("in", from);
    emit("invite-received", { call: call.n, from });
    wireSession(session, call);
    try {
      session.answer(mediaOptions()); // JsSIP has already sent 180 Ringing
    } catch (e) {
      failWith(new PeerError("accept-failed", { detail: e.message }), { call: call.n });
    }
  });

  return {
    version: JsSIP.version,
    start: () =>
      new Promise((resolve, reject) => {
        ua.once("connected", resolve);
        ua.once("disconnected", (e) => {
          if (!connected) reject(new PeerError("connect-failed", { detail: e && e.reason }));
        });
        ua.start();
      }),
    register: () =>
      new Promise((resolve, reject) => {
        ua.once("registered", (e) => resolve(e.response.status_code));
        ua.once("registrationFailed", (e) =>
          reject(new PeerError("register-failed", { status: e.response && e.response.status_code, cause: e.cause })),
        );
        ua.register();
      }),
    unregister: () =>
      new Promise((resolve) => {
        ua.once("unregistered", (e) => resolve(e && e.response ? e.response.status_code : undefined));
        ua.unregister();
      }),
    call: (uri, call) => {
      outgoing.push(call);
      ua.call(uri, mediaOptions());
    },
    message: (uri, text) =>
      new Promise((resolve, reject) => {
        ua.sendMessage(uri, text, {
          contentType: "text/plain",
          eventHandlers: {
            succeeded: (e) => resolve(e.response.status_code),
            failed: (e) =>
              e.response ? resolve(e.response.status_code) : reject(new PeerError("message-failed", { cause: e.cause })),
          },
        });
      }),
    subscribe: (uri, cb) => {
      const sub = ua.subscribe(uri, EVENT_PKG, ACCEPT, { expires: EXPIRES });
      let accepted = false;
      let unsubscribeWaiter;
      // JsSIP's Subscriber tells neither the status codes nor NOTIFYs without a body.
      const receiveResponse = sub._receiveSubscribeResponse.bind(sub);
      sub._receiveSubscribeResponse = (r) => {
        if (unsubscribeWaiter) unsubscribeWaiter(r.status_code);
        else if (is2xx(r.status_code)) {
          if (!accepted) cb.onAccepted(r.status_code);
          accepted = true;
        } else if (r.status_code >= 300) cb.onRejected(r.status_code, r.reason_phrase);
        receiveResponse(r);
      };
      const receiveRequest = sub.receiveRequest.bind(sub);
      sub.receiveRequest = (request) => {
        receiveRequest(request);
        if (request.method === "NOTIFY") cb.onNotify(request.getHeader("Subscription-State") || "", request.body);
      };
      sub.on("terminated", (code, reason) => cb.onTerminated(code, reason));
      sub.subscribe();
      return {
        unsubscribe: () =>
          new Promise((resolve) => {
            unsubscribeWaiter = resolve;
            try {
              sub.terminate();
            } catch {
              resolve(undefined);
            }
          }),
      };
    },
    stop: async () => {
      ua.stop();
      await sleep(200);
    },
  };
}

// ---------------------------------------------------------------- modes -----------------
async function runSubscribe() {
  let got = 0;
  let unsubscribing = false;
  let finalSeen = false;
  let wake;
  const waitNotify = () => new Promise((r) => (wake = r));
  let next = waitNotify();
  const handle = driver.subscribe(TARGET, {
    onAccepted: (status) => emit("subscribe-ok", { status }),
    onRejected: (status, reason) => {
      emit("subscribe-failed", { status, reason });
      finish(1, "subscribe-rejected", { status });
    },
    onNotify: (header, body) => {
      const state = header.split(";")[0].trim().toLowerCase();
      emit("notify-received", { state, "subscription-state": header, body: body || "" });
      if (state === "terminated") finalSeen = true;
      if (!unsubscribing) {
        got++;
        wake();
        next = waitNotify();
      }
    },
    onTerminated: () => {
      if (!unsubscribing && got < NOTIFIES) finish(1, "subscription-terminated", { notifies: got });
    },
  });
  while (got < NOTIFIES) {
    const before = got;
    await withTimeout(next, TIMEOUT, "notify");
    if (got === before) continue;
    if (finalSeen && got < NOTIFIES) throw new PeerError("subscription-terminated", { notifies: got });
  }
  unsubscribing = true;
  if (!finalSeen) {
    const status = await withTimeout(handle.unsubscribe(), TIMEOUT, "unsubscribe");
    emit("unsubscribed", { status });
    // the notifier's final NOTIFY (Subscription-State: terminated), if it comes soon
    for (let i = 0; i < 10 && !finalSeen; i++) await sleep(100);
    if (status !== undefined && !is2xx(status)) throw new PeerError("unsubscribe-rejected", { status });
  }
}

// ---------------------------------------------------------------- lifecycle -------------
let finishing = false;
let registered = false;
let driver;

async function finish(code, reason, fields = {}) {
  if (finishing) return;
  finishing = true;
  if (reason) emit("error", { reason, ...fields });
  const hard = setTimeout(() => {
    emit("exit", { code, forced: "yes" });
    process.exit(code);
  }, 3000);
  try {
    for (const c of calls) {
      if (c.established && !c.ended && !c.localBye) await c.hangup().catch(() => {});
    }
    if (registered) {
      registered = false;
      const status = await withTimeout(driver.unregister(), 2, "unregister");
      emit("unregistered", { status });
      if (!is2xx(status) && code === 0) {
        emit("error", { reason: "unregister-rejected", status });
        code = 1;
      }
    }
    await withTimeout(driver.stop(), 1, "stop");
  } catch (e) {
    stderr("shutdown:", e.message);
  }
  clearTimeout(hard);
  emit("exit", { code });
  process.exit(code);
}

process.on("uncaughtException", (e) => {
  stderr("uncaught exception:", e && e.stack ? e.stack : e);
  if (!finishing) finish(1, "exception", { detail: e && e.message });
});
process.on("unhandledRejection", (e) => stderr("unhandled rejection:", e && e.stack ? e.stack : e));
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    const complete = MODE === "answer" && CALLS === 0 && failures === 0;
    finish(complete ? 0 : 1, complete ? undefined : "signal", { signal: sig });
  });
}
// --lifetime: graceful stop, then at most 3 s later a hard exit whatever happens.
setTimeout(() => {
  if (MODE === "answer" && CALLS === 0 && failures === 0) {
    emit("lifetime");
    finish(0);
  } else finish(1, "lifetime", { seconds: LIFETIME });
}, LIFETIME * 1000).unref();
setTimeout(() => {
  emit("exit", { code: 1, forced: "yes" });
  process.exit(1);
}, (LIFETIME + 3) * 1000).unref();

async function main() {
  driver = LIB === "sipjs" ? await makeSipjs() : await makeJssip();
  emit("start", { lib: LIB, version: driver.version, mode: MODE, pid: process.pid, epoch: T0 });
  try {
    await withTimeout(driver.start(), TIMEOUT, "connect");
  } catch (e) {
    const detail = lastSocketError || (e instanceof PeerError ? e.fields.detail : e && e.message);
    return fail("connect-failed", { detail: detail || undefined }), finish(1);
  }
  emit("connected", { server: SERVER, local: localAddress });
  if (opts.register) {
    try {
      const status = await withTimeout(driver.register(), TIMEOUT, "register");
      registered = true;
      emit("registered", { status, aor: AOR });
    } catch (e) {
      return failWith(e), finish(1);
    }
  }
  emit("ready", { mode: MODE });
  try {
    switch (MODE) {
      case "answer":
        break; // the incoming-call handler does the rest
      case "call": {
        const call = new Call("out", TARGET);
        emit("invite-sent", { call: call.n, to: TARGET });
        driver.call(TARGET, call);
        // bounded: no final answer within --timeout is a failure
        await withTimeout(Promise.race([call.establishedPromise, call.endedPromise]), TIMEOUT, "answer");
        break; // the call's end finishes the process
      }
      case "message":
        await sendMessage(TARGET, opts.message);
        return finish(failures ? 1 : 0);
      case "subscribe":
        await runSubscribe();
        return finish(failures ? 1 : 0);
    }
  } catch (e) {
    failWith(e);
    finish(1);
  }
}

main().catch((e) => {
  failWith(e);
  finish(1);
});
