#!/usr/bin/env bash
# Kamailio's dispatcher in front of N `sipua serve` instances on this machine, each on an
# address of its own (127.0.0.2, .3, ...: loopback answers every 127/8 address), as they
# would be on N hosts. Ctrl-C drains the instances (OPTIONS and new calls get 503, calls in
# progress end) and stops Kamailio.
#
#   deploy/kamailio/run.sh [N] [PORT]        e.g. deploy/kamailio/run.sh 3 5060
#
# Then send calls to sip:anyone@127.0.0.1:PORT, for instance with SIPp and the scenario
# beside this script (it follows the Record-Route the proxy adds):
#
#   sipp -sf deploy/kamailio/uac.xml -d 2000 -r 50 -m 1000 127.0.0.1:PORT
#
# Needs kamailio (Debian `kamailio`) and a release build of sipua (made if missing). See
# docs/DEPLOY.md for the topology and how it maps to real hosts or Kubernetes.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-3}
PORT=${2:-5060}
INSTANCE_PORT=${INSTANCE_PORT:-5070}
SIPUA=${SIPUA:-target/release/sipua}
[ -x "$SIPUA" ] || cargo build --release -p sipua-cli
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
: > "$DIR/dispatcher.list"
for i in $(seq 2 $((N + 1))); do
  "$SIPUA" serve --listen "udp:127.0.0.$i:$INSTANCE_PORT" --no-media --drain 30 --quiet &
  PIDS+=($!)
  echo "1 sip:127.0.0.$i:$INSTANCE_PORT" >> "$DIR/dispatcher.list"
done
sed -e "s|@ADDR@|127.0.0.1|g; s|@PORT@|$PORT|g; s|@LIST@|$DIR/dispatcher.list|g" \
    -e "s|@PING@|2|g; s|@FR_TIMER@|2000|g; s|@CHILDREN@|4|g; s|@DIR@|$DIR|g" \
    -e "s|@MPATH@|/usr/lib/$(uname -m)-linux-gnu/kamailio/modules/|g" \
    deploy/kamailio/dispatcher.cfg > "$DIR/kamailio.cfg"
kamailio -f "$DIR/kamailio.cfg" -DD -E -Y "$DIR" -P "$DIR/kamailio.pid" &
PIDS+=($!)
echo "dispatcher on udp/tcp 127.0.0.1:$PORT, $N instances: $(tr '\n' ' ' < "$DIR/dispatcher.list")"
wait
