"""Stage 4, one allocation among the optima: the tie-break (or the interior-point centre).

A round has many optimal allocations when programs tie; the one reported must be the same on
every machine and for every row order of the workbook. The plan says how (`uniqueness`):

- `tiebreak`: hold the outcome value at its optimum (on the optimal face of the prices LP, or
  within what the equity stages allow), keep programs equal in every respect equal, and
  minimise the money spent with a distinct seeded weight per amount, in the canonical order of
  ids: the optimum is one vertex. (A strictly convex quadratic tie-break was tried first:
  HiGHS's QP solver did not finish a 2,000-program round in 60 s.)
- `interior_centre`: interior point without crossover ends at the analytic centre of the
  optimal face, already one well-defined optimum; twins get their average.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from allocator.eligibility import AllocationIndex
from allocator.progress import phase
from allocator.round import Round
from allocator.solve import INF, Columns, MatrixProgram, StageResult, Status, solve_program
from allocator.stages.equity import EquityResult
from allocator.stages.model import BuiltModel
from allocator.stages.prices import Prices

if TYPE_CHECKING:
    from allocator.warm import Warm

# The tie-break stage may give up this share of the outcome value to stay numerically feasible.
OBJECTIVE_HOLD_RTOL = 1e-7
# HiGHS's presolve rule "dependent equations" (bit 10 of presolve_rule_off): on the optimal
# face, whose binding rows are equations, its search took 61 s of a 10,000-program tie-break
# that interior point then solved in 8 s.
TIEBREAK_OPTIONS: dict[str, object] = {"presolve_rule_off": 1 << 10}
TIEBREAK_SEED = 20261125
# A reduced cost or row price below this share of the largest objective coefficient counts as
# zero. On the synthetic rounds the outcome LP's duals lie either below 1e-14 or above 1e-6 of
# it, so the face found does not hinge on the threshold.
FACE_DUAL_RTOL = 1e-9
FACE_PRIMAL_RTOL = 1e-6


@dataclass
class Unique:
    """The one allocation reported (every column), and how it was reached."""

    x: np.ndarray
    stage: StageResult | None  # the tie-break LP; None at the interior-point centre
    warnings: list[str] = field(default_factory=list)


def make_unique(model: BuiltModel, prices: Prices, equity: EquityResult | None, *,
                threads: int | None, warm: Warm | None = None) -> Unique:
    """The plan's way to one allocation: the tie-break LP, or the interior-point centre; with
    `warm`, the tie-break LP starts from the previous sweep point's basis (its optimum is one
    vertex, wherever simplex starts)."""
    rnd, index, cols = model.round, model.index, model.columns
    twins = twin_pairs(rnd, index, cols, prices.switches)
    if model.plan.uniqueness == "interior_centre":
        # See allocator.plan.choose_plan for why no tie-break LP runs then.
        return Unique(even_out_twins(prices.result.x, twins), None,
                      [interior_warning(prices.result)])
    phase("making the allocation unique (equal programs get equal money)")
    held, hold_value = (prices.program, prices.result.objective) if equity is None else \
        (equity.program, equity.outcome_after)
    tb = tiebreak_program(held, hold_value, tiebreak_weights(held, cols), twins)
    if equity is None:  # equity stages leave the prices LP's optimal face on purpose
        tb = optimal_face(tb, prices.result)
    plan = model.plan
    tie = solve_program(tb, "tiebreak", time_limit=plan.follow_up_time_limit_s,
                        mip_gap=rnd.settings.mip_gap, threads=threads, options=TIEBREAK_OPTIONS,
                        plan=plan, start=warm.start(warm.tiebreak, tb.shape) if warm else None,
                        keep_basis=warm is not None, finish=plan.tiebreak_finish)
    if warm is not None:
        warm.tiebreak = tie.basis or warm.tiebreak
    if tie.status == Status.optimal:
        return Unique(tie.x, tie)
    before = prices.result.x if equity is None else equity.stages[-1].x
    return Unique(before, tie, [
        f"the tie-break stage ended without an optimum ({tie.status.value}); the allocation is "
        "optimal but may not be the unique, reproducible one"])


def tiebreak_program(program: MatrixProgram, objective: float, weights: np.ndarray,
                     equal_pairs: list[tuple[int, int]]) -> MatrixProgram:
    """min sum_j w_j x_j s.t. the rows of `program`, c'x >= optimum, x_a = x_b for twins."""
    hold = objective - OBJECTIVE_HOLD_RTOL * max(1.0, abs(objective))
    n_cols = program.shape[1]
    blocks = [program.A, sp.csr_matrix(program.c.reshape(1, -1))]
    if equal_pairs:
        rows = np.repeat(np.arange(len(equal_pairs)), 2)
        cols = np.array(equal_pairs, dtype=np.int64).ravel()
        vals = np.tile([1.0, -1.0], len(equal_pairs))
        blocks.append(sp.csr_matrix((vals, (rows, cols)), shape=(len(equal_pairs), n_cols)))
    zeros = np.zeros(len(equal_pairs))
    return dataclasses.replace(
        program, c=weights.astype(float), A=sp.vstack(blocks, format="csr"),
        row_lower=np.concatenate([program.row_lower, [hold], zeros]),
        row_upper=np.concatenate([program.row_upper, [INF], zeros]),
        integer=np.zeros_like(program.integer),
        row_names=[*program.row_names, "outcome_value_min",
                   *[f"twins_equal[{a},{b}]" for a, b in equal_pairs]],
        maximize=False)


