"""The results workbook (input of `allocator settle`, contract 1.1): read, validate, canonical.

What programs achieved after a funded period, checked against the decision record it settles:
sheet `Results` (program_id, period, metric, target, achieved, optional trainees) and optional
sheet `Milestones` (program_id, period, tranche, met, optional fund_id). The same safe reader
and the same cell-addressed problem collection as a round workbook: every problem is listed at
once (`Results!E7 achieved: ...`) and nothing is written.

`Results.canonical_json()` is what a settlement record holds and what its digest is taken of:
rows sorted by their key, so the digest does not depend on row order, cell formats or spaces.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pydantic import Field

from allocator import cells
from allocator.errors import CellRef, InputError, InputIssue
from allocator.round import OUTCOME_COLUMNS, RATE_COLUMNS, Frozen, Round
from allocator.validate import Collector, Column, Located, _key, _rows, gc_paused
from allocator.workbook import Table, read_tables

SHEETS = ("results", "milestones")
RESULTS_FORMAT = 1


class ResultRow(Frozen):
    """One measured outcome of a program in a funded period."""

    program_id: str
    period: str
    metric: str
    target: float = Field(gt=0)
    achieved: float = Field(ge=0)
    trainees: float | None = Field(default=None, ge=0)  # trainees who completed; blank = not told


class MilestoneRow(Frozen):
    """Whether the milestone of a tranche was met (no row = met)."""

    program_id: str
    period: str
    tranche: str
    met: bool
    fund_id: str | None = None  # blank: the tranche of that name in every fund of the program


class Results(Frozen):
    """A validated results workbook, every table sorted by its key."""

    format_version: int = RESULTS_FORMAT
    results: tuple[ResultRow, ...] = ()
    milestones: tuple[MilestoneRow, ...] = ()

    def canonical_json(self) -> str:
        """Sorted, whitespace-free JSON: the same results always give the same bytes."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    # --- what settlement and the next round read ------------------------------------------
    def _cache(self) -> dict[str, dict]:
        """Rows by program-period (made once; the model is frozen)."""
        cache = self.__dict__.get("_lookup_cache")
        if cache is None:
            rows: dict[tuple[str, str], list[ResultRow]] = {}
            for r in self.results:
                rows.setdefault((r.program_id, r.period), []).append(r)
            marks: dict[tuple[str, str, str], list[MilestoneRow]] = {}
            for m in self.milestones:
                marks.setdefault((m.program_id, m.period, m.tranche), []).append(m)
            cache = self.__dict__.setdefault("_lookup_cache", {"rows": rows, "marks": marks})
        return cache

    def rows_of(self, program_id: str, period: str) -> list[ResultRow]:
        return self._cache()["rows"].get((program_id, period), [])

    def score(self, program_id: str, period: str) -> Fraction | None:
        """Results score: mean over the program-period's rows of min(achieved/target, 1), exact."""
        ratios = [min(exact(r.achieved) / exact(r.target), Fraction(1))
                  for r in self.rows_of(program_id, period)]
        return sum(ratios, Fraction(0)) / len(ratios) if ratios else None

    def completed(self, program_id: str, period: str) -> Fraction | None:
        """Trainees who completed in the program-period, where the Results rows say."""
        told = {r.trainees for r in self.rows_of(program_id, period) if r.trainees is not None}
        return exact(told.pop()) if told else None

    def milestone(self, program_id: str, period: str, tranche: str,
                  fund_id: str) -> MilestoneRow | None:
        """The Milestones row of a tranche: one naming the fund first, else one for every fund."""
        rows = [m for m in self._cache()["marks"].get((program_id, period, tranche), [])
                if m.fund_id in (fund_id, None)]
        rows.sort(key=lambda m: m.fund_id is None)
        return rows[0] if rows else None


def exact(x: float) -> Fraction:
    """A number read from a workbook as the decimal typed (0.72 is 72/100), exactly."""
    from allocator.report import _dec

    return Fraction(_dec(x))


def outcome_metrics(rnd: Round) -> tuple[str, ...]:
    """The outcome columns of a round: the four of the contract and any the Objective weighs."""
    extra = {m for p in rnd.programs for m in p.outcomes} - set(OUTCOME_COLUMNS)
    return (*OUTCOME_COLUMNS, *sorted(extra))


