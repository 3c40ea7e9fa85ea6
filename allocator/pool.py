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
_IN_WORKER = False  # set in worker processes (pool or Dask), never in the calling process


def _init_worker(shared: Any) -> None:
    global _SHARED, _IN_WORKER
    _SHARED, _IN_WORKER = shared, True


def _dask_call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    global _IN_WORKER
    _IN_WORKER = True
    return fn(shared, item)


def solver_threads() -> int | None:
    """One HiGHS thread in a worker (workers share the cores); the default in this process.

    HiGHS fixes its thread count the first time a process solves: asking for another count
    later in the same process makes the solve fail, so the calling process never asks.
    """
    return 1 if _IN_WORKER else None


def _call_shared(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_SHARED, item)


def default_workers() -> int:
    """The number of local worker processes when none is given: the usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# How many solves of one round may usefully run side by side, by the round's number of programs
# (pool_size, warm_chains). Measured on 2 shared cores (benchmarks/sweep.py, load average 2-3.5,
# one run each): 100 programs, budget sweep of 20 levels: cold serial 33.4 s, cold pool of 2
# 31.6 s (rounding is 1.2 of the 1.3 s per solve; warm gains nothing there), so no pool;
# 1,000 programs, 20 levels: warm serial 14.4 s, warm in 2 chains on 2 workers 15.4 s;
# 16 outcome samples: warm serial 23.0 s, 2 workers 21.2 s (cold: 45.0 / 40.7 s, 37.0 / 27.8 s).
POOL_MIN_PROGRAMS = 300
# A warm sweep's points run in this many chains on rounds of POOL_MIN_PROGRAMS programs or more
# (each chain in order, from the point before): a fixed number, not the machine's cores, so a
# sweep's chains, and so its tables, are the same wherever it runs.
WARM_CHAINS = 2


def warm_chains(programs: int) -> int:
    """How many chains a warm sweep of a round of `programs` programs is cut into."""
    return 1 if programs < POOL_MIN_PROGRAMS else WARM_CHAINS


def pool_size(workers: int | None, programs: int, items: int) -> int:
    """The local worker processes for `items` solves (or chains) of a round of `programs`
    programs: the `workers` asked for, else the usable cores (`default_workers`), or 1 below
    POOL_MIN_PROGRAMS, where starting a pool costs more than parallel solves save; never more
    than one per item."""
    wanted = workers or (1 if programs < POOL_MIN_PROGRAMS else default_workers())
    return max(1, min(wanted, items))


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
        n = min(workers or default_workers(), len(items))
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
