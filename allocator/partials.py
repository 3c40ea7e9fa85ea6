"""Partial sums defined once: the leaner matrix HiGHS solves for a large round.

A round's rule, budget and reference-total rows list the same sums of amounts again and again:
at 10,000 programs 153 dense rows held 769,076 of 1,146,814 nonzeros, each amount sitting in
about 7.5 of them. Amounts that appear in exactly the same dense rows with the same
coefficients form a group; a group's sum becomes one column, defined once by its own row
(z_g - sum_{k in g} x_k = 0), and every dense row lists z_g instead of the group's amounts.

    max c'x  s.t.  A_d x <= b_d, A_o x <= b_o
    ==  max c'x  s.t.  A_d' x + Z z <= b_d, A_o x <= b_o, z - G x = 0,  z free

where A_d = A_d' + Z G. With z free its reduced cost is 0, so the duals of every original row
and the reduced costs of every original column are those of the wide program: results map back
by dropping the added rows and columns, which are appended after the originals.

Measured (2 cores, bare HiGHS on the stage-1 MILP of the 10,000-program synthetic round):
1,146,814 -> 828,664 nonzeros, 40-61 s -> 28-29 s, the same optimum; its LP relaxation by
interior point 47 s -> 37 s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # solve.py imports this module
    from allocator.solve import MatrixProgram

# A row is dense, and a candidate for partial sums, from this many entries on...
DENSE_ROW_ENTRIES = 64
# ... and when it has at most this many distinct coefficients (sums, shares, per-capita sums:
# 1 to 3 on every round measured); a row weighting each amount differently, such as the
# tie-break's objective-hold row, would split every group and stays as it is.
DENSE_ROW_COEFFICIENTS = 4
# Applied only when it removes at least this share of the nonzeros.
MIN_SAVING = 0.10
ROW_PREFIX = "partial_sum_define"


@dataclass
class PartialSums:
    """The leaner program and how its extra columns are defined (z = G x)."""

    program: MatrixProgram  # what HiGHS solves: the original rows and columns first
    G: sp.csr_matrix  # one row per partial sum: which original columns it adds up

    @property
    def n_original(self) -> int:
        return self.G.shape[1]

    @property
    def m_original(self) -> int:
        return self.program.shape[0] - self.G.shape[0]

    def extend(self, x: np.ndarray) -> np.ndarray:
        """An original point with its partial sums."""
        return np.concatenate([x, self.G @ x])


def dense_rows(A: sp.csr_matrix) -> np.ndarray:
    """Rows long enough, and with few enough distinct coefficients, to share partial sums."""
    lengths = np.diff(A.indptr)
    out = []
    for i in np.flatnonzero(lengths >= DENSE_ROW_ENTRIES).tolist():
        values = A.data[A.indptr[i]:A.indptr[i + 1]]
        if len(np.unique(values)) <= DENSE_ROW_COEFFICIENTS:
            out.append(i)
    return np.array(out, dtype=np.int64)


def column_groups(D: sp.csc_matrix) -> list[np.ndarray]:
    """Columns with identical entries (rows and coefficients) in `D`, in groups of at least
    two, each group's columns ascending and the groups ordered by their first column."""
    n = D.shape[1]
    count = np.diff(D.indptr)
    rng = np.random.Generator(np.random.PCG64(7))
    # Two random projections and the entry count name a column's pattern; equal patterns give
    # equal keys, and every group is checked exactly below (a collision is split off).
    keys = np.vstack([D.T @ rng.random(D.shape[0]), D.T @ rng.random(D.shape[0]),
                      count.astype(float)])
    order = np.lexsort(keys[::-1])
    sorted_keys = keys[:, order]
    starts = np.flatnonzero(np.r_[True, np.any(sorted_keys[:, 1:] != sorted_keys[:, :-1],
                                                 axis=0)])
    bounds = np.r_[starts, n]
    groups = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        if b - a < 2 or count[order[a]] == 0:
            continue
        members = np.sort(order[a:b])
        groups.append(members)
    return _exact_groups(D, groups)


