"""The run store in one DynamoDB table: runs, histories, the inbox, attempts.

Items, all under the partition of their run (``pk`` = run id):

``run``                 the run: workflow, status, input, result or error, links.
``batch#0000000001``    one committed decision: the facts it consumed and the
                        decisions it made.  Written only with
                        ``attribute_not_exists``: the first decider to write
                        version *v* wins, a racing one gets ``False`` and
                        retries from fresh history (optimistic concurrency).
``sent``                the last version whose messages have all gone out.
``fact#ID``             an outside fact waiting for the decider, keyed by its
                        identity (:func:`~flowy.core.protocol.fact_id`), so a
                        duplicate delivery is a no-op.
``attempt#ATTEMPT``     an activity attempt open for a worker to claim (ATTEMPT
                        holds its token: :func:`~flowy.core.protocol.attempt_id`),
                        written before its task is sent; once claimed, when it
                        started, how many times, and when it last heartbeated.
``done#ATTEMPT``        the attempt has an outcome in the history (timers and
                        workers check it before timing out or running it again).
``bad#ID``              an inbox item set aside with its reason: it did not
                        decode, or the decider refused it (a wrong token, a
                        timer not due).

Inbox items, and a ``sent`` item whose run has a timer pending, carry
``wake`` (a shard, from the run id) and ``due`` (when the fact came, or the
timer is due): the sparse ``runs_to_wake`` index holds exactly the runs
that wait for a decision, at no extra request, since those attributes go
with writes the protocol makes anyway and leave with the consume.

A workflow id is claimed by an item ``pk = wfid#ID``.  Run items carry
``workflow`` and ``started_at`` for the ``runs_by_workflow`` index.

The layout is the one the store has written since 0.5.0, so tables
made before the backend seam keep working.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, cast

from ...core.errors import ConfigurationError, ErrorInfo, HistoryError, PayloadError, ServiceError
from ...core.events import FACT_TYPES, Event, Fact, event_from_dict, event_to_dict
from ...core.protocol import Beat, fact_id, late_id, outcome_attempt
from ...core.runs import IN_HISTORY, OPEN, Batch, RunRecord
from .payloads import Payloads

log = logging.getLogger("flowy.store")

RUN_INDEX = "runs_by_workflow"
WAKE_INDEX = "runs_to_wake"
# Shards of the wake index's partition key: one key would be a hot partition
# of the index, which every inbox write goes through.
WAKE_SHARDS = 8
# DynamoDB can't be watched: wait_closed polls at this interval.
POLL_INTERVAL = 0.2
# Backoffs before each BatchWriteItem of unprocessed items (the first goes at once).
_BATCH_BACKOFF = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


class DynamoStore:
    """:class:`~flowy.backends.base.RunStore` on a boto3 DynamoDB client;
    payloads over the inline limit go to S3 through ``payloads``."""

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

    def _put_new(self, item: dict[str, Any]) -> bool:
        try:
            self._db.put_item(TableName=self.table, Item=item,
                              ConditionExpression="attribute_not_exists(pk)")
        except self._conditional_failed:
            return False
        return True

    # -- runs -----------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        item: dict[str, Any] = {
            "pk": {"S": run.run_id}, "sk": {"S": "run"}, "ref": {"S": run.workflow},
            "workflow": {"S": run.name}, "status": {"S": run.status},
            "input": self._pack(run.input), "started_at": {"N": repr(run.started_at)}}
        for name in ("workflow_id", "parent_run", "parent_key", "parent_token", "prev_run"):
            value = getattr(run, name)
            if value:
                item[name] = {"S": value}
        return self._put_new(item)

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
            parent_key=text("parent_key"), parent_token=text("parent_token") or "",
            next_run=text("next_run"),
            prev_run=text("prev_run"))

    def close_run(self, run_id: str, status: str, at: float, *, result: str | None = None,
                  error: ErrorInfo | None = None, next_run: str | None = None) -> None:
        # "status", "result" and "error" are DynamoDB reserved words: aliased.
        sets = ["#s = :s", "closed_at = :at"]
        names = {"#s": "status"}
        values: dict[str, Any] = {":s": {"S": status}, ":at": {"N": repr(at)}}
        if result is not None:
            sets.append("#r = :r")
            names["#r"] = "result"
            values[":r"] = self._pack(result)
        if error is not None:
            sets.append("#e = :e")
            names["#e"] = "error"
            values[":e"] = {"S": json.dumps(error.to_dict())}
        if next_run is not None:
            sets.append("next_run = :n")
            values[":n"] = {"S": next_run}
        self._db.update_item(
            TableName=self.table, Key={"pk": {"S": run_id}, "sk": {"S": "run"}},
            UpdateExpression="SET " + ", ".join(sets), ExpressionAttributeValues=values,
            ExpressionAttributeNames=names)

    def claim_workflow_id(self, workflow_id: str, run_id: str) -> str:
        key = {"pk": {"S": f"wfid#{workflow_id}"}, "sk": {"S": "wfid"}}
        try:
            self._db.put_item(TableName=self.table, Item={**key, "run_id": {"S": run_id}},
                              ConditionExpression="attribute_not_exists(pk)",
                              ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except self._conditional_failed as exc:
            # Emulators may not return the old item with the failure: read it.
            old = exc.response.get("Item") or self._db.get_item(
                TableName=self.table, Key=key, ConsistentRead=True)["Item"]
            return old["run_id"]["S"]  # type: ignore[no-any-return]
        return run_id

    def runs(self, workflow: str | None = None, status: str | None = None
             ) -> Iterator[RunRecord]:
        """Runs of one workflow through the index (newest first, so that a
        client's ``limit`` reads no more pages than it needs), or of all by a
        scan of the index, which holds only run items, so no history is read."""
        values: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"IndexName": RUN_INDEX}
        if status is not None:
            kwargs["FilterExpression"] = "#s = :s"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            values[":s"] = {"S": status}
        operation = "scan"
        if workflow is not None:
            operation = "query"
            values[":w"] = {"S": workflow.partition("@")[0]}
            kwargs.update(KeyConditionExpression="workflow = :w", ScanIndexForward=False)
        if values:  # DynamoDB refuses an empty map
            kwargs["ExpressionAttributeValues"] = values
        pages = self._db.get_paginator(operation).paginate(TableName=self.table, **kwargs)
        for page in pages:
            for item in page["Items"]:
                run = self._run_from_item(item)
                # The index is keyed by name: a version is filtered here.
                if workflow is None or "@" not in workflow or run.workflow == workflow:
                    yield run

    def delete_run(self, run: RunRecord) -> int:
        if run.status == OPEN:
            raise ConfigurationError(f"run {run.run_id} is open: only closed runs are deleted")
        keys = [key for key in self._keys(run.run_id) if key["sk"]["S"] != "run"]
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

    def orphans(self) -> Iterator[str]:
        # A scan of keys only: an operator's command, not the engine's.
        pages = self._db.get_paginator("scan").paginate(
            TableName=self.table, ProjectionExpression="pk, sk", ConsistentRead=True)
        runs, with_record = set(), set()
        for page in pages:
            for item in page["Items"]:
                run_id, sort_key = item["pk"]["S"], item["sk"]["S"]
                if sort_key == "run":
                    with_record.add(run_id)
                elif sort_key != "wfid":
                    runs.add(run_id)
        return iter(sorted(runs - with_record))

    def delete_orphan(self, run_id: str) -> int:
        keys = list(self._keys(run_id))
        if any(key["sk"]["S"] in ("run", "wfid") for key in keys):
            return 0
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])
        return len(keys)

    def _keys(self, run_id: str) -> Iterator[dict[str, Any]]:
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": run_id}},
            ProjectionExpression="pk, sk", ConsistentRead=True)
        for page in pages:
            yield from page["Items"]

    def wait_closed(self, run_id: str, timeout: float) -> None:
        time.sleep(max(0.0, min(timeout, POLL_INTERVAL)))

    # -- history --------------------------------------------------------------

    def read_batches(self, run_id: str) -> list[Batch]:
        return [Batch(int(item["sk"]["S"].partition("#")[2]),
                      [event_from_dict(d) for d in json.loads(self._unpack(item["events"]))],
                      float(item["committed_at"]["N"]))
                for item in self._query(run_id, "batch#")]

    def commit(self, run_id: str, version: int, events: Sequence[Event], at: float) -> bool:
        payload = json.dumps([event_to_dict(e) for e in events], separators=(",", ":"))
        # Zero-padded, so that the batches of a run sort by version.
        return self._put_new({"pk": {"S": run_id}, "sk": {"S": f"batch#{version:010d}"},
                              "events": self._pack(payload), "committed_at": {"N": repr(at)}})

    def latest_version(self, run_id: str) -> int:
        last = self._db.query(
            TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
            ExpressionAttributeValues={":pk": {"S": run_id}, ":b": {"S": "batch#"}},
            ScanIndexForward=False, Limit=1, ProjectionExpression="sk", ConsistentRead=True
        )["Items"]
        return int(last[0]["sk"]["S"].partition("#")[2]) if last else 0

    def sent_version(self, run_id: str) -> int:
        item = self._db.get_item(TableName=self.table, ConsistentRead=True,
                                 Key={"pk": {"S": run_id}, "sk": {"S": "sent"}}).get("Item")
        return int(item["version"]["N"]) if item else 0

    # -- the inbox ------------------------------------------------------------

    def add_fact(self, run_id: str, fact: Fact) -> bool:
        return self._put_new(self._fact_item(run_id, fact_id(fact), fact))

    def add_outcome(self, run_id: str, fact: Fact) -> bool:
        key = outcome_attempt(fact)
        if key is None:
            raise ValueError(f"{type(fact).__name__} is not an attempt's outcome")
        # The first outcome is stored under the attempt's key alone, so that
        # outcome_of finds it with one read whatever its type.
        try:
            self._db.put_item(TableName=self.table, Item=self._fact_item(run_id, key, fact),
                              ConditionExpression="attribute_not_exists(pk)",
                              ReturnValuesOnConditionCheckFailure="ALL_OLD")
            return True
        except self._conditional_failed as exc:
            old = exc.response.get("Item")
            if old is not None and old.get("type", {}).get("S") == type(fact).__name__:
                return False  # a duplicate delivery of the same outcome
        return self._put_new(self._fact_item(run_id, late_id(key, type(fact).__name__), fact))

    def _fact_item(self, run_id: str, ident: str, fact: Fact) -> dict[str, Any]:
        return {"pk": {"S": run_id}, "sk": {"S": f"fact#{ident}"},
                "type": {"S": type(fact).__name__},
                "event": self._pack(json.dumps(event_to_dict(fact))), **_wake(run_id, fact.at)}

    def read_inbox(self, run_id: str) -> list[tuple[str, Fact]]:
        facts: list[tuple[str, Fact]] = []
        for item in self._query(run_id, "fact#"):
            # Anyone who may add facts may write a bad one: it is set aside,
            # and never reaches (or fails) the run.
            try:
                fact = event_from_dict(json.loads(self._unpack(item["event"])))
                if not isinstance(fact, FACT_TYPES):
                    raise HistoryError(f"a {type(fact).__name__} is a decision, not a fact")
            except (HistoryError, PayloadError, ValueError, TypeError, KeyError) as exc:
                self._set_aside(item, f"{type(exc).__name__}: {exc}")
                continue
            facts.append((item["sk"]["S"], cast(Fact, fact)))
        # Items come in key order; their stamps say when they arrived (a
        # stable sort keeps key order among equal stamps).
        facts.sort(key=lambda pair: pair[1].at)
        return facts

    def set_aside(self, run_id: str, refused: Sequence[tuple[str, str]]) -> None:
        for sort_key, reason in refused:
            item = self._db.get_item(TableName=self.table, ConsistentRead=True,
                                     Key={"pk": {"S": run_id}, "sk": {"S": sort_key}}
                                     ).get("Item")
            if item is not None:
                self._set_aside(item, reason)

    def _set_aside(self, item: dict[str, Any], reason: str) -> None:
        """Move an inbox item to ``bad#...`` with the reason (out of the wake
        index too): there for an operator to see, and for purge."""
        sort_key = item["sk"]["S"]
        bad = {name: value for name, value in item.items() if name not in ("wake", "due")}
        bad["sk"] = {"S": "bad#" + sort_key.removeprefix("fact#")}
        bad["reason"] = {"S": reason[:1000]}
        log.warning("run %r: inbox item %r set aside as %r: %s",
                    item["pk"]["S"][:100], sort_key[:100], bad["sk"]["S"][:100], reason[:300])
        self._db.put_item(TableName=self.table, Item=bad)
        self._db.delete_item(TableName=self.table, Key={"pk": item["pk"], "sk": item["sk"]})

    def consume(self, run_id: str, consumed: Sequence[tuple[str, Fact]],
                sent_version: int | None, wake: float | None = None) -> None:
        requests: list[dict[str, Any]] = []
        done: set[str] = set()
        for sort_key, fact in consumed:
            requests.append({"DeleteRequest": {"Key": {"pk": {"S": run_id},
                                                       "sk": {"S": sort_key}}}})
            key = outcome_attempt(fact)
            if key is not None and key not in done:  # a batch can't put one key twice
                done.add(key)
                requests.append({"PutRequest": {"Item": {"pk": {"S": run_id},
                                                         "sk": {"S": f"done#{key}"}}}})
        if sent_version is not None:
            sent = {"pk": {"S": run_id}, "sk": {"S": "sent"},
                    "version": {"N": str(sent_version)},
                    **({} if wake is None else _wake(run_id, wake))}
            # First, so that a consume cut short between batches of 25 leaves
            # facts behind, whose index entries wake the run, not a batch
            # unmarked with no fact left to say so.  (Within one batch, only a
            # crash while retrying what a throttled table left unprocessed can.)
            requests.insert(0, {"PutRequest": {"Item": sent}})
        self._batch_write(requests)

    def set_wake(self, run_id: str, version: int, wake: float | None) -> None:
        key = {"pk": {"S": run_id}, "sk": {"S": "sent"}}
        values: dict[str, Any] = {":v": {"N": str(version)}}
        if wake is None:
            update = "REMOVE wake, due"
        else:
            update = "SET wake = :w, due = :d"
            attributes = _wake(run_id, wake)
            values.update({":w": attributes["wake"], ":d": attributes["due"]})
        try:
            self._db.update_item(TableName=self.table, Key=key, UpdateExpression=update,
                                 ConditionExpression="version = :v",
                                 ExpressionAttributeValues=values)
        except self._conditional_failed:
            pass  # a later decision recorded its own

    def runs_to_wake(self, before: float, limit: int) -> list[tuple[str, float]]:
        found: dict[str, float] = {}
        for shard in range(WAKE_SHARDS):
            pages = self._db.get_paginator("query").paginate(
                TableName=self.table, IndexName=WAKE_INDEX,
                KeyConditionExpression="wake = :w AND due < :b",
                ExpressionAttributeValues={":w": {"S": str(shard)}, ":b": {"N": repr(before)}},
                PaginationConfig={"MaxItems": limit, "PageSize": limit})
            for page in pages:
                for item in page["Items"]:
                    run, since = item["pk"]["S"], float(item["due"]["N"])
                    found[run] = min(since, found.get(run, since))
        return sorted(found.items(), key=lambda pair: pair[1])[:limit]

    # -- attempts -------------------------------------------------------------

    def open_attempts(self, run_id: str, attempts: Sequence[str], *, again: bool = False
                      ) -> None:
        if again:  # rare (a batch sent again): each one kept if it is there
            for attempt in attempts:
                self._put_new(self._attempt_key(run_id, attempt))
            return
        self._batch_write([{"PutRequest": {"Item": self._attempt_key(run_id, attempt)}}
                           for attempt in attempts])

    def close_attempts(self, run_id: str, attempts: Sequence[str]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": self._attempt_key(run_id, attempt)}}
                           for attempt in attempts])

    def claim(self, run_id: str, attempt: str, at: float, *, again: bool = False) -> int | None:
        # One conditional write: the attempt must be open (so its run is
        # known, and its token right), and, unless again, not started.
        condition = "attribute_exists(pk)" + ("" if again else " AND attribute_not_exists(starts)")
        try:
            reply = self._db.update_item(
                TableName=self.table, Key=self._attempt_key(run_id, attempt),
                UpdateExpression="SET started_at = :at, last_beat = :at ADD starts :one",
                ConditionExpression=condition,
                ExpressionAttributeValues={":at": {"N": repr(at)}, ":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except self._conditional_failed as exc:
            return 0 if exc.response.get("Item") else None
        return int(reply["Attributes"]["starts"]["N"])

    def outcome_of(self, run_id: str, attempt: str) -> str | None:
        response = self._db.batch_get_item(RequestItems={self.table: {
            "Keys": [{"pk": {"S": run_id}, "sk": {"S": sk}}
                     for sk in (f"fact#{attempt}", f"done#{attempt}")],
            "ConsistentRead": True, "ProjectionExpression": "sk, #t",
            "ExpressionAttributeNames": {"#t": "type"}}})
        items = {item["sk"]["S"]: item for item in response["Responses"].get(self.table, [])}
        if f"done#{attempt}" in items:
            return IN_HISTORY
        waiting = items.get(f"fact#{attempt}")
        return None if waiting is None else str(waiting["type"]["S"])

    def record_beat(self, run_id: str, attempt: str, at: float, details: str | None = None
                    ) -> None:
        sets, values = ["last_beat = :at"], {":at": {"N": repr(at)}}
        if details is not None:
            sets.append("details = :d")
            values[":d"] = {"S": details}
        try:
            self._db.update_item(TableName=self.table, Key=self._attempt_key(run_id, attempt),
                                 UpdateExpression="SET " + ", ".join(sets),
                                 ConditionExpression="attribute_exists(starts)",
                                 ExpressionAttributeValues=values)
        except self._conditional_failed:
            pass  # withdrawn: its run closed

    def get_beat(self, run_id: str, attempt: str) -> Beat | None:
        item = self._db.get_item(TableName=self.table, ConsistentRead=True,
                                 Key=self._attempt_key(run_id, attempt)).get("Item")
        if item is None or "started_at" not in item:
            return None
        return Beat(float(item["started_at"]["N"]), float(item["last_beat"]["N"]),
                    item.get("details", {}).get("S"))

    @staticmethod
    def _attempt_key(run_id: str, attempt: str) -> dict[str, Any]:
        return {"pk": {"S": run_id}, "sk": {"S": f"attempt#{attempt}"}}

    # -- plumbing -------------------------------------------------------------

    def _query(self, run_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": run_id}, ":prefix": {"S": prefix}},
            ConsistentRead=True)
        for page in pages:
            yield from page["Items"]

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """Write in batches of 25 (the DynamoDB maximum), retrying what a
        throttled table leaves unprocessed."""
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table: requests[start:start + 25]}
            for delay in _BATCH_BACKOFF:
                time.sleep(delay)
                pending = self._db.batch_write_item(RequestItems=pending)["UnprocessedItems"]
                if not pending:
                    break
            else:
                raise ServiceError(f"DynamoDB kept {len(pending[self.table])} writes "
                                   "unprocessed; the table is throttled: raise its capacity")


def _wake(run_id: str, due: float) -> dict[str, Any]:
    """The attributes that put an item in the wake index."""
    return {"wake": {"S": str(zlib.crc32(run_id.encode()) % WAKE_SHARDS)},
            "due": {"N": repr(due)}}
