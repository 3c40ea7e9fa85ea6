"""What to change when a round is infeasible: the conflicting rules, budgets and capacities.

Works on the stage-1 matrix (the same one `solve_round` solves), never on Excel. Three steps:

1. *Conflict*: a smallest set of relaxable items that cannot hold together. Items are a hard
   rule (all its rows: every group of an `each` rule moves with the rule's one value), a fund's
   budget in a period (for a carry-over fund: the money available up to that period) and a
   program's capacity (`max_trainees`, all its periods). Eligibility, co-financing caps,
   all-or-nothing minimums and soft rules are never relaxed. When the LP relaxation is already
   infeasible HiGHS's IIS narrows the candidates; a deletion filter over items (each test one
   feasibility solve of the MILP itself) then makes the set irreducible: dropping any one item
   of it makes the conflict disappear.
2. *Alternatives*: for every item of a conflict, the smallest change of that item alone that
   makes the round feasible (everything else as the user wrote it), by bisection on the item's
   own parameter (a rule's value, a budget, a program's max_trainees). Feasibility is monotone
   in each of these (an `=` rule is searched on the side its achieved value lies), and the
   proposal is rounded outward to a readable number and checked again by a solve.
3. *A fix that works*: with several independent conflicts, one alternative per conflict,
   chosen in order with the earlier fixes applied, so the combination is feasible by
   construction; it is finally checked on the edited Round itself (rebuilt from scratch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, NoReturn

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp

from allocator.eligibility import allocation_index
from allocator.engine import Solution, solve_round
from allocator.errors import InfeasibleRoundError
from allocator.formulation import RuleGroup
from allocator.round import Measure, Op, Round
from allocator.solve import INF, MatrixProgram, new_highs
from allocator.stages.model import BuiltModel, build_model

if TYPE_CHECKING:
    from allocator.warm import Warm

BUDGET_ROWS = ("spend_fund_period_max", "spend_fund_cumulative_max")
CAPACITY_ROW = "trainees_program_period_max"
BISECTION_STEPS = 60
MAX_CONFLICTS = 8


# --- results -----------------------------------------------------------------------------------
@dataclass
class Relaxation:
    """The smallest change of one item alone that makes its conflict feasible."""

    kind: str  # "rule" | "budget" | "capacity"
    target: str  # rule_id, fund_id or program_id
    period: str | None  # budgets only
    current: float
    proposed: float | None  # None: no change of this item alone is enough
    text: str

    @property
    def works(self) -> bool:
        return self.proposed is not None

    def apply(self, rnd: Round) -> Round:
        """The round with this change made (as a user would edit the workbook)."""
        return apply_relaxations(rnd, [self])


@dataclass
class Conflict:
    """An irreducible set of items that cannot all hold, with a change per item."""

    items: list[str]  # readable names: "rule R-INC", "budget JIF 2027", "capacity of P2"
    rule_ids: list[str]
    relaxations: list[Relaxation]
    groups: dict[str, list[str]] = field(default_factory=dict)  # rule -> groups seen in the IIS
    context: list[str] = field(default_factory=list)  # fixed limits (never relaxed) involved


@dataclass
class Diagnosis:
    """Why a round is infeasible and what to change; `render()` is what the CLI prints."""

    round_id: str
    currency: str
    conflicts: list[Conflict]
    fix: list[Relaxation]  # one change per conflict; applied together they make it feasible
    fix_verified: bool
    notes: list[str] = field(default_factory=list)

    @property
    def rule_ids(self) -> list[str]:
        out: list[str] = []
        for c in self.conflicts:
            out.extend(r for r in c.rule_ids if r not in out)
        return out

    def render(self) -> str:
        lines = [f"round {self.round_id} is infeasible: "
                 f"{len(self.conflicts)} conflict{'s' if len(self.conflicts) != 1 else ''} "
                 f"(rules {', '.join(self.rule_ids) or 'none'})"]
        for n, c in enumerate(self.conflicts, 1):
            lines.append(f"conflict {n}: {', '.join(c.items)} cannot all hold")
            if c.context:
                lines.append("  given " + "; ".join(c.context))
            for rule_id, groups in c.groups.items():
                if groups:
                    lines.append(f"  {rule_id} binds in group(s) {', '.join(groups)}")
            working = [r.text for r in c.relaxations if r.works]
            if working:
                lines.append("  any one of these makes it feasible: " + "; or ".join(working))
            for r in c.relaxations:
                if not r.works:
                    lines.append(f"  ({r.text})")
        if self.fix:
            verb = "applied together these make the round feasible" if self.fix_verified \
                else "these changes were not confirmed to make the round feasible"
            lines.append(f"suggested change ({verb}): " + "; ".join(r.text for r in self.fix))
        lines.extend(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def table(self) -> pd.DataFrame:
        """One row per (conflict, item) with its smallest sufficient change."""
        rows = []
        for n, c in enumerate(self.conflicts, 1):
            for r in c.relaxations:
                rows.append({"conflict": n, "kind": r.kind, "item": r.target,
                             "period": r.period or "", "current": r.current,
                             "proposed": r.proposed, "works_alone": r.works,
                             "in_suggested_fix": any(r is f for f in self.fix),
                             "change": r.text})
        return pd.DataFrame(rows, columns=["conflict", "kind", "item", "period", "current",
                                           "proposed", "works_alone", "in_suggested_fix", "change"])


# --- items -------------------------------------------------------------------------------------
@dataclass
class _Item:
    kind: str
    target: str
    period: str | None
    rows: np.ndarray
    current: float
    name: str
    groups: list[RuleGroup] = field(default_factory=list)  # rules
    op: Op | None = None
    measure: Measure | None = None
    cost: float = 0.0  # capacity: cost per trainee


class _Model:
    """The stage-1 matrix, and builders for it with items changed or dropped."""

    def __init__(self, built: BuiltModel):
        rnd, program = built.round, built.program
        self.rnd, self.base, self.cols, self.refs = rnd, program, built.columns, built.row_refs
        self.rule_groups = built.rule_groups
        self.time_limit = rnd.settings.time_limit_s
        coo = program.A.tocoo()
        self.coo = (coo.row, coo.col, coo.data)
        # A capacity "dropped" for an all-or-nothing program still needs a finite big-M: more
        # money than the budgets and every rule's right-hand side put together.
        finite = np.abs(np.concatenate([program.row_lower, program.row_upper]))
        finite = finite[np.isfinite(finite) & (finite < INF)]
        total_budget = float(sum(b.amount for b in rnd.budgets))
        self.big_money = 10.0 * (total_budget + float(finite.sum())) + 1.0
        self.items = self._items()
        self.solves = 0

    def _items(self) -> list[_Item]:
        rnd, refs = self.rnd, self.refs
        rows_by: dict[tuple, list[int]] = {}
        row_of = {(r.component, r.index): i for i, r in enumerate(refs)}
        for g in self.rule_groups:
            row = row_of.get((g.family, (g.label,)))
            if row is not None:
                rows_by.setdefault(("rule", g.rule.rule_id), []).append(row)
        for i, r in enumerate(refs):
            if r.component in BUDGET_ROWS:
                rows_by.setdefault(("budget", r.index), []).append(i)
            elif r.component == CAPACITY_ROW:
                rows_by.setdefault(("capacity", r.index[0]), []).append(i)
        items: list[_Item] = []
        for p in rnd.programs:  # capacities first: the deletion filter drops early items first
            rows = rows_by.get(("capacity", p.program_id))
            if rows:
                items.append(_Item("capacity", p.program_id, None, np.array(rows), p.max_trainees,
                                   f"capacity of {p.program_id} ({p.max_trainees:g} trainees)",
                                   cost=p.round_cost_per_trainee))  # in-round money
        for f in rnd.funds:
            for t in rnd.periods:
                rows = rows_by.get(("budget", (f.fund_id, t)))
                if rows:
                    what = f"budget {f.fund_id} up to {t}" if f.carry_over else f"budget {f.fund_id} {t}"
                    items.append(_Item("budget", f.fund_id, t, np.array(rows),
                                       float(rnd.budget(f.fund_id, t)), what))
        by_rule: dict[str, list[RuleGroup]] = {}
        for g in self.rule_groups:
            by_rule.setdefault(g.rule.rule_id, []).append(g)
        for rule in rnd.rules:
            rows = rows_by.get(("rule", rule.rule_id))
            if rows and rule.penalty is None:
                items.append(_Item("rule", rule.rule_id, None, np.array(rows), rule.value,
                                   f"rule {rule.rule_id}", groups=by_rule[rule.rule_id],
                                   op=rule.op, measure=rule.measure))
        return items

    # -- building ------------------------------------------------------------------------------
    def build(self, params: dict[int, float | None]) -> MatrixProgram:
        """The matrix with item i's parameter set to params[i] (None: the item dropped)."""
        base = self.base
        lower, upper = base.row_lower.copy(), base.row_upper.copy()
        replaced: list[int] = []
        new_r: list[int] = []
        new_c: list[int] = []
        new_v: list[float] = []
        row_of = {(r.component, r.index): i for i, r in enumerate(self.refs)}
        for i, value in params.items():
            item = self.items[i]
            if item.kind == "rule":
                if value is None:
                    lower[item.rows], upper[item.rows] = -INF, INF
                    continue
                for g in item.groups:
                    row = row_of.get((g.family, (g.label,)))
                    if row is None:
                        continue
                    coefs: dict[int, float] = {}
                    for k in g.sel:
                        coefs[int(k)] = coefs.get(int(k), 0.0) + 1.0
                    factor, rhs = _factor_rhs(g, value)
                    for k in g.rel:
                        coefs[int(k)] = coefs.get(int(k), 0.0) - factor
                    replaced.append(row)
                    for k, v in coefs.items():
                        new_r.append(row)
                        new_c.append(int(self.cols.x[k]))
                        new_v.append(v)
                    if g.rule.op in (Op.ge, Op.eq):
                        lower[row] = rhs
                    if g.rule.op in (Op.le, Op.eq):
                        upper[row] = rhs
            elif item.kind == "budget":
                rows = self._budget_rows_from(item)
                upper[rows] = INF if value is None else upper[rows] + value
            else:  # capacity: x <= M * cost, or x - M * cost * y <= 0 for all-or-nothing
                m = self.big_money / item.cost if value is None else value
                for row in item.rows:
                    y_col = self._y_col(row)
                    if y_col is None:
                        upper[row] = INF if value is None else m * item.cost
                    else:
                        replaced.append(int(row))
                        _, c_, v_ = self._row_entries(row)
                        for c, v in zip(c_, v_, strict=True):
                            new_r.append(int(row))
                            new_c.append(int(c))
                            new_v.append(-m * item.cost if c == y_col else float(v))
        A = base.A
        if replaced:
            r, c, v = self.coo
            keep = ~np.isin(r, np.array(replaced))
            A = sp.csr_matrix((np.concatenate([v[keep], new_v]),
                               (np.concatenate([r[keep], new_r]), np.concatenate([c[keep], new_c]))),
                              shape=base.A.shape)
        return replace(base, c=np.zeros_like(base.c), A=A, row_lower=lower, row_upper=upper,
                       maximize=True)

    def _budget_rows_from(self, item: _Item) -> np.ndarray:
        """Money added to a carry-over fund in period t is available in t and every later period."""
        fund = self.rnd.fund(item.target)
        if not fund.carry_over:
            return item.rows
        later = set(self.rnd.periods[self.rnd.periods.index(item.period):])
        return np.array([i for i, r in enumerate(self.refs) if r.component == "spend_fund_cumulative_max"
                         and r.index[0] == item.target and r.index[1] in later])

    def _row_entries(self, row: int):
        r, c, v = self.coo
        mask = r == row
        return r[mask], c[mask], v[mask]

    def _y_col(self, row: int) -> int | None:
        y_cols = set(int(j) for j in self.cols.y if j >= 0)
        _, c, _ = self._row_entries(row)
        hits = [int(j) for j in c if int(j) in y_cols]
        return hits[0] if hits else None

    # -- solving -------------------------------------------------------------------------------
    def solve(self, params: dict[int, float | None]) -> np.ndarray | None:
        """A feasible point of the modified matrix, or None when it is infeasible."""
        program = self.build(params)
        h = new_highs()
        for key, value in (("random_seed", 0), ("primal_feasibility_tolerance", 1e-7),
                           ("mip_feasibility_tolerance", 1e-7), ("time_limit", float(self.time_limit))):
            h.setOptionValue(key, value)
        program.to_highs(h)
        h.run()
        self.solves += 1
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            return np.asarray(h.getSolution().col_value, dtype=float)
        return None

    def feasible(self, params: dict[int, float | None]) -> bool:
        return self.solve(params) is not None

    def lp_iis_rows(self, params: dict[int, float | None]) -> set[int] | None:
        """Rows of HiGHS's IIS of the LP relaxation, or None when the LP is feasible / no IIS."""
        program = self.build(params)
        program = replace(program, integer=np.zeros_like(program.integer), maximize=True)
        h = new_highs()
        program.to_highs(h)
        h.setOptionValue("iis_strategy", 4)  # the default (0) only runs a light test, often empty
        h.setOptionValue("iis_time_limit", float(self.time_limit))
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kInfeasible:
            return None
        try:
            status, iis = h.getIis()
        except Exception:  # an older highspy without IIS: fall back to every item
            return None
        if status == highspy.HighsStatus.kError or not iis.valid_:
            return None
        return {int(i) for i in iis.row_index_}


