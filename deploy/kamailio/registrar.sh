#!/usr/bin/env bash
# Two Kamailio proxies sharing their registrations in one PostgreSQL database (usrloc db_mode
# 3), and N `sipua serve` instances, each on an address of its own (127.0.0.2, .3, ...), that
# register sip:agentK@example.com through proxy A. A call through proxy B to agentK reaches
# instance K: B finds the binding A wrote. Ctrl-C unregisters the instances, stops the
# proxies and the database, and removes it.
#
#   deploy/kamailio/registrar.sh [N] [PORT]        e.g. deploy/kamailio/registrar.sh 2 5060
#
# Proxy A listens on udp/tcp 127.0.0.1:PORT, proxy B on 127.0.0.1:PORT_B (default PORT+1),
# PostgreSQL on 127.0.0.1:PG_PORT (default PORT+2). Look at the bindings, and call agent1
# through B with the scenario beside this script (it follows the proxy's Record-Route):
#
#   psql -h 127.0.0.1 -p PG_PORT -U kamailio kamailio -c 'SELECT username, contact FROM location'
#   sipp -sf deploy/kamailio/uac.xml -s agent1 -m 5 -r 5 -d 500 127.0.0.1:PORT_B
#
# With N=0 it starts only the database and the proxies (the interop test does, and starts
# its own instances). It prints `ready: ...` once everything is up, then waits.
#
# Environment: PORT_B, PG_PORT, INSTANCE_PORT (5070), CHILDREN (Kamailio workers, 4), SIPUA
# (the binary; a release build is made if missing and N > 0), PGBIN (PostgreSQL's programs;
# default the newest /usr/lib/postgresql/*/bin), KAMAILIO_SQL (Kamailio's PostgreSQL schema
# files; default /usr/share/kamailio/postgres, from kamailio-postgres-modules).
#
# Needs kamailio, kamailio-postgres-modules and postgresql (Debian). PostgreSQL refuses to run
# as root: as root, the cluster belongs to the `postgres` user (made by Debian's package).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-2}
PORT=${2:-5060}
PORT_B=${PORT_B:-$((PORT + 1))}
PG_PORT=${PG_PORT:-$((PORT + 2))}
INSTANCE_PORT=${INSTANCE_PORT:-5070}
CHILDREN=${CHILDREN:-4}
SIPUA=${SIPUA:-target/release/sipua}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
KAMAILIO_SQL=${KAMAILIO_SQL:-/usr/share/kamailio/postgres}
MPATH=/usr/lib/$(uname -m)-linux-gnu/kamailio/modules/
[ -x "$PGBIN/initdb" ] || { echo "registrar.sh: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
[ -e "$MPATH/db_postgres.so" ] && [ -e "$KAMAILIO_SQL/usrloc-create.sql" ] \
  || { echo "registrar.sh: apt-get install kamailio-postgres-modules" >&2; exit 1; }
if [ "$N" -gt 0 ] && [ ! -x "$SIPUA" ]; then cargo build --release -p sipua-cli; fi

DIR=$(mktemp -d)
PROXIES=()
INSTANCES=()
PG_STARTED=
# PostgreSQL's server programs as the cluster's owner: `postgres` when we are root (from a
# directory that user can read)
as_owner() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
# SIGTERM to these processes, then wait for them
stop() {
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
# the instances first, so that their unregistrations still find the proxy and the database.
# Every child runs in a session of its own (setsid), so a Ctrl-C reaches only this script.
cleanup() {
  trap - EXIT INT TERM
  stop "${INSTANCES[@]}"
  stop "${PROXIES[@]}"
  [ -z "$PG_STARTED" ] || as_owner "$PGBIN/pg_ctl" stop -D "$DIR/pg" -m fast -s || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. a throwaway cluster: superuser `kamailio`, no passwords (trust) and on loopback only
mkdir "$DIR/pg" "$DIR/pgsock"
if [ "$(id -u)" = 0 ]; then
  chmod 711 "$DIR"   # the postgres user reaches its directories inside
  chown postgres: "$DIR/pg" "$DIR/pgsock"
fi
as_owner "$PGBIN/initdb" -D "$DIR/pg" -U kamailio -A trust -E UTF8 --locale=C --no-sync \
  --no-instructions > "$DIR/initdb.log" || { cat "$DIR/initdb.log" >&2; exit 1; }
as_owner "$PGBIN/pg_ctl" start -D "$DIR/pg" -w -s -l "$DIR/pg/server.log" \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR/pgsock -c fsync=off" \
  || { cat "$DIR/pg/server.log" >&2; exit 1; }
PG_STARTED=1
psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U kamailio "$@"; }
psql -d postgres -c 'CREATE DATABASE kamailio'
# the tables as Kamailio's package defines them: `version`, then `location` (and its row in
# `version`, which usrloc checks at start)
psql -d kamailio -f "$KAMAILIO_SQL/standard-create.sql" -f "$KAMAILIO_SQL/usrloc-create.sql"
DBURL="postgres://kamailio@127.0.0.1:$PG_PORT/kamailio"

# 2. the two proxies on that database
proxy() { # NAME PORT SERVER_ID
  mkdir "$DIR/$1"
  sed -e "s|@ADDR@|127.0.0.1|g; s|@PORT@|$2|g; s|@DOMAIN@|example.com|g; s|@DBURL@|$DBURL|g" \
      -e "s|@SERVER_ID@|$3|g; s|@CHILDREN@|$CHILDREN|g; s|@DIR@|$DIR/$1|g; s|@MPATH@|$MPATH|g" \
      deploy/kamailio/registrar.cfg > "$DIR/$1/kamailio.cfg"
  setsid kamailio -f "$DIR/$1/kamailio.cfg" -DD -E -Y "$DIR/$1" -P "$DIR/$1/kamailio.pid" &
  PROXIES+=($!)
}
proxy a "$PORT" 1
proxy b "$PORT_B" 2
# up once each accepts TCP connections (its modules, usrloc's check of the table included,
# have started by then)
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 100); do
  if up "$PORT" && up "$PORT_B"; then break; fi
  for p in "${PROXIES[@]}"; do kill -0 "$p" 2>/dev/null || { echo "registrar.sh: kamailio exited" >&2; exit 1; }; done
  sleep 0.1
done
up "$PORT" && up "$PORT_B" || { echo "registrar.sh: kamailio did not start" >&2; exit 1; }

# 3. the instances, registering through proxy A
for k in $(seq 1 "$N"); do
  setsid "$SIPUA" serve --listen "udp:127.0.0.$((k + 1)):$INSTANCE_PORT" --no-media --quiet \
    --register "sip:agent$k@example.com" --registrar "sip:127.0.0.1:$PORT" --expires 60 &
  INSTANCES+=($!)
done
for _ in $(seq 100); do
  [ "$(psql -d kamailio -t -A -c 'SELECT count(*) FROM location')" -ge "$N" ] && break
  sleep 0.1
done

echo "ready: proxy A udp/tcp 127.0.0.1:$PORT, proxy B udp/tcp 127.0.0.1:$PORT_B," \
  "PostgreSQL 127.0.0.1:$PG_PORT (database kamailio, user kamailio)"
for k in $(seq 1 "$N"); do
  echo "  sip:agent$k@example.com: sipua serve at 127.0.0.$((k + 1)):$INSTANCE_PORT"
done
psql -d kamailio -c 'SELECT username, contact, server_id, expires FROM location ORDER BY username'
wait
