"""Warm sweeps: every point of a chain solved from the one before gives exactly what a cold,
independent `solve_round` of that point's round gives; the model changed in place is the
model built from scratch."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from allocator.diagnose import solve_diagnosed
from allocator.errors import InfeasibleRoundError
from allocator.round import Round
from allocator.stages.model import build_model
from allocator.sweep import (
    BudgetRange,
    SweepTask,
    solve_point,
    sweep_chains,
    sweep_tasks,
    task_round,
)
from allocator.validate import load_round
from allocator.warm import Warm, point_model
from tests import rounds

# A floor of 60,000 on all money: JIF 2026 below about 30,000 (with PUB's 30,000) is infeasible.
FLOOR = [{"rule_id": "R-MIN", "measure": "amount", "select": "fund=JIF|PUB", "op": ">=",
          "value": 60000}]


def lp_round(tmp_path: Path) -> Round:
    """The test round without all-or-nothing programs (an LP), with the floor."""
    programs = [{**p, "min_trainees": 0} for p in rounds.BASE["Programs"]]
    return load_round(rounds.write(tmp_path / "lp.xlsx", rounds.sheets(
        Programs=programs, Rules=rounds.BASE["Rules"] + FLOOR))).round


def milp_round(tmp_path: Path) -> Round:
    """The test round with every program all-or-nothing (a MILP), with the floor."""
    programs = [{**p, "min_trainees": 4} for p in rounds.BASE["Programs"]]
    return load_round(rounds.write(tmp_path / "milp.xlsx", rounds.sheets(
        Programs=programs, Rules=rounds.BASE["Rules"] + FLOOR))).round


def cold(rnd: Round) -> tuple[str, float | None, dict[str, float]]:
    """Status, rounded objective and amount per x of a cold solve."""
    try:
        sol = solve_diagnosed(rnd)
    except InfeasibleRoundError:
        return "infeasible", None, {}
    return sol.status.value, sol.objective, amounts(sol.allocation)


def amounts(alloc) -> dict[str, float]:
    return {f"{r.program_id}/{r.region_id}/{r.fund_id}/{r.period}": r.amount
            for r in alloc.itertuples()}


def check_chain(base: Round, tasks: list[SweepTask], budget_range: BudgetRange | None) -> Warm:
    """Solve `tasks` as one warm chain; each point must equal its cold solve exactly."""
    warm, built = Warm(), None
    for task in tasks:
        rnd = task_round(base, task, budget_range)
        model = point_model(built, rnd) if built is not None else None
        point, sol = solve_point(rnd, task, model, warm)
        status, objective, money = cold(rnd)
        assert point.status == status, (task, point.message)
        assert point.objective == objective, task  # exact: the same whole units
        if sol is not None:
            built = built or sol.model
            assert amounts(sol.allocation) == money, task
    return warm


def test_point_model_is_the_built_model(tmp_path: Path) -> None:
    """Budget rows and outcome costs set in place give the matrix build_model gives (the
    formulation's budget rows and objective, mirrored by allocator.warm)."""
    base = milp_round(tmp_path)
    built = build_model(base)
    br = BudgetRange("JIF", "2026", Decimal("40000"), Decimal("160000.5"), 3)
    tasks = sweep_tasks(base, br, 0.3, 2, seed=3)
    for task in tasks:
        rnd = task_round(base, task, br)
        ours, theirs = point_model(built, rnd), build_model(rnd)
        assert ours is not None
        for field in ("c", "row_lower", "row_upper", "col_lower", "col_upper", "integer"):
            np.testing.assert_array_equal(getattr(ours.program, field),
                                          getattr(theirs.program, field), err_msg=field)
        assert (ours.program.A != theirs.program.A).nnz == 0
    # a budget of 0 in every period takes the fund out of the index: the model is rebuilt
    empty = BudgetRange("PUB", "2026", Decimal(0), Decimal(0), 1)
    rnd = task_round(base, SweepTask(0, Decimal(0), 0), empty)
    assert point_model(built, rnd) is None


@pytest.mark.parametrize("make", [lp_round, milp_round])
def test_budget_levels_warm_equal_cold(tmp_path: Path, make) -> None:
    """Levels ascending, through infeasible ones (below the floor) and back, then descending."""
    base = make(tmp_path)
    br = BudgetRange("JIF", "2026", Decimal("0"), Decimal("150000"), 7)
    tasks = sweep_tasks(base, br, None, 1, 0)
    order = tasks + tasks[::-1][1:]
    warm = check_chain(base, order, br)
    assert warm.outcome is not None and warm.tiebreak is not None  # it did start warm
    if make is milp_round:  # every feasible point went through the warm relaxation first
        assert warm.settled + warm.branched > 0


@pytest.mark.parametrize("make", [lp_round, milp_round])
def test_outcome_spread_warm_equal_cold(tmp_path: Path, make) -> None:
    base = make(tmp_path)
    tasks = sweep_tasks(base, None, 0.4, 8, seed=5)
    warm = check_chain(base, tasks, None)
    assert warm.tiebreak is not None
    if make is milp_round:
        assert warm.settled + warm.branched == len(tasks)


def test_synthetic_round_budget_sweep_warm_equal_cold(tmp_path: Path) -> None:
    """A synthetic round (carry-over funds, co-financing caps, rules of every measure, twins,
    all-or-nothing programs) over budget levels and outcome draws."""
    from benchmarks.synthetic import write_synthetic_round

    base = load_round(write_synthetic_round(tmp_path / "syn.xlsx", 60, 1)).round
    jif = base.budget("JIF", "2027")
    br = BudgetRange("JIF", "2027", jif * Decimal("0.6"), jif * Decimal("1.4"), 5)
    by_level = check_chain(base, sweep_tasks(base, br, None, 1, 0), br)
    by_draw = check_chain(base, sweep_tasks(base, None, 0.2, 4, seed=2), None)
    # the MILP answered by its relaxation, and that answer checked against branch and bound
    assert by_level.settled > 0 and by_draw.settled > 0


def test_chains_depend_on_tasks_only(tmp_path: Path) -> None:
    base = lp_round(tmp_path)
    br = BudgetRange("JIF", "2026", Decimal("0"), Decimal("150000"), 5)
    grid = sweep_tasks(base, br, 0.1, 3, seed=1)
    chains = sweep_chains(grid, 2)
    assert [[(t.level, t.sample) for t in c] for c in chains] == \
        [[(li, s) for li in range(5)] for s in range(3)]  # per sample, its levels in order
    levels = sweep_tasks(base, br, None, 1, 0)
    assert [[t.level for t in c] for c in sweep_chains(levels, 2)] == [[0, 1, 2], [3, 4]]
    assert [[t.level for t in c] for c in sweep_chains(levels, 1)] == [[0, 1, 2, 3, 4]]