def _factor_rhs(g: RuleGroup, value: float) -> tuple[float, float]:
    """Coefficient on the reference money and right-hand side of a rule row for a rule value."""
    return g.measure.row(value, g.scale)


def _achieved(g: RuleGroup, x: np.ndarray) -> float | None:
    """The rule value at which the allocation x holds this row with equality (None: any)."""
    sel = float(x[g.sel].sum()) if len(g.sel) else 0.0
    rel = float(x[g.rel].sum()) if len(g.rel) else 0.0
    # x is a solver's point: a reference total within its noise of 0 is no reference.
    return g.measure.achieved(sel, rel if rel > 1e-9 else 0.0, g.scale)


# --- the search --------------------------------------------------------------------------------
def solve_diagnosed(rnd: Round, *, threads: int | None = None, method: str = "choose",
                    model: BuiltModel | None = None, warm: Warm | None = None) -> Solution:
    """`engine.solve_round` (`model` and `warm` passed on); an infeasible round's error then
    carries `.diagnosis` (a `Diagnosis`: the conflicting rules, budgets and capacities and the
    smallest change to each) and its message names the rule ids."""
    try:
        return solve_round(rnd, threads=threads, method=method, model=model, warm=warm)
    except InfeasibleRoundError as exc:
        raise_diagnosed(exc, rnd)


