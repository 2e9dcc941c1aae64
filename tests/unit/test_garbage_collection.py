"""The cycle collector's threshold during long steps: raised, restored, and raised in worker processes."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tiktok_amp_assets.garbage_collection import YOUNG_OBJECTS_PER_PASS, collecting_less_often
from tiktok_amp_assets.worker_processes import in_worker_processes


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_the_threshold_is_raised_within_the_block_and_restored_after() -> None:
    with collecting_less_often():
        assert gc.get_threshold() == (YOUNG_OBJECTS_PER_PASS, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_the_threshold_is_restored_when_the_block_fails() -> None:
    with pytest.raises(ZeroDivisionError), collecting_less_often():
        1 / 0  # noqa: B018
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_or_collection_turned_off_is_left_as_set() -> None:
    for young in (0, YOUNG_OBJECTS_PER_PASS * 2):
        gc.set_threshold(young, 10, 10)
        with collecting_less_often():
            assert gc.get_threshold() == (young, 10, 10)


def test_cycles_are_still_collected_within_the_block() -> None:
    class Node:
        partner: object = None

    with collecting_less_often():
        first, second = Node(), Node()
        first.partner, second.partner = second, first
        del first, second
        # Enough new containers for one pass of the raised threshold.
        garbage = [[] for _ in range(YOUNG_OBJECTS_PER_PASS * 2)]
        del garbage
        assert not [obj for obj in gc.get_objects() if type(obj) is Node]


def _young_threshold(_: int) -> int:
    return gc.get_threshold()[0]


def test_worker_processes_collect_less_often_for_their_whole_life() -> None:
    assert (
        list(in_worker_processes(_young_threshold, [1, 2], workers=1, ahead=1))
        == [YOUNG_OBJECTS_PER_PASS] * 2
    )
