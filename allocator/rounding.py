"""Rounding the LP allocation to whole multiples of the rounding unit, keeping every row true.

Stage 5 of the data flow. Each non-zero amount may move to a multiple of the unit at most
one step beyond the nearest ones below and above it; a small MILP picks the step for every
amount, so that budgets,
capacities, minimums and co-financing caps hold exactly and rule rows hold wherever rounding
allows, with the highest outcome value. Every row that touches a fractional amount gets an
elastic slack, priced so that a hard row is missed only when nothing else works and a rule
row only when rounding cannot keep it; any slack left over is reported, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from allocator.solve import INF, MatrixProgram, Status, solve_program

NEAR_INTEGER = 1e-6  # in units: an amount this close to a multiple is that multiple


@dataclass
class Rounded:
    """Integer numbers of rounding units per x, and which rows rounding could not keep."""

    units: np.ndarray  # int64 per x variable
    row_misses: dict[int, float]  # row -> amount (currency) by which it is missed
    method: str


def round_allocation(program: MatrixProgram, x_cols: np.ndarray, solution: np.ndarray,
                     unit: float, soft_rows: np.ndarray, time_limit: float = 30.0) -> Rounded:
    """Round x (currency) to multiples of `unit`; the other columns keep their values."""
    x = np.maximum(solution[x_cols], 0.0) / unit
    lo = np.floor(x + NEAR_INTEGER)
    fractional = x - lo > NEAR_INTEGER
    # Floor/ceil alone can be infeasible (a capacity and a co-financing cap on the same two
    # amounts), so every non-zero amount may also step one unit further down.
    frac = np.flatnonzero(fractional | (lo > 0))
    units = lo.copy()
    if not fractional.any():
        misses = _misses(program, x_cols, solution, units * unit)
        return Rounded(units.astype(np.int64), misses, "exact")
    best = _rounding_milp(program, x_cols, solution, lo, frac, unit, soft_rows, time_limit)
    if best is None:
        units[frac] = np.floor(x[frac])
        method = "floor"
    else:
        units[frac] = lo[frac] + best
        method = "milp"
    misses = _misses(program, x_cols, solution, units * unit)
    return Rounded(units.astype(np.int64), misses, method)


def _rounding_milp(program: MatrixProgram, x_cols: np.ndarray, solution: np.ndarray,
                   lo: np.ndarray, frac: np.ndarray, unit: float, soft_rows: np.ndarray,
                   time_limit: float) -> np.ndarray | None:
    A = program.A.tocsc()
    frac_cols = x_cols[frac]
    # Activity of every row with each fractional x at its floor and the rest as solved.
    fixed = solution.copy()
    fixed[x_cols] = lo * unit
    base = program.A @ fixed
    B = A[:, frac_cols] * unit  # effect of rounding each fractional x up by one unit
    touched = np.unique(B.tocsr().nonzero()[0])
    B = B.tocsr()[touched]
    lower = program.row_lower[touched] - base[touched]
    upper = program.row_upper[touched] - base[touched]
    n_z, n_r = len(frac), len(touched)
    scale = float(np.max(np.abs(program.c))) if len(program.c) else 1.0
    soft = np.isin(touched, soft_rows)
    weight = np.where(soft, 1e3, 1e6) * max(scale, 1e-9) + 1.0
    has_lo, has_up = np.isfinite(lower) & (lower > -INF), np.isfinite(upper) & (upper < INF)
    # Columns: z (binary, up or down), e_lo (row may fall short), e_up (row may overshoot).
    eye = sp.identity(n_r, format="csr")
    A_full = sp.hstack([B, eye[:, has_lo], -eye[:, has_up]], format="csr")
    n_lo, n_up = int(has_lo.sum()), int(has_up.sum())
    c = np.concatenate([program.c[frac_cols] * unit - 1e-9 * unit, -weight[has_lo], -weight[has_up]])
    col_lower = np.concatenate([-np.minimum(lo[frac], 1.0), np.zeros(n_lo + n_up)])
    col_upper = np.concatenate([np.ones(n_z), np.full(n_lo + n_up, INF)])
    integer = np.concatenate([np.ones(n_z, bool), np.zeros(n_lo + n_up, bool)])
    rounding = MatrixProgram(c, A_full, np.where(has_lo, lower, -INF), np.where(has_up, upper, INF),
                             col_lower, col_upper, integer,
                             [f"r{i}" for i in range(n_r)],
                             [f"z{i}" for i in range(n_z + n_lo + n_up)], maximize=True)
    result = solve_program(rounding, "rounding", time_limit=time_limit, mip_gap=1e-6)
    if result.status not in (Status.optimal, Status.time_limit) or result.x is None:
        return None
    return np.round(result.x[:n_z])


def _misses(program: MatrixProgram, x_cols: np.ndarray, solution: np.ndarray,
            amounts: np.ndarray) -> dict[int, float]:
    full = solution.copy()
    full[x_cols] = amounts
    activity = program.A @ full
    scale = np.maximum(1.0, np.abs(activity))
    short = program.row_lower - activity
    over = activity - program.row_upper
    miss = np.maximum(short, over)
    rows = np.flatnonzero(miss > 1e-6 * scale)
    return {int(i): float(miss[i]) for i in rows}


__all__ = ["Rounded", "highspy", "round_allocation"]
