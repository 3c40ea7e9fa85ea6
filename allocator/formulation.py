"""The allocation LP/MILP as a Pyomo model: one `define_*` function per constraint family.

Stage 3b of the data flow: validated round + eligible index -> Pyomo model. Notation:
x[k] >= 0 is the money fund f gives program p for delivery in region r in period t, for the
k-th eligible (p, r, f, t); y[p, t] in {0, 1} says whether an all-or-nothing program runs in t.
`create_model` reads as the model's table of contents. Row names follow
`<quantity>_<scope>_<bound>[index]`, and every rule row carries its rule id and group.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

# pyomo.core, not pyomo.environ: environ's solver and transformation plugins (333 more modules,
# 0.1-0.25 s of every run) are not used to build and compile a model.
import pyomo.core as pyo
from pyomo.common.gc_manager import PauseGC
from pyomo.core.expr.numeric_expr import LinearExpression

from allocator.eligibility import AllocationIndex, allocation_index
from allocator.filters import DIMENSIONS, conditioned_dimensions, groups, intersect, passing
from allocator.filters import resolve_key as _resolve
from allocator.measures import MEASURES, Measure, Reference, Scale, rule_family
from allocator.round import Op, Round, RuleRow


@dataclass
class RuleGroup:
    """One row of a rule: sum(x[sel]) - factor * sum(x[rel]) (op) rhs."""

    rule: RuleRow
    group: str | None  # value of `each`, None without `each`
    jurisdiction: str | None  # contribution_share: the contributor this row is about
    sel: np.ndarray  # variable indices of the selected money
    rel: np.ndarray  # variable indices of the reference money (share rules), else empty
    factor: float  # coefficient on the reference money
    rhs: float  # constant right-hand side (amount, per_capita)
    # What the measure divides by besides the reference total (allocator.measures): the
    # inhabitants (per_capita), the contributor's share c_j (contribution_share), else 1.
    scale: float = 1.0

    @property
    def measure(self) -> Measure:
        return MEASURES[self.rule.measure]

    @property
    def key(self) -> tuple[str, str, str]:
        """(rule_id, group, jurisdiction) as the rules table holds them ("" when none)."""
        return self.rule.rule_id, self.group or "", self.jurisdiction or ""

    @property
    def label(self) -> str:
        parts = [self.rule.rule_id]
        if self.group is not None:
            parts.append(self.group)
        if self.jurisdiction is not None:
            parts.append(self.jurisdiction)
        return ",".join(parts)

    @property
    def family(self) -> str:
        return rule_family(self.rule.measure.value, self.rule.op.value)


@dataclass
class Formulation:
    """The Pyomo model with what later stages need to read it back."""

    model: pyo.ConcreteModel
    index: AllocationIndex
    value_per_unit: np.ndarray  # objective coefficient of each x: v_p / cost_p
    rule_groups: list[RuleGroup]
    binaries: list[tuple[str, str]]  # (program, period) of each y, in order
    trivial: list[tuple[RuleGroup, bool]] = field(default_factory=list)  # rows with no variable
    robust_programs: list[str] = field(default_factory=list)  # program of each mu, in order


def create_model(rnd: Round, index: AllocationIndex | None = None) -> Formulation:
    """Build the stage-1 model: maximise outcome value subject to every hard rule."""
    index = index if index is not None else allocation_index(rnd)
    # Millions of Pyomo objects, none of them garbage yet: the cyclic collector's full passes
    # over them were half of the build time at 50,000 programs (33 s -> 15 s without).
    with PauseGC():
        m = pyo.ConcreteModel(name=rnd.settings.round_id)
        form = Formulation(m, index, value_per_unit(rnd, index), rule_groups(rnd, index), [])
        define_allocations(m, form)
        define_program_switches(m, rnd, form)
        define_budget_limits(m, rnd, form)
        define_capacity_limits(m, rnd, form)
        define_minimum_sizes(m, rnd, form)
        define_cofinancing_caps(m, rnd, form)
        define_rules(m, form)
        define_robust_protection(m, rnd, form)
        define_outcome_objective(m, form)
    return form


# --- variables ---------------------------------------------------------------------------------
def define_allocations(m: pyo.ConcreteModel, form: Formulation) -> None:
    """x[k] >= 0: money for the k-th eligible (program, region, fund, period)."""
    m.x = pyo.Var(range(len(form.index)), domain=pyo.NonNegativeReals)
    m.xs = [m.x[k] for k in range(len(form.index))]


def define_program_switches(m: pyo.ConcreteModel, rnd: Round, form: Formulation) -> None:
    """y[p, t] in {0, 1} for every program-period with min_trainees > 0 and eligible money."""
    idx = form.index
    needs = {p.program_id for p in rnd.programs if p.min_trainees > 0}
    keys = sorted({(int(p), int(t)) for p, t in zip(idx.p, idx.t, strict=True)
                   if idx.programs[p] in needs})
    form.binaries = [(idx.programs[p], idx.periods[t]) for p, t in keys]
    m.y = pyo.Var(range(len(keys)), domain=pyo.Binary)
    m.y_of = {key: k for k, key in enumerate(form.binaries)}


# --- objective ---------------------------------------------------------------------------------
def value_per_unit(rnd: Round, index: AllocationIndex) -> np.ndarray:
    """Outcome value bought by one currency unit of each x: v_p / (cost_p (1 - e_p)).

    With an external match e_p, a unit of round money brings 1 / (1 - e_p) units of total cost.
    """
    per_program = np.array([rnd.value_per_trainee(p) / p.round_cost_per_trainee
                            for p in rnd.programs])
    return per_program[index.p] if len(index) else np.zeros(0)


def define_outcome_objective(m: pyo.ConcreteModel, form: Formulation) -> None:
    """Maximise sum over p, t of v_p * trainees[p, t], minus penalties on soft-rule shortfalls."""
    coefs = [float(c) for c in form.value_per_unit]
    variables = list(m.xs)
    for (rule_id, _), slacks in getattr(m, "soft_slack_of", {}).items():
        for slack, _sign in slacks:
            coefs.append(-float(m.penalty_of[rule_id]))
            variables.append(m.s[slack])
    if form.robust_programs:  # the Bertsimas-Sim protection, see define_robust_protection
        coefs.append(-float(m.robust_gamma))
        variables.append(m.robust_lambda[0])
        coefs.extend([-1.0] * len(form.robust_programs))
        variables.extend(m.robust_mu[j] for j in range(len(form.robust_programs)))
    m.outcome = pyo.Objective(expr=_linear(coefs, variables), sense=pyo.maximize)


def robust_deviation_per_unit(rnd: Round, index: AllocationIndex) -> np.ndarray:
    """z * s_p / (cost_per_trainee_p * (1 - e_p)) for each x: the value per currency unit the robust
    objective guards against losing, should program p fall short by z standard errors."""
    z = rnd.settings.robust_level
    per_program = np.array([z * rnd.spread_per_trainee(p) / p.round_cost_per_trainee
                            for p in rnd.programs])
    return per_program[index.p] if len(index) else np.zeros(0)


def define_robust_protection(m: pyo.ConcreteModel, rnd: Round, form: Formulation) -> None:
    """lambda + mu_p >= z * s_p * T_p per program with s_p > 0; objective - Gamma*lambda - sum mu_p.

    The dual of max over {u in [0,1]^P, sum u <= Gamma} of sum_p u_p * z * s_p * T_p (the
    largest shortfall when at most Gamma programs, the last fractionally, fall short by z
    standard errors; Bertsimas and Sim 2004), so the protected objective stays linear.
    With Gamma = 0, or no program with a spread, nothing is added: the model is the nominal one.
    """
    if rnd.settings.robust_gamma <= 0:
        return
    deviation = robust_deviation_per_unit(rnd, form.index)
    idx = form.index
    ks_of: dict[int, list[int]] = defaultdict(list)
    for k in np.flatnonzero(deviation > 0).tolist():
        ks_of[int(idx.p[k])].append(k)
    if not ks_of:
        return
    order = sorted(ks_of)
    form.robust_programs = [idx.programs[p] for p in order]
    m.robust_gamma = float(rnd.settings.robust_gamma)
    m.robust_lambda = pyo.Var(range(1), domain=pyo.NonNegativeReals)
    m.robust_mu = pyo.Var(range(len(order)), domain=pyo.NonNegativeReals)

    position = {pid: j for j, pid in enumerate(form.robust_programs)}

    def rule(m, program_id):
        j = position[program_id]
        ks = ks_of[order[j]]
        return _linear([1.0, 1.0] + [-float(deviation[k]) for k in ks],
                       [m.robust_lambda[0], m.robust_mu[j]] + [m.xs[k] for k in ks]) >= 0

    m.protection_program_min = pyo.Constraint(form.robust_programs, rule=rule)


# --- hard limits -------------------------------------------------------------------------------
def budget_caps(rnd: Round) -> dict[tuple[str, str], float]:
    """(fund, period) -> the right-hand side of its budget row: the budget (with carry-over,
    the budgets up to that period) in whole rounding units. Also what a sweep point sets
    in place (`allocator.warm.point_model`)."""
    unit = float(rnd.settings.rounding_unit)
    out = {}
    for fund in rnd.funds:
        for ti, period in enumerate(rnd.periods):
            periods = rnd.periods[: ti + 1] if fund.carry_over else [period]
            cap = sum((rnd.budget(fund.fund_id, p) for p in periods), Decimal(0))
            out[(fund.fund_id, period)] = whole_units_below(float(cap), unit)
    return out


def define_budget_limits(m: pyo.ConcreteModel, rnd: Round, form: Formulation) -> None:
    """Spending of a fund in a period is at most its budget; with carry-over, cumulatively."""
    idx = form.index
    caps = budget_caps(rnd)
    by_ft: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, (f, t) in enumerate(zip(idx.f, idx.t, strict=True)):
        by_ft[(int(f), int(t))].append(k)
    plain, cumulative = {}, {}
    for fi, fund in enumerate(rnd.funds):
        for ti, period in enumerate(rnd.periods):
            if fund.carry_over:
                ks = [k for tj in range(ti + 1) for k in by_ft.get((fi, tj), [])]
                target = cumulative
            else:
                ks = by_ft.get((fi, ti), [])
                target = plain
            if ks:
                target[(fund.fund_id, period)] = (ks, caps[(fund.fund_id, period)])
    m.spend_fund_period_max = _rows_le(m, plain)
    m.spend_fund_cumulative_max = _rows_le(m, cumulative)


def define_capacity_limits(m: pyo.ConcreteModel, rnd: Round, form: Formulation) -> None:
    """Money for a program in a period is at most max_trainees * cost * (1 - e) (times y)."""
    unit = float(rnd.settings.rounding_unit)
    rows = {}
    for (p, t), ks in _by_program_period(form).items():
        prog = rnd.program(p)
        cap = whole_units_below(prog.max_trainees * prog.round_cost_per_trainee, unit)
        rows[(p, t)] = (ks, cap)

    def rule(m, p, t):
        ks, cap = rows[(p, t)]
        y = m.y_of.get((p, t))
        if y is None:
            return _linear([1.0] * len(ks), [m.xs[k] for k in ks]) <= cap
        return _linear([1.0] * len(ks) + [-cap], [m.xs[k] for k in ks] + [m.y[y]]) <= 0

    m.trainees_program_period_max = pyo.Constraint(list(rows), rule=rule)


def define_minimum_sizes(m: pyo.ConcreteModel, rnd: Round, form: Formulation) -> None:
    """An all-or-nothing program gets at least min_trainees * cost * (1 - e) in a period, or 0."""
    unit = float(rnd.settings.rounding_unit)
    if not form.binaries:
        return
    groups_ = _by_program_period(form)

    def rule(m, p, t):
        prog = rnd.program(p)
        ks = groups_[(p, t)]
        need = whole_units_above(prog.min_trainees * prog.round_cost_per_trainee, unit)
        return _linear([1.0] * len(ks) + [-need], [m.xs[k] for k in ks] + [m.y[m.y_of[(p, t)]]]) >= 0

    m.trainees_program_period_min = pyo.Constraint(form.binaries, rule=rule)


def define_cofinancing_caps(m: pyo.ConcreteModel, rnd: Round, form: Formulation) -> None:
    """x_f <= cap_f * X / (1 - e): a fund pays at most its cap of a program-period's total cost.

    X is the program-period's in-round money; X / (1 - e) its total cost with the external
    match. Where cap_f / (1 - e) >= 1 the row can never bind and is left out.
    """
    idx = form.index
    capped = {fi for fi, f in enumerate(rnd.funds) if f.cofinancing_cap < 1}
    if not capped:
        return
    rows = {}
    for (p, t), ks in _by_program_period(form).items():
        in_round = 1.0 - rnd.program(p).external_match
        for fi in sorted({int(idx.f[k]) for k in ks} & capped):
            cap = rnd.funds[fi].cofinancing_cap / in_round
            if cap >= 1.0:
                continue
            coefs = [(1.0 - cap) if idx.f[k] == fi else -cap for k in ks]
            rows[(rnd.funds[fi].fund_id, p, t)] = (ks, coefs)
    m.cofinancing_fund_program_period_max = pyo.Constraint(
        list(rows), rule=lambda m, f, p, t: _linear(rows[(f, p, t)][1],
                                                    [m.xs[k] for k in rows[(f, p, t)][0]]) <= 0
    )


# --- rules -------------------------------------------------------------------------------------
def rule_groups(rnd: Round, index: AllocationIndex) -> list[RuleGroup]:
    """Expand every rule into its rows: one per group of `each` (and per contributor)."""
    out: list[RuleGroup] = []
    for rule in rnd.rules:
        out.extend(_expand_rule(rnd, index, rule))
    return out


def _expand_rule(rnd: Round, index: AllocationIndex, rule: RuleRow) -> list[RuleGroup]:
    measure = MEASURES[rule.measure]
    selected = passing(rule.select, rnd)
    relative = passing(rule.relative_to, rnd)
    each_dim = _resolve(rule.each, rnd).dimension if rule.each else None
    rows = []
    for value, group in groups(rule.each, rule.select, rnd):
        sel_dims = intersect(selected, group)
        sel = np.flatnonzero(index.mask(sel_dims))
        if measure.scale == Scale.contribution:
            rows.extend(_contribution_rows(rnd, index, rule, value, sel_dims, sel))
            continue
        if measure.reference == Reference.relative_to:
            rel = np.flatnonzero(index.mask(relative))
        elif measure.reference == Reference.relative_to_in_group:
            rel = np.flatnonzero(index.mask(intersect(relative, group)))
        else:
            rel = np.zeros(0, dtype=np.int64)
        scale = _population(rnd, rule, sel_dims, each_dim) \
            if measure.scale == Scale.population else 1.0
        factor, rhs = measure.row(rule.value, scale)
        rows.append(RuleGroup(rule, value, None, sel, rel, factor, rhs, scale))
    return rows


def _population(rnd: Round, rule: RuleRow, sel_dims: dict, each_dim: str | None) -> float:
    """Inhabitants of the regions passing the selection's region conditions and the group."""
    region_limited = "region" in conditioned_dimensions(rule.select, rnd) or each_dim == "region"
    regions = sel_dims["region"] if region_limited else {r.region_id for r in rnd.regions}
    return float(sum(r.population for r in rnd.regions if r.region_id in regions))


