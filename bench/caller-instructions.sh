#!/usr/bin/env bash
# Instructions per call on the caller's side (a benchmark, not a test): `sipua call --calls N`
# makes calls to `sipua serve` over UDP on loopback (INVITE, 200, ACK, BYE: the in-dialog
# requests are the caller's), counted by callgrind at two lengths; the difference per call
# leaves out start-up and tear-down.
#
#   bench/caller-instructions.sh [SHORT] [LONG]      e.g. bench/caller-instructions.sh 300 1300
#
# SIPUA picks the binary that calls (serve is always SERVE, default the same binary), to
# compare builds against one server. Needs valgrind and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
SHORT=${1:-300}
LONG=${2:-1300}
SIPUA=${SIPUA:-target/release/sipua}
SERVE=${SERVE:-$SIPUA}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
OUT=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$OUT"' EXIT
PORT=${PORT:-18931}
"$SERVE" serve --listen "udp:127.0.0.1:$PORT" --quiet >/dev/null 2>&1 &
pid=$!
sleep 0.5
count() {
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$SIPUA" call \
    "sip:bench@127.0.0.1:$PORT" --no-media --duration 0 --calls "$1" --rate 50 \
    --concurrent 50 >"$OUT/call.$1" 2>"$OUT/err.$1" || { cat "$OUT/call.$1" "$OUT/err.$1"; exit 1; }
  grep -E "^summary:|^totals:" "$OUT/cg.$1" | head -1 | awk '{print $2}'
}
a=$(count "$SHORT")
b=$(count "$LONG")
tail -1 "$OUT/call.$LONG"
echo "instructions per call (caller): $(( (b - a) / (LONG - SHORT) ))"
