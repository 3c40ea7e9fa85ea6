"""External match (DESIGN.md 1.1, Programs `external_match`): the share of a program's cost paid
from outside the round. Optima are compared with hand calculations and with a separate
scipy.optimize.linprog formulation written here from the contract's text."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from allocator import api
from allocator.checker import check_allocation, kinds
from allocator.errors import InputError
from allocator.template import write_round_workbook
from allocator.validate import load_round

# Two jurisdictions: the Belgian fund may pay at most 60% of a program's cost; the joint fund
# pays French programs in full.
ROUND = {
    "Round": {"round_id": "EM", "periods": "2026", "rounding_unit": 1},
    "Regions": [
        {"region_id": "BE1", "jurisdiction": "BE", "population": 1000},
        {"region_id": "FR1", "jurisdiction": "FR", "population": 1000},
    ],
    "Funds": [
        {"fund_id": "BEF", "kind": "public", "owner": "BE", "cofinancing_cap": 0.6,
         "eligible": "jurisdiction=BE"},
        {"fund_id": "JIF", "kind": "joint", "owner": "joint", "eligible": "jurisdiction=FR"},
    ],
    "Budgets": [
        {"fund_id": "BEF", "period": "2026", "amount": 60000},
        {"fund_id": "JIF", "period": "2026", "amount": 100000},
    ],
    "Programs": [
        {"program_id": "P-BE", "regions": "BE1", "cost_per_trainee": 1000, "max_trainees": 100,
         "employment_rate": 1.0, "external_match": 0.4},
        {"program_id": "P-FR", "regions": "FR1", "cost_per_trainee": 1000, "max_trainees": 50,
         "employment_rate": 0.8},
        {"program_id": "P-FR2", "regions": "FR1", "cost_per_trainee": 2000, "max_trainees": 60,
         "employment_rate": 1.0, "external_match": 0.5},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}],
}


def _round(tmp_path, data, name="r.xlsx"):
    return load_round(write_round_workbook(tmp_path / name, data)).round


def _with(**program_changes):
    data = copy.deepcopy(ROUND)
    for p in data["Programs"]:
        p.update(program_changes.get(p["program_id"], {}))
    return data


def _by_program(alloc: pd.DataFrame, column: str) -> dict[str, float]:
    return {k: float(v) for k, v in alloc.groupby("program_id")[column].sum().items()}


def test_external_match_hand_solved(tmp_path):
    """By hand: P-BE's 40% match lets BEF (cap 60%) pay all of its round share: 100 trainees x
    EUR 600 = EUR 60,000 of round money, 100 trainees. In FR, P-FR2 buys 1.0 per EUR 1,000 of
    round money (half of EUR 2,000 matched), P-FR 0.8: P-FR2 takes its capacity, 60 trainees x
    EUR 1,000 = EUR 60,000, P-FR the remaining EUR 40,000 (40 trainees). Value 100 + 60 + 32."""
    sol = api.solve(_round(tmp_path, ROUND))
    assert _by_program(sol.allocation, "amount") == {"P-BE": 60000, "P-FR": 40000, "P-FR2": 60000}
    trainees = _by_program(sol.allocation, "trainees")
    assert trainees == pytest.approx({"P-BE": 100, "P-FR": 40, "P-FR2": 60})
    assert sol.objective == pytest.approx(192.0)
    assert check_allocation(sol.round, sol.allocation, tolerance=0) == []
    assert not any("never be funded" in w for w in sol.warnings)


def test_without_the_match_the_same_round_is_different(tmp_path):
    """The match changes the answer: without it P-BE is blocked (60% < 100%) and P-FR2 buys
    0.5 per EUR 1,000, less than P-FR's 0.8, so P-FR takes its capacity first."""
    sol = api.solve(_round(tmp_path, _with(**{"P-BE": {"external_match": 0},
                                              "P-FR2": {"external_match": 0}})))
    assert _by_program(sol.allocation, "amount") == {"P-FR": 50000, "P-FR2": 50000}
    assert any("program P-BE can never be funded in 2026" in w for w in sol.warnings)