def raise_diagnosed(exc: InfeasibleRoundError, rnd: Round) -> NoReturn:
    """Raise `exc` again, with `.diagnosis` and the rule ids in its message (as
    `solve_diagnosed` does); for callers that solve with `engine.solve_round` and load this
    module only once a round turns out infeasible."""
    if exc.diagnosis is not None:
        raise exc
    try:
        diagnosis = diagnose_infeasible(rnd)
    except Exception as failure:  # the round is still infeasible: say so, and why not more
        raise InfeasibleRoundError(f"{exc} (the diagnosis failed: {failure})") from exc
    raise InfeasibleRoundError(diagnosis.render(), diagnosis) from None


def diagnose_infeasible(rnd: Round) -> Diagnosis:
    """Find the conflicting rules, budgets and capacities and the smallest change to each."""
    built = build_model(rnd)
    model = _Model(built)
    notes: list[str] = []
    trivial = _trivial_conflicts(built.trivial)
    fix = [c.relaxations[0] for c in trivial]
    conflicts: list[Conflict] = list(trivial)
    found: list[list[int]] = []
    dropped: dict[int, float | None] = {}
    while len(found) < MAX_CONFLICTS and not model.feasible(dropped):
        members = _conflict(model, dropped)
        if not members:
            notes.append("the conflict involves only eligibility, co-financing caps or minimum "
                         "sizes, which are not relaxed")
            break
        found.append(members)
        dropped.update({i: None for i in members})
    # Alternatives per conflict with the other conflicts dropped (what fixes this one alone).
    for k, members in enumerate(found):
        others = {i: None for j, ms in enumerate(found) if j != k for i in ms}
        rels = [_smallest_change(model, i, others) for i in _report_order(model, members)]
        conflicts.append(_conflict_record(model, members, rels, others))
    # One change per conflict, earlier fixes applied, later conflicts dropped: feasible by
    # construction at the last step.
    applied: dict[int, float | None] = {}
    for k, members in enumerate(found):
        later = {i: None for ms in found[k + 1:] for i in ms}
        first = conflicts[len(trivial) + k].relaxations if k == 0 else None  # same base: reuse
        for n, i in enumerate(_report_order(model, members)):
            rel = first[n] if first is not None else _smallest_change(model, i, {**applied, **later})
            if rel.works:
                fix.append(rel)
                applied[i] = rel.proposed
                break
    verified = bool(conflicts) and len(fix) == len(conflicts) and _verify(rnd, fix)
    if found and len(fix) < len(conflicts):
        notes.append("no single change per conflict was found; relax several items of a conflict")
    return Diagnosis(rnd.settings.round_id, rnd.settings.currency, conflicts, fix, verified, notes)


