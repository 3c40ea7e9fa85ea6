"""Trade-offs between two goals: `allocator frontier ROUND.xlsx --between A B [--points N]`.

DESIGN 1.1 "Trade-offs". A metric's total is sum_p T_p * outcome_p,m (T_p: the program's
trainees over all periods); `outcome` names the round's own objective (sum_p v_p T_p, less
soft-rule penalties, less the robust protection when robust_gamma > 0) and `equity` the lowest
group's measure of the round's equity objective (maxmin_per_capita when the round sets none:
the lowest money per inhabitant of a region with eligible money).

The epsilon-constraint method, on the round's own feasible set (every budget, capacity,
co-financing cap and hard rule; soft rules keep their penalties in every objective):
1. B's best, then the most A among B's optima: A_low, A's lowest useful level;
2. A's best A_max (and the most B that keeps it);
3. N levels evenly from A_low to A_max; at each, maximise B subject to A >= level, then, B
   held at its best, maximise A (so each point is efficient, not merely weakly so).
Every point is a solve of its own. Serially (the default) one HiGHS instance is kept and only
the level's row bound changes between solves, so each LP starts from the previous basis; with
`workers` > 1 or a Dask scheduler the points run through `allocator.pool.run_tasks`.
Amounts are the solver's (before rounding to whole units); run the round for a rounded one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp

from allocator import cells
from allocator.eligibility import AllocationIndex
from allocator.errors import InfeasibleRoundError, SolverStoppedError
from allocator.round import EquityObjective, Round
from allocator.solve import (
    INF,
    SOLVER_OPTIONS,
    Columns,
    MatrixProgram,
    new_highs,
    process_threads,
)
from allocator.stages.equity import equity_groups

OUTCOME, EQUITY = "outcome", "equity"
DEFAULT_POINTS = 11
HOLD_RTOL = 1e-9  # a level is held this much below itself, so the solve at A's best stays feasible


class FrontierSpecError(ValueError):
    """A metric name the round cannot trace (not a numeric Programs column, or twice the same)."""


@dataclass
class FrontierPoint:
    point: int
    level: float  # the bound A >= level of this solve
    a: float
    b: float
    objective: float  # the round's own objective at this allocation
    status: str
    amounts: np.ndarray  # money per eligible x (before rounding)


@dataclass
class FrontierResult:
    round: Round
    a: str
    b: str
    points: list[FrontierPoint]
    index: AllocationIndex
    where: str
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class _Problem:
    """The round's program with a row for A and a row for B (free until a level is set)."""

    program: MatrixProgram
    cols: Columns
    a: np.ndarray  # A's objective per column (penalties of soft rules included)
    a_total: np.ndarray  # A's total per column (the level row)
    b: np.ndarray  # B's objective per column (penalties of soft rules included)
    b_total: np.ndarray  # B's total per column (without penalties)
    own: np.ndarray  # the round's own objective per column
    a_row: int
    b_row: int
    mip_gap: float
    time_limit: float


# --- metrics -----------------------------------------------------------------------------------
def metric_values(rnd: Round, metric: str) -> np.ndarray:
    """outcome_p,m per program: from `outcomes`, else the program's numeric extra column
    (a blank cell counts 0); FrontierSpecError for a metric no program has as a number."""
    out, found = [], False
    for p in rnd.programs:
        if metric in p.outcomes:
            out.append(float(p.outcomes[metric]))
            found = True
            continue
        raw = p.attributes.get(metric)
        try:  # the reader's own number parser: "12%", "1,234.5" read as in any numeric cell
            number = cells.parse_decimal(raw, []) if raw not in (None, "") else None
        except cells.CellValueError:
            raise FrontierSpecError(f"metric {metric!r} of program {p.program_id!r} is not a "
                                    f"number: {raw!r}") from None
        value = float(number) if number is not None else 0.0
        found = found or raw not in (None, "")
        out.append(value)
    if not found and not any(o.metric == metric for o in rnd.objective):
        raise FrontierSpecError(f"unknown metric {metric!r}: name an outcome column of the "
                                f"Programs sheet (or a numeric column), {OUTCOME!r} or {EQUITY!r}")
    return np.array(out, dtype=float)


def _per_column(rnd: Round, index: AllocationIndex, cols: Columns, n_cols: int,
                per_trainee: np.ndarray) -> np.ndarray:
    """A per-trainee quantity of each program as a coefficient on each x column (per money)."""
    cost = np.array([p.round_cost_per_trainee for p in rnd.programs], dtype=float)
    out = np.zeros(n_cols)
    if len(index):
        out[cols.x] = (per_trainee / cost)[index.p]
    return out


