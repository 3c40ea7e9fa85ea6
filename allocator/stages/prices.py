"""Stage 2, the prices: the outcome LP with the on/off decisions fixed, for its duals.

A MILP has no row prices; the LP with every all-or-nothing decision fixed at the outcome
stage's value has the same optimum and prices every budget and rule (DESIGN.md "Explaining
the allocation"). When the outcome stage was the LP relaxation (the plan's
`relaxation_first`), its decisions are rounded here, and the rounded allocation becomes stage
1's answer with the relaxation's bound as its proof; after a stop without any allocation,
every all-or-nothing program is switched off. An LP round is its own prices stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from allocator.errors import SolverStoppedError
from allocator.progress import phase
from allocator.solve import (
    MatrixProgram,
    StageResult,
    Start,
    Status,
    raise_for_status,
    relative_gap,
    solve_program,
)
from allocator.stages.model import BuiltModel
from allocator.stages.outcome import stopped_before_any_allocation


@dataclass
class Prices:
    """The LP whose duals price rules and budgets, and the program it solved."""

    result: StageResult  # the outcome stage itself for an LP round
    program: MatrixProgram  # stage 1 with the on/off decisions fixed (stage 1 for an LP round)
    switches: dict[tuple[str, str], float]  # (program, period) -> its on/off decision, 0 or 1
    stages: list[StageResult] = field(default_factory=list)  # the LPs solved here, in order
    warnings: list[str] = field(default_factory=list)


def solve_prices(model: BuiltModel, first: StageResult, *, threads: int | None) -> Prices:
    """The prices LP of a MILP round (the outcome stage itself for an LP round); for a
    relaxation or a stop, `first` becomes stage 1's rounded or switched-off answer (in place)."""
    program, plan = model.program, model.plan
    if not program.integer.any():
        return Prices(first, program, {})
    phase("pricing the budgets and rules")
    mip_gap = model.round.settings.mip_gap
    stopped = stopped_before_any_allocation(first, program)
    stages: list[StageResult] = []
    known = plan.prices_from == "outcome_optimum" and first.x is not None and not stopped
    start = Start("outcome", x=first.x) if known else None
    for switches in switch_candidates(program, first, stopped, plan.relaxation_first):
        fixed = fix_integers(program, switches)
        prices = solve_program(fixed, "outcome_lp", time_limit=plan.follow_up_time_limit_s,
                               mip_gap=mip_gap, threads=threads, plan=plan,
                               options=plan.prices_extra() if known else None, start=start)
        stages.append(prices)
        if prices.status == Status.optimal:
            break
    warnings = []
    if stopped:
        adopt_fallback(first, prices)
        warnings.append(FALLBACK_WARNING)
    elif plan.relaxation_first:
        adopt_rounding(first, prices, mip_gap)
        if first.status != Status.optimal:
            warnings.append(rounding_warning(first))
    raise_for_status(prices)
    y = model.columns.y
    on_off = {key: round(float(prices.x[y[j]])) for j, key in enumerate(model.binaries)}
    return Prices(prices, fixed, on_off, stages, warnings)


def fix_integers(program: MatrixProgram, x: np.ndarray) -> MatrixProgram:
    """The same program with every integer column fixed at its (rounded) solution value."""
    lower, upper = program.col_lower.copy(), program.col_upper.copy()
    ints = np.flatnonzero(program.integer)
    values = np.round(x[ints])
    lower[ints] = values
    upper[ints] = values
    return dataclasses.replace(program, col_lower=lower, col_upper=upper,
                               integer=np.zeros_like(program.integer))


def switch_candidates(program: MatrixProgram, first: StageResult, stopped: bool,
                      relaxation_first: bool) -> list[np.ndarray]:
    """On/off decisions to fix for the prices LP, in order of preference: the MILP's own; for
    a relaxation (the plan's `relaxation_first`), rounded, then only those fully on, then all
    off; all off after a stop."""
    off = np.zeros(program.shape[1])
    if stopped:
        return [off]
    if not relaxation_first:
        return [first.x]
    ints = program.integer
    rounded, floored = off.copy(), off.copy()
    rounded[ints] = np.round(first.x[ints])
    floored[ints] = np.floor(first.x[ints] + 1e-6)
    out: list[np.ndarray] = []
    for candidate in (rounded, floored, off):
        if not any(np.array_equal(candidate[ints], seen[ints]) for seen in out):
            out.append(candidate)
    return out


def adopt_rounding(first: StageResult, prices: StageResult, mip_gap: float) -> None:
    """Make the rounded allocation stage 1's answer: optimal when the relaxation's bound
    proves it within `mip_gap` (HiGHS's own criterion), otherwise not proven, with its gap."""
    if prices.status != Status.optimal:
        raise SolverStoppedError(
            "the LP relaxation's on/off decisions, rounded, fully-on only or all off, each broke "
            "a rule; no allocation was found")
    # A relaxation stopped by its time limit bounds the optimum by its row prices, not by the
    # value of the point where it stopped.
    stopped = first.status == Status.time_limit
    bound = float(first.solver_log.get("lp_bound", np.inf)) if stopped else float(first.objective)
    first.x, first.objective = prices.x, prices.objective
    first.mip_gap = relative_gap(bound, float(prices.objective))
    if stopped:
        first.status = Status.time_limit
    else:
        first.status = Status.optimal if first.mip_gap <= mip_gap else Status.not_proven
    first.solver_log["relaxation_bound"] = bound


def rounding_warning(first: StageResult) -> str:
    """What a user is told when the rounded relaxation is not proven within mip_gap."""
    return (f"the on/off decisions were rounded from the LP relaxation (at this size HiGHS's "
            f"branch and bound does not finish): within {first.mip_gap:.4%} of the optimum, "
            "not proven optimal")


FALLBACK_WARNING = ("the time limit stopped the outcome MILP before HiGHS found any allocation; "
                    "this one has every all-or-nothing program switched off and the rest "
                    "optimised (raise time_limit_s on the Round sheet for a better one)")


def adopt_fallback(first: StageResult, prices: StageResult) -> None:
    """Make the switched-off allocation, once its LP is solved, stage 1's time-limited answer:
    it is a feasible MILP solution, and HiGHS's bound at the stop gives its gap."""
    if prices.status != Status.optimal:
        raise SolverStoppedError(
            "the solver stopped at the time limit before finding an allocation, and with every "
            f"all-or-nothing program switched off the LP ended {prices.status.value}; raise "
            "time_limit_s on the Round sheet")
    first.status, first.x, first.objective = Status.time_limit, prices.x, prices.objective
    bound = first.solver_log.get("mip_dual_bound")
    if isinstance(bound, float) and np.isfinite(bound):
        first.mip_gap = relative_gap(bound, float(prices.objective))
    first.solver_log["fallback"] = "all-or-nothing programs off, then the LP stage"
