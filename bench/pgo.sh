#!/usr/bin/env bash
# A profile-guided build of the sipua CLI (a benchmark aid, not a test): builds an
# instrumented binary, runs `sipua serve` under SIPp's built-in uac (UDP and TCP calls) to
# record which code is hot, and rebuilds with that profile, so the compiler lays hot code out
# together and moves cold branches aside. The result is target/pgo/release-lto/sipua; compare
# it with the plain build by
#
#   bench/pgo.sh && SIPUA=target/pgo/release-lto/sipua bench/load.sh 20 1000 2000
#
# Needs sipp (Debian sip-tester) and an llvm-profdata of the LLVM that rustc uses
# (`rustc -vV`; Debian llvm-22 for rustc 1.95); LLVM_PROFDATA names another one.
set -euo pipefail
cd "$(dirname "$0")/.."
LLVM_MAJOR=$(rustc -vV | awk '/LLVM version/ {split($3, v, "."); print v[1]}')
PROFDATA=${LLVM_PROFDATA:-$(command -v "llvm-profdata-$LLVM_MAJOR" || command -v llvm-profdata || true)}
[ -n "$PROFDATA" ] || {
  echo "no llvm-profdata for LLVM $LLVM_MAJOR (Debian: apt-get install llvm-$LLVM_MAJOR)" >&2
  exit 1
}
DATA=$PWD/target/pgo-data
rm -rf "$DATA"
mkdir -p "$DATA"

RUSTFLAGS="-Cprofile-generate=$DATA/raw" \
  cargo build --profile release-lto -p sipua-cli --target-dir target/pgo-gen

# the training run: a server taking UDP and TCP calls, ended by its lifetime so that the
# profile is written at exit
PORT=17800
target/pgo-gen/release-lto/sipua serve --listen "udp:127.0.0.1:$PORT" \
  --listen "tcp:127.0.0.1:$((PORT + 2))" --no-media --quiet --lifetime 40 >/dev/null &
pid=$!
sleep 1
sipp -sn uac "127.0.0.1:$PORT" -i 127.0.0.1 -p $((PORT + 1)) -r 500 -m 10000 \
  -nostdin -timeout 60 >/dev/null 2>&1 || true
sipp -sn uac "127.0.0.1:$((PORT + 2))" -t t1 -i 127.0.0.1 -p $((PORT + 3)) -r 200 -m 2000 \
  -nostdin -timeout 60 >/dev/null 2>&1 || true
wait "$pid" || true
"$PROFDATA" merge -o "$DATA/merged.profdata" "$DATA"/raw

RUSTFLAGS="-Cprofile-use=$DATA/merged.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --profile release-lto -p sipua-cli --target-dir target/pgo
echo "target/pgo/release-lto/sipua"