def _report_order(model: _Model, members: list[int]) -> list[int]:
    rank = {"rule": 0, "budget": 1, "capacity": 2}
    return sorted(members, key=lambda i: (rank[model.items[i].kind], i))


def _conflict(model: _Model, dropped: dict[int, float | None]) -> list[int]:
    """An irreducible set of items (deletion filter), narrowed first by the LP's IIS."""
    active = [i for i in range(len(model.items)) if i not in dropped]
    iis_rows = model.lp_iis_rows(dropped)
    if iis_rows is not None:
        narrowed = [i for i in active if iis_rows & set(model.items[i].rows.tolist())]
        rest = {i: None for i in active if i not in narrowed}
        if not model.feasible({**dropped, **rest}):
            active = narrowed
    keep = list(active)
    for i in list(keep):
        trial = dict(dropped)
        trial.update({j: None for j in range(len(model.items)) if j not in keep or j == i})
        if not model.feasible(trial):
            keep.remove(i)  # still infeasible without it: not needed for the conflict
    return keep


def _conflict_record(model: _Model, members: list[int], rels: list[Relaxation],
                     others: dict[int, float | None]) -> Conflict:
    items = [model.items[i] for i in _report_order(model, members)]
    groups: dict[str, list[str]] = {}
    iis_rows = model.lp_iis_rows({**others, **{j: None for j in range(len(model.items))
                                               if j not in members and j not in others}})
    for it in items:
        if it.kind == "rule":
            labels = []
            for g in it.groups:
                if (g.group or g.jurisdiction) and iis_rows is not None:
                    row = [i for i in it.rows if model.refs[i].index == (g.label,)]
                    if row and row[0] in iis_rows:
                        labels.append(",".join(x for x in (g.group, g.jurisdiction) if x))
            groups[it.target] = labels
    context = sorted({_hard_row_text(model, r) for r in (iis_rows or ())} - {None})
    return Conflict([it.name for it in items], [it.target for it in items if it.kind == "rule"],
                    rels, groups, context)


