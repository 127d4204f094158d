"""LocalWorkflow end to end: results, concurrency and dependencies inferred from calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import flowy
from flowy import ConfigurationError, LocalWorkflow, TaskError
from tests import activities as A

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def steps(make_workflow, tmp_path) -> Iterator[str]:
    """A log that A.step calls record their starts and ends in, in order.

    "In parallel" is shown by the log (every call started before any ended),
    not by a wall-clock bound, which a slow machine would break.
    """
    path = str(tmp_path / "steps.txt")
    yield path
    A.record(path, "release")  # torn down before make_workflow closes the pools


def example(make_workflow, **kwargs) -> LocalWorkflow:
    return (make_workflow(A.ExampleWorkflow, **kwargs)
            .conf_activity("square", A.square)
            .conf_activity("sum", A.add))


def test_readme_example(make_workflow) -> None:
    w = example(make_workflow)
    assert w.run(2, 10) == 104
    assert w.run(a=3, b=4) == 25
    assert w.run(0, b=-5) == 25


def test_result_is_a_plain_value(make_workflow) -> None:
    w = example(make_workflow)
    result = w.run(2, 10)
    assert type(result) is int
    assert w.run(1.5, 0) == 2.25


class _ParallelSteps:
    def __init__(self, step):
        self.step = step

    def __call__(self, path):
        # Each call waits until both have started: one after the other, the
        # first would wait in vain (until its limit) and end before the second started.
        a = self.step(path, "a", parties=2)
        b = self.step(path, "b", parties=2)
        return [a, b]


def test_independent_calls_run_in_parallel(make_workflow, steps) -> None:
    w = make_workflow(_ParallelSteps).conf_activity("step", A.step)
    assert w.run(steps) == ["a", "b"]
    log = A.log_of(steps)
    assert sorted(log[:2]) == ["start a", "start b"]
    assert sorted(log[2:]) == ["end a", "end b"]


class _SequentialSteps:
    def __init__(self, step):
        self.step = step

    def __call__(self, path, delay):
        a = self.step(path, 1, delay)
        return self.step(path, a + 1, delay)  # touching a blocks before the second call


def test_dependent_chain_runs_in_sequence(make_workflow, steps) -> None:
    w = make_workflow(_SequentialSteps).conf_activity("step", A.step)
    start = time.monotonic()
    assert w.run(steps, 0.3) == 2
    assert time.monotonic() - start >= 0.6
    assert A.log_of(steps) == ["start 1", "end 1", "start 2", "end 2"]


def test_results_nested_in_containers_and_kwargs_are_dependencies(make_workflow) -> None:
    w = (make_workflow(A.Nested)
         .conf_activity("square", A.square)
         .conf_activity("describe", A.describe))
    arg_shapes, kwarg_shapes, args, kwargs = w.run(_trace=True)
    # The activity got plain values, in the containers the workflow built.
    assert args == [[1, {"k": 4}], (9, 5)]
    assert kwargs == {"key": 16, "plain": {"x": [1]}}
    assert arg_shapes == [["list", ["int", ["dict", {"k": "int"}]]],
                          ["tuple", ["int", "int"]]]
    assert kwarg_shapes == {"key": "int", "plain": ["dict", {"x": ["list", ["int"]]}]}
    # And it was scheduled only after every nested result finished.
    run = w.last_trace.runs[0]
    describe = run.task("describe-0")
    assert describe.deps == ("square-0", "square-1", "square-2", "square-3")
    finished = max(run.task(f"square-{i}").attempts[-1].finished_at for i in range(4))
    assert describe.attempts[0].scheduled_at >= finished


def test_activities_receive_plain_values(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.describe)
    shapes, kw_shapes, args, kwargs = w.run(3, [1, 2], {"a": 1}, (1,), k=None)
    assert shapes == ["int", ["list", ["int", "int"]], ["dict", {"a": "int"}],
                      ["tuple", ["int"]]]
    assert kw_shapes == {"k": "NoneType"}
    assert args == [3, [1, 2], {"a": 1}, (1,)]
    assert kwargs == {"k": None}


class _PlainFromResults:
    def __init__(self, square, describe):
        self.square = square
        self.describe = describe

    def __call__(self):
        sq = self.square
        return self.describe(sq(3), [sq(1), sq(2)], {"k": sq(4)})


def test_results_arrive_in_activities_as_plain_values(make_workflow) -> None:
    # Workflows run in this process even with a process pool; only activities
    # must be module-level.
    w = (make_workflow(_PlainFromResults)
         .conf_activity("square", A.square)
         .conf_activity("describe", A.describe))
    shapes, _, args, _ = w.run()
    assert shapes == ["int", ["list", ["int", "int"]], ["dict", {"k": "int"}]]
    assert args == [9, [1, 4], {"k": 16}]


def test_results_behave_like_their_values_in_workflow_code(make_workflow) -> None:
    w = make_workflow(A.Branching).conf_activity("square", A.square)
    assert w.run(5) == 0 + 4 + 16


def test_calls_in_init(make_workflow) -> None:
    w = (make_workflow(A.InitCalls)
         .conf_activity("square", A.square)
         .conf_activity("sum", A.add))
    assert w.run(1) == 10
    assert w.run(-9) == 0


def test_workflow_without_calls(make_workflow) -> None:
    w = make_workflow(lambda: (lambda x: {"got": x}))
    assert w.run([1, 2]) == {"got": [1, 2]}


@pytest.mark.parametrize("name", ["1abc", "my-name", "class", "def", "", "a b", "None"])
def test_conf_activity_rejects_invalid_names(make_workflow, name: str) -> None:
    w = make_workflow(A.SingleCall)
    with pytest.raises(ValueError, match="not a valid Python identifier") as info:
        w.conf_activity(name, A.square)
    assert isinstance(info.value, ConfigurationError)
    with pytest.raises(ValueError, match="not a valid Python identifier"):
        w.conf_workflow(name, make_workflow(A.SingleCall))


def test_conf_activity_rejects_duplicate_names(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.square)
    with pytest.raises(ValueError, match="configured twice"):
        w.conf_activity("task", A.add)
    with pytest.raises(ValueError, match="configured twice"):
        w.conf_workflow("task", make_workflow(A.SingleCall))
    # The first configuration stays in force.
    assert w.run(7) == 49


def test_conf_workflow_rejects_itself_and_non_workflows(make_workflow) -> None:
    w = make_workflow(A.SingleCall)
    with pytest.raises(ConfigurationError, match="own sub-workflow"):
        w.conf_workflow("task", w)
    with pytest.raises(ConfigurationError, match="takes a workflow declaration"):
        w.conf_workflow("task", A.ExampleWorkflow)


def test_missing_dependency_fails_the_run_naming_it(make_workflow) -> None:
    w = make_workflow(A.ExampleWorkflow).conf_activity("square", A.square)
    with pytest.raises(TaskError, match="'sum'") as info:
        w.run(2, 10)
    assert "not configured" in str(info.value)
    assert info.value.type_name == "flowy.ConfigurationError"


def test_unexpected_dependency_fails_the_run_naming_it(make_workflow) -> None:
    w = example(make_workflow).conf_activity("cube", A.square)
    with pytest.raises(TaskError, match="'cube'") as info:
        w.run(2, 10)
    assert "does not take the configured dependency" in str(info.value)


def test_string_reference_to_an_activity(make_workflow) -> None:
    w = (make_workflow(A.ExampleWorkflow)
         .conf_activity("square", "tests.activities:square")
         .conf_activity("sum", "tests.activities:add"))
    assert w.run(2, 10) == 104
    x = make_workflow(A.SingleCall).conf_activity("task", "tests.activities:square")
    assert x.run(12) == 144


@pytest.mark.parametrize("ref", ["tests.activities:nope", "tests.no_such_module:f",
                                 "tests.activities", "tests.activities:COUNTER"])
def test_bad_string_reference_is_a_configuration_error(make_workflow, ref: str) -> None:
    with pytest.raises(ConfigurationError):
        make_workflow(A.SingleCall).conf_activity("task", ref)


def test_invalid_worker_counts(executor) -> None:
    with pytest.raises(ConfigurationError):
        LocalWorkflow(A.SingleCall, activity_workers=0, executor=executor)
    with pytest.raises(ConfigurationError):
        LocalWorkflow(A.SingleCall, workflow_workers=0, executor=executor)


def test_concurrent_runs_of_one_workflow(make_workflow) -> None:
    w = example(make_workflow, workflow_workers=2)
    results: dict[int, object] = {}

    def go(i: int) -> None:
        results[i] = w.run(i, 1)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {i: i * i + 1 for i in range(8)}


class _MeetAndSleep:
    def __init__(self, step, sleepy):
        self.step = step
        self.sleepy = sleepy

    def __call__(self, path, label, parties):
        return [self.step(path, label, parties=parties), self.sleepy("b", 0.1)]


def test_start_runs_many_at_once(make_workflow, steps) -> None:
    w = (make_workflow(_MeetAndSleep)
         .conf_activity("step", A.step)
         .conf_activity("sleepy", A.sleepy))
    # 8 tasks, 4 workers.  Each run's step waits until the steps of all four runs
    # have started, which only happens if the four runs go at the same time.
    handles = [w.start(steps, f"run{i}", 4) for i in range(4)]
    assert [h.result(timeout=20) for h in handles] == [[f"run{i}", "b"] for i in range(4)]
    assert all(h.done() for h in handles)
    log = A.log_of(steps)
    assert sorted(log[:4]) == [f"start run{i}" for i in range(4)]
    assert sorted(log[4:]) == [f"end run{i}" for i in range(4)]
    assert len({h.run_ids[0] for h in handles}) == 4


def test_start_result_timeout(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.sleepy)
    handle = w.start("late", 0.4)
    assert not handle.done()
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    assert handle.result(timeout=5) == "late"
    assert handle.done()


def test_start_follows_restarts(make_workflow) -> None:
    w = make_workflow(A.Countdown).conf_activity("add", A.add)
    handle = w.start(3)
    assert handle.result(timeout=5) == 6
    assert len(handle.run_ids) == 4
    assert [r.run_id for r in handle.trace().runs] == handle.run_ids


def test_workflow_can_be_run_again_after_close(make_workflow) -> None:
    w = example(make_workflow)
    assert w.run(1, 2) == 5
    w.close()
    assert w.run(2, 3) == 13


def test_close_stops_pool_workers(executor) -> None:
    import psutil

    me = psutil.Process()
    before_threads = set(threading.enumerate())
    before_children = {p.pid for p in me.children(recursive=True)}
    w = (LocalWorkflow(A.ExampleWorkflow, executor=executor, activity_workers=2)
         .conf_activity("square", A.square).conf_activity("sum", A.add))
    assert w.run(2, 10) == 104
    w.close()
    deadline = time.monotonic() + 5  # only a limit: the loop ends as soon as they're gone
    while True:
        threads = [t.name for t in threading.enumerate()
                   if t not in before_threads and t.is_alive()]
        children = [p.pid for p in me.children(recursive=True)
                    if p.pid not in before_children
                    and p.status() != psutil.STATUS_ZOMBIE]
        if (not threads and not children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert threads == []
    assert children == []


def test_flowy_public_api() -> None:
    assert flowy.TaskTimedout.__mro__[1] is flowy.TaskError
    assert issubclass(flowy.NondeterminismError, flowy.TaskError)
    assert issubclass(flowy.ConfigurationError, ValueError)


def test_a_decision_over_the_limit_fails_the_run_with_its_error(make_workflow) -> None:
    w = (make_workflow(A.Reduce, limits=flowy.Limits(tasks_per_decision=3))
         .conf_activity("square", A.square).conf_activity("add", A.add))
    assert w.run(3, "plain") == 14  # three squares at once: at the limit
    with pytest.raises(flowy.DecisionLimitError, match="started 4 tasks and timers, over the "
                       "limit of 3 per decision"):
        w.run(4, "plain")


def test_restarts_keep_each_history_under_its_limit(make_workflow) -> None:
    # Each run schedules one task (2 events), then restarts: a run can always close.
    limits = flowy.Limits(history_events=2, history_events_warning=2)
    w = make_workflow(A.Countdown, limits=limits).conf_activity("add", A.add)
    assert w.run(5) == 15
