"""Running independent solves in parallel: a local process pool, or a Dask cluster.

Used by `compare` (variants), `sweep` (budget and outcome-spread levels) and `frontier`
(epsilon-constraint points). Each task is a module-level function of (shared, item); the shared
payload (usually the round) is sent to each worker once.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SHARED: Any = None  # the payload every task of a local pool shares, set once per worker
# Workers and the calling process solve with the same HiGHS thread count (`solve.ENGINE_THREADS`,
# one): the answers depend on it, and one thread per worker keeps workers from competing.


def _init_worker(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _dask_call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    return fn(shared, item)


def _call_shared(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_SHARED, item)


def default_workers() -> int:
    """The number of local worker processes when none is given: the usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# A warm sweep's points run in this many chains (each in order, from the point before): a fixed
# number, not the machine's cores, so a sweep's chains, and so its tables, are the same wherever
# it runs. Measured 2026-12-05 on 2 cores (benchmarks/sweep.py; docs/benchmark.md): a pool of 2
# beat one process at every size tried, from the example round (43 programs, 20 budget levels,
# cold: 1.98 s alone, 1.56 s on 2 workers) to 1,000 programs (warm: 12.9 s alone, 6.6 s on 2).
WARM_CHAINS = 2


def pool_size(workers: int | None, items: int) -> int:
    """The local worker processes for `items` solves (or chains): the `workers` asked for,
    else the usable cores (`default_workers`); never more than one per item."""
    return max(1, min(workers or default_workers(), items))


def _progress(enabled: bool):
    """A rich progress bar on stderr (a no-op when disabled)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled)


def run_tasks(fn: Callable[[Any, T], R], items: Sequence[T], *, shared: Any = None,
              workers: int | None = None, scheduler: str | None = None, progress: bool = False,
              label: str = "solving") -> list[R]:
    """`[fn(shared, item) for item in items]`, in parallel; results in the order of `items`.

    `fn` must be a module-level function (it is pickled by reference). With `scheduler` (a Dask
    address such as tcp://10.0.0.5:8786) the tasks run on that cluster, whose workers must have
    allocator installed; `shared` is sent to each worker once. Otherwise a local process pool of
    `workers` processes (default: the usable cores); `workers == 1` runs in this process.
    An exception raised by a task is raised here.
    """
    items = list(items)
    bar = _progress(progress)
    results: list[Any] = [None] * len(items)
    with bar:
        task = bar.add_task(label, total=len(items))
        if scheduler:
            _run_dask(fn, items, shared, scheduler, results, lambda: bar.advance(task))
            return results
        n = pool_size(workers, len(items))
        if n <= 1:
            for i, item in enumerate(items):
                results[i] = fn(shared, item)
                bar.advance(task)
            return results
        ctx = multiprocessing.get_context("forkserver")
        # Imported once in the fork server, so each worker starts without re-importing the engine.
        ctx.set_forkserver_preload(["allocator.engine", "allocator.pool"])
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                                 initargs=(shared,)) as pool:
            futures = {pool.submit(_call_shared, fn, item): i for i, item in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.advance(task)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    return results


class DaskMissingError(ImportError):
    """A Dask scheduler was given, but Dask's distributed scheduler is not installed."""


def require_dask() -> None:
    """Raise DaskMissingError, saying how to install it, when dask.distributed cannot be imported."""
    try:
        import dask.distributed  # noqa: F401  (an optional extra: allocator[dask])
    except ImportError as exc:
        raise DaskMissingError(
            "--scheduler needs Dask's distributed scheduler, which is not installed; install it "
            "with: pip install 'allocator[dask]'") from exc


def _run_dask(fn: Callable[[Any, Any], Any], items: list[Any], shared: Any, scheduler: str,
              results: list[Any], advance: Callable[[], None]) -> None:
    require_dask()
    from dask.distributed import Client

    with Client(scheduler, set_as_default=False) as client:
        payload = client.scatter(shared, broadcast=True) if shared is not None else None
        futures = [client.submit(_dask_call, fn, payload, item, pure=False) for item in items]
        for fut in futures:  # progress from the client's thread; rich's advance is thread-safe
            fut.add_done_callback(lambda _f: advance())
        try:
            results[:] = client.gather(futures)
        finally:
            client.cancel([f for f in futures if not f.done()])