def optimal_face(program: MatrixProgram, solved: StageResult) -> MatrixProgram:
    """`program` with its columns and first rows held on the optimal face of the `solved` LP.

    Complementary slackness: for any optimal dual, every optimal solution keeps each column
    with a non-zero reduced cost at its bound and each row with a non-zero price at its bound.
    Fixing them leaves exactly the optimal solutions (whichever optimal dual HiGHS returned),
    so the tie-break chooses among true optima, not among near-optima that the objective-hold
    row's tolerance would admit, and its LP shrinks to the columns that can still move.
    A bound is only fixed where the solved point also lies on it, and only from a vertex: the
    duals of an interior-point solution without crossover are small but not zero on rows that
    merely come close to a bound (at 50,000 programs they made 70,000 rows equations, and the
    tie-break's interior point solve stalled at a 3% gap).
    """
    base = solved.program
    if solved.x is None or solved.col_dual is None or solved.row_dual is None \
            or not solved.solver_log.get("basis"):
        return program
    sense = 1.0 if base.maximize else -1.0
    tol = FACE_DUAL_RTOL * max(float(np.abs(base.c).max(initial=0.0)), 1e-12)
    col_lower, col_upper = program.col_lower.copy(), program.col_upper.copy()
    _hold_at_bounds(solved.x, sense * solved.col_dual, tol, col_lower, col_upper)
    m = base.shape[0]
    row_lower, row_upper = program.row_lower.copy(), program.row_upper.copy()
    _hold_at_bounds(base.A @ solved.x, sense * solved.row_dual, tol, row_lower[:m], row_upper[:m])
    return dataclasses.replace(program, row_lower=row_lower, row_upper=row_upper,
                               col_lower=col_lower, col_upper=col_upper)


def _hold_at_bounds(value: np.ndarray, dual: np.ndarray, tol: float, lower: np.ndarray,
                    upper: np.ndarray) -> None:
    """Fix, in place, each entry whose (maximisation-signed) dual presses it onto a bound it
    sits on: a negative dual onto its lower bound, a positive one onto its upper bound."""
    near = FACE_PRIMAL_RTOL * np.maximum(1.0, np.abs(value))
    at_lower = (dual < -tol) & np.isfinite(lower) & (np.abs(value - lower) <= near)
    at_upper = (dual > tol) & np.isfinite(upper) & (np.abs(value - upper) <= near)
    upper[at_lower] = lower[at_lower]
    lower[at_upper] = upper[at_upper]


def tiebreak_weights(program: MatrixProgram, cols: Columns) -> np.ndarray:
    """Money spent, each x weighted 1 + u_k, u_k in [0, 1) drawn once from a fixed seed.

    Weights in a pattern (such as 1 + k/n) leave ties between alternative optima; seeded
    pseudo-random ones, taken in the canonical order of ids, leave none, and PCG64 gives the
    same numbers on every machine.
    """
    weights = np.zeros(program.shape[1])
    n = len(cols.x)
    if n:
        weights[cols.x] = 1.0 + np.random.Generator(np.random.PCG64(TIEBREAK_SEED)).random(n)
    weights[cols.s] = 2.0  # leftover soft-rule shortfall is never preferred
    return weights


def twin_pairs(rnd: Round, index: AllocationIndex, cols: Columns,
               switches: dict[tuple[str, str], float]) -> list[tuple[int, int]]:
    """Column pairs that must be equal: programs equal in every respect but id and name.

    A program named by id in any filter is nobody's twin (a rule may treat it apart), and
    all-or-nothing twins are paired only in periods where both are on or both off.
    """
    named = {v for f in rnd.funds for c in f.eligible.conditions if c.key in ("program", "program_id")
             for v in c.values}
    named |= {v for r in rnd.rules for flt in (r.select, r.relative_to) for c in flt.conditions
              if c.key in ("program", "program_id") for v in c.values}
    groups: dict[str, list[str]] = {}
    for p in rnd.programs:
        if p.program_id in named:
            continue
        key = p.model_dump_json(exclude={"program_id", "name"}) + str(rnd.performance_score(p.program_id))
        groups.setdefault(key, []).append(p.program_id)
    twins = {p for members in groups.values() if len(members) > 1 for p in members}
    cols_of: dict[str, dict[tuple[str, str, str], int]] = {p: {} for p in twins}
    for k in range(len(index)):
        p, r, f, t = index.key(k)
        if p in twins:
            cols_of[p][(r, f, t)] = int(cols.x[k])
    pairs = []
    for members in groups.values():
        first = members[0]
        for other in members[1:]:
            for (r, f, t), col in cols_of[first].items():
                twin = cols_of[other].get((r, f, t))
                if twin is not None and switches.get((first, t)) == switches.get((other, t)):
                    pairs.append((col, twin))
    return pairs


def even_out_twins(x: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """x with every group of twin columns set to its mean.

    Twins are equal in every respect, so swapping them maps optima onto optima, and the mean
    of two optima is one: the result is still optimal, with equal money for equal programs
    (HiGHS's presolve merges such parallel columns and gives one of them everything).
    """
    if not pairs:
        return x
    parent = {c: c for pair in pairs for c in pair}

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for c in parent:
        groups.setdefault(root(c), []).append(c)
    out = x.copy()
    for members in groups.values():
        out[members] = x[members].mean()
    return out


def interior_warning(prices: StageResult) -> str:
    """What a user is told about an interior-point allocation: the optimum at the centre of the
    optimal face, or, stopped by the time limit, the last iterate and how far off it may be."""
    if prices.status == Status.time_limit:
        return ("the time limit stopped the interior point method before the optimum; the "
                "allocation is its last iterate, within the reported gap of the optimum "
                "(raise time_limit_s on the Round sheet for a better one)")
    return ("the allocation is the interior-point optimum (the centre of the optimal face); at "
            "this size no tie-break LP is solved")
