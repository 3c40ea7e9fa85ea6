"""The column-wise fast path of validation against the per-cell, per-row path it shortcuts.

`round_from_tables(tables, fast=False)` parses every cell with its parser and builds every row
with pydantic; the fast path must give the very same Round (fields set included), the same
notes, and the same problems in the same order, whatever the cells hold. The tables come from a
real workbook read once; dirty cells are then written into copies in memory, so any raw value
the reader can produce (numbers, text, booleans, dates, error cells, formulas) can be tried.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocator.cells import ErrorCell, FormulaCell
from allocator.errors import InputError
from allocator.validate import OPTIONAL_SHEETS, REQUIRED_SHEETS, load_round, round_from_tables
from allocator.workbook import Table, column_letter, read_tables
from benchmarks.synthetic import write_synthetic_round
from tests.hostile.test_properties import RAW

N_PROGRAMS = 300
WANTED = set(REQUIRED_SHEETS) | set(OPTIONAL_SHEETS)

Change = tuple[str, str, int, Any]  # sheet, header, data row index, raw value


@pytest.fixture(scope="module")
def workbook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fast-read") / "round.xlsx"
    return write_synthetic_round(path, N_PROGRAMS)


@pytest.fixture(scope="module")
def clean(workbook: Path) -> dict[str, Table]:
    return read_tables(workbook, WANTED)[0]


def with_cells(tables: dict[str, Table], changes: list[Change]) -> dict[str, Table]:
    """Copies of the tables with the given cells overwritten (a new header adds a column)."""
    out = {key: Table(t.sheet, dict(t.headers), t.header_row, list(t.row_numbers),
                      {h: list(v) for h, v in t.columns.items()}, list(t.notes))
           for key, t in tables.items()}
    for sheet, header, i, value in changes:
        table = out[sheet]
        if header not in table.columns:
            table.headers[header] = column_letter(len(table.headers))
            table.columns[header] = [""] * len(table.row_numbers)
        table.columns[header][i % len(table.row_numbers)] = value
    return out


def outcome(tables: dict[str, Table], fast: bool) -> tuple[Any, ...]:
    """Everything a caller can see of validating the tables."""
    try:
        rnd, notes = round_from_tables(tables, fast=fast)
    except InputError as exc:
        return ("refused", exc.issues)
    given = [(name, [row.__pydantic_fields_set__ for row in getattr(rnd, name)])
             for name in ("regions", "funds", "budgets", "programs", "performance", "tranches")]
    return ("read", rnd.model_dump(), rnd.canonical_json(), notes, given, rnd)


def assert_same(tables: dict[str, Table]) -> tuple[Any, ...]:
    fast, slow = outcome(tables, True), outcome(tables, False)
    assert fast[0] == slow[0], (fast[1] if fast[0] == "refused" else slow[1])
    assert fast[1:] == slow[1:]
    return fast


def test_clean_round_is_the_same_through_both_paths(clean: dict[str, Table]) -> None:
    result = assert_same(clean)
    assert result[0] == "read" and len(result[-1].programs) == N_PROGRAMS


def test_load_round_gives_the_per_row_round(workbook: Path, clean: dict[str, Table]) -> None:
    loaded = load_round(workbook)
    rnd, notes = round_from_tables(clean, fast=False)
    assert loaded.round == rnd and loaded.round.digest() == rnd.digest() and loaded.notes == notes


DIRTY: list[list[Change]] = [
    [("programs", "program_id", 3, "NA"), ("programs", "program_id", 4, "None")],
    [("programs", "program_id", 5, 2026.0), ("programs", "program_id", 6, " P9 ")],
    [("programs", "program_id", 7, "P\u200b9"), ("programs", "program_id", 8, "")],
    [("programs", "program_id", 9, "P1,P2"), ("programs", "program_id", 10, True)],
    [("programs", "program_id", 11, "P000001")],  # a duplicate
    [("programs", "name", 12, 12.5), ("programs", "name", 13, "  spaced  "),
     ("programs", "name", 14, "a  b"), ("programs", "name", 15, "#N/A")],
    [("programs", "name", 16, ErrorCell("#DIV/0!")), ("programs", "name", 17, FormulaCell("=1/0"))],
    [("programs", "stage", 18, "Pilot"), ("programs", "stage", 19, "scale-up"),
     ("programs", "stage", 20, "")],
    [("programs", "stage", 21, "bogus"), ("programs", "stage", 22, 3.0)],
    [("programs", "regions", 23, "R001, R002"), ("programs", "regions", 24, " R001"),
     ("programs", "regions", 25, "R001,,R002"), ("programs", "regions", 26, "R002,R001")],
    [("programs", "regions", 27, "R001, R001"), ("programs", "regions", 28, "   ")],
    [("programs", "regions", 29, ""), ("programs", "regions", 30, 7.0),
     ("programs", "regions", 31, "R001;R002"), ("programs", "regions", 32, "R001,  R002")],
    [("programs", "regions", 33, "R999")],  # unknown region
    [("programs", "cost_per_trainee", 34, "1 200"), ("programs", "cost_per_trainee", 35, "12,5"),
     ("programs", "cost_per_trainee", 36, 2**60), ("programs", "cost_per_trainee", 37, 7)],
    [("programs", "cost_per_trainee", 38, "1.234"), ("programs", "cost_per_trainee", 39, -5.0),
     ("programs", "cost_per_trainee", 40, 0.0), ("programs", "cost_per_trainee", 41, "")],
    [("programs", "cost_per_trainee", 42, True), ("programs", "cost_per_trainee", 43, "abc"),
     ("programs", "cost_per_trainee", 44, float("inf")), ("programs", "cost_per_trainee", 45,
                                                          float("nan"))],
    [("programs", "cost_per_trainee", 46, 10**400), ("programs", "max_trainees", 47, -1.0)],
    [("programs", "max_trainees", 48, "10"), ("programs", "max_trainees", 49, "")],
    [("programs", "min_trainees", 50, 5000.0), ("programs", "min_trainees", 51, -1.0),
     ("programs", "min_trainees", 52, "")],
    [("programs", "start_period", 53, 2026.0), ("programs", "start_period", 54, "2026"),
     ("programs", "end_period", 54, 2027), ("programs", "start_period", 55, "2030")],
    [("programs", "start_period", 56, datetime(2026, 1, 1))],
    [("programs", "targets", 57, "Youth, WOMEN"), ("programs", "targets", 58, "youth, Youth"),
     ("programs", "targets", 59, "  "), ("programs", "targets", 60, "rural,youth")],
    [("programs", "pilot_of", 61, "NA"), ("programs", "pilot_of", 62, "P000063")],
    [("programs", "employment_rate", 63, "65%"), ("programs", "employment_rate", 64, 1.5),
     ("programs", "wage_gain", 65, "")],
    [("programs", "npv", 66, "1,5"), ("programs", "npv", 67, 3.0), ("programs", "npv", 68, " x ")],
    [("programs", "Programs note", 0, "kept as an attribute")],
    [("performance", "program_id", 1, "None"), ("performance", "metric", 2, "Employment Rate"),
     ("performance", "target", 3, 0.0), ("performance", "achieved", 4, -1.0)],
    [("performance", "metric", 5, " employment rate "), ("performance", "target", 6, "2,5")],
    [("regions", "population", 1, "0"), ("regions", "rural", 2, "yes"),
     ("regions", "rural", 3, "maybe")],
    [("budgets", "amount", 1, "-1"), ("budgets", "amount", 2, "1 000"),
     ("budgets", "period", 3, 2026.0)],
    [("tranches", "due", 1, 1.5), ("tranches", "share", 2, 2.0)],
    [("funds", "cofinancing_cap", 1, 1.5), ("funds", "carry_over", 2, "Yes")],
    # sizes outside cells.NUMBER_RANGE, as numbers and as text, and its edges
    [("programs", "cost_per_trainee", 69, 1e308), ("programs", "cost_per_trainee", 70, 1e-300),
     ("programs", "max_trainees", 71, 10**15), ("programs", "max_trainees", 72, "1e15"),
     ("budgets", "amount", 5, 6e19), ("budgets", "amount", 6, -1e15)],
    [("programs", "wage_gain", 73, 1e-9), ("programs", "wage_gain", 74, 9.99e-10),
     ("programs", "learning_gain", 75, 999_999_999_999_999), ("programs", "npv", 76, 1e300)],
]


def test_number_range_is_the_same_on_both_paths(clean: dict[str, Table]) -> None:
    """A float column of only numbers is checked at once (numpy) by the fast path: a size out of
    range must be refused there as parse_float refuses it, at the same cells."""
    changes = [("programs", "cost_per_trainee", 3, 1e308), ("programs", "max_trainees", 4, 1e-12),
               ("regions", "population", 1, 1e15)]
    result = assert_same(with_cells(clean, changes))
    assert result[0] == "refused"
    assert [(i.where.sheet, i.where.header) for i in result[1]] == [
        ("Programs", "cost_per_trainee"), ("Programs", "max_trainees"), ("Regions", "population")]
    assert all("out of range" in i.message for i in result[1])


@pytest.mark.parametrize("changes", DIRTY, ids=lambda c: f"{c[0][0]}.{c[0][1]}")
def test_dirty_cells_give_the_same_round_or_the_same_problems(
        clean: dict[str, Table], changes: list[Change]) -> None:
    assert_same(with_cells(clean, changes))


def test_every_dirty_cell_at_once(clean: dict[str, Table]) -> None:
    result = assert_same(with_cells(clean, [c for changes in DIRTY for c in changes]))
    assert result[0] == "refused"


PROGRAM_COLUMNS = ["program_id", "name", "sector", "stage", "regions", "cost_per_trainee",
                   "max_trainees", "min_trainees", "start_period", "end_period", "targets",
                   "pilot_of", "employment_rate", "retention_rate", "learning_gain", "wage_gain",
                   "npv"]
cells_anywhere = st.lists(
    st.tuples(st.sampled_from(["programs"]), st.sampled_from(PROGRAM_COLUMNS),
              st.integers(0, N_PROGRAMS - 1), RAW)
    | st.tuples(st.just("performance"), st.sampled_from(["program_id", "metric", "target",
                                                         "achieved"]),
                st.integers(0, 50), RAW),
    min_size=1, max_size=6)


@pytest.mark.slow  # 60 generated workbooks
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=cells_anywhere)
def test_any_cells_give_the_same_outcome(clean: dict[str, Table], changes: list[Change]) -> None:
    assert_same(with_cells(clean, changes))
