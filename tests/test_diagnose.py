"""Infeasible rounds: the diagnosis names the conflicting rules, and its changes work (issue 4).

Every conflict below is built so that its members and the smallest change of each can be
derived by hand (comments); each proposed change is then applied to the Round and the round
is solved again from scratch.
"""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

from allocator.cli import app
from allocator.diagnose import apply_relaxations, cheap_checks, diagnose_infeasible, solve_diagnosed
from allocator.engine import solve_round
from allocator.errors import InfeasibleRoundError
from allocator.solve import Status
from allocator.template import write_round_workbook
from tests.test_explain import R_B, E, variant


def change(diagnosis, kind: str, target: str):
    hits = [r for c in diagnosis.conflicts for r in c.relaxations
            if r.kind == kind and r.target == target]
    assert len(hits) == 1, diagnosis.render()
    return hits[0]


def assert_feasible_after(rnd, relaxation):
    assert relaxation.works, relaxation.text
    sol = solve_round(apply_relaxations(rnd, [relaxation]))
    assert sol.status == Status.optimal


def test_rule_against_capacity(make_round):
    # A1 (only P1, 40 trainees x 1000 per period, 2 periods) can take at most 80k.
    rule = {"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": ">=", "value": 90000}
    rnd = make_round(variant(Rules=[rule]))
    with pytest.raises(InfeasibleRoundError) as err:
        solve_diagnosed(rnd)
    diagnosis = err.value.diagnosis
    assert diagnosis is not None and "R-A" in str(err.value)
    assert diagnosis.rule_ids == ["R-A"]
    assert len(diagnosis.conflicts) == 1
    assert sorted(diagnosis.conflicts[0].items) == ["capacity of P1 (40 trainees)", "rule R-A"]
    lower = change(diagnosis, "rule", "R-A")
    assert lower.proposed == pytest.approx(80000) and "lower R-A from 90,000 to 80,000" in lower.text
    raise_cap = change(diagnosis, "capacity", "P1")
    assert raise_cap.proposed == 45  # 90k over two periods at 1000 each
    for r in (lower, raise_cap):
        assert_feasible_after(rnd, r)
    assert diagnosis.fix_verified


def test_two_rules_and_the_budgets(make_round):
    # R-A: A1 gets a >= 60k; R-B: B1 gets b >= 80% of all money, i.e. b >= 4a. B1 is paid by
    # JIF only; A1 by PUB (30k) and JIF, so b <= 180k - (a - 30k). Smallest single changes:
    # R-A down to a = 42k (4a = 210k - a); R-B down to 150k / 210k = 0.714285... (shown
    # rounded outward: 0.714); or EUR 90,000 more in either JIF period (b = 240k, a - 30k = 30k).
    rule_a = {"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": ">=",
              "value": 60000}
    rnd = make_round(variant(Rules=[rule_a, R_B]))
    diagnosis = diagnose_infeasible(rnd)
    assert diagnosis.rule_ids == ["R-A", "R-B"]
    assert len(diagnosis.conflicts) == 1
    assert change(diagnosis, "rule", "R-A").proposed == pytest.approx(42000)
    assert change(diagnosis, "rule", "R-B").proposed == pytest.approx(0.714)
    budgets = [r for r in diagnosis.conflicts[0].relaxations if r.kind == "budget"]
    assert budgets and all(r.target == "JIF" and r.proposed == pytest.approx(90000) for r in budgets)
    assert any("add EUR 90,000 to JIF" in r.text for r in budgets)
    for r in diagnosis.conflicts[0].relaxations:
        assert_feasible_after(rnd, r)
    text = diagnosis.render()
    assert "lower R-A from 60,000 to 42,000" in text and "lower R-B from 0.8 to 0.714" in text


def test_two_independent_conflicts_get_one_change_each(make_round):
    # R-A needs 90k in A1 (capacity 80k); R-C needs 500k for P3 (capacity 400k, budget 180k).
    rules = [{"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": ">=",
              "value": 90000},
             {"rule_id": "R-C", "measure": "amount", "select": "program=P3", "op": ">=",
              "value": 500000}]
    rnd = make_round(variant(Rules=rules))
    diagnosis = diagnose_infeasible(rnd)
    assert sorted(diagnosis.rule_ids) == ["R-A", "R-C"]
    assert len(diagnosis.conflicts) == 2
    assert len(diagnosis.fix) == 2 and diagnosis.fix_verified
    sol = solve_round(apply_relaxations(rnd, diagnosis.fix))
    assert sol.status == Status.optimal


