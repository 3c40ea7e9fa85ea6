"""From one round to the next: the next round's workbook from a decision and measured results.

Stage after settlement. decision record + results workbooks -> next round's {sheet: rows} ->
a round workbook that `allocator run` reads without edits, plus a Changes sheet that lists
every value that differs from the earlier round, with the old value, the new one and why, for
the fund manager to accept or edit. The decisions taken where the contract is silent:

- Periods: as many as the earlier round, following its last one (2026-2028 -> 2029-2031 for
  year-like labels; other labels continue as `Q4+1`, `Q4+2`, as the Disbursements sheet names
  periods past a round's end). Everything that names a period moves with it by position:
  budgets, programs' start/end periods, `period=` conditions of filters.
- Budgets: each fund's budget of the k-th earlier period is copied to the k-th new period (a
  starting point to edit); a fund that carries over also gets, in the first new period, the
  budget it left unspent and the money settlement withheld from it. Other funds' unspent and
  withheld money lapses or is returned, as in the earlier round.
- Performance: a program with measured results gets one row per metric from them (target and
  achieved as averages over its funded periods, weighted by trainees); its earlier rows are
  replaced, since the newer evidence decides. Other programs keep their rows.
- Expected outcomes: credibility weighting new = (k*expected + n*measured)/(k+n), k the round's
  prior_weight, n the trainees measured (completed trainees, or the funded trainees of a
  program-period whose `trainees` cell is blank), measured = the trainee-weighted mean of
  `achieved` (a Results row's `achieved` is the measured value of the outcome column per
  trainee, e.g. the measured employment rate).
- Pilots whose results score over all their Results rows is >= 1 (every target met) are marked
  `ready_to_scale_up = yes` in an extra Programs column (and `no` for pilots that missed); their
  stage stays `pilot` and no program is invented: a scale-up with `pilot_of` pointing at them
  becomes fundable through the Performance rows.
- With no results workbook, nothing is settled: only unspent money is carried.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from allocator.filters import Filter
from allocator.results import Results, load_results, merge_results, outcome_metrics
from allocator.robust import derived_se
from allocator.round import RATE_COLUMNS, Frozen, ProgramRow, Round, Stage
from allocator.settle import Decision, fund_totals, load_decision, settle
from allocator.validate import SE_SUFFIX

CHANGE_COLUMNS = ["sheet", "key", "column", "old_value", "new_value", "why"]


def next_period_label(periods: Sequence[str], steps: int) -> str:
    """The label `steps` periods after the round's last: 2028 -> 2029 for year-like labels
    (evenly spaced whole numbers), else as the Disbursements sheet names it (`Q4+1`)."""
    numbers = [int(p) for p in periods if re.fullmatch(r"\d{1,6}", p)]
    if len(numbers) == len(periods):
        step = numbers[-1] - numbers[-2] if len(numbers) > 1 else 1
        if step > 0 and all(b - a == step for a, b in itertools.pairwise(numbers)):
            return str(numbers[-1] + step * steps)
    return f"{periods[-1]}+{steps}"


@dataclass
class NextRound:
    """The next round's workbook as written, and what changed."""

    path: Path
    round_id: str
    periods: list[str]
    sheets: dict[str, Any]
    changes: pd.DataFrame


def write_next_round(record: str | Path, results: Sequence[str | Path], out: str | Path) -> NextRound:
    """Validate the results against the record, build the next round and write it atomically."""
    from allocator.template import write_round_workbook

    decision = load_decision(record)
    parts = [load_results(p, decision.round, decision.funded()) for p in results]
    merged = merge_results(parts, [Path(p).name for p in results]) if parts else None
    sheets, changes = next_round_sheets(decision, merged)
    path = write_round_workbook(Path(out), {**sheets, "Changes": changes})
    return NextRound(path, sheets["Round"]["round_id"], sheets["Round"]["periods"].split(", "),
                     sheets, pd.DataFrame(changes, columns=CHANGE_COLUMNS))


