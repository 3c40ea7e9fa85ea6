"""Solving a validated round: model, stages, rounding, and the typed result.

The library entry point. `solve_round(round)` returns a `Solution` whose tables are pandas
DataFrames; the report and the decision record are written from it, never from the solver.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pandas as pd

from allocator.eligibility import AllocationIndex, allocation_index, cap_block_lines, cap_blocks
from allocator.equity import EquityResult, run_equity_stages
from allocator.errors import InfeasibleRoundError, SolverStoppedError
from allocator.formulation import Formulation, RuleGroup, create_model
from allocator.plan import SolvePlan, choose_plan
from allocator.progress import phase
from allocator.round import EquityObjective, Op, Round
from allocator.rounding import Rounded, round_allocation
from allocator.solve import (
    INF,
    TIEBREAK_OPTIONS,
    Columns,
    MatrixProgram,
    RowRef,
    StageResult,
    Status,
    compile_model,
    fix_integers,
    optimal_face,
    raise_for_status,
    relative_gap,
    row_name,
    solve_program,
    tiebreak_program,
)


@dataclass
class Solution:
    """An optimal (or time-limited) allocation of one round, rounded, with its explanation data."""

    round: Round
    status: Status
    allocation: pd.DataFrame  # program_id region_id fund_id period units amount trainees
    stages: list[StageResult]
    rules: pd.DataFrame  # one row per rule group
    index: AllocationIndex
    lp_amounts: np.ndarray  # unrounded amount per eligible x
    rounded: Rounded
    row_refs: list[RowRef]
    prices: StageResult  # the LP whose duals price rules and budgets
    timings: dict[str, float] = field(default_factory=dict)
    mip: bool = False
    columns: Columns | None = None
    warnings: list[str] = field(default_factory=list)
    fairness: dict | None = None  # the price of fairness, when the round has an equity objective
    robustness: dict | None = None  # guaranteed/expected value, price of robustness (Gamma > 0)
    # The rule groups the model was built with (each with its measure): the report,
    # explanations and prices read them here, never expanding the rules again.
    rule_groups: list[RuleGroup] = field(default_factory=list)
    plan: SolvePlan | None = None  # how the round was solved, chosen once from its size

    @property
    def objective(self) -> float:
        """Outcome value of the rounded allocation."""
        return float(self.allocation["value"].sum()) if len(self.allocation) else 0.0

    @property
    def optimal_objective(self) -> float:
        """Outcome value before rounding: the LP with the on/off decisions fixed, for a MILP
        (never below the MILP's own objective, which it re-optimises)."""
        return float(self.prices.objective or 0.0)

    @property
    def unit(self) -> Decimal:
        return self.round.settings.rounding_unit


def solve_round(rnd: Round, *, threads: int | None = None, method: str = "choose") -> Solution:
    """Build, solve every stage, round; raises InfeasibleRoundError / SolverStoppedError.

    The solve alone: why an infeasible round is infeasible is worked out by
    `allocator.diagnose.solve_diagnosed`, which the API, the CLI, compare and sweep call.
    """
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    phase("building the model")
    index = allocation_index(rnd)
    form = create_model(rnd, index)
    timings["build"] = time.perf_counter() - tick
    blocked = cap_block_lines(cap_blocks(rnd, index))  # never fundable: said, not an error
    _raise_for_trivial_rows(form)
    tick = time.perf_counter()
    phase("handing the model to the solver (HiGHS)")
    program, cols, refs = compile_model(form)
    timings["handover"] = time.perf_counter() - tick
    settings = rnd.settings
    plan = round_plan(rnd, program, method)
    stages: list[StageResult] = []
    tick = time.perf_counter()
    relax = plan.relaxation_first
    # In words: how many amounts are decided, and against how many limits.
    phase(f"finding the best outcome ({program.shape[1]:,} amounts to decide, "
          f"{program.shape[0]:,} limits)")
    first = solve_program(relaxed(program) if relax else program, "outcome",
                          time_limit=plan.time_limit_s, mip_gap=settings.mip_gap,
                          threads=threads, plan=plan)
    stages.append(first)
    warnings: list[str] = list(blocked)
    stopped = stopped_before_any_allocation(first, program)
    if not stopped:
        raise_for_status(first)  # an infeasible relaxation is an infeasible round
    prices, fixed = first, program
    if program.integer.any():
        phase("pricing the budgets and rules")
        for switches in switch_candidates(program, first, stopped, relax):
            fixed = fix_integers(program, switches)
            prices = solve_program(fixed, "outcome_lp", time_limit=plan.follow_up_time_limit_s,
                                   mip_gap=settings.mip_gap, threads=threads, plan=plan)
            stages.append(prices)
            if prices.status == Status.optimal:
                break
        if stopped:
            adopt_fallback(first, prices)
            warnings.append(FALLBACK_WARNING)
        elif relax:
            adopt_rounding(first, prices, settings.mip_gap)
            if first.status != Status.optimal:
                warnings.append(rounding_warning(first))
        raise_for_status(prices)
    y_values = {key: round(float(prices.x[cols.y[j]])) for j, key in enumerate(form.binaries)}
    held, hold_value, equity = fixed, prices.objective, None
    if settings.equity_objective != EquityObjective.none:
        phase(f"sharing out more evenly ({settings.equity_objective.value.replace('_', ' ')})")
        equity = run_equity_stages(rnd, index, fixed, cols, prices.objective, plan=plan,
                                   threads=threads)
        stages.extend(equity.stages)
        held, hold_value = equity.program, equity.outcome_after
    warnings.extend(equity.warnings if equity else [])
    if plan.uniqueness == "interior_centre":
        # The interior point method without crossover ends at the analytic centre of the optimal
        # face: already one well-defined optimum, with equal money for equal programs (see
        # allocator.plan.choose_plan for why no tie-break LP runs then).
        solution_x = even_out_twins(prices.x, twin_pairs(rnd, index, cols, y_values))
        warnings.append(interior_warning(prices))
    else:
        phase("making the allocation unique (equal programs get equal money)")
        tie = _tiebreak(rnd, index, cols, held, hold_value, y_values, prices, equity is None,
                        plan, settings.mip_gap, threads)
        stages.append(tie)
        if tie.status == Status.optimal:
            solution_x = tie.x
        else:
            solution_x = prices.x if equity is None else equity.stages[-1].x
            warnings.append(f"the tie-break stage ended without an optimum ({tie.status.value}); "
                            "the allocation is optimal but may not be the unique, reproducible one")
    timings["solve"] = time.perf_counter() - tick
    tick = time.perf_counter()
    phase("rounding to whole units")
    soft_rows = np.array([i for i, r in enumerate(refs) if r.component.endswith(
        ("_rule_min", "_rule_max", "_rule_equal"))], dtype=np.int64)
    protection_rows = np.array([i for i, r in enumerate(refs)
                                if r.component == "protection_program_min"], dtype=np.int64)
    rounded = round_allocation(without_rows(fixed, protection_rows), cols.x, solution_x,
                               float(settings.rounding_unit), soft_rows,
                               time_limit=min(10.0, settings.time_limit_s),  # node-limited
                               free_cols=np.concatenate([cols.s, cols.t]), switch_cols=cols.y,
                               hard_rule_rows=hard_rule_rows(form, refs))
    if len(cols.robust):
        follow_protection(rnd, index, form, cols, rounded)
    timings["rounding"] = time.perf_counter() - tick
    status = overall_status(stages)
    broken = rounding_breaks(rnd, form, refs, rounded, soft_rows)
    if broken:
        status = Status.rounding_infeasible
        warnings[:0] = broken
    allocation = allocation_table(rnd, index, rounded.units, settings.rounding_unit)
    from allocator.explain import add_shortfalls

    rules = add_shortfalls(rule_table(rnd, form, rounded, refs, prices, cols))  # soft rules' misses
    fairness = price_of_fairness(rnd, index, equity, prices.x[cols.x], solution_x[cols.x],
                                 rounded.units * float(settings.rounding_unit)) if equity else None
    robustness = None
    if len(cols.robust):
        phase("solving: nominal outcome (for the price of robustness)")
        nominal = solve_program(nominal_program(relaxed(program) if relax else program, cols),
                                "outcome_nominal", time_limit=plan.time_limit_s,
                                mip_gap=settings.mip_gap, threads=threads, plan=plan)
        stages.append(nominal)
        robustness = price_of_robustness(rnd, index, nominal, program, cols, solution_x,
                                         rounded.units * float(settings.rounding_unit))
        if nominal.status != Status.optimal:
            warnings.append(f"the nominal outcome stage (for the price of robustness) ended "
                            f"{nominal.status.value}: the price of robustness is "
                            + ("against its best allocation found, not proven optimal"
                               if robustness["nominal_optimum"] is not None else "not known"))
    return Solution(rnd, status, allocation, stages, rules, index, solution_x[cols.x], rounded,
                    refs, prices, timings, bool(program.integer.any()), cols, warnings, fairness,
                    robustness, form.rule_groups, plan)


def round_plan(rnd: Round, program: MatrixProgram, method: str = "choose") -> SolvePlan:
    """The solve plan of a round whose matrix is `program` (the one call of choose_plan)."""
    return choose_plan(program.shape[1], int(program.integer.sum()),
                       time_limit_s=rnd.settings.time_limit_s,
                       equity=rnd.settings.equity_objective != EquityObjective.none,
                       method=method)


def nominal_program(program: MatrixProgram, cols: Columns) -> MatrixProgram:
    """The robust program with the protection priced at 0: the nominal outcome stage (its
    protection rows always hold, lambda and mu being free to grow)."""
    c = program.c.copy()
    c[cols.robust] = 0.0
    return dataclasses.replace(program, c=c)


def without_rows(program: MatrixProgram, rows: np.ndarray) -> MatrixProgram:
    """The program with the given rows unbounded (the same program when there are none)."""
    if not len(rows):
        return program
    lower, upper = program.row_lower.copy(), program.row_upper.copy()
    lower[rows], upper[rows] = -INF, INF
    return dataclasses.replace(program, row_lower=lower, row_upper=upper)


def follow_protection(rnd: Round, index: AllocationIndex, form: Formulation, cols: Columns,
                      rounded: Rounded) -> None:
    """Set lambda and mu to their optimum for the rounded amounts (in place): the protection
    rows are no rules, so rounding never bends money to them (it rounds without them), they
    follow it."""
    from allocator.robust import dual_values, spreads, trainees_per_program

    full = rounded.columns
    unit = float(rnd.settings.rounding_unit)
    trainees = trainees_per_program(rnd, index, rounded.units * unit)
    order = {p.program_id: i for i, p in enumerate(rnd.programs)}
    rows = [order[p] for p in form.robust_programs]
    deviation = rnd.settings.robust_level * spreads(rnd)[rows] * trainees[rows]
    lam, mu = dual_values(deviation, rnd.settings.robust_gamma)
    if full is not None:
        full[cols.robust[0]] = lam
        full[cols.robust[1:]] = mu


def price_of_robustness(rnd: Round, index: AllocationIndex, nominal: StageResult,
                        program: MatrixProgram, cols: Columns, robust_x: np.ndarray,
                        rounded_x: np.ndarray) -> dict:
    """Guaranteed and expected outcome value of the robust allocation, and what guarding
    against the uncertainty costs in expected value (nominal optimum - its nominal value)."""
    from allocator.robust import robust_value, trainees_per_program

    c_nominal = nominal_program(program, cols).c
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


def hard_rule_rows(form: Formulation, refs: list[RowRef]) -> np.ndarray:
    """Rows of the rules without a penalty: rounding must keep them like any hard limit."""
    hard = {(g.family, (g.label,)) for g in form.rule_groups if g.rule.penalty is None}
    return np.array([i for i, r in enumerate(refs) if (r.component, r.index) in hard],
                    dtype=np.int64)


def rounding_breaks(rnd: Round, form: Formulation, refs: list[RowRef], rounded: Rounded,
                    soft_rows: np.ndarray) -> list[str]:
    """One sentence per hard row (hard rule, budget, capacity, minimum, cap) the rounded
    allocation misses: the row, the amount, and whether no rounding at all can keep it."""
    hard_rules = set(hard_rule_rows(form, refs).tolist())
    soft = set(soft_rows.tolist()) - hard_rules
    cur = rnd.settings.currency
    unit = rnd.settings.rounding_unit
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


def interior_warning(prices: StageResult) -> str:
    """What a user is told about an interior-point allocation: the optimum at the centre of the
    optimal face, or, stopped by the time limit, the last iterate and how far off it may be."""
    if prices.status == Status.time_limit:
        return ("the time limit stopped the interior point method before the optimum; the "
                "allocation is its last iterate, within the reported gap of the optimum "
                "(raise time_limit_s on the Round sheet for a better one)")
    return ("the allocation is the interior-point optimum (the centre of the optimal face); at "
            "this size no tie-break LP is solved")


FALLBACK_WARNING = ("the time limit stopped the outcome MILP before HiGHS found any allocation; "
                    "this one has every all-or-nothing program switched off and the rest "
                    "optimised (raise time_limit_s on the Round sheet for a better one)")


def stopped_before_any_allocation(stage: StageResult, program: MatrixProgram) -> bool:
    """Whether the outcome stage of a MILP hit its time limit without an allocation (the root
    LP of a large round can outlast a limit of minutes)."""
    return stage.status == Status.no_solution and bool(program.integer.any()) \
        and stage.solver_log.get("model_status") == "Time limit reached"


def relaxed(program: MatrixProgram) -> MatrixProgram:
    """The same program with every integer column continuous within its bounds."""
    return dataclasses.replace(program, integer=np.zeros_like(program.integer))


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


def overall_status(stages: list[StageResult]) -> Status:
    """Optimal, unless the outcome stage (or the prices LP after it) was stopped or unproven."""
    found = {s.status for s in stages[:2]}
    for status in (Status.time_limit, Status.not_proven):
        if status in found:
            return status
    return Status.optimal


def _tiebreak(rnd: Round, index: AllocationIndex, cols: Columns, held: MatrixProgram,
              hold_value: float | None, y_values: dict[tuple[str, str], float],
              prices: StageResult, on_face: bool, plan: SolvePlan, mip_gap: float,
              threads: int | None) -> StageResult:
    """Solve the tie-break: least weighted money among the optima, twins equal; on the optimal
    face of `prices` unless an equity stage has left it on purpose."""
    tb = tiebreak_program(held, hold_value, _tiebreak_weights(held, cols),
                          twin_pairs(rnd, index, cols, y_values))
    if on_face:
        tb = optimal_face(tb, prices)
    return solve_program(tb, "tiebreak", time_limit=plan.follow_up_time_limit_s, mip_gap=mip_gap,
                         threads=threads, options=TIEBREAK_OPTIONS, plan=plan)


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


def _raise_for_trivial_rows(form: Formulation) -> None:
    broken = [g for g, holds in form.trivial if not holds]
    if broken:
        lines = [f"rule {g.rule.rule_id}" + (f" (group {g.group})" if g.group else "")
                 + f": no eligible allocation matches its selection, so it cannot reach "
                 f"{g.rule.op.value} {g.rule.value:g}" for g in broken]
        raise InfeasibleRoundError("infeasible: " + "; ".join(lines))


TIEBREAK_SEED = 20261125


def _tiebreak_weights(program: MatrixProgram, cols: Columns) -> np.ndarray:
    """Money spent, each x weighted 1 + u_k, u_k in [0, 1) drawn once from a fixed seed.

    Weights in a pattern (such as 1 + k/n) leave ties between alternative optima; seeded
    pseudo-random ones, taken in the canonical order of ids, leave none, and PCG64 gives the
    same numbers on every machine.
    """
    weights = np.zeros(program.shape[1])
    n = len(cols.x)
    if n:
        weights[cols.x] = 1.0 + np.random.Generator(np.random.PCG64(TIEBREAK_SEED)).random(n)
    weights[cols.s] = 2.0  # leftover soft-rule shortfall is never preferred
    return weights


def twin_pairs(rnd: Round, index: AllocationIndex, cols: Columns,
               y_values: dict[tuple[str, str], float]) -> list[tuple[int, int]]:
    """Column pairs that must be equal: programs equal in every respect but id and name.

    A program named by id in any filter is nobody's twin (a rule may treat it apart), and
    all-or-nothing twins are paired only in periods where both are on or both off.
    """
    named = {v for f in rnd.funds for c in f.eligible.conditions if c.key in ("program", "program_id")
             for v in c.values}
    named |= {v for r in rnd.rules for flt in (r.select, r.relative_to) for c in flt.conditions
              if c.key in ("program", "program_id") for v in c.values}
    groups: dict[str, list[str]] = {}
    for p in rnd.programs:
        if p.program_id in named:
            continue
        key = p.model_dump_json(exclude={"program_id", "name"}) + str(rnd.performance_score(p.program_id))
        groups.setdefault(key, []).append(p.program_id)
    twins = {p for members in groups.values() if len(members) > 1 for p in members}
    cols_of: dict[str, dict[tuple[str, str, str], int]] = {p: {} for p in twins}
    for k in range(len(index)):
        p, r, f, t = index.key(k)
        if p in twins:
            cols_of[p][(r, f, t)] = int(cols.x[k])
    pairs = []
    for members in groups.values():
        first = members[0]
        for other in members[1:]:
            for (r, f, t), col in cols_of[first].items():
                twin = cols_of[other].get((r, f, t))
                if twin is not None and y_values.get((first, t)) == y_values.get((other, t)):
                    pairs.append((col, twin))
    return pairs


def even_out_twins(x: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """x with every group of twin columns set to its mean.

    Twins are equal in every respect, so swapping them maps optima onto optima, and the mean
    of two optima is one: the result is still optimal, with equal money for equal programs
    (HiGHS's presolve merges such parallel columns and gives one of them everything).
    """
    if not pairs:
        return x
    parent = {c: c for pair in pairs for c in pair}

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for c in parent:
        groups.setdefault(root(c), []).append(c)
    out = x.copy()
    for members in groups.values():
        out[members] = x[members].mean()
    return out


def allocation_table(rnd: Round, index: AllocationIndex, units: np.ndarray,
                     unit: Decimal) -> pd.DataFrame:
    """One row per non-zero rounded amount, in canonical order."""
    nz = np.flatnonzero(units > 0)
    cost = np.array([p.round_cost_per_trainee for p in rnd.programs])  # in-round money per trainee
    value = np.array([rnd.value_per_trainee(p) for p in rnd.programs])
    amount = units[nz] * float(unit)
    p = index.p[nz]
    trainees = amount / cost[p]
    return pd.DataFrame({
        "program_id": [index.programs[i] for i in p],
        "region_id": [index.regions[i] for i in index.r[nz]],
        "fund_id": [index.funds[i] for i in index.f[nz]],
        "period": [index.periods[i] for i in index.t[nz]],
        "units": units[nz],
        "amount": amount,
        "trainees": trainees,
        "value": trainees * value[p],
    })


def rule_table(rnd: Round, form: Formulation, rounded: Rounded, refs: list[RowRef],
               prices: StageResult, cols: Columns) -> pd.DataFrame:
    """Each rule group: target, achieved, slack (>= 0 when kept), binding, shadow price."""
    amounts = rounded.units * float(rnd.settings.rounding_unit)
    row_of = {(r.component, r.index): i for i, r in enumerate(refs)}
    records = []
    for g in form.rule_groups:
        key = (g.family, (g.label,))
        row = row_of.get(key)
        dual = None
        if row is not None and prices.row_dual is not None:
            dual = float(prices.row_dual[row])
        records.append(_rule_record(g, amounts, dual, row is None))
    columns = ["rule_id", "description", "measure", "group", "jurisdiction", "op", "target",
               "achieved", "slack", "binding", "shadow_price", "selected_amount",
               "reference_amount", "penalty"]
    return pd.DataFrame.from_records(records, columns=columns)


def _rule_record(g: RuleGroup, amounts: np.ndarray, dual: float | None, trivial: bool) -> dict:
    sel = float(amounts[g.sel].sum()) if len(g.sel) else 0.0
    rel = float(amounts[g.rel].sum()) if len(g.rel) else 0.0
    lhs = sel - g.factor * rel
    slack = {Op.ge: lhs - g.rhs, Op.le: g.rhs - lhs, Op.eq: -abs(lhs - g.rhs)}[g.rule.op]
    tol = 1e-6 * max(1.0, abs(g.rhs), sel, rel)
    return {
        "rule_id": g.rule.rule_id,
        "description": g.rule.description,
        "measure": g.rule.measure.value,
        "group": g.group or "",
        "jurisdiction": g.jurisdiction or "",
        "op": g.rule.op.value,
        "target": g.rule.value,  # in the rule's own unit, as the Rules sheet states it
        "achieved": g.measure.achieved(sel, rel, g.scale),
        "slack": slack,
        "binding": bool(not trivial and abs(slack) <= max(tol, 1.0)),
        "shadow_price": dual,
        "selected_amount": sel,
        "reference_amount": rel if len(g.rel) else None,
        "penalty": g.rule.penalty,
    }
