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
# Needs valgrind, sipp (Debian sip-tester) and a release build; PROFILE=release-lto picks
# that profile's binary.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
PROFILE=${PROFILE:-release}
SIPUA=target/$PROFILE/sipua
[ -x "$SIPUA" ] || cargo build --profile "$PROFILE" -p sipua-cli
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
PORT=17600

count() { # name -> one table row
  local name=$1 pid
  PORT=$((PORT + 2))
  local cg=(valgrind --tool=callgrind --callgrind-out-file="$OUT/$name")
  if [ "$name" = sipua ]; then
    "${cg[@]}" "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --no-media --quiet --lifetime 600 >/dev/null 2>&1 &
  else
    "${cg[@]}" sipp -sn uas -i 127.0.0.1 -p "$PORT" -nostdin >/dev/null 2>&1 &
  fi
  for _ in $(seq 50); do
    pid=$(pgrep -n -f "127.0.0.1[: ].*$PORT" || true)
    [ -n "$pid" ] && callgrind_control -s "$pid" >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep 2
  sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r 100 -m 200 -nostdin -timeout 60 >/dev/null 2>&1 || true
  callgrind_control -z "$pid" >/dev/null 2>&1
  local out
  out=$(sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r 100 -m "$CALLS" -nostdin -timeout 120 2>&1 || true)
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  # the counts are written: no need for a graceful exit (SIPp waits for one under valgrind)
  kill -KILL "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  local ok total
  ok=$(echo "$out" | awk -F'|' '/Successful call/ {v=$3} END {gsub(/ /,"",v); print v+0}')
  total=$(callgrind_annotate "$OUT/$name.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(/,/,"",$1); print $1}')
  printf '| %s | %s | %s | %s |\n' "$name" "$ok" "$total" "$((total / (ok > 0 ? ok : 1)))"
}

echo "| server | calls | instructions | per call |"
echo "|---|---|---|---|"
count sipua
count sipp-uas
