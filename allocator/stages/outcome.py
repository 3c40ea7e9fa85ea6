"""Stage 1, the outcome: the best outcome value the rules allow.

max sum_k v_k x_k subject to every budget, capacity, minimum, cap and hard rule (DESIGN.md
"The model"): a MILP when all-or-nothing programs exist, solved by branch and bound; above the
plan's size for that, its LP relaxation, whose on/off decisions the prices stage rounds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from allocator.progress import phase
from allocator.solve import MatrixProgram, StageResult, Status, raise_for_status, solve_program
from allocator.stages.model import BuiltModel


def solve_outcome(model: BuiltModel, *, threads: int | None) -> StageResult:
    """The outcome stage's result; InfeasibleRoundError when no allocation keeps every rule
    (a stop before any allocation is the prices stage's to handle)."""
    program, plan = model.program, model.plan
    # In words: how many amounts are decided, and against how many limits.
    phase(f"finding the best outcome ({program.shape[1]:,} amounts to decide, "
          f"{program.shape[0]:,} limits)")
    first = solve_program(relaxed(program) if plan.relaxation_first else program, "outcome",
                          time_limit=plan.time_limit_s, mip_gap=model.round.settings.mip_gap,
                          threads=threads, plan=plan)
    if not stopped_before_any_allocation(first, program):
        raise_for_status(first)  # an infeasible relaxation is an infeasible round
    return first


def relaxed(program: MatrixProgram) -> MatrixProgram:
    """The same program with every integer column continuous within its bounds."""
    return dataclasses.replace(program, integer=np.zeros_like(program.integer))


def stopped_before_any_allocation(stage: StageResult, program: MatrixProgram) -> bool:
    """Whether the outcome stage of a MILP hit its time limit without an allocation (the root
    LP of a large round can outlast a limit of minutes)."""
    return stage.status == Status.no_solution and bool(program.integer.any()) \
        and stage.solver_log.get("model_status") == "Time limit reached"
