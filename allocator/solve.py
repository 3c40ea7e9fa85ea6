"""HiGHS for every stage: the matrix a stage is (`MatrixProgram`), and one way to solve it.

`solve_program` hands a `MatrixProgram` to highspy with the round's plan's options, checks the
run and model status before reading any value (HiGHS returns zeros after an error), and
returns a typed `StageResult`: status, objective, x, row and column duals, the basis where
there is one. The stages that build these programs are `allocator.stages`; which HiGHS method,
crossover and presolve each uses is the round's `allocator.plan.SolvePlan`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp

from allocator.beside import run_beside
from allocator.bound import dual_bound, relative_violation
from allocator.errors import InfeasibleRoundError, SolverStoppedError
from allocator.measures import is_rule_family
from allocator.partials import PartialSums, partial_sums
from allocator.plan import PRIMAL_SIMPLEX_OPTIONS, Finish, SolvePlan, stage_options
from allocator.progress import detail_reporter

INF = highspy.kHighsInf
# Options that change the answer are fixed, recorded and replayed by `verify`.
SOLVER_OPTIONS: dict[str, object] = {
    "random_seed": 0,
    "presolve": "on",
    "primal_feasibility_tolerance": 1e-7,
    "dual_feasibility_tolerance": 1e-7,
}
class Status(StrEnum):
    optimal = "optimal"
    time_limit = "time_limit_feasible"  # stopped with a feasible, not proven optimal, solution
    not_proven = "feasible_not_proven"  # rounded from the LP relaxation, gap above mip_gap
    infeasible = "infeasible"
    unbounded = "unbounded"
    no_solution = "no_solution"
    # Solved, but no rounding to whole units keeps every hard row (a rule, budget or cap):
    # the run says which row and by how much, writes its report and record marked so.
    rounding_infeasible = "rounding_infeasible"


@dataclass
class MatrixProgram:
    """max/min c'x s.t. row_lower <= A x <= row_upper, col_lower <= x <= col_upper."""

    c: np.ndarray
    A: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray  # bool per column
    row_names: list[str]
    col_names: list[str]
    maximize: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        return self.A.shape

    def to_highs(self, h: highspy.Highs) -> None:
        lp = highspy.HighsLp()
        n_rows, n_cols = self.A.shape
        lp.num_col_, lp.num_row_ = n_cols, n_rows
        lp.col_cost_ = self.c.astype(float)
        lp.col_lower_ = self.col_lower.astype(float)
        lp.col_upper_ = self.col_upper.astype(float)
        lp.row_lower_ = self.row_lower.astype(float)
        lp.row_upper_ = self.row_upper.astype(float)
        csc = self.A.tocsc()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
        lp.a_matrix_.index_ = csc.indices.astype(np.int32)
        lp.a_matrix_.value_ = csc.data.astype(float)
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n_cols, n_rows
        lp.sense_ = highspy.ObjSense.kMaximize if self.maximize else highspy.ObjSense.kMinimize
        lp.col_names_ = self.col_names
        lp.row_names_ = self.row_names
        if self.integer.any():
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else
                               highspy.HighsVarType.kContinuous for i in self.integer]
        status = h.passModel(lp)
        _check_call(status, "passing the model to HiGHS")


def write_mps(program: MatrixProgram, path: Path) -> None:
    """`program` as an MPS file (what a decision record holds of each stage)."""
    h = new_highs()
    program.to_highs(h)
    _check_call(h.writeModel(str(path)), f"writing {path.name}")


def _check_call(status, what: str) -> None:
    if status == highspy.HighsStatus.kError:
        raise SolverStoppedError(f"HiGHS reported an error while {what}")


