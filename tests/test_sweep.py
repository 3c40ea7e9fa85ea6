"""Sweeps: budget levels and outcome samples against hand-solved numbers, and a Dask LocalCluster
giving exactly what the local process pool gives."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.sweep import (
    BudgetRange,
    SweepSpecError,
    parse_budget_range,
    run_sweep,
    sweep_tables,
    write_sweep,
)
from allocator.validate import load_round
from tests import rounds

# One fund, one period, two programs of 1,000 a trainee and 10 places each: P1 is worth 1 a
# trainee, P2 0.5. With budget B the optimum funds P1 first: value = min(B, 10000)/1000
# + min(max(B - 10000, 0), 10000)/1000 * 0.5.
TINY = {
    "Round": {"round_id": "TINY", "periods": "2026"},
    "Regions": [{"region_id": "R1", "jurisdiction": "A", "population": 100}],
    "Funds": [{"fund_id": "F", "kind": "public", "owner": "A"}],
    "Budgets": [{"fund_id": "F", "period": 2026, "amount": 15000}],
    "Programs": [
        {"program_id": "P1", "regions": "R1", "cost_per_trainee": 1000, "max_trainees": 10,
         "employment_rate": 1.0},
        {"program_id": "P2", "regions": "R1", "cost_per_trainee": 1000, "max_trainees": 10,
         "employment_rate": 0.5},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}],
}


def hand_value(budget: float) -> float:
    return min(budget, 10000) / 1000 + min(max(budget - 10000, 0), 10000) / 1000 * 0.5


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return rounds.write(tmp_path / "tiny.xlsx", TINY)


def close_race(tmp_path: Path) -> Path:
    """All-or-nothing P1 (0.50) and P2 (0.48), money for one: the draws decide who is funded."""
    data = {**TINY, "Budgets": [{"fund_id": "F", "period": 2026, "amount": 10000}],
            "Programs": [{**p, "min_trainees": 10, "employment_rate": e}
                         for p, e in zip(TINY["Programs"], (0.5, 0.48), strict=True)]}
    return rounds.write(tmp_path / "race.xlsx", data)


def test_budget_levels_match_hand_solution(tiny: Path) -> None:
    rnd = load_round(tiny).round
    br = parse_budget_range("F:2026:0:30000:4", rnd)
    result = run_sweep(rnd, budget_range=br, workers=2)
    tables = sweep_tables(result)
    levels = tables["Levels"]
    assert levels["budget"].tolist() == [0, 10000, 20000, 30000]
    for budget, value in zip(levels["budget"], levels["outcome_value"], strict=True):
        assert value == pytest.approx(hand_value(budget), abs=1e-9)
    robust = tables["Robustness"].set_index("program_id")
    # P1 is funded from the 10,000 level on, P2 only from 20,000 (columns are levels)
    assert robust.loc["P1"].iloc[1:].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert robust.loc["P2"].iloc[1:].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_robustness_follows_the_draws(tmp_path: Path) -> None:
    """Share of samples in which P1 is funded = share of draws where its value beats P2's."""
    rnd = load_round(close_race(tmp_path)).round
    spread, samples, seed = 0.1, 12, 7
    result = run_sweep(rnd, spread=spread, samples=samples, seed=seed, workers=2)
    # the documented draws: U(1-spread, 1+spread) per sample, program (id order), weighted metric
    draws = np.random.default_rng(seed).uniform(1 - spread, 1 + spread, size=(samples, 2, 1))
    p1_wins = (0.5 * draws[:, 0, 0] > 0.48 * draws[:, 1, 0])
    assert 0 < p1_wins.sum() < samples  # the race is a real one with this seed
    robust = sweep_tables(result)["Robustness"].set_index("program_id")
    assert robust.iloc[:, 1].to_dict() == pytest.approx({"P1": p1_wins.mean(), "P2": 1 - p1_wins.mean()})
    values = sweep_tables(result)["Samples"]["outcome_value"].to_numpy()
    expected = np.where(p1_wins, 0.5 * draws[:, 0, 0], 0.48 * draws[:, 1, 0]) * 10
    np.testing.assert_allclose(values, expected, rtol=1e-9)