def contribution_shares(rnd: Round, funds: frozenset[str] | set[str]) -> dict[str, float]:
    """Each jurisdiction's share of the contributions to the given funds."""
    paid: dict[str, float] = defaultdict(float)
    for c in rnd.contributions:
        if c.fund_id in funds:
            paid[c.jurisdiction] += float(c.amount)
    total = sum(paid.values())
    return {j: v / total for j, v in sorted(paid.items()) if v > 0} if total > 0 else {}


def _contribution_rows(rnd: Round, index: AllocationIndex, rule: RuleRow, value: str | None,
                       sel_dims: dict, sel: np.ndarray) -> list[RuleGroup]:
    shares = contribution_shares(rnd, sel_dims["fund"])
    region_of = {r.region_id: r.jurisdiction for r in rnd.regions}
    jur = np.array([region_of[index.regions[c]] for c in index.r[sel]], dtype=object)
    measure = MEASURES[rule.measure]
    rows = []
    for j, c_j in shares.items():
        sel_j = sel[jur == j] if len(sel) else sel
        # The reference total is all the selected money; the row is sel_j - v c_j sel (op) 0.
        factor, rhs = measure.row(rule.value, c_j)
        rows.append(RuleGroup(rule, value, j, sel_j, sel, factor, rhs, c_j))
    return rows


