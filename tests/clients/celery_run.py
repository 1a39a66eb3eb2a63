"""Celery against Quire: a worker (solo pool) takes tasks from the Redis
broker and stores results in the Redis backend (its EVALSHA-guarded
mutexes, pub/sub result notification). Usage: celery_run.py PORT."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
os.environ["QUIRE_URL"] = f"redis://127.0.0.1:{sys.argv[1]}/0"
sys.path.insert(0, here)
worker = subprocess.Popen(
    [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool=solo",
     "--concurrency=1", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
     "--without-heartbeat"],
    cwd=here,
    env=os.environ,
)
try:
    import celery_tasks

    results = [celery_tasks.add.delay(i, 2) for i in range(5)]
    assert [r.get(timeout=60) for r in results] == [i + 2 for i in range(5)]
    assert all(r.status == "SUCCESS" for r in results)
    print("ok")
finally:
    worker.terminate()
    worker.wait(20)
