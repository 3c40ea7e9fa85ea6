"""Sensitivity ranges checked by re-solving at their ends, as a finance officer would with Solver.

For each budget and rule with a price, the prices LP is solved again (scipy's linprog, on the
same matrix, independently of allocator's HiGHS hand-over) with the limit moved just inside
and just outside the range's ends: inside, the outcome value moves at the price; outside, it
moves at another rate. For each funded program with a finite value range, its value per
trainee is moved just inside and just outside the range: inside, its funding stays; outside,
it changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from allocator.engine import solve_round
from allocator.excel import PRICE_STEP
from allocator.report import write_report
from allocator.sensitivity import sensitivity
from allocator.validate import load_round
from tests import rounds


def _lp(program, row_change=None, cost_scale=None):
    """(objective, x) of the prices LP solved by scipy, with one row bound or some costs moved."""
    lower = program.row_lower.astype(float).copy()
    upper = program.row_upper.astype(float).copy()
    if row_change is not None:
        i, value = row_change
        if np.isfinite(upper[i]):
            upper[i] = value
        # the lower bound moves too for an equation, or when it is the row's only limit
        if np.isfinite(lower[i]) and (lower[i] == program.row_upper[i]
                                      or not np.isfinite(program.row_upper[i])):
            lower[i] = value
    c = program.c.astype(float).copy()
    if cost_scale is not None:
        cols, factor = cost_scale
        c[cols] *= factor
    A = sp.csr_matrix(program.A)
    eq = np.isfinite(lower) & np.isfinite(upper) & (lower == upper)
    ub = np.isfinite(upper) & ~eq
    lb = np.isfinite(lower) & ~eq
    A_ub = sp.vstack([A[ub], -A[lb]]).tocsr()
    b_ub = np.concatenate([upper[ub], -lower[lb]])
    bounds = list(zip(np.where(np.isfinite(program.col_lower), program.col_lower, None),
                      np.where(np.isfinite(program.col_upper), program.col_upper, None),
                      strict=True))
    # Costs scaled to 1 (outcome value per currency unit is ~1e-4): the solver's tolerances then
    # tell apart the small moves of a value tested here.
    scale = float(np.abs(c).max())
    res = linprog(-c / scale, A_ub=A_ub, b_ub=b_ub, A_eq=A[eq], b_eq=lower[eq], bounds=bounds,
                  method="highs")
    assert res.status == 0, res.message
    return -res.fun * scale, res.x


EXAMPLE = Path(__file__).resolve().parents[1] / "inputs" / "example_round.xlsx"


@pytest.fixture(scope="module", params=["t1", "example"])
def solved(request, tmp_path_factory):
    if request.param == "t1":
        # T1 of tests/rounds.py with a tighter budget, so its budgets bind (a MILP: P2 has a
        # minimum; the prices LP has its on/off decision fixed).
        data = rounds.sheets(Budgets=[
            {"fund_id": "JIF", "period": 2026, "amount": 60000},
            {"fund_id": "JIF", "period": 2027, "amount": 50000},
            {"fund_id": "PUB", "period": 2026, "amount": 30000}])
        path = rounds.write(tmp_path_factory.mktemp("sens") / "t1.xlsx", data)
    else:  # the example round: budgets, juste retour, a pilot cap and a sector cap bind
        path = EXAMPLE
    solution = solve_round(load_round(path).round)
    return solution, sensitivity(solution)


def _row_index(solution, row) -> int:
    for i, ref in enumerate(solution.row_refs):
        idx = [str(v) for v in ref.index]
        if row["kind"] == "budget" and ref.component.startswith("spend_fund") and \
                idx[:2] == [row["id"], row["period"]]:
            return i
        if row["kind"] == "rule" and ref.component.endswith(("_rule_min", "_rule_max",
                                                               "_rule_equal")):
            rule_id, *rest = idx[0].split(",")
            if rule_id == row["id"] and ", ".join(rest) == row["group"]:
                return i
    raise AssertionError(f"no row for {row}")


@pytest.mark.slow
def test_every_priced_limit_holds_its_price_inside_its_range_and_not_beyond(solved):
    solution, sens = solved
    assert sens.available
    program = solution.prices.program
    base, _ = _lp(program)
    priced = sens.rows[sens.rows["price"].abs() > 1e-9]
    assert len(priced) >= 2  # the test round binds a budget and a rule
    checked = 0
    for row in priced.to_dict("records"):
        i = _row_index(solution, row)
        price = row["price"] / PRICE_STEP  # per currency unit
        limit = row["limit"]
        for end, outward in ((row["highest"], 1.0), (row["lowest"], -1.0)):
            if end is None or np.isnan(end) or abs(end - limit) < 1e-6:
                continue
            width = abs(end - limit)
            eps = 1e-3 * width
            inside, _ = _lp(program, (i, end - outward * eps))
            assert (inside - base) / (end - outward * eps - limit) == \
                pytest.approx(price, rel=1e-6, abs=1e-12), (row["id"], row["period"], end)
            beyond_at = end + outward * max(eps, 1e-2 * width)
            beyond, _ = _lp(program, (i, beyond_at))
            at_end, _ = _lp(program, (i, end))
            slope = (beyond - at_end) / (beyond_at - end)
            assert slope != pytest.approx(price, rel=1e-6, abs=1e-12), \
                ("the price still holds beyond the range's end", row["id"], row["period"], end)
            checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_each_program_keeps_its_funding_inside_its_value_range_and_not_beyond(solved):
    solution, sens = solved
    program = solution.prices.program
    cols_x = solution.columns.x
    prog_of = np.asarray(solution.index.programs)[solution.index.p]
    x_star = np.asarray(solution.prices.x)  # the prices LP's optimum, whose ranges these are
    checked = 0
    for row in sens.programs.to_dict("records"):
        own = cols_x[prog_of == row["program_id"]]
        funding = x_star[own].sum()
        value = row["value_per_trainee"]
        for end, outward in ((row["highest"], 1.0), (row["lowest"], -1.0)):
            if end is None or np.isnan(end) or end <= 0:
                continue
            eps = 1e-2 * abs(end - value)  # 1% of the way from the value to the range's end
            _, x_in = _lp(program, cost_scale=(own, (end - outward * eps) / value))
            assert x_in[own].sum() == pytest.approx(funding, rel=1e-7, abs=1e-4), \
                (row["program_id"], end)
            _, x_out = _lp(program, cost_scale=(own, (end + outward * eps) / value))
            assert x_out[own].sum() != pytest.approx(funding, rel=1e-7, abs=1e-4), \
                ("funding still unchanged beyond the range's end", row["program_id"], end)
            checked += 1
    assert checked >= 1


def test_sensitivity_sheet_in_the_report_says_it_in_words(solved, tmp_path):
    import openpyxl

    solution, _ = solved
    wb = openpyxl.load_workbook(write_report(solution, tmp_path / "r.xlsx"))
    ws = wb["Sensitivity"]
    rows = list(ws.iter_rows(values_only=True))
    head = rows[0]
    assert head[:6] == ("kind", "id", "name", "period", "current", "price per 10,000 EUR")
    kinds = {r[0] for r in rows[1:]}
    assert {"budget", "rule", "program"} <= kinds
    meaning = head.index("meaning")
    assert all(r[meaning] for r in rows[1:])
    assert any("keeps its funding while its value per trainee" in r[meaning] for r in rows[1:])


def test_interior_point_prices_say_not_available(solved, monkeypatch):
    import allocator.sensitivity as module

    solution, _ = solved
    monkeypatch.setattr(module, "is_interior", lambda _stage: True)
    result = module.sensitivity(solution)
    assert not result.available and "not available for this size" in result.why_not


def test_a_warm_re_solve_that_stops_short_is_solved_again_from_scratch(solved, monkeypatch):
    """The exact ranges re-solve one HiGHS model by primal simplex from the last basis; a
    re-solve that stops short (made to here) is solved again from scratch by dual simplex, and
    the ranges are still the exact ones rather than falling back to one basis's ranging."""
    import highspy

    import allocator.sensitivity as module

    solution, before = solved
    assert before.exact
    run = module.WarmLP._run
    primal = []

    def stopped_short(self, strategy: int) -> highspy.HighsModelStatus:
        if strategy == module.PRIMAL_SIMPLEX:
            primal.append(strategy)
            return highspy.HighsModelStatus.kUnknown
        return run(self, strategy)

    monkeypatch.setattr(module.WarmLP, "_run", stopped_short)
    after = module.sensitivity(solution)
    assert primal and after.exact
    numbers = ["lowest", "highest", "allowable_increase", "allowable_decrease"]
    for was, now in ((before.rows, after.rows), (before.programs, after.programs)):
        assert list(now["meaning"]) == list(was["meaning"])
        np.testing.assert_allclose(now[numbers].astype(float), was[numbers].astype(float),
                                   rtol=1e-9, atol=1e-6)


def test_a_z_column_for_every_program_leaves_the_funded_programs_ranges_as_they_were(tmp_path):
    """Above EXACT_COLUMNS the ranges come from HiGHS's ranging of the prices LP with a z
    column per program, every program's (so that it can be made before the allocation is
    known); checked against the LP with z columns for the funded programs alone."""
    from allocator import sensitivity as S
    from benchmarks.synthetic import write_synthetic_round

    solution = solve_round(load_round(write_synthetic_round(tmp_path / "s.xlsx", 300, 0)).round)
    prices, funded = solution.prices, S._funded_programs(solution)
    assert prices.program.shape[1] > S.EXACT_COLUMNS and len(funded) < len(solution.round.programs)
    ours = sensitivity(solution)
    assert ours.available and not ours.exact
    augmented, z_of = S._with_program_columns(prices.program, solution, funded)
    ranged = S._ranging(augmented, prices.basis, len(z_of))
    pd.testing.assert_frame_equal(ours.rows, S._row_table(solution, prices.program, ranged),
                                  rtol=1e-9)
    pd.testing.assert_frame_equal(
        ours.programs, S._program_table(solution, funded, z_of, augmented, ranged.rng), rtol=1e-9)