@dataclass
class StageResult:
    """What one solved stage produced."""

    name: str
    program: MatrixProgram
    status: Status
    objective: float | None
    x: np.ndarray | None
    row_dual: np.ndarray | None
    col_dual: np.ndarray | None
    mip_gap: float | None
    seconds: float
    solver_log: dict[str, object] = field(default_factory=dict)
    # The optimal simplex basis of an LP outcome stage (column and row status codes), kept for
    # the report's sensitivity ranges; None for a MILP or an interior point without crossover.
    basis: tuple[np.ndarray, np.ndarray] | None = None
    # What HiGHS solved when it differs from `program`: the same program with shared partial
    # sums as columns (allocator.partials); x, duals and basis above are `program`'s.
    solved_program: MatrixProgram | None = None
    # The MPS file of `as_solved`, already written beside the solve (allocator.beside), for
    # the record to move into place instead of writing it again; None when not spooled.
    mps_file: Path | None = None

    @property
    def as_solved(self) -> MatrixProgram:
        """The program HiGHS was given: what the record's MPS file of this stage holds."""
        return self.solved_program if self.solved_program is not None else self.program


@dataclass
class Columns:
    """Which column of the matrix is which model variable."""

    x: np.ndarray  # column of each x[k]
    y: np.ndarray  # column of each y[j]
    s: np.ndarray  # column of each soft-rule slack
    t: np.ndarray  # column of each reference total
    # columns of the robust objective's dual (lambda, then mu per program); empty when nominal
    robust: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class RowRef:
    """Which constraint a matrix row came from."""

    component: str
    index: tuple
    name: str

    @property
    def is_rule(self) -> bool:
        """Whether the row is a rule's (its label, the first index, starts with the rule id)."""
        return is_rule_family(self.component) and bool(self.index)


def row_name(ref: RowRef) -> str:
    """A model row as a person names it: `rule R-INC (group A)`, `budget JIF 2027`, ..."""
    idx = [str(i) for i in ref.index]
    if ref.is_rule:
        rule_id, *rest = idx[0].split(",")
        return f"rule {rule_id}" + (f" (group {', '.join(rest)})" if rest else "")
    names = {
        "spend_fund_period_max": "budget {0} {1}",
        "spend_fund_cumulative_max": "budget of {0} up to {1} (with carry-over)",
        "trainees_program_period_max": "capacity of {0} in {1}",
        "trainees_program_period_min": "all-or-nothing minimum of {0} in {1}",
        "cofinancing_fund_program_period_max": "co-financing cap of {0} on {1} in {2}",
    }
    pattern = names.get(ref.component)
    if pattern is not None and len(idx) >= pattern.count("{"):
        return pattern.format(*idx)
    return ref.name or f"{ref.component}[{', '.join(idx)}]"


_BANNER_SHOWN = False
_THREADS: int | None = None  # the thread count this process's first solve used
# HiGHS threads per solve unless a caller asks otherwise. The answers depend on the count
# (measured 2026-12-05: the benchmark's 100-program round rounds to another allocation with 2
# threads than with 1, the same LP optimum), so every machine, process and pool worker solves
# with the same one: the same allocation everywhere. One, since HiGHS gains little from more
# here (10,000-program MILP: 43.6 s with 1 thread, 41.5-43.3 s with HiGHS's choice of 2).
ENGINE_THREADS = 1


def new_highs() -> highspy.Highs:
    """A silent HiGHS instance (its one-time banner would corrupt the CLI's output)."""
    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    if _THREADS is not None:
        # HiGHS keeps its thread pool per calling thread: a solve on this thread after the
        # first ones ran on another (allocator.beside) would start a pool of HiGHS's default
        # size, and the engine's next solve, asking for _THREADS, would then fail.
        h.setOptionValue("threads", _THREADS)
    return h


def process_threads(threads: int | None = None) -> int:
    """The HiGHS thread count of every solve in this process: the first solve's (`threads`,
    else ENGINE_THREADS). HiGHS fixes its thread pool at a process's first solve and fails a
    later solve that asks for another count, so a later different ask is ignored."""
    global _THREADS
    if _THREADS is None:
        _THREADS = int(threads) if threads is not None else ENGINE_THREADS
    return _THREADS


