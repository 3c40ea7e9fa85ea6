"""Work done while HiGHS solves: the second core of a run.

HiGHS releases Python's GIL inside `run()`, and it solves every stage on one thread
(`allocator.solve.ENGINE_THREADS`), so a run leaves a core idle for most of its time. Within
`working_beside(...)`, each stage's `run()` goes to a worker thread, and this thread meanwhile
does work that does not need the stage's answer: it writes the stage's MPS file (what the
decision record will hold) into a spool folder, and runs the chores queued (such as making the
round's canonical JSON). `allocator.record` then moves the spooled files into the record
instead of writing them again. Nothing here changes what is solved or what is written; outside
`working_beside` every stage runs as before, on the calling thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import highspy

    from allocator.round import Round

Chore = Callable[[], object]


@dataclass
class Beside:
    """Where stages spool their MPS files, and chores still to do beside the next solve."""

    spool: Path | None = None
    chores: list[Chore] = field(default_factory=list)
    for_report: bool = False  # a report will be written: make what it derives beside too
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def due(self, name: str, write: Callable[[Path], object] | None
            ) -> tuple[list[Chore], Path | None]:
        """The chores to run beside the solve of stage `name`, and the MPS file `write` writes
        (when given and this Beside has a spool folder)."""
        chores, self.chores = self.chores, []
        if self.spool is None or write is None:
            return chores, None
        path = self.spool / f"{next(self._numbers):03d}_{name}.mps"
        return [lambda: _spool(write, path), *chores], path


def _spool(write: Callable[[Path], object], path: Path) -> None:
    """Write through a hidden name, renamed when whole. Whatever stops it, the record writes
    the file itself later and reports its failure there, so it is not raised here."""
    tmp = path.with_name(f".{path.stem}.part.mps")  # HiGHS picks the format by extension
    try:
        write(tmp)
        tmp.replace(path)
    except Exception:  # see the docstring
        tmp.unlink(missing_ok=True)


_current: contextvars.ContextVar[Beside | None] = contextvars.ContextVar("beside", default=None)


@contextlib.contextmanager
def working_beside(spool: Path | None = None, chores: list[Chore] | None = None,
                   for_report: bool = False) -> Iterator[Beside]:
    """Within this block, every HiGHS solve runs beside this thread's work (see the module);
    `for_report`: the engine also queues what the report derives from a finished stage
    (`allocator.engine.derived_beside`)."""
    beside = Beside(spool, list(chores or []), for_report)
    token = _current.set(beside)
    try:
        yield beside
    finally:
        _current.reset(token)


@contextlib.contextmanager
def beside_a_run(records_dir: Path, rnd: Round, chores: list[Chore] | None = None
                 ) -> Iterator[Beside]:
    """What `allocator run` does beside HiGHS: spools the record's MPS files in a hidden
    folder of `records_dir` (one file system with the record, so they are renamed into it),
    makes the round's canonical JSON, then the caller's `chores`, and what the report derives
    from the prices LP. Leave the block only once the record is written."""
    from allocator.atomic import scratch_dir

    with scratch_dir(records_dir, "mps-spool") as spool, \
            working_beside(spool, [rnd.canonical_json, *(chores or [])],
                           for_report=True) as beside:
        yield beside


def current() -> Beside | None:
    return _current.get()


def run_beside(h: highspy.Highs, name: str, write: Callable[[Path], object] | None = None
               ) -> tuple[highspy.HighsStatus, float, Path | None]:
    """`h.run()` and its seconds, with the current chores (and `write` of the stage's MPS file
    into the spool) done on this thread meanwhile; also the spooled file, if one was written."""
    beside = current()
    chores, spooled = beside.due(name, write) if beside is not None else ([], None)
    if not chores:
        start = time.perf_counter()
        return h.run(), time.perf_counter() - start, None
    out: dict[str, object] = {}

    def solve() -> None:
        start = time.perf_counter()
        try:
            out["status"] = h.run()
        except BaseException as exc:  # handed to the caller's thread below
            out["error"] = exc
        out["seconds"] = time.perf_counter() - start

    # A daemon, so an interrupted run does not wait at exit for HiGHS to finish its stage.
    worker = threading.Thread(target=solve, name="allocator-highs", daemon=True)
    worker.start()
    try:
        for chore in chores:
            chore()
    except Exception:
        worker.join()  # a failed chore: its error surfaces once the stage has ended
        raise
    worker.join()  # an interrupt (Ctrl-C), here or in a chore, does not wait for the stage
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    written = spooled if spooled is not None and spooled.exists() else None
    return out["status"], float(out["seconds"]), written  # type: ignore[return-value]


def move_spooled(spooled: Path | None, target: Path) -> bool:
    """Move a spooled MPS file to `target`; False when there is none to move."""
    if spooled is None or not spooled.is_file():
        return False
    shutil.move(spooled, target)  # a rename within one file system, a copy across two
    return True
