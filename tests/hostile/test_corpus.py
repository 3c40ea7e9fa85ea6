"""Every workbook of the hostile corpus ends in a clean refusal that names the place, or, where the
meaning is certain, in a valid round that lists what was normalised.

Run: pytest tests/hostile -q
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from allocator import workbook
from allocator.cli import app
from allocator.errors import CellRef, InputError
from allocator.validate import load_round
from tests.hostile.corpus import Case, cases, header_letter

CASES = cases()
REFUSED = [c for c in CASES if not c.accepted]
ACCEPTED = [c for c in CASES if c.accepted]
PREVIOUS = b"the previous report: a failed run must leave these bytes alone"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    out = {}
    for case in CASES:
        path = folder / f"{case.name}.xlsx"
        case.build(path)
        out[case.name] = path
    return out


def expected_ref(case: Case, path: Path) -> CellRef:
    """The CellRef a case names, with a header turned into its column letter in the file."""
    assert case.where is not None
    sheet, row, column = case.where
    if column is None or re.fullmatch(r"[A-Z]{1,3}", column):
        return CellRef(sheet, row, column)
    return CellRef(sheet, row, header_letter(path, sheet, column), column)


def matching(issues: list, ref: CellRef, says: str) -> list:
    return [
        i for i in issues
        if (i.where.sheet, i.where.row, i.where.column) == (ref.sheet, ref.row, ref.column)
        and (ref.header is None or i.where.header == ref.header)
        and says.lower() in i.message.lower()
    ]


def test_corpus_is_large_enough() -> None:
    assert len(REFUSED) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_reader_refuses_and_names_the_place(case: Case, corpus: dict[str, Path]) -> None:
    path = corpus[case.name]
    with pytest.raises(InputError) as info:
        load_round(path)
    ref = expected_ref(case, path)
    found = matching(info.value.issues, ref, case.says)
    assert found, f"expected {ref} '{case.says}' among:\n{info.value.render()}"


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_cli_exits_1_prints_place_writes_nothing(case: Case, corpus: dict[str, Path],
                                                  tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.xlsx"
    report.parent.mkdir()
    report.write_bytes(PREVIOUS)
    records = tmp_path / "records"
    result = CliRunner().invoke(app, ["run", str(corpus[case.name]), "--report", str(report),
                                      "--records", str(records)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    ref = expected_ref(case, corpus[case.name])
    assert str(ref) in result.stderr
    assert case.says.lower() in result.stderr.lower()
    assert "Traceback" not in result.output
    assert report.read_bytes() == PREVIOUS
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.xlsx"]
    assert not records.exists()


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.name)
def test_certain_meaning_is_accepted_and_reported(case: Case, corpus: dict[str, Path]) -> None:
    loaded = load_round(corpus[case.name])
    if case.where is not None:
        ref = expected_ref(case, corpus[case.name])
        notes = [n for n in loaded.notes
                 if (n.where.sheet, n.where.row, n.where.column) == (ref.sheet, ref.row, ref.column)
                 and case.says.lower() in str(n).lower()]
        assert notes, f"expected a note at {ref} '{case.says}', got {[str(n) for n in loaded.notes]}"
    if case.check:
        case.check(loaded)


def test_hidden_extra_and_reordered_sheets_change_nothing(corpus: dict[str, Path], tmp_path: Path) -> None:
    from tests.hostile.corpus import base

    plain = tmp_path / "plain.xlsx"
    base()(plain)
    odd = corpus["hidden_and_reordered_sheets"]
    names = openpyxl.load_workbook(odd, read_only=True).sheetnames
    assert names[0] == "Scratch" and names.index("Programs") < names.index("Round")  # as the case says
    assert load_round(odd).round == load_round(plain).round


def test_blank_rows_keep_excel_row_numbers(corpus: dict[str, Path]) -> None:
    """A blank row is skipped, not an error, and later rows keep their own Excel row number."""
    loaded = load_round(corpus["blank_row_in_table"])
    assert len(loaded.round.programs) == 3
    with pytest.raises(InputError) as info:
        load_round(corpus["blank_row_then_error"])
    assert [str(i.where) for i in info.value.issues] == ["Programs!F4"]


def test_ids_that_look_like_missing_values_stay_text(corpus: dict[str, Path]) -> None:
    rnd = load_round(corpus["ids_that_look_missing"]).round
    assert {p.program_id for p in rnd.programs} == {"NA", "None", "null"}
    assert all(isinstance(p.program_id, str) for p in rnd.programs)
    assert {r.region_id for r in rnd.regions} == {"TRUE", "nan"}


def test_normalisation_is_listed_in_the_report(corpus: dict[str, Path], tmp_path: Path) -> None:
    """What the reader changed (an invisible character in an id) is listed in the report's Notes."""
    report = tmp_path / "r.xlsx"
    result = CliRunner().invoke(app, ["run", str(corpus["invisible_in_id"]), "--report", str(report),
                                      "--records", str(tmp_path / "rec"), "--quiet"])
    assert result.exit_code == 0, result.output
    wb = openpyxl.load_workbook(report, read_only=True)
    text = " ".join(str(v) for row in wb["Notes"].iter_rows(values_only=True) for v in row if v)
    assert "Programs!A4" in text and "U+200B" in text


