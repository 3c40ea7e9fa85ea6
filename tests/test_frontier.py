"""`allocator frontier`: each point re-solved by an independent LP, and a hand-checked frontier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from scipy.optimize import linprog

from allocator.frontier import FrontierSpecError, frontier_tables, trace_frontier, write_frontier
from tests.test_robust import BUDGET, PROGRAMS, sheets


def reference_best_b(programs, a_col: int, b_col: int, level: float, budget: float) -> float:
    """max sum_p b_p T_p  s.t.  sum_p a_p T_p >= level, sum_p cost_p T_p <= budget, 0 <= T <= cap."""
    a = np.array([p[a_col] for p in programs], float)
    b = np.array([p[b_col] for p in programs], float)
    cost = np.array([p[1] for p in programs], float)
    res = linprog(-b, A_ub=np.vstack([-a, cost]), b_ub=[-level, budget],
                  bounds=[(0, p[2]) for p in programs], method="highs-ds")
    assert res.status == 0
    return -res.fun


def test_each_point_is_the_best_b_for_its_level_of_a(make_round):
    rnd = make_round(sheets(se=False))
    result = trace_frontier(rnd, "employment_rate", "wage_gain", points=6)
    assert len(result.points) == 6
    emp, wage = 3, 5  # columns of PROGRAMS
    # the ends: A at B's best (lowest useful level) and A's best
    b_best = reference_best_b(PROGRAMS, emp, wage, 0.0, BUDGET)
    a_best = -linprog(-np.array([p[emp] for p in PROGRAMS]), A_ub=[[p[1] for p in PROGRAMS]],
                      b_ub=[BUDGET], bounds=[(0, p[2]) for p in PROGRAMS], method="highs-ds").fun
    assert result.points[0].b == pytest.approx(b_best, rel=1e-7)
    assert result.points[-1].a == pytest.approx(a_best, rel=1e-7)
    for p in result.points:
        assert p.a >= p.level - 1e-6 * max(1, p.level)
        assert p.b == pytest.approx(reference_best_b(PROGRAMS, emp, wage, p.level, BUDGET),
                                    rel=1e-6, abs=1e-6)
    # along the frontier A rises and B falls
    assert all(q.a > p.a for p, q in zip(result.points, result.points[1:], strict=False))
    assert all(q.b <= p.b + 1e-9 for p, q in zip(result.points, result.points[1:], strict=False))


def test_a_hand_checked_frontier(make_round, tmp_path: Path):
    # Two programs, 60 trainees' worth of budget. P1: employment 0.9, wage 0; P2: 0.5 and 0.4.
    # B (wage) is best with all 60 in P2: wage 24, employment 30 = A's lowest useful level.
    # A is best with all 60 in P1: 54. At A >= 42: 0.9 T1 + 0.5 (60 - T1) >= 42 -> T1 = 30,
    # wage 0.4 * 30 = 12. Each step of 12 in employment costs 12 in wage gain.
    programs = [("P1", 1000, 60, 0.9, 0.0, 0.0, 0.0), ("P2", 1000, 60, 0.5, 0.0, 0.4, 0.0)]
    rnd = make_round(sheets(se=False, programs=programs, budget=60_000))
    result = trace_frontier(rnd, "employment_rate", "wage_gain", points=3)
    got = [(round(p.a, 6), round(p.b, 6)) for p in result.points]
    assert got == [(30.0, 24.0), (42.0, 12.0), (54.0, 0.0)]
    table = frontier_tables(result)
    frontier = table["Frontier"]
    assert list(frontier.columns[:4]) == ["point", "employment_rate", "wage_gain", "objective"]
    assert frontier["wage_gain_given_up_per_employment_rate"].tolist()[1:] == pytest.approx([1.0, 1.0])
    # the round's own objective: employment + 0.5 wage
    assert frontier["objective"].tolist() == pytest.approx([42.0, 48.0, 54.0])
    alloc = table["Allocations"]
    middle = alloc[alloc.point == 2].set_index("program_id")["trainees"]
    assert middle.to_dict() == pytest.approx({"P1": 30.0, "P2": 30.0})
    path = write_frontier(result, tmp_path / "out" / "f.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["Frontier", "Allocations", "Summary"]
    ws = wb["Frontier"]
    assert [c.value for c in ws[1]][:4] == ["point", "employment_rate", "wage_gain", "objective"]
    assert len(ws._charts) == 1
    assert not list((tmp_path / "out").glob(".*"))  # no leftover of the atomic write


@pytest.mark.slow
def test_pool_gives_the_same_points(make_round):
    rnd = make_round(sheets(se=False))
    serial = trace_frontier(rnd, "employment_rate", "wage_gain", points=4)
    pooled = trace_frontier(rnd, "employment_rate", "wage_gain", points=4, workers=2)
    assert [p.b for p in pooled.points] == pytest.approx([p.b for p in serial.points], rel=1e-9)


def test_outcome_against_equity_by_hand(make_round):
    # Two regions of 1,000 inhabitants, a program in each (0.9 and 0.5 value per trainee, 1,000
    # per trainee), 60,000 in all. Equity (lowest money per inhabitant, maxmin_per_capita) is
    # best at 30,000 each: 30 per inhabitant, outcome 42 (A's lowest useful level). Outcome is
    # best with all in R1: 54, equity 0. At outcome >= 48: 0.9 T1 + 0.5 T2 = 48 with
    # T1 + T2 = 60 -> T1 = 45, T2 = 15: equity 15.
    data = sheets(se=False, programs=[("P1", 1000, 60, 0.9, 0, 0, 0), ("P2", 1000, 60, 0.5, 0, 0, 0)],
                  budget=60_000)
    data["Regions"] = [{"region_id": "R1", "jurisdiction": "J", "population": 1000},
                       {"region_id": "R2", "jurisdiction": "J", "population": 1000}]
    data["Programs"][1]["regions"] = "R2"
    result = trace_frontier(make_round(data), "outcome", "equity", points=3)
    got = [(round(p.a, 6), round(p.b, 6)) for p in result.points]
    assert got == [(42.0, 30.0), (48.0, 15.0), (54.0, 0.0)]
    assert any("maxmin_per_capita" in n for n in result.notes)


def test_unknown_metric_is_refused(make_round):
    rnd = make_round(sheets(se=False))
    with pytest.raises(FrontierSpecError, match="unknown metric 'nope'"):
        trace_frontier(rnd, "nope", "wage_gain")
    with pytest.raises(FrontierSpecError, match="two different metrics"):
        trace_frontier(rnd, "wage_gain", "wage_gain")


def test_api_frontier_writes_the_workbook(tmp_path: Path):
    from allocator import api
    from allocator.template import write_round_workbook

    path = write_round_workbook(tmp_path / "r.xlsx", sheets(se=False))
    result = api.frontier(path, ("employment_rate", "wage_gain"), points=3,
                          report=tmp_path / "f.xlsx")
    assert len(result.points) == 3 and (tmp_path / "f.xlsx").exists()


def test_cli_frontier(tmp_path: Path):
    from typer.testing import CliRunner

    from allocator.cli import app
    from allocator.template import write_round_workbook

    path = write_round_workbook(tmp_path / "r.xlsx", sheets(se=False))
    out = tmp_path / "f.xlsx"
    result = CliRunner().invoke(app, ["frontier", str(path), "--between", "employment_rate",
                                      "wage_gain", "--points", "3", "--report", str(out)])
    assert result.exit_code == 0, result.output
    assert "point   2: employment_rate" in result.output and out.exists()
    bad = CliRunner().invoke(app, ["frontier", str(path), "--between", "nope", "wage_gain",
                                   "--report", str(out)])
    assert bad.exit_code == 2 and "unknown metric 'nope'" in bad.output


def test_frontier_of_a_robust_round(make_round):
    from tests.test_robust import reference_robust

    rnd = make_round(sheets(gamma=1.0))
    result = trace_frontier(rnd, "wage_gain", "outcome", points=3)
    best, _ = reference_robust(PROGRAMS, 1.0, 1.0, BUDGET)
    assert result.points[0].b == pytest.approx(best, rel=1e-7)  # outcome = the robust objective
    assert all(p.objective == pytest.approx(p.b, rel=1e-9) for p in result.points)
    # with two plain metrics, the objective column is the robust value of the point's allocation
    other = trace_frontier(rnd, "employment_rate", "wage_gain", points=3)
    v = np.array([p[3] + 0.5 * p[5] for p in PROGRAMS])
    s = np.array([np.hypot(p[4], 0.5 * p[6]) for p in PROGRAMS])
    alloc = frontier_tables(other)["Allocations"]
    for p in other.points:
        t = alloc[alloc.point == p.point].set_index("program_id")["trainees"]
        t = np.array([float(t.get(q[0], 0.0)) for q in PROGRAMS])
        assert p.objective == pytest.approx(float(v @ t) - float((s * t).max()), rel=1e-4)


@pytest.mark.slow
def test_dask_cluster_gives_the_same_points(make_round):
    from dask.distributed import LocalCluster

    rnd = make_round(sheets(se=False))
    serial = trace_frontier(rnd, "employment_rate", "wage_gain", points=3)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster:
        remote = trace_frontier(rnd, "employment_rate", "wage_gain", points=3,
                                scheduler=cluster.scheduler_address)
    assert remote.where.startswith("dask")
    assert [p.b for p in remote.points] == pytest.approx([p.b for p in serial.points], rel=1e-9)
    assert [p.a for p in remote.points] == pytest.approx([p.a for p in serial.points], rel=1e-9)


def test_soft_rules_keep_their_price_at_every_point(make_round):
    # P3 is the worst program for both metrics; a soft rule asks for 20,000 in it at a price far
    # above any outcome value per euro, so every point (and both ends) keeps it.
    data = sheets(se=False)
    data["Rules"] = [{"rule_id": "P3-MIN", "measure": "amount", "select": "program=P3",
                      "op": ">=", "value": 20000, "penalty": 1.0}]
    result = trace_frontier(make_round(data), "employment_rate", "wage_gain", points=3)
    alloc = frontier_tables(result)["Allocations"]
    for p in result.points:
        money = alloc[(alloc.point == p.point) & (alloc.program_id == "P3")]["amount"].sum()
        assert money == pytest.approx(20000, abs=1e-3)


def test_a_hard_rule_no_allocation_can_meet_is_refused(make_round):
    from allocator.errors import InfeasibleRoundError

    data = sheets(se=False)
    data["Rules"] = [{"rule_id": "NONE", "measure": "amount", "select": "sector=none",
                      "op": ">=", "value": 1}]
    data["Programs"][0]["sector"] = "none"
    data["Programs"][0]["max_trainees"] = 0
    data["Programs"][0]["regions"] = "R1"
    with pytest.raises(InfeasibleRoundError):
        trace_frontier(make_round(data), "employment_rate", "wage_gain", points=3)