def _exact_groups(D: sp.csc_matrix, groups: list[np.ndarray]) -> list[np.ndarray]:
    """The groups whose members all equal their first member exactly (others dropped)."""
    if not groups:
        return []
    members = np.concatenate(groups)
    firsts = np.concatenate([np.full(len(g), g[0]) for g in groups])
    diff = D[:, members] - D[:, firsts]
    diff.eliminate_zeros()
    bad = set(np.unique(diff.tocoo().col).tolist()) if diff.nnz else set()
    out, at = [], 0
    for g in groups:
        if not any(j in bad for j in range(at, at + len(g))):
            out.append(g)
        at += len(g)
    return sorted(out, key=lambda g: int(g[0]))


def partial_sums(program: MatrixProgram) -> PartialSums | None:
    """The program with shared partial sums as columns, or None where that saves less than
    MIN_SAVING of the nonzeros."""
    A = sp.csr_matrix(program.A)
    n = A.shape[1]
    dense = dense_rows(A)
    if len(dense) < 2:
        return None
    D = sp.csc_matrix(A[dense])
    groups = [g for g in column_groups(D) if _saves(D, g)]
    if not groups:
        return None
    saved = sum(_entries_of(D, g) * (len(g) - 1) - len(g) - 1 for g in groups)
    if saved < MIN_SAVING * A.nnz:
        return None
    return PartialSums(_lean_program(program, A, dense, D, groups), _definitions(groups, n))


def _entries_of(D: sp.csc_matrix, g: np.ndarray) -> int:
    return int(D.indptr[g[0] + 1] - D.indptr[g[0]])


def _saves(D: sp.csc_matrix, g: np.ndarray) -> bool:
    """r * s entries become r (the partial sum in each row) + s + 1 (its defining row)."""
    r, s = _entries_of(D, g), len(g)
    return r * s > r + s + 1


def _definitions(groups: list[np.ndarray], n: int) -> sp.csr_matrix:
    rows = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    cols = np.concatenate(groups)
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(groups), n))


def _lean_program(program: MatrixProgram, A: sp.csr_matrix, dense: np.ndarray,
                  D: sp.csc_matrix, groups: list[np.ndarray]) -> MatrixProgram:
    """The original rows (grouped amounts replaced by their sums in the dense rows), then one
    defining row per group; the original columns, then one free column per group."""
    m, n = A.shape
    g_count = len(groups)
    grouped = np.zeros(n, dtype=bool)
    grouped[np.concatenate(groups)] = True
    is_dense = np.zeros(m, dtype=bool)
    is_dense[dense] = True
    coo = A.tocoo()
    keep = ~(is_dense[coo.row] & grouped[coo.col])
    rows, cols, vals = [coo.row[keep]], [coo.col[keep]], [coo.data[keep]]
    for gi, g in enumerate(groups):  # the partial sum in each dense row its members were in
        lo, hi = D.indptr[g[0]], D.indptr[g[0] + 1]
        rows.append(dense[D.indices[lo:hi]])
        cols.append(np.full(hi - lo, n + gi))
        vals.append(D.data[lo:hi])
    definition_rows = np.concatenate([np.full(len(g) + 1, m + gi) for gi, g in enumerate(groups)])
    definition_cols = np.concatenate([np.r_[n + gi, g] for gi, g in enumerate(groups)])
    definition_vals = np.concatenate([np.r_[1.0, -np.ones(len(g))] for g in groups])
    rows.append(definition_rows)
    cols.append(definition_cols)
    vals.append(definition_vals)
    lean = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(m + g_count, n + g_count))
    zeros = np.zeros(g_count)
    free = np.full(g_count, np.inf)
    return dataclasses.replace(
        program, c=np.concatenate([program.c, zeros]), A=lean,
        row_lower=np.concatenate([program.row_lower, zeros]),
        row_upper=np.concatenate([program.row_upper, zeros]),
        col_lower=np.concatenate([program.col_lower, -free]),
        col_upper=np.concatenate([program.col_upper, free]),
        integer=np.concatenate([program.integer, np.zeros(g_count, dtype=bool)]),
        row_names=[*program.row_names, *(f"{ROW_PREFIX}[{i}]" for i in range(g_count))],
        col_names=[*program.col_names, *(f"partial_sum{i}" for i in range(g_count))])
