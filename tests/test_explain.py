"""Prices of rules and budgets, a reason per program, soft-rule shortfalls (issue 4).

Every expected number is derived by hand from the small round `E` below (comments show how),
and every price is also checked against a finite difference: re-solve with the rule's value
or the budget moved by a small step, and compare (change of the optimum) / (step).
"""

from __future__ import annotations

import copy

import pytest

from allocator.engine import solve_round
from allocator.explain import MIP_NOTE, price_table, program_reasons, soft_rule_table
from allocator.round import Round

# Values per EUR (weight 1 on employment, cost 1000): P1 0.0009, P2 0.0006, P3 0.0003.
# Budgets: JIF 100k (2026) + 80k (2027), PUB 30k (2026, jurisdiction A only, i.e. P1).
E = {
    "Round": {"round_id": "E1", "periods": "2026, 2027", "rounding_unit": 1},
    "Regions": [
        {"region_id": "A1", "jurisdiction": "A", "population": 1000, "rural": "yes"},
        {"region_id": "B1", "jurisdiction": "B", "population": 3000, "rural": "no"},
    ],
    "Funds": [
        {"fund_id": "JIF", "kind": "joint", "owner": "joint"},
        {"fund_id": "PUB", "kind": "public", "owner": "A", "eligible": "jurisdiction=A"},
    ],
    "Budgets": [
        {"fund_id": "JIF", "period": 2026, "amount": 100000},
        {"fund_id": "JIF", "period": 2027, "amount": 80000},
        {"fund_id": "PUB", "period": 2026, "amount": 30000},
    ],
    "Programs": [
        {"program_id": "P1", "regions": "A1", "cost_per_trainee": 1000, "max_trainees": 40,
         "employment_rate": 0.9},
        {"program_id": "P2", "regions": "B1", "cost_per_trainee": 1000, "max_trainees": 200,
         "employment_rate": 0.6},
        {"program_id": "P3", "regions": "B1", "cost_per_trainee": 1000, "max_trainees": 200,
         "employment_rate": 0.3},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}],
    "Rules": [],
}
R_B = {"rule_id": "R-B", "measure": "share", "select": "region=B1", "op": ">=", "value": 0.8}


def variant(**sheets) -> dict:
    out = copy.deepcopy(E)
    out.update(copy.deepcopy(sheets))
    return out


def with_rule_value(rnd: Round, rule_id: str, value: float) -> Round:
    data = rnd.model_dump()
    for r in data["rules"]:
        if r["rule_id"] == rule_id:
            r["value"] = value
    return Round.model_validate(data)


def with_budget(rnd: Round, fund: str, period: str, add: float) -> Round:
    data = rnd.model_dump()
    for b in data["budgets"]:
        if b["fund_id"] == fund and b["period"] == period:
            b["amount"] = float(b["amount"]) + add
    return Round.model_validate(data)


def price_row(table, kind: str, ident: str, period: str = ""):
    rows = table[(table["kind"] == kind) & (table["id"] == ident) & (table["period"] == period)]
    assert len(rows) == 1, table
    return rows.iloc[0]


def test_share_floor_and_budget_prices_match_hand_solution_and_resolves(make_round):
    # With R-B (B1 gets >= 80% of all money) and every budget spent (210k): A1 money a obeys
    # 0.2 * (210k - a) >= 0.8 a  ->  a <= 42k, and obj = 0.0006 * 210k + 0.0003 * a = 138.6.
    # d obj / d value = -0.0003 * 210k = -63, i.e. -0.63 per percentage point.
    # One more EUR of any budget: 0.0006 + 0.0003 * 0.2 = 0.00066 -> 6.6 per EUR 10,000.
    rnd = make_round(variant(Rules=[R_B]))
    sol = solve_round(rnd)
    assert sol.optimal_objective == pytest.approx(138.6, rel=1e-9)
    table = price_table(sol)
    rule = price_row(table, "rule", "R-B")
    assert rule["per_step"] == pytest.approx(-0.63, rel=1e-6)
    assert "from 80% to 81% costs 0.63 outcome points" in rule["sentence"]
    for fund, period in (("JIF", "2026"), ("JIF", "2027"), ("PUB", "2026")):
        row = price_row(table, "budget", fund, period)
        assert row["shadow_price"] == pytest.approx(0.00066, rel=1e-6)
        assert row["sentence"].startswith(f"Each extra EUR 10,000 in {fund} {period} buys 6.6 ")
    # Finite differences (the basis does not change for these small steps).
    step = 0.001
    moved = solve_round(with_rule_value(rnd, "R-B", 0.8 + step)).optimal_objective
    assert (moved - sol.optimal_objective) / step == pytest.approx(rule["per_step"] / 0.01, rel=1e-4)
    for fund, period in (("JIF", "2027"), ("PUB", "2026")):
        moved = solve_round(with_budget(rnd, fund, period, 100.0)).optimal_objective
        assert (moved - sol.optimal_objective) / 100.0 == pytest.approx(
            price_row(table, "budget", fund, period)["shadow_price"], rel=1e-4)
    assert (table["note"] == "").all()  # an LP round: no on/off decisions to mention


