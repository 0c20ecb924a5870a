"""gunicorn settings of the production web process (scripts/serve.sh), behind the buffering nginx of
deploy/nginx/ (docs/operations.md, "Production web"). Process configuration only, from the
environment; the application's settings are in apiplatform/settings.py.

Metrics (GET /metrics, docs/operations.md "Metrics"): every worker writes its counters to files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape adds them up. Set it to a directory only this gunicorn
writes (e.g. ``/run/candlestack/prometheus``); unset, a fresh temporary directory is made for this
run (and removed at exit). ``on_starting`` empties the directory (values of an earlier run must not
count), ``child_exit`` marks a dead worker's gauges dead (its counters keep counting in the total).
It must be in the environment before prometheus-client is imported: hence here, not in settings."""

import os
import shutil
import tempfile

_made_multiproc_dir = ""
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _made_multiproc_dir = tempfile.mkdtemp(prefix="candlestack-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _made_multiproc_dir

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")  # loopback: only nginx talks to gunicorn
workers = int(os.environ.get("WEB_WORKERS", "4"))
threads = int(os.environ.get("WEB_THREADS", "1"))  # > 1: gthread workers
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))  # a worker stuck longer is restarted
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "20"))
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))  # 0: never recycle
max_requests_jitter = max_requests // 10
preload_app = True  # load once: a start-up error (e.g. static files not collected) stops the start
forwarded_allow_ips = os.environ.get("WEB_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"


def on_starting(server):
    """In the master, before anything is loaded: start the metrics of this run from nothing."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def child_exit(server, worker):
    """A worker exited: its live gauges no longer count (prometheus-client multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """The master stops: remove the metrics directory this configuration made for the run."""
    if _made_multiproc_dir:
        shutil.rmtree(_made_multiproc_dir, ignore_errors=True)


def when_ready(server):
    """In the master, after the application was loaded and before the workers fork: build the
    OpenAPI document once, so that no worker spends a request on it (apiplatform/apidocs.py)."""
    from apiplatform import apidocs

    apidocs.warm()
