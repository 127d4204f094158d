"""Starting runs and looking at them: the user's side of the engine, on any backend."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable
from typing import Any

from .backends.base import Backend
from .codec import DEFAULT_CODEC
from .core.codec import Codec, decode_error, decode_text
from .core.errors import ConfigurationError, EncodeError, RunNotFound, TaskError
from .core.events import (
    CancelRequested,
    Event,
    SignalReceived,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    WorkflowFailed,
)
from .core.protocol import child_run_id
from .core.redaction import printable
from .core.runs import COMPLETED, FAILED, OPEN, RESTARTED, RunRecord
from .core.spec import MAX_IDENTIFIER, check_name
from .declaration import Registry, Workflow
from .tracing import Trace, build_run_trace
from .worker.inbox import notify, start_run, tell


class FlowyClient:
    """Start runs, wait for them, list them, signal or cancel them, read their
    histories and traces.

    ``backend`` is where the runs live: by default the AWS namespace that
    ``settings`` (or the environment) names.  ``registry``: the workflows
    whose results this client decodes with their own codecs (besides those it
    starts); others decode as JSON.  Errors and heartbeat details that a
    workflow's codec encoded (see :class:`flowy.PayloadCodec`) are decoded the
    same way, in what :meth:`status`, :meth:`history`, :meth:`trace` and
    :meth:`wait` return.  ``new_run_id`` makes the id of each run
    started (random; the deterministic simulation derives them from its seed).
    """

    def __init__(self, backend: Backend | None = None, *, settings: Any = None,
                 registry: Registry | None = None,
                 new_run_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        if backend is None:
            from .backends.aws import connect

            backend = connect(settings)
        self.backend = backend
        self.store = backend.store
        self._new_run_id = new_run_id
        self.registry = registry if registry is not None else Registry(source="this client")

    def start(self, workflow: Workflow, *args: Any, workflow_id: str | None = None,
              **kwargs: Any) -> RunHandle:
        """Start a run of ``workflow`` with these arguments and return at once.

        With ``workflow_id`` (1 to 256 characters, without spaces or control
        characters), at most one run ever starts for that id: starting it
        again returns the run that the first start made.
        """
        if workflow_id is not None:
            check_name("workflow_id", workflow_id, limit=MAX_IDENTIFIER)
        encoded = workflow.codec.encode([list(args), kwargs])  # EncodeError names the culprit
        ref = self.registry.add(workflow)
        run_id = self._new_run_id()
        record = RunRecord(run_id, ref, started_at=self.backend.clock.now(),
                           input=encoded, workflow_id=workflow_id)
        if workflow_id is not None:
            owner = self.store.claim_workflow_id(workflow_id, run_id)
            # An earlier start of this id may have died half-way: finish it
            # (every step is idempotent), but never start a second run.
            record = self.store.get_run(owner) or dataclasses.replace(record, run_id=owner)
            if record.status != OPEN:
                return RunHandle(self, owner)
        notify(self.backend, [start_run(self.backend, record)])
        return RunHandle(self, record.run_id)

    def status(self, run_id: str) -> RunRecord:
        """The run's record, its error decoded by its workflow's codec."""
        record = self.store.get_run(run_id)
        if record is None:
            raise RunNotFound(f"no run {printable(run_id)} in {self.backend.name}; check the "
                              "id (and FLOWY_NAMESPACE)")
        if record.error is not None:
            record = dataclasses.replace(record, error=decode_error(self._codec(record),
                                                                    record.error))
        return record

    def last_run(self, run_id: str) -> RunRecord:
        """The run's record, or that of the run it restarted as (continue-as-new)."""
        record = self.status(run_id)
        while record.status == RESTARTED and record.next_run is not None:
            record = self.status(record.next_run)
        return record

    def run_ids(self, run_id: str) -> list[str]:
        """The ids of the run and of the runs it restarted as, in order."""
        ids = [run_id]
        record = self.status(run_id)
        while record.status == RESTARTED and record.next_run is not None:
            ids.append(record.next_run)
            record = self.status(record.next_run)
        return ids

    def signal(self, run_id: str, name: str, value: Any = None, *,
               signal_id: str | None = None) -> bool:
        """Send the run (or the run it restarted as) a signal: its workflow's
        next call of the ``conf_signal(name)`` dependency finishes with
        ``value``.  Sending the same ``signal_id`` again is a no-op.  Returns
        False, sending nothing, if the run had already closed."""
        return self._tell(run_id, lambda record: SignalReceived(
            name, self._codec(record).encode(value), signal_id or uuid.uuid4().hex,
            at=self.backend.clock.now()))

    def cancel(self, run_id: str, reason: str = "") -> bool:
        """Ask the run (or the run it restarted as) to stop: it fails with
        :class:`flowy.RunCancelled`, and so do its open sub-workflows.
        Tasks already queued or running still run, and their results are
        recorded as late.  Returns False, changing nothing, if the run had
        already closed."""
        return self._tell(run_id, lambda record: CancelRequested(
            reason, at=self.backend.clock.now()))

    def _tell(self, run_id: str,
              fact_for: Callable[[RunRecord], CancelRequested | SignalReceived]) -> bool:
        """Put a fact in the inbox of the run's newest open run; False if closed."""
        record = self.last_run(run_id)
        if record.status != OPEN:
            return False
        notify(self.backend, [tell(self.backend, record.run_id, fact_for(record))])
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> Any:
        """The run's result (following restarts); raises TaskError if it failed
        and TimeoutError if it is not done within ``timeout`` seconds."""
        clock = self.backend.clock
        deadline = None if timeout is None else clock.now() + timeout
        while True:
            record = self.last_run(run_id)
            if record.status == COMPLETED:
                return self._decode_result(record)
            if record.status == FAILED:
                assert record.error is not None
                raise TaskError.from_info(record.error)
            remaining = 60.0 if deadline is None else deadline - clock.now()
            if remaining <= 0:
                raise TimeoutError(f"run {run_id} is still {record.status} after {timeout} s")
            self.store.wait_closed(record.run_id, remaining)

    def _decode_result(self, record: RunRecord) -> Any:
        try:
            return self._codec(record).decode(record.result or "null")
        except EncodeError as exc:
            if record.workflow in self.registry.workflows:
                raise
            raise EncodeError(f"{exc}. This client does not know workflow {record.workflow}, "
                              "so it decodes its result with the default codec: give it the "
                              "declarations (FlowyClient(registry=load_registry(DEFS)), or "
                              "flowy wait --definitions DEFS)") from exc

    def _codec(self, record: RunRecord) -> Codec:
        workflow = self.registry.workflows.get(record.workflow)
        return workflow.codec if workflow is not None else DEFAULT_CODEC

    def list_runs(self, workflow: str | None = None, status: str | None = None,
                  limit: int = 50) -> list[RunRecord]:
        """Runs, newest first; ``workflow`` is a name or ``name@version``.  For one
        workflow, only as many are read as ``limit`` needs."""
        runs = self.store.runs(workflow, status)
        if workflow is not None:
            return list(itertools.islice(runs, limit))
        return sorted(runs, key=lambda r: r.started_at, reverse=True)[:limit]

    def purge(self, closed_before: float, workflow: str | None = None) -> list[str]:
        """Delete the runs (of ``workflow``, or all) that closed before
        ``closed_before`` (epoch seconds), with their histories, and free their
        workflow ids; returns their ids.  Open runs are never touched."""
        purged = []
        for record in self.store.runs(workflow):
            if (record.status != OPEN and record.closed_at is not None
                    and record.closed_at < closed_before):
                self.store.delete_run(record)
                purged.append(record.run_id)
        return purged

    def purge_orphans(self) -> int:
        """Delete the items that belong to no run (facts or messages for runs
        that never existed, the leftovers of a deletion cut short); how many.
        A scan of the whole table's keys on AWS: run it as an operator's chore."""
        return sum(self.store.delete_orphan(run_id) for run_id in self.store.orphans())

    def history(self, run_id: str) -> list[Event]:
        """The run's events, with the errors and heartbeat details in them
        decoded by its workflow's codec."""
        codec = self._codec(self.status(run_id))
        return [_decoded(codec, e) for batch in self.store.read_batches(run_id)
                for e in batch.events]

    def trace(self, run_id: str) -> Trace:
        """The trace of the run and the runs it restarted as, sub-workflows nested."""
        runs = []
        for record_id in self.run_ids(run_id):
            record = self.status(record_id)
            history = self.history(record_id)
            children = {e.key: self.trace(child_run_id(record_id, e.key))
                        for e in history
                        if isinstance(e, TaskScheduled) and e.kind == "workflow"
                        and self.store.get_run(child_run_id(record_id, e.key))}
            runs.append(build_run_trace(record.name, record_id, history, children))
        return Trace(runs=tuple(runs))


