"""How good a stopped LP stage's point is: its feasibility, and a bound on the optimum.

Stage 4b of the data flow, used when HiGHS stops an LP stage at its time limit: the interior
point method's last iterate is an allocation (once it is feasible), and its row prices give a
bound on the optimum by weak duality, so the report can say how far from optimal it may be.
Nothing here trusts the solver's own feasibility or gap figures; both are recomputed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # solve.py imports this module to judge a stopped stage
    from allocator.solve import MatrixProgram

# Bound propagation passes: x from capacity and budget rows, then totals t from the x, then
# anything defined through a total.
PROPAGATION_PASSES = 3


def relative_violation(program: MatrixProgram, x: np.ndarray) -> float:
    """The largest violation of a row or column bound, relative to the row's magnitude."""
    A = program.A
    activity = A @ x
    scale = np.maximum(1.0, abs(A) @ np.abs(x))
    rows = np.maximum(program.row_lower - activity, activity - program.row_upper) / scale
    cols = np.maximum(program.col_lower - x, x - program.col_upper) / np.maximum(1.0, np.abs(x))
    return float(max(rows.max(initial=0.0), cols.max(initial=0.0), 0.0))


def implied_upper_bounds(program: MatrixProgram) -> np.ndarray:
    """Column upper bounds tightened by the rows: a_ij x_j <= row_upper_i - (least the rest of
    row i can contribute), and the same from row_lower for negative a_ij."""
    coo = program.A.tocoo()
    r, c, a = coo.row, coo.col, coo.data
    lower = program.col_lower.astype(float)
    upper = program.col_upper.astype(float).copy()
    for _ in range(PROPAGATION_PASSES):
        low_term, high_term, min_act, max_act = _activity_range(r, c, a, lower, upper,
                                                                program.shape[0])
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # a > 0: x_j <= (row_upper - (min_act - a_ij l_j)) / a_ij
            from_upper = np.where(a > 0, (program.row_upper[r] - (min_act[r] - low_term)) / a,
                                  np.inf)
            # a < 0: x_j <= ((max_act - a_ij l_j) - row_lower) / -a_ij
            from_lower = np.where(a < 0, ((max_act[r] - high_term) - program.row_lower[r]) / -a,
                                  np.inf)
        candidate = np.fmin(from_upper, from_lower)
        candidate[~np.isfinite(candidate)] = np.inf
        tightened = upper.copy()
        np.minimum.at(tightened, c, candidate)
        if np.array_equal(tightened, upper):
            break
        upper = np.maximum(tightened, lower)
    return upper


def penalised_upper_bounds(program: MatrixProgram, c: np.ndarray,
                           implied: np.ndarray) -> np.ndarray:
    """Upper bounds that an optimal solution keeps on columns that only cost (c_j < 0, for
    maximisation) and sit in a single row, like a soft rule's shortfall slack: such a column is
    no larger than its row needs, so x_j <= max(l_j, (what the rest of the row can fall short
    of its bound) / |a_ij|). The optimum is unchanged within these bounds, so a bound on the
    optimum over them bounds the optimum itself. `implied`: the other columns' upper bounds."""
    A = program.A.tocsc()
    counts = np.diff(A.indptr)
    upper = np.full(program.shape[1], np.inf)
    single = np.flatnonzero((counts == 1) & (c < 0))
    if not len(single):
        return upper
    coo = program.A.tocoo()
    _, _, min_act, max_act = _activity_range(coo.row, coo.col, coo.data, program.col_lower,
                                             implied, program.shape[0])
    row = A.indices[A.indptr[single]]
    a_j = A.data[A.indptr[single]]
    l_j = program.col_lower[single]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # a > 0 in a row with a lower bound: a x_j >= row_lower - (rest of the row)
        need_pos = (program.row_lower[row] - (min_act[row] - a_j * l_j)) / a_j
        # a < 0 in a row with an upper bound: -a x_j >= (rest of the row) - row_upper
        need_neg = ((max_act[row] - a_j * l_j) - program.row_upper[row]) / -a_j
    # a row without a bound on the side x_j helps never needs x_j above l_j
    need = np.where(a_j > 0, np.where(np.isfinite(program.row_lower[row]), need_pos, l_j),
                    np.where(np.isfinite(program.row_upper[row]), need_neg, l_j))
    need = np.where(np.isnan(need), np.inf, need)
    upper[single] = np.maximum(l_j, need)
    return upper


def _activity_range(r: np.ndarray, c: np.ndarray, a: np.ndarray, lower: np.ndarray,
                    upper: np.ndarray, n_rows: int) -> tuple[np.ndarray, ...]:
    """Least and most each entry a_ij x_j, and each row's activity, can be over the box."""
    low_term = np.where(a > 0, a * lower[c], a * upper[c])
    high_term = np.where(a > 0, a * upper[c], a * lower[c])
    with np.errstate(invalid="ignore", over="ignore"):
        min_act = np.bincount(r, weights=low_term, minlength=n_rows)
        max_act = np.bincount(r, weights=high_term, minlength=n_rows)
    return low_term, high_term, min_act, max_act


def dual_bound(program: MatrixProgram, row_dual: np.ndarray) -> float:
    """A bound on the optimum from row prices y (weak duality, valid for any y):

    max c'x <= sum_i max(y_i r_i : r_i in [row_lower_i, row_upper_i])
             + sum_j max((c - A'y)_j x_j : x_j in [col_lower_j, implied upper_j]),

    an upper bound for a maximisation, a lower bound (signs flipped) for a minimisation;
    infinite when the prices leave an unbounded direction. Both signs of y are tried, since
    any sign convention gives a valid bound.
    """
    sense = 1.0 if program.maximize else -1.0
    c = sense * program.c
    lower = program.col_lower
    implied = implied_upper_bounds(program)
    upper = np.fmin(implied, penalised_upper_bounds(program, c, implied))
    best = np.inf
    At = sp.csr_matrix(program.A.T)
    for y in (row_dual, -row_dual):
        d = c - At @ y
        col_part = _box_max(d, lower, upper)
        row_part = _box_max(y, program.row_lower, program.row_upper)
        best = min(best, col_part + row_part)
    return sense * best


def _box_max(coef: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """max sum(coef_j v_j) over lower_j <= v_j <= upper_j (infinite if unbounded)."""
    pos, neg = coef > 0, coef < 0
    if np.isinf(upper[pos]).any() or np.isinf(lower[neg]).any():
        return float(np.inf)
    return float((coef[pos] * upper[pos]).sum() + (coef[neg] * lower[neg]).sum())
