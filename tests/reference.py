"""An independent yardstick: the stage-1 model of DESIGN.md built directly with scipy's milp.

Written from DESIGN.md "The model" and the engine decisions agreed where it is silent, from the
`Round` data alone. It shares no code with the engine's filters, eligibility, formulation or
solver (only the data classes of `allocator.round`), so an error in one is unlikely to be
repeated in the other. Clarity beats speed: dense matrices, one Python loop per family, for
rounds of well under a hundred variables.

`drop` switches a constraint family off, so tests can show that a family binds (the optimum
without it differs): "budget", "carry_over", "capacity", "minimum", "cofinancing", "eligible",
"periods", "performance", "pilot", "rules", or "rule:<rule_id>".
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp

from allocator.round import Round

DIMS = ("program", "region", "fund", "period")

# key -> (dimension, how to read the values of one member, comparison)
_PROGRAM_KEYS = {
    "program": "program_id", "program_id": "program_id", "sector": "sector", "stage": "stage",
    "target": "targets", "targets": "targets", "pilot_of": "pilot_of", "program.name": "name",
}
_REGION_KEYS = {
    "region": "region_id", "region_id": "region_id", "jurisdiction": "jurisdiction",
    "rural": "rural", "region.name": "name",
}
_FUND_KEYS = {
    "fund": "fund_id", "fund_id": "fund_id", "kind": "kind", "owner": "owner",
    "carry_over": "carry_over", "fund.name": "name",
}
_EXACT = {"program_id", "region_id", "fund_id", "pilot_of", "jurisdiction", "owner", "period"}


class Infeasible(Exception):
    """The reference model has no feasible point."""


@dataclass(frozen=True)
class Var:
    """One eligible allocation x[p, r, f, t]."""

    p: str
    r: str
    f: str
    t: str


# --- filters -------------------------------------------------------------------------------------
def _members(rnd: Round, dim: str) -> dict[str, object]:
    if dim == "program":
        return {p.program_id: p for p in rnd.programs}
    if dim == "region":
        return {r.region_id: r for r in rnd.regions}
    if dim == "fund":
        return {f.fund_id: f for f in rnd.funds}
    return {t: None for t in rnd.periods}


def key_dimension(rnd: Round, key: str) -> tuple[str, str]:
    """(dimension, field) a filter/`each` key names; extra columns are `attr:<column>`."""
    key = key.strip().lower()
    for dim, table in (("program", _PROGRAM_KEYS), ("region", _REGION_KEYS), ("fund", _FUND_KEYS)):
        if key in table:
            return dim, table[key]
    if key == "period":
        return "period", "period"
    if "." in key:
        dim, _, col = key.partition(".")
        return dim, f"attr:{col}"
    for dim in ("program", "region", "fund"):
        if any(key in row.attributes for row in _members(rnd, dim).values()):
            return dim, f"attr:{key}"
    raise KeyError(key)


def _norm(field: str, value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(getattr(value, "value", value)).strip()
    if field in ("rural", "carry_over"):
        return {"true": "yes", "1": "yes", "y": "yes", "false": "no", "0": "no", "n": "no"}.get(
            text.lower(), text.lower())
    return text if field in _EXACT else text.casefold()


def member_values(rnd: Round, key: str, ident: str) -> set[str]:
    """The values member `ident` of the key's dimension holds for the key (tags: several)."""
    dim, field = key_dimension(rnd, key)
    if field in ("period", "program_id", "region_id", "fund_id"):
        return {ident}
    row = _members(rnd, dim)[ident]
    raw = row.attributes.get(field[5:]) if field.startswith("attr:") else getattr(row, field)
    if raw is None or raw == "":
        return set()
    if isinstance(raw, tuple):
        return {_norm(field, v) for v in raw}
    return {_norm(field, raw)}


def passes(rnd: Round, flt, v: Var) -> bool:
    """Whether allocation v passes every condition of the filter."""
    ident = {"program": v.p, "region": v.r, "fund": v.f, "period": v.t}
    for cond in flt.conditions:
        dim, field = key_dimension(rnd, cond.key)
        wanted = {_norm(field, x) for x in cond.values}
        hit = bool(member_values(rnd, cond.key, ident[dim]) & wanted)
        if hit == cond.negate:
            return False
    return True


def member_passes(rnd: Round, flt, dim: str, ident: str) -> bool:
    """Whether a member of one dimension passes the filter's conditions on that dimension."""
    for cond in flt.conditions:
        cdim, field = key_dimension(rnd, cond.key)
        if cdim != dim:
            continue
        wanted = {_norm(field, x) for x in cond.values}
        if bool(member_values(rnd, cond.key, ident) & wanted) == cond.negate:
            return False
    return True


