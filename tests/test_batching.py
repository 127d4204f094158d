"""The worker's batching of requests, on recorded order and counts."""

from __future__ import annotations

import threading

from flowy.worker.batching import Batcher, Deferred


def test_an_idle_batcher_sends_at_once_and_a_busy_one_gathers() -> None:
    sent: list[list[int]] = []
    sending, release = threading.Event(), threading.Event()

    def flush(items: list[int]) -> None:
        sent.append(list(items))
        if items == [0]:  # the first send is slow: the others gather meanwhile
            sending.set()
            release.wait(10)

    batcher: Batcher[int] = Batcher(flush, max_size=3)
    first = threading.Thread(target=batcher.submit, args=(0,))
    first.start()
    assert sending.wait(10)
    others = [threading.Thread(target=batcher.submit, args=(i,)) for i in range(1, 5)]
    for thread in others:
        thread.start()
    # Wait until all four have joined a batch: 1-3 fill one, 4 opens the next.
    for _ in range(1000):
        with batcher._lock:
            if batcher._open is not None and batcher._open.items == [4]:
                break
        threading.Event().wait(0.01)
    release.set()
    for thread in (first, *others):
        thread.join(10)
    assert sent[0] == [0]
    assert sorted(map(sorted, sent[1:])) == [[1, 2, 3], [4]]


def test_a_failed_send_reaches_every_submitter_of_its_batch() -> None:
    def flush(_items: list[int]) -> None:
        raise OSError("the queue is gone")

    batcher: Batcher[int] = Batcher(flush)
    try:
        batcher.submit(1)
    except OSError as exc:
        assert str(exc) == "the queue is gone"
    else:
        raise AssertionError("the error was not raised")


def test_deferred_items_go_ten_at_a_time_and_the_rest_on_close() -> None:
    sent: list[list[int]] = []
    deferred: Deferred[int] = Deferred(sent.append, max_size=10, max_delay=3600)
    for i in range(23):
        deferred.submit(i)
    assert sent == [list(range(10)), list(range(10, 20))]  # full ones went; 3 wait
    deferred.close()
    assert sent[-1] == [20, 21, 22]
    deferred.close()
    assert len(sent) == 3  # nothing left


def test_deferred_items_go_after_the_delay_without_a_close() -> None:
    went = threading.Event()
    deferred: Deferred[int] = Deferred(lambda items: went.set(), max_delay=0.01)
    deferred.submit(1)
    assert went.wait(10)
