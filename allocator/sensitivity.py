"""Sensitivity, as Excel Solver users know it: how far a limit or a program's value can move
before the prices and the allocation's shape change.

For every budget and hard rule: its price (outcome value per 10,000 currency units) and the
range of the limit over which that price holds (allowable increase and decrease). For every
funded program: the range of its value per trainee over which its funding does not change.

Both come from HiGHS's ranging (`Highs.getRanging`) on the prices LP (the LP the engine takes
prices from: for a round with all-or-nothing programs, the LP with their on/off decisions
fixed). Ranging needs a simplex basis, so the LP is solved again here with the simplex
method, with one column added per funded program: z_p, the money of program p, carries the
program's outcome value per currency unit instead of its allocation columns (a row keeps
z_p = sum of p's columns). That LP has the same optimum; the cost ranging of z_p is then
exactly the range of p's value (all its columns at once), and the bound ranging of a limit's
row is the range of that limit.

Ranging is skipped above RANGING_COLUMNS (a second simplex solve would cost more than the
rest of the report), and where the engine solved the prices LP by interior point without
crossover (there is no basis: the sheet says "not available for this size" rather than
print numbers that do not hold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp

from allocator.excel import PRICE_STEP, price_shown
from allocator.solve import MatrixProgram, is_interior, new_highs

if TYPE_CHECKING:
    from allocator.engine import Solution

# Above this many LP columns ranging is not computed: the crossover's limit (above it the
# prices come from interior point without a basis).
RANGING_COLUMNS = 250_000
# Without the prices LP's basis, the LP is solved again by simplex only up to this size.
SCRATCH_COLUMNS = 5_000
BUDGET_ROWS = ("spend_fund_period_max", "spend_fund_cumulative_max")
INF = 1e20  # HiGHS's infinity: a range end at or beyond it is "no limit"

ROW_COLUMNS = ["kind", "id", "group", "period", "limit", "price", "lowest", "highest",
               "allowable_increase", "allowable_decrease", "meaning"]
PROGRAM_COLUMNS = ["program_id", "program", "amount", "value_per_trainee", "lowest", "highest",
                   "allowable_increase", "allowable_decrease", "meaning"]


@dataclass
class Sensitivity:
    """Ranging of the prices LP, or why there is none."""

    available: bool
    why_not: str = ""
    rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ROW_COLUMNS))
    programs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROGRAM_COLUMNS))
    exact: bool = False  # exact ranges; else those of one basis (the price holds at least there)


def sensitivity(solution: Solution) -> Sensitivity:
    """The ranges of every budget and hard rule row and of every funded program's value."""
    prices = solution.prices
    program = getattr(prices, "program", None)
    if program is None or program.shape[1] == 0 or prices.x is None:
        return Sensitivity(False, "not available: nothing was allocated by the solver")
    if is_interior(prices):
        return Sensitivity(False, "not available for this size: the prices came from the interior "
                                  "point method without a simplex basis, and ranges need one")
    if program.shape[1] > RANGING_COLUMNS:
        return Sensitivity(False, f"not computed for this size: more than {RANGING_COLUMNS:,} "
                                  "allocation columns (the ranging would cost more than the "
                                  "whole report)")
    funded = _funded_programs(solution)
    if program.shape[1] <= EXACT_COLUMNS:
        exact = _exact(solution, program, funded)
        if exact is not None:
            return exact
    if not ranged_here(prices):
        return Sensitivity(False, "not computed for this size: the prices LP kept no simplex "
                                  "basis, and solving it again would cost more than the report")
    ranged = solution.derived.get(PRICES_RANGING)
    if not isinstance(ranged, PricesRanging):
        ranged = solution.derived[PRICES_RANGING] = prices_ranging(solution, prices)
    if ranged.ranged is None:
        return Sensitivity(False, "not available: the simplex re-solve of the prices LP did not "
                                  "end optimal")
    return Sensitivity(True, "", _row_table(solution, program, ranged.ranged),
                       _program_table(solution, funded, ranged.z_of, ranged.augmented,
                                      ranged.ranged.rng))


