"""Histories, runs and the inbox of outside facts, in one DynamoDB table.

Items, all under the partition of their run (``pk`` = run id):

``run``                 the run: workflow, status, input, result or error, links.
``batch#0000000001``    one committed decision: the facts it consumed and the
                        decisions it made.  Written only with
                        ``attribute_not_exists``: the first decider to write
                        version *v* wins, a racing one gets ``False`` and
                        retries from fresh history (optimistic concurrency).
``sent``                the last version whose messages have all gone out.
``fact#ID``             an outside fact waiting for the decider, keyed by its
                        identity, so a duplicate delivery is a no-op.
``done#KEY``            the attempt KEY has an outcome in the history (timers
                        check it before timing an attempt out).
``beat#KEY``            when attempt KEY started and last heartbeated.

A workflow id is claimed by an item ``pk = wfid#ID``.  Run items carry
``workflow`` and ``started_at`` for the ``runs_by_workflow`` index.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..core.errors import ConfigurationError, ErrorInfo, ServiceError
from ..core.events import (
    CancelRequested,
    Event,
    Fact,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskTimedOut,
    TimerFired,
    WorkflowStarted,
    event_from_dict,
    event_to_dict,
)
from .payloads import Payloads

RUN_INDEX = "runs_by_workflow"
OPEN, COMPLETED, FAILED, RESTARTED = "open", "completed", "failed", "restarted"
IN_HISTORY = "in history"


def fact_id(fact: Fact) -> str:
    """The identity of a fact: two deliveries of the same fact share it."""
    if isinstance(fact, WorkflowStarted):
        return "start"
    if isinstance(fact, TimerFired):
        return f"timer:{fact.key}"
    if isinstance(fact, CancelRequested):
        return "cancel"  # the first request wins; later ones are no-ops
    if isinstance(fact, SignalReceived):
        return f"signal:{fact.id}"
    return outcome_id(type(fact).__name__, fact.key)


def outcome_id(fact_type: str, key: str) -> str:
    """The identity of an attempt's outcome of type ``fact_type``."""
    return f"{fact_type}:{key}"


def outcome_key(fact: Fact) -> str | None:
    """The attempt a fact ends, if it is an attempt's outcome."""
    if isinstance(fact, (TaskCompleted, TaskFailed, TaskTimedOut)):
        return fact.key
    return None


class Batch(NamedTuple):
    """One committed decision: the facts it took and the decisions it made."""

    version: int
    events: list[Event]
    committed_at: float


@dataclass
class RunRecord:
    """What the table says about one run."""

    run_id: str
    workflow: str  # name@version
    status: str = OPEN
    input: str = ""
    started_at: float = field(default_factory=time.time)
    closed_at: float | None = None
    result: str | None = None
    error: ErrorInfo | None = None
    workflow_id: str | None = None
    parent_run: str | None = None
    parent_key: str | None = None
    next_run: str | None = None
    prev_run: str | None = None

    @property
    def name(self) -> str:
        return self.workflow.partition("@")[0]