def _equity_column(rnd: Round, index: AllocationIndex, program: MatrixProgram,
                   cols: Columns) -> tuple[MatrixProgram, int, str]:
    """The program with a column z and rows sum_{k in g} x_k - divisor_g z >= 0 per group:
    z is at most the lowest group's measure (max-min, as the equity stage measures it)."""
    if rnd.settings.equity_objective == EquityObjective.none:
        rnd = rnd.model_copy(update={"settings": rnd.settings.model_copy(
            update={"equity_objective": EquityObjective.maxmin_per_capita})})
    groups = equity_groups(rnd, index)
    n_rows, n_cols = program.shape
    rows = np.concatenate([np.full(len(m), g) for g, m in enumerate(groups.members)]) \
        if groups.members else np.zeros(0, dtype=np.int64)
    columns = np.concatenate([cols.x[m] for m in groups.members]) if groups.members else \
        np.zeros(0, dtype=np.int64)
    G = sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(groups.names), n_cols))
    block = sp.hstack([G, sp.csr_matrix(-groups.divisors.reshape(-1, 1))], format="csr")
    A = sp.vstack([sp.hstack([program.A, sp.csr_matrix((n_rows, 1))], format="csr"), block],
                  format="csr")
    out = MatrixProgram(
        c=np.append(program.c, 0.0), A=A,
        row_lower=np.concatenate([program.row_lower, np.zeros(len(groups.names))]),
        row_upper=np.concatenate([program.row_upper, np.full(len(groups.names), INF)]),
        col_lower=np.append(program.col_lower, 0.0), col_upper=np.append(program.col_upper, INF),
        integer=np.append(program.integer, False),
        row_names=[*program.row_names, *[f"equity_group_min[{g}]" for g in groups.names]],
        col_names=[*program.col_names, "z_equity"], maximize=True)
    unit = f"{groups.objective.value}: lowest group, {groups.unit}"
    return out, n_cols, unit


def _problem(rnd: Round, a_name: str, b_name: str) -> tuple[_Problem, AllocationIndex, list[str]]:
    from allocator.stages.model import build_model, raise_for_trivial_rows

    if a_name == b_name:
        raise FrontierSpecError(f"--between needs two different metrics, got {a_name!r} twice")
    built = build_model(rnd)
    raise_for_trivial_rows(built.trivial)  # a hard rule no allocation can reach: as `run` says it
    index, program, cols = built.index, built.program, built.columns
    notes: list[str] = []
    z_col = None
    if EQUITY in (a_name, b_name):
        program, z_col, unit = _equity_column(rnd, index, program, cols)
        notes.append(f"equity: {unit}")
    n_cols = program.shape[1]
    own = program.c.copy()
    penalties = np.zeros(n_cols)
    penalties[cols.s] = own[cols.s]

    def vector(name: str) -> np.ndarray:
        if name == OUTCOME:
            return own.copy()
        if name == EQUITY:
            v = np.zeros(n_cols)
            v[z_col] = 1.0
            return v
        return _per_column(rnd, index, cols, n_cols, metric_values(rnd, name))

    a_total = vector(a_name)
    b_total = vector(b_name)
    # Soft rules are missed only at their price, whichever metric is maximised (`outcome` holds
    # them already); the level row holds A's own total.
    a = a_total if a_name == OUTCOME else a_total + penalties
    b = b_total if b_name == OUTCOME else b_total + penalties
    rows = sp.csr_matrix(np.vstack([a_total, b]))
    m = program.shape[0]
    base = replace(program, c=b, A=sp.vstack([program.A, rows], format="csr"),
                   row_lower=np.concatenate([program.row_lower, [-INF, -INF]]),
                   row_upper=np.concatenate([program.row_upper, [INF, INF]]),
                   row_names=[*program.row_names, "frontier_metric_a_min",
                              "frontier_metric_b_min"], maximize=True)
    s = rnd.settings
    return (_Problem(base, cols, a, a_total, b, b_total, own, m, m + 1, s.mip_gap,
                     s.time_limit_s), index, notes)


