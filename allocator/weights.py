"""Weight ranges: how far each Objective weight may move before the allocation changes.

The outcome LP maximises c(w)'x with c(w) = sum_m w_m c_m + c_rest (c_m: metric m per unit of
money of each x; c_rest: soft-rule penalties, the robust protection). An allocation x* stays
optimal for weights w' exactly when some dual solution proves it: row prices y and reduced
costs d = c(w') - A'y with the signs complementary slackness asks of x* (d_j <= 0 where x_j
sits at its lower bound, >= 0 at its upper bound, = 0 strictly between; y_i <= 0 on a row at
its lower bound, >= 0 at its upper bound, 0 on a row that is not binding; free for fixed
columns and equality rows).

Moving one weight, w_m' = w_m + delta, these conditions are linear in (y, delta), so the set of
delta for which x* stays optimal is an interval, and its two ends are two small LPs: minimise
and maximise delta over them (HiGHS). This is exact where the optimum is degenerate, unlike
ranging on one basis, whose range can be narrower than the allocation's. A weight whose range
is (-inf, inf) never changes the allocation on its own.

The range is that of the solver's allocation before rounding; with an equity objective it is
that of the best-outcome allocation of stage 1 (the equity stage then moves away from it on
purpose). For a robust round the spreads s_p are held at the chosen weights' (s_p depends on
the weights too, nonlinearly).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from allocator.sensitivity import WarmLP
from allocator.solve import INF, MatrixProgram, Status

if TYPE_CHECKING:  # the solution is passed in: the report reads weights without the engine
    from allocator.engine import Solution

ACTIVE_RTOL = 1e-7  # a row or column within this share of its bound sits on it
# Two LPs the size of the round's per weight: above this many columns the report leaves the
# ranges out rather than lengthen every run.
MAX_COLUMNS = 20_000


def _chosen_point(solution: Solution) -> tuple[MatrixProgram, np.ndarray, str]:
    """The LP whose optimum the allocation is, and that optimum (every column)."""
    if solution.fairness is None:
        for stage in reversed(solution.stages):
            if stage.name == "tiebreak" and stage.status == Status.optimal and stage.x is not None:
                return solution.prices.program, stage.x, "the allocation before rounding"
    return solution.prices.program, solution.prices.x, "the best-outcome allocation (stage 1)"


def _on(value: np.ndarray, bound: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Whether each value sits on its bound, to ACTIVE_RTOL of the larger of the bound and
    `scale` (a row's sum of |a_ij x_j|: a share row's activity is a difference of large sums)."""
    size = np.maximum(1.0, np.abs(bound)) if scale is None else \
        np.maximum(np.maximum(1.0, np.abs(bound)), scale)
    return np.isfinite(bound) & (np.abs(value - bound) <= ACTIVE_RTOL * size)


def _dual_conditions(program: MatrixProgram, x: np.ndarray, g: np.ndarray) -> MatrixProgram:
    """Variables (y, delta): A_j'y - g_j delta (>=, <=, =) c_j per column, y signed per row.

    c and g are scaled to a largest |c_j| of 1 (delta is unchanged, y scales with them): the
    values per currency unit are near 1e-4, and HiGHS's absolute feasibility tolerance of 1e-7
    on them let delta run a third too far on a 1,900-program round.
    """
    scale = 1.0 / max(float(np.abs(program.c).max(initial=0.0)), 1e-12)
    program = replace(program, c=program.c * scale)
    g = g * scale
    A = sp.csr_matrix(program.A)
    m = A.shape[0]
    act = A @ x
    col_lo, col_up = _on(x, program.col_lower), _on(x, program.col_upper)
    fixed = program.col_lower == program.col_upper
    lower_only = col_lo & ~col_up & ~fixed
    upper_only = col_up & ~col_lo & ~fixed
    between = ~col_lo & ~col_up
    # rows of the dual LP: one per column that is not fixed
    keep = ~fixed & (lower_only | upper_only | between)
    At = sp.csr_matrix(A.T)[keep]
    rows = sp.hstack([At, sp.csr_matrix(-g[keep].reshape(-1, 1))], format="csr")
    c = program.c[keep]
    lo = np.where(lower_only[keep] | between[keep], c, -INF)
    up = np.where(upper_only[keep] | between[keep], c, INF)
    scale = abs(A) @ np.abs(x)
    row_lo, row_up = _on(act, program.row_lower, scale), _on(act, program.row_upper, scale)
    free = (program.row_lower == program.row_upper) | (row_lo & row_up)
    # max c'x: y <= 0 on a row held at its lower bound, y >= 0 at its upper bound, 0 off them
    y_lower = np.where(free | (row_lo & ~row_up), -INF, 0.0)
    y_upper = np.where(free | (row_up & ~row_lo), INF, 0.0)
    return MatrixProgram(c=np.zeros(m + 1), A=rows, row_lower=lo, row_upper=up,
                         col_lower=np.append(y_lower, -INF), col_upper=np.append(y_upper, INF),
                         integer=np.zeros(m + 1, dtype=bool),
                         row_names=[f"d{j}" for j in range(rows.shape[0])],
                         col_names=[*(f"y{i}" for i in range(m)), "delta"], maximize=True)


