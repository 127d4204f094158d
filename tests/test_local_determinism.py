"""LocalWorkflow end to end: cache_size=0 replays every decision and checks determinism."""

from __future__ import annotations

import hashlib

import pytest

import flowy
from flowy import NondeterminismError, RetryPolicy, TaskError
from tests import activities as A

pytestmark = pytest.mark.timeout(30)


def test_changing_argument_is_caught_on_replay(make_workflow) -> None:
    w = make_workflow(A.ReadsCounter, cache_size=0).conf_activity("identity", A.identity)
    with pytest.raises(NondeterminismError) as info:
        w.run(_trace=True)
    message = str(info.value)
    assert isinstance(info.value, TaskError)
    assert info.value.type_name == "flowy.NondeterminismError"
    assert "identity-0" in message
    assert message.startswith("workflow is not deterministic: on replay the workflow made "
                              "identity-0-1 (identity with an input of ")
    assert "but the history recorded identity-0-1 (identity with an input of " in message
    run = w.last_trace.runs[0]
    assert run.status == "failed"
    assert run.task("identity-0").status == "completed"


def test_changing_argument_goes_unnoticed_with_the_cache(make_workflow) -> None:
    w = make_workflow(A.ReadsCounter).conf_activity("identity", A.identity)
    assert isinstance(w.run(), int)


def test_changing_calls_are_caught_on_replay(make_workflow, tmp_path) -> None:
    w = (make_workflow(A.ReadsFile, cache_size=0)
         .conf_activity("touch", A.touch)
         .conf_activity("extra", A.identity))
    with pytest.raises(NondeterminismError) as info:
        w.run(str(tmp_path / "flag"))
    assert str(info.value).startswith(
        "workflow is not deterministic: on replay the workflow made extra-0-1 (extra with "
        "an input of 8 characters, SHA-256 "
        f"{hashlib.sha256(b'[[1],{}]').hexdigest()[:12]}), which the history does not have.")


def test_changing_calls_go_unnoticed_with_the_cache(make_workflow, tmp_path) -> None:
    w = (make_workflow(A.ReadsFile)
         .conf_activity("touch", A.touch)
         .conf_activity("extra", A.identity))
    assert w.run(str(tmp_path / "flag")) is True


def test_missing_call_is_caught_on_replay(make_workflow, tmp_path) -> None:
    class SkipsOnReplay:
        def __init__(self, touch, extra):
            self.touch, self.extra = touch, extra

        def __call__(self, path):
            import os
            done = self.touch(path)
            if not os.path.exists(path):  # true only before touch ran
                self.extra(1)
            return done

    w = (make_workflow(SkipsOnReplay, cache_size=0)
         .conf_activity("touch", A.touch)
         .conf_activity("extra", A.sleepy))
    with pytest.raises(NondeterminismError, match="extra-0") as info:
        w.run(str(tmp_path / "flag"))
    assert "did not make that call" in str(info.value)


def _example(make_workflow, **kw):
    return (make_workflow(A.ExampleWorkflow, **kw)
            .conf_activity("square", A.square).conf_activity("sum", A.add))


def _mixed(make_workflow, **kw):
    return (make_workflow(A.Mixed, **kw)
            .conf_activity("square", A.square)
            .conf_activity("add", A.add)
            .conf_activity("flaky", A.flaky, retry=RetryPolicy(max_attempts=2,
                                                               initial_delay=0.01))
            .conf_activity("fail", A.fail_with)
            .conf_activity("sleepy", A.sleepy))


def _reduce(make_workflow, **kw):
    return (make_workflow(A.Reduce, **kw)
            .conf_activity("square", A.square).conf_activity("add", A.add))


def _race(make_workflow, **kw):
    return make_workflow(A.Race, **kw).conf_activity("sleepy", A.sleepy)


def _sub(make_workflow, **kw):
    child = _example(make_workflow, **kw)
    return (make_workflow(A.Parent, **kw)
            .conf_workflow("sub", child, retry=RetryPolicy(max_attempts=2))
            .conf_activity("square", A.square))


def _catch(make_workflow, **kw):
    return (make_workflow(A.CatchAndContinue, **kw)
            .conf_activity("fail", A.fail_with).conf_activity("square", A.square))


CASES = {
    "example": (_example, (2, 10), {}, 104),
    "init": (lambda mk, **kw: mk(A.InitCalls, **kw).conf_activity("square", A.square)
             .conf_activity("sum", A.add), (1,), {}, 10),
    "branching": (lambda mk, **kw: mk(A.Branching, **kw).conf_activity("square", A.square),
                  (6,), {}, 0 + 4 + 16),
    "reduce": (_reduce, (6, "task"), {}, 91),
    "finish_order": (_race, ("finish_order", {"a": 0.3, "b": 0.05, "c": 0.15}), {},
                     ["b", "c", "a"]),
    "first_n": (_race, ("first_n", {"a": 0.3, "b": 0.05, "c": 0.15}), {"n": 2}, ["b", "c"]),
    "catch": (_catch, ("boom",), {}, [["boom", "builtins.ValueError", True], 16]),
    "restart": (lambda mk, **kw: mk(A.Countdown, **kw).conf_activity("add", A.add),
                (5,), {}, 15),
    "sub-workflow": (_sub, (1, 2), {}, 25),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_deterministic_workflows_give_the_same_result_without_the_cache(
        make_workflow, case: str) -> None:
    build, args, kwargs, expected = CASES[case]
    cached = build(make_workflow)
    replayed = build(make_workflow, cache_size=0)
    assert cached.run(*args, **kwargs, _trace=True) == expected
    cached_trace = cached.last_trace
    assert replayed.run(*args, **kwargs, _trace=True) == expected
    replayed_trace = replayed.last_trace
    # The same calls and attempts (which results a reduction pairs up depends on
    # timing, so dependencies may differ between the two runs).
    def shape(trace):
        return [sorted((t.call_id, len(t.attempts)) for t in run.tasks) for run in trace.runs]

    assert shape(cached_trace) == shape(replayed_trace)


def test_mixed_workflow_gives_the_same_result_without_the_cache(make_workflow,
                                                               calls_file) -> None:
    # Per round: 14 (reduce) + 1000 (first) + 1 (caught) + flaky attempt number
    # (2 in round one, where it fails once; 3 and 4 after).
    expected = (14 + 1000 + 1) * 3 + 2 + 3 + 4
    assert _mixed(make_workflow).run(calls_file("cached"), 3) == expected
    assert _mixed(make_workflow, cache_size=0).run(calls_file("replayed"), 3) == expected
    assert A.calls(calls_file("cached")) == A.calls(calls_file("replayed")) == 4


def test_small_cache_evicts_and_replays(make_workflow) -> None:
    # One cached run per decider thread, several runs at once: runs get evicted and
    # rebuilt by replay, and still finish with the right results.
    import threading

    w = _example(make_workflow, cache_size=1, workflow_workers=1)
    results = {}

    def go(i):
        results[i] = w.run(i, 2)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {i: i * i + 4 for i in range(6)}


def test_nondeterministic_sub_workflow_fails_the_parent(make_workflow) -> None:
    # Sub-workflows run on their parent's decider: its cache_size=0 replays them.
    child = make_workflow(A.ReadsCounter).conf_activity("identity", A.identity)
    parent = make_workflow(A.ParentCatch, cache_size=0).conf_workflow("sub", child)
    type_name, message, error_class = parent.run()
    assert type_name == "flowy.NondeterminismError"
    assert error_class == "NondeterminismError"
    assert "identity-0" in message
    assert flowy.NondeterminismError.__module__ == "flowy"
