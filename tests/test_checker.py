"""The independent rule checker: hand-written allocations, hand-computed misses, and the engine.

One base round (unit 100, periods 2026-2027) and one allocation that keeps every rule; each
test changes one thing and states, worked out by hand in the comments, what must be missed
and by how much.

Base allocation, totals used below:
    by region   R1 5000  R2 3000  R3 7000       (jurisdiction A = R1+R2 = 8000, B = R3 = 7000)
    by fund     JIF 10000 (5000 per period)  PUB 1000  PERF 1000  CAR 3000
    by period   2026 8500  2027 6500          total 15000
    by program  P1 7000  P2 3000  P3 4000  P4 1000
    JIF by region   R1 5000  R2 2000  R3 3000;  JIF 2026: A 3000, B 2000;  2027: A 4000, B 1000
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import pytest

from allocator.checker import Violation, check_allocation, rule_values, soft_shortfalls
from allocator.round import Round

OUTCOMES = {"employment_rate": 0.7, "retention_rate": 0.6, "learning_gain": 0.3, "wage_gain": 0.1}

BASE: dict[str, Any] = {
    "Round": {"round_id": "CHK", "periods": "2026, 2027", "rounding_unit": 100},
    "Regions": [
        {"region_id": "R1", "name": "North", "jurisdiction": "A", "population": 1000, "rural": "yes"},
        {"region_id": "R2", "name": "City", "jurisdiction": "A", "population": 3000, "rural": "no"},
        {"region_id": "R3", "name": "East", "jurisdiction": "B", "population": 2000, "rural": "yes"},
    ],
    "Funds": [
        {"fund_id": "CAR", "kind": "employer", "owner": "B", "carry_over": "yes"},
        {"fund_id": "JIF", "kind": "joint", "owner": "joint"},
        {"fund_id": "PERF", "kind": "performance", "owner": "joint"},
        {"fund_id": "PUB", "kind": "public", "owner": "A", "cofinancing_cap": 0.5,
         "eligible": "jurisdiction=A"},
    ],
    "Budgets": [
        {"fund_id": "JIF", "period": "2026", "amount": 10000},
        {"fund_id": "JIF", "period": "2027", "amount": 10000},
        {"fund_id": "PUB", "period": "2026", "amount": 5000},  # PUB has nothing in 2027
        {"fund_id": "CAR", "period": "2026", "amount": 2000},
        {"fund_id": "CAR", "period": "2027", "amount": 1000},
        {"fund_id": "PERF", "period": "2026", "amount": 3000},
        {"fund_id": "PERF", "period": "2027", "amount": 3000},
    ],
    "Contributions": [
        {"fund_id": "JIF", "jurisdiction": "A", "amount": 6000},
        {"fund_id": "JIF", "jurisdiction": "B", "amount": 4000},
    ],
    "Programs": [
        {"program_id": "P1", "sector": "digital", "stage": "established", "regions": "R1, R2",
         "cost_per_trainee": 100, "max_trainees": 50, "targets": "rural, youth", **OUTCOMES},
        {"program_id": "P2", "sector": "green", "stage": "pilot", "regions": "R3",
         "cost_per_trainee": 200, "max_trainees": 20, "min_trainees": 10, "start_period": "2026",
         "end_period": "2026", "targets": "women", **OUTCOMES},
        {"program_id": "P3", "sector": "care", "stage": "scale_up", "regions": "R2, R3",
         "cost_per_trainee": 100, "max_trainees": 30, "targets": "rural", "pilot_of": "P2",
         **OUTCOMES},
        {"program_id": "P4", "sector": "digital", "stage": "established", "regions": "R3",
         "cost_per_trainee": 50, "max_trainees": 40, "targets": "youth, migrants", **OUTCOMES},
    ],
    "Performance": [
        {"program_id": "P1", "metric": "placements", "target": 10, "achieved": 12},
        {"program_id": "P2", "metric": "placements", "target": 10, "achieved": 10},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}, {"metric": "wage_gain", "weight": 2}],
}

# (program, region, fund, period, amount): keeps every constraint of BASE (see module docstring)
GOOD = [
    ("P1", "R1", "JIF", "2026", 2000),
    ("P1", "R2", "PUB", "2026", 1000),  # PUB pays 1000 of P1's 4000 in 2026: cap 50% holds
    ("P1", "R2", "JIF", "2026", 1000),
    ("P2", "R3", "JIF", "2026", 2000),  # P2 2026: 3000, between min 10x200 and max 20x200
    ("P2", "R3", "PERF", "2026", 1000),  # P2 met its targets (10/10)
    ("P3", "R3", "CAR", "2026", 1500),
    ("P1", "R1", "JIF", "2027", 3000),
    ("P3", "R2", "JIF", "2027", 1000),
    ("P3", "R3", "CAR", "2027", 1500),  # CAR: 3000 spent of 2000+1000 carried; 2027 alone > 1000
    ("P4", "R3", "JIF", "2027", 1000),
]


@pytest.fixture
def build(make_round: Callable[[Mapping[str, Any]], Round]) -> Callable[..., Round]:
    """BASE with sheets replaced, or rows changed via a function of the sheets dict."""

    def make(edit: Callable[[dict[str, Any]], None] | None = None, **sheets: Any) -> Round:
        data = copy.deepcopy(BASE)
        data.update(sheets)
        if edit is not None:
            edit(data)
        return make_round(data)

    return make


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["program_id", "region_id", "fund_id", "period", "amount"])


def replace(rows: list[tuple], old: tuple, new: tuple | None) -> list[tuple]:
    """GOOD with the row whose key is `old` (p, r, f, t) replaced by `new` (or removed)."""
    out = [row for row in rows if row[:4] != old]
    assert len(out) == len(rows) - 1, f"no row {old}"
    return [*out, new] if new is not None else out


def kinds(violations: list[Violation]) -> list[str]:
    return sorted(v.kind for v in violations)


def rule(rule_id: str, measure: str, op: str, value: float, select: str = "", each: str = "",
         relative_to: str = "", penalty: float | None = None) -> dict[str, Any]:
    row = {"rule_id": rule_id, "measure": measure, "select": select, "each": each,
           "relative_to": relative_to, "op": op, "value": value}
    if penalty is not None:
        row["penalty"] = penalty
    return row


# --- a valid allocation -----------------------------------------------------------------------
def test_valid_allocation_has_no_violation(build):
    rnd = build()
    assert check_allocation(rnd, frame(GOOD)) == []


def test_period_typed_as_number_and_extra_columns_are_accepted(build):
    rnd = build()
    alloc = frame(GOOD)
    alloc["period"] = alloc["period"].astype(int)
    alloc["trainees"] = 1.0
    assert check_allocation(rnd, alloc) == []


def test_missing_column_is_an_error(build):
    with pytest.raises(ValueError, match="amount"):
        check_allocation(build(), frame(GOOD).drop(columns="amount"))


# --- eligibility -----------------------------------------------------------------------------
def test_wrong_region_is_ineligible(build):
    # P4 is delivered in R3 only; moving its 1000 to R1 breaks nothing else.
    alloc = replace(GOOD, ("P4", "R3", "JIF", "2027"), ("P4", "R1", "JIF", "2027", 1000))
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["eligibility"]
    assert found[0].where == "P4 / R1 / JIF / 2027"
    assert found[0].amount == 1000
    assert "R1 is not one of P4's regions" in found[0].message


def test_fund_filter_excludes_region(build):
    # PUB (eligible: jurisdiction=A) may not pay P2 in R3; 500 keeps PUB under its 50% cap.
    alloc = [*GOOD, ("P2", "R3", "PUB", "2026", 500)]
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["eligibility"]
    assert "eligible filter 'jurisdiction=A' excludes its region" in found[0].message
    assert found[0].amount == 500


def test_fund_filter_on_program_attribute(build):
    def edit(data):
        data["Funds"][1]["eligible"] = "sector!=green"  # JIF no longer pays P2
    found = check_allocation(build(edit), frame(GOOD))
    assert kinds(found) == ["eligibility"]
    assert found[0].where == "P2 / R3 / JIF / 2026" and found[0].amount == 2000


def test_inactive_period_is_ineligible(build):
    # P2 runs in 2026 only; 2000 in 2027 respects its minimum and capacity.
    alloc = [*GOOD, ("P2", "R3", "JIF", "2027", 2000)]
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["eligibility"]
    assert "P2 runs only in 2026, not in 2027" in found[0].message


def test_fund_without_budget_is_ineligible_and_over_budget(build):
    # PUB has no Budgets row for 2027: spending there is both ineligible and over the budget of 0.
    alloc = [*GOOD, ("P1", "R1", "PUB", "2027", 500)]
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["budget", "eligibility"]
    elig = next(v for v in found if v.kind == "eligibility")
    assert "PUB has no budget in 2027" in elig.message
    budget = next(v for v in found if v.kind == "budget")
    assert (budget.where, budget.amount) == ("PUB 2027", 500)


def test_carry_over_fund_with_only_later_budget_is_ineligible_earlier(build):
    def edit(data):
        data["Budgets"] = [b for b in data["Budgets"] if b["fund_id"] != "CAR"]
        data["Budgets"].append({"fund_id": "CAR", "period": "2027", "amount": 3000})
    found = check_allocation(build(edit), frame(GOOD))
    # CAR 2026 has nothing, not even carried over: the 1500 in 2026 is ineligible and over budget
    # (cumulative 1500 > 0 in 2026); by 2027 cumulative 3000 <= 3000 holds.
    assert kinds(found) == ["budget", "eligibility"]
    assert {v.where for v in found} == {"P3 / R3 / CAR / 2026", "CAR up to 2026"}


# --- gating ----------------------------------------------------------------------------------
def test_performance_fund_needs_met_targets(build):
    # P4 has no Performance rows, so the performance fund may not pay it.
    alloc = [*GOOD, ("P4", "R3", "PERF", "2027", 500)]
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["gating"]
    assert "no Performance rows" in found[0].message and found[0].amount == 500


def test_performance_fund_score_below_one(build):
    def edit(data):
        data["Performance"][1]["achieved"] = 9  # P2 scores 0.9
    alloc = replace(GOOD, ("P2", "R3", "PERF", "2026"), None)  # P2 keeps its minimum 2000
    alloc = [row for row in alloc if row[0] != "P3"]  # P3 scales up P2: leave it out here
    found = check_allocation(build(edit), frame(alloc))
    assert found == []  # P2 itself is not gated; it only may not take PERF money
    found = check_allocation(build(edit), frame([*alloc, ("P2", "R3", "PERF", "2026", 100)]))
    assert kinds(found) == ["gating"] and "score 0.90 < 1" in found[0].message


def test_scale_up_needs_its_pilot_to_meet_targets(build):
    def edit(data):
        data["Performance"][1]["achieved"] = 9  # pilot P2 now scores 0.9
    # Without P2's PERF money only P3's three rows are gated.
    alloc = replace(GOOD, ("P2", "R3", "PERF", "2026"), None)  # P2 keeps its minimum 2000
    found = check_allocation(build(edit), frame(alloc))
    assert kinds(found) == ["gating"] * 3
    assert {v.where for v in found} == {"P3 / R3 / CAR / 2026", "P3 / R2 / JIF / 2027",
                                        "P3 / R3 / CAR / 2027"}
    assert sum(v.amount for v in found) == 4000
    assert all("its pilot P2 has not met its targets" in v.message for v in found)


# --- budgets, capacity, minimum, co-financing --------------------------------------------------
def test_budget_overspent(build):
    def edit(data):
        data["Budgets"][0]["amount"] = 4000  # JIF 2026 spends 5000
    found = check_allocation(build(edit), frame(GOOD))
    assert kinds(found) == ["budget"]
    assert (found[0].where, found[0].amount) == ("JIF 2026", 1000)
    assert "5,000 EUR" in found[0].message and "4,000 EUR" in found[0].message


def test_budget_exactly_spent_is_fine(build):
    def edit(data):
        data["Budgets"][0]["amount"] = 5000
    assert check_allocation(build(edit), frame(GOOD)) == []


def test_carry_over_overspent_cumulatively(build):
    # CAR: 1500 + 1600 = 3100 > 2000 + 1000; P3 2027 stays within its capacity (2600 <= 3000).
    alloc = replace(GOOD, ("P3", "R3", "CAR", "2027"), ("P3", "R3", "CAR", "2027", 1600))
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["budget"]
    assert (found[0].where, found[0].amount) == ("CAR up to 2027", 100)


def test_without_carry_over_the_same_spending_is_over_budget(build):
    def edit(data):
        data["Funds"][0]["carry_over"] = "no"
    found = check_allocation(build(edit), frame(GOOD))
    assert kinds(found) == ["budget"]
    assert (found[0].where, found[0].amount) == ("CAR 2027", 500)  # 1500 against 1000


def test_capacity_exceeded(build):
    # P1 2026: 4000 + 1500 = 5500 > 50 x 100.
    alloc = replace(GOOD, ("P1", "R2", "JIF", "2026"), ("P1", "R2", "JIF", "2026", 2500))
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["capacity"]
    assert (found[0].where, found[0].amount) == ("P1 2026", 500)


def test_below_minimum_but_positive(build):
    # P2 2026: 500 + 1000 = 1500 < 10 x 200.
    alloc = replace(GOOD, ("P2", "R3", "JIF", "2026"), ("P2", "R3", "JIF", "2026", 500))
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["minimum"]
    assert (found[0].where, found[0].amount) == ("P2 2026", 500)


def test_nothing_is_fine_for_an_all_or_nothing_program(build):
    alloc = [row for row in GOOD if row[0] not in ("P2", "P3")]  # P3 would need nothing either
    assert check_allocation(build(), frame(alloc)) == []


def test_cofinancing_cap_exceeded(build):
    # P1 2026: JIF 500 (R1) + PUB 2500 + JIF 1000 = 4000; PUB may pay 50% = 2000.
    alloc = replace(GOOD, ("P1", "R1", "JIF", "2026"), ("P1", "R1", "JIF", "2026", 500))
    alloc = replace(alloc, ("P1", "R2", "PUB", "2026"), ("P1", "R2", "PUB", "2026", 2500))
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["cofinancing"]
    assert (found[0].where, found[0].amount) == ("PUB / P1 2026", 500)


# --- amounts and ids -------------------------------------------------------------------------
def test_amount_not_a_multiple_of_the_rounding_unit(build):
    alloc = replace(GOOD, ("P1", "R1", "JIF", "2026"), ("P1", "R1", "JIF", "2026", 2050))
    found = check_allocation(build(), frame(alloc))
    assert kinds(found) == ["rounding"]
    assert found[0].amount == pytest.approx(50)


def test_negative_amount(build):
    found = check_allocation(build(), frame([*GOOD, ("P1", "R1", "JIF", "2027", -100)]))
    assert kinds(found) == ["negative"]


@pytest.mark.parametrize("row", [("P9", "R1", "JIF", "2026", 100), ("P1", "R9", "JIF", "2026", 100),
                                 ("P1", "R1", "XX", "2026", 100), ("P1", "R1", "JIF", "2031", 100)])
def test_unknown_ids(build, row):
    found = check_allocation(build(), frame([*GOOD, row]))
    assert kinds(found) == ["unknown_id"]


# --- rules: every measure, with each and relative_to, and all three ops ------------------------
# (rule, {where: amount missed}) evaluated on GOOD, worked out by hand from the module docstring.
RULE_CASES = [
    # amount: JIF money = 10000
    (rule("R", "amount", ">=", 10000, "fund=JIF"), {}),
    (rule("R", "amount", ">=", 11000, "fund=JIF"), {"rule R": 1000}),
    (rule("R", "amount", "<=", 9000, "fund=JIF"), {"rule R": 1000}),
    (rule("R", "amount", "=", 10000, "fund=JIF"), {}),
    (rule("R", "amount", "=", 12000, "fund=JIF"), {"rule R": 2000}),
    # amount, each period: JIF 5000 in each
    (rule("R", "amount", "<=", 4000, "fund=JIF", each="period"),
     {"rule R group 2026": 1000, "rule R group 2027": 1000}),
    # each jurisdiction over rural regions only: A -> R1 = 5000, B -> R3 = 7000
    (rule("R", "amount", ">=", 6000, "rural=yes", each="jurisdiction"), {"rule R group A": 1000}),
    # each target over programs with target=rural|women (P1, P2, P3): groups are their tags
    # rural (P1+P3 = 11000), women (P2 = 3000) and youth (selected P1 only = 7000; P4 fails select).
    (rule("R", "amount", ">=", 4000, "target=rural|women", each="target"), {"rule R group women": 1000}),
    (rule("R", "amount", "<=", 10000, "target=rural|women", each="target"), {"rule R group rural": 1000}),
    # share of all money (15000): B gets 7000
    (rule("R", "share", ">=", 0.6, "jurisdiction=B"), {"rule R": 2000}),
    (rule("R", "share", "<=", 0.3, "jurisdiction=B"), {"rule R": 2500}),
    (rule("R", "share", "=", 0.3, "jurisdiction=B"), {"rule R": 2500}),
    # share relative_to JIF (10000), each region: R1 5000, R2 2000, R3 3000 -> 30% = 3000
    (rule("R", "share", ">=", 0.3, "fund=JIF", each="region", relative_to="fund=JIF"),
     {"rule R group R2": 1000}),
    # the group narrows the selection only: B's JIF per period 2000, 1000 against 40% of 10000
    (rule("R", "share", ">=", 0.4, "fund=JIF; jurisdiction=B", each="period", relative_to="fund=JIF"),
     {"rule R group 2026": 2000, "rule R group 2027": 3000}),
    # share_within: rural targets in each jurisdiction; A 8000 of 8000, B 3000 (P3) of 7000
    (rule("R", "share_within", ">=", 0.6, "target=rural", each="jurisdiction"), {"rule R group B": 1200}),
    (rule("R", "share_within", "<=", 0.5, "target=rural", each="jurisdiction"), {"rule R group A": 4000}),
    (rule("R", "share_within", "=", 1, "target=rural", each="jurisdiction"), {"rule R group B": 4000}),
    # share_within, select on the group's own dimension: the reference is all of the jurisdiction.
    # rural regions: A -> R1 5000 of A's 8000; B -> R3 7000 of 7000. 75% of 8000 = 6000.
    (rule("R", "share_within", ">=", 0.75, "rural=yes", each="jurisdiction"), {"rule R group A": 1000}),
    # share_within with relative_to: JIF share of each period's P1 money: 2026 3000 of 4000, 2027 all
    (rule("R", "share_within", ">=", 0.9, "program=P1; fund=JIF", each="period", relative_to="program=P1"),
     {"rule R group 2026": 600}),
    # per_capita: A has 8000 for 4000 inhabitants
    (rule("R", "per_capita", ">=", 2, "jurisdiction=A"), {}),
    (rule("R", "per_capita", ">=", 2.5, "jurisdiction=A"), {"rule R": 2000}),
    # each region: R1 5000/1000, R2 3000/3000, R3 7000/2000; <= 3 per inhabitant
    (rule("R", "per_capita", "<=", 3, each="region"), {"rule R group R1": 2000, "rule R group R3": 1000}),
    # no region condition, no region-level each: all 6000 inhabitants; JIF 10000
    (rule("R", "per_capita", "=", 2, "fund=JIF"), {"rule R": 2000}),
    (rule("R", "per_capita", ">=", 1, "fund=JIF", each="period"),
     {"rule R group 2026": 1000, "rule R group 2027": 1000}),
    # each jurisdiction with a region condition: rural A = R1 (1000 people, 5000), B = R3 (2000, 7000)
    (rule("R", "per_capita", ">=", 4, "rural=yes", each="jurisdiction"), {"rule R group B": 1000}),
    # contribution_share of JIF (A 60%, B 40%): A gets 7000, B 3000 of 10000
    (rule("R", "contribution_share", ">=", 1, "fund=JIF"), {"rule R jurisdiction B": 1000}),
    (rule("R", "contribution_share", ">=", 0.9, "fund=JIF"), {"rule R jurisdiction B": 600}),
    (rule("R", "contribution_share", "<=", 1.1, "fund=JIF"), {"rule R jurisdiction A": 400}),
    # each period: 2026 A 3000 / B 2000 of 5000 (exactly 60/40); 2027 A 4000 / B 1000
    (rule("R", "contribution_share", ">=", 1, "fund=JIF", each="period"),
     {"rule R group 2027 / jurisdiction B": 1000}),
    (rule("R", "contribution_share", "<=", 1, "fund=JIF", each="period"),
     {"rule R group 2027 / jurisdiction A": 1000}),
    (rule("R", "contribution_share", "=", 1, "fund=JIF", each="period"),
     {"rule R group 2027 / jurisdiction A": 1000, "rule R group 2027 / jurisdiction B": 1000}),
]


@pytest.mark.parametrize(("rule_row", "expected"), RULE_CASES,
                         ids=[f"{r['measure']}{r['op']}{r['value']}-{r['each'] or 'all'}-{i}"
                              for i, (r, _) in enumerate(RULE_CASES)])
def test_rule_measures(build, rule_row, expected):
    rnd = build(Rules=[rule_row])
    found = check_allocation(rnd, frame(GOOD), tolerance=0)
    assert all(v.kind == "rule" for v in found)
    assert {v.where: v.amount for v in found} == pytest.approx(expected)
    # With the default tolerance (100 per entering row, at most 1000), a miss larger than it
    # is still reported; smaller ones are put down to rounding.
    table = rule_values(rnd, frame(GOOD))
    allowed = {_where(row): 100 * min(row.rows, 10) for row in table.itertuples()}
    found = check_allocation(rnd, frame(GOOD))
    assert {v.where for v in found} == {w for w, miss in expected.items() if miss > allowed[w]}
    assert len(found) >= len(expected) - 1  # the cases are chosen to be mostly beyond rounding


def _where(row) -> str:
    text = f"rule {row.rule_id}" + (f" group {row.group}" if row.group else "")
    if row.jurisdiction:
        text += (" / " if row.group else " ") + f"jurisdiction {row.jurisdiction}"
    return text


def test_rule_message_states_target_achieved_and_miss(build):
    rnd = build(Rules=[rule("R-B", "share", ">=", 0.5, "jurisdiction=B")])
    [v] = check_allocation(rnd, frame(GOOD), tolerance=0)
    assert "7,000 EUR" in v.message and "46.6667%" in v.message and "50.0000%" in v.message
    assert "missed by 500 EUR" in v.message


def test_rule_values_table(build):
    rnd = build(Rules=[rule("R-JR", "contribution_share", ">=", 0.9, "fund=JIF"),
                       rule("R-PC", "per_capita", "<=", 3, each="region")])
    table = rule_values(rnd, frame(GOOD)).set_index(["rule_id", "group", "jurisdiction"])
    a = table.loc[("R-JR", "", "A")]
    assert (a.lhs, a.rhs, a.achieved, a.target) == (7000, pytest.approx(5400), pytest.approx(7 / 6), 0.9)
    b = table.loc[("R-JR", "", "B")]
    assert (b.lhs, b.rhs, b.missed) == (3000, pytest.approx(3600), pytest.approx(600))
    r1 = table.loc[("R-PC", "R1", "")]
    assert (r1.achieved, r1.population, r1.rhs, r1.rows) == (5, 1000, 3000, 2)


def test_default_tolerance_absorbs_rounding_only(build):
    # JIF = 10000 against "= 10050": half a unit, unavoidable with unit 100 -> not a violation
    # by default (3..10 rows enter); with tolerance 0 it is missed by 50.
    rnd = build(Rules=[rule("R", "amount", "=", 10050, "fund=JIF")])
    assert check_allocation(rnd, frame(GOOD)) == []
    [v] = check_allocation(rnd, frame(GOOD), tolerance=0)
    assert v.amount == pytest.approx(50)
    # the default is one unit per entering row (6 JIF rows), never more than 10 units
    table = rule_values(rnd, frame(GOOD))
    assert table.loc[0, "rows"] == 6 and table.loc[0, "tolerance"] == pytest.approx(600, abs=0.1)
    everything = rule_values(build(Rules=[rule("R", "amount", ">=", 0)]), frame([*GOOD, *GOOD]))
    assert everything.loc[0, "rows"] == 20
    assert everything.loc[0, "tolerance"] == pytest.approx(1000, abs=0.1)


def test_soft_rules_are_not_violations_but_shortfalls(build):
    rnd = build(Rules=[
        rule("S", "contribution_share", ">=", 1, "fund=JIF", each="period", penalty=5),
        rule("T", "amount", ">=", 11000, "fund=JIF", penalty=1),
        rule("H", "amount", ">=", 11000, "fund=JIF"),
    ])
    found = check_allocation(rnd, frame(GOOD))
    assert [v.where for v in found] == ["rule H"]
    assert soft_shortfalls(rnd, frame(GOOD)) == {
        ("S", "2026 / A"): 0.0, ("S", "2026 / B"): 0.0, ("S", "2027 / A"): 0.0,
        ("S", "2027 / B"): pytest.approx(1000), ("T", ""): pytest.approx(1000)}


def test_unknown_rows_do_not_count_in_rules(build):
    rnd = build(Rules=[rule("R", "amount", "<=", 10000, "fund=JIF")])
    found = check_allocation(rnd, frame([*GOOD, ("P9", "R1", "JIF", "2026", 5000)]))
    assert kinds(found) == ["unknown_id"]


# --- the engine's allocations pass the checker -------------------------------------------------
def _engine_rounds() -> list[dict[str, Any]]:
    with_rules = {"Rules": [
        rule("R-RUR", "share_within", ">=", 0.6, "target=rural", each="jurisdiction"),
        rule("R-JR", "contribution_share", ">=", 0.9, "fund=JIF"),
        rule("R-PC", "per_capita", ">=", 0.5, each="region"),
        rule("R-P4", "amount", "<=", 1500, "program=P4"),
        rule("R-JIF", "share", ">=", 0.1, "fund=JIF", each="region", relative_to="fund=JIF"),
        rule("R-SOFT", "amount", ">=", 40000, penalty=0.01),
    ]}
    odd_unit = {"Round": {"round_id": "CHK2", "periods": "2026, 2027", "rounding_unit": 70}, **with_rules}
    return [{}, with_rules, odd_unit]


@pytest.mark.parametrize("changes", _engine_rounds(), ids=["plain", "rules", "unit70"])
def test_engine_allocation_passes(build, changes):
    from allocator.engine import solve_round

    rnd = build(**changes)
    solution = solve_round(rnd)
    alloc = solution.allocation
    assert alloc["amount"].sum() > 0
    assert check_allocation(rnd, alloc) == []
    # The engine's own account of each rule row agrees with the independent one.
    if len(solution.rules):
        ours = rule_values(rnd, alloc)
        assert len(ours) == len(solution.rules)
        for (_, mine), (_, theirs) in zip(ours.iterrows(), solution.rules.iterrows(), strict=True):
            assert (mine.rule_id, mine.group, mine.jurisdiction) == \
                (theirs.rule_id, theirs.group, theirs.jurisdiction)
            gap = mine.lhs - mine.rhs
            slack = {">=": gap, "<=": -gap, "=": -abs(gap)}[mine.op]
            assert slack == pytest.approx(theirs.slack, abs=1e-6)
            assert mine.achieved == pytest.approx(theirs.achieved)


def test_engine_allocation_tampered_is_caught(build):
    from allocator.engine import solve_round

    rnd = build()
    alloc = solve_round(rnd).allocation.copy()
    alloc.loc[alloc.index[0], "amount"] += 100_000  # more than any fund's budget in total
    assert "budget" in kinds(check_allocation(rnd, alloc))


# --- filter semantics, through the selected money of an amount rule ----------------------------
@pytest.mark.parametrize(("select", "expected"), [
    ("target!=youth", 7000),  # tagged with neither: P2, P3
    ("target=YOUTH|women", 11000),  # tags compare case-insensitively: P1, P2, P4
    ("priority=high", 11000),  # extra Programs column, case-insensitive value: P1, P3
    ("program.priority!=high", 4000),  # qualified extra column; P2 and P4 (blank) pass
    ("region.name=north", 5000),  # R1
    ("rural=no", 3000),  # R2
    ("kind=Joint; period=2027", 5000),
    ("owner=B", 3000),  # CAR
    ("stage=scale_up|pilot; jurisdiction=B", 6000),  # P2 3000 + P3 in R3 3000
    ("pilot_of=P2", 4000),
    ("carry_over=yes", 3000),
])
def test_filter_matching(build, select, expected):
    def edit(data):
        data["Programs"][0]["priority"] = "high"
        data["Programs"][1]["priority"] = "low"
        data["Programs"][2]["priority"] = "High"
    rnd = build(edit, Rules=[rule("R", "amount", ">=", 0, select)])
    assert rule_values(rnd, frame(GOOD)).loc[0, "lhs"] == expected


def test_each_on_a_boolean_and_an_extra_column(build):
    def edit(data):
        data["Programs"][0]["priority"] = "high"
        data["Programs"][2]["priority"] = "High"
    rnd = build(edit, Rules=[rule("B", "amount", ">=", 0, each="rural"),
                             rule("X", "amount", ">=", 0, each="priority")])
    table = rule_values(rnd, frame(GOOD)).set_index(["rule_id", "group"])
    assert table.loc[("B", "yes"), "lhs"] == 12000 and table.loc[("B", "no"), "lhs"] == 3000
    assert list(table.loc["X"].index) == ["high"]  # blank is not a group
    assert table.loc[("X", "high"), "lhs"] == 11000


# --- engine disagreement found by the checker --------------------------------------------------
def test_engine_share_within_with_select_on_the_group_dimension(build):
    from allocator.engine import solve_round

    # "In each jurisdiction, at least 90% of the money goes to rural regions": feasible (A can
    # fund R1 only), so the engine's allocation must keep it.
    rnd = build(Rules=[rule("RW", "share_within", ">=", 0.9, "rural=yes", each="jurisdiction")])
    alloc = solve_round(rnd).allocation
    assert check_allocation(rnd, alloc) == []


def test_checker_does_not_use_the_engines_modelling_code():
    # Independence is the point: only data classes may come from the engine.
    import ast
    from pathlib import Path

    import allocator.checker

    tree = ast.parse(Path(allocator.checker.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("allocator"):
            imported |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if a.name.startswith("allocator")}
    allowed_filters = {"allocator.filters.Filter", "allocator.filters.Condition"}
    assert {i for i in imported if i.startswith("allocator.filters")} <= allowed_filters
    assert {i.rsplit(".", 1)[0] for i in imported} <= {"allocator.filters", "allocator.round"}