def define_rules(m: pyo.ConcreteModel, form: Formulation) -> None:
    """Every rule row: selected money (op) value, share of a reference total, or per capita.

    Rows are indexed by their label ("R1", "R1,A", "R1,2027,B") so rules with and without
    `each` share a family. A soft rule (with a penalty) gets a shortfall slack s >= 0 — and,
    for `=`, an excess slack too — priced in the objective; a soft row stays in the model even
    when no eligible money matches its selection, so missing it costs its penalty.
    """
    m.soft_slack_of = {}  # (rule_id, label) -> [(slack index, sign in the row)]
    m.penalty_of = {}
    m.total_of = {}  # RuleGroup label -> index of the reference total t it uses
    by_family: dict[str, dict[str, RuleGroup]] = defaultdict(dict)
    totals: dict[bytes, int] = {}
    reference_sets: list[np.ndarray] = []
    n_slacks = 0
    for g in form.rule_groups:
        soft = g.rule.penalty is not None
        if len(g.sel) == 0 and len(g.rel) == 0 and not soft:
            form.trivial.append((g, _holds(0.0, g.rule.op, g.rhs)))
            continue
        by_family[g.family][g.label] = g
        if len(g.rel):
            key = np.sort(g.rel).tobytes()
            if key not in totals:
                totals[key] = len(reference_sets)
                reference_sets.append(np.sort(g.rel))
            m.total_of[(g.family, g.label)] = totals[key]
        if soft:
            signs = {Op.ge: [1.0], Op.le: [-1.0], Op.eq: [1.0, -1.0]}[g.rule.op]
            m.soft_slack_of[(g.rule.rule_id, g.label)] = [(n_slacks + i, sign)
                                                          for i, sign in enumerate(signs)]
            n_slacks += len(signs)
            m.penalty_of[g.rule.rule_id] = g.rule.penalty
    m.s = pyo.Var(range(n_slacks), domain=pyo.NonNegativeReals)
    define_reference_totals(m, reference_sets)
    for family in sorted(by_family):
        rows = by_family[family]
        m.add_component(family, pyo.Constraint(list(rows), rule=_rule_row(rows)))