def ranged_here(prices: Any) -> bool:
    """Whether the ranges of these prices above EXACT_COLUMNS are HiGHS's ranging of the
    prices LP (`prices_ranging`): a vertex with its basis to start from, or an LP small enough
    to solve again, and at most RANGING_COLUMNS columns."""
    program = getattr(prices, "program", None)
    if program is None or prices.x is None or is_interior(prices):
        return False
    n = program.shape[1]
    return n <= RANGING_COLUMNS and (getattr(prices, "basis", None) is not None
                                     or n <= SCRATCH_COLUMNS)


# `Solution.derived` key of the `PricesRanging`.
PRICES_RANGING = "prices_ranging"


@dataclass
class PricesRanging:
    """The prices LP with a z column per program (see the module doc) and HiGHS's ranging of
    it (None: the simplex re-solve did not end optimal). It depends on the prices LP alone,
    not on the allocation, so a run makes it beside the tie-break's solve
    (`allocator.engine`); the report reads it from `Solution.derived`."""

    augmented: MatrixProgram
    z_of: dict[str, int]
    ranged: _Ranged | None


def ranging_for_report(built: Any, prices: Any) -> PricesRanging | None:
    """`prices_ranging`, where the Sensitivity sheet will read it: above EXACT_COLUMNS (up to
    it the ranges are exact, from the prices themselves) and where `ranged_here`."""
    if prices.program.shape[1] <= EXACT_COLUMNS or not ranged_here(prices):
        return None
    return prices_ranging(built, prices)


def prices_ranging(built: Any, prices: Any) -> PricesRanging:
    """The `PricesRanging` of the prices stage `prices` of a model or solution `built` (its
    `round`, `index` and `columns`). Every program gets its z column, funded or not: the
    ranging does not wait for the allocation, and a z column is basic in the prices LP's
    basis, so the others' ranges are the same with or without it."""
    augmented, z_of = _with_program_columns(
        prices.program, built, [p.program_id for p in built.round.programs])
    return PricesRanging(augmented, z_of, _ranging(augmented, getattr(prices, "basis", None),
                                                   len(z_of)))


# Up to this many LP columns the ranges are exact (an LP per end, on the prices LP's own
# optimal face); above, HiGHS's ranging of one optimal basis, which can stop short of a range's
# true end where the LP is degenerate (the sheet then says "at least").
EXACT_COLUMNS = 1_000


def _exact(solution: Solution, program: MatrixProgram, funded: list[str]) -> Sensitivity | None:
    """Exact ranges from the prices LP's optimal point and prices, or None if they fail."""
    prices = solution.prices
    if prices.row_dual is None or prices.col_dual is None:
        return None
    face = _Face(program, np.asarray(prices.x, float), np.asarray(prices.row_dual, float),
                 np.asarray(prices.col_dual, float))
    ranged_rows = []
    for i, ref in enumerate(solution.row_refs):
        if not _is_reported(ref, solution):
            ranged_rows.append(None)
            continue
        ranged_rows.append(face.row_range(i))
    if any(r is False for r in ranged_rows):
        return None
    rows = _row_table(solution, program, None, exact=ranged_rows)
    cols_x = solution.columns.x
    prog_of = np.asarray(solution.index.programs)[solution.index.p]
    ranges = {}
    for pid in funded:
        own = cols_x[prog_of == pid]
        if not len(own) or program.c[own[0]] == 0:
            continue
        got = face.cost_range(own)
        if got is None:
            return None
        coef = float(program.c[own[0]])
        ranges[pid] = (None if got[0] is None else coef + got[0], None if got[1] is None
                       else coef + got[1], coef)
    return Sensitivity(True, "", rows, _program_table_exact(solution, funded, ranges), exact=True)


# HiGHS's simplex strategies: dual (its default) and primal.
DUAL_SIMPLEX, PRIMAL_SIMPLEX = 1, 4


