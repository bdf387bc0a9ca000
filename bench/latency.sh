#!/usr/bin/env bash
# CPU per call and set-up latency against offered rate (a benchmark, not a test): SIPp's
# built-in uac at each rate of RATES for DURATION seconds against `sipua serve --threads 1`
# and, in the same run, against SIPp's own built-in uas, over UDP on loopback. Latency is
# SIPp's response time of each call (INVITE sent to 200 received, `-trace_rtt`, whole
# milliseconds), as p50 and p99; CPU per call is the server's user + system time over the
# run, from /proc.
#
#   bench/latency.sh [DURATION] [RATES...]    e.g. PLOT=docs/latency.png bench/latency.sh 20 1000 4000 8000 16000
#
# Writes target/latency.csv and, with matplotlib (PLOT=path.png), the two curves side by
# side. Needs sipp and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
shift || true
RATES=${*:-1000 2000 4000 8000 12000 16000}
SIPUA=${SIPUA:-target/release/sipua}
CSV=${CSV:-target/latency.csv}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
TICKS=$(getconf CLK_TCK)
PORT=18400
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "server,rate,successful,failed,cpu_us_per_call,p50_ms,p99_ms" >"$CSV"
echo "| server | rate (calls/s) | successful | failed | CPU per call | set-up p50 | set-up p99 |"
echo "|---|---|---|---|---|---|---|"
for rate in $RATES; do
  for server in sipua sipp-uas; do
    PORT=$((PORT + 2))
    if [ "$server" = sipua ]; then
      "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --no-media --quiet --threads 1 \
        --lifetime $((DURATION + 60)) >/dev/null 2>&1 &
      pid=$!
    else
      sipp -sn uas -i 127.0.0.1 -p "$PORT" -nostdin -bg >/dev/null 2>&1 || true
      sleep 0.3
      pid=$(pgrep -n -f "sipp -sn uas -i 127.0.0.1 -p $PORT ")
    fi
    sleep 0.5
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    rm -f "$TMP"/*.csv
    (cd "$TMP" && sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r "$rate" \
      -m $((rate * DURATION)) -l $((rate * 40)) -buff_size 4194304 -trace_rtt -rtt_freq 1000 \
      -timeout $((DURATION + 40)) -timeout_error -nostdin >"$TMP/out" 2>&1) || true
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ok=$(awk -F'|' '/Successful call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$TMP/out")
    failed=$(awk -F'|' '/Failed call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$TMP/out")
    per_call=$(awk -v t=$((c1 - c0)) -v k="$TICKS" -v n="$ok" 'BEGIN {if (n > 0) printf "%.1f", t / k * 1e6 / n; else print "-"}')
    read -r p50 p99 < <(cat "$TMP"/*_rtt.csv | awk -F';' 'NR > 1 && $2 ~ /^[0-9]/ {print $2}' | sort -n |
      awk '{v[NR] = $1} END {if (NR) print v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1]; else print "- -"}')
    echo "$server,$rate,$ok,$failed,$per_call,$p50,$p99" >>"$CSV"
    printf '| %s | %s | %s | %s | %s µs | %s ms | %s ms |\n' "$server" "$rate" "$ok" "$failed" "$per_call" "$p50" "$p99"
  done
done
if [ -n "${PLOT:-}" ]; then
  "${PYTHON:-python3}" - "$CSV" "$PLOT" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["cpu_us_per_call"] != "-"]
fig, (cpu, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
for server, label in (("sipua", "sipua serve (1 thread)"), ("sipp-uas", "SIPp built-in uas")):
    rs = [r for r in rows if r["server"] == server]
    x = [int(r["rate"]) for r in rs]
    cpu.plot(x, [float(r["cpu_us_per_call"]) for r in rs], "o-", label=label)
    lat.plot(x, [float(r["p50_ms"]) for r in rs], "o-", label=label + " p50")
    lat.plot(x, [float(r["p99_ms"]) for r in rs], "s--", label=label + " p99")
cpu.set_xlabel("offered rate (calls/s)")
cpu.set_ylabel("server CPU per call (µs)")
cpu.set_ylim(0)
lat.set_xlabel("offered rate (calls/s)")
lat.set_ylabel("INVITE → 200 (ms, SIPp)")
lat.set_ylim(0)
for a in (cpu, lat):
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
PY
fi
