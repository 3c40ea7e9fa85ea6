"""Decision records: written whole or not at all, verified on re-run, tampering named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.engine import solve_round
from allocator.record import sha256_file, verify_record, write_record
from allocator.validate import load_round
from tests.rounds import sheets, write


@pytest.fixture
def record(tmp_path) -> Path:
    wb = write(tmp_path / "t1.xlsx")
    sol = solve_round(load_round(wb).round)
    return write_record(sol, tmp_path / "models", wb).folder


def test_record_holds_every_part(record):
    names = {p.name for p in record.iterdir()}
    assert {"round.json", "workbook.xlsx", "settings.json", "versions.json", "allocation.csv",
            "objectives.json", "manifest.json", "stage1_outcome.mps", "stage3_tiebreak.mps"} <= names
    manifest = json.loads((record / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert sha256_file(record / name) == digest
    assert record.parent.name == "T1" and record.name == manifest["run_id"]


def test_untouched_record_verifies(record):
    result = verify_record(record)
    assert result.verified, result.problems
    out = CliRunner().invoke(app, ["verify", str(record)])
    assert out.exit_code == 0 and f"VERIFIED {record}" in out.stdout


def test_time_limited_record_verifies_and_says_the_rerun_was_stopped(tmp_path):
    data = sheets(Rules=None)
    data["Round"]["time_limit_s"] = 1e-9  # stops the MILP before any allocation, every time
    wb = write(tmp_path / "t1.xlsx", data)
    folder = write_record(solve_round(load_round(wb).round), tmp_path / "models", wb).folder
    result = verify_record(folder)
    assert result.verified, result.problems
    assert any(w.startswith("the re-run was stopped by its time limit (1e-09 s)")
               for w in result.warnings)


def _rewrite_manifest(record: Path, name: str) -> None:
    """What a careful forger does: update the manifest digest of the file they edited."""
    manifest = json.loads((record / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(record / name)
    (record / "manifest.json").write_text(json.dumps(manifest))


def test_tampered_amount_is_named(record):
    path = record / "allocation.csv"
    lines = path.read_text().splitlines()
    first = lines[1].rsplit(",", 1)
    lines[1] = f"{first[0]},{int(first[1]) + 5000}"
    path.write_text("\n".join(lines) + "\n")
    result = verify_record(record)
    assert not result.verified
    assert any(p.startswith("allocation.csv: its SHA-256 differs") for p in result.problems)
    key = "/".join(first[0].split(","))
    assert any(p.startswith(f"allocation {key}: recorded") for p in result.problems)
    out = CliRunner().invoke(app, ["verify", str(record)])
    assert out.exit_code == 5 and "NOT VERIFIED" in out.stdout


def test_tampered_budget_in_canonical_round_is_caught_even_with_manifest_updated(record):
    path = record / "round.json"
    data = json.loads(path.read_text())
    data["budgets"][0]["amount"] = "999999"
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
    _rewrite_manifest(record, "round.json")
    result = verify_record(record)
    assert not result.verified
    assert any("round.json: its canonical digest differs" in p for p in result.problems)
    assert any("workbook.xlsx: the round it holds differs from round.json" in p for p in result.problems)


def test_tampered_workbook_copy_is_caught(record, tmp_path):
    data = sheets()
    data["Budgets"][2]["amount"] = 31000
    write(record / "workbook.xlsx", data)
    result = verify_record(record)
    assert any(p.startswith("workbook.xlsx: its SHA-256 differs") for p in result.problems)
    assert any("workbook.xlsx: the round it holds differs" in p for p in result.problems)


def test_added_and_removed_files_are_named(record):
    (record / "extra.txt").write_text("x")
    (record / "objectives.json").unlink()
    problems = verify_record(record).problems
    assert "extra.txt: not listed in the manifest (added after the run)" in problems
    assert "objectives.json: listed in the manifest but missing" in problems


def test_failed_write_leaves_no_record(tmp_path):
    wb = write(tmp_path / "t1.xlsx")
    sol = solve_round(load_round(wb).round)

    def boom(*_args):
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_record(sol, tmp_path / "models", wb, after_write=boom)
    leftovers = list((tmp_path / "models").rglob("*"))
    assert [p for p in leftovers if p.is_file()] == []


def test_diff_names_changed_budget_and_moved_money(tmp_path):
    wb_a = write(tmp_path / "a.xlsx")
    data = sheets()
    data["Budgets"][2]["amount"] = 20000  # PUB 2026: 30,000 -> 20,000
    wb_b = write(tmp_path / "b.xlsx", data)
    rec_a = write_record(solve_round(load_round(wb_a).round), tmp_path / "m", wb_a).folder
    rec_b = write_record(solve_round(load_round(wb_b).round), tmp_path / "m", wb_b).folder
    out = CliRunner().invoke(app, ["diff", str(rec_a), str(rec_b)])
    assert out.exit_code == 0
    lines = out.stdout.splitlines()
    assert "budgets PUB/2026 amount: 30000 -> 20000" in lines
    assert "allocation by fund PUB: 30,000 -> 20,000 (-10,000)" in lines