class WarmLP:
    """One HiGHS model solved many times with small changes: each solve starts from the last
    basis (a few simplex steps instead of a solve from scratch).

    The first solve (and a retry after a failed one) is by dual simplex, HiGHS's default. The
    re-solves are by primal simplex: a new objective or a looser limit leaves the last basis
    primal feasible, so primal simplex goes on from it, where dual simplex must first repair
    the basis's dual infeasibility (the example round's exact ranges: about 2,400 simplex
    iterations instead of 14,700, 0.15 s instead of 0.37 s; the ranges agree to 1e-11)."""

    def __init__(self, program: MatrixProgram):
        self.h = new_highs()
        for key, value in {"random_seed": 0, "presolve": "off", "solver": "simplex",
                           "simplex_strategy": DUAL_SIMPLEX}.items():
            self.h.setOptionValue(key, value)
        program.to_highs(self.h)
        self._costs: np.ndarray = np.flatnonzero(program.c)
        self._warm = False  # whether the model holds a basis from an earlier solve

    def cost(self, idx: np.ndarray, values: np.ndarray) -> None:
        """Set the objective to `values` on `idx` and 0 elsewhere."""
        if len(self._costs):
            self.h.changeColsCost(len(self._costs), self._costs.astype(np.int32),
                                  np.zeros(len(self._costs)))
        idx = np.asarray(idx, dtype=np.int32)
        if len(idx):
            self.h.changeColsCost(len(idx), idx, np.asarray(values, dtype=float))
        self._costs = idx

    def optimum(self, maximize: bool) -> float | bool | None:
        """The optimum (None: unbounded; False: the solve failed)."""
        self.h.changeObjectiveSense(highspy.ObjSense.kMaximize if maximize
                                    else highspy.ObjSense.kMinimize)
        ended = (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kUnbounded)
        status = self._run(PRIMAL_SIMPLEX if self._warm else DUAL_SIMPLEX)
        if status not in ended and self._warm:
            # a re-solve that stopped short (numerical trouble from the last basis): solve from
            # scratch, as the first solve does, before giving up
            self.h.clearSolver()
            status = self._run(DUAL_SIMPLEX)
        self._warm = status in ended
        if status == highspy.HighsModelStatus.kUnbounded:
            return None
        if status != highspy.HighsModelStatus.kOptimal:
            return False
        return float(self.h.getInfo().objective_function_value)

    def _run(self, strategy: int) -> highspy.HighsModelStatus:
        self.h.setOptionValue("simplex_strategy", strategy)
        self.h.run()
        return self.h.getModelStatus()

    def both(self) -> tuple[float | None, float | None] | bool:
        low, high = self.optimum(False), self.optimum(True)
        if low is False or high is False:
            return False
        return low, high


