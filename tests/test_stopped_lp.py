"""An LP stage stopped by its limit: the interior point's last iterate as a time-limited allocation.

A large round's LP is solved by interior point without crossover; when `time_limit_s` stops it,
the user gets the iterate reached (once it is feasible), marked not proven optimal, with a gap
from a bound that weak duality proves. The tests stop IPX by an iteration limit instead of the
clock, so the stop is the same on every machine, and check the point and the bound against an
optimum found independently (scipy's own HiGHS, dual simplex, on the same matrix; and the
reference formulation of tests/reference.py for the whole round).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog

import allocator.plan
import allocator.solve
from allocator.checker import check_allocation
from allocator.eligibility import allocation_index
from allocator.engine import solve_round
from allocator.formulation import create_model
from allocator.report import _audit, status_text
from allocator.solve import MatrixProgram, Status, solve_program
from allocator.stages.model import compile_model
from allocator.validate import load_round
from benchmarks.synthetic import write_synthetic_round
from tests.reference import evaluate, reference_optimum

pytestmark = pytest.mark.slow  # interior-point solves of a 150-program round


@pytest.fixture(scope="module")
def lp_round(tmp_path_factory: pytest.TempPathFactory):
    """A 150-program synthetic round without all-or-nothing programs: a pure LP with every
    rule measure, budgets with carry-over and co-financing caps."""
    path = write_synthetic_round(Path(tmp_path_factory.mktemp("lp")) / "lp.xlsx", 150,
                                 seed=3, all_or_nothing=0)
    return load_round(path).round


@pytest.fixture(scope="module")
def lp_program(lp_round) -> MatrixProgram:
    program, _, _ = compile_model(create_model(lp_round, allocation_index(lp_round)))
    assert not program.integer.any()
    return program


def independent_optimum(program: MatrixProgram) -> float:
    """max c'x over the program's rows and bounds, by scipy (dual simplex)."""
    A = program.A.tocsr()
    upper_rows = np.isfinite(program.row_upper)
    lower_rows = np.isfinite(program.row_lower)
    res = linprog(-program.c,
                  A_ub=np.vstack([A[upper_rows].toarray(), -A[lower_rows].toarray()]),
                  b_ub=np.concatenate([program.row_upper[upper_rows],
                                       -program.row_lower[lower_rows]]),
                  bounds=list(zip(program.col_lower, np.where(np.isinf(program.col_upper), None,
                                                              program.col_upper), strict=True)),
                  method="highs-ds")
    assert res.status == 0
    return -float(res.fun)


@pytest.fixture(autouse=True)
def stoppable_at_any_size(monkeypatch):
    """Every interior point LP stage without crossover runs as the largest rounds' do: without
    presolve, so a stop leaves its iterate."""
    monkeypatch.setattr(allocator.plan, "THRESHOLDS", dataclasses.replace(
        allocator.plan.THRESHOLDS, stoppable_columns=0))


def stopped_after(program: MatrixProgram, iterations: int):
    return solve_program(program, "outcome", time_limit=600, mip_gap=1e-4, method="ipm",
                         options={"run_crossover": "off", "ipm_iteration_limit": iterations})


def stop_at_gap_below(gap: float, program: MatrixProgram, monkeypatch) -> None:
    """Stop every later engine run where IPX's iterate on `program` first comes within `gap`
    of its bound, with LP stages solved as at 200,000 programs (interior point, no crossover)."""
    def near(k: int) -> bool:
        stage = stopped_after(program, k)
        return stage.status == Status.time_limit and stage.mip_gap < gap

    stop_at = next(k for k in range(1, 60) if near(k))
    monkeypatch.setattr(allocator.plan, "THRESHOLDS", dataclasses.replace(
        allocator.plan.THRESHOLDS, ipm_columns=0, crossover_columns=0))
    monkeypatch.setattr(allocator.solve, "SOLVER_OPTIONS",
                        {**allocator.solve.SOLVER_OPTIONS, "ipm_iteration_limit": stop_at})


def test_every_stopped_point_is_feasible_and_brackets_the_optimum(lp_program):
    best = independent_optimum(lp_program)
    A = lp_program.A
    gaps = []
    for iterations in range(1, 60):
        stage = stopped_after(lp_program, iterations)
        if stage.status == Status.optimal:
            break
        if stage.status == Status.no_solution:
            assert not gaps, "a later iterate lost feasibility"
            continue
        assert stage.status == Status.time_limit
        x = stage.x
        activity = A @ x
        slack = 1e-6 * np.maximum(1.0, abs(A) @ np.abs(x))
        assert (activity <= lp_program.row_upper + slack).all()
        assert (activity >= lp_program.row_lower - slack).all()
        assert (x >= -1e-9).all()
        value, bound = float(lp_program.c @ x), stage.solver_log["lp_bound"]
        assert value <= best * (1 + 1e-9)
        assert bound >= best * (1 - 1e-9)
        assert stage.mip_gap == pytest.approx((bound - value) / value)
        gaps.append(stage.mip_gap)
    else:
        pytest.fail("IPX did not reach the optimum in 60 iterations")
    assert len(gaps) >= 3, "IPX was never stopped at a feasible iterate"
    assert gaps[-1] < 1e-3 < gaps[0]  # the bound closes in as the iterates do
    # finite from the first feasible iterate on: every column is bounded, by its rows or, for
    # the soft rule's shortfall slack, by what its row can need
    assert np.isfinite(gaps).all()
    assert stage.solver_log["options"]["presolve"] == "off"  # else the iterate is lost


def test_a_point_that_breaks_a_row_is_no_allocation(lp_program):
    stage = stopped_after(lp_program, 1)  # IPX's first iterate is far outside the rows
    assert stage.status == Status.no_solution and stage.x is None
    assert stage.solver_log["stopped_point_violation"] > 1e-6


def test_stopped_lp_round_is_reported_time_limited_with_its_gap(lp_round, lp_program,
                                                                monkeypatch):
    stop_at_gap_below(0.05, lp_program, monkeypatch)
    sol = solve_round(lp_round)
    assert sol.status == Status.time_limit
    assert check_allocation(lp_round, sol.allocation) == []
    best, _ = reference_optimum(lp_round)
    value, _ = evaluate(lp_round, sol.allocation)
    bound = sol.stages[0].solver_log["lp_bound"]
    assert value <= best * (1 + 1e-9) <= bound * (1 + 2e-9)
    gap = sol.stages[0].mip_gap
    assert 0 < gap < 0.05 and gap == pytest.approx((bound - sol.stages[0].objective)
                                                / sol.stages[0].objective)
    assert status_text(sol) == f"not proven optimal (time limit), gap {gap * 100:.3g}%"
    assert sol.warnings == ["the time limit stopped the interior point method before the "
                            "optimum; the allocation is its last iterate, within the reported "
                            "gap of the optimum (raise time_limit_s on the Round sheet for a "
                            "better one)"]
    table = _audit(sol, "run", "in", "out", "round", "records", None, None)
    audit = {row[0]: row[1] for block in table.blocks() for row in block}
    assert audit["stage outcome: gap to the proven bound"] == pytest.approx(gap)
    assert audit["stage outcome: bound on the optimum"] == pytest.approx(bound)


def test_stopped_relaxation_measures_the_rounded_allocation_against_its_proven_bound():
    # The relaxation of a large MILP stopped at 90 (an iterate's value, not a bound); its row
    # prices prove 100. The rounded allocation is worth 80: gap 25%, from the bound, and it
    # stays time-limited even when mip_gap would accept the distance to the iterate's value.
    from allocator.solve import StageResult
    from allocator.stages.prices import adopt_rounding

    first = StageResult("outcome", None, Status.time_limit, 90.0, np.zeros(2), None, None, 0.1,
                        3600.0, {"lp_bound": 100.0})
    prices = StageResult("outcome_lp", None, Status.optimal, 80.0, np.ones(2), None, None, None,
                         1.0, {})
    adopt_rounding(first, prices, mip_gap=0.5)
    assert first.status == Status.time_limit
    assert first.mip_gap == pytest.approx(0.25)
    assert first.objective == 80.0 and first.solver_log["relaxation_bound"] == 100.0


def test_cli_run_of_a_stopped_lp_writes_a_report_marked_not_proven(lp_round, lp_program,
                                                                  monkeypatch, tmp_path):
    import openpyxl
    from typer.testing import CliRunner

    from allocator.cli import app

    stop_at_gap_below(0.05, lp_program, monkeypatch)
    workbook = write_synthetic_round(tmp_path / "lp.xlsx", 150, seed=3, all_or_nothing=0)
    report = tmp_path / "r.xlsx"
    result = CliRunner().invoke(app, ["run", str(workbook), "--report", str(report),
                                      "--records", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()[:2]
    assert re.fullmatch(r"round synthetic-150-s3: time_limit_feasible — not proven optimal "
                        r"\(gap \d+\.\d\d%\)", first)
    assert re.fullmatch(r"outcome value [\d,]+\.\d{4} \(value before rounding [\d,]+\.\d{4}\)",
                        second)
    items = {row[0]: row[1] for row in openpyxl.load_workbook(report)["Summary"].iter_rows(
        min_row=2, values_only=True)}
    assert items["status"].startswith("not proven optimal (time limit), gap ")
    assert items["outcome value, value before rounding"] == pytest.approx(
        float(second.split("value before rounding ")[1].rstrip(")").replace(",", "")), abs=1e-4)


def test_bound_by_hand():
    # max 2 x1 + x2 - 5 s  s.t.  x1 + x2 <= 4,  x1 <= 3,  x2 + s >= 2;  x, s >= 0.
    # Optimum 6 at x1 = x2 = 2, s = 0 (x1 = 3 needs s = 1 and earns 2 only).
    # Row-implied bounds: x1 <= 3, x2 <= 4; s only costs and its row needs at most 2.
    # Prices 0 bound the optimum by 2*3 + 1*4 = 10; prices (1, 1, 0) by 4 + 3 = 7; the optimal
    # prices (2, 0, -1) by 2*4 - 1*2 = 6.
    import scipy.sparse as sp

    from allocator.bound import dual_bound, implied_upper_bounds, penalised_upper_bounds

    A = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    program = MatrixProgram(np.array([2.0, 1.0, -5.0]), A, np.array([-np.inf, -np.inf, 2.0]),
                            np.array([4.0, 3.0, np.inf]), np.zeros(3), np.full(3, np.inf),
                            np.zeros(3, dtype=bool), ["cap", "x1_max", "soft"],
                            ["x1", "x2", "s"])
    implied = implied_upper_bounds(program)
    assert implied[:2].tolist() == [3.0, 4.0] and implied[2] == np.inf
    assert penalised_upper_bounds(program, program.c, implied).tolist() == [np.inf, np.inf, 2.0]
    assert dual_bound(program, np.zeros(3)) == 10.0
    assert dual_bound(program, np.array([1.0, 1.0, 0.0])) == 7.0
    assert dual_bound(program, np.array([2.0, 0.0, -1.0])) == 6.0
    assert dual_bound(program, np.array([-2.0, 0.0, 1.0])) == 6.0  # either sign convention


def test_below_the_stoppable_size_presolve_stays_on(lp_program, monkeypatch):
    # Presolve saves a fifth of a 50,000-program solve, which ends well inside its limit; a
    # stop there ends without an allocation, as the README says.
    monkeypatch.setattr(allocator.plan, "THRESHOLDS", dataclasses.replace(
        allocator.plan.THRESHOLDS, stoppable_columns=lp_program.shape[1]))
    stage = stopped_after(lp_program, 20)
    assert "presolve" not in stage.solver_log["options"]
    assert stage.status == Status.no_solution and stage.x is None
