"""The equity stage: lexicographic max-min fairness within a tolerance of the best outcome.

Stage 3 (DESIGN.md "The model"): after the outcome stage, with
`equity_objective` set, hold the outcome value within `outcome_tolerance` of its best and
raise the worst-off group, then the next, lexicographically:

- `maxmin_per_capita`: groups are regions; a region's measure is the money delivered in it
  per inhabitant, sum_{k in r} x_k / population_r.
- `maxmin_contribution`: groups are the jurisdictions that contributed to joint funds; the
  measure is the joint-fund money delivered in the jurisdiction per unit of its contribution
  share, sum_{k in j, fund contributed} x_k / c_j (juste retour as a ratio: 1 means the
  jurisdiction got exactly its share).

Each round of the lexicographic loop is one LP: maximise z with measure_g >= z for the groups
still free and measure_g >= level_g for those already fixed. Groups whose row has a positive
dual are the bottleneck and are fixed at z (if no dual is positive, every free group at z is).
Finally the outcome is maximised again with all levels held, so no outcome is given up that
fairness does not need. Groups with no eligible money at all cannot be raised and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from allocator.eligibility import AllocationIndex
from allocator.plan import SolvePlan
from allocator.progress import phase
from allocator.round import EquityObjective, Round
from allocator.solve import (
    INF,
    Columns,
    MatrixProgram,
    StageResult,
    raise_for_status,
    solve_program,
)
from allocator.stages.model import BuiltModel
from allocator.stages.prices import Prices

MAX_ROUNDS = 60  # lexicographic rounds; groups still free afterwards keep the level reached
DUAL_TOL = 1e-9
LEVEL_RTOL = 1e-7  # a fixed level is held this much below what was reached, for feasibility


@dataclass
class EquityGroups:
    """The groups of an equity objective: per group, its x columns and its divisor."""

    objective: EquityObjective
    names: list[str]
    members: list[np.ndarray]  # x indices (into the allocation index) per group
    divisors: np.ndarray  # population (per capita) or contribution share c_j
    unit: str  # how a measure reads: "EUR per inhabitant", "x contribution share"
    left_out: list[str] = field(default_factory=list)

    def measures(self, amounts: np.ndarray) -> np.ndarray:
        """Each group's measure for an allocation given per x."""
        return np.array([amounts[m].sum() for m in self.members]) / self.divisors


@dataclass
class EquityResult:
    """What the equity stage did: levels before and after, and the price of fairness."""

    groups: EquityGroups
    program: MatrixProgram  # the outcome program plus the outcome hold and the level rows
    stages: list[StageResult]
    outcome_best: float
    outcome_after: float
    levels: np.ndarray  # the level each group is held at
    warnings: list[str] = field(default_factory=list)

    def table(self, before: np.ndarray, after: np.ndarray) -> pd.DataFrame:
        """Per group: the measure before (outcome only) and after the equity stage."""
        return pd.DataFrame({"group": self.groups.names, "before": before, "after": after,
                             "unit": self.groups.unit})


def equity_groups(rnd: Round, index: AllocationIndex) -> EquityGroups:
    """The groups the round's equity objective ranges over."""
    objective = rnd.settings.equity_objective
    if objective == EquityObjective.maxmin_per_capita:
        names, members, divisors, left_out = [], [], [], []
        for code, region in enumerate(rnd.regions):
            ks = np.flatnonzero(index.r == code)
            if len(ks) == 0:
                left_out.append(region.region_id)
                continue
            names.append(region.region_id)
            members.append(ks)
            divisors.append(region.population)
        return EquityGroups(objective, names, members, np.array(divisors, float),
                            f"{rnd.settings.currency} per inhabitant", left_out)
    paid: dict[str, float] = {}
    for c in rnd.contributions:
        paid[c.jurisdiction] = paid.get(c.jurisdiction, 0.0) + float(c.amount)
    total = sum(paid.values())
    joint = {c.fund_id for c in rnd.contributions if c.amount > 0}
    fund_ok = np.array([f in joint for f in index.funds], dtype=bool)
    jur_of = np.array([rnd.region(r).jurisdiction for r in index.regions], dtype=object)
    names, members, divisors, left_out = [], [], [], []
    for j in sorted(p for p, v in paid.items() if v > 0):
        ks = np.flatnonzero(fund_ok[index.f] & (jur_of[index.r] == j)) if len(index) else \
            np.zeros(0, dtype=np.int64)
        if len(ks) == 0:
            left_out.append(j)
            continue
        names.append(j)
        members.append(ks)
        divisors.append(paid[j] / total)
    return EquityGroups(objective, names, members, np.array(divisors, float),
                        "x contribution share", left_out)


