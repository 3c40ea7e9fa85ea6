"""An independent re-check of an allocation against every rule of a round.

Auditors (and `allocator verify`) must be able to confirm that a recorded allocation keeps
every rule without trusting the code that produced it. This module therefore re-implements,
in plain pandas/Python and straight from DESIGN.md, filter matching, eligibility, the groups
of `each` rules and every measure. It imports the round's data classes only: nothing from the
solver, the formulation, the eligibility index or the filter-matching functions.

    violations = check_allocation(rnd, allocation)   # [] when everything holds
    rule_values(rnd, allocation)                     # one row per rule group, for reports
    soft_shortfalls(rnd, allocation)                 # what penalised (soft) rules miss

Tolerances:
- hard limits (budgets, capacity, minimums, co-financing caps) and every comparison that
  involves no rounding choice get only a float tolerance: 1e-6 relative (at least 1e-6
  currency units);
- a rule row may also be missed by what rounding can explain. Rounding moves each amount by
  less than one unit, so a row fed by n allocation rows can move by up to n units; the
  engine's rounding step keeps rows within a unit or two, so the default is capped:
  `rounding_unit * min(n, RULE_SLACK_CAP_UNITS)`. Pass `tolerance=` to use one absolute
  slack (in currency) for every rule row instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from allocator.filters import Condition, Filter
from allocator.round import FundKind, Measure, Op, ProgramRow, Round, RuleRow

REQUIRED_COLUMNS = ("program_id", "region_id", "fund_id", "period", "amount")
RELATIVE_TOLERANCE = 1e-6  # hard limits: float noise only
RULE_SLACK_CAP_UNITS = 10  # default rule slack never exceeds this many rounding units
DIMENSIONS = ("program", "region", "fund", "period")
ID_COLUMN = {"program": "program_id", "region": "region_id", "fund": "fund_id", "period": "period"}
KINDS = ("unknown_id", "negative", "rounding", "eligibility", "gating", "budget", "capacity",
         "minimum", "cofinancing", "rule")


@dataclass(frozen=True)
class Violation:
    """One broken constraint: which family, where, in words, and by how much (currency)."""

    kind: str  # one of KINDS
    where: str  # e.g. "JIF 2027", "P-12 2026", "rule R-INC group A / jurisdiction B"
    message: str  # plain language, with target, achieved and the amount missed
    amount: float  # how much (currency) the constraint is missed by


# ==============================================================================================
# Public entry points
# ==============================================================================================
def check_allocation(rnd: Round, allocation: pd.DataFrame, *,
                     tolerance: float | None = None) -> list[Violation]:
    """Every violated hard constraint of the round in `allocation` (empty list: all hold).

    `allocation` needs columns program_id, region_id, fund_id, period and amount (currency);
    other columns are ignored. `tolerance` is the absolute slack (currency) on rule rows;
    None means rounding_unit x (allocation rows entering the row), capped at
    RULE_SLACK_CAP_UNITS units. Soft (penalised) rules are reported by `soft_shortfalls`.
    """
    alloc = _normalise(allocation)
    known = _known_rows(rnd, alloc)
    out: list[Violation] = []
    out += check_ids(rnd, alloc)
    out += check_amounts(rnd, alloc)
    out += check_eligibility(rnd, alloc[known])
    out += check_gating(rnd, alloc[known])
    out += check_budgets(rnd, alloc[known])
    out += check_capacity(rnd, alloc[known])
    out += check_minimums(rnd, alloc[known])
    out += check_cofinancing(rnd, alloc[known])
    out += check_rules(rnd, alloc[known], tolerance=tolerance)
    return out


def rule_values(rnd: Round, allocation: pd.DataFrame, *,
                tolerance: float | None = None) -> pd.DataFrame:
    """One row per rule group: selected money (lhs) against required money (rhs), and more.

    Columns: rule_id, group, jurisdiction, measure, op, achieved, target, lhs, rhs, missed,
    tolerance, soft, penalty, reference, population, contribution, rows.
    Every row reads `lhs op rhs`, both in currency: lhs is the selected money S(sel and g) —
    for contribution_share the part delivered in `jurisdiction` — and rhs what the rule asks
    of it: value (amount), value*S(relative_to[, and g]) (share, share_within), value*POP
    (per_capita) or value*c_j*S(sel and g) (contribution_share). `achieved`/`target` are in the
    rule's own unit: money, share, money per inhabitant, or for contribution_share the
    jurisdiction's share of the selected money divided by its share of the contributions
    (target = value). `missed` is the currency amount by which the row fails (0 when it holds,
    ignoring tolerance); `group`/`jurisdiction` are "" where they do not apply.
    """
    alloc = _normalise(allocation)
    rows = _rule_rows(rnd, alloc[_known_rows(rnd, alloc)], tolerance)
    columns = ["rule_id", "group", "jurisdiction", "measure", "op", "achieved", "target", "lhs",
               "rhs", "missed", "tolerance", "soft", "penalty", "reference",
               "population", "contribution", "rows"]
    return pd.DataFrame.from_records([r.record() for r in rows], columns=columns)


def soft_shortfalls(rnd: Round, allocation: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(rule_id, group_label) -> shortfall in currency (0.0 when met) of every soft rule group.

    group_label is "" for a rule without `each`, the group value ("A"), or for
    contribution_share "group / jurisdiction" (just the jurisdiction without `each`). The
    shortfall is the raw miss, with no tolerance: it is what the penalty is charged on.
    """
    alloc = _normalise(allocation)
    rows = _rule_rows(rnd, alloc[_known_rows(rnd, alloc)], None)
    return {(r.rule.rule_id, r.group_label): r.missed for r in rows if r.rule.penalty is not None}


