#!/usr/bin/env bash
# Instructions per call (a benchmark, not a test): the user-space instructions `sipua serve`
# and SIPp's own built-in uas each execute per call, counted by callgrind while SIPp's
# built-in uac calls them over UDP on loopback (INVITE, 180, 200, ACK, BYE, 200).
#
#   bench/instructions.sh [CALLS]            e.g. bench/instructions.sh 2000
#
# Unlike CPU time, the count barely moves with the machine's load, so it is what to compare
# changes by. Each server gets 200 calls to warm up; then its counters are zeroed, CALLS calls
# are made at 100 calls/s, and the counters are dumped. Kernel time (the socket calls) is not
# counted: both servers make the same system calls per call (epoll_wait, recvfrom, sendto).
#
# REFUSE=1 measures a refused call instead: serve runs with --max-cps 1, SIPp offers the calls
# with bench/overload.xml (which ACKs a 503 and ends the call), and the instructions are
# divided by the calls SIPp made (refused and the few completed; their counts are printed).
# Only sipua is measured then.
#
# CACHE_SIM=1 adds callgrind's cache simulation: first-level instruction and data cache misses
# per call, a steadier sign of memory traffic than CPU time.
#
# Needs valgrind, sipp (Debian sip-tester) and a release build; PROFILE=release-lto picks
# that profile's binary.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
PROFILE=${PROFILE:-release}
SIPUA=${SIPUA:-target/$PROFILE/sipua}
[ -x "$SIPUA" ] || cargo build --profile "$PROFILE" -p sipua-cli
OUT=$(mktemp -d)
# KEEP=1 keeps the callgrind files (for callgrind_annotate) and prints where they are
trap 'if [ -n "${KEEP:-}" ]; then echo "callgrind files in $OUT" >&2; else rm -rf "$OUT"; fi' EXIT
PORT=17600

count() { # name -> one table row
  local name=$1 pid
  PORT=$((PORT + 2))
  local cg=(valgrind --tool=callgrind ${CACHE_SIM:+--cache-sim=yes} --callgrind-out-file="$OUT/$name")
  if [ "$name" = sipua ]; then
    # one thread (THREADS=N for more): the figures below are for one core
    "${cg[@]}" "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --no-media --quiet --threads "${THREADS:-1}" --lifetime 600 ${REFUSE:+--max-cps 1} >/dev/null 2>&1 &
  else
    "${cg[@]}" sipp -sn uas -i 127.0.0.1 -p "$PORT" -nostdin >/dev/null 2>&1 &
  fi
  for _ in $(seq 50); do
    pid=$(pgrep -n -f "127.0.0.1[: ].*$PORT" || true)
    [ -n "$pid" ] && callgrind_control -s "$pid" >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep 2
  local scenario=(-sn uac)
  [ -n "${REFUSE:-}" ] && scenario=(-sf bench/overload.xml -d 0)
  sipp "${scenario[@]}" "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r 100 -m 200 -nostdin -timeout 60 >/dev/null 2>&1 || true
  callgrind_control -z "$pid" >/dev/null 2>&1
  local out
  out=$(sipp "${scenario[@]}" "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r 100 -m "$CALLS" -nostdin -timeout 120 2>&1 || true)
  if [ -n "${REFUSE:-}" ]; then
    echo "refused: $(echo "$out" | awk '/503 <----------/ {v=$3} END {print v+0}') of the calls below" >&2
  fi
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  # the counts are written: no need for a graceful exit (SIPp waits for one under valgrind)
  kill -KILL "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  local ok total
  ok=$(echo "$out" | awk -F'|' '/Successful call/ {v=$3} END {gsub(/ /,"",v); print v+0}')
  local totals
  totals=$(callgrind_annotate "$OUT/$name.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {for (i = 1; i < NF; i++) if ($i ~ /^[0-9,]+$/) {gsub(/,/, "", $i); printf "%s ", $i}}')
  set -- $totals
  local total=$1 n=$((ok > 0 ? ok : 1))
  if [ -n "${CACHE_SIM:-}" ]; then
    # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$ok" "$total" "$((total / n))" \
      "$(($4 / n))" "$(($5 / n))" "$(($6 / n))"
  else
    printf '| %s | %s | %s | %s |\n' "$name" "$ok" "$total" "$((total / n))"
  fi
}

if [ -n "${CACHE_SIM:-}" ]; then
  echo "| server | calls | instructions | per call | L1i misses per call | L1d read misses per call | L1d write misses per call |"
  echo "|---|---|---|---|---|---|---|"
else
  echo "| server | calls | instructions | per call |"
  echo "|---|---|---|---|"
fi
count sipua
[ -n "${REFUSE:-}" ] || count sipp-uas