class ResultsInputError(InputError):
    """The results workbook cannot be used; every problem, by sheet, row and column."""

    def render(self) -> str:
        n = len(self.issues)
        lines = [f"{n} problem{'s' if n != 1 else ''} in the results workbook:"]
        lines += [f"  {issue}" for issue in self.issues]
        return "\n".join(lines)


SPECS: dict[str, list[Column]] = {
    "results": [
        Column("program_id", cells.parse_id, True),
        Column("period", cells.parse_id, True),
        Column("metric", _key, True),
        Column("target", cells.parse_float, True),
        Column("achieved", cells.parse_float, True),
        Column("trainees", cells.parse_float),
    ],
    "milestones": [
        Column("program_id", cells.parse_id, True),
        Column("period", cells.parse_id, True),
        Column("tranche", cells.parse_id, True),
        Column("met", cells.parse_bool, True),
        Column("fund_id", cells.parse_id),
    ],
}
MODELS = {"results": ResultRow, "milestones": MilestoneRow}


@dataclass(frozen=True)
class Funded:
    """What the decision record funded, as the results are checked against it."""

    # (program, period) -> the funds that paid it there, each with its tranche names
    tranches: Mapping[tuple[str, str], Mapping[str, Sequence[str]]]


def load_results(path: str | Path, rnd: Round, funded: Funded) -> Results:
    """Read and validate a results workbook against a decision; raises ResultsInputError."""
    path = Path(path)
    try:
        with gc_paused():
            tables, _ = read_tables(path, set(SHEETS))
    except InputError as exc:  # the reader's structural problems, told as the results workbook's
        raise ResultsInputError(exc.issues) from None
    return results_from_tables(tables, rnd, funded)


def results_from_tables(tables: dict[str, Table], rnd: Round, funded: Funded) -> Results:
    col = Collector()
    if "results" not in tables:
        raise ResultsInputError([InputIssue(CellRef("Results"),
                                            "the required sheet 'Results' is missing")])
    rows = {name: _rows(tables[name], SPECS[name], MODELS[name], col, fast=False)
            for name in SHEETS if name in tables}
    # Rows whose cells were refused are left out; the others are still checked against the
    # decision, so every problem is listed at once.
    _check_results(rows["results"], tables["results"], rnd, funded, col)
    if "milestones" in rows:
        _check_milestones(rows["milestones"], tables["milestones"], rnd, funded, col)
    if col.issues:
        raise ResultsInputError(col.issues)
    return Results(
        results=tuple(sorted((loc.row for loc in rows["results"]),  # type: ignore[misc]
                             key=lambda r: (r.program_id, r.period, r.metric))),
        milestones=tuple(sorted((loc.row for loc in rows.get("milestones", [])),  # type: ignore[misc]
                                key=lambda m: (m.program_id, m.period, m.tranche,
                                               m.fund_id or ""))),
    )


def _funded_periods(funded: Funded, program_id: str) -> list[str]:
    return [t for (p, t) in funded.tranches if p == program_id]


def _check_program_period(row: ResultRow | MilestoneRow, excel_row: int, table: Table,
                          rnd: Round, funded: Funded, col: Collector) -> bool:
    """Unknown program, or a period the decision did not fund it in: True when both are fine."""
    if row.program_id not in rnd._index("programs", "program_id"):
        col.error(table.ref(excel_row, "program_id"),
                  f"unknown program {row.program_id!r}: the decision record's round has no such "
                  "program")
        return False
    if (row.program_id, row.period) not in funded.tranches:
        periods = _funded_periods(funded, row.program_id)
        where = ", ".join(periods) if periods else "no period"
        col.error(table.ref(excel_row, "period"),
                  f"the decision record did not fund {row.program_id} in period {row.period!r} "
                  f"(it funded it in {where})")
        return False
    return True


