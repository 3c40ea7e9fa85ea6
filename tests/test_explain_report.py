"""The explanations of issue 4 as the result workbook shows them, read back from the file.

Rounds come from tests/test_explain.py (round `E`, rule `R_B`); the expected numbers are
derived by hand there and repeated here in the comments:
- E + R_B (B1 gets >= 80% of all money, binding): A1 money <= 42k, optimum 138.6 over 210
  trainees (0.66 outcome points per trainee). Raising R-B by one percentage point costs
  0.0003 * 210k * 0.01 = 0.63 points (0.63 / 0.66 = 0.95 placements); one more EUR 10,000
  in any budget buys (0.0006 + 0.0003 * 0.2) * 10,000 = 6.6 points (6.6 / 0.66 = 10).
- P3 (0.0003 per EUR) is not funded: the B1 money it would take earns 0.0006 in P2, so it
  is (0.0006 - 0.0003) / 0.0006 = 50% below the marginal money.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import openpyxl
import pytest

from allocator.engine import solve_round
from allocator.explain import MIP_NOTE, program_reasons
from allocator.report import SHEETS, report_tables, write_report
from allocator.solve import Status
from tests.test_explain import R_B, E, variant

PRICE_HEADER = ["kind", "id", "group", "jurisdiction", "period", "op", "value", "binding",
                "price per 10,000 EUR", "step", "per_step", "trainees_per_step", "sentence", "note"]


def _table(ws) -> list[dict]:
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def _kv(ws) -> dict:
    return {r["item"]: r["value"] for r in _table(ws)}


def _programs(wb) -> dict[str, dict]:
    return {r["program_id"]: r for r in _table(wb["Programs"]) if r["program_id"] != "Total"}


def _report(solution, tmp_path: Path, name: str = "report.xlsx"):
    return openpyxl.load_workbook(write_report(solution, tmp_path / name))


@pytest.fixture(scope="module")
def binding(tmp_path_factory):
    """E + R_B, an LP round: R-B and every budget bind; P3 is priced out."""
    from allocator.template import write_round_workbook
    from allocator.validate import load_round

    tmp = tmp_path_factory.mktemp("binding")
    path = write_round_workbook(tmp / "round.xlsx", variant(Rules=[R_B]))
    solution = solve_round(load_round(path).round)
    return solution, _report(solution, tmp)


# --- Prices ----------------------------------------------------------------------------------


def test_prices_sheet_has_every_binding_rule_and_budget_with_its_sentence(binding):
    _, wb = binding
    assert list(wb.sheetnames) == list(SHEETS) and "Prices" in wb.sheetnames
    ws = wb["Prices"]
    assert [c.value for c in ws[1]] == PRICE_HEADER
    rows = _table(ws)
    assert [(r["kind"], r["id"], r["period"]) for r in rows] == [
        ("rule", "R-B", None), ("budget", "JIF", "2026"), ("budget", "JIF", "2027"),
        ("budget", "PUB", "2026")]
    rule = rows[0]
    assert rule["binding"] == "yes" and rule["op"] == ">=" and rule["value"] == 0.8
    assert rule["step"] == "1 percentage point"
    assert rule["per_step"] == pytest.approx(-0.63, rel=1e-6)
    # the price is shown per 10,000 EUR: -0.0003 per EUR (the hand price in test_explain)
    assert rule["price per 10,000 EUR"] == pytest.approx(-3.0, rel=1e-6)
    assert rule["sentence"] == ("Raising the floor R-B from 80% to 81% costs 0.63 outcome "
                                "points (about 0.95 trainee placements)")
    for r in rows[1:]:
        assert r["binding"] == "yes" and r["step"] == "EUR 10,000"
        assert r["per_step"] == pytest.approx(6.6, rel=1e-6)
        assert r["trainees_per_step"] == pytest.approx(10.0, rel=1e-6)
        assert r["sentence"] == (f"Each extra EUR 10,000 in {r['id']} {r['period']} buys 6.6 "
                                 "outcome points (about 10 trainee placements)")
    assert [r["value"] for r in rows[1:]] == [100000, 80000, 30000]
    assert all(r["note"] is None for r in rows)  # an LP round: no on/off decisions to mention
    # The value is in the rule's own unit: a share as a percentage, a budget as money.
    assert ws["G2"].number_format == "0.0%"
    assert ws["G3"].number_format == '#,##0 "EUR"'
    assert "prices (Prices sheet)" not in _kv(wb["Summary"])


def test_programs_sheet_gives_a_reason_for_every_program(binding):
    solution, wb = binding
    programs = _programs(wb)
    assert list(programs) == ["P1", "P2", "P3"]
    # A1 is held to 42k by R-B: P1 fills 2026 (40k) and gets 2k of 2027.
    assert programs["P1"]["amount"] == 42000 and programs["P1"]["status"] == "funded partly"
    assert programs["P1"]["reason"] == ("2 of 40 trainees in 2027: budget ran out at the margin "
                                        "(JIF 2027 fully spent); held back by rule(s) R-B")
    assert programs["P2"]["status"] == "funded partly"
    assert programs["P3"]["status"] == "not funded" and programs["P3"]["amount"] == 0
    # 0.0003 and 0.0006 per EUR, shown per EUR 10,000 as prices are
    assert programs["P3"]["reason"] == ("its outcome value per EUR 10,000 (3.000) is 50% below "
                                        "what the marginal money buys (6.000): budget(s) JIF 2026, "
                                        "JIF 2027 fully spent on programs that buy more")
    # One source of truth: the sheet is allocator.explain's table, row for row.
    explained = program_reasons(solution)
    assert [(p["program_id"], p["status"], p["reason"]) for p in programs.values()] == \
        list(explained.itertuples(index=False, name=None))


def test_report_tables_carry_the_same_explanations(binding):
    solution, wb = binding
    tables = report_tables(solution)
    assert list(tables) == list(SHEETS)
    assert list(tables["Prices"].columns) == PRICE_HEADER
    assert tables["Prices"]["sentence"].tolist() == [r["sentence"] for r in _table(wb["Prices"])]
    assert tables["Programs"]["reason"].tolist()[:-1] == \
        [p["reason"] for p in _programs(wb).values()]


def test_mip_round_excluded_gated_and_below_minimum_programs_and_the_price_note(
        make_round, tmp_path):
    data = variant(
        Regions=[*E["Regions"], {"region_id": "C1", "jurisdiction": "C", "population": 500}],
        Funds=[{"fund_id": "JIF", "kind": "joint", "owner": "joint",
                "eligible": "jurisdiction=A|B"}, E["Funds"][1]],
        Programs=[*E["Programs"],
                  # P4 is delivered in C1 only, which no fund pays for.
                  {"program_id": "P4", "regions": "C1", "cost_per_trainee": 1000,
                   "max_trainees": 10, "employment_rate": 0.9},
                  # P5 scales up P1, which has no Performance rows.
                  {"program_id": "P5", "regions": "A1", "cost_per_trainee": 1000,
                   "max_trainees": 10, "employment_rate": 0.9, "pilot_of": "P1"},
                  # P6 needs 150k in A1 in one period; R-B holds A1 to 42k in all.
                  {"program_id": "P6", "regions": "A1", "cost_per_trainee": 1000,
                   "max_trainees": 200, "min_trainees": 150, "employment_rate": 1.0}],
        Rules=[R_B])
    solution = solve_round(make_round(data))
    assert solution.mip
    wb = _report(solution, tmp_path)
    programs = _programs(wb)
    assert {p: r["status"] for p, r in programs.items()} == {
        "P1": "funded partly", "P2": "funded partly", "P3": "not funded",
        "P4": "not eligible", "P5": "gated", "P6": "below minimum"}
    assert programs["P4"]["reason"] == (
        "not eligible for any fund (JIF: its eligible filter excludes the program's regions; "
        "PUB: its eligible filter excludes the program's regions)")
    assert programs["P5"]["reason"] == \
        "gated: its pilot P1 did not meet its targets (has no Performance rows)"
    assert programs["P6"]["reason"].startswith(
        "below its all-or-nothing minimum: 150 trainees (EUR 150,000) per period")
    prices = _table(wb["Prices"])
    assert prices and all(r["note"] == MIP_NOTE for r in prices)
    assert _kv(wb["Summary"])["prices (Prices sheet)"] == MIP_NOTE
    # The prices are still those of the hand solution (P6 stays off at the optimum).
    assert prices[0]["sentence"].startswith("Raising the floor R-B from 80% to 81% costs 0.63")


# --- Rules: soft rules and rounding misses -----------------------------------------------------


def test_soft_rule_is_marked_with_its_shortfall(make_round, tmp_path):
    # Missing R-B costs 0.00001 per EUR, keeping it 0.0003: the unconstrained optimum (A1 80k,
    # B1 130k) misses it by 0.8 * 210k - 130k = 38k (38k / 210k = 0.181 of the share).
    soft = {**R_B, "penalty": 0.00001}
    hard = {"rule_id": "R-H", "measure": "amount", "select": "region=B1", "op": ">=",
            "value": 1000}
    solution = solve_round(make_round(variant(Rules=[soft, hard])))
    wb = _report(solution, tmp_path)
    rules = {r["rule_id"]: r for r in _table(wb["Rules"])}
    assert rules["R-B"]["soft"] == "yes" and rules["R-B"]["penalty"] == 0.00001
    # (abs 2: the tie-break may give up a hair of outcome, which rounding turns into one unit)
    assert rules["R-B"]["shortfall"] == pytest.approx(38000, abs=2)
    assert rules["R-B"]["note"].startswith("soft rule: R-B is missed by EUR 3")
    assert "(0.181 in its own unit), at a penalty of 0.1 outcome value per EUR 10,000" in \
        rules["R-B"]["note"]  # 1e-05 per EUR, in the unit prices are shown in
    assert rules["R-H"]["soft"] == "no" and rules["R-H"]["shortfall"] == 0
    assert rules["R-H"]["note"] is None


def test_rounding_miss_is_flagged_in_summary_and_rules(make_round, tmp_path):
    # P3 must get exactly EUR 1,500 but amounts are whole EUR 1,000s: rounding gives 1,000 or
    # 2,000, so R-EQ is missed by 500 either way.
    eq = {"rule_id": "R-EQ", "measure": "amount", "select": "program=P3", "op": "=",
          "value": 1500}
    data = variant(Rules=[eq])
    data["Round"]["rounding_unit"] = 1000
    solution = solve_round(make_round(data))
    wb = _report(solution, tmp_path)
    summary = _kv(wb["Summary"])
    assert summary["limits missed after rounding"] == 1
    assert summary["rounding miss: rule R-EQ"] == "rounding misses rule R-EQ by EUR 500"
    rule = _table(wb["Rules"])[0]
    assert rule["shortfall"] == 500 and rule["note"] == "rounding misses it by EUR 500"


def test_kept_rules_are_not_flagged(binding):
    _, wb = binding
    summary = _kv(wb["Summary"])
    assert summary["limits missed after rounding"] == 0
    assert not [k for k in summary if str(k).startswith("rounding miss")]
    assert summary["status"] == "optimal"


# --- status ----------------------------------------------------------------------------------


def test_time_limited_round_says_not_proven_optimal_with_its_gap(binding, tmp_path):
    # The engine stops at the time limit with a solution only on large MILPs; the report's
    # wording is checked on a solution marked that way (status and the first stage's gap).
    solution, _ = binding
    stages = copy.copy(solution.stages)
    stages[0] = dataclasses.replace(stages[0], status=Status.time_limit, mip_gap=0.0123)
    stopped = dataclasses.replace(solution, status=Status.time_limit, stages=stages)
    wb = _report(stopped, tmp_path)
    assert _kv(wb["Summary"])["status"] == "not proven optimal (time limit), gap 1.23%"


@pytest.mark.parametrize(("description", "named"), [
    ("inclusion", "Raising the inclusion floor R-B from 80% to 81%"),
    # A sentence-long description would bury the number: the Rules sheet shows it instead.
    ("B1 gets at least 80% of all money, every period", "Raising the floor R-B from 80% to 81%"),
])
def test_price_sentence_names_the_rule_by_a_short_description(make_round, tmp_path,
                                                              description, named):
    solution = solve_round(make_round(variant(Rules=[{**R_B, "description": description}])))
    wb = _report(solution, tmp_path)
    assert _table(wb["Prices"])[0]["sentence"] == \
        f"{named} costs 0.63 outcome points (about 0.95 trainee placements)"
    assert _table(wb["Rules"])[0]["description"] == description
