"""The nominal stage of a robust round: what guarding against uncertainty costs.

With `robust_gamma` > 0 the outcome stage maximised the guaranteed value (Bertsimas-Sim
protection, `allocator.robust`). This stage solves the same round with the protection priced
at 0, the nominal optimum, so the report can say how much expected value the robust allocation
gives up (the price of robustness). It prices only: without its answer the allocation stands.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from allocator.progress import phase
from allocator.solve import Columns, MatrixProgram, StageResult, Status, solve_program
from allocator.stages.model import BuiltModel
from allocator.stages.outcome import relaxed
from allocator.stages.rounding import Rounded


@dataclass
class Nominal:
    """The nominal outcome stage and the robustness figures read against it."""

    stage: StageResult
    robustness: dict
    warnings: list[str] = field(default_factory=list)


def solve_nominal(model: BuiltModel, x: np.ndarray, rounded: Rounded, *,
                  threads: int | None) -> Nominal | None:
    """The nominal outcome stage of a robust round (None for a nominal round)."""
    cols, plan, rnd = model.columns, model.plan, model.round
    if not len(cols.robust):
        return None
    phase("solving: nominal outcome (for the price of robustness)")
    program = relaxed(model.program) if plan.relaxation_first else model.program
    nominal = solve_program(nominal_program(program, cols), "outcome_nominal",
                            time_limit=plan.time_limit_s, mip_gap=rnd.settings.mip_gap,
                            threads=threads, plan=plan)
    robustness = price_of_robustness(model, nominal, x,
                                     rounded.units * float(rnd.settings.rounding_unit))
    warnings = []
    if nominal.status != Status.optimal:
        warnings.append(f"the nominal outcome stage (for the price of robustness) ended "
                        f"{nominal.status.value}: the price of robustness is "
                        + ("against its best allocation found, not proven optimal"
                           if robustness["nominal_optimum"] is not None else "not known"))
    return Nominal(nominal, robustness, warnings)


def nominal_program(program: MatrixProgram, cols: Columns) -> MatrixProgram:
    """The robust program with the protection priced at 0: the nominal outcome stage (its
    protection rows always hold, lambda and mu being free to grow)."""
    c = program.c.copy()
    c[cols.robust] = 0.0
    return dataclasses.replace(program, c=c)


def price_of_robustness(model: BuiltModel, nominal: StageResult, robust_x: np.ndarray,
                        rounded_x: np.ndarray) -> dict:
    """Guaranteed and expected outcome value of the robust allocation, and what guarding
    against the uncertainty costs in expected value (nominal optimum - its nominal value)."""
    from allocator.robust import robust_value, trainees_per_program

    rnd, index, cols = model.round, model.index, model.columns
    c_nominal = nominal_program(model.program, cols).c
    nominal_of_robust = float(c_nominal @ robust_x)
    rounded = robust_value(rnd, trainees_per_program(rnd, index, rounded_x))
    chosen = robust_value(rnd, trainees_per_program(rnd, index, robust_x[cols.x]))
    # The nominal stage only prices the robustness: without its answer the allocation stands,
    # and the price is left blank (with a warning) rather than the run failing.
    found = nominal.x is not None and nominal.objective is not None
    best = robust_value(rnd, trainees_per_program(rnd, index, nominal.x[cols.x])) if found \
        else None
    return {
        "gamma": rnd.settings.robust_gamma,
        "level": rnd.settings.robust_level,
        "programs_with_spread": len(cols.robust) - 1,
        "nominal_optimum": float(nominal.objective) if found else None,
        "nominal_of_robust": nominal_of_robust,
        "price_of_robustness": float(nominal.objective) - nominal_of_robust if found else None,
        "guaranteed": rounded.guaranteed,
        "expected": rounded.expected,
        "guaranteed_before_rounding": chosen.guaranteed,
        # before rounding too: like with like
        "guaranteed_of_nominal": best.guaranteed if best is not None else None,
        "nominal_x": nominal.x[cols.x] if found else None,
    }
