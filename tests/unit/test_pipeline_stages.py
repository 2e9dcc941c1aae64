"""pipeline.stage: outputs in order, bounded, failures raised at their place, stopped with the consumer."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tiktok_amp_assets.pipeline import StageDiedError, stage

PLACES = pytest.mark.parametrize("processes", [0, 1, 2], ids=["thread", "one process", "two processes"])


def squares(items: Iterable[int]) -> Iterator[int]:
    for item in items:
        yield item * item


def fail_at(bad: int, items: Iterable[int]) -> Iterator[int]:
    for item in items:
        if item == bad:
            raise ValueError(f"item {item} is bad")
        yield item


class KeywordOnlyError(Exception):
    """An exception pickle can write but not read back (its __init__ takes no positional args)."""

    def __init__(self, *, day: str) -> None:
        super().__init__(f"day {day} failed")


def fail_unpicklably(items: Iterable[int]) -> Iterator[int]:
    for item in items:
        raise KeywordOnlyError(day=f"2026-01-0{item}")
        yield item


def touch_when_closed(marker: str, items: Iterable[int]) -> Iterator[int]:
    try:
        yield from items
    finally:
        Path(marker).write_text("closed")


def kill_myself(items: Iterable[int]) -> Iterator[int]:
    for item in items:
        if item == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        yield item


@PLACES
def test_outputs_arrive_in_order(processes: int) -> None:
    assert list(stage(squares, range(10), depth=3, processes=processes)) == [n * n for n in range(10)]


@PLACES
def test_a_failure_is_raised_in_the_place_of_its_output_after_every_output_before_it(processes: int) -> None:
    received: list[int] = []
    with pytest.raises(ValueError, match="item 5 is bad"):
        received.extend(stage(functools.partial(fail_at, 5), range(10), depth=2, processes=processes))
    assert received == [0, 1, 2, 3, 4]


def test_an_exception_that_cannot_cross_processes_arrives_as_its_text() -> None:
    with pytest.raises(RuntimeError, match="KeywordOnlyError: day 2026-01-01 failed"):
        list(stage(fail_unpicklably, [1, 2], depth=1, processes=1))
    with pytest.raises(KeywordOnlyError):  # a thread hands on the exception itself
        list(stage(fail_unpicklably, [1, 2], depth=1))


def test_a_thread_stage_stays_at_most_depth_outputs_ahead() -> None:
    produced: list[int] = []

    def counting(items: Iterable[int]) -> Iterator[int]:
        for item in items:
            produced.append(item)
            yield item

    outputs = stage(counting, range(100), depth=3)
    assert next(outputs) == 0
    time.sleep(0.5)
    # the one taken, three in the queue, one made and waiting for room
    assert len(produced) <= 1 + 3 + 1
    outputs.close()


@PLACES
def test_a_consumer_that_stops_stops_the_stage_and_the_stage_before_it(
    processes: int, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    upstream = stage(
        functools.partial(touch_when_closed, str(first)), range(1000), depth=2, processes=processes
    )
    downstream = stage(functools.partial(touch_when_closed, str(second)), upstream, depth=2)
    assert next(downstream) == 0
    downstream.close()
    assert second.read_text() == "closed" and first.read_text() == "closed"
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("stage ")]


def test_a_stage_process_that_dies_is_an_error_not_a_wait() -> None:
    received: list[int] = []
    with pytest.raises(StageDiedError, match="exit code -9"):
        received.extend(stage(kill_myself, range(5), depth=1, processes=1))
    assert received in ([0], [0, 1])  # what it put just before its death may be lost with it
