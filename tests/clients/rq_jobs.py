"""Jobs the python-rq test runs (importable by the worker)."""


def add(a, b):
    return a + b


def fail():
    raise ValueError("this job fails")