def solve_program(program: MatrixProgram, name: str, *, time_limit: float, mip_gap: float,
                  method: str = "choose", threads: int | None = None,
                  options: dict[str, object] | None = None,
                  plan: SolvePlan | None = None, start: Start | None = None,
                  keep_basis: bool = False, recorded: bool = True,
                  finish: Finish = "solver") -> StageResult:
    """Solve one stage with HiGHS; the run and model status are checked before any value.

    How (HiGHS method, crossover, presolve) comes from the round's `plan` when given (then
    `method` is not read), else from this program's own size (`allocator.plan.stage_options`).
    `start` hands HiGHS a known point or basis to begin from; the stage records where it came
    from. `keep_basis` keeps an optimal LP's basis whatever the stage (`BASIS_STAGES` always
    do), for a later solve of a changed program to start from (`allocator.warm`).
    `recorded`: whether the decision record holds this solve's MPS file (so that, within
    `allocator.beside.working_beside`, it is spooled beside the solve). `finish`: how an LP
    solved by interior point with crossover reaches its vertex (`allocator.plan.Finish`).
    """
    if program.shape[1] == 0:  # nothing is eligible: the empty allocation is optimal
        empty = np.zeros(0)
        return StageResult(name, program, Status.optimal, 0.0, empty, np.zeros(program.shape[0]),
                           empty, 0.0 if program.integer.any() else None, 0.0,
                           {"model_status": "Empty"})
    h = new_highs()
    for key, value in SOLVER_OPTIONS.items():
        h.setOptionValue(key, value)
    lp = not program.integer.any()
    how = plan.options(lp, options) if plan is not None else \
        stage_options(program.shape[1], lp, method, options)
    chosen = str(how["solver"])
    from_interior = finish == "crossover_from_interior" and lp and start is None \
        and chosen == "ipm" and how.get("run_crossover") == "on"
    if from_interior:
        how = {**how, "run_crossover": "off"}  # the vertex comes after: _vertex_from_interior
    # What a stage was solved with beyond SOLVER_OPTIONS; the record keeps it per stage, so an
    # auditor (or the benchmark's bare solve) can replay each MPS file exactly.
    used: dict[str, object] = {"time_limit": float(time_limit), "mip_rel_gap": float(mip_gap),
                               "threads": process_threads(threads), **how}
    for key, value in used.items():
        h.setOptionValue(key, value)
    lean = partial_sums(program) if plan is not None and plan.partial_sums and lp else None
    solved = lean.program if lean is not None else program
    solved.to_highs(h)
    if start is not None:
        start.hand_to(h, solved, lean)
    result = _run(h, name, solved, program, keep_basis, recorded)
    if from_interior:
        vertex = _vertex_from_interior(h, name, solved, program, keep_basis, result)
        if vertex is None:  # IPX's own crossover, from scratch: slower, but it ends at one
            return solve_program(program, name, time_limit=time_limit, mip_gap=mip_gap,
                                 method=method, threads=threads, options=options, plan=plan,
                                 keep_basis=keep_basis, recorded=recorded)
        result = vertex
    if lean is not None:
        result = _in_original_terms(result, program, lean)
    result.solver_log["method"] = chosen
    result.solver_log["options"] = used
    if start is not None:
        result.solver_log["start"] = start.source
    return result


def _vertex_from_interior(h: highspy.Highs, name: str, solved: MatrixProgram,
                          original: MatrixProgram, keep_basis: bool,
                          interior: StageResult) -> StageResult | None:
    """The optimal vertex reached from an interior-point optimum (`interior`, solved without
    crossover): IPX's crossover on the whole LP from that primal-dual point, then primal
    simplex from the basis it ends with. None when that does not end optimal at a vertex;
    `interior` itself when it is not optimal (a stopped stage is not solved again).

    Why not HiGHS's own crossover: with crossover on, HiGHS's presolve keeps only reductions
    a basis can be mapped back through, and the interior point solve of the larger LP costs
    more than the crossover. The 10,000-program tie-break LP: presolved to 33,300 x 47,821
    with crossover on (13.3 s), 10,659 x 44,038 without (3.8 s); crossover from that point
    0.8 s, then 77 primal simplex steps 0.4 s, to the same optimum (objective equal, values
    within 1.4e-7).
    """
    if interior.status != Status.optimal:
        return interior
    tick = time.perf_counter()
    if h.crossover(h.getSolution()) == highspy.HighsStatus.kError:
        return None
    crossed = time.perf_counter() - tick
    for key, value in PRIMAL_SIMPLEX_OPTIONS.items():  # the crossover's basis is primal feasible
        h.setOptionValue(key, value)
    vertex = _run(h, name, solved, original, keep_basis, recorded=False, follow=False)
    if vertex.status != Status.optimal or not vertex.solver_log.get("basis"):
        return None
    vertex.seconds += interior.seconds + crossed
    vertex.mps_file = interior.mps_file
    vertex.solver_log["ipm_iterations"] = interior.solver_log.get("ipm_iterations")
    vertex.solver_log["finish"] = "crossover_from_interior"
    return vertex


