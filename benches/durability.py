#!/usr/bin/env python3
"""Durability benchmarks, side by side with Debian's redis-server.

restart: 1M keys written as SETs of ~1 KB values (about 1 GB of log /
  AOF), the process killed with SIGKILL, then started again on its
  directory: seconds until it answers GET (not -LOADING). Quire replays
  its log (no snapshot was taken); Redis loads its AOF (appendonly yes,
  appendfsync everysec, no RDB preamble rewrite happened meanwhile).

catchup: client p99 latency on a Quire primary while a replica catches up
  about 1 GB of log from the primary's disk (it was stopped while the
  writes happened), against the same load with no catch-up running.
  redis-benchmark GET at -c 10; median of RUNS.

Usage: python3 benches/durability.py [--runs 3] [--keys 1000000] [--value 1000] [restart] [catchup]
Needs: redis-server, redis-cli, redis-benchmark; builds target/release/quire.
"""

import argparse
import csv
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIRE = os.path.join(ROOT, "target", "release", "quire")


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout.strip()


def wait_ready(port, timeout=600):
    """Seconds until GET answers (a reply, not -LOADING or refused)."""
    started = time.time()
    while time.time() - started < timeout:
        r = subprocess.run(["redis-cli", "-p", str(port), "GET", "k:0"], capture_output=True, text=True)
        if r.returncode == 0 and "LOADING" not in r.stdout and "ERR" not in r.stdout:
            return time.time() - started
        time.sleep(0.01)
    raise RuntimeError(f"port {port} not ready")


NICE = []


def start(kind, port, dir, extra=(), nice=False):
    if kind == "redis":
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
               "--auto-aof-rewrite-percentage", "0", "--dir", dir, *extra]
    else:
        cmd = [QUIRE, "server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--dir", dir, *extra]
    if nice:
        cmd = ["nice", "-n", "19", *cmd]
    log = open(os.path.join(dir, f"{kind}.log"), "a")
    return subprocess.Popen(cmd, stdout=log, stderr=log)


def load(port, keys, value_size):
    """SET k:<i> <value> for every key, through redis-cli --pipe."""
    value = "v" * value_size
    path = tempfile.mktemp(suffix=".resp")
    with open(path, "w") as f:
        for i in range(keys):
            k = f"k:{i}"
            f.write(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n${len(value)}\r\n{value}\r\n")
    with open(path) as f:
        subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=f, capture_output=True, check=True, timeout=900)
    os.unlink(path)


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def restart_case(kind, port, keys, value_size):
    dir = tempfile.mkdtemp(prefix=f"durability-{kind}-")
    if kind == "quire":
        # The automatic rewrite would compact the log: measure replay.
        with open(os.path.join(dir, "quire.toml"), "w") as f:
            f.write("auto_aof_rewrite_percentage = 0\n")
        proc = start(kind, port, dir, ["--config", os.path.join(dir, "quire.toml")])
    else:
        proc = start(kind, port, dir)
    wait_ready(port)
    load(port, keys, value_size)
    time.sleep(2.5)  # everysec: let the last fsync happen
    size = dir_bytes(dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = start(kind, port, dir, ["--config", os.path.join(dir, "quire.toml")] if kind == "quire" else [])
    ready = wait_ready(port)
    n = int(cli(port, "DBSIZE") or 0)
    proc.terminate()
    proc.wait()
    shutil.rmtree(dir, ignore_errors=True)
    return ready, size, n


def restart(args):
    print(f"| server | keys | on disk | restart to first GET (median of {args.runs}) |")
    print("|---|---|---|---|")
    for kind, port in (("redis", 16391), ("quire", 16392)):
        samples = [restart_case(kind, port, args.keys, args.value) for _ in range(args.runs)]
        t = statistics.median(s[0] for s in samples)
        print(f"| {kind} | {samples[0][2]:,} | {samples[0][1] / 1e9:.2f} GB | {t:.2f} s |", flush=True)


def bench_get(port, requests):
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-n", str(requests), "-c", "10", "-r", "100000", "--csv"],
                         capture_output=True, text=True, check=True).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    return float(rows[0][1]), float(rows[0][6])  # rps, p99 ms


def catchup(args):
    certs = tempfile.mkdtemp(prefix="durability-certs-")
    subprocess.run([QUIRE, "certs", "init", "--dir", certs, "--node", "p", "--node", "r", "--ip", "127.0.0.1"], check=True, capture_output=True)
    pdir, rdir = tempfile.mkdtemp(prefix="catchup-p-"), tempfile.mkdtemp(prefix="catchup-r-")
    common = ["--certs", certs]
    # A backlog that holds the whole outage, so the replica resumes from
    # the primary's log files instead of taking a full sync.
    with open(os.path.join(pdir, "p.toml"), "w") as f:
        f.write("[repl.backlog]\nsize = 4294967296\n")
    p = start("quire", 16393, pdir, [*common, "--node", "p", "--repl-port", "17393", "--config", os.path.join(pdir, "p.toml")])
    wait_ready(16393)
    results = {"idle": [], "catch-up": []}
    try:
        for run in range(args.runs):
            shutil.rmtree(rdir, ignore_errors=True)
            os.makedirs(rdir)
            r = start("quire", 16394, rdir, [*common, "--node", "r", "--repl-port", "17394", "--replicaof", "127.0.0.1:17393"])
            wait_ready(16394)
            while "master_link_status:up" not in cli(16394, "INFO", "replication"):
                time.sleep(0.05)
            r.send_signal(signal.SIGKILL)
            r.wait()
            load(16393, args.keys, args.value)
            results["idle"].append(bench_get(16393, args.requests))
            r = start("quire", 16394, rdir, [*common, "--node", "r", "--repl-port", "17394", "--replicaof", "127.0.0.1:17393"], nice=args.replica_nice)
            wait_ready(16394)
            while "master_link_status:up" not in cli(16394, "INFO", "replication"):
                time.sleep(0.01)
            results["catch-up"].append(bench_get(16393, args.requests))
            if "sync_partial_ok:0" in cli(16393, "INFO", "stats"):
                print("warning: the replica did not resume partially", file=sys.stderr)
            behind = int(cli(16393, "INFO", "replication").split("master_repl_offset:")[1].split()[0]) - int(cli(16394, "INFO", "replication").split("master_repl_offset:")[1].split()[0])
            r.terminate()
            r.wait()
            print(f"run {run + 1}: replica still {behind / 1e6:.0f} MB behind when the measured load ended", file=sys.stderr)
    finally:
        p.terminate()
        p.wait()
    idle_p99 = statistics.median(s[1] for s in results["idle"])
    busy_p99 = statistics.median(s[1] for s in results["catch-up"])
    print(f"| primary GET load (-c 10, {args.requests} requests) | ops/s | p99 ms |")
    print("|---|---|---|")
    for name in ("idle", "catch-up"):
        print(f"| {name} | {statistics.median(s[0] for s in results[name]):,.0f} | {statistics.median(s[1] for s in results[name]):.3f} |")
    print(f"\np99 during catch-up / without: {busy_p99 / idle_p99:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--value", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--replica-nice", action="store_true", help="run the catching-up replica at nice 19 (as if on another host: it then takes less of the 2 cores)")
    ap.add_argument("cases", nargs="*", default=["restart", "catchup"])
    args = ap.parse_args()
    if not os.path.exists(QUIRE):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    if "restart" in args.cases:
        restart(args)
    if "catchup" in args.cases:
        catchup(args)


if __name__ == "__main__":
    main()
