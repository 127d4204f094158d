"""A trace as Graphviz DOT source: plain string building, no Graphviz needed.

Every run is a cluster holding a start node, one node per call (and per
timer a timer dependency started, and per signal received) and a close node;
an edge goes from each call to the calls that received its result, and a
``restart`` edge from a run to the run that continued it.  A sub-workflow is a
dashed cluster, inside its parent's run, holding the child's runs, drawn the
same way.

Node ids are built from positions (``r0_t3``, and ``r0_t3_r0_t1`` inside a
sub-workflow), never from call ids, so they need no quoting and can't collide;
all user text goes into labels, which are always quoted and escaped.
"""

from __future__ import annotations

from .model import (
    AttemptTrace,
    RunTrace,
    TaskTrace,
    TraceData,
    describe_error,
    format_seconds,
    shorten,
)

__all__ = ["quote", "to_dot"]

#: Fill and border colors by task outcome or run status.
COLORS: dict[str, tuple[str, str]] = {
    "completed": ("#d8f0d8", "#2e7d32"),
    "failed": ("#f8d7da", "#c62828"),
    "timed_out": ("#ffe0b2", "#e65100"),
    "open": ("#eeeeee", "#757575"),
    "restarted": ("#dbe9f6", "#1565c0"),
}

# In a quoted DOT string only ``\"`` is an escape, but labels then read
# backslash sequences of their own (``\n``, ``\l``, ``\N``...), so a literal
# backslash must be doubled.  Other control characters would make the SVG
# output invalid XML, so tabs become spaces and the rest ``\xNN`` text.
_ESCAPES: dict[int, str] = {code: f"\\\\x{code:02x}" for code in (*range(32), 127)}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\t"): " "})


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string that a label shows as is.

    Newlines become label line breaks.
    """
    return '"' + text.replace("\r\n", "\n").translate(_ESCAPES) + '"'


def _attrs(**attrs: str) -> str:
    return "[" + ", ".join(f"{name}={quote(value)}" for name, value in attrs.items()) + "]"


def to_dot(trace: TraceData) -> str:
    """The DOT source of ``trace``: a ``digraph`` that ``dot`` lays out top to bottom."""
    graph = _Graph()
    graph.trace(trace, prefix="", indent="  ")
    head = [
        "digraph flowy {",
        '  graph [rankdir="TB", fontname="Helvetica", fontsize="11", nodesep="0.3"];',
        '  node [shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10"];',
        '  edge [fontname="Helvetica", fontsize="9", color="#555555"];',
    ]
    # Edges come after every node so that none of them declares a node inside
    # the wrong cluster.
    return "\n".join([*head, *graph.lines, *graph.edges, "}"]) + "\n"


class _Graph:
    """Collects node and cluster statements (nested) and edges (top level)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.edges: list[str] = []

    def add(self, indent: str, name: str, **attrs: str) -> None:
        """A statement ``name [attrs];``: a node, or ``graph`` for a cluster's own."""
        self.lines.append(f"{indent}{name} {_attrs(**attrs)};")

    def edge(self, tail: str, head: str, **attrs: str) -> None:
        self.edges.append(f"  {tail} -> {head} {_attrs(**attrs)};" if attrs
                          else f"  {tail} -> {head};")

    def trace(self, trace: TraceData, prefix: str, indent: str) -> None:
        for number, run in enumerate(trace.runs):
            run_id = f"{prefix}r{number}"
            self.run(run, run_id, number + 1, indent)
            if number:
                self.edge(f"{prefix}r{number - 1}_end", f"{run_id}_start", label="restart",
                          style="bold", color=COLORS["restarted"][1])

    def run(self, run: RunTrace, run_id: str, number: int, indent: str) -> None:
        inner = indent + "  "
        fill, border = COLORS[run.status]
        self.lines.append(f"{indent}subgraph cluster_{run_id} {{")
        self.add(inner, "graph", label=f"{run.workflow} run {number} · {run.run_id}",
                 style="rounded", color=border)
        start = "start" if run.input is None else f"start\ninput: {shorten(run.input)}"
        self.add(inner, f"{run_id}_start", label=start, shape="oval", fillcolor="white",
                 color=border)

        ids = {task.call_id: f"{run_id}_t{index}" for index, task in enumerate(run.tasks)}
        depended_on = {dep for task in run.tasks for dep in task.deps}
        self.waits(run, run_id, inner, ids, depended_on)
        for task in run.tasks:
            node = ids[task.call_id]
            task_fill, task_border = COLORS[task.status]
            self.add(inner, node, label=_task_label(task), fillcolor=task_fill,
                     color=task_border)
            known = [dep for dep in task.deps if dep in ids]
            for dep in known:
                self.edge(ids[dep], node)
            # Invisible edges only keep calls between the start and close nodes:
            # the history doesn't say which calls the workflow's result came from.
            if not known:
                self.edge(f"{run_id}_start", node, style="invis")
            if task.call_id not in depended_on:
                self.edge(node, f"{run_id}_end", style="invis")
            if task.child is not None:
                self.child(task.call_id, task.child, node, inner)

        self.add(inner, f"{run_id}_end", label=_close_label(run), shape="oval",
                 fillcolor=fill, color=border)
        if not run.tasks:
            self.edge(f"{run_id}_start", f"{run_id}_end", style="invis")
        self.lines.append(f"{indent}}}")

    def waits(self, run: RunTrace, run_id: str, indent: str, ids: dict[str, str],
              depended_on: set[str]) -> None:
        """Draw the timers no retry claimed (timer dependencies' calls) and the
        signals received, adding them to ``ids``: a call may take their
        results as arguments."""
        retry_timers = {timer.key for task in run.tasks for timer in task.timers}
        nodes = [(timer.key, f"timer {format_seconds(timer.delay)}, "
                             + ("fired" if timer.fired_at is not None else "waiting"),
                  timer.fired_at is not None)
                 for timer in run.timers if timer.key not in retry_timers]
        nodes += [(signal.call_id, f"signal received\nvalue: {shorten(signal.value)}", True)
                  for signal in run.signals]
        for index, (call_id, text, done) in enumerate(nodes):
            node = ids[call_id] = f"{run_id}_w{index}"
            fill, border = COLORS["completed" if done else "open"]
            self.add(indent, node, label=f"{call_id}\n{text}", shape="note", fillcolor=fill,
                     color=border)
            self.edge(f"{run_id}_start", node, style="invis")
            if call_id not in depended_on:
                self.edge(node, f"{run_id}_end", style="invis")

    def child(self, call_id: str, child: TraceData, node: str, indent: str) -> None:
        """Draw a sub-workflow's runs in a dashed box linked from its call's node."""
        self.lines.append(f"{indent}subgraph cluster_{node}_child {{")
        self.add(indent + "  ", "graph", label=f"sub-workflow {call_id}", style="dashed",
                 color="#555555")
        self.trace(child, prefix=f"{node}_", indent=indent + "  ")
        self.lines.append(f"{indent}}}")
        if child.runs:
            self.edge(node, f"{node}_r0_start", label="sub-workflow", style="dashed")


