#!/usr/bin/env bash
# Runs units of Redis's own test suite (external-server mode) against Quire
# and against redis-server, side by side, and prints a per-unit table of
# passed tests. Nothing of Redis's code is copied into this repository: the
# suite is read from a redis/redis checkout given by path (tag 7.0.15) and
# run, unchanged, from a temporary copy.
#
#   bash benches/redis-suite.sh /path/to/redis [unit/type/string unit/bitops ...]
#
# Needs tclsh, redis-server and target/release/quire (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=${1:?usage: redis-suite.sh REDIS_CHECKOUT [UNIT ...]}
shift
units=("$@")
if [ ${#units[@]} -eq 0 ]; then
    units=(unit/type/string unit/type/incr unit/keyspace unit/expire unit/type/hash
        unit/type/list unit/type/list-2 unit/type/list-3 unit/type/set unit/type/zset
        unit/multi unit/scan unit/bitops unit/bitfield unit/hyperloglog unit/geo
        unit/sort unit/dump unit/info-command unit/protocol)
fi
quire=$PWD/target/release/quire
[ -x "$quire" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$checkout/tests" "$work/tests"
cp "$checkout/runtest" "$work/" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_unit PORT UNIT -> "passed failed first-exception"
run_unit() {
    local out
    out=$(cd "$work" && timeout 600 tclsh tests/test_helper.tcl --host 127.0.0.1 --port "$1" \
        --single "$2" --timeout 120 2>&1 | sed 's/\x1b\[[0-9;]*m//g') || true
    local ok err exc
    ok=$(grep -c '^\[ok\]' <<<"$out" || true)
    err=$(grep -c '^\[err\]' <<<"$out" || true)
    exc=$(grep -m1 '^\[exception\]' <<<"$out" | sed 's/^\[exception\]: Executing test client: //; s/|/\\|/g' | cut -c1-90 || true)
    echo "$ok|$err|$exc"
}

mkdir -p "$work/quire"
# Replication on (a free UDP port, certificates for the node), so the units'
# REPLICAOF tests run as they would on a real deployment.
"$quire" certs init --dir "$work/certs" --node suite --ip 127.0.0.1 >/dev/null
udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Each unit runs against freshly started servers: a unit that stops early
# can leave settings behind (maxmemory 1, say) that would fail the next.
start_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --save "" --dir "$work" --enable-debug-command yes >/dev/null 2>&1 &
    server_pid=$!
}
start_quire() {
    rm -rf "$work/quire" && mkdir -p "$work/quire"
    "$quire" server --port "$1" --dir "$work/quire" --save "" --repl-port "$(udp_port)" \
        --certs "$work/certs" --node suite >>"$work/quire.log" 2>&1 &
    server_pid=$!
}
# run_on START UNIT -> the unit's result line, against a new server
run_on() {
    local port
    port=$(free_port)
    "$1" "$port"
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    run_unit "$port" "$2"
    kill "$server_pid" 2>/dev/null || true
    # A server that does not stop within 10 s is killed.
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}

echo "Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') suite from $checkout ($(git -C "$checkout" describe --tags 2>/dev/null || echo '?')), external mode, $(date -u +%F)"
echo
echo "| unit | redis-server passes | Quire passes | Quire/Redis | Quire stops at |"
echo "|---|---|---|---|---|"
total_r=0; total_q=0
for unit in "${units[@]}"; do
    IFS='|' read -r rok _ _ <<<"$(run_on start_redis "$unit")"
    IFS='|' read -r qok _ qexc <<<"$(run_on start_quire "$unit")"
    total_r=$((total_r + rok)); total_q=$((total_q + qok))
    pct=$(python3 -c "print(f'{100*$qok/$rok:.0f} %' if $rok else '-')")
    echo "| $unit | $rok | $qok | $pct | ${qexc:-} |"
done
echo "| **all** | $total_r | $total_q | $(python3 -c "print(f'{100*$total_q/$total_r:.0f} %' if $total_r else '-')") | |"