def define_reference_totals(m: pyo.ConcreteModel, reference_sets: list[np.ndarray]) -> None:
    """t[j] equals the money in the j-th reference set shared by share-type rule rows.

    One defining row per distinct reference total keeps each share row short: a dozen rules
    measured against "all money" would otherwise each repeat every x.
    """
    m.t = pyo.Var(range(len(reference_sets)), domain=pyo.NonNegativeReals)
    if not reference_sets:
        return
    m.reference_total_define = pyo.Constraint(
        range(len(reference_sets)),
        rule=lambda m, j: _linear([1.0] + [-1.0] * len(reference_sets[j]),
                                  [m.t[j]] + [m.xs[int(k)] for k in reference_sets[j]]) == 0)


def _rule_row(rows: dict[str, RuleGroup]):
    def rule(m, label):
        g = rows[label]
        ks = sorted(int(k) for k in g.sel)
        variables = [m.xs[k] for k in ks]
        values = [1.0] * len(ks)
        if len(g.rel):
            variables.append(m.t[m.total_of[(g.family, g.label)]])
            values.append(-g.factor)
        for slack, sign in m.soft_slack_of.get((g.rule.rule_id, g.label), []):
            variables.append(m.s[slack])
            values.append(sign)
        body = _linear(values, variables)
        if g.rule.op == Op.ge:
            return body >= g.rhs
        if g.rule.op == Op.le:
            return body <= g.rhs
        return body == g.rhs

    return rule