def next_round_sheets(decision: Decision, results: Results | None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """{sheet: rows} of the next round, and the Changes rows."""
    rnd = decision.round
    old = list(rnd.periods)
    new = [next_period_label(old, i) for i in range(1, len(old) + 1)]
    shift = dict(zip(old, new, strict=True))
    changes: list[dict[str, Any]] = []

    def change(sheet: str, key: str, column: str, before: Any, after: Any, why: str) -> None:
        changes.append(dict(zip(CHANGE_COLUMNS, [sheet, key, column, _shown(before),
                                                 _shown(after), why], strict=True)))

    settings = _round_settings(rnd, new, shift, change)
    measured = _measured(decision, results) if results is not None else {}
    sheets: dict[str, Any] = {
        "Round": settings,
        "Regions": [_row(r) for r in rnd.regions],
        "Funds": [_fund(f, shift, change) for f in rnd.funds],
        "Budgets": _budgets(decision, results, new, change),
        "Contributions": [_row(c) for c in rnd.contributions],
        "Programs": _programs(rnd, shift, measured, results, change),
        "Performance": _performance(rnd, measured, change),
        "Tranches": [_row(t) for t in rnd.tranches],
        "Objective": [_row(o) for o in rnd.objective],
        "Rules": [_rule(r, shift, change) for r in rnd.rules],
    }
    return {k: v for k, v in sheets.items() if v or k in ("Round",)}, changes


# --- cells ---------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    """A model value as the workbook cell that reads back to it."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Filter):
        return str(value) or None
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _row(row: Frozen, **override: Any) -> dict[str, Any]:
    """A row model as {column: cell}: its fields (contract-1.1 fields only when set), then
    outcome columns and extra columns."""
    out: dict[str, Any] = {}
    defaults = type(row).added_defaults()
    for name in type(row).model_fields:
        if name in ("outcomes", "attributes", "outcome_se"):
            continue
        value = getattr(row, name)
        if name in defaults and _cell(value) == _cell(defaults[name]):
            continue
        if value is not None:
            out[name] = _cell(value)
    out.update(override)
    for name, value in getattr(row, "outcomes", {}).items():
        out.setdefault(name, value)
    for metric, value in getattr(row, "outcome_se", {}).items():  # back to `<metric>_se` columns
        out.setdefault(f"{metric}{SE_SUFFIX}", value)
    for name, value in getattr(row, "attributes", {}).items():
        out.setdefault(name, value)
    return {k: v for k, v in out.items() if v is not None}


def _shown(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Decimal | Fraction):
        return _cell(Decimal(value) if isinstance(value, Decimal) else value)
    return value


def _money(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


# --- sheets ----------------------------------------------------------------------------------------
def _round_settings(rnd: Round, new: list[str], shift: dict[str, str], change) -> dict[str, Any]:
    s = rnd.settings
    old_id = s.round_id
    first = rnd.periods[0]
    round_id = old_id.replace(first, shift[first]) if first in old_id and first != "all" \
        else f"{old_id}-next"
    title = _shift_text(s.title, shift) if s.title else s.title
    out = _row(s)
    out.update(round_id=round_id, periods=", ".join(new), title=title or None)
    change("Round", "round_id", "value", old_id, round_id, "the next round has its own id")
    change("Round", "periods", "value", ", ".join(rnd.periods), ", ".join(new),
           f"the same number of periods, following the last one ({rnd.periods[-1]})")
    if title != s.title:
        change("Round", "title", "value", s.title, title, "period labels in the title moved on")
    return {k: v for k, v in out.items() if v is not None}


def _shift_text(text: str, shift: dict[str, str]) -> str:
    """Every period label that stands alone in a text, moved on (one pass, no chains)."""
    labels = sorted(shift, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, labels)) + r")(?![\w])")
    return pattern.sub(lambda m: shift[m.group(1)], text)


def _shift_filter(flt: Filter, shift: dict[str, str]) -> Filter:
    conditions = tuple(c.model_copy(update={"values": tuple(sorted(shift.get(v, v)
                                                                   for v in c.values))})
                       if c.key == "period" else c for c in flt.conditions)
    return flt.model_copy(update={"conditions": conditions})


