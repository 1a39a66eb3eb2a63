#!/usr/bin/env python3
"""Side-by-side throughput and memory: Debian's redis-server vs Quire.

Runs the same redis-benchmark invocation against both servers, alternating
between them run by run so machine noise hits both alike, and reports the
median of RUNS runs and the Quire/Redis ratio. Memory is the resident set
size (VmRSS) of a fresh process of each after loading the same data.

Usage: python3 benches/compare.py [--runs 5] [--requests 200000] [--skip-memory]
       [--tests set,incr,lpush] [--appendonly yes --appendfsync everysec|always|no]
Durability settings apply to both servers alike (default: appendonly no on
both, the in-memory comparison; Quire's own default is appendonly yes,
appendfsync everysec, as `--appendonly yes --appendfsync everysec` measures).
Pipelined runs (-P 16) use 10x the requests, so each lasts about as long
as an unpipelined one (at 100k requests they would last ~70 ms: noise).
Each test runs on its own, and the server's CPU time (user + system, from
/proc) is read around it: on a 2-core machine redis-benchmark itself needs
most of a core at -P 16, so both servers can end up at the client's limit;
CPU microseconds per request then say which server does the work cheaper.
Needs: redis-server and redis-benchmark (apt-get install redis-server redis-tools).
"""

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIRE = os.path.join(ROOT, "target", "release", "quire")
TESTS = "set,get,incr,mset,lpush,lpop,sadd,hset,zadd"
DURABILITY = {"appendonly": "no", "appendfsync": "everysec"}


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


class Server:
    def __init__(self, kind, port):
        self.kind, self.port = kind, port
        self.dir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        if kind == "redis":
            cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", DURABILITY["appendonly"],
                   "--appendfsync", DURABILITY["appendfsync"], "--enable-debug-command", "yes", "--dir", self.dir]
        else:
            cmd = [QUIRE, "server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", DURABILITY["appendonly"],
                   "--appendfsync", DURABILITY["appendfsync"], "--dir", self.dir]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def cli(self, *args, stdin=None):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], input=stdin, capture_output=True, text=True, check=True).stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def bench(server, test, pipeline, requests):
    """One redis-benchmark test: (requests/s, server CPU us per request,
    client CPU share of the run's wall time)."""
    cpu_before, started = server.cpu_seconds(), time.time()
    client_before = os.times()
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-t", test, "-n", str(requests), "-c", "50", "-P", str(pipeline), "--csv"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    wall = time.time() - started
    client_after = os.times()
    server_cpu = server.cpu_seconds() - cpu_before
    client_cpu = (client_after.children_user + client_after.children_system) - (client_before.children_user + client_before.children_system)
    rps = None
    for row in csv.reader(io.StringIO(out)):
        if row and row[0] != "test":
            rps = rps or float(row[1])
    return rps, server_cpu * 1e6 / requests, client_cpu / wall


def throughput(runs, requests):
    redis, quire = Server("redis", 16379), Server("quire", 16380)
    samples = {}
    try:
        for run in range(runs):
            for pipeline in (1, 16):
                for test in TESTS.split(","):
                    for server in (redis, quire) if run % 2 == 0 else (quire, redis):
                        n = requests * 10 if pipeline > 1 else requests
                        samples.setdefault((test.upper(), pipeline, server.kind), []).append(bench(server, test, pipeline, n))
            print(f"run {run + 1}/{runs} done", file=sys.stderr)
    finally:
        redis.stop()
        quire.stop()
    rows = []
    for test in sorted({t for t, _, _ in samples}):
        for pipeline in (1, 16):
            med = lambda kind, i: statistics.median(s[i] for s in samples[(test, pipeline, kind)])
            r, q = med("redis", 0), med("quire", 0)
            rc, qc = med("redis", 1), med("quire", 1)
            client = med("redis", 2), med("quire", 2)
            rows.append((test, pipeline, r, q, q / r, rc, qc, rc / qc, client))
    return rows


def pipe_load(server, commands):
    data = "".join(commands)
    server.cli("--pipe", stdin=data)


def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        a = str(a)
        out += f"${len(a.encode())}\r\n{a}\r\n"
    return out


def memory_case(name, loader):
    result = {}
    for kind, port in (("redis", 16381), ("quire", 16382)):
        server = Server(kind, port)
        try:
            before = server.rss_mb()
            loader(server)
            time.sleep(0.5)
            result[kind] = (before, server.rss_mb())
        finally:
            server.stop()
    return name, result


def memory():
    members = 1_000_000
    chunk = 1000

    def strings(server):
        server.cli("DEBUG", "POPULATE", str(members))

    def collection(cmd, key, fmt):
        def load(server):
            batch = []
            for start in range(0, members, chunk):
                args = [cmd, key]
                for i in range(start, start + chunk):
                    args.extend(fmt(i))
                batch.append(resp(*args))
            pipe_load(server, batch)
        return load

    cases = [
        ("1M string keys (DEBUG POPULATE)", strings),
        ("1M-member set", collection("SADD", "s", lambda i: [f"member:{i}"])),
        ("1M-field hash", collection("HSET", "h", lambda i: [f"field:{i}", f"value:{i}"])),
        ("1M-member zset", collection("ZADD", "z", lambda i: [i, f"member:{i}"])),
    ]
    return [memory_case(name, loader) for name, loader in cases]


def main():
    global TESTS
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--tests", default=TESTS)
    ap.add_argument("--appendonly", choices=["yes", "no"], default="no")
    ap.add_argument("--appendfsync", choices=["always", "everysec", "no"], default="everysec")
    args = ap.parse_args()
    TESTS = args.tests
    DURABILITY.update(appendonly=args.appendonly, appendfsync=args.appendfsync)
    if not os.path.exists(QUIRE):
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    print(f"redis-server {redis_version.removeprefix('v=')} vs quire, {os.cpu_count()} cores, "
          f"redis-benchmark -t {TESTS} -n {args.requests} (-P 16: {args.requests * 10}) -c 50, median of {args.runs} runs, "
          f"appendonly {args.appendonly} appendfsync {args.appendfsync} on both\n")
    print("| test | pipeline | redis ops/s | quire ops/s | quire/redis | redis CPU us/op | quire CPU us/op | CPU redis/quire | client CPU (redis, quire runs) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for test, pipeline, r, q, ratio, rc, qc, cpu_ratio, client in throughput(args.runs, args.requests):
        print(f"| {test} | -P {pipeline} | {r:,.0f} | {q:,.0f} | {ratio:.2f}x | {rc:.2f} | {qc:.2f} | {cpu_ratio:.2f}x | {client[0]:.0%}, {client[1]:.0%} |")
    if not args.skip_memory:
        print("\n| dataset | redis RSS MB | quire RSS MB | quire/redis |")
        print("|---|---|---|---|")
        for name, result in memory():
            r, q = result["redis"][1], result["quire"][1]
            print(f"| {name} | {r:.1f} | {q:.1f} | {q / r:.2f}x |")


if __name__ == "__main__":
    main()
