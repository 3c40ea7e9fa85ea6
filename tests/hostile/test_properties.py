"""Property-based tests: whatever a cell holds, the reader returns a validated round or a clean
InputError that names a place, never another exception; header order, header spelling and
sheet order never change the round.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import unicodedata
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from allocator import cells
from allocator.errors import InputError
from allocator.round import Round
from allocator.template import write_round_workbook
from allocator.validate import load_round
from tests.hostile.corpus import BASE

# HOSTILE_EXAMPLES=1000 pytest tests/hostile/test_properties.py  for a deeper search
_N = int(os.environ.get("HOSTILE_EXAMPLES", "40"))
FILE_SETTINGS = settings(max_examples=_N, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
PARSER_SETTINGS = settings(max_examples=10 * _N, deadline=None)

# Text that people and programs put in cells: digits and separators, look-alike and invisible
# characters, error codes, formulas, words that other tools read as missing or boolean.
TRICKY = ["NA", "N/A", "None", "null", "NULL", "nan", "NaN", "inf", "-inf", "TRUE", "false", "#N/A",
          "#DIV/0!", "=1/0", "=A1", "+1", "-", ".", ",", "1,5", "12 500", "500.000", "12,500", "1.234,5",
          "1,234.5", "1e5", "1e999", "0x1A", "10²", "１２", "\u200bP1", "P1\u00ad", "\u2066A1\u2069",
          "Ｐ１", "P 1", " P1 ", "\ufeff", "\u00a0", "12%", "−5", "٣", "1_000", "(500)", "€500",
          "%", "+", "-%", "+.e1"]
texts = st.one_of(
    st.sampled_from(TRICKY),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.text(alphabet="0123456789.,- %e+", max_size=10),
)
values = st.one_of(
    st.none(), st.booleans(), texts,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(2100, 1, 1)),
    st.dates(min_value=date(1900, 3, 1), max_value=date(2100, 1, 1)),
    st.times(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
PARSERS = [cells.parse_id, cells.parse_text, cells.parse_decimal, cells.parse_float, cells.parse_int,
           cells.parse_bool, cells.parse_id_list]
RAW = st.one_of(values, st.builds(cells.ErrorCell, st.sampled_from(sorted(cells.EXCEL_ERRORS))),
                st.builds(cells.FormulaCell, st.sampled_from(["=1/0", "=SUM(A1:A3)"])))


def _storable(value: Any) -> bool:
    """openpyxl refuses some control characters outright; the file could not be made."""
    return not (isinstance(value, str) and ILLEGAL_CHARACTERS_RE.search(value))


def _clean_id(text: str) -> bool:
    return (text == cells.clean_text(text) and unicodedata.normalize("NFKC", text) == text
            and not cells._INVISIBLE.search(text))


def _assert_round_is_sane(rnd: Round) -> None:
    ids = [r.region_id for r in rnd.regions] + [f.fund_id for f in rnd.funds] + \
          [p.program_id for p in rnd.programs] + list(rnd.settings.periods)
    assert all(isinstance(i, str) and i and _clean_id(i) for i in ids), ids
    for r in rnd.regions:
        assert math.isfinite(r.population) and r.population > 0
    for b in rnd.budgets:
        assert b.amount.is_finite() and b.amount >= 0
    for p in rnd.programs:
        assert math.isfinite(p.cost_per_trainee) and p.cost_per_trainee > 0
        assert all(math.isfinite(v) for v in p.outcomes.values() if v is not None)


def _load_or_clean_error(path: Path) -> Round | None:
    """The only two outcomes allowed: a validated Round, or an InputError naming places."""
    try:
        return load_round(path).round
    except InputError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.message and issue.where.sheet
            assert "Traceback" not in issue.message
        assert exc.render().count("\n") == len(exc.issues)
        return None


# --- single cells, straight into the parsers ---------------------------------------------------
@PARSER_SETTINGS
@given(raw=RAW, which=st.sampled_from(PARSERS))
def test_parsers_return_a_value_or_a_cell_error(raw: Any, which: Any) -> None:
    notes: list[str] = []
    try:
        out = which(raw, notes)
    except cells.CellValueError as exc:
        assert str(exc)
        return
    if which in (cells.parse_id, cells.parse_text):
        assert out is None or (isinstance(out, str) and out == cells.clean_text(out))
        if which is cells.parse_id and out is not None:
            assert _clean_id(out) and not any(ch in out for ch in ",;|")
    elif which is cells.parse_decimal:
        assert out is None or (isinstance(out, Decimal) and out.is_finite())
    elif which is cells.parse_float:
        assert out is None or (isinstance(out, float) and math.isfinite(out))
    elif which is cells.parse_int:
        assert out is None or isinstance(out, int)
    elif which is cells.parse_bool:
        assert out is None or isinstance(out, bool)
    else:
        assert isinstance(out, list) and all(_clean_id(i) for i in out)
    if isinstance(raw, str) and isinstance(out, Decimal | float | int) and not isinstance(out, bool):
        assert notes, "a number read from text must be reported as a normalisation"


@PARSER_SETTINGS
@given(n=st.integers(min_value=0, max_value=10**12), sep=st.sampled_from([",", "."]))
def test_grouped_thousands_are_read_or_called_ambiguous(n: int, sep: str) -> None:
    """'12,345,678' is certain; '12,500' could be 12.5 or 12500: refused, never guessed."""
    text = f"{n:,}".replace(",", sep)
    groups = text.count(sep)
    if groups == 1:
        with pytest.raises(cells.CellValueError, match="ambiguous"):
            cells.parse_decimal(text, [])
    else:
        assert cells.parse_decimal(text, []) == n
    assert cells.parse_decimal(f"{n:,}".replace(",", " "), []) == n  # space grouping is certain


@PARSER_SETTINGS
@given(whole=st.integers(min_value=0, max_value=10**9),
       frac=st.text(alphabet="0123456789", min_size=1, max_size=6).filter(lambda f: len(f) != 3))
def test_decimal_comma_is_read_when_it_cannot_be_grouping(whole: int, frac: str) -> None:
    assert cells.parse_decimal(f"{whole},{frac}", []) == Decimal(f"{whole}.{frac}")


@pytest.mark.slow  # many generated workbooks
@PARSER_SETTINGS
@given(text=st.text(min_size=1, max_size=8).filter(lambda t: t.strip()),
       junk=st.lists(st.sampled_from(["\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u2066",
                                      "\u2069", "\u202e", "\ufe0f", "\U000e0041"]), min_size=1, max_size=4),
       at=st.integers(min_value=0, max_value=8))
def test_invisible_characters_never_make_two_ids(text: str, junk: list[str], at: int) -> None:
    assume(_storable(text))
    try:
        plain = cells.parse_id(text, [])
    except cells.CellValueError:
        return
    assume(plain is not None)
    i = min(at, len(text))
    notes: list[str] = []
    assert cells.parse_id(text[:i] + "".join(junk) + text[i:], notes) == plain
    assert notes


# --- whole workbooks ---------------------------------------------------------------------------
SHEET_ROWS = {name: rows for name, rows in BASE.items() if isinstance(rows, list)}


@pytest.mark.slow  # many generated workbooks
@FILE_SETTINGS
@given(data=st.data(), value=values)
def test_any_value_in_any_cell_is_a_round_or_a_clean_error(data: st.DataObject, value: Any) -> None:
    assume(_storable(value))
    sheets = copy.deepcopy(BASE)
    sheet = data.draw(st.sampled_from(sorted(SHEET_ROWS)), label="sheet")
    rows = sheets[sheet]
    index = data.draw(st.integers(min_value=0, max_value=len(rows) - 1), label="row")
    column = data.draw(st.sampled_from(sorted({k for r in rows for k in r})), label="column")
    rows[index][column] = value
    with tempfile.TemporaryDirectory() as folder:
        path = write_round_workbook(Path(folder) / "r.xlsx", sheets)
        rnd = _load_or_clean_error(path)
    if rnd is not None:
        _assert_round_is_sane(rnd)


@pytest.mark.slow  # many generated workbooks
@FILE_SETTINGS
@given(data=st.data(), header=st.one_of(texts, st.integers(), st.none()))
def test_any_header_is_a_round_or_a_clean_error(data: st.DataObject, header: Any) -> None:
    assume(_storable(header))
    sheet = data.draw(st.sampled_from(sorted(SHEET_ROWS)), label="sheet")
    with tempfile.TemporaryDirectory() as folder:
        path = write_round_workbook(Path(folder) / "r.xlsx", BASE)
        wb = openpyxl.load_workbook(path)
        ws = wb[sheet]
        col = data.draw(st.integers(min_value=1, max_value=ws.max_column + 1), label="column")
        ws.cell(row=1, column=col, value=header)
        wb.save(path)
        rnd = _load_or_clean_error(path)
    if rnd is not None:
        _assert_round_is_sane(rnd)


def _decorate(header: str, style: int) -> str:
    return [header, header.upper(), f"  {header.title()} ", header.replace("_", " "),
            f"{header}\u200b"][style]


@pytest.fixture(scope="module")
def base_round(tmp_path_factory: pytest.TempPathFactory) -> Round:
    return load_round(write_round_workbook(tmp_path_factory.mktemp("base") / "b.xlsx", BASE)).round


@pytest.mark.slow  # many generated workbooks
@FILE_SETTINGS
@given(data=st.data())
def test_header_order_spelling_and_sheet_order_change_nothing(data: st.DataObject, base_round: Round) -> None:
    """Columns are found by header name and sheets by sheet name, never by position."""
    sheet_order = data.draw(st.permutations(list(BASE)), label="sheet order")
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name in sheet_order:
        ws = wb.create_sheet(name)
        if name == "Round":
            ws.append(["key", "value"])
            for key, value in BASE["Round"].items():
                ws.append([key, value])
            continue
        rows = BASE[name]
        headers = list(dict.fromkeys(k for r in rows for k in r))
        order = data.draw(st.permutations(headers), label=f"{name} columns")
        styles = data.draw(st.lists(st.integers(0, 4), min_size=len(order), max_size=len(order)))
        ws.append([_decorate(h, s) for h, s in zip(order, styles, strict=True)])
        for r in rows:
            ws.append([r.get(h) for h in order])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.xlsx"
        wb.save(path)
        assert load_round(path).round == base_round


def test_id_text_is_never_a_missing_value_or_a_bool() -> None:
    for text in ["NA", "N/A", "None", "null", "nan", "TRUE", "FALSE", "yes", "0"]:
        assert cells.parse_id(text, []) == text


def test_excel_serial_is_shown_for_a_date_where_a_label_belongs() -> None:
    with pytest.raises(cells.CellValueError, match="Excel serial 2026"):
        cells.parse_id(datetime(1905, 7, 18), [])
    with pytest.raises(cells.CellValueError, match="time of day"):
        cells.parse_id(time(1, 0), [])
