"""Solving a validated round: model, stages, rounding, and the typed result.

The library entry point. `solve_round(round)` returns a `Solution` whose tables are pandas
DataFrames; the report and the decision record are written from it, never from the solver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from allocator.beside import current as current_beside
from allocator.plan import SolvePlan
from allocator.round import Op, Round
from allocator.solve import Columns, RowRef, StageResult, Status
from allocator.stages.equity import EquityResult, price_of_fairness, solve_equity
from allocator.stages.model import BuiltModel, build_model, raise_for_trivial_rows
from allocator.stages.nominal import solve_nominal
from allocator.stages.outcome import solve_outcome
from allocator.stages.prices import Prices, solve_prices
from allocator.stages.rounding import Rounded, round_to_units, rounding_breaks
from allocator.stages.tiebreak import make_unique
from allocator.warm import Warm, warm_outcome

if TYPE_CHECKING:
    from allocator.eligibility import AllocationIndex
    from allocator.formulation import RuleGroup


@dataclass
class Solution:
    """An optimal (or time-limited) allocation of one round, rounded, with its explanation data."""

    model: BuiltModel  # index, matrix, columns, row references, rule groups, plan: built once
    status: Status
    allocation: pd.DataFrame  # program_id region_id fund_id period units amount trainees
    stages: list[StageResult]
    rules: pd.DataFrame  # one row per rule group
    lp_amounts: np.ndarray  # unrounded amount per eligible x
    rounded: Rounded
    prices: StageResult  # the LP whose duals price rules and budgets
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fairness: dict | None = None  # the price of fairness, when the round has an equity objective
    robustness: dict | None = None  # guaranteed/expected value, price of robustness (Gamma > 0)
    # What the explanations derive from the solution once and read many times (explain.py).
    derived: dict[str, object] = field(default_factory=dict)

    @property
    def round(self) -> Round:
        return self.model.round

    @property
    def index(self) -> AllocationIndex:
        return self.model.index

    @property
    def columns(self) -> Columns:
        return self.model.columns

    @property
    def row_refs(self) -> list[RowRef]:
        return self.model.row_refs

    @property
    def rule_groups(self) -> list[RuleGroup]:
        """The rule groups the model was built with (each with its measure): the report,
        explanations and prices read them here, never expanding the rules again."""
        return self.model.rule_groups

    @property
    def plan(self) -> SolvePlan:
        return self.model.plan

    @property
    def mip(self) -> bool:
        return self.model.mip

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


def solve_round(rnd: Round, *, threads: int | None = None, method: str = "choose",
                model: BuiltModel | None = None, warm: Warm | None = None) -> Solution:
    """Build the model once, solve every stage in turn, round; raises InfeasibleRoundError /
    SolverStoppedError. Each stage is a module of `allocator.stages`.

    The solve alone: why an infeasible round is infeasible is worked out by
    `allocator.diagnose.solve_diagnosed`, which the API, the CLI, compare and sweep call.
    A sweep passes `model` (`rnd`'s model, made from another point's: `allocator.warm`) and
    `warm` (the bases the previous point left, updated here); the answer is the same.
    """
    if model is not None and model.round is not rnd:
        raise ValueError("solve_round: the model given is another round's")
    model = model if model is not None else build_model(rnd, method)
    raise_for_trivial_rows(model.trivial)
    timings = dict(model.seconds)
    tick = time.perf_counter()
    outcome = warm_outcome(model, warm, threads=threads) if warm is not None else None
    outcome = outcome or solve_outcome(model, threads=threads)
    prices = solve_prices(model, outcome, threads=threads)
    derived = derived_beside(model, prices.result)
    equity = solve_equity(model, prices, threads=threads)
    unique = make_unique(model, prices, equity, threads=threads, warm=warm)
    timings["solve"] = time.perf_counter() - tick
    tick = time.perf_counter()
    rounded = round_to_units(model, prices.program, unique.x)
    timings["rounding"] = time.perf_counter() - tick
    nominal = solve_nominal(model, unique.x, rounded, threads=threads)
    stages = [outcome, *prices.stages, *(equity.stages if equity else []),
              *([unique.stage] if unique.stage else []), *([nominal.stage] if nominal else [])]
    # A hard row that no rounding keeps is said first, and marks the whole run.
    broken = rounding_breaks(model, rounded)
    warnings = [*broken, *model.blocked, *prices.warnings, *(equity.warnings if equity else []),
                *unique.warnings, *(nominal.warnings if nominal else [])]
    status = Status.rounding_infeasible if broken else overall_status(stages)
    solution = _solution(model, status, stages, prices, equity, unique.x, rounded, timings,
                         warnings, nominal.robustness if nominal else None)
    solution.derived.update(derived)
    return solution


def derived_beside(model: BuiltModel, prices: StageResult) -> dict[str, object]:
    """What the report derives from the prices LP alone (the Sensitivity sheet's ranging, the
    Programs sheet's price effects), made on this thread beside the next stage's solve when
    the run will write a report (`allocator.beside`); the dict fills as that solve runs.
    Nothing is made otherwise: the report then makes them itself. A failure here is left
    for the report to meet and say."""
    derived: dict[str, object] = {}
    beside = current_beside()
    if beside is None or not beside.for_report or prices.x is None:
        return derived

    def make() -> None:
        from allocator.explain import PRICE_EFFECTS, price_effects
        from allocator.sensitivity import PRICES_RANGING, ranging_for_report

        try:
            derived[PRICE_EFFECTS] = price_effects(model, prices.program)
            ranging = ranging_for_report(model, prices)
            if ranging is not None:
                derived[PRICES_RANGING] = ranging
        except Exception:  # see the docstring
            derived.clear()

    beside.chores.append(make)
    return derived


def _solution(model: BuiltModel, status: Status, stages: list[StageResult], prices: Prices,
              equity: EquityResult | None, x: np.ndarray, rounded: Rounded,
              timings: dict[str, float], warnings: list[str], robustness: dict | None) -> Solution:
    """The Solution: the tables the report and the record are written from."""
    from allocator.explain import add_shortfalls

    rnd, index, cols = model.round, model.index, model.columns
    unit = rnd.settings.rounding_unit
    rounded_x = rounded.units * float(unit)
    fairness = price_of_fairness(rnd, index, equity, prices.result.x[cols.x], x[cols.x],
                                 rounded_x) if equity else None
    rules = add_shortfalls(rule_table(model, rounded, prices.result))  # soft rules' misses
    return Solution(model, status, allocation_table(rnd, index, rounded.units, unit), stages,
                    rules, x[cols.x], rounded, prices.result, timings, warnings, fairness,
                    robustness)


def overall_status(stages: list[StageResult]) -> Status:
    """Optimal, unless the outcome stage (or the prices LP after it) was stopped or unproven."""
    found = {s.status for s in stages[:2]}
    for status in (Status.time_limit, Status.not_proven):
        if status in found:
            return status
    return Status.optimal


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


def rule_table(model: BuiltModel, rounded: Rounded, prices: StageResult) -> pd.DataFrame:
    """Each rule group: target, achieved, slack (>= 0 when kept), binding, shadow price."""
    amounts = rounded.units * float(model.round.settings.rounding_unit)
    row_of = {(r.component, r.index): i for i, r in enumerate(model.row_refs)}
    records = []
    for g in model.rule_groups:
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
