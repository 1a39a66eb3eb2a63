#!/usr/bin/env bash
# WAN benchmark suite: lag, bytes on the wire, CPU and catch-up over
# emulated links, Quire next to Redis (redis-server from Debian's package).
# Default suite: under 5 minutes. LONG=1 adds the 120 s outage run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
B=target/release/quire
mkdir -p benches/out
# The three standard profiles, fast path on its default (auto).
$B bench wan --profile transatlantic,transpacific,lossy --rate 10000 --seconds 10 \
    --json benches/out/wan.json --plot benches/out/wan-lag.svg
# The fast path: 40 ms one-way, 0.5 % loss, 100 Mbit/s; copies off vs auto.
$B bench wan --profile transatlantic-lossy --datagrams off,auto --rate 10000 --seconds 10 \
    --json benches/out/wan-fastpath.json --plot benches/out/wan-fastpath.svg
# ...and at 2 % loss.
$B bench wan --profile transatlantic-lossy --loss 0.02 --datagrams off,auto --rate 10000 --seconds 10 \
    --no-redis --json benches/out/wan-fastpath-2pct.json
# A 15 s outage: catch-up with copies off vs auto, and Redis.
$B bench wan --profile transatlantic --datagrams off,auto --rate 10000 --seconds 30 --outage 15 \
    --json benches/out/wan-outage15.json --plot benches/out/wan-outage15.svg
if [ "${LONG:-0}" = 1 ]; then
    $B bench wan --profile transatlantic --rate 10000 --seconds 180 --outage 120 --no-redis \
        --json benches/out/wan-outage120.json --plot benches/out/wan-outage120.svg
fi