def _hard_row_text(model: _Model, row: int) -> str | None:
    """Readable name of a row that is never relaxed but takes part in the conflict."""
    ref = model.refs[row]
    if ref.component == "cofinancing_fund_program_period_max":
        f, p, t = ref.index
        cap = model.rnd.fund(f).cofinancing_cap
        match = model.rnd.program(p).external_match
        of = f" of a total cost {match:.0%} matched from outside" if match else ""
        return f"co-financing cap of {f} ({cap:.0%}{of}) on {p} {t}"
    if ref.component == "trainees_program_period_min":
        p, t = ref.index
        return f"all-or-nothing minimum of {p} ({model.rnd.program(p).min_trainees:g} trainees) in {t}"
    return None


def _smallest_change(model: _Model, i: int, base: dict[int, float | None]) -> Relaxation:
    """The least change of item i alone (others as in `base`) that makes the round feasible."""
    item = model.items[i]
    cur = model.rnd.settings.currency
    x = model.solve({**base, i: None})
    if x is None:
        return _relaxation(item, None, cur, why="changing it alone is not enough")
    if item.kind == "rule":
        return _rule_change(model, i, base, x)
    if item.kind == "budget":
        rows = model._budget_rows_from(item)
        act = model.base.A[rows] @ x
        hi = max(0.0, float(np.max(act - model.base.row_upper[rows]))) + 1.0
        d = _bisect(lambda v: model.feasible({**base, i: v}), 0.0, hi)
        unit = float(model.rnd.settings.rounding_unit)
        proposed = _nice(d, +1, scale=max(d, unit), unit=unit,
                         ok=lambda v: model.feasible({**base, i: v}))
        return _relaxation(item, proposed, cur)
    act = model.base.A[item.rows][:, model.cols.x] @ x[model.cols.x]
    hi = max(item.current, float(np.max(act)) / item.cost + 1.0)
    m = _bisect(lambda v: model.feasible({**base, i: v}), item.current, hi)
    proposed = float(round(m)) if abs(round(m) - m) <= 1e-6 * max(1.0, m) else float(math.ceil(m))
    if not model.feasible({**base, i: proposed}):
        proposed = float(math.ceil(hi))
    return _relaxation(item, proposed, cur)