class _DeltaLP:
    """The dual conditions of every weight in one warm HiGHS model: the weights' LPs differ
    only in the delta column (the metric's values), so each starts from the last basis."""

    def __init__(self, dual: MatrixProgram):
        self.lp = WarmLP(dual)
        self.delta = dual.shape[1] - 1
        self.lp.cost(np.array([self.delta]), np.array([1.0]))
        self.column = _column(dual, self.delta)

    def use(self, dual: MatrixProgram) -> None:
        """Take another weight's dual conditions (the same but for the delta column)."""
        column = _column(dual, self.delta)
        for i in np.flatnonzero(column != self.column):
            self.lp.h.changeCoeff(int(i), self.delta, float(column[i]))
        self.column = column

    def ends(self) -> tuple[float | None, float | None]:
        """(smallest, largest) delta: +-inf when unbounded, None when no dual solution exists
        (the allocation is not optimal to the tolerances used)."""
        low, high = self.lp.optimum(False), self.lp.optimum(True)
        return (None if low is False else -np.inf if low is None else float(low),
                None if high is False else np.inf if high is None else float(high))


def _column(program: MatrixProgram, j: int) -> np.ndarray:
    return np.asarray(sp.csc_matrix(program.A)[:, j].toarray()).ravel()


def weight_ranges(solution: Solution) -> pd.DataFrame:
    """Per Objective metric: its weight and the lowest and highest weight (others held) for
    which the allocation stays optimal; blank ends are unbounded."""
    rnd = solution.round
    columns = ["metric", "weight", "lowest", "highest", "of"]
    cols = solution.columns
    if cols is None or solution.prices.x is None:
        return pd.DataFrame([], columns=columns)
    program, x, of = _chosen_point(solution)
    if program.shape[1] > MAX_COLUMNS:
        return pd.DataFrame([{"metric": o.metric, "weight": o.weight, "lowest": None,
                              "highest": None, "of": f"not computed above {MAX_COLUMNS:,} columns"}
                             for o in rnd.objective], columns=columns)
    cost = np.array([p.round_cost_per_trainee for p in rnd.programs], dtype=float)
    index = solution.index
    out = []
    warm: _DeltaLP | None = None
    for o in rnd.objective:
        g = np.zeros(program.shape[1])
        per_unit = np.array([p.outcomes.get(o.metric, 0.0) for p in rnd.programs]) / cost
        if len(index):
            g[cols.x] = per_unit[index.p]
        dual = _dual_conditions(program, x, g)
        if warm is None:
            warm = _DeltaLP(dual)
        else:
            warm.use(dual)
        down, up = warm.ends()
        out.append({"metric": o.metric, "weight": o.weight,
                    "lowest": None if down is None or down == -np.inf else o.weight + down,
                    "highest": None if up is None or up == np.inf else o.weight + up,
                    "of": of if up is not None and down is not None else
                    "not computed: no dual solution found for the allocation"})
    return pd.DataFrame(out, columns=columns)


__all__ = ["weight_ranges"]
