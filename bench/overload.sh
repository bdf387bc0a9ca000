#!/usr/bin/env bash
# Overload run (a benchmark, not a test): `sipua serve` in a cgroup that gives it QUOTA % of
# one core (a container with a CPU limit, so that SIPp on the same 2-core machine can offer
# five times what it sustains), SIPp (bench/overload.xml: the built-in uac that takes a 503
# for an answer) offering each rate of RATES for DURATION seconds, with and without overload
# control (CONTROL: serve's arguments for it). For each run: calls completed and goodput,
# calls refused with 503, calls that got no answer (timed out), serve's CPU (and how much of
# it was the kernel's: the system calls) and peak RSS.
# Then, on the same serve, RECOVER calls/s for 10 s right after the flood.
#
#   bench/overload.sh [DURATION] [RATES...]
#   e.g. QUOTA=10 CONTROL="--max-cps 1800" RECOVER=1800 bench/overload.sh 60 900 1800 3600 9000
#        QUOTA=10 CONTROL="--max-delay 200" CONTROL_ONLY=1 bench/overload.sh 30 6000 6000 6000
#
# Writes target/overload.csv and, with matplotlib (PLOT=path.png), a plot of offered load
# against goodput. Needs root (a cgroup v1 cpu controller at /sys/fs/cgroup/cpu), sipp and a
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
shift || true
RATES=${*:-900 1800 3600 9000}
QUOTA=${QUOTA:-10}
CONTROL=${CONTROL:---max-cps 1800}
RECOVER=${RECOVER:-1800}
SIPP_PROCS=${SIPP_PROCS:-2}
SIPUA=${SIPUA:-target/release/sipua}
CSV=${CSV:-target/overload.csv}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
CG=/sys/fs/cgroup/cpu/sipua-bench
mkdir -p "$CG"
echo 100000 >"$CG/cpu.cfs_period_us"
echo $((QUOTA * 1000)) >"$CG/cpu.cfs_quota_us"
TICKS=$(getconf CLK_TCK)
PORT=18000
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# SIPp at RATE for SECS seconds against PORT, split over SIPP_PROCS processes on local
# ports from FROM on; prints "completed refused failed"
offer() {
  local rate=$1 secs=$2 from=$3 pids=() outs=() i each=$(($1 / SIPP_PROCS))
  for i in $(seq "$SIPP_PROCS"); do
    outs+=("$TMP/sipp.$i")
    sipp -sf bench/overload.xml "127.0.0.1:$PORT" -i 127.0.0.1 -p $((from + i)) -r "$each" \
      -m $((each * secs)) -l $((each * 40)) -buff_size 4194304 \
      -timeout $((secs + 60)) -nostdin >"$TMP/sipp.$i" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  local ok=0 refused=0 failed=0 out
  for out in "${outs[@]}"; do
    ok=$((ok + $(awk -F'|' '/Successful call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$out")))
    failed=$((failed + $(awk -F'|' '/Failed call/ {v=$3} END {gsub(/ /,"",v); print v+0}' "$out")))
    refused=$((refused + $(awk '/503 <----------/ {v=$3} END {print v+0}' "$out")))
  done
  echo "$((ok - refused)) $refused $failed"
}

echo "control,offered,completed,goodput,refused,failed,serve_cpu_s,serve_sys_s,rss_mb,recovered,recover_failed" >"$CSV"
echo "| overload control | offered (calls/s) | completed | goodput (calls/s) | refused (503) | no answer | serve CPU (of it, kernel) | peak RSS | then $RECOVER/s for 10 s |"
echo "|---|---|---|---|---|---|---|---|---|"
# CONTROL=none runs without overload control only (to find the rate it sustains);
# CONTROL_ONLY=1 runs with CONTROL only (a rate named twice runs twice: runs vary)
controls=(none)
[ -n "${CONTROL_ONLY:-}" ] && controls=()
[ "$CONTROL" = none ] || controls+=("$CONTROL")
for control in "${controls[@]}"; do
  for rate in $RATES; do
    PORT=$((PORT + 10))
    args=()
    [ "$control" = none ] || read -r -a args <<<"$control"
    sh -c 'echo $$ >"$1/cgroup.procs"; shift; exec "$@"' - "$CG" \
      "$SIPUA" serve --listen "udp:127.0.0.1:$PORT" --no-media --quiet --threads 1 \
      --lifetime $((DURATION + 200)) "${args[@]}" >/dev/null 2>&1 &
    pid=$!
    sleep 0.7
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    t0=$(date +%s.%N)
    read -r done refused failed < <(offer "$rate" "$DURATION" "$PORT")
    # SIPp runs until its last call ends or times out (Timer B, 32 s): calls per second of it
    wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    rss=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$pid/status")
    # right after the flood, the rate it sustains is served again at once
    read -r rdone _ rfailed < <(offer "$RECOVER" 10 $((PORT + 5)))
    # at once: a graceful stop on a tenth of a core would overlap the next run's quota
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cpu=$(awk -v t=$((u1 - u0 + s1 - s0)) -v k="$TICKS" 'BEGIN {printf "%.2f", t / k}')
    sys=$(awk -v t=$((s1 - s0)) -v k="$TICKS" 'BEGIN {printf "%.2f", t / k}')
    goodput=$(awk -v n="$done" -v s="$wall" 'BEGIN {printf "%d", n / s}')
    echo "$control,$rate,$done,$goodput,$refused,$failed,$cpu,$sys,$rss,$rdone,$rfailed" >>"$CSV"
    printf '| %s | %s | %s | %s | %s | %s | %s s (%s s) | %s MB | %s completed, %s failed |\n' \
      "$control" "$rate" "$done" "$goodput" "$refused" "$failed" "$cpu" "$sys" "$rss" "$rdone" "$rfailed"
  done
done
if [ -n "${PLOT:-}" ]; then
  "${PYTHON:-python3}" - "$CSV" "$PLOT" "$QUOTA" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
fig, ax = plt.subplots(figsize=(7, 4.5))
for control in dict.fromkeys(r["control"] for r in rows):
    rs = [r for r in rows if r["control"] == control]
    label = "no overload control" if control == "none" else "serve " + control
    ax.plot([int(r["offered"]) for r in rs], [int(r["goodput"]) for r in rs], "o-", label=label)
top = max(int(r["offered"]) for r in rows)
ax.plot([0, top], [0, top], ":", color="grey", label="goodput = offered")
ax.set_xlabel("offered load (calls/s, SIPp)")
ax.set_ylabel("goodput (completed calls/s)")
ax.set_title(f"sipua serve on {sys.argv[3]} % of one core, offered past what it sustains")
ax.set_xlim(0)
ax.set_ylim(0)
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
PY
fi
