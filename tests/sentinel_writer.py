"""Writes through redis-py's Sentinel client until told to stop.

Usage: sentinel_writer.py SENTINEL_PORT[,PORT...] MASTER_NAME STOP_FILE

Each write is `SET w:<i> <i>` followed by `WAIT 1 500`; a write whose WAIT
answered >= 1 is printed as `acked <i>`. A failed call prints
`error <unix ms> <reason>` (once per outage) and the first success after one
prints `resumed <unix ms>`. The script exits when STOP_FILE exists.
"""

import os
import sys
import time

from redis.sentinel import Sentinel
import redis


def main():
    ports = [int(p) for p in sys.argv[1].split(",")]
    name, stop = sys.argv[2], sys.argv[3]
    sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=1.0)
    master = sentinel.master_for(name, socket_timeout=1.0, retry_on_timeout=False)
    i, failing = 0, False
    while not os.path.exists(stop):
        try:
            master.set(f"w:{i}", i)
            acked = master.execute_command("WAIT", 1, 500)
            if failing:
                print(f"resumed {int(time.time() * 1000)}", flush=True)
                failing = False
            if acked >= 1:
                print(f"acked {i}", flush=True)
            i += 1
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.ReadOnlyError, redis.exceptions.ResponseError) as e:
            if not failing:
                reason = str(e).replace("\n", " ")
                print(f"error {int(time.time() * 1000)} {reason}", flush=True)
                failing = True
            time.sleep(0.02)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
