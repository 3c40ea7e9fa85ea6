"""Reasons that are true (issue 20, item 2): each program's reason in the Programs sheet names
the constraint that actually holds it back, and unspent budget above 5% names its main cause.
Each round below is built so that one cause is the only one; the numbers are worked by hand."""

from __future__ import annotations

import copy

import pytest

from allocator.engine import solve_round
from allocator.explain import program_reasons, unspent_note
from allocator.template import write_round_workbook
from allocator.validate import load_round

# One region, one fund, two programs: P buys 1.0 per trainee at EUR 1,000, Q 0.5.
BASE = {
    "Round": {"round_id": "WHY", "periods": "2026", "rounding_unit": 1},
    "Regions": [{"region_id": "A1", "jurisdiction": "A", "population": 1000}],
    "Funds": [{"fund_id": "F", "kind": "public", "owner": "A"}],
    "Budgets": [{"fund_id": "F", "period": "2026", "amount": 1_000_000}],
    "Programs": [
        {"program_id": "P", "sector": "care", "regions": "A1", "cost_per_trainee": 1000,
         "max_trainees": 50, "employment_rate": 1.0},
        {"program_id": "Q", "sector": "care", "regions": "A1", "cost_per_trainee": 1000,
         "max_trainees": 50, "employment_rate": 0.5},
    ],
    "Objective": [{"metric": "employment_rate", "weight": 1}],
}


def _solve(tmp_path, change):
    data = copy.deepcopy(BASE)
    change(data)
    rnd = load_round(write_round_workbook(tmp_path / "r.xlsx", data)).round
    sol = solve_round(rnd)
    reasons = {r.program_id: (r.status, r.reason) for r in program_reasons(sol).itertuples()}
    return sol, reasons


def _program(data, pid):
    return next(p for p in data["Programs"] if p["program_id"] == pid)


# --- one test per cause of a program's reason ----------------------------------------------------
def test_capacity_is_named_when_it_is_the_limit(tmp_path):
    """Budget EUR 1,000,000 against EUR 100,000 of capacity: both programs at max_trainees."""
    sol, why = _solve(tmp_path, lambda d: None)
    assert why["P"][0] == "fully funded" and "capped by capacity: 50 trainees" in why["P"][1]
    assert why["Q"][0] == "fully funded" and "capped by capacity" in why["Q"][1]
    assert unspent_note(sol) == ("EUR 900,000 (90%) unspent: the programs fund F can pay are at "
                                 "capacity (max_trainees: P, Q)")


def test_budget_is_named_when_it_is_spent_on_better_programs(tmp_path):
    """Budget EUR 50,000: P (1.0 per trainee) takes it all; Q buys half as much per EUR."""
    def change(d):
        d["Budgets"][0]["amount"] = 50_000
    sol, why = _solve(tmp_path, change)
    assert why["Q"][0] == "not funded"
    assert "F 2026 fully spent" in why["Q"][1]
    assert "ties" not in why["Q"][1]
    assert "rule" not in why["Q"][1] and "cap" not in why["Q"][1]
    assert unspent_note(sol) is None


def test_budget_is_named_for_a_program_funded_partly(tmp_path):
    """Budget EUR 70,000: P 50,000, Q the remaining 20,000 (20 of 50 trainees)."""
    def change(d):
        d["Budgets"][0]["amount"] = 70_000
    _, why = _solve(tmp_path, change)
    assert why["Q"] == ("funded partly", "20 of 50 trainees in 2026: budget ran out at the margin "
                                         "(F 2026 fully spent)")


def test_a_rule_is_named_when_it_holds_the_program_back(tmp_path):
    """Rule R-Q: Q gets at most EUR 0; the budget is ample, so only the rule holds Q back."""
    def change(d):
        d["Rules"] = [{"rule_id": "R-Q", "measure": "amount", "select": "program=Q", "op": "<=",
                       "value": 0}]
    _, why = _solve(tmp_path, change)
    assert why["Q"][0] == "not funded"
    assert "held back by rule(s) R-Q" in why["Q"][1]
    assert "budget" not in why["Q"][1]
    assert why["P"][0] == "fully funded"


