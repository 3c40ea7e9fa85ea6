"""Ids that become file names never leave their folder; nothing we write is a live formula;
`check` and `run` give the same verdict on every hostile workbook.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from allocator.cli import app
from tests.hostile.corpus import BASE, Case, base, cases
from tests.hostile.test_corpus import expected_ref

CASES = {c.name: c for c in cases()}
REFUSED = [c for c in CASES.values() if not c.accepted]
NAME_CASES = [c for c in REFUSED if c.name.startswith("round_id_")]
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("names")
    out = {}
    for case in CASES.values():
        if case.slow:
            continue
        out[case.name] = folder / f"{case.name}.xlsx"
        case.build(out[case.name])
    return out


@pytest.mark.parametrize("case", [c for c in REFUSED if not c.slow], ids=lambda c: c.name)
def test_check_gives_the_verdict_run_gives(case: Case, corpus: dict[str, Path]) -> None:
    """`allocator check` refuses every workbook `run` refuses, naming the same cell."""
    result = runner.invoke(app, ["check", str(corpus[case.name])])
    assert result.exit_code == 1, result.output
    assert str(expected_ref(case, corpus[case.name])) in result.stderr
    assert case.says.lower() in result.stderr.lower()
    assert "Traceback" not in result.output


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", NAME_CASES, ids=lambda c: c.name)
def test_round_id_writes_nothing_anywhere(case: Case, corpus: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With the default report and records folders: exit 1, and not one file appears."""
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    result = runner.invoke(app, ["run", str(corpus[case.name])])
    assert result.exit_code == 1, result.output
    assert str(expected_ref(case, corpus[case.name])) in result.stderr
    assert tree(tmp_path) == before


def test_write_time_guard_refuses_a_path_outside(tmp_path: Path) -> None:
    """Defence in depth: a round built in code (never validated) cannot write outside."""
    from allocator.api import solve
    from allocator.paths import UnsafePathError
    from allocator.record import write_record
    from allocator.round import Round
    from allocator.validate import load_round

    base()(tmp_path / "r.xlsx")
    rnd = load_round(tmp_path / "r.xlsx").round
    data = json.loads(rnd.canonical_json())
    data["settings"]["round_id"] = ".."
    bad = Round.model_validate(data)
    solution = solve(bad)
    with pytest.raises(UnsafePathError, match="would name the folder itself or its parent"):
        write_record(solution, tmp_path / "records", None)
    assert not (tmp_path / "records").exists() or not any((tmp_path / "records").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) in (["r.xlsx"], ["r.xlsx", "records"])


def test_symlinked_round_folder_is_refused(tmp_path: Path) -> None:
    """A round folder that is a link to elsewhere resolves outside the records folder."""
    from allocator.paths import UnsafePathError, inside

    (tmp_path / "records").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "records" / "T1")
    with pytest.raises(UnsafePathError, match="outside"):
        inside(tmp_path / "records", "T1")


# --- no live formula --------------------------------------------------------------------------
def formula_cells(path: Path) -> list[str]:
    """Every cell openpyxl reads as a formula or an error value, in every sheet."""
    wb = openpyxl.load_workbook(path)
    return [f"{ws.title}!{c.coordinate}" for ws in wb for row in ws.iter_rows() for c in row
            if c.data_type in ("f", "e")]


def test_free_text_like_a_formula_is_written_as_text(corpus: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "r.xlsx"
    result = runner.invoke(app, ["run", str(corpus["program_name_formula"]), "--report", str(report),
                                 "--records", str(tmp_path / "rec"), "-q"])
    assert result.exit_code == 0, result.output
    assert formula_cells(report) == []
    wb = openpyxl.load_workbook(report)
    texts = [c.value for ws in wb for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    assert '=HYPERLINK("http://x","click")' in texts
    for path in (tmp_path / "rec").rglob("*.csv"):
        for row in csv.reader(io.StringIO(path.read_text())):
            assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row), row


def test_comparison_and_diagnosis_writers_type_text(tmp_path: Path) -> None:
    """excel.write_frame (variant names become headers) and the diagnosis workbook."""
    from allocator.excel import write_frame as write_table
    from allocator.safetext import append_text_row

    wb = openpyxl.Workbook()
    df = pd.DataFrame({"program": ["=1+1", "@SUM(A1)", "-2", "#N/A"], "=HYPERLINK(\"x\")": [1, 2, 3, 4]})
    write_table(wb, "T", df)
    ws = wb.create_sheet("S")
    append_text_row(ws, ["+cmd|' /C calc'!A0", None, 3])
    wb.save(tmp_path / "t.xlsx")
    assert formula_cells(tmp_path / "t.xlsx") == []
    back = openpyxl.load_workbook(tmp_path / "t.xlsx")
    assert [c.value for c in back["T"]["A"]][1:] == ["=1+1", "@SUM(A1)", "-2", "#N/A"]
    assert back["T"]["B1"].value == '=HYPERLINK("x")'


def test_allocation_csv_quotes_formula_like_ids_of_a_round_built_in_code(tmp_path: Path) -> None:
    """Validated rounds cannot hold such ids; a round built in code gets a leading quote, and
    verify reads it back as the id."""
    from allocator.api import solve
    from allocator.record import Verification, _load_allocation, allocation_csv
    from allocator.round import Round
    from allocator.validate import load_round

    base()(tmp_path / "r.xlsx")
    text = load_round(tmp_path / "r.xlsx").round.canonical_json().replace('"P1"', '"=P1"')
    solution = solve(Round.model_validate_json(text))
    out = allocation_csv(solution)
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[1][:4] == ["'=P1", "A1", "JIF", "2026"]
    (tmp_path / "allocation.csv").write_text(out)
    df = _load_allocation(tmp_path, Verification(tmp_path))
    assert df is not None and "=P1" in set(df["program_id"])


def test_base_round_is_untouched() -> None:
    assert BASE["Round"]["round_id"] == "T1"


def test_hidden_parts_read_are_said_by_check_and_run(corpus: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(corpus["hidden_row_read"])])
    assert result.exit_code == 0, result.output
    assert "note: Programs!row 3: the row is hidden in Excel; the engine read its values" in result.output
    result = runner.invoke(app, ["run", str(corpus["very_hidden_sheet_read"]), "--report",
                                 str(tmp_path / "r.xlsx"), "--records", str(tmp_path / "rec")])
    assert result.exit_code == 0, result.output
    assert "note: Rules: the sheet is very hidden" in result.output
    wb = openpyxl.load_workbook(tmp_path / "r.xlsx", read_only=True)
    text = " ".join(str(v) for row in wb["Notes"].iter_rows(values_only=True) for v in row if v)
    assert "Rules: the sheet is very hidden" in text


def test_signing_key_from_a_bad_environment_variable_writes_nothing(tmp_path: Path) -> None:
    def with_variant(sheets: dict) -> None:  # compare needs a variant to compare
        sheets["Variants"] = [{"variant": "time", "overrides": "time_limit_s = 30"}]

    base(with_variant)(tmp_path / "round.xlsx")
    result = runner.invoke(app, ["compare", str(tmp_path / "round.xlsx"), "--report",
                                 str(tmp_path / "c.xlsx"), "--records", str(tmp_path / "rec"),
                                 "--workers", "1", "-q"],
                           env={"ALLOCATOR_SIGNING_KEY": str(tmp_path / "missing.key")})
    assert result.exit_code == 2, result.output
    assert "signing key" in result.stderr and "cannot read it" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round.xlsx"]
