"""A range run's work as a pipeline: stages connected by bounded queues.

A stage is a generator function over the items of the stage before it (``work(items)``); :func:`stage`
runs it apart from its consumer, in a thread of its own or in spawned processes, and hands its
outputs on through a bounded queue. The metrics step is ``normalize -> write``, the upload
``plan -> send``, and the step itself consumes the last stage. Every stage keeps these promises:

- **In order**: outputs arrive in the order ``work`` yields them. Across several processes each takes
  every n-th item and the consumer takes their outputs in turn, so ``work`` yields one output per item.
- **Bounded**: a stage is at most ``depth`` outputs ahead of its consumer, so memory holds a few days
  however long the range.
- **Failures**: an exception in ``work`` is raised to the consumer in the place of the output it
  would have produced, after every output before it; a process that dies is an error too.
- **Stopping**: when the consumer stops (done, failed, or closed), the stage and those before it
  stop and are waited for.

A thread suits work that waits (HTTP, the ledger's database) or short ranges; spawned processes suit
work that holds the GIL on a long range (decoding and normalizing, planning), on the machine's other
cores. spawn, not fork: the run's process has threads (Dagster's, the clients'), which fork would copy
mid-state.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

_In = TypeVar("_In")
_Out = TypeVar("_Out")

_SPAWN = multiprocessing.get_context("spawn")
# How often a waiting side looks whether the other side stopped or died.
_POLL_SECONDS = 0.2


class StageDiedError(RuntimeError):
    """A stage's process ended without handing on its outputs (killed, out of memory)."""


@dataclass(frozen=True)
class _End:
    """The stage's work is done."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def stage(
    work: Callable[[Iterable[_In]], Iterator[_Out]],
    items: Iterable[_In],
    *,
    depth: int,
    processes: int = 0,
) -> Iterator[_Out]:
    """``work(items)``'s outputs, computed in a thread of its own (``processes=0``) or in
    ``processes`` spawned processes, at most ``depth`` ahead of the caller (module docstring).
    For processes, ``work`` and ``items`` must pickle (a module-level function, or a partial of one)."""
    if processes:
        shares: Sequence[Iterable[_In]] = [list(items)[index::processes] for index in range(processes)]
        stop: Any = _SPAWN.Event()
        outputs: list[Any] = [_SPAWN.Queue(maxsize=max(1, -(-depth // processes))) for _ in shares]
        workers: list[Any] = [
            _SPAWN.Process(
                target=_run_in_process,
                args=(pickle.dumps((work, share)), out, stop),
                name=f"stage {work_name(work)}",
            )
            for share, out in zip(shares, outputs, strict=True)
        ]
    else:
        stop, outputs = threading.Event(), [queue.Queue(maxsize=depth)]
        workers = [
            threading.Thread(
                target=_run, args=(work, items, outputs[0], stop, False), name=f"stage {work_name(work)}"
            )
        ]
    for worker in workers:
        worker.daemon = True
        worker.start()
    try:
        for worker, output in itertools.cycle(zip(workers, outputs, strict=True)):
            message = _next(worker, output)
            if isinstance(message, _End):
                return
            if isinstance(message, _Failed):
                raise message.error
            yield message
    finally:
        stop.set()
        for worker, output in zip(workers, outputs, strict=True):
            _wait_for(worker, output)


def work_name(work: Callable[..., Any]) -> str:
    """``work``'s function name, through partials: names the stage's thread or process."""
    while hasattr(work, "func"):
        work = work.func
    return getattr(work, "__name__", repr(work))


def _run(
    work: Callable[[Iterable[Any]], Iterator[Any]],
    items: Iterable[Any],
    output: Any,
    stop: Any,
    in_process: bool,
) -> None:
    """The stage's side: ``work``'s outputs onto ``output`` until the work ends, fails or is stopped."""
    upstream = _until_stopped(items, stop)
    results = work(upstream)
    try:
        for result in results:
            if not _put(output, result, stop):
                return
        _put(output, _End(), stop)
    except BaseException as error:  # handed to the consumer, raised there
        _put(output, _Failed(_crossing(error) if in_process else error), stop)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # the work's own clean-up (a planner's ledger connections)
        upstream.close()
        close = getattr(items, "close", None)  # a stage before this one: stopped with this one
        if close is not None:
            close()
        if in_process and stop.is_set():
            output.cancel_join_thread()  # stopped early: end without flushing what was not taken


def _run_in_process(work_and_items: bytes, output: Any, stop: Any) -> None:
    """A stage process's entry: ``work`` and its items are unpickled (their modules imported) only
    once pandas is refused (:class:`_NoPandas`)."""
    sys.meta_path.insert(0, _NoPandas())
    work, items = pickle.loads(work_and_items)
    _run(work, items, output, stop, True)


def _until_stopped(items: Iterable[Any], stop: Any) -> Iterator[Any]:
    for item in items:
        if stop.is_set() or not _consumer_alive():
            return
        yield item


def _put(output: Any, message: Any, stop: Any) -> bool:
    """Wait for room in ``output``; False (nothing put) once the consumer stopped or died."""
    while not stop.is_set() and _consumer_alive():
        try:
            output.put(message, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _consumer_alive() -> bool:
    """In a stage's process: whether the process that started it still runs (a killed run's planning
    process must not plan on); in a thread, always."""
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def _next(worker: Any, output: Any) -> Any:
    while True:
        try:
            return output.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if worker.is_alive():
                continue
        try:  # it may have handed on its last message just before it ended
            return output.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            raise StageDiedError(
                f"{worker.name} ended (exit code {getattr(worker, 'exitcode', None)}) before handing on its work; "
                "run the partitions again (what was recorded stays, nothing is counted twice)"
            ) from None


def _wait_for(worker: Any, output: Any) -> None:
    """Join a stopped stage, taking what it still hands on so that it is never blocked on a full queue."""
    while worker.is_alive():
        try:
            output.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            pass
        worker.join(timeout=_POLL_SECONDS)


class _NoPandas:
    """Installed in a stage process, which works on Arrow tables and Python values only: pandas is
    for the DataFrame a user's asset receives (io_managers.py). pyarrow imports pandas on its first
    conversion of Python values (pa.array, pa.scalar: to recognize pandas' NA values) unless pandas
    cannot be imported; a stage process then starts and holds less (bench/RESULTS.md)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not used in a pipeline stage's process", name=name)


def _crossing(error: BaseException) -> BaseException:
    """``error`` if it survives the trip to the consumer's process, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
