"""Rows streamed into a saved workbook (allocator.xlsxrows), read back with openpyxl."""

from __future__ import annotations

import math
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from allocator.xlsxrows import cell_tails, fill_sheets, number_text, row_template, rows_xml

FORMULA_LIKE = ["=1+1", '=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "=cmd|' /C calc'!A0",
                "#N/A", "#DIV/0!", "\t=tab", "\r=cr"]


def _workbook(tmp_path: Path, rows: list[list], *, sheets: tuple[str, ...] = ("A",),
              block: int = 2) -> openpyxl.Workbook:
    """A write-only shell with a header row per sheet, the rows streamed into sheet A."""
    wb = Workbook(write_only=True)
    money = 0
    for name in sheets:
        ws = wb.create_sheet(name)
        ws.append(["h1", "h2", "h3"])
        if name == "A":
            cell = WriteOnlyCell(ws, 0)
            cell.number_format = '#,##0.00 "EUR"'
            money = cell.style_id
    path = tmp_path / "book.xlsx"
    wb.save(path)
    blocks = [(rows[i:i + block], [0, money, 0], [0, 0, 0]) for i in range(0, len(rows), block)]
    fill_sheets(path, {"A": rows_xml(2, 3, blocks)})
    return openpyxl.load_workbook(path)


def test_text_that_looks_like_a_formula_or_an_error_stays_text(tmp_path):
    rows = [[text, 1, text] for text in FORMULA_LIKE]
    ws = _workbook(tmp_path, rows)["A"]
    for r, text in enumerate(FORMULA_LIKE, start=2):
        for col in ("A", "C"):
            cell = ws[f"{col}{r}"]
            assert cell.data_type == "s" and cell.value == text, (r, col)
    with zipfile.ZipFile(tmp_path / "book.xlsx") as z:
        sheet = z.read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet and b"<f " not in sheet


def test_text_is_escaped_and_keeps_its_spaces(tmp_path):
    texts = ["a & b <c> \"d\" 'e'", "  padded  ", "bad\x01char", "ünïcode €", "]]>"]
    ws = _workbook(tmp_path, [[t, None, None] for t in texts])["A"]
    got = [ws[f"A{r}"].value for r in range(2, 2 + len(texts))]
    assert got == ["a & b <c> \"d\" 'e'", "  padded  ", "bad\ufffdchar", "ünïcode €", "]]>"]


def test_numbers_stay_numbers_with_their_format(tmp_path):
    values = [3, 2.5, 101.56, 30.0, 0.1 + 0.2, -7, np.int64(12), np.float64(0.25), Decimal("1.10"),
              2**60]
    ws = _workbook(tmp_path, [["x", v, None] for v in values])["A"]
    for r, v in enumerate(values, start=2):
        cell = ws[f"B{r}"]
        assert cell.data_type == "n" and cell.number_format == '#,##0.00 "EUR"', r
        assert cell.value == (float(v) if isinstance(v, Decimal) else v), r
    assert type(ws["B2"].value) is int and type(ws["B5"].value) is int  # whole float -> int
    assert ws["B6"].value == 0.1 + 0.2  # the exact float, not 0.3


def test_empty_values_keep_the_row_in_place(tmp_path):
    rows = [[None, 1, "c"], ["", math.nan, "c"], ["a", math.inf, None], [True, False, np.bool_(True)]]
    ws = _workbook(tmp_path, rows)["A"]
    got = [[c.value for c in row] for row in ws.iter_rows(min_row=2)]
    assert got == [[None, 1, "c"], [None, None, "c"], ["a", None, None], ["yes", "no", "yes"]]


def test_rows_are_numbered_across_blocks_and_other_sheets_are_untouched(tmp_path):
    rows = [[f"r{i}", i, None] for i in range(7)]
    wb = _workbook(tmp_path, rows, sheets=("First", "A", "Last"), block=3)
    assert wb.sheetnames == ["First", "A", "Last"]
    assert [[c.value for c in r] for r in wb["A"].iter_rows(min_row=2, max_col=2)] == \
        [[f"r{i}", i] for i in range(7)]
    for name in ("First", "Last"):
        assert [[c.value for c in r] for r in wb[name].iter_rows()] == [["h1", "h2", "h3"]]


def test_a_row_of_the_wrong_width_is_refused(tmp_path):
    with pytest.raises(ValueError, match="3 columns"):
        list(rows_xml(2, 3, [([["a", "b"]], [0, 0], [0, 0])]))


def test_pieces():
    assert number_text(30.0) == "30" and number_text(0.1) == "0.1" and number_text(1e300) == "1e+300"
    assert number_text(math.nan) is None and number_text(-math.inf) is None
    assert row_template(2).format(5, "/>", "/>") == '<row r="5"><c r="A5"/><c r="B5"/></row>'
    assert cell_tails(["x", "x"], 0, 3) == [' s="3" t="inlineStr"><is><t>x</t></is></c>'] * 2


def test_a_stated_used_range_is_dropped_so_read_only_readers_see_every_row(tmp_path):
    wb = Workbook()  # a normal workbook states its used range (<dimension ref="A1:B1"/>)
    wb.active.title = "A"
    wb.active.append(["h1", "h2"])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    fill_sheets(path, {"A": rows_xml(2, 2, [([[f"r{i}", i] for i in range(5)], [0, 0], [0, 0])])})
    with zipfile.ZipFile(path) as z:
        assert b"<dimension" not in z.read("xl/worksheets/sheet1.xml")
    ws = openpyxl.load_workbook(path, read_only=True)["A"]
    assert [r for r in ws.iter_rows(values_only=True)] == \
        [("h1", "h2"), *[(f"r{i}", i) for i in range(5)]]
