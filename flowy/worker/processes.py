"""Entry points of decider and worker processes, with graceful shutdown.

SIGTERM and SIGINT stop polling; the decider finishes the decisions in hand
and the worker lets running attempts finish (or releases them), so stopping
a process loses nothing.

A process started by another that names itself in ``FLOWY_PARENT_PID``
(``flowy dev`` and ``flowy demo`` do) stops the same way when that parent
dies, even by SIGKILL, rather than go on serving alone.  Before it serves,
a process checks that the table and the queues it polls exist, so that a
wrong namespace or region ends it with one line instead of a retry loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..backends.base import DECISIONS, TIMERS, task_queue
from ..core.errors import ConfigurationError
from ..declaration import Registry
from .decider import Decider
from .worker import ActivityWorker

if TYPE_CHECKING:
    from ..backends.aws import AWSBackend

log = logging.getLogger("flowy")

PARENT_VARIABLE = "FLOWY_PARENT_PID"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_CHECK_INTERVAL = 1.0  # seconds between looks at the parent, where prctl is missing


def stop_on_signals(role: str, then: str) -> threading.Event:
    """An event that SIGTERM and SIGINT set, logging that ``role`` does ``then``."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s got %s: %s", role, signal.Signals(signum).name, then)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def stop_with_parent(stop: threading.Event) -> None:
    """Set ``stop`` when the process named by ``FLOWY_PARENT_PID`` dies.

    On Linux the kernel sends this process SIGTERM then (``PR_SET_PDEATHSIG``,
    set here in the child: ``preexec_fn`` is not safe with threads), which
    the handler of :func:`stop_on_signals` turns into ``stop``; elsewhere a
    daemon thread watches the parent pid.  Either way, a parent that died
    before that was set up is caught by comparing it with ``os.getppid()``.
    """
    value = os.environ.pop(PARENT_VARIABLE, None)  # not inherited by this one's children
    if not value:
        return
    try:
        parent = int(value)
    except ValueError:
        raise ConfigurationError(f"{PARENT_VARIABLE} must be the pid of the parent process, "
                                 f"got {value!r}: unset it") from None
    if not _set_parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(parent, stop),
                         name="flowy-parent-watch", daemon=True).start()
    if os.getppid() != parent:
        log.info("parent process %d is gone: stopping", parent)
        stop.set()


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` when the parent dies; False where it can't."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0)
    except (OSError, AttributeError):  # no libc to load, or one without prctl
        return False


def _watch_parent(parent: int, stop: threading.Event) -> None:
    # An orphan is adopted by init (or a subreaper): its parent pid changes.
    while not stop.wait(PARENT_CHECK_INTERVAL):
        if os.getppid() != parent:
            log.info("parent process %d is gone: stopping", parent)
            stop.set()


def _start(role: str, then: str, backend: AWSBackend, queues: Iterable[str]
           ) -> threading.Event:
    """What every process does before it serves: handle signals, follow its
    parent, say where it works, and check that the resources it needs exist."""
    stop = stop_on_signals(role, then)
    stop_with_parent(stop)
    log.info("%s on %s", role, backend.settings.location)
    backend.check_resources(queues)
    return stop


def run_decider(registry: Registry, backend: AWSBackend, *, threads: int = 2,
                cache_size: int = 1000, poll_wait: float = 20) -> None:
    stop = _start("decider", "finishing the decisions in hand", backend, [DECISIONS, TIMERS])
    service = Decider(registry, backend, threads=threads, cache_size=cache_size,
                      poll_wait=poll_wait)
    log.info("decider for %s on %s (%d threads)", ", ".join(sorted(registry.workflows)),
             backend.name, threads)
    service.serve(stop)
    log.info("decider stopped")


def run_worker(registry: Registry, backend: AWSBackend, *,
               task_lists: list[str] | None = None, concurrency: int = 8,
               poll_wait: float = 20, grace: float = 30.0) -> None:
    worker = ActivityWorker(registry, backend, task_lists=task_lists, concurrency=concurrency,
                            poll_wait=poll_wait, grace=grace)
    stop = _start("worker", "finishing the attempts in hand", backend,
                  [task_queue(task_list) for task_list in worker.task_lists])
    worker.serve(stop)
    log.info("worker stopped after %d attempts", worker.completed)