# --- bombs: fast, small, and in a real process ------------------------------------------------
def test_zip_bomb_is_refused_without_expanding(corpus: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused from the zip directory alone: no part of it is ever opened for reading."""
    import zipfile

    path = corpus["zip_bomb"]
    assert path.stat().st_size < 5 * 1024**2  # a small file that claims 2 GiB

    def no_expanding(self, name, *args, **kwargs):
        raise AssertionError(f"the part {name} was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_expanding)
    with pytest.raises(InputError, match="zip bomb"):
        load_round(path)


def _run_cli_measured(args: list[str], folder: Path) -> tuple[int, str, float]:
    """Run `allocator` in a fresh process; its exit code, stderr and peak RSS in MB (from wait4)."""
    with (folder / "stdout").open("wb") as out, (folder / "stderr").open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "allocator.cli", *args], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, (folder / "stderr").read_text(), usage.ru_maxrss / 1024


@pytest.mark.slow  # a fresh interpreter per case
@pytest.mark.parametrize("name", ["zip_bomb", "sparse_cell_bomb"])  # each costs ~2 s of imports
def test_bombs_in_a_real_process(name: str, corpus: dict[str, Path], tmp_path: Path) -> None:
    """The real command: exit 1, a message, no traceback, no output, small memory."""
    report = tmp_path / "r.xlsx"
    code, err, rss_mb = _run_cli_measured(
        ["run", str(corpus[name]), "--report", str(report), "--records", str(tmp_path / "rec")], tmp_path)
    assert code == 1, err
    assert "Traceback" not in err
    assert "(file)" in err or "!row" in err
    assert not report.exists() and not (tmp_path / "rec").exists()
    assert rss_mb < 300, f"peak RSS {rss_mb:.0f} MB"  # imports (pandas, Pyomo) take ~160 MB of it


def test_total_expanded_size_is_limited(corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The sum over parts is limited too, not only each part's ratio (limit lowered for the test)."""
    monkeypatch.setattr(workbook, "MAX_UNCOMPRESSED_BYTES", 10_000)
    with pytest.raises(InputError, match="would expand to more than"):
        load_round(corpus["blank_row_in_table"])


def test_row_limit_names_the_first_row_beyond(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real (dense) table longer than the limit is refused at the first row past it."""
    from tests.hostile.corpus import BASE, base

    monkeypatch.setattr(workbook, "MAX_ROWS_PER_SHEET", 40)

    def many(s: dict) -> None:
        s["Budgets"] = [{"fund_id": "JIF", "period": 2026, "amount": i} for i in range(60)]

    path = tmp_path / "long.xlsx"
    base(many)(path)
    with pytest.raises(InputError) as info:
        load_round(path)
    assert [str(i.where) for i in info.value.issues] == ["Budgets!row 41"]
    assert "limit is 40 rows" in info.value.render()
    assert BASE["Budgets"]  # the base round itself is untouched