def _decoded(codec: Codec, event: Event) -> Event:
    """``event`` with what ``codec`` encoded beside payloads decoded."""
    if isinstance(event, (TaskFailed, WorkflowFailed)):
        return dataclasses.replace(event, error=decode_error(codec, event.error))
    if isinstance(event, TaskTimedOut) and event.details is not None:
        return dataclasses.replace(event, details=decode_text(codec, event.details))
    return event


class RunHandle:
    """A started run, followed across its restarts: its status, result and trace."""

    def __init__(self, client: FlowyClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @property
    def run_ids(self) -> list[str]:
        """The ids of this run and of the runs it restarted as, in order."""
        return self.client.run_ids(self.run_id)

    def status(self) -> str:
        return self.client.last_run(self.run_id).status

    def done(self) -> bool:
        return self.status() in (COMPLETED, FAILED)

    def result(self, timeout: float | None = None, *, wait_for_tasks: bool = False) -> Any:
        """The run's result; raises TaskError if it failed, TimeoutError if not
        done in time.  With ``wait_for_tasks`` (in-memory backend only), also
        wait until tasks still running when the run closed have ended and their
        late results are recorded."""
        try:
            return self.client.wait(self.run_id, timeout)
        finally:
            if wait_for_tasks:
                join = self.client.backend.join
                if join is None:
                    raise ConfigurationError("wait_for_tasks needs a backend that can be "
                                             f"joined, such as the in-memory one, not "
                                             f"{self.client.backend.name}")
                join(timeout)

    def signal(self, name: str, value: Any = None) -> bool:
        """Send the run (or the run it restarted as) a signal; see :meth:`FlowyClient.signal`."""
        return self.client.signal(self.run_id, name, value)

    def cancel(self, reason: str = "") -> bool:
        """Ask the run to stop; see :meth:`FlowyClient.cancel`."""
        return self.client.cancel(self.run_id, reason)

    def trace(self) -> Trace:
        """The execution so far, as a :class:`flowy.tracing.Trace`."""
        return self.client.trace(self.run_id)

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"
