"""One live workflow run: the workflow code, its calls and its futures.

The workflow code runs in a greenlet.  When it reads a result that is not
finished, the greenlet switches back to the decider, which returns the
decisions made so far; when later facts finish that result, the decider
switches back in and the code goes on where it stopped.  So a decision costs
the new events only, never a replay of the whole history (the original Flowy
replayed everything on every decision, which made a 1,000-step chain take
11.5 s).  A greenlet is a coroutine, not a thread: the core still does no I/O
and reads no clock, and everything it does is a function of the history.

When a live run is not at hand (another process, an evicted cache), the
decider rebuilds it by feeding the recorded history to a fresh Execution, one
decision batch at a time (see :mod:`flowy.core.replay`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import greenlet

from .codec import Codec, decode_arguments, decode_text, encode_error
from .errors import (
    ConfigurationError,
    EncodeError,
    ErrorInfo,
    FlowyError,
    RunCancelled,
    TaskTimedout,
)
from .events import (
    CancelRequested,
    Decision,
    Fact,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskKind,
    TaskScheduled,
    TaskTimedOut,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
)
from .limits import payload_size
from .redaction import describe
from .result import Future, Result, iter_futures, make_result, unwrap
from .spec import TaskSpec

WorkflowFactory = Callable[..., Callable[..., Any]]


@dataclass(frozen=True)
class Restart:
    """Returned by a workflow to continue as a new run with these arguments."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class TaskProxy:
    """What a workflow receives for a dependency: calling it schedules a task."""

    __slots__ = ("_execution", "_name")

    def __init__(self, execution: Execution, name: str) -> None:
        self._execution = execution
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        return self._execution.call(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<flowy dependency {self._name!r}>"


class _Waiter:
    """Counts down the futures a suspended workflow still needs."""

    __slots__ = ("missing",)

    def __init__(self, missing: int) -> None:
        self.missing = missing

    def notify(self, _future: Future) -> None:
        self.missing -= 1


class Execution:
    """A workflow run inside the core: apply facts, get decisions.

    ``decide(facts)`` applies outside facts in history order, resumes the
    workflow code if what it waits for is there, and returns the decisions to
    commit.  The caller must commit them before the next ``decide``; if the
    commit fails, it must drop this Execution and rebuild one from history.
    """

    def __init__(self, factory: WorkflowFactory, specs: Mapping[str, TaskSpec],
                 codec: Codec) -> None:
        self.codec = codec
        self._factory = factory
        self._specs = dict(specs)
        self._counters = dict.fromkeys(self._specs, 0)
        self._futures: dict[str, Future] = {}
        self._inputs: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._open_attempts: dict[str, tuple[Future, int]] = {}
        self._backoff_timers: dict[str, tuple[Future, int]] = {}
        self._timers: dict[str, Future] = {}  # calls of timer dependencies, by key
        # Signals by name: the values received (with their positions) and the
        # calls waiting for them; the n-th call takes the n-th value.
        self._signals: dict[str, list[tuple[str, int]]] = {}
        self._signal_calls: dict[str, list[Future]] = {}
        self._decisions: list[Decision] = []
        self._greenlet: greenlet.greenlet | None = None
        self._waiter: _Waiter | None = None
        self.position = 0  # how many history events this execution has consumed
        self.size = 0  # and their payloads' characters (see flowy.core.limits)
        self.clock = -1  # see observe()
        self.closed = False

    # -- driving ------------------------------------------------------------

    def decide(self, facts: list[Fact]) -> list[Decision]:
        for fact in facts:
            if not self.closed:
                self._apply(fact)
            self.position += 1
            self.size += payload_size(fact)
        if not self.closed and self._greenlet is not None and self._ready_to_resume():
            self._waiter = None
            # Switch back to whoever drives this decision, not whoever created the run.
            self._greenlet.parent = greenlet.getcurrent()
            self._greenlet.switch()
        decisions, self._decisions = self._decisions, []
        self.position += len(decisions)
        self.size += sum(map(payload_size, decisions))
        return decisions

    def overrule(self, made: list[Decision], decision: Decision) -> list[Decision]:
        """Close the run with ``decision`` in place of ``made``, what the last
        :meth:`decide` returned: the decider's verdict on decisions the code
        made (a limit they would pass).  The workflow code never resumes."""
        self.position += 1 - len(made)
        self.size += payload_size(decision) - sum(map(payload_size, made))
        self.closed = True
        return [decision]

    def _ready_to_resume(self) -> bool:
        return self._waiter is None or self._waiter.missing <= 0

    def in_workflow(self) -> bool:
        return self._greenlet is not None and greenlet.getcurrent() is self._greenlet

    def block_until(self, futures: tuple[Future, ...] | list[Future], count: int) -> None:
        """Suspend the workflow code until ``count`` of ``futures`` have finished."""
        missing = count - sum(1 for f in futures if f.done)
        if missing > 0:
            if not self.in_workflow():
                raise FlowyError("workflow results can only be waited for from workflow code")
            waiter = _Waiter(missing)
            for future in futures:
                if not future.done:
                    future.add_callback(waiter.notify)
            self._waiter = waiter
            assert self._greenlet is not None and self._greenlet.parent is not None
            self._greenlet.parent.switch()
        if count > 0:
            # The code goes on from the moment the count-th of them finished.
            finished = sorted(f.finish_index for f in futures if f.done)
            self.observe(finished[count - 1])

    def observe(self, finish_index: int) -> None:
        """Advance the workflow's logical clock past a result it has seen finished.

        The clock stands for "when" the code runs, in history positions.  It
        depends only on what the code has waited for, never on how facts were
        batched into decisions, so a replay gives every call the same time.
        """
        if finish_index > self.clock:
            self.clock = finish_index

    # -- facts --------------------------------------------------------------

    def _apply(self, fact: Fact) -> None:
        if isinstance(fact, WorkflowStarted):
            if self._greenlet is None:
                try:
                    args, kwargs = decode_arguments(self.codec, fact.input, "the run's input")
                except EncodeError as exc:  # the run fails, its error encoded as any other
                    self._fail(ErrorInfo.from_exception(exc))
                    return
                self._greenlet = greenlet.greenlet(lambda: self._main(args, kwargs))
        elif isinstance(fact, TaskCompleted):
            opened = self._open_attempts.pop(fact.key, None)
            if opened is not None:  # else late or duplicate: ignored
                opened[0].succeed(fact.result, self.position)
        elif isinstance(fact, TaskFailed):
            opened = self._open_attempts.pop(fact.key, None)
            if opened is not None:
                self._attempt_failed(opened[0], opened[1], fact.error)
        elif isinstance(fact, TaskTimedOut):
            opened = self._open_attempts.pop(fact.key, None)
            if opened is not None:
                future, attempt = opened
                message = (f"{future.call_id} timed out "
                           f"({fact.timeout_type.replace('_', '-')}) on attempt {attempt}")
                if fact.details:  # the activity's own words, encoded as its errors are
                    message += ("; last heartbeat details: "
                                + decode_text(self.codec, fact.details))
                self._attempt_failed(future, attempt, TaskTimedout(message).info)
        elif isinstance(fact, TimerFired):
            backoff = self._backoff_timers.pop(fact.key, None)
            if backoff is not None:
                self._schedule_attempt(*backoff)
            timer = self._timers.pop(fact.key, None)
            if timer is not None:
                timer.succeed(self.codec.encode(None), self.position)
        elif isinstance(fact, SignalReceived):
            received = self._signals.setdefault(fact.name, [])
            received.append((fact.value, self.position))
            calls = self._signal_calls.get(fact.name, [])
            if len(received) <= len(calls):
                calls[len(received) - 1].succeed(fact.value, self.position)
        elif isinstance(fact, CancelRequested):
            # The suspended workflow code never resumes; tasks still running
            # finish as late facts of a closed run.
            message = "the run was cancelled" + (f": {fact.reason}" if fact.reason else "")
            self._fail(RunCancelled(message).info)

    def _attempt_failed(self, future: Future, attempt: int, error: ErrorInfo) -> None:
        policy = self._specs[_dependency_of(future.call_id)].retry
        if not policy.should_retry(attempt, error):
            future.fail(error, self.position)
            return
        delay = policy.delay(attempt)
        if delay <= 0:
            self._schedule_attempt(future, attempt + 1)
            return
        key = f"{future.call_id}-{attempt + 1}.backoff"
        self._backoff_timers[key] = (future, attempt + 1)
        self._decisions.append(TimerStarted(key, delay))

    # -- calls --------------------------------------------------------------

    def call(self, dependency: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Result:
        if self.closed or not self.in_workflow():
            raise FlowyError(f"{dependency}() was called outside its workflow's code")
        number = self._counters[dependency]
        self._counters[dependency] = number + 1
        future = Future(f"{dependency}-{number}", self)
        self._futures[future.call_id] = future
        if self._specs[dependency].kind == "signal":
            if args or kwargs:
                raise ConfigurationError(f"{dependency}() is a signal: call it with no "
                                         "arguments")
            self._wait_for_signal(dependency, future)
            return make_result(future)
        deps = list({id(f): f for f in iter_futures((args, kwargs))}.values())
        for dep in deps:
            dep.observed = True  # a failed argument is handled by failing this call
        failed = [d for d in deps if d.failed]
        if failed:
            cause = min(failed, key=lambda f: f.finish_index)
            assert cause.error is not None
            future.fail(cause.error, cause.finish_index)
        else:
            pending = [d for d in deps if not d.done]
            if pending:
                self._schedule_when_ready(future, pending, args, kwargs, deps)
            else:
                self._schedule_first(future, args, kwargs, deps, self.clock)
        return make_result(future)

    def _schedule_when_ready(self, future: Future, pending: list[Future], args: tuple[Any, ...],
                             kwargs: dict[str, Any], deps: list[Future]) -> None:
        missing = [len(pending)]
        called_at = self.clock

        def on_dep_done(dep: Future) -> None:
            if future.done:
                return
            if dep.failed:
                assert dep.error is not None
                future.fail(dep.error, dep.finish_index)
                return
            missing[0] -= 1
            if missing[0] == 0:
                self._schedule_first(future, args, kwargs, deps, called_at)

        for dep in pending:
            dep.add_callback(on_dep_done)

    def _wait_for_signal(self, name: str, future: Future) -> None:
        calls = self._signal_calls.setdefault(name, [])
        calls.append(future)
        received = self._signals.get(name, [])
        if len(calls) <= len(received):
            value, position = received[len(calls) - 1]
            future.succeed(value, position)

    def _start_timer(self, future: Future, args: list[Any], kwargs: dict[str, Any],
                     failed_at: int) -> None:
        seconds = args[0] if len(args) == 1 and not kwargs else None
        if (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                or not 0 <= seconds < float("inf")):
            # A number is shown, since it is what was wrong; anything else is payload.
            shown = [repr(a) if type(a) in (int, float) else describe(a) for a in args]
            given = [*shown, *(f"{k}={describe(v)}" for k, v in kwargs.items())]
            future.fail(ErrorInfo.from_exception(ConfigurationError(
                f"{future.call_id}: a timer takes one number of seconds >= 0, got "
                f"({', '.join(given)})")), failed_at)
            return
        self._timers[future.call_id] = future
        self._decisions.append(TimerStarted(future.call_id, float(seconds)))

    def _schedule_first(self, future: Future, args: tuple[Any, ...], kwargs: dict[str, Any],
                        deps: list[Future], called_at: int) -> None:
        # A call that can't start fails when it could first run: at its call, or
        # when its last argument finished.
        failed_at = max([called_at, *(d.finish_index for d in deps)])
        if self._specs[_dependency_of(future.call_id)].kind == "timer":
            self._start_timer(future, list(unwrap(args)), unwrap(kwargs), failed_at)
            return
        try:
            encoded = self.codec.encode([list(unwrap(args)), unwrap(kwargs)])
        except EncodeError as exc:
            future.fail(ErrorInfo.from_exception(
                EncodeError(f"can't schedule {future.call_id}: {exc}")), failed_at)
            return
        self._inputs[future.call_id] = (encoded, tuple(d.call_id for d in deps))
        self._schedule_attempt(future, 1)

    def _schedule_attempt(self, future: Future, attempt: int) -> None:
        dependency = _dependency_of(future.call_id)
        spec = self._specs[dependency]
        encoded, deps = self._inputs[future.call_id]
        key = f"{future.call_id}-{attempt}"
        self._open_attempts[key] = (future, attempt)
        kind: TaskKind = "workflow" if spec.kind == "workflow" else "activity"  # not timers
        self._decisions.append(TaskScheduled(
            key, future.call_id, dependency, kind, encoded, attempt, deps,
            spec.start_to_close, spec.schedule_to_start, spec.heartbeat))

    # -- the workflow code ----------------------------------------------------

    def _main(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        try:
            check_factory(self._factory, self._specs)
            proxies = {name: TaskProxy(self, name) for name in self._specs}
            value = self._factory(**proxies)(*args, **kwargs)
            self._close(value)
        except greenlet.GreenletExit:
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of user code fails the run
            self._fail(ErrorInfo.from_exception(exc))

    def _close(self, value: Any) -> None:
        if isinstance(value, Restart):
            payload: Any = [list(value.args), value.kwargs]
        else:
            payload = value
        futures = list(iter_futures(payload))
        self.block_until(futures, len(futures))
        for future in futures:
            future.observed = True
        failed = [f for f in futures if f.failed]
        if failed:
            error = min(failed, key=lambda f: f.finish_index).error
            assert error is not None
            self._fail(error)
            return
        encoded = self.codec.encode(unwrap(payload))
        ignored = tuple(f.call_id for f in self._futures.values() if f.failed and not f.observed)
        if isinstance(value, Restart):
            self._close_with(WorkflowRestarted(encoded, ignored))
        else:
            self._close_with(WorkflowCompleted(encoded, ignored))

    def _fail(self, error: ErrorInfo) -> None:
        # Whatever the error's origin (this code, an activity, a sub-workflow,
        # the engine), it is recorded as the codec encodes errors: an
        # encrypting codec leaves no plaintext message in the run's record.
        self._close_with(WorkflowFailed(encode_error(self.codec, error)))

    def _close_with(self, decision: Decision) -> None:
        self._decisions.append(decision)
        self.closed = True


def _dependency_of(call_id: str) -> str:
    return call_id.rpartition("-")[0]


def check_factory(factory: WorkflowFactory, specs: Mapping[str, TaskSpec]) -> None:
    """Fail early, with a useful message, when factory and configuration disagree."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # not introspectable: let the call itself report problems
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    name = getattr(factory, "__qualname__", repr(factory))
    for param in params.values():
        if (param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
                and param.default is param.empty and param.name not in specs):
            raise ConfigurationError(
                f"workflow {name} needs dependency {param.name!r}, which is not configured: "
                f"add conf_activity({param.name!r}, ...) or conf_workflow({param.name!r}, ...)")
    if not takes_any:
        for dependency in specs:
            if dependency not in params:
                raise ConfigurationError(
                    f"workflow {name} does not take the configured dependency "
                    f"{dependency!r}: add a parameter named {dependency!r} to it, "
                    "or remove that configuration")