def test_all_or_nothing_minimum_makes_a_mip_only_conflict(make_round):
    # P2 needs 150 trainees (150k) in a period or nothing; R-P2 forces it on; JIF holds 100k /
    # 80k. The LP relaxation is feasible, the MILP is not. Fixes: R-P2 to 0, or EUR 50,000 more
    # in JIF 2026, or EUR 70,000 more in JIF 2027.
    programs = copy.deepcopy(E["Programs"])
    programs[1]["min_trainees"] = 150
    rule = {"rule_id": "R-P2", "measure": "amount", "select": "program=P2", "op": ">=",
            "value": 1000}
    rnd = make_round(variant(Programs=programs, Rules=[rule]))
    diagnosis = diagnose_infeasible(rnd)
    assert diagnosis.rule_ids == ["R-P2"]
    assert change(diagnosis, "rule", "R-P2").proposed == 0
    budget = {r.period: r.proposed for r in diagnosis.conflicts[0].relaxations if r.kind == "budget"}
    assert budget == {"2026": pytest.approx(50000), "2027": pytest.approx(70000)}
    for r in diagnosis.conflicts[0].relaxations:
        assert_feasible_after(rnd, r)


def test_rule_with_no_eligible_money_is_named(make_round):
    # PUB has no 2027 budget, so nothing can match the selection.
    rule = {"rule_id": "R-N", "measure": "amount", "select": "fund=PUB; period=2027", "op": ">=",
            "value": 1000}
    rnd = make_round(variant(Rules=[rule]))
    with pytest.raises(InfeasibleRoundError) as err:
        solve_diagnosed(rnd)
    assert err.value.diagnosis.rule_ids == ["R-N"]
    assert "R-N" in str(err.value)
    assert_feasible_after(rnd, err.value.diagnosis.fix[0])


def test_cheap_checks(make_round):
    big = {"rule_id": "R-BIG", "measure": "amount", "select": "region=B1", "op": ">=",
           "value": 10_000_000}
    problems = cheap_checks(make_round(variant(Rules=[big])))
    assert len(problems) == 1
    assert problems[0].startswith("rule R-BIG needs EUR 10,000,000 but the funds that can pay its "
                                  "selection (JIF) hold at most EUR 180,000")
    # Capacity: P1 takes at most 80k, although the budgets hold more.
    cap = {"rule_id": "R-A", "measure": "per_capita", "select": "region=A1", "op": ">=", "value": 90}
    problems = cheap_checks(make_round(variant(Rules=[cap])))
    assert len(problems) == 1 and "can take at most EUR 80,000" in problems[0]
    assert cheap_checks(make_round(variant(Rules=[R_B]))) == []


def test_cli_run_and_check_exit_3_with_the_diagnosis(tmp_path):
    rule = {"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": ">=", "value": 90000}
    wb = write_round_workbook(tmp_path / "inf.xlsx", variant(Rules=[rule]))
    report = tmp_path / "out" / "res.xlsx"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(wb), "--report", str(report),
                                 "--records", str(tmp_path / "m")])
    assert result.exit_code == 3
    assert "R-A" in result.stderr and "lower R-A from 90,000 to 80,000" in result.stderr
    diag = tmp_path / "out" / "res.diagnosis.xlsx"
    assert diag.is_file() and not report.exists()
    from openpyxl import load_workbook

    wb_out = load_workbook(diag)
    assert wb_out.sheetnames == ["Summary", "Changes"]
    big = {"rule_id": "R-A", "measure": "amount", "select": "region=A1", "op": ">=", "value": 10**7}
    result = runner.invoke(app, ["check", str(write_round_workbook(tmp_path / "big.xlsx",
                                                                    variant(Rules=[big])))])
    assert result.exit_code == 3 and "rule R-A needs EUR 10,000,000" in result.stderr
