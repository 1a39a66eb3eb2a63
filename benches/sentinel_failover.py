#!/usr/bin/env python3
"""Failover time under Redis Sentinel: Quire vs redis-server, same sentinels.

For each run: a primary and two replicas (Quire: replicas pointed at the
primary's client port; Redis: redis-server --replicaof), three
redis-sentinel processes (quorum 2, down-after-milliseconds 2000,
failover-timeout 10000), a redis-py Sentinel client writing SET + WAIT 1 in
a loop; the primary is SIGKILLed and the time until the client's first
successful write on the new primary is measured. Runs alternate between
the two systems; medians are reported.

    python3 benches/sentinel_failover.py [RUNS]   (needs target/release/quire)
"""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis
from redis.sentinel import Sentinel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIRE = os.path.join(ROOT, "target", "release", "quire")
DOWN_AFTER_MS = 2000


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, limit=30.0):
    end = time.time() + limit
    while time.time() < end:
        try:
            if check():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


def start_group(kind, tmp):
    ports = [free_port() for _ in range(3)]
    procs = []
    if kind == "quire":
        certs = os.path.join(tmp, "certs")
        subprocess.run([QUIRE, "certs", "init", "--dir", certs, "--node", "n0",
                        "--node", "n1", "--node", "n2", "--ip", "127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL)
        for i, port in enumerate(ports):
            args = [QUIRE, "server", "--port", str(port), "--repl-port",
                    str(free_port(socket.SOCK_DGRAM)), "--dir",
                    os.path.join(tmp, f"d{i}"), "--node", f"n{i}", "--certs",
                    certs, "--save", ""]
            if i:
                args += ["--replicaof", f"127.0.0.1:{ports[0]}"]
            os.makedirs(os.path.join(tmp, f"d{i}"), exist_ok=True)
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
    else:
        for i, port in enumerate(ports):
            d = os.path.join(tmp, f"d{i}")
            os.makedirs(d, exist_ok=True)
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--dir", d, "--save", "", "--appendonly", "yes"]
            if i:
                args += ["--replicaof", "127.0.0.1", str(ports[0])]
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
    for i in (1, 2):
        assert wait_for(lambda: redis.Redis(port=ports[i]).info("replication")
                        .get("master_link_status") == "up"), f"replica {i} not up"
    return ports, procs


def start_sentinels(master_port, tmp):
    ports = [free_port() for _ in range(3)]
    procs = []
    for p in ports:
        conf = os.path.join(tmp, f"s{p}.conf")
        with open(conf, "w") as f:
            f.write(f"port {p}\nbind 127.0.0.1\ndaemonize no\ndir {tmp}\n"
                    f"sentinel monitor m 127.0.0.1 {master_port} 2\n"
                    f"sentinel down-after-milliseconds m {DOWN_AFTER_MS}\n"
                    "sentinel failover-timeout m 10000\n")
        procs.append(subprocess.Popen(["redis-sentinel", conf],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def ready():
        for p in ports:
            s = redis.Redis(port=p)
            if len(s.execute_command("SENTINEL", "REPLICAS", "m")) != 2:
                return False
            if len(s.execute_command("SENTINEL", "SENTINELS", "m")) != 2:
                return False
        return True

    assert wait_for(ready), "sentinels did not discover the group"
    return ports, procs


def one_run(kind):
    tmp = tempfile.mkdtemp(prefix=f"failover-{kind}-")
    procs = []
    try:
        ports, group = start_group(kind, tmp)
        procs += group
        sports, sentinels = start_sentinels(ports[0], tmp)
        procs += sentinels
        sentinel = Sentinel([("127.0.0.1", p) for p in sports], socket_timeout=1.0)
        master = sentinel.master_for("m", socket_timeout=1.0)
        state = {"killed": None, "resumed": None, "acked": 0, "stop": False}

        def writer():
            i = 0
            while not state["stop"]:
                try:
                    began = time.time()
                    master.set(f"w:{i}", i)
                    master.execute_command("WAIT", 1, 500)
                    state["acked"] += 1
                    # Only a write begun after the primary was dead counts.
                    if state["killed"] and began > state["killed"] and not state["resumed"]:
                        state["resumed"] = time.time()
                    i += 1
                except Exception:
                    time.sleep(0.02)

        t = threading.Thread(target=writer)
        t.start()
        assert wait_for(lambda: state["acked"] > 200)
        group[0].send_signal(signal.SIGKILL)
        group[0].wait()
        state["killed"] = time.time()
        ok = wait_for(lambda: state["resumed"] is not None, 60)
        state["stop"] = True
        t.join()
        return (state["resumed"] - state["killed"]) if ok else float("nan")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    results = {"redis-server": [], "quire": []}
    for _ in range(runs):
        for kind in ("redis-server", "quire"):
            secs = one_run(kind)
            results[kind].append(secs)
            print(f"{kind}: writes resumed {secs:.2f} s after the kill", flush=True)
    print()
    print(f"down-after-milliseconds {DOWN_AFTER_MS}, quorum 2 of 3 sentinels, {runs} runs each")
    print("| system | median s | min–max s |")
    print("|---|---|---|")
    for kind, xs in results.items():
        print(f"| {kind} | {statistics.median(xs):.2f} | {min(xs):.2f}–{max(xs):.2f} |")
    q, r = statistics.median(results["quire"]), statistics.median(results["redis-server"])
    print(f"\nratio quire / redis-server: {q / r:.2f}x")


if __name__ == "__main__":
    main()
