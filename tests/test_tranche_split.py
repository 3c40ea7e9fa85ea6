"""The tranche split of the contract (DESIGN.md 1.1): each tranche gets its share of a
program-fund-period's whole units rounded down, and the units left go to the earliest tranche.

Checked on the example round and its results workbook, where the rule differs from a
largest-remainder split, against arithmetic of the test's own; and a settlement record
written before engine 0.3.1 (largest remainder, no `tranche_remainder` in its manifest)
still verifies.
"""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator import api
from allocator.cli import app
from allocator.settle import (
    OLDER_TRANCHE_REMAINDER,
    load_decision,
    settle,
    settlement_csv,
)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The example round run and settled against the example results: (decision, settlement)."""
    folder = tmp_path_factory.mktemp("tranches")
    run = api.run(ROOT / "inputs" / "example_round.xlsx", report=folder / "r.xlsx",
                  records=folder / "models")
    done = api.settle(run.record.folder, ROOT / "inputs" / "example_results.xlsx",
                      report=folder / "s.xlsx")
    return run.record.folder, done.record.folder


def _by_hand(units: int, tranches: list[tuple[str, Fraction, int]]) -> dict[str, int]:
    """tranche -> units: floor(units x share); what is left to the smallest due, first listed."""
    parts = {name: math.floor(units * share) for name, share, _ in tranches}
    earliest = min(range(len(tranches)), key=lambda i: (tranches[i][2], i))
    parts[tranches[earliest][0]] += units - sum(parts.values())
    return parts


def _tranches(rnd, fund_id: str) -> list[tuple[str, Fraction, int]]:
    fund = rnd.fund(fund_id)
    rows = [t for t in rnd.tranches if t.fund_id == fund_id] or \
        [t for t in rnd.tranches if t.fund_id is None and t.fund_kind == fund.kind]
    return [(t.tranche, Fraction(str(t.share)), t.due) for t in rows] or [("single", Fraction(1), 0)]


def test_scheduled_amounts_follow_the_contract(settled: tuple[Path, Path]) -> None:
    decision_folder, _ = settled
    decision = load_decision(decision_folder)
    s = settle(decision, _results(decision))
    scheduled: dict[tuple[str, str, str], dict[str, int]] = {}
    for line in s.lines:
        scheduled.setdefault((line.program_id, line.fund_id, line.period), {})[line.tranche] = \
            line.scheduled
    for (p, f, t), got in scheduled.items():
        assert got == _by_hand(sum(got.values()), _tranches(decision.round, f)), (p, f, t)
    older = settle(decision, _results(decision), remainder=OLDER_TRANCHE_REMAINDER)
    # the example round tells the two rules apart
    assert [line.scheduled for line in older.lines] != [line.scheduled for line in s.lines]


def _results(decision):
    from allocator.results import load_results

    return load_results(ROOT / "inputs" / "example_results.xlsx", decision.round,
                        decision.funded())


def _rewrite_as_older(settlement: Path, *, drop_key: bool) -> None:
    """The settlement as engine 0.3.0 wrote it: largest-remainder lines, digests matching."""
    decision = load_decision(settlement.parent / json.loads(
        (settlement / "manifest.json").read_text())["settles"]["run_id"])
    text = settlement_csv(settle(decision, _results(decision), remainder=OLDER_TRANCHE_REMAINDER))
    (settlement / "settlement.csv").write_text(text, encoding="utf-8")
    path = settlement / "manifest.json"
    manifest = json.loads(path.read_text())
    if drop_key:
        del manifest["tranche_remainder"]
    manifest["files"]["settlement.csv"] = hashlib.sha256(text.encode()).hexdigest()
    manifest["output_digest"] = hashlib.sha256(text.encode()).hexdigest()
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize(("drop_key", "code"), [(True, 0), (False, 5)])
def test_an_older_settlement_record_verifies_by_its_own_rule(settled: tuple[Path, Path],
                                                            tmp_path: Path, drop_key: bool,
                                                            code: int) -> None:
    """Largest-remainder lines verify in a record without `tranche_remainder` (0.3.0 wrote
    those), and not in one that says its split gives the remainder to the earliest tranche."""
    import shutil

    decision, settlement = settled
    round_dir = tmp_path / "models" / decision.parent.name
    shutil.copytree(decision.parent, round_dir)
    older = round_dir / settlement.name
    _rewrite_as_older(older, drop_key=drop_key)
    result = runner.invoke(app, ["verify", str(older)])
    assert result.exit_code == code, result.output
