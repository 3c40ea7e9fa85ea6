"""The workbooks as a person prints them: rendered by LibreOffice to PDF, counted and read.

Each workbook (the example round's report, a 6-program round's report, the compare and the
diagnosis workbooks) is converted with `soffice --headless --convert-to pdf`, as printing the
whole workbook does (a report prints its finance pack, `report.PRINTED`); the test counts its
pages, reads its text back with `pdftotext` and asserts that no cell shows `###`
(a column too narrow for its number) and no number is in scientific notation. PNGs of the
first pages go to `build/render/` (git-ignored) to be looked at.

LibreOffice is needed: `.ci/run` installs it; where it is not installed the test is skipped
and says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest

from allocator.compare import compare
from allocator.diagnose import diagnose_infeasible, write_diagnosis
from allocator.engine import solve_round
from allocator.report import PRINT_NOTE, PRINTED, SHEETS, write_report
from allocator.validate import load_round
from tests import rounds

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inputs" / "example_round.xlsx"
RENDER = ROOT / "build" / "render"
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
# 3.48E-06 as a spreadsheet shows it, 1e-05 as Python writes it (a hex digest has no sign)
E_NOTATION = re.compile(r"\b\d+(?:[.,]\d+)?[eE][+-]\d{1,3}\b")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed: "
                       "install libreoffice-calc-nogui and poppler-utils to run the print tests"),
]


def render(xlsx: Path, name: str, pngs: int = 99) -> tuple[int, list[str]]:
    """(pages, text of each page) of the workbook printed to PDF; PNGs of its first pages."""
    out = xlsx.parent / f"pdf-{name}"
    out.mkdir(exist_ok=True)
    # A profile of its own: a second LibreOffice (or the user's) never blocks this one.
    profile = (xlsx.parent / "lo-profile").as_uri()
    subprocess.run([SOFFICE, f"-env:UserInstallation={profile}", "--headless", "--convert-to",
                    "pdf", "--outdir", str(out), str(xlsx)], check=True, capture_output=True,
                   timeout=240)
    pdf = out / f"{xlsx.stem}.pdf"
    assert pdf.is_file(), f"LibreOffice wrote no PDF for {xlsx.name}"
    text = _pdf_text(pdf)
    pages = _pdf_pages(pdf, text)
    if pngs and shutil.which("pdftoppm"):
        RENDER.mkdir(parents=True, exist_ok=True)
        for old in RENDER.glob(f"{name}-*.png"):
            old.unlink()
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-l", str(pngs), str(pdf),
                        str(RENDER / name)], check=True, timeout=240)
    return pages, text


def _pdf_text(pdf: Path) -> list[str]:
    if shutil.which("pdftotext"):
        done = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                              capture_output=True, text=True, timeout=120)
        return done.stdout.split("\f")[:-1] or [done.stdout]
    pytest.skip("pdftotext (poppler-utils) is not installed: the PDF's text cannot be read")


def _pdf_pages(pdf: Path, text: list[str]) -> int:
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True,
                              text=True, timeout=60).stdout
        return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    return len(re.findall(rb"/Type\s*/Page\b", pdf.read_bytes()))


def assert_readable(text: list[str], what: str) -> None:
    """No cell shows ### and no number is in scientific notation, on any page."""
    for n, page in enumerate(text, 1):
        assert "###" not in page, f"{what}, page {n}: a column is too narrow for its number"
        found = E_NOTATION.findall(page)
        assert not found, f"{what}, page {n}: numbers in scientific notation {found}"


def sheets_per_page(text: list[str]) -> list[str]:
    """The sheet name in each page's footer (left: '&A')."""
    names = []
    for page in text:
        lines = [line for line in page.splitlines() if line.strip()]
        names.append(lines[-1].split("  ")[0].strip() if lines else "")
    return names


# --- the workbooks ----------------------------------------------------------------------------

SIX = [
    {"program_id": f"P{i}", "name": name, "sector": sector, "stage": "established",
     "regions": regions, "cost_per_trainee": cost, "max_trainees": cap, "targets": targets,
     "employment_rate": emp, "retention_rate": 0.6, "learning_gain": 0.3, "wage_gain": 0.1}
    for i, (name, sector, regions, cost, cap, targets, emp) in enumerate([
        ("Welding for rural youth", "industry", "A1", 3000, 20, "rural", 0.7),
        ("Coding bootcamp", "digital", "A1, B1", 5000, 30, "", 0.8),
        ("Care assistants", "health", "B1", 2000, 25, "women", 0.5),
        ("Solar installers", "green", "A1", 4000, 15, "rural", 0.75),
        ("Logistics drivers", "logistics", "B1", 3500, 40, "", 0.65),
        ("Bookkeeping for returners", "services", "A1, B1", 2500, 30, "women", 0.6),
    ], start=1)
]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("print")