def _rule_change(model: _Model, i: int, base: dict, x_free: np.ndarray) -> Relaxation:
    item = model.items[i]
    cur = model.rnd.settings.currency
    xs = x_free[model.cols.x]
    achieved = [a for a in (_achieved(g, xs) for g in item.groups) if a is not None]
    v = item.current

    def ok(value: float) -> bool:
        return model.feasible({**base, i: value})

    candidates: list[float] = []
    if item.op == Op.ge:
        candidates = [min(achieved) if achieved else 0.0, 0.0]
    elif item.op == Op.le:
        candidates = [max(achieved)] if achieved else []
    else:
        candidates = sorted(set(achieved), key=lambda a: abs(a - v))
    good = next((c for c in candidates if ok(c)), None)
    if good is None:
        return _relaxation(item, None, cur, why="no single value of the rule was found to work")
    found = _bisect(ok, v, good)
    direction = 1.0 if good > v else -1.0
    scale = abs(found - v)
    proposed = _nice(found, direction, scale=scale, unit=None, ok=ok)
    return _relaxation(item, proposed, cur)


def _bisect(ok, infeasible: float, feasible: float) -> float:
    """Boundary between an infeasible and a feasible parameter value; returns a feasible one."""
    lo, hi = infeasible, feasible
    tol = 1e-8 * max(1.0, abs(lo), abs(hi))
    for _ in range(BISECTION_STEPS):
        if abs(hi - lo) <= tol:
            break
        mid = 0.5 * (lo + hi)
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _nice(value: float, direction: float, *, scale: float, unit: float | None, ok) -> float:
    """A short number beyond `value` in `direction` (the relaxing side) that still works.

    Coarser is preferred as long as it gives away at most 1% of the change and of the value
    itself; every candidate is checked by a solve because an `=` rule is feasible only on an
    interval.
    """
    near = 1e-6 * max(1.0, abs(value))  # the boundary itself is a short number: use it
    top = 3 - math.floor(math.log10(abs(value))) if value else 0  # at most 4 significant digits
    for digits in range(-9, top + 1):
        n = round(value, digits)
        if unit:
            n = round(n / unit) * unit
        if abs(n - value) <= near and ok(n):
            return n
    slack = 0.01 * (min(abs(scale), abs(value)) if value else abs(scale))
    for digits in range(-9, 13):
        step = 10.0 ** (-digits)
        if unit:
            step = max(step, unit)
            step = math.ceil(step / unit) * unit
        n = math.ceil(value / step - 1e-12) * step if direction > 0 else \
            math.floor(value / step + 1e-12) * step
        n = round(n, 12)
        if abs(n - value) <= slack + 1e-12 and ok(n):
            return n
    return value