def _holds(lhs: float, op: Op, rhs: float, tol: float = 1e-9) -> bool:
    if op == Op.ge:
        return lhs >= rhs - tol
    if op == Op.le:
        return lhs <= rhs + tol
    return abs(lhs - rhs) <= tol


# --- helpers -----------------------------------------------------------------------------------
def whole_units_below(amount: float, unit: float) -> float:
    """The largest whole number of rounding units not above `amount`.

    Budgets and capacities are stated in these terms so that rounding never has to exceed
    one; an all-or-nothing program whose minimum and maximum hold no whole number of units
    between them can then only be switched off, which the MILP sees before it solves.
    """
    return math.floor(amount / unit + 1e-9) * unit


def whole_units_above(amount: float, unit: float) -> float:
    """The smallest whole number of rounding units not below `amount`."""
    return math.ceil(amount / unit - 1e-9) * unit

def _linear(coefs: list[float], variables: list) -> LinearExpression:
    return LinearExpression(linear_coefs=coefs, linear_vars=variables)


def _rows_le(m: pyo.ConcreteModel, rows: dict[tuple, tuple[list[int], float]]) -> pyo.Constraint:
    return pyo.Constraint(
        list(rows), rule=lambda m, *key: _linear([1.0] * len(rows[key][0]),
                                                 [m.xs[k] for k in rows[key][0]]) <= rows[key][1]
    )


def _by_program_period(form: Formulation) -> dict[tuple[str, str], list[int]]:
    cache = form.__dict__.setdefault("_by_pt", None)
    if cache is None:
        idx = form.index
        cache = defaultdict(list)
        for k, (p, t) in enumerate(zip(idx.p, idx.t, strict=True)):
            cache[(idx.programs[p], idx.periods[t])].append(k)
        form.__dict__["_by_pt"] = cache
    return cache


__all__ = ["DIMENSIONS", "Formulation", "RuleGroup", "create_model", "rule_groups"]
