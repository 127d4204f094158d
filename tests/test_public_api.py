"""The public surface, pinned: a name added or removed here is a decision, not an accident."""

from __future__ import annotations

import importlib

import pytest

import flowy

PUBLIC = {
    "flowy": [
        "Codec", "ConfigurationError", "DEFAULT_CODEC", "DecisionLimitError", "EncodeError",
        "FlowyClient", "FlowyError", "HistoryError", "HistoryLimitError", "JSONCodec",
        "LimitError", "Limits", "LocalWorkflow", "LoopDied", "MalformedMessage",
        "NondeterminismError", "PayloadCodec", "PayloadError", "Registry", "Result",
        "RetryPolicy",
        "RunCancelled", "RunHandle", "RunNotFound", "ServiceError", "TaskError",
        "TaskTimedout", "UnsupportedFormatError", "Workflow", "activity", "current_attempt",
        "finish_order", "first", "first_n", "heartbeat", "load_registry", "parallel_reduce",
        "restart", "wait",
    ],
    "flowy.tracing": ["AttemptTrace", "RunTrace", "TaskTrace", "Trace", "build_run_trace"],
    "flowy.backends.aws": ["AWSBackend", "AWSSettings", "client_config", "connect"],
    "flowy.testing": [
        "ActivityEnvironment", "HistoryBuilder", "LocalAWS", "ManualClock", "SkippingRunHandle",
        "WorkflowEnvironment", "aws_endpoint", "load_history", "replay",
    ],
    "flowy.testing.history": [
        "CODEC", "HistoryBuilder", "RunFailed", "auto_run", "comparable", "decide", "definition",
        "done", "drive", "enc", "inp", "restarted", "sched", "timer",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_public_names_are_pinned(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert sorted(exported) == sorted(PUBLIC[module])
    assert len(set(exported)) == len(exported)


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_exists(module: str) -> None:
    namespace = importlib.import_module(module)
    assert [name for name in PUBLIC[module] if not hasattr(namespace, name)] == []


def test_every_public_error_comes_from_one_module_and_reads_flowy() -> None:
    errors = [getattr(flowy, name) for name in flowy.__all__
              if isinstance(getattr(flowy, name), type)
              and issubclass(getattr(flowy, name), Exception)]
    assert errors and all(issubclass(error, flowy.FlowyError) for error in errors)
    assert {error.__module__ for error in errors} == {"flowy"}
    import flowy.core.errors as one_module
    assert all(getattr(one_module, error.__name__) is error for error in errors)
    # and every error of the hierarchy is exported, as the name it reads as says
    hierarchy = {value for value in vars(one_module).values()
                 if isinstance(value, type) and issubclass(value, flowy.FlowyError)}
    assert hierarchy == set(errors)
