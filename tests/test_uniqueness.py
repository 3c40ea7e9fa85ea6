"""A re-run anywhere returns the same allocation: ties are broken, row order does not matter."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from allocator.engine import solve_round
from allocator.validate import load_round
from tests.rounds import sheets, write


def _twins_round() -> dict:
    twin = {"sector": "digital", "stage": "established", "regions": "A1", "cost_per_trainee": 1000,
            "max_trainees": 100, "employment_rate": 0.5, "retention_rate": 0.5,
            "learning_gain": 0.1, "wage_gain": 0.1}
    return sheets(
        Round={"round_id": "TW", "periods": "2026"},
        Funds=[{"fund_id": "PUB", "kind": "public", "owner": "A"}],
        Budgets=[{"fund_id": "PUB", "period": "2026", "amount": 50000}],
        Contributions=None, Rules=None,
        Programs=[{"program_id": "PA", "name": "Twin A", **twin},
                  {"program_id": "PB", "name": "Twin B", **twin}],
    )


def test_identical_programs_get_identical_amounts(tmp_path):
    # Budget 50,000 buys 50 trainees of either twin; any split is optimal, the tie-break halves it.
    sol = solve_round(load_round(write(tmp_path / "tw.xlsx", _twins_round())).round)
    by_program = sol.allocation.groupby("program_id")["amount"].sum().to_dict()
    assert by_program == {"PA": 25000.0, "PB": 25000.0}


def _shuffled(data: dict, seed: int) -> dict:
    rng = random.Random(seed)
    out = {}
    for name, rows in data.items():
        if isinstance(rows, list):
            rows = [dict(r) for r in rows]
            rng.shuffle(rows)
            for r in rows:
                for key in ("program_id", "region_id", "fund_id"):
                    if isinstance(r.get(key), str):
                        r[key] = f"  {r[key]} "
        out[name] = rows
    return out


def test_shuffled_rows_and_padded_ids_give_same_digest_and_allocation(tmp_path):
    base = load_round(write(tmp_path / "a.xlsx", sheets())).round
    other = load_round(write(tmp_path / "b.xlsx", _shuffled(sheets(), seed=7))).round
    assert base.digest() == other.digest()
    a = solve_round(base).allocation
    b = solve_round(other).allocation
    assert a.to_dict("records") == b.to_dict("records")


_SOLVE = """
import sys
from allocator.engine import solve_round
from allocator.validate import load_round
sol = solve_round(load_round(sys.argv[1]).round, threads=int(sys.argv[2]))
print(sol.allocation[["program_id", "region_id", "fund_id", "period", "units"]].to_csv(index=False))
"""


@pytest.mark.slow  # a process per thread count
def test_thread_counts_agree(tmp_path):
    # HiGHS fixes its thread pool once per process, so each count runs in its own process.
    path = write(tmp_path / "a.xlsx", sheets())
    outputs = [
        subprocess.run([sys.executable, "-c", _SOLVE, str(path), threads], check=True,
                       capture_output=True, text=True).stdout
        for threads in ("1", "2")
    ]
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") > 2


def test_interior_point_and_simplex_paths_agree(tmp_path, monkeypatch):
    # Large rounds solve their LP stages by interior point (with crossover), small ones by
    # simplex; the duals differ, but the optimal face they fix for the tie-break is the same,
    # and the tie-break's optimum on it is unique, so both paths give the same allocation.
    import dataclasses

    import allocator.plan as plan

    rnd = load_round(write(tmp_path / "a.xlsx", sheets())).round
    simplex = solve_round(rnd)
    monkeypatch.setattr(plan, "THRESHOLDS", dataclasses.replace(plan.THRESHOLDS, ipm_columns=0))
    interior = solve_round(rnd)
    assert "ipm" in [s.solver_log.get("method") for s in interior.stages]
    assert simplex.allocation.to_dict("records") == interior.allocation.to_dict("records")


def test_interior_point_without_crossover_is_a_reproducible_optimum(tmp_path, monkeypatch):
    # The largest rounds skip crossover and the tie-break LP: the allocation is the interior
    # point optimum (the centre of the optimal face). It must be as good as the simplex path's,
    # keep every rule, give twins equal money, and come out the same for shuffled rows.
    import dataclasses

    import allocator.plan as plan
    from allocator.checker import check_allocation

    rnd = load_round(write(tmp_path / "a.xlsx", sheets())).round
    simplex = solve_round(rnd)
    monkeypatch.setattr(plan, "THRESHOLDS", dataclasses.replace(plan.THRESHOLDS, ipm_columns=0,
                                                                crossover_columns=0))
    interior = solve_round(rnd)
    assert [s.name for s in interior.stages][-1] != "tiebreak"
    assert any("interior-point optimum" in w for w in interior.warnings)
    assert interior.optimal_objective == pytest.approx(simplex.optimal_objective, rel=1e-7)
    assert check_allocation(rnd, interior.allocation) == []
    shuffled = load_round(write(tmp_path / "b.xlsx", _shuffled(sheets(), seed=3))).round
    again = solve_round(shuffled)
    assert again.allocation.to_dict("records") == interior.allocation.to_dict("records")
    twins = solve_round(load_round(write(tmp_path / "tw.xlsx", _twins_round())).round)
    by_program = twins.allocation.groupby("program_id")["amount"].sum().to_dict()
    assert by_program == {"PA": 25000.0, "PB": 25000.0}


def test_optimal_face_fixes_what_every_optimum_shares():
    # max x1 + x2 + 0.5 x3  s.t.  x1 + x2 + x3 <= 10,  x1 <= 6.  Every optimum spends all 10 on
    # x1 and x2 (x3 earns less per unit), so the face fixes x3 = 0 and the budget row at 10,
    # and leaves x1 (basic or not) free to split with x2.
    import numpy as np
    import scipy.sparse as sp

    from allocator.solve import INF, MatrixProgram, solve_program
    from allocator.stages.tiebreak import optimal_face

    lp = MatrixProgram(np.array([1.0, 1.0, 0.5]), sp.csr_matrix(np.array([[1.0, 1.0, 1.0]])),
                       np.array([-INF]), np.array([10.0]), np.zeros(3), np.array([6.0, INF, INF]),
                       np.zeros(3, bool), ["budget"], ["x1", "x2", "x3"])
    solved = solve_program(lp, "outcome", time_limit=10, mip_gap=0)
    face = optimal_face(lp, solved)
    assert face.col_upper[2] == 0.0
    assert face.row_lower[0] == face.row_upper[0] == 10.0
    assert face.col_lower[0] == 0.0 and face.col_upper[0] == 6.0  # x1 is not pinned


@pytest.mark.slow  # a 200-program synthetic round
def test_tiebreak_gives_up_no_outcome(tmp_path):
    # The tie-break's objective-hold row tolerates a 1e-7 loss; a tie-break over the whole
    # feasible set used all of it, moving money to programs that buy less. On the optimal
    # face the unrounded allocation keeps the outcome optimum to rounding error.
    from benchmarks.synthetic import write_synthetic_round

    rnd = load_round(write_synthetic_round(tmp_path / "s.xlsx", 200, 1)).round
    sol = solve_round(rnd)
    prices, tie = sol.prices, sol.stages[-1]
    assert tie.name == "tiebreak" and tie.status.value == "optimal"
    kept = float(prices.program.c @ tie.x)
    assert abs(prices.objective - kept) <= 1e-10 * abs(prices.objective)


def test_optimal_face_needs_a_vertex():
    # Interior-point duals without crossover are small but not zero on rows that only come
    # close to a bound; fixing those would over-constrain the tie-break, so no face is taken.
    import numpy as np
    import scipy.sparse as sp

    from allocator.solve import INF, MatrixProgram, solve_program
    from allocator.stages.tiebreak import optimal_face

    lp = MatrixProgram(np.array([1.0, 1.0, 0.5]), sp.csr_matrix(np.array([[1.0, 1.0, 1.0]])),
                       np.array([-INF]), np.array([10.0]), np.zeros(3), np.array([6.0, INF, INF]),
                       np.zeros(3, bool), ["budget"], ["x1", "x2", "x3"])
    solved = solve_program(lp, "outcome", time_limit=10, mip_gap=0,
                           options={"solver": "ipm", "run_crossover": "off"})
    assert solved.solver_log["basis"] is False
    assert optimal_face(lp, solved) is lp


def _tiebreak_lp(tmp_path):
    """The tie-break LP of a 300-program synthetic round (about 3,000 columns): one vertex."""
    from benchmarks.synthetic import write_synthetic_round

    rnd = load_round(write_synthetic_round(tmp_path / "s.xlsx", 300, 3)).round
    return next(s for s in solve_round(rnd).stages if s.name == "tiebreak").program


INTERIOR_WITH_CROSSOVER = {"solver": "ipm", "run_crossover": "on", "presolve_rule_off": 1 << 10}


def test_the_vertex_reached_from_the_interior_point_is_the_tie_breaks_one_optimum(tmp_path):
    import numpy as np

    from allocator.solve import Status, solve_program

    tb = _tiebreak_lp(tmp_path)
    kw = {"time_limit": 600.0, "mip_gap": 1e-4}
    finished = solve_program(tb, "tiebreak", options=INTERIOR_WITH_CROSSOVER,
                             finish="crossover_from_interior", **kw)
    assert finished.status == Status.optimal and finished.solver_log["finish"] == \
        "crossover_from_interior"
    assert finished.solver_log["basis"]  # a vertex: HiGHS holds a valid basis
    assert finished.solver_log["options"]["run_crossover"] == "off"  # what the record replays
    # independently: dual simplex from scratch on the same LP
    simplex = solve_program(tb, "tiebreak", options={"solver": "simplex"}, **kw)
    assert simplex.status == Status.optimal
    assert finished.objective == pytest.approx(simplex.objective, rel=1e-9)
    scale = max(1.0, float(np.abs(simplex.x).max()))
    assert np.abs(finished.x - simplex.x).max() <= 1e-7 * scale


def test_when_the_crossover_from_the_interior_point_fails_highs_own_crossover_is_used(
        tmp_path, monkeypatch):
    import allocator.solve as solve
    from allocator.solve import Status, solve_program

    tb = _tiebreak_lp(tmp_path)
    monkeypatch.setattr(solve, "_vertex_from_interior", lambda *a, **k: None)
    out = solve_program(tb, "tiebreak", options=INTERIOR_WITH_CROSSOVER,
                        finish="crossover_from_interior", time_limit=600.0, mip_gap=1e-4)
    assert out.status == Status.optimal and "finish" not in out.solver_log
    assert out.solver_log["options"]["run_crossover"] == "on" and out.solver_log["basis"]


def test_a_tie_break_stopped_by_its_time_limit_is_not_solved_again(tmp_path):
    from allocator.solve import Status, solve_program

    tb = _tiebreak_lp(tmp_path)
    out = solve_program(tb, "tiebreak", options=INTERIOR_WITH_CROSSOVER,
                        finish="crossover_from_interior", time_limit=1e-4, mip_gap=1e-4)
    assert out.status != Status.optimal
    # the interior point run as recorded, not a second run with HiGHS's own crossover
    assert out.solver_log["options"]["run_crossover"] == "off" and "finish" not in out.solver_log
