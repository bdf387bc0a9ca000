#!/usr/bin/env bash
# Call rate with media (a benchmark, not a test): `sipua call` makes RATE calls a second for
# SECONDS seconds to `sipua serve --echo`, each call HOLD seconds long with G.711 RTP both
# ways for all of it (50 packets/s each way; the caller measures the echo: calls that heard
# nothing, loss, jitter). Both are sipua, on the same 2 cores; serve runs one agent per core.
#
#   bench/media-rate.sh [HOLD] [SECONDS] [RATES...]     e.g. bench/media-rate.sh 0.3 10 1000 3000
#
# Needs a release build (cargo build --release -p sipua-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${1:-0.3}
SECONDS_EACH=${2:-10}
shift 2 || true
RATES=${*:-1000 2000 3000}
SIPUA=${SIPUA:-target/release/sipua}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
TICKS=$(getconf CLK_TCK)
PORT=18800
echo "| rate (calls/s) | call length | calls | failed | packets received (echo) | calls that heard nothing | loss mean / max | jitter mean / max | serve CPU per call | caller CPU |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
  PORT=$((PORT + 2))
  "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --echo --quiet --lifetime $((SECONDS_EACH * 3 + 60)) >/dev/null 2>&1 &
  pid=$!
  sleep 0.7
  s0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(/usr/bin/time -f "cpu %U %S" "$SIPUA" call "sip:echo@127.0.0.1:$PORT" --calls $((rate * SECONDS_EACH)) \
    --rate "$rate" --duration "$HOLD" --concurrent 8000 2>&1 | grep -v "^call failed\|^calling" || true)
  s1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$out" | awk -v r="$rate" -v h="$HOLD" -v s=$((s1 - s0)) -v k="$TICKS" -v n=$((rate * SECONDS_EACH)) '
    /^calls:/ {ok = $2; failed = $4}
    /^media:/ {pk = $4; silent = $7; lm = $13; lx = $16; jm = $20; jx = $23}
    /^cpu/ {cpu = $2 + $3}
    END {printf "| %s | %s s | %s | %s | %s | %s | %s / %s | %s / %s | %.0f µs | %.1f s |\n",
      r, h, ok, failed, pk, silent, lm " %", lx " %", jm " ms", jx " ms", s / k * 1e6 / n, cpu}'
done