def test_same_seed_same_result_other_seed_other(tmp_path: Path) -> None:
    rnd = load_round(close_race(tmp_path)).round
    a = sweep_tables(run_sweep(rnd, spread=0.2, samples=4, seed=1, workers=1))["Samples"]
    b = sweep_tables(run_sweep(rnd, spread=0.2, samples=4, seed=1, workers=2))["Samples"]
    c = sweep_tables(run_sweep(rnd, spread=0.2, samples=4, seed=2, workers=1))["Samples"]
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["outcome_value"], c["outcome_value"])


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as c:
        yield c


@pytest.mark.slow  # starts a Dask cluster
def test_cluster_equals_local(tmp_path: Path, cluster) -> None:
    rnd = load_round(close_race(tmp_path)).round
    br = parse_budget_range("F:2026:5000:20000:3", rnd)
    kwargs = {"budget_range": br, "spread": 0.1, "samples": 3, "seed": 11}
    local = run_sweep(rnd, workers=2, **kwargs)
    remote = run_sweep(rnd, scheduler=cluster.scheduler_address, **kwargs)
    assert remote.where.startswith("dask")
    t_local, t_remote = sweep_tables(local), sweep_tables(remote)
    for sheet in t_local:
        pd.testing.assert_frame_equal(t_local[sheet], t_remote[sheet], check_exact=True)
    # ... and the CLI on the cluster writes the same workbook tables
    out = tmp_path / "cluster.sweep.xlsx"
    res = CliRunner().invoke(app, ["sweep", str(close_race(tmp_path)), "--budget-range",
                                   "F:2026:5000:20000:3", "--outcome-spread", "0.1", "--samples", "3",
                                   "--seed", "11", "--scheduler", cluster.scheduler_address,
                                   "--report", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    ws = openpyxl.load_workbook(out, read_only=True)["Levels"]
    rows = list(ws.iter_rows(values_only=True))
    assert [r[rows[0].index("outcome_value")] for r in rows[1:]] == pytest.approx(
        t_local["Levels"]["outcome_value"].tolist(), abs=1e-12)


@pytest.mark.slow  # starts a Dask cluster
def test_compare_on_cluster_equals_local(tmp_path: Path, cluster) -> None:
    from allocator.compare import compare

    rows = [{"variant": "more", "overrides": "budget JIF 2026 = +20%"},
            {"variant": "less", "overrides": "budget PUB 2026 = -50%; rule R-RUR value = 0.3"}]
    path = rounds.write(tmp_path / "v.xlsx", rounds.sheets(Variants=rows))
    local = compare(path, report=tmp_path / "l.xlsx", workers=2)
    remote = compare(path, report=tmp_path / "r.xlsx", scheduler=cluster.scheduler_address)
    for sheet in local.tables:
        pd.testing.assert_frame_equal(local.tables[sheet], remote.tables[sheet], check_exact=True)


def test_workbook_and_cli(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.sweep.xlsx"
    res = CliRunner().invoke(app, ["sweep", str(tiny), "--budget-range", "F:2026:0:20000:3",
                                   "--workers", "1", "--report", str(out)])
    assert res.exit_code == 0, res.output
    wb = openpyxl.load_workbook(out, read_only=True)
    assert {"Summary", "Levels", "Robustness", "Amounts", "Samples"} <= set(wb.sheetnames)
    rows = list(wb["Levels"].iter_rows(values_only=True))
    got = [r[rows[0].index("outcome_value")] for r in rows[1:]]
    assert got == pytest.approx([hand_value(0), hand_value(10000), hand_value(20000)])
    amounts = list(wb["Amounts"].iter_rows(values_only=True))
    assert amounts[1][:2] == ("P1", None) and amounts[1][2:] == (0, 10000, 10000)


@pytest.mark.parametrize(("args", "message"), [
    ([], "--budget-range"),
    (["--budget-range", "X:2026:0:10:2"], "unknown fund 'X'"),
    (["--budget-range", "F:2031:0:10:2"], "unknown period '2031'"),
    (["--budget-range", "F:2026:0:10"], "FUND:PERIOD:START:STOP:STEPS"),
    (["--budget-range", "F:2026:0:10:0"], "at least 1"),
    (["--outcome-spread", "1.5"], "below 1"),
])
def test_usage_errors(tiny: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["sweep", str(tiny), "--report", str(tmp_path / "x.xlsx"), *args])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "x.xlsx").exists()


def test_budget_range_levels_are_exact(tiny: Path) -> None:
    rnd = load_round(tiny).round
    assert [str(x) for x in parse_budget_range("F:2026:0:1000:4", rnd).levels()] == [
        "0", "333.33", "666.67", "1000"]
    with pytest.raises(SweepSpecError):
        parse_budget_range("F:2026:-5:10:2", rnd)


def test_infeasible_levels_are_counted(tmp_path: Path) -> None:
    data = {**TINY, "Rules": [{"rule_id": "R-MIN", "measure": "amount", "op": ">=", "value": 5000}]}
    rnd = load_round(rounds.write(tmp_path / "r.xlsx", data)).round
    result = run_sweep(rnd, budget_range=parse_budget_range("F:2026:0:10000:3", rnd), workers=1)
    levels = sweep_tables(result)["Levels"]
    assert levels["infeasible"].tolist() == [1, 0, 0]
    assert levels["outcome_value"].tolist()[1:] == pytest.approx([5.0, 10.0])
    write_sweep(result, tmp_path / "r.sweep.xlsx")  # an infeasible level still gives a workbook


def test_cli_sweep_warm_and_cold_give_the_same_workbook_tables(tiny: Path, tmp_path: Path) -> None:
    """A sweep solves each point from the one before by default; --cold solves each from
    scratch, and the tables agree exactly (the summary's timing line aside)."""
    tables = {}
    for flag in ([], ["--cold"]):
        out = tmp_path / f"s{len(flag)}.xlsx"
        res = CliRunner().invoke(app, ["sweep", str(tiny), "--budget-range", "F:2026:0:20000:5",
                                       "--outcome-spread", "0.2", "--samples", "3", "--quiet",
                                       "--report", str(out), *flag])
        assert res.exit_code == 0, res.output
        tables[len(flag)] = {s: pd.read_excel(out, sheet_name=s, engine="openpyxl") for s in
                             ("Levels", "Robustness", "Amounts", "Samples")}
    for sheet, warm in tables[0].items():
        pd.testing.assert_frame_equal(warm, tables[1][sheet], check_exact=True)


def test_pool_workers_and_this_process_give_the_same_allocations(tmp_path: Path) -> None:
    """Solves in a pool worker and in this process use the same HiGHS thread count: with
    HiGHS's own choice here (2 threads on a 2-core machine) and 1 in workers, two budget levels
    of the benchmark's 100-program round once rounded to other allocations in the pool."""
    from benchmarks.synthetic import write_synthetic_round

    rnd = load_round(write_synthetic_round(tmp_path / "s.xlsx", 100, 0, 3600, 0.05)).round
    jif = rnd.budget("JIF", "2027")
    br = BudgetRange("JIF", "2027", jif * Decimal("0.5"), jif * (Decimal("0.5") + Decimal(5) / 19), 2)
    here = run_sweep(rnd, budget_range=br, workers=1, warm=False)
    pool = run_sweep(rnd, budget_range=br, workers=2, warm=False)
    assert [p.program_amounts for p in here.points] == [p.program_amounts for p in pool.points]
    assert [p.objective for p in here.points] == [p.objective for p in pool.points]
