"""Partial sums defined once (issue 19 item 3): the leaner matrix solves to the same answer.

The transform is checked on its own (the program with partial sums has the original's optimum,
and its duals, read back, are an optimal dual of the original: checked with numpy, not with
the code under test) and through the engine (a round solved with and without partial sums
gives the same allocation, prices and record, and the record verifies).
"""

from __future__ import annotations

import dataclasses

import highspy
import numpy as np
import pytest
import scipy.sparse as sp

import allocator.stages.model
from allocator.engine import solve_round
from allocator.partials import ROW_PREFIX, partial_sums
from allocator.plan import choose_plan
from allocator.record import verify_record, write_record
from allocator.solve import MatrixProgram, Status, new_highs
from allocator.validate import load_round
from benchmarks.synthetic import write_synthetic_round


def random_program(seed: int, n: int = 400) -> MatrixProgram:
    """Budget-like dense rows over blocks of columns, a few sparse caps, max c'x."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 6, n)  # e.g. the region of each amount
    fund = rng.integers(0, 3, n)
    rows = []
    for b in range(6):  # a share-like row per block: sum_block x - 0.2 sum_all x >= 0
        rows.append(np.where(block == b, 0.8, -0.2))
    for f in range(3):  # a budget per fund
        rows.append((fund == f).astype(float))
    rows.append(np.ones(n))  # all money
    dense = np.array(rows)
    caps = sp.random(40, n, density=0.01, random_state=seed, data_rvs=lambda k: np.ones(k))
    A = sp.vstack([sp.csr_matrix(dense), caps], format="csr")
    m = A.shape[0]
    lower = np.r_[np.full(6, -0.05 * n), np.full(3, -np.inf), -np.inf, np.full(40, -np.inf)]
    upper = np.r_[np.full(6, np.inf), np.full(3, 30.0), 80.0, np.full(40, 5.0)]
    return MatrixProgram(c=rng.random(n), A=A, row_lower=lower, row_upper=upper,
                         col_lower=np.zeros(n), col_upper=np.full(n, 3.0),
                         integer=np.zeros(n, dtype=bool), row_names=[f"r{i}" for i in range(m)],
                         col_names=[f"x{j}" for j in range(n)], maximize=True)


def solve(program: MatrixProgram):
    h = new_highs()
    h.setOptionValue("solver", "simplex")
    program.to_highs(h)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    sol = h.getSolution()
    return (h.getInfo().objective_function_value, np.array(sol.col_value),
            np.array(sol.row_dual), np.array(sol.col_dual))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partial_sums_keep_the_optimum_and_give_an_optimal_dual_of_the_original(seed):
    program = random_program(seed)
    lean = partial_sums(program)
    assert lean is not None and lean.program.A.nnz < 0.8 * program.A.nnz
    m, n = program.shape
    assert lean.program.shape == (m + lean.G.shape[0], n + lean.G.shape[0])
    assert lean.program.row_names[m].startswith(ROW_PREFIX)
    wide_value = solve(program)[0]
    value, x, row_dual, col_dual = solve(lean.program)
    assert value == pytest.approx(wide_value, rel=1e-9)
    x, y, d = x[:n], row_dual[:m], col_dual[:n]
    A = program.A
    # Primal feasible in the original, with the same value.
    act = A @ x
    assert np.all(act <= program.row_upper + 1e-7) and np.all(act >= program.row_lower - 1e-7)
    assert program.c @ x == pytest.approx(wide_value, rel=1e-9)
    # Dual of the original: c - A'y = d (stationarity), with the sign conventions of a max.
    assert np.abs(program.c - A.T @ y - d).max() <= 1e-7
    # Complementary slackness: a priced row / reduced cost sits at its bound.
    priced = np.abs(y) > 1e-9
    at_bound = np.isclose(act, program.row_upper, atol=1e-7) | \
        np.isclose(act, program.row_lower, atol=1e-7)
    assert np.all(at_bound[priced])
    moved = np.abs(d) > 1e-9
    x_at_bound = np.isclose(x, program.col_lower, atol=1e-7) | \
        np.isclose(x, program.col_upper, atol=1e-7)
    assert np.all(x_at_bound[moved])
    # The defining rows hold: each partial sum is the sum of its amounts.
    full = solve(lean.program)[1]
    assert np.abs(full[n:] - lean.G @ x).max() <= 1e-7


def test_no_partial_sums_where_they_do_not_save():
    program = random_program(0)
    sparse_only = dataclasses.replace(program, A=program.A[10:], row_lower=program.row_lower[10:],
                                      row_upper=program.row_upper[10:],
                                      row_names=program.row_names[10:])
    assert partial_sums(sparse_only) is None


@pytest.fixture(scope="module")
def round_150(tmp_path_factory):
    path = tmp_path_factory.mktemp("partials") / "s150.xlsx"
    write_synthetic_round(path, 150, 5, 3600, 0.05)
    return load_round(path).round


def test_a_round_solved_with_partial_sums_gives_the_same_allocation_and_prices(
        round_150, monkeypatch, tmp_path):
    wide = solve_round(round_150)
    assert not wide.plan.partial_sums  # too small for them by default

    def with_partial_sums(rnd, program, method="choose"):
        plan = choose_plan(program.shape[1], int(program.integer.sum()),
                           time_limit_s=rnd.settings.time_limit_s, method=method)
        return dataclasses.replace(plan, partial_sums=True)

    monkeypatch.setattr(allocator.stages.model, "round_plan", with_partial_sums)
    lean = solve_round(round_150)
    assert lean.status == wide.status == Status.optimal
    # Branch and bound solves the original matrix; the LP stages the leaner one.
    assert "partial_sums" not in lean.stages[0].solver_log and lean.stages[0].solved_program is None
    for stage in lean.stages[1:]:
        assert stage.solver_log["partial_sums"] > 0, stage.name
        assert stage.as_solved.A.nnz < 0.9 * stage.program.A.nnz
    assert lean.optimal_objective == pytest.approx(wide.optimal_objective, rel=1e-9)
    assert lean.allocation["units"].tolist() == wide.allocation["units"].tolist()
    # The prices LP's optimal basis is read back in the original rows and columns, and the
    # report's ranging starts from it.
    from allocator.sensitivity import sensitivity

    cols, rows_ = lean.prices.basis
    assert (len(cols), len(rows_)) == (wide.prices.program.shape[1], wide.prices.program.shape[0])
    assert sensitivity(lean).available
    # Budget and rule prices of the original rows are read back through the partial sums.
    rows = [i for i, r in enumerate(wide.row_refs) if r.is_rule
            or r.component.startswith("spend_fund")]
    assert np.allclose(lean.prices.row_dual[rows], wide.prices.row_dual[rows], atol=1e-9,
                       rtol=1e-6)
    # The record holds what HiGHS solved, and verifies against a re-run of the same plan.
    folder = write_record(lean, tmp_path / "models", None).folder
    assert f"{ROW_PREFIX}[0]" in (folder / "stage2_outcome_lp.mps").read_text()
    assert verify_record(folder).verified
