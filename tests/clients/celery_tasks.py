"""The Celery app the Celery test runs: Quire as broker and result backend."""
import os

from celery import Celery

url = os.environ["QUIRE_URL"]
app = Celery("celery_tasks", broker=url, backend=url)
app.conf.broker_connection_retry_on_startup = True


@app.task
def add(a, b):
    return a + b
