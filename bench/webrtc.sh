#!/usr/bin/env bash
# Concurrent WebRTC calls (a benchmark, not a test): `sipua call --webrtc` holds about
# CONCURRENT WebRTC calls at once to `sipua serve --echo` (each HOLD seconds long: ICE, a DTLS
# handshake, then SRTP audio both ways, 50 packets/s each way; the caller measures the echo:
# calls that heard nothing, loss, jitter). Both are sipua, on the same 2 cores; serve runs
# one agent per core. Calls start at CONCURRENT / HOLD a second (so the set-up rate is also
# the DTLS handshakes per second each side does) and 2 × CONCURRENT are made in all.
#
#   bench/webrtc.sh [CONCURRENT] [HOLD] [CODECS]      e.g. bench/webrtc.sh 500 10 pcmu
#
# OPUS_COMPLEXITY=N sets the Opus encoder's complexity (0-10) on both sides.
# MEDIA=sdes makes the same calls SDES-SRTP instead (RFC 4568 keys in the SDP, over TLS
# signalling: serve listens on TLS with a self-signed certificate, both sides --srtp require;
# no ICE or DTLS, so a call's set-up is a TLS-carried INVITE and the SRTP starts at once).
#
# Needs a release build (cargo build --release -p sipua-cli; --features opus for Opus).
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENT=${1:-500}
HOLD=${2:-10}
CODECS=${3:-pcmu}
SIPUA=${SIPUA:-target/release/sipua}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
TICKS=$(getconf CLK_TCK)
PORT=18900
MEDIA=${MEDIA:-webrtc}
case "$MEDIA" in
  webrtc)
    LISTEN="udp:127.0.0.1:$PORT"
    TARGET="sip:echo@127.0.0.1:$PORT"
    SERVE_OPTS=()
    CALL_OPTS=(--webrtc)
    ;;
  sdes)
    LISTEN="tls:127.0.0.1:$PORT"
    TARGET="sip:echo@127.0.0.1:$PORT;transport=tls"
    SERVE_OPTS=(--srtp require)
    CALL_OPTS=(--srtp require --insecure)
    ;;
  *) echo "MEDIA is webrtc or sdes" >&2; exit 2 ;;
esac
if [ -n "${OPUS_COMPLEXITY:-}" ]; then
  SERVE_OPTS+=(--opus-complexity "$OPUS_COMPLEXITY")
  CALL_OPTS+=(--opus-complexity "$OPUS_COMPLEXITY")
fi
RATE=$((CONCURRENT / HOLD))
CALLS=$((CONCURRENT * 2))
"$SIPUA" serve --listen "$LISTEN" "${SERVE_OPTS[@]}" --echo --quiet --codecs "$CODECS" \
  --lifetime $((HOLD * 4 + 120)) >/dev/null 2>&1 &
pid=$!
sleep 0.7
s0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
out=$(/usr/bin/time -f "cpu %U %S" "$SIPUA" call "$TARGET" "${CALL_OPTS[@]}" --codecs "$CODECS" \
  --calls "$CALLS" --rate "$RATE" --duration "$HOLD" --concurrent $((CONCURRENT * 3)) 2>&1 \
  | grep -v "^call failed\|^calling" || true)
s1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "| concurrent (about) | set-up rate | media | codec | calls | failed | packets received (echo) | calls that heard nothing | loss mean / max | jitter mean / max | serve CPU per call | serve peak RSS | caller CPU |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
echo "$out" | awk -v c="$CONCURRENT" -v r="$RATE" -v media="$MEDIA" -v codec="$CODECS" -v s=$((s1 - s0)) -v k="$TICKS" -v n="$CALLS" -v rss="$rss" '
  /^calls:/ {ok = $2; failed = $4}
  /^media:/ {pk = $4; silent = $7; lm = $13; lx = $16; jm = $20; jx = $23}
  /^cpu/ {cpu = $2 + $3}
  END {printf "| %s | %s/s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %.0f µs | %.0f MB | %.1f s |\n",
    c, r, media, codec, ok, failed, pk, silent, lm " %", lx " %", jm " ms", jx " ms", s / k * 1e6 / n, rss / 1024, cpu}'