def _check_results(rows: list[Located], table: Table, rnd: Round, funded: Funded,
                   col: Collector) -> None:
    metrics = outcome_metrics(rnd)
    first: dict[tuple[str, str, str], int] = {}
    trainees: dict[tuple[str, str], tuple[float, int]] = {}
    for loc in rows:
        r: ResultRow = loc.row  # type: ignore[assignment]
        ok = _check_program_period(r, loc.excel_row, table, rnd, funded, col)
        if r.metric not in metrics:
            col.error(table.ref(loc.excel_row, "metric"),
                      f"{r.metric!r} is not an outcome column of the round "
                      f"(expected one of {', '.join(metrics)})")
            ok = False
        if r.metric in RATE_COLUMNS:
            for name in ("target", "achieved"):
                value = getattr(r, name)
                if not 0 <= value <= 1:
                    col.error(table.ref(loc.excel_row, name),
                              f"{r.metric} is a rate: it must be between 0 and 1 (type 65% or "
                              f"0.65), got {value:g}")
        if r.trainees is not None and r.trainees != int(r.trainees):
            col.error(table.ref(loc.excel_row, "trainees"),
                      f"trainees who completed must be a whole number, got {r.trainees:g}")
        key = (r.program_id, r.period, r.metric)
        if key in first:
            col.error(table.ref(loc.excel_row, "metric"),
                      f"duplicate results row for {'/'.join(key)} (first on row {first[key]})")
        first.setdefault(key, loc.excel_row)
        if ok and r.trainees is not None:
            seen = trainees.setdefault((r.program_id, r.period), (r.trainees, loc.excel_row))
            if seen[0] != r.trainees:
                col.error(table.ref(loc.excel_row, "trainees"),
                          f"{r.program_id} in {r.period}: {r.trainees:g} trainees completed, "
                          f"but row {seen[1]} says {seen[0]:g}; give one number per "
                          "program and period")


def _check_milestones(rows: list[Located], table: Table, rnd: Round, funded: Funded,
                      col: Collector) -> None:
    first: dict[tuple[str, str, str, str], int] = {}
    for loc in rows:
        m: MilestoneRow = loc.row  # type: ignore[assignment]
        if not _check_program_period(m, loc.excel_row, table, rnd, funded, col):
            continue
        funds = funded.tranches[(m.program_id, m.period)]
        if m.fund_id is not None and m.fund_id not in funds:
            col.error(table.ref(loc.excel_row, "fund_id"),
                      f"fund {m.fund_id!r} did not fund {m.program_id} in {m.period} "
                      f"(funds: {', '.join(funds)})")
            continue
        names = funds[m.fund_id] if m.fund_id is not None else sorted(
            {n for trs in funds.values() for n in trs})
        if m.tranche not in names:
            col.error(table.ref(loc.excel_row, "tranche"),
                      f"{m.program_id} in {m.period} has no tranche {m.tranche!r} "
                      f"(its funds' tranches: {', '.join(names)})")
            continue
        key = (m.program_id, m.period, m.tranche, m.fund_id or "")
        if key in first:
            col.error(table.ref(loc.excel_row, "tranche"),
                      f"duplicate milestone row for {'/'.join(k for k in key if k)} "
                      f"(first on row {first[key]})")
        first.setdefault(key, loc.excel_row)


def merge_results(parts: Sequence[Results], names: Sequence[str]) -> Results:
    """Several results workbooks as one; the same program/period/metric twice is refused."""
    issues: list[InputIssue] = []
    seen: dict[tuple[str, ...], str] = {}
    for part, name in zip(parts, names, strict=True):
        for r in part.results:
            key = (r.program_id, r.period, r.metric)
            if key in seen:
                issues.append(InputIssue(CellRef(f"{name} Results", None, None, "metric"),
                                         f"{'/'.join(key)} is also in {seen[key]}"))
            seen.setdefault(key, name)
        for m in part.milestones:
            key = ("m", m.program_id, m.period, m.tranche, m.fund_id or "")
            if key in seen:
                issues.append(InputIssue(CellRef(f"{name} Milestones", None, None, "tranche"),
                                         f"{'/'.join(key[1:])} is also in {seen[key]}"))
            seen.setdefault(key, name)
    if issues:
        raise ResultsInputError(issues)
    return Results(
        results=tuple(sorted((r for p in parts for r in p.results),
                             key=lambda r: (r.program_id, r.period, r.metric))),
        milestones=tuple(sorted((m for p in parts for m in p.milestones),
                                key=lambda m: (m.program_id, m.period, m.tranche,
                                               m.fund_id or ""))))
