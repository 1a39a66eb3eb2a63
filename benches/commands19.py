#!/usr/bin/env python3
"""Commands side by side: Debian's redis-server vs Quire.

`--set 19` (default): issue 19's bitmaps, HyperLogLog and GEO, and memory.
`--set 20`: issue 20's SET and GET of random keys with eviction active
(maxmemory 32 MB, allkeys-lru, 256-byte values over 1M keys: every SET
past the first ~100k evicts), and Quire's SET/GET with an ACL user
(key pattern and categories) vs the default user under requirepass.
`--set 18`: issue 18's EVALSHA of a small script, XADD, and XREADGROUP
(one new entry per call from a stream filled beforehand, so every call
delivers and records a pending entry).

The same redis-benchmark invocation (arbitrary-command mode, random
arguments from __rand_int__) against both servers, alternating run by
run; medians of RUNS runs and the Quire/Redis ratio, plus the server CPU
microseconds per request (on 2 cores redis-benchmark itself needs most of
a core when pipelined). Memory: the resident set growth of a fresh
process of each after 1M PFADDs into one HLL and 1M GEOADDs into one
geo set.

Usage: python3 benches/commands19.py [--set 19|18|20] [--runs 3] [--requests 100000]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import Server, memory_case, pipe_load, resp  # noqa: E402

CASES = [
    # __rand_int__ is zero-padded, which no bit offset accepts: random keys.
    ("SETBIT", ["SETBIT", "bm:__rand_int__", "7", "1"]),
    ("BITCOUNT", ["BITCOUNT", "big"]),
    ("PFADD", ["PFADD", "hll", "__rand_int__"]),
    ("PFCOUNT", ["PFCOUNT", "hll"]),
    ("GEOADD", ["GEOADD", "geo", "13.__rand_int__", "38.__rand_int__", "m:__rand_int__"]),
    ("GEOSEARCH", ["GEOSEARCH", "geo", "FROMLONLAT", "13.5", "38.5", "BYRADIUS", "20", "km", "COUNT", "10", "ASC"]),
]


INCR_SCRIPT = "return redis.call('INCR', KEYS[1])"
CASES_18 = [
    ("EVALSHA", ["EVALSHA", "SHA", "1", "counter:__rand_int__"]),
    ("XADD", ["XADD", "xs", "MAXLEN", "~", "100000", "*", "f", "__rand_int__"]),
    ("XREADGROUP", ["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "jobs", ">"]),
]


CASES_20 = [
    ("SET (evicting)", ["SET", "key:__rand_int__", "x" * 256]),
    ("GET (evicting)", ["GET", "key:__rand_int__"]),
]
CASES_ACL = [
    ("SET", ["SET", "app:__rand_int__", "xxx"]),
    ("GET", ["GET", "app:__rand_int__"]),
]


def prepare_20(server):
    server.cli("CONFIG", "SET", "maxmemory", str(32 << 20))
    server.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    # Fill to the limit first, so every measured run evicts.
    bench(server, CASES_20[0][1], 16, 300000)


def acl_throughput(runs, requests):
    """Quire with the default user under requirepass vs an ACL user with
    categories and a key pattern, alternating run by run."""
    quire = Server("quire", 16393)
    samples = {}
    try:
        quire.cli("ACL", "SETUSER", "app", "on", ">apppass", "~app:*", "+@read", "+@write", "-@dangerous")
        quire.cli("CONFIG", "SET", "requirepass", "defpass")
        auth = {"requirepass": ["-a", "defpass"], "acl-user": ["--user", "app", "-a", "apppass"]}
        for run in range(runs):
            for pipeline in (1, 16):
                for name, args in CASES_ACL:
                    for who in ("requirepass", "acl-user") if run % 2 == 0 else ("acl-user", "requirepass"):
                        n = requests * 5 if pipeline > 1 else requests
                        samples.setdefault((name, pipeline, who), []).append(bench(quire, args, pipeline, n, auth[who]))
    finally:
        quire.stop()
    rows = []
    for name, _ in CASES_ACL:
        for pipeline in (1, 16):
            med = lambda who, i: statistics.median(s[i] for s in samples[(name, pipeline, who)])
            r, q = med("requirepass", 0), med("acl-user", 0)
            rows.append((name, pipeline, r, q, q / r, med("requirepass", 1), med("acl-user", 1)))
    return rows


def prepare_18(server, entries):
    """The script loaded, and `entries` stream entries with a group."""
    sha = server.cli("SCRIPT", "LOAD", INCR_SCRIPT).strip()
    pipe_load(server, [resp("XADD", "jobs", "*", "f", str(i)) for i in range(entries)])
    server.cli("XGROUP", "CREATE", "jobs", "g", "0")
    return sha


def bench(server, args, pipeline, requests, auth=()):
    cpu_before = server.cpu_seconds()
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-n", str(requests), "-c", "50",
         "-P", str(pipeline), "-r", "1000000", *auth, "--csv"] + args,
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    cpu = server.cpu_seconds() - cpu_before
    rps = None
    for line in out.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if len(parts) > 1 and parts[0] != "test":
            rps = rps or float(parts[1])
    return rps, cpu * 1e6 / requests


def throughput(runs, requests, cases):
    redis, quire = Server("redis", 16391), Server("quire", 16392)
    samples = {}
    try:
        streams = cases is CASES_18
        for server in (redis, quire):
            if cases is CASES_20:
                prepare_20(server)
                continue
            if streams:
                # Enough entries that every XREADGROUP of every run delivers;
                # the script's SHA is the same on both servers.
                sha = prepare_18(server, runs * requests * 6 + 1000)
                cases = [(n, [sha if a == "SHA" else a for a in args]) for n, args in CASES_18]
                continue
            # Data for the read tests: a 1 Mbit string, HLL and geo members.
            server.cli("SETBIT", "big", "1000000", "1")
            for name, args in CASES:
                if name in ("SETBIT", "PFADD", "GEOADD"):
                    bench(server, args, 16, 100000)
        for run in range(runs):
            for pipeline in (1, 16):
                for name, args in cases:
                    for server in (redis, quire) if run % 2 == 0 else (quire, redis):
                        n = requests * 5 if pipeline > 1 else requests
                        samples.setdefault((name, pipeline, server.kind), []).append(bench(server, args, pipeline, n))
            print(f"run {run + 1}/{runs} done", file=sys.stderr)
    finally:
        redis.stop()
        quire.stop()
    rows = []
    for name, _ in cases:
        for pipeline in (1, 16):
            med = lambda kind, i: statistics.median(s[i] for s in samples[(name, pipeline, kind)])
            r, q = med("redis", 0), med("quire", 0)
            rc, qc = med("redis", 1), med("quire", 1)
            rows.append((name, pipeline, r, q, q / r, rc, qc))
    return rows


def memory():
    n, chunk = 1_000_000, 1000

    def hll(server):
        pipe_load(server, [resp("PFADD", "h", *[f"e{i}" for i in range(s, s + chunk)]) for s in range(0, n, chunk)])

    def geo(server):
        batch = []
        for s in range(0, n, chunk):
            args = ["GEOADD", "g"]
            for i in range(s, s + chunk):
                args += [f"{-170 + (i % 3400) * 0.1:.4f}", f"{-80 + (i // 3400) * 0.5:.4f}", f"m:{i}"]
            batch.append(resp(*args))
        pipe_load(server, batch)

    return [memory_case("HLL after 1M PFADDs", hll), memory_case("1M-member geo set", geo)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=["18", "19", "20"], default="19")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100000)
    a = ap.parse_args()
    cases = {"18": CASES_18, "19": CASES, "20": CASES_20}[a.set]
    rows = throughput(a.runs, a.requests, cases)
    print(f"redis-benchmark -c 50 -n {a.requests} (x5 when -P 16) -r 1000000, medians of {a.runs} runs\n")
    print("| command | -P | redis-server req/s | Quire req/s | Quire/Redis | redis CPU us/req | Quire CPU us/req |")
    print("|---|---|---|---|---|---|---|")
    for name, p, r, q, ratio, rc, qc in rows:
        print(f"| {name} | {p} | {r:,.0f} | {q:,.0f} | {ratio:.2f}x | {rc:.2f} | {qc:.2f} |")
    if a.set == "20":
        print(f"\nQuire alone: the default user (requirepass) vs an ACL user (~app:* +@read +@write -@dangerous)\n")
        print("| command | -P | requirepass req/s | ACL user req/s | ACL/requirepass | requirepass CPU us/req | ACL CPU us/req |")
        print("|---|---|---|---|---|---|---|")
        for name, p, r, q, ratio, rc, qc in acl_throughput(a.runs, a.requests):
            print(f"| {name} | {p} | {r:,.0f} | {q:,.0f} | {ratio:.2f}x | {rc:.2f} | {qc:.2f} |")
    if a.set in ("18", "20"):
        return
    print("\n| data | redis-server RSS growth | Quire RSS growth | Quire/Redis |")
    print("|---|---|---|---|")
    for name, res in memory():
        r = res["redis"][1] - res["redis"][0]
        q = res["quire"][1] - res["quire"][0]
        print(f"| {name} | {r:.1f} MB | {q:.1f} MB | {q / r if r > 0 else float('nan'):.2f}x |")


if __name__ == "__main__":
    main()
