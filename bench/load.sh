#!/usr/bin/env bash
# Load run (a benchmark, not a test): SIPp's built-in uac at rising call rates against
# `sipua serve` and, in the same run, against SIPp's own built-in uas, over UDP on loopback.
# For each server and rate: calls made over DURATION seconds, failed calls, SIPp's
# retransmissions, and the server's CPU time per call (user+system, from /proc).
#
#   bench/load.sh [DURATION] [RATES...]      e.g. bench/load.sh 30 200 500 1000 2000
#   ROUNDS=3 bench/load.sh 15 1000 2000     each rate three times, with the ratios' medians
#
# Needs sipp (Debian sip-tester) and a release build (cargo build --release -p sipua-cli);
# PROFILE=release-lto takes that profile's build (link-time optimised, as a server is deployed).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
shift || true
RATES=${*:-200 500 1000 2000 4000}
PROFILE=${PROFILE:-release}
SIPUA=${SIPUA:-target/$PROFILE/sipua}
[ -x "$SIPUA" ] || cargo build --profile "$PROFILE" -p sipua-cli
TICKS=$(getconf CLK_TCK)
PORT=17400

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }

run() { # server rate -> one table row
  local server=$1 rate=$2 pid
  if [ "$server" = sipua ]; then
    # one thread, as in the history below (serve now uses every core by default: bench/scale.sh)
    "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --no-media --quiet --threads "${THREADS:-1}" --lifetime $((DURATION + 60)) >/dev/null &
    pid=$!
  else
    sipp -sn uas -i 127.0.0.1 -p "$PORT" -nostdin -bg >/dev/null 2>&1 || true
    sleep 0.3
    pid=$(pgrep -n -f "sipp -sn uas -i 127.0.0.1 -p $PORT ")
  fi
  sleep 0.5
  local before ubefore out
  before=$(cpu_ticks "$pid")
  ubefore=$(user_ticks "$pid")
  out=$(sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r "$rate" \
    -m $((rate * DURATION)) -l $((rate * 40)) -timeout $((DURATION + 40)) -timeout_error -nostdin 2>&1 || true)
  local after uafter
  after=$(cpu_ticks "$pid")
  uafter=$(user_ticks "$pid")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local ok failed retrans secs
  ok=$(echo "$out" | awk -F'|' '/Successful call/ {v=$3} END {gsub(/ /,"",v); print v+0}')
  failed=$(echo "$out" | awk -F'|' '/Failed call/ {v=$3} END {gsub(/ /,"",v); print v+0}')
  retrans=$(echo "$out" | awk '/INVITE ---------->/ {r=$4} END {print r+0}')
  secs=$(awk -v t=$((after - before)) -v k="$TICKS" 'BEGIN {printf "%.2f", t / k}')
  local per_call user_share
  per_call=$(awk -v s="$secs" -v n="$ok" 'BEGIN {if (n > 0) printf "%.1f", s * 1e6 / n; else print "-"}')
  user_share=$(awk -v u=$((uafter - ubefore)) -v t=$((after - before)) 'BEGIN {if (t > 0) printf "%d %%", 100 * u / t; else print "-"}')
  printf '| %s | %s | %s | %s | %s | %s s (%s user) | %s µs |\n' "$server" "$rate" "$ok" "$failed" "$retrans" "$secs" "$user_share" "$per_call"
}

echo "| server | rate (calls/s) | successful | failed | INVITE retransmissions | server CPU | CPU per call |"
echo "|---|---|---|---|---|---|---|"
# ROUNDS=N repeats each rate N times, sipua and SIPp's uas alternately, and ends with each
# round's ratio of CPU per call and their median: single runs on a shared machine differ by
# up to 20 %, the ratio of two runs made a few seconds apart much less
ROUNDS=${ROUNDS:-1}
RATIOS=$(mktemp)
trap 'rm -f "$RATIOS"' EXIT
for rate in $RATES; do
  for _ in $(seq "$ROUNDS"); do
    # each run on fresh ports (run is a subshell here, so the count moves out here)
    PORT=$((PORT + 2))
    a=$(run sipua "$rate")
    PORT=$((PORT + 2))
    b=$(run sipp-uas "$rate")
    printf '%s\n%s\n' "$a" "$b"
    us() { echo "$1" | awk -F'|' '{gsub(/[ µs]/, "", $8); print $8}'; }
    echo "$rate $(us "$a") $(us "$b")" >>"$RATIOS"
  done
done
if [ "$ROUNDS" -gt 1 ]; then
  echo
  echo "| rate (calls/s) | sipua / SIPp's uas CPU per call, by round | median |"
  echo "|---|---|---|"
  for rate in $RATES; do
    awk -v r="$rate" '$1 == r && $2 != "-" && $3 != "-" && $3 > 0 {printf "%.2f\n", $2 / $3}' "$RATIOS" |
      sort -n | awk -v r="$rate" '{v[NR] = $1; all = all (NR > 1 ? ", " : "") $1}
        END {if (NR) printf "| %s | %s | %s |\n", r, all, (NR % 2 ? v[(NR + 1) / 2] : sprintf("%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2))}'
  done
fi
