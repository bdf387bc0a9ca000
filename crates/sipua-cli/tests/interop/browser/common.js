// What both test pages (call.html, jssip.html) share: reporting to the test by POST /event
// (`EVENT name key=value ...`, as node/peer.mjs prints), and judging what the call plays.
const params = new URLSearchParams(location.search);

function post(name, fields = {}) {
  const kv = Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(" ");
  return fetch("/event", { method: "POST", body: `EVENT ${name} ${kv}`.trim() });
}
window.addEventListener("error", (e) => post("error", { message: JSON.stringify(String(e.message)) }));
window.addEventListener("unhandledrejection", (e) => post("error", { message: JSON.stringify(String(e.reason)) }));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// the loudest frequency of what the call plays, from an analyser on the remote stream
function peakHz(analyser, rate) {
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return Math.round((best * rate) / analyser.fftSize);
}

// the peer connection's audio counters and codec
async function stats(pc) {
  const out = {};
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.received = s.packetsReceived;
      out.energy = (s.totalAudioEnergy || 0).toFixed(4);
      const codec = s.codecId && report.get(s.codecId);
      if (codec) out.codec = codec.mimeType;
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") out.sent = s.packetsSent;
  });
  return out;
}

// what the fake microphone plays, unaltered (no echo cancellation, noise suppression or gain
// control bending the test tone)
const audioConstraints = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
