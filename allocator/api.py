"""The library API for notebooks and scripts; the CLI is a thin layer over it.

    from allocator import api
    loaded = api.load("inputs/example_round.xlsx")
    solution = api.solve(loaded.round)
    solution.allocation          # pandas DataFrame
    api.tables(solution)["Programs"]
    api.run("inputs/example_round.xlsx", report="reports/x.xlsx", records="models")
    api.settle("models/<round_id>/<run_id>", "inputs/example_results.xlsx").tables["Settlement"]
    api.next_round("models/<round_id>/<run_id>", ["inputs/example_results.xlsx"], out="next.xlsx")
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from allocator.atomic import clean_leftovers, commit, held
from allocator.beside import beside_a_run
from allocator.engine import Solution, solve_round
from allocator.errors import InfeasibleRoundError
from allocator.progress import phase
from allocator.record import RecordPaths, solver_settings, versions, write_record
from allocator.round import Round
from allocator.validate import LoadedRound, load_round


def load(path: str | Path) -> LoadedRound:
    """Read and validate a round workbook (raises InputError listing every problem)."""
    return load_round(path)


def solve(rnd: Round | LoadedRound | str | Path, *, threads: int | None = None) -> Solution:
    """Solve a round (a validated Round, a LoadedRound, or a workbook path). An infeasible
    round raises InfeasibleRoundError whose `.diagnosis` says which rules conflict."""
    if isinstance(rnd, str | Path):
        rnd = load_round(rnd)
    if isinstance(rnd, LoadedRound):
        rnd = rnd.round
    return _solve_diagnosed(rnd, threads)


def _solve_diagnosed(rnd: Round, threads: int | None) -> Solution:
    """`diagnose.solve_diagnosed`, with the diagnosis module loaded only for an infeasible
    round (a feasible run never needs it)."""
    try:
        return solve_round(rnd, threads=threads)
    except InfeasibleRoundError as exc:
        from allocator.diagnose import raise_diagnosed

        raise_diagnosed(exc, rnd)


def tables(solution: Solution) -> dict[str, pd.DataFrame]:
    """The report's tables as DataFrames, keyed by sheet name."""
    from allocator.report import report_tables

    return report_tables(solution)


@dataclass
class RunResult:
    """What one `run` produced: the solution, the report and the decision record."""

    loaded: LoadedRound
    solution: Solution
    report: Path
    record: RecordPaths
    timings: dict[str, float] = field(default_factory=dict)


def default_report_path(rnd: Round) -> Path:
    from allocator.paths import inside

    return inside(Path("reports"), f"{rnd.settings.round_id}.xlsx")  # never outside reports/


def run(workbook: str | Path, *, report: str | Path | None = None,
        records: str | Path | None = None, threads: int | None = None,
        sign_key: str | Path | None = None) -> RunResult:
    """Validate, solve, and write the decision record and the report as one all-or-nothing step."""
    from allocator.signing import key_from_env, load_private

    key_path = Path(sign_key) if sign_key is not None else key_from_env()
    key = load_private(key_path) if key_path is not None else None  # a bad key fails before the solve
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    phase("reading and validating the workbook")
    loaded = load_round(workbook)
    timings["read"] = time.perf_counter() - tick
    report_path = Path(report) if report is not None else default_report_path(loaded.round)
    records_dir = Path(records) if records is not None else Path("models")
    # before the solve, which may take an hour
    check_output_places(report_path, records_dir, inputs=[Path(workbook)])
    # the record's files, and the report's imports (0.12 s), made while HiGHS solves
    with beside_a_run(records_dir, loaded.round, [_load_report_modules]):
        solution = _solve_diagnosed(loaded.round, threads)
        timings.update(solution.timings)
        return _write_run(loaded, solution, workbook, report_path, records_dir, key, timings)


def check_output_places(report: Path, records_dir: Path, *, inputs: Sequence[Path] = ()) -> None:
    """OSError naming the path when the report or the records cannot go where asked: a file
    where a folder must be, or the report would replace a folder or one of the `inputs`."""
    check_folder_place(records_dir)
    check_file_place(report, "the report", inputs)


