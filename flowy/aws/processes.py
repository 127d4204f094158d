"""Entry points of the decider and worker processes, with graceful shutdown.

SIGTERM and SIGINT stop polling; the decider finishes the decisions in hand
and the worker lets running attempts finish (or releases them), so stopping
a process loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

from .backend import Backend, client_config
from .decider import DeciderService
from .definitions import Registry
from .metrics import count_requests
from .settings import AWSSettings
from .worker import ActivityWorker

log = logging.getLogger("flowy.aws")


def run_decider(registry: Registry, settings: AWSSettings, *, threads: int = 2,
                cache_size: int = 1000, poll_wait: int = 20) -> None:
    backend = Backend.connect(settings)
    service = DeciderService(registry, backend.store, backend.queues, backend.payloads,
                             threads=threads, cache_size=cache_size, poll_wait=poll_wait)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("decider got %s: finishing the decisions in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("decider for %s in namespace %s (%d threads)",
             ", ".join(sorted(registry.workflows)), settings.namespace, threads)
    service.serve(stop)
    log.info("decider stopped")


def run_worker(registry: Registry, settings: AWSSettings, *,
               task_lists: list[str] | None = None, concurrency: int = 8, poll_wait: int = 20,
               grace: float = 30.0) -> None:
    asyncio.run(_serve_worker(registry, settings, task_lists, concurrency, poll_wait, grace))


async def _serve_worker(registry: Registry, settings: AWSSettings,
                        task_lists: list[str] | None, concurrency: int, poll_wait: int,
                        grace: float) -> None:
    import aioboto3

    backend = Backend.connect(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with aioboto3.Session().client("sqs", config=client_config(concurrency + 10),
                                         **settings.client_kwargs()) as sqs:
        count_requests(sqs)
        worker = ActivityWorker(registry, backend.store, backend.queues, backend.payloads, sqs,
                                task_lists=task_lists, concurrency=concurrency,
                                poll_wait=poll_wait, grace=grace)
        await worker.serve(stop)
    log.info("worker stopped after %d attempts", worker.completed)
