"""LocalWorkflow end to end: wait, first, first_n, finish_order, parallel_reduce, restart."""

from __future__ import annotations

import time

import pytest

from flowy import TaskError
from tests import activities as A

pytestmark = pytest.mark.timeout(30)


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


def test_wait_blocks_until_all_finished(make_workflow) -> None:
    w = make_workflow(A.WaitTiming).conf_activity("sleepy", A.sleepy)
    start = time.monotonic()
    assert w.run([0.2, 0.5, 0.3]) == [0, 1, 2]
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 0.9  # in parallel, and for the slowest


def test_wait_raises_the_first_error_to_finish(make_workflow) -> None:
    w = (make_workflow(A.TwoFailures)
         .conf_activity("fail", A.fail_with)
         .conf_activity("identity", A.identity))
    with pytest.raises(TaskError, match="^second called$"):
        w.run("wait", 0.3, 0.1)


@pytest.fixture
def race(make_workflow):
    return make_workflow(A.Race).conf_activity("sleepy", A.sleepy)


def test_first_returns_the_first_to_finish_without_waiting_for_the_rest(race) -> None:
    start = time.monotonic()
    assert race.run("first", {"slow": 0.6, "fast": 0.1, "medium": 0.3}) == "fast"
    assert time.monotonic() - start < 0.45


def test_first_can_be_a_failure(make_workflow) -> None:
    w = (make_workflow(A.FirstFailure)
         .conf_activity("fail", A.fail_with)
         .conf_activity("sleepy", A.sleepy))
    assert w.run() == ["error", "fast failure"]


def test_first_n(race) -> None:
    start = time.monotonic()
    delays = {"a": 0.6, "b": 0.1, "c": 0.3, "d": 0.45}
    assert race.run("first_n", delays, n=2) == ["b", "c"]
    assert time.monotonic() - start < 0.45
    # _wait=True: let the losers finish, so that they don't hold up the next run's tasks.
    assert race.run("first_n", delays, n=0, _wait=True) == []
    assert race.run("first_n", {"a": 0.2, "b": 0.1}, n=5) == ["b", "a"]


def test_finish_order_follows_real_timing(race) -> None:
    delays = {"a": 0.45, "b": 0.05, "c": 0.3, "d": 0.15}
    start = time.monotonic()
    assert race.run("finish_order", delays) == ["b", "d", "c", "a"]
    assert 0.45 <= time.monotonic() - start < 0.8


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


def test_parallel_reduce_with_a_task_combines_in_parallel(make_workflow) -> None:
    class SlowReduce:
        def __init__(self, sleepy, add):
            self.sleepy, self.add = sleepy, add

        def __call__(self):
            import flowy
            items = [self.sleepy(i, 0.3) for i in range(4)]
            return flowy.parallel_reduce(self.add, items)

    w = (make_workflow(SlowReduce)
         .conf_activity("sleepy", A.sleepy)
         .conf_activity("add", A.add))
    start = time.monotonic()
    assert w.run() == 6
    # Four 0.3 s items in parallel, then the adds (which are quick): well under 2 x 0.3.
    assert time.monotonic() - start < 0.6


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