# --- solving -----------------------------------------------------------------------------------
class _Solver:
    """One HiGHS instance over the frontier program: objective and level rows change in place,
    so an LP re-solve starts from the last basis (warm start)."""

    def __init__(self, problem: _Problem, threads: int | None = None) -> None:
        self.problem = problem
        self.h = new_highs()
        for key, value in SOLVER_OPTIONS.items():
            self.h.setOptionValue(key, value)
        self.h.setOptionValue("time_limit", float(problem.time_limit))
        self.h.setOptionValue("mip_rel_gap", float(problem.mip_gap))
        self.h.setOptionValue("threads", process_threads(threads))
        problem.program.to_highs(self.h)
        self.n = problem.program.shape[1]
        self.cost: np.ndarray | None = problem.program.c  # the objective HiGHS holds now

    def maximise(self, c: np.ndarray, holds: dict[int, float]) -> np.ndarray:
        """max c'x with row i >= holds[i] (the other frontier row free); x, or an error."""
        h, p = self.h, self.problem
        if self.cost is not c:  # a new objective: the basis stays, optimality is lost
            h.changeColsCost(self.n, np.arange(self.n, dtype=np.int32), c.astype(float))
            self.cost = c
        for row in (p.a_row, p.b_row):
            level = holds.get(row)
            lower = -INF if level is None else level - HOLD_RTOL * max(1.0, abs(level))
            h.changeRowBounds(row, lower, INF)
        h.run()
        status = h.getModelStatus()
        M = highspy.HighsModelStatus
        if status == M.kInfeasible:
            raise InfeasibleRoundError("infeasible: no allocation satisfies every rule, budget "
                                       "and capacity together (run `allocator check`)")
        if status != M.kOptimal:
            raise SolverStoppedError(f"the frontier solve ended {h.modelStatusToString(status)}")
        return np.asarray(h.getSolution().col_value, dtype=float)


def _point(for_b: _Solver, for_a: _Solver, level: float) -> np.ndarray:
    """max B subject to A >= level; then, B held at that best, the most A (so no point is
    dominated by another allocation with the same B and more A). Each objective keeps its own
    HiGHS instance: from one level to the next only a row bound changes, and the dual simplex
    goes on from the last basis (alternating objectives in one instance was slower than cold
    solves)."""
    p = for_b.problem
    x = for_b.maximise(p.b, {p.a_row: level})
    return for_a.maximise(p.a, {p.a_row: level, p.b_row: float(p.b @ x)})


def _solve_point(shared: tuple[_Problem, int | None], level: float) -> np.ndarray:
    """One point, solved from scratch (for a process pool or Dask)."""
    problem, _ = shared
    solver = _Solver(problem)
    return _point(solver, solver, level)


def _own_value(problem: _Problem, rnd: Round, index: AllocationIndex, x: np.ndarray) -> float:
    """The round's own objective at x: lambda and mu are only bounded from below at a point
    that does not maximise it, so the robust protection is evaluated in closed form."""
    robust = problem.cols.robust
    if not len(robust):
        return float(problem.own @ x)
    from allocator.robust import robust_value, trainees_per_program

    nominal = problem.own.copy()
    nominal[robust] = 0.0
    value = robust_value(rnd, trainees_per_program(rnd, index, x[problem.cols.x]))
    return float(nominal @ x) - value.protection


def trace_frontier(rnd: Round, a_name: str, b_name: str, *, points: int = DEFAULT_POINTS,
                   workers: int | None = None, scheduler: str | None = None,
                   progress: bool = False) -> FrontierResult:
    """The best B for each of `points` levels of A, from A's lowest useful level to its best."""
    if points < 2:
        raise FrontierSpecError(f"--points must be at least 2, got {points}")
    tick = time.perf_counter()
    problem, index, notes = _problem(rnd, a_name, b_name)
    for_b, for_a = _Solver(problem), _Solver(problem)
    a, b = problem.a, problem.b
    b_best = float(b @ for_b.maximise(b, {}))
    a_tot = problem.a_total
    a_best = float(a_tot @ for_a.maximise(a, {}))
    a_low = float(a_tot @ for_a.maximise(a, {problem.b_row: b_best}))
    compete = a_best - a_low > 1e-9 * max(1.0, abs(a_best))
    levels = np.linspace(a_low, a_best, points) if compete else np.array([a_best])
    if not compete:
        notes.append(f"{a_name} and {b_name} do not compete in this round: B's best also gives "
                     "A's best, so the frontier is one point")
    if (workers is not None and workers > 1) or scheduler:
        from allocator.pool import run_tasks

        xs = run_tasks(_solve_point, list(levels), shared=(problem, None), workers=workers,
                       scheduler=scheduler, progress=progress, label="frontier points")
        where = f"dask {scheduler}" if scheduler else f"local pool of {workers} processes"
    else:
        xs = [_point(for_b, for_a, float(level)) for level in levels]
        where = "this process (each point warm-started from the last)"
    n_x = len(problem.cols.x)
    out = []
    for i, (level, xi) in enumerate(zip(levels, xs, strict=True), start=1):
        amounts = xi[problem.cols.x] if n_x else np.zeros(0)
        out.append(FrontierPoint(i, float(level), float(a_tot @ xi), float(problem.b_total @ xi),
                                 _own_value(problem, rnd, index, xi), "optimal", amounts))
    return FrontierResult(rnd, a_name, b_name, out, index, where, time.perf_counter() - tick, notes)


