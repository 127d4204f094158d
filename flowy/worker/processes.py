"""Entry points of decider and worker processes, with graceful shutdown.

SIGTERM and SIGINT stop polling; the decider finishes the decisions in hand
and the worker lets running attempts finish (or releases them), so stopping
a process loses nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from ..backends.base import Backend
from ..declaration import Registry
from .decider import Decider
from .worker import ActivityWorker

log = logging.getLogger("flowy")


def _stop_on_signals(role: str, finishing: str) -> threading.Event:
    """An event that SIGTERM and SIGINT set, logging what the process does then."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s got %s: finishing the %s in hand", role, signal.Signals(signum).name,
                 finishing)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def run_decider(registry: Registry, backend: Backend, *, threads: int = 2,
                cache_size: int = 1000, poll_wait: float = 20) -> None:
    service = Decider(registry, backend, threads=threads, cache_size=cache_size,
                             poll_wait=poll_wait)
    stop = _stop_on_signals("decider", "decisions")
    log.info("decider for %s on %s (%d threads)", ", ".join(sorted(registry.workflows)),
             backend.name, threads)
    service.serve(stop)
    log.info("decider stopped")


def run_worker(registry: Registry, backend: Backend, *, task_lists: list[str] | None = None,
               concurrency: int = 8, poll_wait: float = 20, grace: float = 30.0) -> None:
    worker = ActivityWorker(registry, backend, task_lists=task_lists, concurrency=concurrency,
                            poll_wait=poll_wait, grace=grace)
    worker.serve(_stop_on_signals("worker", "attempts"))
    log.info("worker stopped after %d attempts", worker.completed)
