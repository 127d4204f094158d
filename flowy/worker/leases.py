"""Holding received messages: their leases are extended while the work on them goes on.

A decider holds a notification while it decides (a large fan-out can take
longer than a lease), and a worker holds a task message while its attempt
runs; if the lease ran out, the message would reappear and reach another
process mid-way.  One thread per process extends, in batches per queue,
every held message that is a third through its lease.  A message whose
extension fails is let go: its lease is lost, and another receiver has it.
"""

from __future__ import annotations

import logging
import threading

from ..backends.base import Backend

log = logging.getLogger("flowy.leases")


class HeldMessages:
    """The messages a process holds, with when each lease was last extended.

    Every thread that handles a message holds and lets go of it, so these
    take no lock: each is one dict operation, which is atomic (under the GIL,
    and in free-threaded builds, whose dicts lock themselves).  An entry's
    time is a one-item list, so that :meth:`renew` can update the entries
    it extended without racing a ``let_go``: an entry let go meanwhile is
    updated harmlessly, and not brought back."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._held: dict[tuple[str, str], list[float]] = {}

    def hold(self, queue: str, receipt: str) -> None:
        self._held[(queue, receipt)] = [self._backend.clock.now()]

    def let_go(self, queue: str, receipt: str) -> None:
        self._held.pop((queue, receipt), None)

    def held(self) -> list[tuple[str, str]]:
        return list(self._held)

    def renew(self) -> None:
        """Extend the leases that are a third through."""
        lease, now = self._backend.lease, self._backend.clock.now()
        due: dict[str, list[tuple[str, list[float]]]] = {}
        for (queue, receipt), since in list(self._held.items()):
            if now - since[0] > lease / 3:
                due.setdefault(queue, []).append((receipt, since))
        for queue, entries in due.items():
            failed = set(self._backend.queues.extend(queue, [r for r, _ in entries], lease))
            if failed:
                log.warning("could not extend the leases of %d messages on %s: they are "
                            "lost, and another receiver may have them", len(failed), queue)
            for receipt, since in entries:
                if receipt in failed:
                    self._held.pop((queue, receipt), None)
                else:
                    since[0] = now

    def keep(self, done: threading.Event) -> None:
        """Renew until ``done`` is set (the body of a process's lease thread)."""
        while not done.wait(self._backend.lease / 6):
            try:
                self.renew()
            except Exception:
                log.exception("extending leases failed; retrying")
