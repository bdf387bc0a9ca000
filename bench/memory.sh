#!/usr/bin/env bash
# Memory per call (a benchmark, not a test): SIPp's built-in uac sets up CALLS calls at RATE
# calls/s against `sipua serve --no-media --threads 1` and holds each for HOLD seconds, so
# that all CALLS are established at once; serve's RSS is read idle, then every second while
# the calls are up. RSS per call = (RSS with all calls up - idle RSS) / CALLS.
#
#   bench/memory.sh [CALLS] [RATE]        e.g. bench/memory.sh 100000 2000
#
# Needs sipp and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-100000}
RATE=${2:-2000}
SIPUA=${SIPUA:-target/release/sipua}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
PORT=18600
SETUP=$((CALLS / RATE))
HOLD=$((SETUP + 40))
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
"$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --no-media --quiet --threads 1 \
  --lifetime $((HOLD + SETUP + 120)) >/dev/null 2>&1 &
pid=$!
sleep 1
idle=$(rss "$pid")
out=$(mktemp)
sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r "$RATE" -m "$CALLS" \
  -l $((CALLS + 1000)) -d $((HOLD * 1000)) -buff_size 4194304 \
  -timeout $((HOLD + SETUP + 100)) -nostdin >"$out" 2>&1 &
sipp_pid=$!
# every call is up from SETUP s on, until HOLD s after the first one: sample in between
peak=0
for _ in $(seq $((SETUP + 30))); do
  sleep 1
  r=$(rss "$pid")
  [ "$r" -gt "$peak" ] && peak=$r
done
up=$(rss "$pid")
wait "$sipp_pid" || true
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
ok=$(awk -F'|' '/Successful call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$out")
failed=$(awk -F'|' '/Failed call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$out")
rm -f "$out"
echo "| calls held at once | successful | failed | idle RSS | RSS with all up | peak RSS | per call |"
echo "|---|---|---|---|---|---|---|"
awk -v n="$CALLS" -v ok="$ok" -v f="$failed" -v i="$idle" -v u="$up" -v p="$peak" 'BEGIN {
  printf "| %d | %d | %d | %.1f MB | %.1f MB | %.1f MB | %.2f KB |\n", n, ok, f, i / 1024, u / 1024, p / 1024, (u - i) / n }'