# --- eligibility ---------------------------------------------------------------------------------
def eligible_vars(rnd: Round, drop: Collection[str] = ()) -> list[Var]:
    """Every (p, r, f, t) that may receive money, by DESIGN.md "Decision"."""
    periods = list(rnd.periods)
    out = []
    for prog in rnd.programs:
        if "pilot" not in drop and prog.pilot_of and not _met(rnd, prog.pilot_of):
            continue  # a scale-up whose pilot missed its targets gets nothing at all
        lo = periods.index(prog.start_period) if prog.start_period and "periods" not in drop else 0
        hi = periods.index(prog.end_period) if prog.end_period and "periods" not in drop \
            else len(periods) - 1
        for t in periods[lo:hi + 1]:
            for r in prog.regions:
                for fund in rnd.funds:
                    if fund.kind.value == "performance" and "performance" not in drop \
                            and not _met(rnd, prog.program_id):
                        continue
                    if not _has_money(rnd, fund, t, drop):
                        continue
                    v = Var(prog.program_id, r, fund.fund_id, t)
                    if "eligible" in drop or passes(rnd, fund.eligible, v):
                        out.append(v)
    return out


def _met(rnd: Round, program_id: str) -> bool:
    rows = [r for r in rnd.performance if r.program_id == program_id]
    return bool(rows) and sum(min(r.achieved / r.target, 1.5) for r in rows) / len(rows) >= 1


def _budget(rnd: Round, fund_id: str, period: str) -> float:
    return float(sum(b.amount for b in rnd.budgets if b.fund_id == fund_id and b.period == period))


def _carries(fund, drop: Collection[str]) -> bool:
    return fund.carry_over and "carry_over" not in drop


def _has_money(rnd: Round, fund, t: str, drop: Collection[str]) -> bool:
    if _carries(fund, drop):
        upto = rnd.periods[: rnd.periods.index(t) + 1]
        return sum(_budget(rnd, fund.fund_id, s) for s in upto) > 0
    return _budget(rnd, fund.fund_id, t) > 0


# --- rules ---------------------------------------------------------------------------------------
@dataclass
class Row:
    """sum(coef * x) (op) rhs for one rule group (and contributor)."""

    rule_id: str
    group: str | None
    coefs: dict[int, float]
    op: str
    rhs: float
    penalty: float | None


def rule_rows(rnd: Round, xs: list[Var]) -> list[Row]:
    """Every rule expanded into its rows, by the rule semantics agreed for the engine."""
    rows: list[Row] = []
    for rule in rnd.rules:
        sel = [passes(rnd, rule.select, v) for v in xs]
        rel = [passes(rnd, rule.relative_to, v) for v in xs]
        each_dim = key_dimension(rnd, rule.each)[0] if rule.each else None
        for g, in_g in _groups(rnd, rule, xs):
            sg = [a and b for a, b in zip(sel, in_g, strict=True)]
            m = rule.measure.value
            if m == "contribution_share":
                funds = {f.fund_id for f in rnd.funds if member_passes(rnd, rule.select, "fund",
                                                                      f.fund_id)}
                if each_dim == "fund":
                    funds = {f for f in funds if g in member_values(rnd, rule.each, f)}
                paid: dict[str, float] = {}
                for c in rnd.contributions:
                    if c.fund_id in funds:
                        paid[c.jurisdiction] = paid.get(c.jurisdiction, 0.0) + float(c.amount)
                total = sum(paid.values())
                for j in sorted(paid):
                    if paid[j] <= 0:
                        continue
                    share = paid[j] / total
                    coefs = _combine(
                        [(1.0, [a and rnd.region(v.r).jurisdiction == j for a, v in zip(sg, xs,
                                                                                           strict=True)]),
                         (-rule.value * share, sg)])
                    rows.append(Row(rule.rule_id, g, coefs, rule.op.value, 0.0, rule.penalty))
                continue
            if m == "amount":
                coefs, rhs = _combine([(1.0, sg)]), rule.value
            elif m == "share":
                coefs, rhs = _combine([(1.0, sg), (-rule.value, rel)]), 0.0
            elif m == "share_within":
                rg = [a and b for a, b in zip(rel, in_g, strict=True)]
                coefs, rhs = _combine([(1.0, sg), (-rule.value, rg)]), 0.0
            else:  # per_capita
                coefs, rhs = _combine([(1.0, sg)]), rule.value * _population(rnd, rule, g)
            rows.append(Row(rule.rule_id, g, coefs, rule.op.value, rhs, rule.penalty))
    return rows