def _linprog_reference(rnd) -> tuple[float, dict[str, float], dict[str, float]]:
    """The contract's model, written independently: one variable per (program, fund) (one region
    and one period each here). Round money X_p = sum_f x_pf, total cost X_p / (1 - e_p),
    trainees X_p / ((1 - e_p) c_p) <= max_p, x_pf <= cap_f X_p / (1 - e_p), budgets."""
    jur = {r.region_id: r.jurisdiction for r in rnd.regions}
    joint_everywhere = not rnd.fund("JIF").eligible.conditions

    def funds_for(p) -> list[str]:
        if jur[p.regions[0]] == "BE":
            return ["BEF"] + (["JIF"] if joint_everywhere else [])
        return ["JIF"]

    vars_ = [(p, f) for p in rnd.programs for f in funds_for(p)]
    n = len(vars_)
    c = np.array([-p.outcomes.get("employment_rate", 0) / (p.cost_per_trainee * (1 - p.external_match))
                  for p, _ in vars_])
    A, b = [], []
    for f in rnd.funds:
        A.append([1.0 if fv == f.fund_id else 0.0 for _, fv in vars_])
        b.append(float(rnd.budget(f.fund_id, "2026")))
    for p in rnd.programs:
        mine = [k for k in range(n) if vars_[k][0] is p]
        A.append([1.0 if k in mine else 0.0 for k in range(n)])
        b.append(p.max_trainees * p.cost_per_trainee * (1 - p.external_match))
        for f in rnd.funds:
            if any(vars_[k][1] == f.fund_id for k in mine):
                share = f.cofinancing_cap / (1 - p.external_match)
                A.append([(1.0 if vars_[k][1] == f.fund_id else 0.0) - share if k in mine else 0.0
                          for k in range(n)])
                b.append(0.0)
    res = linprog(c, A_ub=np.array(A), b_ub=np.array(b), bounds=[(0, None)] * n, method="highs")
    assert res.status == 0
    money: dict[str, float] = {}
    trainees: dict[str, float] = {}
    for (p, _), x in zip(vars_, res.x, strict=True):
        money[p.program_id] = money.get(p.program_id, 0.0) + x
        trainees[p.program_id] = money[p.program_id] / (p.cost_per_trainee * (1 - p.external_match))
    return -res.fun, money, trainees


def test_external_match_against_linprog_with_two_funds_on_one_program(tmp_path):
    """P-BE may also draw on JIF; BEF's cap 30% with a 40% match means BEF pays at most half of
    P-BE's round money. Compared with the linprog reference: optimum, money and trainees."""
    data = _with(**{"P-BE": {"external_match": 0.4}})
    data["Funds"][0]["cofinancing_cap"] = 0.3
    data["Funds"][1]["eligible"] = ""  # JIF pays everywhere
    rnd = _round(tmp_path, data)
    best, money, trainees = _linprog_reference(rnd)
    sol = api.solve(rnd)
    assert sol.objective == pytest.approx(best, rel=1e-6)
    got = _by_program(sol.allocation, "amount")
    assert got == pytest.approx({k: v for k, v in money.items() if v > 0.5}, abs=1.0)
    assert _by_program(sol.allocation, "trainees") == pytest.approx(
        {k: v for k, v in trainees.items() if v > 1e-3}, abs=1e-2)
    # BEF pays at most half of P-BE's round money (0.3 of the total cost, 0.6 of which is round's)
    be = sol.allocation[sol.allocation.program_id == "P-BE"]
    bef = float(be[be.fund_id == "BEF"].amount.sum())
    assert bef <= 0.5 * float(be.amount.sum()) + 1e-6
    assert bef > 0
    assert check_allocation(sol.round, sol.allocation, tolerance=0) == []