def solve_equity(model: BuiltModel, prices: Prices, *, threads: int | None) -> EquityResult | None:
    """The equity stages after the prices LP; None when the round has no equity objective."""
    rnd = model.round
    if rnd.settings.equity_objective == EquityObjective.none:
        return None
    phase(f"sharing out more evenly ({rnd.settings.equity_objective.value.replace('_', ' ')})")
    return run_equity_stages(rnd, model.index, prices.program, model.columns,
                             prices.result.objective, plan=model.plan, threads=threads)


def run_equity_stages(rnd: Round, index: AllocationIndex, fixed: MatrixProgram, cols: Columns,
                      best: float, *, plan: SolvePlan, threads: int | None) -> EquityResult:
    """Lexicographic max-min of the groups' measures, outcome held within the tolerance."""
    settings = rnd.settings
    groups = equity_groups(rnd, index)
    warnings = [f"{g} has no eligible money and is left out of the equity objective"
                for g in groups.left_out]
    tol = settings.outcome_tolerance
    hold = best - tol * abs(best) - 1e-7 * max(1.0, abs(best))
    base = _with_rows(fixed, sp.csr_matrix(fixed.c.reshape(1, -1)), [hold], [INF],
                      ["outcome_value_within_tolerance_min"])
    n_groups = len(groups.names)
    G = _group_matrix(groups, cols, fixed.shape[1])  # row g: sum of the group's x
    levels = np.full(n_groups, np.nan)
    stages: list[StageResult] = []
    free = np.ones(n_groups, dtype=bool)
    for round_no in range(1, MAX_ROUNDS + 1):
        if not free.any():
            break
        stage = _maxmin_stage(base, G, groups.divisors, levels, free, round_no)
        result = solve_program(stage, f"equity_{round_no}", time_limit=plan.follow_up_time_limit_s,
                               mip_gap=settings.mip_gap, threads=threads, plan=plan)
        stages.append(result)
        raise_for_status(result)
        z = float(result.x[-1])
        free_rows = np.flatnonzero(free)
        duals = result.row_dual[-len(free_rows):] if result.row_dual is not None else \
            np.zeros(len(free_rows))
        blocked = free_rows[np.abs(duals) > DUAL_TOL]
        if len(blocked) == 0:
            measure = groups.measures(result.x[cols.x])
            blocked = free_rows[measure[free_rows] <= z + 1e-7 * max(1.0, abs(z))]
        if len(blocked) == 0:
            blocked = free_rows
        levels[blocked] = z
        free[blocked] = False
    if free.any():
        warnings.append(f"{int(free.sum())} group(s) kept the level of round {MAX_ROUNDS} "
                        "(the lexicographic loop stops there)")
        levels[free] = levels[~free].min() if (~free).any() else 0.0
    held = levels - LEVEL_RTOL * np.maximum(1.0, np.abs(levels))
    final = _with_rows(base, G, list(held * groups.divisors), [INF] * n_groups,
                       [f"equity_level_min[{g}]" for g in groups.names])
    again = solve_program(final, "outcome_given_equity", time_limit=plan.follow_up_time_limit_s,
                          mip_gap=settings.mip_gap, threads=threads, plan=plan)
    stages.append(again)
    raise_for_status(again)
    return EquityResult(groups, final, stages, best, float(again.objective), levels, warnings)


def _group_matrix(groups: EquityGroups, cols: Columns, n_cols: int) -> sp.csr_matrix:
    rows = np.concatenate([np.full(len(m), g) for g, m in enumerate(groups.members)]) \
        if groups.members else np.zeros(0, dtype=np.int64)
    columns = np.concatenate([cols.x[m] for m in groups.members]) if groups.members else \
        np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(groups.names), n_cols))


