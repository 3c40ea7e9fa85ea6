"""allocator.excel: the look every printed workbook shares, checked on the workbook's own XML.

(LibreOffice renders them in tests/test_print.py; these run everywhere.)
"""

from __future__ import annotations

import builtins
import zipfile

import openpyxl
import pytest
from typer.testing import CliRunner

from allocator import excel
from allocator.cli import app
from allocator.engine import solve_round
from allocator.report import write_report
from allocator.validate import load_round
from allocator.xlsxrows import rows_xml
from tests import rounds


def test_shown_text_is_what_the_format_shows():
    f = excel.Formats("EUR", 0)
    assert excel.shown(10_599_200, f.code("money")) == "10,599,200 EUR"
    assert excel.shown(0.6706, f.code("percent")) == "67.1%"
    assert excel.shown(-0.0348, f.code("price")) == "-0.035"
    assert excel.shown(5931.29, f.code("trainees")) == "5,931.29"
    assert excel.Formats("USD", 2).code("money") == '#,##0.00 "USD"'


def test_prices_are_per_10000_and_noise_is_zero():
    assert excel.price_shown(-3.482554701360137e-06) == pytest.approx(-0.03482554701360137)
    assert excel.price_shown(1e-12) == 0.0
    assert excel.price_shown(float("nan")) is None


def test_columns_are_wide_enough_for_every_shown_number():
    codes = [None, excel.Formats("EUR").code("money")]
    widths = excel.column_widths(["item", "slack"], [["a", 10_599_200], ["b", 0]], codes)
    # "10,599,200 EUR" is 14 characters: the column must hold it (no ###), bold included
    assert widths[1] >= 14 * 1.1
    assert excel.column_widths(["x"], [["y" * 200]], [None]) == [excel.MAX_WIDTH]


def test_print_ready_makes_any_openpyxl_sheet_printable(tmp_path):
    # what a settlement workbook gets by calling excel.print_ready after writing its tables
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Payments"
    ws.append(["program_id", "amount", "share", "note"])
    ws.append(["P1", 1234567.5, 0.25, "a long note " * 20])
    ws.append(["P2", 3.482554701360137e-06, 0.75, "short"])
    ws["B2"].number_format = '#,##0.00 "EUR"'
    excel.print_ready(wb, footer="R1")
    wb.save(tmp_path / "s.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "s.xlsx")["Payments"]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:D3"
    assert all(c.font.bold for c in ws[1])
    assert ws.page_setup.fitToWidth == 1 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.print_title_rows == "$1:$1"
    assert "&A" in ws.oddFooter.left.text and ws.oddFooter.center.text == "Page &P of &N"
    assert ws["B3"].number_format != "General"  # a tiny float never shows as 3.48E-06
    assert ws["D2"].alignment.wrap_text and ws.row_dimensions[2].height > 15
    assert ws.column_dimensions["B"].width >= len("1,234,567.50 EUR")


def test_write_table_adds_an_exact_total_row_under_the_money(tmp_path):
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    excel.write_table(wb, "T", ["id", "amount", "share"], [["a", 0.1, 0.5], ["b", 0.2, 0.5]],
                      {"amount": "money2", "share": "percent"}, total=True)
    wb.save(tmp_path / "t.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx")["T"]
    assert [c.value for c in ws[4]] == ["Total", 0.3, None]  # 0.1 + 0.2 as typed, not 0.30000000000000004
    assert ws["A4"].font.bold and ws.auto_filter.ref == "A1:C3"


def test_row_heights_go_into_the_streamed_rows():
    xml = "".join(rows_xml(2, 1, [([["x"], ["y"]], [0], [0], [None, 40.0])]))
    assert '<row r="2">' in xml and '<row r="3" ht="40.0" customHeight="1">' in xml


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = rounds.write(tmp_path_factory.mktemp("x") / "t1.xlsx")
    solution = solve_round(load_round(path).round)
    return openpyxl.load_workbook(write_report(solution, path.parent / "r.xlsx"))


def test_summary_in_words_and_the_tie_break_explained_once_in_the_audit(report):
    summary = [r[0] for r in report["Summary"].iter_rows(min_row=2, values_only=True)]
    assert not any("stage" in item or "objective" in item for item in summary)
    assert "outcome value, rounded allocation" in summary
    audit = {r[0]: r[1] for r in report["Audit"].iter_rows(min_row=2, values_only=True)}
    tie = [k for k in audit if k.startswith("stage tiebreak: what it does")]
    assert len(tie) == 1 and audit[tie[0]].startswith("tie-break:")
    explained = [v for wb_sheet in report for row in wb_sheet.iter_rows(values_only=True)
                 for v in row if isinstance(v, str) and v.startswith("tie-break:")]
    assert len(explained) == 1


def test_every_report_sheet_prints_one_page_wide_with_its_header_on_each_page(report, tmp_path):
    for ws in report:
        assert ws.page_setup.fitToWidth == 1, ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        assert ws.print_title_rows == "$1:$1", ws.title
        assert ws.oddFooter.center.text == "Page &P of &N", ws.title
    assert report.sheetnames[0] == "Dashboard"
    assert report["Dashboard"].page_setup.fitToHeight == 1


def test_dashboard_has_native_charts_over_the_report_sheets(tmp_path):
    path = rounds.write(tmp_path / "t1.xlsx")
    out = write_report(solve_round(load_round(path).round), tmp_path / "r.xlsx")
    with zipfile.ZipFile(out) as z:
        charts = [z.read(n).decode() for n in z.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == 4 and all("<c:barChart>" in c or "<barChart>" in c for c in charts)
    refs = " ".join(charts)
    for sheet in ("'Jurisdictions'!", "'Dashboard'!", "'Regions'!", "'Funds'!"):
        assert sheet in refs, sheet


def test_summary_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    path = rounds.write(tmp_path / "t1.xlsx")
    result = CliRunner().invoke(app, ["run", str(path), "--report", str(tmp_path / "r.xlsx"),
                                      "--records", str(tmp_path / "m"), "--summary",
                                      str(tmp_path / "s.pdf")])
    assert result.exit_code == 2
    assert "pip install 'allocator[summary]'" in result.stderr
    assert not (tmp_path / "r.xlsx").exists()  # refused before anything was solved or written


def test_html_board_summary_is_one_self_contained_file(tmp_path):
    from allocator.summary import run_board, write_summary

    path = rounds.write(tmp_path / "t1.xlsx")
    out = write_summary(run_board(solve_round(load_round(path).round)), tmp_path / "board.html")
    text = out.read_text(encoding="utf-8")
    assert text.count("src='data:image/png;base64,") == 4  # the dashboard's four charts
    assert "http" not in text and "<link" not in text and "<script" not in text
    for words in ("budget", "allocated", "unspent", "trainees", "programs funded",
                  "outcome value", "Programs not funded, and why"):
        assert words in text, words
