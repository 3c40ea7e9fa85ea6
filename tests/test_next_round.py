"""The next round's workbook: runnable as it is, with every change listed and worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from allocator import api
from allocator.cli import app
from allocator.template import write_round_workbook
from allocator.validate import load_round
from tests.rounds import SETTLE_RESULTS, SETTLE_ROUND

runner = CliRunner()


@pytest.fixture
def decided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    book = write_round_workbook(tmp_path / "s1.xlsx", SETTLE_ROUND)
    return api.run(book, report=tmp_path / "r.xlsx", records=tmp_path / "models").record.folder


def _changes(path: Path) -> dict[tuple[str, str, str], tuple]:
    ws = load_workbook(path)["Changes"]
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == ["sheet", "key", "column", "old_value", "new_value", "why"]
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows[1:]}


def test_next_round_runs_and_lists_the_credibility_weighted_outcomes(decided: Path,
                                                                     tmp_path: Path):
    results = write_round_workbook(tmp_path / "res.xlsx", SETTLE_RESULTS)
    out = tmp_path / "next.xlsx"
    result = runner.invoke(app, ["next-round", str(decided), "--results", str(results),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    changes = _changes(out)
    # P2: expected employment 0.6, measured 0.45 over the 31 trainees who completed, k = 30:
    # (30 x 0.6 + 31 x 0.45) / (30 + 31) = (18 + 13.95) / 61 = 0.523770...
    old, new, why = changes[("Programs", "P2", "employment_rate")]
    assert old == 0.6 and new == pytest.approx(31.95 / 61, abs=1e-12)
    assert "credibility" in why
    # P1: trainees blank -> the 100.01 funded trainees (10,001 / 100) count as measured:
    # (30 x 0.7 + 100.01 x 0.6) / 130.01
    assert changes[("Programs", "P1", "employment_rate")][1] == \
        pytest.approx((21 + 60.006) / 130.01, abs=1e-12)
    # JIF carries over: its 10,001 of 2026 plus the 5,250 withheld at settlement (4,000 + 250
    # + 1,000), nothing unspent; PUB does not carry over, so its 1,513 withheld is not added.
    assert changes[("Budgets", "JIF/2028", "amount")][:2] == (10001, 15251)
    assert ("Budgets", "PUB/2028", "amount") not in changes
    assert changes[("Round", "periods", "value")][:2] == ("2026, 2027", "2028, 2029")
    # P1 is a pilot whose score 0.875 < 1: not ready to scale up
    assert changes[("Programs", "P1", "ready_to_scale_up")][1] == "no"
    # No standard error in the round: one is offered from the credibility weight, rates as
    # Bernoulli: sqrt(p (1 - p)) / sqrt(k + n) with p the new estimate, k = 30, n = 31.
    p2 = 31.95 / 61
    old_se, new_se, why = changes[("Programs", "P2", "employment_rate_se")]
    assert old_se is None and new_se == pytest.approx((p2 * (1 - p2)) ** 0.5 / 61 ** 0.5, rel=1e-12)
    assert "robust_gamma" in why

    rnd = load_round(out).round
    assert rnd.periods == ("2028", "2029")
    assert rnd.budget("JIF", "2028") == 15251 and rnd.budget("PUB", "2028") == 10000
    assert rnd.program("P3").start_period == "2029"
    assert rnd.program("P2").outcomes["employment_rate"] == pytest.approx(31.95 / 61, abs=1e-12)
    assert rnd.program("P2").outcome_se["employment_rate"] == pytest.approx(new_se, rel=1e-12)
    assert rnd.settings.robust_gamma == 0  # offered, not used: the allocation is the nominal one
    perf = {(r.program_id, r.metric): (r.target, r.achieved) for r in rnd.performance}
    assert perf[("P2", "employment_rate")] == (0.5, 0.45)
    assert [t.basis.value for t in rnd.tranches if t.fund_id == "PUB"] == ["fixed", "results"]

    run = runner.invoke(app, ["run", str(out), "--report", str(tmp_path / "n.xlsx"),
                              "--records", str(tmp_path / "models")])
    assert run.exit_code == 0, run.output


def test_a_pilot_that_met_its_targets_is_ready_to_scale_up(decided: Path, tmp_path: Path):
    data = json.loads(json.dumps(SETTLE_RESULTS))
    data["Results"][0]["achieved"] = 0.85  # P1 now above both targets
    results = write_round_workbook(tmp_path / "res.xlsx", data)
    nxt = api.next_round(decided, [results], out=tmp_path / "next.xlsx")
    ch = nxt.changes.set_index(["sheet", "key", "column"])
    assert ch.loc[("Programs", "P1", "ready_to_scale_up"), "new_value"] == "yes"
    rnd = load_round(nxt.path).round
    assert rnd.program("P1").stage.value == "pilot"
    assert rnd.program("P1").attributes["ready_to_scale_up"] == "yes"
    assert rnd.met_targets("P1")


def test_next_round_without_results_carries_unspent_money_only(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    data = json.loads(json.dumps(SETTLE_ROUND))
    data["Budgets"][1]["amount"] = 7000  # P3 can take 5,000 of JIF's 7,000 in 2027
    record = api.run(write_round_workbook(tmp_path / "s.xlsx", data), report=tmp_path / "r.xlsx",
                     records=tmp_path / "models").record.folder
    nxt = api.next_round(record, [], out=tmp_path / "next.xlsx")
    rnd = load_round(nxt.path).round
    assert rnd.budget("JIF", "2028") == 10001 + 2000
    assert rnd.budget("JIF", "2029") == 7000


def test_invalid_results_write_no_next_round(decided: Path, tmp_path: Path):
    bad = write_round_workbook(tmp_path / "bad.xlsx", {"Results": [
        {"program_id": "P9", "period": 2026, "metric": "employment_rate", "target": 1,
         "achieved": 1}]})
    out = tmp_path / "next.xlsx"
    result = runner.invoke(app, ["next-round", str(decided), "--results", str(bad),
                                 "--out", str(out)])
    assert result.exit_code == 1
    assert "Results!A2 program_id" in result.output
    assert not out.exists()
