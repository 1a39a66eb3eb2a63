"""python-rq against Quire: jobs enqueued, run by a worker, results stored
(rq keeps them in a stream inside MULTI), a failing job recorded as failed.
Usage: rq_run.py PORT; prints "ok"."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uuid

import redis
from rq import Queue, SimpleWorker
from rq.job import Job

import rq_jobs

r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
q = Queue("q-" + uuid.uuid4().hex, connection=r)
jobs = [q.enqueue(rq_jobs.add, i, 1) for i in range(10)]
bad = q.enqueue(rq_jobs.fail)
SimpleWorker([q], connection=r).work(burst=True)
for i, job in enumerate(jobs):
    job = Job.fetch(job.id, connection=r)
    assert job.get_status() == "finished", job.get_status()
    assert job.return_value() == i + 1, job.return_value()
bad = Job.fetch(bad.id, connection=r)
assert bad.get_status() == "failed", bad.get_status()
assert "this job fails" in (bad.latest_result().exc_string or "")
assert q.failed_job_registry.count == 1
print("ok")
