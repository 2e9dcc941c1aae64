"""Work spread over spawned worker processes, its results taken back in order.

Normalizing days and planning an upload hold the GIL most of their time: a long range runs them in
processes of their own, which use the machine's other cores while the run's process goes on.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from tiktok_amp_assets.garbage_collection import collect_less_often

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def in_worker_processes(
    work: Callable[[_Item], _Result],
    items: Iterable[_Item],
    *,
    workers: int,
    ahead: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[_Result]:
    """``work(item)`` of each item, yielded in the items' order, computed by ``workers`` spawned
    processes that stay at most ``ahead`` items ahead of the caller (memory: a few items' results).
    ``work`` and ``initializer`` must pickle (module-level functions, or partials of them); an exception in
    ``work`` is raised here, at its item, and the items not yet started are dropped."""
    # spawn, not fork: the run's process has threads (Dagster's, the clients'), which fork would
    # copy mid-state.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(initializer, initargs),
    )
    try:
        waiting: deque[Future[_Result]] = deque()
        for item in items:
            waiting.append(pool.submit(work, item))
            if len(waiting) > ahead:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        # A failed item (or a caller that stopped) drops the items not yet started.
        pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    collect_less_often()  # a worker process only builds and hands back its items' objects
    if initializer is not None:
        initializer(*initargs)