def _task_label(task: TaskTrace) -> str:
    kind = " (sub-workflow)" if task.kind == "workflow" else ""
    status = task.status.replace("_", " ")
    if task.duration is not None:
        status += f" in {format_seconds(task.duration)}"
    lines = [task.call_id, f"{task.dependency}{kind}", status]
    if task.retries:
        retries = "retry" if task.retries == 1 else "retries"
        lines.append(f"{len(task.attempts)} attempts, {task.retries} {retries}")
        lines.extend(_attempt_line(attempt) for attempt in task.attempts[:-1])
    last = task.attempts[-1]
    if last.result is not None:
        lines.append(f"result: {shorten(last.result)}")
    if last.error is not None:
        lines.append(f"error: {describe_error(last.error)}")
    if last.details is not None:
        lines.append(f"details: {shorten(last.details)}")
    lines.extend(f"attempt {attempt.attempt}: {note}"
                 for attempt in task.attempts for note in attempt.ignored)
    return "\n".join(lines)


def _attempt_line(attempt: AttemptTrace) -> str:
    took = "" if attempt.duration is None else f" after {format_seconds(attempt.duration)}"
    return f"attempt {attempt.attempt} {attempt.describe_outcome()}{took}"


def _close_label(run: RunTrace) -> str:
    lines = [run.describe_close()]
    if run.duration is not None:
        lines.append(f"after {format_seconds(run.duration)}")
    if run.ignored_errors:
        lines.append(f"unobserved failures: {', '.join(run.ignored_errors)}")
    lines.extend(str(note) for note in run.ignored)
    return "\n".join(lines)