def check_folder_place(folder: Path) -> None:
    """NotADirectoryError when a file stands where `folder` or one of its parents must be."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file is where a folder must be", str(existing))


def check_file_place(path: Path, what: str, inputs: Sequence[Path] = ()) -> None:
    """OSError when `what` cannot be written at `path`: its folder is blocked by a file, a
    folder stands there, or it is one of the `inputs` (the round workbook a run reads)."""
    check_folder_place(path.parent)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"a folder is where {what} must be", str(path))
    for source in inputs:
        if _same_file(path, Path(source)):
            raise FileExistsError(errno.EEXIST, f"{what} would overwrite {source}, which this run reads",
                                  str(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _load_report_modules() -> None:
    """Import what writes the report (openpyxl and the report's own modules)."""
    import allocator.report  # noqa: F401


def _write_run(loaded: LoadedRound, solution: Solution, workbook: str | Path, report_path: Path,
               records_dir: Path, key, timings: dict[str, float]) -> RunResult:
    """The decision record, then the report inside its transaction (`run`'s second half)."""

    staged: list[Path] = []
    locks = contextlib.ExitStack()  # each staged report is locked until renamed (see atomic.py)
    clean_leftovers(report_path.parent, target_name=report_path.name)  # a killed run's report

    def write_report_inside(folder: Path, run_id: str, input_digest: str, output_digest: str) -> None:
        """Write the report beside its target; it is renamed only once the record is in place."""
        from allocator.report import write_report

        tick = time.perf_counter()
        tmp = report_path.parent / f".{report_path.name}.{run_id}.tmp"
        staged.append(tmp)
        locks.enter_context(held(tmp))
        write_report(solution, tmp, run_id=run_id, input_digest=input_digest,
                     output_digest=output_digest, notes=loaded.notes, record_dir=str(folder),
                     versions=versions(), solver_options=solver_settings(loaded.round))
        timings["report"] = time.perf_counter() - tick

    tick = time.perf_counter()
    phase("writing the decision record and the report")
    try:
        record = write_record(solution, records_dir, Path(workbook), after_write=write_report_inside,
                              sign_key=key)
        commit(staged[0], report_path)  # record first: a report never points at no record
    finally:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
        locks.close()
    timings["record"] = time.perf_counter() - tick - timings.get("report", 0.0)
    return RunResult(loaded, solution, report_path, record, timings)


def settle(record: str | Path, results: str | Path, *, report: str | Path | None = None,
           records: str | Path | None = None, sign_key: str | Path | None = None):
    """Settle a decision record against a results workbook; write the settlement record (beside
    the decision record) and the settlement workbook. Returns a `SettleRun` whose `tables` are
    the workbook's sheets as DataFrames (`tables["Settlement"]`: one row per tranche)."""
    from allocator.settle import settle_record

    return settle_record(record, results, report=report, records=records, sign_key=sign_key)


def next_round(record: str | Path, results: list[str | Path] | tuple[str | Path, ...] = (), *,
               out: str | Path):
    """Write the next round's workbook from a decision record and measured results.

    Returns a `NextRound` whose `changes` DataFrame lists every value that differs from the
    earlier round (sheet, key, column, old, new, why)."""
    from allocator.nextround import write_next_round

    return write_next_round(record, list(results), out)


def frontier(rnd: Round | LoadedRound | str | Path, between: tuple[str, str], *,
             points: int = 11, report: str | Path | None = None, workers: int | None = None,
             scheduler: str | None = None):
    """The trade-off between two metrics (allocator.frontier): the best B at each of `points`
    levels of A; writes the frontier workbook when `report` is given. Returns FrontierResult
    (`allocator.frontier.frontier_tables(result)` gives its sheets as DataFrames)."""
    from allocator.frontier import trace_frontier, write_frontier

    if isinstance(rnd, str | Path):
        rnd = load_round(rnd)
    if isinstance(rnd, LoadedRound):
        rnd = rnd.round
    a, b = between
    result = trace_frontier(rnd, a, b, points=points, workers=workers, scheduler=scheduler)
    if report is not None:
        write_frontier(result, report)
    return result


def with_settings(rnd: Round, **changes: object) -> Round:
    """The round with Round settings changed and validated, e.g.
    `api.with_settings(rnd, robust_gamma=2, robust_level=1.5)` for a robust allocation."""
    from allocator.round import RoundSettings

    settings = RoundSettings.model_validate({**rnd.settings.model_dump(), **changes})
    return rnd.model_copy(update={"settings": settings})
