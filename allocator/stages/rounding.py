"""Rounding the LP allocation to whole multiples of the rounding unit, keeping every row true.

Stage 5, after the tie-break (`round_to_units`). Each non-zero amount may move to a multiple
of the unit at most one step beyond the nearest ones below and above it; a small MILP picks
the step for every amount, so that budgets, capacities, minimums and co-financing caps hold
exactly and rule rows hold wherever rounding allows, with the highest outcome value. Every row
that touches a fractional amount gets an elastic slack, priced so that a hard row is missed
only when nothing else works and a rule row only when rounding cannot keep it; any slack left
over is reported, never hidden.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from allocator.progress import phase
from allocator.solve import INF, MatrixProgram, Status, row_name, solve_program
from allocator.stages.model import BuiltModel

NEAR_INTEGER = 1e-6  # in units: an amount this close to a multiple is that multiple
# Above this many fractional amounts the down-or-up MILP gets slow (5 s at 1,000 programs);
# a greedy pass (floor, then up where every row allows) with a small MILP repair takes over.
MILP_MAX_STEPS = 1_000
ROUNDING_MAX_NODES = 2_000
# Every rounding MILP runs without presolve: on these small MILPs presolve, its root cuts and
# sub-MIP heuristics were nearly all the time (example round: 0.68 s -> 0.015 s, the same
# outcome value; the wide search of a 100-program round: 11.4 s -> 0.7 s).
ROUNDING_OPTIONS = {"mip_max_nodes": ROUNDING_MAX_NODES, "presolve": "off"}
# ... except the wide search's MILPs over every amount, where presolve on is the faster (HiGHS
# 1.16, measured 2026-12-05: 100 programs 0.31 s -> 0.09 s; 300 programs 25 s -> 0.16 s, the
# time off being root cut separation; on the first rounding and repair MILPs presolve still
# costs 2-40x: example round 0.017 s -> 0.71 s).
WIDE_OPTIONS = {**ROUNDING_OPTIONS, "presolve": "on"}
# When rounding near the optimum misses a hard row, a MILP over every amount in whole units
# (each free from 0 up) looks for any allocation that keeps every hard row, or proves there is
# none. Above this many amounts that search is skipped (the miss is then reported unproven).
WIDE_MAX_AMOUNTS = 5_000
# The wide search looks first within this many units of the rounding near the optimum (every
# amount, every on/off decision): an allocation there keeps the LP's shape. Measured on a
# 100-program round: the best allocation over every whole-unit split moved 260 amounts by up to
# 1.2 million to gain 0.003 in outcome value, and took 37 s; the one within 2 units, 0.5 s.
WIDE_NEAR_UNITS = 2
# A missed hard rule alone sends rounding to the repair pass only while the amounts in its rows
# are this few (a share of all money in a 50,000-program round would make a huge MILP).
REPAIR_MAX_RULE_AMOUNTS = 20_000
# Ties between roundings of equal outcome value (twins split evenly, programs of one value per
# unit) are broken by a tiny cost per step up, distinct per column: TIE_STEP * unit * (1 + u_j),
# u_j in [0, 1) drawn once per column j of the program, in the program's canonical column order,
# from PCG64 with a fixed seed (the same numbers on every machine, and the same for a column
# whatever order the amounts are handed in). Bound: n steps up cost less than 2 * n * TIE_STEP
# * unit of outcome value in all (about 1e-6 of one step's value per step: the example round's
# smallest step, EUR 1,000 of its least valuable program, is worth 0.094), so a rounding is
# never given up for a tie-break unless it is worth less than that more.
TIE_STEP = 1e-9
ROUNDING_TIE_SEED = 20261205


@dataclass
class Rounded:
    """Integer numbers of rounding units per x, and which rows rounding could not keep."""

    units: np.ndarray  # int64 per x variable
    row_misses: dict[int, float]  # row -> amount (currency) by which it is missed
    method: str
    columns: np.ndarray | None = None  # every column after rounding (slacks and totals follow x)
    # When a hard row is missed: "proven" (the MILP over every whole-unit allocation found none
    # that keeps all hard rows), "not proven" (its search stopped, or the round was too large).
    proof: str | None = None


def round_to_units(model: BuiltModel, program: MatrixProgram, x: np.ndarray) -> Rounded:
    """The allocation `x` (every column of `program`, stage 1 with its on/off decisions fixed)
    in whole rounding units, every hard row kept where any rounding keeps it."""
    phase("rounding to whole units")
    rnd, cols = model.round, model.columns
    settings = rnd.settings
    rounded = round_allocation(without_rows(program, model.protection_rows), cols.x, x,
                               float(settings.rounding_unit), model.rule_rows,
                               time_limit=min(10.0, settings.time_limit_s),  # node-limited
                               free_cols=np.concatenate([cols.s, cols.t]), switch_cols=cols.y,
                               hard_rule_rows=model.hard_rule_rows)
    if len(cols.robust):
        follow_protection(model, rounded)
    return rounded


def without_rows(program: MatrixProgram, rows: np.ndarray) -> MatrixProgram:
    """The program with the given rows unbounded (the same program when there are none)."""
    if not len(rows):
        return program
    lower, upper = program.row_lower.copy(), program.row_upper.copy()
    lower[rows], upper[rows] = -INF, INF
    return dataclasses.replace(program, row_lower=lower, row_upper=upper)


def follow_protection(model: BuiltModel, rounded: Rounded) -> None:
    """Set lambda and mu to their optimum for the rounded amounts (in place): the protection
    rows are no rules, so rounding never bends money to them (it rounds without them), they
    follow it."""
    from allocator.robust import dual_values, spreads, trainees_per_program

    rnd, cols, full = model.round, model.columns, rounded.columns
    unit = float(rnd.settings.rounding_unit)
    trainees = trainees_per_program(rnd, model.index, rounded.units * unit)
    order = {p.program_id: i for i, p in enumerate(rnd.programs)}
    rows = [order[p] for p in model.robust_programs]
    deviation = rnd.settings.robust_level * spreads(rnd)[rows] * trainees[rows]
    lam, mu = dual_values(deviation, rnd.settings.robust_gamma)
    if full is not None:
        full[cols.robust[0]] = lam
        full[cols.robust[1:]] = mu


def rounding_breaks(model: BuiltModel, rounded: Rounded) -> list[str]:
    """One sentence per hard row (hard rule, budget, capacity, minimum, cap) the rounded
    allocation misses: the row, the amount, and whether no rounding at all can keep it."""
    refs = model.row_refs
    hard_rules = set(model.hard_rule_rows.tolist())
    soft = set(model.rule_rows.tolist()) - hard_rules
    cur = model.round.settings.currency
    unit = model.round.settings.rounding_unit
    why = {"proven": "no allocation in whole units of {cur} {unit} keeps it (proven by the "
                     "rounding MILP)",
           "not proven": "no rounding to whole units of {cur} {unit} that keeps it was found "
                         "(not proven that none exists)"}.get(rounded.proof or "not proven")
    out = []
    for i, amount in sorted(rounded.row_misses.items()):
        if i in soft:
            continue
        shown = f"{amount:,.0f}" if abs(amount - round(amount)) < 1e-6 else f"{amount:,.2f}"
        kind = "rule" if i in hard_rules else "limit"  # a budget, capacity, minimum or cap
        out.append(f"rounding breaks a hard {kind}: {row_name(refs[i])} is missed by {cur} "
                   f"{shown}; " + why.format(cur=cur, unit=format(unit.normalize(), ",f")))
    return out


def round_allocation(program: MatrixProgram, x_cols: np.ndarray, solution: np.ndarray,
                     unit: float, soft_rows: np.ndarray, time_limit: float = 30.0,
                     free_cols: np.ndarray | None = None,
                     switch_cols: np.ndarray | None = None,
                     hard_rule_rows: np.ndarray | None = None) -> Rounded:
    """Round x (currency) to multiples of `unit`.

    Rows in `soft_rows` may be missed (at a lower price) where rounding cannot keep them,
    except those also in `hard_rule_rows` (rules without a penalty): like budgets, capacities,
    minimums and caps, a hard rule missed near the optimum sends rounding to a repair pass and
    then to a MILP over every whole-unit allocation, which finds one that keeps it or proves
    that none exists (`Rounded.proof`).

    `free_cols` (soft-rule slacks, reference totals) are re-optimised with the rounded x so
    the rows that define them stay exact; `switch_cols` (the on/off decisions of all-or-nothing
    programs) may be switched off by the repair pass when no whole-unit split of a program's
    money keeps its caps; every other column keeps its solved value.
    """
    free_cols = np.zeros(0, dtype=np.int64) if free_cols is None else free_cols
    switch_cols = np.zeros(0, dtype=np.int64) if switch_cols is None else switch_cols
    x = np.maximum(solution[x_cols], 0.0) / unit
    lo = np.floor(x + NEAR_INTEGER)
    fractional = x - lo > NEAR_INTEGER
    units = lo.copy()
    full = solution.copy()
    full[x_cols] = units * unit
    if not fractional.any():
        return Rounded(units.astype(np.int64), _misses(program, full, unit), "exact", full)
    # First pass: each fractional amount goes down or up. Floor/ceil alone can be infeasible
    # (a capacity and a co-financing cap on the same two amounts); then, in a second, small
    # pass, the amounts in the rows still missed may move one unit either way from there.
    steps = np.flatnonzero(fractional)
    if len(steps) > MILP_MAX_STEPS:
        full = _greedy(program, x_cols, solution, lo, steps, unit, free_cols)
        method = "greedy"
    else:
        result = _rounding_milp(program, x_cols, solution, lo, steps, np.zeros(len(steps)),
                                np.ones(len(steps)), unit, soft_rows, free_cols, time_limit)
        if result is None:
            full = solution.copy()
            full[x_cols] = lo * unit
            return Rounded(lo.astype(np.int64), _misses(program, full, unit), "floor", full)
        full = _apply(solution, x_cols, lo, steps, free_cols, result, unit)
        method = "milp"
    soft = set(soft_rows.tolist())
    hard_rules = set() if hard_rule_rows is None else set(hard_rule_rows.tolist())
    hard_missed = [i for i in _misses(program, full, unit) if i not in soft or i in hard_rules]
    if hard_missed and all(i in hard_rules for i in hard_missed) and int(
            _columns_in_rows(program, hard_missed, x_cols).sum()) > REPAIR_MAX_RULE_AMOUNTS:
        hard_missed = []  # a rule over most of a large round: a repair MILP would be huge
    if hard_missed:
        now = np.rint(full[x_cols] / unit)
        in_missed = _columns_in_rows(program, hard_missed, x_cols)
        # The on/off decisions of the programs involved may switch off; their money may then
        # fall all the way to 0, the rest moves by one unit at most.
        switches = _switches_near(program, x_cols[in_missed], switch_cols, full)
        whole = _columns_in_rows(program, _rows_of(program, switches), x_cols) if len(switches) \
            else np.zeros(len(x_cols), bool)
        steps2 = np.flatnonzero(in_missed | whole)
        lower2 = np.where(whole[steps2], -now[steps2], -np.minimum(now[steps2], 1.0))
        second = _rounding_milp(program, x_cols, full, now, steps2, lower2, np.ones(len(steps2)),
                                unit, soft_rows, free_cols, time_limit, switches)
        if second is not None:
            full = _apply(full, x_cols, now, steps2, free_cols, second, unit, switches)
            method += "+repair"
    must_keep = [i for i in _misses(program, full, unit) if i not in soft or i in hard_rules]
    proof = None
    if must_keep:
        found, proof = _wide_search(program, x_cols, full, unit, soft_rows, hard_rules,
                                    free_cols, switch_cols, time_limit, must_keep)
        if found is not None:
            full, proof = found, None
            method += "+wide"
    units = np.rint(full[x_cols] / unit)
    return Rounded(units.astype(np.int64), _misses(program, full, unit), method, full, proof)


def _wide_search(program: MatrixProgram, x_cols: np.ndarray, full: np.ndarray, unit: float,
                 soft_rows: np.ndarray, hard_rules: set[int], free_cols: np.ndarray,
                 switch_cols: np.ndarray, time_limit: float,
                 missed: list[int]) -> tuple[np.ndarray | None, str]:
    """Any whole-unit allocation that keeps every hard row, or why there is none.

    First the best allocation within `WIDE_NEAR_UNITS` of the rounding near the optimum that
    keeps every hard row, moving only the amounts near the `missed` rows, then moving any.
    Failing that, phase A minimises the total miss of the hard rows over
    every amount in whole units (each from 0 up, every on/off decision free): a minimum above
    zero, proven optimal, proves that no rounding keeps them. Phase B then takes the best
    allocation keeping every hard row between phase A's and the rounding near the optimum.
    Returns (columns, "") when found, else (None, "proven" or "not proven").
    """
    n = len(x_cols)
    if n > WIDE_MAX_AMOUNTS:
        return None, "not proven"
    now = np.rint(full[x_cols] / unit)
    soft = np.array(sorted(set(soft_rows.tolist()) - hard_rules), dtype=np.int64)
    steps = np.arange(n)
    zeros = np.zeros(n)

    def best_within(lower: np.ndarray, upper: np.ndarray) -> np.ndarray | None:
        """The best allocation with every amount (in units) in [lower, upper], every hard row kept."""
        found = _rounding_milp(program, x_cols, full, zeros, steps, lower, upper, unit, soft,
                               free_cols, time_limit, switch_cols, strict=True, full_result=True,
                               options=WIDE_OPTIONS)
        if found is None or found[0] is None:
            return None
        return _apply(full, x_cols, zeros, steps, free_cols, found[0], unit, switch_cols)

    # First only the amounts in the missed rows and those within LOCAL_HOPS narrow rows (caps,
    # capacities) of them move, the rest as rounded. Measured on the benchmark's rounds: 300
    # programs, 1.8 s against 9.8 s with every amount free (and 86 s without presolve), the
    # same outcome value to 1e-6; 100 programs 0.7 s, 6e-6 below the optimum before rounding.
    local = _columns_in_rows(program, missed, x_cols)
    narrow = np.flatnonzero(np.diff(sp.csr_matrix(program.A).indptr) <= NARROW_ROW_AMOUNTS)
    for _ in range(LOCAL_HOPS):
        local |= _columns_in_rows(program, np.intersect1d(_rows_of(program, x_cols[local]),
                                                          narrow).tolist(), x_cols)
    for free in (local, np.ones(n, bool)):
        near = best_within(np.where(free, np.maximum(now - WIDE_NEAR_UNITS, 0.0), now),
                           np.where(free, now + WIDE_NEAR_UNITS, now))
        if near is not None:
            return near, ""
    first = _rounding_milp(program, x_cols, full, zeros, steps, zeros, np.full(n, INF), unit,
                           soft, free_cols, time_limit, switch_cols, value_weight=0.0,
                           full_result=True, options=WIDE_OPTIONS)
    if first is None:
        return None, "not proven"
    z, status, objective = first
    tol = 1e-6 * unit
    if -objective > tol:  # every hard row cannot be kept at once
        return None, "proven" if status == Status.optimal else "not proven"
    candidate = _apply(full, x_cols, zeros, steps, free_cols, z, unit, switch_cols)
    found = np.rint(z[:n])
    better = best_within(np.maximum(np.minimum(found, now) - 1.0, 0.0),
                         np.maximum(found, now) + 1.0)
    if better is not None and float(program.c @ better) >= float(program.c @ candidate):
        candidate = better
    return candidate, ""


def _greedy(program: MatrixProgram, x_cols: np.ndarray, solution: np.ndarray, lo: np.ndarray,
            steps: np.ndarray, unit: float, free_cols: np.ndarray) -> np.ndarray:
    """Floor every amount, mend the rows that flooring broke by moving amounts in them one
    unit at a time, then round up by outcome value wherever no row would be broken. Totals
    follow x. Each move is checked against the rows of its own column only, so the pass costs
    about one sweep over the matrix."""
    A = sp.csr_matrix(program.A)
    full = solution.copy()
    full[x_cols] = lo * unit
    totals = _total_rows(program, free_cols)
    _follow_totals(A, full, totals)
    effect = _effective_columns(program, x_cols, totals)  # x's effect with totals following
    skip = np.zeros(A.shape[0], bool)
    skip[[row for row, _ in totals]] = True
    moves = _Moves(effect, A @ full, program.row_lower, program.row_upper, skip, lo, unit,
                   solution[x_cols] / unit)
    moves.mend(program.c[x_cols])
    remainder = solution[x_cols[steps]] / unit - lo[steps]
    order = np.argsort(_tie_safe(-program.c[x_cols[steps]] * remainder), kind="stable")
    for k in steps[order].tolist():
        if moves.units[k] == lo[k]:
            moves.try_move(k, +1)
    full[x_cols] = moves.units * unit
    _follow_totals(A, full, totals)
    return full


# Sort keys equal to this share of the largest are equal: amounts that tie exactly (twin programs,
# half units) otherwise sort by the solver's last digits, which differ between solves that reach
# the same optimum from different starts (a warm sweep point against its cold solve).
KEY_RTOL = 1e-9


def _tie_safe(key: np.ndarray) -> np.ndarray:
    """`key` on a grid of KEY_RTOL of its largest magnitude, so that near-ties sort by position."""
    scale = float(np.abs(key).max(initial=0.0))
    return np.round(key / (scale * KEY_RTOL)) if scale > 0 else key


# Rows over at most this many amounts are mended first by the greedy pass (`_Moves.mend`).
NARROW_ROW_AMOUNTS = 64
# The wide search first moves the amounts within this many narrow rows of the missed ones.
LOCAL_HOPS = 2


class _Moves:
    """Whole-unit moves of single amounts that never break a row or push a broken one further.

    Each amount stays within one unit beyond the multiples around its solved value, as in the
    rounding MILP.
    """

    MAX_PASSES = 4

    def __init__(self, effect: sp.csc_matrix, activity: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray, skip: np.ndarray, lo: np.ndarray, unit: float,
                 solved_units: np.ndarray):
        self.effect = effect
        self.by_row = sp.csr_matrix(effect)
        self.act = activity
        self.lower, self.upper, self.skip = lower, upper, skip
        self.tol = _exact_tolerance(activity, unit)
        self.unit = unit
        self.units = lo.copy()
        self.floor = np.maximum(np.floor(solved_units + NEAR_INTEGER) - 1.0, 0.0)
        self.ceil = np.ceil(solved_units - NEAR_INTEGER) + 1.0

    def missed(self) -> np.ndarray:
        """Rows outside their bounds, in row order."""
        bad = (self.act < self.lower - self.tol) | (self.act > self.upper + self.tol)
        return np.flatnonzero(bad & ~self.skip)

    def try_move(self, k: int, sign: int) -> bool:
        """Move x_k by `sign` units if no row of its column gets broken or worse."""
        new_units = self.units[k] + sign
        if new_units < self.floor[k] or new_units > self.ceil[k]:
            return False
        start, end = self.effect.indptr[k], self.effect.indptr[k + 1]
        rows = self.effect.indices[start:end]
        coefs = sign * self.effect.data[start:end] * self.unit
        new = self.act[rows] + coefs
        keep = ~self.skip[rows]
        worse_up = (new > self.upper[rows] + self.tol[rows]) & (coefs > 0)
        worse_lo = (new < self.lower[rows] - self.tol[rows]) & (coefs < 0)
        if ((worse_up | worse_lo) & keep).any():
            return False
        self.act[rows] = new
        self.units[k] = new_units
        return True

    def mend(self, value: np.ndarray) -> None:
        """For each broken row, move the amounts in it towards its bounds: up first (by outcome
        value, best first), then down (least valuable first), until the row holds.

        Rows over a few amounts (caps, capacities, minimums) first, as if the rows over many
        (rules and budgets over a whole fund or region) were not there: a row over few amounts
        has few moves that mend it, and a wide row that flooring broke, or that holds with no
        room to spare, would refuse them all. The wide rows are mended after, by moving some
        of their many amounts, every row counted (measured: a 10,000-program round whose
        inclusion rule was broken by flooring kept 246 co-financing caps missed)."""
        wide = np.diff(self.by_row.indptr) > NARROW_ROW_AMOUNTS
        if wide.any():
            keep = self.skip
            self.skip = keep | wide
            self._mend_passes(value)
            self.skip = keep
        self._mend_passes(value)

    def _mend_passes(self, value: np.ndarray) -> None:
        for _ in range(self.MAX_PASSES):
            moved = False
            for i in self.missed().tolist():
                moved |= self._mend_row(i, value)
            if not moved:
                return

    def _mend_row(self, i: int, value: np.ndarray) -> bool:
        start, end = self.by_row.indptr[i], self.by_row.indptr[i + 1]
        ks, coefs = self.by_row.indices[start:end], self.by_row.data[start:end]
        need = 1.0 if self.act[i] < self.lower[i] else -1.0  # the way the activity must go
        ups = ks[coefs * need > 0]
        downs = ks[coefs * need < 0]
        candidates = [(k, +1) for k in ups[np.argsort(-value[ups], kind="stable")].tolist()]
        candidates += [(k, -1) for k in downs[np.argsort(value[downs], kind="stable")].tolist()]
        moved = False
        for k, sign in candidates:
            while self._broken(i) and self.try_move(k, sign):
                moved = True
            if not self._broken(i):
                break
        return moved

    def _broken(self, i: int) -> bool:
        return bool(self.act[i] < self.lower[i] - self.tol[i]
                    or self.act[i] > self.upper[i] + self.tol[i])


def _exact_tolerance(activity: np.ndarray, unit: float) -> np.ndarray:
    """How far a row may be off and still hold: far below one unit, so budgets and capacities
    hold to the cent, yet above the float noise of sums of a million amounts."""
    return 1e-6 * unit + 1e-12 * np.abs(activity)


def _follow_totals(A: sp.csr_matrix, full: np.ndarray, totals: list[tuple[int, int]]) -> None:
    """Set each reference total t (row `t - sum x = 0`) from the amounts, in place."""
    for row, col in totals:
        full[col] = 0.0
        full[col] = -float((A[row] @ full)[0])


def _total_rows(program: MatrixProgram, free_cols: np.ndarray) -> list[tuple[int, int]]:
    """(defining row, column) of each reference total: the free column with an equality row
    `t - sum x = 0` of its own (soft-rule slacks have none)."""
    A = sp.csc_matrix(program.A)
    out = []
    for col in free_cols.tolist():
        rows = A.indices[A.indptr[col]:A.indptr[col + 1]]
        for row in rows.tolist():
            if program.row_lower[row] == program.row_upper[row] == 0.0 and A[row, col] == 1.0:
                out.append((row, col))
                break
    return out


def _effective_columns(program: MatrixProgram, x_cols: np.ndarray,
                       totals: list[tuple[int, int]]) -> sp.csc_matrix:
    """Each x's column with the totals it feeds folded in (so they move with it)."""
    A = sp.csc_matrix(program.A)
    effect = A[:, x_cols]
    if totals:
        rows = [r for r, _ in totals]
        cols = [c for _, c in totals]
        D = -sp.csr_matrix(program.A)[rows][:, x_cols]  # t = D x
        effect = effect + A[:, cols] @ D
    return sp.csc_matrix(effect)