@pytest.mark.parametrize(("rule", "per_step", "step"), [
    # A1 capped at 50k: one more EUR in A1 moves money from P2 (0.0006) to P1 (0.0009).
    ({"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": "<=", "value": 50000},
     3.0, 1000.0),  # per EUR 10,000
    # The same cap per inhabitant of A1 (1000 people): EUR 50 per inhabitant.
    ({"rule_id": "R-A", "measure": "per_capita", "select": "region=A1", "op": "<=", "value": 50},
     0.3, 1.0),  # per EUR 1 per inhabitant
])
def test_amount_and_per_capita_prices_in_their_own_unit(make_round, rule, per_step, step):
    rnd = make_round(variant(Rules=[rule]))
    sol = solve_round(rnd)
    row = price_row(price_table(sol), "rule", "R-A")
    assert row["per_step"] == pytest.approx(per_step, rel=1e-6)
    assert "gains" in row["sentence"]
    moved = solve_round(with_rule_value(rnd, "R-A", rule["value"] + step)).optimal_objective
    unit_step = 10_000.0 if rule["measure"] == "amount" else 1.0
    assert (moved - sol.optimal_objective) / step == pytest.approx(per_step / unit_step, rel=1e-4)


def test_mip_round_prices_come_from_the_fixed_lp_and_say_so(make_round):
    # P2 all-or-nothing (>= 10 trainees) stays on; in 2027 P1 takes its 40k, P2 the other 40k,
    # so one more EUR of JIF 2027 buys P2's 0.0006.
    programs = copy.deepcopy(E["Programs"])
    programs[1]["min_trainees"] = 10
    rnd = make_round(variant(Programs=programs))
    sol = solve_round(rnd)
    assert sol.mip
    table = price_table(sol)
    row = price_row(table, "budget", "JIF", "2027")
    assert row["shadow_price"] == pytest.approx(0.0006, rel=1e-6)
    assert (table["note"] == MIP_NOTE).all()
    moved = solve_round(with_budget(rnd, "JIF", "2027", 100.0)).optimal_objective
    assert (moved - sol.optimal_objective) / 100.0 == pytest.approx(row["shadow_price"], rel=1e-4)


def test_every_program_gets_its_reason(make_round):
    data = variant(
        Regions=[*E["Regions"], {"region_id": "C1", "jurisdiction": "C", "population": 500}],
        Funds=[{"fund_id": "JIF", "kind": "joint", "owner": "joint", "eligible": "jurisdiction=A|B"},
               E["Funds"][1]],
        Programs=[*E["Programs"],
                  # P4 is delivered in C1 only, which no fund pays for.
                  {"program_id": "P4", "regions": "C1", "cost_per_trainee": 1000,
                   "max_trainees": 10, "employment_rate": 0.9},
                  # P5 scales up P1, which has no Performance rows.
                  {"program_id": "P5", "regions": "A1", "cost_per_trainee": 1000,
                   "max_trainees": 10, "employment_rate": 0.9, "pilot_of": "P1"},
                  # P6 is worth more per EUR than anything, but needs 150k in one period
                  # and no period holds that much.
                  {"program_id": "P6", "regions": "A1", "cost_per_trainee": 1000,
                   "max_trainees": 200, "min_trainees": 150, "employment_rate": 1.0}])
    sol = solve_round(make_round(data))
    reasons = program_reasons(sol).set_index("program_id")
    assert list(reasons.index) == ["P1", "P2", "P3", "P4", "P5", "P6"]
    assert reasons.loc["P1", "status"] == "fully funded"
    assert "capped by capacity" in reasons.loc["P1", "reason"]
    assert reasons.loc["P2", "status"] == "funded partly"
    assert "budget ran out at the margin" in reasons.loc["P2", "reason"]
    assert "JIF 2026" in reasons.loc["P2", "reason"]
    # P3: 0.0003 against the 0.0006 the marginal JIF money buys (P2): 50% below.
    assert reasons.loc["P3", "status"] == "not funded"
    assert "is 50% below what the marginal money buys" in reasons.loc["P3", "reason"]
    assert reasons.loc["P4", "status"] == "not eligible"
    assert "JIF: its eligible filter excludes the program's regions" in reasons.loc["P4", "reason"]
    assert reasons.loc["P5", "status"] == "gated"
    assert "pilot P1 did not meet its targets" in reasons.loc["P5", "reason"]
    assert reasons.loc["P6", "status"] == "below minimum"
    assert "150 trainees" in reasons.loc["P6", "reason"]


def test_program_held_back_by_a_rule_names_it(make_round):
    sol = solve_round(make_round(variant(Rules=[R_B])))
    reasons = program_reasons(sol).set_index("program_id")
    assert reasons.loc["P1", "status"] == "funded partly"  # 42k of 80k: R-B holds A1 back
    assert "R-B" in reasons.loc["P1", "reason"]


def test_soft_rule_shortfall_is_shown(make_round):
    # Missing R-B costs 0.00001 per EUR, far less than the 0.0003 per EUR it would cost to keep:
    # the unconstrained optimum (A1 80k, B1 130k) misses it by 0.8 * 210k - 130k = 38k, which
    # is 38k / 210k = 0.181 of the share.
    soft = {**R_B, "penalty": 0.00001}
    sol = solve_round(make_round(variant(Rules=[soft])))
    # (abs 2: the tie-break may give up a hair of outcome, which rounding turns into one unit)
    assert sol.rules.loc[0, "shortfall"] == pytest.approx(38000.0, abs=2.0)
    table = soft_rule_table(sol)
    assert len(table) == 1
    assert table.loc[0, "shortfall"] == pytest.approx(38000.0, abs=2.0)
    assert table.loc[0, "shortfall_in_rule_unit"] == pytest.approx(38000 / 210000, rel=1e-4)
    assert table.loc[0, "sentence"].startswith("R-B is missed by EUR 3")


def test_kept_soft_rule_has_no_shortfall(make_round):
    soft = {**R_B, "penalty": 1.0}  # dearer to miss than to keep
    sol = solve_round(make_round(variant(Rules=[soft])))
    assert sol.optimal_objective == pytest.approx(138.6, rel=1e-7)
    assert soft_rule_table(sol).loc[0, "shortfall"] == 0.0
