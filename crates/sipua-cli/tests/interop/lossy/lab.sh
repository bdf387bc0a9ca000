#!/usr/bin/env bash
# Lossy-network lab for interop tests: "loss on real sockets" between two network namespaces.
# The kernel here has no sch_netem (tc netem: "Specified qdisc kind is unknown"), so instead of
# netem this builds hosts NAME-a (10.77.1.2/24) and NAME-b (10.77.2.2/24) joined by veth pairs to
# a router namespace NAME-r, whose policy routing passes each direction through a TUN device
# served by impair.py (beside this script), a netem-like userspace impairer. Needs root.
#
#   lab.sh up NAME [--loss P] [--duplicate P] [--reorder P] [--delay MS] [--jitter MS] [--seed N]
#   lab.sh exec NAME a|b|r CMD...    run CMD in a namespace (ip netns exec)
#   lab.sh down NAME                 stop the impairer, delete the namespaces, print stats JSON
#
# Several labs with different NAMEs can coexist: every interface lives only inside the lab's
# namespaces (a: va, b: vb, r: ra rb tun-ab tun-ba). State: ${TMPDIR:-/tmp}/sipua-lab-NAME/.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "lab.sh: $*" >&2; exit 1; }
usage() { sed -n '8,10p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2; exit 2; }

prereqs() {
  [[ $(id -u) == 0 ]] || die "must run as root (network namespaces, TUN devices)"
  command -v ip >/dev/null || die "'ip' (iproute2) not found"
  command -v python3 >/dev/null || die "python3 not found"
  [[ -c /dev/net/tun ]] || die "/dev/net/tun missing (no TUN support in this kernel/container)"
  [[ -f $HERE/impair.py ]] || die "impair.py not found beside lab.sh ($HERE)"
}

set_name() {
  NAME=${1:-}
  [[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$ ]] \
    || die "bad lab NAME '$NAME' (letters, digits, _ . -; at most 48 chars)"
  A=$NAME-a B=$NAME-b R=$NAME-r
  DIR=${TMPDIR:-/tmp}/sipua-lab-$NAME
  STATS=$DIR/stats.json
}

ns_exists() { [[ -e /run/netns/$1 ]]; }
rsys() { ip netns exec "$R" sysctl -qw "$@" >/dev/null; }

# Kill everything left in a namespace (TERM, then KILL), so deleting it frees it for real.
ns_kill() {
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  [[ -n $pids ]] || return 0
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 30); do
    pids=$(ip netns pids "$1" 2>/dev/null || true); [[ -n $pids ]] || return 0; sleep 0.1
  done
  kill -KILL $pids 2>/dev/null || true
}

down() {
  local pid="" died=0
  [[ -f $DIR/pid ]] && pid=$(<"$DIR/pid")
  if [[ -n $pid ]] && grep -qs impair.py "/proc/$pid/cmdline"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  elif [[ -n $pid ]]; then
    died=1
  fi
  for ns in "$A" "$B" "$R"; do
    if ns_exists "$ns"; then ns_kill "$ns"; ip netns del "$ns" 2>/dev/null || true; fi
  done
  if [[ -d $DIR ]]; then
    if [[ $died == 1 && -s $DIR/impair.log ]]; then
      echo "lab.sh: impair.py of lab $NAME had died early; its log:" >&2; cat "$DIR/impair.log" >&2
    fi
    find "$DIR" -mindepth 1 ! -path "$STATS" -delete
    [[ -f $STATS ]] && cat "$STATS"
  fi
  return 0
}

fail_up() {
  trap - ERR
  echo "lab.sh: up $NAME failed: $*" >&2
  if [[ -s $DIR/impair.log ]]; then
    echo "--- $DIR/impair.log:" >&2; cat "$DIR/impair.log" >&2; : >"$DIR/impair.log"
  fi
  down >/dev/null; exit 1
}