def _in_original_terms(result: StageResult, program: MatrixProgram,
                       lean: PartialSums) -> StageResult:
    """A stage solved with partial sums, read as the original program's: the added rows and
    columns come last and are dropped (see allocator.partials for why duals carry over)."""
    n, m = lean.n_original, lean.m_original
    result.solved_program, result.program = result.program, program
    result.solver_log["partial_sums"] = int(lean.G.shape[0])
    if result.x is not None:
        result.x = result.x[:n]
    if result.row_dual is not None and result.col_dual is not None:
        result.row_dual, result.col_dual = result.row_dual[:m], result.col_dual[:n]
    if result.basis is not None:
        cols, rows = result.basis
        # Original basis: valid when every partial sum is basic (then its defining rows, being
        # equations, are not), which is how a free column's optimum ends in practice.
        ok = bool(np.all(cols[n:] == int(highspy.HighsBasisStatus.kBasic)))
        result.basis = (cols[:n], rows[:m]) if ok else None
    return result


@dataclass
class Start:
    """Where a stage begins: a known point of the program (`x`) and/or a simplex basis (column
    and row status codes, as `StageResult.basis` holds them), and the stage it came from."""

    source: str  # the stage whose answer it is, recorded with the stage
    x: np.ndarray | None = None
    basis: tuple[np.ndarray, np.ndarray] | None = None

    def hand_to(self, h: highspy.Highs, program: MatrixProgram,
                lean: PartialSums | None = None) -> None:
        """Give HiGHS the point (clipped into the column bounds, with its row activities) and
        the basis, both extended to the partial sums when `lean`; HiGHS checks both and
        ignores what does not fit the program."""
        if self.x is not None:
            x = self.x if lean is None else lean.extend(self.x)
            x = np.clip(x, program.col_lower, program.col_upper)
            sol = highspy.HighsSolution()
            sol.col_value = x.tolist()
            sol.row_value = (program.A @ x).tolist()
            sol.value_valid = True
            sol.dual_valid = False
            _check_call(h.setSolution(sol), "handing HiGHS the known solution")
        if self.basis is not None:
            cols, rows = self.basis
            if lean is not None:  # each partial sum basic, its defining equation at its bound
                k = lean.G.shape[0]
                cols = np.append(cols, np.full(k, int(highspy.HighsBasisStatus.kBasic)))
                rows = np.append(rows, np.full(k, int(highspy.HighsBasisStatus.kLower)))
            basis = highspy.HighsBasis()
            basis.col_status = [highspy.HighsBasisStatus(int(v)) for v in cols]
            basis.row_status = [highspy.HighsBasisStatus(int(v)) for v in rows]
            basis.valid = True
            _check_call(h.setBasis(basis), "handing HiGHS the known basis")


# Stages whose simplex basis is kept (the prices LP is one of them; see stages/prices.py).
BASIS_STAGES = ("outcome", "outcome_lp")


