"""Why each number is what it is: prices of rules and budgets, and a reason per program.

Reads a solved `Solution` only (duals of the pricing LP, reduced costs, the rounded
allocation); never re-solves. Sign conventions (`allocator.solve`): `row_dual` is the change of
the outcome value per unit of a row's right-hand side (maximisation), `col_dual` the reduced
cost c_j - a_j'y of a column. For a MILP round the pricing LP is the stage-1 model with every
all-or-nothing on/off decision fixed at its optimum, so the prices hold for small changes that
do not switch a program on or off.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from allocator.eligibility import CapBlock, cap_block_lines, cap_blocks, gate_reasons
from allocator.measures import MONEY_STEP
from allocator.round import FundKind, Op, Round

if TYPE_CHECKING:  # read from the solution: the explanations never build the model
    from allocator.engine import Solution
    from allocator.formulation import RuleGroup

MIP_NOTE = ("prices are worked out with every all-or-nothing program kept on or off as in the "
            "allocation: they hold for changes that do not switch a program on or off")
_TOL = 1e-9

PRICE_COLUMNS = ["kind", "id", "group", "jurisdiction", "period", "op", "value", "binding",
                 "shadow_price", "step", "per_step", "trainees_per_step", "sentence", "note"]


# --- prices ------------------------------------------------------------------------------------
def price_table(solution: Solution) -> pd.DataFrame:
    """Shadow price of every binding rule group and every fund budget per period.

    `shadow_price` is outcome value per currency unit of the row's right-hand side;
    `per_step` converts it into the rule's own unit: a share rule per percentage point
    (0.01 * the reference total), a per-capita rule per currency unit per inhabitant
    (the population), an amount rule or a budget per 10,000 currency units, a
    contribution_share rule per 0.01 of its value (0.01 * c_j * the selected total).
    """
    rnd: Round = solution.round
    prices = solution.prices
    records: list[dict] = []
    note = MIP_NOTE if solution.mip else ""
    per_trainee = _value_per_trainee(solution)
    cur = rnd.settings.currency
    if prices.row_dual is None:
        return pd.DataFrame(records, columns=PRICE_COLUMNS)
    x = _lp_amounts(solution)
    row_of = {(r.component, r.index): i for i, r in enumerate(solution.row_refs)}
    binding_of = _binding_by_key(solution.rules)
    for g in solution.rule_groups:
        row = row_of.get((g.family, (g.label,)))
        if row is None:
            continue
        dual = float(prices.row_dual[row])
        binding = binding_of[g.key]
        if not (binding or abs(dual) > _TOL):
            continue
        step, step_text, rhs_per_step = _rule_step(g, x, cur)
        per_step = dual * rhs_per_step
        records.append({
            "kind": "rule", "id": g.rule.rule_id, "group": g.group or "",
            "jurisdiction": g.jurisdiction or "", "period": "", "op": g.rule.op.value,
            "value": g.rule.value, "binding": binding, "shadow_price": dual,
            "step": step_text, "per_step": per_step,
            "trainees_per_step": per_step / per_trainee if per_trainee else None,
            "sentence": _rule_sentence(g, step, per_step, per_trainee),
            "note": note,
        })
    for fund in rnd.funds:
        for ti, t in enumerate(rnd.periods):
            if fund.carry_over:
                # Money added in t is available in t and every later period: sum their duals.
                rows = [row_of.get(("spend_fund_cumulative_max", (fund.fund_id, u)))
                        for u in rnd.periods[ti:]]
                rows = [r for r in rows if r is not None]
                own = row_of.get(("spend_fund_cumulative_max", (fund.fund_id, t)))
            else:
                own = row_of.get(("spend_fund_period_max", (fund.fund_id, t)))
                rows = [own] if own is not None else []
            if not rows:
                continue
            dual = float(sum(prices.row_dual[r] for r in rows))
            binding = own is not None and _row_binding(solution, own)
            per_step = dual * MONEY_STEP
            records.append({
                "kind": "budget", "id": fund.fund_id, "group": "", "jurisdiction": "",
                "period": t, "op": "<=", "value": float(rnd.budget(fund.fund_id, t)),
                "binding": binding, "shadow_price": dual, "step": f"{cur} {MONEY_STEP:,.0f}",
                "per_step": per_step,
                "trainees_per_step": per_step / per_trainee if per_trainee else None,
                "sentence": _budget_sentence(fund.fund_id, t, cur, per_step, per_trainee,
                                             fund.carry_over),
                "note": note,
            })
    return pd.DataFrame(records, columns=PRICE_COLUMNS)


def _binding_by_key(rules: pd.DataFrame) -> dict[tuple[str, str, str], bool]:
    """The rules table's `binding` by (rule_id, group, jurisdiction): a rule group's `key`."""
    if not len(rules):
        return {}
    keys = zip(rules["rule_id"], rules["group"], rules["jurisdiction"], strict=True)
    return {k: bool(b) for k, b in zip(keys, rules["binding"], strict=True)}


def _lp_amounts(solution) -> np.ndarray:
    """x of the pricing LP (the point its duals belong to)."""
    if solution.prices.x is not None and solution.columns is not None:
        return np.asarray(solution.prices.x)[solution.columns.x]
    return np.asarray(solution.lp_amounts)


def _value_per_trainee(solution) -> float:
    """Average outcome value per funded trainee (converts outcome points into placements)."""
    alloc = solution.allocation
    if len(alloc) and alloc["trainees"].sum() > 0:
        return float(alloc["value"].sum() / alloc["trainees"].sum())
    values = [solution.round.value_per_trainee(p) for p in solution.round.programs]
    return max(values) if values else 0.0


def _row_binding(solution, row: int) -> bool:
    prog = solution.prices.program
    act = float(prog.A[row] @ solution.prices.x)
    tol = 1e-6 * max(1.0, abs(act))
    return bool(abs(act - prog.row_upper[row]) <= tol or abs(act - prog.row_lower[row]) <= tol)


def _binding_rows(solution) -> np.ndarray:
    """`_row_binding` of every row of the pricing LP, from one sparse product.

    Slicing one row out of the matrix costs about a millisecond; program_reasons asks about
    thousands of rows on a 10,000-program round.
    """
    prog = solution.prices.program
    act = np.asarray(prog.A @ np.asarray(solution.prices.x, dtype=float), dtype=float).ravel()
    tol = 1e-6 * np.maximum(1.0, np.abs(act))
    upper = np.asarray(prog.row_upper, dtype=float)
    lower = np.asarray(prog.row_lower, dtype=float)
    with np.errstate(invalid="ignore"):  # inf - inf on a free row: not binding
        return (np.abs(act - upper) <= tol) | (np.abs(act - lower) <= tol)


def _rule_step(g: RuleGroup, x: np.ndarray, cur: str) -> tuple[float, str, float]:
    """(step of the rule's value, its text, change of the row's rhs per step)."""
    m = g.measure
    rel = float(x[g.rel].sum()) if len(g.rel) else 0.0
    return m.step, m.step_words(cur), m.rhs_per_step(rel, g.scale)


def _rule_sentence(g: RuleGroup, step: float, per_step: float, per_trainee: float) -> str:
    kind = {Op.ge: "floor", Op.le: "cap", Op.eq: "target"}[g.rule.op]
    where = ""
    if g.group:
        where += f" for {g.group}"
    if g.jurisdiction:
        where += f" (contributor {g.jurisdiction})"
    desc = g.rule.description.strip()
    # A short description names the rule ("the inclusion floor R-INC"); a sentence-long one
    # would bury the number, and the Rules sheet shows it anyway.
    short = desc and len(desc.split()) <= 4 and not any(c in desc for c in ":;,.()%")
    label = f"the {desc} {kind} {g.rule.rule_id}" if short else f"the {kind} {g.rule.rule_id}"
    v = g.rule.value
    effect = _effect(per_step, per_trainee)
    return f"Raising {label}{where} from {g.measure.text(v)} to {g.measure.text(v + step)} {effect}"


def _effect(per_step: float, per_trainee: float) -> str:
    if abs(per_step) <= 1e-9:
        return "changes nothing at the margin"
    verb = "costs" if per_step < 0 else "gains"
    text = f"{verb} {abs(per_step):.3g} outcome points"
    if per_trainee:
        text += f" (about {abs(per_step) / per_trainee:.2g} trainee placements)"
    return text


def _budget_sentence(fund: str, period: str, cur: str, per_step: float, per_trainee: float,
                     carry: bool) -> str:
    where = f"{fund} {period}" + (" (carried over to later periods if unspent)" if carry else "")
    if abs(per_step) <= 1e-9:
        return f"Extra money in {where} buys nothing: this budget is not spent to its limit"
    text = f"Each extra {cur} {MONEY_STEP:,.0f} in {where} buys {per_step:.3g} outcome points"
    if per_trainee:
        text += f" (about {per_step / per_trainee:.2g} trainee placements)"
    return text


# --- soft rules --------------------------------------------------------------------------------
def add_shortfalls(rules: pd.DataFrame) -> pd.DataFrame:
    """The rules table with `shortfall`: how far (in currency of the row) a rule is missed.

    A soft rule may be missed at its penalty; a hard rule only by rounding. 0 when kept.
    """
    out = rules.copy()
    slack = pd.to_numeric(out["slack"], errors="coerce").fillna(0.0)
    tol = 1e-6 * np.maximum(1.0, pd.to_numeric(out["selected_amount"], errors="coerce").fillna(0.0))
    out["shortfall"] = np.where(slack < -tol, -slack, 0.0)
    return out


SOFT_COLUMNS = ["rule_id", "group", "jurisdiction", "op", "target", "achieved", "penalty",
                "shortfall", "shortfall_in_rule_unit", "sentence"]


def soft_rule_table(solution: Solution) -> pd.DataFrame:
    """Each group of a soft rule: its penalty, and the shortfall in currency and in its own unit.

    """
    rules = add_shortfalls(solution.rules)
    soft = rules[rules["penalty"].notna()]
    records: list[dict] = []
    if soft.empty:
        return pd.DataFrame(records, columns=SOFT_COLUMNS)
    by_key = {g.key: g for g in solution.rule_groups}
    cur = solution.round.settings.currency
    for _, r in soft.iterrows():
        g = by_key[(r["rule_id"], r["group"], r["jurisdiction"])]
        short = float(r["shortfall"])
        unit_short = _in_rule_unit(g, short, r)
        if short > 0:
            text = (f"{r['rule_id']}{' for ' + r['group'] if r['group'] else ''} is missed by "
                    f"{cur} {short:,.0f} ({unit_short:.4g} in its own unit), at a penalty of "
                    f"{float(r['penalty']) * MONEY_STEP:,.4g} outcome value per {cur} "
                    f"{MONEY_STEP:,.0f}")
        else:
            text = f"{r['rule_id']}{' for ' + r['group'] if r['group'] else ''} is met"
        records.append({"rule_id": r["rule_id"], "group": r["group"],
                        "jurisdiction": r["jurisdiction"], "op": r["op"], "target": r["target"],
                        "achieved": r["achieved"], "penalty": float(r["penalty"]),
                        "shortfall": short, "shortfall_in_rule_unit": unit_short,
                        "sentence": text})
    return pd.DataFrame(records, columns=SOFT_COLUMNS)


def _in_rule_unit(g: RuleGroup, short: float, row) -> float:
    ref = row["reference_amount"]
    ref = float(ref) if ref is not None and not pd.isna(ref) else 0.0
    return g.measure.in_rule_unit(short, ref, g.scale)


# --- a reason per program ----------------------------------------------------------------------
REASON_COLUMNS = ["program_id", "status", "reason"]
_LIMIT_ROWS = ("trainees_program_period_max", "trainees_program_period_min")


def program_reasons(solution) -> pd.DataFrame:
    """One row per program of the Programs sheet: status and a reason a person can read.

    Statuses: fully funded, funded partly, not funded, below minimum, gated, not eligible.
    """
    rnd: Round = solution.round
    index = solution.index
    cur = rnd.settings.currency
    barred, no_performance = gate_reasons(rnd)
    perf_funds = [f.fund_id for f in rnd.funds if f.kind == FundKind.performance]
    alloc = solution.allocation
    money = defaultdict(float)
    for p, t, a in zip(alloc["program_id"], alloc["period"], alloc["amount"], strict=True):
        money[(p, t)] += float(a)
    ks_of: dict[str, list[int]] = defaultdict(list)
    for k in range(len(index)):
        ks_of[index.programs[index.p[k]]].append(k)
    unit = float(rnd.settings.rounding_unit)
    marginal = _marginal(solution)
    blocks: dict[str, list[CapBlock]] = defaultdict(list)
    for b in cap_blocks(rnd, index):
        blocks[b.program].append(b)
    effects = None  # the pricing LP's price effects, made once when a program needs them
    binding = None  # and which of its rows bind, also made once
    records = []
    for prog in rnd.programs:
        pid = prog.program_id
        if pid in index.exclusions:
            text = "; ".join(index.exclusions[pid])
            gated = pid in barred or (perf_funds and all(
                "performance fund" in part for part in _fund_parts(text)))
            records.append({"program_id": pid, "status": "gated" if gated else "not eligible",
                            "reason": text})
            continue
        ks = ks_of[pid]
        periods = [t for t in rnd.periods if any(index.periods[index.t[k]] == t for k in ks)]
        cap = prog.max_trainees * prog.round_cost_per_trainee  # in-round money at capacity
        total = sum(money[(pid, t)] for t in periods)
        gate_note = ""
        if pid in no_performance and perf_funds:
            gate_note = (f"; gated from performance fund(s) {', '.join(perf_funds)}: targets not "
                         "met")
        inactive = [t for t in rnd.periods if t not in periods]
        if inactive:
            gate_note += f"; no eligible money in {', '.join(inactive)}"
        if total > 0:
            short = [t for t in periods if money[(pid, t)] < cap - unit - 1e-9]
            if not short:
                records.append({"program_id": pid, "status": "fully funded",
                                "reason": f"capped by capacity: {prog.max_trainees:g} trainees "
                                          f"per period (max_trainees) in {', '.join(periods)}"
                                          + gate_note})
                continue
            parts = []
            for t in short:
                got = money[(pid, t)] / prog.round_cost_per_trainee
                if effects is None and solution.prices.row_dual is not None:
                    effects, binding = _price_effects(solution), _binding_rows(solution)
                block = next((b for b in blocks.get(pid, []) if b.period == t), None)
                why = _limits(solution, [k for k in ks if index.periods[index.t[k]] == t],
                              effects, binding) if block is None else (
                    f"blocked by co-financing caps ({', '.join(f'{f} {c:.0%}' for f, c in block.caps)}"
                    f" add up to less than the {block.needed:.0%} the round must pay)")
                parts.append(f"{got:.4g} of {prog.max_trainees:g} trainees in {t}: {why}")
            records.append({"program_id": pid, "status": "funded partly",
                            "reason": "; ".join(parts) + gate_note})
            continue
        # Not funded: would a marginal currency unit here be worth it (ignoring its size limits)?
        best_k, best_gap, best_value, best_marg = None, -np.inf, 0.0, 0.0
        for k in ks:
            value, marg = marginal[k]
            if value - marg > best_gap:
                best_k, best_gap, best_value, best_marg = k, value - marg, value, marg
        if best_k is None:
            records.append({"program_id": pid, "status": "not eligible",
                            "reason": "no eligible money" + gate_note})
            continue
        blocked = blocks.get(pid, [])
        if blocked and {b.period for b in blocked} >= set(periods):
            records.append({"program_id": pid, "status": "blocked by caps",
                            "reason": "; ".join(cap_block_lines(blocked)) + gate_note})
            continue
        if prog.min_trainees > 0 and best_gap > 1e-9 * max(1.0, abs(best_marg)):
            need = prog.min_trainees * prog.round_cost_per_trainee
            records.append({"program_id": pid, "status": "below minimum",
                            "reason": f"below its all-or-nothing minimum: {prog.min_trainees:g} "
                                      f"trainees ({cur} {need:,.0f}) per period would be needed, "
                                      "and that much does not pay off against what the money "
                                      "buys elsewhere (or is not available)" + gate_note})
            continue
        if effects is None and solution.prices.row_dual is not None:
            effects, binding = _price_effects(solution), _binding_rows(solution)
        budgets, rules, cofin = _holding(solution, _program_rows(solution, ks, effects), binding) \
            if effects is not None else ([], [], [])
        held = [f"budget(s) {', '.join(budgets)} fully spent on programs that buy more"] \
            if budgets else []
        held += [f"held back by rule(s) {', '.join(rules)}"] if rules else []
        held += [f"co-financing cap of {', '.join(cofin)}"] if cofin else []
        if best_value <= 0:
            reason = (f"it buys no outcome value ({best_value:.4g} per {cur} with the Objective "
                      "weights), so no money is spent on it")
        elif best_marg > 0 and best_gap < -1e-9 * best_marg:
            pct = 100.0 * (best_marg - best_value) / best_marg
            # per 10,000 currency units, as the Prices sheet shows prices (never 1e-05)
            reason = (f"its outcome value per {cur} {MONEY_STEP:,.0f} ({best_value * MONEY_STEP:,.3f})"
                      f" is {pct:.3g}% below what the marginal money buys "
                      f"({best_marg * MONEY_STEP:,.3f})")
            if held:
                reason += ": " + "; ".join(held)
        elif rules:
            reason = f"held back by rule(s) {', '.join(rules)}"
        elif cofin:
            reason = f"held back by the co-financing cap of {', '.join(cofin)}"
        elif best_marg <= 0 < best_value:
            reason = "no money reaches it: the budgets it could use are bound by rules elsewhere"
        elif budgets:
            reason = (f"budget(s) {', '.join(budgets)} fully spent: it buys what the marginal "
                      f"money buys ({best_value * MONEY_STEP:,.3f} per {cur} {MONEY_STEP:,.0f}) and is "
                      "next in line for more")
        else:
            reason = ("ties with the marginal money; the tie-break between equally good "
                      "allocations gave it nothing")
        records.append({"program_id": pid, "status": "not funded", "reason": reason + gate_note})
    return pd.DataFrame(records, columns=REASON_COLUMNS)


# --- unspent budget ----------------------------------------------------------------------------
UNSPENT_FLAG = 0.05  # unspent budget above this share of the total budget is flagged
_CAUSE_ORDER = ("caps", "capacity", "rules", "cofinancing", "minimum", "value", "other")


def unspent_note(solution) -> str | None:
    """'EUR 1,600,000 (52%) unspent: <main cause>' when more than 5% of the budget is unspent.

    The fund with the most unspent budget is examined: each program-period it can pay is put
    down to one cause — never fundable under its funds' co-financing caps, at capacity, held
    back by a rule or by a co-financing cap (rows of the pricing LP that bind with a price
    making that money dearer), an all-or-nothing minimum, or no outcome value — and the cause
    of most of them is named, with the rules or funds involved.
    """
    rnd: Round = solution.round
    cur = rnd.settings.currency
    budget = float(sum(b.amount for b in rnd.budgets))
    alloc = solution.allocation
    spent_by_fund = alloc.groupby("fund_id")["amount"].sum().to_dict() if len(alloc) else {}
    unspent = budget - float(sum(spent_by_fund.values()))
    if budget <= 0 or unspent <= UNSPENT_FLAG * budget:
        return None
    left = {f.fund_id: float(sum(rnd.budget(f.fund_id, t) for t in rnd.periods))
            - float(spent_by_fund.get(f.fund_id, 0.0)) for f in rnd.funds}
    fund = max(rnd.funds, key=lambda f: left[f.fund_id]).fund_id
    head = f"{cur} {unspent:,.0f} ({unspent / budget:.0%}) unspent: "
    return head + _unspent_cause(solution, fund)


def _unspent_cause(solution, fund: str) -> str:
    """Why fund `fund` keeps money: the cause of most of the program-periods it can pay."""
    rnd: Round = solution.round
    index = solution.index
    fi = index.funds.index(fund)
    ks_of: dict[tuple[str, str], list[int]] = defaultdict(list)
    for k in np.flatnonzero(index.f == fi).tolist():
        ks_of[(index.programs[index.p[k]], index.periods[index.t[k]])].append(k)
    if not ks_of:
        return (f"fund {fund}'s budget can reach no program (its eligible filter, the programs' "
                "periods and regions leave none)")
    blocked = {(b.program, b.period) for b in cap_blocks(rnd, index)}
    if set(ks_of) <= blocked:
        return (f"fund {fund}'s budget can reach no fundable program (every eligible program is "
                "blocked by co-financing caps)")
    alloc = solution.allocation
    money = alloc.groupby(["program_id", "period"])["amount"].sum().to_dict() if len(alloc) else {}
    unit = float(rnd.settings.rounding_unit)
    A = binding = None
    if solution.prices.row_dual is not None:
        A, binding = _price_effects(solution), _binding_rows(solution)
    causes: dict[str, list[str]] = defaultdict(list)  # cause -> the rules / funds / programs
    for (pid, t), ks in sorted(ks_of.items()):
        prog = rnd.program(pid)
        got = float(money.get((pid, t), 0.0))
        if (pid, t) in blocked:
            causes["caps"].append(pid)
        elif got >= prog.max_trainees * prog.round_cost_per_trainee - unit - 1e-9:
            causes["capacity"].append(pid)
        elif rnd.value_per_trainee(prog) <= 0:
            causes["value"].append(pid)
        else:
            _, rules, cofin = _holding(solution, _program_rows(solution, ks, A), binding) \
                if A is not None else ([], [], [])
            if rules:
                causes["rules"].extend(rules)
            elif cofin:
                causes["cofinancing"].extend(cofin)
            elif prog.min_trainees > 0 and got == 0:
                causes["minimum"].append(pid)
            else:
                causes["other"].append(pid)
    main = max(_CAUSE_ORDER, key=lambda c: (len(causes[c]), -_CAUSE_ORDER.index(c)))
    names = ", ".join(sorted(set(causes[main])))
    return {
        "caps": f"fund {fund}'s budget reaches mostly programs that can never be funded "
                f"(blocked by co-financing caps: {names})",
        "capacity": f"the programs fund {fund} can pay are at capacity (max_trainees: {names})",
        "rules": f"rule(s) {names} hold back the programs fund {fund} can pay",
        "cofinancing": f"co-financing caps of {names} limit what fund {fund} can pay",
        "minimum": f"the programs fund {fund} can pay are all-or-nothing and their minimums do "
                   f"not pay off ({names})",
        "value": f"the programs fund {fund} can pay buy no outcome value ({names})",
        "other": f"fund {fund}'s money is not needed at the optimum ({names})",
    }[main]


def _fund_parts(text: str) -> list[str]:
    inner = text[text.find("(") + 1: text.rfind(")")] if "(" in text else text
    return [p.strip() for p in inner.split(";") if p.strip()]


def _marginal(solution) -> list[tuple[float, float]]:
    """Per x: (its outcome value per currency unit, what the marginal money buys instead).

    The opportunity cost is a_k'y over the rows x_k is in, leaving out the program's own
    capacity and minimum-size rows: those say whether this program could grow, not what
    the money would buy elsewhere.
    """
    prices = solution.prices
    cols = solution.columns
    n = len(solution.index)
    if prices.row_dual is None or cols is None:
        return [(0.0, 0.0)] * n
    prog = prices.program
    keep = np.array([not r.component.startswith(_LIMIT_ROWS) for r in solution.row_refs],
                    dtype=bool)
    y = np.where(keep, prices.row_dual, 0.0)
    # Dual-weighted use of the rows, for every column at once (one sparse product, not n).
    opp = np.asarray(prog.A.T @ y).ravel()
    j = np.asarray(cols.x[:n], dtype=np.int64)
    return list(zip(np.asarray(prog.c)[j].astype(float).tolist(), opp[j].astype(float).tolist(),
                    strict=True))


def _limits(solution, ks: list[int], effects: sp.csc_matrix | None = None,
            binding: np.ndarray | None = None) -> str:
    """Which rows hold a program back in one period: budgets at the margin, rules, caps.

    `effects` is `_price_effects` and `binding` the `_binding_rows`, when the caller has them
    (making them once per program would make a large round's reasons quadratic).
    """
    prices = solution.prices
    if prices.row_dual is None or not ks:
        return "limited at the margin"
    if effects is None:
        effects = _price_effects(solution)
    if binding is None:
        binding = _binding_rows(solution)
    # A share-type rule sees the program through a reference total t: follow t to its rules.
    rows = _program_rows(solution, ks, effects)
    budgets, rules, cofin = _holding(solution, rows, binding)
    floors = _holding(solution, {i: -v for i, v in rows.items()}, binding)[1]
    parts = []
    if budgets:
        parts.append(f"budget ran out at the margin ({', '.join(budgets)} fully spent)")
    if rules:
        parts.append(f"held back by rule(s) {', '.join(rules)}")
    if cofin:
        parts.append(f"co-financing cap of {', '.join(cofin)}")
    if floors:  # a rule that gives the program money it would not get otherwise
        parts.append(f"kept at the level rule(s) {', '.join(floors)} require")
    return "; ".join(parts) if parts else "funded partly at the margin (ties with other programs)"


def _holding(solution, rows: dict[int, float], binding: np.ndarray
             ) -> tuple[list[str], list[str], list[str]]:
    """(budgets, rules, co-financing funds) that hold back the money of these rows' columns:
    rows that bind with a price that makes that money dearer (`rows`: row -> the largest
    price effect on a unit of it, from `_program_rows`). A rule that pulls money towards the
    program (a floor it helps to meet) is not holding it back. Each list sorted, no repeats."""
    prices = solution.prices
    refs = solution.row_refs
    budgets, rules, cofin = [], [], []
    for i in sorted(rows):
        if abs(prices.row_dual[i]) <= 1e-9 or not binding[i] or rows[i] <= 1e-12:
            continue
        ref = refs[i]
        if ref.component in ("spend_fund_period_max", "spend_fund_cumulative_max"):
            budgets.append(" ".join(ref.index))
        elif ref.is_rule:
            rules.append(str(ref.index[0]).split(",")[0])
        elif ref.component == "cofinancing_fund_program_period_max":
            cofin.append(ref.index[0])
    if not budgets:  # money the program could use may be bound without a price on its own row
        budgets = [" ".join(refs[i].index) for i in sorted(rows)
                   if refs[i].component.startswith("spend_fund") and binding[i]]
    return sorted(set(budgets)), sorted(set(rules)), sorted(set(cofin))


# `Solution.derived` key of the price effects.
PRICE_EFFECTS = "price_effects"


def _price_effects(solution) -> sp.csc_matrix:
    """`price_effects` of the solution's pricing LP, made once per solution (a run makes it
    beside the tie-break's solve: `allocator.engine`)."""
    cached = solution.derived.get(PRICE_EFFECTS)
    if cached is None:
        cached = solution.derived[PRICE_EFFECTS] = price_effects(solution, solution.prices.program)
    return cached


def price_effects(built, program) -> sp.csc_matrix:
    """Per column of the pricing LP `program` of a model or solution `built` (its `row_refs`
    and `columns`), as CSC: what one more unit of it puts on each row, its own coefficient
    or, on a reference total t it feeds (t = sum x), t's coefficients on the other rows. A
    program's rows are then a few column slices."""
    A = program.A.tocsr()
    refs = built.row_refs
    is_total = np.array([r.component == "reference_total_define" for r in refs], dtype=bool)
    effects = sp.diags((~is_total).astype(float)) @ A
    totals = np.flatnonzero(is_total)
    if len(totals):
        t_cols = np.asarray(built.columns.t)[[int(refs[i].index[0]) for i in totals]]
        through = A.tocsc()[:, t_cols].tocoo()
        other = through.row != totals[through.col]  # not the total's own defining row
        through = sp.csr_matrix((through.data[other], (through.row[other], through.col[other])),
                                shape=(A.shape[0], len(totals)))
        feeds = A[totals]
        feeds.data = np.ones_like(feeds.data)  # which totals each column feeds
        effects = effects + through @ feeds
    return effects.tocsc()


def _program_rows(solution, ks: list[int], effects: sp.csc_matrix) -> dict[int, float]:
    """Row -> the largest price effect a_ik * y_i of one more unit of any of these x on the
    rows of the pricing LP, directly or through the reference totals t it feeds."""
    ptr = effects.indptr
    cols = [int(solution.columns.x[k]) for k in ks]
    at = np.concatenate([np.arange(ptr[c], ptr[c + 1]) for c in cols]) if cols else \
        np.zeros(0, dtype=np.int64)
    rows = effects.indices[at]
    values = effects.data[at] * np.asarray(solution.prices.row_dual, dtype=float)[rows]
    order = np.lexsort((values, rows))  # by row, the largest value last
    rows, values = rows[order], values[order]
    last = np.append(rows[1:] != rows[:-1], True)
    return dict(zip(rows[last].tolist(), values[last].tolist(), strict=True))


__all__ = ["MIP_NOTE", "add_shortfalls", "price_table", "program_reasons", "soft_rule_table",
           "unspent_note"]
