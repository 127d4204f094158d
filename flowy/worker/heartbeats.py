"""Heartbeats of running attempts: from ``flowy.heartbeat()`` to the store.

An activity calls :func:`flowy.heartbeat` in whatever thread or process runs
it; the call reaches the attempt's :class:`HeartbeatRecorder` directly (a
thread of this process) or through a managed queue that a thread of this
process pumps (a process pool).  The recorder writes the latest beat to the
store at most once per quarter of the heartbeat timeout, to bound the
writes; a beat that comes sooner is written at the end of that quarter (the
latest details win), so the last details are never lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from types import TracebackType
from typing import Any

from ..backends.base import Backend
from .activity import Beat, Reporter

log = logging.getLogger("flowy.worker")


class HeartbeatRecorder:
    """Records one attempt's heartbeats (thread-safe)."""

    def __init__(self, backend: Backend, run_id: str, attempt: str,
                 heartbeat: float | None) -> None:
        self._backend = backend
        self._run_id, self._attempt = run_id, attempt
        self._interval = (heartbeat or 60.0) / 4
        self._last = -self._interval
        self._pending: str | None = None
        self._flush: threading.Timer | None = None
        self._lock = threading.Lock()

    def put(self, message: Beat) -> None:
        clock = self._backend.clock
        with self._lock:
            self._pending = message[1]
            if self._flush is not None:
                return  # the end of this quarter writes it
            wait = self._last + self._interval - clock.now()
            if wait > 0:
                self._flush = threading.Timer(wait, self._record)
                self._flush.daemon = True
                self._flush.start()
                return
        self._record()

    def _record(self) -> None:
        with self._lock:
            self._flush = None
            self._last = self._backend.clock.now()
            details = self._pending
        try:
            self._backend.store.record_beat(self._run_id, self._attempt, self._last, details)
        except Exception as exc:  # noqa: BLE001 - the next beat tries again
            log.warning("recording a heartbeat of %s failed: %s",
                        self._attempt.partition("@")[0], exc)


class Reports:
    """How running attempts' heartbeats reach their recorders: directly from
    this process's threads, or, for a process pool, through a managed queue."""

    def __init__(self, executor: Executor | None) -> None:
        self._by_process = isinstance(executor, ProcessPoolExecutor)
        self._recorders: dict[str, Reporter] = {}
        self._manager: Any = None
        self._queue: Any = None
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        if self._by_process:
            self._manager = multiprocessing.Manager()
            self._queue = self._manager.Queue()
            self._pump = threading.Thread(target=self._run_pump, name="flowy-reports",
                                          daemon=True)
            self._pump.start()

    def recording(self, token: str, recorder: Reporter | None) -> _Recording:
        """A context giving the reporter to hand the attempt ``token``."""
        return _Recording(self, token, recorder)

    def _run_pump(self) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            recorder = self._recorders.get(message[0])
            if recorder is not None:
                recorder.put(message)

    def close(self) -> None:
        if self._pump is not None:
            self._queue.put(None)
            self._pump.join()
            self._manager.shutdown()


class _Recording:
    """The reporter of one running attempt, registered while it runs."""

    def __init__(self, reports: Reports, token: str, recorder: Reporter | None) -> None:
        self._reports, self._token, self._recorder = reports, token, recorder

    def __enter__(self) -> Reporter:
        reports = self._reports
        if self._recorder is not None:
            reports._recorders[self._token] = self._recorder
        if reports._by_process:
            return reports._queue  # type: ignore[no-any-return]
        return self._recorder or _IGNORED

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._reports._recorders.pop(self._token, None)


class _Ignored:
    """The reporter of an attempt that nothing watches."""

    def put(self, message: Beat) -> None:
        pass


_IGNORED = _Ignored()