# --- tables and workbook -----------------------------------------------------------------------
def frontier_tables(result: FrontierResult) -> dict[str, pd.DataFrame]:
    """Frontier (one row per point), Allocations (each point's money per program), Summary."""
    a, b = result.a, result.b
    rows = []
    prev = None
    for p in result.points:
        step_a = p.a - prev.a if prev else None
        given_up = (prev.b - p.b) + 0.0 if prev else None  # + 0.0: no "-0" in the sheet
        rows.append({"point": p.point, a: p.a, b: p.b, "objective": p.objective,
                     f"{a}_level": p.level, f"{a}_gained": step_a, f"{b}_given_up": given_up,
                     f"{b}_given_up_per_{a}": given_up / step_a
                     if step_a is not None and given_up is not None and step_a > 1e-9 else None})
        prev = p
    frontier = pd.DataFrame(rows)
    rnd, idx = result.round, result.index
    cost = np.array([q.round_cost_per_trainee for q in rnd.programs], dtype=float)
    alloc = []
    for p in result.points:
        money = np.zeros(len(rnd.programs))
        if len(idx):
            np.add.at(money, idx.p, p.amounts)
        for i, prog in enumerate(rnd.programs):
            if money[i] > 1e-6:
                alloc.append({"point": p.point, "program_id": prog.program_id,
                              "amount": round(float(money[i]), 2),
                              "trainees": round(float(money[i] / cost[i]), 4)})
    allocations = pd.DataFrame(alloc, columns=["point", "program_id", "amount", "trainees"])
    summary = pd.DataFrame([
        ("round", rnd.settings.round_id), ("A (held at each level)", a), ("B (maximised)", b),
        ("points", len(result.points)),
        ("method", "epsilon-constraint: max B subject to A >= level, levels evenly spaced from "
                   "A at B's best to A's best"),
        ("metric total", "sum over programs of trainees (all periods) x the metric per trainee"),
        ("objective", "the round's own objective (Objective weights; less soft-rule penalties "
                      "and, with robust_gamma > 0, the robust protection)"),
        ("amounts", "the solver's, before rounding to whole units"),
        ("ran on", result.where), ("seconds", round(result.seconds, 2)),
        *[("note", n) for n in result.notes],
    ], columns=["key", "value"])
    return {"Frontier": frontier, "Allocations": allocations, "Summary": summary}


def write_frontier(result: FrontierResult, path: str | Path) -> Path:
    """The frontier workbook: Frontier (with a scatter chart), Allocations, Summary; atomic."""
    from openpyxl import Workbook
    from openpyxl.chart import Reference, ScatterChart, Series

    from allocator.atomic import atomic_path
    from allocator.excel import money_format, write_frame

    tables = frontier_tables(result)
    wb = Workbook()
    wb.remove(wb.active)
    ws = write_frame(wb, "Frontier", tables["Frontier"], number_format="#,##0.0000",
                     money_columns=[c for c in tables["Frontier"].columns if c != "point"])
    n = len(tables["Frontier"])
    chart = ScatterChart()
    chart.title = f"Best {result.b} for each level of {result.a}"
    chart.style = 13
    chart.x_axis.title = result.a
    chart.y_axis.title = result.b
    chart.x_axis.delete = chart.y_axis.delete = False  # recent Excel hides axes left unset
    xs = Reference(ws, min_col=2, min_row=2, max_row=n + 1)
    ys = Reference(ws, min_col=3, min_row=1, max_row=n + 1)
    series = Series(ys, xs, title_from_data=True)
    series.marker.symbol = "circle"
    chart.series.append(series)
    ws.add_chart(chart, f"A{n + 4}")
    write_frame(wb, "Allocations", tables["Allocations"], money_columns={"amount"},
                number_format=money_format(result.round))
    write_frame(wb, "Summary", tables["Summary"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return path


def default_frontier_path(rnd: Round, a: str, b: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in f"{a}-{b}")
    return Path("reports") / f"{rnd.settings.round_id}.frontier.{safe}.xlsx"


__all__ = ["FrontierResult", "FrontierSpecError", "default_frontier_path", "frontier_tables",
           "metric_values", "trace_frontier", "write_frontier"]