class _Face:
    """The prices LP at its optimum: which columns and rows are held by their prices."""

    def __init__(self, program: MatrixProgram, x: np.ndarray, y: np.ndarray, d: np.ndarray):
        self.p, self.x, self.y, self.d = program, x, y, d
        self.A = sp.csr_matrix(program.A)
        self.act = self.A @ x
        scale = max(1.0, float(np.abs(program.c).max()) if len(program.c) else 1.0)
        self.tol_d = 1e-9 * scale
        held = np.abs(d) > self.tol_d
        self.col_lo = np.where(held, x, program.col_lower)
        self.col_hi = np.where(held, x, program.col_upper)
        self.held_rows = np.abs(y) > self.tol_d
        self.row_lo = np.where(self.held_rows, self.act, program.row_lower)
        self.row_hi = np.where(self.held_rows, self.act, program.row_upper)
        self._rows_lp: WarmLP | None = None
        self._cost_lp: WarmLP | None = None
        self._e: np.ndarray = np.zeros(0, dtype=np.int32)

    def row_range(self, i: int) -> tuple[float | None, float | None] | bool:
        """[lowest, highest] limit of row i over which its price holds (False: failed).

        Over the optimal face of these prices (columns and rows with a price held where they
        are), row i's activity ranges from min to max: every limit in between keeps the prices
        optimal, none outside does."""
        if self._rows_lp is None:
            n = self.A.shape[1]
            self._rows_lp = WarmLP(MatrixProgram(
                c=np.zeros(n), A=self.A, row_lower=self.row_lo, row_upper=self.row_hi,
                col_lower=self.col_lo, col_upper=self.col_hi, integer=np.zeros(n, dtype=bool),
                row_names=[], col_names=[], maximize=True))
        lp = self._rows_lp
        row = self.A.getrow(i)
        lp.cost(row.indices, row.data)
        lp.h.changeRowBounds(i, -highspy.kHighsInf, highspy.kHighsInf)
        upper_row = math.isfinite(self.p.row_upper[i]) and abs(self.p.row_upper[i]) < INF
        if self.held_rows[i]:
            got = lp.both()
        else:  # a price of 0 holds on the slack side of what can be used: one end only
            end = lp.optimum(not upper_row)
            got = False if end is False else (end, None) if upper_row else (None, end)
        lp.h.changeRowBounds(i, float(_finite(self.row_lo[i])), float(_finite(self.row_hi[i])))
        return got

    def cost_range(self, cols: np.ndarray) -> tuple[float | None, float | None] | None:
        """[down, up]: how far the cost of `cols` (all at once) can move with the point kept
        optimal (None ends: no limit). An LP in the prices y and the move t:
        c_j + t e_j - a_j'y is 0 for a column between its bounds, <= 0 at its lower, >= 0 at its
        upper; y_k is 0 for a slack row, >= 0 at its upper limit, <= 0 at its lower."""
        if self._cost_lp is None:
            self._cost_lp = WarmLP(self._cost_program())
            self._cost_lp.cost(np.array([self.A.shape[0]]), np.array([1.0]))
        lp = self._cost_lp
        t = self.A.shape[0]
        for j in self._e:  # the previous program's columns no longer move
            lp.h.changeCoeff(int(j), t, 0.0)
        for j in cols:
            lp.h.changeCoeff(int(j), t, -1.0)
        self._e = np.asarray(cols, dtype=np.int32)
        got = lp.both()
        return None if got is False else got

    def _cost_program(self) -> MatrixProgram:
        """The LP of `cost_range` without its moving column's entries (set per program)."""
        p, x = self.p, self.x
        n, m = len(x), self.A.shape[0]
        tol = 1e-9
        at_lo = _at(x, p.col_lower, tol)
        at_hi = _at(x, p.col_upper, tol)
        fixed = p.col_lower == p.col_upper
        # rows of this LP: g_j = a_j'y - t e_j  compared with c_j
        M = sp.hstack([self.A.T.tocsr(), sp.csr_matrix((n, 1))]).tocsr()
        g_lo = np.where(fixed | at_hi & ~at_lo, -np.inf, p.c)  # at lower (or between): g >= c
        g_hi = np.where(fixed | at_lo & ~at_hi, np.inf, p.c)   # at upper (or between): g <= c
        both = at_lo & at_hi & ~fixed
        g_lo[both], g_hi[both] = -np.inf, np.inf
        y_lo = np.where(_at(self.act, p.row_lower, tol), -np.inf, 0.0)
        y_hi = np.where(_at(self.act, p.row_upper, tol), np.inf, 0.0)
        return MatrixProgram(c=np.zeros(m + 1), A=M, row_lower=g_lo, row_upper=g_hi,
                             col_lower=np.concatenate([y_lo, [-np.inf]]),
                             col_upper=np.concatenate([y_hi, [np.inf]]),
                             integer=np.zeros(m + 1, dtype=bool), row_names=[], col_names=[],
                             maximize=True)


def _finite(v: float) -> float:
    return v if math.isfinite(v) and abs(v) < INF else (highspy.kHighsInf if v > 0
                                                         else -highspy.kHighsInf)


def _at(value: np.ndarray, bound: np.ndarray, rtol: float) -> np.ndarray:
    """Where a value sits at its (finite) bound, within a relative tolerance."""
    finite = np.isfinite(bound) & (np.abs(bound) < INF)
    b = np.where(finite, bound, 0.0)
    return finite & (np.abs(value - b) <= rtol * np.maximum(1.0, np.abs(b)) + 1e-9)