# ==============================================================================================
# Constraint families: one function each
# ==============================================================================================
def check_ids(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """Every program, region, fund and period of the allocation exists in the round."""
    known = _ids(rnd)
    out = []
    for row in alloc.itertuples():
        missing = [f"{dim} {getattr(row, ID_COLUMN[dim])!r}" for dim in DIMENSIONS
                   if getattr(row, ID_COLUMN[dim]) not in known[dim]]
        if missing:
            out.append(Violation("unknown_id", f"allocation row {row.Index}: {_combo(row)}",
                                 f"{' and '.join(missing)} not in the round; "
                                 f"{_money(rnd, row.amount)} cannot be checked",
                                 _abs(row.amount)))
    return out


def check_amounts(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """Every amount is a finite number >= 0 and a whole multiple of the rounding unit."""
    unit = float(rnd.settings.rounding_unit)
    out = []
    for row in alloc.itertuples():
        amount = row.amount
        if not math.isfinite(amount) or amount < 0:
            out.append(Violation("negative", _combo(row),
                                 f"amount {amount!r} is not a number >= 0", _abs(amount)))
            continue
        units = amount / unit
        off = abs(units - round(units))
        if off > max(RELATIVE_TOLERANCE, 1e-12 * units):
            out.append(Violation("rounding", _combo(row),
                                 f"{_money(rnd, amount)} is not a whole multiple of the rounding "
                                 f"unit {_money(rnd, unit)} (off by {_money(rnd, off * unit)})",
                                 off * unit))
    return out


def check_eligibility(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """Money goes only to eligible (p, r, f, t): active period, own region, fund filter, budget."""
    out = []
    fund_pass = {f.fund_id: _passing(rnd, f.eligible) for f in rnd.funds}
    available = _budget_available(rnd)
    for row in alloc[alloc.amount > 0].itertuples():
        p, r, f, t = row.program_id, row.region_id, row.fund_id, row.period
        prog = rnd.program(p)
        reasons = []
        active = _active_periods(rnd, prog)
        if t not in active:
            reasons.append(f"{p} runs only in {', '.join(active) or 'no period'}, not in {t}")
        if r not in prog.regions:
            reasons.append(f"{r} is not one of {p}'s regions ({', '.join(prog.regions)})")
        failed = [dim for dim, ident in zip(DIMENSIONS, (p, r, f, t), strict=True)
                  if ident not in fund_pass[f][dim]]
        if failed:
            reasons.append(f"fund {f}'s eligible filter '{rnd.fund(f).eligible}' excludes its "
                           + ", ".join(failed))
        if not available[(f, t)]:
            reasons.append(f"fund {f} has no budget in {t}"
                           + (" (nor any carried over)" if rnd.fund(f).carry_over else ""))
        if reasons:
            out.append(Violation("eligibility", _combo(row),
                                 f"{_money(rnd, row.amount)} for an ineligible combination: "
                                 + "; ".join(reasons), float(row.amount)))
    return out


def check_gating(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """Performance funds pay only programs that met targets; a scale-up only if its pilot did."""
    out = []
    scores = _scores(rnd)  # once: a scan of the Performance sheet per row was quadratic
    for row in alloc[alloc.amount > 0].itertuples():
        prog = rnd.program(row.program_id)
        fund = rnd.fund(row.fund_id)
        if fund.kind == FundKind.performance and not _met_targets(scores, prog.program_id):
            out.append(Violation("gating", _combo(row),
                                 f"performance fund {fund.fund_id} pays {_money(rnd, row.amount)} "
                                 f"to {prog.program_id}, which has not met its targets "
                                 f"({_score_text(scores, prog.program_id)})", float(row.amount)))
        if prog.pilot_of is not None and not _met_targets(scores, prog.pilot_of):
            out.append(Violation("gating", _combo(row),
                                 f"{prog.program_id} gets {_money(rnd, row.amount)}, but its pilot "
                                 f"{prog.pilot_of} has not met its targets "
                                 f"({_score_text(scores, prog.pilot_of)})", float(row.amount)))
    return out


def check_budgets(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """Fund spending in a period <= its budget; for carry_over funds, cumulatively per period."""
    spent = alloc.groupby(["fund_id", "period"])["amount"].sum().to_dict()
    out = []
    for fund in rnd.funds:
        cum_spent = cum_budget = 0.0
        for t in rnd.periods:
            use = float(spent.get((fund.fund_id, t), 0.0))
            budget = float(rnd.budget(fund.fund_id, t))
            cum_spent += use
            cum_budget += budget
            if fund.carry_over:
                over = cum_spent - cum_budget
                where = f"{fund.fund_id} up to {t}"
                text = (f"fund {fund.fund_id} (carry-over) spent {_money(rnd, cum_spent)} up to "
                        f"{t}, against {_money(rnd, cum_budget)} of budget up to {t}")
                limit = cum_budget
            else:
                over = use - budget
                where = f"{fund.fund_id} {t}"
                text = (f"fund {fund.fund_id} spent {_money(rnd, use)} in {t}, against a budget "
                        f"of {_money(rnd, budget)}")
                limit = budget
            if over > _hard_tol(limit):
                out.append(Violation("budget", where, f"{text}: {_money(rnd, over)} over", over))
    return out


def check_capacity(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """A program-period's trainees <= max_trainees, trainees = total cost / cost_per_trainee.

    The total cost is the money from the round / (1 - external_match) (DESIGN.md 1.1): the
    rest of it is paid from outside the round.
    """
    out = []
    for (p, t), money in _program_period_totals(alloc).items():
        prog = rnd.program(p)
        total = _total_cost(prog, money)
        cap = prog.max_trainees * prog.cost_per_trainee
        if total - cap > _hard_tol(cap):
            over = _in_round_part(prog, total - cap)
            out.append(Violation("capacity", f"{p} {t}",
                                 f"{p} gets {_money(rnd, money)} in {t}{_match_text(rnd, prog, total)}, "
                                 f"but its capacity is {prog.max_trainees:g} trainees x "
                                 f"{_money(rnd, prog.cost_per_trainee)} = {_money(rnd, cap)}: "
                                 f"{_money(rnd, over)} over", over))
    return out


def check_minimums(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """An all-or-nothing program (min_trainees > 0) gets 0 or >= min_trainees trainees a period."""
    out = []
    for (p, t), money in _program_period_totals(alloc).items():
        prog = rnd.program(p)
        total = _total_cost(prog, money)
        need = prog.min_trainees * prog.cost_per_trainee
        if prog.min_trainees > 0 and money > _hard_tol(0.0) and need - total > _hard_tol(need):
            short = _in_round_part(prog, need - total)
            out.append(Violation("minimum", f"{p} {t}",
                                 f"{p} gets {_money(rnd, money)} in {t}{_match_text(rnd, prog, total)}: "
                                 f"it must get nothing or at least {prog.min_trainees:g} trainees x "
                                 f"{_money(rnd, prog.cost_per_trainee)} = {_money(rnd, need)}; "
                                 f"{_money(rnd, short)} short", short))
    return out


def check_cofinancing(rnd: Round, alloc: pd.DataFrame) -> list[Violation]:
    """A fund with cap < 1 pays at most cap x the program-period's total cost.

    The total cost counts the external match: money from the round / (1 - external_match).
    """
    totals = _program_period_totals(alloc)
    by_fund = alloc.groupby(["fund_id", "program_id", "period"])["amount"].sum()
    out = []
    for (f, p, t), paid in by_fund.items():
        cap = rnd.fund(f).cofinancing_cap
        if cap >= 1:
            continue
        prog = rnd.program(p)
        total = _total_cost(prog, totals[(p, t)])
        limit = cap * total
        if paid - limit > _hard_tol(limit):
            of = (f"{p}'s total cost {_money(rnd, total)} ({_money(rnd, totals[(p, t)])} from the "
                  f"round, external match {prog.external_match:.0%})" if prog.external_match
                  else f"{p}'s {_money(rnd, totals[(p, t)])}")
            out.append(Violation("cofinancing", f"{f} / {p} {t}",
                                 f"fund {f} pays {_money(rnd, paid)} of {of} in {t}, more than its "
                                 f"co-financing cap {cap:.0%} ({_money(rnd, limit)}): "
                                 f"{_money(rnd, paid - limit)} over", paid - limit))
    return out


def _total_cost(prog: ProgramRow, in_round: float) -> float:
    """A program-period's total cost: its money from the round / (1 - external_match)."""
    return in_round / (1.0 - prog.external_match)


def _in_round_part(prog: ProgramRow, total: float) -> float:
    """The part of an amount of total cost that comes from the round."""
    return total * (1.0 - prog.external_match)


def _match_text(rnd: Round, prog: ProgramRow, total: float) -> str:
    if not prog.external_match:
        return ""
    return (f" (total cost {_money(rnd, total)} with an external match of "
            f"{prog.external_match:.0%})")


def check_rules(rnd: Round, alloc: pd.DataFrame, *, tolerance: float | None = None) -> list[Violation]:
    """Every hard rule row holds: S(sel and g) op its target, up to the rule tolerance."""
    out = []
    for row in _rule_rows(rnd, alloc, tolerance):
        if row.rule.penalty is None and row.missed > row.tolerance:
            out.append(Violation("rule", row.where, row.message(rnd), row.missed))
    return out


# ==============================================================================================
# Filters: keys, values, matching (re-implemented from DESIGN.md and the engine decisions)
# ==============================================================================================
# key -> (dimension, field on the row, how to compare). "id": exact text; "text": case-
# insensitive; "tags": several case-insensitive values; "bool": yes/no.
BUILTIN_KEYS: dict[str, tuple[str, str, str]] = {
    "program": ("program", "program_id", "id"),
    "program_id": ("program", "program_id", "id"),
    "sector": ("program", "sector", "text"),
    "stage": ("program", "stage", "text"),
    "target": ("program", "targets", "tags"),
    "targets": ("program", "targets", "tags"),
    "pilot_of": ("program", "pilot_of", "id"),
    "region": ("region", "region_id", "id"),
    "region_id": ("region", "region_id", "id"),
    "jurisdiction": ("region", "jurisdiction", "id"),
    "rural": ("region", "rural", "bool"),
    "fund": ("fund", "fund_id", "id"),
    "fund_id": ("fund", "fund_id", "id"),
    "kind": ("fund", "kind", "text"),
    "owner": ("fund", "owner", "id"),
    "carry_over": ("fund", "carry_over", "bool"),
    "period": ("period", "period", "id"),
}


@dataclass(frozen=True)
class _Key:
    dimension: str
    field: str  # attribute name, or "attributes.<column>" for an extra column
    kind: str


def _members(rnd: Round, dim: str) -> dict[str, object]:
    """id -> row for every member of a dimension (periods have no row)."""
    if dim == "program":
        return {p.program_id: p for p in rnd.programs}
    if dim == "region":
        return {r.region_id: r for r in rnd.regions}
    if dim == "fund":
        return {f.fund_id: f for f in rnd.funds}
    return dict.fromkeys(rnd.periods)


def _extra_columns(rnd: Round, dim: str) -> set[str]:
    return {col.lower() for row in _members(rnd, dim).values() for col in row.attributes}


def _resolve(rnd: Round, name: str) -> _Key:
    """The dimension and attribute a filter or `each` key names."""
    name = name.strip().lower()
    if name in BUILTIN_KEYS:
        return _Key(*BUILTIN_KEYS[name])
    if "." in name:
        dim, _, col = name.partition(".")
        if dim in ("program", "region", "fund"):
            if col == "name":
                return _Key(dim, "name", "text")
            if col in _extra_columns(rnd, dim):
                return _Key(dim, f"attributes.{col}", "text")
        raise ValueError(f"unknown key {name!r}")
    owners = [dim for dim in ("program", "region", "fund") if name in _extra_columns(rnd, dim)]
    if len(owners) != 1:
        raise ValueError(f"key {name!r} is " + ("ambiguous" if owners else "unknown"))
    return _Key(owners[0], f"attributes.{name}", "text")


def _normalise_value(kind: str, value: object) -> str:
    """Ids exactly, text case-insensitively, booleans as yes/no."""
    if kind == "bool":
        if isinstance(value, bool):
            return "yes" if value else "no"
        text = str(value).strip().lower()
        return {"true": "yes", "1": "yes", "y": "yes", "false": "no", "0": "no", "n": "no"}.get(text, text)
    text = str(getattr(value, "value", value)).strip()
    return text if kind == "id" else text.casefold()


def _values(key: _Key, ident: str, row: object) -> set[str]:
    """The normalised values a member has for a key (a program has one per target tag)."""
    if key.field in ("program_id", "region_id", "fund_id", "period"):
        return {ident}
    if key.field.startswith("attributes."):
        col = key.field.split(".", 1)[1]
        raw = next((v for k, v in row.attributes.items() if k.lower() == col), None)
    else:
        raw = getattr(row, key.field)
    if raw is None or raw == "":
        return set()
    items = raw if key.kind == "tags" else [raw]
    return {_normalise_value(key.kind, v) for v in items}


def _condition_passes(rnd: Round, cond: Condition) -> tuple[str, set[str]]:
    """(dimension, ids of its members that pass the condition)."""
    key = _resolve(rnd, cond.key)
    wanted = {_normalise_value(key.kind, v) for v in cond.values}
    keep = {ident for ident, row in _members(rnd, key.dimension).items()
            if bool(_values(key, ident, row) & wanted) != cond.negate}
    return key.dimension, keep


def _passing(rnd: Round, flt: Filter) -> dict[str, set[str]]:
    """Per dimension, the ids passing every condition of the filter on that dimension."""
    out = {dim: set(_members(rnd, dim)) for dim in DIMENSIONS}
    for cond in flt.conditions:
        dim, keep = _condition_passes(rnd, cond)
        out[dim] &= keep
    return out


def _mask(alloc: pd.DataFrame, dims: dict[str, set[str]]) -> pd.Series:
    """Allocation rows whose four ids each lie in the given per-dimension sets."""
    mask = np.ones(len(alloc), dtype=bool)
    for dim in DIMENSIONS:
        column = alloc[ID_COLUMN[dim]]
        if isinstance(column.dtype, pd.CategoricalDtype):  # one look-up per distinct id
            mask &= column.cat.categories.isin(dims[dim])[column.cat.codes.to_numpy()] \
                & (column.cat.codes.to_numpy() >= 0)
        else:
            mask &= column.isin(dims[dim]).to_numpy()
    return pd.Series(mask, index=alloc.index)


def _by_category(alloc: pd.DataFrame) -> pd.DataFrame:
    """The allocation with its id columns categorical, so the many masks of the rules cost a
    look-up per distinct id and a gather, not a hash of every row (200,000 programs: 2 million
    rows, hundreds of rule groups)."""
    return alloc.astype({ID_COLUMN[dim]: "category" for dim in DIMENSIONS})


# ==============================================================================================
# Rules: groups, measures, rows
# ==============================================================================================
@dataclass
class _RuleRow:
    """One row of a rule: selected money `lhs` op required money `rhs`."""

    rule: RuleRow
    group: str | None
    jurisdiction: str | None
    lhs: float  # selected money (contribution_share: the part delivered in the jurisdiction)
    rhs: float  # the money the rule asks of lhs
    rows: int  # allocation rows entering the row (selected or reference)
    tolerance: float
    reference: float | None = None  # share rules: S(relative_to...); contribution: S(sel and g)
    population: float | None = None
    contribution: float | None = None  # c_j

    @property
    def missed(self) -> float:
        gap = self.lhs - self.rhs
        return max(0.0, {Op.ge: -gap, Op.le: gap, Op.eq: abs(gap)}[self.rule.op])

    @property
    def group_label(self) -> str:
        return " / ".join(x for x in (self.group, self.jurisdiction) if x is not None)

    @property
    def where(self) -> str:
        parts = [f"rule {self.rule.rule_id}"]
        if self.group is not None:
            parts.append(f"group {self.group}")
        if self.jurisdiction is not None:
            parts.append(("/ " if self.group is not None else "") + f"jurisdiction {self.jurisdiction}")
        return " ".join(parts)

    @property
    def achieved(self) -> float | None:
        m = self.rule.measure
        if m == Measure.amount:
            return self.lhs
        if m in (Measure.share, Measure.share_within):
            return self.lhs / self.reference if self.reference else None
        if m == Measure.per_capita:
            return self.lhs / self.population if self.population else None
        # contribution_share: the jurisdiction's share of the selected money over its share of
        # the contributions, so that 1.0 is exactly "juste retour"
        if self.reference and self.contribution:
            return self.lhs / self.reference / self.contribution
        return None

    def message(self, rnd: Round) -> str:
        op = self.rule.op.value
        m = self.rule.measure
        v = self.rule.value
        if m == Measure.amount:
            text = f"selected money is {_money(rnd, self.lhs)}, must be {op} {_money(rnd, v)}"
        elif m in (Measure.share, Measure.share_within):
            share = "n/a" if self.achieved is None else f"{self.achieved:.4%}"
            text = (f"selected money {_money(rnd, self.lhs)} is {share} of "
                    f"{_money(rnd, self.reference or 0.0)}, must be {op} {v:.4%} "
                    f"(= {_money(rnd, self.rhs)})")
        elif m == Measure.per_capita:
            per = "n/a" if self.achieved is None else f"{self.achieved:,.4f}"
            text = (f"selected money {_money(rnd, self.lhs)} is {per} per inhabitant of "
                    f"{self.population:,.0f}, must be {op} {v:g} (= {_money(rnd, self.rhs)})")
        else:
            got = self.lhs / self.reference if self.reference else 0.0
            text = (f"{_money(rnd, self.lhs)} delivered in jurisdiction {self.jurisdiction} is "
                    f"{got:.4%} of the selected {_money(rnd, self.reference or 0.0)}, must be {op} "
                    f"{v:g} x its contribution share {self.contribution:.4%} "
                    f"(= {_money(rnd, self.rhs)})")
        desc = f" ({self.rule.description})" if self.rule.description else ""
        return (f"{self.rule.measure.value} rule{desc}: {text}; missed by "
                f"{_money(rnd, self.missed)} (tolerance {_money(rnd, self.tolerance)})")

    def record(self) -> dict:
        return {"rule_id": self.rule.rule_id, "group": self.group or "",
                "jurisdiction": self.jurisdiction or "", "measure": self.rule.measure.value,
                "op": self.rule.op.value, "achieved": self.achieved, "target": self.rule.value,
                "lhs": self.lhs, "rhs": self.rhs, "missed": self.missed,
                "tolerance": self.tolerance, "soft": self.rule.penalty is not None,
                "penalty": self.rule.penalty, "reference": self.reference, "population": self.population,
                "contribution": self.contribution, "rows": self.rows}


def _groups(rnd: Round, rule: RuleRow) -> list[tuple[str | None, dict[str, set[str]]]]:
    """(value, per-dimension ids of the group) for each group of the rule's `each`.

    The values are those held by members of the `each` dimension that pass the select's
    conditions on that dimension; the group of value v is every member having v (so for
    share_within the reference total is narrowed to "key = v", not to the selection).
    """
    everything = {dim: set(_members(rnd, dim)) for dim in DIMENSIONS}
    if not rule.each:
        return [(None, everything)]
    key = _resolve(rnd, rule.each)
    members = _members(rnd, key.dimension)
    allowed = _passing(rnd, rule.select)[key.dimension]
    values = sorted({v for ident in allowed for v in _values(key, ident, members[ident])})
    out = []
    for v in values:
        dims = dict(everything)
        dims[key.dimension] = {ident for ident, row in members.items() if v in _values(key, ident, row)}
        out.append((v, dims))
    return out


def _rule_rows(rnd: Round, alloc: pd.DataFrame, tolerance: float | None) -> list[_RuleRow]:
    """Every row of every rule, evaluated on the allocation."""
    out = []
    alloc = _by_category(alloc)
    for rule in rnd.rules:
        selected = _passing(rnd, rule.select)
        relative = _passing(rnd, rule.relative_to)
        each_dim = _resolve(rnd, rule.each).dimension if rule.each else None
        region_conditioned = any(_resolve(rnd, c.key).dimension == "region"
                                 for c in rule.select.conditions)
        for value, group in _groups(rnd, rule):
            sel_g = _and(selected, group)
            sel_mask = _mask(alloc, sel_g)
            s = float(alloc.amount[sel_mask].sum())

            def row(lhs: float, rhs: float, entering: pd.Series, jurisdiction: str | None = None,
                    rule: RuleRow = rule, value: str | None = value, **measure) -> _RuleRow:
                n = int(entering.sum())
                return _RuleRow(rule, value, jurisdiction, lhs, rhs, rows=n,
                                tolerance=_rule_tol(rnd, n, rhs, tolerance), **measure)

            m = rule.measure
            if m == Measure.amount:
                out.append(row(s, rule.value, sel_mask))
            elif m in (Measure.share, Measure.share_within):
                ref_dims = _and(relative, group) if m == Measure.share_within else relative
                ref_mask = _mask(alloc, ref_dims)
                ref = float(alloc.amount[ref_mask].sum())
                out.append(row(s, rule.value * ref, sel_mask | ref_mask, reference=ref))
            elif m == Measure.per_capita:
                if region_conditioned or each_dim == "region":
                    regions = sel_g["region"]
                else:
                    regions = set(_members(rnd, "region"))
                pop = float(sum(r.population for r in rnd.regions if r.region_id in regions))
                out.append(row(s, rule.value * pop, sel_mask, population=pop))
            else:
                for jur, c_j in _contribution_shares(rnd, sel_g["fund"]).items():
                    jur_regions = {r.region_id for r in rnd.regions if r.jurisdiction == jur}
                    s_j = float(alloc.amount[sel_mask & alloc.region_id.isin(jur_regions)].sum())
                    out.append(row(s_j, rule.value * c_j * s, sel_mask, jur, reference=s,
                                   contribution=c_j))
    return out


def _contribution_shares(rnd: Round, funds: set[str]) -> dict[str, float]:
    """c_j: each jurisdiction's share of the contributions to the given funds (paid > 0 only)."""
    paid: dict[str, Decimal] = {}
    for c in rnd.contributions:
        if c.fund_id in funds:
            paid[c.jurisdiction] = paid.get(c.jurisdiction, Decimal(0)) + c.amount
    total = sum(paid.values(), Decimal(0))
    if total <= 0:
        return {}
    return {j: float(v / total) for j, v in sorted(paid.items()) if v > 0}


def _and(a: dict[str, set[str]], b: dict[str, set[str]]) -> dict[str, set[str]]:
    return {dim: a[dim] & b[dim] for dim in DIMENSIONS}


def _rule_tol(rnd: Round, n_rows: int, rhs: float, tolerance: float | None) -> float:
    """Slack on a rule row: given, or one rounding unit per entering row (capped), plus float noise."""
    if tolerance is None:
        unit = float(rnd.settings.rounding_unit)
        tolerance = unit * min(n_rows, RULE_SLACK_CAP_UNITS)
    return tolerance + _hard_tol(rhs)


# ==============================================================================================
# Small helpers
# ==============================================================================================
def _normalise(allocation: pd.DataFrame) -> pd.DataFrame:
    """Ids as text (a period typed as 2026 is the label '2026'), amounts as floats."""
    missing = [c for c in REQUIRED_COLUMNS if c not in allocation.columns]
    if missing:
        raise ValueError(f"allocation lacks column(s) {', '.join(missing)}")
    alloc = allocation.loc[:, list(REQUIRED_COLUMNS)].copy().reset_index(drop=True)
    for col in REQUIRED_COLUMNS[:-1]:
        alloc[col] = alloc[col].map(_id_text)
    alloc["amount"] = pd.to_numeric(alloc["amount"], errors="coerce").astype(float)
    return alloc


def _id_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _ids(rnd: Round) -> dict[str, set[str]]:
    return {dim: set(_members(rnd, dim)) for dim in DIMENSIONS}


def _known_rows(rnd: Round, alloc: pd.DataFrame) -> pd.Series:
    """Rows whose ids all exist and whose amount is a number: the ones the checks can use."""
    return _mask(alloc, _ids(rnd)) & np.isfinite(alloc.amount)


def _active_periods(rnd: Round, prog: ProgramRow) -> list[str]:
    periods = list(rnd.periods)
    start = periods.index(prog.start_period) if prog.start_period else 0
    end = periods.index(prog.end_period) if prog.end_period else len(periods) - 1
    return periods[start:end + 1]


def _budget_available(rnd: Round) -> dict[tuple[str, str], bool]:
    """(fund, period) -> B[f,t] > 0, or for carry_over funds the cumulative budget up to t > 0."""
    out = {}
    for fund in rnd.funds:
        cumulative = Decimal(0)
        for t in rnd.periods:
            own = rnd.budget(fund.fund_id, t)
            cumulative += own
            out[(fund.fund_id, t)] = own > 0 or (fund.carry_over and cumulative > 0)
    return out


def _scores(rnd: Round) -> dict[str, float]:
    """Each program's mean of min(achieved / target, 1.5) over its Performance rows (programs
    without rows are absent)."""
    ratios: dict[str, list[float]] = defaultdict(list)
    for r in rnd.performance:
        ratios[r.program_id].append(min(r.achieved / r.target, 1.5))
    return {p: sum(v) / len(v) for p, v in ratios.items()}


def _met_targets(scores: dict[str, float], program_id: str) -> bool:
    return scores.get(program_id, -math.inf) >= 1.0


def _score_text(scores: dict[str, float], program_id: str) -> str:
    score = scores.get(program_id)
    return "no Performance rows" if score is None else f"score {score:.2f} < 1"


def _program_period_totals(alloc: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {k: float(v) for k, v in alloc.groupby(["program_id", "period"])["amount"].sum().items()}


def _hard_tol(limit: float) -> float:
    return RELATIVE_TOLERANCE * max(1.0, abs(float(limit)))


def _abs(amount: float) -> float:
    return abs(amount) if math.isfinite(amount) else 0.0


def _combo(row) -> str:
    return f"{row.program_id} / {row.region_id} / {row.fund_id} / {row.period}"


def _money(rnd: Round, amount: float) -> str:
    amount = float(amount)
    digits = 0 if abs(amount - round(amount)) < 1e-9 else 2
    return f"{amount:,.{digits}f} {rnd.settings.currency}"


def kinds(violations: Iterable[Violation]) -> set[str]:
    """The set of kinds among violations (handy in tests and reports)."""
    return {v.kind for v in violations}