def _with_rows(program: MatrixProgram, rows: sp.csr_matrix, lower: list[float],
               upper: list[float], names: list[str]) -> MatrixProgram:
    return replace(program, A=sp.vstack([program.A, rows], format="csr"),
                   row_lower=np.concatenate([program.row_lower, lower]),
                   row_upper=np.concatenate([program.row_upper, upper]),
                   row_names=[*program.row_names, *names])


def _maxmin_stage(base: MatrixProgram, G: sp.csr_matrix, divisors: np.ndarray,
                  levels: np.ndarray, free: np.ndarray, round_no: int) -> MatrixProgram:
    """max z s.t. base rows; sum_g x >= divisor_g * level_g (fixed); sum_g x - divisor_g z >= 0."""
    n_rows, n_cols = base.shape
    fixed_rows = np.flatnonzero(~free)
    free_rows = np.flatnonzero(free)
    A = sp.hstack([base.A, sp.csr_matrix((n_rows, 1))], format="csr")
    held = levels[fixed_rows] - LEVEL_RTOL * np.maximum(1.0, np.abs(levels[fixed_rows]))
    fixed_block = sp.hstack([G[fixed_rows], sp.csr_matrix((len(fixed_rows), 1))], format="csr")
    free_block = sp.hstack([G[free_rows], sp.csr_matrix(-divisors[free_rows].reshape(-1, 1))],
                           format="csr")
    c = np.zeros(n_cols + 1)
    c[-1] = 1.0
    return MatrixProgram(
        c=c, A=sp.vstack([A, fixed_block, free_block], format="csr"),
        row_lower=np.concatenate([base.row_lower, held * divisors[fixed_rows],
                                  np.zeros(len(free_rows))]),
        row_upper=np.concatenate([base.row_upper,
                                  np.full(len(fixed_rows) + len(free_rows), INF)]),
        col_lower=np.append(base.col_lower, 0.0), col_upper=np.append(base.col_upper, INF),
        integer=np.append(base.integer, False),
        row_names=[*base.row_names, *[f"equity_level_min[{g}]" for g in fixed_rows],
                   *[f"equity_maxmin_round{round_no}[{g}]" for g in free_rows]],
        col_names=[*base.col_names, "z_equity"], maximize=True)


def price_of_fairness(rnd: Round, index: AllocationIndex, equity: EquityResult,
                      best_x: np.ndarray, fair_x: np.ndarray, rounded_x: np.ndarray) -> dict:
    """Outcome value and trainee placements given up for equity, and the measure before/after."""
    cost = np.array([p.round_cost_per_trainee for p in rnd.programs])[index.p] if len(index) else \
        np.zeros(0)
    value = np.array([rnd.value_per_trainee(p) for p in rnd.programs])[index.p] if len(index) \
        else np.zeros(0)
    groups = equity.groups
    before, after = groups.measures(best_x), groups.measures(rounded_x)
    trainees_best, trainees_fair = float((best_x / cost).sum()), float((fair_x / cost).sum())
    outcome_fair = float((fair_x / cost * value).sum())
    if rnd.settings.robust_gamma > 0:  # the stages held the robust objective: compare like with like
        from allocator.robust import robust_value, trainees_per_program

        outcome_fair = robust_value(rnd, trainees_per_program(rnd, index, fair_x)).guaranteed
    return {
        "objective": groups.objective.value,
        "unit": groups.unit,
        "outcome_best": equity.outcome_best,
        "outcome_fair": outcome_fair,
        "outcome_given_up": equity.outcome_best - outcome_fair,
        "trainees_best": trainees_best,
        "trainees_fair": trainees_fair,
        "trainees_given_up": trainees_best - trainees_fair,
        "min_before": float(before.min()) if len(before) else None,
        "min_after": float(after.min()) if len(after) else None,
        "groups": equity.table(before, after),
    }


__all__ = ["EquityResult", "equity_groups", "price_of_fairness", "run_equity_stages",
           "solve_equity"]