def _is_reported(ref: Any, solution: Solution) -> bool:
    comp = ref.component
    if comp in BUDGET_ROWS:
        return True
    if ref.is_rule:
        soft = {r.rule_id for r in solution.round.rules if r.penalty is not None}
        return str(ref.index[0]).split(",")[0] not in soft
    return False


def _program_table_exact(solution: Solution, funded: list[str],
                         ranges: dict[str, tuple[float | None, float | None, float]]
                         ) -> pd.DataFrame:
    rnd = solution.round
    by_id = {p.program_id: p for p in rnd.programs}
    alloc = solution.allocation
    amounts = alloc.groupby("program_id")["amount"].sum() if len(alloc) else {}
    records = []
    for pid in funded:
        if pid not in ranges:
            continue
        prog = by_id[pid]
        value = rnd.value_per_trainee(prog)
        lo, hi, coef = ranges[pid]
        lo_v = None if lo is None else max(0.0, lo) * value / coef
        hi_v = None if hi is None else hi * value / coef
        records.append(_program_record(pid, prog.name, float(amounts.get(pid, 0.0)), value,
                                       lo_v, hi_v, True))
    return pd.DataFrame(records, columns=PROGRAM_COLUMNS)


def _funded_programs(solution: Solution) -> list[str]:
    alloc = solution.allocation
    if not len(alloc):
        return []
    funded = set(alloc.loc[alloc["units"] > 0, "program_id"])
    return [p.program_id for p in solution.round.programs if p.program_id in funded]


def _with_program_columns(program: MatrixProgram, built: Any,
                          funded: list[str]) -> tuple[MatrixProgram, dict[str, int]]:
    """The prices LP with z_p = sum of p's columns carrying p's objective (see module doc), for
    the programs `funded` of `built` (a model or a solution: its `index` and `columns`)."""
    m, n = program.shape
    cols_x = built.columns.x if built.columns is not None else np.zeros(0, int)
    prog_of_x = np.asarray(built.index.programs)[built.index.p] if len(cols_x) else []
    c = program.c.astype(float).copy()
    rows, cols, vals = [], [], []
    z_cost = []
    z_of: dict[str, int] = {}
    members = {}
    for k, pid in enumerate(prog_of_x):
        members.setdefault(pid, []).append(int(cols_x[k]))
    for pid in funded:
        own = members.get(pid, [])
        coef = float(c[own[0]]) if own else 0.0
        if not own or coef == 0.0 or not np.allclose(c[own], coef, rtol=1e-12, atol=0):
            continue  # no value (or not one value per unit): no value range to give
        r = m + len(z_of)
        z = n + len(z_of)
        z_of[pid] = z
        z_cost.append(coef)
        c[own] = 0.0
        rows += [r] * (len(own) + 1)
        cols += [*own, z]
        vals += [1.0] * len(own) + [-1.0]
    k = len(z_of)
    extra = sp.csr_matrix((vals, (rows, cols)), shape=(m + k, n + k))
    A = sp.vstack([sp.hstack([program.A, sp.csr_matrix((m, k))]),
                   sp.csr_matrix((k, n + k))]).tocsr() + extra
    out = replace(
        program, c=np.concatenate([c, z_cost]), A=A,
        row_lower=np.concatenate([program.row_lower, np.zeros(k)]),
        row_upper=np.concatenate([program.row_upper, np.zeros(k)]),
        col_lower=np.concatenate([program.col_lower, np.full(k, -np.inf)]),
        col_upper=np.concatenate([program.col_upper, np.full(k, np.inf)]),
        integer=np.zeros(n + k, dtype=bool),
        row_names=[*program.row_names, *(f"z_row_{p}" for p in z_of)],
        col_names=[*program.col_names, *(f"z_{p}" for p in z_of)])
    return out, z_of


