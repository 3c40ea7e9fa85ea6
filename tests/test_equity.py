"""The equity stage against hand-solved rounds: lexicographic max-min within the tolerance."""

from __future__ import annotations

import pytest

from allocator.checker import check_allocation
from allocator.engine import solve_round
from allocator.validate import load_round
from tests.rounds import write


def _program(pid: str, region: str, value: float, max_trainees: float = 100) -> dict:
    # cost 100 per trainee; value per trainee = learning_gain (weight 1) -> value/100 per EUR
    return {"program_id": pid, "name": pid, "sector": "s", "stage": "established",
            "regions": region, "cost_per_trainee": 100, "max_trainees": max_trainees,
            "employment_rate": 0.5, "retention_rate": 0.5, "learning_gain": value,
            "wage_gain": 0.1}


def _round(tmp_path, equity: str, tolerance: float, regions: list[dict], programs: list[dict],
           budget: float, contributions: list[dict] | None = None):
    data = {
        "Round": {"round_id": "EQ", "periods": "2026", "equity_objective": equity,
                  "outcome_tolerance": tolerance, "mip_gap": 0},
        "Regions": regions,
        "Funds": [{"fund_id": "JIF", "kind": "joint", "owner": "joint"}],
        "Budgets": [{"fund_id": "JIF", "period": "2026", "amount": budget}],
        "Programs": programs,
        "Objective": [{"metric": "learning_gain", "weight": 1}],
    }
    if contributions:
        data["Contributions"] = contributions
    return load_round(write(tmp_path / "eq.xlsx", data)).round


def _region(rid: str, jur: str, pop: float) -> dict:
    return {"region_id": rid, "name": rid, "jurisdiction": jur, "population": pop}


def _by_region(sol) -> dict[str, float]:
    amounts = sol.lp_amounts
    out: dict[str, float] = {}
    for k in range(len(sol.index)):
        r = sol.index.regions[sol.index.r[k]]
        out[r] = out.get(r, 0.0) + float(amounts[k])
    return out


def test_per_capita_within_tolerance(tmp_path):
    # Outcome only: all 10,000 to PA (0.02/EUR) -> 200; B gets 0. With 25% tolerance the outcome
    # must stay >= 150: 0.02*(10,000 - x_B) + 0.01*x_B >= 150 -> x_B <= 5,000, and x_A = 5,000:
    # both regions (1,000 inhabitants each) at 5 per inhabitant, outcome 150.
    rnd = _round(tmp_path, "maxmin_per_capita", 0.25,
                 [_region("A1", "A", 1000), _region("B1", "B", 1000)],
                 [_program("PA", "A1", 2.0), _program("PB", "B1", 1.0)], 10000)
    sol = solve_round(rnd)
    assert _by_region(sol) == pytest.approx({"A1": 5000, "B1": 5000}, rel=1e-5)
    fair = sol.fairness
    assert fair["outcome_best"] == pytest.approx(200, rel=1e-6)
    assert fair["outcome_given_up"] == pytest.approx(50, rel=1e-4)
    assert fair["trainees_given_up"] == pytest.approx(0, abs=1e-3)
    assert fair["min_before"] == pytest.approx(0, abs=1e-9)
    assert fair["min_after"] == pytest.approx(5, rel=1e-3)
    assert check_allocation(rnd, sol.allocation) == []


def test_per_capita_is_lexicographic(tmp_path):
    # C1 can take at most 200 (2 trainees): its level is 0.2 and it is fixed first. Then A1
    # (1,000 inhabitants) and B1 (2,000) share 12,000 - 200 = 11,800 equally per inhabitant:
    # 3,000 z = 11,800 -> z = 3.9333; A1 = 3,933.33, B1 = 7,866.67 (tolerance 1: any outcome).
    rnd = _round(tmp_path, "maxmin_per_capita", 1.0,
                 [_region("A1", "A", 1000), _region("B1", "B", 2000), _region("C1", "C", 1000)],
                 [_program("PA", "A1", 3.0), _program("PB", "B1", 1.0),
                  _program("PC", "C1", 1.0, max_trainees=2)], 12000)
    sol = solve_round(rnd)
    assert _by_region(sol) == pytest.approx({"A1": 11800 / 3, "B1": 23600 / 3, "C1": 200},
                                            rel=1e-5)
    assert [s.name for s in sol.stages][:1] == ["outcome"]
    assert sum(s.name.startswith("equity_") for s in sol.stages) >= 2
    assert check_allocation(rnd, sol.allocation) == []


def test_contribution_ratio(tmp_path):
    # c_A = 0.6, c_B = 0.4; max min(x_A / 0.6, x_B / 0.4) with x_A + x_B <= 10,000 -> 6,000 and
    # 4,000: exact juste retour. Outcome 0.02*6,000 + 0.01*4,000 = 160 against 200 at best.
    rnd = _round(tmp_path, "maxmin_contribution", 1.0,
                 [_region("A1", "A", 1000), _region("B1", "B", 1000)],
                 [_program("PA", "A1", 2.0), _program("PB", "B1", 1.0)], 10000,
                 contributions=[{"fund_id": "JIF", "jurisdiction": "A", "amount": 60},
                                {"fund_id": "JIF", "jurisdiction": "B", "amount": 40}])
    sol = solve_round(rnd)
    assert _by_region(sol) == pytest.approx({"A1": 6000, "B1": 4000}, rel=1e-5)
    assert sol.fairness["outcome_given_up"] == pytest.approx(40, rel=1e-4)
    assert sol.fairness["min_after"] == pytest.approx(10000, rel=1e-4)


def test_zero_tolerance_gives_up_nothing(tmp_path):
    # With tolerance 0 the outcome stays at its best (all to PA): equity may only choose among
    # the best allocations, and here there is one.
    rnd = _round(tmp_path, "maxmin_per_capita", 0.0,
                 [_region("A1", "A", 1000), _region("B1", "B", 1000)],
                 [_program("PA", "A1", 2.0), _program("PB", "B1", 1.0)], 10000)
    sol = solve_round(rnd)
    assert sol.fairness["outcome_given_up"] == pytest.approx(0, abs=1e-3)
    assert _by_region(sol)["A1"] == pytest.approx(10000, rel=1e-6)


def test_contribution_objective_needs_contributions(tmp_path):
    from allocator.errors import InputError

    with pytest.raises(InputError, match="maxmin_contribution needs contributions"):
        _round(tmp_path, "maxmin_contribution", 0.1, [_region("A1", "A", 1000)],
               [_program("PA", "A1", 1.0)], 1000)