def _relaxation(item: _Item, proposed: float | None, currency: str, why: str = "") -> Relaxation:
    if proposed is None:
        return Relaxation(item.kind, item.target, item.period, item.current, None,
                          f"{item.name}: {why}")
    if item.kind == "rule":
        verb = "lower" if proposed < item.current else "raise"
        text = f"{verb} {item.target} from {_num(item.current)} to {_num(proposed)}"
    elif item.kind == "budget":
        text = f"add {currency} {_amount(proposed)} to {item.target} {item.period}"
    else:
        text = (f"raise max_trainees of {item.target} from {_num(item.current)} to "
                f"{_num(proposed)}")
    return Relaxation(item.kind, item.target, item.period, item.current, proposed, text)


def _num(v: float) -> str:
    if float(v).is_integer() and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.12g}"


def _amount(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


# --- trivial rows, verification, edits ---------------------------------------------------------
def _trivial_conflicts(trivial: list[tuple[RuleGroup, bool]]) -> list[Conflict]:
    """Rules whose selection holds no eligible allocation and whose target is not 0."""
    out = []
    seen: set[str] = set()
    for g, holds in trivial:
        rule = g.rule
        if holds or rule.rule_id in seen or rule.penalty is not None:
            continue
        seen.add(rule.rule_id)
        verb = "lower" if rule.value > 0 else "raise"
        rel = Relaxation("rule", rule.rule_id, None, rule.value, 0.0,
                         f"{verb} {rule.rule_id} from {_num(rule.value)} to 0 (no eligible "
                         "allocation matches its selection)")
        out.append(Conflict([f"rule {rule.rule_id}"], [rule.rule_id], [rel],
                            {rule.rule_id: [g.group] if g.group else []}))
    return out


def _verify(rnd: Round, fix: list[Relaxation]) -> bool:
    """Stage-1 feasibility of the round with the changes made, rebuilt from the Round."""
    edited = apply_relaxations(rnd, fix)
    built = build_model(edited)
    if any(not holds for _, holds in built.trivial):
        return False
    return _Model(built).feasible({})


def apply_relaxations(rnd: Round, changes: list[Relaxation]) -> Round:
    """The round with rule values, budgets and max_trainees changed as proposed."""
    data = rnd.model_dump()
    for ch in changes:
        if ch.proposed is None:
            continue
        if ch.kind == "rule":
            for r in data["rules"]:
                if r["rule_id"] == ch.target:
                    r["value"] = ch.proposed
        elif ch.kind == "capacity":
            for p in data["programs"]:
                if p["program_id"] == ch.target:
                    p["max_trainees"] = ch.proposed
        else:
            add = Decimal(str(ch.proposed))
            for b in data["budgets"]:
                if b["fund_id"] == ch.target and b["period"] == ch.period:
                    b["amount"] = Decimal(b["amount"]) + add
                    break
            else:
                data["budgets"].append({"fund_id": ch.target, "period": ch.period, "amount": add})
                order = {t: n for n, t in enumerate(rnd.periods)}
                data["budgets"].sort(key=lambda b: (b["fund_id"], order.get(b["period"], 0)))
    return Round.model_validate(data)


# --- checks before any solve -------------------------------------------------------------------
def cheap_checks(rnd: Round) -> list[str]:
    """Rules that need more money than can ever reach their selection, found without a solve.

    For every hard `amount` / `per_capita` rule row with `>=` or `=`: the money it needs is
    compared with two upper bounds on what its selection can receive: the budgets of the funds
    that can pay it in the periods they can pay it (cumulative up to the last such period for
    a carry-over fund) and the capacities of the selected programs in those periods. Never
    a false alarm: both are true upper bounds.
    """
    index = allocation_index(rnd)
    from allocator.formulation import rule_groups

    cur = rnd.settings.currency
    out: list[str] = []
    periods = list(rnd.periods)
    for g in rule_groups(rnd, index):
        rule = g.rule
        if rule.penalty is not None or rule.op == Op.le:
            continue
        if g.measure.has_reference:  # a share-type row's rhs is 0, not money needed
            continue
        need = g.rhs
        if need <= 0:
            continue
        sel = g.sel
        where = f"rule {rule.rule_id}" + (f" (group {g.group})" if g.group else "")
        if len(sel) == 0:
            out.append(f"{where} needs {cur} {_amount(need)} but no eligible allocation matches "
                       "its selection")
            continue
        money = 0.0
        funds = sorted({int(f) for f in index.f[sel]})
        for fi in funds:
            fund = rnd.funds[fi]
            ts = sorted({int(t) for t, f in zip(index.t[sel], index.f[sel], strict=True) if f == fi})
            if fund.carry_over:
                money += float(sum(rnd.budget(fund.fund_id, p) for p in periods[: ts[-1] + 1]))
            else:
                money += float(sum(rnd.budget(fund.fund_id, periods[t]) for t in ts))
        pts = sorted({(int(p), int(t)) for p, t in zip(index.p[sel], index.t[sel], strict=True)})
        capacity = sum(rnd.programs[p].max_trainees * rnd.programs[p].round_cost_per_trainee
                       for p, _ in pts)  # money from the round: the external match aside
        tol = 1e-6 * max(1.0, need)
        if need > money + tol:
            names = ", ".join(rnd.funds[f].fund_id for f in funds)
            out.append(f"{where} needs {cur} {_amount(need)} but the funds that can pay its "
                       f"selection ({names}) hold at most {cur} {_amount(money)} in its periods; "
                       f"lower {rule.rule_id} or add {cur} {_amount(need - money)} to those funds")
        elif need > capacity + tol:
            out.append(f"{where} needs {cur} {_amount(need)} but the selected programs can take "
                       f"at most {cur} {_amount(capacity)} (max_trainees x cost_per_trainee); "
                       f"lower {rule.rule_id} or raise max_trainees")
    return out


def write_diagnosis(diagnosis: Diagnosis, path) -> None:
    """Write the diagnosis workbook (Summary and Changes sheets), atomically."""
    from pathlib import Path

    from openpyxl import Workbook

    from allocator import excel
    from allocator.atomic import atomic_path

    wb = Workbook()
    wb.remove(wb.active)
    footer = f"{diagnosis.round_id}: why the round is infeasible"
    lines = [[line] for line in diagnosis.render().splitlines()]
    excel.write_table(wb, "Summary", ["line"], lines, footer=footer)
    table = diagnosis.table()
    rows = [[None if (isinstance(v, float) and math.isnan(v)) else
             (bool(v) if isinstance(v, np.bool_) else v) for v in row]
            for row in table.itertuples(index=False)]
    excel.write_table(wb, "Changes", list(table.columns), rows,
                      {"conflict": "count", "current": "number", "proposed": "number"},
                      footer=footer)
    with atomic_path(Path(path)) as tmp:
        wb.save(tmp)


__all__ = ["Conflict", "Diagnosis", "Relaxation", "apply_relaxations", "cheap_checks",
           "diagnose_infeasible", "write_diagnosis"]
