"""LocalWorkflow end to end: wait, first, first_n, finish_order, parallel_reduce, restart."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import flowy
from flowy import TaskError, finish_order, first, first_n, wait
from tests import activities as A

pytestmark = pytest.mark.timeout(30)

# Wall-clock upper bounds fail on a slow machine.  Instead, A.step calls record
# their starts and ends in a log, in order: "in parallel" means every call
# started before any ended, and "didn't wait for it" means a call the test holds
# (until "release", which only the test writes) had not ended when run() returned.


@pytest.fixture
def steps(make_workflow, tmp_path) -> Iterator[str]:
    """A log for A.step; held steps are released before the workflows close."""
    path = str(tmp_path / "steps.txt")
    yield path
    A.record(path, "release")  # torn down before make_workflow closes the pools


def ends(log: list[str]) -> list[str]:
    """The labels of the steps that ended, in the order they ended."""
    return [line.removeprefix("end ") for line in log if line.startswith("end ")]


@pytest.fixture
def wait_forms(make_workflow):
    return make_workflow(A.WaitForms).conf_activity("square", A.square)


def test_wait_single_gives_the_plain_value(wait_forms) -> None:
    assert wait_forms.run("single") == ["int", 9]


def test_wait_several_gives_a_tuple(wait_forms) -> None:
    assert wait_forms.run("several") == (9, 16)


def test_wait_containers_keep_their_shape(wait_forms) -> None:
    assert wait_forms.run("containers") == ([1, 4], {"k": 9}, (16, 7))


def test_wait_plain_value_and_nothing(wait_forms) -> None:
    assert wait_forms.run("plain") == 5
    assert wait_forms.run("nothing") == ()


class _WaitSteps:
    """wait() for steps that first meet (all running at once), then sleep their delays."""

    def __init__(self, step):
        self.step = step

    def __call__(self, path, delays):
        results = [self.step(path, i, d, parties=len(delays)) for i, d in enumerate(delays)]
        return list(wait(*results))


def test_wait_blocks_until_all_finished(make_workflow, steps) -> None:
    w = make_workflow(_WaitSteps).conf_activity("step", A.step)
    start = time.monotonic()
    assert w.run(steps, [0.2, 0.5, 0.3]) == [0, 1, 2]
    assert time.monotonic() - start >= 0.5  # it waited for the slowest
    log = A.log_of(steps)
    assert sorted(log[:3]) == ["start 0", "start 1", "start 2"]  # in parallel
    assert sorted(log[3:]) == ["end 0", "end 1", "end 2"]  # all ended before run() returned


def test_wait_raises_the_first_error_to_finish(make_workflow) -> None:
    w = (make_workflow(A.TwoFailures)
         .conf_activity("fail", A.fail_with)
         .conf_activity("identity", A.identity))
    with pytest.raises(TaskError, match="^second called$"):
        w.run("wait", 0.3, 0.1)


@pytest.fixture
def race(make_workflow):
    return make_workflow(A.Race).conf_activity("sleepy", A.sleepy)


class _StepRace:
    """first / first_n / finish_order over ``step(path, label, delay, until, parties)`` calls."""

    def __init__(self, step):
        self.step = step

    def __call__(self, how, path, calls, n=1):
        results = [self.step(path, *call) for call in calls]
        if how == "first":
            return first(*results)
        if how == "first_n":
            return first_n(n, *results)
        return list(finish_order(results))


@pytest.fixture
def step_race(make_workflow):
    return make_workflow(_StepRace).conf_activity("step", A.step)


def test_first_returns_the_first_to_finish_without_waiting_for_the_rest(step_race,
                                                                         steps) -> None:
    # "slow" and "medium" can't end until the test releases them.
    calls = [["slow", 0, "release"], ["fast", 0, None], ["medium", 0, "release"]]
    assert step_race.run("first", steps, calls) == "fast"
    log = A.log_of(steps)
    assert "end fast" in log
    assert "end slow" not in log and "end medium" not in log  # not waited for


def test_first_can_be_a_failure(make_workflow) -> None:
    w = (make_workflow(A.FirstFailure)
         .conf_activity("fail", A.fail_with)
         .conf_activity("sleepy", A.sleepy))
    assert w.run() == ["error", "fast failure"]


def test_first_n(step_race, steps, tmp_path) -> None:
    # "b" ends first, "c" 0.3 s after "b" has ended; "a" and "d" are held until released.
    calls = [["a", 0, "release"], ["b", 0, None], ["c", 0.3, "end b"], ["d", 0, "release"]]
    assert step_race.run("first_n", steps, calls, n=2) == ["b", "c"]
    log = A.log_of(steps)
    assert ends(log) == ["b", "c"]  # "a" and "d" were not waited for
    A.record(steps, "release")  # let them finish, so that they don't hold up the next runs
    other = str(tmp_path / "other.txt")
    assert step_race.run("first_n", other, [["a", 0, None], ["b", 0.3, "end a"]], n=1,
                         _wait=True) == ["a"]
    assert ends(A.log_of(other)) == ["a", "b"]  # _wait=True: "b", still running, ended
    last = str(tmp_path / "last.txt")
    assert step_race.run("first_n", last, [["a", 0.3, "end b"], ["b", 0, None]], n=5) == \
        ["b", "a"]


def test_finish_order_follows_real_timing(step_race, steps) -> None:
    # All four meet (so they run at once), then end in the order b, d, c, a: each
    # one 0.2 s after the one before it has ended.
    calls = [["a", 0.2, "end c", 4], ["b", 0, None, 4], ["c", 0.2, "end d", 4],
             ["d", 0.2, "end b", 4]]
    assert step_race.run("finish_order", steps, calls) == ["b", "d", "c", "a"]
    log = A.log_of(steps)
    assert sorted(log[:4]) == ["start a", "start b", "start c", "start d"]
    assert ends(log) == ["b", "d", "c", "a"]  # every one ended before run() returned


def test_finish_order_gives_plain_values_first(race) -> None:
    assert race.run("finish_order_plain", {"a": 0.3, "b": 0.1, "c": 0.2}) == \
        ["plain", 7, "b", "c", "a"]


@pytest.mark.parametrize("how, expected, adds", [
    ("task", 1 + 4 + 9 + 16 + 25, 4),
    ("task_init", 100 + 55, 5),
    ("plain", 55, 0),
    ("plain_init", 155, 0),
])
def test_parallel_reduce(make_workflow, how: str, expected: int, adds: int) -> None:
    w = (make_workflow(A.Reduce)
         .conf_activity("square", A.square)
         .conf_activity("add", A.add))
    assert w.run(5, how, _trace=True) == expected
    tasks = w.last_trace.runs[0].tasks
    assert sum(1 for t in tasks if t.dependency == "add") == adds
    assert sum(1 for t in tasks if t.dependency == "square") == 5


def test_parallel_reduce_with_a_task_combines_in_parallel(make_workflow, steps) -> None:
    class SlowReduce:
        def __init__(self, step, add):
            self.step, self.add = step, add

        def __call__(self, path):
            items = [self.step(path, i, 0.1, parties=4) for i in range(4)]
            return flowy.parallel_reduce(self.add, items)

    w = (make_workflow(SlowReduce)
         .conf_activity("step", A.step)
         .conf_activity("add", A.add))
    assert w.run(steps) == 6
    # The four items ran at the same time: all started before any ended.
    log = A.log_of(steps)
    assert sorted(log[:4]) == ["start 0", "start 1", "start 2", "start 3"]
    assert sorted(ends(log)) == ["0", "1", "2", "3"]


def test_parallel_reduce_of_nothing_fails_the_run(make_workflow) -> None:
    w = (make_workflow(A.Reduce)
         .conf_activity("square", A.square)
         .conf_activity("add", A.add))
    with pytest.raises(TaskError, match="parallel_reduce") as info:
        w.run(0, "empty")
    assert info.value.type_name == "builtins.ValueError"


@pytest.mark.parametrize("n", [0, 1, 4])
def test_restart_with_result_arguments_stops_after_k_restarts(make_workflow, n: int) -> None:
    w = make_workflow(A.Countdown).conf_activity("add", A.add)
    assert w.run(n, _trace=True) == n * (n + 1) // 2
    runs = w.last_trace.runs
    assert len(runs) == n + 1
    assert [r.status for r in runs] == ["restarted"] * n + ["completed"]
    assert [r.input for r in runs[1:]] == [r.next_input for r in runs[:-1]]
    assert all(len(r.tasks) == 1 for r in runs[:-1])
    assert runs[-1].tasks == ()


def test_restart_with_positional_result_arguments(make_workflow) -> None:
    w = make_workflow(A.CountdownPositional).conf_activity("add", A.add)
    assert w.run(3, 0, _trace=True) == ["done", 6]
    assert len(w.last_trace.runs) == 4


def test_restart_with_a_failed_result_fails_the_run(make_workflow) -> None:
    def factory(fail):
        import flowy

        def workflow(n):
            return flowy.restart(fail("can't restart"))
        return workflow

    w = make_workflow(factory).conf_activity("fail", A.fail_with)
    with pytest.raises(TaskError, match="^can't restart$"):
        w.run(1)
