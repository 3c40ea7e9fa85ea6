"""Warm chains: one round solved again and again with only budgets or outcome values changed.

A sweep point differs from the round it came from by a fund's budget in a period (the upper
bounds of the budget rows) and by programs' outcome values (the objective coefficients of the
amounts): nothing else of the matrix. So a chain of sweep points builds the model once, and
each later point is that matrix with its bounds and costs set (`point_model`), and each stage
that can starts from the previous point's basis (`Warm`):

- the outcome stage of an LP round, from the previous optimal basis;
- the outcome stage of a MILP round, by its LP relaxation from the previous basis, taken as the
  MILP's answer only when that is provably the answer branch and bound gives
  (`settled_outcome`); otherwise branch and bound runs from scratch, as in a cold solve;
- the tie-break LP, from the previous point's tie-break basis.

The answer does not change: an LP's optimum does not depend on where simplex starts, and the
tie-break makes the allocation unique (the same vertex, up to the solver's tolerances, which
rounding to whole units absorbs; tests compare every warm point with a cold `solve_round`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from allocator.eligibility import budget_available
from allocator.formulation import budget_caps, robust_deviation_per_unit, value_per_unit
from allocator.round import Round
from allocator.solve import INF, StageResult, Start, Status, raise_for_status, solve_program
from allocator.stages.model import BuiltModel
from allocator.stages.outcome import relaxed
from allocator.stages.tiebreak import OBJECTIVE_HOLD_RTOL, optimal_face

Basis = tuple[np.ndarray, np.ndarray]  # column and row status codes, as StageResult.basis
BUDGET_ROWS = ("spend_fund_period_max", "spend_fund_cumulative_max")
# The on/off decisions count as whole when this close to 0 or 1, and as not moving over the
# relaxation's optimal face when the face LP moves them by at most this much in all.
WHOLE_TOL = 1e-9
FACE_MOVE_TOL = 1e-6
# The face LP starts at the relaxation's optimum, which lies on the face: primal simplex keeps
# it feasible (measured, 1,000 programs: 0.04 s from there, 0.3-0.6 s from scratch).
FACE_OPTIONS: dict[str, object] = {"solver": "simplex", "simplex_strategy": 4}
_BASIC = 1  # highspy.HighsBasisStatus.kBasic
T = TypeVar("T")


@dataclass
class Warm:
    """What one solve of a chain leaves for the next: the bases to start from, and counts of
    how the outcome stages were solved (for the benchmark's profile)."""

    outcome: Basis | None = None  # the outcome LP's (or the MILP's relaxation's) optimal basis
    tiebreak: Basis | None = None  # the tie-break LP's optimal basis
    settled: int = 0  # MILP outcome stages answered by their LP relaxation
    branched: int = 0  # MILP outcome stages solved by branch and bound (from scratch)
    source: str = "previous sweep point"  # recorded with each stage started from a basis

    def start(self, basis: Basis | None, shape: tuple[int, int]) -> Start | None:
        """A start from `basis` when it fits a program of `shape` (rows, columns)."""
        if basis is None or (len(basis[1]), len(basis[0])) != shape:
            return None
        return Start(self.source, basis=basis)


def shown_optimum(value: float | None) -> float | None:
    """The optimum before rounding as sweep and comparison workbooks show it: to 4 decimals
    (as `allocator run` prints it). A warm solve reaches the same vertex as a cold one, but its
    objective can differ in the last binary digits (simplex from another basis sums in another
    order), and the workbooks must not depend on where a solve started."""
    return None if value is None else round(float(value), 4)


def split_chains(chains: list[list[T]], parts: int) -> list[list[T]]:
    """The longest chain (the first of equals) cut in two, its first half the longer, until
    there are `parts` chains or every chain is a single item. Depends on the chains and
    `parts` only, never on the workers that run them: a warm solve can differ from a cold one
    in the last digits of the unrounded optimum, so the same chains everywhere keep every
    runner's answers identical."""
    chains = [list(c) for c in chains]
    while len(chains) < parts and any(len(c) > 1 for c in chains):
        longest = max(range(len(chains)), key=lambda i: (len(chains[i]), -i))
        chain = chains[longest]
        half = (len(chain) + 1) // 2
        chains[longest:longest + 1] = [chain[:half], chain[half:]]
    return chains


def point_free_part(rnd: Round) -> dict[str, Any]:
    """The round without what `point_model` sets anew (budgets, programs' outcome values, the
    objective's weights: the budget rows' bounds and the amounts' costs). Two rounds with the
    same part share one matrix but for those, so one can start from the other's model and
    bases."""
    data = rnd.model_dump(exclude={"budgets", "objective"})
    for program in data["programs"]:
        program.pop("outcomes")
    return data


# --- the model of a point ----------------------------------------------------------------------
def point_model(base: BuiltModel, rnd: Round) -> BuiltModel | None:
    """The model of `rnd`, a round that differs from `base.round` only in budgets and programs'
    outcome values (a sweep point), made from `base`'s matrix: budget rows' bounds and the
    amounts' costs set from `rnd`. None when the budgets change which funds can pay at all
    (then the eligible amounts differ, and the point's model must be built).

    The budget rows' right-hand sides are `formulation.budget_caps`, as the formulation sets them; the test
    tests/test_warm.py checks the result equals `build_model(rnd)` entry by entry.
    """
    tick = time.perf_counter()
    old = base.round
    if budget_available(rnd) != budget_available(old):
        return None
    index, cols = base.index, base.columns
    if len(cols.robust) and not np.array_equal(robust_deviation_per_unit(rnd, index),
                                               robust_deviation_per_unit(old, index)):
        return None  # the protection rows' coefficients changed (never, from outcome draws)
    c = base.program.c.copy()
    c[cols.x] = value_per_unit(rnd, index)
    upper = base.program.row_upper.copy()
    caps = budget_caps(rnd)
    for i, ref in enumerate(base.row_refs):
        if ref.component in BUDGET_ROWS:
            upper[i] = caps[ref.index]
    program = dataclasses.replace(base.program, c=c, row_upper=upper)
    out = dataclasses.replace(base, round=rnd, program=program,
                              seconds={"build": time.perf_counter() - tick, "handover": 0.0})
    for name in ("rule_rows", "hard_rule_rows", "protection_rows"):  # rows do not move
        if name in base.__dict__:
            out.__dict__[name] = base.__dict__[name]
    return out


# --- the outcome stage -------------------------------------------------------------------------
def warm_outcome(model: BuiltModel, warm: Warm, *, threads: int | None) -> StageResult | None:
    """The outcome stage (`stages.outcome.solve_outcome`) from the previous point's basis;
    InfeasibleRoundError as there; None when the MILP must be solved by branch and bound (from
    scratch, as a cold solve does)."""
    program, plan = model.program, model.plan
    limits = {"time_limit": plan.time_limit_s, "mip_gap": model.round.settings.mip_gap,
              "threads": threads, "plan": plan}
    if not model.mip:
        first = solve_program(program, "outcome", start=warm.start(warm.outcome, program.shape),
                              **limits)
        warm.outcome = first.basis or warm.outcome  # an infeasible point leaves the last one
        raise_for_status(first)
        return first
    if plan.relaxation_first:
        return None  # the cold stage is the relaxation already, and no basis is kept for it
    lp = solve_program(relaxed(program), "outcome_relaxation", keep_basis=True,
                       start=warm.start(warm.outcome, program.shape), **limits)
    warm.outcome = lp.basis or warm.outcome
    if lp.status == Status.infeasible:  # no allocation keeps the rules even in part
        raise_for_status(lp)  # the MILP's own words for it
    settled = settled_outcome(model, lp, threads=threads)
    if settled is None:
        warm.branched += 1
        return None
    warm.settled += 1
    return settled


def settled_outcome(model: BuiltModel, lp: StageResult, *,
                    threads: int | None) -> StageResult | None:
    """The MILP outcome stage's answer read from its LP relaxation `lp`, when the relaxation's
    optimum has whole on/off decisions and every optimal solution of the relaxation has the
    same ones; None otherwise.

    Why branch and bound then ends with the same on/off decisions: the relaxation's optimum z
    is reached by a MILP solution, so z is the MILP's optimum too. Presolve only tightens the
    relaxation (keeping a MILP optimum), so the root LP HiGHS solves has optimum z as well and
    its optimal solutions are among the relaxation's: all of them have these decisions, whole,
    so the root node's solution is an incumbent with gap 0 and the search ends there. The
    later stages read only the decisions (the prices LP fixes them and is solved to its
    optimum; the tie-break picks one allocation), so the allocation is the cold one.
    """
    program = model.program
    if lp.status != Status.optimal or lp.x is None or lp.basis is None \
            or lp.solver_log.get("dual_infeasibilities"):
        return None
    ints = np.flatnonzero(program.integer)
    on = np.round(lp.x[ints])
    if np.abs(lp.x[ints] - on).max(initial=0.0) > WHOLE_TOL:
        return None
    face = face_move(model, lp, on, threads=threads)
    if face.status != Status.optimal or face.objective is None \
            or face.objective + on.sum() > FACE_MOVE_TOL:
        return None
    x = lp.x.copy()
    x[ints] = on
    return StageResult("outcome", program, Status.optimal, lp.objective, x, None, None, 0.0,
                       lp.seconds + face.seconds,
                       {**lp.solver_log, "settled_by": "LP relaxation: its on/off decisions are "
                        "whole and the same on its whole optimal face",
                        "face_simplex_iterations": face.solver_log.get("simplex_iterations")})


def face_move(model: BuiltModel, lp: StageResult, on: np.ndarray, *,
              threads: int | None) -> StageResult:
    """The LP that moves the on/off decisions away from `on` as far as the relaxation's optimal
    face allows: max sum of y over those off minus y over those on (at most -sum(on) + moves),
    every column and row with a non-zero price held at its bound (complementary slackness:
    exactly the optimal solutions), the outcome value held at the optimum."""
    base = lp.program
    ints = np.flatnonzero(model.program.integer)
    z = float(lp.objective or 0.0)
    c = np.zeros(base.shape[1])
    c[ints] = np.where(on > 0.5, -1.0, 1.0)
    hold = z - OBJECTIVE_HOLD_RTOL * max(1.0, abs(z))
    program = dataclasses.replace(
        base, c=c, A=sp.vstack([base.A, sp.csr_matrix(base.c.reshape(1, -1))], format="csr"),
        row_lower=np.append(base.row_lower, hold), row_upper=np.append(base.row_upper, INF),
        row_names=[*base.row_names, "outcome_value_min"], maximize=True)
    program = optimal_face(program, lp)
    assert lp.basis is not None
    basis = (lp.basis[0], np.append(lp.basis[1], _BASIC).astype(np.int8))
    return solve_program(program, "outcome_face", time_limit=model.plan.follow_up_time_limit_s,
                         mip_gap=model.round.settings.mip_gap, threads=threads,
                         options=FACE_OPTIONS, plan=model.plan,
                         start=Start("outcome_relaxation", basis=basis))
