#!/usr/bin/env bash
# Scaling run (a benchmark, not a test): `sipua serve --threads T` for each T, against SIPp's
# built-in uac (4 MiB socket buffers, SIPP_PROCS processes sharing the rate) at each rate,
# over UDP on loopback. For each thread count and rate: calls made over DURATION seconds,
# failed calls, INVITE retransmissions, serve's CPU time per call (user+system, from /proc),
# and the CPU the SIPp processes took (the load generator shares the cores).
#
#   bench/scale.sh [DURATION] [RATES...]     e.g. THREADS="1 2" bench/scale.sh 30 4000 6000
#
# Needs sipp (Debian sip-tester) and a release build (cargo build --release -p sipua-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
shift || true
RATES=${*:-2000 4000 6000 8000}
THREADS=${THREADS:-1 2}
SIPP_PROCS=${SIPP_PROCS:-1}
SIPUA=${SIPUA:-target/release/sipua}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
TICKS=$(getconf CLK_TCK)
PORT=17600
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU seconds (user + system) of this shell's children that have been waited for: the SIPp
# processes, once they end
# (`times` in this shell, not in a subshell, which has children of its own)
TIMES=$(mktemp)
trap 'rm -f "$TIMES"' EXIT
record_times() { times >"$TIMES"; }
recorded_cpu() { tail -1 "$TIMES" | awk '{gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4}'; }

echo "| threads | rate (calls/s) | SIPp processes | successful | failed | INVITE retransmissions | serve CPU | CPU per call | SIPp CPU | share of the machine |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in $THREADS; do
  for rate in $RATES; do
    PORT=$((PORT + 10))
    "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --no-media --quiet --threads "$t" \
      --lifetime $((DURATION + 60)) >/dev/null &
    pid=$!
    sleep 0.7
    before=$(cpu_ticks "$pid")
    record_times
    sipp0=$(recorded_cpu)
    start=$(date +%s.%N)
    outs=()
    pids=()
    each=$((rate / SIPP_PROCS))
    for i in $(seq "$SIPP_PROCS"); do
      out=$(mktemp)
      outs+=("$out")
      sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + i)) -r "$each" \
        -m $((each * DURATION)) -l $((each * 40)) -buff_size 4194304 \
        -timeout $((DURATION + 40)) -timeout_error -nostdin >"$out" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    after=$(cpu_ticks "$pid")
    record_times
    sipp1=$(recorded_cpu)
    wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ok=0 failed=0 retrans=0
    for out in "${outs[@]}"; do
      ok=$((ok + $(awk -F'|' '/Successful call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$out")))
      failed=$((failed + $(awk -F'|' '/Failed call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$out")))
      retrans=$((retrans + $(awk '/INVITE ---------->/ {r=$4} END {print r+0}' "$out")))
      rm -f "$out"
    done
    secs=$(awk -v t=$((after - before)) -v k="$TICKS" 'BEGIN {printf "%.2f", t / k}')
    per_call=$(awk -v s="$secs" -v n="$ok" 'BEGIN {if (n > 0) printf "%.1f", s * 1e6 / n; else print "-"}')
    # the share of the machine's cores the load generator and serve took, over the run
    sipp_secs=$(awk -v a="$sipp0" -v b="$sipp1" 'BEGIN {printf "%.2f", b - a}')
    busy=$(awk -v s="$secs" -v p="$sipp_secs" -v w="$wall" -v n="$(nproc)" \
      'BEGIN {printf "serve %d %%, SIPp %d %%", 100 * s / w / n, 100 * p / w / n}')
    printf '| %s | %s | %s | %s | %s | %s | %s s | %s µs | %s s | %s |\n' "$t" "$rate" "$SIPP_PROCS" "$ok" "$failed" "$retrans" "$secs" "$per_call" "$sipp_secs" "$busy"
  done
done
