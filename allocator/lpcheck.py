"""Comparing a recorded stage MPS file with the LP the engine re-builds from the canonical round.

Part of verification (stage 6). A record's MPS file is only evidence if it is the program the
engine solves for that round: `compare_stage` reads the recorded file with HiGHS, passes the
re-built program to HiGHS the way the record writer does, and names every difference (file, row
or column, recorded vs re-built) in dimensions, names, coefficients, row and column bounds,
integrality, objective sense, offset and coefficients, and the quadratic objective.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import highspy
import numpy as np
import scipy.sparse as sp

from allocator.solve import MatrixProgram, new_highs

# HiGHS prints MPS numbers with 17 significant digits; 1e-9 relative is far above that noise
# and far below any change that moves an allocation.
RTOL = 1e-9
MAX_LISTED = 12  # differences listed per file before "... and N more"


def close(a: float, b: float) -> bool:
    """Equal within printing precision (infinite bounds equal only to the same infinity)."""
    if a == b:
        return True
    if not (np.isfinite(a) and np.isfinite(b)):
        return False
    return abs(a - b) <= RTOL * max(abs(a), abs(b))


def _num(v: float) -> str:
    if v == np.inf:
        return "+inf"
    if v == -np.inf:
        return "-inf"
    return f"{v:.17g}"


def recorded_lp(path: Path) -> tuple[highspy.HighsLp, highspy.HighsHessian] | None:
    """The LP (and Hessian) HiGHS reads from a recorded MPS file, or None if it cannot."""
    h = new_highs()
    if h.readModel(str(path)) == highspy.HighsStatus.kError:
        return None
    model = h.getModel()
    return model.lp_, model.hessian_


def rebuilt_lp(program: MatrixProgram) -> tuple[highspy.HighsLp, highspy.HighsHessian]:
    """The LP as the record writer hands it to HiGHS before writing the MPS file."""
    h = new_highs()
    program.to_highs(h)
    model = h.getModel()
    return model.lp_, model.hessian_


def _matrix(lp: highspy.HighsLp) -> sp.csc_matrix:
    a = lp.a_matrix_
    n_rows, n_cols = lp.num_row_, lp.num_col_
    start = np.asarray(a.start_, dtype=np.int64)
    index = np.asarray(a.index_, dtype=np.int64)
    value = np.asarray(a.value_, dtype=float)
    if a.format_ == highspy.MatrixFormat.kRowwise:
        return sp.csr_matrix((value, index, start), shape=(n_rows, n_cols)).tocsc()
    if len(start) == 0:
        start = np.zeros(n_cols + 1, dtype=np.int64)
    return sp.csc_matrix((value, index, start), shape=(n_rows, n_cols))


def _hessian(hess: highspy.HighsHessian, n: int) -> sp.csc_matrix:
    if hess.dim_ == 0:
        return sp.csc_matrix((n, n))
    start = np.asarray(hess.start_, dtype=np.int64)
    return sp.csc_matrix((np.asarray(hess.value_, dtype=float), np.asarray(hess.index_, dtype=np.int64),
                          start), shape=(hess.dim_, hess.dim_))


def _paired_names(rec: list[str], n_rec: int, new: list[str], n_new: int,
                  kind: str) -> tuple[list[str], list[str]]:
    """The names both sides are matched by: their own, or positions ("row 3") for both when
    either side's names are absent or not unique."""
    rec, new = list(rec), list(new)

    def usable(names: list[str], n: int) -> bool:
        return len(names) == n and all(names) and len(set(names)) == n

    if usable(rec, n_rec) and usable(new, n_new):
        return rec, new
    return [f"{kind} {i + 1}" for i in range(n_rec)], [f"{kind} {i + 1}" for i in range(n_new)]


class _Findings:
    """Differences of one file, capped at MAX_LISTED lines."""

    def __init__(self, file: str):
        self.file = file
        self.lines: list[str] = []
        self.more = 0

    def add(self, text: str) -> None:
        if len(self.lines) < MAX_LISTED:
            self.lines.append(f"{self.file}: {text}")
        else:
            self.more += 1

    def result(self) -> list[str]:
        if self.more:
            return [*self.lines, f"{self.file}: ... and {self.more} more difference(s)"]
        return self.lines


def _align(rec: list[str], new: list[str], kind: str, out: _Findings) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the names both sides share (recorded, re-built), naming missing/extra ones."""
    rec_pos = {n: i for i, n in enumerate(rec)}
    new_pos = {n: i for i, n in enumerate(new)}
    for name in [n for n in rec if n not in new_pos]:
        out.add(f"{kind} {name}: in the recorded file, not in the re-built program")
    for name in [n for n in new if n not in rec_pos]:
        out.add(f"{kind} {name}: in the re-built program, missing from the recorded file")
    shared = [n for n in new if n in rec_pos]
    if len(rec) == len(new) and all(a == b for a, b in zip(rec, new, strict=True)):
        return np.arange(len(rec)), np.arange(len(new))
    if shared and [n for n in rec if n in new_pos] != shared:
        out.add(f"the {kind}s are in a different order than re-built")
    return (np.array([rec_pos[n] for n in shared], dtype=np.int64),
            np.array([new_pos[n] for n in shared], dtype=np.int64))


def _differ(rec: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Positions where two vectors differ beyond printing precision (same infinities equal)."""
    rec, new = np.asarray(rec, dtype=float), np.asarray(new, dtype=float)
    with np.errstate(invalid="ignore"):
        far = np.abs(rec - new) > RTOL * np.maximum(np.abs(rec), np.abs(new))
    return np.flatnonzero((rec != new) & (far | ~np.isfinite(rec) | ~np.isfinite(new)))


