"""The prices LP of a MILP round starts from the MILP's optimum, and its prices are right.

Issue 19 item 1: stage 2 (the outcome LP with the on/off decisions fixed) is solved for its
duals only; its optimum is the MILP's. The engine hands that point to HiGHS and runs primal
simplex. Each budget and rule price is checked here against finite differences of cold,
independent re-solves (bare highspy on the fixed LP with the row's limit moved): a valid price
lies between the one-sided derivatives, and equals them where they agree.
"""

from __future__ import annotations

import dataclasses

import highspy
import pytest

from allocator.engine import solve_round
from allocator.solve import MatrixProgram, Status, new_highs
from allocator.validate import load_round
from benchmarks.synthetic import write_synthetic_round

STEP_SHARE = 1e-4  # of the row's limit (or 1 where it is 0): small next to any range of a price


@pytest.fixture(scope="module")
def mip_solution(tmp_path_factory):
    path = tmp_path_factory.mktemp("prices") / "s150.xlsx"
    write_synthetic_round(path, 150, 3, 3600, 0.05)
    sol = solve_round(load_round(path).round)
    assert sol.mip and sol.status == Status.optimal
    return sol


def cold_optimum(program: MatrixProgram, row: int | None = None, bound: str = "",
                 value: float = 0.0) -> float:
    """The fixed LP's optimum, solved from scratch by dual simplex, with one row limit moved."""
    lower, upper = program.row_lower.copy(), program.row_upper.copy()
    if row is not None:
        (lower if bound == "lower" else upper)[row] = value
    h = new_highs()
    h.setOptionValue("solver", "simplex")
    dataclasses.replace(program, row_lower=lower, row_upper=upper).to_highs(h)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(h.getInfo().objective_function_value)


def test_prices_lp_starts_from_the_milp_optimum_and_needs_few_steps(mip_solution):
    outcome, prices = mip_solution.stages[0], mip_solution.stages[1]
    assert prices.name == "outcome_lp" and prices.solver_log["start"] == "outcome"
    assert prices.objective == pytest.approx(outcome.objective, rel=1e-9)
    # From scratch the same LP takes many more simplex steps than from the known optimum.
    h = new_highs()
    prices.program.to_highs(h)
    h.setOptionValue("solver", "simplex")
    h.run()
    cold_steps = h.getInfo().simplex_iteration_count
    assert prices.solver_log["simplex_iterations"] < cold_steps / 3, (
        prices.solver_log["simplex_iterations"], cold_steps)


def test_budget_and_rule_prices_match_finite_differences_of_cold_resolves(mip_solution):
    prices = mip_solution.stages[1]
    program = prices.program
    base = cold_optimum(program)
    assert base == pytest.approx(prices.objective, rel=1e-9)
    activity = program.A @ prices.x
    checked = 0
    for i, ref in enumerate(mip_solution.row_refs):
        if not (ref.is_rule or ref.component.startswith("spend_fund")):
            continue
        at_upper = abs(activity[i] - program.row_upper[i]) <= 1e-6 * max(1.0, abs(activity[i]))
        at_lower = abs(activity[i] - program.row_lower[i]) <= 1e-6 * max(1.0, abs(activity[i]))
        if not (at_upper or at_lower) or (at_upper and at_lower):
            continue  # a slack row has price 0 (checked by HiGHS's optimality); skip equations
        bound = "upper" if at_upper else "lower"
        limit = float(program.row_upper[i] if at_upper else program.row_lower[i])
        step = STEP_SHARE * max(1.0, abs(limit))
        up = (cold_optimum(program, i, bound, limit + step) - base) / step
        down = (base - cold_optimum(program, i, bound, limit - step)) / step
        price = float(prices.row_dual[i])
        scale = max(abs(up), abs(down), 1e-9)
        # max problem: the optimum is concave in the limit, so up <= price <= down.
        assert up - 1e-6 * scale <= price <= down + 1e-6 * scale, (ref.name, up, price, down)
        checked += 1
    assert checked >= 5  # the round binds budgets and rules, so the check has something to test
