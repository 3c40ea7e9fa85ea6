"""The blank template (`allocator template`): safe to run, documents every column, and its
Variants examples run; `compare` without variants says so (issue 20, item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import openpyxl
from typer.testing import CliRunner

from allocator.cli import app
from allocator.template import HEADERS, ROUND_KEYS, SE, write_template
from allocator.validate import load_round
from allocator.variants import apply_variant, parse_override, variants_from_table
from allocator.workbook import read_tables
from tests.rounds import write

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "inputs" / "example_round.xlsx"


def _invoke(*args: str):
    return runner.invoke(app, list(args), prog_name="allocator")


def test_template_refuses_to_overwrite_a_file(tmp_path):
    path = tmp_path / "round.xlsx"
    path.write_bytes(b"a filled round")
    result = _invoke("template", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"{path} exists; nothing was written (give --force to replace it)\n"
    assert result.stdout == ""
    assert path.read_bytes() == b"a filled round"


def test_template_force_replaces_the_file(tmp_path):
    path = tmp_path / "round.xlsx"
    path.write_bytes(b"a filled round")
    result = _invoke("template", str(path), "--force")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {path}\n"
    assert "Instructions" in openpyxl.load_workbook(path).sheetnames


def test_template_into_a_folder_says_so(tmp_path):
    result = _invoke("template", str(tmp_path), "--force")
    assert result.exit_code == 1
    assert result.stderr == (f"{tmp_path} is a folder; give the path of the workbook to write, "
                             f"e.g. {tmp_path / 'round.xlsx'}\n")


def _instructions(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(sheet, column) -> (required, what to type), from the Instructions table."""
    rows = list(openpyxl.load_workbook(path)["Instructions"].iter_rows(values_only=True))
    head = rows.index(("sheet", "column", "required", "what to type"))
    out = {}
    for sheet, column, required, text in rows[head + 1:]:
        if sheet is None or column is None:
            break
        out[(sheet, column)] = (required or "", text)
    return out


def test_instructions_document_every_column_of_every_sheet(tmp_path):
    path = write_template(tmp_path / "t.xlsx")
    docs = _instructions(path)
    wb = openpyxl.load_workbook(path)
    for sheet, headers in HEADERS.items():
        assert [c.value for c in wb[sheet][1]] == headers
        if sheet == "Round":
            continue
        for header in headers:
            key = (sheet, SE) if header.endswith("_se") else (sheet, header)
            assert key in docs, f"{sheet}.{header} is not documented"
    for key in ROUND_KEYS:
        assert ("Round", key) in docs, f"Round key {key} is not documented"
    assert set(docs) <= {(s, h) for s, hs in HEADERS.items() for h in hs} | {
        ("Round", k) for k in ROUND_KEYS} | {("Round", "key / value"), ("Programs", SE)}
    # contract 1.1: the columns and settings other features read
    assert "soft" in docs[("Rules", "penalty")][1]
    assert "outside the round" in docs[("Programs", "external_match")][1]
    assert "employment_rate_se" in docs[("Programs", SE)][1]
    assert docs[("Tranches", "basis")][1].startswith("fixed (default)")
    assert "results score below it pays nothing" in docs[("Tranches", "floor")][1]
    for key in ("prior_weight", "robust_gamma", "robust_level"):
        assert "default" in docs[("Round", key)][1]
    assert docs[("Programs", "cost_per_trainee")][0] == "yes"
    assert docs[("Programs", "name")][0] == ""


def test_variants_documentation_matches_the_parser(tmp_path):
    """Every `e.g.` example of the override syntax is accepted by allocator.variants."""
    path = write_template(tmp_path / "t.xlsx")
    rows = [r[0] for r in openpyxl.load_workbook(path)["Instructions"].iter_rows(values_only=True)]
    syntax = rows[rows.index("Variants (overrides column)") + 1:]
    examples = [e for line in syntax for e in re.findall(r"(?:e\.g\.|or) ([^,()]+?= [^ ,()]+)", line)]
    assert len(examples) >= 6, examples
    kinds = {parse_override(e).kind for e in examples}
    assert kinds == {"budget", "rule", "weight", "setting", "program"}


def test_variants_examples_of_the_template_run_on_a_real_round(tmp_path):
    path = write_template(tmp_path / "t.xlsx")
    table = read_tables(path, {"variants"})[0]["variants"]
    variants, issues = variants_from_table(table)
    assert issues == [] and len(variants) == 3
    rnd = load_round(EXAMPLE).round
    changed = [apply_variant(rnd, v) for v in variants]
    assert changed[0].settings.equity_objective.value == "maxmin_per_capita"
    assert changed[1].programs[0].cost_per_trainee == rnd.programs[0].cost_per_trainee * 1.1
    assert changed[2].programs[0].max_trainees == rnd.programs[0].max_trainees * 1.2


def test_a_filled_in_template_is_a_valid_round(tmp_path):
    """The template's sheets and headers are what the reader expects: filling the required
    cells (and nothing else) gives a valid round."""
    path = write_template(tmp_path / "t.xlsx")
    wb = openpyxl.load_workbook(path)
    fill = {
        "Regions": {"region_id": "R1", "jurisdiction": "A", "population": 1000},
        "Funds": {"fund_id": "F", "kind": "joint", "owner": "joint"},
        "Budgets": {"fund_id": "F", "period": "all", "amount": 1000},
        "Programs": {"program_id": "P", "regions": "R1", "cost_per_trainee": 100,
                     "max_trainees": 5, "employment_rate": 0.5},
        "Objective": {"metric": "employment_rate", "weight": 1},
    }
    for sheet, values in fill.items():
        ws = wb[sheet]
        ws.append([values.get(h) for h in HEADERS[sheet]])
    wb["Round"]["B2"] = "filled"  # round_id
    wb.save(tmp_path / "filled.xlsx")
    rnd = load_round(tmp_path / "filled.xlsx").round
    assert rnd.settings.round_id == "filled" and [p.program_id for p in rnd.programs] == ["P"]


def test_compare_without_a_variants_sheet_says_so(tmp_path):
    report = tmp_path / "c.xlsx"
    result = _invoke("compare", str(write(tmp_path / "t1.xlsx")), "--report", str(report),
                     "--no-records")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "1 problem in the round workbook:",
        "  Variants: no Variants sheet: nothing to compare; add rows (variant, overrides) as in "
        "the template (allocator template PATH)",
        "Nothing was written.",
    ]
    assert not report.exists()


def test_compare_with_an_empty_variants_sheet_says_so(tmp_path):
    path = write(tmp_path / "t1.xlsx")
    wb = openpyxl.load_workbook(path)
    wb.create_sheet("Variants").append(["variant", "overrides"])
    wb.save(path)
    report = tmp_path / "c.xlsx"
    result = _invoke("compare", str(path), "--report", str(report), "--no-records")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1] == (
        "  Variants: the Variants sheet has no rows: nothing to compare; add rows (variant, "
        "overrides) as in the template (allocator template PATH)")
    assert not report.exists()