def _combine(parts: list[tuple[float, list[bool]]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for coef, mask in parts:
        for k, on in enumerate(mask):
            if on:
                out[k] = out.get(k, 0.0) + coef
    return out


def _groups(rnd: Round, rule, xs: list[Var]) -> list[tuple[str | None, list[bool]]]:
    """(group value, which x lie in the group); the group of value g is `each = g`."""
    if not rule.each:
        return [(None, [True] * len(xs))]
    dim, _ = key_dimension(rnd, rule.each)
    values: set[str] = set()
    for ident in _members(rnd, dim):
        if member_passes(rnd, rule.select, dim, ident):
            values |= member_values(rnd, rule.each, ident)
    out = []
    for g in sorted(values):
        ident_of = {"program": lambda v: v.p, "region": lambda v: v.r, "fund": lambda v: v.f,
                    "period": lambda v: v.t}[dim]
        out.append((g, [g in member_values(rnd, rule.each, ident_of(v)) for v in xs]))
    return out


def _population(rnd: Round, rule, g: str | None) -> float:
    each_dim = key_dimension(rnd, rule.each)[0] if rule.each else None
    total = 0.0
    for reg in rnd.regions:
        if not member_passes(rnd, rule.select, "region", reg.region_id):
            continue
        if each_dim == "region" and g not in member_values(rnd, rule.each, reg.region_id):
            continue
        total += reg.population
    return total


# --- the model -----------------------------------------------------------------------------------
def reference_optimum(rnd: Round, drop: Collection[str] = (),
                      robust: tuple[float, float] | None = None) -> tuple[float, pd.DataFrame]:
    """Optimal stage-1 objective and one optimal allocation; raises Infeasible.

    `robust` = (Gamma, z): the objective less the largest shortfall when at most Gamma programs
    deliver z * s_p less per trainee (DESIGN 1.1 "Uncertainty"), dualised here as
    Gamma * lam + sum mu_p with lam + mu_p >= z * s_p * T_p.
    """
    xs = eligible_vars(rnd, drop)
    n = len(xs)
    prog = {p.program_id: p for p in rnd.programs}
    value = np.array([rnd.value_per_trainee(prog[v.p]) / prog[v.p].cost_per_trainee for v in xs])
    pts = sorted({(v.p, v.t) for v in xs}, key=lambda pt: (pt[0], rnd.periods.index(pt[1])))
    switched = [pt for pt in pts if prog[pt[0]].min_trainees > 0 and "minimum" not in drop]
    ycol = {pt: n + i for i, pt in enumerate(switched)}
    rows = [] if "rules" in drop else [
        r for r in rule_rows(rnd, xs) if f"rule:{r.rule_id}" not in drop]
    constant = 0.0  # penalties of soft rule rows that have no variable at all
    live = []
    for r in rows:
        if r.coefs:
            live.append(r)
            continue
        miss = _miss(0.0, r.op, r.rhs)
        if miss > 1e-9:
            if r.penalty is None:
                raise Infeasible(f"rule {r.rule_id} group {r.group}: no eligible money")
            constant -= r.penalty * miss
    slack_of: list[tuple[int, float, float]] = []  # (row index, coefficient, penalty)
    for i, r in enumerate(live):
        if r.penalty is not None:
            signs = {">=": [1.0], "<=": [-1.0], "=": [1.0, -1.0]}[r.op]
            slack_of += [(i, s, r.penalty) for s in signs]
    weights = {o.metric: o.weight for o in rnd.objective}
    spread = {p.program_id: float(np.sqrt(sum((weights.get(m, 0.0) * se) ** 2
                                              for m, se in p.outcome_se.items())))
              for p in rnd.programs}
    guarded = sorted({v.p for v in xs if spread[v.p] > 0}) if robust and robust[0] > 0 else []
    first_robust = n + len(switched) + len(slack_of)
    ncols = first_robust + (1 + len(guarded) if guarded else 0)
    c = np.zeros(ncols)
    c[:n] = -value  # milp minimises
    for k, (_, _, pen) in enumerate(slack_of):
        c[n + len(switched) + k] = pen
    if guarded:
        c[first_robust] = robust[0]  # Gamma * lam
        c[first_robust + 1:] = 1.0  # + sum mu

    a_rows: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []

    def add(coefs: dict[int, float], lower: float, upper: float) -> None:
        row = np.zeros(ncols)
        for k, v in coefs.items():
            row[k] += v
        a_rows.append(row)
        lo.append(lower)
        hi.append(upper)

    # fund budgets (per period, or cumulatively with carry-over)
    if "budget" not in drop:
        for fund in rnd.funds:
            for i, t in enumerate(rnd.periods):
                upto = rnd.periods[: i + 1] if _carries(fund, drop) else (t,)
                ks = {k: 1.0 for k, v in enumerate(xs) if v.f == fund.fund_id and v.t in upto}
                if ks:
                    add(ks, -np.inf, sum(_budget(rnd, fund.fund_id, s) for s in upto))
    # capacity and all-or-nothing minimum, per program-period
    big = sum(float(b.amount) for b in rnd.budgets) + 1.0
    for pt in pts:
        p = prog[pt[0]]
        ks = {k: 1.0 for k, v in enumerate(xs) if (v.p, v.t) == pt}
        cap = p.max_trainees * p.cost_per_trainee if "capacity" not in drop else big
        if pt in ycol:
            add(ks | {ycol[pt]: -cap}, -np.inf, 0.0)
            add(ks | {ycol[pt]: -p.min_trainees * p.cost_per_trainee}, 0.0, np.inf)
        elif "capacity" not in drop:
            add(ks, -np.inf, cap)
        # co-financing: fund f pays at most cap_f of the program-period's total
        if "cofinancing" not in drop:
            for fund in rnd.funds:
                if fund.cofinancing_cap < 1 and any(xs[k].f == fund.fund_id for k in ks):
                    add({k: (1.0 if xs[k].f == fund.fund_id else 0.0) - fund.cofinancing_cap
                         for k in ks}, -np.inf, 0.0)
    # rules
    for i, r in enumerate(live):
        coefs = dict(r.coefs)
        for k, (row, sign, _) in enumerate(slack_of):
            if row == i:
                coefs[n + len(switched) + k] = sign
        lower = r.rhs if r.op in (">=", "=") else -np.inf
        upper = r.rhs if r.op in ("<=", "=") else np.inf
        add(coefs, lower, upper)

    for j, pid in enumerate(guarded):  # lam + mu_p - z s_p sum_k x_k / cost_p >= 0
        per = robust[1] * spread[pid] / prog[pid].cost_per_trainee
        add({first_robust: 1.0, first_robust + 1 + j: 1.0}
            | {k: -per for k, v in enumerate(xs) if v.p == pid}, 0.0, np.inf)

    if ncols == 0:  # nothing can be funded and no soft rule: the empty allocation
        return constant, pd.DataFrame(columns=["program_id", "region_id", "fund_id", "period",
                                               "amount"])
    integrality = np.zeros(ncols)
    integrality[n:n + len(switched)] = 1
    upper = np.full(ncols, np.inf)
    upper[n:n + len(switched)] = 1
    constraints = [LinearConstraint(np.array(a_rows), lo, hi)] if a_rows else []
    res = milp(c, constraints=constraints, integrality=integrality,
               bounds=Bounds(np.zeros(ncols), upper),
               options={"mip_rel_gap": 1e-10, "presolve": True})
    if res.status == 2:
        raise Infeasible(res.message)
    if res.status != 0:
        raise RuntimeError(f"reference milp: status {res.status}: {res.message}")
    x = res.x[:n]
    alloc = pd.DataFrame({
        "program_id": [v.p for v in xs], "region_id": [v.r for v in xs],
        "fund_id": [v.f for v in xs], "period": [v.t for v in xs], "amount": x,
    })
    alloc = alloc[alloc["amount"] > 1e-7].reset_index(drop=True)
    return float(-res.fun) + constant, alloc


def _miss(lhs: float, op: str, rhs: float) -> float:
    if op == ">=":
        return max(rhs - lhs, 0.0)
    if op == "<=":
        return max(lhs - rhs, 0.0)
    return abs(lhs - rhs)


def evaluate(rnd: Round, allocation: pd.DataFrame) -> tuple[float, float]:
    """(outcome value, soft-rule penalty) of any allocation table with the key columns and amount.

    Rows outside the eligible set are an error: the caller checks eligibility this way too.
    """
    xs = eligible_vars(rnd)
    pos = {v: k for k, v in enumerate(xs)}
    x = np.zeros(len(xs))
    for row in allocation.itertuples(index=False):
        v = Var(row.program_id, row.region_id, row.fund_id, str(row.period))
        if v not in pos:
            raise ValueError(f"{v} is not eligible")
        x[pos[v]] += float(row.amount)
    prog = {p.program_id: p for p in rnd.programs}
    value = sum(rnd.value_per_trainee(prog[v.p]) / prog[v.p].cost_per_trainee * x[k]
                for k, v in enumerate(xs))
    penalty = 0.0
    for r in rule_rows(rnd, xs):
        if r.penalty is not None:
            lhs = sum(coef * x[k] for k, coef in r.coefs.items())
            penalty += r.penalty * _miss(lhs, r.op, r.rhs)
    return float(value), float(penalty)


def optimum_or_none(rnd: Round, drop: Collection[str] = ()) -> float | None:
    """The optimal objective, or None when the reference model is infeasible."""
    try:
        return reference_optimum(rnd, drop)[0]
    except Infeasible:
        return None