def _compare_vectors(what: str, kind: str, names: list[str], rec: np.ndarray, new: np.ndarray,
                     out: _Findings) -> None:
    for i in _differ(rec, new):
        out.add(f"{kind} {names[i]}: {what} recorded {_num(float(rec[i]))}, "
                f"re-built {_num(float(new[i]))}")


def compare_stage(path: Path, program: MatrixProgram) -> list[str]:
    """Every difference between the recorded MPS file `path` and the re-built `program`."""
    out = _Findings(path.name)
    if not path.is_file():
        return [f"{path.name}: missing"]
    read = recorded_lp(path)
    if read is None:
        return [f"{path.name}: HiGHS cannot read it as an MPS file"]
    rec, rec_h = read
    new, new_h = rebuilt_lp(program)
    if rec.sense_ != new.sense_:
        out.add(f"objective sense recorded {_sense(rec.sense_)}, re-built {_sense(new.sense_)}")
    if not close(rec.offset_, new.offset_):
        out.add(f"objective constant recorded {_num(rec.offset_)}, re-built {_num(new.offset_)}")
    if (rec.num_row_, rec.num_col_) != (new.num_row_, new.num_col_):
        out.add(f"dimensions recorded {rec.num_row_} rows x {rec.num_col_} columns, re-built "
                f"{new.num_row_} rows x {new.num_col_} columns")
    for kind, names in (("row", list(rec.row_names_)), ("column", list(rec.col_names_))):
        repeated = sorted(n for n, k in Counter(names).items() if k > 1)
        if repeated:
            out.add(f"{kind} names repeat in the recorded file ({', '.join(repeated[:3])}); "
                    "compared by position")
    rec_rows, new_rows = _paired_names(rec.row_names_, rec.num_row_, new.row_names_, new.num_row_, "row")
    rec_cols, new_cols = _paired_names(rec.col_names_, rec.num_col_, new.col_names_, new.num_col_,
                                       "column")
    ri, ni = _align(rec_rows, new_rows, "row", out)
    rj, nj = _align(rec_cols, new_cols, "column", out)
    cols = [new_cols[j] for j in nj]
    rows = [new_rows[i] for i in ni]

    def vec(lp_values, idx: np.ndarray) -> np.ndarray:
        arr = np.asarray(lp_values, dtype=float)
        return arr[idx] if len(arr) else np.zeros(len(idx))

    _compare_vectors("objective coefficient", "column", cols, vec(rec.col_cost_, rj),
                     vec(new.col_cost_, nj), out)
    _compare_vectors("lower bound", "column", cols, vec(rec.col_lower_, rj), vec(new.col_lower_, nj), out)
    _compare_vectors("upper bound", "column", cols, vec(rec.col_upper_, rj), vec(new.col_upper_, nj), out)
    _compare_vectors("lower bound", "row", rows, vec(rec.row_lower_, ri), vec(new.row_lower_, ni), out)
    _compare_vectors("upper bound", "row", rows, vec(rec.row_upper_, ri), vec(new.row_upper_, ni), out)
    rec_int, new_int = _integrality(rec)[rj], _integrality(new)[nj]
    for k in np.flatnonzero(rec_int != new_int):
        out.add(f"column {cols[k]}: recorded {'integer' if rec_int[k] else 'continuous'}, re-built "
                f"{'integer' if new_int[k] else 'continuous'}")
    a = _matrix(rec)[ri][:, rj].tocoo()
    b = _matrix(new)[ni][:, nj].tocoo()
    _compare_entries("coefficient", rows, cols, a, b, out)
    ha = _hessian(rec_h, rec.num_col_)
    hb = _hessian(new_h, new.num_col_)
    if ha.shape[0] == rec.num_col_ and hb.shape[0] == new.num_col_:
        _compare_entries("quadratic objective coefficient", cols, cols, ha[rj][:, rj].tocoo(),
                         hb[nj][:, nj].tocoo(), out, rows_are="column")
    else:
        out.add(f"quadratic objective of dimension {ha.shape[0]} recorded, {hb.shape[0]} re-built")
    return out.result()


def _compare_entries(what: str, rows: list[str], cols: list[str], a: sp.coo_matrix, b: sp.coo_matrix,
                     out: _Findings, rows_are: str = "row") -> None:
    """Matrix entries that differ (an entry missing on one side counts as 0 there)."""
    a, b = a.tocsr(), b.tocsr()
    a.sum_duplicates()
    b.sum_duplicates()
    diff = (a - b).tocoo()
    if diff.nnz == 0:
        return
    i, j = diff.row, diff.col
    va = np.asarray(a[i, j], dtype=float).ravel()
    vb = np.asarray(b[i, j], dtype=float).ravel()
    order = np.lexsort((j, i))
    for k in order[np.isin(order, _differ(va, vb))]:
        out.add(f"{rows_are} {rows[i[k]]} column {cols[j[k]]}: {what} recorded {_num(va[k])}, "
                f"re-built {_num(vb[k])}")


def _integrality(lp: highspy.HighsLp) -> np.ndarray:
    kinds = list(lp.integrality_)
    if not kinds:
        return np.zeros(lp.num_col_, dtype=bool)
    return np.array([k != highspy.HighsVarType.kContinuous for k in kinds], dtype=bool)


def _sense(sense: highspy.ObjSense) -> str:
    return "maximise" if sense == highspy.ObjSense.kMaximize else "minimise"
