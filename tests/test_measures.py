"""Each rule measure, worked by hand: the formulation's row, the report's achieved value and the
explanations' conversion into the rule's own unit agree with the arithmetic below.

The round: one period, one joint fund JIF with ample money, contributions A 75 and B 25
(c_A = 0.75, c_B = 0.25), regions A1 (jurisdiction A, 1,000 inhabitants) and B1 (B, 4,000).
Three programs at EUR 1,000 per trainee, each in one region, every trainee worth the same:

    P1  A1  industry  30 trainees  EUR 30,000
    P2  B1  digital   10 trainees  EUR 10,000
    P3  B1  care      30 trainees  EUR 30,000

Every rule is soft at a penalty of 1e-6 outcome value per EUR missed, far below the 5e-4 a EUR
buys, so every program is funded to capacity: EUR 70,000 in all, A 30,000, B 40,000. A soft
row's shadow price is then its penalty, so a price per step over the price per EUR is the EUR
the row's right-hand side moves per step of the rule's value.

- amount AMT: P2's money >= 25,000. Row S(P2) >= 25,000 (coefficient 0 on a reference).
  Achieved 10,000; missed by 15,000 EUR = 15,000 in its unit; priced per EUR 10,000.
- share SH: digital money >= 0.5 of all money. Row S(digital) - 0.5 S(all) >= 0.
  Achieved 10,000 / 70,000 = 1/7; missed by 0.5 x 70,000 - 10,000 = 25,000 EUR
  = 25,000 / 70,000 = 5/14 (= 0.5 - 1/7); a percentage point moves the rhs 0.01 x 70,000 = 700.
- share_within SW: per jurisdiction (both: the selection says nothing of jurisdictions),
  digital money >= 0.5 of the jurisdiction's money. Row B: S(digital in B) - 0.5 S(B) >= 0.
  Achieved 10,000 / 40,000 = 0.25; missed by 20,000 - 10,000 = 10,000 EUR = 10,000 / 40,000
  = 0.25; a point is 400 EUR. Row A: 0 - 0.5 S(A) >= 0: achieved 0 of 30,000; missed by
  15,000 EUR = 15,000 / 30,000 = 0.5; a point is 300 EUR.
- per_capita PC: per region, money >= EUR 50 per inhabitant. Rows S(A1) >= 50 x 1,000 = 50,000
  and S(B1) >= 50 x 4,000 = 200,000. Achieved 30 and 10; missed by 20,000 and 160,000 EUR
  = 20 and 40 per inhabitant; EUR 1 per inhabitant moves the rhs 1,000 and 4,000.
- contribution_share CS: per contributor j, JIF money delivered in j >= 1 x c_j of all JIF
  money. Rows S(A) - 0.75 S(JIF) >= 0 and S(B) - 0.25 S(JIF) >= 0. Achieved
  (30,000 / 70,000) / 0.75 = 4/7 and (40,000 / 70,000) / 0.25 = 16/7; A is missed by
  0.75 x 70,000 - 30,000 = 22,500 EUR = 22,500 / 52,500 = 3/7 (= 1 - 4/7); 0.01 of the value
  moves A's rhs 0.01 x 0.75 x 70,000 = 525 EUR. B is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
import pytest

from allocator.engine import solve_round
from allocator.explain import price_table, soft_rule_table
from allocator.formulation import rule_groups
from allocator.measures import MEASURES
from allocator.report import report_tables, write_report
from allocator.round import Measure
from allocator.template import write_round_workbook
from allocator.validate import load_round

PENALTY = 1e-6

ROUND = {
    "Round": {"round_id": "M1", "periods": "2026", "rounding_unit": 1},
    "Regions": [
        {"region_id": "A1", "jurisdiction": "A", "population": 1000},
        {"region_id": "B1", "jurisdiction": "B", "population": 4000},
    ],
    "Funds": [{"fund_id": "JIF", "kind": "joint", "owner": "joint"}],
    "Budgets": [{"fund_id": "JIF", "period": 2026, "amount": 1000000}],
    "Contributions": [
        {"fund_id": "JIF", "jurisdiction": "A", "amount": 75},
        {"fund_id": "JIF", "jurisdiction": "B", "amount": 25},
    ],
    "Programs": [
        {"program_id": "P1", "sector": "industry", "regions": "A1", "cost_per_trainee": 1000,
         "max_trainees": 30, "employment_rate": 0.5},
        {"program_id": "P2", "sector": "digital", "regions": "B1", "cost_per_trainee": 1000,
         "max_trainees": 10, "employment_rate": 0.5},
        {"program_id": "P3", "sector": "care", "regions": "B1", "cost_per_trainee": 1000,
         "max_trainees": 30, "employment_rate": 0.5},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}],
    "Rules": [
        {"rule_id": "AMT", "measure": "amount", "select": "program=P2", "op": ">=",
         "value": 25000, "penalty": PENALTY},
        {"rule_id": "SH", "measure": "share", "select": "sector=digital", "op": ">=",
         "value": 0.5, "penalty": PENALTY},
        {"rule_id": "SW", "measure": "share_within", "select": "sector=digital",
         "each": "jurisdiction", "op": ">=", "value": 0.5, "penalty": PENALTY},
        {"rule_id": "PC", "measure": "per_capita", "each": "region", "op": ">=", "value": 50,
         "penalty": PENALTY},
        {"rule_id": "CS", "measure": "contribution_share", "select": "fund=JIF", "op": ">=",
         "value": 1, "penalty": PENALTY},
    ],
}

# (rule_id, group, jurisdiction) -> the hand-worked figures of the docstring:
# coefficient on the reference total, rhs, selected EUR, reference EUR (None: no reference),
# achieved, shortfall in EUR, shortfall in the rule's unit, EUR of rhs per step of the value.
HAND = {
    ("AMT", "", ""): (0.0, 25000.0, 10000.0, None, 10000.0, 15000.0, 15000.0, 10000.0),
    ("SH", "", ""): (0.5, 0.0, 10000.0, 70000.0, 1 / 7, 25000.0, 5 / 14, 700.0),
    ("SW", "A", ""): (0.5, 0.0, 0.0, 30000.0, 0.0, 15000.0, 0.5, 300.0),
    ("SW", "B", ""): (0.5, 0.0, 10000.0, 40000.0, 0.25, 10000.0, 0.25, 400.0),
    ("PC", "A1", ""): (0.0, 50000.0, 30000.0, None, 30.0, 20000.0, 20.0, 1000.0),
    ("PC", "B1", ""): (0.0, 200000.0, 40000.0, None, 10.0, 160000.0, 40.0, 4000.0),
    ("CS", "", "A"): (0.75, 0.0, 30000.0, 70000.0, 4 / 7, 22500.0, 3 / 7, 525.0),
    ("CS", "", "B"): (0.25, 0.0, 40000.0, 70000.0, 16 / 7, 0.0, 0.0, None),
}


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("measures")
    rnd = load_round(write_round_workbook(tmp / "m1.xlsx", ROUND)).round
    solution = solve_round(rnd)
    return solution, tmp


def test_every_measure_is_worked_here():
    assert set(MEASURES) == {m.value for m in Measure}
    assert {key[0] for key in HAND} == {r["rule_id"] for r in ROUND["Rules"]}


def test_the_allocation_is_every_program_to_capacity(solved):
    solution, _ = solved
    money = solution.allocation.groupby("program_id")["amount"].sum().to_dict()
    assert money == {"P1": 30000, "P2": 10000, "P3": 30000}


def test_formulation_rows_are_the_hand_rows(solved):
    solution, _ = solved
    amounts = solution.rounded.units * float(solution.round.settings.rounding_unit)
    groups = {g.key: g for g in rule_groups(solution.round, solution.index)}
    assert set(groups) == set(HAND)
    for key, (factor, rhs, sel, ref, *_rest) in HAND.items():
        g = groups[key]
        assert (g.factor, g.rhs) == pytest.approx((factor, rhs)), key
        assert float(np.sum(amounts[g.sel])) == sel, key
        assert (float(np.sum(amounts[g.rel])) if len(g.rel) else None) == ref, key


def test_report_rules_sheet_shows_the_hand_achieved_values(solved):
    solution, _ = solved
    rules = report_tables(solution)["Rules"]
    assert len(rules) == len(HAND)
    for r in rules.to_dict("records"):
        key = (r["rule_id"], r["group"] or "", r["jurisdiction"] or "")
        _, _, sel, ref, achieved, short, *_ = HAND[key]
        assert r["achieved"] == pytest.approx(achieved, rel=1e-9), key
        assert r["selected_amount"] == sel, key
        assert r["shortfall"] == pytest.approx(short, abs=1e-6), key
        if ref is not None:
            assert r["reference_amount"] == ref, key


def test_explanations_read_shortfalls_in_the_rules_own_unit(solved):
    solution, _ = solved
    soft = soft_rule_table(solution)
    assert len(soft) == len(HAND)
    for r in soft.to_dict("records"):
        key = (r["rule_id"], r["group"], r["jurisdiction"])
        *_, short, in_unit, _ = HAND[key]
        assert r["shortfall"] == pytest.approx(short, abs=1e-6), key
        assert r["shortfall_in_rule_unit"] == pytest.approx(in_unit, rel=1e-9, abs=1e-12), key


def test_explanations_price_each_rule_per_step_of_its_own_unit(solved):
    solution, _ = solved
    prices = price_table(solution)
    rules = prices[prices["kind"] == "rule"]
    got = {(r["id"], r["group"], r["jurisdiction"]): r for r in rules.to_dict("records")}
    missed = {key for key, hand in HAND.items() if hand[-1] is not None}
    assert set(got) == missed
    for key in missed:
        r = got[key]
        # A missed soft row is priced at its penalty; per step = price x EUR of rhs per step.
        assert abs(r["shadow_price"]) == pytest.approx(PENALTY, rel=1e-6), key
        assert r["per_step"] / r["shadow_price"] == pytest.approx(HAND[key][-1], rel=1e-9), key
    sentences = {key[0]: got[key]["sentence"] for key in got}
    assert "from 25,000 to 35,000" in sentences["AMT"]
    assert "from 50% to 51%" in sentences["SH"] and "from 50% to 51%" in sentences["SW"]
    assert "from 50 to 51" in sentences["PC"]
    assert "from 1 to 1.01" in sentences["CS"]


def test_rules_sheet_formats_targets_in_each_measures_unit(solved):
    solution, tmp = solved
    ws = openpyxl.load_workbook(write_report(solution, Path(tmp) / "m1-report.xlsx"))["Rules"]
    header = [c.value for c in ws[1]]
    measure_col, target_col = header.index("measure") + 1, header.index("target") + 1
    percent = {}
    for row in range(2, ws.max_row + 1):
        measure = ws.cell(row, measure_col).value
        percent.setdefault(measure, set()).add("%" in ws.cell(row, target_col).number_format)
    # Shares read as percentages; money, money per inhabitant and multiples do not.
    assert percent == {"amount": {False}, "share": {True}, "share_within": {True},
                       "per_capita": {False}, "contribution_share": {False}}