def test_checker_reads_caps_against_the_total_cost(tmp_path):
    """BEF (cap 60%) paying all of P-BE's round money is within the cap when 40% is matched,
    and breaks it when only 30% is: 0.6 x 60,000 / 0.7 = 51,428.57, so 8,571.43 over."""
    alloc = pd.DataFrame({"program_id": ["P-BE"], "region_id": ["BE1"], "fund_id": ["BEF"],
                          "period": ["2026"], "amount": [60000.0]})
    ok = _round(tmp_path, ROUND, "a.xlsx")
    assert check_allocation(ok, alloc, tolerance=0) == []
    short = _round(tmp_path, _with(**{"P-BE": {"external_match": 0.3}}), "b.xlsx")
    found = check_allocation(short, alloc, tolerance=0)
    assert kinds(found) == {"cofinancing"}
    assert found[0].amount == pytest.approx(60000 - 0.6 * 60000 / 0.7)
    assert "external match 30%" in found[0].message


def test_checker_capacity_counts_the_matched_cost(tmp_path):
    """Capacity is in trainees: 60,001 of round money with a 40% match is 100.0017 trainees at
    EUR 1,000, above max_trainees 100."""
    rnd = _round(tmp_path, ROUND)
    alloc = pd.DataFrame({"program_id": ["P-BE"], "region_id": ["BE1"], "fund_id": ["BEF"],
                          "period": ["2026"], "amount": [60001.0]})
    found = check_allocation(rnd, alloc, tolerance=0)
    assert "capacity" in kinds(found)


def test_external_match_one_is_refused_with_a_reason(tmp_path):
    path = write_round_workbook(tmp_path / "bad.xlsx", _with(**{"P-FR": {"external_match": 1},
                                                               "P-FR2": {"external_match": -0.1}}))
    with pytest.raises(InputError) as err:
        load_round(path)
    text = err.value.render()
    assert "Programs!" in text and "external_match" in text
    assert "must be less than 1, got 1" in text and "needs no money from this round" in text
    assert "must be at least 0, got -0.1" in text


def test_rounds_without_external_match_keep_their_digest(tmp_path):
    with_default = _round(tmp_path, _with(**{"P-BE": {"external_match": 0},
                                             "P-FR2": {"external_match": 0}}), "a.xlsx")
    data = _with()
    for p in data["Programs"]:
        p.pop("external_match", None)
    without = _round(tmp_path, data, "b.xlsx")
    assert with_default.digest() == without.digest()
    assert "external_match" not in without.canonical_json()


def test_a_variant_changes_external_match_like_an_edited_workbook(tmp_path):
    from allocator.variants import OverrideError, apply_override, parse_override

    base = _round(tmp_path, ROUND, "base.xlsx")
    changed = apply_override(base, parse_override("program P-BE external_match = 0.3"))
    by_hand = _round(tmp_path, _with(**{"P-BE": {"external_match": 0.3}}), "hand.xlsx")
    assert changed.digest() == by_hand.digest()
    with pytest.raises(OverrideError, match="external_match"):
        apply_override(base, parse_override("program P-BE external_match = 1"))


def test_committed_record_stage_models_are_byte_identical(tmp_path):
    """A round without external_match (the committed example) builds its outcome and prices
    stages' MPS files byte for byte as recorded before contract 1.1's external match existed.

    The tie-break's matrix is the same too; which of its bounds are held on the optimal face
    comes from the prices LP's duals, which since engine 0.2.0 (prices started from the MILP's
    optimum) are another, equally optimal, set: only bounds may differ there."""
    from pathlib import Path

    from allocator.engine import solve_round
    from allocator.lpcheck import compare_stage
    from allocator.round import Round
    from allocator.solve import new_highs

    models = Path(__file__).resolve().parents[1] / "models"
    record = sorted(p.parent for p in models.glob("*/*/manifest.json"))[0]
    rnd = Round.model_validate_json((record / "round.json").read_text(encoding="utf-8"))
    for i, stage in enumerate(solve_round(rnd).stages, start=1):
        h = new_highs()
        stage.as_solved.to_highs(h)
        h.writeModel(str(tmp_path / f"stage{i}_{stage.name}.mps"))
        recorded = record / f"stage{i}_{stage.name}.mps"
        if stage.name == "tiebreak":
            differences = compare_stage(recorded, stage.as_solved)
            assert all(" bound recorded " in d for d in differences), differences
            continue
        assert (tmp_path / recorded.name).read_bytes() == recorded.read_bytes(), recorded.name
