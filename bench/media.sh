#!/usr/bin/env bash
# Media load (a benchmark, not a test): how many concurrent G.711 calls one
# `sipua serve --echo` carries on this machine. For each count N, `sipua call` opens N calls
# at once (200 new calls/s), plays a tone into each for DURATION seconds and measures the
# echo that comes back (loss and RFC 3550 jitter per call); the server's CPU comes from /proc.
# The caller runs on the same two cores, so the figures are for both sides together.
#
#   bench/media.sh [DURATION] [CALLS...]      e.g. bench/media.sh 20 100 200 400 800
#
# Needs a release build (cargo build --release -p sipua-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
shift || true
COUNTS=${*:-100 200 400 800}
SIPUA=target/release/sipua
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
TICKS=$(getconf CLK_TCK)
PORT=17600
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# one second of a 440 Hz tone, played once per call (then silence, which is sent as well)
python3 - "$TMP/tone.wav" <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb")
w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000)))
w.close()
PY

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "| concurrent calls | failed | packets received (echo) | loss mean / max | jitter mean / max | server CPU | caller CPU |"
echo "|---|---|---|---|---|---|---|"
for n in $COUNTS; do
  PORT=$((PORT + 2))
  "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --echo --quiet --lifetime $((DURATION + 60)) >/dev/null &
  spid=$!
  sleep 0.5
  s0=$(cpu_ticks "$spid")
  "$SIPUA" call "sip:echo@127.0.0.1:$PORT" --calls "$n" --concurrent "$n" --rate 200 \
    --duration "$DURATION" --play "$TMP/tone.wav" >"$TMP/out" 2>"$TMP/err" &
  cpid=$!
  c_last=0
  while kill -0 "$cpid" 2>/dev/null; do
    c_last=$(cpu_ticks "$cpid" 2>/dev/null || echo "$c_last")
    sleep 0.5
  done
  wait "$cpid" || true
  s1=$(cpu_ticks "$spid")
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  calls=$(grep -o '[0-9]* successful, [0-9]* failed' "$TMP/out" || echo "? successful, ? failed")
  failed=$(echo "$calls" | awk '{print $3}')
  media=$(grep '^media:' "$TMP/out" || echo "media: -")
  received=$(echo "$media" | sed -n 's/.*calls, \([0-9]*\) packets received.*/\1/p')
  loss=$(echo "$media" | sed -n 's/.*loss mean \([0-9.]*\) % max \([0-9.]*\) %.*/\1 % \/ \2 %/p')
  jitter=$(echo "$media" | sed -n 's/.*jitter mean \([0-9.]*\) ms max \([0-9.]*\) ms.*/\1 ms \/ \2 ms/p')
  scpu=$(awk -v t=$((s1 - s0)) -v hz="$TICKS" -v d="$DURATION" 'BEGIN { printf "%.0f %%", 100 * t / hz / d }')
  ccpu=$(awk -v t="$c_last" -v hz="$TICKS" -v d="$DURATION" 'BEGIN { printf "%.0f %%", 100 * t / hz / d }')
  echo "| $n | $failed | $received | $loss | $jitter | $scpu | $ccpu |"
done
