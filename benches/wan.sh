#!/usr/bin/env bash
# WAN benchmark suite: lag, bytes on the wire, CPU and catch-up over
# emulated links, Quire next to Redis (redis-server from Debian's package).
# Default suite: well under 5 minutes. LONG=1 adds the 120 s outage run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
B=target/release/quire
mkdir -p benches/out
$B bench wan --profile transatlantic,transpacific,lossy --rate 10000 --seconds 10 \
    --json benches/out/wan.json --plot benches/out/wan-lag.svg
$B bench wan --profile transatlantic --rate 10000 --seconds 30 --outage 15 \
    --json benches/out/wan-outage15.json --plot benches/out/wan-outage15.svg
if [ "${LONG:-0}" = 1 ]; then
    $B bench wan --profile transatlantic --rate 10000 --seconds 180 --outage 120 --no-redis \
        --json benches/out/wan-outage120.json --plot benches/out/wan-outage120.svg
fi