up() {
  local opts=() loss=0 delay=0 jitter=0
  while (($#)); do
    case $1 in
      --loss|--duplicate|--reorder|--delay|--jitter|--seed)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in --loss) loss=$2 ;; --delay) delay=$2 ;; --jitter) jitter=$2 ;; esac
        opts+=("$1" "$2"); shift 2 ;;
      *) die "unknown option '$1'" ;;
    esac
  done
  down >/dev/null
  rm -rf "$DIR"; mkdir -p "$DIR"
  trap 'fail_up "command failed at line $LINENO"' ERR
  for ns in "$A" "$B" "$R"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  # veths created inside the namespaces: no name ever appears in the root namespace
  ip -n "$A" link add va type veth peer name ra netns "$R"
  ip -n "$B" link add vb type veth peer name rb netns "$R"
  ip -n "$A" addr add 10.77.1.2/24 dev va; ip -n "$A" link set va up
  ip -n "$B" addr add 10.77.2.2/24 dev vb; ip -n "$B" link set vb up
  ip -n "$A" route add default via 10.77.1.1; ip -n "$B" route add default via 10.77.2.1
  # router: forwarding first so that devices created later inherit it; no rp_filter anywhere
  rsys net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 \
    net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$R" addr add 10.77.1.1/24 dev ra; ip -n "$R" addr add 10.77.2.1/24 dev rb
  ip -n "$R" tuntap add dev tun-ab mode tun; ip -n "$R" tuntap add dev tun-ba mode tun
  for dev in ra rb tun-ab tun-ba; do
    ip -n "$R" link set "$dev" mtu 1500 txqueuelen 10000 up
    rsys "net.ipv4.conf.$dev.rp_filter=0" "net.ipv4.conf.$dev.forwarding=1"
  done
  # from a (iif ra) -> tun-ab; from b (iif rb) -> tun-ba; re-injected (iif tun-*) -> main table
  ip -n "$R" route add 10.77.2.0/24 dev tun-ab table 100; ip -n "$R" rule add pref 100 iif ra lookup 100
  ip -n "$R" route add 10.77.1.0/24 dev tun-ba table 101; ip -n "$R" rule add pref 101 iif rb lookup 101

  local py; py=$(python3 -c 'import sys; print(sys.executable)')  # no pyenv shim: $! = impair
  setsid nohup ip netns exec "$R" "$py" "$HERE/impair.py" "${opts[@]}" --stats "$STATS" \
    tun-ab tun-ba </dev/null >"$DIR/impair.log" 2>&1 &
  echo $! >"$DIR/pid"; echo "$STATS" >"$DIR/stats-path"

  # wait for impair.py to attach both TUN devices (carrier comes up)
  local ok=0; for _ in $(seq 100); do
    kill -0 "$(<"$DIR/pid")" 2>/dev/null || fail_up "impair.py exited"
    if ip -n "$R" link show tun-ab | grep -q LOWER_UP && ip -n "$R" link show tun-ba | grep -q LOWER_UP
    then ok=1; break; fi
    sleep 0.1
  done
  ((ok)) || fail_up "TUN devices did not come up within 10 s"

  # prove a UDP datagram crosses a -> b (skipped when everything is dropped)
  if awk -v l="$loss" 'BEGIN { exit !(l >= 100) }'; then trap - ERR; return 0; fi
  local flag=$DIR/probe-received
  ip netns exec "$B" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.77.2.2", 40999)); s.settimeout(20)
s.recv(100); open(sys.argv[1], "w").close()' "$flag" 2>>"$DIR/impair.log" &
  local rpid=$!; ip netns exec "$A" python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); end = time.monotonic() + 15
while not os.path.exists(sys.argv[1]) and time.monotonic() < end:
    s.sendto(b"lab probe", ("10.77.2.2", 40999)); time.sleep(0.1)' "$flag" 2>>"$DIR/impair.log" || true
  kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true
  [[ -f $flag ]] || fail_up "no UDP datagram crossed from $A to $B within 15 s"
  rm -f "$flag"
  # let in-flight probes (and ICMP replies) drain, then zero the counters for the test proper
  sleep "$(awk -v d="$delay" -v j="$jitter" 'BEGIN { print 2 * (d + j) / 1000 + 0.1 }')"
  kill -USR1 "$(<"$DIR/pid")"
  trap - ERR
}

(($# >= 1)) || usage
cmd=$1; shift
case $cmd in
  up) prereqs; set_name "${1:-}"; shift; up "$@"; echo "lab $NAME up: a=10.77.1.2 ($A) b=10.77.2.2 ($B)" >&2 ;;
  down) prereqs; set_name "${1:-}"; down ;;
  exec)
    (($# >= 3)) || usage
    set_name "$1"; case $2 in a) ns=$A ;; b) ns=$B ;; r) ns=$R ;; *) die "host must be a, b or r" ;; esac
    shift 2; exec ip netns exec "$ns" "$@" ;;
  *) usage ;;
esac