def _run(h: highspy.Highs, name: str, program: MatrixProgram,
         original: MatrixProgram | None = None, keep_basis: bool = False,
         recorded: bool = True, follow: bool = True) -> StageResult:
    """Run HiGHS on `program` (what it was given) and read the result; a stopped LP's point is
    judged against `original` (the program without partial sums, when they were added).
    `follow`: show the solver's progress (not again when `h` is already followed)."""
    report = detail_reporter()
    if report is not None and follow:
        _follow_solver(h, report, bool(program.integer.any()), name)
    run_status, seconds, spooled = run_beside(
        h, name, (lambda path: write_mps(program, path)) if recorded else None)
    model_status = h.getModelStatus()
    info = h.getInfo()
    status = _status(run_status, model_status, info)
    result = StageResult(name, program, status, None, None, None, None, None, seconds,
                         {"model_status": h.modelStatusToString(model_status),
                          "basis": bool(info.basis_validity),
                          "simplex_iterations": info.simplex_iteration_count,
                          "ipm_iterations": info.ipm_iteration_count,
                          "mip_nodes": info.mip_node_count,
                          "dual_infeasibilities": info.num_dual_infeasibilities},
                         mps_file=spooled)
    if status in (Status.no_solution, Status.time_limit) and not program.integer.any():
        status = result.status = _stopped_lp(h, original or program, result)
    if status in (Status.optimal, Status.time_limit):
        sol = h.getSolution()
        result.objective = float(info.objective_function_value)
        result.x = np.asarray(sol.col_value, dtype=float)
        if sol.dual_valid:
            result.row_dual = np.asarray(sol.row_dual, dtype=float)
            result.col_dual = np.asarray(sol.col_dual, dtype=float)
        if program.integer.any():
            result.mip_gap = float(info.mip_gap)
        elif (keep_basis or name in BASIS_STAGES) and status == Status.optimal \
                and info.basis_validity:
            basis = h.getBasis()
            result.basis = (np.array([int(v) for v in basis.col_status], dtype=np.int8),
                            np.array([int(v) for v in basis.row_status], dtype=np.int8))
    if program.integer.any():
        result.solver_log["mip_dual_bound"] = float(info.mip_dual_bound)
    return result


# A stopped LP's point counts as an allocation when no row or column bound is broken by more
# than this share of the row's magnitude (IPX's iterates sit near 1e-13 once feasible).
STOPPED_POINT_RTOL = 1e-9


def _stopped_lp(h: highspy.Highs, program: MatrixProgram, result: StageResult) -> Status:
    """Time limited, when an LP stopped at its limit holds a feasible point (rechecked here,
    not taken from HiGHS); then its row prices bound the optimum, and the gap is recorded.

    `program` may be the original of what HiGHS solved (which then has partial sums after
    its own rows and columns): the point and the prices are read on the original's, whose
    columns are all bounded (a free partial sum would make every bound infinite)."""
    stopped = (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit)
    sol = h.getSolution()
    if h.getModelStatus() not in stopped or not sol.value_valid:
        return Status.no_solution
    m, n = program.shape
    x = np.asarray(sol.col_value, dtype=float)[:n]
    violation = relative_violation(program, x)
    result.solver_log["stopped_point_violation"] = violation
    if not violation <= STOPPED_POINT_RTOL:
        return Status.no_solution
    value = float(program.c @ x)
    bound = dual_bound(program, np.asarray(sol.row_dual, dtype=float)[:m]) if sol.dual_valid \
        else (np.inf if program.maximize else -np.inf)
    result.solver_log["lp_bound"] = bound
    result.mip_gap = relative_gap(bound, value) if program.maximize else \
        relative_gap(-bound, -value)
    return Status.time_limit


def relative_gap(bound: float, value: float) -> float:
    """How far an allocation's value lies below an upper bound, as a share of the value."""
    return max(0.0, bound - value) / max(abs(value), 1e-9)


SOLVER_PROGRESS_EVERY_S = 1.0
# A line of HiGHS's simplex or interior point log that reports a step: the step count, then a
# number ("  12073   2.0242161562e+06 Pr: 0(0); ..."; IPX: " 12   -1.1e+07 ...").
_STEP_LINE = re.compile(r"^\s*(\d+)\*?\s+[-+]?\d")


def logged_steps(line: str) -> int | None:
    """The step count a line of HiGHS's LP log reports, or None for any other line."""
    found = _STEP_LINE.match(line)
    return int(found.group(1)) if found else None