def test_a_rule_on_all_money_is_named_and_is_the_cause_of_unspent_budget(tmp_path):
    """Rule R-ALL: at most EUR 20,000 in all; P takes it (20 trainees), Q gets nothing."""
    def change(d):
        d["Rules"] = [{"rule_id": "R-ALL", "measure": "amount", "op": "<=", "value": 20_000}]
    sol, why = _solve(tmp_path, change)
    assert why["P"] == ("funded partly", "20 of 50 trainees in 2026: held back by rule(s) R-ALL")
    assert "held back by rule(s) R-ALL" in why["Q"][1]
    assert unspent_note(sol) == ("EUR 980,000 (98%) unspent: rule(s) R-ALL hold back the "
                                 "programs fund F can pay")


def test_a_floor_that_pulls_money_towards_a_program_is_not_its_reason(tmp_path):
    """R-Q >= 10,000 for Q with a budget of 50,000: the floor gives Q money; P is held back by
    the budget (not by the rule that only takes money away from it)."""
    def change(d):
        d["Budgets"][0]["amount"] = 50_000
        d["Rules"] = [{"rule_id": "R-Q", "measure": "amount", "select": "program=Q", "op": ">=",
                       "value": 10_000}]
    _, why = _solve(tmp_path, change)
    assert why["P"] == ("funded partly", "40 of 50 trainees in 2026: budget ran out at the "
                                         "margin (F 2026 fully spent)")
    assert why["Q"][0] == "funded partly"
    assert why["Q"][1].startswith("10 of 50 trainees in 2026:")
    assert "kept at the level rule(s) R-Q require" in why["Q"][1]
    assert "held back by rule" not in why["Q"][1]


def test_no_eligible_fund_is_named(tmp_path):
    def change(d):
        d["Funds"][0]["eligible"] = "program=P"
    _, why = _solve(tmp_path, change)
    assert why["Q"] == ("not eligible", "not eligible for any fund (F: its eligible filter "
                                        "excludes the program)")


def test_caps_that_block_a_program_are_named(tmp_path):
    """F may pay 60% of a program's cost and is the only fund: nothing can ever be funded."""
    def change(d):
        d["Funds"][0]["cofinancing_cap"] = 0.6
    sol, why = _solve(tmp_path, change)
    for pid in ("P", "Q"):
        assert why[pid][0] == "blocked by caps"
        assert why[pid][1].startswith(f"program {pid} can never be funded in 2026: the "
                                      "co-financing caps of its eligible funds add up to 60% (F 60%)")
    assert "ties with the marginal money" not in str(why)
    assert unspent_note(sol) == ("EUR 1,000,000 (100%) unspent: fund F's budget can reach no "
                                 "fundable program (every eligible program is blocked by "
                                 "co-financing caps)")


def test_a_cofinancing_cap_that_limits_a_fund_is_named(tmp_path):
    """G (cap 50%, EUR 1,000,000) and F (EUR 10,000) may pay P only: G pays at most as much as
    F, so P gets 20,000 and G keeps 990,000."""
    def change(d):
        d["Funds"] = [{"fund_id": "F", "kind": "public", "owner": "A"},
                      {"fund_id": "G", "kind": "public", "owner": "A", "cofinancing_cap": 0.5}]
        d["Budgets"] = [{"fund_id": "F", "period": "2026", "amount": 10_000},
                        {"fund_id": "G", "period": "2026", "amount": 1_000_000}]
        d["Programs"] = [_program(d, "P")]
    sol, why = _solve(tmp_path, change)
    assert why["P"] == ("funded partly", "20 of 50 trainees in 2026: budget ran out at the margin "
                                         "(F 2026 fully spent); co-financing cap of G")
    assert unspent_note(sol) == ("EUR 990,000 (98%) unspent: co-financing caps of G limit what "
                                 "fund G can pay")


