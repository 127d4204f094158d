"""Signals, timers and cancelling: an order waits for a manager's approval.

``python -m examples.approval``: one order is approved (a signal arrives), one
expires (its timer finishes first), one is cancelled while it waits.  The
waits are dependencies, configured like activities, so the class can be
called by hand in a unit test with plain functions.
"""

from __future__ import annotations

import flowy
from flowy import LocalWorkflow


class OrderApproval:
    def __init__(self, approve, expire, charge):
        self.approve = approve  # a signal: the next "approve" sent to the run
        self.expire = expire  # a timer: finishes, with None, after some seconds
        self.charge = charge  # an activity

    def __call__(self, order, wait_seconds):
        decision = flowy.wait(flowy.first(self.approve(), self.expire(wait_seconds)))
        if decision is None:
            return f"{order}: expired after {wait_seconds} s"
        if not decision["ok"]:
            return f"{order}: rejected by {decision['by']}"
        return f"{order}: {self.charge(order)} (approved by {decision['by']})"


def charge(order):
    return f"charged {order}"


# Declared once: this runs here (main), and on AWS (examples.aws_defs serves it).
approval = (LocalWorkflow(OrderApproval, name="approval")
            .conf_signal("approve").conf_timer("expire").conf_activity("charge", charge))


def main() -> None:
    with approval as workflow:
        approved = workflow.start("order-1", 60)
        expired = workflow.start("order-2", 0.5)
        cancelled = workflow.start("order-3", 60)
        approved.signal("approve", {"ok": True, "by": "ann"})
        cancelled.cancel("customer left")
        print(approved.result(timeout=10))
        print(expired.result(timeout=10))
        try:
            cancelled.result(timeout=10)
        except flowy.RunCancelled as error:
            print(f"order-3: {error}")


if __name__ == "__main__":
    main()
