"""The activity worker: poll task queues with aioboto3, run attempts, report outcomes.

Sync activities run in a thread pool and coroutine functions on the event
loop, at most ``concurrency`` at a time.  While an attempt runs, its message
lease is extended, so SQS redelivers it only if this worker dies.  An
outcome is written to the run's inbox (idempotently) and the deciders are
notified *before* the message is deleted: a crash in between repeats the
report, never loses it.  A redelivered message whose attempt already has an
outcome is dropped without running it again.

On SIGTERM (``stop`` set) the worker stops polling, lets running attempts
finish for ``grace`` seconds, then releases the ones still running (their
messages become visible at once) and returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.errors import UNCONTAINED, ConfigurationError, ErrorInfo, LoopDied, ServiceError
from ..core.events import Fact, TaskCompleted, TaskFailed, stamped
from ..worker.activity import AttemptOutcome, execute_activity, execute_activity_async
from .batching import Batcher
from .definitions import Registry
from .messages import MalformedMessage, TaskMessage, TimerMessage, parse
from .payloads import Payloads
from .queues import (
    SHORT_POLL_PAUSE,
    Queues,
    notification_entry,
    numbered,
    receive_count,
)
from .store import IN_HISTORY, HistoryStore, fact_id, outcome_id

log = logging.getLogger("flowy.aws.worker")


class ActivityWorker:
    """Runs the activities of ``registry`` that live on ``task_lists``."""

    def __init__(self, registry: Registry, store: HistoryStore, queues: Queues,
                 payloads: Payloads, sqs: Any, *, task_lists: list[str] | None = None,
                 concurrency: int = 8, poll_wait: int = 20, grace: float = 30.0) -> None:
        self.task_lists = task_lists or registry.task_lists()
        if not self.task_lists:
            raise ConfigurationError(f"{registry.source} declares no activities: nothing to run")
        self.activities = registry.activities_on(self.task_lists)
        self.source = registry.source
        self.store = store
        self.queues = queues
        self.payloads = payloads
        self.sqs = sqs  # an aioboto3 SQS client
        self.settings = queues.settings
        self.concurrency = concurrency
        self.poll_wait = poll_wait
        self.grace = grace
        self.completed = 0
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="flowy-activity")
        self._running: dict[asyncio.Task[None], tuple[str, str]] = {}
        # Receive when at least this many attempts can start, to batch receives.
        self._receive_batch = max(1, min(10, concurrency) // 2)
        self._notifications: Batcher[tuple[str, str]] = Batcher(self._send_notifications,
                                                                max_delay=0.005)
        self._deletions: Batcher[tuple[str, str]] = Batcher(self._delete_messages)

    async def serve(self, stop: asyncio.Event) -> None:
        # Table writes run in threads (the store is synchronous): one per attempt.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(self.concurrency + 4, thread_name_prefix="flowy-io"))
        self._decision_url = await asyncio.to_thread(self.queues.url,
                                                     self.settings.decision_queue)
        slots = asyncio.Semaphore(self.concurrency)
        pollers = []
        for task_list in self.task_lists:
            queue = self.settings.task_queue(task_list)
            url = await asyncio.to_thread(self.queues.url, queue)
            pollers.append(asyncio.create_task(self._poll(queue, url, slots)))
        log.info("worker polling %s for %s", ", ".join(self.task_lists),
                 ", ".join(sorted(self.activities)))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *pollers], return_when=asyncio.FIRST_COMPLETED)
        for task in (stopped, *pollers):
            task.cancel()
        outcomes = await asyncio.gather(*pollers, return_exceptions=True)
        await self._drain()
        dead = [outcome for poller, outcome in zip(pollers, outcomes, strict=True)
                if poller in done]
        if dead:  # a poller never ends by itself: its task list would go unserved
            raise LoopDied(f"a task queue poller of this worker died ({dead[0]!r}); the "
                           "process stops so that its supervisor restarts it")

    async def _drain(self) -> None:
        if self._running:
            log.info("stopping: waiting up to %.0f s for %d running attempts", self.grace,
                     len(self._running))
            await asyncio.wait(list(self._running), timeout=self.grace)
        for task, (url, receipt) in list(self._running.items()):
            task.cancel()
            try:  # make it visible again at once, for another worker
                await self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt,
                                                         VisibilityTimeout=0)
            except Exception as exc:  # noqa: BLE001 - it comes back after its lease anyway
                log.warning("could not release a message (%s); it comes back after its "
                            "lease", exc)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _take_slots(self, slots: asyncio.Semaphore) -> int:
        """Wait for a free slot, then take up to ten; if attempts are running,
        wait a moment for enough slots to make a receive worth its request."""
        await slots.acquire()
        free = 1 + await _take_free(slots, 9)
        if free < self._receive_batch and self._running:
            await asyncio.sleep(0.05)
            free += await _take_free(slots, 10 - free)
        return free

    async def _poll(self, queue: str, url: str, slots: asyncio.Semaphore) -> None:
        while True:
            free = await self._take_slots(slots)
            try:
                response = await self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=free, WaitTimeSeconds=self.poll_wait,
                    VisibilityTimeout=self.settings.visibility_timeout,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"])
            except asyncio.CancelledError:
                for _ in range(free):
                    slots.release()
                raise
            except Exception:
                log.exception("receiving from %s failed; retrying in 1 s", queue)
                response = {}
                await asyncio.sleep(1)
            messages = response.get("Messages", [])
            for _ in range(free - len(messages)):
                slots.release()
            if not messages and self.poll_wait == 0:
                await asyncio.sleep(SHORT_POLL_PAUSE)
            for message in messages:
                task = asyncio.create_task(self._handle(queue, url, message))
                self._running[task] = (url, message["ReceiptHandle"])
                task.add_done_callback(lambda t: self._ended(t, slots))

    def _ended(self, task: asyncio.Task[None], slots: asyncio.Semaphore) -> None:
        self._running.pop(task, None)
        slots.release()

    async def _handle(self, queue: str, url: str, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        try:
            task: TaskMessage = parse(TaskMessage, message["Body"])  # type: ignore[assignment]
        except MalformedMessage as exc:
            await asyncio.to_thread(self.queues.dead_letter, queue, message, str(exc))
            return
        keep_alive = asyncio.create_task(self._keep_alive(url, receipt))
        try:
            news = await self._attempt(task, receive_count(message))
            if news is not None:
                # Also when the outcome was there already: whoever wrote it may
                # have died before notifying (a repeat is deduplicated).
                await self._notifications.submit((task.run, news))
            await self._deletions.submit((url, receipt))
        except asyncio.CancelledError:  # the worker's own shutdown
            raise
        except UNCONTAINED:
            raise
        except BaseException:  # noqa: BLE001 - one attempt's trouble must not end the worker
            log.exception("attempt %s of run %s could not be reported; its message will "
                          "come back", task.key, task.run)
        finally:
            keep_alive.cancel()

    async def _attempt(self, task: TaskMessage, deliveries: int) -> str | None:
        """Run the attempt and record its outcome; the news to notify, if any."""
        if deliveries > 1:  # the attempt may have ended: don't run it again
            ended = await asyncio.to_thread(self.store.outcome_of, task.run, task.key)
            if ended == IN_HISTORY:
                return None
            if ended is not None:
                return outcome_id(ended, task.key)
        fact = await self._run(task, deliveries)
        await asyncio.to_thread(self.store.add_outcome, task.run, fact)
        return fact_id(fact)

    async def _run(self, task: TaskMessage, deliveries: int) -> Fact:
        binding = self.activities.get(task.activity)
        if binding is None:
            return self._failure(task, ConfigurationError(
                f"activity {task.activity} is not known to this worker (definitions "
                f"{self.source}, task lists {', '.join(self.task_lists)}): declare it with "
                "conf_activity(..., name=, version=) or run a worker that has it"))
        if deliveries >= self.settings.max_receives:
            return self._failure(task, ServiceError(
                f"attempt {task.key} was delivered {deliveries} times without finishing: the "
                "workers running it died each time"))
        if task.watched:
            await asyncio.to_thread(self._arm_watch, task)
        encoded = (task.input["data"] if "data" in task.input
                   else await asyncio.to_thread(self.payloads.unpack, task.input))
        reporter = _HeartbeatRecorder(self, task)
        token = f"{task.run}/{task.key}"
        outcome: AttemptOutcome
        if binding.is_async:
            outcome = await execute_activity_async(binding.function, token, task.key, encoded,
                                                   binding.codec, reporter)
        else:
            outcome = await asyncio.get_running_loop().run_in_executor(
                self._pool, execute_activity, binding.function, token, task.key, encoded,
                binding.codec, reporter)
        self.completed += 1
        fact: Fact = (TaskFailed(task.key, outcome.error, outcome.started_at)
                      if outcome.error is not None else
                      TaskCompleted(task.key, outcome.result or "", outcome.started_at))
        return stamped(fact, time.time())

    def _failure(self, task: TaskMessage, error: Exception) -> Fact:
        log.error("attempt %s of run %s fails: %s", task.key, task.run, error)
        return stamped(TaskFailed(task.key, ErrorInfo.from_exception(error)),
                       time.time())

    def _arm_watch(self, task: TaskMessage) -> None:
        """Record the start and arm the timers that watch a running attempt."""
        now = time.time()
        self.store.record_beat(task.run, task.key, now, start=True)
        timers = []
        if task.start_to_close is not None:
            timers.append(TimerMessage(run=task.run, key=task.key, kind="start_to_close",
                                       fire_at=now + task.start_to_close))
        if task.heartbeat is not None:
            timers.append(TimerMessage(run=task.run, key=task.key, kind="heartbeat",
                                       fire_at=now + task.heartbeat, limit=task.heartbeat))
        if timers:
            self.queues.send_timers(timers)

    async def _send_notifications(self, pairs: list[tuple[str, str]]) -> None:
        entries = numbered([notification_entry(run, why) for run, why in pairs])
        response = await self.sqs.send_message_batch(QueueUrl=self._decision_url,
                                                      Entries=entries)
        if response.get("Failed"):
            raise ServiceError(f"SQS refused notifications: {response['Failed'][0]}")

    async def _delete_messages(self, messages: list[tuple[str, str]]) -> None:
        by_queue: dict[str, list[str]] = {}
        for url, receipt in messages:
            by_queue.setdefault(url, []).append(receipt)
        for url, receipts in by_queue.items():
            response = await self.sqs.delete_message_batch(
                QueueUrl=url, Entries=numbered([{"ReceiptHandle": r} for r in receipts]))
            for failure in response.get("Failed", []):
                log.warning("could not delete a message (%s): it will come back and be "
                            "dropped as done", failure.get("Message", failure.get("Code")))

    async def _keep_alive(self, url: str, receipt: str) -> None:
        lease = self.settings.visibility_timeout
        while True:
            await asyncio.sleep(lease / 2)
            try:
                await self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt,
                                                         VisibilityTimeout=lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a stale lease is not fatal
                log.warning("could not extend a message's lease (%s); another worker may "
                            "run the attempt too, and one result will win", exc)


async def _take_free(slots: asyncio.Semaphore, most: int) -> int:
    """Take up to ``most`` slots that are free now, without waiting."""
    taken = 0
    while taken < most and not slots.locked():
        await slots.acquire()  # returns at once: a slot is free
        taken += 1
    return taken


class _HeartbeatRecorder:
    """Takes ``flowy.heartbeat()`` calls (from any thread) and records the
    latest in the table, at most once per quarter of the heartbeat timeout."""

    def __init__(self, worker: ActivityWorker, task: TaskMessage) -> None:
        self._worker = worker
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._interval = max(0.5, (task.heartbeat or 60.0) / 4)
        self._last = 0.0

    def put(self, message: tuple[str, str, float, str | None]) -> None:
        kind, _token, at, details = message
        if kind != "heartbeat" or not self._task.watched or at - self._last < self._interval:
            return
        self._last = at
        self._loop.call_soon_threadsafe(self._record, at, details)

    def _record(self, at: float, details: str | None) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(
            self._worker.store.record_beat, self._task.run, self._task.key, at, details))
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("recording a heartbeat failed: %s", task.exception())