def test_example_round_report_prints_the_finance_pack_in_at_most_12_pages(out):
    solution = solve_round(load_round(EXAMPLE).round)
    path = write_report(solution, out / "example.xlsx", run_id="print-test")
    pages, text = render(path, "example-report")
    assert_readable(text, "example report")
    names = sheets_per_page(text)
    assert f"Page 1 of {pages}" in text[0]
    assert pages <= 12, names
    # The pack, in the workbook's order, the board's page first; the ledgers (124 allocation
    # rows, 275 tranches) take a few pages each, every other printed sheet one.
    assert list(dict.fromkeys(names)) == list(PRINTED), names
    for name in ("Dashboard", "Summary", "Funds", "Rules"):
        assert names.count(name) == 1, names
    # Every sheet of the output contract is still in the workbook, on screen.
    assert openpyxl.load_workbook(path, read_only=True).sheetnames == list(SHEETS)


def test_six_program_round_report_prints_in_at_most_6_pages(out):
    path = rounds.write(out / "six.xlsx", rounds.sheets(Programs=SIX))
    solution = solve_round(load_round(path).round)
    report = write_report(solution, out / "six-report.xlsx")
    pages, text = render(report, "six-report")
    assert_readable(text, "6-program report")
    # One page per printed sheet: nothing of a small round spills onto a second page.
    assert sheets_per_page(text) == list(PRINTED), sheets_per_page(text)
    assert pages == len(PRINTED) <= 6


def test_a_screen_sheet_prints_whole_once_its_print_range_is_cleared(out):
    """What the Summary's 'printed sheets' line tells a user to do gives every sheet."""
    path = rounds.write(out / "six-all.xlsx", rounds.sheets(Programs=SIX))
    report = write_report(solve_round(load_round(path).round), out / "six-all-report.xlsx")
    summary = dict(openpyxl.load_workbook(report)["Summary"].iter_rows(values_only=True))
    assert summary["printed sheets"] == PRINT_NOTE
    wb = openpyxl.load_workbook(report)
    for ws in wb.worksheets:
        if ws.title not in PRINTED:
            assert ws.print_area, ws.title
            ws.print_area = None  # Page Layout > Print Area > Clear Print Area
    cleared = out / "six-cleared.xlsx"
    wb.save(cleared)
    _, text = render(cleared, "six-cleared", pngs=0)
    assert_readable(text, "6-program report, every sheet")
    assert list(dict.fromkeys(sheets_per_page(text))) == list(SHEETS), sheets_per_page(text)


def test_compare_workbook_prints_with_its_charts_whole(out):
    wb = openpyxl.load_workbook(rounds.write(out / "variants.xlsx", rounds.sheets(Programs=SIX)))
    ws = wb.create_sheet("Variants")
    ws.append(["variant", "overrides"])
    ws.append(["more JIF", "budget JIF 2027 = +20%"])
    ws.append(["cheap", "program * cost_per_trainee = -10%"])
    wb.save(out / "variants.xlsx")
    result = compare(out / "variants.xlsx", report=out / "compare.xlsx", workers=1)
    pages, text = render(result.report, "compare")
    assert_readable(text, "compare workbook")
    names = sheets_per_page(text)
    # A sheet with a chart prints on one page: no page break cuts the chart.
    for sheet in ("Jurisdictions", "Funds"):
        assert names.count(sheet) == 1, names
    assert pages <= 8, names


def test_diagnosis_workbook_prints(out):
    rule = {"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": ">=",
            "value": 10**6}
    path = rounds.write(out / "infeasible.xlsx", rounds.sheets(Rules=[rule]))
    diagnosis = diagnose_infeasible(load_round(path).round)
    target = out / "infeasible.diagnosis.xlsx"
    write_diagnosis(diagnosis, target)
    pages, text = render(target, "diagnosis")
    assert_readable(text, "diagnosis workbook")
    assert "R-A" in "".join(text)
    assert pages <= 2


def test_settlement_workbook_prints_every_sheet(out):
    """The settlement workbook is all finance's: each of its sheets prints (none is screen-only)."""
    from allocator import api

    record = next((ROOT / "models" / "upper-rhine-2026").glob("*/manifest.json")).parent
    copy = out / "models" / record.parent.name / record.name
    shutil.copytree(record, copy)
    run = api.settle(copy, ROOT / "inputs" / "example_results.xlsx",
                     report=out / "settlement.xlsx")
    pages, text = render(run.report, "settlement")
    assert_readable(text, "settlement workbook")
    names = sheets_per_page(text)
    assert list(dict.fromkeys(names)) == list(run.tables), names
    assert pages <= 8, names


def test_board_summary_prints_in_at_most_4_pages(out):
    from typer.testing import CliRunner

    from allocator.cli import app

    pdf = out / "board.pdf"
    result = CliRunner().invoke(app, ["run", str(EXAMPLE), "--report", str(out / "r.xlsx"),
                                      "--records", str(out / "models"), "--summary", str(pdf)])
    assert result.exit_code == 0, result.output
    text = _pdf_text(pdf)
    pages = _pdf_pages(pdf, text)
    assert 1 <= pages <= 4
    whole = "".join(text)
    assert_readable(text, "board summary")
    for words in ("budget", "allocated", "unspent", "trainees", "programs funded",
                  "outcome value", "What limits the outcome", "Programs not funded, and why"):
        assert words in whole, words
    if shutil.which("pdftoppm"):
        RENDER.mkdir(parents=True, exist_ok=True)
        subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(RENDER / "board")],
                       check=True, timeout=120)
