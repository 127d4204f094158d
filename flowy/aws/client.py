"""Starting runs and looking at them: the user's side of the AWS engine."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..codec import DEFAULT_CODEC
from ..core.codec import Codec
from ..core.errors import EncodeError, FlowyError, TaskError
from ..core.events import CancelRequested, Event, SignalReceived, TaskScheduled
from ..tracing import Trace, build_run_trace
from .backend import Backend
from .decider import child_run_id
from .definitions import AWSWorkflow, Registry
from .settings import AWSSettings
from .store import COMPLETED, FAILED, OPEN, RESTARTED, RunRecord, fact_id


class RunNotFound(FlowyError, LookupError):
    """No run has this id in the namespace."""


class FlowyClient:
    """Start runs, wait for them, list them, read their histories and traces."""

    def __init__(self, settings: AWSSettings | None = None,
                 backend: Backend | None = None, registry: Registry | None = None) -> None:
        """``registry``: the workflows whose results this client decodes with
        their own codecs (besides those it starts); others decode as JSON."""
        self.backend = backend or Backend.connect(settings)
        self.store = self.backend.store
        self.workflows: dict[str, AWSWorkflow] = dict(registry.workflows) if registry else {}

    def start(self, workflow: AWSWorkflow, *args: Any, workflow_id: str | None = None,
              **kwargs: Any) -> RunHandle:
        """Start a run of ``workflow`` with these arguments and return at once.

        With ``workflow_id``, at most one run ever starts for that id: starting
        it again returns the run that the first start made.
        """
        encoded = workflow.codec.encode([list(args), kwargs])
        self.workflows[workflow.ref] = workflow
        run_id = uuid.uuid4().hex
        record = RunRecord(run_id, workflow.ref, input=encoded, workflow_id=workflow_id)
        if workflow_id is not None:
            owner = self.store.claim_workflow_id(workflow_id, run_id)
            # An earlier start of this id may have died half-way: finish it
            # (every step is idempotent), but never start a second run.
            record = self.store.get_run(owner) or dataclasses.replace(record, run_id=owner)
            if record.status != OPEN:
                return RunHandle(self, owner)
        self.backend.queues.notify([self.store.start_run(record)])
        return RunHandle(self, record.run_id)

    def status(self, run_id: str) -> RunRecord:
        record = self.store.get_run(run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id} in namespace {self.backend.settings.namespace}; "
                              "check the id and FLOWY_NAMESPACE")
        return record

    def last_run(self, run_id: str) -> RunRecord:
        """The run's record, or that of the run it restarted as (continue-as-new)."""
        record = self.status(run_id)
        while record.status == RESTARTED and record.next_run is not None:
            record = self.status(record.next_run)
        return record

    def signal(self, run_id: str, name: str, value: Any = None, *,
               signal_id: str | None = None) -> bool:
        """Send the run (or the run it restarted as) a signal: its workflow's
        next call of the ``conf_signal(name)`` dependency finishes with
        ``value``.  Sending the same ``signal_id`` again is a no-op.  Returns
        False, sending nothing, if the run had already closed."""
        return self._tell(run_id, lambda record: SignalReceived(
            name, self._codec(record).encode(value), signal_id or uuid.uuid4().hex,
            at=time.time()))

    def cancel(self, run_id: str, reason: str = "") -> bool:
        """Ask the run (or the run it restarted as) to stop: it fails with
        :class:`flowy.RunCancelled`, and so do its open sub-workflows.
        Tasks already queued or running still run, and their results are
        recorded as late.  Returns False, changing nothing, if the run had
        already closed."""
        return self._tell(run_id, lambda record: CancelRequested(reason, at=time.time()))

    def _tell(self, run_id: str,
              fact_for: Callable[[RunRecord], CancelRequested | SignalReceived]) -> bool:
        """Put a fact in the inbox of the run's newest open run; False if closed."""
        record = self.last_run(run_id)
        if record.status != OPEN:
            return False
        fact = fact_for(record)
        self.store.add_fact(record.run_id, fact)
        self.backend.queues.notify([(record.run_id, fact_id(fact))])
        return True

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.2) -> Any:
        """The run's result (following restarts); raises TaskError if it failed
        and TimeoutError if it is not done within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.last_run(run_id)
            if record.status == COMPLETED:
                return self._decode_result(record)
            if record.status == FAILED:
                assert record.error is not None
                raise TaskError.from_info(record.error)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {record.status} after {timeout} s")
            time.sleep(poll)

    def _decode_result(self, record: RunRecord) -> Any:
        try:
            return self._codec(record).decode(record.result or "null")
        except EncodeError as exc:
            if record.workflow in self.workflows:
                raise
            raise EncodeError(f"{exc}. This client does not know workflow {record.workflow}, "
                              "so it decodes its result with the default codec: give it the "
                              "declarations (FlowyClient(registry=load_registry(DEFS)), or "
                              "flowy wait --definitions DEFS)") from exc

    def _codec(self, record: RunRecord) -> Codec:
        workflow = self.workflows.get(record.workflow)
        return workflow.codec if workflow is not None else DEFAULT_CODEC

    def list_runs(self, workflow: str | None = None, status: str | None = None,
                  limit: int = 50) -> list[RunRecord]:
        """Runs, newest first; ``workflow`` is a name or ``name@version``."""
        return self.store.list_runs(workflow, status, limit)

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

    def history(self, run_id: str) -> list[Event]:
        self.status(run_id)
        return [e for batch in self.store.read_batches(run_id) for e in batch.events]

    def trace(self, run_id: str) -> Trace:
        """The trace of the run and the runs it restarted as, sub-workflows nested."""
        runs = []
        record: RunRecord | None = self.status(run_id)
        while record is not None:
            history = self.history(record.run_id)
            children = {e.key: self.trace(child_run_id(record.run_id, e.key))
                        for e in history
                        if isinstance(e, TaskScheduled) and e.kind == "workflow"
                        and self.store.get_run(child_run_id(record.run_id, e.key))}
            runs.append(build_run_trace(record.workflow, record.run_id, history, children))
            record = self.store.get_run(record.next_run) if record.next_run else None
        return Trace(runs=tuple(runs))


class RunHandle:
    """A started run: its id, status and result."""

    def __init__(self, client: FlowyClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def status(self) -> str:
        return self.client.last_run(self.run_id).status

    def done(self) -> bool:
        return self.status() in (COMPLETED, FAILED)

    def result(self, timeout: float | None = None) -> Any:
        return self.client.wait(self.run_id, timeout)

    def signal(self, name: str, value: Any = None) -> bool:
        return self.client.signal(self.run_id, name, value)

    def cancel(self, reason: str = "") -> bool:
        return self.client.cancel(self.run_id, reason)

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"


__all__ = ["OPEN", "FlowyClient", "RunHandle", "RunNotFound"]