def _follow_solver(h: highspy.Highs, report: Callable[[str], None], mip: bool,
                   name: str = "") -> None:
    """Send the solver's progress to `report` in words, at most once a second, so a person
    watching a long solve sees it move. Only the best outcome's search says how far it may be
    from the best possible; the inner searches (rounding, equity, tie-break) show steps only.

    An LP is followed through HiGHS's log lines (a few per second at most), not its simplex
    interrupt callback: that one fires on every iteration and needs the GIL each time, so while
    this thread works beside the solve (`allocator.beside`) each call waits for it. Measured
    on the 10,000-program prices LP (12,073 iterations): 4.0-4.8 s alone, 6.5-7.0 s with the
    callback while Python ran beside it for 3 s, 4.4-4.7 s without the callback.
    """
    last = [0.0]

    def due() -> bool:
        now = time.perf_counter()
        if now - last[0] < SOLVER_PROGRESS_EVERY_S:
            return False
        last[0] = now
        return True

    def show(event: Any) -> None:
        if not due():
            return
        out = event.data_out
        if name == "outcome":
            if np.isfinite(out.mip_primal_bound) and np.isfinite(out.mip_gap):
                report(f"an allocation found, at most {out.mip_gap:.1%} below the best possible; "
                       f"{out.mip_node_count:,} options tried")
            else:
                report(f"no allocation yet; {out.mip_node_count:,} options tried")
        else:
            report(f"{out.mip_node_count:,} options tried")

    def show_logged(event: Any) -> None:
        steps = logged_steps(event.message)
        if steps is not None and due():
            report(f"{steps:,} steps")

    if mip:  # called a few times per solve (twice for a 1,000-program round's MILP)
        h.cbMipInterrupt.subscribe(show)
    else:
        h.setOptionValue("output_flag", True)
        h.setOptionValue("log_to_console", False)
        h.cbLogging.subscribe(show_logged)


def _status(run_status, model_status, info) -> Status:
    M = highspy.HighsModelStatus
    if model_status == M.kOptimal:
        return Status.optimal
    if model_status == M.kInfeasible:
        return Status.infeasible
    if model_status in (M.kUnbounded, M.kUnboundedOrInfeasible):
        return Status.unbounded if model_status == M.kUnbounded else Status.infeasible
    has_solution = info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
    if model_status in (M.kTimeLimit, M.kIterationLimit, M.kInterrupt, M.kSolutionLimit) \
            and has_solution and run_status != highspy.HighsStatus.kError:
        return Status.time_limit
    return Status.no_solution


def is_interior(result: StageResult) -> bool:
    """Whether the stage ended at an interior-point solution without crossover (no vertex)."""
    options = result.solver_log.get("options")
    return isinstance(options, dict) and options.get("solver") == "ipm" \
        and options.get("run_crossover") == "off"


def raise_for_status(result: StageResult) -> None:
    """Turn a stage without a usable solution into the error the CLI maps to an exit code."""
    if result.status == Status.infeasible:
        raise InfeasibleRoundError(
            "infeasible: no allocation satisfies every rule, budget and capacity together"
        )
    if result.status == Status.unbounded:
        raise SolverStoppedError("the model is unbounded; this is a bug in allocator")
    if result.status == Status.no_solution:
        model_status = str(result.solver_log.get("model_status"))
        raise SolverStoppedError(f"the solver stopped without a solution ({model_status}); "
                                 f"{STOPPED_ADVICE.get(model_status, STOPPED_ADVICE_OTHER)}")


# What a person can do about a stage that ended without an allocation, by HiGHS model status.
# "Unknown" after interior point is IPX making no more progress, or ending imprecise, short of
# the tolerances: more time does not help (200,000 programs: 140 minutes, then this).
STOPPED_ADVICE: dict[str, str] = {
    "Time limit reached": "raise time_limit_s on the Round sheet",
    "Unknown": "its interior point method could not reach the required accuracy; more time "
               "will not help, a smaller round (fewer programs, regions or periods) may",
}
STOPPED_ADVICE_OTHER = "please report this with the round's workbook"
