"""The `allocator` command: exit codes, messages, and what it writes (or does not)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from allocator.cli import app
from tests.rounds import BASE, sheets, write

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def test_run_writes_report_and_record_and_prints_summary(tmp_path):
    wb = write(tmp_path / "t1.xlsx")
    report, records = tmp_path / "out" / "r.xlsx", tmp_path / "models"
    result = _invoke("run", str(wb), "--report", str(report), "--records", str(records))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "round T1: optimal"
    assert lines[2].startswith("allocated EUR 130,000 of EUR 180,000 budget; 2 of 3 programs funded")
    assert f"report: {report}" in lines
    # phases with elapsed time go to standard error, so standard output stays the summary
    assert "finding the best outcome (" in result.stderr
    assert "rounding to whole units" in result.stderr
    assert report.is_file()
    folders = list((records / "T1").iterdir())
    assert len(folders) == 1 and (folders[0] / "manifest.json").is_file()


def test_run_quiet_prints_nothing(tmp_path):
    wb = write(tmp_path / "t1.xlsx")
    result = _invoke("run", str(wb), "--report", str(tmp_path / "r.xlsx"),
                     "--records", str(tmp_path / "m"), "--quiet")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""


def test_invalid_cell_is_named_and_nothing_is_written(tmp_path):
    data = sheets()
    data["Programs"][2]["cost_per_trainee"] = -5100  # third program: Excel row 4, column F
    wb = write(tmp_path / "bad.xlsx", data)
    report, records = tmp_path / "r.xlsx", tmp_path / "m"
    result = _invoke("run", str(wb), "--report", str(report), "--records", str(records))
    assert result.exit_code == 1
    assert "Programs!F4 cost_per_trainee: must be greater than 0, got -5100" in result.stderr
    assert "Traceback" not in result.output
    assert not report.exists() and not records.exists()


def test_check_reports_every_problem_at_once(tmp_path):
    data = sheets()
    data["Programs"][0]["regions"] = "Z9"
    data["Budgets"][0]["fund_id"] = "NOPE"
    result = _invoke("check", str(write(tmp_path / "bad.xlsx", data)))
    assert result.exit_code == 1
    assert "Budgets!A2 fund_id: unknown fund 'NOPE'" in result.stderr
    assert "Programs!E2 regions: unknown region 'Z9'" in result.stderr
    assert result.stderr.startswith("2 problems in the round workbook:")


def test_check_valid_round(tmp_path):
    result = _invoke("check", str(write(tmp_path / "t1.xlsx")))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].endswith(
        "valid round T1 — 2 regions, 2 funds, 3 programs, 3 rules, 2 periods")


def test_infeasible_round_exits_3_and_writes_nothing(tmp_path):
    data = sheets(Rules=[*BASE["Rules"], {"rule_id": "R-BIG", "measure": "amount", "select": "region=B1",
                                          "op": ">=", "value": 10_000_000}])
    wb = write(tmp_path / "inf.xlsx", data)
    report = tmp_path / "r.xlsx"
    report.write_bytes(b"previous report")
    result = _invoke("run", str(wb), "--report", str(report), "--records", str(tmp_path / "m"))
    assert result.exit_code == 3
    assert "infeasible" in result.stderr
    assert report.read_bytes() == b"previous report"
    assert not (tmp_path / "m").exists()


def test_time_limited_run_says_not_proven_optimal_and_why(tmp_path):
    data = sheets(Rules=None)
    data["Round"]["time_limit_s"] = 1e-9  # stops the MILP (P2 is all-or-nothing) at once
    report = tmp_path / "r.xlsx"
    result = _invoke("run", str(write(tmp_path / "t1.xlsx", data)), "--report", str(report),
                     "--records", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "round T1: time_limit_feasible — not proven optimal"
    assert "warning: the time limit stopped the outcome MILP before HiGHS found any allocation; " \
           "this one has every all-or-nothing program switched off and the rest optimised " \
           "(raise time_limit_s on the Round sheet for a better one)" in lines
    import openpyxl

    items = {row[0]: row[1] for row in openpyxl.load_workbook(report)["Summary"].iter_rows(
        min_row=2, values_only=True)}
    assert items["status"] == "not proven optimal (time limit)"


def test_time_limited_run_without_an_allocation_exits_4_and_writes_nothing(tmp_path):
    data = sheets()  # its rules need P2's money, so switching P2 off is no way out
    data["Round"]["time_limit_s"] = 1e-9
    report = tmp_path / "r.xlsx"
    result = _invoke("run", str(write(tmp_path / "t1.xlsx", data)), "--report", str(report),
                     "--records", str(tmp_path / "m"))
    assert result.exit_code == 4
    assert "the solver stopped at the time limit before finding an allocation" in result.stderr
    assert "No report or record was written." in result.stderr
    assert not report.exists() and not (tmp_path / "m").exists()


def test_equity_run_reports_the_price_of_fairness(tmp_path):
    data = sheets(Round={"round_id": "T1", "periods": "2026, 2027",
                         "equity_objective": "maxmin_per_capita", "outcome_tolerance": 0.2})
    report = tmp_path / "r.xlsx"
    result = _invoke("run", str(write(tmp_path / "eq.xlsx", data)), "--report", str(report),
                     "--records", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2].startswith("equity maxmin_per_capita: price of fairness ")
    import openpyxl

    items = {row[0]: row[1] for row in openpyxl.load_workbook(report)["Summary"].iter_rows(
        min_row=2, values_only=True)}
    assert items["equity objective"] == "maxmin_per_capita"
    assert items["price of fairness: outcome value given up"] >= 0


def test_template_round_trip(tmp_path):
    path = tmp_path / "template.xlsx"
    result = _invoke("template", str(path))
    assert result.exit_code == 0
    import openpyxl

    wb = openpyxl.load_workbook(path)
    assert {"Instructions", "Round", "Regions", "Funds", "Budgets", "Programs", "Objective",
            "Rules"} <= set(wb.sheetnames)
    assert [c.value for c in wb["Programs"][1]][:6] == [
        "program_id", "name", "sector", "stage", "regions", "cost_per_trainee"]
    assert wb["Funds"].data_validations.dataValidation, "kind needs a drop-down list"


def test_missing_file_is_input_error(tmp_path):
    result = _invoke("run", str(tmp_path / "nope.xlsx"))
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


@pytest.mark.slow  # a fresh interpreter
def test_console_script_entry_point(tmp_path):
    wb = write(tmp_path / "t1.xlsx")
    proc = subprocess.run([sys.executable, "-m", "allocator.cli", "check", str(wb)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "valid round T1" in proc.stdout
    assert "Running HiGHS" not in proc.stdout


def test_a_file_where_the_records_folder_must_be_is_refused_before_the_solve(tmp_path):
    wb = write(tmp_path / "t1.xlsx")
    blocker = tmp_path / "models"
    blocker.write_text("not a folder")
    report = tmp_path / "r.xlsx"
    result = _invoke("run", str(wb), "--report", str(report), "--records", str(blocker / "sub"))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == \
        f"a file is where a folder must be: {blocker}; nothing was written."
    assert "finding the best outcome" not in result.stderr  # refused before any solve
    assert not report.exists() and blocker.read_text() == "not a folder"


def test_a_folder_where_the_report_must_be_is_refused(tmp_path):
    folder = tmp_path / "r.xlsx"
    folder.mkdir()
    result = _invoke("run", str(write(tmp_path / "t1.xlsx")), "--report", str(folder),
                     "--records", str(tmp_path / "m"))
    assert result.exit_code == 2
    assert "a folder is where the report must be" in result.stderr
    assert not (tmp_path / "m").exists() and list(folder.iterdir()) == []


def test_a_report_over_the_round_workbook_is_refused_before_the_solve(tmp_path):
    wb = write(tmp_path / "t1.xlsx")
    before = wb.read_bytes()
    same = tmp_path / "." / "t1.xlsx"
    result = _invoke("run", str(wb), "--report", str(same), "--records", str(tmp_path / "m"))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"the report would overwrite {wb}, which this run reads: {same}; nothing was written.")
    assert "finding the best outcome" not in result.stderr
    assert wb.read_bytes() == before and not (tmp_path / "m").exists()


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_an_unusable_summary_place_is_refused_before_the_solve(tmp_path, where):
    wb = write(tmp_path / "t1.xlsx")
    if where == "under_a_file":
        (tmp_path / "afile").write_text("x")
        summary, message = tmp_path / "afile" / "s.pdf", "a file is where a folder must be"
    else:
        summary, message = tmp_path / "s.pdf", "a folder is where the board summary must be"
        summary.mkdir()
    result = _invoke("run", str(wb), "--report", str(tmp_path / "r.xlsx"),
                     "--records", str(tmp_path / "m"), "--summary", str(summary))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.endswith("nothing was written.\n")
    assert not (tmp_path / "r.xlsx").exists() and not (tmp_path / "m").exists()


def test_a_summary_that_fails_after_the_run_says_what_was_written(tmp_path, monkeypatch):
    import allocator.summary

    def disk_full(board, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(allocator.summary, "write_summary", disk_full)
    wb = write(tmp_path / "t1.xlsx")
    result = _invoke("run", str(wb), "--report", str(tmp_path / "r.xlsx"),
                     "--records", str(tmp_path / "m"), "--summary", str(tmp_path / "s.pdf"))
    assert result.exit_code == 2
    assert "nothing was written" not in result.stderr
    assert f"the report ({tmp_path / 'r.xlsx'}) and the record (" in result.stderr
    assert "are written, the board summary is not." in result.stderr
    assert (tmp_path / "r.xlsx").is_file()


def test_a_settlement_report_over_the_results_is_refused(tmp_path):
    from allocator import api
    from allocator.template import write_round_workbook
    from tests.rounds import SETTLE_RESULTS, SETTLE_ROUND

    book = write_round_workbook(tmp_path / "s1.xlsx", SETTLE_ROUND)
    run = api.run(book, report=tmp_path / "r.xlsx", records=tmp_path / "models")
    results = write_round_workbook(tmp_path / "results.xlsx", SETTLE_RESULTS)
    before = results.read_bytes()
    result = _invoke("settle", str(run.record.folder), str(results), "--report", str(results))
    assert result.exit_code == 2
    assert "the settlement report would overwrite" in result.stderr
    assert results.read_bytes() == before
    assert [p.name for p in run.record.folder.parent.iterdir()] == [run.record.folder.name]