class HistoryStore:
    """Synchronous access to the table (boto3 DynamoDB client) and payloads."""

    def __init__(self, dynamodb: Any, table: str, payloads: Payloads) -> None:
        self._db = dynamodb
        self.table = table
        self._payloads = payloads
        self._conditional_failed = dynamodb.exceptions.ConditionalCheckFailedException

    # -- payload helpers ------------------------------------------------------

    def _pack(self, text: str) -> dict[str, Any]:
        return {"S": json.dumps(self._payloads.pack(text))}

    def _unpack(self, attribute: dict[str, Any]) -> str:
        return self._payloads.unpack(json.loads(attribute["S"]))

    def _put_new(self, item: dict[str, Any], **kwargs: Any) -> bool:
        try:
            self._db.put_item(TableName=self.table, Item=item,
                              ConditionExpression="attribute_not_exists(pk)", **kwargs)
        except self._conditional_failed:
            return False
        return True

    # -- runs -----------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        """Create the run item; False if it already exists (a re-sent creation)."""
        item: dict[str, Any] = {
            "pk": {"S": run.run_id}, "sk": {"S": "run"}, "ref": {"S": run.workflow},
            "workflow": {"S": run.name}, "status": {"S": run.status},
            "input": self._pack(run.input), "started_at": {"N": repr(run.started_at)}}
        for name in ("workflow_id", "parent_run", "parent_key", "prev_run"):
            value = getattr(run, name)
            if value is not None:
                item[name] = {"S": value}
        return self._put_new(item)

    def start_run(self, run: RunRecord) -> tuple[str, str]:
        """Create the run and put its start in its inbox, both idempotently;
        returns the ``(run_id, why)`` notification that must follow."""
        self.create_run(run)
        started = WorkflowStarted(run.input, at=run.started_at)
        self.add_fact(run.run_id, started)
        return run.run_id, fact_id(started)

    def get_run(self, run_id: str) -> RunRecord | None:
        item = self._db.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": run_id}, "sk": {"S": "run"}}).get("Item")
        return None if item is None else self._run_from_item(item)

    def _run_from_item(self, item: dict[str, Any]) -> RunRecord:
        def text(name: str) -> str | None:
            return item[name]["S"] if name in item else None
        error = text("error")
        return RunRecord(
            run_id=item["pk"]["S"], workflow=item["ref"]["S"], status=item["status"]["S"],
            input=self._unpack(item["input"]), started_at=float(item["started_at"]["N"]),
            closed_at=float(item["closed_at"]["N"]) if "closed_at" in item else None,
            result=self._unpack(item["result"]) if "result" in item else None,
            error=None if error is None else ErrorInfo.from_dict(json.loads(error)),
            workflow_id=text("workflow_id"), parent_run=text("parent_run"),
            parent_key=text("parent_key"), next_run=text("next_run"),
            prev_run=text("prev_run"))

    def close_run(self, run_id: str, status: str, at: float, *, result: str | None = None,
                  error: ErrorInfo | None = None, next_run: str | None = None) -> None:
        sets = ["#s = :s", "closed_at = :at"]
        values: dict[str, Any] = {":s": {"S": status}, ":at": {"N": repr(at)}}
        if result is not None:
            sets.append("#r = :r")
            values[":r"] = self._pack(result)
        if error is not None:
            sets.append("#e = :e")
            values[":e"] = {"S": json.dumps(error.to_dict())}
        if next_run is not None:
            sets.append("next_run = :n")
            values[":n"] = {"S": next_run}
        self._db.update_item(
            TableName=self.table, Key={"pk": {"S": run_id}, "sk": {"S": "run"}},
            UpdateExpression="SET " + ", ".join(sets), ExpressionAttributeValues=values,
            ExpressionAttributeNames={"#s": "status", **({"#r": "result"} if result else {}),
                                      **({"#e": "error"} if error else {})})

    def claim_workflow_id(self, workflow_id: str, run_id: str) -> str:
        """Bind ``workflow_id`` to ``run_id``; returns the run it is bound to
        (another one, if the id was claimed before)."""
        key = {"pk": {"S": f"wfid#{workflow_id}"}, "sk": {"S": "wfid"}}
        try:
            self._db.put_item(TableName=self.table, Item={**key, "run_id": {"S": run_id}},
                              ConditionExpression="attribute_not_exists(pk)",
                              ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except self._conditional_failed as exc:
            old = exc.response.get("Item") or self._db.get_item(
                TableName=self.table, Key=key, ConsistentRead=True)["Item"]
            return old["run_id"]["S"]  # type: ignore[no-any-return]
        return run_id

    def list_runs(self, workflow: str | None = None, status: str | None = None,
                  limit: int = 50) -> list[RunRecord]:
        """Runs, newest first, of one workflow (via the index, reading no more
        pages than ``limit`` needs) or of all (a scan of the index, which holds
        only run items)."""
        runs = self.runs(workflow, status)
        if workflow is not None:
            return list(itertools.islice(runs, limit))
        return sorted(runs, key=lambda r: r.started_at, reverse=True)[:limit]

    def runs(self, workflow: str | None = None, status: str | None = None
             ) -> Iterator[RunRecord]:
        """Runs of one workflow (a name or ``name@version``), newest first, or
        of all, in no order; pages are read as the iteration goes."""
        filters: list[str] = []
        values: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if status is not None:
            filters.append("#s = :s")
            values[":s"] = {"S": status}
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
        if workflow is not None:
            values[":w"] = {"S": workflow.partition("@")[0]}
            operation = "query"
            kwargs.update(IndexName=RUN_INDEX, KeyConditionExpression="workflow = :w",
                          ScanIndexForward=False)
        else:  # the index holds only run items: a scan of it reads no history
            operation = "scan"
            kwargs["IndexName"] = RUN_INDEX
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        if values:  # DynamoDB refuses an empty map
            kwargs["ExpressionAttributeValues"] = values
        pages = self._db.get_paginator(operation).paginate(TableName=self.table, **kwargs)
        for page in pages:
            for item in page["Items"]:
                run = self._run_from_item(item)
                if workflow is None or "@" not in workflow or run.workflow == workflow:
                    yield run

    def delete_run(self, run: RunRecord) -> int:
        """Delete every item of a closed run and its workflow id; returns how
        many.  The run item goes last, so that a purge cut short is finished
        by the next one."""
        if run.status == OPEN:
            raise ConfigurationError(f"run {run.run_id} is open: only closed runs are deleted")
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": run.run_id}},
            ProjectionExpression="pk, sk")
        keys = [item for page in pages for item in page["Items"] if item["sk"]["S"] != "run"]
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])
        if run.workflow_id is not None:  # free the id, unless a later run holds it
            try:
                self._db.delete_item(
                    TableName=self.table,
                    Key={"pk": {"S": f"wfid#{run.workflow_id}"}, "sk": {"S": "wfid"}},
                    ConditionExpression="run_id = :r",
                    ExpressionAttributeValues={":r": {"S": run.run_id}})
            except self._conditional_failed:
                pass
        self._db.delete_item(TableName=self.table,
                             Key={"pk": {"S": run.run_id}, "sk": {"S": "run"}})
        return len(keys) + 1

    # -- history --------------------------------------------------------------

    def read_batches(self, run_id: str) -> list[Batch]:
        """The run's committed batches, in order: its whole history."""
        return [Batch(int(item["sk"]["S"].partition("#")[2]),
                      [event_from_dict(d) for d in json.loads(self._unpack(item["events"]))],
                      float(item["committed_at"]["N"]))
                for item in self._query(run_id, "batch#")]

    def commit(self, run_id: str, version: int, events: Sequence[Event]) -> bool:
        """Write batch ``version``; False if another decider wrote it first."""
        payload = json.dumps([event_to_dict(e) for e in events], separators=(",", ":"))
        return self._put_new({"pk": {"S": run_id}, "sk": {"S": f"batch#{version:010d}"},
                              "events": self._pack(payload),
                              "committed_at": {"N": repr(time.time())}})

    def sent_version(self, run_id: str) -> int:
        item = self._db.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": run_id}, "sk": {"S": "sent"}}).get("Item")
        return int(item["version"]["N"]) if item else 0

    # -- the inbox ------------------------------------------------------------

    def add_fact(self, run_id: str, fact: Fact) -> bool:
        """Put a fact in the run's inbox; False if the same fact is there already."""
        return self._put_fact(run_id, fact_id(fact), fact)

    def add_outcome(self, run_id: str, fact: Fact) -> bool:
        """Put an attempt's outcome in the inbox, first outcome wins.

        A second outcome of another kind (a result after a timeout) is kept as
        a late fact, which the workflow records and ignores; the same outcome
        twice (a duplicate delivery) is dropped.  True if something was added.
        """
        key = outcome_key(fact)
        assert key is not None
        item = self._fact_item(run_id, f"fact#{key}", fact)
        try:
            self._db.put_item(TableName=self.table, Item=item,
                              ConditionExpression="attribute_not_exists(pk)",
                              ReturnValuesOnConditionCheckFailure="ALL_OLD")
            return True
        except self._conditional_failed as exc:
            old = exc.response.get("Item")
            if old is not None and old.get("type", {}).get("S") == type(fact).__name__:
                return False
        return self._put_fact(run_id, f"{key}#late#{type(fact).__name__}", fact)

    def _fact_item(self, run_id: str, sort_key: str, fact: Fact) -> dict[str, Any]:
        return {"pk": {"S": run_id}, "sk": {"S": sort_key}, "type": {"S": type(fact).__name__},
                "event": self._pack(json.dumps(event_to_dict(fact)))}

    def _put_fact(self, run_id: str, ident: str, fact: Fact) -> bool:
        return self._put_new(self._fact_item(run_id, f"fact#{ident}", fact))

    def read_inbox(self, run_id: str) -> list[tuple[str, Fact]]:
        """Waiting facts as (sort key, fact), in the order they arrived."""
        facts = [(item["sk"]["S"], event_from_dict(json.loads(self._unpack(item["event"]))))
                 for item in self._query(run_id, "fact#")]
        facts.sort(key=lambda pair: pair[1].at)
        return facts  # type: ignore[return-value]

    def outcome_of(self, run_id: str, key: str) -> str | None:
        """How attempt ``key`` ended: the type of its outcome while that waits in
        the inbox, :data:`IN_HISTORY` once a decider took it, or None."""
        response = self._db.batch_get_item(RequestItems={self.table: {
            "Keys": [{"pk": {"S": run_id}, "sk": {"S": sk}}
                     for sk in (f"fact#{key}", f"done#{key}")],
            "ConsistentRead": True, "ProjectionExpression": "sk, #t",
            "ExpressionAttributeNames": {"#t": "type"}}})
        items = {item["sk"]["S"]: item for item in response["Responses"].get(self.table, [])}
        if f"done#{key}" in items:
            return IN_HISTORY
        waiting = items.get(f"fact#{key}")
        return None if waiting is None else str(waiting["type"]["S"])

    def consume(self, run_id: str, consumed: Sequence[tuple[str, Fact]],
                sent_version: int) -> None:
        """After a commit and its sends: clear the consumed facts, remember the
        outcomes, and record that ``sent_version`` has gone out."""
        requests: list[dict[str, Any]] = []
        done: set[str] = set()
        for sort_key, fact in consumed:
            requests.append({"DeleteRequest": {"Key": {"pk": {"S": run_id},
                                                       "sk": {"S": sort_key}}}})
            key = outcome_key(fact)
            if key is not None and key not in done:
                done.add(key)
                requests.append({"PutRequest": {"Item": {"pk": {"S": run_id},
                                                         "sk": {"S": f"done#{key}"}}}})
        requests.append({"PutRequest": {"Item": {"pk": {"S": run_id}, "sk": {"S": "sent"},
                                                 "version": {"N": str(sent_version)}}}})
        self._batch_write(requests)

    # -- attempts -------------------------------------------------------------

    def record_beat(self, run_id: str, key: str, at: float, details: str | None = None,
                    *, start: bool = False) -> None:
        sets = ["last_beat = :at"] + (["started_at = :at"] if start else [])
        values: dict[str, Any] = {":at": {"N": repr(at)}}
        if details is not None:
            sets.append("details = :d")
            values[":d"] = {"S": details}
        self._db.update_item(TableName=self.table,
                             Key={"pk": {"S": run_id}, "sk": {"S": f"beat#{key}"}},
                             UpdateExpression="SET " + ", ".join(sets),
                             ExpressionAttributeValues=values)

    def get_beat(self, run_id: str, key: str) -> tuple[float, str | None] | None:
        """(last heartbeat time, details) of a started attempt, or None."""
        item = self._db.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": run_id}, "sk": {"S": f"beat#{key}"}}
                                 ).get("Item")
        if item is None:
            return None
        return float(item["last_beat"]["N"]), item.get("details", {}).get("S")

    # -- plumbing -------------------------------------------------------------

    def _query(self, run_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": run_id}, ":prefix": {"S": prefix}},
            ConsistentRead=True)
        for page in pages:
            yield from page["Items"]

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table: requests[start:start + 25]}
            for delay in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2):
                time.sleep(delay)
                pending = self._db.batch_write_item(RequestItems=pending)["UnprocessedItems"]
                if not pending:
                    break
            else:
                raise ServiceError(f"DynamoDB kept {len(pending[self.table])} writes "
                                   "unprocessed; the table is throttled: raise its capacity")