def _apply(solution: np.ndarray, x_cols: np.ndarray, lo: np.ndarray, steps: np.ndarray,
           free_cols: np.ndarray, result: np.ndarray, unit: float,
           switches: np.ndarray | None = None) -> np.ndarray:
    full = solution.copy()
    units = lo.copy()
    units[steps] += np.round(result[: len(steps)])
    full[x_cols] = units * unit
    full[free_cols] = result[len(steps): len(steps) + len(free_cols)]
    if switches is not None and len(switches):
        start = len(steps) + len(free_cols)
        full[switches] = np.round(result[start: start + len(switches)])
    return full


def _rows_of(program: MatrixProgram, cols: np.ndarray) -> list[int]:
    return np.unique(sp.csc_matrix(program.A)[:, cols].nonzero()[0]).tolist()


def _switches_near(program: MatrixProgram, cols: np.ndarray, switch_cols: np.ndarray,
                   full: np.ndarray) -> np.ndarray:
    """The switched-on decisions that share a row with any of the given columns."""
    if len(switch_cols) == 0 or len(cols) == 0:
        return np.zeros(0, dtype=np.int64)
    rows = _rows_of(program, cols)
    near = np.unique(sp.csr_matrix(program.A)[rows].indices)
    on = switch_cols[full[switch_cols] > 0.5]
    return np.intersect1d(on, near)


