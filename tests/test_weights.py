"""Weight ranges: inside a weight's range the allocation stays optimal, just outside it does not
(checked by re-solving the round's LP independently with scipy at the changed weight)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from allocator.engine import solve_round
from allocator.report import report_tables
from allocator.weights import weight_ranges
from tests.test_robust import BUDGET, PROGRAMS, sheets


def best_trainees(weights: dict[str, float]) -> np.ndarray:
    v = np.array([weights["employment_rate"] * p[3] + weights["wage_gain"] * p[5] for p in PROGRAMS])
    res = linprog(-v, A_ub=[[p[1] for p in PROGRAMS]], b_ub=[BUDGET],
                  bounds=[(0, p[2]) for p in PROGRAMS], method="highs-ds")
    assert res.status == 0
    return res.x


def test_weight_ranges_bound_where_the_allocation_changes(make_round):
    sol = solve_round(make_round(sheets(se=False)))
    chosen = sol.allocation.groupby("program_id")["trainees"].sum()
    t = np.array([float(chosen.get(p[0], 0.0)) for p in PROGRAMS])
    ranges = weight_ranges(sol).set_index("metric")
    # By hand: money goes to P1, P2, then P5 (25 of 50 trainees, the budget binds); P5 keeps its
    # place over P4 while (0.6 w + 0.025) / 800 >= (0.85 w + 0.1) / 1250, i.e. w >= 48.75 / 70.
    assert ranges.loc["employment_rate", "lowest"] == pytest.approx(48.75 / 70, rel=1e-6)
    assert np.isnan(ranges.loc["employment_rate", "highest"])  # unbounded above
    base = {"employment_rate": 1.0, "wage_gain": 0.5}
    for metric, row in ranges.iterrows():
        for end, outward in (("lowest", -1), ("highest", 1)):
            edge = row[end]
            if np.isnan(edge):
                far = {**base, metric: row["weight"] + 100 * outward}
                assert best_trainees(far) == pytest.approx(t, abs=1e-6)
                continue
            inside = {**base, metric: edge - outward * 1e-3}
            outside = {**base, metric: edge + outward * 1e-3}
            assert best_trainees(inside) == pytest.approx(t, abs=1e-6), (metric, end)
            assert not np.allclose(best_trainees(outside), t, atol=1e-3), (metric, end)


def test_report_has_a_weight_ranges_sheet(make_round):
    sol = solve_round(make_round(sheets(se=False)))
    table = report_tables(sol)["Weight ranges"]
    assert list(table.columns) == ["metric", "weight", "lowest", "highest", "of"]
    assert table["metric"].tolist() == ["employment_rate", "wage_gain"]


@pytest.mark.slow
def test_weight_ranges_on_a_synthetic_round_hold_inside_and_break_outside(tmp_path):
    """250 programs, several funds, periods and rules: at each end of each range the chosen
    allocation is re-checked against a fresh solve of the LP with the weight moved."""
    import dataclasses

    from allocator.solve import solve_program
    from allocator.validate import load_round
    from allocator.weights import _chosen_point
    from benchmarks.synthetic import write_synthetic_round

    rnd = load_round(write_synthetic_round(tmp_path / "s.xlsx", 250, 0)).round
    sol = solve_round(rnd)
    ranges = weight_ranges(sol).set_index("metric")
    program, x, _ = _chosen_point(sol)
    cost = np.array([p.cost_per_trainee for p in rnd.programs])
    checked = 0
    for metric, row in ranges.iterrows():
        g = np.zeros(program.shape[1])
        g[sol.columns.x] = (np.array([p.outcomes.get(metric, 0.0) for p in rnd.programs])
                            / cost)[sol.index.p]

        def gap(weight: float, g=g, base=row["weight"]) -> float:
            moved = dataclasses.replace(program, c=program.c + (weight - base) * g)
            best = solve_program(moved, "check", time_limit=60, mip_gap=0, method="simplex")
            return (best.objective - float(moved.c @ x)) / abs(best.objective)

        for end, outward in (("lowest", -1), ("highest", 1)):
            edge = row[end]
            if np.isnan(edge):
                continue
            step = 0.01 * max(abs(row["weight"]), 1e-3)
            assert gap(edge - outward * 1e-3 * step) < 1e-10, (metric, end)
            assert gap(edge + outward * step) > 1e-10, (metric, end)
            checked += 1
    assert checked >= 4