def test_performance_gate_is_named(tmp_path):
    def change(d):
        d["Funds"][0]["kind"] = "performance"
        d["Performance"] = [{"program_id": "P", "metric": "employment_rate", "target": 0.5,
                             "achieved": 0.6}]
    _, why = _solve(tmp_path, change)
    assert why["Q"][0] == "gated"
    assert "performance fund, targets not met" in why["Q"][1]
    assert why["P"][0] == "fully funded"


def test_pilot_gate_is_named(tmp_path):
    def change(d):
        _program(d, "Q").update(stage="scale_up", pilot_of="P")
        d["Performance"] = [{"program_id": "P", "metric": "employment_rate", "target": 0.8,
                             "achieved": 0.4}]
    _, why = _solve(tmp_path, change)
    assert why["Q"] == ("gated", "gated: its pilot P did not meet its targets (scored 0.50 < 1)")


def test_outside_its_periods_is_named(tmp_path):
    """Q runs only in 2027, where F has no budget."""
    def change(d):
        d["Round"]["periods"] = "2026, 2027"
        _program(d, "Q")["start_period"] = "2027"
    _, why = _solve(tmp_path, change)
    assert why["Q"][0] == "not eligible"
    assert "F: no budget in the program's periods" in why["Q"][1]


def test_no_outcome_value_is_named(tmp_path):
    def change(d):
        _program(d, "Q")["employment_rate"] = 0.0
    _, why = _solve(tmp_path, change)
    assert why["Q"][0] == "not funded"
    assert why["Q"][1].startswith("it buys no outcome value")


def test_no_outcome_value_is_the_cause_of_unspent_budget(tmp_path):
    def change(d):
        _program(d, "Q")["employment_rate"] = 0.0
        d["Programs"] = [_program(d, "Q")]
    sol, _ = _solve(tmp_path, change)
    assert unspent_note(sol) == ("EUR 1,000,000 (100%) unspent: the programs fund F can pay buy "
                                 "no outcome value (Q)")


def test_an_all_or_nothing_minimum_is_named_and_is_the_cause_of_unspent_budget(tmp_path):
    """P needs at least 150 trainees (EUR 150,000) but F holds EUR 100,000; Q is ruled out."""
    def change(d):
        d["Budgets"][0]["amount"] = 100_000
        _program(d, "P").update(max_trainees=200, min_trainees=150)
        d["Programs"] = [_program(d, "P")]
    sol, why = _solve(tmp_path, change)
    assert why["P"][0] == "below minimum"
    assert "150 trainees (EUR 150,000) per period would be needed" in why["P"][1]
    assert unspent_note(sol) == ("EUR 100,000 (100%) unspent: the programs fund F can pay are "
                                 "all-or-nothing and their minimums do not pay off (P)")


@pytest.mark.parametrize("amount", [960_000, 1_000_000])
def test_unspent_budget_up_to_5_percent_is_not_flagged(tmp_path, amount):
    """EUR 100,000 of capacity: a budget of 105,000 leaves 4.8% unspent, not flagged."""
    def change(d):
        d["Budgets"][0]["amount"] = 105_000 if amount == 960_000 else 106_000
    sol, _ = _solve(tmp_path, change)
    note = unspent_note(sol)
    assert (note is None) == (amount == 960_000)


def test_a_period_blocked_by_caps_is_named_beside_a_funded_one(tmp_path):
    """In 2027 only the capped fund G (60%) has money: P is funded in 2026 by F, and 2027 is
    named as blocked, not as a tie."""
    def change(d):
        d["Round"]["periods"] = "2026, 2027"
        d["Funds"].append({"fund_id": "G", "kind": "public", "owner": "A", "cofinancing_cap": 0.6})
        d["Budgets"].append({"fund_id": "G", "period": "2027", "amount": 1_000_000})
        d["Programs"] = [_program(d, "P")]
    _, why = _solve(tmp_path, change)
    assert why["P"] == ("funded partly", "0 of 50 trainees in 2027: blocked by co-financing caps "
                                         "(G 60% add up to less than the 100% the round must pay)")