def _columns_in_rows(program: MatrixProgram, rows: list[int], x_cols: np.ndarray) -> np.ndarray:
    """Mask over x: the amounts that appear in any of the given rows."""
    cols = np.unique(sp.csr_matrix(program.A)[rows].indices)
    return np.isin(x_cols, cols)


def _rounding_milp(program: MatrixProgram, x_cols: np.ndarray, solution: np.ndarray,
                   lo: np.ndarray, steps: np.ndarray, step_lower: np.ndarray, step_upper: np.ndarray,
                   unit: float, soft_rows: np.ndarray, free_cols: np.ndarray,
                   time_limit: float, switches: np.ndarray | None = None, *,
                   value_weight: float = 1.0, strict: bool = False, full_result: bool = False,
                   options: dict[str, object] = ROUNDING_OPTIONS):
    """Solve the rounding MILP: x_k = unit * (lo_k + z_k) for k in `steps`, z_k integer within
    [step_lower, step_upper]; the other x stay at `unit * lo`; `switches` may go from 1 to 0.
    Returns z, then the free columns, then the switches.

    `value_weight` 0 minimises the weighted misses alone; `strict` allows no miss on any row
    but `soft_rows`; `full_result` returns (z..., status, objective) instead."""
    switches = np.zeros(0, dtype=np.int64) if switches is None else switches
    A = sp.csc_matrix(program.A)
    step_cols = x_cols[steps]
    # Activity of every row with each stepped x at its floor, free columns at 0, rest as solved.
    fixed = solution.copy()
    fixed[x_cols] = lo * unit
    fixed[free_cols] = 0.0
    fixed[switches] = 0.0
    base = A @ fixed
    free_cols = np.concatenate([free_cols, switches]).astype(np.int64)
    B = sp.hstack([A[:, step_cols] * unit, A[:, free_cols]], format="csr")
    touched = np.unique(B.nonzero()[0])
    B = B[touched]
    lower = program.row_lower[touched] - base[touched]
    upper = program.row_upper[touched] - base[touched]
    n_z, n_f, n_r = len(steps), len(free_cols), len(touched)
    scale = float(np.max(np.abs(program.c[x_cols]))) if len(x_cols) else 1.0
    soft = np.isin(touched, soft_rows)
    weight = np.where(soft, 1e3, 1e6) * max(scale, 1e-9) + 1.0
    has_lo, has_up = lower > -INF, upper < INF
    # Columns: z (integer step), free columns, e_lo (row may fall short), e_up (overshoot).
    eye = sp.identity(n_r, format="csr")
    A_full = sp.hstack([B, eye[:, has_lo], -eye[:, has_up]], format="csr")
    n_lo, n_up = int(has_lo.sum()), int(has_up.sum())
    tie = TIE_STEP * unit * (1.0 + tie_draws(program.shape[1])[step_cols])
    c = np.concatenate([(program.c[step_cols] * unit - tie) * value_weight,
                        program.c[free_cols] * value_weight, -weight[has_lo], -weight[has_up]])
    if not value_weight:  # the plain total miss (currency) of the hard rows, each alike
        c[n_z + n_f:] = -np.concatenate([np.where(soft, 0.0, 1.0)[has_lo],
                                         np.where(soft, 0.0, 1.0)[has_up]])
    n_s = len(switches)
    miss_upper = np.where(soft, INF, 0.0) if strict else np.full(n_r, INF)
    col_lower = np.concatenate([step_lower, program.col_lower[free_cols[: n_f - n_s]],
                                np.zeros(n_s + n_lo + n_up)])
    col_upper = np.concatenate([step_upper, program.col_upper[free_cols[: n_f - n_s]],
                                np.ones(n_s), miss_upper[has_lo], miss_upper[has_up]])
    integer = np.concatenate([np.ones(n_z, bool), np.zeros(n_f - n_s, bool), np.ones(n_s, bool),
                              np.zeros(n_lo + n_up, bool)])
    rounding = MatrixProgram(c=c, A=A_full, row_lower=np.where(has_lo, lower, -INF),
                             row_upper=np.where(has_up, upper, INF), col_lower=col_lower,
                             col_upper=col_upper, integer=integer,
                             row_names=[f"r{i}" for i in range(n_r)],
                             col_names=[f"z{i}" for i in range(A_full.shape[1])], maximize=True)
    # A node limit, not the clock, ends a long search: the answer must not depend on how
    # busy the machine is (the time limit stays only as a safety net).
    result = solve_program(rounding, "rounding", time_limit=max(time_limit, 120.0), mip_gap=1e-6,
                           options=options, recorded=False)
    if result.status not in (Status.optimal, Status.time_limit) or result.x is None:
        return None
    if full_result:
        return result.x[: n_z + n_f], result.status, float(result.objective or 0.0)
    return result.x[: n_z + n_f]


def tie_draws(n: int) -> np.ndarray:
    """u_j in [0, 1) for columns 0..n-1 (see TIE_STEP): column j's draw does not depend on
    which columns are stepped, nor on their order."""
    return np.random.Generator(np.random.PCG64(ROUNDING_TIE_SEED)).random(n)


def _misses(program: MatrixProgram, full: np.ndarray, unit: float) -> dict[int, float]:
    """Rows whose activity lies outside their bounds, with the amount by which."""
    activity = program.A @ full
    short = program.row_lower - activity
    over = activity - program.row_upper
    miss = np.maximum(short, over)
    rows = np.flatnonzero(miss > _exact_tolerance(activity, unit))
    return {int(i): float(miss[i]) for i in rows}


__all__ = ["Rounded", "round_allocation"]