def _ranging(program: MatrixProgram, basis: tuple[np.ndarray, np.ndarray] | None,
             added: int) -> _Ranged | None:
    """Row duals and HiGHS's ranging of the LP, solved by simplex; None unless optimal.

    With the prices LP's own optimal basis, the added z columns basic and their rows at their
    value, the simplex starts optimal: no iteration, only the ranging's cost."""
    h = new_highs()
    h.setOptionValue("solver", "simplex")
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("presolve", "off" if basis is not None else "on")
    program.to_highs(h)
    if basis is not None:
        start = highspy.HighsBasis()
        cols = [highspy.HighsBasisStatus(int(v)) for v in basis[0]]
        rows = [highspy.HighsBasisStatus(int(v)) for v in basis[1]]
        start.col_status = cols + [highspy.HighsBasisStatus.kBasic] * added
        start.row_status = rows + [highspy.HighsBasisStatus.kLower] * added
        start.valid = True
        h.setBasis(start)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal or not h.getInfo().basis_validity:
        return None
    status, rng = h.getRanging()
    if status != highspy.HighsStatus.kOk or not rng.valid:
        return None
    sol = h.getSolution()
    basic = np.array([s == highspy.HighsBasisStatus.kBasic for s in h.getBasis().row_status])
    return _Ranged(np.asarray(sol.row_dual, dtype=float), np.asarray(sol.row_value, dtype=float),
                   basic, rng)


@dataclass
class _Ranged:
    """What the simplex re-solve gives: row prices and activities, which rows are slack
    (basic), and HiGHS's ranging."""

    dual: np.ndarray
    activity: np.ndarray
    basic: np.ndarray
    rng: Any


def _end(v: float) -> float | None:
    return None if not math.isfinite(v) or abs(v) >= INF else float(v)


def _row_table(solution: Solution, program: MatrixProgram, ranged: _Ranged | None, *,
               exact: list[Any] | None = None) -> pd.DataFrame:
    """One record per budget and hard rule row: `exact` ranges, or HiGHS's of `ranged`."""
    rnd = solution.round
    cur = rnd.settings.currency
    soft = {r.rule_id for r in rnd.rules if r.penalty is not None}
    if ranged is not None:
        up = np.asarray(ranged.rng.row_bound_up.value_, dtype=float)
        dn = np.asarray(ranged.rng.row_bound_dn.value_, dtype=float)
        duals = ranged.dual
    else:
        duals = np.asarray(solution.prices.row_dual, dtype=float)
    records = []
    for i, ref in enumerate(solution.row_refs):
        comp = ref.component
        if comp in BUDGET_ROWS:
            kind = "budget"
            fund, period = (str(v) for v in ref.index[:2])
            ident, group = fund, ""
        elif ref.is_rule:
            rule_id, *rest = str(ref.index[0]).split(",")
            if rule_id in soft:
                continue
            kind, ident, group, period = "rule", rule_id, ", ".join(rest), ""
        else:
            continue
        limit = _limit(program, i)
        if exact is not None:
            lo, hi = (_end(v) if v is not None else None for v in exact[i])
        else:
            lo, hi = _end(dn[i]), _end(up[i])
        if exact is None and ranged.basic[i] and limit is not None:
            # A slack row: its price, 0, holds until the limit reaches what is used.
            used = float(ranged.activity[i])
            upper_row = math.isfinite(program.row_upper[i]) and abs(program.row_upper[i]) < INF
            lo, hi = (used, None) if upper_row else (None, used)
        price = price_shown(duals[i])
        # A row whose price is 0 and whose limit is far from binding holds for any larger limit.
        records.append({
            "kind": kind, "id": ident, "group": group, "period": period,
            "limit": limit, "price": price, "lowest": lo, "highest": hi,
            "allowable_increase": None if hi is None or limit is None else max(0.0, hi - limit),
            "allowable_decrease": None if lo is None or limit is None else max(0.0, limit - lo),
            "meaning": _row_words(kind, ident, group, period, comp, price, lo, hi, limit, cur,
                                  exact is not None),
        })
    return pd.DataFrame(records, columns=ROW_COLUMNS)


def _limit(program: MatrixProgram, i: int) -> float | None:
    """The row's limit: its finite bound (the upper one of a <= row, the lower of a >=)."""
    lo, hi = float(program.row_lower[i]), float(program.row_upper[i])
    if math.isfinite(hi) and abs(hi) < INF:
        return hi
    if math.isfinite(lo) and abs(lo) < INF:
        return lo
    return None