def _fund(f, shift: dict[str, str], change) -> dict[str, Any]:
    moved = _shift_filter(f.eligible, shift)
    if moved != f.eligible:
        change("Funds", f.fund_id, "eligible", str(f.eligible), str(moved),
               "period conditions moved to the next round's periods")
    return _row(f, eligible=str(moved) or None)


def _rule(r, shift: dict[str, str], change) -> dict[str, Any]:
    override = {}
    for name in ("select", "relative_to"):
        flt = getattr(r, name)
        moved = _shift_filter(flt, shift)
        if moved != flt:
            change("Rules", r.rule_id, name, str(flt), str(moved),
                   "period conditions moved to the next round's periods")
        override[name] = str(moved) or None
    return _row(r, **override)


def _budgets(decision: Decision, results: Results | None, new: list[str],
             change) -> list[dict[str, Any]]:
    """Budgets copied period by period; a carry-over fund's unspent and withheld money added
    to the first new period."""
    rnd = decision.round
    unit = rnd.settings.rounding_unit
    spent: dict[str, int] = {}
    for (_p, _r, f, _t), u in decision.units.items():
        spent[f] = spent.get(f, 0) + u
    withheld: dict[str, int] = {}
    if results is not None:
        for ft in fund_totals(settle(decision, results)):
            withheld[ft["fund_id"]] = ft["carried"]
    rows = []
    if rnd.budgets:
        change("Budgets", "(every fund)", "period", ", ".join(rnd.periods), ", ".join(new),
               "each fund's budget of an earlier period is copied to the new period in the "
               "same position (edit the amounts as the funds decide)")
    for fund in rnd.funds:
        amounts = [rnd.budget(fund.fund_id, t) for t in rnd.periods]
        carried = Decimal(0)
        why = []
        if fund.carry_over:
            unspent = sum(amounts, Decimal(0)) - Decimal(spent.get(fund.fund_id, 0)) * unit
            held = Decimal(withheld.get(fund.fund_id, 0)) * unit
            carried = unspent + held
            if unspent:
                why.append(f"{_money(unspent):,} left unspent in the earlier round")
            if held:
                why.append(f"{_money(held):,} withheld at settlement")
        for i, (t_old, t_new) in enumerate(zip(rnd.periods, new, strict=True)):
            amount = amounts[i] + (carried if i == 0 else 0)
            has_row = any(b.fund_id == fund.fund_id and b.period == t_old for b in rnd.budgets)
            if not has_row and not amount:
                continue
            rows.append({"fund_id": fund.fund_id, "period": t_new, "amount": _money(amount)})
            if i == 0 and carried:
                change("Budgets", f"{fund.fund_id}/{t_new}", "amount", _money(amounts[0]),
                       _money(amount), f"{_money(amounts[0]):,} as in {t_old}, plus "
                       f"{' and '.join(why)} (the fund carries over)")
    return rows


@dataclass
class Measured:
    """A program's measured value of one metric over the funded periods with results."""

    target: float
    achieved: float
    trainees: float  # n: the trainees the measurement stands for
    periods: tuple[str, ...]


def _measured(decision: Decision, results: Results) -> dict[tuple[str, str], Measured]:
    """(program, metric) -> trainee-weighted target and achieved over its funded periods."""
    groups: dict[tuple[str, str], list] = {}
    for r in results.results:
        completed = results.completed(r.program_id, r.period)
        n = completed if completed is not None else decision.funded_trainees(r.program_id,
                                                                              r.period)
        groups.setdefault((r.program_id, r.metric), []).append((r, n))
    out = {}
    for key, rows in groups.items():
        total = sum((n for _, n in rows), Fraction(0))
        weights = [n / total for _, n in rows] if total else [Fraction(1, len(rows))] * len(rows)
        out[key] = Measured(
            target=float(sum(w * Fraction(_exact(r.target)) for (r, _), w in zip(rows, weights,
                                                                               strict=True))),
            achieved=float(sum(w * Fraction(_exact(r.achieved)) for (r, _), w in zip(
                rows, weights, strict=True))),
            trainees=float(total), periods=tuple(r.period for r, _ in rows))
    return out