def _money(v: float | None, cur: str) -> str:
    if v is None:
        return "no limit"
    return f"{cur} {v:,.0f}".strip() if abs(v - round(v)) < 0.5 or abs(v) >= 100 else \
        f"{cur} {v:,.2f}".strip()


def _row_words(kind: str, ident: str, group: str, period: str, comp: str, price: float | None,
               lo: float | None, hi: float | None, limit: float | None, cur: str,
               exact: bool) -> str:
    step = f"{cur} {PRICE_STEP:,}".strip()
    what = (f"the budget of {ident} {period}" if comp == "spend_fund_period_max" else
            f"the budget of {ident} up to {period} (with carry-over)" if kind == "budget" else
            f"rule {ident}" + (f" ({group})" if group else ""))
    if not price:
        return (f"{what} does not limit the outcome: loosening it changes nothing"
                + (f"; it starts to bind below {_money(lo, cur)}" if lo is not None
                   and kind == "budget" else ""))
    verb = "adds" if price > 0 else "takes away"
    if kind == "budget":
        return (f"each extra {step} of {what} adds {abs(price):,.3f} outcome value while that "
                f"budget stays {'' if exact else 'at least '}between {_money(lo, cur)} and "
                f"{_money(hi, cur)}")
    inc = None if hi is None or limit is None else hi - limit
    dec = None if lo is None or limit is None else limit - lo
    return (f"{what}: raising its limit by {step} {verb} {abs(price):,.3f} outcome value; this "
            f"holds while the limit moves up by {'' if exact else 'at least '}"
            f"{_money(inc, cur)} or down by {'' if exact else 'at least '}{_money(dec, cur)}")


def _program_table(solution: Solution, funded: list[str], z_of: dict[str, int],
                   augmented: MatrixProgram, rng: Any) -> pd.DataFrame:
    rnd = solution.round
    by_id = {p.program_id: p for p in rnd.programs}
    up = np.asarray(rng.col_cost_up.value_, dtype=float)
    dn = np.asarray(rng.col_cost_dn.value_, dtype=float)
    alloc = solution.allocation
    amounts = alloc.groupby("program_id")["amount"].sum() if len(alloc) else {}
    records = []
    for pid in funded:
        prog = by_id[pid]
        value = rnd.value_per_trainee(prog)
        z = z_of.get(pid)
        if z is None or value == 0:
            continue
        coef = float(augmented.c[z])
        # the column's cost is value per currency unit (times the LP's scale): back to value
        # per trainee by the ratio to the program's own value
        scale = value / coef
        lo, hi = _end(dn[z]), _end(up[z])
        lo_v = None if lo is None else lo * scale
        hi_v = None if hi is None else hi * scale
        records.append(_program_record(pid, prog.name, float(amounts.get(pid, 0.0)), value,
                                       lo_v, hi_v, False))
    return pd.DataFrame(records, columns=PROGRAM_COLUMNS)


def _program_record(pid: str, name: str | None, amount: float, value: float,
                    lo_v: float | None, hi_v: float | None, exact: bool) -> dict:
    """One row of the programs' sensitivity table: the range of the value per trainee over
    which the program's funding holds, as allowable increase and decrease, and in words."""
    return {"program_id": pid, "program": name, "amount": amount, "value_per_trainee": value,
            "lowest": lo_v, "highest": hi_v,
            "allowable_increase": None if hi_v is None else max(0.0, hi_v - value),
            "allowable_decrease": None if lo_v is None else max(0.0, value - lo_v),
            "meaning": _program_words(name or pid, value, lo_v, hi_v, exact)}


def _program_words(name: str, value: float, lo: float | None, hi: float | None,
                   exact: bool) -> str:
    low = "any lower value" if lo is None or lo <= 0 else f"{lo:,.3f}"
    high = "any higher value" if hi is None else f"{hi:,.3f}"
    return (f"{name} keeps its funding while its value per trainee ({value:,.3f}) stays "
            f"{'' if exact else 'at least '}between {low} and {high}")


__all__ = ["RANGING_COLUMNS", "Sensitivity", "sensitivity"]