def _exact(x: float) -> Fraction:
    from allocator.results import exact

    return exact(x)


def credibility(expected: float, measured: float, n: float, k: float) -> float:
    """new = (k*expected + n*measured)/(k+n): the prior counts as k trainees of evidence."""
    return (k * expected + n * measured) / (k + n)


def _programs(rnd: Round, shift: dict[str, str], measured: dict[tuple[str, str], Measured],
              results: Results | None, change) -> list[dict[str, Any]]:
    k = rnd.settings.prior_weight
    rows = []
    for p in rnd.programs:
        override: dict[str, Any] = {}
        for name in ("start_period", "end_period"):
            value = getattr(p, name)
            if value is not None:
                override[name] = shift[value]
                change("Programs", p.program_id, name, value, shift[value],
                       "periods moved on by position")
        for metric, expected in sorted(p.outcomes.items()):
            m = measured.get((p.program_id, metric))
            if m is None or not m.trainees:
                continue
            new = credibility(expected, m.achieved, m.trainees, k)
            override[metric] = new
            change("Programs", p.program_id, metric, expected, new,
                   f"credibility weighting (k x expected + n x measured) / (k + n) = "
                   f"({k:g} x {expected:g} + {m.trainees:g} x {m.achieved:.6g}) / "
                   f"({k:g} + {m.trainees:g}); measured over {', '.join(m.periods)}")
            if metric not in p.outcome_se:  # offered for a robust allocation (robust_gamma)
                rate = metric in RATE_COLUMNS
                se = derived_se(new, m.trainees, k, rate=rate)
                override[f"{metric}{SE_SUFFIX}"] = se
                change("Programs", p.program_id, f"{metric}{SE_SUFFIX}", None, se,
                       "standard error offered from the credibility weight: "
                       + (f"sqrt(p (1 - p)) / sqrt(k + n) with p = {new:.6g}" if rate else
                          f"|estimate| / sqrt(k + n) with estimate {new:.6g}")
                       + f", k = {k:g}, n = {m.trainees:g} (used only when robust_gamma > 0)")
        if p.stage == Stage.pilot and results is not None:
            ready = _pilot_ready(p, results)
            before = p.attributes.get("ready_to_scale_up", "")
            if ready is not None and before != ("yes" if ready[0] else "no"):
                override["ready_to_scale_up"] = "yes" if ready[0] else "no"
                change("Programs", p.program_id, "ready_to_scale_up", before,
                       override["ready_to_scale_up"],
                       f"pilot results score {ready[1]:.4g} of target: "
                       + ("it met its targets and may scale up (a scale-up naming it in "
                          "pilot_of may now be funded)" if ready[0] else
                          "it missed its targets"))
        rows.append(_row(p, **override))
    return rows


def _pilot_ready(p: ProgramRow, results: Results) -> tuple[bool, float] | None:
    """(met its targets, score) over all its Results rows; None without results."""
    ratios = [min(_exact(r.achieved) / _exact(r.target), Fraction(1))
              for (q, _t), rows in results._cache()["rows"].items() if q == p.program_id
              for r in rows]
    if not ratios:
        return None
    score = sum(ratios, Fraction(0)) / len(ratios)
    return score >= 1, float(score)


def _performance(rnd: Round, measured: dict[tuple[str, str], Measured],
                 change) -> list[dict[str, Any]]:
    with_results = {p for p, _ in measured}
    metrics = set(outcome_metrics(rnd))
    rows = []
    for r in rnd.performance:
        if r.program_id in with_results:
            change("Performance", f"{r.program_id}/{r.metric}", "achieved", r.achieved, "",
                   "replaced by the measured results of the earlier round")
            continue
        rows.append(_row(r))
    for (p, metric), m in sorted(measured.items()):
        if metric not in metrics:
            continue
        rows.append({"program_id": p, "metric": metric, "target": m.target,
                     "achieved": m.achieved})
        change("Performance", f"{p}/{metric}", "achieved", "", m.achieved,
               f"measured in {', '.join(m.periods)} (target {m.target:.6g}, trainee-weighted)")
    return rows
